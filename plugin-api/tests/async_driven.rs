//! The async layer's default placement through its C hooks, against a fake
//! host that defers: `spp_process` defers and spawns, `spp_poll` runs the
//! tasks on the caller's thread (tasks woken by a timer or a socket run
//! within a bounded number of calls), waits on the doorbell or a
//! completion, reports busy time; `spp_flow_closed` cancels a flow's tasks;
//! a panic or a timeout fails one request; a full reply queue is retried.

use spp_plugin_api::abi::{self, SppConnInfo, SPP_OK};
use spp_plugin_api::{
    export_async_plugin, AsyncPlugin, Conn, Host, Input, Reply, Request, TaskFailure,
};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

#[path = "../src/asynchronous/fake_host.rs"]
mod fake_host;
use fake_host::{Fake, Setup};

/// Whether `init` ran inside a tokio runtime's context.
static INIT_IN_RUNTIME: AtomicBool = AtomicBool::new(false);
/// Flows `AsyncPlugin::flow_closed` was called for.
static CLOSED: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// The group's task_timeout in the fake host.
const TASK_TIMEOUT_MS: u64 = 300;

struct Script;

impl AsyncPlugin for Script {
    type ConnState = ();
    fn init(_host: Host, _conf: &str) -> Result<Self, i32> {
        INIT_IN_RUNTIME.store(
            tokio::runtime::Handle::try_current().is_ok(),
            Ordering::SeqCst,
        );
        Ok(Script)
    }
    fn input(&self, _c: Conn<'_>, _s: &mut (), buf: &[u8]) -> Input {
        Input::Complete(buf.len())
    }
    async fn process(&self, req: Request) -> Reply {
        let body = req.body().clone();
        let text = std::str::from_utf8(&body).unwrap_or("");
        if let Some(ms) = text.strip_prefix("sleep:") {
            let ms: u64 = ms.parse().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            return Reply::bytes(format!("slept {ms}").into_bytes());
        }
        if let Some(port) = text.strip_prefix("tcp:") {
            use tokio::io::AsyncReadExt;
            let port: u16 = port.parse().unwrap_or(0);
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let mut answer = Vec::new();
            s.read_to_end(&mut answer).await.unwrap();
            return Reply::bytes(answer);
        }
        match text {
            "panic" => panic!("asked to"),
            "hang" => std::future::pending().await,
            _ => Reply::bytes(body),
        }
    }
    fn failed(&self, _flow: u64, why: TaskFailure) -> Reply {
        match why {
            TaskFailure::Panicked => Reply::bytes(&b"panicked"[..]),
            _ => Reply::close(),
        }
    }
    fn flow_closed(&self, flow: u64) {
        CLOSED.lock().unwrap().push(flow);
    }
}

export_async_plugin!(Script);

/// The fake host, initialised once per test binary; the guard serializes
/// the tests (they share the host's event log).
fn setup() -> (&'static Fake, MutexGuard<'static, ()>) {
    static ONE: Mutex<()> = Mutex::new(());
    static FAKE: OnceLock<&'static Fake> = OnceLock::new();
    let guard = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let fake = FAKE.get_or_init(|| {
        let (fake, table) = fake_host::leak(Setup {
            task_timeout_ms: TASK_TIMEOUT_MS,
            ..Setup::default()
        });
        // SAFETY: the table is leaked; the conf is NUL-terminated.
        assert_eq!(unsafe { spp_init(table, c"".as_ptr()) }, 0);
        fake
    });
    (fake, guard)
}

/// `spp_process` of `body` on `flow`: its return code and token.
fn process(fake: &Fake, flow: u64, body: &[u8]) -> u64 {
    let token = fake.peek_token();
    let info = SppConnInfo {
        flow,
        ..SppConnInfo::default()
    };
    // SAFETY: valid pointers for the call.
    let rc = unsafe { spp_process(&info, body.as_ptr(), body.len()) };
    assert_eq!(rc, SPP_OK);
    token
}

/// `spp_poll(fd, ms)`: its busy nanoseconds.
fn poll(fd: i32, ms: u32) -> u64 {
    let mut busy = 0;
    // SAFETY: `busy` is writable.
    assert_eq!(unsafe { spp_poll(fd, ms, &mut busy) }, SPP_OK);
    busy
}

/// Polls with wait 0 until `token` completes; how many calls it took.
fn poll_until(fake: &Fake, token: u64, max_calls: usize) -> Option<usize> {
    (1..=max_calls).find(|_| {
        poll(-1, 0);
        fake.completed(token).is_some()
    })
}

#[test]
fn init_runs_inside_the_runtime() {
    let _ = setup();
    assert!(INIT_IN_RUNTIME.load(Ordering::SeqCst));
}

#[test]
fn a_ready_task_completes_in_the_next_poll_and_counts_busy_time() {
    let (fake, _g) = setup();
    let token = process(fake, 100, b"echo");
    assert_eq!(fake.completed(token), None, "spawned, not run, in process");
    let busy = poll(-1, 0);
    assert_eq!(fake.completed(token), Some(0));
    assert_eq!(fake.replies(100), vec![b"echo".to_vec()]);
    assert!(busy > 0, "the task's poll is busy time");
}

#[test]
fn a_task_woken_by_its_timer_runs_within_two_polls() {
    let (fake, _g) = setup();
    let token = process(fake, 101, b"sleep:20");
    poll(-1, 0);
    assert_eq!(fake.completed(token), None);
    std::thread::sleep(Duration::from_millis(30));
    assert!(
        poll_until(fake, token, 2).is_some(),
        "timer fired, task ran"
    );
    assert_eq!(fake.replies(101), vec![b"slept 20".to_vec()]);
}

#[test]
fn a_task_talking_to_a_socket_completes_within_bounded_polls() {
    let (fake, _g) = setup();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"pong").unwrap();
    });
    let token = process(fake, 102, format!("tcp:{port}").as_bytes());
    // The first call starts the connect; once the server has answered and
    // closed, everything the task waits for is ready: it must finish
    // within a bounded number of calls (the I/O is seen by one, the task
    // runs in the next, as with a timer).
    poll(-1, 0);
    server.join().unwrap();
    let calls = poll_until(fake, token, 4);
    assert!(calls.is_some(), "not complete after 4 calls");
    assert_eq!(fake.completed(token), Some(0));
    assert_eq!(fake.replies(102), vec![b"pong".to_vec()]);
}

#[test]
fn a_waiting_poll_returns_when_a_task_completes() {
    let (fake, _g) = setup();
    let token = process(fake, 103, b"sleep:30");
    let start = Instant::now();
    let mut calls = 0;
    while fake.completed(token).is_none() && calls < 5 {
        poll(-1, 10_000);
        calls += 1;
    }
    assert_eq!(fake.completed(token), Some(0));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_waiting_poll_returns_when_the_doorbell_rings_and_leaves_it_unread() {
    let (_fake, _g) = setup();
    let (bell, mut ringer) = std::os::unix::net::UnixStream::pair().unwrap();
    let ring = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        ringer.write_all(b"x").unwrap();
        ringer
    });
    let start = Instant::now();
    poll(bell.as_raw_fd(), 10_000);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(20),
        "returned before the ring: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    let _ringer = ring.join().unwrap();
    let mut left = [0u8; 1];
    bell.set_nonblocking(true).unwrap();
    assert_eq!(
        (&bell).read(&mut left).unwrap(),
        1,
        "the byte is still there"
    );
}

#[test]
fn a_waiting_poll_without_work_sleeps_its_time() {
    let (_fake, _g) = setup();
    let start = Instant::now();
    poll(-1, 30);
    poll(-1, 30);
    assert!(
        start.elapsed() >= Duration::from_millis(30),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_panic_fails_one_request_and_the_next_is_served() {
    let (fake, _g) = setup();
    let before = fake.counter(spp_plugin_api::asynchronous::PANICKED);
    let bad = process(fake, 104, b"panic");
    let good = process(fake, 105, b"fine");
    assert!(poll_until(fake, good, 3).is_some());
    assert_eq!(fake.completed(bad), Some(0));
    assert_eq!(fake.replies(104), vec![b"panicked".to_vec()]);
    assert_eq!(fake.replies(105), vec![b"fine".to_vec()]);
    assert_eq!(
        fake.counter(spp_plugin_api::asynchronous::PANICKED),
        before + 1
    );
}

#[test]
fn a_task_past_the_task_timeout_fails_with_a_close() {
    let (fake, _g) = setup();
    let before = fake.counter(spp_plugin_api::asynchronous::TIMED_OUT);
    let token = process(fake, 106, b"hang");
    let start = Instant::now();
    while fake.completed(token).is_none() && start.elapsed() < Duration::from_secs(5) {
        poll(-1, 50);
    }
    assert_eq!(fake.completed(token), Some(-1));
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(TASK_TIMEOUT_MS), "{took:?}");
    assert!(
        took < Duration::from_millis(TASK_TIMEOUT_MS + abi::SPP_TASK_GRACE_MS),
        "{took:?}: before the host would expire it"
    );
    assert_eq!(
        fake.counter(spp_plugin_api::asynchronous::TIMED_OUT),
        before + 1
    );
}

#[test]
fn flow_closed_cancels_the_flows_tasks_first() {
    let (fake, _g) = setup();
    let before = fake.counter(spp_plugin_api::asynchronous::CANCELLED);
    // The host runs a flow's requests one at a time: one task per flow.
    let a = process(fake, 107, b"hang");
    let other = process(fake, 108, b"sleep:1000");
    poll(-1, 0);
    spp_flow_closed(107);
    assert_eq!(
        fake.completed(a),
        Some(-1),
        "completed before flow_closed returned"
    );
    assert_eq!(fake.completed(other), None, "another flow's task runs on");
    assert_eq!(
        fake.counter(spp_plugin_api::asynchronous::CANCELLED),
        before + 1
    );
    assert!(CLOSED.lock().unwrap().contains(&107));
    spp_flow_closed(108);
    assert_eq!(fake.completed(other), Some(-1));
    assert_eq!(fake.completions(a), 1, "completed once");
}

#[test]
fn a_full_reply_queue_is_retried_from_the_task() {
    let (fake, _g) = setup();
    fake.full_replies.store(2, Ordering::SeqCst);
    let token = process(fake, 109, b"echo");
    let start = Instant::now();
    while fake.completed(token).is_none() && start.elapsed() < Duration::from_secs(5) {
        poll(-1, 20);
    }
    assert_eq!(fake.completed(token), Some(0));
    assert_eq!(fake.replies(109), vec![b"echo".to_vec()]);
}

#[test]
fn hundreds_of_tasks_woken_at_once_all_run_within_two_polls() {
    let (fake, _g) = setup();
    // Far more than tokio's per-poll coop budget (128 operations), which
    // all the tasks of one `spp_poll` would otherwise share.
    const TASKS: u64 = 600;
    let tokens: Vec<u64> = (0..TASKS)
        .map(|i| process(fake, 20_000 + i, b"sleep:5"))
        .collect();
    poll(-1, 0);
    // Bounded wait until the timers are due (the first task completes).
    for _ in 0..200 {
        if tokens.iter().any(|t| fake.completed(*t).is_some()) {
            break;
        }
        poll(-1, 20);
    }
    poll(-1, 0);
    poll(-1, 0);
    let done = tokens
        .iter()
        .filter(|t| fake.completed(**t) == Some(0))
        .count();
    assert_eq!(done, TASKS as usize, "every woken task ran");
}
