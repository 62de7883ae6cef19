//! Micro-thread mode (group `mode = "microthread"`): each `spp_process`
//! call runs on a stackful coroutine (corosensei), so a host call that
//! waits (`sleep`, `call`, `call_many`) suspends that request alone and the worker
//! goes on taking requests.
//!
//! * `pool`: the stacks (guard page each, reused, at most `max_in_flight`).
//! * `order`: `completed_seq` over requests that finish out of order
//!   (used through [`crate::admission`], shared with async mode).
//! * `runtime`: the micro-threads: admission (copy of the request bytes),
//!   per-flow serialisation, run slices, timers, completion.
//! * `serve`: the worker loop of this mode (chosen once at start; the plain
//!   loop in `crate::serve` is untouched).
//!
//! # Bounds, per worker
//! At most `max_in_flight` requests are held at once (running, suspended,
//! or waiting behind their flow's previous request); at that bound the
//! worker stops taking from its ring, and requests wait there (and expire
//! by `msg_timeout`) as in plain mode. Memory per in-flight request:
//! one stack (`stack_size` + a 4 KiB guard page, mapped once and reused)
//! plus a copy of the request bytes (its buffer grows to the largest
//! request it carried, at most the ring's largest request) plus ~100
//! bytes of bookkeeping. So a worker holds at most
//! `max_in_flight × (stack_size + 4 KiB + max request size)`. A request
//! waiting on downstream calls adds one socket per call (at most
//! `SPP_CALL_MANY_MAX` per request, with the kernel's socket buffers) and,
//! for `call_many`, a list of its legs (~100 bytes each); answers land in
//! the plugin's own buffers (see [`crate::downstream`]).
//!
//! # Ordering
//! The request bytes are copied out of the ring at admission, so the ring
//! is released every turn as in plain mode. Requests finish in any order;
//! `completed_seq` moves to the highest seq below which all are done
//! (`order`). A flow's requests run one at a time, in ring order: the next
//! waits until the previous one's micro-thread finished, so the answers of
//! one connection keep their order.
//!
//! # Suspension
//! [`suspend_until`] suspends the running micro-thread until a deadline or
//! an I/O event on a downstream socket it owns ([`crate::downstream`]);
//! the loop sleeps in one epoll set holding the doorbell and those
//! sockets, bounded by the nearest deadline. [`sleep`] is a suspension
//! with a deadline alone.
//! Outside a micro-thread (plain mode, a plugin's own thread, `spp_init`)
//! it answers `SPP_ERR_UNSUPPORTED` at once.
//!
//! # Busy time
//! `busy_ns` and `process_time` count only the run slices (the time the
//! worker's thread spends in plugin code), never the wall time a request
//! spends suspended.

pub mod order;
pub mod pool;
pub mod runtime;
pub mod serve;

use corosensei::Yielder;
use spp_ipc::record::{monotonic_ns, NS_PER_MS};
use spp_plugin_api::abi::{SPP_ERR_UNSUPPORTED, SPP_OK};
use std::cell::Cell;
use std::ffi::c_int;

/// What a micro-thread yields: the CLOCK_MONOTONIC ns it wants to be
/// resumed at.
pub type Wake = u64;
/// A micro-thread's handle on its own suspension.
pub type MicroYielder = Yielder<(), Wake>;

thread_local! {
    /// The yielder of the micro-thread running on this thread right now
    /// (null: none). Set by a micro-thread's body when it starts and again
    /// each time it is resumed, cleared by the scheduler after every run
    /// slice.
    static CURRENT: Cell<*const MicroYielder> = const { Cell::new(std::ptr::null()) };
    /// The runtime slot of the micro-thread running now (meaningful only
    /// while `CURRENT` is set): whom downstream sockets wake.
    static CURRENT_SLOT: Cell<u32> = const { Cell::new(0) };
}

/// Marks `yielder` as the running micro-thread's (null: none).
pub(crate) fn set_current(yielder: *const MicroYielder) {
    CURRENT.with(|c| c.set(yielder));
}

/// Marks `slot` as the slot of the micro-thread about to run.
pub(crate) fn set_current_slot(slot: u32) {
    CURRENT_SLOT.with(|c| c.set(slot));
}

/// The runtime slot of the calling micro-thread; `None` off one.
pub fn current_slot() -> Option<u32> {
    if CURRENT.with(Cell::get).is_null() {
        None
    } else {
        Some(CURRENT_SLOT.with(Cell::get))
    }
}

/// Suspends the calling micro-thread until `wake` (CLOCK_MONOTONIC ns;
/// [`Wake::MAX`]: no timer) or until an I/O event on a socket it owns
/// resumes it earlier. `false` (and no suspension) off a micro-thread.
pub fn suspend_until(wake: Wake) -> bool {
    let yielder = CURRENT.with(Cell::get);
    if yielder.is_null() {
        return false;
    }
    let slot = CURRENT_SLOT.with(Cell::get);
    // SAFETY: `CURRENT` is non-null only while the micro-thread that set it
    // runs on this thread (the scheduler clears it after each run slice),
    // and we are that micro-thread's code: its yielder lives on its stack
    // for as long as the body runs.
    unsafe { &*yielder }.suspend(wake);
    // Resumed: other micro-threads ran meanwhile and changed both.
    set_current(yielder);
    set_current_slot(slot);
    true
}

/// `spp_host.sleep`: suspends the running micro-thread for `ms`, or answers
/// `SPP_ERR_UNSUPPORTED` when the caller is not on one.
pub fn sleep(ms: u64) -> c_int {
    let wake = monotonic_ns().saturating_add(ms.saturating_mul(NS_PER_MS));
    // A sleep resumed early (never today: it owns no socket) sleeps on.
    loop {
        if !suspend_until(wake) {
            return SPP_ERR_UNSUPPORTED;
        }
        if monotonic_ns() >= wake {
            return SPP_OK;
        }
    }
}
