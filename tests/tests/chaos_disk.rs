//! Chaos: a full log disk (issue 11, item 1). The service's `log_dir` is a
//! 64 KiB tmpfs, filled to the last byte before `spp start`. Logging must
//! never take a process down: lines that cannot be written are dropped and
//! counted, and everything else goes on.
//!
//! The choice for a start on a full log dir: the service starts (serving
//! matters more than its logs) and `spp start` says "log dir full" in its
//! output; `spp status` keeps saying so while the dir is full.
//!
//! Needs root (to mount the tmpfs); skipped with a printed reason
//! otherwise, or when the mount fails (no tmpfs in a container, say).

use spp_tests::client::TcpClient;
use spp_tests::http::{self, free_local_addr};
use spp_tests::{kill, metrics, wait_for, Binaries, Service, ServiceConfig};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The tmpfs's size.
const TMPFS_SIZE: &str = "64k";
/// How long a replaced worker, a counter or a status may take to show.
const WAIT: Duration = Duration::from_secs(15);
/// Echo calls per check.
const CALLS: usize = 20;

/// A tmpfs mounted on a directory; unmounted on drop (also on a panic).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a [`TMPFS_SIZE`] tmpfs on `dir` (created), or says why not.
    fn mount(dir: &Path) -> Result<Tmpfs, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not running as root (mounting a tmpfs needs it)".into());
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_SIZE}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }

    /// Writes a filler file until the file system says it is full;
    /// returns the bytes written. Bounded by the tmpfs's size.
    fn fill(&self) -> u64 {
        let mut file = std::fs::File::create(self.dir.join("filler")).expect("create filler");
        let chunk = [0u8; 1024];
        let mut written = 0u64;
        // 64 KiB in 1 KiB chunks: a few more rounds than it can hold.
        for _ in 0..1024 {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "filling: {e}");
                    break;
                }
            }
        }
        written
    }

    /// Frees the space the filler took.
    fn free(&self) {
        std::fs::remove_file(self.dir.join("filler")).expect("remove filler");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process that still holds a file there does not stop it.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// The service and its log dir's mount; the service stops first (fields
/// drop in order).
struct FullDisk {
    service: Service,
    mount: Tmpfs,
}

/// `CALLS` echo calls on one new connection.
fn serves(addr: SocketAddr, what: &str) {
    let mut client = TcpClient::connect(addr).unwrap_or_else(|e| panic!("{what}: connect: {e}"));
    for i in 0..CALLS {
        let payload = format!("{what} {i}");
        let reply = client
            .call(payload.as_bytes())
            .unwrap_or_else(|e| panic!("{what}: call {i}: {e}"));
        assert_eq!(reply, payload.as_bytes(), "{what}: call {i}");
    }
}

/// Every process's (name, pid, restarts).
fn processes(service: &Service) -> Vec<(String, i64, i64)> {
    let status = service.status();
    status["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_string(),
                p["pid"].as_i64().unwrap_or(-1),
                p["restarts"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

/// The proxy's `log_dropped` counter.
fn proxy_dropped(service: &Service) -> u64 {
    service.status()["proxy_stats"]["log_dropped"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn a_full_log_disk_takes_nothing_down() {
    let metrics_addr = free_local_addr();
    let mut cfg = ServiceConfig::single(&Binaries::locate().plugin("spp_echo"), 2);
    cfg.metrics = Some(metrics_addr.to_string());
    let service = Service::create(&cfg);
    let mount = match Tmpfs::mount(&service.dir.path().join("log")) {
        Ok(mount) => mount,
        Err(why) => {
            eprintln!("SKIPPED a_full_log_disk_takes_nothing_down: {why}");
            return;
        }
    };
    let mut env = FullDisk { service, mount };
    let filled = env.mount.fill();
    assert!(filled > 0, "the filler took the tmpfs's space");

    // A start on a full log dir: it starts and says so.
    let out = env.service.start_again();
    assert!(out.ok(), "spp start on a full log dir: {}", out.text());
    assert!(
        out.stdout.contains("log dir full"),
        "spp start says the log dir is full: {}",
        out.text()
    );
    let service = &env.service;
    let addr = service.tcp();
    serves(addr, "after start");

    // A killed worker comes back and serves; the proxy never restarts.
    let worker = service.pid_of("worker-g1-0").expect("worker-g1-0 runs");
    kill(worker, libc::SIGKILL);
    let successor = service.wait_replaced("worker-g1-0", worker, WAIT);
    assert!(
        successor.is_some(),
        "the killed worker came back: {}",
        service.status()
    );
    serves(addr, "after a worker kill");

    // SIGHUP (logrotate) to the controller, forwarded to every child:
    // each reopens its log and logs that it did (a dropped line, which
    // says the SIGHUP was handled). Nothing restarts.
    let before = processes(service);
    let proxy_before = proxy_dropped(service);
    let controller = service.controller_pid().expect("controller pid");
    kill(controller, libc::SIGHUP);
    let handled = wait_for(WAIT, || {
        (proxy_dropped(service) > proxy_before).then_some(())
    });
    assert!(
        handled.is_some(),
        "the proxy handled SIGHUP: {}",
        service.status()
    );
    assert_eq!(processes(service), before, "a SIGHUP crashes nothing");
    serves(addr, "after SIGHUP");

    // spp status: the dropped lines and the warning, in JSON and table.
    let status = service.status();
    assert!(
        status["log"]["dropped"].as_u64().unwrap_or(0) > 0,
        "{status}"
    );
    let warning = status["log"]["warning"].as_str().unwrap_or_default();
    assert!(warning.starts_with("log dir full: "), "{status}");
    let table = service.spp(&["status"]);
    assert!(
        table.stdout.contains("lines dropped") && table.stdout.contains("log dir full"),
        "{}",
        table.text()
    );

    // spp stat and Prometheus (sampled every second).
    let stat = wait_for(WAIT, || {
        let stat = service.stat_json().ok()?;
        let dropped = stat["proxy"]["counters"]["log_dropped"]["total"].as_u64()?;
        (dropped > 0 && stat["log"]["dir_full"] == true).then_some(stat)
    });
    assert!(
        stat.is_some(),
        "spp stat shows the drops: {:?}",
        service.stat_json()
    );
    let scraped = wait_for(WAIT, || {
        let body = http::get(metrics_addr, "/metrics").ok()?.body;
        let samples = metrics::parse(&body).ok()?;
        let dropped = metrics::value(&samples, "spp_proxy_log_dropped_total", &[])?;
        let full = metrics::value(&samples, "spp_log_dir_full", &[])?;
        (dropped > 0.0 && full == 1.0).then_some(())
    });
    assert!(
        scraped.is_some(),
        "/metrics shows the drops and the full dir"
    );

    // Space again: the warning goes, logging resumes.
    env.mount.free();
    let cleared = env
        .service
        .wait_status(WAIT, |s| s["log"]["warning"].is_null().then_some(()));
    assert!(cleared.is_some(), "{}", env.service.status());
    let worker = env.service.pid_of("worker-g1-1").expect("worker-g1-1 runs");
    kill(worker, libc::SIGKILL);
    assert!(env
        .service
        .wait_replaced("worker-g1-1", worker, WAIT)
        .is_some());
    serves(addr, "with space again");
    let stopped = env.service.stop();
    assert!(stopped.ok(), "spp stop: {}", stopped.text());
}
