//! The controller supervising shell-script stand-ins for the proxy and the
//! workers: start, status, restarts, crash loops, stop, failures.

mod common;

use common::{
    all_ready, launch_fds, launch_of, open_fds, pid_gone, pid_of, process, text, wait_for, Service,
};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn start(svc: &Service) -> serde_json::Value {
    let out = svc.spp(&["start", "--wait", "20s"]);
    assert!(out.status.success(), "start failed: {}", text(&out));
    assert!(
        text(&out).contains("spp: service t is running"),
        "{}",
        text(&out)
    );
    let status = svc.status().expect("status after start");
    assert!(all_ready(&status), "{status:#}");
    status
}

fn stop(svc: &Service, status: &serde_json::Value) {
    let out = svc.spp(&["stop"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("stopped"), "{}", text(&out));
    let mut pids = vec![status["controller_pid"].as_u64().unwrap_or_default()];
    pids.extend(
        status["processes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["pid"].as_u64()),
    );
    for pid in pids {
        wait_for(&format!("pid {pid} to exit"), WAIT, || {
            pid_gone(pid).then_some(())
        });
    }
    assert!(
        common::gone(&svc.path("run/spp.pid")),
        "pid file left behind"
    );
    assert!(
        common::gone(&svc.path("run/spp.sock")),
        "socket left behind"
    );
}

#[test]
fn start_status_restart_and_stop() {
    let svc = Service::new(2, "");
    let status = start(&svc);

    // Real bound addresses, not port 0.
    let listeners = status["listeners"].as_array().unwrap();
    assert_eq!(listeners.len(), 3);
    for (i, l) in listeners.iter().enumerate() {
        assert_eq!(l["index"], i);
        assert!(!l["addr"].as_str().unwrap().ends_with(":0"), "{l}");
    }
    assert_eq!(listeners[1]["transport"], "udp");
    assert!(listeners[2]["addr"].as_str().unwrap().starts_with("[::1]:"));
    std::net::TcpStream::connect(listeners[0]["addr"].as_str().unwrap())
        .expect("the listener accepts");

    let names: Vec<&str> = status["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["proxy", "worker-g1-0", "worker-g1-1"]);
    let worker = process(&status, "worker-g1-1").unwrap();
    assert_eq!(
        (
            worker["role"].as_str(),
            worker["group"].as_u64(),
            worker["index"].as_u64()
        ),
        (Some("worker"), Some(1), Some(1))
    );
    assert!(status["proxy_stats"]["requests"].is_u64());
    assert!(status["worker_stats"]["worker-g1-0"]["requests"].is_u64());
    assert_eq!(
        std::fs::metadata(svc.path("run/spp.sock"))
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
            .unwrap(),
        0o600
    );

    // Each child holds exactly stdio and the fds its launch spec lists.
    for name in names {
        let pid = pid_of(&status, name).unwrap();
        wait_for("the stand-in to exec sleep", WAIT, || {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .ok()?
                .starts_with("sleep")
                .then_some(())
        });
        assert_eq!(open_fds(pid), launch_fds(&launch_of(pid)), "{name}");
    }

    // A second start is refused.
    let out = svc.spp(&["start"]);
    assert_eq!(out.status.code(), Some(1));
    let pid = status["controller_pid"].as_u64().unwrap();
    assert!(
        text(&out).contains(&format!("already running (pid {pid})")),
        "{}",
        text(&out)
    );

    // kill -9 a worker: it is replaced.
    let old = pid_of(&status, "worker-g1-0").unwrap();
    common::signal(old, libc::SIGKILL);
    let status = wait_for("worker-g1-0 to be replaced", WAIT, || {
        let s = svc.status()?;
        let p = process(&s, "worker-g1-0")?;
        (p["restarts"] == 1 && p["state"] == "ready" && all_ready(&s)).then_some(s)
    });
    let p = process(&status, "worker-g1-0").unwrap();
    assert_ne!(p["pid"].as_u64(), Some(old));
    assert_eq!(p["last_exit"], "killed by signal 9");
    assert_eq!(p["crash_loop"], false);

    // kill -9 the proxy: it is replaced with the next epoch.
    let old = pid_of(&status, "proxy").unwrap();
    common::signal(old, libc::SIGKILL);
    let status = wait_for("the proxy to be replaced", WAIT, || {
        let s = svc.status()?;
        (process(&s, "proxy")?["restarts"] == 1 && all_ready(&s)).then_some(s)
    });
    let log = svc.read("log/proxy.log");
    assert!(log.contains("epoch 0") && log.contains("epoch 1"), "{log}");

    let table = svc.spp(&["status"]);
    assert!(table.status.success());
    assert!(text(&table).contains("worker-g1-1"), "{}", text(&table));

    stop(&svc, &status);
    let out = svc.spp(&["status"]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn a_worker_whose_init_fails_fails_the_start_and_leaves_nothing() {
    let svc = Service::new(1, "");
    svc.set("worker-init-fails");
    let out = svc.spp(&["start"]);
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out);
    assert!(said.contains("worker g1/0 exited with status 3"), "{said}");
    assert!(said.contains("log/worker-g1-0.log"), "{said}");
    assert!(said.contains("fake worker: init returned 7"), "{said}");
    assert!(common::gone(&svc.path("run/spp.pid")));
    assert!(common::gone(&svc.path("run/spp.sock")));
    // The proxy that did start was stopped. The start can fail before the
    // stand-in proxy got to log its pid; then there is nothing to wait for
    // (the controller reaps every child before it exits).
    let log = svc.read("log/proxy.log");
    if let Some(pid) = log
        .split_whitespace()
        .nth(2)
        .and_then(|p| p.parse::<u64>().ok())
    {
        wait_for("the proxy to exit", WAIT, || pid_gone(pid).then_some(()));
    }
}

#[test]
fn a_crash_loop_shows_in_status() {
    let svc = Service::new(1, "");
    let status = start(&svc);
    svc.set("worker-crashes-after-first");
    let pid = pid_of(&status, "worker-g1-0").unwrap();
    common::signal(pid, libc::SIGKILL);
    let status = wait_for("a crash loop", Duration::from_secs(30), || {
        let s = svc.status()?;
        (process(&s, "worker-g1-0")?["crash_loop"] == true).then_some(s)
    });
    let p = process(&status, "worker-g1-0").unwrap();
    assert!(p["restarts"].as_u64().unwrap() >= 4, "{p}");
    assert_eq!(p["last_exit"], "exit status 1");
    assert_eq!(status["state"], "running");
    assert!(text(&svc.spp(&["status"])).contains("CRASH LOOP"));
    stop(&svc, &status);
}

#[test]
fn stop_kills_a_proxy_that_ignores_sigterm_after_the_grace() {
    let svc = Service::new(1, "stop_grace = \"300ms\"");
    svc.set("proxy-ignores-term");
    let status = start(&svc);
    stop(&svc, &status);
    let log = svc.read("log/controller.log");
    assert!(log.contains("sent SIGKILL to proxy"), "{log}");
}

/// Byte offset of `needle` in `log`, failing the test when absent.
fn at(log: &str, needle: &str) -> usize {
    log.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} is not in the log:\n{log}"))
}

#[test]
fn workers_drain_on_their_own_clock_after_the_proxy_is_gone() {
    let svc = Service::new(1, "stop_grace = \"300ms\"");
    svc.set("proxy-ignores-term");
    svc.set("worker-drains-slowly");
    let status = start(&svc);
    stop(&svc, &status);
    let log = svc.read("log/controller.log");
    // The proxy had the whole grace and was killed before any worker was
    // asked to drain.
    assert!(
        at(&log, "sent SIGTERM to proxy") < at(&log, "sent SIGKILL to proxy"),
        "{log}"
    );
    assert!(
        at(&log, "sent SIGKILL to proxy") < at(&log, "sent SIGTERM to worker g1/0"),
        "{log}"
    );
    // The worker's drain outlasts what was left of the grace, yet it is
    // not killed.
    assert!(!log.contains("sent SIGKILL to worker"), "{log}");
    assert!(log.contains("exited: exit status 0"), "{log}");
    let worker_log = svc.read("log/worker-g1-0.log");
    assert!(worker_log.contains("fake worker: drained"), "{worker_log}");
}

#[test]
fn a_second_stop_signal_makes_the_proxy_quit_instead_of_killing_it() {
    let svc = Service::new(1, "stop_grace = \"60s\"");
    svc.set("proxy-ignores-term");
    let mut child = svc
        .command(&["start", "--foreground"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the service to be ready", WAIT, || {
        svc.status().filter(all_ready)
    });
    let pid = u64::from(child.id());
    common::signal(pid, libc::SIGTERM);
    wait_for("the proxy to be asked to drain", WAIT, || {
        svc.read("log/controller.log")
            .contains("sent SIGTERM to proxy")
            .then_some(())
    });
    common::signal(pid, libc::SIGTERM);
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit}");
    let log = svc.read("log/controller.log");
    assert!(log.contains("sent SIGINT to proxy"), "{log}");
    assert!(!log.contains("sent SIGKILL to proxy"), "{log}");
    assert!(log.contains("service t stopped"), "{log}");
}

#[test]
fn the_foreground_controller_stops_on_sigterm() {
    let svc = Service::new(1, "");
    let mut child = svc
        .command(&["start", "--foreground"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_for("the service to be ready", WAIT, || {
        svc.status().filter(all_ready)
    });
    assert_eq!(
        status["controller_pid"].as_u64(),
        Some(u64::from(child.id()))
    );
    common::signal(u64::from(child.id()), libc::SIGTERM);
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit}");
    for p in status["processes"].as_array().unwrap() {
        let pid = p["pid"].as_u64().unwrap();
        wait_for("a child to exit", WAIT, || pid_gone(pid).then_some(()));
    }
    assert!(common::gone(&svc.path("run/spp.pid")));
    let log = svc.read("log/controller.log");
    assert!(
        log.contains("SIGTERM: stopping") && log.contains("service t stopped"),
        "{log}"
    );
}
