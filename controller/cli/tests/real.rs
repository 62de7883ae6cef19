//! The controller with the real `spp-proxy` and `spp-worker` (build the
//! workspace first: `cargo build --workspace`): a reload replaces every
//! worker while a client keeps its connection and gets every answer, and a
//! worker stuck inside `spp_process` (the faulty plugin's `sleep:<ms>`) is
//! killed after `hang_timeout` and replaced.

mod common;

use common::{all_ready, call, pid_gone, process, text, wait_for, worker_pids, Service};

/// A service of the real binaries (no extra sections).
fn real_service(plugin: &str, workers: u32, extra_group: &str) -> Service {
    common::real_service(plugin, workers, "", extra_group)
}
use serde_json::Value;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn start(svc: &Service) -> Value {
    let out = svc.spp(&["start", "--wait", "30s"]);
    assert!(out.status.success(), "start failed: {}", text(&out));
    svc.status().expect("status after start")
}

fn tcp_addr(status: &Value) -> String {
    status["listeners"][0]["addr"].as_str().unwrap().to_string()
}

#[test]
fn reload_replaces_every_real_worker_and_the_client_is_served_throughout() {
    let svc = real_service("spp_echo", 2, "max_workers = 2");
    let before = start(&svc);
    let old = worker_pids(&before);
    let mut conn = TcpStream::connect(tcp_addr(&before)).unwrap();
    conn.set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(call(&mut conn, b"before").unwrap(), b"before");

    // A refused reload (a new listener needs a restart) changes nothing.
    let good = std::fs::read_to_string(&svc.config).unwrap();
    svc.edit(
        "\"tcp://127.0.0.1:0\",",
        "\"tcp://127.0.0.1:0\", \"tcp://127.0.0.1:0\",",
    );
    let out = svc.spp(&["reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("proxy.listen"), "{}", text(&out));
    std::fs::write(&svc.config, good).unwrap();
    assert_eq!(worker_pids(&svc.status().unwrap()), old);
    assert_eq!(call(&mut conn, b"still").unwrap(), b"still");

    // The client keeps calling on its connection from another thread
    // until the reload is over.
    let client = conn.try_clone().unwrap();
    let (done, calls) = common::keep_calling(client);
    let out = svc.spp(&["reload"]);
    done.store(true, Ordering::Relaxed);
    assert!(out.status.success(), "{}", text(&out));
    let answered = calls.join().unwrap().expect("every call answered");
    assert!(answered > 0);

    let status = svc.status().expect("status");
    assert!(all_ready(&status), "{status:#}");
    assert_eq!(status["config_generation"], 1);
    let new = worker_pids(&status);
    assert_eq!(new.len(), 2);
    assert!(new.iter().all(|p| !old.contains(p)), "{old:?} -> {new:?}");
    for pid in old {
        wait_for("an old worker to exit", WAIT, || {
            pid_gone(pid).then_some(())
        });
    }
    assert_eq!(call(&mut conn, b"after").unwrap(), b"after");
    assert_eq!(status["proxy_stats"]["worker_died_failed"], 0, "{status:#}");
}

#[test]
fn a_real_worker_stuck_in_process_is_killed_after_hang_timeout() {
    let svc = real_service("spp_faulty", 1, "hang_timeout = \"1s\"");
    let status = start(&svc);
    let stuck = process(&status, "worker-g1-0").unwrap()["pid"]
        .as_u64()
        .unwrap();
    let mut conn = TcpStream::connect(tcp_addr(&status)).unwrap();
    conn.set_read_timeout(Some(WAIT)).unwrap();
    // Sleeps a minute inside spp_process: killed after about a second;
    // the request fails at once (exception answer or close).
    let answer = call(&mut conn, b"sleep:60000");
    assert!(
        !matches!(&answer, Ok(a) if a == b"sleep:60000"),
        "{answer:?}"
    );
    let status = wait_for("the stuck worker to be replaced", WAIT, || {
        let s = svc.status()?;
        let p = process(&s, "worker-g1-0")?;
        (p["restarts"] == 1 && p["state"] == "ready").then_some(s)
    });
    assert!(pid_gone(stuck));
    let last = process(&status, "worker-g1-0").unwrap()["last_exit"].clone();
    let last = last.as_str().unwrap_or_default();
    assert!(last.starts_with("stuck in spp_process for "), "{last}");
    assert!(
        last.contains("(hang_timeout 1 s): killed by signal 9"),
        "{last}"
    );
    let log = svc.read("log/controller.log");
    assert!(log.contains("worker g1/0 stuck in spp_process"), "{log}");
    // The replacement serves.
    let mut conn = TcpStream::connect(tcp_addr(&status)).unwrap();
    conn.set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(call(&mut conn, b"hello").unwrap(), b"hello");
}
