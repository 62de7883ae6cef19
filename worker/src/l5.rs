//! The L5 host services a worker answers for its plugin: `get_route`,
//! `get_route_hash` and `report`, from the service's shared-memory
//! [`RouteTable`] (inherited from the controller, mapped by
//! [`crate::attach`]).
//!
//! Any thread may call them (plugins call from their own threads). The hot
//! path takes no lock, allocates nothing and makes no syscall: the table is
//! read through its seqlocks and counted into with atomics, and the random
//! number for the weighted choice comes from a per-thread wyrand generator
//! seeded once per thread ([`next_random`]).
//!
//! Codes: `SPP_OK`, or L5's (`L5Error::code`): `SPP_L5_UNKNOWN_SID`,
//! `SPP_L5_NO_SERVER`, `SPP_L5_SYSTEM` (no table in this process, or the
//! table is busy); `SPP_L5_BAD_PARAM` for a NULL pointer or a route whose
//! address family is unknown. Without a table every call answers
//! `SPP_L5_SYSTEM`, whatever its parameters.

use spp_ipc::l5::table::{Route, RouteTable};
use spp_ipc::l5::Sid;
use spp_plugin_api::abi::{SppAddr, SppL5Route, SPP_L5_BAD_PARAM, SPP_L5_SYSTEM, SPP_OK};
use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::ffi::c_int;
use std::hash::BuildHasher;
use std::time::{SystemTime, UNIX_EPOCH};

/// wyrand's increment.
const WY_ADD: u64 = 0xa076_1d64_78bd_642f;
/// wyrand's mixing constant.
const WY_XOR: u64 = 0xe703_7ed1_a0b4_28db;

thread_local! {
    /// This thread's wyrand state, seeded on the thread's first call.
    static RNG: Cell<u64> = Cell::new(seed());
}

/// A seed unique to this thread: std's per-thread random hasher keys (read
/// from the OS once per thread) over the thread id and the clock.
fn seed() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    RandomState::new().hash_one((std::thread::current().id(), now))
}

/// The next number of this thread's generator (wyrand: fast, 64-bit
/// output, fine for load balancing; not for secrets).
pub fn next_random() -> u64 {
    RNG.try_with(|state| {
        let s = state.get().wrapping_add(WY_ADD);
        state.set(s);
        let t = u128::from(s).wrapping_mul(u128::from(s ^ WY_XOR));
        ((t >> 64) as u64) ^ (t as u64)
    })
    // Only while this thread's locals are being torn down: still some
    // entropy, never a panic across the C boundary.
    .unwrap_or_else(|_| seed())
}

/// The route as the C ABI carries it.
pub(crate) fn to_abi(route: &Route) -> SppL5Route {
    SppL5Route {
        modid: route.sid.modid,
        cmdid: route.sid.cmdid,
        addr: SppAddr::from_socket_addr(route.addr),
        slot: route.slot,
        slot_epoch: route.slot_epoch,
    }
}

/// The route a plugin hands back; `None` if its address is not one.
fn from_abi(raw: &SppL5Route) -> Option<Route> {
    Some(Route {
        sid: Sid {
            modid: raw.modid,
            cmdid: raw.cmdid,
        },
        addr: raw.addr.to_socket_addr()?,
        slot: raw.slot,
        slot_epoch: raw.slot_epoch,
    })
}

/// Writes `pick`'s route to `out`, or answers its error code.
///
/// # Safety
/// `out` must be null or valid for writing one `SppL5Route`.
unsafe fn answer(
    routes: Option<&RouteTable>,
    out: *mut SppL5Route,
    pick: impl FnOnce(&RouteTable) -> Result<Route, spp_ipc::l5::L5Error>,
) -> c_int {
    let Some(routes) = routes else {
        return SPP_L5_SYSTEM;
    };
    if out.is_null() {
        return SPP_L5_BAD_PARAM;
    }
    match pick(routes) {
        Ok(route) => {
            // SAFETY: non-null, and the caller guarantees it is writable.
            unsafe { out.write(to_abi(&route)) };
            SPP_OK
        }
        Err(err) => err.code(),
    }
}

/// `spp_host.get_route`: a weighted-random instance of (`modid`, `cmdid`).
///
/// # Safety
/// `out` must be null or valid for writing one `SppL5Route`.
pub unsafe fn get_route(
    routes: Option<&RouteTable>,
    modid: u32,
    cmdid: u32,
    out: *mut SppL5Route,
) -> c_int {
    let sid = Sid { modid, cmdid };
    // SAFETY: forwarded from the caller.
    unsafe { answer(routes, out, |table| table.pick(sid, next_random())) }
}

/// `spp_host.get_route_hash`: the instance of (`modid`, `cmdid`) that `key`
/// hashes to.
///
/// # Safety
/// As for [`get_route`].
pub unsafe fn get_route_hash(
    routes: Option<&RouteTable>,
    modid: u32,
    cmdid: u32,
    key: u64,
    out: *mut SppL5Route,
) -> c_int {
    let sid = Sid { modid, cmdid };
    // SAFETY: forwarded from the caller.
    unsafe { answer(routes, out, |table| table.pick_hash(sid, key)) }
}

/// `spp_host.report`: the outcome of a call on `route` (`result` >= 0 is a
/// success) and its latency in µs.
///
/// # Safety
/// `route` must be null or point to one readable `SppL5Route`.
pub unsafe fn report(
    routes: Option<&RouteTable>,
    route: *const SppL5Route,
    result: c_int,
    latency_us: u64,
) -> c_int {
    let Some(routes) = routes else {
        return SPP_L5_SYSTEM;
    };
    // SAFETY: null or readable, as the caller guarantees.
    let Some(raw) = (unsafe { route.as_ref() }) else {
        return SPP_L5_BAD_PARAM;
    };
    let Some(route) = from_abi(raw) else {
        return SPP_L5_BAD_PARAM;
    };
    routes.report(&route, result, latency_us);
    SPP_OK
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_generator_varies_and_differs_between_threads() {
        let mine: Vec<u64> = (0..64).map(|_| next_random()).collect();
        assert_eq!(
            mine.iter().collect::<HashSet<_>>().len(),
            mine.len(),
            "no repeats in 64 draws"
        );
        let theirs: Vec<u64> = std::thread::spawn(|| (0..64).map(|_| next_random()).collect())
            .join()
            .unwrap();
        assert_ne!(mine, theirs, "each thread has its own seed");
        // Both halves of the output move (the weighted choice may use
        // either).
        assert!(mine.iter().any(|v| v >> 63 == 1) && mine.iter().any(|v| v >> 63 == 0));
        assert!(mine.iter().any(|v| v & 1 == 1) && mine.iter().any(|v| v & 1 == 0));
    }

    #[test]
    fn routes_round_trip_through_the_abi() {
        let route = Route {
            sid: Sid {
                modid: 64001,
                cmdid: 7,
            },
            addr: "[::1]:8080".parse().unwrap(),
            slot: 12,
            slot_epoch: 3,
        };
        let raw = to_abi(&route);
        assert_eq!(
            (raw.modid, raw.cmdid, raw.slot, raw.slot_epoch),
            (64001, 7, 12, 3)
        );
        assert_eq!(from_abi(&raw), Some(route));
        let garbled = SppL5Route {
            addr: SppAddr {
                family: 99,
                ..raw.addr
            },
            ..raw
        };
        assert_eq!(from_abi(&garbled), None);
    }
}
