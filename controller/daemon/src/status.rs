//! The status report: the JSON shape `spp status --json` prints and the
//! control socket returns (scripts and the end-to-end tests depend on these
//! names), the counter snapshots taken from shared memory, and the table
//! `spp status` prints for humans: processes, then per group its size,
//! busy ratio and last scaling decision, then L5 ([`L5Status`]).

use crate::l5::report::{self, L5Status};
use crate::scaling::Decision;
use serde::{Deserialize, Serialize};
use spp_ipc::layout::{ProxyStats, WorkerStats};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The whole service.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    /// `service.name`.
    pub service: String,
    /// The controller's pid.
    pub controller_pid: u32,
    /// Where the service is in its life.
    pub state: ServiceState,
    /// Bumped by every reload that took effect (0 at start).
    #[serde(default)]
    pub config_generation: u64,
    /// A reload is under way.
    #[serde(default)]
    pub reloading: bool,
    /// Every listener with the address actually bound.
    pub listeners: Vec<ListenerStatus>,
    /// The proxy, then every worker.
    pub processes: Vec<ProcessStatus>,
    /// Every `ProxyStats` counter, summed over the proxy shards.
    pub proxy_stats: BTreeMap<String, u64>,
    /// Every `ProxyStats` counter per proxy shard, by its process name
    /// (`proxy`, or `proxy-0`, `proxy-1`, ... with several).
    #[serde(default)]
    pub proxy_shard_stats: BTreeMap<String, BTreeMap<String, u64>>,
    /// Every `WorkerStats` counter, per worker name.
    pub worker_stats: BTreeMap<String, BTreeMap<String, u64>>,
    /// Per group: size, range and scaling.
    #[serde(default)]
    pub groups: Vec<GroupStatus>,
    /// L5 registration and routing (`None` while `[l5]` is off).
    #[serde(default)]
    pub l5: Option<L5Status>,
    /// Log lines dropped, and whether the log dir is full.
    #[serde(default)]
    pub log: LogStatus,
}

/// The service's logs: lines dropped because writing them failed (a full
/// log disk), and a plain warning while the log dir is full.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LogStatus {
    /// Lines dropped by every process: the controller's, the proxy's and
    /// every worker's `log_dropped`.
    pub dropped: u64,
    /// Lines the controller dropped, and child logs it could not open.
    pub controller_dropped: u64,
    /// `"log dir full: DIR"` while the log dir has no space left.
    pub warning: Option<String>,
}

impl LogStatus {
    /// The figures, with `controller_dropped` plus every `log_dropped` in
    /// the proxy's and the workers' counters.
    pub fn new(
        controller_dropped: u64,
        proxy_stats: &BTreeMap<String, u64>,
        worker_stats: &BTreeMap<String, BTreeMap<String, u64>>,
        warning: Option<String>,
    ) -> LogStatus {
        let of = |stats: &BTreeMap<String, u64>| stats.get(LOG_DROPPED).copied().unwrap_or(0);
        let children: u64 = of(proxy_stats) + worker_stats.values().map(of).sum::<u64>();
        LogStatus {
            dropped: controller_dropped + children,
            controller_dropped,
            warning,
        }
    }
}

/// The counter of log lines dropped, in the proxy's and the workers'
/// counters.
const LOG_DROPPED: &str = "log_dropped";
const _: () = assert!(has_name(ProxyStats::NAMES, LOG_DROPPED));
const _: () = assert!(has_name(WorkerStats::NAMES, LOG_DROPPED));

/// One worker group.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupStatus {
    /// Group id.
    pub id: u32,
    /// Workers running.
    pub running: u32,
    /// Workers the group is meant to have now.
    pub workers: u32,
    /// `min_workers`.
    pub min: u32,
    /// `max_workers`.
    pub max: u32,
    /// Whether scaling may change it (`min < max`).
    pub scaling: bool,
    /// busy / (running x interval) at the last evaluation.
    pub busy_ratio: Option<f64>,
    /// The last evaluation (holds included).
    pub last_decision: Option<DecisionStatus>,
    /// The last evaluation that changed the size.
    pub last_change: Option<DecisionStatus>,
    /// Micro-thread and async groups: `max_in_flight` of each worker
    /// (`None`: plain mode).
    #[serde(default)]
    pub max_in_flight: Option<u32>,
}

/// A scaling decision and when it was taken.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DecisionStatus {
    /// When, in seconds since the Unix epoch.
    pub at_unix_s: u64,
    /// How long ago, in seconds.
    pub age_s: u64,
    /// The decision and its figures.
    #[serde(flatten)]
    pub decision: Decision,
}

/// The service's life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// Children were started; not all are ready yet.
    Starting,
    /// Every child was ready once; the supervisor keeps them running.
    Running,
    /// Stopping everything.
    Stopping,
}

/// One listener.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ListenerStatus {
    /// Index in `proxy.listen`.
    pub index: u16,
    /// `"tcp"` or `"udp"`.
    pub transport: String,
    /// The bound address (the real port when the config said 0).
    pub addr: String,
}

/// One child process.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcessStatus {
    /// `"proxy"` or `"worker-g<G>-<I>"`.
    pub name: String,
    /// `"proxy"` or `"worker"`.
    pub role: String,
    /// Group id (workers).
    pub group: Option<u32>,
    /// Index in the group (workers).
    pub index: Option<u32>,
    /// The proxy shard (proxies).
    #[serde(default)]
    pub shard: Option<u16>,
    /// Pid while running.
    pub pid: Option<u32>,
    /// Where the process is.
    pub state: ProcState,
    /// Restarts so far.
    pub restarts: u32,
    /// Seconds since the current run started (0 when not running).
    pub uptime_s: u64,
    /// The config generation the current run was started with.
    #[serde(default)]
    pub config_generation: Option<u64>,
    /// How the previous run ended: `"exit status 3"`, `"killed by signal 9"`.
    pub last_exit: Option<String>,
    /// Restarting again and again without a stable minute.
    pub crash_loop: bool,
}

/// A child's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcState {
    /// Running, not ready yet.
    Starting,
    /// Serving.
    Ready,
    /// Finishing what it holds, taking nothing new.
    Draining,
    /// Not running and not scheduled to restart.
    Down,
    /// Waiting out its restart delay.
    Backoff,
}

impl Status {
    /// True when the service runs and every process is ready.
    pub fn all_ready(&self) -> bool {
        self.state == ServiceState::Running
            && self.processes.iter().all(|p| p.state == ProcState::Ready)
    }
}

/// Every proxy counter, by its metric name (the names are the fields of
/// `ProxyStats`, defined once in `spp_ipc::layout`).
pub fn proxy_stats(stats: &ProxyStats) -> BTreeMap<String, u64> {
    named(stats.snapshot())
}

/// Every worker counter, by its metric name.
pub fn worker_stats(stats: &WorkerStats) -> BTreeMap<String, u64> {
    named(stats.snapshot())
}

/// The counters of several processes, summed by name (wrapping).
pub fn sum_stats<'a>(
    each: impl IntoIterator<Item = &'a BTreeMap<String, u64>>,
) -> BTreeMap<String, u64> {
    let mut sum = BTreeMap::new();
    for stats in each {
        for (name, value) in stats {
            let total: &mut u64 = sum.entry(name.clone()).or_default();
            *total = total.wrapping_add(*value);
        }
    }
    sum
}

fn named(values: Vec<(&'static str, u64)>) -> BTreeMap<String, u64> {
    values
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect()
}

impl ProcState {
    /// The name used in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ProcState::Starting => "starting",
            ProcState::Ready => "ready",
            ProcState::Draining => "draining",
            ProcState::Down => "down",
            ProcState::Backoff => "backoff",
        }
    }
}

/// Proxy counters worth a glance in the table.
const TABLE_PROXY_COUNTERS: [&str; 6] = [
    "conns_active",
    "conns_accepted",
    "requests",
    "responses",
    "ring_full",
    "worker_died_failed",
];
/// The counter in the REQUESTS column, for the proxy and for workers.
const REQUESTS_COUNTER: &str = "requests";
/// The worker gauge of requests held (micro-thread mode).
const IN_FLIGHT_GAUGE: &str = "in_flight";
const _: () = assert!(has_name(WorkerStats::NAMES, IN_FLIGHT_GAUGE));

/// Whether `names` holds `name` (usable in constants).
const fn has_name(names: &[&str], name: &str) -> bool {
    let mut i = 0;
    while i < names.len() {
        let (a, b) = (names[i].as_bytes(), name.as_bytes());
        if a.len() == b.len() {
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return true;
            }
        }
        i += 1;
    }
    false
}

/// Whether every one of `wanted` is in `names`.
const fn has_all(names: &[&str], wanted: &[&str]) -> bool {
    let mut i = 0;
    while i < wanted.len() {
        if !has_name(names, wanted[i]) {
            return false;
        }
        i += 1;
    }
    true
}

// A renamed counter breaks the build, not silently the table.
const _: () = assert!(has_all(ProxyStats::NAMES, &TABLE_PROXY_COUNTERS));
const _: () = assert!(has_name(ProxyStats::NAMES, REQUESTS_COUNTER));
const _: () = assert!(has_name(WorkerStats::NAMES, REQUESTS_COUNTER));

/// The human view of `status`.
pub fn render_table(status: &Status) -> String {
    let mut out = String::new();
    let state = match status.state {
        ServiceState::Starting => "starting",
        ServiceState::Running => "running",
        ServiceState::Stopping => "stopping",
    };
    let reloading = if status.reloading { ", reloading" } else { "" };
    let _ = writeln!(
        out,
        "service {}: {state}{reloading} (controller pid {}, config generation {})",
        status.service, status.controller_pid, status.config_generation
    );
    for l in &status.listeners {
        let _ = writeln!(out, "  listen[{}] {}://{}", l.index, l.transport, l.addr);
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<14} {:>8} {:<9} {:>8} {:>9} {:>10} {:>4}  LAST EXIT",
        "PROCESS", "PID", "STATE", "RESTARTS", "UPTIME", "REQUESTS", "GEN"
    );
    for p in &status.processes {
        let pid = p.pid.map_or_else(|| "-".to_string(), |pid| pid.to_string());
        let requests = if p.role == "proxy" {
            status
                .proxy_shard_stats
                .get(&p.name)
                .unwrap_or(&status.proxy_stats)
                .get(REQUESTS_COUNTER)
        } else {
            status
                .worker_stats
                .get(&p.name)
                .and_then(|s| s.get(REQUESTS_COUNTER))
        };
        let requests = requests.map_or_else(|| "-".to_string(), u64::to_string);
        let mut last = p.last_exit.clone().unwrap_or_else(|| "-".to_string());
        if p.crash_loop {
            last.push_str("  CRASH LOOP");
        }
        let generation = p
            .config_generation
            .map_or_else(|| "-".to_string(), |g| g.to_string());
        let _ = writeln!(
            out,
            "{:<14} {:>8} {:<9} {:>8} {:>8}s {:>10} {:>4}  {last}",
            p.name,
            pid,
            p.state.as_str(),
            p.restarts,
            p.uptime_s,
            requests,
            generation
        );
    }
    let counters: Vec<String> = TABLE_PROXY_COUNTERS
        .iter()
        .filter_map(|name| status.proxy_stats.get(*name).map(|v| format!("{name}={v}")))
        .collect();
    let _ = writeln!(out, "\nproxy: {}", counters.join(" "));
    if status.proxy_shard_stats.len() > 1 {
        for (name, stats) in &status.proxy_shard_stats {
            let counters: Vec<String> = TABLE_PROXY_COUNTERS
                .iter()
                .filter_map(|c| stats.get(*c).map(|v| format!("{c}={v}")))
                .collect();
            let _ = writeln!(out, "  {name}: {}", counters.join(" "));
        }
    }
    if status.log.dropped > 0 || status.log.warning.is_some() {
        let warning = status
            .log
            .warning
            .as_ref()
            .map_or_else(String::new, |w| format!("  WARNING: {w}"));
        let _ = writeln!(
            out,
            "log: {} lines dropped (controller {}){warning}",
            status.log.dropped, status.log.controller_dropped
        );
    }
    render_groups(&mut out, status);
    render_microthreads(&mut out, status);
    if let Some(l5) = &status.l5 {
        let _ = writeln!(out);
        out.push_str(&report::render_status(l5));
    }
    out
}

/// The groups' part of the table.
fn render_groups(out: &mut String, status: &Status) {
    if status.groups.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n{:<6} {:>7} {:>7} {:>5} {:>5} {:>7}  LAST SCALING DECISION",
        "GROUP", "RUNNING", "WORKERS", "MIN", "MAX", "BUSY"
    );
    for g in &status.groups {
        let busy = g
            .busy_ratio
            .map_or_else(|| "-".to_string(), |r| format!("{:.1}%", r * 100.0));
        let last = match (&g.last_decision, g.scaling) {
            (Some(d), _) => format!("{} s ago: {}", d.age_s, d.decision.describe()),
            (None, true) => "none yet".to_string(),
            (None, false) => "off (min_workers = max_workers)".to_string(),
        };
        let _ = writeln!(
            out,
            "{:<6} {:>7} {:>7} {:>5} {:>5} {:>7}  {last}",
            format!("g{}", g.id),
            g.running,
            g.workers,
            g.min,
            g.max,
            busy
        );
        if let Some(change) = &g.last_change {
            if g.last_decision.as_ref().map(|d| d.at_unix_s) != Some(change.at_unix_s) {
                let _ = writeln!(
                    out,
                    "{:<46}  last change {} s ago: {}",
                    "",
                    change.age_s,
                    change.decision.describe()
                );
            }
        }
    }
}

/// Requests the running workers of group `id` hold now (the sum of their
/// `in_flight` gauges).
fn group_in_flight(status: &Status, id: u32) -> u64 {
    status
        .processes
        .iter()
        .filter(|p| p.group == Some(id) && p.pid.is_some())
        .filter_map(|p| status.worker_stats.get(&p.name)?.get(IN_FLIGHT_GAUGE))
        .sum()
}

/// The micro-thread pools' use, for the groups in micro-thread or async
/// mode: requests held (running, suspended or deferred) against
/// `max_in_flight` × running workers.
fn render_microthreads(out: &mut String, status: &Status) {
    let groups: Vec<&GroupStatus> = status
        .groups
        .iter()
        .filter(|g| g.max_in_flight.is_some())
        .collect();
    if groups.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n{:<6} {:>9} {:>9} {:>6}  MICRO-THREADS / ASYNC (held / max_in_flight x running)",
        "GROUP", "IN FLIGHT", "CAPACITY", "USE"
    );
    for g in groups {
        let held = group_in_flight(status, g.id);
        let capacity = u64::from(g.max_in_flight.unwrap_or(0)) * u64::from(g.running);
        let used = if capacity == 0 {
            "-".to_string()
        } else {
            format!("{:.1}%", held as f64 * 100.0 / capacity as f64)
        };
        let _ = writeln!(
            out,
            "{:<6} {:>9} {:>9} {:>6}",
            format!("g{}", g.id),
            held,
            capacity,
            used
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn snapshots_name_every_counter() {
        let stats = ProxyStats::default();
        stats.requests.store(7, Ordering::Relaxed);
        let map = proxy_stats(&stats);
        assert_eq!(map.len(), ProxyStats::NAMES.len());
        assert_eq!(map["requests"], 7);
        assert_eq!(
            worker_stats(&WorkerStats::default()).len(),
            WorkerStats::NAMES.len()
        );
    }

    #[test]
    fn dropped_log_lines_are_summed_and_a_full_log_dir_is_said_plainly() {
        let proxy = ProxyStats::default();
        proxy.log_dropped.store(3, Ordering::Relaxed);
        let worker = WorkerStats::default();
        worker.log_dropped.store(4, Ordering::Relaxed);
        let workers = BTreeMap::from([("worker-g1-0".to_string(), worker_stats(&worker))]);
        let log = LogStatus::new(
            2,
            &proxy_stats(&proxy),
            &workers,
            Some("log dir full: /x".into()),
        );
        assert_eq!((log.dropped, log.controller_dropped), (9, 2));
        let json = serde_json::to_value(&log).unwrap();
        assert_eq!(json["warning"], "log dir full: /x");
        let back: Status = serde_json::from_value(serde_json::json!({
            "service": "s", "controller_pid": 1, "state": "running",
            "listeners": [], "processes": [], "proxy_stats": {}, "worker_stats": {},
        }))
        .unwrap();
        assert_eq!(back.log.dropped, 0, "an older controller's status parses");
        let mut status = back;
        status.log = log;
        let table = render_table(&status);
        assert!(
            table.contains("log: 9 lines dropped (controller 2)  WARNING: log dir full: /x"),
            "{table}"
        );
    }

    #[test]
    fn the_table_names_only_real_counters() {
        assert!(has_all(ProxyStats::NAMES, &TABLE_PROXY_COUNTERS));
        assert!(has_name(WorkerStats::NAMES, REQUESTS_COUNTER));
        assert!(!has_name(ProxyStats::NAMES, "request"));
        assert!(!has_all(ProxyStats::NAMES, &["requests", "nope"]));
    }

    #[test]
    fn micro_thread_groups_show_their_pool_use() {
        let worker = |index: u32, pid: Option<u32>| ProcessStatus {
            name: format!("worker-g2-{index}"),
            role: "worker".into(),
            group: Some(2),
            index: Some(index),
            shard: None,
            pid,
            state: ProcState::Ready,
            restarts: 0,
            uptime_s: 1,
            config_generation: Some(0),
            last_exit: None,
            crash_loop: false,
        };
        let held = |n: u64| BTreeMap::from([(IN_FLIGHT_GAUGE.to_string(), n)]);
        let group = |id: u32, max_in_flight: Option<u32>| GroupStatus {
            id,
            running: 2,
            workers: 2,
            min: 2,
            max: 2,
            scaling: false,
            busy_ratio: None,
            last_decision: None,
            last_change: None,
            max_in_flight,
        };
        let status = Status {
            service: "relay".into(),
            controller_pid: 10,
            state: ServiceState::Running,
            config_generation: 0,
            reloading: false,
            listeners: Vec::new(),
            processes: vec![worker(0, Some(100)), worker(1, Some(101)), worker(2, None)],
            proxy_stats: proxy_stats(&ProxyStats::default()),
            proxy_shard_stats: BTreeMap::new(),
            worker_stats: BTreeMap::from([
                ("worker-g2-0".to_string(), held(30)),
                ("worker-g2-1".to_string(), held(20)),
                ("worker-g2-2".to_string(), held(99)),
            ]),
            groups: vec![group(1, None), group(2, Some(100))],
            l5: None,
            log: LogStatus::default(),
        };
        let table = render_table(&status);
        assert!(table.contains("MICRO-THREADS"), "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["g2", "50", "200", "25.0%"]),
            "the running workers' gauges against 100 x 2: {table}"
        );
        assert!(
            !table
                .lines()
                .any(|l| l.starts_with("g1 ") && l.contains('%')),
            "a plain group has no pool: {table}"
        );
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["groups"][1]["max_in_flight"], 100);
    }

    #[test]
    fn json_shape_and_table() {
        let status = Status {
            service: "echo".into(),
            controller_pid: 10,
            state: ServiceState::Running,
            config_generation: 1,
            reloading: false,
            listeners: vec![ListenerStatus {
                index: 0,
                transport: "tcp".into(),
                addr: "127.0.0.1:1".into(),
            }],
            processes: vec![ProcessStatus {
                name: "worker-g1-0".into(),
                role: "worker".into(),
                group: Some(1),
                index: Some(0),
                shard: None,
                pid: None,
                state: ProcState::Backoff,
                restarts: 6,
                uptime_s: 0,
                config_generation: None,
                last_exit: Some("exit status 3".into()),
                crash_loop: true,
            }],
            proxy_stats: proxy_stats(&ProxyStats::default()),
            proxy_shard_stats: BTreeMap::new(),
            worker_stats: BTreeMap::new(),
            groups: vec![GroupStatus {
                id: 1,
                running: 2,
                workers: 3,
                min: 1,
                max: 4,
                scaling: true,
                busy_ratio: Some(0.75),
                last_decision: Some(DecisionStatus {
                    at_unix_s: 1000,
                    age_s: 3,
                    decision: Decision {
                        action: crate::scaling::Action::Up,
                        from: 2,
                        to: 3,
                        busy_s: 1.5,
                        interval_s: 1.0,
                        running: 2,
                        busy_ratio: 0.75,
                        up_busy: 0.6,
                        down_busy: 0.2,
                        reason: "busy".into(),
                    },
                }),
                last_change: None,
                max_in_flight: None,
            }],
            l5: Some(L5Status {
                sid: Some(spp_ipc::l5::Sid {
                    modid: 64001,
                    cmdid: 1,
                }),
                group: 1,
                registered: true,
                instances: vec!["127.0.0.1:1".into()],
                backend: "embedded".into(),
                backend_error: None,
                sids: 1,
                nodes: 2,
                dropped: 0,
                generation: 4,
            }),
            log: LogStatus::default(),
        };
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["state"], "running");
        assert_eq!(json["processes"][0]["state"], "backoff");
        assert_eq!(json["processes"][0]["pid"], serde_json::Value::Null);
        assert_eq!(json["listeners"][0]["transport"], "tcp");
        assert!(!status.all_ready());
        let table = render_table(&status);
        assert!(table.contains("CRASH LOOP"), "{table}");
        assert!(table.contains("worker-g1-0"), "{table}");
        assert!(
            table.contains("3 s ago: up 2 -> 3: busy 1.50 s of 2 worker(s) x 1.00 s = 75.0%"),
            "{table}"
        );
        let group = &json["groups"][0];
        assert_eq!(group["busy_ratio"], 0.75);
        assert_eq!(group["last_decision"]["action"], "up");
        assert_eq!(group["last_decision"]["from"], 2);
        assert_eq!(group["last_decision"]["age_s"], 3);
        assert_eq!(group["last_change"], serde_json::Value::Null);
        assert_eq!(json["config_generation"], 1);
        assert_eq!(json["l5"]["registered"], true);
        assert_eq!(json["l5"]["sid"]["cmdid"], 1);
        assert!(
            table.contains("l5: sid 64001:1 registered (127.0.0.1:1); backend embedded"),
            "{table}"
        );
        for name in TABLE_PROXY_COUNTERS {
            assert!(table.contains(&format!(" {name}=0")), "{name}: {table}");
        }
    }
}
