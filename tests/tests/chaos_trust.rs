//! Chaos cases of trust (issue 11, items 5 and 6): who the processes run
//! as, what they leave readable, and what the embedded L5 registry accepts
//! from another local user.
//!
//! * With `service.user = "nobody"` the proxy and the workers run as
//!   nobody (their `/proc/PID/status` `Uid:` line) and the service answers;
//!   the run dir is 0750, every log 0640 and free of ANSI escapes.
//! * A registration file owned by another uid than its pid's, one with a
//!   heartbeat far in the future and one with an out-of-range weight never
//!   reach a relay's route table; a valid one written after them does.
//! * A registry dir writable by others without the sticky bit makes
//!   `spp check` and `spp start` fail naming the directory.
//!
//! Cases that need root (dropping to another user, chowning a file) skip
//! with a printed reason when the tests do not run as root.

use spp_tests::client::TcpClient;
use spp_tests::l5;
use spp_tests::{Binaries, L5Config, Service, ServiceConfig};
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The sid the echo service registers.
const SID: (u32, u32) = (64301, 1);
/// The user the children drop to.
const USER: &str = "nobody";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The uid `user` has on this machine (`id -u`).
fn uid_of(user: &str) -> Option<u32> {
    let out = std::process::Command::new("id")
        .args(["-u", user])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// The effective uid of `pid` (the second field of `Uid:` in its status).
fn effective_uid(pid: i32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode()
        & 0o7777
}

#[test]
fn children_run_as_the_service_user_and_files_stay_private() {
    if !is_root() {
        eprintln!("skipped: dropping to {USER} needs root");
        return;
    }
    let Some(nobody) = uid_of(USER) else {
        eprintln!("skipped: no user {USER} on this machine");
        return;
    };
    let mut cfg = ServiceConfig::single(&Binaries::locate().plugin("spp_echo"), 2);
    cfg.service_extra = vec![format!("user = {USER:?}")];
    let mut service = Service::start(&cfg);

    let mut client = TcpClient::connect(service.tcp()).expect("connect");
    for i in 0..20u32 {
        let payload = format!("as {USER} #{i}");
        assert_eq!(
            client.call(payload.as_bytes()).expect("call"),
            payload.as_bytes()
        );
    }
    for name in ["proxy", "worker-g1-0", "worker-g1-1"] {
        let pid = service.pid_of(name).expect("pid");
        assert_eq!(
            effective_uid(pid),
            Some(nobody),
            "{name} (pid {pid}) should run as {USER}"
        );
    }
    let controller = service.controller_pid().expect("controller pid");
    assert_eq!(
        effective_uid(controller),
        Some(0),
        "the controller stays root"
    );

    let run = service.dir.path().join("run");
    let log = service.dir.path().join("log");
    assert_eq!(mode(&run), 0o750, "run dir");
    assert_eq!(mode(&log), 0o750, "log dir");
    assert_eq!(std::fs::metadata(&log).expect("log dir").uid(), nobody);
    assert_eq!(mode(&run.join("spp.pid")) & 0o007, 0, "pid file");

    // logrotate: rename, SIGHUP; the proxy (as nobody) makes a new log.
    std::fs::set_permissions(service.dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("let nobody reach the log dir");
    let proxy_log = log.join("proxy.log");
    std::fs::rename(&proxy_log, log.join("proxy.log.1")).expect("rotate");
    // SAFETY: kill with a pid this test's service started.
    assert_eq!(unsafe { libc::kill(controller, libc::SIGHUP) }, 0);
    let reopened = spp_tests::wait_for(Duration::from_secs(10), || {
        std::fs::metadata(&proxy_log).ok().filter(|m| m.len() > 0)
    })
    .unwrap_or_else(|| panic!("proxy.log not reopened:\n{}", service.logs()));
    assert_eq!(
        reopened.uid(),
        nobody,
        "the reopened log is the proxy's own"
    );
    assert_eq!(reopened.mode() & 0o7777, 0o640);
    let _ = service.stop();
    let mut seen = 0;
    for entry in std::fs::read_dir(&log).expect("log dir").flatten() {
        let path = entry.path();
        assert_eq!(mode(&path), 0o640, "{}", path.display());
        let bytes = std::fs::read(&path).expect("log");
        assert!(
            !bytes.contains(&0x1b),
            "{} holds an ANSI escape",
            path.display()
        );
        seen += 1;
    }
    assert!(seen >= 4, "controller, proxy and two worker logs: {seen}");
}

/// A registration file's JSON, as `spp_daemon::l5::registry::embedded`
/// writes it.
fn record(pid: u32, heartbeat_ms: u64, addr: SocketAddr, weight: u32) -> String {
    format!(
        r#"{{"service":"forged","pid":{pid},"heartbeat_ms":{heartbeat_ms},"instances":[{{"sid":{{"modid":{},"cmdid":{}}},"addr":"{addr}","weight":{weight}}}]}}"#,
        SID.0, SID.1
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn embedded(registry: &Path, sid: Option<(u32, u32)>) -> L5Config {
    L5Config {
        registry_dir: Some(registry.to_path_buf()),
        ..l5::test_l5("embedded", sid)
    }
}

#[test]
fn forged_registrations_never_reach_the_route_table() {
    let registry = tempfile::tempdir().expect("registry dir");
    std::fs::set_permissions(registry.path(), std::fs::Permissions::from_mode(0o1777))
        .expect("chmod");
    let a = Service::start(&l5::echo_config("a", embedded(registry.path(), Some(SID))));
    let r = Service::start(&l5::relay_config("r", SID, embedded(registry.path(), None)));
    let a_addr = a.tcp();
    l5::wait_view(&r, SID, "A should be listed", |nodes| {
        l5::find(nodes, a_addr).is_some()
    });

    // Forged files, by this (live) test process: addresses nothing listens on.
    let me = std::process::id();
    let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let (future, heavy, foreign, valid) = (addr(9), addr(10), addr(11), addr(12));
    let year_ms = 365 * 86_400 * 1000;
    let put = |name: &str, text: String| {
        let path = registry.path().join(name);
        std::fs::write(&path, text).expect("write record");
        path
    };
    put("future-1.json", record(me, now_ms() + year_ms, future, 100));
    put("heavy-1.json", record(me, now_ms(), heavy, 10_000));
    let mut forged = vec![future, heavy];
    if is_root() {
        // Owned by nobody, in the name of A's (root) controller.
        let a_pid = u32::try_from(a.controller_pid().expect("A's pid")).expect("pid");
        let file = put("foreign-1.json", record(a_pid, now_ms(), foreign, 100));
        let nobody = uid_of(USER).unwrap_or(65_534);
        std::os::unix::fs::chown(&file, Some(nobody), None).expect("chown");
        forged.push(foreign);
    } else {
        eprintln!("skipped the foreign-owner case: chown needs root");
    }
    // Written last: once the relay lists it, it has read the others too.
    put("valid-1.json", record(me, now_ms(), valid, 100));
    l5::wait_view(
        &r,
        SID,
        "the valid registration should be listed",
        |nodes| l5::find(nodes, valid).is_some(),
    );
    let nodes = l5::get(&r, SID).unwrap_or_else(|e| panic!("{e}"));
    for addr in &forged {
        assert!(
            l5::find(&nodes, *addr).is_none(),
            "forged {addr} must not be routable: {nodes:#?}"
        );
    }
    assert!(l5::find(&nodes, a_addr).is_some(), "{nodes:#?}");
    let logs = r.logs();
    for why in ["ahead of this clock", "is more than 1000"] {
        assert!(logs.contains(why), "the relay should log {why:?}:\n{logs}");
    }
}

#[test]
fn a_registry_dir_writable_by_others_without_the_sticky_bit_is_refused() {
    let registry = tempfile::tempdir().expect("registry dir");
    std::fs::set_permissions(registry.path(), std::fs::Permissions::from_mode(0o777))
        .expect("chmod");
    let dir = registry.path().display().to_string();
    let cfg = l5::echo_config("a", embedded(registry.path(), Some(SID)));
    let (service, started) = Service::try_start(&cfg);
    assert!(!started.ok(), "start must fail: {}", started.text());
    let check = service.spp(&["check"]);
    for (what, out) in [("start", &started), ("check", &check)] {
        let text = out.text();
        assert!(!out.ok(), "{what} must fail: {text}");
        assert!(
            text.contains(&dir) && text.contains("sticky"),
            "{what} should name {dir} and the reason: {text}"
        );
    }
}
