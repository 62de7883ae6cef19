//! Proxy shards (`proxy.processes = N`): every shard serves every listener
//! through its own `SO_REUSEPORT` socket, shows in `spp status` as its own
//! row, and is killed, restarted, reloaded around and stopped on its own
//! while the others serve; L5 registers each address once. The config
//! rule is checked by `spp check`.

use serde_json::Value;
use spp_tests::client::{TcpClient, UdpClient};
use spp_tests::faulty::sleep;
use spp_tests::load::Load;
use spp_tests::{kill, wait_for, Binaries, Service, ServiceConfig};
use std::net::TcpStream;
use std::time::Duration;

/// Proxy shards of the test services.
const SHARDS: u16 = 2;
/// Client connections (or UDP sockets) opened to spread over the shards:
/// the kernel hashes each peer address to a shard, so with 64 the chance
/// that one shard gets none is 2^-63.
const CLIENTS: usize = 64;
/// Bound on every wait for the service.
const WAIT: Duration = Duration::from_secs(20);
/// A killed shard must be back within this.
const BACK_QUICKLY: Duration = Duration::from_secs(5);
/// Calls a load must make to count as progressing.
const PROGRESS: u64 = 200;
/// Closed-loop load clients.
const LOAD_CLIENTS: usize = 16;
/// Requests in flight when the service is stopped (each sleeps
/// [`STOP_SLEEP_MS`] in one of two plain workers: well within the drain).
const STOP_CLIENTS: usize = 8;
/// How long each of them sleeps in the worker.
const STOP_SLEEP_MS: u64 = 100;

fn sharded(workers: u32) -> ServiceConfig {
    let mut cfg = ServiceConfig::single(&Binaries::locate().plugin("spp_faulty"), workers);
    cfg.proxy_extra.push(format!("processes = {SHARDS}"));
    cfg
}

fn shard_name(shard: u16) -> String {
    format!("proxy-{shard}")
}

/// Proxy shard `shard`'s counter `name` in a status.
fn shard_counter(status: &Value, shard: u16, name: &str) -> u64 {
    status["proxy_shard_stats"][shard_name(shard)][name]
        .as_u64()
        .unwrap_or(0)
}

/// Waits until every shard's `name` counter is above zero; panics with
/// the status otherwise.
fn wait_every_shard_counted(service: &Service, name: &str) -> Value {
    service
        .wait_status(WAIT, |s| {
            (0..SHARDS)
                .all(|shard| shard_counter(s, shard, name) > 0)
                .then(|| s.clone())
        })
        .unwrap_or_else(|| {
            panic!(
                "{name} never counted on every shard: {}\n{}",
                service.status(),
                service.logs()
            )
        })
}

#[test]
fn proxy_processes_out_of_range_or_unknown_are_refused_naming_file_key_and_reason() {
    let bins = Binaries::locate();
    for (value, reason) in [
        ("0", "out of range: must be 1..=64"),
        ("65", "out of range: must be 1..=64"),
        ("\"many\"", "is not a count 1..=64 or \"auto\""),
    ] {
        let mut cfg = ServiceConfig::single(&bins.plugin("spp_echo"), 1);
        cfg.proxy_extra.push(format!("processes = {value}"));
        let service = Service::create(&cfg);
        let out = service.spp(&["check"]);
        let said = out.text();
        assert!(!out.ok(), "processes = {value} was accepted: {said}");
        assert!(
            said.contains(&service.config.display().to_string()),
            "{said}"
        );
        assert!(said.contains("proxy.processes"), "{said}");
        assert!(said.contains(reason), "{said}");
    }
    let mut cfg = ServiceConfig::single(&bins.plugin("spp_echo"), 1);
    cfg.proxy_extra.push("processes = \"auto\"".into());
    let service = Service::create(&cfg);
    let out = service.spp(&["check"]);
    assert!(out.ok(), "\"auto\" is refused: {}", out.text());
}

#[test]
fn every_shard_accepts_on_the_shared_ports_and_has_its_own_status_row() {
    let mut cfg = sharded(1);
    cfg.listen.push("tcp://127.0.0.1:0".into());
    let service = Service::start(&cfg);
    let status = service.status();
    let names: Vec<&str> = status["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["role"] == "proxy")
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["proxy-0", "proxy-1"], "{status}");
    for shard in 0..SHARDS {
        let p = service.process(&shard_name(shard));
        assert_eq!(p["shard"].as_u64(), Some(u64::from(shard)), "{p}");
        assert_eq!(p["state"], "ready", "{p}");
    }
    assert_eq!(
        status["listeners"].as_array().map(Vec::len),
        Some(cfg.listen.len()),
        "one row per address, not per shard's socket: {status}"
    );
    for n in 0..2 {
        let addr = service.addr("tcp", n);
        // Each connection from its own port: the kernel spreads them.
        let conns: Vec<TcpStream> = (0..CLIENTS)
            .map(|_| TcpStream::connect(addr).expect("connect to the shared port"))
            .collect();
        drop(conns);
    }
    let status = wait_every_shard_counted(&service, "conns_accepted");
    let total: u64 = (0..SHARDS)
        .map(|s| shard_counter(&status, s, "conns_accepted"))
        .sum();
    let summed = status["proxy_stats"]["conns_accepted"].as_u64();
    assert!(
        summed >= Some(total),
        "the sum covers every shard: {status}"
    );
    let table = service.spp(&["status"]).text();
    assert!(
        table.contains("proxy-0") && table.contains("proxy-1"),
        "{table}"
    );
}

#[test]
fn two_shards_serve_tcp_and_udp_from_many_clients() {
    let service = Service::start(&sharded(2));
    let mut tcp: Vec<TcpClient> = (0..CLIENTS)
        .map(|_| TcpClient::connect(service.tcp()).expect("connect"))
        .collect();
    for (c, client) in tcp.iter_mut().enumerate() {
        for i in 0..3 {
            let payload = format!("tcp {c} {i}");
            assert_eq!(
                client.call(payload.as_bytes()).expect("tcp call"),
                payload.as_bytes(),
                "{}",
                service.logs()
            );
        }
    }
    let udp: Vec<UdpClient> = (0..CLIENTS)
        .map(|_| UdpClient::new(service.udp()).expect("udp socket"))
        .collect();
    for (c, client) in udp.iter().enumerate() {
        let payload = format!("udp {c}");
        assert_eq!(
            client.call(payload.as_bytes()).expect("udp call"),
            payload.as_bytes()
        );
    }
    let status = wait_every_shard_counted(&service, "conns_accepted");
    for shard in 0..SHARDS {
        // 3 TCP calls per accepted connection, and the datagrams.
        assert!(
            shard_counter(&status, shard, "requests")
                > 3 * shard_counter(&status, shard, "conns_accepted"),
            "shard {shard} served UDP too: {status}"
        );
    }
    assert_eq!(
        status["proxy_stats"]["requests"].as_u64(),
        Some(CLIENTS as u64 * 4),
        "every request counted once: {status}"
    );
}

#[test]
fn a_killed_shard_refuses_nothing_and_the_other_keeps_answering() {
    let service = Service::start(&sharded(2));
    let addr = service.tcp();
    let load = Load::echo(addr, LOAD_CLIENTS);
    assert!(load.progresses(PROGRESS, WAIT), "load runs");
    let victim = service.pid_of("proxy-1").expect("proxy-1 pid");
    let other = service.pid_of("proxy-0").expect("proxy-0 pid");
    kill(victim, libc::SIGKILL);
    // Connections opened while proxy-1 is gone: those hashed to its socket
    // wait in the backlog the controller keeps; none is refused.
    let mut during: Vec<TcpClient> = (0..CLIENTS)
        .map(|_| TcpClient::connect(addr).expect("no connection refused"))
        .collect();
    assert!(
        load.progresses(PROGRESS, WAIT),
        "the other shard's clients keep being answered"
    );
    let back = service.wait_replaced("proxy-1", victim, BACK_QUICKLY);
    assert!(back.is_some(), "proxy-1 back quickly: {}", service.logs());
    for (i, c) in during.iter_mut().enumerate() {
        let payload = format!("during {i}");
        assert_eq!(
            c.call(payload.as_bytes())
                .expect("served once the shard is back"),
            payload.as_bytes()
        );
    }
    assert_eq!(service.pid_of("proxy-0"), Some(other), "proxy-0 untouched");
    let report = load.finish();
    // Only the killed shard's clients lost their connection.
    assert!(
        report.errors < LOAD_CLIENTS as u64 && report.busy == 0,
        "{report:?}"
    );
    assert_eq!(
        service.process("proxy-1")["restarts"].as_u64(),
        Some(1),
        "restarted once"
    );
}

#[test]
fn reload_and_stop_with_two_shards_lose_no_request() {
    let mut cfg = sharded(2);
    let mut service = Service::start(&cfg);
    let load = Load::echo(service.tcp(), LOAD_CLIENTS);
    assert!(load.progresses(PROGRESS, WAIT), "load runs");
    cfg.group_mut().plugin_conf = "second edition".into();
    service.write_config(&cfg);
    let out = service.reload();
    assert!(out.ok(), "reload: {}\n{}", out.text(), service.logs());
    assert!(
        load.progresses(PROGRESS, WAIT),
        "load runs after the reload"
    );
    let report = load.finish();
    assert!(
        report.clean(),
        "no client error during the reload: {report:?}"
    );

    // Requests in flight when the stop comes are answered before the
    // shards close their connections.
    let mut clients: Vec<TcpClient> = (0..STOP_CLIENTS)
        .map(|_| TcpClient::connect(service.tcp()).expect("connect"))
        .collect();
    let request = |i: usize| sleep(STOP_SLEEP_MS, &format!("stop {i}"));
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(&request(i)).expect("send");
    }
    let accepted = wait_for(WAIT, || {
        let s = service.try_status().ok()?;
        let n: u64 = (0..SHARDS)
            .map(|shard| shard_counter(&s, shard, "requests"))
            .sum();
        (n >= report.ok + STOP_CLIENTS as u64).then_some(())
    });
    assert!(accepted.is_some(), "the sleeps reached the shards");
    let out = service.stop();
    assert!(out.ok(), "stop: {}", out.text());
    for (i, c) in clients.iter_mut().enumerate() {
        let reply = c.recv().expect("answered before the stop closed it");
        assert_eq!(reply, request(i));
    }
}

#[test]
fn l5_registers_each_address_once_whatever_the_shards() {
    /// A sid no other test registers.
    const SID: (u32, u32) = (64091, 3);
    let registry = tempfile::tempdir().expect("registry dir");
    let l5 = spp_tests::L5Config {
        registry_dir: Some(registry.path().to_path_buf()),
        ..spp_tests::l5::test_l5("embedded", Some(SID))
    };
    let mut cfg = spp_tests::l5::echo_config("sharded-l5", l5);
    cfg.proxy_extra.push(format!("processes = {SHARDS}"));
    let service = Service::start(&cfg);
    let addr = service.tcp();
    spp_tests::l5::wait_registered(&service, SID, addr);
    let status = service.status();
    let instances = &spp_tests::l5::status_l5(&status)["instances"];
    assert_eq!(
        instances.as_array().map(Vec::len),
        Some(1),
        "one instance for one address: {instances}"
    );
    let nodes = wait_for(WAIT, || {
        spp_tests::l5::get(&service, SID)
            .ok()
            .filter(|n| !n.is_empty())
    })
    .expect("the sid is in the table");
    assert_eq!(nodes.len(), 1, "{nodes:?}");
}
