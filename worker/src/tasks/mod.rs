//! Async mode (group `mode = "async"`): `spp_process` may defer its
//! request (`spp_host.defer`) and the plugin completes it later
//! (`spp_host.complete`), from the worker's thread (inside `spp_poll` or
//! a hook) or from a thread of its own; meanwhile the worker goes on
//! taking requests.
//!
//! * `runtime`: the in-flight table ([`runtime::Runtime`]): admission,
//!   the `spp_process` call, completion, expiry.
//! * `serve`: the worker loop of this mode (chosen once at start).
//! * this module: the main thread's token book ([`defer`], [`complete_here`],
//!   [`complete_forwarded`]), which the host services reach.
//!
//! # Bounds, per worker
//! At most `max_in_flight` requests are held (running, deferred, or
//! waiting behind their flow's previous request; [`crate::admission`]);
//! at that bound the worker stops taking from its rings, and requests wait
//! there (and expire by `msg_timeout`) as in the other modes. Memory per
//! held request: ~100 bytes of bookkeeping, plus a copy of the request
//! bytes only for a request queued behind its flow's running one (its
//! buffer grows to the largest request it carried).
//!
//! # Ordering
//! `spp_process` gets the ring's bytes in place, without a copy: it is
//! called while the request is admitted, before the ring is released. A
//! request whose flow has one in flight is copied out and started when
//! that one completes, so a flow's requests run one at a time, in ring
//! order, and its answers keep their order. Requests complete in any
//! order; `completed_seq` moves to the highest seq below which all are
//! done ([`crate::microthread::order`]). A completion from another thread
//! travels through the deferred channel behind the replies that thread
//! made before it, so the replies reach the ring before the request is
//! completed. A main-thread completion is queued and applied right after
//! the `spp_process` or `spp_poll` call it was made in.
//!
//! # Tokens
//! A token is the runtime slot's index and its generation
//! (`generation << 32 | index`); the generation moves each time the slot
//! is freed, so a token of a completed or expired request is unknown
//! (`SPP_ERR_UNKNOWN_TOKEN`; found later off the main thread, it is
//! counted in `tasks_unknown`). A second `defer` in the same call returns
//! the same token; a second `complete` is unknown.
//!
//! # Busy time
//! `busy_ns` counts the time inside `spp_process` calls and the busy time
//! `spp_poll` reports; never the time a request waits deferred.
//!
//! # Expiry
//! A deferred request still in flight `task_timeout` + `SPP_TASK_GRACE_MS`
//! after its `spp_process` began is completed by the worker: its
//! connection is closed (after what was replied), its token becomes
//! unknown, and it is counted in `tasks_expired`.
//!
//! # Drain
//! A stop keeps serving (taking from the rings, driving `spp_poll`,
//! forwarding deferred completions) until nothing is queued and nothing
//! is in flight, within `drain_timeout`; then `spp_fini`.

pub mod runtime;
pub mod serve;

use spp_plugin_api::abi::{SPP_ERR_UNKNOWN_TOKEN, SPP_ERR_UNSUPPORTED, SPP_OK};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::c_int;

/// Where a runtime slot's request is, as the token book sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No request, or one waiting behind its flow.
    Idle,
    /// Inside `spp_process`, not deferred.
    Running,
    /// Deferred: `complete` is expected.
    Deferred,
    /// Completed by the plugin; the completion is queued.
    Completing,
}

/// The main thread's view of every runtime slot: its generation and state,
/// the slot inside `spp_process` now, and the completions to apply.
#[derive(Debug, Default)]
struct Book {
    slots: Vec<(u32, State)>,
    current: Option<u32>,
    queue: VecDeque<(u32, c_int)>,
}

thread_local! {
    /// Only ever used on the worker's main thread: another thread sees
    /// an empty book (no current request, no slots).
    static BOOK: RefCell<Book> = RefCell::new(Book::default());
}

/// The token of slot `idx` at generation `generation`.
fn token(idx: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(idx)
}

impl Book {
    /// The slot `token` names if that slot is at the token's generation
    /// and `Deferred`; it then turns `Completing`.
    fn claim(&mut self, token: u64) -> Option<u32> {
        let idx = (token & u64::from(u32::MAX)) as u32;
        let generation = (token >> 32) as u32;
        let slot = self.slots.get_mut(idx as usize)?;
        if slot.0 != generation || slot.1 != State::Deferred {
            return None;
        }
        slot.1 = State::Completing;
        Some(idx)
    }

    fn complete(&mut self, token: u64, rc: c_int) -> bool {
        match self.claim(token) {
            Some(idx) => {
                self.queue.push_back((idx, rc));
                true
            }
            None => false,
        }
    }
}

/// Runs `f` on this thread's book; `None` while it is borrowed (never on
/// the loop's own path: it holds no borrow across a plugin call).
fn with_book<R>(f: impl FnOnce(&mut Book) -> R) -> Option<R> {
    BOOK.with(|book| book.try_borrow_mut().ok().map(|mut b| f(&mut b)))
}

/// `spp_host.defer` on the main thread: the token of the request inside
/// `spp_process` now (the same one if called twice), or
/// `SPP_ERR_UNSUPPORTED` outside an async `spp_process` call.
pub fn defer() -> Result<u64, c_int> {
    with_book(|book| {
        let idx = book.current?;
        let slot = book.slots.get_mut(idx as usize)?;
        if slot.1 == State::Running {
            slot.1 = State::Deferred;
        }
        Some(token(idx, slot.0))
    })
    .flatten()
    .ok_or(SPP_ERR_UNSUPPORTED)
}

/// `spp_host.complete` on the main thread: queues the completion, applied
/// right after the current plugin call. `SPP_OK` or
/// `SPP_ERR_UNKNOWN_TOKEN`.
pub fn complete_here(token: u64, rc: c_int) -> c_int {
    match with_book(|book| book.complete(token, rc)) {
        Some(true) => SPP_OK,
        _ => SPP_ERR_UNKNOWN_TOKEN,
    }
}

/// A completion from another thread, forwarded by the main loop after the
/// replies that thread made before it. `false`: the token is unknown.
pub fn complete_forwarded(token: u64, rc: c_int) -> bool {
    with_book(|book| book.complete(token, rc)).unwrap_or(false)
}

/// The runtime's side of the book (main thread only).
pub(crate) mod slots {
    use super::{token, with_book, State};
    use std::ffi::c_int;

    /// Slot `idx` exists (a new slot gets generation 1).
    pub fn ensure(idx: u32) {
        with_book(|book| {
            let need = idx as usize + 1;
            if book.slots.len() < need {
                book.slots.resize(need, (1, State::Idle));
            }
        });
    }

    /// Slot `idx`'s request enters `spp_process`; returns its token.
    pub fn begin(idx: u32) -> u64 {
        with_book(|book| {
            book.current = Some(idx);
            let slot = &mut book.slots[idx as usize];
            slot.1 = State::Running;
            token(idx, slot.0)
        })
        .unwrap_or(0)
    }

    /// The call returned: whether the request was deferred.
    pub fn end(idx: u32) -> bool {
        with_book(|book| {
            book.current = None;
            book.slots[idx as usize].1 != State::Running
        })
        .unwrap_or(false)
    }

    /// Whether slot `idx` is deferred and not yet completed (expiry).
    pub fn is_deferred(idx: u32) -> bool {
        with_book(|book| book.slots[idx as usize].1 == State::Deferred).unwrap_or(false)
    }

    /// Slot `idx` is done: its token is unknown from now on.
    pub fn free(idx: u32) {
        with_book(|book| {
            let slot = &mut book.slots[idx as usize];
            slot.0 = slot.0.wrapping_add(1).max(1);
            slot.1 = State::Idle;
        });
    }

    /// The next queued completion: (slot, rc).
    pub fn take_completion() -> Option<(u32, c_int)> {
        with_book(|book| book.queue.pop_front()).flatten()
    }

    /// Whether completions are queued.
    pub fn has_completions() -> bool {
        with_book(|book| !book.queue.is_empty()).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_one_deferred_request_once() {
        slots::ensure(3);
        assert_eq!(defer(), Err(SPP_ERR_UNSUPPORTED), "outside spp_process");
        let t = slots::begin(2);
        assert_eq!(complete_here(t, 0), SPP_ERR_UNKNOWN_TOKEN, "not deferred");
        assert_eq!(defer(), Ok(t));
        assert_eq!(defer(), Ok(t), "the same token twice");
        assert!(slots::end(2), "deferred");
        assert_eq!(defer(), Err(SPP_ERR_UNSUPPORTED), "after the call");
        assert!(slots::is_deferred(2));
        assert_eq!(complete_here(t, 5), SPP_OK);
        assert_eq!(complete_here(t, 5), SPP_ERR_UNKNOWN_TOKEN, "once");
        assert!(!slots::is_deferred(2), "completing");
        assert!(slots::has_completions());
        assert_eq!(slots::take_completion(), Some((2, 5)));
        assert_eq!(slots::take_completion(), None);
        slots::free(2);
        // The slot's next request: the old token is stale.
        let t2 = slots::begin(2);
        assert_ne!(t2, t);
        assert_eq!(defer(), Ok(t2));
        assert!(slots::end(2));
        assert!(!complete_forwarded(t, 0), "stale");
        assert!(!complete_forwarded(t2 | 7, 0), "another slot's index");
        assert!(!complete_forwarded(u64::MAX, 0), "no such slot");
        assert!(complete_forwarded(t2, 0));
        assert_eq!(slots::take_completion(), Some((2, 0)));
        slots::free(2);
    }

    #[test]
    fn a_request_not_deferred_completes_with_its_call() {
        slots::ensure(0);
        let t = slots::begin(0);
        assert!(!slots::end(0));
        assert_eq!(complete_here(t, 0), SPP_ERR_UNKNOWN_TOKEN);
        slots::free(0);
    }

    #[test]
    fn another_thread_has_no_current_request() {
        slots::ensure(0);
        let _t = slots::begin(0);
        let other = std::thread::spawn(defer).join().unwrap();
        assert_eq!(other, Err(SPP_ERR_UNSUPPORTED));
        assert!(!slots::end(0));
        slots::free(0);
    }
}
