//! Helpers for the controller's own tests: a temp service directory with a
//! config, shell-script stand-ins for `spp-proxy` / `spp-worker` that mark
//! themselves Ready in shared memory (through /proc/self/fd) and then sleep
//! (ignoring SIGHUP), and [`real_service`] for the real children. Files in
//! the stand-ins' directory switch behaviours on: `worker-init-fails`,
//! `worker-crashes-after-first`, `proxy-ignores-term`,
//! `worker-drains-slowly` (takes 100 ms to exit on SIGTERM),
//! `worker-hangs-first` (the first run of a worker stamps
//! `in_process_since_ms` as if stuck in `spp_process` since boot).

#![allow(dead_code)]

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Offset of `proxy_state` in `ProxyHeader` and of `worker_state` in
/// `PairHeader` (both after one 64-byte line of constants).
const STATE_OFFSET: usize = 64;
/// Offset of `in_process_since_ms` in `PairHeader` (its fifth cache line).
const IN_PROCESS_OFFSET: usize = 256;

fn mark_ready(fd_var: &str) -> String {
    format!("printf '\\002' | dd of=/proc/self/fd/${fd_var} bs=1 seek={STATE_OFFSET} conv=notrunc status=none")
}

/// Stores 1 (ms after boot, little-endian u64) as `in_process_since_ms`.
fn mark_stuck(fd_var: &str) -> String {
    format!("printf '\\001\\000\\000\\000\\000\\000\\000\\000' | dd of=/proc/self/fd/${fd_var} bs=1 seek={IN_PROCESS_OFFSET} conv=notrunc status=none")
}

fn proxy_script() -> String {
    format!(
        r#"#!/bin/sh
dir=$(dirname "$0")
fd=$(printf '%s' "$SPP_LAUNCH" | sed -n 's/.*"proxy_region_fd":\([0-9]*\).*/\1/p')
epoch=$(printf '%s' "$SPP_LAUNCH" | sed -n 's/.*"epoch":\([0-9]*\).*/\1/p')
echo "fake proxy $$ epoch $epoch"
trap '' HUP
if [ -e "$dir/proxy-ignores-term" ]; then trap '' TERM; fi
{}
exec sleep 1000
"#,
        mark_ready("fd")
    )
}

fn worker_script() -> String {
    format!(
        r#"#!/bin/sh
dir=$(dirname "$0")
group=$(printf '%s' "$SPP_LAUNCH" | sed -n 's/.*"group":\([0-9]*\).*/\1/p')
index=$(printf '%s' "$SPP_LAUNCH" | sed -n 's/.*"index":\([0-9]*\).*/\1/p')
fd=$(printf '%s' "$SPP_LAUNCH" | sed -n 's/.*"region_fd":\([0-9]*\).*/\1/p')
count="$dir/starts-g$group-$index"
n=$(cat "$count" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > "$count"
echo "fake worker g$group/$index $$ start $n"
trap '' HUP
if [ -e "$dir/worker-init-fails" ]; then echo "fake worker: init returned 7" >&2; exit 3; fi
if [ -e "$dir/worker-crashes-after-first" ] && [ "$n" -gt 1 ]; then exit 1; fi
if [ -e "$dir/worker-drains-slowly" ]; then
  trap 'kill $sleeper; sleep 0.1; echo "fake worker: drained"; exit 0' TERM
  {ready}
  sleep 1000 &
  sleeper=$!
  wait
  exit 0
fi
{ready}
if [ -e "$dir/worker-hangs-first" ] && [ "$n" -eq 1 ]; then {stuck}; fi
exec sleep 1000
"#,
        ready = mark_ready("fd"),
        stuck = mark_stuck("fd")
    )
}

/// The bundled echo plugin (built as a dev-dependency).
pub fn echo_plugin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir").to_path_buf();
    [deps.join("libspp_echo.so"), deps.join("../libspp_echo.so")]
        .into_iter()
        .find(|p| p.is_file())
        .expect("libspp_echo.so: run `cargo build -p spp-example-echo`")
}

/// One service under test.
pub struct Service {
    pub dir: tempfile::TempDir,
    pub bin: PathBuf,
    pub config: PathBuf,
}

impl Service {
    /// A service with `workers` workers in group 1 listening on ephemeral
    /// ports; `extra_service` is appended to `[service]`.
    pub fn new(workers: u32, extra_service: &str) -> Service {
        Service::with(
            workers,
            extra_service,
            "",
            &format!("max_workers = {}", workers + 1),
        )
    }

    /// Like [`Service::new`]; `sections` is inserted before `[[group]]`
    /// (e.g. a `[scaling]` table) and `extra_group` appended to the group.
    pub fn with(workers: u32, extra_service: &str, sections: &str, extra_group: &str) -> Service {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("bin dir");
        for (name, text) in [
            ("spp-proxy", proxy_script()),
            ("spp-worker", worker_script()),
        ] {
            let path = bin.join(name);
            std::fs::write(&path, text).expect("write stand-in");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let plugin = echo_plugin();
        let config = dir.path().join("spp.toml");
        let text = format!(
            r#"[service]
name = "t"
run_dir = "run"
log_dir = "log"
{extra_service}

[proxy]
listen = ["tcp://127.0.0.1:0", "udp://127.0.0.1:0", "tcp://[::1]:0"]
plugin = "{plugin}"
max_request_size = "16KiB"

[rings]
request_size = "64KiB"
response_size = "64KiB"

{sections}

[[group]]
id = 1
plugin = "{plugin}"
workers = {workers}
{extra_group}
"#,
            plugin = plugin.display(),
        );
        std::fs::write(&config, text).expect("write config");
        Service { dir, bin, config }
    }

    /// Turns a stand-in behaviour on.
    pub fn set(&self, flag: &str) {
        std::fs::write(self.bin.join(flag), "").expect("flag file");
    }

    /// `spp ARGS -c CONFIG` with the stand-ins as children.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_spp"));
        cmd.args(args)
            .arg("-c")
            .arg(&self.config)
            .env("SPP_BIN_DIR", &self.bin);
        cmd
    }

    /// Runs `spp ARGS -c CONFIG` to completion.
    pub fn spp(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run spp")
    }

    /// `spp status --json`, if the service answers.
    pub fn status(&self) -> Option<Value> {
        let out = self.spp(&["status", "--json"]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Replaces `from` (which must occur) by `to` in the config file.
    pub fn edit(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        assert!(
            text.contains(from),
            "{from:?} is not in the config:\n{text}"
        );
        std::fs::write(&self.config, text.replacen(from, to, 1)).expect("write config");
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // Leave no process behind, whatever the test did: `spp stop` needs a
        // valid config; failing that, SIGTERM the controller by its pid file
        // (it stops its children; they also get PDEATHSIG).
        if self.spp(&["stop"]).status.success() {
            return;
        }
        let pid = self
            .read("run/spp.pid")
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|&pid| !pid_gone(pid));
        if let Some(pid) = pid {
            signal(pid, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while !pid_gone(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Text of an output for assertions.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Polls `probe` until it returns `Some`, for at most `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` is gone (no process, or a zombie awaiting its reaper).
pub fn pid_gone(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// The pid of process `name` in a status.
pub fn pid_of(status: &Value, name: &str) -> Option<u64> {
    process(status, name)?["pid"].as_u64()
}

/// Process `name` in a status.
pub fn process<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    status["processes"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
}

/// Whether every process is ready.
pub fn all_ready(status: &Value) -> bool {
    status["state"] == "running"
        && status["processes"]
            .as_array()
            .is_some_and(|ps| ps.iter().all(|p| p["state"] == "ready"))
}

/// The fds open in process `pid`.
pub fn open_fds(pid: u64) -> Vec<i64> {
    let mut fds: Vec<i64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    fds.sort_unstable();
    fds
}

/// The `SPP_LAUNCH` spec process `pid` was started with.
pub fn launch_of(pid: u64) -> Value {
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    env.split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(b"SPP_LAUNCH="))
        .and_then(|v| serde_json::from_slice(v).ok())
        .unwrap_or(Value::Null)
}

/// Every fd number in a launch spec (the `*fd` fields, anywhere).
pub fn launch_fds(spec: &Value) -> Vec<i64> {
    fn walk(v: &Value, out: &mut Vec<i64>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match v.as_i64() {
                        Some(fd) if k == "fd" || k.ends_with("_fd") => out.push(fd),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = vec![0, 1, 2];
    walk(spec, &mut out);
    out.sort_unstable();
    out.dedup();
    out
}

/// True when `path` does not exist.
pub fn gone(path: &Path) -> bool {
    !path.exists()
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u64, sig: i32) {
    let pid = libc::pid_t::try_from(pid).expect("a pid");
    // SAFETY: kill takes plain integers; the pid is a child of this test.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill {pid}");
}

/// The directory holding `spp`, `spp-proxy`, `spp-worker` and the plugins.
pub fn bin_dir() -> PathBuf {
    let spp = PathBuf::from(env!("CARGO_BIN_EXE_spp"));
    let dir = spp.parent().expect("target dir").to_path_buf();
    for name in [
        "spp-proxy",
        "spp-worker",
        "libspp_echo.so",
        "libspp_faulty.so",
    ] {
        assert!(
            dir.join(name).is_file(),
            "{} is missing: build first with `cargo build --workspace`",
            dir.join(name).display()
        );
    }
    dir
}

/// A service of the real binaries: `workers` workers of `plugin` (a
/// library name in the target dir), `sections` inserted before
/// `[[group]]`, `extra_group` added to the group.
pub fn real_service(plugin: &str, workers: u32, sections: &str, extra_group: &str) -> Service {
    let dir = bin_dir();
    let svc = Service::with(workers, "stop_grace = \"2s\"", sections, extra_group);
    let lib = dir.join(format!("lib{plugin}.so")).display().to_string();
    let echo = echo_plugin().display().to_string();
    // The group serves `plugin`; the proxy frames with the echo plugin
    // (the same 4-byte length prefix).
    let text = std::fs::read_to_string(&svc.config).expect("read config");
    let at = text.find("[[group]]").expect("a group");
    let (head, group) = text.split_at(at);
    std::fs::write(&svc.config, format!("{head}{}", group.replace(&echo, &lib)))
        .expect("write config");
    // Real children instead of the stand-ins.
    for name in ["spp-proxy", "spp-worker"] {
        std::fs::remove_file(svc.bin.join(name)).expect("remove stand-in");
        std::os::unix::fs::symlink(dir.join(name), svc.bin.join(name)).expect("symlink");
    }
    svc
}

/// Sends one framed request (4-byte big-endian length, then the payload)
/// and reads the framed answer.
pub fn call(conn: &mut std::net::TcpStream, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Write};
    let len = u32::try_from(payload.len()).unwrap();
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    conn.write_all(&frame)?;
    let mut head = [0u8; 4];
    conn.read_exact(&mut head)?;
    let mut body = vec![0u8; u32::from_be_bytes(head) as usize];
    conn.read_exact(&mut body)?;
    Ok(body)
}

/// The pids of every running worker in a status report.
pub fn worker_pids(status: &Value) -> Vec<u64> {
    status["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["role"] == "worker")
        .filter_map(|p| p["pid"].as_u64())
        .collect()
}

/// A client calling on `client` from another thread, each answer checked,
/// until the returned flag is set; the thread returns how many calls were
/// answered, or the first failure.
pub fn keep_calling(
    mut client: std::net::TcpStream,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<Result<u64, String>>,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let over = std::sync::Arc::clone(&done);
    let calls = std::thread::spawn(move || {
        let mut answered = 0u64;
        while !over.load(Ordering::Relaxed) {
            let payload = format!("during {answered}");
            match call(&mut client, payload.as_bytes()) {
                Ok(answer) if answer == payload.as_bytes() => answered += 1,
                Ok(other) => return Err(format!("wrong answer {other:?} to {payload}")),
                Err(e) => return Err(format!("call {answered}: {e}")),
            }
        }
        Ok(answered)
    });
    (done, calls)
}
