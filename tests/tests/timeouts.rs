//! Stale requests and stuck workers: a request that waited in the ring past
//! its group's `msg_timeout` is not processed but answered by the exception
//! hook (or closed) and counted on both sides; a worker stuck inside one
//! `process` call past `hang_timeout` is SIGKILLed and replaced, its client
//! answered at once, the other workers untouched.

use spp_tests::client::TcpClient;
use spp_tests::faulty::{self, BUSY_DIED, BUSY_TIMEOUT};
use spp_tests::load::Load;
use spp_tests::view::{self, proxy_counter, worker_counter_sum};
use spp_tests::{wait_for, Binaries, Service, ServiceConfig};
use std::io::ErrorKind;
use std::time::Duration;

/// `msg_timeout` of the stale-request tests: far below [`HOLD_MS`].
const MSG_TIMEOUT: &str = "200ms";
/// How long the first request holds the only worker; the requests queued
/// behind it wait nearly this long, ten times `msg_timeout`.
const HOLD_MS: u64 = 2000;
/// Clients whose requests queue behind the held worker.
const QUEUED: usize = 4;
/// `hang_timeout` of the hang test.
const HANG_TIMEOUT: &str = "1s";
/// What the stuck request asks for: far longer than any wait below.
const STUCK_MS: u64 = 60_000;
/// How long to wait for the first request to reach its worker, for a
/// worker to be replaced, for counters to show.
const WAIT: Duration = Duration::from_secs(20);

fn worker_requests(service: &Service, name: &str) -> u64 {
    service.status()["worker_stats"][name]["requests"]
        .as_u64()
        .unwrap_or(0)
}

/// Sends `hold` and waits until the worker `name` took it.
fn hold_worker(service: &Service, name: &str, hold: &[u8]) -> TcpClient {
    let mut holder = TcpClient::connect(service.tcp()).expect("holder connect");
    holder.send(hold).expect("holder send");
    let taken = wait_for(WAIT, || (worker_requests(service, name) == 1).then_some(()));
    assert!(taken.is_some(), "{name} never took the holding request");
    holder
}

/// What a client whose request could not be served must see.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    /// The proxy plugin's exception hook answered this.
    Answer(&'static [u8]),
    /// The proxy plugin has no exception hook: the connection closes.
    Closed,
}

fn assert_outcome(client: &mut TcpClient, expected: Outcome, who: &str) {
    let got = client.recv();
    match (expected, got) {
        (Outcome::Answer(want), Ok(reply)) => assert_eq!(
            String::from_utf8_lossy(&reply),
            String::from_utf8_lossy(want),
            "{who}: the exception hook's answer"
        ),
        (Outcome::Closed, Err(e))
            if matches!(
                e.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
            ) => {}
        (expected, got) => panic!(
            "{who}: expected {expected:?}, got {:?} (never left waiting: the read timeout bounds it)",
            got.map(|r| String::from_utf8_lossy(&r).into_owned())
        ),
    }
}

/// One worker with a short `msg_timeout`, held by a long request while
/// [`QUEUED`] clients queue behind it: each stale request must end as
/// `expected`, and be counted on both sides; then the worker serves on.
fn stale_requests_end_as(proxy_plugin: &str, expected: Outcome) {
    let bins = Binaries::locate();
    let mut cfg = ServiceConfig::single(&bins.plugin(faulty::PLUGIN), 1);
    cfg.proxy_plugin = bins.plugin(proxy_plugin);
    cfg.group_mut().msg_timeout = Some(MSG_TIMEOUT.into());
    let service = Service::start(&cfg);

    let hold = faulty::sleep(HOLD_MS, "holder");
    let mut holder = hold_worker(&service, "worker-g1-0", &hold);
    let mut queued: Vec<TcpClient> = (0..QUEUED)
        .map(|i| {
            let mut c = TcpClient::connect(service.tcp()).expect("queued connect");
            c.send(format!("queued {i}").as_bytes())
                .expect("queued send");
            c
        })
        .collect();

    assert_eq!(holder.recv().expect("the holder's echo"), hold);
    for (i, client) in queued.iter_mut().enumerate() {
        assert_outcome(client, expected, &format!("queued client {i}"));
    }

    let hooked = matches!(expected, Outcome::Answer(_));
    let counted = service.wait_status(WAIT, |status| {
        let dropped = worker_counter_sum(status, "stale_dropped");
        let failed = proxy_counter(status, "stale_failed");
        let exceptions = proxy_counter(status, "exceptions");
        let exceptions_ok = !hooked || exceptions >= QUEUED as u64;
        (dropped >= QUEUED as u64 && failed >= QUEUED as u64 && exceptions_ok).then_some(())
    });
    let status = service.status();
    assert!(
        counted.is_some(),
        "stale_dropped (worker), stale_failed and exceptions (proxy) count the {QUEUED} stale requests: {}\n{}",
        status["worker_stats"],
        status["proxy_stats"]
    );
    assert_eq!(
        worker_requests(&service, "worker-g1-0"),
        1,
        "stale requests never reach process"
    );

    // The worker serves fresh requests as before.
    let mut fresh = TcpClient::connect(service.tcp()).expect("connect");
    assert_eq!(fresh.call(b"fresh").expect("fresh call"), b"fresh");
}

#[test]
fn requests_older_than_msg_timeout_get_the_exception_answer_and_are_counted() {
    stale_requests_end_as(faulty::PLUGIN, Outcome::Answer(BUSY_TIMEOUT));
}

#[test]
fn without_an_exception_hook_a_stale_request_closes_its_connection() {
    // The echo plugin has no exception hook; the workers still run the
    // faulty one (it can sleep).
    stale_requests_end_as("spp_echo", Outcome::Closed);
}

#[test]
fn msg_timeout_zero_turns_the_stale_check_off() {
    let bins = Binaries::locate();
    let mut cfg = ServiceConfig::single(&bins.plugin(faulty::PLUGIN), 1);
    cfg.group_mut().msg_timeout = Some("0s".into());
    let service = Service::start(&cfg);

    let hold = faulty::sleep(HOLD_MS / 4, "holder");
    let mut holder = hold_worker(&service, "worker-g1-0", &hold);
    let mut queued = TcpClient::connect(service.tcp()).expect("connect");
    queued.send(b"queued").expect("send");
    assert_eq!(holder.recv().expect("the holder's echo"), hold);
    assert_eq!(queued.recv().expect("the queued echo"), b"queued");
    let status = service.status();
    assert_eq!(worker_counter_sum(&status, "stale_dropped"), 0, "{status}");
    assert_eq!(proxy_counter(&status, "stale_failed"), 0, "{status}");
}

#[test]
fn a_worker_stuck_past_hang_timeout_is_killed_and_replaced() {
    let bins = Binaries::locate();
    let mut cfg = ServiceConfig::single(&bins.plugin(faulty::PLUGIN), 2);
    cfg.group_mut().hang_timeout = Some(HANG_TIMEOUT.into());
    let service = Service::start(&cfg);

    let stuck = faulty::sleep(STUCK_MS, "stuck");
    let mut victim = TcpClient::connect(service.tcp()).expect("victim connect");
    victim.send(&stuck).expect("victim send");
    let holder = wait_for(WAIT, || {
        ["worker-g1-0", "worker-g1-1"]
            .into_iter()
            .find(|w| worker_requests(&service, w) == 1)
    })
    .expect("one worker took the stuck request");
    let other = if holder == "worker-g1-0" {
        "worker-g1-1"
    } else {
        "worker-g1-0"
    };
    let holder_pid = service.pid_of(holder).expect("holder pid");
    let other_pid = service.pid_of(other).expect("other pid");

    // Clients of the group keep calling throughout (a call routed to the
    // stuck worker is answered "busy:died" when it is killed).
    let load = Load::echo(service.tcp(), 2);

    // Answered long before the plugin's 60 s: the read timeout is 10 s.
    assert_outcome(
        &mut victim,
        Outcome::Answer(BUSY_DIED),
        "the stuck request's client",
    );
    let new_pid = service
        .wait_replaced(holder, holder_pid, WAIT)
        .unwrap_or_else(|| panic!("{holder} not replaced\n{}", service.logs()));
    assert_ne!(new_pid, holder_pid);

    let status = service.status();
    let replaced = view::process(&status, holder).expect("holder in status");
    let last_exit = replaced.last_exit.clone().unwrap_or_default();
    assert!(
        last_exit.to_lowercase().contains("kill"),
        "last_exit names the kill: {replaced:?}"
    );
    assert!(replaced.restarts >= 1, "{replaced:?}");
    let untouched = view::process(&status, other).expect("other in status");
    assert_eq!(untouched.pid, Some(other_pid), "the other worker lives on");
    assert_eq!(untouched.restarts, 0, "{untouched:?}");

    assert!(
        load.progresses(50, WAIT),
        "the group serves on after the kill"
    );
    let report = load.finish();
    assert_eq!(report.errors, 0, "no client failed: {report:?}");
}
