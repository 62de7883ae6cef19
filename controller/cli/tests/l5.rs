//! L5 in the controller, end to end on one machine with the embedded
//! registry in a temporary directory: a service with real children
//! registers its listeners once its workers are ready, `spp l5 list/get`
//! and `spp status` show its own sid, and `spp stop` removes the
//! registration before the proxy drains. With the stand-in children: the
//! registration is withdrawn while the group has no ready worker and comes
//! back with it, and `spp l5` on a service without `[l5]` says L5 is off.
//! (Routing and fail-over between services: tests/tests, end to end.)

mod common;

use common::{all_ready, text, wait_for, Service};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// `[l5]` registering sid 64101:3 (weight 300) in `run/../reg`.
const L5: &str = r#"[l5]
modid = 64101
cmdid = 3
weight = 300
registry_dir = "reg"
period = "200ms"
ttl = "3s"
"#;

fn start(svc: &Service) -> Value {
    let out = svc.spp(&["start", "--wait", "30s"]);
    assert!(out.status.success(), "start failed: {}", text(&out));
    svc.status().expect("status after start")
}

/// The controller's registration file.
fn registration(svc: &Service, status: &Value) -> PathBuf {
    let pid = status["controller_pid"].as_u64().expect("controller pid");
    svc.path(&format!("reg/t-{pid}.json"))
}

/// The addresses a registration file lists.
fn registered(file: &Path) -> Option<BTreeSet<String>> {
    let record: Value = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
    assert_eq!(record["service"], "t", "{record}");
    Some(
        record["instances"]
            .as_array()?
            .iter()
            .map(|i| {
                assert_eq!(i["sid"]["modid"], 64101, "{i}");
                assert_eq!(i["weight"], 300, "{i}");
                i["addr"].as_str().unwrap_or_default().to_string()
            })
            .collect(),
    )
}

/// Every listener address (TCP and UDP on one address would be one).
fn listener_addrs(status: &Value) -> BTreeSet<String> {
    status["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["addr"].as_str().map(str::to_string))
        .collect()
}

fn l5_json(svc: &Service, args: &[&str]) -> Value {
    let out = svc.spp(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

#[test]
fn a_real_service_registers_its_listeners_lists_itself_and_deregisters_before_draining() {
    let svc = common::real_service("spp_echo", 1, L5, "");
    let status = start(&svc);
    let file = registration(&svc, &status);
    let addrs = listener_addrs(&status);
    assert_eq!(addrs.len(), 3, "{status:#}");
    wait_for("the registration file", WAIT, || {
        registered(&file).filter(|r| *r == addrs)
    });

    let status = wait_for("status to show the registration", WAIT, || {
        svc.status().filter(|s| s["l5"]["registered"] == true)
    });
    let l5 = &status["l5"];
    assert_eq!(l5["sid"]["modid"], 64101, "{l5}");
    assert_eq!(l5["sid"]["cmdid"], 3, "{l5}");
    assert_eq!(l5["backend"], "embedded", "{l5}");
    assert_eq!(l5["backend_error"], Value::Null, "{l5}");
    let shown: BTreeSet<String> = l5["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    assert_eq!(shown, addrs);
    let table = text(&svc.spp(&["status"]));
    assert!(table.contains("l5: sid 64101:3 registered"), "{table}");

    // Its own sid is in the table the workers route on, at once.
    let report = wait_for("spp l5 list to show the instances", WAIT, || {
        let report = l5_json(&svc, &["l5", "list", "--json"]);
        let sid = report["table"]
            .as_array()?
            .iter()
            .find(|s| s["sid"]["modid"] == 64101 && s["sid"]["cmdid"] == 3)?
            .clone();
        (sid["nodes"].as_array()?.len() == addrs.len()).then_some(sid)
    });
    for node in report["nodes"].as_array().unwrap() {
        assert!(addrs.contains(node["addr"].as_str().unwrap()), "{node}");
        assert_eq!(node["source"], "registry", "{node}");
        assert_eq!(node["static_weight"], 300, "{node}");
        assert_eq!(node["dead"], false, "{node}");
    }
    let got = l5_json(&svc, &["l5", "get", "64101", "3", "--json"]);
    assert_eq!(got["nodes"].as_array().map(Vec::len), Some(3), "{got}");
    let out = svc.spp(&["l5", "list"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("64101:3"), "{}", text(&out));
    let out = svc.spp(&["l5", "get", "1", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("sid 1:1 is not in the route table"),
        "{}",
        text(&out)
    );

    // Stop: the registration goes first, then the proxy drains.
    let out = svc.spp(&["stop"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!file.exists(), "{} is still there", file.display());
    let log = svc.read("log/controller.log");
    let deregistered = log.find("l5: deregistered from embedded");
    let drain = log.find("sent SIGTERM to proxy");
    assert!(
        matches!((deregistered, drain), (Some(d), Some(p)) if d < p),
        "deregistration must come before the proxy's drain:\n{log}"
    );
    let out = svc.spp(&["l5", "list"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
}

#[test]
fn the_registration_is_withdrawn_while_the_group_has_no_ready_worker() {
    let svc = Service::with(1, "", L5, "max_workers = 1");
    let status = start(&svc);
    assert!(all_ready(&status));
    let file = registration(&svc, &status);
    wait_for("the registration", WAIT, || {
        registered(&file).filter(|r| r.len() == 3)
    });
    // The worker dies and every restart fails: withdrawn.
    svc.set("worker-crashes-after-first");
    let pid = common::pid_of(&status, "worker-g1-0").expect("worker pid");
    common::signal(pid, libc::SIGKILL);
    wait_for("the withdrawal", WAIT, || {
        registered(&file).filter(BTreeSet::is_empty)
    });
    let status = svc.status().expect("status");
    assert_eq!(status["l5"]["registered"], false, "{status:#}");
    assert!(
        text(&svc.spp(&["status"])).contains("not registered: no ready worker in group 1"),
        "{status:#}"
    );
    // It starts again: registered again.
    std::fs::remove_file(svc.bin.join("worker-crashes-after-first")).unwrap();
    wait_for("the registration again", WAIT, || {
        registered(&file).filter(|r| r.len() == 3)
    });
    let out = svc.spp(&["stop"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!file.exists());
}

#[test]
fn l5_commands_say_when_l5_is_off() {
    let svc = Service::new(1, "");
    let status = start(&svc);
    assert!(status.get("l5").is_none_or(Value::is_null), "{status:#}");
    let out = svc.spp(&["l5", "list"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("L5 is off"), "{}", text(&out));
}
