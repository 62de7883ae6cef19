//! Downstream calls (`spp_host.call`, `spp_host.call_many`) end to end:
//! the caller test plugin in a micro-thread group calls backends the test
//! runs on 127.0.0.1 and answers each client with the outcome, so every
//! assertion is on what a client saw.
//!
//! Covered: success (sequential calls reuse one pooled connection),
//! timeout (and the timed-out connection is not reused), a pooled
//! connection the backend closed (replaced without an error), refused, a backend closing mid-answer, an answer too large,
//! UDP success and timeout, fan-out with a failing leg and with
//! `wait_for = 1`, a client gone before its answer, many concurrent calls
//! on one worker, a panic in one micro-thread, a worker killed with
//! suspended calls, reload and stop with suspended calls, and a plain
//! group (unsupported at once).

use spp_tests::backend::{refused_addr, Behaviour, TcpBackend, UdpBackend};
use spp_tests::caller::{self, err, many_answer, ok};
use spp_tests::client::TcpClient;
use spp_tests::view::ready_workers;
use spp_tests::{kill, pid_alive, wait_for, Binaries, Service, ServiceConfig};
use std::io;
use std::time::{Duration, Instant};

/// Answer buffer of every call unless a test says otherwise.
const CAP: usize = 4096;
/// Call timeout of calls expected to succeed (ms).
const LONG_MS: u64 = 5000;
/// Call timeout of calls expected to time out (ms).
const SHORT_MS: u64 = 300;
/// Bound on every wait for a service state.
const WAIT: Duration = Duration::from_secs(10);
/// What "at once" allows on a loaded 2-core machine.
const AT_ONCE: Duration = Duration::from_secs(1);
/// Name of the only worker.
const WORKER: &str = "worker-g1-0";
/// How long a slow backend holds each answer: long enough for a test to
/// see the calls suspended (`spp stat` polls) before they finish.
const HOLD: Duration = Duration::from_secs(2);

/// A backend that echoes after [`HOLD`].
fn slow_backend() -> TcpBackend {
    TcpBackend::start(Behaviour::Echo { delay: HOLD })
}

/// One worker of the caller plugin; `microthread` sets `mode`.
fn config(microthread: bool) -> ServiceConfig {
    let plugin = Binaries::locate().plugin(caller::PLUGIN);
    let mut cfg = ServiceConfig::single(&plugin, 1);
    if microthread {
        cfg.group_mut().extra.push("mode = \"microthread\"".into());
    }
    cfg
}

fn start() -> Service {
    Service::start(&config(true))
}

fn connect(service: &Service) -> TcpClient {
    TcpClient::connect(service.tcp()).expect("connect")
}

/// `n` connected clients.
fn clients(service: &Service, n: usize) -> Vec<TcpClient> {
    (0..n).map(|_| connect(service)).collect()
}

/// Sends `command` and reads the answer, as text for messages.
fn ask(client: &mut TcpClient, command: &[u8]) -> String {
    let answer = client.call(command).expect("an answer");
    String::from_utf8_lossy(&answer).into_owned()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_call_answers_and_sequential_calls_reuse_one_pooled_connection() {
    let backend = TcpBackend::start(Behaviour::ECHO);
    let service = start();
    let mut client = connect(&service);
    for i in 0..20 {
        let payload = format!("hello-{i}");
        let cmd = caller::tcp(backend.addr(), LONG_MS, CAP, &payload);
        assert_eq!(ask(&mut client, &cmd), text(&ok(&payload)), "call {i}");
    }
    assert_eq!(
        backend.accepted(),
        1,
        "one worker's sequential calls to one destination share one connection"
    );
}

#[test]
fn a_silent_backend_times_out_and_the_worker_serves_on() {
    let silent = TcpBackend::start(Behaviour::Silent);
    let echo = TcpBackend::start(Behaviour::ECHO);
    let service = start();
    let mut client = connect(&service);
    let started = Instant::now();
    let cmd = caller::tcp(silent.addr(), SHORT_MS, CAP, "anyone");
    assert_eq!(ask(&mut client, &cmd), text(&err("Timeout")));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(SHORT_MS), "{took:?}");
    assert!(took < Duration::from_millis(SHORT_MS) + AT_ONCE, "{took:?}");
    let cmd = caller::tcp(echo.addr(), LONG_MS, CAP, "after");
    assert_eq!(ask(&mut client, &cmd), text(&ok("after")));
}

#[test]
fn a_timed_out_connection_is_not_reused_for_the_next_call() {
    const LATE: Duration = Duration::from_millis(600);
    let late = TcpBackend::start(Behaviour::Echo { delay: LATE });
    let service = start();
    let mut client = connect(&service);
    let cmd = caller::tcp(late.addr(), SHORT_MS, CAP, "first");
    assert_eq!(ask(&mut client, &cmd), text(&err("Timeout")));
    // The late answer to "first" must not pass for the answer to "second".
    let cmd = caller::tcp(late.addr(), LONG_MS, CAP, "second");
    assert_eq!(ask(&mut client, &cmd), text(&ok("second")));
}

#[test]
fn a_pooled_connection_the_backend_closed_is_replaced_without_an_error() {
    const CALLS: usize = 10;
    let once = TcpBackend::start(Behaviour::EchoOnceThenClose);
    let service = start();
    let mut client = connect(&service);
    for i in 0..CALLS {
        let payload = format!("again-{i}");
        let cmd = caller::tcp(once.addr(), LONG_MS, CAP, &payload);
        assert_eq!(ask(&mut client, &cmd), text(&ok(&payload)), "call {i}");
    }
    assert_eq!(once.accepted(), CALLS, "one connection per call");
}

#[test]
fn a_refused_connect_is_refused_at_once() {
    let service = start();
    let mut client = connect(&service);
    let started = Instant::now();
    let cmd = caller::tcp(refused_addr(), LONG_MS, CAP, "knock");
    assert_eq!(ask(&mut client, &cmd), text(&err("Refused")));
    assert!(started.elapsed() < AT_ONCE, "{:?}", started.elapsed());
}

#[test]
fn a_backend_closing_mid_answer_is_closed() {
    let half = TcpBackend::start(Behaviour::HalfThenClose);
    let service = start();
    let mut client = connect(&service);
    let cmd = caller::tcp(half.addr(), LONG_MS, CAP, "half");
    assert_eq!(ask(&mut client, &cmd), text(&err("Closed")));
}

#[test]
fn an_answer_larger_than_the_buffer_is_too_large() {
    const SMALL_CAP: usize = 64;
    let big = TcpBackend::start(Behaviour::Oversize(SMALL_CAP * 4));
    let echo = TcpBackend::start(Behaviour::ECHO);
    let service = start();
    let mut client = connect(&service);
    let cmd = caller::tcp(big.addr(), LONG_MS, SMALL_CAP, "big");
    assert_eq!(ask(&mut client, &cmd), text(&err("TooLarge")));
    // An answer that fits the same small buffer is fine.
    let cmd = caller::tcp(echo.addr(), LONG_MS, SMALL_CAP, "small");
    assert_eq!(ask(&mut client, &cmd), text(&ok("small")));
}

#[test]
fn udp_calls_answer_or_time_out() {
    let echo = UdpBackend::start(true);
    let silent = UdpBackend::start(false);
    let service = start();
    let mut client = connect(&service);
    let cmd = caller::udp(echo.addr(), LONG_MS, CAP, "datagram");
    assert_eq!(ask(&mut client, &cmd), text(&ok("datagram")));
    let started = Instant::now();
    let cmd = caller::udp(silent.addr(), SHORT_MS, CAP, "void");
    assert_eq!(ask(&mut client, &cmd), text(&err("Timeout")));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(SHORT_MS), "{took:?}");
    assert!(took < Duration::from_millis(SHORT_MS) + AT_ONCE, "{took:?}");
}

#[test]
fn fan_out_gives_each_leg_its_own_result() {
    let one = TcpBackend::start(Behaviour::ECHO);
    let two = TcpBackend::start(Behaviour::ECHO);
    let service = start();
    let mut client = connect(&service);
    let cmd = caller::many(
        0,
        LONG_MS,
        CAP,
        &[one.addr(), refused_addr(), two.addr()],
        "fan",
    );
    assert_eq!(
        ask(&mut client, &cmd),
        text(&many_answer(2, &["ok:fan", "err:Refused", "ok:fan"]))
    );
}

#[test]
fn fan_out_waiting_for_one_returns_with_the_first_success() {
    let silent = TcpBackend::start(Behaviour::Silent);
    let echo = TcpBackend::start(Behaviour::ECHO);
    let service = start();
    let mut client = connect(&service);
    let started = Instant::now();
    let cmd = caller::many(1, LONG_MS, CAP, &[silent.addr(), echo.addr()], "first");
    assert_eq!(
        ask(&mut client, &cmd),
        text(&many_answer(1, &["err:Cancelled", "ok:first"]))
    );
    assert!(
        started.elapsed() < AT_ONCE,
        "did not wait for the silent leg: {:?}",
        started.elapsed()
    );
}

#[test]
fn a_client_gone_before_its_answer_leaves_nothing_behind() {
    const GONE: usize = 20;
    let slow = slow_backend();
    let service = start();
    let pid = service.pid_of(WORKER);
    let mut leaving = clients(&service, GONE);
    for (i, client) in leaving.iter_mut().enumerate() {
        let cmd = caller::tcp(slow.addr(), LONG_MS, CAP, &format!("gone-{i}"));
        client.send(&cmd).expect("send");
    }
    service.wait_in_flight(GONE as u64, WAIT);
    drop(leaving);
    // The calls finish, their replies are dropped, nothing stays in flight.
    service.wait_in_flight(0, WAIT);
    assert_eq!(service.pid_of(WORKER), pid, "the worker lived on");
    let mut again = connect(&service);
    let cmd = caller::tcp(slow.addr(), LONG_MS, CAP, "after");
    assert_eq!(ask(&mut again, &cmd), text(&ok("after")));
}

#[test]
fn one_worker_carries_many_concurrent_calls() {
    const CLIENTS: usize = 200;
    // The backend holds every answer this long: long enough for the gauge
    // to be read while all calls wait on it.
    const DELAY: Duration = Duration::from_secs(3);
    let slow = TcpBackend::start(Behaviour::Echo { delay: DELAY });
    let service = start();
    let mut all = clients(&service, CLIENTS);
    let started = Instant::now();
    for (i, client) in all.iter_mut().enumerate() {
        let cmd = caller::tcp(slow.addr(), LONG_MS, CAP, &format!("c{i}"));
        client.send(&cmd).expect("send");
    }
    // All of them suspended in the one worker at once: a worker that
    // blocked on each call would hold one.
    service.wait_in_flight(CLIENTS as u64, WAIT);
    for (i, client) in all.iter_mut().enumerate() {
        let answer = client.recv().expect("answer");
        assert_eq!(text(&answer), text(&ok(&format!("c{i}"))), "client {i}");
    }
    let took = started.elapsed();
    eprintln!(
        "{CLIENTS} concurrent calls of {DELAY:?} each: {took:?} ({:.3} of one at a time)",
        took.as_secs_f64() / (DELAY.as_secs_f64() * CLIENTS as f64)
    );
    service.wait_in_flight(0, WAIT);
}

#[test]
fn a_panic_in_one_micro_thread_affects_only_its_connection() {
    let slow = slow_backend();
    let service = start();
    let pid = service.pid_of(WORKER);
    let mut bystander = connect(&service);
    let cmd = caller::tcp(slow.addr(), LONG_MS, CAP, "suspended");
    bystander.send(&cmd).expect("send");
    service.wait_in_flight(1, WAIT);
    let mut victim = connect(&service);
    victim.send(caller::PANIC).expect("send");
    assert!(
        victim.closed_by_server(),
        "the panicking request's connection closes"
    );
    assert_eq!(
        text(&bystander.recv().expect("answer")),
        text(&ok("suspended")),
        "the call suspended meanwhile is answered"
    );
    let cmd = caller::tcp(slow.addr(), LONG_MS, CAP, "later");
    assert_eq!(ask(&mut bystander, &cmd), text(&ok("later")));
    assert_eq!(service.pid_of(WORKER), pid, "the worker lived on");
}

/// Reads one answer within `limit`: `Ok(Some(answer))`, `Ok(None)` when
/// the server closed, `Err` on a timeout or another error.
fn answer_or_close(client: &mut TcpClient, limit: Duration) -> io::Result<Option<Vec<u8>>> {
    client.stream.set_read_timeout(Some(limit))?;
    match client.recv() {
        Ok(answer) => Ok(Some(answer)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[test]
fn a_killed_worker_fails_its_suspended_calls_at_once() {
    const SUSPENDED: usize = 10;
    let silent = TcpBackend::start(Behaviour::Silent);
    let echo = TcpBackend::start(Behaviour::ECHO);
    let service = start();
    let pid = service.pid_of(WORKER).expect("worker pid");
    let mut waiting = clients(&service, SUSPENDED);
    for (i, client) in waiting.iter_mut().enumerate() {
        let cmd = caller::tcp(silent.addr(), 20_000, CAP, &format!("w{i}"));
        client.send(&cmd).expect("send");
    }
    service.wait_in_flight(SUSPENDED as u64, WAIT);
    let killed = Instant::now();
    kill(pid, libc::SIGKILL);
    for (i, client) in waiting.iter_mut().enumerate() {
        let left = WAIT.saturating_sub(killed.elapsed());
        match answer_or_close(client, left) {
            Ok(Some(answer)) => assert_eq!(text(&answer), text(caller::BUSY_DIED), "client {i}"),
            Ok(None) => {}
            Err(e) => panic!("client {i} hung after the kill: {e}"),
        }
    }
    let took = killed.elapsed();
    eprintln!("{SUSPENDED} suspended calls failed {took:?} after the kill");
    assert!(took < Duration::from_secs(3), "{took:?}");
    service
        .wait_replaced(WORKER, pid, WAIT)
        .expect("worker replaced");
    let mut after = connect(&service);
    let cmd = caller::tcp(echo.addr(), LONG_MS, CAP, "after");
    assert_eq!(ask(&mut after, &cmd), text(&ok("after")));
}

/// Clients each waiting on a call to `backend` (their requests are
/// suspended in the worker when this returns).
fn suspended_calls(service: &Service, backend: &TcpBackend, n: usize) -> Vec<TcpClient> {
    let mut waiting = clients(service, n);
    for (i, client) in waiting.iter_mut().enumerate() {
        let cmd = caller::tcp(backend.addr(), LONG_MS, CAP, &format!("s{i}"));
        client.send(&cmd).expect("send");
    }
    service.wait_in_flight(n as u64, WAIT);
    waiting
}

fn assert_all_answered(waiting: &mut [TcpClient]) {
    for (i, client) in waiting.iter_mut().enumerate() {
        let answer = client.recv().expect("answered");
        assert_eq!(text(&answer), text(&ok(&format!("s{i}"))), "client {i}");
    }
}

#[test]
fn reload_drains_suspended_calls() {
    let slow = slow_backend();
    let mut cfg = config(true);
    let service = Service::start(&cfg);
    let old = service.pid_of(WORKER).expect("worker pid");
    let mut waiting = suspended_calls(&service, &slow, 10);
    cfg.group_mut().plugin_conf = "second edition".into();
    service.write_config(&cfg);
    let out = service.reload();
    assert!(out.ok(), "spp reload: {}\n{}", out.text(), service.logs());
    assert_all_answered(&mut waiting);
    // The new worker may run in the other slot: any ready worker of the
    // group but the old one.
    let replaced = service.wait_status(WAIT, |status| {
        let ready = ready_workers(status, 1);
        (ready.len() == 1 && ready[0].pid != Some(old)).then_some(())
    });
    assert!(replaced.is_some(), "not replaced: {}", service.status());
    let gone = wait_for(WAIT, || (!pid_alive(old)).then_some(()));
    assert!(gone.is_some(), "the old worker {old} still runs");
    let mut after = connect(&service);
    let cmd = caller::tcp(slow.addr(), LONG_MS, CAP, "after");
    assert_eq!(ask(&mut after, &cmd), text(&ok("after")));
}

#[test]
fn stop_answers_suspended_calls_within_stop_grace() {
    let slow = slow_backend();
    let mut service = start();
    let mut waiting = suspended_calls(&service, &slow, 10);
    let stop_started = Instant::now();
    let out = service.stop();
    assert!(out.ok(), "spp stop: {}", out.text());
    assert_all_answered(&mut waiting);
    eprintln!(
        "stop answered the suspended calls in {:?}",
        stop_started.elapsed()
    );
    // Within stop_grace (5 s in tests).
    assert!(
        stop_started.elapsed() < Duration::from_secs(5),
        "{:?}",
        stop_started.elapsed()
    );
}

#[test]
fn calls_in_a_plain_group_are_unsupported_at_once() {
    let echo = TcpBackend::start(Behaviour::ECHO);
    let service = Service::start(&config(false));
    let mut client = connect(&service);
    let started = Instant::now();
    let cmd = caller::tcp(echo.addr(), LONG_MS, CAP, "plain");
    assert_eq!(ask(&mut client, &cmd), text(&err("Unsupported")));
    let cmd = caller::udp(echo.addr(), LONG_MS, CAP, "plain");
    assert_eq!(ask(&mut client, &cmd), text(&err("Unsupported")));
    let cmd = caller::many(0, LONG_MS, CAP, &[echo.addr()], "plain");
    assert_eq!(ask(&mut client, &cmd), text(&err("Unsupported")));
    assert_eq!(
        ask(&mut client, &caller::sleep(10)),
        text(&err("Unsupported"))
    );
    assert!(started.elapsed() < AT_ONCE, "{:?}", started.elapsed());
    assert_eq!(echo.accepted(), 0, "nothing was sent");
}
