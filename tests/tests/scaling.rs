//! Per-interval expansion (the seeds' 蜂巢 rule) with a one-second interval:
//! a group whose workers sleep inside `process` under steady load grows
//! past its start size, then shrinks back to its minimum once the load
//! stops; no client sees an error meanwhile, and a worker stopped by a
//! scale-down stays stopped.

use serde_json::Value;
use spp_tests::faulty;
use spp_tests::load::Load;
use spp_tests::view::{self, ready_workers, running_workers, Proc};
use spp_tests::{Binaries, GroupConfig, ScalingConfig, Service, ServiceConfig};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The group of the test.
const GROUP: u32 = 1;
/// Workers at start; also the group's minimum.
const MIN_WORKERS: u32 = 1;
/// The group's maximum.
const MAX_WORKERS: u32 = 3;
/// `scaling.interval` and `scaling.cooldown` of the test.
const INTERVAL: &str = "1s";
/// How long each loaded request sleeps inside `process`.
const WORK_MS: u64 = 50;
/// Clients sending sleeping requests: more than [`MAX_WORKERS`], so every
/// worker stays busy (busy > workers x interval x 0.6 at any size).
const LOAD_CLIENTS: usize = 4;
/// Bound on each wait for the group to change size (a few intervals).
const RESIZE_WAIT: Duration = Duration::from_secs(30);
/// How long a stopped worker is watched for an unwanted restart: a few
/// scaling intervals and many restart back-offs.
const WATCH_STOPPED: Duration = Duration::from_secs(3);

fn scaling_config() -> ServiceConfig {
    let bins = Binaries::locate();
    let mut cfg = ServiceConfig::single(&bins.plugin(faulty::PLUGIN), MIN_WORKERS);
    cfg.scaling = Some(ScalingConfig {
        interval: Some(INTERVAL.into()),
        cooldown: Some(INTERVAL.into()),
        ..ScalingConfig::default()
    });
    let group = cfg.group_mut();
    group.min_workers = Some(MIN_WORKERS);
    group.max_workers = Some(MAX_WORKERS);
    cfg
}

fn names(procs: &[Proc]) -> BTreeSet<String> {
    procs.iter().map(|p| p.name.clone()).collect()
}

#[test]
fn the_group_grows_under_load_and_shrinks_back_when_idle() {
    let service = Service::start(&scaling_config());
    let addr = service.tcp();
    let start = service.status();
    assert_eq!(
        ready_workers(&start, GROUP).len(),
        MIN_WORKERS as usize,
        "{start}"
    );

    // A light client calls throughout: growth and shrink must not fail it.
    let light = Load::echo(addr, 1);
    let sleepers = Load::start(
        addr,
        LOAD_CLIENTS,
        Arc::new(|c, i| faulty::sleep(WORK_MS, &format!("{c}-{i}"))),
    );

    let grown = service.wait_status(RESIZE_WAIT, |status| {
        let ready = ready_workers(status, GROUP);
        (ready.len() > MIN_WORKERS as usize).then_some(ready)
    });
    let grown = grown.unwrap_or_else(|| {
        panic!(
            "the group did not grow under load: {}\n{}",
            service.status(),
            service.logs()
        )
    });
    assert!(grown.len() <= MAX_WORKERS as usize, "{grown:?}");
    let grown_status = service.status();
    let up = last_change(&grown_status, "up")
        .unwrap_or_else(|| panic!("the growth is visible in spp status: {grown_status}"));
    assert!(
        up["to"].as_u64() > up["from"].as_u64()
            && up["busy_ratio"].as_f64() > up["up_busy"].as_f64(),
        "the decision carries its figures: {up}"
    );

    let report = sleepers.finish();
    assert!(report.clean(), "no error while growing: {report:?}");
    assert!(report.ok > 0, "{report:?}");

    let peak = service.status();
    let peak_names = names(&running_workers(&peak, GROUP));
    let shrunk = service.wait_status(RESIZE_WAIT, |status| {
        let running = running_workers(status, GROUP);
        (running.len() == MIN_WORKERS as usize && running.iter().all(Proc::ready))
            .then_some(running)
    });
    let shrunk = shrunk.unwrap_or_else(|| {
        panic!(
            "the group did not shrink back to {MIN_WORKERS} when idle: {}\n{}",
            service.status(),
            service.logs()
        )
    });
    let shrunk_status = service.status();
    let down = last_change(&shrunk_status, "down")
        .unwrap_or_else(|| panic!("the shrink is visible in spp status: {shrunk_status}"));
    assert!(
        down["to"].as_u64() < down["from"].as_u64()
            && down["busy_ratio"].as_f64() < down["down_busy"].as_f64(),
        "the decision carries its figures: {down}"
    );
    let kept = names(&shrunk);
    let stopped: BTreeSet<String> = peak_names.difference(&kept).cloned().collect();
    assert!(!stopped.is_empty(), "peak {peak_names:?}, now {kept:?}");

    // The stopped workers stay stopped: at every look over a few
    // intervals their slots are gone from status (not meant to run) or
    // down (not waiting to restart), and the group stays at its minimum.
    let watch_until = Instant::now() + WATCH_STOPPED;
    while Instant::now() < watch_until {
        let status = service.status();
        for name in &stopped {
            if let Some(p) = view::process(&status, name) {
                assert!(
                    p.pid.is_none() && p.state == "down",
                    "a scaled-down worker is not restarted: {p:?}"
                );
            }
        }
        let running = running_workers(&status, GROUP);
        assert_eq!(running.len(), MIN_WORKERS as usize, "{running:?}");
        std::thread::sleep(Duration::from_millis(200));
    }

    assert!(
        light.progresses(10, RESIZE_WAIT),
        "the light client is served"
    );
    let report = light.finish();
    assert!(report.clean(), "no error while shrinking: {report:?}");
}

/// The group's last size change in `spp status --json` (`groups[].
/// last_change`: action, from, to and the figures), if it was `action`.
fn last_change(status: &Value, action: &str) -> Option<Value> {
    let group = status["groups"]
        .as_array()?
        .iter()
        .find(|g| g["id"] == GROUP)?;
    let change = &group["last_change"];
    (change["action"] == action).then(|| change.clone())
}

/// The machine cap of the cap test: the loaded group may reach 2 while
/// the other group holds 1.
const MACHINE_CAP: u32 = 3;

#[test]
fn growth_stops_at_the_machine_cap_counting_every_group() {
    let bins = Binaries::locate();
    let mut cfg = scaling_config();
    if let Some(scaling) = cfg.scaling.as_mut() {
        scaling.max_total_workers = Some(MACHINE_CAP);
    }
    cfg.groups
        .push(GroupConfig::new(GROUP + 1, &bins.plugin("spp_echo"), 1));
    let service = Service::start(&cfg);
    let sleepers = Load::start(
        service.tcp(),
        LOAD_CLIENTS,
        Arc::new(|c, i| faulty::sleep(WORK_MS, &format!("{c}-{i}"))),
    );

    // Grows while there is room, then holds at the cap although busy.
    let mut most = 0;
    let capped = service.wait_status(RESIZE_WAIT, |status| {
        most = most.max(running_workers(status, GROUP).len());
        let group = status["groups"]
            .as_array()?
            .iter()
            .find(|g| g["id"] == GROUP)?;
        let reason = group["last_decision"]["reason"].as_str()?;
        reason.contains("machine cap").then(|| status.clone())
    });
    let report = sleepers.finish();
    let capped = capped.unwrap_or_else(|| {
        panic!(
            "no hold at the machine cap: {}\n{}",
            service.status(),
            service.logs()
        )
    });
    let allowed = (MACHINE_CAP - 1) as usize;
    assert!(
        most <= allowed,
        "the loaded group ran {most} workers, above what the cap of {MACHINE_CAP} leaves it ({allowed})"
    );
    assert_eq!(
        running_workers(&capped, GROUP).len(),
        allowed,
        "it grew to the cap: {capped}"
    );
    assert!(report.clean(), "{report:?}");
}
