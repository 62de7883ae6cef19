//! Unit tests of the async layer against a fake host: [`Request`] and
//! [`Reply`], the task wrapper (a panic, a timeout, a cancellation, a full
//! reply queue, poll-time accounting) and the L5 helpers.

use super::l5::metric_name;
use super::plugin::{AsyncPlugin, Reply, Request, TaskFailure};
use super::task::{self, Pending};
use super::{timed_call, SidCall, SidCallError, CANCELLED, PANICKED, TIMED_OUT};
use crate::abi;
use crate::abi::{SppConnInfo, SPP_PROTO_UDP};
use crate::plugin::{Conn, Host, Input};
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::Duration;

#[path = "fake_host.rs"]
mod fake_host;
use fake_host::{Event, Setup};

/// A plugin whose request bytes say what its task does.
struct Script;

impl AsyncPlugin for Script {
    type ConnState = ();
    fn init(_host: Host, _conf: &str) -> Result<Self, i32> {
        Ok(Script)
    }
    fn input(&self, _c: Conn<'_>, _s: &mut (), buf: &[u8]) -> Input {
        Input::Complete(buf.len())
    }
    async fn process(&self, req: Request) -> Reply {
        match req.body().as_ref() {
            b"panic" => panic!("asked to"),
            b"hang" => std::future::pending().await,
            b"sleep" => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Reply::bytes(&b"slept"[..])
            }
            _ => Reply::bytes(req.into_body()),
        }
    }
    fn failed(&self, _flow: u64, why: TaskFailure) -> Reply {
        match why {
            TaskFailure::Panicked => Reply::bytes(&b"panicked"[..]),
            _ => Reply::close(),
        }
    }
}

static SCRIPT: Script = Script;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn request(flow: u64, body: &[u8]) -> Request {
    let info = SppConnInfo {
        flow,
        recv_time_us: 7,
        listener: 2,
        ..SppConnInfo::default()
    };
    Request::from_conn(Conn(&info), body)
}

/// Runs deferred request `token` of `flow` to its end on a fresh runtime.
fn run_deferred(host: Host, token: u64, flow: u64, body: &[u8], timeout: Option<Duration>) {
    let rt = runtime();
    let local = tokio::task::LocalSet::new();
    let req = request(flow, body);
    local.block_on(&rt, async {
        task::deferred(
            &SCRIPT,
            host,
            Pending::new(host, token, 0, None),
            req,
            timeout.map_or(task::Limit::None, task::Limit::Timer),
        )
        .await;
    });
}

#[test]
fn request_copies_the_connection_info_and_the_bytes_once() {
    let info = SppConnInfo {
        flow: 42,
        recv_time_us: 99,
        proto: SPP_PROTO_UDP,
        listener: 3,
        ..SppConnInfo::default()
    };
    let body = b"hello".to_vec();
    let req = Request::from_conn(Conn(&info), &body);
    drop(body);
    assert_eq!(req.flow(), 42);
    assert!(req.is_udp());
    assert_eq!(req.listener(), 3);
    assert_eq!(req.recv_time_us(), 99);
    assert_eq!(req.local(), None);
    assert!(req.note().is_empty());
    assert_eq!(req.body().as_ref(), b"hello");
    assert_eq!(req.into_body(), Bytes::from_static(b"hello"));
}

#[test]
fn reply_constructors_say_what_to_send_and_whether_to_close() {
    assert_eq!(Reply::none().body(), None);
    assert!(!Reply::none().closes());
    assert!(Reply::close().closes());
    assert_eq!(Reply::close().body(), None);
    let r = Reply::bytes(&b"ab"[..]).and_close();
    assert_eq!(r.body().map(|b| b.as_ref()), Some(&b"ab"[..]));
    assert!(r.closes());
    // An empty answer sends nothing (an empty host.reply would close).
    assert_eq!(Reply::bytes(Vec::new()), Reply::none());
    assert_eq!(Reply::from(vec![1u8]), Reply::bytes(vec![1u8]));
    assert_eq!(
        Reply::from(Bytes::from_static(b"x")),
        Reply::bytes(&b"x"[..])
    );
    assert_eq!(Reply::from(&b"y"[..]), Reply::bytes(&b"y"[..]));
}

#[test]
fn a_task_replies_then_completes() {
    let (fake, host) = fake_host::host(Setup::default());
    run_deferred(host, 5, 10, b"sleep", None);
    assert_eq!(
        fake.events(),
        vec![Event::Reply(10, b"slept".to_vec()), Event::Complete(5, 0)]
    );
}

#[test]
fn a_panicking_task_fails_its_request_only_and_is_counted() {
    let (fake, host) = fake_host::host(Setup::default());
    run_deferred(host, 1, 11, b"panic", None);
    run_deferred(host, 2, 12, b"echo", None);
    assert_eq!(fake.replies(11), vec![b"panicked".to_vec()]);
    assert_eq!(fake.completed(1), Some(0));
    assert_eq!(fake.counter(PANICKED), 1);
    assert_eq!(fake.replies(12), vec![b"echo".to_vec()]);
    assert_eq!(fake.completed(2), Some(0));
}

#[test]
fn a_task_past_its_timeout_is_dropped_and_fails() {
    let (fake, host) = fake_host::host(Setup::default());
    run_deferred(host, 3, 13, b"hang", Some(Duration::from_millis(20)));
    assert!(fake.replies(13).is_empty());
    assert_eq!(fake.completed(3), Some(-1), "failed() closes");
    assert_eq!(fake.counter(TIMED_OUT), 1);
}

#[test]
fn the_task_timeout_comes_from_the_host_and_zero_means_none() {
    let (_, host) = fake_host::host(Setup {
        task_timeout_ms: 250,
        ..Setup::default()
    });
    assert_eq!(task::task_timeout(host), Some(Duration::from_millis(250)));
    let (_, host) = fake_host::host(Setup::default());
    assert_eq!(task::task_timeout(host), None);
    let (_, old) = fake_host::host(Setup {
        task_timeout_ms: 250,
        size: std::mem::offset_of!(abi::SppHost, defer) as u32,
        ..Setup::default()
    });
    assert_eq!(task::task_timeout(old), None);
    assert_eq!(task::defer(old), None, "an older host cannot defer");
}

#[test]
fn a_full_reply_queue_is_retried_until_there_is_room() {
    let (fake, host) = fake_host::host(Setup::default());
    fake.full_replies
        .store(3, std::sync::atomic::Ordering::SeqCst);
    run_deferred(host, 4, 14, b"echo", None);
    assert_eq!(fake.replies(14), vec![b"echo".to_vec()]);
    assert_eq!(fake.completed(4), Some(0));
}

#[test]
fn a_cancelled_task_completes_its_request_with_a_close() {
    let (fake, host) = fake_host::host(Setup::default());
    let rt = runtime();
    let local = tokio::task::LocalSet::new();
    task::spawn(Some(&local), &SCRIPT, host, 6, request(16, b"hang"));
    task::spawn(Some(&local), &SCRIPT, host, 7, request(17, b"hang"));
    local.block_on(&rt, tokio::task::yield_now());
    assert_eq!(task::tracked(), 2);
    assert_eq!(task::cancel_flow(16), 1);
    local.block_on(&rt, tokio::task::yield_now());
    assert_eq!(fake.completed(6), Some(-1));
    assert_eq!(fake.completed(7), None, "another flow's task runs on");
    assert_eq!(fake.counter(CANCELLED), 1);
    drop(local);
    assert_eq!(fake.completed(7), Some(-1), "dropped at shutdown");
    assert_eq!(fake.completions(7), 1);
    assert_eq!(task::tracked(), 0);
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn sid_call_retries_on_a_second_instance_and_reports_both() {
    let (fake, host) = fake_host::host(Setup::default());
    fake.routes.lock().unwrap().extend([addr(1001), addr(1002)]);
    let rt = runtime();
    let got = rt.block_on(SidCall::new(7, 8).run(&host, |a| async move {
        if a == addr(1001) {
            Err("refused")
        } else {
            Ok(a.port())
        }
    }));
    assert_eq!(got.unwrap(), 1002);
    assert_eq!(fake.reports(), vec![(addr(1001), -1), (addr(1002), 0)]);
    assert_eq!(fake.counter("call:127.0.0.1:1001:failed"), 1);
    assert_eq!(fake.counter("call:127.0.0.1:1002:ok"), 1);
    assert_eq!(fake.samples("call:127.0.0.1:1002"), 1);
}

#[test]
fn sid_call_gives_the_last_error_after_its_tries() {
    let (fake, host) = fake_host::host(Setup::default());
    fake.routes.lock().unwrap().push_back(addr(1003));
    let rt = runtime();
    let got: Result<(), _> = rt.block_on(
        SidCall::new(7, 8)
            .tries(3)
            .timeout(Duration::from_millis(60))
            .run(&host, |_| std::future::pending::<Result<(), ()>>()),
    );
    assert!(matches!(got, Err(SidCallError::TimedOut)));
    assert_eq!(fake.reports().len(), 3);
    assert_eq!(fake.counter("call:127.0.0.1:1003:timeout"), 3);
}

#[test]
fn sid_call_without_a_route_says_so() {
    let (_, host) = fake_host::host(Setup::default());
    let rt = runtime();
    let got: Result<(), SidCallError<()>> = rt.block_on(
        SidCall::new(7, 8)
            .hash_key(5)
            .run(&host, |_| async { Ok(()) }),
    );
    assert!(matches!(
        got,
        Err(SidCallError::NoRoute(crate::RouteError::NoServer))
    ));
}

#[test]
fn timed_call_counts_per_destination() {
    let (fake, host) = fake_host::host(Setup::default());
    let rt = runtime();
    let ok: Result<u8, SidCallError<()>> = rt.block_on(timed_call(
        &host,
        addr(1004),
        Duration::from_secs(1),
        async { Ok(1) },
    ));
    assert_eq!(ok.unwrap(), 1);
    let late: Result<(), SidCallError<()>> = rt.block_on(timed_call(
        &host,
        addr(1004),
        Duration::from_millis(5),
        std::future::pending(),
    ));
    assert!(matches!(late, Err(SidCallError::TimedOut)));
    assert_eq!(fake.counter("call:127.0.0.1:1004:ok"), 1);
    assert_eq!(fake.counter("call:127.0.0.1:1004:timeout"), 1);
    assert!(fake.reports().is_empty(), "no L5 for a fixed address");
}

#[test]
fn metric_names_match_the_micro_thread_calls() {
    assert_eq!(metric_name(addr(80), ":ok"), "call:127.0.0.1:80:ok");
    assert_eq!(metric_name(addr(80), ""), "call:127.0.0.1:80");
}

#[test]
fn requests_and_replies_travel_between_threads() {
    fn send_static<T: Send + 'static>() {}
    send_static::<Request>();
    send_static::<Reply>();
    send_static::<TaskFailure>();
}
