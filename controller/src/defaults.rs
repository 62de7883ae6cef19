//! Every default and tuning constant of the controller, in one place.
//!
//! Config defaults apply when a key is left out of the TOML file; the rest
//! are fixed limits and timings of the supervisor, the control socket and
//! the CLI.

use std::time::Duration;

// ---- config defaults -------------------------------------------------------

/// `service.run_dir`.
pub const RUN_DIR: &str = "run";
/// `service.log_dir`.
pub const LOG_DIR: &str = "log";
/// `service.log_level`.
pub const LOG_LEVEL: &str = "info";
/// `service.stop_grace`.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// `proxy.max_connections`.
pub const MAX_CONNECTIONS: usize = 10_000;
/// `proxy.max_request_size` (1 MiB).
pub const MAX_REQUEST_SIZE: u64 = 1 << 20;
/// `proxy.max_send_buffer` (4 MiB).
pub const MAX_SEND_BUFFER: u64 = 4 << 20;
/// `proxy.idle_timeout`.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// `proxy.max_udp_flows`.
pub const MAX_UDP_FLOWS: usize = 10_000;
/// `proxy.spin` and `group.spin`.
pub const SPIN: Duration = Duration::from_micros(50);
/// `rings.request_size` and `rings.response_size` (4 MiB).
pub const RING_SIZE: u64 = 4 << 20;

// ---- config limits ---------------------------------------------------------

/// Smallest ring size accepted (64 KiB).
pub const MIN_RING_SIZE: u64 = 64 << 10;
/// Largest ring size accepted (1 GiB).
pub const MAX_RING_SIZE: u64 = 1 << 30;
/// Largest group id (`spp_route` returns an id in `1..=MAX_GROUP_ID`).
pub const MAX_GROUP_ID: u32 = 255;
/// Most worker slots one group may have.
pub const MAX_WORKERS_PER_GROUP: u32 = 1024;
/// Longest spin accepted for `proxy.spin` / `group.spin`.
pub const MAX_SPIN: Duration = Duration::from_secs(1);
/// File descriptors kept free beyond `max_connections` and the inherited
/// fds (logs, epoll, pidfds, plugin files...).
pub const NOFILE_MARGIN: u64 = 128;

// ---- listeners ---------------------------------------------------------------

/// `listen(2)` backlog of every TCP listener.
pub const LISTEN_BACKLOG: i32 = 1024;

// ---- files -------------------------------------------------------------------

/// Pid file name inside `run_dir`.
pub const PID_FILE: &str = "spp.pid";
/// Control socket name inside `run_dir`.
pub const CONTROL_SOCKET: &str = "spp.sock";
/// Controller log name inside `log_dir`.
pub const CONTROLLER_LOG: &str = "controller.log";
/// Proxy executable name.
pub const PROXY_BIN: &str = "spp-proxy";
/// Worker executable name.
pub const WORKER_BIN: &str = "spp-worker";
/// Environment variable overriding where the child executables are.
pub const BIN_DIR_ENV: &str = "SPP_BIN_DIR";

// ---- supervision -------------------------------------------------------------

/// First restart delay after a child exits.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
/// Longest restart delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A child that ran this long is stable: its back-off starts over.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Quick exits in a row (no stable minute between them) that make a crash
/// loop.
pub const CRASH_LOOP_RESTARTS: u32 = 5;
/// How often the controller looks at the shared states while starting.
pub const READY_POLL: Duration = Duration::from_millis(20);
/// Workers get at least this long to drain at stop, even when the proxy
/// used up the grace.
pub const MIN_WORKER_GRACE: Duration = Duration::from_millis(200);
/// How long to wait for children to be reaped after SIGKILL.
pub const KILL_REAP_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines of a child's log quoted when it fails to start.
pub const LOG_TAIL_LINES: usize = 5;

// ---- control socket and CLI --------------------------------------------------

/// Longest control request line.
pub const MAX_CONTROL_LINE: usize = 4096;
/// Longest control response the client reads.
pub const MAX_CONTROL_RESPONSE: usize = 16 << 20;
/// Time a control connection may take to send its request.
pub const CONTROL_IO_TIMEOUT: Duration = Duration::from_secs(5);
/// `spp start --wait` default.
pub const START_WAIT: &str = "30s";
/// How often `spp start` asks a starting controller for its status.
pub const START_POLL: Duration = Duration::from_millis(50);
/// Extra time `spp stop` waits beyond `stop_grace` for the controller to exit.
pub const STOP_WAIT_MARGIN: Duration = Duration::from_secs(10);
/// Lines of the controller log `spp start` prints when the controller died.
pub const START_LOG_TAIL_LINES: usize = 20;

/// How long the proxy may drain on stop: most of `stop_grace`, leaving the
/// rest for the workers and for the proxy to close what is left itself
/// (a proxy that overruns is killed at `stop_grace`).
pub fn proxy_drain_timeout(stop_grace: Duration) -> Duration {
    stop_grace.mul_f64(PROXY_DRAIN_SHARE_OF_GRACE)
}

/// The share of `stop_grace` the proxy's drain may take.
pub const PROXY_DRAIN_SHARE_OF_GRACE: f64 = 0.8;
