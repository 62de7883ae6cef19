//! Failure handling: killed workers and proxies are replaced, their
//! clients are answered or closed at once, everyone else is unaffected.

use spp_tests::client::TcpClient;
use spp_tests::faulty::{is_busy, BUSY_DIED};
use spp_tests::{kill, wait_for, Binaries, Service, ServiceConfig};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const REPLACE_TIMEOUT: Duration = Duration::from_secs(30);

fn faulty_config(workers: u32) -> ServiceConfig {
    ServiceConfig::single(&Binaries::locate().plugin("spp_faulty"), workers)
}

/// Clients calling in a loop until told to stop; counts successes and
/// failures (a failure is anything but the echo or the plugin's "busy...").
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(service: &Service, clients: usize) -> Load {
        let (stop, ok, failed) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let addr = service.tcp();
        let threads = (0..clients)
            .map(|c| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                std::thread::spawn(move || {
                    let mut client = TcpClient::connect(addr).expect("load connect");
                    let mut i = 0u64;
                    // Bounded in count as well as by the stop flag.
                    while !stop.load(Ordering::Relaxed) && i < 1_000_000 {
                        let payload = format!("load {c} {i}");
                        match client.call(payload.as_bytes()) {
                            Ok(reply) if reply == payload.as_bytes() || is_busy(&reply) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            threads,
        }
    }

    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

fn worker_requests(service: &Service, name: &str) -> u64 {
    service.status()["worker_stats"][name]["requests"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn a_killed_worker_is_replaced_and_its_in_flight_client_answered_at_once() {
    let service = Service::start(&faulty_config(2));
    // A request that would hold its worker for a long time.
    let mut victim = TcpClient::connect(service.tcp()).expect("victim connect");
    victim.send(b"sleep:60000").expect("victim send");
    let holder = wait_for(Duration::from_secs(10), || {
        ["worker-g1-0", "worker-g1-1"]
            .into_iter()
            .find(|w| worker_requests(&service, w) == 1)
    })
    .expect("one worker took the sleeping request");
    let holder_pid = service.pid_of(holder).expect("holder pid");

    let load = Load::start(&service, 4);
    assert!(wait_for(Duration::from_secs(10), || (load
        .ok
        .load(Ordering::Relaxed)
        > 100)
        .then_some(()))
    .is_some());

    kill(holder_pid, libc::SIGKILL);
    // Answered ("busy:died" from the exception hook) or closed well before the
    // 60 s the plugin would have slept: the read timeout is 10 s.
    match victim.recv() {
        Ok(reply) => assert_eq!(reply, BUSY_DIED),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ),
            "the victim must be answered or closed, not left waiting: {e}"
        ),
    }

    let new_pid = service
        .wait_replaced(holder, holder_pid, REPLACE_TIMEOUT)
        .expect("worker replaced");
    assert_ne!(new_pid, holder_pid);
    let before = load.ok.load(Ordering::Relaxed);
    assert!(wait_for(Duration::from_secs(10), || (load
        .ok
        .load(Ordering::Relaxed)
        > before + 100)
        .then_some(()))
    .is_some());
    let (ok, failed) = load.finish();
    assert_eq!(
        failed, 0,
        "other connections must be unaffected ({ok} calls succeeded)"
    );
    assert!(service.process(holder)["restarts"].as_u64() >= Some(1));
    assert!(service.status()["proxy_stats"]["worker_died_failed"].as_u64() >= Some(1));
}

#[test]
fn a_killed_proxy_is_replaced_and_connections_opened_meanwhile_are_served() {
    let service = Service::start(&faulty_config(1));
    let addr = service.tcp();
    let proxy_pid = service.pid_of("proxy").expect("proxy pid");
    let mut before = TcpClient::connect(addr).expect("connect");
    assert_eq!(before.call(b"hello").expect("call"), b"hello");

    kill(proxy_pid, libc::SIGKILL);
    // Opened while no proxy runs: the controller's listener queues them.
    let mut during: Vec<TcpClient> = (0..5)
        .map(|_| TcpClient::connect(addr).expect("connect during restart"))
        .collect();
    for (i, c) in during.iter_mut().enumerate() {
        let payload = format!("during {i}");
        assert_eq!(
            c.call(payload.as_bytes()).expect("served by the new proxy"),
            payload.as_bytes()
        );
    }
    let new_pid = service
        .wait_replaced("proxy", proxy_pid, REPLACE_TIMEOUT)
        .expect("proxy replaced");
    assert_ne!(new_pid, proxy_pid);
    assert!(
        before.closed_by_server() || before.call(b"x").is_err(),
        "the old proxy's connections are gone"
    );
}

#[test]
fn a_panicking_plugin_closes_only_that_connection() {
    let service = Service::start(&faulty_config(1));
    let pid = service.pid_of("worker-g1-0").expect("worker pid");
    let mut good = TcpClient::connect(service.tcp()).expect("connect");
    let mut bad = TcpClient::connect(service.tcp()).expect("connect");
    bad.send(b"panic").expect("send");
    assert!(
        bad.closed_by_server(),
        "a panic closes the request's connection"
    );
    assert_eq!(good.call(b"still here").expect("call"), b"still here");
    assert_eq!(
        service.pid_of("worker-g1-0"),
        Some(pid),
        "the worker lives on"
    );
    assert_eq!(
        service.status()["worker_stats"]["worker-g1-0"]["plugin_panics"].as_u64(),
        Some(1)
    );
}

#[test]
fn a_crashing_plugin_takes_down_only_its_worker() {
    let service = Service::start(&faulty_config(2));
    let mut good = TcpClient::connect(service.tcp()).expect("connect");
    assert_eq!(good.call(b"one").expect("call"), b"one");
    let mut bad = TcpClient::connect(service.tcp()).expect("connect");
    bad.send(b"abort").expect("send");
    // Answered "busy" by the exception hook, or closed: both acceptable.
    if let Ok(reply) = bad.recv() {
        assert_eq!(reply, BUSY_DIED);
    }
    let started = Instant::now();
    let restarted = wait_for(REPLACE_TIMEOUT, || {
        let status = service.status();
        let procs = status["processes"].as_array()?.clone();
        let total: u64 = procs.iter().filter_map(|p| p["restarts"].as_u64()).sum();
        let all_ready = procs.iter().all(|p| p["state"] == "ready");
        (total >= 1 && all_ready).then_some(())
    });
    assert!(
        restarted.is_some(),
        "crashed worker not brought back within {:?}",
        started.elapsed()
    );
    assert_eq!(good.call(b"two").expect("call"), b"two");
}

#[test]
fn a_deferred_reply_from_another_thread_arrives() {
    let service = Service::start(&faulty_config(1));
    let mut client = TcpClient::connect(service.tcp()).expect("connect");
    assert_eq!(client.call(b"later:20").expect("deferred"), b"later:20");
    assert_eq!(client.call(b"now").expect("direct"), b"now");
}
