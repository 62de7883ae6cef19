//! The spp service under test: a config generated in a temp dir (a plugin
//! — echo, sleep-echo or relay — with its `plugin_conf` and the proxy's
//! own, `proxy.processes` shards, optionally in micro-thread or async mode,
//! with variables added to spp's environment; TCP and
//! UDP on 127.0.0.1:0), `spp start`, the real
//! addresses and pids from `spp status --json`, and `spp stop` (then
//! SIGKILL to any pid it had reported that is still there).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::bins::Binaries;
use super::child;
use super::error::CompareError;
use super::process;

/// The config's file name inside the temp dir.
const CONFIG_FILE: &str = "spp.toml";
/// The proxy's process name in the status.
const PROXY: &str = "proxy";
/// How long to wait for a pid to vanish after `spp stop` returned.
const GONE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections the proxy accepts at least (its config default).
pub const MIN_MAX_CONNECTIONS: usize = 10_000;
/// Extra connections allowed above what a run opens.
const CONNECTION_HEADROOM: usize = 256;

/// Extra micro-threads allowed per worker above the connections a run opens.
const IN_FLIGHT_HEADROOM: usize = 64;

/// What the generated service looks like.
#[derive(Clone, Debug)]
pub struct SppSetup {
    /// The service's name (distinct per service of one run).
    pub name: &'static str,
    /// Worker processes in the one group.
    pub workers: u32,
    /// Connections a run will hold open at once at most.
    pub connections: usize,
    /// The plugin of the proxy and the group.
    pub plugin: PathBuf,
    /// The group's `plugin_conf` (the proxy's is empty).
    pub plugin_conf: String,
    /// Run the group with `mode = "microthread"`, `max_in_flight` above
    /// `connections`.
    pub microthread: bool,
    /// Run the group with `mode = "async"` (an async Rust plugin),
    /// `max_in_flight` above `connections` (instead of `microthread`).
    pub async_mode: bool,
    /// Variables added to the environment of every `spp` command (the
    /// controller, and so its workers, inherit them from `spp start`).
    pub env: Vec<(String, String)>,
    /// `proxy.processes`: proxy shards.
    pub proxy_processes: u16,
    /// The proxy's `plugin_conf` (the echo plugin's `input_cost_us=N`
    /// makes its framing cost CPU; empty: it only frames).
    pub proxy_plugin_conf: String,
}

impl SppSetup {
    /// The echo plugin in plain mode.
    pub fn echo(bins: &Binaries, workers: u32, connections: usize) -> Self {
        SppSetup {
            name: "spp-bench",
            workers,
            connections,
            plugin: bins.echo_plugin(),
            plugin_conf: String::new(),
            microthread: false,
            async_mode: false,
            env: Vec::new(),
            proxy_processes: 1,
            proxy_plugin_conf: String::new(),
        }
    }

    /// The group's `max_in_flight` in micro-thread mode.
    pub fn max_in_flight(&self) -> usize {
        self.connections + IN_FLIGHT_HEADROOM
    }
}

/// A started (or about to be started) spp service.
#[derive(Debug)]
pub struct SppService {
    spp: PathBuf,
    dir: tempfile::TempDir,
    config: PathBuf,
    env: Vec<(String, String)>,
    pids: BTreeSet<u32>,
    started: bool,
}

/// Where the started service listens.
#[derive(Clone, Copy, Debug)]
pub struct SppAddrs {
    /// The TCP listener.
    pub tcp: SocketAddr,
    /// The UDP listener.
    pub udp: SocketAddr,
    /// The proxy's pid.
    pub proxy_pid: u32,
}

fn quoted(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// The TOML of the service.
fn render(dir: &Path, setup: &SppSetup) -> String {
    let plugin = &setup.plugin;
    let max_connections = (setup.connections + CONNECTION_HEADROOM).max(MIN_MAX_CONNECTIONS);
    let mut out = String::new();
    let _ = writeln!(out, "[service]\nname = {:?}", setup.name);
    let _ = writeln!(out, "run_dir = {}", quoted(&dir.join("run")));
    let _ = writeln!(out, "log_dir = {}", quoted(&dir.join("log")));
    let _ = writeln!(out, "log_level = \"warn\"\n");
    let _ = writeln!(
        out,
        "[proxy]\nlisten = [\"tcp://127.0.0.1:0\", \"udp://127.0.0.1:0\"]"
    );
    let _ = writeln!(out, "plugin = {}", quoted(plugin));
    let _ = writeln!(out, "plugin_conf = {:?}", setup.proxy_plugin_conf);
    let _ = writeln!(out, "max_connections = {max_connections}");
    let _ = writeln!(out, "processes = {}\n", setup.proxy_processes);
    let _ = writeln!(out, "[[group]]\nid = 1\nplugin = {}", quoted(plugin));
    let _ = writeln!(out, "plugin_conf = {:?}", setup.plugin_conf);
    let _ = writeln!(out, "workers = {}", setup.workers);
    if setup.microthread {
        let _ = writeln!(out, "mode = \"microthread\"");
        let _ = writeln!(out, "max_in_flight = {}", setup.max_in_flight());
    } else if setup.async_mode {
        let _ = writeln!(out, "mode = \"async\"");
        let _ = writeln!(out, "max_in_flight = {}", setup.max_in_flight());
    }
    out
}

fn describe(output: &Output) -> String {
    let mut text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let err = String::from_utf8_lossy(&output.stderr);
    if !err.trim().is_empty() {
        if !text.is_empty() {
            text.push_str("; ");
        }
        text.push_str(err.trim());
    }
    text
}

impl SppService {
    /// Writes the config into a new temp dir; starts nothing.
    pub fn prepare(bins: &Binaries, setup: &SppSetup) -> Result<Self, CompareError> {
        let dir = child::temp_dir("spp-bench-")?;
        let config = dir.path().join(CONFIG_FILE);
        let text = render(dir.path(), setup);
        std::fs::write(&config, text).map_err(|source| CompareError::Io {
            what: "cannot write",
            path: config.clone(),
            source,
        })?;
        Ok(SppService {
            spp: bins.spp(),
            dir,
            config,
            env: setup.env.clone(),
            pids: BTreeSet::new(),
            started: false,
        })
    }

    /// The generated config file.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// The temp dir (logs are under `log/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, args: &[&str]) -> Result<Output, CompareError> {
        let mut cmd = Command::new(&self.spp);
        cmd.args(args)
            .arg("-c")
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        process::detach(&mut cmd)
            .output()
            .map_err(|source| CompareError::Spawn {
                program: self.spp.clone(),
                source,
            })
    }

    fn run_ok(&self, args: &[&str]) -> Result<Output, CompareError> {
        let output = self.run(args)?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(CompareError::Spp {
                command: args.join(" "),
                status: output.status.to_string(),
                output: describe(&output),
            })
        }
    }

    /// `spp start`; then reads the addresses from the status.
    pub fn start(&mut self) -> Result<SppAddrs, CompareError> {
        self.started = true;
        self.run_ok(&["start"])?;
        let status = self.status()?;
        addrs(&status)
    }

    /// `spp status --json`, parsed; remembers every pid it names.
    pub fn status(&mut self) -> Result<Value, CompareError> {
        let output = self.run_ok(&["status", "--json"])?;
        let value: Value =
            serde_json::from_slice(&output.stdout).map_err(|e| CompareError::Status {
                why: format!("not JSON ({e})"),
            })?;
        let pids = value["processes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["pid"].as_u64())
            .chain(value["controller_pid"].as_u64());
        for pid in pids {
            if let Ok(pid) = u32::try_from(pid) {
                self.pids.insert(pid);
            }
        }
        Ok(value)
    }

    /// Every pid the status has named.
    pub fn pids(&self) -> Vec<u32> {
        self.pids.iter().copied().collect()
    }

    /// `spp stop`, then SIGKILL to every reported pid still alive. Returns
    /// the stop's error, if any, after the kills.
    pub fn stop(&mut self) -> Result<(), CompareError> {
        if !self.started {
            return Ok(());
        }
        self.started = false;
        let stopped = self.run_ok(&["stop"]).map(drop);
        for &pid in &self.pids {
            if !process::wait_gone(pid, GONE_TIMEOUT) {
                process::signal(pid, libc::SIGKILL);
            }
        }
        stopped
    }
}

impl Drop for SppService {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The first TCP and UDP listener and the proxy's pid in a status.
pub fn addrs(status: &Value) -> Result<SppAddrs, CompareError> {
    let listener = |transport: &str| -> Result<SocketAddr, CompareError> {
        status["listeners"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["transport"] == transport)
            .and_then(|l| l["addr"].as_str())
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| CompareError::Status {
                why: format!("no {transport} listener address in {status}"),
            })
    };
    Ok(SppAddrs {
        tcp: listener("tcp")?,
        udp: listener("udp")?,
        proxy_pid: proxy_pid(status)?,
    })
}

/// The (first) proxy's pid in a status.
pub fn proxy_pid(status: &Value) -> Result<u32, CompareError> {
    status["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["role"] == PROXY)
        .and_then(|p| p["pid"].as_u64())
        .and_then(|p| u32::try_from(p).ok())
        .ok_or_else(|| CompareError::Status {
            why: format!("no running proxy in {status}"),
        })
}

/// The proxy's `conns_active` counter in a status.
pub fn conns_active(status: &Value) -> Option<u64> {
    status["proxy_stats"]["conns_active"].as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_thread_services_get_their_mode_and_room() {
        let setup = SppSetup {
            name: "spp-bench-relay",
            workers: 1,
            connections: 2_000,
            plugin: "/x/libspp_relay.so".into(),
            plugin_conf: "addr=127.0.0.1:4000".into(),
            microthread: true,
            async_mode: false,
            env: Vec::new(),
            proxy_processes: 1,
            proxy_plugin_conf: String::new(),
        };
        let text = render(Path::new("/tmp/d"), &setup);
        assert!(text.contains("name = \"spp-bench-relay\""), "{text}");
        assert!(
            text.contains("plugin_conf = \"addr=127.0.0.1:4000\""),
            "{text}"
        );
        assert!(
            text.contains("mode = \"microthread\"\nmax_in_flight = 2064"),
            "{text}"
        );
        // The proxy's conf stays empty: it only frames.
        assert!(
            text.contains("plugin_conf = \"\"\nmax_connections"),
            "{text}"
        );
        let costly = render(
            Path::new("/tmp/d"),
            &SppSetup {
                proxy_plugin_conf: "input_cost_us=50".into(),
                proxy_processes: 2,
                ..setup.clone()
            },
        );
        assert!(
            costly.contains("plugin_conf = \"input_cost_us=50\"\nmax_connections")
                && costly.contains("processes = 2"),
            "{costly}"
        );
        let plain = render(
            Path::new("/tmp/d"),
            &SppSetup {
                microthread: false,
                ..setup
            },
        );
        assert!(!plain.contains("mode"), "{plain}");
        let tasks = render(
            Path::new("/tmp/d"),
            &SppSetup {
                async_mode: true,
                ..plain_setup()
            },
        );
        assert!(
            tasks.contains("mode = \"async\"\nmax_in_flight = 128"),
            "{tasks}"
        );
    }

    fn plain_setup() -> SppSetup {
        SppSetup {
            name: "spp-bench",
            workers: 1,
            connections: 64,
            plugin: "/x/libspp_relay_async.so".into(),
            plugin_conf: String::new(),
            microthread: false,
            async_mode: false,
            env: Vec::new(),
            proxy_processes: 1,
            proxy_plugin_conf: String::new(),
        }
    }
}
