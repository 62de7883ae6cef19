//! The service's life cycle without downtime: `spp reload` swaps workers
//! under load with no client error (new plugin_conf, a rebuilt plugin
//! file), applies new limits and worker counts; a bad config or a listener
//! change is refused and changes nothing; `spp restart` starts everything
//! anew; SIGHUP reopens the log files.

use spp_tests::client::{TcpClient, UdpClient};
use spp_tests::faulty;
use spp_tests::load::Load;
use spp_tests::view::{self, pids, ready_workers, running_workers};
use spp_tests::{kill, mapped_inodes, pid_alive, wait_for, Binaries, Service, ServiceConfig};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

/// The group of every test here.
const GROUP: u32 = 1;
/// Workers of the group.
const WORKERS: u32 = 2;
/// Clients calling throughout a reload.
const LOAD_CLIENTS: usize = 4;
/// Calls the load must make before and after each step.
const PROGRESS: u64 = 200;
/// Bound on every wait here.
const WAIT: Duration = Duration::from_secs(30);

fn faulty_config(workers: u32) -> ServiceConfig {
    ServiceConfig::single(&Binaries::locate().plugin(faulty::PLUGIN), workers)
}

/// Worker name → pid of the group's ready workers.
fn worker_pids(service: &Service) -> BTreeMap<String, i32> {
    ready_workers(&service.status(), GROUP)
        .into_iter()
        .filter_map(|p| Some((p.name, p.pid?)))
        .collect()
}

/// Waits until the group runs exactly `count` ready workers, none of them
/// with a pid in `old`, and nothing else of the group runs (the old ones
/// have drained and exited).
fn wait_all_new_workers(service: &Service, old: &[i32], count: usize) -> Vec<i32> {
    service
        .wait_status(WAIT, |status| {
            let running = running_workers(status, GROUP);
            let ready = ready_workers(status, GROUP);
            let new: Vec<i32> = ready.iter().filter_map(|p| p.pid).collect();
            (running.len() == count
                && ready.len() == count
                && new.iter().all(|pid| !old.contains(pid)))
            .then_some(new)
        })
        .unwrap_or_else(|| {
            panic!(
                "the group did not end with {count} new workers (old {old:?}): {}\n{}",
                service.status(),
                service.logs()
            )
        })
}

fn assert_gone(pids: &[i32]) {
    for &pid in pids {
        assert!(
            wait_for(WAIT, || (!pid_alive(pid)).then_some(())).is_some(),
            "old pid {pid} still runs"
        );
    }
}

fn assert_reloaded(service: &Service) {
    let out = service.reload();
    assert!(
        out.ok(),
        "spp reload failed: {}\n{}",
        out.text(),
        service.logs()
    );
}

#[test]
fn reload_with_a_new_plugin_conf_replaces_every_worker_without_a_client_error() {
    let mut cfg = faulty_config(WORKERS);
    let service = Service::start(&cfg);
    let proxy_pid = service.pid_of("proxy").expect("proxy pid");
    let old: Vec<i32> = worker_pids(&service).into_values().collect();
    assert_eq!(old.len(), WORKERS as usize);
    let generation = service.status()["config_generation"].as_u64();

    let load = Load::echo(service.tcp(), LOAD_CLIENTS);
    assert!(
        load.progresses(PROGRESS, WAIT),
        "load runs before the reload"
    );
    cfg.group_mut().plugin_conf = "second edition".into();
    service.write_config(&cfg);
    let during = load.ok();
    assert_reloaded(&service);
    assert_eq!(
        service.status()["config_generation"].as_u64(),
        generation.map(|g| g + 1),
        "the reload took effect"
    );
    wait_all_new_workers(&service, &old, WORKERS as usize);
    assert!(load.ok() > during, "calls were served during the swap");
    assert!(
        load.progresses(PROGRESS, WAIT),
        "load runs after the reload"
    );
    let report = load.finish();
    assert!(
        report.clean(),
        "no client error during the swap: {report:?}"
    );

    assert_gone(&old);
    assert_eq!(
        service.pid_of("proxy"),
        Some(proxy_pid),
        "a worker-only change keeps the proxy"
    );
}

#[test]
fn reload_picks_up_a_rebuilt_plugin_file() {
    let bins = Binaries::locate();
    let mut cfg = faulty_config(WORKERS);
    // The group's plugin is a copy the test can replace; the proxy keeps
    // the built one.
    let plugins = tempfile::tempdir().expect("tempdir");
    let group_plugin = plugins.path().join("libgroup.so");
    std::fs::copy(bins.plugin(faulty::PLUGIN), &group_plugin).expect("copy plugin");
    cfg.group_mut().plugin = group_plugin.clone();
    let service = Service::start(&cfg);
    let old: Vec<i32> = worker_pids(&service).into_values().collect();
    assert_eq!(old.len(), WORKERS as usize);

    let load = Load::echo(service.tcp(), LOAD_CLIENTS);
    assert!(
        load.progresses(PROGRESS, WAIT),
        "load runs before the reload"
    );
    // A rebuild lands by rename, as an installer does: the echo plugin
    // answers the load's calls the same way.
    let staged = plugins.path().join("libgroup.so.new");
    std::fs::copy(bins.plugin("spp_echo"), &staged).expect("stage plugin");
    std::fs::rename(&staged, &group_plugin).expect("rename plugin");
    let new_inode = std::fs::metadata(&group_plugin).expect("stat").ino();

    let during = load.ok();
    assert_reloaded(&service);
    let new = wait_all_new_workers(&service, &old, WORKERS as usize);
    assert!(load.ok() > during, "calls were served during the swap");
    assert!(
        load.progresses(PROGRESS, WAIT),
        "load runs after the reload"
    );
    let report = load.finish();
    assert!(
        report.clean(),
        "no client error during the swap: {report:?}"
    );
    for pid in new {
        assert_eq!(
            mapped_inodes(pid, &group_plugin),
            vec![new_inode],
            "worker {pid} runs the rebuilt plugin"
        );
    }
    assert_gone(&old);
}

#[test]
fn reload_applies_new_limits_and_worker_counts() {
    let mut cfg = faulty_config(1);
    cfg.group_mut().max_workers = Some(3);
    let service = Service::start(&cfg);
    let proxy_pid = service.pid_of("proxy").expect("proxy pid");
    let big = vec![b'x'; 100 << 10];
    let mut client = TcpClient::connect(service.tcp()).expect("connect");
    assert_eq!(client.call(&big).expect("a 100 KiB call"), big);

    cfg.group_mut().workers = 2;
    cfg.proxy_extra.push("max_request_size = \"64KiB\"".into());
    service.write_config(&cfg);
    assert_reloaded(&service);
    let grown = service.wait_status(WAIT, |status| {
        (ready_workers(status, GROUP).len() == 2).then_some(())
    });
    assert!(grown.is_some(), "two workers: {}", service.status());
    assert_eq!(
        service.pid_of("proxy"),
        Some(proxy_pid),
        "limits apply without a new proxy"
    );

    let mut client = TcpClient::connect(service.tcp()).expect("connect");
    client.send(&big).expect("send");
    assert!(
        client.closed_by_server(),
        "a request above the new max_request_size closes its connection"
    );
    let oversized = service.wait_status(WAIT, |status| {
        (view::proxy_counter(status, "oversized") >= 1).then_some(())
    });
    assert!(oversized.is_some(), "{}", service.status()["proxy_stats"]);
    let mut small = TcpClient::connect(service.tcp()).expect("connect");
    assert_eq!(small.call(b"small").expect("small call"), b"small");
}

#[test]
fn a_bad_config_file_changes_nothing_and_says_why() {
    let cfg = faulty_config(WORKERS);
    let service = Service::start(&cfg);
    let status = service.status();
    let (before, generation) = (pids(&status), status["config_generation"].clone());
    let text = cfg
        .render(service.dir.path())
        .replace(&format!("workers = {WORKERS}"), "workers = \"lots\"");
    service.write_config_text(&text);

    let out = service.reload();
    assert!(!out.ok(), "reload of a bad file must fail: {}", out.text());
    let why = out.text();
    assert!(why.contains("workers"), "names the key: {why}");
    assert!(
        why.contains(&service.config.display().to_string()),
        "names the file: {why}"
    );
    // `spp status` reads the file too: put the good one back to look.
    service.write_config(&cfg);
    let status = service.status();
    assert_eq!(pids(&status), before, "the same processes serve");
    assert_eq!(
        status["config_generation"], generation,
        "nothing was applied"
    );
    let mut client = TcpClient::connect(service.tcp()).expect("connect");
    assert_eq!(client.call(b"still").expect("call"), b"still");
}

#[test]
fn a_listener_change_is_refused() {
    let mut cfg = faulty_config(WORKERS);
    let service = Service::start(&cfg);
    let (tcp, udp) = (service.tcp(), service.udp());
    let before = pids(&service.status());
    cfg.listen.retain(|l| l.starts_with("tcp"));
    service.write_config(&cfg);

    let out = service.reload();
    assert!(
        !out.ok(),
        "a listener change must be refused: {}",
        out.text()
    );
    assert!(out.text().contains("listen"), "says why: {}", out.text());
    assert_eq!(pids(&service.status()), before, "the same processes serve");
    let mut client = TcpClient::connect(tcp).expect("connect");
    assert_eq!(client.call(b"tcp").expect("tcp call"), b"tcp");
    let udp_client = UdpClient::new(udp).expect("udp");
    assert_eq!(udp_client.call(b"udp").expect("udp call"), b"udp");
}

#[test]
fn restart_brings_the_service_back_with_new_processes() {
    let cfg = faulty_config(WORKERS);
    let service = Service::start(&cfg);
    let controller = service.controller_pid().expect("controller pid");
    let before = pids(&service.status());
    assert_eq!(before.len(), 1 + WORKERS as usize, "proxy and workers");

    let out = service.restart();
    assert!(
        out.ok(),
        "spp restart failed: {}\n{}",
        out.text(),
        service.logs()
    );
    let status = service
        .wait_status(WAIT, |status| {
            let procs = view::processes(status);
            let ready = procs.iter().filter(|p| p.ready()).count();
            (status["state"] == "running" && ready == before.len()).then(|| status.clone())
        })
        .unwrap_or_else(|| panic!("not back after restart: {}", service.logs()));
    let after = pids(&status);
    assert!(
        after.iter().all(|pid| !before.contains(pid)),
        "every process is new: {before:?} → {after:?}"
    );
    assert_gone(&before);
    assert_gone(&[controller]);
    let mut client = TcpClient::connect(service.tcp()).expect("connect");
    assert_eq!(client.call(b"back").expect("call"), b"back");
}

#[test]
fn sighup_reopens_the_log_files() {
    let cfg = faulty_config(1);
    let service = Service::start(&cfg);
    let controller = service.controller_pid().expect("controller pid");
    let worker_pid = service.pid_of("worker-g1-0").expect("worker pid");
    let logs = ["controller.log", "proxy.log", "worker-g1-0.log"];
    for name in logs {
        let path = service.log_path(name);
        assert!(path.is_file(), "{} exists", path.display());
        std::fs::rename(&path, path.with_extension("log.1")).expect("rotate");
    }

    kill(controller, libc::SIGHUP);
    for name in logs {
        let path = service.log_path(name);
        assert!(
            wait_for(WAIT, || path.is_file().then_some(())).is_some(),
            "{} reopened after SIGHUP",
            path.display()
        );
    }

    // The worker writes into its new file: a panic in the plugin is logged.
    let worker_log = service.log_path("worker-g1-0.log");
    let size = file_size(&worker_log);
    let mut panicking = TcpClient::connect(service.tcp()).expect("connect");
    panicking.send(b"panic").expect("send");
    assert!(panicking.closed_by_server());
    assert!(
        wait_for(WAIT, || (file_size(&worker_log) > size).then_some(())).is_some(),
        "the worker's new log grows"
    );
    assert_eq!(
        service.pid_of("worker-g1-0"),
        Some(worker_pid),
        "same worker"
    );

    // The controller writes into its new file: a crashed worker is logged.
    let controller_log = service.log_path("controller.log");
    let size = file_size(&controller_log);
    let mut crashing = TcpClient::connect(service.tcp()).expect("connect");
    crashing.send(b"abort").expect("send");
    assert!(
        wait_for(WAIT, || (file_size(&controller_log) > size).then_some(())).is_some(),
        "the controller's new log grows"
    );
    assert!(
        service
            .wait_replaced("worker-g1-0", worker_pid, WAIT)
            .is_some(),
        "the crashed worker comes back"
    );
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}
