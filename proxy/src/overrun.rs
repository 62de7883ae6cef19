//! `spp_input` answering more bytes than it was given: a plugin bug (it
//! read past the buffer, or counts a length it has not seen). The proxy
//! treats it as a plugin error, not as "need more": the TCP connection is
//! closed (its bytes go to `spp_close` as leftover), a UDP datagram is
//! dropped, and each is counted in `input_overrun`. The log line is
//! throttled by [`OverrunLog`]: at most one per [`LOG_INTERVAL_MS`], saying
//! how many were held back, so a broken plugin cannot flood the log.

/// At most one overrun log line in this many milliseconds.
pub const LOG_INTERVAL_MS: u64 = 1000;

/// The throttle of the overrun warning (loop thread only).
#[derive(Debug, Default)]
pub struct OverrunLog {
    /// The loop clock (ms) of the last line let through.
    last_ms: Option<u64>,
    /// Overruns since then that were not logged.
    held: u64,
}

impl OverrunLog {
    /// One overrun at `now_ms`: `Some(held back since the last line)` when
    /// a line may be logged.
    pub fn allow(&mut self, now_ms: u64) -> Option<u64> {
        let due = self
            .last_ms
            .is_none_or(|last| now_ms.saturating_sub(last) >= LOG_INTERVAL_MS);
        if due {
            self.last_ms = Some(now_ms);
            Some(std::mem::take(&mut self.held))
        } else {
            self.held += 1;
            None
        }
    }

    /// Counts and logs (throttled) an overrun of `flow`: `said` bytes for a
    /// buffer of `len`.
    pub fn report(&mut self, now_ms: u64, flow: u64, said: usize, len: usize) {
        if let Some(held) = self.allow(now_ms) {
            tracing::warn!(
                flow,
                said,
                len,
                held_back = held,
                "plugin error: spp_input returned {said} for a buffer of {len} bytes \
                 (more than it was given); the request is dropped and a TCP connection \
                 closed (counted in input_overrun)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_held_back() {
        let mut log = OverrunLog::default();
        assert_eq!(log.allow(5), Some(0));
        assert_eq!(log.allow(6), None);
        assert_eq!(log.allow(5 + LOG_INTERVAL_MS - 1), None);
        assert_eq!(log.allow(5 + LOG_INTERVAL_MS), Some(2));
        assert_eq!(log.allow(5 + 3 * LOG_INTERVAL_MS), Some(0));
    }
}
