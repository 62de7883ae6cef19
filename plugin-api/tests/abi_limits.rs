//! The Rust layer's view of the ABI's limits and declarations: a plugin
//! with `STATEFUL = true` exports a non-zero `spp_plugin_stateful`;
//! [`Host::max_reply`] reads the appended field only when the host's
//! `size` covers it; `SPP_ERR_BAD_ARG` is [`HostError::BadArg`]; an
//! `input` that names more bytes than it was given is passed on (the host
//! treats it as a plugin error) instead of being clamped; `flow_closed`
//! reaches [`OnFlowClosed`].

mod common;

use spp_plugin_api::abi::{
    HostFns, SppConnInfo, SppHost, SPP_ERR_BAD_ARG, SPP_OK, SPP_PROTO_TCP, SPP_ROLE_WORKER,
};
use spp_plugin_api::{
    export_plugin, Conn, Host, HostError, Input, OnFlowClosed, Plugin, Processed,
};
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering};

/// The last flow `flow_closed` was told about.
static LAST_CLOSED: AtomicU64 = AtomicU64::new(0);

/// Says its buffer plus 10 bytes are one request (a broken framer).
struct Stateful;

impl Plugin for Stateful {
    type ConnState = ();
    const STATEFUL: bool = true;

    fn init(_host: Host, _conf: &str) -> Result<Self, i32> {
        Ok(Stateful)
    }
    fn input(&self, _c: Conn<'_>, _s: &mut (), buf: &[u8]) -> Input {
        Input::Complete(buf.len() + 10)
    }
    fn process(&self, _c: Conn<'_>, _req: &[u8]) -> Processed {
        Processed::Done
    }
}

impl OnFlowClosed for Stateful {
    fn flow_closed(&self, flow: u64) {
        LAST_CLOSED.store(flow, Ordering::Relaxed);
    }
}

export_plugin!(Stateful, hooks: [flow_closed]);

/// Flow this test host refuses as a bad argument whatever the bytes.
const BAD_FLOW: u64 = 99;

unsafe extern "C" fn reply(_: *mut c_void, flow: u64, data: *const u8, len: usize) -> c_int {
    if flow == BAD_FLOW || data.is_null() && len > 0 {
        SPP_ERR_BAD_ARG
    } else {
        SPP_OK
    }
}

/// A leaked worker table with `max_reply`, whose `size` says it ends at
/// `size`.
fn table(max_reply: u64, size: usize) -> &'static SppHost {
    let mut host = SppHost::new(
        SPP_ROLE_WORKER,
        1,
        0,
        std::ptr::null_mut(),
        HostFns {
            reply,
            ..common::inert()
        },
    );
    host.max_reply = max_reply;
    host.size = u32::try_from(size).unwrap();
    Box::leak(Box::new(host))
}

fn host(max_reply: u64, size: usize) -> Host {
    // SAFETY: the table is leaked, valid for the test's life.
    unsafe { Host::from_raw(table(max_reply, size)) }.unwrap()
}

#[test]
fn a_stateful_plugin_says_so_in_its_exported_symbol() {
    assert_eq!(spp_plugin_stateful, 1);
}

#[test]
fn max_reply_needs_the_size_check_and_a_known_value() {
    let full = std::mem::size_of::<SppHost>();
    assert_eq!(host(4096, full).max_reply(), Some(4096));
    assert_eq!(host(0, full).max_reply(), None, "0 = not known");
    let old = std::mem::offset_of!(SppHost, max_reply);
    assert_eq!(host(4096, old).max_reply(), None, "an older host's table");
}

#[test]
fn a_bad_argument_is_its_own_error() {
    let t = table(1, std::mem::size_of::<SppHost>());
    // SAFETY: our own table's reply; NULL with len > 0 is refused unread.
    let code = unsafe { (t.reply)(t.ctx, 1, std::ptr::null(), 3) };
    assert_eq!(code, SPP_ERR_BAD_ARG);
    let h = host(1, std::mem::size_of::<SppHost>());
    assert_eq!(h.reply(1, b"x"), Ok(()));
    assert_eq!(h.reply(BAD_FLOW, b"x"), Err(HostError::BadArg));
}

#[test]
fn an_input_overrun_is_passed_on_not_clamped_and_flow_closed_arrives() {
    let t = table(1, std::mem::size_of::<SppHost>());
    // SAFETY: the table outlives the plugin; the conf is NUL-terminated.
    assert_eq!(unsafe { spp_init(t, c"".as_ptr()) }, 0);
    let conn = SppConnInfo {
        flow: 1,
        proto: SPP_PROTO_TCP,
        ..SppConnInfo::default()
    };
    let buf = b"abc";
    // SAFETY: `conn` and `buf` are valid for the call.
    let said = unsafe { spp_input(&conn, buf.as_ptr(), buf.len()) };
    assert_eq!(said, 13, "more than it was given reaches the host");
    spp_flow_closed(77);
    assert_eq!(LAST_CLOSED.load(Ordering::Relaxed), 77);
}
