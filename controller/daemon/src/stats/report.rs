//! [`StatReport`]: what `spp stat` shows, `--json` prints and the
//! Prometheus endpoint encodes, built from two samples ([`build`]): the
//! newest gives the totals, the difference from an older one the rates and
//! the interval's latency percentiles (computed with `hdrhistogram` from the
//! shared buckets).

use super::names::{PROXY_CONNS_ACTIVE, QUANTILES, WORKER_BUSY_NS};
use super::sample::{GroupSample, Hist, PluginSample, Sample};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use spp_ipc::histogram::{bucket_low, HistogramSnapshot, BUCKETS, MAX_EXPONENT};
use std::collections::BTreeMap;

/// Highest value the percentile histogram tracks: above every bucket's
/// value (the overflow bucket stands for `2^MAX_EXPONENT` ns).
const HDR_HIGHEST_NS: u64 = 1 << (MAX_EXPONENT + 1);
/// Significant figures of the percentile histogram: 1 % on top of the
/// shared buckets' ≤ 3.1 % width.
const HDR_SIGFIG: u8 = 2;

/// The baseline of a group the base sample lacks (added since).
static NO_GROUP: GroupSample = GroupSample::EMPTY;
/// The baseline of a histogram the base sample lacks.
static NO_HIST: Hist = Hist::EMPTY;

/// A counter: its total, its growth over the window and that per second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rate {
    /// Since the service started.
    pub total: u64,
    /// Growth over the window.
    pub delta: u64,
    /// `delta` per second.
    pub per_s: f64,
}

/// A latency distribution over the window, plus its cumulative totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Latency {
    /// Samples in the window.
    pub count: u64,
    /// Samples per second.
    pub per_s: f64,
    /// Mean over the window, ns.
    pub mean_ns: u64,
    /// Median, ns.
    pub p50_ns: u64,
    /// 90th percentile, ns.
    pub p90_ns: u64,
    /// 99th percentile, ns.
    pub p99_ns: u64,
    /// 99.9th percentile, ns.
    pub p999_ns: u64,
    /// The largest sample of the window, ns.
    pub max_ns: u64,
    /// Samples since the service started.
    pub total_count: u64,
    /// Sum of every sample since the service started, ns.
    pub total_sum_ns: u64,
}

impl Latency {
    /// The fields that hold the values at [`QUANTILES`], in its order (the
    /// quantile `1` is the maximum). A quantile added there without a field
    /// here does not compile.
    fn quantile_fields(&mut self) -> [&mut u64; QUANTILES.len()] {
        [
            &mut self.p50_ns,
            &mut self.p90_ns,
            &mut self.p99_ns,
            &mut self.p999_ns,
            &mut self.max_ns,
        ]
    }

    /// The values at [`QUANTILES`], in its order, ns.
    pub fn quantiles_ns(&self) -> [u64; QUANTILES.len()] {
        let mut copy = *self;
        copy.quantile_fields().map(|v| *v)
    }
}

/// What a plugin counted through the host services.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PluginReport {
    /// Named counters.
    pub counters: BTreeMap<String, Rate>,
    /// Named latencies.
    pub latencies: BTreeMap<String, Latency>,
    /// Metric calls refused (bad name, every slot taken).
    pub refused: Rate,
}

/// The proxy's figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProxyReport {
    /// The proxy process serves (Starting, Ready or Draining).
    pub up: bool,
    /// TCP connections open now.
    pub connections_active: u64,
    /// Requests queued to workers and not yet answered.
    pub in_flight: u64,
    /// Every `ProxyStats` counter but `conns_active`, by field name.
    pub counters: BTreeMap<String, Rate>,
    /// The proxy plugin's metrics.
    pub plugin: PluginReport,
    /// Per proxy shard (`proxy.processes`), by index; the figures above
    /// are their sums.
    pub shards: Vec<ShardReport>,
}

/// One proxy shard's main figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShardReport {
    /// The shard's index.
    pub shard: u16,
    /// Its process serves.
    pub up: bool,
    /// Its TCP connections open now.
    pub connections_active: u64,
    /// Its requests queued to workers and not yet answered.
    pub in_flight: u64,
    /// Its connections accepted.
    pub conns_accepted: Rate,
    /// Its requests framed or datagrams accepted.
    pub requests: Rate,
}

/// One worker group's figures (the sum of its slots).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupReport {
    /// Group id.
    pub id: u32,
    /// Worker slots.
    pub slots: u32,
    /// Live workers now (Starting, Ready or Draining).
    pub workers: u32,
    /// Every `WorkerStats` counter, by field name.
    pub counters: BTreeMap<String, Rate>,
    /// Seconds spent inside `spp_process` per second (all workers).
    pub busy: f64,
    /// `busy` per live worker (0..1); absent without a live worker.
    pub utilisation: Option<f64>,
    /// Time a request waited in its ring.
    pub queue_wait: Latency,
    /// Time inside `spp_process`.
    pub process_time: Latency,
    /// What the group's plugin counted, summed over its workers.
    pub plugin: PluginReport,
}

/// What `spp stat` shows (and `--json` prints).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatReport {
    /// Service name.
    pub service: String,
    /// Seconds the rates and percentiles cover (0 until two samples).
    pub window_s: f64,
    /// The proxy.
    pub proxy: ProxyReport,
    /// The worker groups, in config order.
    pub groups: Vec<GroupReport>,
    /// The controller's log.
    pub log: LogReport,
}

/// The controller's log figures (the children's are their `log_dropped`
/// counters).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogReport {
    /// Lines the controller dropped because writing them failed, and
    /// child log files it could not open.
    pub controller_dropped: Rate,
    /// The log dir has no space left.
    pub dir_full: bool,
}

impl ProxyReport {
    /// The counter `field` (zero if unknown).
    pub fn counter(&self, field: &str) -> Rate {
        self.counters.get(field).copied().unwrap_or_default()
    }
}

impl GroupReport {
    /// The counter `field` (zero if unknown).
    pub fn counter(&self, field: &str) -> Rate {
        self.counters.get(field).copied().unwrap_or_default()
    }
}

/// The time between two samples, seconds.
struct Span {
    seconds: f64,
}

impl Span {
    fn rate(&self, now: u64, then: u64) -> Rate {
        let delta = now.saturating_sub(then);
        Rate {
            total: now,
            delta,
            per_s: self.per_s(delta as f64),
        }
    }

    fn per_s(&self, amount: f64) -> f64 {
        if self.seconds > 0.0 {
            amount / self.seconds
        } else {
            0.0
        }
    }
}

/// The report of `newest` over the time since `base` (no rates or
/// percentiles without a base).
pub fn build(service: &str, newest: &Sample, base: Option<&Sample>) -> StatReport {
    let span = Span {
        seconds: base.map_or(0.0, |b| newest.at.duration_since(b.at).as_secs_f64()),
    };
    let find = |counters: &[(&'static str, u64)], field: &str| {
        counters
            .iter()
            .find(|(name, _)| *name == field)
            .map_or(0, |(_, v)| *v)
    };
    let rates = |now: &[(&'static str, u64)], then: Option<&[(&'static str, u64)]>| {
        now.iter()
            .map(|(field, value)| {
                let old = then.map_or(*value, |t| find(t, field));
                (field.to_string(), span.rate(*value, old))
            })
            .collect::<BTreeMap<_, _>>()
    };

    let then_proxy = base.map(|b| &b.proxy);
    let mut proxy_counters = rates(
        &newest.proxy.counters,
        then_proxy.map(|p| p.counters.as_slice()),
    );
    proxy_counters.remove(PROXY_CONNS_ACTIVE);
    let proxy = ProxyReport {
        up: newest.proxy.up,
        connections_active: find(&newest.proxy.counters, PROXY_CONNS_ACTIVE),
        in_flight: newest.proxy.in_flight,
        counters: proxy_counters,
        plugin: plugin_report(&span, &newest.proxy.plugin, then_proxy.map(|p| &p.plugin)),
        shards: newest
            .proxy
            .shards
            .iter()
            .enumerate()
            .map(|(i, now)| {
                let then = then_proxy
                    .and_then(|p| p.shards.get(i))
                    .map(|s| s.counters.as_slice());
                let rate = |field: &str| {
                    let value = find(&now.counters, field);
                    span.rate(value, then.map_or(value, |t| find(t, field)))
                };
                ShardReport {
                    shard: u16::try_from(i).unwrap_or(u16::MAX),
                    up: now.up,
                    connections_active: find(&now.counters, PROXY_CONNS_ACTIVE),
                    in_flight: now.in_flight,
                    conns_accepted: rate(super::names::PROXY_CONNS_ACCEPTED),
                    requests: rate(super::names::PROXY_REQUESTS),
                }
            })
            .collect(),
    };

    let groups = newest
        .groups
        .iter()
        .map(|group| {
            // A group the base lacks (added since) counts from zero.
            let then: Option<&GroupSample> = base.map(|b| b.group(group.id).unwrap_or(&NO_GROUP));
            let counters = rates(&group.counters, then.map(|t| t.counters.as_slice()));
            let busy_ns = counters.get(WORKER_BUSY_NS).map_or(0, |r| r.delta);
            let busy = span.per_s(busy_ns as f64 * super::names::NS_TO_S);
            GroupReport {
                id: group.id,
                slots: group.slots,
                workers: group.live,
                counters,
                busy,
                utilisation: (group.live > 0).then(|| busy / f64::from(group.live)),
                queue_wait: latency(&span, &group.queue_wait, then.map(|t| &t.queue_wait)),
                process_time: latency(&span, &group.process_time, then.map(|t| &t.process_time)),
                plugin: plugin_report(&span, &group.plugin, then.map(|t| &t.plugin)),
            }
        })
        .collect();

    StatReport {
        service: service.to_string(),
        window_s: span.seconds,
        proxy,
        groups,
        log: LogReport {
            controller_dropped: span.rate(
                newest.log.controller_dropped,
                base.map_or(newest.log.controller_dropped, |b| b.log.controller_dropped),
            ),
            dir_full: newest.log.dir_full,
        },
    }
}

fn plugin_report(span: &Span, now: &PluginSample, then: Option<&PluginSample>) -> PluginReport {
    PluginReport {
        counters: now
            .counters
            .iter()
            .map(|(name, value)| {
                let old = then.map_or(*value, |t| t.counters.get(name).copied().unwrap_or(0));
                (name.clone(), span.rate(*value, old))
            })
            .collect(),
        latencies: now
            .latencies
            .iter()
            .map(|(name, hist)| {
                let old = then.map(|t| t.latencies.get(name).unwrap_or(&NO_HIST));
                (name.clone(), latency(span, hist, old))
            })
            .collect(),
        refused: span.rate(now.refused, then.map_or(now.refused, |t| t.refused)),
    }
}

/// The latency over the window between `then` and `now` (nothing in the
/// window without `then`).
fn latency(span: &Span, now: &Hist, then: Option<&Hist>) -> Latency {
    let mut out = Latency {
        total_count: now.count,
        total_sum_ns: now.sum_ns,
        ..Latency::default()
    };
    let Some(then) = then else {
        return out;
    };
    let interval = now.to_dense().since(&then.to_dense());
    out.count = interval.count;
    out.per_s = span.per_s(interval.count as f64);
    out.mean_ns = interval.sum_ns.checked_div(interval.count).unwrap_or(0);
    fill_percentiles(&mut out, &interval);
    out
}

/// The window's maximum: the all-time maximum, held inside the range of
/// the highest bucket the window filled.
fn window_max(interval: &HistogramSnapshot) -> Option<u64> {
    let top = interval.buckets.iter().rposition(|n| *n != 0)?;
    let low = bucket_low(top);
    let high = if top + 1 < BUCKETS {
        bucket_low(top + 1) - 1
    } else {
        u64::MAX
    };
    Some(interval.max_ns.clamp(low, high))
}

/// Percentiles of `interval`'s buckets, through an HDR histogram.
fn fill_percentiles(out: &mut Latency, interval: &HistogramSnapshot) {
    let Some(max) = window_max(interval) else {
        return;
    };
    let Ok(mut hdr) = Histogram::<u64>::new_with_bounds(1, HDR_HIGHEST_NS, HDR_SIGFIG) else {
        return;
    };
    for (value, n) in interval.values() {
        // Clamped to the range above, so it cannot fail.
        hdr.saturating_record_n(value, n);
    }
    for (field, q) in out.quantile_fields().into_iter().zip(QUANTILES) {
        *field = if q >= 1.0 {
            max
        } else {
            hdr.value_at_quantile(q).min(max)
        };
    }
}
