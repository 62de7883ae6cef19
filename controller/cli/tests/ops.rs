//! Operations for cron, timers and systemd, end to end with real `spp`
//! processes: log rotation by size (controller and real proxy), `spp
//! diskclear`, `spp monitor` (healthy, degraded, and bringing back a
//! killed controller), and systemd readiness on a fake `NOTIFY_SOCKET`.
//! The real-children tests need `cargo build --workspace` first.

mod common;

use common::{all_ready, pid_gone, pid_of, process, real_service, signal, text, wait_for, Service};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn start(svc: &Service) -> Value {
    let out = svc.spp(&["start", "--wait", "30s"]);
    assert!(out.status.success(), "start failed: {}", text(&out));
    let status = svc.status().expect("status after start");
    assert!(all_ready(&status), "{status:#}");
    status
}

/// Files in `dir` whose name starts with `prefix` (sorted).
fn files_starting(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

fn len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Sends one framed request (4-byte big-endian length) and reads the answer.
fn call(addr: &str, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut conn = TcpStream::connect(addr)?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut frame = u32::try_from(payload.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    conn.write_all(&frame)?;
    let mut head = [0u8; 4];
    conn.read_exact(&mut head)?;
    let mut body = vec![0u8; u32::from_be_bytes(head) as usize];
    conn.read_exact(&mut body)?;
    Ok(body)
}

#[test]
fn logs_past_max_size_are_rotated_and_the_live_logs_are_fresh_and_still_written() {
    let svc = real_service("spp_echo", 1, "[log]\nmax_size = \"1KiB\"\n", "");
    let status = start(&svc);
    let controller = status["controller_pid"].as_u64().unwrap();
    let log = svc.path("log");
    // Every SIGHUP makes the controller and the proxy log a line; the
    // tick then rotates what passed 1 KiB.
    wait_for("controller.log and proxy.log rotated", WAIT, || {
        signal(controller, libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(50));
        let c = files_starting(&log, "controller.log.");
        let p = files_starting(&log, "proxy.log.");
        (!c.is_empty() && !p.is_empty()).then_some(())
    });
    // The rotated proxy log holds the proxy's first lines; the live one is
    // a new file that does not.
    let rotated = files_starting(&log, "proxy.log.");
    let first = std::fs::read_to_string(&rotated[0]).unwrap();
    let first_line = first.lines().next().expect("a line").to_string();
    let live = log.join("proxy.log");
    let fresh = std::fs::read_to_string(&live).unwrap_or_default();
    assert!(!fresh.contains(&first_line), "live log not fresh:\n{fresh}");
    // Still written: one more SIGHUP lands in the live files.
    let (proxy_before, ctl_before) = (len(&live), len(&log.join("controller.log")));
    let after = wait_for("the live logs written", WAIT, || {
        signal(controller, libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(100));
        let text = std::fs::read_to_string(&live).unwrap_or_default();
        (text.contains("SIGHUP") && (len(&live) != proxy_before))
            .then_some(len(&log.join("controller.log")))
    });
    assert!(after > 0 && (after != ctl_before || ctl_before > 0));
    // The names are `<name>.<YYYYMMDD-HHMMSS>[-N]`.
    for f in files_starting(&log, "controller.log.") {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let stamp = name.trim_start_matches("controller.log.");
        assert!(stamp.len() >= 15 && stamp.as_bytes()[8] == b'-', "{name}");
    }
    // The service still serves.
    let addr = status["listeners"][0]["addr"].as_str().unwrap().to_string();
    assert_eq!(call(&addr, b"ping").unwrap(), b"ping");
}

/// Sets `path`'s modification time `ago` in the past (`touch -d`).
fn age(path: &Path, ago: &str) {
    let out = Command::new("touch")
        .arg("-m")
        .arg("-d")
        .arg(ago)
        .arg(path)
        .output()
        .expect("touch");
    assert!(out.status.success(), "{}", text(&out));
}

fn write(path: &Path, bytes: usize) {
    std::fs::write(path, vec![b'x'; bytes]).unwrap();
}

#[test]
fn diskclear_removes_old_rotated_logs_and_cores_keeps_live_and_recent_ones() {
    let svc = Service::with(
        1,
        "",
        "[log]\nkeep_age = \"1h\"\nkeep_total = \"1KiB\"\n",
        "",
    );
    let log = svc.path("log");
    let run = svc.path("run");
    std::fs::create_dir_all(&log).unwrap();
    std::fs::create_dir_all(&run).unwrap();
    // Old: removed by age (300 + 200 bytes).
    let old_rotated = log.join("proxy.log.20200101-000000");
    write(&old_rotated, 300);
    age(&old_rotated, "2 days ago");
    let core = run.join("core.4242");
    write(&core, 200);
    age(&core, "3 hours ago");
    // Live logs, however old and large: never touched.
    let live = log.join("proxy.log");
    write(&live, 5000);
    age(&live, "10 days ago");
    let controller_live = log.join("controller.log");
    write(&controller_live, 10);
    // Recent: 600 + 600 > 1 KiB, so the older one goes (600 bytes).
    let older_recent = log.join("worker-g1-0.log.20990101-000000");
    write(&older_recent, 600);
    age(&older_recent, "30 minutes ago");
    let newest = log.join("controller.log.20990101-000001");
    write(&newest, 600);
    // Not ours: left alone.
    let other = log.join("notes.txt");
    write(&other, 10);
    age(&other, "10 days ago");

    let out = svc.spp(&["diskclear"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("freed 3 file(s), 1100 bytes"), "{said}");
    for gone in [&old_rotated, &core, &older_recent] {
        assert!(!gone.exists(), "{} kept:\n{said}", gone.display());
        assert!(said.contains(&gone.display().to_string()), "{said}");
    }
    for kept in [&live, &controller_live, &newest, &other] {
        assert!(kept.exists(), "{} removed:\n{said}", kept.display());
    }
    // Nothing left to do.
    let out = svc.spp(&["diskclear"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("freed 0 file(s), 0 bytes"),
        "{}",
        text(&out)
    );
}

fn monitor(svc: &Service) -> (Option<i32>, String) {
    let out = svc.spp(&["monitor"]);
    (out.status.code(), text(&out))
}

#[test]
fn monitor_reports_healthy_then_brings_back_a_killed_controller() {
    let svc = real_service("spp_echo", 2, "", "");
    let status = start(&svc);
    let (code, said) = monitor(&svc);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("healthy"), "{said}");
    assert_eq!(said.lines().count(), 1, "{said}");

    // kill -9 the whole tree: the controller and every child.
    let controller = status["controller_pid"].as_u64().unwrap();
    let mut pids: Vec<u64> = status["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["pid"].as_u64())
        .collect();
    pids.push(controller);
    for &pid in &pids {
        signal(pid, libc::SIGKILL);
    }
    wait_for("the killed tree gone", WAIT, || {
        pids.iter().all(|&p| pid_gone(p)).then_some(())
    });

    let (code, said) = monitor(&svc);
    assert_eq!(code, Some(11), "{said}");
    assert!(said.contains("started again"), "{said}");
    let again = svc.status().expect("status after the monitor's start");
    assert!(all_ready(&again), "{again:#}");
    assert_ne!(again["controller_pid"].as_u64(), Some(controller));
    let addr = again["listeners"][0]["addr"].as_str().unwrap().to_string();
    assert_eq!(call(&addr, b"back").unwrap(), b"back");
    let (code, said) = monitor(&svc);
    assert_eq!(code, Some(0), "{said}");
}

#[test]
fn monitor_reports_a_group_below_strength_as_degraded() {
    let svc = Service::new(2, "");
    let status = start(&svc);
    svc.set("worker-crashes-after-first");
    let worker = pid_of(&status, "worker-g1-0").expect("worker pid");
    signal(worker, libc::SIGKILL);
    let said = wait_for("monitor says degraded", WAIT, || {
        let (code, said) = monitor(&svc);
        (code == Some(10)).then_some(said)
    });
    assert!(said.contains("degraded"), "{said}");
    assert!(said.contains("group 1"), "{said}");
    let now = svc.status().expect("status");
    assert!(process(&now, "worker-g1-0").is_some());
}

#[test]
fn monitor_does_not_start_a_second_controller_when_one_holds_the_pid_file_but_does_not_answer() {
    let svc = Service::new(1, "");
    let status = start(&svc);
    let controller = status["controller_pid"].as_u64().unwrap();
    // A stopped (SIGSTOP) controller holds its pid file and answers nothing.
    signal(controller, libc::SIGSTOP);
    let (code, said) = monitor(&svc);
    signal(controller, libc::SIGCONT);
    assert_eq!(code, Some(13), "{said}");
    assert!(said.contains("hung"), "{said}");
    let now = svc.status().expect("status");
    assert_eq!(now["controller_pid"].as_u64(), Some(controller));
}

/// One datagram within `WAIT` (the socket's read timeout), retrying a
/// receive that a signal interrupted (on Linux a timed `recv` fails with
/// EINTR after the process was stopped and continued, handler or not).
fn recv_within(socket: &UnixDatagram, buf: &mut [u8]) -> std::io::Result<usize> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match socket.recv(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                if std::time::Instant::now() >= deadline {
                    return Err(e);
                }
            }
            other => return other,
        }
    }
}

#[test]
fn a_foreground_controller_tells_a_fake_systemd_ready_then_stopping() {
    let svc = Service::new(1, "");
    let socket = svc.path("notify.sock");
    let fake = UnixDatagram::bind(&socket).unwrap();
    fake.set_read_timeout(Some(WAIT)).unwrap();
    let mut child = svc
        .command(&["start", "--foreground"])
        .env("NOTIFY_SOCKET", &socket)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn spp");
    let mut buf = [0u8; 256];
    let n = recv_within(&fake, &mut buf).expect("READY=1 within the bound");
    assert_eq!(&buf[..n], b"READY=1");
    let status = svc.status().expect("status once ready");
    assert!(all_ready(&status), "{status:#}");
    signal(u64::from(child.id()), libc::SIGTERM);
    let n = recv_within(&fake, &mut buf).expect("STOPPING=1 within the bound");
    assert_eq!(&buf[..n], b"STOPPING=1");
    wait_for("the foreground controller exits", WAIT, || {
        child.try_wait().ok().flatten()
    });
}
