//! The comparison's result: [`CompareReport`] (serde, for `--json`) and its
//! human table.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::scenario::System;
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

/// One scenario over every system.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    /// Machine name.
    pub name: String,
    /// Human title.
    pub title: String,
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
}

/// Everything a comparison measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompareReport {
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
    /// Load threads.
    pub threads: usize,
    /// haproxy's version line, or why it did not take part.
    pub haproxy: String,
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

impl fmt::Display for CompareReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "spp-bench compare: {} round(s) of {}s (warm-up {}s) per system, A B A B; {}-byte echo payload; spp workers {}; load threads {}",
            self.rounds, self.duration_s, self.warmup_s, self.payload, self.workers, self.threads
        )?;
        writeln!(f, "haproxy: {}", self.haproxy)?;
        writeln!(f, "cells: median of the rounds (min–max)")?;
        let systems: Vec<System> = [System::Direct, System::Spp, System::Haproxy]
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
