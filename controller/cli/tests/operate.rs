//! Operating a running service with the stand-in children: `spp reload`
//! (refusals, worker replacement, a failing new plugin, plugins checked in
//! children, never in the controller), scale-down, the
//! hang kill, SIGHUP, `spp stat` and `spp restart`; `status`, `stat` and
//! `stop` while the config file does not validate.

mod common;

use common::{all_ready, pid_gone, pid_of, process, text, wait_for, Service};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn start(svc: &Service) -> Value {
    let out = svc.spp(&["start", "--wait", "20s"]);
    assert!(out.status.success(), "start failed: {}", text(&out));
    let status = svc.status().expect("status after start");
    assert!(all_ready(&status), "{status:#}");
    status
}

/// The pids of the workers in a status, by name.
fn worker_pids(status: &Value) -> Vec<(String, u64)> {
    status["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["role"] == "worker")
        .filter_map(|p| Some((p["name"].as_str()?.to_string(), p["pid"].as_u64()?)))
        .collect()
}

/// Asserts that a refused reload changed nothing: same pids, generation 0.
fn unchanged(svc: &Service, before: &Value) {
    let now = svc.status().expect("status");
    assert_eq!(now["config_generation"], 0, "{now:#}");
    assert_eq!(worker_pids(&now), worker_pids(before));
    assert_eq!(pid_of(&now, "proxy"), pid_of(before, "proxy"));
    assert!(all_ready(&now), "{now:#}");
}

#[test]
fn reload_refuses_a_listener_change_and_a_bad_file_and_changes_nothing() {
    let svc = Service::new(2, "");
    let before = start(&svc);

    // A key that needs a restart: the CLI's check passes, the controller
    // refuses it.
    svc.edit(
        "\"tcp://127.0.0.1:0\",",
        "\"tcp://127.0.0.1:0\", \"tcp://127.0.0.1:0\",",
    );
    let out = svc.spp(&["reload"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("reload refused"), "{said}");
    assert!(said.contains("proxy.listen"), "{said}");
    assert!(said.contains("restart"), "{said}");
    unchanged(&svc, &before);

    // A file that does not validate: refused by the CLI, naming the key.
    let good = std::fs::read_to_string(&svc.config).unwrap();
    svc.edit("workers = 2", "workers = \"two\"");
    let out = svc.spp(&["reload"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("group[0].workers"), "{said}");
    assert!(said.contains(&svc.config.display().to_string()), "{said}");
    // (The CLI finds the control socket through the config file.)
    std::fs::write(&svc.config, good).unwrap();
    unchanged(&svc, &before);
    let log = svc.read("log/controller.log");
    assert!(log.contains("reload refused"), "{log}");
    assert!(!log.contains("reload done"), "{log}");
}

#[test]
fn reload_replaces_every_worker_then_applies_the_new_count() {
    let svc = Service::new(2, "");
    let before = start(&svc);
    let old = worker_pids(&before);
    assert_eq!(old.len(), 2);

    let out = svc.spp(&["reload"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!(
            "reloaded from {} (config generation 1)",
            svc.config.display()
        )),
        "{said}"
    );
    assert!(said.contains("group 1: 2 worker(s) replaced"), "{said}");
    let status = svc.status().expect("status");
    assert!(all_ready(&status), "{status:#}");
    assert_eq!(status["config_generation"], 1);
    let new = worker_pids(&status);
    assert_eq!(new.len(), 2, "{status:#}");
    for (_, pid) in &new {
        assert!(old.iter().all(|(_, o)| o != pid), "{old:?} -> {new:?}");
    }
    for (_, pid) in &old {
        wait_for("an old worker to exit", WAIT, || {
            pid_gone(*pid).then_some(())
        });
    }
    for p in status["processes"].as_array().unwrap() {
        if p["role"] == "worker" {
            assert_eq!(p["config_generation"], 1, "{p}");
        }
    }
    // The proxy is not restarted by a reload.
    assert_eq!(pid_of(&status, "proxy"), pid_of(&before, "proxy"));
    assert_eq!(status["groups"][0]["workers"], 2);
    assert!(text(&svc.spp(&["status"])).contains("config generation 1"));

    // A new worker count: applied once the old workers are replaced.
    svc.edit("workers = 2", "workers = 3");
    let out = svc.spp(&["reload"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("group[0].workers: 2 -> 3"), "{said}");
    let status = wait_for("3 ready workers", WAIT, || {
        let s = svc.status()?;
        (all_ready(&s) && worker_pids(&s).len() == 3).then_some(s)
    });
    assert_eq!(status["config_generation"], 2);
    assert_eq!(status["groups"][0]["workers"], 3);
    let log = svc.read("log/controller.log");
    assert!(
        log.contains("replaced by reload: killed by signal 15"),
        "{log}"
    );
}

#[test]
fn the_controller_never_loads_a_plugin_its_checks_run_in_children() {
    // glibc's loader writes what each process loads to `ld.<pid>`.
    let svc = Service::new(1, "");
    let ld = svc.path("ld");
    let out = svc
        .command(&["start", "--wait", "20s"])
        .env("LD_DEBUG", "files")
        .env("LD_DEBUG_OUTPUT", &ld)
        .output()
        .expect("run spp");
    assert!(out.status.success(), "start failed: {}", text(&out));
    let controller = svc.status().expect("status")["controller_pid"]
        .as_u64()
        .expect("controller pid");
    let out = svc.spp(&["reload"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(svc.status().expect("status")["config_generation"], 1);

    let maps = std::fs::read_to_string(format!("/proc/{controller}/maps")).expect("maps");
    assert!(!maps.contains("libspp_echo"), "{maps}");
    let own = std::fs::read_to_string(format!("{}.{controller}", ld.display()))
        .expect("the controller's loader log");
    assert!(own.contains("file="), "LD_DEBUG had no effect: {own}");
    assert!(
        !own.contains("libspp_echo"),
        "the controller loaded a plugin"
    );
    // The controller's own start check and the reload's, each of the
    // proxy's and the worker's plugin, in children.
    let checkers = std::fs::read_dir(svc.dir.path())
        .expect("service dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("ld."))
        .filter(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("libspp_echo")))
        .count();
    assert!(checkers >= 4, "{checkers} processes loaded the plugin");
}

#[test]
fn a_new_worker_that_fails_to_start_fails_the_reload_and_the_old_ones_stay() {
    let svc = Service::new(1, "");
    let before = start(&svc);
    svc.set("worker-init-fails");
    let out = svc.spp(&["reload"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("reload failed, nothing changed"), "{said}");
    assert!(said.contains("exit status 3"), "{said}");
    assert!(said.contains("fake worker: init returned 7"), "{said}");
    // The failed new worker is not restarted; the old one serves on.
    let status = wait_for("the failed worker to be gone", WAIT, || {
        let s = svc.status()?;
        (worker_pids(&s).len() == 1).then_some(s)
    });
    assert_eq!(worker_pids(&status), worker_pids(&before));
    assert_eq!(status["config_generation"], 0);
    assert!(all_ready(&status), "{status:#}");
}

#[test]
fn an_idle_group_scales_down_and_the_stopped_worker_stays_stopped() {
    let svc = Service::with(
        2,
        "",
        "[scaling]\ninterval = \"1s\"\ncooldown = \"0s\"",
        "min_workers = 1\nmax_workers = 3",
    );
    let before = start(&svc);
    let victim = pid_of(&before, "worker-g1-1").expect("worker-g1-1 runs");
    // Idle stand-ins: busy 0 < 1 worker-second x 0.2 → one worker stops.
    let status = wait_for("a scale-down", WAIT, || {
        let s = svc.status()?;
        (s["groups"][0]["last_change"]["action"] == "down").then_some(s)
    });
    let change = &status["groups"][0]["last_change"];
    assert_eq!(
        (change["from"].as_u64(), change["to"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(change["reason"], "idle");
    assert_eq!(change["busy_s"], 0.0);
    assert_eq!(change["down_busy"], 0.2);
    wait_for("the stopped worker to exit", WAIT, || {
        pid_gone(victim).then_some(())
    });
    // At min_workers, the next evaluations hold; the stopped worker was
    // not restarted meanwhile.
    let status = wait_for("a hold at min_workers", WAIT, || {
        let s = svc.status()?;
        let d = &s["groups"][0]["last_decision"];
        (d["reason"] == "idle, at min_workers").then_some(s)
    });
    assert!(process(&status, "worker-g1-1").is_none(), "{status:#}");
    assert_eq!(status["groups"][0]["workers"], 1);
    assert_eq!(status["groups"][0]["running"], 1);
    assert_eq!(status["groups"][0]["min"], 1);
    assert_eq!(status["groups"][0]["max"], 3);
    assert_eq!(svc.read("bin/starts-g1-1").trim(), "1");
    let log = svc.read("log/controller.log");
    assert!(
        log.contains("scaling g1: down 2 -> 1: busy 0.00 s"),
        "{log}"
    );
    assert!(
        log.contains("stopped by scale-down: killed by signal 15"),
        "{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("worker g1/1") && l.contains("restarting")),
        "{log}"
    );
    let table = text(&svc.spp(&["status"]));
    assert!(table.contains("LAST SCALING DECISION"), "{table}");
    assert!(table.contains("last change"), "{table}");
}

#[test]
fn a_worker_stuck_in_process_past_hang_timeout_is_killed_and_replaced() {
    let svc = Service::with(1, "", "", "hang_timeout = \"1s\"");
    svc.set("worker-hangs-first");
    let before = start(&svc);
    let stuck = pid_of(&before, "worker-g1-0").expect("worker runs");
    let status = wait_for("the stuck worker to be replaced", WAIT, || {
        let s = svc.status()?;
        let p = process(&s, "worker-g1-0")?;
        (p["restarts"] == 1 && p["state"] == "ready").then_some(s)
    });
    assert!(pid_gone(stuck));
    let p = process(&status, "worker-g1-0").unwrap();
    let last = p["last_exit"].as_str().unwrap_or_default();
    assert!(last.starts_with("stuck in spp_process for "), "{last}");
    assert!(
        last.ends_with("(hang_timeout 1 s): killed by signal 9"),
        "{last}"
    );
    let log = svc.read("log/controller.log");
    assert!(
        log.contains("worker g1/0 stuck in spp_process for "),
        "{log}"
    );
    assert!(log.contains("(hang_timeout 1 s): killed"), "{log}");
}

#[test]
fn sighup_reopens_the_controller_log_and_reaches_every_child() {
    let svc = Service::new(1, "");
    let status = start(&svc);
    let controller = status["controller_pid"].as_u64().unwrap();
    let log = svc.path("log/controller.log");
    let rotated = svc.path("log/controller.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    common::signal(controller, libc::SIGHUP);
    let fresh = wait_for("lines in the new controller.log", WAIT, || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("sent SIGHUP to worker g1/0").then_some(text)
    });
    assert!(fresh.contains("SIGHUP: reopened"), "{fresh}");
    assert!(fresh.contains("sent SIGHUP to proxy"), "{fresh}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(!old.contains("SIGHUP: reopened"), "{old}");
    // Still serving; later lines go to the new file too.
    assert!(all_ready(&svc.status().unwrap()));
    let out = svc.spp(&["stop"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(svc.read("log/controller.log").contains("service t stopped"));
}

#[test]
fn sighup_reopens_the_log_of_a_foreground_controller() {
    let svc = Service::new(1, "");
    let mut child = svc
        .command(&["start", "--foreground"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the service to be ready", WAIT, || {
        svc.status().filter(all_ready)
    });
    let log = svc.path("log/controller.log");
    std::fs::rename(&log, svc.path("log/old.log")).unwrap();
    common::signal(u64::from(child.id()), libc::SIGHUP);
    wait_for("lines in the new controller.log", WAIT, || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("SIGHUP: reopened").then_some(())
    });
    common::signal(u64::from(child.id()), libc::SIGTERM);
    assert!(child.wait().unwrap().success());
    assert!(svc.read("log/controller.log").contains("service t stopped"));
}

#[test]
fn stat_answers_once_or_every_interval() {
    let svc = Service::new(1, "");
    start(&svc);
    let out = svc.spp(&["stat"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = svc.spp(&["stat", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("stat JSON");
    assert!(report.is_object(), "{report}");
    // --watch: one JSON line per interval until interrupted.
    let mut watch = svc
        .command(&["stat", "--json", "--watch", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    for _ in 0..2 {
        let line = lines.next().expect("a report line").unwrap();
        let value: Value = serde_json::from_str(&line).expect("one JSON report per line");
        assert!(value.is_object(), "{line}");
    }
    common::signal(u64::from(watch.id()), libc::SIGINT);
    let _ = watch.wait();
}

#[test]
fn stat_and_reload_say_when_nothing_runs() {
    let svc = Service::new(1, "");
    for cmd in ["stat", "reload"] {
        let out = svc.spp(&[cmd]);
        assert_eq!(out.status.code(), Some(3), "{cmd}: {}", text(&out));
        assert!(text(&out).contains("is not running"), "{}", text(&out));
    }
}

#[test]
fn restart_replaces_the_controller_and_a_bad_file_stops_nothing() {
    let svc = Service::new(1, "");
    let before = start(&svc);
    let old = before["controller_pid"].as_u64().unwrap();

    svc.edit("workers = 1", "workers = 0");
    let out = svc.spp(&["restart"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("group[0].workers"), "{}", text(&out));
    svc.edit("workers = 0", "workers = 1");
    assert_eq!(svc.status().expect("still running")["controller_pid"], old);

    let out = svc.spp(&["restart", "--wait", "20s"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!("stopped (controller pid {old})")),
        "{said}"
    );
    assert!(said.contains("is running"), "{said}");
    let status = svc.status().expect("status");
    assert_ne!(status["controller_pid"].as_u64(), Some(old));
    assert!(all_ready(&status), "{status:#}");
    assert!(pid_gone(old));
}

#[test]
fn a_metrics_address_in_use_stops_the_start_and_nothing_runs() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let svc = Service::new(1, &format!("metrics = \"{addr}\""));
    let out = svc.spp(&["start"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains(&format!("metrics endpoint {addr}")), "{said}");
    assert!(common::gone(&svc.path("run/spp.pid")), "{said}");
    assert!(common::gone(&svc.path("run/spp.sock")), "{said}");
    // No child was started.
    assert!(common::gone(&svc.path("log/proxy.log")), "{said}");
    assert!(common::gone(&svc.path("log/worker-g1-0.log")), "{said}");
}

#[test]
fn status_stat_and_stop_reach_the_service_while_its_file_does_not_validate() {
    let svc = Service::new(1, "");
    // Not the default run_dir: the fallback must read it from the file.
    svc.edit("run_dir = \"run\"", "run_dir = \"state\"");
    let before = start(&svc);
    let controller = before["controller_pid"].as_u64().unwrap();
    let file = svc.config.display().to_string();

    // A value that breaks a rule: status answers, with a one-line warning
    // naming the file, the key and the reason.
    svc.edit("workers = 1", "workers = \"one\"");
    let out = svc.spp(&["status", "--json"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{}", text(&out));
    let status: Value = serde_json::from_slice(&out.stdout).expect("status JSON on stdout");
    assert_eq!(status["controller_pid"].as_u64(), Some(controller));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("spp: warning: "), "{err}");
    assert!(
        err.contains(&file) && err.contains("group[0].workers"),
        "{err}"
    );
    assert!(
        err.contains(&svc.path("state").display().to_string()),
        "{err}"
    );
    // Reload stays strict.
    let out = svc.spp(&["reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!text(&out).contains("warning"), "{}", text(&out));

    // Not even TOML (mid-edit): status and stat still answer.
    let broken = std::fs::read_to_string(&svc.config).unwrap() + "\n[proxy\n";
    std::fs::write(&svc.config, broken).unwrap();
    let out = svc.spp(&["status"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("warning"), "{}", text(&out));
    let out = svc.spp(&["stat", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("stat JSON on stdout");
    assert_eq!(report["service"], "t");

    // And stop stops it.
    let out = svc.spp(&["stop"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!("service t stopped (controller pid {controller})")),
        "{said}"
    );
    assert!(pid_gone(controller));
    let out = svc.spp(&["status"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("service t is not running"),
        "{}",
        text(&out)
    );

    // A file that cannot be read is still an error.
    std::fs::remove_file(&svc.config).unwrap();
    let out = svc.spp(&["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("cannot read"), "{}", text(&out));
}

#[test]
fn the_stop_answer_says_how_long_the_stop_may_take() {
    use std::io::Write;
    let svc = Service::new(1, "stop_grace = \"3s\"");
    let status = start(&svc);
    let controller = status["controller_pid"].as_u64().unwrap();
    let mut socket = std::os::unix::net::UnixStream::connect(svc.path("run/spp.sock")).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    socket.write_all(b"{\"cmd\":\"stop\"}\n").unwrap();
    let mut answer = String::new();
    BufReader::new(socket).read_line(&mut answer).unwrap();
    let answer: Value = serde_json::from_str(answer.trim()).expect("one JSON answer");
    assert_eq!(
        answer["controller_pid"].as_u64(),
        Some(controller),
        "{answer}"
    );
    // At least the running grace: `spp stop` waits that long even when the
    // file no longer says.
    let bound = answer["stop_timeout_ms"].as_u64().unwrap_or_default();
    assert!(bound >= 3000, "{answer}");
    wait_for("the controller to exit", WAIT, || {
        pid_gone(controller).then_some(())
    });
}
