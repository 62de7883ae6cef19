//! The pair seen from outside the two ends: the controller (which reaps
//! workers and samples their state) and tests that watch what a proxy or
//! worker process did. [`PairObserver`] only loads the protocol fields
//! (Acquire, pairing with the ends' Release stores of the
//! [module doc](super)'s rules); [`mark_worker_down`] is the controller's
//! one write, after it reaped a slot's worker.

use crate::layout::{PairHeader, PairRegion, WorkerState};
use std::sync::atomic::Ordering;

/// Read-only loads of one pair's protocol fields.
#[derive(Clone, Copy)]
pub struct PairObserver<'a> {
    pair: &'a PairRegion,
}

impl<'a> PairObserver<'a> {
    /// A view of `pair`.
    pub fn new(pair: &'a PairRegion) -> Self {
        PairObserver { pair }
    }

    fn header(&self) -> &'a PairHeader {
        self.pair.header()
    }

    /// The `seq` of the last request the proxy published (rule 1).
    pub fn pushed_seq(&self) -> u64 {
        self.header().pushed_seq.load(Ordering::Acquire)
    }

    /// The `seq` of the last request the worker finished and published
    /// (rule 2).
    pub fn completed_seq(&self) -> u64 {
        self.header().completed_seq.load(Ordering::Acquire)
    }

    /// The generation whose drain the proxy acknowledged (rule 3).
    pub fn drain_ack(&self) -> u64 {
        self.header().drain_ack.load(Ordering::Acquire)
    }

    /// The generation of the slot's latest worker (rule 4).
    pub fn worker_generation(&self) -> u64 {
        self.header().worker_generation.load(Ordering::Acquire)
    }

    /// The pid of the slot's latest worker.
    pub fn worker_pid(&self) -> u32 {
        self.header().worker_pid.load(Ordering::Acquire)
    }

    /// CLOCK_MONOTONIC ms of the worker's last loop turn or finished
    /// `spp_process` call (0: none yet).
    pub fn heartbeat_ms(&self) -> u64 {
        self.header().heartbeat_ms.load(Ordering::Relaxed)
    }

    /// CLOCK_MONOTONIC ms at which the worker's current `spp_process` call
    /// began, 0 while it is not inside one.
    pub fn in_process_since_ms(&self) -> u64 {
        self.header().in_process_since_ms.load(Ordering::Relaxed)
    }

    /// Whether requests were published that the worker has not finished
    /// (`pushed_seq` beyond `completed_seq`; loads the completed one first,
    /// so a completion racing the loads never makes it look behind).
    pub fn requests_waiting(&self) -> bool {
        let completed = self.completed_seq();
        self.pushed_seq().wrapping_sub(completed) as i64 > 0
    }

    /// The slot's worker state (rule 4: load it before the generation).
    pub fn worker_state(&self) -> WorkerState {
        WorkerState::from_raw(self.header().worker_state.load(Ordering::Acquire))
    }
}

/// The controller's word that the slot's worker is gone (it reaped it):
/// state `Down`, which the proxy reads as that generation's death. A
/// successor's [`WorkerSlot::take`](super::WorkerSlot::take) moves the
/// slot on from there.
pub fn mark_worker_down(pair: &PairRegion) {
    pair.header()
        .worker_state
        .store(WorkerState::Down as u32, Ordering::Release);
}
