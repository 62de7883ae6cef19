//! Recording outcomes: one [`Recorder`] per load thread (shared by that
//! thread's connections, never across threads), holding the latency
//! histogram and the [`Counts`]. Only requests whose (intended) send time
//! falls in the measured window are recorded; connection events count when
//! they happen inside it. Each thread also publishes running totals in a
//! [`ThreadProgress`] for the progress bar.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::error::LoadError;
use super::schedule::Clock;

/// Latencies are recorded in nanoseconds from 1 ns ...
const HIST_LOW_NS: u64 = 1;
/// ... to one hour (larger values are clamped) ...
const HIST_HIGH_NS: u64 = 3_600_000_000_000;
/// ... with 3 significant digits.
const HIST_SIGFIG: u8 = 3;

/// Event counts of a run. Requests that failed are counted once, under
/// the first failure that ended them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Responses received and correct.
    pub ok: u64,
    /// Responses received but wrong (content, length, or a response when
    /// none was outstanding, or bytes that cannot be framed).
    pub mismatches: u64,
    /// Requests unanswered within the timeout (in open loop, also requests
    /// that could not be sent before their timeout passed).
    pub timeouts: u64,
    /// Connections closed or reset by the peer (UDP: ICMP "port
    /// unreachable" reports).
    pub closed: u64,
    /// Requests lost because their connection closed or was dropped after
    /// an error on an earlier request.
    pub aborted: u64,
    /// Failed connection attempts during the run.
    pub connect_errors: u64,
    /// Connections re-opened after a close or an error.
    pub reconnects: u64,
    /// Responses that arrived after their request had timed out (UDP;
    /// informational, not an error).
    pub late: u64,
}

impl Counts {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Counts) {
        self.ok += other.ok;
        self.mismatches += other.mismatches;
        self.timeouts += other.timeouts;
        self.closed += other.closed;
        self.aborted += other.aborted;
        self.connect_errors += other.connect_errors;
        self.reconnects += other.reconnects;
        self.late += other.late;
    }

    /// All error counts added up.
    pub fn errors(&self) -> u64 {
        self.mismatches + self.timeouts + self.closed + self.aborted + self.connect_errors
    }
}

/// Running totals one load thread publishes (all phases, warm-up
/// included); read by the progress bar.
#[derive(Debug, Default)]
pub struct ThreadProgress {
    /// Correct responses so far.
    pub ok: AtomicU64,
    /// Errors so far.
    pub errors: AtomicU64,
}

/// A load thread's results.
#[derive(Clone, Debug)]
pub struct ThreadStats {
    /// Latencies of correct, measured responses, in ns.
    pub histogram: Histogram<u64>,
    /// Open loop: how late requests were queued for sending after their
    /// intended send time, in ns (the harness's own lag).
    pub send_lag: Histogram<u64>,
    /// Measured counts.
    pub counts: Counts,
}

impl ThreadStats {
    /// No results yet.
    pub fn empty() -> Result<Self, LoadError> {
        Ok(ThreadStats {
            histogram: new_histogram()?,
            send_lag: new_histogram()?,
            counts: Counts::default(),
        })
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &ThreadStats) -> Result<(), LoadError> {
        let failed = |e: hdrhistogram::AdditionError| LoadError::Histogram(format!("{e:?}"));
        self.histogram.add(&other.histogram).map_err(failed)?;
        self.send_lag.add(&other.send_lag).map_err(failed)?;
        self.counts.merge(&other.counts);
        Ok(())
    }
}

/// A new empty latency histogram.
pub fn new_histogram() -> Result<Histogram<u64>, LoadError> {
    Histogram::new_with_bounds(HIST_LOW_NS, HIST_HIGH_NS, HIST_SIGFIG)
        .map_err(|e| LoadError::Histogram(e.to_string()))
}

/// Records one thread's outcomes.
pub struct Recorder {
    clock: Clock,
    stats: ThreadStats,
    progress: Arc<ThreadProgress>,
    all_ok: u64,
    all_errors: u64,
}

impl Recorder {
    /// A recorder for a run with phases `clock`.
    pub fn new(clock: Clock, progress: Arc<ThreadProgress>) -> Result<Self, LoadError> {
        Ok(Recorder {
            clock,
            stats: ThreadStats::empty()?,
            progress,
            all_ok: 0,
            all_errors: 0,
        })
    }

    /// The results so far.
    pub fn stats(&self) -> &ThreadStats {
        &self.stats
    }

    /// A correct response to a request sent at `sent`, received at `now`.
    pub fn success(&mut self, sent: Instant, now: Instant) {
        self.all_ok += 1;
        self.progress.ok.store(self.all_ok, Ordering::Relaxed);
        if self.clock.measured(sent) {
            let ns = now.saturating_duration_since(sent).as_nanos();
            self.stats
                .histogram
                .saturating_record(u64::try_from(ns).unwrap_or(u64::MAX));
            self.stats.counts.ok += 1;
        }
    }

    /// Open loop: a request intended for `intended` was queued at `now`.
    pub fn send_lag(&mut self, intended: Instant, now: Instant) {
        if self.clock.measured(intended) {
            let ns = now.saturating_duration_since(intended).as_nanos();
            self.stats
                .send_lag
                .saturating_record(u64::try_from(ns).unwrap_or(u64::MAX));
        }
    }

    /// A wrong response to a request sent at `sent`.
    pub fn mismatch(&mut self, sent: Instant) {
        self.error(sent, 1, |c| &mut c.mismatches);
    }

    /// A request sent at `sent` timed out.
    pub fn timeout(&mut self, sent: Instant) {
        self.error(sent, 1, |c| &mut c.timeouts);
    }

    /// `n` requests in the measured window timed out without being sent.
    pub fn timeouts_unsent(&mut self, n: u64) {
        self.error(self.clock.measure_from, n, |c| &mut c.timeouts);
    }

    /// A request sent at `sent` was lost with its connection.
    pub fn aborted(&mut self, sent: Instant) {
        self.error(sent, 1, |c| &mut c.aborted);
    }

    /// The peer closed a connection (or refused a datagram) at `at`.
    pub fn closed(&mut self, at: Instant) {
        self.error(at, 1, |c| &mut c.closed);
    }

    /// A connection attempt started at `at` failed.
    pub fn connect_error(&mut self, at: Instant) {
        self.error(at, 1, |c| &mut c.connect_errors);
    }

    /// A connection was re-opened at `at`.
    pub fn reconnect(&mut self, at: Instant) {
        if self.clock.measured(at) {
            self.stats.counts.reconnects += 1;
        }
    }

    /// A response came after its request timed out.
    pub fn late(&mut self, at: Instant) {
        if self.clock.measured(at) {
            self.stats.counts.late += 1;
        }
    }

    fn error(&mut self, at: Instant, n: u64, which: impl FnOnce(&mut Counts) -> &mut u64) {
        self.all_errors += n;
        self.progress
            .errors
            .store(self.all_errors, Ordering::Relaxed);
        if self.clock.measured(at) {
            *which(&mut self.stats.counts) += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_the_measured_window_counts() {
        let t0 = Instant::now();
        let clock = Clock::new(
            t0,
            Duration::from_millis(100),
            Duration::from_millis(100),
            Duration::from_millis(50),
        );
        let progress = Arc::new(ThreadProgress::default());
        let mut r = Recorder::new(clock, progress.clone()).unwrap();
        let warm = t0 + Duration::from_millis(50);
        let inside = t0 + Duration::from_millis(150);
        let after = t0 + Duration::from_millis(250);
        r.success(warm, warm + Duration::from_micros(10));
        r.success(inside, inside + Duration::from_micros(20));
        r.success(after, after + Duration::from_micros(30));
        r.mismatch(warm);
        r.mismatch(inside);
        r.timeout(inside);
        r.aborted(inside);
        r.closed(inside);
        r.connect_error(after);
        r.reconnect(inside);
        r.late(inside);
        r.timeouts_unsent(3);
        let c = r.stats().counts;
        assert_eq!(c.ok, 1);
        assert_eq!(c.mismatches, 1);
        assert_eq!(c.timeouts, 4);
        assert_eq!((c.aborted, c.closed, c.connect_errors), (1, 1, 0));
        assert_eq!((c.reconnects, c.late), (1, 1));
        assert_eq!(c.errors(), 7);
        assert_eq!(r.stats().histogram.len(), 1);
        assert!((20_000..20_100).contains(&r.stats().histogram.max()));
        assert_eq!(progress.ok.load(Ordering::Relaxed), 3);
        assert_eq!(progress.errors.load(Ordering::Relaxed), 9);
    }
}
