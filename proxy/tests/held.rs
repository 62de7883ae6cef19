//! Pipelined requests stay in order when their worker leaves service. A
//! connection whose requests in flight sit on a worker that takes no more
//! (draining, then maybe dead) is held: nothing more of it is framed, so
//! nothing overtakes them on another worker, until they have left
//! (answered or failed); then its buffered requests, and what arrived on
//! its socket meanwhile, go to a live worker. Also: a held connection is
//! not idle, and closing or draining ends the hold cleanly.

mod harness;

use harness::*;
use spp_ipc::launch::ProxyLimits;
use spp_ipc::pair::PairObserver;
use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

/// What the proxy logs (at debug level) when it holds a connection.
const HELD_LOG: &str = "connection held";
/// The first request, held by the worker that starts draining.
const A: &[u8] = b"A: on the draining worker";
/// Idle timeout of the idle sweep test.
const SHORT_IDLE_MS: u64 = 100;

fn pushed_seq(rig: &Rig, slot: usize) -> u64 {
    PairObserver::new(&rig.pairs[slot]).pushed_seq()
}

fn drain_ack(rig: &Rig, slot: usize) -> u64 {
    PairObserver::new(&rig.pairs[slot]).drain_ack()
}

/// A client whose request [`A`] is in flight on slot 0's worker, which
/// holds it and is now `Draining` (acknowledged); slot 1 has a serving
/// worker.
struct Held {
    rig: Rig,
    first: FakeWorker,
    other: FakeWorker,
    client: TcpStream,
}

fn held(plugin: PathBuf, conf: &str, first_pid: u32, limits: ProxyLimits) -> Held {
    let mut rig = Rig::new(2);
    let first = FakeWorker::start(&rig, 0, first_pid, true);
    rig.start_proxy_with(limits, plugin, conf);
    let mut client = connect(rig.tcp_addr);
    client.write_all(&frame(A)).unwrap();
    wait_for("A in flight on slot 0", || {
        rig.in_flight() == 1 && pushed_seq(&rig, 0) == 1
    });
    // Ready before slot 0 drains: adopted by the scan that acknowledges
    // the drain at the latest.
    let other = FakeWorker::start(&rig, 1, std::process::id(), false);
    first.start_draining();
    wait_for("drain_ack", || drain_ack(&rig, 0) == first.generation);
    Held {
        rig,
        first,
        other,
        client,
    }
}

impl Held {
    /// Writes `bytes` on the client and waits until the proxy held it.
    fn send_and_wait_for_the_hold(&mut self, bytes: &[u8]) {
        self.client.write_all(bytes).unwrap();
        wait_for(
            "the proxy to hold the connection (or to push past A)",
            || self.rig.log_text().contains(HELD_LOG) || pushed_seq(&self.rig, 1) != 0,
        );
        assert_eq!(pushed_seq(&self.rig, 1), 0, "a request overtook A");
        assert_eq!(pushed_seq(&self.rig, 0), 1, "pushed to a draining worker");
        assert_eq!(self.other.ctl.served(), 0);
        assert_eq!(self.rig.in_flight(), 1);
    }
}

#[test]
fn requests_behind_one_on_a_draining_worker_wait_for_its_answer_then_go_elsewhere_in_order() {
    let mut h = held(echo_plugin(), "", std::process::id(), limits());
    // Two whole requests and the first part of a third in one write.
    let b3 = frame(b"B3: split over two writes");
    let mut batch = frame(b"B1");
    batch.extend(frame(b"B2"));
    batch.extend(&b3[..FRAME_HEADER + 2]);
    h.send_and_wait_for_the_hold(&batch);
    // More arrives while held: the proxy leaves it in the socket, and must
    // read it after the hold although its readiness was signalled before.
    h.client.write_all(&b3[FRAME_HEADER + 2..]).unwrap();
    h.client.write_all(&frame(b"C")).unwrap();
    assert_eq!(pushed_seq(&h.rig, 1), 0, "a request overtook A");

    h.first.ctl.release();
    let expected: [&[u8]; 5] = [A, b"B1", b"B2", b"B3: split over two writes", b"C"];
    for payload in expected {
        assert_eq!(read_frame(&mut h.client).as_deref(), Some(payload));
    }
    assert_eq!(h.first.ctl.served(), 1);
    assert_eq!(h.other.ctl.served(), 4);
    assert_eq!(pushed_seq(&h.rig, 0), 1, "pushed to a draining worker");
    // No longer held: the connection is served as usual.
    assert_eq!(round_trip(&mut h.client, b"later"), Some(b"later".to_vec()));
}

#[test]
fn a_held_connection_whose_worker_dies_resumes_on_a_live_worker() {
    let mut sleeper = Sleeper::spawn();
    let mut h = held(hooks_plugin(), "keep_died", sleeper.id(), limits());
    h.send_and_wait_for_the_hold(&frame(b"B"));
    let Held {
        rig,
        first,
        other,
        mut client,
    } = h;
    first.stop();
    sleeper.kill();
    // A fails through the exception hook (which keeps the connection),
    // then B is served by the live worker.
    assert_eq!(read_frame(&mut client), Some(b"DIED".to_vec()));
    assert_eq!(read_frame(&mut client), Some(b"B".to_vec()));
    assert_eq!(other.ctl.served(), 1);
    assert_eq!(pushed_seq(&rig, 1), 1);
    wait_for("failure counted", || {
        rig.stats().worker_died_failed.load(Ordering::Relaxed) == 1
    });
    assert_eq!(round_trip(&mut client, b"later"), Some(b"later".to_vec()));
}

#[test]
fn a_held_connection_closed_by_its_failed_request_frames_nothing_more() {
    let mut sleeper = Sleeper::spawn();
    // Without "keep_died" the exception hook closes the connection.
    let mut h = held(hooks_plugin(), "", sleeper.id(), limits());
    h.send_and_wait_for_the_hold(&frame(b"B: never framed"));
    let Held {
        rig,
        first,
        other,
        mut client,
    } = h;
    first.stop();
    sleeper.kill();
    assert_eq!(read_frame(&mut client), Some(b"DIED".to_vec()));
    assert!(is_closed(&mut client), "the connection stayed open");
    // B reached no worker: the live worker's first request is this one.
    let mut barrier = connect(rig.tcp_addr);
    assert_eq!(
        round_trip(&mut barrier, b"barrier"),
        Some(b"barrier".to_vec())
    );
    assert_eq!(other.ctl.served(), 1);
    wait_for("stats published", || {
        rig.stats().requests.load(Ordering::Relaxed) >= 2 && rig.in_flight() == 0
    });
    assert_eq!(rig.stats().requests.load(Ordering::Relaxed), 2);
}

#[test]
fn a_held_connection_is_not_idle() {
    let mut l = limits();
    l.idle_timeout_ms = SHORT_IDLE_MS;
    let mut h = held(echo_plugin(), "", std::process::id(), l);
    h.send_and_wait_for_the_hold(&frame(b"B"));
    // A connection opened after the hold: once the sweep has closed it as
    // idle, the held one had been quiet longer.
    let mut later = connect(h.rig.tcp_addr);
    assert!(is_closed(&mut later), "the idle connection stayed open");
    wait_for("idle close counted", || {
        h.rig.stats().idle_closed.load(Ordering::Relaxed) == 1
    });
    h.first.ctl.release();
    assert_eq!(read_frame(&mut h.client).as_deref(), Some(A));
    assert_eq!(read_frame(&mut h.client), Some(b"B".to_vec()));
    assert_eq!(h.rig.stats().idle_closed.load(Ordering::Relaxed), 1);
}

#[test]
fn sigterm_answers_what_is_in_flight_and_queues_nothing_held() {
    let mut h = held(echo_plugin(), "", std::process::id(), limits());
    h.send_and_wait_for_the_hold(&frame(b"B"));
    h.rig.signal(libc::SIGTERM);
    h.rig.wait_log("SIGTERM: draining");
    h.first.ctl.release();
    assert_eq!(read_frame(&mut h.client).as_deref(), Some(A));
    assert!(
        is_closed(&mut h.client),
        "the drained connection stayed open"
    );
    assert!(h.rig.wait_exit().success());
    assert_eq!(h.other.ctl.served(), 0);
    assert_eq!(pushed_seq(&h.rig, 1), 0);
}
