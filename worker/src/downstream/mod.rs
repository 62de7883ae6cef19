//! Downstream calls from micro-threads: `spp_host.call` and
//! `spp_host.call_many`.
//!
//! * `engine`: the worker's epoll set (doorbell + downstream sockets), the
//!   connection slab and the keep-alive pools per destination.
//! * `leg`: one call's state machine over non-blocking sockets (connect,
//!   send, receive, check; stale pooled connection, L5 pick, report and
//!   retry).
//! * `stats`: per-destination counters and latency histograms.
//!
//! A call runs on its micro-thread: [`run`] steps every leg as far as it
//! goes without blocking, then suspends the micro-thread until a socket
//! event for its slot or the earliest leg deadline, and steps again, until
//! all legs are done (or `wait_for` succeeded; the rest are cancelled).
//! Plugin code (the completeness check) only ever runs on that
//! micro-thread, so `busy_ns` counts it; the scheduler only polls.
//!
//! # Bounds
//! A leg holds one socket; a worker holds at most `max_in_flight ×
//! SPP_CALL_MANY_MAX` sockets in use, plus up to
//! [`engine::IDLE_PER_DESTINATION`] idle keep-alive connections per
//! destination (closed after [`engine::IDLE_KEEP_NS`] idle, or when the
//! peer closes them). Answers land in the plugin's own buffer: a call
//! allocates nothing per byte; `call_many` allocates its legs' list.

pub mod engine;
pub mod leg;
pub mod stats;

use crate::microthread::{current_slot, suspend_until};
use leg::Leg;
use spp_ipc::l5::table::RouteTable;
use spp_ipc::record::monotonic_ns;
use spp_plugin_api::abi::*;
use std::ffi::c_int;

/// Whether a plugin's call record can be used: its `size`, transport and
/// pointers (`SPP_CALL_BAD_ARGS` when not).
fn valid(call: &SppCall) -> bool {
    let req_ok = call.req_len == 0 || !call.req.is_null();
    let answer_ok = !call.answer.is_null() && call.answer_cap > 0;
    let transport_ok = match call.transport {
        SPP_CALL_TCP => call.check.is_some(),
        SPP_CALL_UDP => true,
        _ => false,
    };
    call.size as usize >= std::mem::size_of::<SppCall>() && req_ok && answer_ok && transport_ok
}

/// `spp_host.call`.
///
/// # Safety
/// `call` must be null or point to a writable `spp_call` whose pointers
/// are valid as the header says, for the whole call.
pub unsafe fn call(routes: Option<&RouteTable>, call: *mut SppCall) -> c_int {
    // SAFETY: null or writable, as the caller guarantees.
    let Some(call) = (unsafe { call.as_mut() }) else {
        return SPP_CALL_BAD_ARGS;
    };
    let writable = call.size as usize >= std::mem::size_of::<SppCall>();
    if current_slot().is_none() {
        if writable {
            call.result = SPP_ERR_UNSUPPORTED;
        }
        return SPP_ERR_UNSUPPORTED;
    }
    if !valid(call) {
        if writable {
            call.result = SPP_CALL_BAD_ARGS;
        }
        return SPP_CALL_BAD_ARGS;
    }
    let mut legs = [Leg::new(call, routes, monotonic_ns())];
    run(&mut legs, 0);
    legs[0].result()
}

/// `spp_host.call_many`.
///
/// # Safety
/// `calls` must be null or point to `n` writable `spp_call`s whose
/// pointers are valid as the header says, for the whole call.
pub unsafe fn call_many(
    routes: Option<&RouteTable>,
    calls: *mut SppCall,
    n: usize,
    wait_for: usize,
) -> c_int {
    if current_slot().is_none() {
        return SPP_ERR_UNSUPPORTED;
    }
    if calls.is_null() || n == 0 || n > SPP_CALL_MANY_MAX {
        return SPP_CALL_BAD_ARGS;
    }
    // SAFETY: `n` writable records at `calls`, as the caller guarantees.
    let calls = unsafe { std::slice::from_raw_parts_mut(calls, n) };
    if !calls.iter().all(valid) {
        for call in calls.iter_mut() {
            if call.size as usize >= std::mem::size_of::<SppCall>() {
                call.result = SPP_CALL_BAD_ARGS;
            }
        }
        return SPP_CALL_BAD_ARGS;
    }
    let now = monotonic_ns();
    let mut legs: Vec<Leg<'_>> = calls
        .iter_mut()
        .map(|call| Leg::new(call, routes, now))
        .collect();
    let succeeded = run(&mut legs, wait_for);
    c_int::try_from(succeeded).unwrap_or(c_int::MAX)
}

/// Steps `legs` until all are done, or `wait_for` (> 0) succeeded; the
/// others are cancelled. Returns how many succeeded. Call only on a
/// micro-thread.
fn run(legs: &mut [Leg<'_>], wait_for: usize) -> usize {
    let Some(me) = current_slot() else {
        return 0;
    };
    let enough = if wait_for == 0 { legs.len() } else { wait_for };
    loop {
        let mut succeeded = 0;
        let mut all_done = true;
        let mut wake = u64::MAX;
        for leg in legs.iter_mut() {
            leg.step(me);
            if leg.succeeded() {
                succeeded += 1;
            } else if !leg.done() {
                all_done = false;
                wake = wake.min(leg.wake_at());
            }
        }
        if all_done || succeeded >= enough {
            for leg in legs.iter_mut() {
                leg.cancel();
            }
            return succeeded;
        }
        if !suspend_until(wake) {
            return succeeded;
        }
        // `current_slot` is ours again after the resume.
        debug_assert_eq!(current_slot(), Some(me));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::c_void;

    unsafe extern "C" fn whole(_: *mut c_void, _: *const u8, len: usize) -> c_int {
        c_int::try_from(len).unwrap_or(c_int::MAX)
    }

    #[test]
    fn records_are_checked_before_any_socket_is_opened() {
        let mut answer = [0u8; 16];
        let good = || SppCall {
            check: Some(whole),
            answer: answer.as_ptr().cast_mut(),
            answer_cap: answer.len(),
            ..SppCall::default()
        };
        assert!(valid(&good()));
        assert!(
            !valid(&SppCall { size: 8, ..good() }),
            "an older, shorter record"
        );
        assert!(
            !valid(&SppCall {
                check: None,
                ..good()
            }),
            "TCP needs a check"
        );
        assert!(valid(&SppCall {
            check: None,
            transport: SPP_CALL_UDP,
            ..good()
        }));
        assert!(!valid(&SppCall {
            transport: 9,
            ..good()
        }));
        assert!(
            !valid(&SppCall {
                req_len: 3,
                ..good()
            }),
            "NULL request bytes"
        );
        assert!(!valid(&SppCall {
            answer_cap: 0,
            ..good()
        }));
        let _ = &mut answer;
    }

    #[test]
    fn calls_off_a_micro_thread_are_unsupported_at_once() {
        let mut answer = [0u8; 16];
        let mut call = SppCall {
            check: Some(whole),
            answer: answer.as_mut_ptr(),
            answer_cap: answer.len(),
            ..SppCall::default()
        };
        // SAFETY: a complete record with live buffers.
        assert_eq!(unsafe { super::call(None, &mut call) }, SPP_ERR_UNSUPPORTED);
        assert_eq!(call.result, SPP_ERR_UNSUPPORTED);
        // SAFETY: as above.
        let many = unsafe { call_many(None, &mut call, 1, 0) };
        assert_eq!(many, SPP_ERR_UNSUPPORTED);
    }
}
