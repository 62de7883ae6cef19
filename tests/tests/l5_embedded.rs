//! L5 with the embedded registry (files in a `registry_dir` shared by the
//! spp instances of a machine): registration, routing through the relay
//! example plugin (`get_route` / `report`), failover after a crash of a
//! whole service, its return, static routes, and `spp l5 list/get`.
//!
//! Every service runs for real on 127.0.0.1 with ephemeral ports; every
//! test has its own registry dir; the L5 period is 500 ms and the TTL 2 s.

use spp_tests::l5::{self, Failover};
use spp_tests::relay::RelayLoad;
use spp_tests::L5Config;
use std::path::Path;
use std::sync::Mutex;

/// The sid A and B register.
const SID: (u32, u32) = (64001, 1);
/// A sid nobody registers: only the static routes file names it.
const STATIC_SID: (u32, u32) = (64002, 7);
/// The weight the routes file gives it.
const STATIC_WEIGHT: u64 = 300;

/// The tests of this file run one at a time: each starts several services,
/// and their periods must not starve on a 2-core machine.
static SERIAL: Mutex<()> = Mutex::new(());

fn embedded(registry: &Path, sid: Option<(u32, u32)>) -> L5Config {
    L5Config {
        registry_dir: Some(registry.to_path_buf()),
        ..l5::test_l5("embedded", sid)
    }
}

/// Two echo services register one sid; a relay consumes it. Both get
/// traffic; `spp l5 list/get` show both; `kill -9` of A's whole tree moves
/// its share to B with a bounded number of failed calls and A vanishes
/// from the table; A restarted registers again and gets traffic again.
#[test]
fn a_crashed_instance_loses_its_traffic_to_the_other_and_gets_it_back() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let registry = tempfile::tempdir().expect("registry dir");
    let mut f = Failover::start(
        &l5::echo_config("a", embedded(registry.path(), Some(SID))),
        &l5::echo_config("b", embedded(registry.path(), Some(SID))),
        &l5::relay_config("r", SID, embedded(registry.path(), None)),
        SID,
    );
    f.check_cli_shows_both();

    let crash = f.crash_a();
    eprintln!("failover: {crash:?}");
    f.restart_a();

    let total = f.load.stop();
    assert!(
        total.failed <= l5::MAX_FAILOVER_FAILURES,
        "only the failover may fail calls: {total:?}"
    );
}

/// A sid that no service registers is routable from the static routes file
/// (L5's backup format `modid cmdid ip port [weight]`; comments and blank
/// lines ignored): here B's listener with weight 300, and an address where
/// nothing listens. Calls through the relay all reach B; the balancer marks
/// the dead address dead (weight 0) from the relay's reports, and it stays
/// listed (static routes do not expire); `spp l5 get` shows both nodes with
/// the file's weights.
#[test]
fn a_static_route_is_routable_and_a_dead_one_is_avoided() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let registry = tempfile::tempdir().expect("registry dir");
    let b = spp_tests::Service::start(&l5::echo_config("b", embedded(registry.path(), Some(SID))));
    let b_addr = b.tcp();
    // A port that was free a moment ago: connections to it are refused.
    let nobody = spp_tests::http::free_local_addr();
    let routes = registry.path().join("static.routes");
    std::fs::write(
        &routes,
        format!(
            "# static routes for services that do not register\n\n\
             {m} {c} {} {} {STATIC_WEIGHT}\n{m} {c} {} {}\n",
            b_addr.ip(),
            b_addr.port(),
            nobody.ip(),
            nobody.port(),
            m = STATIC_SID.0,
            c = STATIC_SID.1,
        ),
    )
    .expect("write routes file");
    let r = spp_tests::Service::start(&l5::relay_config(
        "r",
        STATIC_SID,
        L5Config {
            routes_file: Some(routes),
            ..embedded(registry.path(), None)
        },
    ));
    l5::wait_view(
        &r,
        STATIC_SID,
        "the static routes should be listed",
        |nodes| {
            nodes.len() == 2
                && l5::find(nodes, b_addr).is_some_and(|n| {
                    n.live() && n.source == "static" && n.static_weight == STATIC_WEIGHT
                })
                && l5::find(nodes, nobody)
                    .is_some_and(|n| n.source == "static" && n.static_weight == 100)
        },
    );

    let load = RelayLoad::start(r.tcp(), 2, l5::CLIENT_PAUSE);
    l5::wait_view(
        &r,
        STATIC_SID,
        "the dead static route should be judged dead",
        |nodes| {
            l5::find(nodes, nobody).is_some_and(|n| n.dead && n.weight == 0)
                && l5::find(nodes, b_addr).is_some_and(l5::Node::live)
        },
    );
    l5::all_succeed_via(&b, 200, &load, "the static route to B");
    let total = load.finish();
    assert!(
        total.failed <= l5::MAX_FAILOVER_FAILURES,
        "only calls before the dead route was judged may fail: {total:?}"
    );

    // Both sids are in R's table: the static one and B's registered one.
    let all = l5::list(&r).unwrap_or_else(|e| panic!("{e}"));
    for (sid, addr, source) in [
        (STATIC_SID, b_addr, "static"),
        (STATIC_SID, nobody, "static"),
        (SID, b_addr, "registry"),
    ] {
        assert!(
            all.iter()
                .any(|n| (n.modid, n.cmdid) == sid && n.addr == addr && n.source == source),
            "{sid:?} at {addr} ({source}) should be listed: {all:#?}"
        );
    }
}
