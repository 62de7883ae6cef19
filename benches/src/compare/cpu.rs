//! CPU time of the servers under test, read from `/proc/PID/stat` (user +
//! system ticks) before and after a load run: the RESP suite's server CPU
//! per request and the proxy-shard suite's CPU per request of every spp
//! process (controller, each proxy shard, each worker) and of the direct
//! baseline.

use std::collections::BTreeMap;

use serde_json::Value;

/// Ticks per second when `sysconf` does not say.
const DEFAULT_HZ: f64 = 100.0;
/// Microseconds per second.
const US_PER_S: f64 = 1e6;
/// The label of the sum over every watched process.
pub const TOTAL: &str = "total";
/// The label of the spp controller.
pub const CONTROLLER: &str = "controller";
/// The label of the load generator (this process), not in [`TOTAL`].
pub const CLIENT: &str = "client";
/// The label of every other process on the machine (other helpers' builds,
/// idle services), not in [`TOTAL`].
pub const OTHERS: &str = "others";

/// User + system CPU ticks of one process so far (none once it is gone).
pub fn ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // utime and stime are fields 14 and 15; the 12th and 13th after the
    // command name's closing parenthesis.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// Busy ticks of the whole machine so far (every CPU: user, nice, system,
/// irq, softirq, steal from `/proc/stat`).
pub fn machine_busy_ticks() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0;
    };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| v.get(i)).sum()
}

/// User + system CPU ticks of `pids` so far (a vanished pid counts 0).
pub fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&pid| ticks(pid)).sum()
}

/// CPU seconds `pids` have used so far, together.
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    cpu_ticks(pids) as f64 / ticks_per_second()
}

/// Clock ticks per second of `/proc/PID/stat`.
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        DEFAULT_HZ
    }
}

/// A process whose CPU a run measures, by its label (`controller`,
/// `proxy-0`, `worker-g1-0`, `direct`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watched {
    /// Its label in the figures.
    pub label: String,
    /// Its pid.
    pub pid: u32,
}

/// The controller and every running child named in a `spp status --json`.
pub fn spp_processes(status: &Value) -> Vec<Watched> {
    let controller = status["controller_pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .map(|pid| Watched {
            label: CONTROLLER.to_owned(),
            pid,
        });
    let children = status["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some(Watched {
                label: p["name"].as_str()?.to_owned(),
                pid: u32::try_from(p["pid"].as_u64()?).ok()?,
            })
        });
    controller.into_iter().chain(children).collect()
}

/// Every watched process's ticks, then this process's, then the
/// machine's busy ticks, now (0 for one that is gone).
pub fn snapshot(watched: &[Watched]) -> Vec<u64> {
    watched
        .iter()
        .map(|w| ticks(w.pid).unwrap_or(0))
        .chain([ticks(std::process::id()).unwrap_or(0), machine_busy_ticks()])
        .collect()
}

/// µs of CPU per request of each watched process between two
/// [`snapshot`]s, their sum under [`TOTAL`], and (outside the sum) this
/// process's under [`CLIENT`] and the rest of the machine's under
/// [`OTHERS`]; empty when no request was served.
pub fn per_request(
    watched: &[Watched],
    before: &[u64],
    after: &[u64],
    requests: f64,
    hz: f64,
) -> BTreeMap<String, f64> {
    if !(requests > 0.0 && hz > 0.0) {
        return BTreeMap::new();
    }
    let us = |ticks: u64| ticks as f64 / hz * US_PER_S / requests;
    let mut out = BTreeMap::new();
    let mut total = 0;
    for (w, (b, a)) in watched.iter().zip(before.iter().zip(after)) {
        let spent = a.saturating_sub(*b);
        total += spent;
        *out.entry(w.label.clone()).or_insert(0.0) += us(spent);
    }
    out.insert(TOTAL.to_owned(), us(total));
    let n = watched.len();
    let delta = |i: usize| match (before.get(i), after.get(i)) {
        (Some(b), Some(a)) => a.saturating_sub(*b),
        _ => 0,
    };
    if before.len() == n + 2 && after.len() == n + 2 {
        let client = delta(n);
        out.insert(CLIENT.to_owned(), us(client));
        let others = delta(n + 1).saturating_sub(total + client);
        out.insert(OTHERS.to_owned(), us(others));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_ticks_are_readable() {
        assert!(ticks(std::process::id()).is_some());
        assert_eq!(ticks(u32::MAX), None);
        assert!(ticks_per_second() > 0.0);
    }

    #[test]
    fn own_cpu_time_is_read() {
        let me = std::process::id();
        let spin = std::time::Instant::now();
        // Burns CPU until a tick shows (bounded: the machine may be busy).
        while cpu_seconds(&[me]) == 0.0 && spin.elapsed() < std::time::Duration::from_secs(5) {
            std::hint::spin_loop();
        }
        assert!(cpu_seconds(&[me]) > 0.0);
        assert_eq!(cpu_seconds(&[u32::MAX]), 0.0);
    }

    #[test]
    fn status_names_the_controller_and_running_children() {
        let status = serde_json::json!({
            "controller_pid": 10,
            "processes": [
                {"name": "proxy-0", "pid": 11},
                {"name": "proxy-1", "pid": 12},
                {"name": "worker-g1-0", "pid": null},
            ]
        });
        let labels: Vec<(String, u32)> = spp_processes(&status)
            .into_iter()
            .map(|w| (w.label, w.pid))
            .collect();
        assert_eq!(
            labels,
            [
                ("controller".to_owned(), 10),
                ("proxy-0".to_owned(), 11),
                ("proxy-1".to_owned(), 12)
            ]
        );
    }

    #[test]
    fn cpu_per_request_is_per_label_and_summed() {
        let watched = [
            Watched {
                label: "proxy-0".into(),
                pid: 1,
            },
            Watched {
                label: "worker".into(),
                pid: 2,
            },
        ];
        // 100 Hz: 10 ticks = 0.1 s over 1000 requests = 100 µs each.
        let got = per_request(&watched, &[5, 0], &[15, 5], 1_000.0, 100.0);
        assert_eq!(got["proxy-0"], 100.0);
        assert_eq!(got["worker"], 50.0);
        assert_eq!(got[TOTAL], 150.0);
        assert!(!got.contains_key(CLIENT));
        // With the client's and the machine's ticks: 30 busy, 15 ours, 5
        // the client's, 10 someone else's.
        let got = per_request(&watched, &[5, 0, 0, 100], &[15, 5, 5, 130], 1_000.0, 100.0);
        assert_eq!((got[TOTAL], got[CLIENT], got[OTHERS]), (150.0, 50.0, 100.0));
        assert_eq!(snapshot(&watched[..0]).len(), 2);
        assert!(per_request(&watched, &[0, 0], &[1, 1], 0.0, 100.0).is_empty());
    }
}
