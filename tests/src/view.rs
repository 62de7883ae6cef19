//! Typed views of `spp status --json`: the processes, the workers of a
//! group, and the counters, so tests do not pick through JSON by hand.

use serde_json::Value;

/// State name of a serving process.
pub const READY: &str = "ready";

/// One entry of `processes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proc {
    /// `"proxy"` or `"worker-g<G>-<I>"`.
    pub name: String,
    /// Group id (workers).
    pub group: Option<u32>,
    /// Pid while running.
    pub pid: Option<i32>,
    /// `"starting"`, `"ready"`, `"draining"`, `"down"`, `"backoff"`.
    pub state: String,
    /// Restarts so far.
    pub restarts: u64,
    /// How the previous run ended.
    pub last_exit: Option<String>,
}

impl Proc {
    fn from_json(p: &Value) -> Proc {
        Proc {
            name: p["name"].as_str().unwrap_or_default().to_string(),
            group: p["group"].as_u64().and_then(|g| u32::try_from(g).ok()),
            pid: p["pid"].as_i64().and_then(|pid| i32::try_from(pid).ok()),
            state: p["state"].as_str().unwrap_or_default().to_string(),
            restarts: p["restarts"].as_u64().unwrap_or(0),
            last_exit: p["last_exit"].as_str().map(str::to_string),
        }
    }

    /// Running and serving.
    pub fn ready(&self) -> bool {
        self.pid.is_some() && self.state == READY
    }
}

/// Every process in `status`.
pub fn processes(status: &Value) -> Vec<Proc> {
    status["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(Proc::from_json)
        .collect()
}

/// Every worker slot of `group` (running or not).
pub fn workers(status: &Value, group: u32) -> Vec<Proc> {
    processes(status)
        .into_iter()
        .filter(|p| p.group == Some(group) && p.name != "proxy")
        .collect()
}

/// The workers of `group` that run and serve.
pub fn ready_workers(status: &Value, group: u32) -> Vec<Proc> {
    workers(status, group)
        .into_iter()
        .filter(Proc::ready)
        .collect()
}

/// The workers of `group` that have a pid (any state).
pub fn running_workers(status: &Value, group: u32) -> Vec<Proc> {
    workers(status, group)
        .into_iter()
        .filter(|p| p.pid.is_some())
        .collect()
}

/// The process called `name`.
pub fn process(status: &Value, name: &str) -> Option<Proc> {
    processes(status).into_iter().find(|p| p.name == name)
}

/// A proxy counter (0 when absent).
pub fn proxy_counter(status: &Value, counter: &str) -> u64 {
    status["proxy_stats"][counter].as_u64().unwrap_or(0)
}

/// A worker counter summed over every worker of the status (0 when absent).
pub fn worker_counter_sum(status: &Value, counter: &str) -> u64 {
    status["worker_stats"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(_, stats)| stats[counter].as_u64())
        .sum()
}

/// The sorted pids of every running process (proxy and workers).
pub fn pids(status: &Value) -> Vec<i32> {
    let mut pids: Vec<i32> = processes(status).iter().filter_map(|p| p.pid).collect();
    pids.sort_unstable();
    pids
}
