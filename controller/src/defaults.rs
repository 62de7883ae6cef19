//! Every default and tuning constant of the controller, in one place.
//!
//! Config defaults apply when a key is left out of the TOML file; the rest
//! are fixed limits and timings of the supervisor, the control socket and
//! the CLI.

use std::time::Duration;

/// `service.log_level` default: the same filter a child falls back to.
pub use spp_ipc::launch::DEFAULT_LOG_LEVEL as LOG_LEVEL;

// ---- config defaults -------------------------------------------------------

/// `service.run_dir`.
pub const RUN_DIR: &str = "run";
/// `service.log_dir`.
pub const LOG_DIR: &str = "log";
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
/// Largest ring size accepted (the IPC layer's limit, 1 GiB).
pub const MAX_RING_SIZE: u64 = spp_ipc::layout::MAX_RING_CAPACITY as u64;
/// Largest group id (`spp_route` returns an id in `1..=MAX_GROUP_ID`).
pub const MAX_GROUP_ID: u32 = 255;
/// Most worker slots one group may have.
pub const MAX_WORKERS_PER_GROUP: u32 = 1024;
/// Longest spin accepted for `proxy.spin` / `group.spin`.
pub const MAX_SPIN: Duration = Duration::from_secs(1);
/// Most `proxy.max_connections` and `proxy.max_udp_flows` (the proxy
/// refuses more).
pub const MAX_FLOW_SLOTS: usize = spp_ipc::launch::MAX_FLOW_SLOTS;

// The defaults obey the limits.
const _: () = assert!(MIN_RING_SIZE >= spp_ipc::ring::MIN_CAPACITY as u64);
const _: () = assert!(MAX_CONNECTIONS <= MAX_FLOW_SLOTS && MAX_UDP_FLOWS <= MAX_FLOW_SLOTS);

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
/// The shortest drain a worker gets at stop (it waits ~100 ms for the
/// proxy to notice it drains, then finishes its ring).
pub const MIN_WORKER_DRAIN: Duration = Duration::from_millis(500);
/// After a second stop signal: how long the proxy gets to quit at once on
/// SIGINT (closing its connections itself) before it is killed.
pub const PROXY_QUIT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long to wait for children to be reaped after SIGKILL.
pub const KILL_REAP_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines of a child's log quoted when it fails to start.
pub const LOG_TAIL_LINES: usize = 5;

// ---- control socket and CLI --------------------------------------------------

/// Longest control request line.
pub const MAX_CONTROL_LINE: usize = 4096;
/// Control connections served at once; more are answered "busy".
pub const MAX_CONTROL_CONNECTIONS: usize = 16;
/// Longest control response the client reads.
pub const MAX_CONTROL_RESPONSE: usize = 16 << 20;
/// Time a control connection may take to send its request.
pub const CONTROL_IO_TIMEOUT: Duration = Duration::from_secs(5);
/// `spp start --wait` default.
pub const START_WAIT: &str = "30s";
/// How often `spp start` asks a starting controller for its status.
pub const START_POLL: Duration = Duration::from_millis(50);
/// Extra time `spp stop` waits beyond [`stop_timeout`] for the controller
/// to exit.
pub const STOP_WAIT_MARGIN: Duration = Duration::from_secs(10);
/// Lines of the controller log `spp start` prints when the controller died.
pub const START_LOG_TAIL_LINES: usize = 20;

// ---- stop timings ----------------------------------------------------------
//
// Stop: SIGTERM the proxy and wait for it up to `stop_grace` (it drains for
// `proxy_drain_timeout`, then closes what is left and exits by itself; one
// still running at `stop_grace` is killed); then SIGTERM the workers and
// wait up to `worker_drain_timeout`; then SIGKILL what is left.

/// The share of `stop_grace` the proxy's drain may take.
pub const PROXY_DRAIN_SHARE_OF_GRACE: f64 = 0.8;

/// How long the proxy may drain on stop: most of `stop_grace`, leaving the
/// rest for the proxy to close what is left itself (a proxy that overruns
/// is killed at `stop_grace`).
pub fn proxy_drain_timeout(stop_grace: Duration) -> Duration {
    stop_grace.mul_f64(PROXY_DRAIN_SHARE_OF_GRACE)
}

/// How long the workers may drain once the proxy is gone: the share of
/// `stop_grace` the proxy's drain leaves, and at least
/// [`MIN_WORKER_DRAIN`]. Counted from their SIGTERM, not from the start of
/// the stop, so a proxy that used its whole grace does not eat it.
pub fn worker_drain_timeout(stop_grace: Duration) -> Duration {
    stop_grace
        .saturating_sub(proxy_drain_timeout(stop_grace))
        .max(MIN_WORKER_DRAIN)
}

/// The longest a stop can take: the proxy's grace, its kill and reap, the
/// workers' drain, their kill and reap.
pub fn stop_timeout(stop_grace: Duration) -> Duration {
    stop_grace + worker_drain_timeout(stop_grace) + 2 * KILL_REAP_TIMEOUT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workers_drain_after_the_proxy_on_their_own_clock() {
        let grace = Duration::from_secs(5);
        assert_eq!(proxy_drain_timeout(grace), Duration::from_secs(4));
        assert_eq!(worker_drain_timeout(grace), Duration::from_secs(1));
        let short = Duration::from_millis(300);
        assert_eq!(worker_drain_timeout(short), MIN_WORKER_DRAIN);
        assert!(stop_timeout(short) >= short + MIN_WORKER_DRAIN + 2 * KILL_REAP_TIMEOUT);
    }
}
