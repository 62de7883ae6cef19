//! Micro-thread mode end to end with the sleep-echo example: one worker
//! carries many sleeping requests at once, `max_in_flight` holds the rest
//! in the ring, a plain group's `sleep` is unsupported, a client gone
//! while its request sleeps leaves nothing behind, and a stop drains the
//! sleeping requests.

use spp_tests::client::TcpClient;
use spp_tests::{wait_for, Binaries, Service, ServiceConfig};
use std::time::{Duration, Instant};

/// The sleep before each answer.
const SLEEP_MS: u64 = 100;
/// Concurrent clients.
const CLIENTS: usize = 200;

fn config(mode: &str, max_in_flight: Option<u32>) -> ServiceConfig {
    let plugin = Binaries::locate().plugin("spp_sleep_echo");
    let mut cfg = ServiceConfig::single(&plugin, 1);
    let group = cfg.group_mut();
    group.plugin_conf = format!("sleep_ms={SLEEP_MS}");
    group.extra.push(format!("mode = {mode:?}"));
    if let Some(max) = max_in_flight {
        group.extra.push(format!("max_in_flight = {max}"));
    }
    cfg
}

/// `n` connected clients.
fn clients(service: &Service, n: usize) -> Vec<TcpClient> {
    (0..n)
        .map(|_| TcpClient::connect(service.tcp()).expect("connect"))
        .collect()
}

/// Sends one request on each client, then reads every answer; returns the
/// wall time from the first send to the last answer.
fn round(clients: &mut [TcpClient]) -> Duration {
    let started = Instant::now();
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(format!("req {i}").as_bytes()).expect("send");
    }
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(
            client.recv().expect("answer"),
            format!("req {i}").as_bytes(),
            "client {i}"
        );
    }
    started.elapsed()
}

#[test]
fn one_worker_serves_many_sleeping_requests_at_once() {
    let service = Service::start(&config("microthread", None));
    let mut all = clients(&service, CLIENTS);
    let took = round(&mut all);
    // A blocking worker would take CLIENTS x SLEEP_MS = 20 s.
    assert!(took >= Duration::from_millis(SLEEP_MS), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    // Pipelined requests of one connection come back in order.
    let mut one = TcpClient::connect(service.tcp()).expect("connect");
    for i in 0..5 {
        one.send(format!("pipelined {i}").as_bytes()).expect("send");
    }
    for i in 0..5 {
        assert_eq!(
            one.recv().expect("answer"),
            format!("pipelined {i}").as_bytes()
        );
    }
}

#[test]
fn max_in_flight_holds_the_rest_in_the_ring_then_drops_and_stops_cleanly() {
    const MAX: u32 = 50;
    let mut service = Service::start(&config("microthread", Some(MAX)));
    let mut all = clients(&service, CLIENTS);
    let took = round(&mut all);
    // CLIENTS / MAX rounds of SLEEP_MS each, one after the other.
    let rounds = (CLIENTS as u64).div_ceil(u64::from(MAX));
    assert!(
        took >= Duration::from_millis(SLEEP_MS * (rounds - 1)),
        "{took:?}: max_in_flight did not bound the worker"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");

    // Clients that leave while their request sleeps: the worker finishes
    // them, drops the replies, and holds nothing afterwards.
    let pid = service.pid_of("worker-g1-0");
    for mut client in clients(&service, 20) {
        client.send(b"gone").expect("send");
    }
    service.wait_in_flight(0, Duration::from_secs(10));
    assert_eq!(service.pid_of("worker-g1-0"), pid, "the worker lived on");
    let mut again = TcpClient::connect(service.tcp()).expect("connect");
    assert_eq!(again.call(b"after").expect("answer"), b"after");

    // A stop while requests sleep: they are answered before the worker
    // goes (stop_grace is far longer than the sleep).
    let mut sleeping = clients(&service, 20);
    for (i, client) in sleeping.iter_mut().enumerate() {
        client.send(format!("drain {i}").as_bytes()).expect("send");
    }
    let stop_started = Instant::now();
    let out = service.stop();
    assert!(out.ok(), "spp stop: {}", out.text());
    for (i, client) in sleeping.iter_mut().enumerate() {
        assert_eq!(
            client.recv().expect("answered before the stop"),
            format!("drain {i}").as_bytes()
        );
    }
    // Within stop_grace (5 s in tests).
    assert!(stop_started.elapsed() < Duration::from_secs(5));
}

#[test]
fn sleep_in_a_plain_group_is_unsupported_at_once() {
    let service = Service::start(&config("plain", None));
    let mut client = TcpClient::connect(service.tcp()).expect("connect");
    let started = Instant::now();
    assert_eq!(client.call(b"hello").expect("answer"), b"unsupported");
    assert!(started.elapsed() < Duration::from_millis(SLEEP_MS * 10));
}

#[test]
fn a_panic_inside_a_micro_thread_closes_only_its_connection() {
    let plugin = Binaries::locate().plugin(spp_tests::faulty::PLUGIN);
    let mut cfg = ServiceConfig::single(&plugin, 1);
    cfg.group_mut().extra.push("mode = \"microthread\"".into());
    let service = Service::start(&cfg);
    let pid = service.pid_of("worker-g1-0");
    let mut bystander = TcpClient::connect(service.tcp()).expect("connect");
    assert_eq!(bystander.call(b"before").expect("echo"), b"before");
    let mut victim = TcpClient::connect(service.tcp()).expect("connect");
    victim.send(b"panic").expect("send");
    assert!(
        victim.closed_by_server(),
        "the panicking request's connection closes"
    );
    // The micro-thread finished normally: the worker serves on, stacks and
    // all, and counts the panic.
    for i in 0..50 {
        let payload = format!("after {i}");
        assert_eq!(
            bystander.call(payload.as_bytes()).expect("echo"),
            payload.as_bytes()
        );
    }
    assert_eq!(service.pid_of("worker-g1-0"), pid, "the worker lived on");
    let counted = wait_for(Duration::from_secs(10), || {
        let report = service.stat_json().ok()?;
        let group = report["groups"].as_array()?.first()?.clone();
        (group["counters"]["plugin_panics"]["total"].as_u64()? >= 1).then_some(())
    });
    assert!(counted.is_some(), "plugin_panics not counted");
}
