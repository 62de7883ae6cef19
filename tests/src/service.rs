//! A running test service: `spp start` on a temp config, `spp status
//! --json`, `spp stat --json`, `spp reload`, `spp restart`, and a `Drop`
//! that always stops it.

use crate::{kill, pid_alive, wait_for, Binaries, ServiceConfig};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one `spp` CLI call may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// What an `spp` CLI call printed.
#[derive(Debug)]
pub struct SppOutput {
    /// Exit code (`None` if killed by a signal or timed out).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl SppOutput {
    /// Whether it exited 0.
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
    /// stdout and stderr together, for messages.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `spp args...` with a deadline.
pub fn run_spp(bins: &Binaries, args: &[&str]) -> SppOutput {
    run_spp_with_env(bins, args, &[])
}

/// Runs `spp args...` with `env` added to its environment, with a deadline
/// (past it the command is killed and `code` is `None`).
pub fn run_spp_with_env(bins: &Binaries, args: &[&str], env: &[(&str, &str)]) -> SppOutput {
    run_spp_wrapped(bins, &[], args, env)
}

/// Runs `wrapper... spp args...` (e.g. `ip netns exec NS spp ...`; no
/// wrapper: `spp` itself) with `env` added, with a deadline.
fn run_spp_wrapped(
    bins: &Binaries,
    wrapper: &[String],
    args: &[&str],
    env: &[(&str, &str)],
) -> SppOutput {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let mut command = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut command = Command::new(program);
            command.args(rest).arg(bins.spp());
            command
        }
        None => Command::new(bins.spp()),
    };
    let mut child = command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn spp");
    let deadline = Instant::now() + CLI_TIMEOUT;
    let code = loop {
        match child.try_wait().expect("try_wait") {
            Some(status) => break status.code(),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    SppOutput {
        code,
        stdout: read(&out_path),
        stderr: read(&err_path),
    }
}

/// A service started from a temp config.
pub struct Service {
    /// The binaries in use.
    pub bins: Binaries,
    /// The temp dir holding config, run and log dirs.
    pub dir: tempfile::TempDir,
    /// The config file.
    pub config: PathBuf,
    stopped: bool,
    seen_pids: RefCell<BTreeSet<i32>>,
    /// What every `spp` command of this service runs under (empty: none).
    wrapper: Vec<String>,
}

impl Service {
    /// Writes the config and runs `spp start`; returns the service and
    /// what `spp start` printed (it may have failed).
    pub fn try_start(cfg: &ServiceConfig) -> (Service, SppOutput) {
        let service = Service::create(cfg);
        let out = service.spp(&["start"]);
        if out.ok() {
            let _ = service.status();
        }
        (service, out)
    }

    /// Writes the config in a new temp dir without starting anything (to
    /// prepare its run or log dir first); `start_again` starts it.
    pub fn create(cfg: &ServiceConfig) -> Service {
        let bins = Binaries::locate();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("spp.toml");
        std::fs::write(&config, cfg.render(dir.path())).expect("write config");
        Service {
            bins,
            dir,
            config,
            stopped: false,
            seen_pids: RefCell::new(BTreeSet::new()),
            wrapper: Vec::new(),
        }
    }

    /// Starts the service with every `spp` command of it run under
    /// `wrapper` (e.g. `ip netns exec NS`: the whole service runs in that
    /// network namespace); panics with `spp start`'s output if it fails.
    pub fn start_wrapped(cfg: &ServiceConfig, wrapper: Vec<String>) -> Service {
        let mut service = Service::create(cfg);
        service.wrapper = wrapper;
        let out = service.start_again();
        assert!(
            out.ok(),
            "spp start ({:?}) failed: {}\n--- logs ---\n{}",
            service.wrapper,
            out.text(),
            service.logs()
        );
        service
    }

    /// Starts the service; panics with `spp start`'s output if it fails.
    pub fn start(cfg: &ServiceConfig) -> Service {
        let (service, out) = Service::try_start(cfg);
        assert!(
            out.ok(),
            "spp start failed: {}\n--- logs ---\n{}",
            out.text(),
            service.logs()
        );
        service
    }

    /// Runs `spp <cmd> -c <config> extra...`.
    pub fn spp(&self, cmd_and_args: &[&str]) -> SppOutput {
        let config = self.config.display().to_string();
        let mut args: Vec<&str> = cmd_and_args[..1].to_vec();
        args.extend(["-c", config.as_str()]);
        args.extend(&cmd_and_args[1..]);
        run_spp_wrapped(&self.bins, &self.wrapper, &args, &[])
    }

    /// `spp status --json`, parsed; remembers every pid it names.
    pub fn status(&self) -> Value {
        self.try_status()
            .unwrap_or_else(|out| panic!("spp status failed: {}", out.text()))
    }

    /// `spp status --json`, parsed, or what `spp status` printed when it
    /// failed or printed no JSON (for polls across a restart).
    pub fn try_status(&self) -> Result<Value, SppOutput> {
        let out = self.spp(&["status", "--json"]);
        if !out.ok() {
            return Err(out);
        }
        let value: Value = match serde_json::from_str(&out.stdout) {
            Ok(value) => value,
            Err(_) => return Err(out),
        };
        self.remember_pids(&value);
        Ok(value)
    }

    /// Polls `spp status --json` until `cond` returns `Some` (a failed
    /// status counts as "not yet") or `timeout` passes.
    pub fn wait_status<T>(
        &self,
        timeout: Duration,
        mut cond: impl FnMut(&Value) -> Option<T>,
    ) -> Option<T> {
        wait_for(timeout, || cond(&self.try_status().ok()?))
    }

    /// `spp stat --json` (the default window), parsed.
    pub fn stat_json(&self) -> Result<Value, String> {
        let out = self.spp(&["stat", "--json"]);
        if !out.ok() {
            return Err(format!("spp stat --json failed: {}", out.text()));
        }
        serde_json::from_str(&out.stdout)
            .map_err(|e| format!("spp stat --json printed no JSON ({e}): {}", out.text()))
    }

    /// The first group's in-flight gauge (requests its workers hold,
    /// running or suspended), from `spp stat --json`.
    pub fn in_flight(&self) -> Option<u64> {
        let report = self.stat_json().ok()?;
        report["groups"].as_array()?.first()?["counters"]["in_flight"]["total"].as_u64()
    }

    /// Waits up to `timeout` until [`Self::in_flight`] reads `n`; panics
    /// with the last reading and the logs otherwise.
    pub fn wait_in_flight(&self, n: u64, timeout: Duration) {
        let seen = wait_for(timeout, || (self.in_flight() == Some(n)).then_some(()));
        assert!(
            seen.is_some(),
            "in_flight never read {n} (last {:?})\n{}",
            self.in_flight(),
            self.logs()
        );
    }

    /// Runs `spp stat --json --watch SECS` and returns its first `lines`
    /// output lines (one report each), then kills it (it runs until
    /// interrupted). `Err` says what it printed instead, or that it fell
    /// silent for `timeout`.
    pub fn stat_watch(
        &self,
        secs: u64,
        lines: usize,
        timeout: Duration,
    ) -> Result<Vec<String>, String> {
        let config = self.config.display().to_string();
        let secs = secs.to_string();
        let mut child = Command::new(self.bins.spp())
            .args(["stat", "-c", &config, "--json", "--watch", &secs])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn spp stat --watch: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut got = Vec::new();
        let outcome = loop {
            if got.len() >= lines {
                break Ok(());
            }
            match rx.recv_timeout(timeout) {
                Ok(line) => got.push(line),
                Err(e) => break Err(format!("after {} line(s): {e}", got.len())),
            }
        };
        let _ = child.kill();
        let _ = child.wait();
        let _ = reader.join();
        match outcome {
            Ok(()) => Ok(got),
            Err(why) => {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                Err(format!("spp stat --watch: {why}; printed {got:?} {stderr}"))
            }
        }
    }

    /// Rewrites the config file from `cfg` (same run and log dirs), for
    /// `spp reload` and `spp restart`.
    pub fn write_config(&self, cfg: &ServiceConfig) {
        std::fs::write(&self.config, cfg.render(self.dir.path())).expect("write config");
    }

    /// Writes `text` as the config file as is (a bad config, say).
    pub fn write_config_text(&self, text: &str) {
        std::fs::write(&self.config, text).expect("write config");
    }

    /// `spp reload -c FILE`; remembers the pids of the result.
    pub fn reload(&self) -> SppOutput {
        let out = self.spp(&["reload"]);
        let _ = self.try_status();
        out
    }

    /// `spp restart -c FILE`; remembers the pids of the result.
    pub fn restart(&self) -> SppOutput {
        let out = self.spp(&["restart"]);
        let _ = self.try_status();
        out
    }

    /// The controller's pid, from the pid file.
    pub fn controller_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.dir.path().join("run/spp.pid")).ok()?;
        let pid = text.trim().parse().ok()?;
        self.seen_pids.borrow_mut().insert(pid);
        Some(pid)
    }

    /// A log file of the service (`"controller.log"`, `"proxy.log"`,
    /// `"worker-g1-0.log"`).
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join("log").join(name)
    }

    fn remember_pids(&self, value: &Value) {
        let mut seen = self.seen_pids.borrow_mut();
        if let Some(pid) = value["controller_pid"].as_i64() {
            seen.insert(pid as i32);
        }
        for p in value["processes"].as_array().into_iter().flatten() {
            if let Some(pid) = p["pid"].as_i64() {
                seen.insert(pid as i32);
            }
        }
    }

    /// The `n`-th listener address of `transport` ("tcp" or "udp").
    pub fn addr(&self, transport: &str, n: usize) -> SocketAddr {
        let status = self.status();
        let addrs: Vec<SocketAddr> = status["listeners"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|l| l["transport"] == transport)
            .filter_map(|l| l["addr"].as_str()?.parse().ok())
            .collect();
        *addrs
            .get(n)
            .unwrap_or_else(|| panic!("no {transport} listener #{n} in {status}"))
    }

    /// The first TCP listener.
    pub fn tcp(&self) -> SocketAddr {
        self.addr("tcp", 0)
    }

    /// The first UDP listener.
    pub fn udp(&self) -> SocketAddr {
        self.addr("udp", 0)
    }

    /// The status entry of a process by name ("proxy", "worker-g1-0").
    pub fn process(&self, name: &str) -> Value {
        let status = self.status();
        status["processes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no process {name} in {status}"))
    }

    /// The pid of a process by name, if it runs.
    pub fn pid_of(&self, name: &str) -> Option<i32> {
        self.process(name)["pid"].as_i64().map(|p| p as i32)
    }

    /// Waits until `name` runs with a pid other than `old` and is ready.
    pub fn wait_replaced(&self, name: &str, old: i32, timeout: Duration) -> Option<i32> {
        wait_for(timeout, || {
            let p = self.process(name);
            let pid = p["pid"].as_i64()? as i32;
            (pid != old && p["state"] == "ready").then_some(pid)
        })
    }

    /// Every log file's text, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("log")) {
            for entry in entries.flatten() {
                let body = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let tail: String = body
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                text.push_str(&format!("== {}\n{tail}\n", entry.path().display()));
            }
        }
        text
    }

    /// Runs `spp stop` and checks every process it ever saw is gone.
    pub fn stop(&mut self) -> SppOutput {
        let out = self.spp(&["stop"]);
        self.stopped = true;
        out
    }

    /// `spp start` again on the same config (after a stop or a crash);
    /// remembers the pids of the result.
    pub fn start_again(&mut self) -> SppOutput {
        let out = self.spp(&["start"]);
        if out.ok() {
            self.stopped = false;
            let _ = self.try_status();
        }
        out
    }

    /// A crash of the whole service: SIGKILL to the controller, then to
    /// every child `spp status --json` names, by pid; waits (up to
    /// `timeout`) until none of them runs. Returns the pids killed; panics
    /// if one survives.
    pub fn kill_tree(&self, timeout: Duration) -> Vec<i32> {
        let status = self.status();
        let mut pids: Vec<i32> = status["controller_pid"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .into_iter()
            .collect();
        // The controller first: it must not restart the children.
        pids.extend(crate::view::pids(&status));
        for &pid in &pids {
            kill(pid, libc::SIGKILL);
        }
        let gone = wait_for(timeout, || {
            pids.iter().all(|&pid| !pid_alive(pid)).then_some(())
        });
        assert!(
            gone.is_some(),
            "after SIGKILL, still running: {:?}",
            pids.iter().filter(|&&p| pid_alive(p)).collect::<Vec<_>>()
        );
        pids
    }

    /// Runs `spp <command> <sub> -c <config> extra...` (e.g. `spp l5 list
    /// -c FILE --json`).
    pub fn spp_sub(&self, command: &str, sub: &str, extra: &[&str]) -> SppOutput {
        let config = self.config.display().to_string();
        let mut args = vec![command, sub, "-c", config.as_str()];
        args.extend(extra);
        run_spp_wrapped(&self.bins, &self.wrapper, &args, &[])
    }

    /// Pids this handle has seen in status output.
    pub fn seen_pids(&self) -> Vec<i32> {
        self.seen_pids.borrow().iter().copied().collect()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.spp(&["stop"]);
        }
        // Anything still alive that we saw (and is still an spp process)
        // is killed by PID.
        for pid in self.seen_pids() {
            let cmdline =
                std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if pid_alive(pid) && cmdline.contains("spp") {
                kill(pid, libc::SIGKILL);
            }
        }
    }
}
