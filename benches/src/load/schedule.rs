//! Time: the run's phases ([`Clock`]) and the open-loop send schedule
//! ([`Pacer`]).

use std::time::{Duration, Instant};

/// Extra time after the last possible timeout before every driver stops,
/// whatever state it is in.
pub const STOP_GRACE: Duration = Duration::from_millis(200);
/// Nanoseconds per second.
const NANOS_PER_SEC: f64 = 1e9;

/// The phases of one run, shared by every connection.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Load starts (warm-up begins).
    pub start: Instant,
    /// Measuring starts (warm-up ends).
    pub measure_from: Instant,
    /// No request is sent from here on; outstanding ones are awaited.
    pub measure_until: Instant,
    /// A request unanswered this long is a timeout.
    pub timeout: Duration,
}

impl Clock {
    /// Phases starting at `start`.
    pub fn new(start: Instant, warmup: Duration, duration: Duration, timeout: Duration) -> Self {
        let measure_from = start + warmup;
        Clock {
            start,
            measure_from,
            measure_until: measure_from + duration,
            timeout,
        }
    }

    /// Whether a request (intended to be) sent at `sent` is recorded.
    pub fn measured(&self, sent: Instant) -> bool {
        sent >= self.measure_from && sent < self.measure_until
    }

    /// Whether requests may still be sent at `now`.
    pub fn sending(&self, now: Instant) -> bool {
        now < self.measure_until
    }

    /// Drivers stop here even with requests outstanding (they have all
    /// timed out by then).
    pub fn hard_stop(&self) -> Instant {
        self.measure_until + self.timeout + STOP_GRACE
    }
}

/// The intended send times of one open-loop connection: `base + k *
/// interval`, computed from `k` each time so rounding does not drift.
#[derive(Clone, Debug)]
pub struct Pacer {
    base: Instant,
    interval_ns: f64,
    k: u64,
    next: Instant,
}

impl Pacer {
    /// `rate` requests/s starting at `start`, shifted by `phase` (0..1) of
    /// an interval so connections do not send in lock step.
    pub fn new(start: Instant, rate: f64, phase: f64) -> Self {
        let interval_ns = NANOS_PER_SEC / rate;
        let base = start + Duration::from_nanos((interval_ns * phase) as u64);
        Pacer {
            base,
            interval_ns,
            k: 0,
            next: base,
        }
    }

    /// The next intended send time.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// Moves to the following send time.
    pub fn advance(&mut self) {
        self.k += 1;
        self.next = self.at(self.k);
    }

    fn at(&self, k: u64) -> Instant {
        self.base + Duration::from_nanos((k as f64 * self.interval_ns) as u64)
    }

    /// How many intended send times from `next()` on fall in `[from, until)`;
    /// the pacer moves past all of them (used when a connection is gone and
    /// the rest of the schedule cannot be sent).
    pub fn skip_until(&mut self, from: Instant, until: Instant) -> u64 {
        let index_at = |t: Instant| -> u64 {
            // First k with at(k) >= t.
            let ns = t.saturating_duration_since(self.base).as_nanos() as f64;
            (ns / self.interval_ns).ceil() as u64
        };
        let end = index_at(until).max(self.k);
        let begin = index_at(from).clamp(self.k, end);
        self.k = end;
        self.next = self.at(end);
        end - begin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_phases() {
        let t0 = Instant::now();
        let c = Clock::new(
            t0,
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::from_secs(1),
        );
        assert!(!c.measured(t0));
        assert!(c.measured(t0 + Duration::from_secs(1)));
        assert!(!c.measured(t0 + Duration::from_secs(3)));
        assert!(c.sending(t0 + Duration::from_millis(2999)));
        assert!(!c.sending(t0 + Duration::from_secs(3)));
        assert!(c.hard_stop() > t0 + Duration::from_secs(4));
    }

    #[test]
    fn pacer_spaces_and_skips() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, 1000.0, 0.5);
        assert_eq!(p.next(), t0 + Duration::from_micros(500));
        p.advance();
        assert_eq!(p.next(), t0 + Duration::from_micros(1500));
        // Send times 1.5, 2.5, ... 9.5 ms are before 10 ms: 9 of them, of
        // which 5.5 .. 9.5 (5) are at or after 5 ms.
        let skipped = p.skip_until(
            t0 + Duration::from_millis(5),
            t0 + Duration::from_millis(10),
        );
        assert_eq!(skipped, 5);
        assert_eq!(p.next(), t0 + Duration::from_micros(10_500));
        // Nothing left before a time already passed.
        assert_eq!(p.skip_until(t0, t0 + Duration::from_millis(1)), 0);
    }
}
