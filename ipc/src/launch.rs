//! The launch contract between the controller and its children.
//!
//! The controller owns every listener, region and doorbell. It starts a
//! child with those fds inherited (same numbers) and one environment
//! variable, [`LAUNCH_ENV`], holding a JSON [`Launch`] that says what each
//! fd is and how the child should behave. Children never read the config
//! file, so they cannot disagree with the controller about it.

use crate::error::IpcError;
use crate::layout::PairLayout;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::path::PathBuf;

/// The environment variable that carries the JSON [`Launch`].
pub const LAUNCH_ENV: &str = "SPP_LAUNCH";
/// The log filter a child uses when none is given.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// The lowest fd number an inherited fd may have (0..=2 are stdio).
pub const FIRST_INHERITED_FD: RawFd = 3;
/// Most TCP connections, and most UDP flows, one proxy tracks (its flow
/// ids have 20 bits of slot index).
pub const MAX_FLOW_SLOTS: usize = 1 << 20;

/// How children exit; the controller turns these into reasons.
pub mod exit_code {
    /// Normal exit (stopped).
    pub const OK: i32 = 0;
    /// A runtime failure (e.g. a corrupt ring).
    pub const FAILURE: i32 = 1;
    /// Bad launch spec, or the plugin could not be loaded.
    pub const SETUP: i32 = 2;
    /// The status of a process whose plugin's `spp_init` returned `code`
    /// (non-zero): the code itself, clamped to 1..=255 as `spp_plugin.h`
    /// says (-1 exits 1, 300 exits 255). The process also writes
    /// `ProcessState::InitFailed` so that the controller can tell it from
    /// the codes above.
    pub fn plugin_init(code: i32) -> i32 {
        code.clamp(1, 255)
    }
}

/// What a child is told at start.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Launch {
    /// Start as the proxy.
    Proxy(ProxyLaunch),
    /// Start as a worker.
    Worker(WorkerLaunch),
}

impl Launch {
    /// Reads the spec from [`LAUNCH_ENV`].
    pub fn from_env() -> Result<Self, IpcError> {
        let text = std::env::var(LAUNCH_ENV).map_err(|_| {
            IpcError::Launch(format!(
                "{LAUNCH_ENV} is not set: this program is started by `spp start`, not by hand"
            ))
        })?;
        serde_json::from_str(&text)
            .map_err(|e| IpcError::Launch(format!("{LAUNCH_ENV} is malformed: {e}")))
    }

    /// The JSON text to put in [`LAUNCH_ENV`].
    pub fn to_env_value(&self) -> String {
        // Serialising plain data structs cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Transport of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// A listening TCP socket.
    Tcp,
    /// A bound UDP socket.
    Udp,
}

/// One inherited listening socket.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ListenerFd {
    /// Index in the config's `listen` list (reported to plugins).
    pub index: u16,
    /// TCP or UDP.
    pub transport: Transport,
    /// The bound address.
    pub addr: SocketAddr,
    /// The inherited fd.
    pub fd: RawFd,
}

/// One inherited pair region and its worker's doorbell.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairFds {
    /// Worker index inside the group.
    pub index: u32,
    /// The pair memfd.
    pub region_fd: RawFd,
    /// The worker's doorbell eventfd.
    pub bell_fd: RawFd,
}

/// One worker group as the proxy sees it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupFds {
    /// The group id `spp_route` returns.
    pub id: u32,
    /// Every worker slot of the group (up to its maximum size).
    pub slots: Vec<PairFds>,
    /// The group's `msg_timeout` in ms (0: off): the proxy's stall bound
    /// and its own expiry of requests a frozen worker holds derive from it
    /// (`spp_proxy::dispatch::stall`).
    #[serde(default)]
    pub msg_timeout_ms: u64,
}

/// Proxy limits, already validated by the controller.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProxyLimits {
    /// Open TCP connections at most; more are refused (accepted and closed).
    pub max_connections: usize,
    /// Bytes one request may have; a larger one closes its connection.
    pub max_request_size: usize,
    /// Bytes of responses buffered per connection before the client counts
    /// as too slow and is disconnected.
    pub max_send_buffer: usize,
    /// Milliseconds without traffic before a connection is closed.
    pub idle_timeout_ms: u64,
    /// Milliseconds a partial request may take to complete, counted from
    /// when the connection started holding it.
    pub request_timeout_ms: u64,
    /// UDP requests awaiting a reply at most.
    pub max_udp_flows: usize,
    /// Microseconds the proxy spins for responses before sleeping.
    pub spin_us: u64,
    /// Milliseconds a SIGTERM drain may take before the proxy closes what
    /// is left and exits (the controller gives it a little more).
    pub drain_timeout_ms: u64,
}

/// Logging settings for a child.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogSpec {
    /// A `tracing` filter such as `info` or `spp_proxy=debug`.
    pub level: String,
    /// The file the child's stdout and stderr append to; on SIGHUP the
    /// child reopens it (see [`crate::logfile::reopen_stdio`]) so that a
    /// rotated log is let go. `None`: nothing to reopen.
    #[serde(default)]
    pub file: Option<PathBuf>,
}

/// Everything the proxy needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProxyLaunch {
    /// The service name (for logs).
    pub service: String,
    /// How many proxies ran before this one (0, 1, ...); part of every flow
    /// id, so a response meant for a previous proxy's connection can never
    /// reach a new one.
    pub epoch: u16,
    /// This proxy's shard index (`proxy.processes` > 1): stamped into
    /// every flow id it issues ([`crate::flow_shard`]). 0 with one proxy
    /// (and in older specs).
    #[serde(default)]
    pub shard: u16,
    /// How many proxy shards the service runs (1 with one proxy).
    #[serde(default = "one_shard")]
    pub shards: u16,
    /// The proxy's plugin.
    pub plugin: PathBuf,
    /// The string handed to its `spp_init`.
    pub plugin_conf: String,
    /// Inherited listeners.
    pub listeners: Vec<ListenerFd>,
    /// The proxy region memfd.
    pub proxy_region_fd: RawFd,
    /// The proxy's doorbell eventfd (workers ring it).
    pub proxy_bell_fd: RawFd,
    /// The pair layout (same for every pair).
    pub pair_layout: PairLayout,
    /// Every group and its worker slots.
    pub groups: Vec<GroupFds>,
    /// Limits.
    pub limits: ProxyLimits,
    /// Logging.
    pub log: LogSpec,
}

/// [`ProxyLaunch::shards`] of a spec that does not say.
fn one_shard() -> u16 {
    1
}

/// Everything a worker needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerLaunch {
    /// The service name (for logs).
    pub service: String,
    /// The group id.
    pub group: u32,
    /// The worker's index in its group.
    pub index: u32,
    /// The group's plugin.
    pub plugin: PathBuf,
    /// The string handed to its `spp_init`.
    pub plugin_conf: String,
    /// This worker's pair region and doorbell.
    pub pair: PairFds,
    /// The pair layout.
    pub pair_layout: PairLayout,
    /// The proxy region memfd (for the proxy's sleep flag).
    pub proxy_region_fd: RawFd,
    /// The proxy's doorbell eventfd.
    pub proxy_bell_fd: RawFd,
    /// The pairs of the other proxy shards (`proxy.processes` > 1), one
    /// per shard 1, 2, ...: the worker serves every pair fairly and answers
    /// each request on the pair it came from. `pair`, `proxy_region_fd` and
    /// `proxy_bell_fd` above are shard 0's. Empty with one proxy (and in
    /// older specs).
    #[serde(default)]
    pub other_shards: Vec<ShardPairFds>,
    /// Microseconds the worker spins for requests before sleeping.
    pub spin_us: u64,
    /// A request that waited in the ring longer than this many ms is not
    /// processed but reported back as [`crate::record::KIND_EXPIRED`]
    /// (0: no limit).
    pub msg_timeout_ms: u64,
    /// The longest a drain (stop signal) may take, ms; requests still
    /// queued then are left to the proxy, which fails them.
    pub drain_timeout_ms: u64,
    /// The service's L5 route table memfd ([`crate::l5::table::RouteTable`]),
    /// when L5 routing is on; the plugin's `get_route` answers
    /// `SPP_L5_SYSTEM` without it.
    #[serde(default)]
    pub l5_table_fd: Option<RawFd>,
    /// The group's micro-thread settings (`None`: plain mode, one
    /// `spp_process` at a time; older specs have none).
    #[serde(default)]
    pub microthreads: Option<MicroThreadSpec>,
    /// The group's async settings (`mode = "async"`; `None`: another
    /// mode, older specs have none). At most one of `microthreads` and
    /// this is set.
    #[serde(default)]
    pub async_tasks: Option<AsyncSpec>,
    /// Logging.
    pub log: LogSpec,
}

/// A worker's pair with one more proxy shard: the worker's doorbell is
/// the same for every shard (`WorkerLaunch::pair.bell_fd`); the pair
/// region and the shard's own region and doorbell differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPairFds {
    /// The shard's index (1.. ; shard 0 is `WorkerLaunch::pair`).
    pub shard: u16,
    /// The pair memfd of (this shard, this worker slot).
    pub region_fd: RawFd,
    /// The shard's proxy region memfd (its sleep flag).
    pub proxy_region_fd: RawFd,
    /// The shard's doorbell eventfd (the worker rings it).
    pub proxy_bell_fd: RawFd,
}

/// A worker's micro-thread settings (group `mode = "microthread"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MicroThreadSpec {
    /// Requests held at once (running, suspended or waiting behind their
    /// flow's previous request) at most.
    pub max_in_flight: u32,
    /// Bytes of one micro-thread's stack (page multiple; plus a guard
    /// page).
    pub stack_size: u64,
}

/// A worker's async settings (group `mode = "async"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsyncSpec {
    /// Requests held at once (running, deferred or waiting behind their
    /// flow's previous request) at most.
    pub max_in_flight: u32,
    /// The group's `task_timeout` in ms (`spp_host.task_timeout_ms`).
    pub task_timeout_ms: u64,
}

impl ProxyLaunch {
    /// Every fd the proxy must inherit.
    pub fn inherited_fds(&self) -> Vec<RawFd> {
        let mut fds: Vec<RawFd> = self.listeners.iter().map(|l| l.fd).collect();
        fds.push(self.proxy_region_fd);
        fds.push(self.proxy_bell_fd);
        for group in &self.groups {
            for slot in &group.slots {
                fds.push(slot.region_fd);
                fds.push(slot.bell_fd);
            }
        }
        fds
    }
}

impl WorkerLaunch {
    /// Every fd the worker must inherit.
    pub fn inherited_fds(&self) -> Vec<RawFd> {
        let mut fds = vec![
            self.pair.region_fd,
            self.pair.bell_fd,
            self.proxy_region_fd,
            self.proxy_bell_fd,
        ];
        for other in &self.other_shards {
            fds.extend([other.region_fd, other.proxy_region_fd, other.proxy_bell_fd]);
        }
        fds.extend(self.l5_table_fd);
        fds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_init_code_is_the_exit_status_clamped() {
        assert_eq!(exit_code::plugin_init(7), 7);
        assert_eq!(exit_code::plugin_init(-1), 1);
        assert_eq!(exit_code::plugin_init(255), 255);
        assert_eq!(exit_code::plugin_init(300), 255);
        assert_eq!(exit_code::plugin_init(i32::MIN), 1);
        assert_eq!(
            crate::layout::ProcessState::from_raw(5),
            crate::layout::ProcessState::InitFailed
        );
    }

    #[test]
    fn worker_spec_round_trips() {
        let spec = Launch::Worker(WorkerLaunch {
            service: "echo".into(),
            group: 1,
            index: 0,
            plugin: "/x.so".into(),
            plugin_conf: String::new(),
            pair: PairFds {
                index: 0,
                region_fd: 5,
                bell_fd: 6,
            },
            pair_layout: PairLayout {
                request_capacity: 4096,
                response_capacity: 4096,
            },
            proxy_region_fd: 7,
            proxy_bell_fd: 8,
            other_shards: vec![ShardPairFds {
                shard: 1,
                region_fd: 9,
                proxy_region_fd: 10,
                proxy_bell_fd: 11,
            }],
            spin_us: 50,
            msg_timeout_ms: 1000,
            drain_timeout_ms: 5000,
            l5_table_fd: None,
            microthreads: None,
            async_tasks: Some(AsyncSpec {
                max_in_flight: 8,
                task_timeout_ms: 5000,
            }),
            log: LogSpec {
                level: "info".into(),
                file: None,
            },
        });
        let text = spec.to_env_value();
        let back: Launch = serde_json::from_str(&text).unwrap();
        match back {
            Launch::Worker(w) => {
                assert_eq!(w.inherited_fds(), vec![5, 6, 7, 8, 9, 10, 11]);
                assert_eq!(w.async_tasks.map(|a| a.task_timeout_ms), Some(5000));
            }
            Launch::Proxy(_) => panic!("wrong role"),
        }
    }
}
