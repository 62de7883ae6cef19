//! The worker's counters in shared memory ([`WorkerStats`]). The worker's
//! main thread is their only writer, so it adds with a plain load + store
//! (no locked instruction). `requests` is bumped as each request is taken;
//! the rest only once per batch: [`BatchTally`] counts locally and
//! [`BatchTally::commit`] writes.

use spp_ipc::layout::WorkerStats;
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

/// What one batch of requests did, before it is written to shared memory.
#[derive(Clone, Copy, Debug, Default)]
pub struct BatchTally {
    /// `spp_process` returned non-zero (not a panic).
    pub process_errors: u64,
    /// `spp_process` panicked (the Rust layer returned `SPP_HOOK_PANICKED`).
    pub plugin_panics: u64,
    /// Nanoseconds spent serving the batch.
    pub busy_ns: u64,
}

impl BatchTally {
    /// Adds the tally to the shared counters and resets it.
    pub fn commit(&mut self, stats: &WorkerStats) {
        bump(&stats.process_errors, self.process_errors);
        bump(&stats.plugin_panics, self.plugin_panics);
        bump(&stats.busy_ns, self.busy_ns);
        *self = BatchTally::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_adds_up_and_resets() {
        let stats = WorkerStats::default();
        let mut tally = BatchTally {
            process_errors: 1,
            plugin_panics: 2,
            busy_ns: 40,
        };
        tally.commit(&stats);
        tally.process_errors = 2;
        tally.commit(&stats);
        assert_eq!(stats.process_errors.load(Ordering::Relaxed), 3);
        assert_eq!(stats.plugin_panics.load(Ordering::Relaxed), 2);
        assert_eq!(stats.busy_ns.load(Ordering::Relaxed), 40);
        assert_eq!(tally.process_errors, 0);
    }
}
