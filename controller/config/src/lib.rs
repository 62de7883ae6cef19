//! `spp-config`: the service config, the TOML file an operator writes,
//! read by the controller daemon and by the `spp` CLI (children never read
//! it; they get a launch spec).
//!
//! [`load`] reads and parses the file (unknown keys are rejected) and runs
//! the pure checks of [`validate`]; [`environment::check`] then checks what
//! depends on the machine (plugins load, through a check the caller
//! provides; the fd limit suffices). Every error is a [`ConfigError`]
//! naming the file, the key and the reason.
//! [`l5`] checks `[l5]` and reads its static routes file.
//! [`diff`] compares a running config with a new one for `spp reload`;
//! [`locate`] finds a running service from a file that may not validate
//! (for `spp status`, `stat` and `stop`). [`defaults`] holds every default
//! and tuning constant of the controller (config defaults and limits, and
//! the daemon's and CLI's timings, several of which bound each other).

pub mod defaults;
pub mod diff;
pub mod environment;
pub mod l5;
pub mod locate;
mod raw;
pub mod validate;

#[cfg(test)]
mod fuzz_tests;

use spp_ipc::launch::Transport;
use spp_ipc::layout::PairLayout;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a config is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{}: cannot read", file.display())]
    Read {
        /// The config file.
        file: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TOML does not parse or does not have the expected shape.
    #[error("{}: line {line}: {key}: {reason}", file.display())]
    Syntax {
        /// The config file.
        file: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// The key at fault, e.g. `proxy.max_connections`.
        key: String,
        /// What the parser said.
        reason: String,
    },
    /// A value breaks a rule.
    #[error("{}: {key}: {reason}", file.display())]
    Invalid {
        /// The config file.
        file: PathBuf,
        /// The key at fault, e.g. `group[1].plugin`.
        key: String,
        /// What is wrong and what would be right.
        reason: String,
    },
}

#[cfg(test)]
impl ConfigError {
    /// The key at fault, if the error is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Syntax { key, .. } | ConfigError::Invalid { key, .. } => Some(key),
        }
    }
}

/// A validated config. Paths are absolute.
#[derive(Clone, Debug)]
pub struct Config {
    /// The config file (absolute).
    pub file: PathBuf,
    /// `[service]`.
    pub service: ServiceConfig,
    /// `[proxy]`.
    pub proxy: ProxyConfig,
    /// `[rings]`.
    pub rings: PairLayout,
    /// `[scaling]`.
    pub scaling: ScalingConfig,
    /// `[[group]]`, in file order.
    pub groups: Vec<GroupConfig>,
    /// `[l5]`; `None`: L5 off.
    pub l5: Option<l5::L5Config>,
    /// `[log]`: rotation and `spp diskclear`.
    pub log: LogConfig,
}

/// `[log]`: when logs rotate (controller housekeeping) and what `spp
/// diskclear` keeps of rotated logs and core files.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// A log file at least this large (bytes) is rotated.
    pub max_size: u64,
    /// Rotate every non-empty log when the UTC date changes.
    pub rotate_daily: bool,
    /// Rotated logs and cores older than this are removed by diskclear.
    pub keep_age: Duration,
    /// Rotated logs and cores are kept within this many bytes.
    pub keep_total: u64,
}

/// `[service]`.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Service name (logs, status).
    pub name: String,
    /// Pid file and control socket directory.
    pub run_dir: PathBuf,
    /// Log directory.
    pub log_dir: PathBuf,
    /// `tracing` filter for every process.
    pub log_level: String,
    /// Time the proxy and workers get to drain at stop.
    pub stop_grace: Duration,
    /// Where the Prometheus text endpoint listens (off when `None`).
    pub metrics: Option<SocketAddr>,
    /// `service.user` / `service.group`: who the proxy, the workers and
    /// the plugin checks run as (`None`: as the controller).
    pub run_as: Option<RunAs>,
}

/// The unprivileged user every child drops to (`service.user`, and
/// `service.group` or the user's primary group), looked up at load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// `service.user`.
    pub user: String,
    /// Its uid.
    pub uid: u32,
    /// `service.group`, or the user's primary group's name.
    pub group: String,
    /// Its gid.
    pub gid: u32,
}

/// `[scaling]`: the per-interval expansion rule, for every group whose
/// `min_workers < max_workers` (the daemon's `scaling` module applies it).
#[derive(Clone, Debug, PartialEq)]
pub struct ScalingConfig {
    /// How often each group is evaluated.
    pub interval: Duration,
    /// busy > workers x interval x `up_busy` adds `step` workers.
    pub up_busy: f64,
    /// busy < workers x interval x `down_busy` stops one worker.
    pub down_busy: f64,
    /// Workers added at once.
    pub step: u32,
    /// No change this long after the previous one.
    pub cooldown: Duration,
    /// Workers over all groups at most (resolved: `max_total_workers = 0`
    /// in the file means [`defaults::machine_cap`] of this machine).
    pub max_total_workers: u32,
}

/// One `proxy.listen` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddr {
    /// TCP or UDP.
    pub transport: Transport,
    /// Address to bind (port 0 = any free port).
    pub addr: SocketAddr,
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", transport_name(self.transport), self.addr)
    }
}

/// `"tcp"` or `"udp"`.
pub fn transport_name(transport: Transport) -> &'static str {
    match transport {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
    }
}

/// `[proxy]`.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Listeners, in file order (the index is reported to plugins).
    pub listen: Vec<ListenAddr>,
    /// The proxy's plugin.
    pub plugin: PathBuf,
    /// String for the proxy plugin's `spp_init`.
    pub plugin_conf: String,
    /// Open TCP connections at most.
    pub max_connections: usize,
    /// Largest request in bytes.
    pub max_request_size: usize,
    /// Response bytes buffered per connection at most.
    pub max_send_buffer: usize,
    /// Idle connections close after this.
    pub idle_timeout: Duration,
    /// A partial request not completed this long after its first byte
    /// closes its connection.
    pub request_timeout: Duration,
    /// UDP requests awaiting a reply at most.
    pub max_udp_flows: usize,
    /// Spin before sleeping.
    pub spin: Duration,
    /// Proxy processes (shards), each serving every listener: 1..=
    /// [`defaults::MAX_PROXY_PROCESSES`], `"auto"` resolved at load
    /// ([`defaults::auto_proxy_processes`]).
    pub processes: u16,
}

/// One `[[group]]`.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// The id `spp_route` returns (1..=255).
    pub id: u32,
    /// The group's plugin.
    pub plugin: PathBuf,
    /// String for its `spp_init`.
    pub plugin_conf: String,
    /// Workers started (at start and after a reload that changes it).
    pub workers: u32,
    /// Scaling never goes below this (<= workers).
    pub min_workers: u32,
    /// Scaling never goes above this (>= workers).
    pub max_workers: u32,
    /// A request that waited longer than this is not processed (zero =
    /// off).
    pub msg_timeout: Duration,
    /// A worker inside one `spp_process` longer than this is killed (zero
    /// = off).
    pub hang_timeout: Duration,
    /// Spin before sleeping.
    pub spin: Duration,
    /// `mode = "microthread"`: each `spp_process` runs on a micro-thread
    /// (`None`: `mode = "plain"`, one call at a time).
    pub microthreads: Option<MicroThreads>,
    /// `mode = "async"`: `spp_process` may defer its request and complete
    /// it later (`None`: another mode).
    pub async_tasks: Option<AsyncTasks>,
}

/// A group's async settings (`mode = "async"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AsyncTasks {
    /// Requests a worker holds at once (running, deferred, or waiting
    /// behind their flow's previous one) at most; past it the worker stops
    /// taking from its ring.
    pub max_in_flight: u32,
    /// The time a deferred request may take (`spp_host.task_timeout_ms`);
    /// the worker expires it `SPP_TASK_GRACE_MS` later.
    pub task_timeout: Duration,
}

/// A group's micro-thread settings (`mode = "microthread"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MicroThreads {
    /// Requests a worker holds at once (running or suspended) at most;
    /// past it the worker stops taking from its ring.
    pub max_in_flight: u32,
    /// Bytes of one micro-thread's stack (a multiple of 4 KiB; a guard page
    /// is added below it).
    pub stack_size: u64,
}

impl GroupConfig {
    /// Worker slots created for the group: `max_workers` and one spare,
    /// so a reload can start a new worker before stopping an old one.
    pub fn slots(&self) -> u32 {
        self.max_workers.saturating_add(1)
    }

    /// Whether scaling may change the group's size.
    pub fn scales(&self) -> bool {
        self.min_workers < self.max_workers
    }
}

impl Config {
    /// The pid file.
    pub fn pid_file(&self) -> PathBuf {
        self.service.run_dir.join(defaults::PID_FILE)
    }

    /// The control socket.
    pub fn socket_path(&self) -> PathBuf {
        self.service.run_dir.join(defaults::CONTROL_SOCKET)
    }

    /// The controller's log file.
    pub fn controller_log(&self) -> PathBuf {
        self.service.log_dir.join(defaults::CONTROLLER_LOG)
    }

    /// Worker slots over all groups.
    pub fn total_slots(&self) -> usize {
        self.groups.iter().map(|g| g.slots() as usize).sum()
    }

    /// Workers started over all groups.
    pub fn start_workers(&self) -> u64 {
        self.groups.iter().map(|g| u64::from(g.workers)).sum()
    }

    /// A one-line summary for `spp check`.
    pub fn summary(&self) -> String {
        let listen: Vec<String> = self.proxy.listen.iter().map(ToString::to_string).collect();
        let groups: Vec<String> = self
            .groups
            .iter()
            .map(|g| {
                format!(
                    "g{} {} workers ({}..={})",
                    g.id, g.workers, g.min_workers, g.max_workers
                )
            })
            .collect();
        let shards = match self.proxy.processes {
            1 => String::new(),
            n => format!(", {n} proxy processes"),
        };
        format!(
            "service \"{}\", {} listener(s) [{}]{shards}, {} group(s) [{}], rings {}/{}",
            self.service.name,
            self.proxy.listen.len(),
            listen.join(", "),
            self.groups.len(),
            groups.join(", "),
            format_size(self.rings.request_capacity as u64),
            format_size(self.rings.response_capacity as u64),
        )
    }
}

/// Writes a byte count the way the config does ("4MiB", "1500B").
pub fn format_size(bytes: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes >= 1 << shift && bytes.trailing_zeros() >= shift {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

/// Reads, parses and validates `file` (no machine-dependent checks; see
/// [`environment::check`]).
pub fn load(file: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let raw = raw::parse(&file, &text)?;
    let mut cfg = validate::validate(&file, raw)?;
    if let Some(l5) = cfg.l5.as_mut() {
        l5::read_routes(&file, l5)?;
    }
    Ok(cfg)
}
