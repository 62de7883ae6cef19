//! A worker's drain handshake and log reopening, against the fake proxy:
//! a SIGTERM drain ends as soon as the proxy acknowledges it, or as soon as
//! the proxy is not running (state `Down`, or its pid gone), and at the
//! launch spec's `drain_timeout_ms` otherwise; SIGHUP reopens the log file.

mod harness;

use harness::{behaviours_plugin, FakeProxy, Response, Worker, DEADLINE};
use spp_ipc::layout::{ProcessState, WorkerState};
use spp_ipc::record::KIND_RESPONSE;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A drain timeout no test waits for: a worker that exits within
/// [`DEADLINE`] ended its drain for another reason.
const NEVER_MS: u64 = 600_000;
/// A drain timeout the timeout test does wait for.
const SHORT_DRAIN_MS: u64 = 100;
/// Pause between two looks at a log file.
const LOG_POLL: Duration = Duration::from_millis(5);

/// A worker (behaviours plugin, `drain_timeout_ms` = `drain_ms`), ready,
/// then sent SIGTERM and seen `Draining`.
fn draining_worker(proxy: &FakeProxy, drain_ms: u64) -> Worker {
    let mut spec = proxy.launch(&behaviours_plugin(), "", 0);
    spec.drain_timeout_ms = drain_ms;
    let mut worker = proxy.spawn_spec(&spec);
    proxy.wait_ready(&mut worker);
    worker.signal(libc::SIGTERM);
    proxy.wait_state(WorkerState::Draining, &mut worker);
    worker
}

#[test]
fn a_drain_serves_until_the_proxy_acknowledges_it_then_ends() {
    let mut proxy = FakeProxy::new();
    let mut worker = draining_worker(&proxy, NEVER_MS);
    assert!(
        proxy.proxy_bell.wait(DEADLINE),
        "the worker rang the proxy's doorbell so it scans the slot now"
    );
    // Not acknowledged yet: the proxy may still dispatch, and is served.
    proxy.send(1, b"ebefore-ack");
    let mut got = Vec::new();
    proxy.collect(&mut got, 1, &mut worker);
    assert_eq!(got[0].bytes, b"ebefore-ack");
    assert!(worker.try_status().is_none(), "still draining");

    proxy.ack_drain(&mut worker);
    assert_eq!(worker.exit_code(), 0);
    let stderr = worker.stderr();
    assert!(
        stderr.contains("the proxy acknowledged the drain"),
        "{stderr}"
    );
    assert!(!stderr.contains("did not finish"), "{stderr}");
}

#[test]
fn an_acknowledged_drain_still_empties_the_ring_first() {
    const COUNT: u64 = 200;
    let mut proxy = FakeProxy::new();
    let mut spec = proxy.launch(&behaviours_plugin(), "", 0);
    spec.drain_timeout_ms = NEVER_MS;
    let mut worker = proxy.spawn_spec(&spec);
    proxy.wait_ready(&mut worker);
    // 'w' holds the worker inside process while the rest queue up behind.
    let release = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("release-drain-{}", std::process::id()));
    let _ = std::fs::remove_file(&release);
    proxy.send(0, format!("w{}", release.display()).as_bytes());
    proxy.wait_until(&mut worker, "inside process", |h| {
        h.in_process_since_ms.load(Ordering::Relaxed) != 0
    });
    for flow in 1..=COUNT {
        proxy.push(flow, format!("e{flow}").as_bytes());
    }
    proxy.publish();
    worker.signal(libc::SIGTERM);
    // The signal is handled once `process` returns; ack before that, with
    // the ring full of requests.
    proxy.ack_drain_now();
    std::fs::write(&release, b"").expect("create the release file");
    assert_eq!(worker.exit_code(), 0, "stderr:\n{}", worker.stderr());
    let _ = std::fs::remove_file(&release);

    let mut got = Vec::new();
    proxy.poll(&mut got);
    let echoed = got.iter().filter(|r| r.bytes.starts_with(b"e")).count();
    assert_eq!(echoed as u64, COUNT, "every queued request answered");
    assert_eq!(proxy.end().completed_seq(), COUNT + 1);
}

#[test]
fn a_drain_ends_when_the_proxy_is_down_or_gone() {
    // The proxy region says Down (the controller reaped the proxy).
    let proxy = FakeProxy::new();
    let mut worker = draining_worker(&proxy, NEVER_MS);
    proxy
        .proxy
        .header()
        .proxy_state
        .store(ProcessState::Down as u32, Ordering::Release);
    assert_eq!(worker.exit_code(), 0);
    assert!(worker.stderr().contains("the proxy is Down"));

    // The proxy's pid is gone while its state still says Ready (it died
    // and the controller has not noticed yet).
    let proxy = FakeProxy::new();
    let mut worker = draining_worker(&proxy, NEVER_MS);
    let dead = reaped_pid();
    proxy
        .proxy
        .header()
        .proxy_pid
        .store(dead, Ordering::Release);
    assert_eq!(worker.exit_code(), 0);
    assert!(worker
        .stderr()
        .contains(&format!("the proxy (pid {dead}) is gone")));
}

#[test]
fn an_unacknowledged_drain_ends_at_the_drain_timeout() {
    let proxy = FakeProxy::new();
    let mut worker = draining_worker(&proxy, SHORT_DRAIN_MS);
    // Nobody acknowledges; the proxy runs (this test process).
    assert_eq!(worker.exit_code(), 0);
    let stderr = worker.stderr();
    assert!(stderr.contains("did not finish within"), "{stderr}");
    assert!(stderr.contains("drained"), "fini and the final flush ran");
}

#[test]
fn sighup_reopens_the_log_file() {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("sighup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("log dir");
    let log = dir.join("worker.log");
    let rotated = dir.join("worker.log.1");

    let mut proxy = FakeProxy::new();
    let mut spec = proxy.launch(&behaviours_plugin(), "", 0);
    spec.log.file = Some(log.clone());
    let mut worker = proxy.spawn_logging(&spec, &log);
    proxy.wait_ready(&mut worker);
    wait_for_line(&log, "ready", &mut worker);

    // What logrotate does: rename, then SIGHUP.
    std::fs::rename(&log, &rotated).expect("rotate the log");
    worker.signal(libc::SIGHUP);
    wait_for_line(&log, "log file reopened", &mut worker);
    // The worker lives on and serves.
    proxy.send(1, b"eafter-hup");
    let mut got = Vec::new();
    proxy.collect(&mut got, 1, &mut worker);
    assert_eq!(
        got,
        vec![Response {
            kind: KIND_RESPONSE,
            flow: 1,
            bytes: b"eafter-hup".to_vec()
        }]
    );
    assert_eq!(proxy.stop(&mut worker), 0);

    let new = std::fs::read_to_string(&log).expect("new log");
    let old = std::fs::read_to_string(&rotated).expect("rotated log");
    assert!(
        new.contains("drained"),
        "later lines go to the new file:\n{new}"
    );
    assert!(old.contains("ready"), "{old}");
    assert!(
        !old.contains("drained"),
        "the rotated file was let go:\n{old}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sighup_without_a_log_file_is_harmless() {
    let mut proxy = FakeProxy::new();
    let mut worker = proxy.spawn(&behaviours_plugin(), "", 0);
    proxy.wait_ready(&mut worker);
    worker.signal(libc::SIGHUP);
    proxy.send(1, b"estill-here");
    let mut got = Vec::new();
    proxy.collect(&mut got, 1, &mut worker);
    assert_eq!(got[0].bytes, b"estill-here");
    assert_eq!(proxy.stop(&mut worker), 0);
    assert!(worker.stderr().contains("no log file to reopen"));
}

/// Waits (bounded) until `path` exists and holds a line containing `text`.
fn wait_for_line(path: &Path, text: &str, worker: &mut Worker) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let content = std::fs::read_to_string(path).unwrap_or_default();
        if content.lines().any(|line| line.contains(text)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no line with {text:?} in {} ({content:?}); worker: {}",
            path.display(),
            worker.describe()
        );
        std::thread::sleep(LOG_POLL);
    }
}

/// The pid of a child that has exited and been reaped.
fn reaped_pid() -> u32 {
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let pid = child.id();
    child.wait().expect("reap true");
    pid
}
