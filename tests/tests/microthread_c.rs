//! Micro-thread mode end to end with the C example (`examples/sleep-echo-c`):
//! one worker carries many sleeping requests of a plain straight-line C
//! plugin at once, and in a plain group the same plugin's `sleep` is
//! unsupported at once.

use spp_tests::client::TcpClient;
use spp_tests::{Binaries, Service, ServiceConfig};
use std::time::{Duration, Instant};

/// The C plugin.
const PLUGIN: &str = "spp_sleep_echo_c";
/// The sleep before each answer.
const SLEEP_MS: u64 = 100;
/// Concurrent clients, one request each.
const CLIENTS: usize = 100;

fn config(mode: &str) -> ServiceConfig {
    let plugin = Binaries::locate().plugin(PLUGIN);
    let mut cfg = ServiceConfig::single(&plugin, 1);
    let group = cfg.group_mut();
    group.plugin_conf = format!("sleep_ms={SLEEP_MS}");
    group.extra.push(format!("mode = {mode:?}"));
    cfg
}

#[test]
fn one_worker_serves_many_sleeping_c_requests_at_once() {
    let service = Service::start(&config("microthread"));
    let mut clients: Vec<TcpClient> = (0..CLIENTS)
        .map(|_| TcpClient::connect(service.tcp()).expect("connect"))
        .collect();
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
    let took = started.elapsed();
    // A blocking worker would take CLIENTS x SLEEP_MS = 10 s.
    assert!(took >= Duration::from_millis(SLEEP_MS), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn c_sleep_in_a_plain_group_is_unsupported_at_once() {
    let service = Service::start(&config("plain"));
    let mut client = TcpClient::connect(service.tcp()).expect("connect");
    let started = Instant::now();
    assert_eq!(client.call(b"hello").expect("answer"), b"unsupported");
    assert!(started.elapsed() < Duration::from_millis(SLEEP_MS * 10));
}
