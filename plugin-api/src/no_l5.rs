//! L5 host services for a host without a route table (the proxy, a bench
//! harness): each answers `SPP_L5_SYSTEM`, as `spp_plugin.h` promises
//! outside the worker role.

use crate::abi::{SppL5Route, SPP_L5_SYSTEM};
use std::ffi::{c_int, c_void};

/// `spp_host.get_route` without a route table.
///
/// # Safety
/// Reads nothing; callable with any arguments.
pub unsafe extern "C" fn get_route(_: *mut c_void, _: u32, _: u32, _: *mut SppL5Route) -> c_int {
    SPP_L5_SYSTEM
}

/// `spp_host.get_route_hash` without a route table.
///
/// # Safety
/// Reads nothing; callable with any arguments.
pub unsafe extern "C" fn get_route_hash(
    _: *mut c_void,
    _: u32,
    _: u32,
    _: u64,
    _: *mut SppL5Route,
) -> c_int {
    SPP_L5_SYSTEM
}

/// `spp_host.report` without a route table.
///
/// # Safety
/// Reads nothing; callable with any arguments.
pub unsafe extern "C" fn report(_: *mut c_void, _: *const SppL5Route, _: c_int, _: u64) -> c_int {
    SPP_L5_SYSTEM
}
