//! Every Prometheus metric name the controller exposes, in one place.
//!
//! The names are part of the operator contract: dashboards and alerts use
//! them, so they never change with a field rename in `spp_ipc::stats`.
//! Each shared counter is mapped explicitly ([`PROXY_COUNTERS`],
//! [`WORKER_COUNTERS`]); a test checks the tables cover every field of
//! `ProxyStats` / `WorkerStats`. A field added later without an entry is
//! still exported, under [`derived_name`].
//!
//! Labels: `group` (the group id), `process` (`proxy` or `worker`), `name`
//! (a plugin's metric name) and, on summaries, `quantile`.

/// How a shared counter is exposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only ever grows: `..._total`.
    Counter,
    /// Stored, not added (e.g. open connections).
    Gauge,
}

/// One shared counter field and its metric.
#[derive(Clone, Copy, Debug)]
pub struct CounterName {
    /// The field in `ProxyStats` / `WorkerStats` (also the key in
    /// `StatReport` counters).
    pub field: &'static str,
    /// The metric name.
    pub metric: &'static str,
    /// `# HELP` text.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// Multiplier from the stored unit to the metric's (ns → s).
    pub scale: f64,
}

const fn counter(field: &'static str, metric: &'static str, help: &'static str) -> CounterName {
    CounterName {
        field,
        metric,
        help,
        kind: Kind::Counter,
        scale: 1.0,
    }
}

/// Nanoseconds to seconds.
pub const NS_TO_S: f64 = 1e-9;

/// The proxy's shared counters.
pub const PROXY_COUNTERS: &[CounterName] = &[
    counter(
        "conns_accepted",
        "spp_proxy_conns_accepted_total",
        "TCP connections accepted.",
    ),
    CounterName {
        field: "conns_active",
        metric: "spp_proxy_connections_active",
        help: "TCP connections open now.",
        kind: Kind::Gauge,
        scale: 1.0,
    },
    counter(
        "conns_refused",
        "spp_proxy_conns_refused_total",
        "TCP connections refused at the connection cap.",
    ),
    counter(
        "requests",
        "spp_proxy_requests_total",
        "Requests framed (TCP) or datagrams accepted (UDP).",
    ),
    counter(
        "bytes_in",
        "spp_proxy_bytes_in_total",
        "Request bytes received.",
    ),
    counter(
        "bytes_out",
        "spp_proxy_bytes_out_total",
        "Response bytes written to clients.",
    ),
    counter(
        "responses",
        "spp_proxy_responses_total",
        "Response records taken from the rings.",
    ),
    counter(
        "frame_errors",
        "spp_proxy_frame_errors_total",
        "Streams the plugin's spp_input called malformed.",
    ),
    counter(
        "oversized",
        "spp_proxy_oversized_total",
        "Requests over max_request_size.",
    ),
    counter(
        "ring_full",
        "spp_proxy_ring_full_total",
        "Requests that found their worker's request ring full.",
    ),
    counter(
        "no_worker",
        "spp_proxy_no_worker_total",
        "Requests routed to a group without a live worker, or to an unknown group.",
    ),
    counter(
        "worker_died_failed",
        "spp_proxy_worker_died_failed_total",
        "In-flight requests failed because their worker died.",
    ),
    counter(
        "idle_closed",
        "spp_proxy_idle_closed_total",
        "Connections closed for idleness.",
    ),
    counter(
        "slow_closed",
        "spp_proxy_slow_closed_total",
        "Connections closed because the client did not read its responses.",
    ),
    counter(
        "stale_responses",
        "spp_proxy_stale_responses_total",
        "Responses for a flow that no longer exists.",
    ),
    counter(
        "udp_dropped",
        "spp_proxy_udp_dropped_total",
        "UDP datagrams dropped.",
    ),
    counter(
        "plugin_panics",
        "spp_proxy_plugin_panics_total",
        "Panics of the proxy's plugin hooks.",
    ),
    counter(
        "stale_failed",
        "spp_proxy_stale_failed_total",
        "Requests a worker reported stale (waited past msg_timeout).",
    ),
    counter(
        "exceptions",
        "spp_proxy_exceptions_total",
        "Calls of the plugin's exception hook.",
    ),
    counter(
        "host_refused",
        "spp_proxy_host_refused_total",
        "Host-service calls refused.",
    ),
    counter(
        "log_dropped",
        "spp_proxy_log_dropped_total",
        "Log lines the proxy dropped because writing them failed (log dir full).",
    ),
    counter(
        "poison_refused",
        "spp_proxy_poison_refused_total",
        "Requests refused as poison: workers died twice processing these bytes.",
    ),
    counter(
        "stalled_skips",
        "spp_proxy_stalled_skips_total",
        "Worker picks that passed over a worker whose ring stopped moving.",
    ),
    counter(
        "proxy_expired",
        "spp_proxy_expired_total",
        "Requests the proxy failed itself: held by a frozen worker past msg_timeout.",
    ),
    counter(
        "request_timeouts",
        "spp_proxy_request_timeouts_total",
        "Connections closed because a partial request passed request_timeout.",
    ),
    counter(
        "evicted_partial",
        "spp_proxy_evicted_partial_total",
        "Connections with the oldest partial request, closed to admit a new one at max_connections.",
    ),
    counter(
        "input_overrun",
        "spp_proxy_input_overrun_total",
        "Plugin errors: spp_input returned more bytes than it was given (connection closed, datagram dropped).",
    ),
    counter(
        "flow_closed_dropped",
        "spp_proxy_flow_closed_dropped_total",
        "Closed-connection notices for workers (spp_flow_closed) dropped: a worker's queue of them was full.",
    ),
    counter(
        "held_overflow",
        "spp_proxy_held_overflow_total",
        "Connections closed because answers held for request order passed max_send_buffer.",
    ),
];

/// The workers' shared counters, summed per group (label `group`).
pub const WORKER_COUNTERS: &[CounterName] = &[
    counter(
        "requests",
        "spp_worker_requests_total",
        "Requests handed to spp_process.",
    ),
    counter(
        "process_errors",
        "spp_worker_process_errors_total",
        "spp_process calls that returned non-zero.",
    ),
    counter(
        "plugin_panics",
        "spp_worker_plugin_panics_total",
        "Panics of the worker's plugin hooks.",
    ),
    counter(
        "replies",
        "spp_worker_replies_total",
        "Response records queued.",
    ),
    counter(
        "reply_bytes",
        "spp_worker_reply_bytes_total",
        "Response bytes queued.",
    ),
    counter(
        "replies_dropped",
        "spp_worker_replies_dropped_total",
        "Replies dropped (response ring full too long, or too large).",
    ),
    CounterName {
        field: "busy_ns",
        metric: "spp_worker_busy_seconds_total",
        help: "Time spent inside spp_process.",
        kind: Kind::Counter,
        scale: NS_TO_S,
    },
    counter(
        "stale_dropped",
        "spp_worker_stale_dropped_total",
        "Requests not processed because they waited past msg_timeout.",
    ),
    counter(
        "log_dropped",
        "spp_worker_log_dropped_total",
        "Log lines workers dropped because writing them failed (log dir full).",
    ),
    CounterName {
        field: "in_flight",
        metric: "spp_worker_in_flight",
        help:
            "Requests held by micro-thread and async workers now (running, suspended or deferred).",
        kind: Kind::Gauge,
        scale: 1.0,
    },
    counter(
        "tasks_expired",
        "spp_worker_tasks_expired_total",
        "Deferred requests (async mode) the worker expired past task_timeout and its grace.",
    ),
    counter(
        "tasks_unknown",
        "spp_worker_tasks_unknown_total",
        "Completions (async mode) from plugin threads whose request was not in flight.",
    ),
];

/// The proxy counter field that is a gauge (open connections).
pub const PROXY_CONNS_ACTIVE: &str = "conns_active";
/// The worker counter field with the time inside `spp_process`, ns.
pub const WORKER_BUSY_NS: &str = "busy_ns";

/// The proxy counter field of connections accepted.
pub const PROXY_CONNS_ACCEPTED: &str = "conns_accepted";
/// The proxy counter field of requests.
pub const PROXY_REQUESTS: &str = "requests";
/// Per proxy shard (label [`LABEL_SHARD`], only with several): 1 while it
/// serves.
pub const PROXY_SHARD_UP: &str = "spp_proxy_shard_up";
/// Per proxy shard: TCP connections open now.
pub const PROXY_SHARD_CONNS_ACTIVE: &str = "spp_proxy_shard_connections_active";
/// Per proxy shard: TCP connections accepted.
pub const PROXY_SHARD_CONNS_ACCEPTED: &str = "spp_proxy_shard_connections_accepted_total";
/// Per proxy shard: requests framed (TCP) or datagrams accepted (UDP).
pub const PROXY_SHARD_REQUESTS: &str = "spp_proxy_shard_requests_total";
/// Per proxy shard: requests queued to workers and not yet answered.
pub const PROXY_SHARD_IN_FLIGHT: &str = "spp_proxy_shard_in_flight_requests";

/// 1 while the proxy (every shard) serves (Starting, Ready or Draining).
pub const PROXY_UP: &str = "spp_proxy_up";
/// Requests queued to workers and not yet answered.
pub const PROXY_IN_FLIGHT: &str = "spp_proxy_in_flight_requests";
/// Live workers of a group (Starting, Ready or Draining).
pub const GROUP_WORKERS: &str = "spp_group_workers";
/// Worker slots of a group.
pub const GROUP_SLOTS: &str = "spp_group_worker_slots";
/// Summary: time a request waited in the ring before a worker took it.
pub const GROUP_QUEUE_WAIT: &str = "spp_group_queue_wait_seconds";
/// Summary: time inside `spp_process`.
pub const GROUP_PROCESS: &str = "spp_group_process_seconds";
/// A plugin's named counter.
pub const PLUGIN_COUNTER: &str = "spp_plugin_counter_total";
/// Summary: a plugin's named latency.
pub const PLUGIN_LATENCY: &str = "spp_plugin_latency_seconds";
/// Plugin metric calls refused (bad name, every slot taken).
pub const PLUGIN_REFUSED: &str = "spp_plugin_refused_total";
/// Log lines the controller dropped because writing them failed, and
/// child log files it could not open (their output went to /dev/null).
pub const CONTROLLER_LOG_DROPPED: &str = "spp_controller_log_dropped_total";
/// 1 while the log dir's file system has no space left.
pub const LOG_DIR_FULL: &str = "spp_log_dir_full";
/// Seconds the summaries' quantiles cover.
pub const STATS_WINDOW: &str = "spp_stats_window_seconds";

/// Label: proxy shard index.
pub const LABEL_SHARD: &str = "shard";
/// Label: group id.
pub const LABEL_GROUP: &str = "group";
/// Label: `proxy` or `worker`.
pub const LABEL_PROCESS: &str = "process";
/// Label: a plugin metric's name.
pub const LABEL_NAME: &str = "name";
/// `process` label value of the proxy.
pub const PROCESS_PROXY: &str = "proxy";
/// `process` label value of a worker group.
pub const PROCESS_WORKER: &str = "worker";

/// The quantiles every summary reports; `1` is the window's maximum.
pub const QUANTILES: [f64; 5] = [0.5, 0.9, 0.99, 0.999, 1.0];

/// The entry of `field` in `table`, if it has one.
pub fn lookup(table: &'static [CounterName], field: &str) -> Option<&'static CounterName> {
    table.iter().find(|c| c.field == field)
}

/// The name a field without an entry gets: `<prefix><field>_total`, e.g.
/// `spp_proxy_new_thing_total`.
pub fn derived_name(prefix: &str, field: &str) -> String {
    format!("{prefix}{field}_total")
}

/// Prefix of derived proxy counter names.
pub const PROXY_PREFIX: &str = "spp_proxy_";
/// Prefix of derived worker counter names.
pub const WORKER_PREFIX: &str = "spp_worker_";

#[cfg(test)]
mod tests {
    use super::*;
    use spp_ipc::layout::{ProxyStats, WorkerStats};
    use std::collections::HashSet;

    fn covers(table: &[CounterName], fields: &[&str]) {
        let mapped: Vec<&str> = table.iter().map(|c| c.field).collect();
        assert_eq!(
            mapped, fields,
            "the table follows the layout, field by field"
        );
        let metrics: HashSet<&str> = table.iter().map(|c| c.metric).collect();
        assert_eq!(metrics.len(), table.len(), "metric names are unique");
        for c in table {
            assert!(c.metric.starts_with("spp_"), "{}", c.metric);
            let is_total = c.metric.ends_with("_total");
            assert_eq!(is_total, c.kind == Kind::Counter, "{}", c.metric);
        }
    }

    #[test]
    fn every_shared_counter_has_a_stable_metric_name() {
        covers(PROXY_COUNTERS, ProxyStats::NAMES);
        covers(WORKER_COUNTERS, WorkerStats::NAMES);
        assert!(lookup(PROXY_COUNTERS, PROXY_CONNS_ACTIVE).is_some());
        assert!(lookup(WORKER_COUNTERS, WORKER_BUSY_NS).is_some());
        assert_eq!(
            derived_name(PROXY_PREFIX, "x"),
            "spp_proxy_x_total".to_string()
        );
    }
}
