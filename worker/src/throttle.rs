//! [`LogThrottle`]: keeps a warning that can repeat per request (a plugin
//! panic, a skipped or unknown record) to at most one log line per
//! [`LOG_INTERVAL`], and says how many were held back in between. A
//! misbehaving plugin or proxy must not turn the log into a second copy of
//! the traffic.

use std::time::{Duration, Instant};

/// At most one line per kind of warning in this interval.
pub const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// The state of one throttled warning.
#[derive(Debug, Default)]
pub struct LogThrottle {
    /// When the last line was let through.
    last: Option<Instant>,
    /// Occurrences held back since then.
    suppressed: u64,
}

impl LogThrottle {
    /// One more occurrence, now. `Some(n)` when a line may be logged, `n`
    /// being how many occurrences were held back since the last line.
    pub fn allow(&mut self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    /// [`Self::allow`] at `now`.
    pub fn allow_at(&mut self, now: Instant) -> Option<u64> {
        let due = self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= LOG_INTERVAL);
        if due {
            self.last = Some(now);
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_held_back_count() {
        let mut throttle = LogThrottle::default();
        let start = Instant::now();
        assert_eq!(throttle.allow_at(start), Some(0), "the first one logs");
        for _ in 0..5 {
            assert_eq!(throttle.allow_at(start + LOG_INTERVAL / 2), None);
        }
        assert_eq!(throttle.allow_at(start + LOG_INTERVAL), Some(5));
        assert_eq!(throttle.allow_at(start + LOG_INTERVAL), None);
        assert_eq!(throttle.allow_at(start + LOG_INTERVAL * 3), Some(1));
    }
}
