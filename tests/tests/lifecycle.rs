//! The operator's view: bad configs and plugins are refused with a clear
//! error and nothing starts; stop leaves nothing behind.

use spp_tests::client::TcpClient;
use spp_tests::service::run_spp;
use spp_tests::{pid_alive, wait_for, Binaries, Service, ServiceConfig};
use std::time::Duration;

fn write_config(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("spp.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn a_bad_value_is_refused_naming_the_file_and_key() {
    let bins = Binaries::locate();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = ServiceConfig::single(&bins.plugin("spp_echo"), 1);
    cfg.proxy_extra.push("max_request_size = \"lots\"".into());
    let path = write_config(dir.path(), &cfg.render(dir.path()));
    let path_text = path.display().to_string();
    for cmd in ["check", "start"] {
        let out = run_spp(&bins, &[cmd, "-c", &path_text]);
        assert!(!out.ok(), "spp {cmd} must fail");
        let text = out.text();
        assert!(text.contains("max_request_size"), "names the key: {text}");
        assert!(text.contains(&path_text), "names the file: {text}");
    }
    assert!(!dir.path().join("run/spp.pid").exists(), "nothing started");
}

#[test]
fn an_unknown_key_is_refused() {
    let bins = Binaries::locate();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = ServiceConfig::single(&bins.plugin("spp_echo"), 1);
    cfg.proxy_extra.push("max_connectoins = 10".into());
    let path = write_config(dir.path(), &cfg.render(dir.path()));
    let out = run_spp(&bins, &["check", "-c", &path.display().to_string()]);
    assert!(!out.ok());
    assert!(out.text().contains("max_connectoins"), "{}", out.text());
}

#[test]
fn a_plugin_with_the_wrong_abi_version_is_refused() {
    let bins = Binaries::locate();
    let plugin = bins.plugin("spp_echo_c_abi99");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = ServiceConfig::single(&plugin, 1);
    let path = write_config(dir.path(), &cfg.render(dir.path()));
    let out = run_spp(&bins, &["start", "-c", &path.display().to_string()]);
    assert!(!out.ok());
    let text = out.text();
    assert!(
        text.contains("99") && text.contains("version 1"),
        "names both versions: {text}"
    );
    assert!(
        text.contains("libspp_echo_c_abi99.so"),
        "names the file: {text}"
    );
}

#[test]
fn a_plugin_whose_init_fails_fails_the_start_with_the_reason() {
    let bins = Binaries::locate();
    let mut cfg = ServiceConfig::single(&bins.plugin("spp_faulty"), 1);
    cfg.groups[0].plugin_conf = "init_fail".into();
    let (service, out) = Service::try_start(&cfg);
    assert!(!out.ok(), "start must fail when a worker's init fails");
    assert!(
        out.text().contains("worker-g1-0") || out.text().contains("g1/0"),
        "names the worker: {}",
        out.text()
    );
    // The plugin check calls spp_init first: the start fails there, naming
    // the key, the role and the plugin's code.
    assert!(
        out.text().contains("group[0].plugin") && out.text().contains("spp_init returned 7"),
        "names the key and the code: {}",
        out.text()
    );
    assert!(
        !service.dir.path().join("run/spp.pid").exists(),
        "nothing left running"
    );
}

#[test]
fn stop_leaves_no_process_pid_file_or_socket() {
    let bins = Binaries::locate();
    let mut service = Service::start(&ServiceConfig::single(&bins.plugin("spp_echo"), 2));
    let status = service.status();
    assert_eq!(status["state"], "running");
    let pids = service.seen_pids();
    assert!(pids.len() >= 4, "controller, proxy, two workers: {pids:?}");
    let again = service.spp(&["start"]);
    assert!(!again.ok(), "a second start is refused: {}", again.text());
    assert!(again.text().contains("already running"), "{}", again.text());

    let out = service.stop();
    assert!(out.ok(), "stop: {}", out.text());
    for pid in pids {
        assert!(!pid_alive(pid), "pid {pid} still alive after stop");
    }
    let run = service.dir.path().join("run");
    assert!(
        !run.join("spp.pid").exists() && !run.join("spp.sock").exists(),
        "run dir not clean"
    );
    let status = service.spp(&["status"]);
    assert!(!status.ok(), "status after stop reports not running");
}

#[test]
fn stop_answers_in_flight_requests_before_stopping() {
    let bins = Binaries::locate();
    let mut service = Service::start(&ServiceConfig::single(&bins.plugin("spp_faulty"), 1));
    let mut client = TcpClient::connect(service.tcp()).expect("connect");
    client.send(b"sleep:300").expect("send");
    let taken = wait_for(Duration::from_secs(10), || {
        let requests = service.status()["worker_stats"]["worker-g1-0"]["requests"].as_u64();
        (requests == Some(1)).then_some(())
    });
    assert!(taken.is_some(), "the worker took the request");
    let out = service.stop();
    assert!(out.ok(), "stop: {}", out.text());
    // The drain flushed the answer before the proxy closed the connection.
    assert_eq!(client.recv().expect("in-flight answer"), b"sleep:300");
    assert!(client.closed_by_server());
}
