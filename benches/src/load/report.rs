//! The result of a run: [`Report`] (serde, for `--json` and in-process
//! comparisons) and its human table ([`std::fmt::Display`]).
//!
//! Counting rules: a request belongs to the run if its (intended) send time
//! is inside the measured window; `requests` counts its correct responses,
//! `throughput_rps` is `requests / duration_s`, and latency percentiles
//! cover correct responses only (errors are counted, never hidden in the
//! latency).

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::record::{Counts, ThreadStats};
use super::spec::{Load, LoadSpec, Transport};

/// Nanoseconds per microsecond.
const NS_PER_US: f64 = 1_000.0;
/// The distribution is sampled this many times per "nine" (90 %, 99 %, ...).
pub const STEPS_PER_NINE: u32 = 10;
/// The distribution goes to at most 99.9999 %.
pub const MAX_NINES: u32 = 6;

/// Latency summary of the correct responses, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Fastest.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub stdev: f64,
}

/// Error counts (see [`Counts`] for what each means).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Errors {
    /// All of the below added up.
    pub total: u64,
    /// Wrong responses.
    pub mismatches: u64,
    /// Requests unanswered within the timeout.
    pub timeouts: u64,
    /// Connections closed by the peer (UDP: port unreachable).
    pub closed: u64,
    /// Requests lost with their connection.
    pub aborted: u64,
    /// Failed connection attempts.
    pub connect_errors: u64,
}

/// One point of the latency percentile distribution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PercentilePoint {
    /// Percentile, 0 ..= 100.
    pub percentile: f64,
    /// Latency at that percentile, µs.
    pub latency_us: f64,
}

/// What a run measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `tcp://ADDR` or `udp://ADDR`.
    pub target: String,
    /// TCP or UDP.
    pub transport: Transport,
    /// Closed loop (`in_flight`) or open loop (`rate`).
    pub load: Load,
    /// Connect, one request, close, repeat.
    pub short_connections: bool,
    /// Connections or sockets.
    pub connections: usize,
    /// Load threads used.
    pub threads: usize,
    /// What each request is.
    pub request: String,
    /// Bytes on the wire per request.
    pub request_bytes: usize,
    /// Warm-up, seconds.
    pub warmup_s: f64,
    /// Measured window, seconds.
    pub duration_s: f64,
    /// Response timeout, seconds.
    pub timeout_s: f64,
    /// Correct responses to requests of the measured window.
    pub requests: u64,
    /// `requests / duration_s`.
    pub throughput_rps: f64,
    /// Latency of the correct responses.
    pub latency_us: Latency,
    /// Open loop only: how late the harness queued requests after their
    /// intended send time (large values mean the load generator, not the
    /// server, fell behind).
    pub send_lag_us: Option<Latency>,
    /// What went wrong.
    pub errors: Errors,
    /// Connections re-opened.
    pub reconnects: u64,
    /// Responses after their request timed out (UDP).
    pub late_responses: u64,
    /// Latency by percentile, for plots.
    pub distribution: Vec<PercentilePoint>,
}

fn us(ns: u64) -> f64 {
    ns as f64 / NS_PER_US
}

/// Percentile `p` (0..100) is `-log10(1 - p/100)` nines: 90 % is 1, 99 % is 2.
pub fn nines(percentile: f64) -> f64 {
    let rest = (1.0 - percentile / 100.0).max(f64::MIN_POSITIVE);
    -rest.log10()
}

/// The percentile that is `n` nines.
pub fn percentile_of_nines(n: f64) -> f64 {
    100.0 * (1.0 - 10f64.powf(-n))
}

impl Latency {
    /// The summary of `hist` (nanoseconds); zeros if it is empty.
    pub fn from_histogram(hist: &Histogram<u64>) -> Self {
        if hist.is_empty() {
            return Latency::default();
        }
        Latency {
            min: us(hist.min()),
            p50: us(hist.value_at_quantile(0.50)),
            p90: us(hist.value_at_quantile(0.90)),
            p99: us(hist.value_at_quantile(0.99)),
            p999: us(hist.value_at_quantile(0.999)),
            max: us(hist.max()),
            mean: hist.mean() / NS_PER_US,
            stdev: hist.stdev() / NS_PER_US,
        }
    }
}

impl From<&Counts> for Errors {
    fn from(c: &Counts) -> Self {
        Errors {
            total: c.errors(),
            mismatches: c.mismatches,
            timeouts: c.timeouts,
            closed: c.closed,
            aborted: c.aborted,
            connect_errors: c.connect_errors,
        }
    }
}

/// Samples `hist` at [`STEPS_PER_NINE`] points per nine, up to as many
/// nines as the sample count supports (at most [`MAX_NINES`]).
pub fn distribution(hist: &Histogram<u64>) -> Vec<PercentilePoint> {
    if hist.is_empty() {
        return Vec::new();
    }
    let supported = (hist.len() as f64).log10().ceil() as u32;
    let top = supported.clamp(1, MAX_NINES);
    (0..=top * STEPS_PER_NINE)
        .map(|i| {
            let percentile = percentile_of_nines(f64::from(i) / f64::from(STEPS_PER_NINE));
            PercentilePoint {
                percentile,
                latency_us: us(hist.value_at_quantile(percentile / 100.0)),
            }
        })
        .collect()
}

impl Report {
    /// The report of a run of `spec` on `threads` threads.
    pub fn new(spec: &LoadSpec, threads: usize, stats: &ThreadStats) -> Self {
        let duration_s = spec.duration.as_secs_f64();
        let (hist, counts) = (&stats.histogram, &stats.counts);
        let send_lag_us = match spec.load {
            Load::Open { .. } => Some(Latency::from_histogram(&stats.send_lag)),
            Load::Closed { .. } => None,
        };
        Report {
            target: spec.target.to_string(),
            transport: spec.target.transport,
            load: spec.load,
            short_connections: spec.short,
            connections: spec.connections,
            threads,
            request: spec.request.describe(),
            request_bytes: spec.request.wire_len(),
            warmup_s: spec.warmup.as_secs_f64(),
            duration_s,
            timeout_s: spec.timeout.as_secs_f64(),
            requests: counts.ok,
            throughput_rps: counts.ok as f64 / duration_s,
            latency_us: Latency::from_histogram(hist),
            send_lag_us,
            errors: Errors::from(counts),
            reconnects: counts.reconnects,
            late_responses: counts.late,
            distribution: distribution(hist),
        }
    }

    /// One line describing the load shape.
    pub fn shape(&self) -> String {
        let what = match self.transport {
            Transport::Tcp => "connections",
            Transport::Udp => "sockets",
        };
        let threads = match self.threads {
            1 => "1 thread".to_owned(),
            n => format!("{n} threads"),
        };
        let shape = match (self.short_connections, self.load) {
            (true, _) => format!("short connections, {} concurrent", self.connections),
            (false, Load::Closed { in_flight }) => {
                format!(
                    "closed loop, {} {what} x {in_flight} in flight",
                    self.connections
                )
            }
            (false, Load::Open { rate }) => {
                format!("open loop, {rate} req/s over {} {what}", self.connections)
            }
        };
        format!("{shape}, {threads}")
    }
}

fn secs(s: f64) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_secs_f64(s.max(0.0)))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.latency_us;
        let e = &self.errors;
        writeln!(f, "target      {} ({})", self.target, self.shape())?;
        writeln!(
            f,
            "request     {} ({} bytes on the wire)",
            self.request, self.request_bytes
        )?;
        writeln!(
            f,
            "window      {} measured after {} warm-up, timeout {}",
            secs(self.duration_s),
            secs(self.warmup_s),
            secs(self.timeout_s)
        )?;
        writeln!(f)?;
        writeln!(f, "requests    {}", self.requests)?;
        writeln!(f, "throughput  {:.0} req/s", self.throughput_rps)?;
        writeln!(
            f,
            "latency µs  {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "min", "p50", "p90", "p99", "p99.9", "max", "mean"
        )?;
        writeln!(
            f,
            "            {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            l.min, l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        )?;
        if let Some(lag) = &self.send_lag_us {
            writeln!(
                f,
                "send lag µs {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                lag.min, lag.p50, lag.p90, lag.p99, lag.p999, lag.max, lag.mean
            )?;
        }
        writeln!(
            f,
            "errors      {} (mismatches {}, timeouts {}, closed {}, aborted {}, connect errors {})",
            e.total, e.mismatches, e.timeouts, e.closed, e.aborted, e.connect_errors
        )?;
        write!(
            f,
            "reconnects  {}, late responses {}",
            self.reconnects, self.late_responses
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::record::new_histogram;

    fn stats(hist: Histogram<u64>, counts: Counts) -> ThreadStats {
        ThreadStats {
            histogram: hist,
            send_lag: new_histogram().unwrap(),
            counts,
        }
    }
    use crate::load::spec::Target;

    fn spec() -> LoadSpec {
        let mut s = LoadSpec::new("127.0.0.1:7963".parse::<Target>().unwrap());
        s.duration = Duration::from_secs(2);
        s.connections = 4;
        s
    }

    #[test]
    fn percentiles_and_throughput() {
        let mut h = new_histogram().unwrap();
        // 1..=1000 µs, one each.
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let counts = Counts {
            ok: 1000,
            mismatches: 1,
            timeouts: 2,
            closed: 3,
            aborted: 4,
            connect_errors: 5,
            reconnects: 6,
            late: 7,
        };
        let r = Report::new(&spec(), 1, &stats(h, counts));
        assert_eq!(r.requests, 1000);
        assert!((r.throughput_rps - 500.0).abs() < 1e-9);
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.001 + 0.001;
        assert!(close(r.latency_us.min, 1.0), "{:?}", r.latency_us);
        assert!(close(r.latency_us.p50, 500.0), "{:?}", r.latency_us);
        assert!(close(r.latency_us.p90, 900.0), "{:?}", r.latency_us);
        assert!(close(r.latency_us.p99, 990.0), "{:?}", r.latency_us);
        assert!(close(r.latency_us.p999, 999.0), "{:?}", r.latency_us);
        assert!(close(r.latency_us.max, 1000.0), "{:?}", r.latency_us);
        assert!(close(r.latency_us.mean, 500.5), "{:?}", r.latency_us);
        assert_eq!(r.errors.total, 15);
        assert_eq!((r.reconnects, r.late_responses), (6, 7));
        // 1000 samples support 3 nines: 31 points from 0 % to 99.9 %.
        assert_eq!(r.distribution.len(), 31);
        assert_eq!(r.distribution[0].percentile, 0.0);
        assert!((r.distribution[30].percentile - 99.9).abs() < 1e-9);
        assert!(r
            .distribution
            .windows(2)
            .all(|w| w[0].latency_us <= w[1].latency_us));
        let table = r.to_string();
        assert!(table.contains("closed loop, 4 connections x 1 in flight, 1 thread"));
        assert!(table.contains("errors      15 "));
    }

    #[test]
    fn empty_runs_report_zeros() {
        let h = new_histogram().unwrap();
        let r = Report::new(&spec(), 2, &stats(h, Counts::default()));
        assert_eq!(r.latency_us, Latency::default());
        assert!(r.distribution.is_empty());
        assert_eq!(r.send_lag_us, None);
        assert_eq!(r.throughput_rps, 0.0);
    }

    #[test]
    fn json_round_trips() {
        let mut h = new_histogram().unwrap();
        h.record(42_000).unwrap();
        let mut s = spec();
        s.load = Load::Open { rate: 1000.0 };
        let r = Report::new(
            &s,
            1,
            &stats(
                h,
                Counts {
                    ok: 1,
                    ..Counts::default()
                },
            ),
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["load"]["kind"], "open");
        assert_eq!(json["load"]["rate"], 1000.0);
        assert_eq!(json["transport"], "tcp");
        assert_eq!(json["errors"]["total"], 0);
        assert!(json["send_lag_us"].is_object());
        let back: Report = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn nines_scale() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(nines(0.0), 0.0);
        assert!(nines(100.0).is_finite());
        assert!((percentile_of_nines(2.0) - 99.0).abs() < 1e-9);
    }
}
