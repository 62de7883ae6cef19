//! The examples that call other services, end to end: `examples/relay`,
//! `examples/fanout` and `examples/relay-c`, each in a micro-thread group,
//! against backends in this test (`spp_tests::backend`: threads on
//! 127.0.0.1 speaking the echo framing and answering `<name>:<payload>`).
//!
//! Relay: answers come through, one worker carries many slow calls at
//! once, a dead backend gives `relay-error:-1` and a silent one
//! `relay-error:-9999`. Fan-out: both legs merged, one leg down shows
//! `err:refused`, `wait_for=1` answers with the first leg, legs given as
//! L5 sids are routed by the host. Relay-c: an answer comes through, a
//! dead backend gives `relay-error:refused`. In a plain group, each says
//! at once that calls are unsupported there.

use spp_tests::backend::{refused_addr, Behaviour, TcpBackend};
use spp_tests::client::TcpClient;
use spp_tests::{l5, wait_for, Binaries, L5Config, Service, ServiceConfig};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Bound on waits for a counter to show.
const COUNTER_TIMEOUT: Duration = Duration::from_secs(10);

/// A backend answering `<name>:<payload>` after `delay`.
fn named(name: &'static str, delay: Duration) -> TcpBackend {
    TcpBackend::start(Behaviour::Named { name, delay })
}

/// A backend answering `<name>:<payload>` at once.
fn answering(name: &'static str) -> TcpBackend {
    named(name, Duration::ZERO)
}

/// One micro-thread worker of `plugin` with `conf`, one TCP listener.
fn config(plugin: &str, conf: String) -> ServiceConfig {
    config_in(plugin, conf, "microthread")
}

/// One worker of `plugin` with `conf` in group mode `mode`, one TCP
/// listener.
fn config_in(plugin: &str, conf: String, mode: &str) -> ServiceConfig {
    let mut cfg = ServiceConfig::single(&Binaries::locate().plugin(plugin), 1);
    cfg.listen = vec!["tcp://127.0.0.1:0".into()];
    let group = cfg.group_mut();
    group.plugin_conf = conf;
    group.extra.push(format!("mode = {mode:?}"));
    cfg
}

/// Waits until the group's plugin counter `name` reaches `want`; its last
/// value.
fn plugin_counter(service: &Service, name: &str, want: u64) -> u64 {
    let mut last = 0;
    let _ = wait_for(COUNTER_TIMEOUT, || {
        let report = service.stat_json().ok()?;
        let group = report["groups"].as_array()?.first()?.clone();
        last = group["plugin"]["counters"][name]["total"].as_u64()?;
        (last >= want).then_some(())
    });
    last
}

/// One call on a fresh connection; the answer's text.
fn call(service: &Service, payload: &str) -> String {
    let mut client = TcpClient::connect(service.tcp()).expect("connect");
    let answer = client.call(payload.as_bytes()).expect("answer");
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn the_relay_carries_many_slow_calls_at_once_on_one_worker() {
    const CLIENTS: usize = 100;
    // The backend holds every answer this long: long enough for the gauge
    // to be read while all calls wait on it.
    const DELAY: Duration = Duration::from_secs(3);
    let backend = named("be", DELAY);
    let conf = format!("addr={} timeout_ms=5000", backend.addr());
    let service = Service::start(&config("spp_relay", conf));
    assert_eq!(call(&service, "hello"), "be:hello");

    let mut clients: Vec<TcpClient> = (0..CLIENTS)
        .map(|_| TcpClient::connect(service.tcp()).expect("connect"))
        .collect();
    let started = Instant::now();
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(format!("req {i}").as_bytes()).expect("send");
    }
    // All of them suspended in the one worker at once: a worker that
    // blocked on each call would hold one.
    service.wait_in_flight(CLIENTS as u64, COUNTER_TIMEOUT);
    for (i, client) in clients.iter_mut().enumerate() {
        let answer = client.recv().expect("answer");
        assert_eq!(answer, format!("be:req {i}").as_bytes(), "client {i}");
    }
    let took = started.elapsed();
    eprintln!("{CLIENTS} relayed calls of {DELAY:?} each, one worker: {took:?}");
    let want = CLIENTS as u64 + 1;
    assert_eq!(plugin_counter(&service, "relay_ok", want), want);
}

#[test]
fn the_relay_answers_error_frames_for_a_dead_or_silent_backend() {
    let conf = format!("addr={} timeout_ms=2000", refused_addr());
    let service = Service::start(&config("spp_relay", conf));
    for i in 0..3 {
        assert_eq!(call(&service, &format!("q{i}")), "relay-error:-1");
    }
    assert_eq!(plugin_counter(&service, "relay_error", 3), 3);
    assert_eq!(plugin_counter(&service, "relay_call_failed", 3), 3);

    let silent = TcpBackend::start(Behaviour::Silent);
    let conf = format!("addr={} timeout_ms=200", silent.addr());
    let service = Service::start(&config("spp_relay", conf));
    let started = Instant::now();
    assert_eq!(call(&service, "q"), "relay-error:-9999");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn fanout_merges_both_legs_and_shows_a_failed_one() {
    let (a, b) = (answering("a"), answering("b"));
    let conf = format!("a={} b={} timeout_ms=2000", a.addr(), b.addr());
    let service = Service::start(&config("spp_fanout", conf));
    assert_eq!(call(&service, "hi"), "a=a:hi;b=b:hi");
    assert_eq!(plugin_counter(&service, "fanout_full", 1), 1);

    // Leg b's backend is down: a's answer still comes, b shows why.
    let conf = format!("a={} b={} timeout_ms=2000", a.addr(), refused_addr());
    let service = Service::start(&config("spp_fanout", conf));
    assert_eq!(call(&service, "hi"), "a=a:hi;b=err:refused");
    assert_eq!(plugin_counter(&service, "fanout_partial", 1), 1);
}

#[test]
fn fanout_with_wait_for_one_answers_with_the_first_leg() {
    const SLOW: Duration = Duration::from_millis(1500);
    let fast = answering("fast");
    let slow = named("slow", SLOW);
    let conf = format!(
        "a={} b={} timeout_ms=5000 wait_for=1",
        fast.addr(),
        slow.addr()
    );
    let service = Service::start(&config("spp_fanout", conf));
    let started = Instant::now();
    assert_eq!(call(&service, "x"), "a=fast:x;b=err:cancelled");
    let took = started.elapsed();
    assert!(took < SLOW, "did not wait for the slow leg: {took:?}");
}

#[test]
fn the_c_relay_answers_through_a_backend_or_with_an_error_frame() {
    let backend = answering("be");
    let conf = format!("addr={} timeout_ms=2000", backend.addr());
    let service = Service::start(&config("spp_relay_c", conf));
    for i in 0..5 {
        assert_eq!(call(&service, &format!("c{i}")), format!("be:c{i}"));
    }

    let conf = format!("addr={} timeout_ms=2000", refused_addr());
    let service = Service::start(&config("spp_relay_c", conf));
    assert_eq!(call(&service, "c"), "relay-error:refused");
}

#[test]
fn in_a_plain_group_the_examples_answer_unsupported_at_once() {
    let backend = answering("be");
    let cases = [
        (
            "spp_relay",
            format!("addr={}", backend.addr()),
            "relay-error:-1",
        ),
        (
            "spp_relay_c",
            format!("addr={}", backend.addr()),
            "relay-error:unsupported",
        ),
        (
            "spp_fanout",
            format!("a={0} b={0}", backend.addr()),
            "a=err:unsupported;b=err:unsupported",
        ),
    ];
    for (plugin, conf, want) in cases {
        let service = Service::start(&config_in(plugin, conf, "plain"));
        let started = Instant::now();
        assert_eq!(call(&service, "q"), want, "{plugin}");
        assert!(started.elapsed() < Duration::from_secs(1), "{plugin}");
    }
}

#[test]
fn fanout_legs_given_as_sids_are_routed_by_l5() {
    const SID_A: (u32, u32) = (64101, 1);
    const SID_B: (u32, u32) = (64102, 1);
    let (a, b) = (answering("a"), answering("b"));
    let registry = tempfile::tempdir().expect("registry dir");
    let routes = registry.path().join("static.routes");
    let line =
        |(m, c): (u32, u32), addr: SocketAddr| format!("{m} {c} {} {}\n", addr.ip(), addr.port());
    std::fs::write(&routes, line(SID_A, a.addr()) + &line(SID_B, b.addr())).expect("routes file");
    let conf = format!(
        "a={}:{} b={}:{} timeout_ms=2000",
        SID_A.0, SID_A.1, SID_B.0, SID_B.1
    );
    let mut cfg = config("spp_fanout", conf);
    cfg.l5 = Some(L5Config {
        backend: Some("embedded".into()),
        registry_dir: Some(registry.path().to_path_buf()),
        routes_file: Some(routes),
        ..L5Config::default()
    });
    let service = Service::start(&cfg);
    for sid in [SID_A, SID_B] {
        l5::wait_view(
            &service,
            sid,
            "the static route should be listed",
            |nodes| nodes.len() == 1,
        );
    }
    assert_eq!(call(&service, "hi"), "a=a:hi;b=b:hi");
}
