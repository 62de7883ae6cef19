//! The figures of SPP's table and the targets of issue 12: spp's relay
//! against spp's echo alone and against the tokio relay, and sleep-echo's
//! throughput against the ideal `connections / sleep` with its p99; and
//! issue 15's async relay against the micro-thread relay ([`async_relay`]).
//! Each
//! [`Check`] is computed from the scenarios' medians; one whose systems
//! answered any request wrongly is never "met".

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::report::ScenarioResult;
use super::scenario::{names, System};
use super::summary::SystemResult;

/// relay → echo / echo alone, long N=64, one relay worker.
pub const RELAY_OVER_ECHO_MIN: f64 = 0.45;
/// relay → echo / tokio relay (one thread) → direct echo.
pub const RELAY_OVER_TOKIO_MIN: f64 = 0.8;
/// async relay (runtime driven on the worker's thread) → direct /
/// micro-thread relay → direct, long N=64 (issue 15).
pub const ASYNC_RELAY_OVER_RELAY_MIN: f64 = 0.9;
/// sleep-echo throughput / (connections / sleep).
pub const SLEEP_OVER_IDEAL_MIN: f64 = 0.9;
/// sleep-echo p99 / sleep, percent (115 ms for 100 ms).
pub const SLEEP_P99_PERCENT_MAX: f64 = 115.0;
/// A hundred.
const PERCENT: f64 = 100.0;
/// Microseconds per millisecond.
const US_PER_MS: f64 = 1_000.0;

/// Which side of a target a figure must be on.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// The figure is this or more.
    AtLeast(f64),
    /// The figure is this or less.
    AtMost(f64),
}

impl Bound {
    /// Whether `value` is on the right side.
    pub fn holds(self, value: f64) -> bool {
        match self {
            Bound::AtLeast(min) => value >= min,
            Bound::AtMost(max) => value <= max,
        }
    }
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::AtLeast(v) => write!(f, "≥ {v}"),
            Bound::AtMost(v) => write!(f, "≤ {v}"),
        }
    }
}

/// One figure of the table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// The scenario it comes from.
    pub scenario: String,
    /// Machine name (`relay_over_echo`, `sleep_over_ideal`, ...).
    pub name: String,
    /// What it is, for the table.
    pub title: String,
    /// The figure (none when a system did not run or served nothing).
    pub value: Option<f64>,
    /// The target, where it sets one for this scenario.
    pub target: Option<Bound>,
    /// Whether the target is met (none without target or value).
    pub met: Option<bool>,
}

fn find(sc: &ScenarioResult, system: System) -> Option<&SystemResult> {
    sc.systems.iter().find(|r| r.system == system)
}

pub(super) fn check(
    sc: &ScenarioResult,
    name: &str,
    title: String,
    value: Option<f64>,
    clean: bool,
    target: Option<Bound>,
) -> Check {
    let value = value.filter(|v| v.is_finite());
    Check {
        scenario: sc.name.clone(),
        name: name.to_owned(),
        title,
        value,
        target,
        met: target.zip(value).map(|(t, v)| clean && t.holds(v)),
    }
}

/// `a`'s median throughput over `b`'s, and whether both were error-free.
pub(super) fn throughput_ratio(sc: &ScenarioResult, a: System, b: System) -> (Option<f64>, bool) {
    match (find(sc, a), find(sc, b)) {
        (Some(a), Some(b)) if b.throughput_rps.median > 0.0 => (
            Some(a.throughput_rps.median / b.throughput_rps.median),
            a.errors == 0 && b.errors == 0,
        ),
        _ => (None, false),
    }
}

/// The echo and relay figures of one scenario.
fn relay_checks(sc: &ScenarioResult, targets: bool) -> Vec<Check> {
    let figures = [
        (
            "relay_over_echo",
            "req/s spp relay→echo / spp echo",
            System::SppRelay,
            System::Spp,
            Some(RELAY_OVER_ECHO_MIN),
        ),
        (
            "relay_over_tokio_1t",
            "req/s spp relay→echo / tokio relay 1t→direct",
            System::SppRelay,
            System::TokioRelay1,
            Some(RELAY_OVER_TOKIO_MIN),
        ),
        (
            "relay_over_tokio",
            "req/s spp relay→echo / tokio relay→direct",
            System::SppRelay,
            System::TokioRelay,
            None,
        ),
        (
            "relay_direct_over_tokio_1t",
            "req/s spp relay→direct / tokio relay 1t→direct",
            System::SppRelayDirect,
            System::TokioRelay1,
            None,
        ),
        (
            "tokio_1t_over_tokio",
            "req/s tokio relay 1t / tokio relay",
            System::TokioRelay1,
            System::TokioRelay,
            None,
        ),
        (
            "spp_over_direct",
            "req/s spp echo / direct echo",
            System::Spp,
            System::Direct,
            None,
        ),
    ];
    figures
        .iter()
        .map(|&(name, title, a, b, min)| {
            let (value, clean) = throughput_ratio(sc, a, b);
            let target = min.filter(|_| targets).map(Bound::AtLeast);
            check(sc, name, title.to_owned(), value, clean, target)
        })
        .collect()
}

/// The sleep-echo figures of one scenario.
fn sleep_checks(sc: &ScenarioResult, sleep: Duration, targets: bool) -> Vec<Check> {
    let Some(r) = find(sc, System::SppSleep) else {
        return Vec::new();
    };
    let clean = r.errors == 0;
    let sleep_s = sleep.as_secs_f64();
    let ideal = (sleep_s > 0.0).then(|| sc.connections as f64 / sleep_s);
    let sleep_ms = sleep.as_micros() as f64 / US_PER_MS;
    vec![
        check(
            sc,
            "sleep_over_ideal",
            format!("req/s / ({} conns / {sleep_ms:.0} ms)", sc.connections),
            ideal.map(|i| r.throughput_rps.median / i),
            clean,
            targets.then_some(Bound::AtLeast(SLEEP_OVER_IDEAL_MIN)),
        ),
        check(
            sc,
            "sleep_p99_ms",
            "p99 ms".to_owned(),
            Some(r.p99_us.median / US_PER_MS),
            clean,
            targets.then_some(Bound::AtMost(sleep_ms * SLEEP_P99_PERCENT_MAX / PERCENT)),
        ),
    ]
}

/// Every figure of the table's scenarios in `scenarios` (the targets on
/// the long-connection ones, as the issue sets them).
pub fn table(scenarios: &[ScenarioResult], sleep: Duration) -> Vec<Check> {
    let mut out = Vec::new();
    for sc in scenarios {
        match sc.name.as_str() {
            names::ECHO_LONG => out.extend(relay_checks(sc, true)),
            names::ECHO_SHORT => out.extend(relay_checks(sc, false)),
            names::SLEEP_LONG => out.extend(sleep_checks(sc, sleep, true)),
            names::SLEEP_SHORT => out.extend(sleep_checks(sc, sleep, false)),
            _ => {}
        }
    }
    out
}

/// The async relay figures (issue 15): each relay in front of the direct
/// echo, throughput and CPU per request against the micro-thread relay,
/// the two runtime placements against each other, and against the tokio
/// relay on one thread. The target is on the default (driven) placement.
pub fn async_relay(scenarios: &[ScenarioResult]) -> Vec<Check> {
    let throughput = [
        (
            "relay_async_over_relay",
            "req/s async relay (driven) / micro-thread relay",
            System::SppRelayAsync,
            System::SppRelayDirect,
            Some(ASYNC_RELAY_OVER_RELAY_MIN),
        ),
        (
            "relay_async_thread_over_relay",
            "req/s async relay (thread) / micro-thread relay",
            System::SppRelayAsyncThread,
            System::SppRelayDirect,
            None,
        ),
        (
            "relay_async_thread_over_driven",
            "req/s async relay (thread) / async relay (driven)",
            System::SppRelayAsyncThread,
            System::SppRelayAsync,
            None,
        ),
        (
            "relay_async_over_tokio_1t",
            "req/s async relay (driven) / tokio relay 1t",
            System::SppRelayAsync,
            System::TokioRelay1,
            None,
        ),
        (
            "relay_over_tokio_1t",
            "req/s micro-thread relay / tokio relay 1t",
            System::SppRelayDirect,
            System::TokioRelay1,
            None,
        ),
    ];
    let cpu = [
        (
            "relay_async_cpu_over_relay",
            "CPU/req async relay (driven) / micro-thread relay",
            System::SppRelayAsync,
            System::SppRelayDirect,
        ),
        (
            "relay_async_thread_cpu_over_relay",
            "CPU/req async relay (thread) / micro-thread relay",
            System::SppRelayAsyncThread,
            System::SppRelayDirect,
        ),
    ];
    let mut out = Vec::new();
    for sc in scenarios
        .iter()
        .filter(|sc| sc.name == names::ASYNC_RELAY_LONG)
    {
        for &(name, title, a, b, min) in &throughput {
            let (value, clean) = throughput_ratio(sc, a, b);
            out.push(check(
                sc,
                name,
                title.to_owned(),
                value,
                clean,
                min.map(Bound::AtLeast),
            ));
        }
        for &(name, title, a, b) in &cpu {
            let (value, clean) = super::shards::cpu_ratio(sc, a, b);
            out.push(check(sc, name, title.to_owned(), value, clean, None));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::summary::{Ratios, Spread};

    fn system(system: System, rps: f64, p99_us: f64, errors: u64) -> SystemResult {
        let one = |v| Spread {
            median: v,
            min: v,
            max: v,
        };
        SystemResult {
            system,
            throughput_rps: one(rps),
            p50_us: one(p99_us / 2.0),
            p99_us: one(p99_us),
            errors,
            rounds: Vec::new(),
            cpu_us: Default::default(),
        }
    }

    fn scenario(name: &str, connections: usize, systems: Vec<SystemResult>) -> ScenarioResult {
        ScenarioResult {
            name: name.into(),
            title: name.into(),
            connections,
            short: false,
            ratios: Ratios::default(),
            systems,
        }
    }

    #[test]
    fn relay_figures_are_ratios_with_targets_on_long_connections() {
        let long = scenario(
            names::ECHO_LONG,
            64,
            vec![
                system(System::Direct, 100_000.0, 1.0, 0),
                system(System::Spp, 80_000.0, 1.0, 0),
                system(System::SppRelay, 40_000.0, 1.0, 0),
                system(System::TokioRelay1, 45_000.0, 1.0, 0),
                system(System::TokioRelay, 60_000.0, 1.0, 0),
            ],
        );
        let mut short = long.clone();
        short.name = names::ECHO_SHORT.into();
        short.systems[2].errors = 3;
        let checks = table(&[long, short], Duration::from_millis(100));
        let get = |sc: &str, name: &str| {
            checks
                .iter()
                .find(|c| c.scenario == sc && c.name == name)
                .unwrap_or_else(|| panic!("{sc} {name}: {checks:?}"))
        };
        let c = get(names::ECHO_LONG, "relay_over_echo");
        assert_eq!((c.value, c.met), (Some(0.5), Some(true)));
        let c = get(names::ECHO_LONG, "relay_over_tokio_1t");
        assert_eq!(c.met, Some(true), "{c:?}");
        let c = get(names::ECHO_LONG, "relay_over_tokio");
        assert_eq!((c.value, c.target), (Some(40.0 / 60.0), None));
        let c = get(names::ECHO_SHORT, "relay_over_echo");
        assert_eq!((c.target, c.met), (None, None));
        assert_eq!(get(names::ECHO_LONG, "spp_over_direct").value, Some(0.8));
    }

    #[test]
    fn async_relay_figures_are_ratios_against_the_micro_thread_relay() {
        let sc = scenario(
            names::ASYNC_RELAY_LONG,
            64,
            vec![
                system(System::SppRelayDirect, 50_000.0, 1.0, 0),
                system(System::SppRelayAsync, 47_000.0, 1.0, 0),
                system(System::SppRelayAsyncThread, 40_000.0, 1.0, 0),
                system(System::TokioRelay1, 50_000.0, 1.0, 0),
            ],
        );
        let checks = async_relay(std::slice::from_ref(&sc));
        let get = |name: &str| checks.iter().find(|c| c.name == name).unwrap();
        let c = get("relay_async_over_relay");
        assert_eq!((c.value, c.met), (Some(0.94), Some(true)));
        let c = get("relay_async_thread_over_relay");
        assert_eq!((c.value, c.target), (Some(0.8), None));
        // No CPU figures were read: no value.
        assert_eq!(get("relay_async_cpu_over_relay").value, None);
        let mut slow = sc;
        slow.systems[1].throughput_rps.median = 40_000.0;
        let checks = async_relay(&[slow]);
        assert_eq!(checks[0].met, Some(false));
    }

    #[test]
    fn sleep_figures_compare_with_the_ideal_and_errors_fail_them() {
        let sc = scenario(
            names::SLEEP_LONG,
            2_000,
            vec![system(System::SppSleep, 19_000.0, 110_000.0, 0)],
        );
        let checks = table(std::slice::from_ref(&sc), Duration::from_millis(100));
        let near = |v: Option<f64>, want: f64| v.is_some_and(|v| (v - want).abs() < 1e-9);
        assert!(near(checks[0].value, 0.95), "{checks:?}");
        assert_eq!(checks[0].met, Some(true));
        assert_eq!(checks[1].value, Some(110.0));
        assert_eq!(checks[1].target, Some(Bound::AtMost(115.0)));
        assert_eq!(checks[1].met, Some(true));
        let mut bad = sc;
        bad.systems[0].errors = 1;
        let checks = table(&[bad], Duration::from_millis(100));
        assert_eq!(checks[0].met, Some(false));
    }
}
