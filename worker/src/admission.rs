//! [`Admission`]: the bounds and the per-flow order shared by the modes
//! that hold several requests at once (`microthread`, `tasks`).
//!
//! * At most `max_in_flight` requests are held (running, suspended,
//!   deferred, or waiting behind their flow's previous request); past it,
//!   and while a pair's [`Completions`] are full, the worker takes nothing
//!   more from that pair's ring (back-pressure: requests wait there and
//!   expire by `msg_timeout`).
//! * A flow's requests run one at a time, in ring order: a request whose
//!   flow has one running waits in a per-flow chain of runtime slots
//!   (`next` links), and starts when the one before it leaves.
//! * `completed_seq` moves per pair as requests finish out of order
//!   ([`Completions`]).
//!
//! The mode owns its slots (the request's copy, its coroutine or token);
//! this module only sees slot indices. Nothing here allocates after
//! start-up but the flow map and the `next` links growing to
//! `max_in_flight`.

use crate::microthread::order::Completions;
use std::collections::HashMap;

/// Seqs taken and not yet completed at most, beyond `max_in_flight`: the
/// finished requests a long-running one may hold back before the worker
/// stops taking from its ring.
pub const COMPLETION_SLACK: usize = 4096;

/// Admission and per-flow order of one worker's held requests.
pub struct Admission {
    /// Flow → (running slot, last queued slot).
    flows: HashMap<u64, (u32, u32)>,
    /// Slot `i`'s next request of the same flow, waiting for it.
    next: Vec<Option<u32>>,
    /// Pair `k`'s seqs at `k`.
    completions: Vec<Completions>,
    max_in_flight: usize,
    in_flight: usize,
}

impl Admission {
    /// At most `max_in_flight` requests from `pairs` pairs.
    pub fn new(max_in_flight: usize, pairs: usize) -> Self {
        Admission {
            flows: HashMap::with_capacity(max_in_flight),
            next: Vec::with_capacity(max_in_flight),
            completions: (0..pairs.max(1))
                .map(|_| Completions::new(max_in_flight + COMPLETION_SLACK))
                .collect(),
            max_in_flight,
            in_flight: 0,
        }
    }

    /// Whether another request may be taken from pair `pair`'s ring.
    #[inline]
    pub fn can_take(&self, pair: usize) -> bool {
        self.in_flight < self.max_in_flight && !self.completions[pair].is_full()
    }

    /// Whether another request may be taken from some pair's ring.
    pub fn can_take_any(&self) -> bool {
        self.in_flight < self.max_in_flight && self.completions.iter().any(|c| !c.is_full())
    }

    /// Requests held now.
    #[inline]
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// A request of pair `pair` done the moment it was taken (expired,
    /// another generation's). Returns the new `completed_seq`, if it moved.
    pub fn done_at_once(&mut self, pair: usize, seq: u64) -> Option<u64> {
        self.completions[pair].done_at_once(seq)
    }

    /// Slot `idx` holds request `seq` of pair `pair` and flow `flow`.
    /// Returns whether it may start now (`false`: it waits behind its
    /// flow's running request, and [`Admission::leave`] of the one before
    /// it names it). Call only when [`Admission::can_take`] that pair.
    pub fn enter(&mut self, idx: u32, flow: u64, pair: usize, seq: u64) -> bool {
        let at = idx as usize;
        if self.next.len() <= at {
            self.next.resize(at + 1, None);
        }
        self.next[at] = None;
        self.in_flight += 1;
        self.completions[pair].start(seq);
        match self.flows.get_mut(&flow) {
            Some((_, last)) => {
                let prev = std::mem::replace(last, idx);
                self.next[prev as usize] = Some(idx);
                false
            }
            None => {
                self.flows.insert(flow, (idx, idx));
                true
            }
        }
    }

    /// Slot `idx`'s request (`seq` of pair `pair`, flow `flow`) finished.
    /// Returns the new `completed_seq` of that pair, if it moved, and the
    /// slot of the flow's next request, to start now.
    pub fn leave(
        &mut self,
        idx: u32,
        flow: u64,
        pair: usize,
        seq: u64,
    ) -> (Option<u64>, Option<u32>) {
        let upto = self.completions[pair].finish(seq);
        self.in_flight = self.in_flight.saturating_sub(1);
        let next = self.next.get_mut(idx as usize).and_then(Option::take);
        match next {
            None => {
                self.flows.remove(&flow);
            }
            Some(next) => {
                if let Some(entry) = self.flows.get_mut(&flow) {
                    entry.0 = next;
                }
            }
        }
        (upto, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flows_requests_start_one_after_another() {
        let mut a = Admission::new(3, 1);
        assert!(a.enter(0, 7, 0, 1), "flow 7 is free");
        assert!(!a.enter(1, 7, 0, 2), "behind slot 0");
        assert!(a.enter(2, 8, 0, 3), "another flow runs at once");
        assert_eq!(a.in_flight(), 3);
        assert!(!a.can_take(0) && !a.can_take_any(), "at max_in_flight");
        assert_eq!(a.leave(2, 8, 0, 3), (None, None), "seq 1 still runs");
        assert_eq!(a.leave(0, 7, 0, 1), (Some(1), Some(1)), "slot 1 next");
        assert!(a.can_take(0));
        assert_eq!(a.leave(1, 7, 0, 2), (Some(3), None));
        assert_eq!(a.in_flight(), 0);
        assert!(a.enter(0, 7, 0, 4), "the flow is free again");
    }

    #[test]
    fn pairs_complete_apart() {
        let mut a = Admission::new(4, 2);
        assert!(a.enter(0, 1, 0, 10));
        assert!(a.enter(1, 2, 1, 10));
        assert_eq!(a.done_at_once(1, 11), None, "behind seq 10 of pair 1");
        assert_eq!(a.leave(1, 2, 1, 10), (Some(11), None));
        assert_eq!(a.leave(0, 1, 0, 10), (Some(10), None));
    }
}
