//! What the controller changes under a running proxy, and what the proxy
//! reports back: the drain handshake with a worker leaving service, limits
//! published by a reload, SIGHUP log reopening, the plugin's own metrics
//! and the `host_refused` counter.

mod harness;

use harness::*;
use spp_ipc::pair::PairObserver;
use spp_ipc::pair::WorkerSlot;
use std::io::Write;
use std::sync::atomic::Ordering;

fn drain_ack(rig: &Rig, slot: usize) -> u64 {
    PairObserver::new(&rig.pairs[slot]).drain_ack()
}

fn pushed_seq(rig: &Rig, slot: usize) -> u64 {
    PairObserver::new(&rig.pairs[slot]).pushed_seq()
}

#[test]
fn a_draining_worker_is_acknowledged_gets_nothing_more_and_finishes_what_it_holds() {
    let mut rig = Rig::new(2);
    let pid = std::process::id();
    let draining = FakeWorker::start(&rig, 0, pid, true);
    rig.start_proxy(limits());
    let mut held = connect(rig.tcp_addr);
    held.write_all(&frame(b"held")).unwrap();
    wait_for("request in flight", || rig.in_flight() == 1);
    let other = FakeWorker::start(&rig, 1, pid, false);

    draining.start_draining();
    wait_for("drain_ack", || drain_ack(&rig, 0) == draining.generation);
    // Everything pushed before the ack was published with it.
    let pushed = pushed_seq(&rig, 0);
    assert_eq!(pushed, 1, "the held request is the slot's only one");

    for i in 0..20 {
        let mut c = connect(rig.tcp_addr);
        let payload = format!("after the ack {i}").into_bytes();
        assert_eq!(round_trip(&mut c, &payload), Some(payload));
    }
    assert_eq!(pushed_seq(&rig, 0), pushed, "pushed to a draining worker");
    assert_eq!(other.ctl.served(), 20);
    // The last reply may be delivered a turn before its request stops
    // counting as in flight.
    wait_for("only the held request in flight", || rig.in_flight() == 1);

    // The draining worker still answers what it holds.
    draining.ctl.release();
    assert_eq!(read_frame(&mut held), Some(b"held".to_vec()));
    assert_eq!(draining.ctl.served(), 1);
}

#[test]
fn a_worker_draining_before_it_was_adopted_is_acknowledged_too() {
    let mut rig = Rig::new(2);
    let _serving = FakeWorker::start(&rig, 0, std::process::id(), false);
    rig.start_proxy(limits());
    // Slot 1: a worker that came up and went straight to Draining.
    let worker = WorkerSlot::take(&rig.pairs[1], &rig.proxy_bell, std::process::id());
    worker.start_draining();
    wait_for("drain_ack", || drain_ack(&rig, 1) == worker.generation());
    assert!(worker.drain_acked());
    let mut c = connect(rig.tcp_addr);
    assert_eq!(round_trip(&mut c, b"served"), Some(b"served".to_vec()));
    assert_eq!(pushed_seq(&rig, 1), 0);
}

fn started() -> (Rig, FakeWorker) {
    let mut rig = Rig::new(1);
    let worker = FakeWorker::start(&rig, 0, std::process::id(), false);
    rig.start_proxy(limits());
    (rig, worker)
}

#[test]
fn a_lowered_connection_limit_refuses_new_connections_and_keeps_the_open_ones() {
    let (mut rig, _worker) = started();
    let mut a = connect(rig.tcp_addr);
    let mut b = connect(rig.tcp_addr);
    assert_eq!(round_trip(&mut a, b"a"), Some(b"a".to_vec()));
    assert_eq!(round_trip(&mut b, b"b"), Some(b"b".to_vec()));
    let mut l = limits();
    l.max_connections = 1;
    rig.publish_limits(&l);
    rig.wait_log("live limits applied");
    assert!(
        rig.log_text().contains("max_connections 1000 -> 1"),
        "{}",
        rig.log_text()
    );
    let mut refused = connect(rig.tcp_addr);
    assert!(
        is_closed(&mut refused),
        "a connection over the limit was kept"
    );
    wait_for("refusal counted", || {
        rig.stats().conns_refused.load(Ordering::Relaxed) == 1
    });
    assert_eq!(round_trip(&mut a, b"still"), Some(b"still".to_vec()));
    assert_eq!(round_trip(&mut b, b"here"), Some(b"here".to_vec()));
}

#[test]
fn a_shorter_idle_timeout_closes_an_idle_connection() {
    let (mut rig, _worker) = started();
    let mut c = connect(rig.tcp_addr);
    assert_eq!(
        round_trip(&mut c, b"then idle"),
        Some(b"then idle".to_vec())
    );
    let mut l = limits();
    l.idle_timeout_ms = 100;
    rig.publish_limits(&l);
    rig.wait_log("live limits applied");
    assert!(is_closed(&mut c), "the idle connection stayed open");
    wait_for("idle close counted", || {
        rig.stats().idle_closed.load(Ordering::Relaxed) == 1
    });
}

#[test]
fn a_lowered_request_size_limit_applies_to_the_next_request() {
    let (mut rig, _worker) = started();
    let mut c = connect(rig.tcp_addr);
    let big = vec![b'x'; 2000];
    assert_eq!(round_trip(&mut c, &big), Some(big.clone()));
    let mut l = limits();
    l.max_request_size = 1024;
    rig.publish_limits(&l);
    rig.wait_log("live limits applied");
    c.write_all(&frame(&big)).unwrap();
    assert!(is_closed(&mut c), "an oversized request was accepted");
    wait_for("oversized counted", || {
        rig.stats().oversized.load(Ordering::Relaxed) == 1
    });
}

#[test]
fn published_limits_that_fail_the_checks_change_nothing() {
    let (mut rig, _worker) = started();
    let mut l = limits();
    l.max_connections = 0;
    rig.publish_limits(&l);
    rig.wait_log("published limits refused");
    let mut c = connect(rig.tcp_addr);
    assert_eq!(round_trip(&mut c, b"accepted"), Some(b"accepted".to_vec()));
    assert_eq!(rig.stats().conns_refused.load(Ordering::Relaxed), 0);
}

#[test]
fn sighup_reopens_the_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.log");
    let mut rig = Rig::new(1);
    rig.log_file = Some(path.clone());
    let _worker = FakeWorker::start(&rig, 0, std::process::id(), false);
    rig.start_proxy(limits());
    rig.signal(libc::SIGHUP);
    wait_for("the reopened log file", || {
        rig.assert_running();
        std::fs::read_to_string(&path).is_ok_and(|t| t.contains("log file reopened"))
    });
    let mut c = connect(rig.tcp_addr);
    assert_eq!(round_trip(&mut c, b"still up"), Some(b"still up".to_vec()));
}

#[test]
fn sighup_without_a_log_file_is_harmless() {
    let (mut rig, _worker) = started();
    rig.signal(libc::SIGHUP);
    rig.wait_log("no log file to reopen");
    let mut c = connect(rig.tcp_addr);
    assert_eq!(round_trip(&mut c, b"still up"), Some(b"still up".to_vec()));
}

#[test]
fn the_proxy_plugins_metrics_land_in_the_proxy_region() {
    let mut rig = Rig::new(1);
    let metrics = &rig.proxy_region.header().plugin;
    // As if a previous proxy died while claiming the first counter.
    metrics.counters[0].name.state.store(1, Ordering::Release);
    rig.start_proxy_with(limits(), hooks_plugin(), "thread");
    let metrics = &rig.proxy_region.header().plugin;
    wait_for("the plugin thread's count", || {
        metrics
            .snapshot()
            .counters
            .contains(&("thread_starts".to_string(), 1))
    });
    let snap = metrics.snapshot();
    assert!(
        snap.counters.contains(&("proxy_inits".to_string(), 1)),
        "{:?}",
        snap.counters
    );
    assert_eq!(snap.latencies.len(), 1);
    assert_eq!(snap.latencies[0].0, "init");
    assert_eq!(snap.latencies[0].1.count, 1);
    // The half-claimed slot was recovered before spp_init ran.
    assert_eq!(
        metrics.counters[0].name.get().as_deref(),
        Some("proxy_inits")
    );
    assert_eq!(snap.refused, 0);
}

#[test]
fn refused_host_calls_and_exception_calls_are_counted() {
    let mut rig = Rig::new(1);
    let _worker = FakeWorker::start(&rig, 0, std::process::id(), false);
    rig.start_proxy_with(limits(), hooks_plugin(), "");
    let mut c = connect(rig.tcp_addr);
    // Unknown group: the exception hook replies to a flow of another
    // proxy epoch (refused), then answers.
    assert_eq!(round_trip(&mut c, b"Refused"), Some(b"EXC:2".to_vec()));
    assert_eq!(round_trip(&mut c, b"Nowhere"), Some(b"EXC:2".to_vec()));
    wait_for("counted", || {
        let s = rig.stats();
        s.host_refused.load(Ordering::Relaxed) == 1
            && s.exceptions.load(Ordering::Relaxed) == 2
            && s.no_worker.load(Ordering::Relaxed) == 2
    });
}
