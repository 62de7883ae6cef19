//! Whether a worker's ring moves: the proxy's own view of a worker frozen
//! outside `spp_process` (SIGSTOP, a plugin thread holding its loop, a
//! stalled page fault), before the controller kills it.
//!
//! Pure rules over the loop's per-turn clock (`Clients::now_ms`, no clock
//! read of their own), checked at every worker scan
//! (`WORKER_SCAN_INTERVAL_MS`), so unit-tested on their own:
//!
//! * **Stalled** ([`Stall::observe`]): requests in flight and neither the
//!   worker's `completed_seq` nor its `heartbeat_ms` moved for longer than
//!   the group's `msg_timeout` / [`STALL_DIVISOR`]. A worker whose loop
//!   turns is not stalled though a request it holds takes long: a
//!   micro-thread worker keeps beating while requests sleep downstream,
//!   and a plain one beats after every call of a long batch; a frozen one
//!   stops both. The time counts from the first scan that saw the
//!   slot idle or `completed_seq` move, so it may overstate the wait by one
//!   scan interval. A stalled slot gets no new request while another
//!   worker of its group takes them (`stalled_skips`); a connection with
//!   requests already there sticks to it (their answers stay in order).
//!   It is stalled no more as soon as `completed_seq` moves or another
//!   worker generation takes the slot; not when the proxy failed what it
//!   held (a frozen worker with nothing in flight stays stalled, its ring
//!   still holds those requests, and a thawed one completes them).
//! * **Overdue** ([`overdue`]): the oldest request in flight waited longer
//!   than `msg_timeout` + [`EXPIRE_GRACE_MS`] while the worker is not
//!   inside `spp_process` and its heartbeat is older than the grace. A live
//!   worker takes its requests in order and expires a stale one itself at
//!   once (`KIND_EXPIRED`, `stale_failed`), and one inside a long call
//!   expires them after it; so only a frozen one leaves such a request.
//!   The proxy fails it itself (`proxy_expired`): exception hook
//!   (`SPP_EXC_TIMEOUT`), then the connection closes whatever the hook
//!   says, since a late reply from the worker must never be read as the
//!   answer to the connection's next request.
//!
//! With `msg_timeout` 0 (off) neither rule applies.

use spp_ipc::record::NS_PER_MS;

/// A slot is stalled after `msg_timeout / STALL_DIVISOR` without progress.
pub const STALL_DIVISOR: u64 = 2;
/// The proxy fails a request a frozen worker holds this long after its
/// `msg_timeout`; also the heartbeat age that counts as frozen.
pub const EXPIRE_GRACE_MS: u64 = 200;

/// One slot's progress as the scans saw it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stall {
    /// `completed_seq` at the last scan that saw progress.
    completed: u64,
    /// `heartbeat_ms` at that scan.
    heartbeat_ms: u64,
    /// The worker generation it was seen with.
    generation: u64,
    /// Loop clock (ms) of that scan.
    since_ms: u64,
    /// Whether the slot counts as stalled.
    stalled: bool,
}

impl Stall {
    /// Whether the slot counts as stalled.
    #[inline]
    pub fn stalled(&self) -> bool {
        self.stalled
    }

    /// One scan at loop time `now_ms`: the worker's `completed_seq`,
    /// generation and `heartbeat_ms`, the requests in flight, the group's `msg_timeout_ms`
    /// (0: off). Returns whether the slot just became stalled (to log
    /// once).
    pub fn observe(
        &mut self,
        now_ms: u64,
        (completed, generation, heartbeat_ms): (u64, u64, u64),
        in_flight: usize,
        msg_timeout_ms: u64,
    ) -> bool {
        let moved = completed != self.completed
            || generation != self.generation
            || heartbeat_ms != self.heartbeat_ms;
        if moved || msg_timeout_ms == 0 || (in_flight == 0 && !self.stalled) {
            *self = Stall {
                completed,
                heartbeat_ms,
                generation,
                since_ms: now_ms,
                stalled: false,
            };
            return false;
        }
        let was = self.stalled;
        self.stalled = now_ms.saturating_sub(self.since_ms) > msg_timeout_ms / STALL_DIVISOR;
        self.stalled && !was
    }
}

/// What the proxy knows of a worker when it judges its oldest request.
#[derive(Clone, Copy, Debug)]
pub struct Oldest {
    /// The oldest in-flight request's `enqueued_ns`.
    pub enqueued_ns: u64,
    /// The worker's `in_process_since_ms` (0: not inside `spp_process`).
    pub in_process_since_ms: u64,
    /// The worker's `heartbeat_ms`.
    pub heartbeat_ms: u64,
}

/// Whether the oldest request (see [`Oldest`]) is overdue at loop time
/// `now_ms` with `msg_timeout_ms` (0: never); see the module docs.
#[inline]
pub fn overdue(oldest: &Oldest, now_ms: u64, msg_timeout_ms: u64) -> bool {
    if msg_timeout_ms == 0 || oldest.in_process_since_ms != 0 {
        return false;
    }
    let waited_ms = now_ms.saturating_sub(oldest.enqueued_ns / NS_PER_MS);
    let silent_ms = now_ms.saturating_sub(oldest.heartbeat_ms);
    waited_ms > msg_timeout_ms.saturating_add(EXPIRE_GRACE_MS) && silent_ms > EXPIRE_GRACE_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_stalls_only_with_requests_and_no_progress_past_the_bound() {
        let mut s = Stall::default();
        assert!(!s.observe(1000, (5, 1, 0), 0, 500), "idle");
        assert!(!s.observe(1200, (5, 1, 0), 3, 500));
        assert!(!s.stalled(), "250 ms: not yet");
        assert!(
            s.observe(1251, (5, 1, 0), 3, 500),
            "past 250 ms: stalled, once"
        );
        assert!(!s.observe(1300, (5, 1, 0), 3, 500), "already");
        assert!(s.stalled());
        assert!(!s.observe(1350, (6, 1, 0), 3, 500), "completed moved");
        assert!(!s.stalled());
        assert!(!s.observe(5000, (6, 1, 0), 3, 0), "msg_timeout 0: off");
        assert!(!s.stalled());
    }

    #[test]
    fn a_worker_whose_loop_beats_is_not_stalled_by_a_long_request() {
        let mut s = Stall::default();
        s.observe(0, (5, 1, 100), 3, 500);
        // completed_seq held by a request sleeping downstream; the loop beats.
        for t in (100..3000).step_by(100) {
            assert!(!s.observe(t, (5, 1, 100 + t), 3, 500), "beating at {t}");
        }
        assert!(!s.stalled());
        // The beat stops: stalled past the bound.
        assert!(!s.observe(3100, (5, 1, 2900), 3, 500));
        assert!(s.observe(3400, (5, 1, 2900), 3, 500));
    }

    #[test]
    fn a_stall_outlives_the_failing_of_what_it_held_until_a_new_generation() {
        let mut s = Stall::default();
        s.observe(0, (1, 1, 0), 2, 100);
        assert!(s.observe(60, (1, 1, 0), 2, 100));
        s.observe(200, (1, 1, 0), 0, 100);
        assert!(s.stalled(), "nothing in flight (failed), still frozen");
        s.observe(250, (1, 2, 0), 0, 100);
        assert!(!s.stalled(), "a successor took the slot");
    }

    #[test]
    fn only_a_silent_worker_outside_process_leaves_overdue_requests() {
        let ms = |m: u64| m * NS_PER_MS;
        let old = Oldest {
            enqueued_ns: ms(1000),
            in_process_since_ms: 0,
            heartbeat_ms: 1000,
        };
        assert!(overdue(&old, 1701, 500), "waited 701 ms, silent 701 ms");
        assert!(!overdue(&old, 1700, 500), "700 ms: within the grace");
        assert!(!overdue(&old, 5000, 0), "msg_timeout 0: off");
        let inside = Oldest {
            in_process_since_ms: 1200,
            ..old
        };
        assert!(!overdue(&inside, 5000, 500), "inside spp_process: alive");
        let beating = Oldest {
            heartbeat_ms: 1650,
            ..old
        };
        assert!(!overdue(&beating, 1800, 500), "a fresh heartbeat: alive");
    }
}
