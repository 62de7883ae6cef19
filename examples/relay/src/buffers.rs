//! Answer buffers, reused: the host writes a call's answer into a buffer
//! the plugin owns, and a relayed answer may be as large as `max_payload`,
//! far too big for a micro-thread's stack.
//!
//! Every micro-thread of a worker runs on the worker's main thread, so the
//! idle buffers live in a thread-local list: [`take`] one before the call,
//! [`give`] it back after the reply (never holding the list across the
//! call, which suspends). Idle buffers are kept until [`forget_all`] (the
//! plugin's `fini`): there are never more than the requests the worker
//! held at once, which the group's `max_in_flight` bounds. A buffer is
//! zeroed once, when made (a large one comes as fresh zero pages, nothing
//! written); its pages become resident only as far as answers fill them,
//! and it is not freed and made again under load.

use std::cell::RefCell;

thread_local! {
    /// This thread's idle buffers.
    static IDLE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of exactly `len` bytes (an idle one if it has that size).
pub fn take(len: usize) -> Vec<u8> {
    let reused = IDLE.with(|idle| idle.borrow_mut().pop());
    match reused {
        Some(buf) if buf.len() == len => buf,
        _ => vec![0; len],
    }
}

/// Keeps `buf` for a later [`take`].
pub fn give(buf: Vec<u8>) {
    IDLE.with(|idle| idle.borrow_mut().push(buf));
}

/// Frees this thread's idle buffers.
pub fn forget_all() {
    IDLE.with(|idle| *idle.borrow_mut() = Vec::new());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused() {
        let a = take(16);
        let ptr = a.as_ptr();
        give(a);
        let b = take(16);
        assert_eq!(b.as_ptr(), ptr, "the idle buffer came back");
        give(b);
        // A different size is made afresh.
        assert_eq!(take(8).len(), 8);
        let many: Vec<Vec<u8>> = (0..5).map(|_| take(4)).collect();
        many.into_iter().for_each(give);
        IDLE.with(|idle| assert_eq!(idle.borrow().len(), 5));
        forget_all();
        IDLE.with(|idle| assert!(idle.borrow().is_empty()));
    }
}
