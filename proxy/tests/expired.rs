//! Stale requests: a worker reports a request it dropped for waiting past
//! `msg_timeout` with a `KIND_EXPIRED` record (the fake worker does so on
//! demand); the proxy counts `stale_failed` and hands the request to the
//! exception hook (`SPP_EXC_TIMEOUT`) or closes the connection. The C test
//! plugin `tests/plugins/hooks.c` answers timeouts with "EXC:4", "TIMEOUT"
//! (no bytes) or "BYE" plus a close (payload starting with 'Q').

mod harness;

use harness::*;
use std::io::Write;
use std::net::UdpSocket;
use std::sync::atomic::Ordering;

/// `SPP_EXC_TIMEOUT`, as the test plugin prints it.
const TIMEOUT_ANSWER: &[u8] = b"EXC:4";

fn started(plugin: std::path::PathBuf, answer: Answer) -> (Rig, FakeWorker) {
    started_with(limits(), plugin, answer)
}

fn started_with(
    limits: spp_ipc::launch::ProxyLimits,
    plugin: std::path::PathBuf,
    answer: Answer,
) -> (Rig, FakeWorker) {
    let mut rig = Rig::new(1);
    let worker = FakeWorker::start(&rig, 0, std::process::id(), false);
    worker.ctl.answer(answer);
    rig.start_proxy_with(limits, plugin, "");
    (rig, worker)
}

fn stale_failed(rig: &Rig) -> u64 {
    rig.stats().stale_failed.load(Ordering::Relaxed)
}

fn exceptions(rig: &Rig) -> u64 {
    rig.stats().exceptions.load(Ordering::Relaxed)
}

#[test]
fn the_exception_hook_answers_an_expired_request_and_the_connection_stays() {
    let (rig, worker) = started(hooks_plugin(), Answer::ExpiredWithBytes);
    let mut c = connect(rig.tcp_addr);
    assert_eq!(round_trip(&mut c, b"late"), Some(TIMEOUT_ANSWER.to_vec()));
    worker.ctl.answer(Answer::Echo);
    assert_eq!(round_trip(&mut c, b"on time"), Some(b"on time".to_vec()));
    wait_for("counted", || {
        stale_failed(&rig) == 1 && exceptions(&rig) == 1
    });
}

#[test]
fn an_expired_request_without_its_bytes_reaches_the_hook_as_null() {
    let (rig, worker) = started(hooks_plugin(), Answer::ExpiredEmpty);
    let mut c = connect(rig.tcp_addr);
    assert_eq!(
        round_trip(&mut c, b"too big to carry"),
        Some(b"TIMEOUT".to_vec())
    );
    worker.ctl.answer(Answer::Echo);
    assert_eq!(round_trip(&mut c, b"next"), Some(b"next".to_vec()));
    wait_for("counted", || {
        stale_failed(&rig) == 1 && exceptions(&rig) == 1
    });
}

#[test]
fn a_negative_answer_closes_the_connection_after_its_reply_is_written() {
    let (rig, _worker) = started(hooks_plugin(), Answer::ExpiredWithBytes);
    let mut c = connect(rig.tcp_addr);
    c.write_all(&frame(b"Quit")).unwrap();
    assert_eq!(read_frame(&mut c), Some(b"BYE".to_vec()));
    assert!(is_closed(&mut c), "the connection stayed open");
    wait_for("counted", || {
        stale_failed(&rig) == 1 && exceptions(&rig) == 1
    });
}

#[test]
fn without_an_exception_hook_an_expired_request_closes_its_connection() {
    let (rig, _worker) = started(hooks_plugin_without_exception(), Answer::ExpiredWithBytes);
    let mut c = connect(rig.tcp_addr);
    c.write_all(&frame(b"late")).unwrap();
    assert!(is_closed(&mut c), "the connection stayed open");
    wait_for("stale_failed counted", || stale_failed(&rig) == 1);
    assert_eq!(exceptions(&rig), 0, "there is no hook to call");
    // Other clients are served as usual.
    let mut other = connect(rig.tcp_addr);
    other.write_all(&frame(b"also late")).unwrap();
    assert!(is_closed(&mut other));
    wait_for("stale_failed counted", || stale_failed(&rig) == 2);
}

#[test]
fn the_hooks_answer_keeps_its_place_among_pipelined_responses() {
    let (rig, _worker) = started(hooks_plugin(), Answer::ExpireMarked);
    let mut c = connect(rig.tcp_addr);
    let mut batch = Vec::new();
    let late = [LATE_MARK, b'!'];
    for payload in [&b"first"[..], &late, b"second", &late, b"third"] {
        batch.extend(frame(payload));
    }
    c.write_all(&batch).unwrap();
    for want in [
        &b"first"[..],
        TIMEOUT_ANSWER,
        b"second",
        TIMEOUT_ANSWER,
        b"third",
    ] {
        assert_eq!(read_frame(&mut c).as_deref(), Some(want));
    }
    wait_for("counted", || {
        stale_failed(&rig) == 2 && exceptions(&rig) == 2
    });
}

#[test]
fn an_expired_udp_request_is_answered_to_its_sender() {
    let (rig, _worker) = started(hooks_plugin(), Answer::ExpiredWithBytes);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(DEADLINE)).unwrap();
    client.send_to(&frame(b"late"), rig.udp_addr).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = client.recv_from(&mut buf).unwrap();
    assert_eq!(from, rig.udp_addr);
    assert_eq!(&buf[..n], &frame(TIMEOUT_ANSWER)[..]);
    wait_for("counted", || {
        stale_failed(&rig) == 1 && exceptions(&rig) == 1
    });
}

#[test]
fn an_expired_udp_request_without_a_hook_is_counted_and_its_flow_freed() {
    // One flow slot: the next datagram is served only if the expired
    // request's flow was freed.
    let mut l = limits();
    l.max_udp_flows = 1;
    let (rig, worker) = started_with(
        l,
        hooks_plugin_without_exception(),
        Answer::ExpiredWithBytes,
    );
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(DEADLINE)).unwrap();
    client.send_to(&frame(b"late"), rig.udp_addr).unwrap();
    wait_for("stale_failed counted", || stale_failed(&rig) == 1);
    worker.ctl.answer(Answer::Echo);
    client.send_to(&frame(b"fresh"), rig.udp_addr).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], &frame(b"fresh")[..]);
    assert_eq!(exceptions(&rig), 0);
    assert_eq!(rig.stats().udp_dropped.load(Ordering::Relaxed), 0);
}

#[test]
fn an_expired_request_of_a_connection_already_gone_is_only_counted() {
    let mut rig = Rig::new(1);
    let worker = FakeWorker::start(&rig, 0, std::process::id(), true);
    worker.ctl.answer(Answer::ExpiredWithBytes);
    rig.start_proxy_with(limits(), hooks_plugin(), "");
    let mut c = connect(rig.tcp_addr);
    c.write_all(&frame(b"late")).unwrap();
    wait_for("request in flight", || rig.in_flight() == 1);
    reset(c);
    wait_for("connection gone", || {
        rig.stats().conns_active.load(Ordering::Relaxed) == 0
    });
    worker.ctl.release();
    wait_for("stale_failed counted", || stale_failed(&rig) == 1);
    wait_for("request done", || rig.in_flight() == 0);
    assert_eq!(exceptions(&rig), 0, "the hook ran for a flow that is gone");
}

/// Closes `s` with a reset (SO_LINGER 0), so the proxy's next read fails.
fn reset(s: std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a valid `linger` of the
    // size passed.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
    drop(s);
}
