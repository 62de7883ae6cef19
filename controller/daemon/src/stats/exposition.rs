//! The Prometheus text exposition (format 0.0.4) of a [`StatReport`]: the
//! report's values become `prometheus` crate metric families (its plain
//! data model, no registry: the values are already aggregated) and its
//! `TextEncoder` writes them, escaping included.
//!
//! Counters are cumulative for the service's life; summaries give their
//! quantiles over the report's window and their `_sum`/`_count` since the
//! start (what Prometheus expects of a summary).

use super::names::{self, CounterName, Kind};
use super::report::{Latency, PluginReport, Rate, StatReport};
use prometheus::proto::{
    Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType, Quantile, Summary,
};
use prometheus::TextEncoder;
use std::collections::BTreeMap;

/// The HTTP `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Collects metric families by name, in first-use order.
#[derive(Default)]
struct Families {
    order: Vec<String>,
    by_name: BTreeMap<String, MetricFamily>,
}

impl Families {
    fn push(&mut self, name: &str, help: &str, kind: MetricType, metric: Metric) {
        let family = self.by_name.entry(name.to_string()).or_insert_with(|| {
            self.order.push(name.to_string());
            let mut family = MetricFamily::default();
            family.set_name(name.to_string());
            family.set_help(help.to_string());
            family.set_field_type(kind);
            family
        });
        family.mut_metric().push(metric);
    }

    fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        let mut metric = labelled(labels);
        let mut counter = Counter::default();
        counter.set_value(value);
        metric.set_counter(counter);
        self.push(name, help, MetricType::COUNTER, metric);
    }

    fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        let mut metric = labelled(labels);
        let mut gauge = Gauge::default();
        gauge.set_value(value);
        metric.set_gauge(gauge);
        self.push(name, help, MetricType::GAUGE, metric);
    }

    fn summary(&mut self, name: &str, help: &str, labels: &[(&str, &str)], latency: &Latency) {
        let mut metric = labelled(labels);
        let mut summary = Summary::default();
        summary.set_sample_count(latency.total_count);
        summary.set_sample_sum(latency.total_sum_ns as f64 * names::NS_TO_S);
        summary.set_quantile(
            names::QUANTILES
                .into_iter()
                .zip(latency.quantiles_ns())
                .map(|(q, ns)| {
                    let mut quantile = Quantile::default();
                    quantile.set_quantile(q);
                    // No sample in the window: NaN, as Prometheus clients do.
                    quantile.set_value(if latency.count == 0 {
                        f64::NAN
                    } else {
                        ns as f64 * names::NS_TO_S
                    });
                    quantile
                })
                .collect(),
        );
        metric.set_summary(summary);
        self.push(name, help, MetricType::SUMMARY, metric);
    }

    /// One shared counter, under its stable name (or a derived one).
    fn shared(
        &mut self,
        table: &'static [CounterName],
        prefix: &str,
        field: &str,
        labels: &[(&str, &str)],
        value: u64,
    ) {
        match names::lookup(table, field) {
            Some(c) => {
                let value = value as f64 * c.scale;
                match c.kind {
                    Kind::Counter => self.counter(c.metric, c.help, labels, value),
                    Kind::Gauge => self.gauge(c.metric, c.help, labels, value),
                }
            }
            None => {
                let name = names::derived_name(prefix, field);
                self.counter(&name, field, labels, value as f64);
            }
        }
    }

    fn plugin(&mut self, labels: &[(&str, &str)], plugin: &PluginReport) {
        for (name, rate) in &plugin.counters {
            let mut with_name = labels.to_vec();
            with_name.push((names::LABEL_NAME, name));
            self.counter(
                names::PLUGIN_COUNTER,
                "A plugin's named counter (spp_host count).",
                &with_name,
                rate.total as f64,
            );
        }
        for (name, latency) in &plugin.latencies {
            let mut with_name = labels.to_vec();
            with_name.push((names::LABEL_NAME, name));
            self.summary(
                names::PLUGIN_LATENCY,
                "A plugin's named latency (spp_host record_latency); quantiles over the window.",
                &with_name,
                latency,
            );
        }
        self.counter(
            names::PLUGIN_REFUSED,
            "Plugin metric calls refused (bad name, every slot taken).",
            labels,
            plugin.refused.total as f64,
        );
    }

    fn into_vec(mut self) -> Vec<MetricFamily> {
        self.order
            .iter()
            .filter_map(|name| self.by_name.remove(name))
            .collect()
    }
}

fn labelled(labels: &[(&str, &str)]) -> Metric {
    Metric::from_label(
        labels
            .iter()
            .map(|(name, value)| {
                let mut pair = LabelPair::default();
                pair.set_name(name.to_string());
                pair.set_value(value.to_string());
                pair
            })
            .collect(),
    )
}

/// Every metric of `report`, as metric families.
pub fn families(report: &StatReport) -> Vec<MetricFamily> {
    let mut out = Families::default();
    out.gauge(
        names::STATS_WINDOW,
        "Seconds the summaries' quantiles cover.",
        &[],
        report.window_s,
    );

    let proxy = &report.proxy;
    out.gauge(
        names::PROXY_UP,
        "1 while the proxy process (every proxy shard) runs.",
        &[],
        f64::from(u8::from(proxy.up)),
    );
    out.counter(
        names::CONTROLLER_LOG_DROPPED,
        "Log lines the controller dropped because writing them failed (log dir full), and child logs it could not open.",
        &[],
        report.log.controller_dropped.total as f64,
    );
    out.gauge(
        names::LOG_DIR_FULL,
        "1 while the log dir's file system has no space left.",
        &[],
        f64::from(u8::from(report.log.dir_full)),
    );
    out.gauge(
        names::PROXY_IN_FLIGHT,
        "Requests queued to workers and not yet answered.",
        &[],
        proxy.in_flight as f64,
    );
    out.shared(
        names::PROXY_COUNTERS,
        names::PROXY_PREFIX,
        names::PROXY_CONNS_ACTIVE,
        &[],
        proxy.connections_active,
    );
    for (field, Rate { total, .. }) in &proxy.counters {
        out.shared(
            names::PROXY_COUNTERS,
            names::PROXY_PREFIX,
            field,
            &[],
            *total,
        );
    }
    // Separate families, so a sum over a family never counts twice.
    if proxy.shards.len() > 1 {
        for s in &proxy.shards {
            let shard = s.shard.to_string();
            let labels = [(names::LABEL_SHARD, shard.as_str())];
            out.gauge(
                names::PROXY_SHARD_UP,
                "1 while this proxy shard runs.",
                &labels,
                f64::from(u8::from(s.up)),
            );
            out.gauge(
                names::PROXY_SHARD_CONNS_ACTIVE,
                "TCP connections this proxy shard holds open.",
                &labels,
                s.connections_active as f64,
            );
            out.gauge(
                names::PROXY_SHARD_IN_FLIGHT,
                "Requests this proxy shard queued to workers and has not answered.",
                &labels,
                s.in_flight as f64,
            );
            out.counter(
                names::PROXY_SHARD_CONNS_ACCEPTED,
                "TCP connections this proxy shard accepted.",
                &labels,
                s.conns_accepted.total as f64,
            );
            out.counter(
                names::PROXY_SHARD_REQUESTS,
                "Requests this proxy shard framed (TCP) or accepted (UDP).",
                &labels,
                s.requests.total as f64,
            );
        }
    }

    for group in &report.groups {
        let id = group.id.to_string();
        let labels = [(names::LABEL_GROUP, id.as_str())];
        out.gauge(
            names::GROUP_WORKERS,
            "Live workers (starting, ready or draining).",
            &labels,
            f64::from(group.workers),
        );
        out.gauge(
            names::GROUP_SLOTS,
            "Worker slots.",
            &labels,
            f64::from(group.slots),
        );
        for (field, Rate { total, .. }) in &group.counters {
            out.shared(
                names::WORKER_COUNTERS,
                names::WORKER_PREFIX,
                field,
                &labels,
                *total,
            );
        }
        out.summary(
            names::GROUP_QUEUE_WAIT,
            "Time a request waited in its ring before a worker took it; quantiles over the window.",
            &labels,
            &group.queue_wait,
        );
        out.summary(
            names::GROUP_PROCESS,
            "Time inside spp_process; quantiles over the window.",
            &labels,
            &group.process_time,
        );
    }

    out.plugin(
        &[(names::LABEL_PROCESS, names::PROCESS_PROXY)],
        &proxy.plugin,
    );
    for group in &report.groups {
        let id = group.id.to_string();
        out.plugin(
            &[
                (names::LABEL_PROCESS, names::PROCESS_WORKER),
                (names::LABEL_GROUP, id.as_str()),
            ],
            &group.plugin,
        );
    }
    out.into_vec()
}

/// The text exposition of `report`.
pub fn render(report: &StatReport) -> Result<String, prometheus::Error> {
    TextEncoder::new().encode_to_string(&families(report))
}
