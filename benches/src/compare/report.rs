//! The comparison's result: [`CompareReport`] (serde, for `--json`) and its
//! human table: for the classic suite one column per system, for SPP's
//! table and the shard suite one line per system and scenario, then (shard
//! suite) CPU per request by process and the accept balance, then the
//! figures and targets.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::checks::Check;
use super::cpu::{CLIENT, OTHERS, TOTAL};
use super::scenario::{Suite, System, ALL_SYSTEMS};
use super::shards::ShardFigures;
use super::summary::{Ratios, Spread, SystemResult};

/// Width of the scenario column.
const SCENARIO_WIDTH: usize = 24;
/// Width of the figure column.
const FIGURE_WIDTH: usize = 8;
/// Width of one system's column.
const SYSTEM_WIDTH: usize = 25;
/// Width of a ratio column.
const RATIO_WIDTH: usize = 12;
/// Numbers from this size on print as thousands (`211.0k`).
const THOUSAND: f64 = 1_000.0;
/// Latencies below this print with a decimal.
const SMALL_US: f64 = 100.0;
/// Width of the system column of SPP's table.
const TABLE_SYSTEM_WIDTH: usize = 30;
/// Width of a figure column of SPP's table.
const TABLE_FIGURE_WIDTH: usize = 22;
/// Width of the scenario column of SPP's table.
const TABLE_SCENARIO_WIDTH: usize = 28;
/// Width of a check's scenario.
const CHECK_SCENARIO_WIDTH: usize = 16;
/// Width of a check's title.
const CHECK_WIDTH: usize = 46;

/// One scenario over every system.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    /// Machine name.
    pub name: String,
    /// Human title.
    pub title: String,
    /// Connections (or concurrent short-connection loops).
    #[serde(default)]
    pub connections: usize,
    /// Short connections.
    #[serde(default)]
    pub short: bool,
    /// One entry per system that ran it.
    pub systems: Vec<SystemResult>,
    /// spp against the others.
    pub ratios: Ratios,
}

/// The pids of what the comparison started (all stopped when it returns).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Processes {
    /// The spp controller, proxy and workers.
    pub spp: Vec<u32>,
    /// The direct baseline.
    pub direct: Option<u32>,
    /// haproxy.
    pub haproxy: Option<u32>,
    /// The other spp services' and the tokio relays' pids.
    #[serde(default)]
    pub extra: Vec<u32>,
}

/// A system that could not take part, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// Which system.
    pub system: System,
    /// Why.
    pub why: String,
}

/// Everything a comparison measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompareReport {
    /// Which scenarios ran.
    #[serde(default)]
    pub suite: Suite,
    /// Rounds per scenario.
    pub rounds: usize,
    /// Measured window of each run, seconds.
    pub duration_s: f64,
    /// Warm-up of each run, seconds.
    pub warmup_s: f64,
    /// Echo payload bytes.
    pub payload: usize,
    /// spp worker processes.
    pub workers: u32,
    /// spp proxy processes (shards) of the echo service.
    #[serde(default = "one_proxy")]
    pub proxy_processes: u16,
    /// Load threads.
    pub threads: usize,
    /// haproxy's version line, or why it did not take part.
    pub haproxy: String,
    /// sleep-echo's sleep, ms (SPP's table).
    #[serde(default)]
    pub sleep_ms: u64,
    /// spp relay workers (SPP's table).
    #[serde(default)]
    pub relay_workers: u32,
    /// The multi-thread tokio relay's threads (none: one per CPU).
    #[serde(default)]
    pub tokio_threads: Option<usize>,
    /// Systems that could not take part.
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    /// SPP's table's (or the shard suite's) figures and targets.
    #[serde(default)]
    pub checks: Vec<Check>,
    /// The shard suite's shard count, input cost and accept balance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<ShardFigures>,
    /// Every scenario.
    pub scenarios: Vec<ScenarioResult>,
    /// What was started (and stopped).
    pub processes: Processes,
    /// SVG files written by `--plot`.
    pub plots: Vec<String>,
}

fn rate(v: f64) -> String {
    if v >= THOUSAND {
        format!("{:.1}k", v / THOUSAND)
    } else {
        format!("{v:.0}")
    }
}

fn micros(v: f64) -> String {
    if v < SMALL_US {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn cell(s: &Spread, f: fn(f64) -> String) -> String {
    format!("{} ({}–{})", f(s.median), f(s.min), f(s.max))
}

fn ratio(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.2}")).unwrap_or_else(|| "-".into())
}

type Figure = (
    &'static str,
    fn(&SystemResult) -> &Spread,
    fn(f64) -> String,
);

const FIGURES: [Figure; 3] = [
    ("req/s", |r| &r.throughput_rps, rate),
    ("p50 µs", |r| &r.p50_us, micros),
    ("p99 µs", |r| &r.p99_us, micros),
];

fn check_value(c: &Check) -> String {
    c.value
        .map(|v| format!("{v:.2}"))
        .unwrap_or_else(|| "-".into())
}

fn verdict(c: &Check) -> String {
    match (c.target, c.met) {
        (Some(t), Some(true)) => format!("target {t}: met"),
        (Some(t), Some(false)) => format!("target {t}: NOT met"),
        (Some(t), None) => format!("target {t}: no figure"),
        (None, _) => String::new(),
    }
}

impl CompareReport {
    /// SPP's table: one line per scenario and system, then the figures.
    fn fmt_table(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.shards {
            writeln!(
                f,
                "spp-bench compare --shards: {} round(s) of {}s (warm-up {}s) per system, in turn; {}-byte payload; spp workers {}; {} proxy shards against 1; costly proxy input {} µs/request; load threads {}",
                self.rounds,
                self.duration_s,
                self.warmup_s,
                self.payload,
                self.workers,
                s.shard_count,
                s.input_cost_us,
                self.threads
            )?;
        } else if self.suite == Suite::AsyncRelay {
            writeln!(
                f,
                "spp-bench compare --async-relay: {} round(s) of {}s (warm-up {}s) per system, in turn; {}-byte payload; every relay in front of the direct echo; relay workers {} (micro-thread relay; async relay with its runtime driven on the worker's thread, and on a plugin thread); tokio relay threads: 1 and {}; load threads {}",
                self.rounds,
                self.duration_s,
                self.warmup_s,
                self.payload,
                self.relay_workers,
                self.tokio_threads
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "one per CPU".into()),
                self.threads
            )?;
        } else {
            self.fmt_table_header(f)?;
        }
        self.fmt_table_rows(f)
    }

    fn fmt_table_header(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "spp-bench compare --table: {} round(s) of {}s (warm-up {}s) per system, in turn; {}-byte payload; spp echo workers {}, relay workers {}, sleep-echo 1 worker sleeping {} ms; tokio relay threads: 1 and {}; load threads {}",
            self.rounds,
            self.duration_s,
            self.warmup_s,
            self.payload,
            self.workers,
            self.relay_workers,
            self.sleep_ms,
            self.tokio_threads
                .map(|n| n.to_string())
                .unwrap_or_else(|| "one per CPU".into()),
            self.threads
        )
    }

    /// CPU µs per request of every process of every system that has them.
    fn fmt_cpu(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut header = false;
        for sc in &self.scenarios {
            for r in sc.systems.iter().filter(|r| !r.cpu_us.is_empty()) {
                if !header {
                    writeln!(f)?;
                    writeln!(
                        f,
                        "CPU µs per request (/proc utime+stime over warm-up and run; median (min–max); [client] the load generator, [others] the rest of the machine, not in the total)"
                    )?;
                    header = true;
                }
                let mut parts: Vec<String> = r
                    .cpu_us
                    .get(TOTAL)
                    .map(|t| format!("{TOTAL} {}", cell(t, micros)))
                    .into_iter()
                    .collect();
                parts.extend(
                    r.cpu_us
                        .iter()
                        .filter(|(label, _)| label.as_str() != TOTAL)
                        .filter(|(label, _)| ![CLIENT, OTHERS].contains(&label.as_str()))
                        .map(|(label, s)| format!("{label} {}", micros(s.median))),
                );
                parts.extend(
                    [CLIENT, OTHERS]
                        .into_iter()
                        .filter_map(|l| Some(format!("[{l} {}]", micros(r.cpu_us.get(l)?.median)))),
                );
                writeln!(
                    f,
                    "{:<TABLE_SCENARIO_WIDTH$} {:<TABLE_SYSTEM_WIDTH$} {}",
                    format!("{} (N={})", sc.title, sc.connections),
                    r.system.describe(),
                    parts.join(", ")
                )?;
            }
        }
        if let Some(s) = &self.shards {
            let b = &s.accept_balance;
            let shares: Vec<String> = b
                .per_shard
                .iter()
                .map(|(name, n)| format!("{name} {n}"))
                .collect();
            writeln!(f)?;
            writeln!(
                f,
                "accept balance: {} short connections, {} errors; accepted {}",
                b.connections,
                b.errors,
                shares.join(", ")
            )?;
        }
        Ok(())
    }

    fn fmt_table_rows(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.skipped {
            writeln!(f, "{}: skipped ({})", s.system, s.why)?;
        }
        writeln!(f, "cells: median of the rounds (min–max)")?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<TABLE_SCENARIO_WIDTH$} {:<TABLE_SYSTEM_WIDTH$} {:<TABLE_FIGURE_WIDTH$} {:<TABLE_FIGURE_WIDTH$} {:<TABLE_FIGURE_WIDTH$} errors",
            "scenario", "system", "req/s", "p50 µs", "p99 µs"
        )?;
        for sc in &self.scenarios {
            let title = format!("{} (N={})", sc.title, sc.connections);
            for (i, r) in sc.systems.iter().enumerate() {
                let shown = if i == 0 { title.as_str() } else { "" };
                writeln!(
                    f,
                    "{shown:<TABLE_SCENARIO_WIDTH$} {:<TABLE_SYSTEM_WIDTH$} {:<TABLE_FIGURE_WIDTH$} {:<TABLE_FIGURE_WIDTH$} {:<TABLE_FIGURE_WIDTH$} {}",
                    r.system.describe(),
                    cell(&r.throughput_rps, rate),
                    cell(&r.p50_us, micros),
                    cell(&r.p99_us, micros),
                    r.errors
                )?;
            }
        }
        self.fmt_cpu(f)?;
        if !self.checks.is_empty() {
            writeln!(f)?;
            writeln!(
                f,
                "figures (from the medians; a system with errors fails its target)"
            )?;
        }
        for c in &self.checks {
            let line = format!(
                "{:<CHECK_SCENARIO_WIDTH$} {:<CHECK_WIDTH$} {:>8}  {}",
                c.scenario,
                c.title,
                check_value(c),
                verdict(c)
            );
            writeln!(f, "{}", line.trim_end())?;
        }
        for p in &self.plots {
            writeln!(f, "plot {p}")?;
        }
        Ok(())
    }
}

/// [`CompareReport::proxy_processes`] of a report that does not say.
fn one_proxy() -> u16 {
    1
}

impl fmt::Display for CompareReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.suite != Suite::Classic {
            return self.fmt_table(f);
        }
        let shards = match self.proxy_processes {
            1 => String::new(),
            n => format!("; spp proxy processes {n}"),
        };
        writeln!(
            f,
            "spp-bench compare: {} round(s) of {}s (warm-up {}s) per system, A B A B; {}-byte echo payload; spp workers {}{shards}; load threads {}",
            self.rounds, self.duration_s, self.warmup_s, self.payload, self.workers, self.threads
        )?;
        writeln!(f, "haproxy: {}", self.haproxy)?;
        writeln!(f, "cells: median of the rounds (min–max)")?;
        let systems: Vec<System> = ALL_SYSTEMS
            .into_iter()
            .filter(|s| {
                self.scenarios
                    .iter()
                    .any(|sc| sc.systems.iter().any(|r| r.system == *s))
            })
            .collect();
        writeln!(f)?;
        write!(
            f,
            "{:<SCENARIO_WIDTH$} {:<FIGURE_WIDTH$}",
            "scenario", "figure"
        )?;
        for s in &systems {
            write!(f, " {:<SYSTEM_WIDTH$}", s.name())?;
        }
        writeln!(
            f,
            " {:>RATIO_WIDTH$} {:>RATIO_WIDTH$}",
            "spp/direct", "spp/haproxy"
        )?;
        for sc in &self.scenarios {
            for (i, (label, pick, format)) in FIGURES.iter().enumerate() {
                let title = if i == 0 { sc.title.as_str() } else { "" };
                write!(f, "{title:<SCENARIO_WIDTH$} {label:<FIGURE_WIDTH$}")?;
                for s in &systems {
                    let text = sc
                        .systems
                        .iter()
                        .find(|r| r.system == *s)
                        .map(|r| cell(pick(r), *format))
                        .unwrap_or_else(|| "-".into());
                    write!(f, " {text:<SYSTEM_WIDTH$}")?;
                }
                let (direct, haproxy) = match i {
                    0 => (
                        sc.ratios.throughput_spp_direct,
                        sc.ratios.throughput_spp_haproxy,
                    ),
                    1 => (sc.ratios.p50_spp_direct, None),
                    _ => (sc.ratios.p99_spp_direct, None),
                };
                writeln!(
                    f,
                    " {:>RATIO_WIDTH$} {:>RATIO_WIDTH$}",
                    ratio(direct),
                    ratio(haproxy)
                )?;
            }
            let errors: Vec<String> = sc
                .systems
                .iter()
                .filter(|r| r.errors > 0)
                .map(|r| format!("{} {}", r.system, r.errors))
                .collect();
            if !errors.is_empty() {
                writeln!(f, "{:<SCENARIO_WIDTH$} errors: {}", "", errors.join(", "))?;
            }
        }
        for p in &self.plots {
            writeln!(f, "plot {p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::checks::Bound;

    /// A one-round report of `suite` with nothing measured yet.
    fn bare(suite: Suite) -> CompareReport {
        CompareReport {
            suite,
            rounds: 1,
            duration_s: 1.0,
            warmup_s: 0.0,
            payload: 64,
            workers: 1,
            proxy_processes: 1,
            threads: 1,
            haproxy: "not in this suite".into(),
            sleep_ms: 0,
            relay_workers: 0,
            tokio_threads: None,
            skipped: Vec::new(),
            checks: Vec::new(),
            shards: None,
            scenarios: Vec::new(),
            processes: Processes::default(),
            plots: Vec::new(),
        }
    }

    #[test]
    fn the_shard_suite_prints_cpu_per_process_and_the_accept_balance() {
        use crate::compare::shards::AcceptBalance;
        let one = |v| Spread {
            median: v,
            min: v,
            max: v,
        };
        let cpu = [
            ("total", 5.5),
            ("proxy-0", 2.5),
            ("proxy-1", 2.0),
            ("client", 3.0),
        ]
        .into_iter()
        .map(|(l, v)| (l.to_owned(), one(v)))
        .collect();
        let report = CompareReport {
            shards: Some(ShardFigures {
                shard_count: 2,
                input_cost_us: 50,
                accept_balance: AcceptBalance {
                    connections: 10,
                    errors: 0,
                    per_shard: [("proxy-0".into(), 4), ("proxy-1".into(), 6)].into(),
                },
            }),
            scenarios: vec![ScenarioResult {
                name: "shards_cpu_n64".into(),
                title: "echo CPU".into(),
                connections: 64,
                short: false,
                systems: vec![SystemResult {
                    system: System::Spp,
                    throughput_rps: one(1.0),
                    p50_us: one(1.0),
                    p99_us: one(1.0),
                    errors: 0,
                    rounds: Vec::new(),
                    cpu_us: cpu,
                }],
                ratios: Ratios::default(),
            }],
            ..bare(Suite::Shards)
        };
        let text = report.to_string();
        assert!(text.contains("2 proxy shards against 1"), "{text}");
        assert!(
            text.contains("total 5.5 (5.5–5.5), proxy-0 2.5, proxy-1 2.0, [client 3.0]"),
            "{text}"
        );
        assert!(text.contains("accepted proxy-0 4, proxy-1 6"), "{text}");
    }

    #[test]
    fn spps_table_prints_one_line_per_system_and_the_verdicts() {
        let one = Spread {
            median: 20_000.0,
            min: 19_000.0,
            max: 21_000.0,
        };
        let report = CompareReport {
            sleep_ms: 100,
            relay_workers: 1,
            skipped: vec![Skipped {
                system: System::SppRelay,
                why: "no calls".into(),
            }],
            checks: vec![Check {
                scenario: "sleep_long".into(),
                name: "sleep_over_ideal".into(),
                title: "req/s / (2000 conns / 100 ms)".into(),
                value: Some(0.95),
                target: Some(Bound::AtLeast(0.9)),
                met: Some(true),
            }],
            scenarios: vec![ScenarioResult {
                name: "sleep_long".into(),
                title: "sleep-echo, long".into(),
                connections: 2_000,
                short: false,
                systems: vec![SystemResult {
                    system: System::SppSleep,
                    throughput_rps: one,
                    p50_us: one,
                    p99_us: one,
                    errors: 0,
                    rounds: Vec::new(),
                    cpu_us: Default::default(),
                }],
                ratios: Ratios::default(),
            }],
            ..bare(Suite::Table)
        };
        let text = report.to_string();
        assert!(text.contains("spp_relay: skipped (no calls)"), "{text}");
        let row = text
            .lines()
            .find(|l| l.starts_with("sleep-echo, long (N=2000)"))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(
            row.contains("spp sleep-echo") && row.contains("20.0k (19.0k–21.0k)"),
            "{row}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("sleep_long") && l.ends_with("0.95  target ≥ 0.9: met")),
            "{text}"
        );
    }
}
