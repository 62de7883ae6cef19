//! Tests of the worker's host services: deferred replies, metrics, L5,
//! limits.

use super::*;
use crate::respond::tests::{drain, setup, setup_with_routes};
use spp_ipc::l5::table::{NodeView, SidView};
use spp_ipc::l5::{Instance, Sid, DEFAULT_WEIGHT};
use spp_ipc::record::{KIND_CLOSE, KIND_RESPONSE};
use spp_plugin_api::abi::{SPP_ERR_BAD_NAME, SPP_L5_BAD_PARAM, SPP_L5_SYSTEM};
use spp_plugin_api::{Host, HostError, Route, RouteError};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

/// Marks (or unmarks) the test's thread as the worker's main thread.
fn as_main_thread(main: bool) {
    ON_MAIN_THREAD.with(|m| m.set(main));
}

#[test]
fn deferred_replies_are_bounded_by_bytes_and_reuse_buffers() {
    const BUDGET: usize = 100;
    let (shared, responder, mut consumer) = setup();
    let host = HostServices::build(shared, responder, 1, 0, BUDGET);
    let ctx = &host.ctx.role;
    // Off the main thread every reply is deferred.
    as_main_thread(false);
    assert_eq!(ctx.reply(1, &[1; 60]), SPP_OK);
    assert_eq!(ctx.reply(2, &[2; 60]), SPP_ERR_FULL, "over the budget");
    assert_eq!(ctx.reply(3, &[3; 40]), SPP_OK, "exactly the budget");
    assert_eq!(ctx.reply(4, &[4; BUDGET + 1]), SPP_ERR_TOO_LARGE);
    assert_eq!(ctx.close(5), SPP_OK, "a close takes no bytes");
    assert_eq!(ctx.deferred_bytes.load(Ordering::Relaxed), BUDGET);

    as_main_thread(true);
    assert_eq!(host.forward_deferred(usize::MAX), 3);
    host.publish();
    as_main_thread(false);
    let got: Vec<_> = drain(&mut consumer)
        .into_iter()
        .map(|(kind, flow, bytes)| (kind, flow, bytes.len()))
        .collect();
    assert_eq!(
        got,
        vec![
            (KIND_RESPONSE, 1, 60),
            (KIND_RESPONSE, 3, 40),
            (KIND_CLOSE, 5, 0)
        ]
    );
    let stats = &shared.pair_header().stats;
    assert_eq!(stats.replies_dropped.load(Ordering::Relaxed), 2);

    // The budget is free again, and the buffers went back to the pool.
    assert_eq!(ctx.deferred_bytes.load(Ordering::Relaxed), 0);
    assert_eq!(ctx.pool.len(), 2);
    assert_eq!(ctx.reply(6, &[6; BUDGET]), SPP_OK);
    assert_eq!(ctx.pool.len(), 1, "a pooled buffer was reused");
}

#[test]
fn a_null_reply_is_a_bad_argument_and_max_reply_is_published() {
    const BUDGET: usize = 100;
    let (shared, responder, _consumer) = setup();
    let ring_max = responder.max_reply();
    let host = HostServices::build(shared, responder, 1, 0, BUDGET);
    // SAFETY: our own leaked table.
    let t = unsafe { &*host.table() };
    assert_eq!(t.max_reply, ring_max.min(BUDGET) as u64);
    // SAFETY: the null pointer with `len > 0` is refused unread.
    let null = unsafe { (t.reply)(t.ctx, 1, std::ptr::null(), 3) };
    assert_eq!(null, SPP_ERR_BAD_ARG);
}

#[test]
fn plugin_metrics_reach_the_pair_header_from_any_thread() {
    let (shared, responder, _consumer) = setup();
    let host = HostServices::build(shared, responder, 1, 0, DEFERRED_BYTE_BUDGET);
    // SAFETY: the table is leaked and valid for the process's life.
    let table: &'static SppHost = unsafe { &*host.table() };
    fn count(table: &SppHost, name: &str, delta: u64) -> c_int {
        // SAFETY: `ctx` is the table's own; `name` is `len` live bytes.
        unsafe { (table.count)(table.ctx, name.as_ptr().cast(), name.len(), delta) }
    }
    let latency = |name: &str, nanos: u64| {
        // SAFETY: as above.
        unsafe { (table.record_latency)(table.ctx, name.as_ptr().cast(), name.len(), nanos) }
    };
    as_main_thread(true);
    assert_eq!(count(table, "cache_hits", 2), SPP_OK);
    assert_eq!(latency("db_query", 1500), SPP_OK);
    assert_eq!(count(table, "has space", 1), SPP_ERR_BAD_NAME);
    // SAFETY: a null name is refused before it is read.
    let null = unsafe { (table.count)(table.ctx, std::ptr::null(), 4, 1) };
    assert_eq!(null, SPP_ERR_BAD_NAME);
    as_main_thread(false);
    // The table holds raw pointers (not `Sync`): hand its address over.
    let address = host.table() as usize;
    std::thread::spawn(move || {
        // SAFETY: the leaked table, valid for the process's life.
        let table = unsafe { &*(address as *const SppHost) };
        assert_eq!(count(table, "cache_hits", 3), SPP_OK);
    })
    .join()
    .unwrap();
    let snapshot = shared.pair_header().plugin.snapshot();
    assert_eq!(snapshot.counters, vec![("cache_hits".to_string(), 5)]);
    assert_eq!(snapshot.latencies.len(), 1);
    assert_eq!(snapshot.latencies[0].0, "db_query");
    assert_eq!(snapshot.latencies[0].1.count, 1);
    assert_eq!(snapshot.latencies[0].1.sum_ns, 1500);
    assert_eq!(snapshot.refused, 2, "the bad name and the null one");
}

/// Sid 64001:1 with two live nodes of equal weight, and 64001:2 with
/// none, published in a fresh table. Returns it and the nodes' (address,
/// slot).
fn l5_table() -> (RouteTable, [(SocketAddr, u32); 2]) {
    let sid = Sid {
        modid: 64001,
        cmdid: 1,
    };
    let mut table = RouteTable::create().unwrap();
    let mut nodes = Vec::new();
    let mut slots = Vec::new();
    for port in [7001, 7002] {
        let instance = Instance {
            sid,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            weight: DEFAULT_WEIGHT,
        };
        let slot = table.slot_for(&instance).unwrap();
        slots.push((instance.addr, slot));
        nodes.push(NodeView {
            instance,
            weight: DEFAULT_WEIGHT,
            dead: false,
            slot,
        });
    }
    let empty = Sid {
        modid: 64001,
        cmdid: 2,
    };
    table
        .publish(&[
            SidView {
                sid,
                nodes,
                probe_budget: 0,
            },
            SidView {
                sid: empty,
                nodes: Vec::new(),
                probe_budget: 0,
            },
        ])
        .unwrap();
    (table, [slots[0], slots[1]])
}

/// The plugin's view of a host table.
fn plugin_host(host: &HostServices) -> Host {
    // SAFETY: the table is leaked and valid for the process's life.
    unsafe { Host::from_raw(host.table()) }.unwrap()
}

#[test]
fn l5_services_answer_from_the_route_table_on_any_thread() {
    let (table, nodes) = l5_table();
    let (shared, responder, _consumer) = setup_with_routes(Some(table));
    let routes = shared.routes.as_ref().unwrap();
    let services = HostServices::build(shared, responder, 1, 0, DEFERRED_BYTE_BUDGET);
    let host = plugin_host(&services);
    let slot_of = |addr: SocketAddr| nodes.iter().find(|n| n.0 == addr).map(|n| n.1);

    // Weighted random: every answer is one of the nodes, with its slot,
    // and both nodes are chosen (the per-thread generator moves).
    let mut seen = HashSet::new();
    for _ in 0..1000 {
        let route = host.get_route(64001, 1).unwrap();
        assert_eq!(route.sid(), (64001, 1));
        let addr = route.addr().unwrap();
        assert_eq!(Some(route.0.slot), slot_of(addr), "{addr}");
        seen.insert(addr);
    }
    assert_eq!(seen.len(), 2, "both equal-weight nodes are picked");

    // Consistent hash: a key sticks to one node; keys spread.
    let first = host.get_route_hash(64001, 1, 42).unwrap();
    for _ in 0..16 {
        assert_eq!(host.get_route_hash(64001, 1, 42).unwrap(), first);
    }
    let spread: HashSet<_> = (0..256u64)
        .map(|key| host.get_route_hash(64001, 1, key).unwrap().addr().unwrap())
        .collect();
    assert_eq!(spread.len(), 2, "256 keys reach both nodes");

    // L5's codes.
    assert_eq!(host.get_route(1, 1), Err(RouteError::UnknownSid));
    assert_eq!(host.get_route_hash(1, 1, 5), Err(RouteError::UnknownSid));
    assert_eq!(host.get_route(64001, 2), Err(RouteError::NoServer));

    // Reports land in the node's counters (read as the controller does).
    let route = host.get_route(64001, 1).unwrap();
    let slot = route.0.slot;
    let before = routes.counts(slot);
    host.report(&route, 0, Duration::from_micros(1500)).unwrap();
    host.report(&route, -1, Duration::from_micros(500)).unwrap();
    host.report(&route, -1, Duration::from_micros(0)).unwrap();
    let after = routes.counts(slot);
    assert_eq!(after.success - before.success, 1);
    assert_eq!(after.failure - before.failure, 2);
    assert_eq!(after.latency_us - before.latency_us, 2000);
    assert_eq!(after.consecutive_errors, 2);

    // Plugins call from their own threads: same answers, same counters.
    let other = std::thread::spawn(move || {
        let route = host.get_route(64001, 1).unwrap();
        host.report(&route, 0, Duration::from_micros(10)).unwrap();
        assert_eq!(host.get_route_hash(64001, 1, 42).unwrap(), first);
        route
    })
    .join()
    .unwrap();
    let counts = routes.counts(other.0.slot);
    assert_eq!(counts.consecutive_errors, 0, "a success resets the run");
    let total: u64 = nodes.iter().map(|n| routes.counts(n.1).success).sum();
    assert_eq!(total, 2, "one success from each thread");
}

#[test]
fn l5_services_refuse_null_and_garbled_parameters() {
    let (table, _) = l5_table();
    let (shared, responder, _consumer) = setup_with_routes(Some(table));
    let services = HostServices::build(shared, responder, 1, 0, DEFERRED_BYTE_BUDGET);
    // SAFETY: the table is leaked and valid for the process's life.
    let raw: &SppHost = unsafe { &*services.table() };
    // SAFETY: NULL pointers are refused before any access.
    unsafe {
        assert_eq!(
            (raw.get_route)(raw.ctx, 64001, 1, std::ptr::null_mut()),
            SPP_L5_BAD_PARAM
        );
        assert_eq!(
            (raw.get_route_hash)(raw.ctx, 64001, 1, 7, std::ptr::null_mut()),
            SPP_L5_BAD_PARAM
        );
        assert_eq!(
            (raw.report)(raw.ctx, std::ptr::null(), 0, 1),
            SPP_L5_BAD_PARAM
        );
    }
    let mut route = SppL5Route::default();
    // SAFETY: `route` is a live, writable `SppL5Route`.
    let code = unsafe { (raw.get_route)(raw.ctx, 64001, 1, &mut route) };
    assert_eq!(code, SPP_OK);
    route.addr.family = 99;
    // SAFETY: `route` is a live `SppL5Route`.
    let code = unsafe { (raw.report)(raw.ctx, &route, 0, 1) };
    assert_eq!(code, SPP_L5_BAD_PARAM, "an address that is not one");
}

#[test]
fn without_a_route_table_l5_services_answer_system_error() {
    let (shared, responder, _consumer) = setup();
    let services = HostServices::build(shared, responder, 1, 0, DEFERRED_BYTE_BUDGET);
    let host = plugin_host(&services);
    assert_eq!(host.get_route(64001, 1), Err(RouteError::System));
    assert_eq!(host.get_route_hash(64001, 1, 9), Err(RouteError::System));
    let route = Route(SppL5Route::default());
    assert_eq!(
        host.report(&route, 0, Duration::ZERO),
        Err(HostError::Other(SPP_L5_SYSTEM))
    );
    // SAFETY: the table is leaked and valid for the process's life.
    let raw: &SppHost = unsafe { &*services.table() };
    // SAFETY: with no table the pointer is never touched.
    let code = unsafe { (raw.get_route)(raw.ctx, 64001, 1, std::ptr::null_mut()) };
    assert_eq!(code, SPP_L5_SYSTEM);
}
