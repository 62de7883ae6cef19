//! L5 with the etcd backend, against a real etcd 3.4 server that each test
//! starts on 127.0.0.1 ephemeral ports with a temp data dir (and kills by
//! pid at the end): registration under the configured prefix, failover
//! after a crash of a whole service, lease expiry removing a killed
//! controller's instances, routing on the last known table while etcd is
//! down (with the error in status), and recovery when it returns.
//!
//! A machine without etcd fails these tests with a message saying so (CI
//! installs the Debian package `etcd-server`).

use serde_json::Value;
use spp_tests::etcd::Etcd;
use spp_tests::l5::{self, Failover};
use spp_tests::relay::RelayLoad;
use spp_tests::{wait_for, L5Config, Service};
use std::net::SocketAddr;
use std::sync::Mutex;

/// The sid A and B register.
const SID: (u32, u32) = (64011, 3);
/// [`l5::TEST_TTL`] in seconds, as etcd reports a lease's TTL.
const TTL_SECS: i64 = 2;
/// The key prefix of the test configs (not the default, so the key is
/// seen to be honoured).
const PREFIX: &str = "/spp-test/l5/";

/// The tests of this file run one at a time: each runs etcd and several
/// services, and their periods and leases must not starve on 2 cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn etcd_l5(etcd: &Etcd, sid: Option<(u32, u32)>) -> L5Config {
    L5Config {
        prefix: Some(PREFIX.into()),
        ..l5::test_l5(&etcd.backend(), sid)
    }
}

/// The key an instance of `sid` at `addr` is registered under.
fn key((modid, cmdid): (u32, u32), addr: SocketAddr) -> String {
    format!("{PREFIX}{modid}/{cmdid}/{addr}")
}

/// The value registered for `addr`, if its key is in etcd.
fn registered(etcd: &Etcd, addr: SocketAddr) -> Option<Value> {
    let keys = etcd
        .keys(PREFIX)
        .unwrap_or_else(|e| panic!("{e}\n{}", etcd.log_tail()));
    let (_, value) = keys.into_iter().find(|(k, _)| *k == key(SID, addr))?;
    Some(serde_json::from_str(&value).unwrap_or_else(|e| panic!("value of {addr}: {e}: {value}")))
}

/// The harness itself: etcd starts, answers, keeps a key across a stop and
/// a restart on the same ports and data.
#[test]
fn the_test_etcd_keeps_its_data_across_a_restart() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut etcd = Etcd::start();
    assert_eq!(etcd.keys(PREFIX), Ok(Vec::new()));
    let k = format!("{PREFIX}probe");
    etcd.put(&k, "{\"x\":1}").unwrap_or_else(|e| panic!("{e}"));
    etcd.stop();
    assert!(!etcd.healthy() && etcd.pid().is_none());
    etcd.restart();
    assert_eq!(etcd.keys(PREFIX), Ok(vec![(k, "{\"x\":1}".to_string())]));
}

/// Two echo services register one sid in etcd (one key each under the
/// prefix, JSON naming the sid, address and weight); a relay consumes it
/// and both get traffic. `kill -9` of A's whole tree: its lease is no
/// longer kept alive, etcd removes its key when the TTL runs out, A
/// vanishes from R's table, at most a bounded number of calls fail and the
/// rest go to B. A restarted registers again and gets traffic again.
#[test]
fn a_crashed_instance_expires_from_etcd_and_its_traffic_moves_and_returns() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let etcd = Etcd::start();
    let mut f = Failover::start(
        &l5::echo_config("a", etcd_l5(&etcd, Some(SID))),
        &l5::echo_config("b", etcd_l5(&etcd, Some(SID))),
        &l5::relay_config("r", SID, etcd_l5(&etcd, None)),
        SID,
    );
    for addr in [f.a_addr, f.b_addr] {
        let value = registered(&etcd, addr).unwrap_or_else(|| {
            panic!(
                "{} should be in etcd: {:?}",
                key(SID, addr),
                etcd.keys(PREFIX)
            )
        });
        assert_eq!(value["modid"], SID.0, "{value}");
        assert_eq!(value["cmdid"], SID.1, "{value}");
        assert_eq!(value["ip"], addr.ip().to_string(), "{value}");
        assert_eq!(value["port"], addr.port(), "{value}");
        assert_eq!(value["weight"], 100, "{value}");
    }
    f.check_cli_shows_both();
    // A's key is held by a lease granted with the configured TTL: that is
    // what removes it once nobody keeps the lease alive.
    let a_lease = etcd
        .lease_of(&key(SID, f.a_addr))
        .unwrap_or_else(|e| panic!("{e}"))
        .expect("A's key should be held by a lease");
    assert_eq!(
        etcd.lease_granted_ttl(a_lease),
        Ok(Some(TTL_SECS)),
        "A's lease should have the configured TTL ({})",
        l5::TEST_TTL
    );

    let old_a = f.a_addr;
    let crash = f.crash_a();
    eprintln!("failover: {crash:?}");
    // Until the lease expired, R's balancer had judged A from the relay's
    // reports: dead, weight 0 (only probes reach it).
    assert!(
        crash.seen_dead,
        "R's table should show A dead before its lease expires: {crash:?}"
    );
    // What R saw is what etcd holds: the lease expired and took A's key.
    assert!(
        registered(&etcd, old_a).is_none(),
        "A's key should be gone with its lease: {:?}",
        etcd.keys(PREFIX)
    );
    assert_eq!(
        etcd.lease_granted_ttl(a_lease),
        Ok(None),
        "A's lease should have expired"
    );
    assert!(registered(&etcd, f.b_addr).is_some(), "B stays registered");

    f.restart_a();
    assert!(
        registered(&etcd, f.a_addr).is_some(),
        "A registered again: {:?}",
        etcd.keys(PREFIX)
    );
    let total = f.load.stop();
    assert!(
        total.failed <= l5::MAX_FAILOVER_FAILURES,
        "only the failover may fail calls: {total:?}"
    );
}

/// etcd stops while the relay runs: the relay keeps routing on the last
/// known table (every call still succeeds) and `spp status --json` shows
/// the backend's error; etcd comes back: the error clears, B is still
/// registered and routed to.
#[test]
fn routing_keeps_the_last_table_while_etcd_is_down() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut etcd = Etcd::start();
    let b = Service::start(&l5::echo_config("b", etcd_l5(&etcd, Some(SID))));
    let b_addr = b.tcp();
    let r = Service::start(&l5::relay_config("r", SID, etcd_l5(&etcd, None)));
    l5::wait_view(&r, SID, "R should route to B", |nodes| {
        l5::find(nodes, b_addr).is_some_and(l5::Node::live)
    });
    let load = RelayLoad::start(r.tcp(), 2, l5::CLIENT_PAUSE);
    l5::all_succeed_via(&b, 100, &load, "B");
    let status = r.status();
    assert_eq!(
        l5::backend_error(&status),
        None,
        "no backend error while etcd runs: {}",
        l5::status_l5(&status)
    );

    etcd.stop();
    let mut last = Value::Null;
    let error = wait_for(l5::VIEW_TIMEOUT, || {
        let status = r.try_status().ok()?;
        let error = l5::backend_error(&status);
        last = l5::status_l5(&status).clone();
        error
    });
    let error = error.unwrap_or_else(|| {
        panic!(
            "R's status should show the backend error once etcd is down; last L5 status: {last}\n{}",
            r.logs()
        )
    });
    eprintln!("R's backend error while etcd is down: {error}");
    let table = r.spp(&["status"]);
    assert!(
        table.stdout.contains("backend error"),
        "spp status should say the backend fails: {}",
        table.text()
    );
    l5::all_succeed_via(&b, 300, &load, "B on the last known table");
    let nodes = l5::get(&r, SID).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        l5::find(&nodes, b_addr).is_some_and(l5::Node::live),
        "B stays in the table while etcd is down: {nodes:#?}"
    );

    etcd.restart();
    let cleared = r.wait_status(l5::VIEW_TIMEOUT, |status| {
        l5::backend_error(status).is_none().then_some(())
    });
    assert!(
        cleared.is_some(),
        "R's backend error should clear once etcd is back: {}\n{}",
        l5::status_l5(&r.status()),
        r.logs()
    );
    l5::all_succeed_via(&b, 100, &load, "B after etcd came back");
    let back = wait_for(l5::VIEW_TIMEOUT, || registered(&etcd, b_addr));
    assert!(
        back.is_some(),
        "B should be registered in etcd again: {:?}",
        etcd.keys(PREFIX)
    );
    let total = load.finish();
    assert_eq!(
        total.failed, 0,
        "no call may fail through the outage: {total:?}"
    );
}
