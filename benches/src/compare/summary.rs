//! Folding rounds into figures: the median of the rounds and their min–max
//! spread for throughput, p50 and p99, and the spp/other ratios.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::load::Report;

use super::scenario::System;

/// Median and spread of one figure over the rounds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Median of the rounds (mean of the middle two for an even count).
    pub median: f64,
    /// Lowest round.
    pub min: f64,
    /// Highest round.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (zeros when empty).
    pub fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Spread::default();
        }
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Spread {
            median,
            min: v[0],
            max: v[v.len() - 1],
        }
    }
}

/// One system in one scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SystemResult {
    /// Which system.
    pub system: System,
    /// Requests per second.
    pub throughput_rps: Spread,
    /// Median latency, µs.
    pub p50_us: Spread,
    /// 99th percentile latency, µs.
    pub p99_us: Spread,
    /// Errors over all rounds.
    pub errors: u64,
    /// Every round's full report, in order.
    pub rounds: Vec<Report>,
    /// CPU µs per request by process label (and `total`), where measured
    /// (the shard suite).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cpu_us: BTreeMap<String, Spread>,
}

impl SystemResult {
    /// The figures of `rounds`.
    pub fn new(system: System, rounds: Vec<Report>) -> Self {
        let fig = |f: fn(&Report) -> f64| Spread::of(&rounds.iter().map(f).collect::<Vec<_>>());
        SystemResult {
            system,
            throughput_rps: fig(|r| r.throughput_rps),
            p50_us: fig(|r| r.latency_us.p50),
            p99_us: fig(|r| r.latency_us.p99),
            errors: rounds.iter().map(|r| r.errors.total).sum(),
            rounds,
            cpu_us: BTreeMap::new(),
        }
    }

    /// The same with the spread of every label's CPU µs per request over
    /// `rounds` (one map per round).
    pub fn with_cpu(mut self, rounds: &[BTreeMap<String, f64>]) -> Self {
        let mut by_label: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for round in rounds {
            for (label, us) in round {
                by_label.entry(label.clone()).or_default().push(*us);
            }
        }
        self.cpu_us = by_label
            .into_iter()
            .map(|(label, v)| (label, Spread::of(&v)))
            .collect();
        self
    }

    /// The round whose throughput is the median one (for plots).
    pub fn median_round(&self) -> Option<&Report> {
        let mut order: Vec<&Report> = self.rounds.iter().collect();
        order.sort_by(|a, b| a.throughput_rps.total_cmp(&b.throughput_rps));
        order.get(order.len() / 2).copied()
    }
}

/// spp against the others, from the medians.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ratios {
    /// Throughput, spp / direct.
    pub throughput_spp_direct: Option<f64>,
    /// p50, spp / direct.
    pub p50_spp_direct: Option<f64>,
    /// p99, spp / direct.
    pub p99_spp_direct: Option<f64>,
    /// Throughput, spp / haproxy (TCP scenarios with haproxy).
    pub throughput_spp_haproxy: Option<f64>,
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
}

impl Ratios {
    /// The ratios between the systems in `results`.
    pub fn new(results: &[SystemResult]) -> Self {
        let get = |s: System| results.iter().find(|r| r.system == s);
        let (Some(spp), direct, haproxy) =
            (get(System::Spp), get(System::Direct), get(System::Haproxy))
        else {
            return Ratios::default();
        };
        let by = |other: Option<&SystemResult>, f: fn(&SystemResult) -> f64| {
            other.and_then(|o| ratio(f(spp), f(o)))
        };
        Ratios {
            throughput_spp_direct: by(direct, |r| r.throughput_rps.median),
            p50_spp_direct: by(direct, |r| r.p50_us.median),
            p99_spp_direct: by(direct, |r| r.p99_us.median),
            throughput_spp_haproxy: by(haproxy, |r| r.throughput_rps.median),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_take_the_median() {
        let s = Spread::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of(&[1.0, 4.0]).median, 2.5);
        assert_eq!(Spread::of(&[]), Spread::default());
    }
}
