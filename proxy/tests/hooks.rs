//! The proxy's optional plugin hooks and host services, end to end: a C
//! test plugin (`tests/plugins/hooks.c`) routes, fails, answers from
//! `spp_exception` through `host->reply`/`host->close`, and logs from
//! `spp_init`, `spp_close` and `spp_fini`.

mod harness;

use harness::*;
use std::io::Write;
use std::net::UdpSocket;
use std::sync::atomic::Ordering;
use std::time::Instant;

fn started() -> (Rig, FakeWorker) {
    let mut rig = Rig::new(1);
    let worker = FakeWorker::start(&rig, 0, std::process::id(), false);
    rig.start_proxy_with(limits(), hooks_plugin(), "hello");
    (rig, worker)
}

#[test]
fn the_exception_hook_answers_through_host_reply_and_keeps_the_connection() {
    let (rig, _worker) = started();
    let mut c = connect(rig.tcp_addr);
    assert_eq!(round_trip(&mut c, b"Nowhere"), Some(b"EXC:2".to_vec()));
    assert_eq!(round_trip(&mut c, b"normal"), Some(b"normal".to_vec()));
    wait_for("no_worker counted", || {
        rig.stats().no_worker.load(Ordering::Relaxed) == 1
    });
}

#[test]
fn host_close_from_the_exception_hook_closes_the_connection() {
    let (rig, _worker) = started();
    let mut c = connect(rig.tcp_addr);
    assert_eq!(round_trip(&mut c, b"first"), Some(b"first".to_vec()));
    c.write_all(&frame(b"Close me")).unwrap();
    assert!(is_closed(&mut c));
}

#[test]
fn requests_behind_a_host_close_in_the_same_read_are_not_framed() {
    let (rig, worker) = started();
    let mut c = connect(rig.tcp_addr);
    let mut batch = frame(b"Close me");
    batch.extend(frame(b"normal, but after the close"));
    batch.extend(frame(b"Nowhere"));
    c.write_all(&batch).unwrap();
    assert!(is_closed(&mut c));
    // Everything the proxy did for `c` is counted by the time another
    // client's request has made a round trip and its response is counted
    // (the client may read it a moment before the turn's counters are
    // published).
    let mut other = connect(rig.tcp_addr);
    assert_eq!(
        round_trip(&mut other, b"barrier"),
        Some(b"barrier".to_vec())
    );
    wait_for("stats published", || {
        rig.stats().responses.load(Ordering::Relaxed) >= 1 && rig.in_flight() == 0
    });
    assert_eq!(rig.stats().requests.load(Ordering::Relaxed), 2);
    assert_eq!(rig.stats().no_worker.load(Ordering::Relaxed), 1);
    assert_eq!(worker.ctl.skipped(), 0);
}

#[test]
fn a_udp_exception_reply_goes_to_the_sender() {
    let (rig, _worker) = started();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(DEADLINE)).unwrap();
    client.send_to(&frame(b"Nope"), rig.udp_addr).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = client.recv_from(&mut buf).unwrap();
    assert_eq!(from, rig.udp_addr);
    assert_eq!(&buf[..n], &frame(b"EXC:2")[..]);
}

#[test]
fn a_dead_workers_clients_get_the_exception_hooks_answer() {
    let mut rig = Rig::new(1);
    let mut sleeper = Sleeper::spawn();
    let worker = FakeWorker::start(&rig, 0, sleeper.id(), true);
    rig.start_proxy_with(limits(), hooks_plugin(), "");
    let mut c = connect(rig.tcp_addr);
    c.write_all(&frame(b"held")).unwrap();
    wait_for("request in flight", || rig.in_flight() == 1);
    worker.stop();
    sleeper.kill();
    assert_eq!(read_frame(&mut c), Some(b"DIED".to_vec()));
    assert!(is_closed(&mut c));
}

#[test]
fn an_input_overrun_closes_the_connection_counts_and_logs_once() {
    let (mut rig, _worker) = started();
    for _ in 0..3 {
        let mut c = connect(rig.tcp_addr);
        c.write_all(&frame(b"Overrun")).unwrap();
        assert!(is_closed(&mut c), "an overrun closes the connection");
    }
    wait_for("overruns counted", || {
        rig.stats().input_overrun.load(Ordering::Relaxed) == 3
    });
    assert_eq!(rig.stats().frame_errors.load(Ordering::Relaxed), 0);
    // Another connection is served as usual.
    let mut ok = connect(rig.tcp_addr);
    ok.write_all(&frame(b"fine")).unwrap();
    assert_eq!(read_frame(&mut ok), Some(b"fine".to_vec()));
    rig.signal(libc::SIGTERM);
    let status = rig.wait_exit();
    assert!(status.success(), "proxy exited with {status}");
    let log = rig.log_text();
    let lines = log.matches("more than it was given").count();
    assert_eq!(lines, 1, "one line per second at most:\n{log}");
    assert!(
        log.contains("spp_input returned 111 for a buffer of 11 bytes"),
        "{log}"
    );
    assert!(log.contains("hooks close proto=0 leftover=11"), "{log}");
}

#[test]
fn a_frame_error_closes_the_connection_and_hooks_are_logged() {
    let (mut rig, _worker) = started();
    let mut c = connect(rig.tcp_addr);
    c.write_all(&frame(b"Xbad")).unwrap();
    assert!(is_closed(&mut c));
    wait_for("frame error counted", || {
        rig.stats().frame_errors.load(Ordering::Relaxed) == 1
    });
    rig.signal(libc::SIGTERM);
    let status = rig.wait_exit();
    assert!(status.success(), "proxy exited with {status}");
    let log = rig.log_text();
    assert!(log.contains("hooks plugin init role=1 conf=hello"), "{log}");
    assert!(log.contains("hooks close proto=0 leftover=8"), "{log}");
    assert!(log.contains("hooks plugin fini"), "{log}");
}

#[test]
fn a_drain_that_times_out_closes_what_is_left_calls_fini_and_exits_zero() {
    let mut rig = Rig::new(1);
    let worker = FakeWorker::start(&rig, 0, std::process::id(), true);
    let mut l = limits();
    // The drain deadline, not the idle timeout, bounds the drain.
    l.drain_timeout_ms = 200;
    l.idle_timeout_ms = 10 * DEADLINE.as_millis() as u64;
    rig.start_proxy_with(l, hooks_plugin(), "");
    let mut c = connect(rig.tcp_addr);
    c.write_all(&frame(b"never answered")).unwrap();
    wait_for("request in flight", || rig.in_flight() == 1);
    let sent = Instant::now();
    rig.signal(libc::SIGTERM);
    let status = rig.wait_exit();
    assert!(status.success(), "proxy exited with {status}");
    assert!(sent.elapsed() < DEADLINE);
    assert!(is_closed(&mut c), "the held client was left open");
    let log = rig.log_text();
    assert!(log.contains("drain timed out"), "{log}");
    assert!(log.contains("hooks close proto=0 leftover=0"), "{log}");
    assert!(log.contains("hooks plugin fini"), "{log}");
    drop(worker);
}

#[test]
fn a_plugin_thread_running_at_exit_does_not_crash_the_proxy() {
    for _ in 0..3 {
        let mut rig = Rig::new(1);
        rig.start_proxy_with(limits(), hooks_plugin(), "thread");
        rig.signal(libc::SIGTERM);
        let status = rig.wait_exit();
        assert!(status.success(), "proxy exited with {status}");
        assert!(rig.log_text().contains("hooks plugin fini"));
    }
}

#[test]
fn a_refusing_init_exits_with_the_plugins_code() {
    let mut rig = Rig::new(1);
    rig.spawn_proxy(limits(), hooks_plugin(), "refuse");
    let status = rig.wait_exit();
    assert_eq!(status.code(), Some(7), "log:\n{}", rig.log_text());
    assert!(rig.log_text().contains("spp_init returned 7"));
}

#[test]
fn a_missing_plugin_exits_2_naming_the_file() {
    let mut rig = Rig::new(1);
    rig.spawn_proxy(limits(), "/nonexistent/libspp_missing.so".into(), "");
    let status = rig.wait_exit();
    assert_eq!(status.code(), Some(2), "log:\n{}", rig.log_text());
    assert!(rig.log_text().contains("/nonexistent/libspp_missing.so"));
}

#[test]
fn a_connection_context_lets_input_look_at_each_byte_once() {
    let mut rig = Rig::new(1);
    let _worker = FakeWorker::start(&rig, 0, std::process::id(), false);
    rig.start_proxy_with(limits(), hooks_plugin_with_ctx(), "");
    let mut c = connect(rig.tcp_addr);
    let slow = frame(b"arrives a byte at a time");
    for (k, byte) in slow.iter().enumerate() {
        c.write_all(std::slice::from_ref(byte)).unwrap();
        if k % 4 == 0 {
            // Separate reads for the proxy (not a synchronisation: the
            // assertions hold however the bytes are split).
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
    assert_eq!(
        read_frame(&mut c),
        Some(b"arrives a byte at a time".to_vec())
    );
    let mut pair = frame(b"one");
    pair.extend_from_slice(&frame(b"two"));
    c.write_all(&pair).unwrap();
    assert_eq!(read_frame(&mut c), Some(b"one".to_vec()));
    assert_eq!(read_frame(&mut c), Some(b"two".to_vec()));
    drop(c);
    let total = slow.len() + pair.len();
    let expected = format!("ctx free requests=3 scanned={total}");
    wait_for("the context freed", || rig.log_text().contains(&expected));
    rig.signal(libc::SIGTERM);
    let status = rig.wait_exit();
    assert!(status.success(), "proxy exited with {status}");
    let log = rig.log_text();
    assert_eq!(log.matches("ctx open").count(), 1, "{log}");
    assert_eq!(log.matches("ctx free").count(), 1, "{log}");
    assert!(log.contains("hooks close proto=0 leftover=0"), "{log}");
}

/// A C plugin's `set_note` from `spp_input` and from `spp_input_ctx`
/// reaches the worker with its request, and only with it.
#[test]
fn a_note_set_in_input_travels_with_its_request_only() {
    for plugin in [hooks_plugin(), hooks_plugin_with_ctx()] {
        let mut rig = Rig::new(1);
        let worker = FakeWorker::start(&rig, 0, std::process::id(), false);
        worker.ctl.answer(Answer::EchoNote);
        rig.start_proxy_with(limits(), plugin, "");
        let mut c = connect(rig.tcp_addr);
        assert_eq!(round_trip(&mut c, b"Tagged"), Some(b"len=6Tagged".to_vec()));
        let mut pair = frame(b"Tag two");
        pair.extend_from_slice(&frame(b"untagged"));
        c.write_all(&pair).unwrap();
        assert_eq!(read_frame(&mut c), Some(b"len=7Tag two".to_vec()));
        assert_eq!(read_frame(&mut c), Some(b"untagged".to_vec()));
    }
}
