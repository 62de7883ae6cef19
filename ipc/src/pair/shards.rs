//! A worker fed by several proxy shards (`proxy.processes = N`): one pair
//! per (shard, worker slot), one worker doorbell for all of them. See the
//! "several shards" section of the [module doc](super).
//!
//! Each pair is an ordinary pair on both ends ([`WorkerSlot`](super::WorkerSlot),
//! [`WorkerRequests`], [`WorkerResponses`] per pair); what is new is only
//! the worker's sleep over all of them at once, [`sleep_all`]: announce on
//! every pair's `worker_sleeping` flag, look at every request ring (and
//! the caller's other work) once more, block on the one doorbell, clear
//! every flag.

use super::{Slept, WorkerRequests};
use std::time::Duration;

/// Nothing to do on any pair: announce sleep on every pair's flag, look
/// once more (every request ring, then `other_work`), block in `block`
/// (on the worker's one doorbell, or an epoll set holding it) for at most
/// `timeout` only if there is none, clear every flag.
///
/// Rule 5 holds per pair: the proxy of pair *k* publishes, fences and
/// loads flag *k*; the worker stored every flag and fenced before its
/// second look. Either that proxy sees its flag (and rings the shared
/// bell) or the worker's second look sees its ring. A thread of the worker
/// (a deferred reply) checks the flag of the first pair, which is
/// announced with the others.
pub fn sleep_all(
    requests: &[WorkerRequests<'_>],
    timeout: Duration,
    other_work: impl FnOnce() -> bool,
    block: impl FnOnce(Duration) -> bool,
) -> Slept {
    sleep_all_where(requests, |_| true, timeout, other_work, block)
}

/// [`sleep_all`], where the requests of pair `k` count as work only if
/// `takes(k)` (a worker that cannot take more from a pair now leaves its
/// requests there; its proxy may still ring, which only costs a look).
pub fn sleep_all_where(
    requests: &[WorkerRequests<'_>],
    takes: impl Fn(usize) -> bool,
    timeout: Duration,
    other_work: impl FnOnce() -> bool,
    block: impl FnOnce(Duration) -> bool,
) -> Slept {
    for pair in requests {
        pair.sleep_flag().announce();
    }
    let waiting = requests
        .iter()
        .enumerate()
        .any(|(k, pair)| takes(k) && pair.has_requests());
    let slept = if waiting || other_work() {
        Slept::Work
    } else if block(timeout) {
        Slept::Rung
    } else {
        Slept::TimedOut
    };
    for pair in requests {
        pair.sleep_flag().clear();
    }
    slept
}

/// The order a worker visits its pairs in, one turn after another: every
/// pair once per turn, starting one pair further each turn, so a shard
/// that floods its ring takes its bounded batch and then yields to the
/// others, and no pair is always last. No allocation: an index and a
/// count.
#[derive(Clone, Copy, Debug)]
pub struct Rotation {
    start: usize,
    pairs: usize,
}

impl Rotation {
    /// A rotation over `pairs` pairs (at least one is assumed).
    pub fn new(pairs: usize) -> Self {
        Rotation {
            start: 0,
            pairs: pairs.max(1),
        }
    }

    /// The pair indices of the next turn, starting pair first; the turn
    /// after starts one further.
    #[inline]
    pub fn turn(&mut self) -> TurnOrder {
        let (start, pairs) = (self.start, self.pairs);
        self.start = if start + 1 >= pairs { 0 } else { start + 1 };
        TurnOrder {
            start,
            pairs,
            visited: 0,
        }
    }
}

/// One turn's pair indices ([`Rotation::turn`]); owns no borrow, so the
/// loop body may use the worker mutably.
#[derive(Clone, Copy, Debug)]
pub struct TurnOrder {
    start: usize,
    pairs: usize,
    visited: usize,
}

impl Iterator for TurnOrder {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.visited >= self.pairs {
            return None;
        }
        let at = self.start + self.visited;
        self.visited += 1;
        Some(if at >= self.pairs {
            at - self.pairs
        } else {
            at
        })
    }
}
