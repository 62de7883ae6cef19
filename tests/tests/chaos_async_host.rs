//! Async mode's host side end to end with the C example
//! (`examples/defer-c`): `spp_process` defers each request and a thread of
//! the plugin answers it later (`reply`, then `complete`). Pipelined
//! answers keep their order and many connections are served at once;
//! `max_in_flight` bounds what a worker holds; a request never completed
//! expires after `task_timeout` + `SPP_TASK_GRACE_MS`, closing its own
//! connection only; a stop answers the deferred requests in flight. The
//! same plugin driven through `spp_poll` (`driven=1`) completes on the
//! worker's thread; `spp check` warns about it in a group that is not
//! async.

use spp_tests::client::TcpClient;
use spp_tests::view::worker_counter_sum;
use spp_tests::{Binaries, Service, ServiceConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The C plugin.
const PLUGIN: &str = "spp_defer_c";
/// A payload starting with this is deferred and never completed.
const NEVER: &str = "NEVER";
/// `SPP_TASK_GRACE_MS` of spp_plugin.h.
const GRACE: Duration = Duration::from_millis(1000);

/// An async group of one worker answering after `delay_ms` from the
/// plugin's thread.
fn config(delay_ms: u64, max_in_flight: u32, task_timeout: &str) -> ServiceConfig {
    config_with(delay_ms, max_in_flight, task_timeout, "")
}

/// [`config`] with more `plugin_conf` items (`,driven=1`).
fn config_with(
    delay_ms: u64,
    max_in_flight: u32,
    task_timeout: &str,
    more_conf: &str,
) -> ServiceConfig {
    let plugin = Binaries::locate().plugin(PLUGIN);
    let mut cfg = ServiceConfig::single(&plugin, 1);
    let group = cfg.group_mut();
    group.plugin_conf = format!("delay_ms={delay_ms},never_complete_prefix={NEVER}{more_conf}");
    group.extra.push("mode = \"async\"".into());
    group.extra.push(format!("max_in_flight = {max_in_flight}"));
    group.extra.push(format!("task_timeout = {task_timeout:?}"));
    cfg
}

/// `n` connected clients.
fn clients(service: &Service, n: usize) -> Vec<TcpClient> {
    (0..n)
        .map(|_| TcpClient::connect(service.tcp()).expect("connect"))
        .collect()
}

/// Sends `tag i` on client `i`, then reads every answer; returns the wall
/// time from the first send to the last answer.
fn round(clients: &mut [TcpClient], tag: &str) -> Duration {
    let started = Instant::now();
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(format!("{tag} {i}").as_bytes()).expect("send");
    }
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(
            client.recv().expect("answer"),
            format!("{tag} {i}").as_bytes(),
            "client {i}"
        );
    }
    started.elapsed()
}

/// A worker counter summed over the workers, read live from the status.
fn worker_counter(service: &Service, name: &str) -> u64 {
    worker_counter_sum(&service.status(), name)
}

#[test]
fn deferred_answers_keep_pipelined_order_and_run_concurrently() {
    const DELAY_MS: u64 = 100;
    const CLIENTS: usize = 40;
    let service = Service::start(&config(DELAY_MS, 1000, "5s"));
    // Pipelined on one connection: run one at a time, answered in order.
    let mut one = TcpClient::connect(service.tcp()).expect("connect");
    for i in 0..20 {
        one.send(format!("pipelined {i}").as_bytes()).expect("send");
    }
    for i in 0..20 {
        assert_eq!(
            one.recv().expect("answer"),
            format!("pipelined {i}").as_bytes()
        );
    }
    // Many connections at once: deferred together, answered together.
    let mut all = clients(&service, CLIENTS);
    let took = round(&mut all, "many");
    assert!(took >= Duration::from_millis(DELAY_MS), "{took:?}");
    // One at a time would take CLIENTS x DELAY_MS = 4 s.
    assert!(took < Duration::from_millis(2500), "{took:?}");
    assert_eq!(worker_counter(&service, "tasks_expired"), 0);
}

#[test]
fn max_in_flight_bounds_the_deferred_requests_a_worker_holds() {
    const DELAY_MS: u64 = 300;
    const MAX: u32 = 4;
    const CLIENTS: usize = 24;
    let service = Service::start(&config(DELAY_MS, MAX, "5s"));
    let mut all = clients(&service, CLIENTS);
    let mut highest = 0;
    let done = AtomicBool::new(false);
    let took = std::thread::scope(|scope| {
        let clients = scope.spawn(|| {
            let took = round(&mut all, "bounded");
            done.store(true, Ordering::Relaxed);
            took
        });
        // Bounded in count, and ends with the round.
        for _ in 0..2000 {
            if done.load(Ordering::Relaxed) {
                break;
            }
            if let Ok(status) = service.try_status() {
                highest = highest.max(worker_counter_sum(&status, "in_flight"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        clients.join().expect("clients")
    });
    // CLIENTS / MAX rounds of DELAY_MS, one after the other.
    let rounds = (CLIENTS as u64).div_ceil(u64::from(MAX));
    assert!(
        took >= Duration::from_millis(DELAY_MS * (rounds - 1)),
        "{took:?}: max_in_flight did not bound the worker"
    );
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert!(highest <= u64::from(MAX), "in_flight read {highest}");
    assert!(highest > 0, "the watcher never saw a request held");
}

#[test]
fn a_never_completed_request_expires_and_closes_only_its_connection() {
    const TASK_TIMEOUT: Duration = Duration::from_millis(300);
    let service = Service::start(&config(10, 100, "300ms"));
    let mut stuck = TcpClient::connect(service.tcp()).expect("connect");
    let mut other = TcpClient::connect(service.tcp()).expect("connect");
    let started = Instant::now();
    stuck
        .send(format!("{NEVER} and forgotten").as_bytes())
        .expect("send");
    // The other connection is served meanwhile, and after.
    for i in 0..10 {
        assert_eq!(
            other.call(format!("other {i}").as_bytes()).expect("answer"),
            format!("other {i}").as_bytes()
        );
    }
    assert!(
        stuck.closed_by_server(),
        "the stuck connection was not closed"
    );
    let took = started.elapsed();
    assert!(took >= TASK_TIMEOUT + GRACE, "{took:?}: expired too early");
    assert!(took < Duration::from_secs(5), "{took:?}: expired too late");
    let expired = service.wait_status(Duration::from_secs(5), |s| {
        let n = worker_counter_sum(s, "tasks_expired");
        (n > 0).then_some(n)
    });
    assert_eq!(expired, Some(1), "tasks_expired\n{}", service.logs());
    assert_eq!(other.call(b"still here").expect("answer"), b"still here");
    assert_eq!(worker_counter(&service, "in_flight"), 0);
}

#[test]
fn a_stop_answers_the_deferred_requests_in_flight() {
    const DELAY_MS: u64 = 1500;
    const CLIENTS: usize = 10;
    let mut service = Service::start(&config(DELAY_MS, 100, "5s"));
    let mut held = clients(&service, CLIENTS);
    for (i, client) in held.iter_mut().enumerate() {
        client.send(format!("drain {i}").as_bytes()).expect("send");
    }
    let all_held = service.wait_status(Duration::from_secs(5), |s| {
        (worker_counter_sum(s, "in_flight") == CLIENTS as u64).then_some(())
    });
    assert!(all_held.is_some(), "never held\n{}", service.logs());
    let stop_started = Instant::now();
    let out = service.stop();
    assert!(out.ok(), "spp stop: {}", out.text());
    for (i, client) in held.iter_mut().enumerate() {
        assert_eq!(
            client.recv().expect("answered before the stop"),
            format!("drain {i}").as_bytes()
        );
    }
    // Within stop_grace (5 s in tests).
    assert!(stop_started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_driven_plugin_completes_inside_spp_poll() {
    const DELAY_MS: u64 = 100;
    const CLIENTS: usize = 40;
    let service = Service::start(&config_with(DELAY_MS, 1000, "300ms", ",driven=1"));
    let mut one = TcpClient::connect(service.tcp()).expect("connect");
    for i in 0..10 {
        one.send(format!("pipelined {i}").as_bytes()).expect("send");
    }
    for i in 0..10 {
        assert_eq!(
            one.recv().expect("answer"),
            format!("pipelined {i}").as_bytes()
        );
    }
    let mut all = clients(&service, CLIENTS);
    let took = round(&mut all, "driven");
    assert!(took >= Duration::from_millis(DELAY_MS), "{took:?}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
    // Expiry works the same when the plugin drives completions.
    let mut stuck = TcpClient::connect(service.tcp()).expect("connect");
    stuck.send(NEVER.as_bytes()).expect("send");
    assert!(
        stuck.closed_by_server(),
        "the stuck connection was not closed"
    );
    assert_eq!(one.call(b"after").expect("answer"), b"after");
}

#[test]
fn spp_check_warns_about_spp_poll_outside_an_async_group() {
    let mut plain = config(10, 1, "5s");
    plain.group_mut().extra.clear();
    let out = Service::create(&plain).spp(&["check"]);
    let text = out.text();
    assert!(out.ok(), "a warning is no refusal: {text}");
    assert!(text.contains("spp: warning:"), "{text}");
    assert!(text.contains("exports spp_poll"), "{text}");
    assert!(text.contains("one at a time"), "{text}");

    let out = Service::create(&config(10, 1, "5s")).spp(&["check"]);
    assert!(out.ok(), "{}", out.text());
    assert!(!out.text().contains("spp_poll"), "{}", out.text());
}
