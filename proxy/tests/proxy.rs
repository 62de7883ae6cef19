//! End-to-end tests of the real `spp-proxy` binary with the echo plugin;
//! the test process plays controller and worker (see `harness`).

mod harness;

use harness::*;
use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn started(slots: u32, limits: spp_ipc::launch::ProxyLimits) -> (Rig, Vec<FakeWorker>) {
    let mut rig = Rig::new(slots);
    let pid = std::process::id();
    let workers = (0..slots as usize)
        .map(|s| FakeWorker::start(&rig, s, pid, false))
        .collect();
    rig.start_proxy(limits);
    (rig, workers)
}

#[test]
fn pipelined_requests_in_one_write_are_all_answered_in_order() {
    let (rig, _workers) = started(2, limits());
    let mut c = connect(rig.tcp_addr);
    let payloads: Vec<Vec<u8>> = (0..200u32)
        .map(|i| format!("request number {i}").into_bytes())
        .collect();
    let batch: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
    c.write_all(&batch).unwrap();
    for p in &payloads {
        assert_eq!(read_frame(&mut c).as_ref(), Some(p));
    }
    wait_for("requests counted", || {
        rig.stats().requests.load(Ordering::Relaxed) >= 200
    });
}

#[test]
fn a_request_split_byte_by_byte_is_reassembled() {
    let (rig, _workers) = started(1, limits());
    let mut c = connect(rig.tcp_addr);
    let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    for byte in frame(&payload) {
        c.write_all(&[byte]).unwrap();
    }
    assert_eq!(read_frame(&mut c), Some(payload));
    // The connection keeps working afterwards.
    assert_eq!(round_trip(&mut c, b"again"), Some(b"again".to_vec()));
}

#[test]
fn an_oversized_request_closes_only_its_connection() {
    let mut l = limits();
    l.max_request_size = 1024;
    let (rig, _workers) = started(1, l);
    let mut good = connect(rig.tcp_addr);
    let mut bad = connect(rig.tcp_addr);
    assert_eq!(round_trip(&mut good, b"before"), Some(b"before".to_vec()));
    // Exactly the limit is fine.
    assert_eq!(
        round_trip(&mut bad, &[5u8; 1020]).map(|p| p.len()),
        Some(1020)
    );
    bad.write_all(&frame(&[7u8; 4000])).unwrap();
    assert!(
        is_closed(&mut bad),
        "oversized request did not close its connection"
    );
    assert_eq!(round_trip(&mut good, b"after"), Some(b"after".to_vec()));
    wait_for("oversized counted", || {
        rig.stats().oversized.load(Ordering::Relaxed) == 1
    });
}

#[test]
fn udp_datagrams_are_echoed_to_their_sender() {
    let (rig, _workers) = started(1, limits());
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(DEADLINE)).unwrap();
    // A datagram `spp_input` does not accept is dropped and counted.
    client.send_to(&[0, 0], rig.udp_addr).unwrap();
    wait_for("bad datagram dropped", || {
        rig.stats().udp_dropped.load(Ordering::Relaxed) == 1
    });
    for i in 0..20u8 {
        let f = frame(&[i; 33]);
        client.send_to(&f, rig.udp_addr).unwrap();
        let mut buf = [0u8; 128];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(from, rig.udp_addr);
        assert_eq!(&buf[..n], &f[..]);
    }
}

#[test]
fn connections_beyond_the_cap_are_refused_cleanly() {
    let mut l = limits();
    l.max_connections = 3;
    let (rig, _workers) = started(1, l);
    let mut open: Vec<TcpStream> = (0..3).map(|_| connect(rig.tcp_addr)).collect();
    for c in &mut open {
        assert_eq!(round_trip(c, b"hi"), Some(b"hi".to_vec()));
    }
    let mut extra = connect(rig.tcp_addr);
    assert!(
        is_closed(&mut extra),
        "the connection over the cap was left open"
    );
    wait_for("refusal counted", || {
        rig.stats().conns_refused.load(Ordering::Relaxed) == 1
    });
    // Once one closes, a newcomer is served again.
    drop(open.pop());
    wait_for("slot freed", || {
        rig.stats().conns_active.load(Ordering::Relaxed) == 2
    });
    let mut late = connect(rig.tcp_addr);
    assert_eq!(round_trip(&mut late, b"late"), Some(b"late".to_vec()));
}

#[test]
fn a_client_that_never_reads_loses_its_connection_without_stalling_others() {
    let mut l = limits();
    l.max_send_buffer = 256 << 10;
    // The request ring holds more than every buffer on the way back (the
    // proxy's socket send buffer is at most 4 MiB here), so the slow
    // client's requests never meet a full ring before its responses
    // overflow its send buffer.
    let mut rig = Rig::with_request_ring(1, 16 << 20);
    let _worker = FakeWorker::start(&rig, 0, std::process::id(), false);
    rig.start_proxy(l);

    let slow = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    slow.set_recv_buffer_size(4096).unwrap();
    slow.connect(&rig.tcp_addr.into()).unwrap();
    let mut slow: TcpStream = slow.into();
    slow.set_write_timeout(Some(DEADLINE)).unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = frame(&[1u8; 64 << 10]);
        let mut sent = 0usize;
        // Bounded: far more than every buffer on the way can hold.
        while sent < 512 << 20 {
            if slow.write_all(&chunk).is_err() {
                return true;
            }
            sent += chunk.len();
        }
        false
    });

    let mut fast = connect(rig.tcp_addr);
    let end = Instant::now() + DEADLINE;
    let mut rounds = 0;
    while rig.stats().slow_closed.load(Ordering::Relaxed) == 0 {
        assert!(
            Instant::now() < end,
            "the slow client was never disconnected: {:?} in flight {}",
            rig.stats(),
            rig.in_flight()
        );
        assert_eq!(
            round_trip(&mut fast, b"still served"),
            Some(b"still served".to_vec())
        );
        rounds += 1;
    }
    assert!(
        writer.join().unwrap(),
        "the slow client's writes never failed"
    );
    for _ in 0..10 {
        assert_eq!(round_trip(&mut fast, b"after"), Some(b"after".to_vec()));
    }
    assert!(rounds > 0);
}

#[test]
fn a_dead_workers_in_flight_requests_fail_at_once_and_a_new_worker_is_adopted() {
    let mut rig = Rig::new(1);
    let mut sleeper = Sleeper::spawn();
    let worker = FakeWorker::start(&rig, 0, sleeper.id(), true);
    rig.start_proxy(limits());

    let mut c = connect(rig.tcp_addr);
    c.write_all(&frame(b"never answered")).unwrap();
    wait_for("request in flight", || rig.in_flight() == 1);
    worker.stop();
    let killed_at = Instant::now();
    sleeper.kill();
    assert!(is_closed(&mut c), "in-flight client was not closed");
    assert!(killed_at.elapsed() < Duration::from_secs(10));
    wait_for("failure counted", || {
        rig.stats().worker_died_failed.load(Ordering::Relaxed) == 1
    });
    assert_eq!(rig.in_flight(), 0);

    // No live worker: a new request fails (the echo plugin has no
    // exception hook, so its connection closes).
    let mut orphan = connect(rig.tcp_addr);
    orphan.write_all(&frame(b"nobody home")).unwrap();
    assert!(is_closed(&mut orphan));
    wait_for("no_worker counted", || {
        rig.stats().no_worker.load(Ordering::Relaxed) >= 1
    });

    // A replacement worker (new generation) is adopted and served; the
    // requests it gets are stamped with its generation.
    let replacement = FakeWorker::start(&rig, 0, std::process::id(), false);
    let mut fresh = connect(rig.tcp_addr);
    assert_eq!(round_trip(&mut fresh, b"back"), Some(b"back".to_vec()));
    assert_eq!(replacement.ctl.skipped(), 0);
}

/// The `FD_CLOEXEC` bit of `fd` in process `pid`, from `/proc`.
fn close_on_exec(pid: u32, fd: i32) -> bool {
    /// `O_CLOEXEC` as `/proc/<pid>/fdinfo` shows it (octal flags).
    const O_CLOEXEC_FLAG: u32 = 0o2_000_000;
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap();
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .unwrap();
    flags & O_CLOEXEC_FLAG != 0
}

#[test]
fn every_inherited_fd_is_close_on_exec_in_the_proxy() {
    let (rig, _workers) = started(2, limits());
    let pid = rig.child.as_ref().unwrap().id();
    assert!(!rig.fds.is_empty());
    for &fd in &rig.fds {
        assert!(close_on_exec(pid, fd), "fd {fd} would leak into an exec");
    }
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let mut rig = Rig::new(1);
    let worker = FakeWorker::start(&rig, 0, std::process::id(), true);
    rig.start_proxy(limits());
    let mut idle = connect(rig.tcp_addr);
    let mut c = connect(rig.tcp_addr);
    c.write_all(&frame(b"finish me")).unwrap();
    wait_for("request in flight", || rig.in_flight() == 1);
    wait_for("both accepted", || {
        rig.stats().conns_active.load(Ordering::Relaxed) == 2
    });
    rig.signal(libc::SIGTERM);
    wait_for("draining", || {
        rig.proxy_region.proxy_state() == spp_ipc::layout::ProxyState::Draining
    });
    worker.ctl.release();
    assert_eq!(read_frame(&mut c), Some(b"finish me".to_vec()));
    assert!(is_closed(&mut c));
    assert!(
        is_closed(&mut idle),
        "an idle connection survived the drain"
    );
    let status = rig.wait_exit();
    assert!(
        status.success(),
        "proxy exited with {status}; log:\n{}",
        rig.log_text()
    );
    assert!(rig.log_text().contains("drain complete"));
}

#[test]
fn idle_connections_are_closed() {
    let mut l = limits();
    l.idle_timeout_ms = 100;
    let (rig, _workers) = started(1, l);
    let mut c = connect(rig.tcp_addr);
    assert_eq!(round_trip(&mut c, b"once"), Some(b"once".to_vec()));
    assert!(is_closed(&mut c), "idle connection was not closed");
    wait_for("idle close counted", || {
        rig.stats().idle_closed.load(Ordering::Relaxed) == 1
    });
}

#[test]
fn ipv6_listeners_are_served() {
    let (rig, _workers) = started(1, limits());
    let Some(l6) = rig.tcp6.as_ref() else {
        eprintln!("no IPv6 loopback on this host; skipped");
        return;
    };
    let mut c = connect(l6.local_addr().unwrap());
    assert_eq!(round_trip(&mut c, b"over v6"), Some(b"over v6".to_vec()));
}

/// Reads the proxy's resident set size in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn idle_connections_cost_little_memory() {
    const CONNS: usize = 400;
    const MAX_BYTES_PER_CONN: u64 = 4096;
    let (mut rig, _workers) = started(1, limits());
    let pid = rig.child.as_ref().unwrap().id();
    // Warm up: one connection through every path, so one-off allocations
    // (buffers, pools, the tables' first growth) are not counted.
    let mut warm = connect(rig.tcp_addr);
    assert_eq!(round_trip(&mut warm, b"warm"), Some(b"warm".to_vec()));
    let before = rss_kib(pid);
    let conns: Vec<TcpStream> = (0..CONNS).map(|_| connect(rig.tcp_addr)).collect();
    wait_for("all accepted", || {
        rig.stats().conns_active.load(Ordering::Relaxed) == CONNS as u64 + 1
    });
    let after = rss_kib(pid);
    let per_conn = after.saturating_sub(before) * 1024 / CONNS as u64;
    eprintln!("RSS {before} KiB -> {after} KiB: {per_conn} bytes per idle connection");
    assert!(
        per_conn <= MAX_BYTES_PER_CONN,
        "{per_conn} bytes per idle connection"
    );
    rig.assert_running();
    drop(conns);
}
