//! The Rust layer through its C hooks, as the proxy calls them: a
//! per-connection state lives from the first `input` of a TCP connection
//! to its `spp_close`; UDP flows, closed flows and hooks without state get
//! a fresh one; `process` maps [`Processed`] to the return codes; a panic
//! stays inside the plugin.

mod common;

use spp_plugin_api::abi::{
    SppConnInfo, SppHost, SPP_HOOK_PANICKED, SPP_PROTO_TCP, SPP_PROTO_UDP, SPP_ROLE_PROXY,
};
use spp_plugin_api::{
    export_plugin, AfterException, Conn, ExceptionReason, Host, Input, OnClose, OnException,
    OnRoute, Plugin, Processed,
};
use std::ffi::c_int;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// States dropped so far.
static DROPPED: AtomicU32 = AtomicU32::new(0);
/// (flow, inputs) of every state `close` received.
static CLOSED: Mutex<Vec<(u64, u32)>> = Mutex::new(Vec::new());

/// The per-connection state: requests framed on the connection.
#[derive(Default)]
struct Tally {
    inputs: u32,
}

impl Drop for Tally {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

struct Counter;

impl Plugin for Counter {
    type ConnState = Tally;

    fn init(_host: Host, _conf: &str) -> Result<Self, i32> {
        Ok(Counter)
    }

    fn input(&self, _conn: Conn<'_>, state: &mut Tally, buf: &[u8]) -> Input {
        if buf == b"panic" {
            panic!("asked to panic");
        }
        state.inputs += 1;
        Input::Complete(buf.len())
    }

    fn process(&self, _conn: Conn<'_>, req: &[u8]) -> Processed {
        if req == b"close" {
            Processed::Close
        } else {
            Processed::Done
        }
    }
}

impl OnRoute for Counter {
    /// The inputs seen on the connection so far.
    fn route(&self, _conn: Conn<'_>, state: &mut Tally, _req: &[u8]) -> u32 {
        state.inputs
    }
}

impl OnException for Counter {
    fn exception(
        &self,
        _conn: Conn<'_>,
        state: &mut Tally,
        _req: Option<&[u8]>,
        _why: ExceptionReason,
    ) -> AfterException {
        if state.inputs == 0 {
            AfterException::Close
        } else {
            AfterException::Keep
        }
    }
}

impl OnClose for Counter {
    fn close(&self, conn: Conn<'_>, state: Tally, _leftover: &[u8]) {
        CLOSED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((conn.flow(), state.inputs));
    }
}

export_plugin!(Counter, hooks: [route, exception, close]);

fn info(flow: u64, proto: u8) -> SppConnInfo {
    SppConnInfo {
        flow,
        proto,
        ..SppConnInfo::default()
    }
}

fn input(conn: &SppConnInfo, data: &[u8]) -> c_int {
    // SAFETY: `conn` and `data` are valid for the call, as the host
    // guarantees.
    unsafe { spp_input(conn, data.as_ptr(), data.len()) }
}

fn route(conn: &SppConnInfo) -> c_int {
    // SAFETY: as in `input`.
    unsafe { spp_route(conn, b"r".as_ptr(), 1) }
}

fn closed(conn: &SppConnInfo) {
    // SAFETY: as in `input`.
    unsafe { spp_close(conn, std::ptr::null(), 0) }
}

fn dropped() -> u32 {
    DROPPED.load(Ordering::Relaxed)
}

#[test]
fn a_connection_state_lives_from_first_input_to_close() {
    let host = SppHost::new(SPP_ROLE_PROXY, 0, 0, std::ptr::null_mut(), common::inert());
    // SAFETY: `host` outlives every hook call of this test; `conf` is a
    // NUL-terminated string.
    assert_eq!(unsafe { spp_init(&host, c"".as_ptr()) }, 0);

    let (a, b) = (info(1, SPP_PROTO_TCP), info(2, SPP_PROTO_TCP));
    assert_eq!(input(&a, b"x"), 1);
    assert_eq!(input(&a, b"yy"), 2);
    assert_eq!(input(&b, b"z"), 1);
    assert_eq!(route(&a), 2, "a's state counted its two inputs");
    assert_eq!(route(&b), 1, "b has a state of its own");
    assert_eq!(dropped(), 0);

    closed(&a);
    assert_eq!(CLOSED.lock().unwrap().as_slice(), &[(1, 2)]);
    assert_eq!(dropped(), 1, "the state is dropped after close");

    // A hook for a closed flow gets a fresh state, not kept.
    assert_eq!(route(&a), 0);
    // SAFETY: as in `input`; a NULL request is allowed.
    let answer = unsafe { spp_exception(&a, std::ptr::null(), 0, 3) };
    assert_eq!(answer, -1, "fresh state: no inputs, close");
    // SAFETY: as above.
    let answer = unsafe { spp_exception(&b, std::ptr::null(), 0, 3) };
    assert_eq!(answer, 0, "b's kept state");
    assert_eq!(dropped(), 3);

    // UDP: no close notification, so a state lasts one call.
    let u = info(3, SPP_PROTO_UDP);
    assert_eq!(input(&u, b"d"), 1);
    assert_eq!(route(&u), 0);
    assert_eq!(dropped(), 5);

    // A panicking hook answers SPP_HOOK_PANICKED and keeps the state.
    assert_eq!(input(&b, b"panic"), SPP_HOOK_PANICKED);
    assert_eq!(route(&b), 1);

    // `process` maps `Processed` to the C return codes.
    // SAFETY: as in `input`.
    let done = unsafe { spp_process(&b, b"ok".as_ptr(), 2) };
    // SAFETY: as in `input`.
    let close_it = unsafe { spp_process(&b, b"close".as_ptr(), 5) };
    assert_eq!((done, close_it), (0, -1));

    closed(&b);
    assert_eq!(CLOSED.lock().unwrap().as_slice(), &[(1, 2), (2, 1)]);
    assert_eq!(dropped(), 6);
    // A close of a connection that never sent anything: a default state.
    closed(&info(4, SPP_PROTO_TCP));
    assert_eq!(CLOSED.lock().unwrap().last(), Some(&(4, 0)));
}
