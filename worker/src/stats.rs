//! The worker's counters in shared memory ([`WorkerStats`]). The worker's
//! main thread is their only writer, so it adds with a plain load + store
//! (no locked instruction). `requests` is bumped with [`bump`] as each
//! request is taken, so one stuck inside `spp_process` shows; everything else
//! (including `busy_ns` and `stale_dropped`) is counted in the
//! [`Responder`](crate::respond::Responder)'s [`WorkerTally`] and flushed
//! once per publish of the response ring. The pair header's `queue_wait`
//! and `process_time` histograms are recorded per request by the serve
//! loop (single writer, [`SharedHistogram::record`]); the plugin's own
//! metrics go through the host services (see [`crate::host`]).
//!
//! [`WorkerStats`]: spp_ipc::layout::WorkerStats
//! [`WorkerTally`]: spp_ipc::layout::WorkerTally
//! [`SharedHistogram::record`]: spp_ipc::histogram::SharedHistogram::record

use std::sync::atomic::{AtomicU64, Ordering};

/// Adds `n` to a counter that only the calling thread writes. Readers
/// (controller, tests) see every value at most once per store.
#[inline]
pub fn bump(counter: &AtomicU64, n: u64) {
    if n != 0 {
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bump_adds_and_skips_zero() {
        let counter = AtomicU64::new(u64::MAX);
        bump(&counter, 0);
        assert_eq!(counter.load(Ordering::Relaxed), u64::MAX);
        bump(&counter, 2);
        assert_eq!(counter.load(Ordering::Relaxed), 1, "wraps like the tally");
    }
}
