//! An inert host services table for the tests that call a plugin's hooks
//! directly: every service answers `SPP_OK` (logging nothing), except the
//! micro-thread ones, which answer `SPP_ERR_UNSUPPORTED` as a host without
//! micro-threads does. A test overrides the services it looks at:
//! `HostFns { reply: my_reply, ..common::inert() }`.

use spp_plugin_api::abi::{HostFns, SppCall, SppL5Route, SPP_ERR_UNSUPPORTED, SPP_OK};
use std::ffi::{c_char, c_int, c_void};

unsafe extern "C" fn reply(_: *mut c_void, _: u64, _: *const u8, _: usize) -> c_int {
    SPP_OK
}
unsafe extern "C" fn close(_: *mut c_void, _: u64) -> c_int {
    SPP_OK
}
unsafe extern "C" fn log(_: *mut c_void, _: c_int, _: *const c_char, _: usize) {}
unsafe extern "C" fn count(_: *mut c_void, _: *const c_char, _: usize, _: u64) -> c_int {
    SPP_OK
}
unsafe extern "C" fn get_route(_: *mut c_void, _: u32, _: u32, _: *mut SppL5Route) -> c_int {
    SPP_OK
}
unsafe extern "C" fn get_route_hash(
    _: *mut c_void,
    _: u32,
    _: u32,
    _: u64,
    _: *mut SppL5Route,
) -> c_int {
    SPP_OK
}
unsafe extern "C" fn report(_: *mut c_void, _: *const SppL5Route, _: c_int, _: u64) -> c_int {
    SPP_OK
}
unsafe extern "C" fn sleep(_: *mut c_void, _: u64) -> c_int {
    SPP_ERR_UNSUPPORTED
}
unsafe extern "C" fn call(_: *mut c_void, _: *mut SppCall) -> c_int {
    SPP_ERR_UNSUPPORTED
}
unsafe extern "C" fn call_many(_: *mut c_void, _: *mut SppCall, _: usize, _: usize) -> c_int {
    SPP_ERR_UNSUPPORTED
}

/// The inert services.
pub fn inert() -> HostFns {
    HostFns {
        reply,
        close,
        log,
        count,
        record_latency: count,
        get_route,
        get_route_hash,
        report,
        sleep,
        call,
        call_many,
    }
}
