//! Every default and tuning constant of the controller (config, daemon
//! and CLI), in one place.
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
/// `log.max_size`: a log file this large is rotated (100 MiB).
pub const LOG_MAX_SIZE: u64 = 100 << 20;
/// `log.max_size` at least (smaller would rotate on every tick).
pub const LOG_MIN_MAX_SIZE: u64 = 1 << 10;
/// `log.rotate_daily`: rotate every log when the UTC date changes.
pub const LOG_ROTATE_DAILY: bool = true;
/// `log.keep_age`: `spp diskclear` removes rotated logs and cores older.
pub const LOG_KEEP_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// `log.keep_total`: `spp diskclear` keeps rotated logs and cores within
/// this many bytes (1 GiB).
pub const LOG_KEEP_TOTAL: u64 = 1 << 30;
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
/// `proxy.request_timeout`: how long a client may take to complete a
/// request once its first byte arrived (like nginx's
/// `client_header_timeout`).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// `proxy.max_udp_flows`.
pub const MAX_UDP_FLOWS: usize = 10_000;
/// `proxy.processes`: one proxy process (no sharding).
pub const PROXY_PROCESSES: u16 = 1;
/// Most `proxy.processes` (shards; a flow id has 6 bits for the shard).
pub const MAX_PROXY_PROCESSES: u16 = spp_ipc::flow_shard::MAX_SHARDS as u16;
/// `proxy.processes = "auto"`: one proxy shard per this many CPU cores.
/// A shard costs ~4.5 µs of CPU per request whatever the plugin (one read,
/// framing, one write: `docs/PERFORMANCE.md`, echo at N=64), while a
/// worker doing real business work spends about three times that (the
/// relay's worker 6 µs is already more than its proxy's): one core of
/// proxy for three cores of workers keeps the proxy from capping the
/// service without taking the workers' cores.
pub const CORES_PER_PROXY_SHARD: usize = 4;

/// `proxy.processes = "auto"` on a machine with `cpus` cores:
/// `cpus / `[`CORES_PER_PROXY_SHARD`], at least 1, at most
/// [`MAX_PROXY_PROCESSES`].
pub fn auto_proxy_processes(cpus: usize) -> u16 {
    let shards = (cpus / CORES_PER_PROXY_SHARD).clamp(1, usize::from(MAX_PROXY_PROCESSES));
    u16::try_from(shards).unwrap_or(MAX_PROXY_PROCESSES)
}

/// `proxy.spin` and `group.spin`.
pub const SPIN: Duration = Duration::from_micros(50);
/// `rings.request_size` and `rings.response_size` (4 MiB).
pub const RING_SIZE: u64 = 4 << 20;
/// `group.msg_timeout`.
pub const MSG_TIMEOUT: Duration = Duration::from_secs(5);
/// `group.max_in_flight` (micro-thread and async mode): requests held per
/// worker.
pub const MAX_IN_FLIGHT: u32 = 1000;
/// Largest `group.max_in_flight`.
pub const MAX_IN_FLIGHT_LIMIT: u32 = 100_000;
/// `group.task_timeout` (async mode): the time a deferred request may
/// take (the plugin's `spp_host.task_timeout_ms`).
pub const TASK_TIMEOUT: Duration = Duration::from_secs(5);
/// Shortest `group.task_timeout`.
pub const MIN_TASK_TIMEOUT: Duration = Duration::from_millis(10);
/// Longest `group.task_timeout`.
pub const MAX_TASK_TIMEOUT: Duration = Duration::from_secs(3600);
/// `group.stack_size` (micro-thread mode): one micro-thread's stack.
pub const STACK_SIZE: u64 = 64 << 10;
/// `group.stack_size` is a multiple of this (the page size).
pub const PAGE: u64 = 4 << 10;
/// Smallest `group.stack_size`.
pub const MIN_STACK_SIZE: u64 = 16 << 10;
/// Largest `group.stack_size`.
pub const MAX_STACK_SIZE: u64 = 16 << 20;
/// `group.hang_timeout`.
pub const HANG_TIMEOUT: Duration = Duration::from_secs(30);
/// `scaling.interval`.
pub const SCALING_INTERVAL: Duration = Duration::from_secs(60);
/// `scaling.up_busy`.
pub const UP_BUSY: f64 = 0.6;
/// `scaling.down_busy`.
pub const DOWN_BUSY: f64 = 0.2;
/// `scaling.step`.
pub const SCALING_STEP: u32 = 1;
/// `scaling.cooldown`.
pub const SCALING_COOLDOWN: Duration = Duration::from_secs(60);
/// `scaling.max_total_workers`: 0 = [`machine_cap`].
pub const MAX_TOTAL_WORKERS: u32 = 0;
/// The machine cap never exceeds this many workers (the seeds' rule).
pub const MACHINE_CAP_LIMIT: u32 = 100;
/// The machine cap allows this many workers per CPU core.
pub const MACHINE_CAP_PER_CPU: u32 = 2;

/// The default cap on workers over all groups on a machine with `cpus`
/// cores: min([`MACHINE_CAP_LIMIT`], [`MACHINE_CAP_PER_CPU`] x cores).
pub fn machine_cap(cpus: usize) -> u32 {
    let per_cpu = u32::try_from(cpus)
        .unwrap_or(u32::MAX)
        .saturating_mul(MACHINE_CAP_PER_CPU);
    per_cpu.clamp(1, MACHINE_CAP_LIMIT)
}

/// CPU cores this process may use (1 when unknown).
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

// ---- L5 ([l5]) -----------------------------------------------------------------

/// `l5.weight`: L5's default static weight.
pub const L5_WEIGHT: u32 = spp_ipc::l5::DEFAULT_WEIGHT;
/// `l5.backend`.
pub const L5_BACKEND: &str = "embedded";
/// `l5.backend` scheme of the etcd backend.
pub const L5_ETCD_SCHEME: &str = "etcd://";
/// `l5.registry_dir`: shared by every spp on the machine.
pub const L5_REGISTRY_DIR: &str = "/tmp/spp-l5";
/// `l5.ttl`: registration lifetime (etcd lease TTL, embedded heartbeat age).
pub const L5_TTL: Duration = Duration::from_secs(15);
/// Shortest `l5.ttl`.
pub const L5_MIN_TTL: Duration = Duration::from_secs(1);
/// Longest `l5.ttl`.
pub const L5_MAX_TTL: Duration = Duration::from_secs(3600);
/// `l5.prefix`: etcd key prefix.
pub const L5_PREFIX: &str = "/spp/l5/";
/// Shortest `l5.period` (the agent ticks every [`L5_TICK`]).
pub const L5_MIN_PERIOD: Duration = Duration::from_millis(100);
/// Longest `l5.period`.
pub const L5_MAX_PERIOD: Duration = Duration::from_secs(3600);
/// Largest static routes file read (`l5.routes_file`).
pub const L5_MAX_ROUTES_FILE_BYTES: u64 = 1 << 20;
/// How often the agent checks the registration (the group's health) and
/// whether a reshape period is over.
pub const L5_TICK: Duration = Duration::from_millis(100);
/// Commands queued for the registry task at most.
pub const L5_COMMAND_QUEUE: usize = 8;
/// How long the stop waits for the registry to deregister this service
/// (before the proxy starts draining); the etcd backend bounds its own
/// deregistration to 3 s.
pub const L5_DEREGISTER_WAIT: Duration = Duration::from_secs(4);
/// Embedded registry: the directory is listed every `period /` this...
pub const L5_SCANS_PER_PERIOD: u32 = 5;
/// ...but not more often than this.
pub const L5_MIN_SCAN: Duration = Duration::from_millis(200);
/// Embedded registry: this service's file is rewritten this many times per
/// `ttl`.
pub const L5_HEARTBEATS_PER_TTL: u32 = 3;
/// Embedded registry: directory entries looked at per scan at most.
pub const L5_MAX_REGISTRY_FILES: usize = 1024;
/// Embedded registry: the largest instance file read.
pub const L5_MAX_REGISTRY_FILE_BYTES: u64 = 64 << 10;
/// Embedded registry: the largest weight a registration file may give an
/// instance (10 x [`L5_WEIGHT`]); a file with a heavier instance is
/// ignored, so no local user can draw more than this share by weight, and
/// `l5.weight` is held to it with the embedded backend.
pub const L5_MAX_REGISTRY_WEIGHT: u32 = 10 * L5_WEIGHT;
/// Embedded registry: how far in the future a heartbeat may lie (clock
/// skew between writer and reader, which share one machine's clock, so
/// only a step of the clock between write and scan); a file whose
/// heartbeat lies further ahead is ignored.
pub const L5_MAX_CLOCK_SKEW: Duration = Duration::from_secs(2);
/// Embedded registry: the mode a controller creates `l5.registry_dir` with
/// (like /tmp: writable by every user's spp, and the sticky bit lets only
/// a file's owner remove or replace it).
pub const L5_REGISTRY_DIR_MODE: u32 = 0o1777;
/// Embedded registry: the mode of a registration file (readable by every
/// spp on the machine, writable only by its owner).
pub const L5_RECORD_FILE_MODE: u32 = 0o644;

// ---- files and privileges ------------------------------------------------------

/// The controller's umask: what it and its children create is not
/// world-readable (files 0640, directories 0750).
pub const UMASK: u32 = 0o027;
/// Mode of `service.run_dir` and `service.log_dir`.
pub const PRIVATE_DIR_MODE: u32 = 0o750;
/// Mode of every log file and of the pid file.
pub const PRIVATE_FILE_MODE: u32 = 0o640;

/// How often the embedded registry lists its directory for a reshape
/// `period`: `period / L5_SCANS_PER_PERIOD`, at least [`L5_MIN_SCAN`].
pub fn l5_scan_interval(period: Duration) -> Duration {
    (period / L5_SCANS_PER_PERIOD).max(L5_MIN_SCAN)
}

/// How often the embedded registry rewrites this service's file for `ttl`.
pub fn l5_heartbeat_interval(ttl: Duration) -> Duration {
    (ttl / L5_HEARTBEATS_PER_TTL).max(Duration::from_millis(1))
}

// ---- config limits ---------------------------------------------------------

/// Smallest ring size accepted (64 KiB).
pub const MIN_RING_SIZE: u64 = 64 << 10;
/// Largest ring size accepted (the IPC layer's limit, 1 GiB).
pub const MAX_RING_SIZE: u64 = spp_ipc::layout::MAX_RING_CAPACITY as u64;
/// Largest group id (`spp_route` returns an id in `1..=MAX_GROUP_ID`).
pub const MAX_GROUP_ID: u32 = 255;
/// Largest `max_workers` of one group (it gets one more slot, the spare).
pub const MAX_WORKERS_PER_GROUP: u32 = 1024;
/// Largest `scaling.max_total_workers`: every group at its largest.
pub const MAX_TOTAL_WORKERS_LIMIT: u32 = MAX_WORKERS_PER_GROUP * MAX_GROUP_ID;
/// Shortest `scaling.interval`: the controller evaluates on its
/// housekeeping tick.
pub const MIN_SCALING_INTERVAL: Duration = HOUSEKEEPING_TICK;
/// Smallest non-zero `msg_timeout` / `hang_timeout` (they travel in ms).
pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);
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
/// A worker that reached Ready and then ran this long, or completed a
/// request, served: if it dies it is restarted at once, without back-off
/// (back-off is for workers that cannot start).
pub const SERVED_AFTER: Duration = Duration::from_secs(1);
/// Deaths of serving workers in a row (no stable minute between them)
/// restarted at once; the next one waits out the usual back-off.
pub const IMMEDIATE_RESTARTS: u32 = 10;

// Poison requests (the proxy refuses bytes that killed workers; constants
// in `spp_ipc::poison`, where the proxy and the worker read them): after
// `POISON_DEATHS` deaths of a group's workers with the same request in
// process; at most `POISON_TABLE_ENTRIES` hashes remembered, the oldest
// evicted; each forgotten `POISON_TTL_MS` after its last death.
pub use spp_ipc::poison::{POISON_DEATHS, POISON_TABLE_ENTRIES, POISON_TTL_MS};
/// How often the controller looks at the shared states while starting or
/// reloading.
pub const READY_POLL: Duration = Duration::from_millis(20);
/// The housekeeping tick: stats sample, hang check, scaling evaluation.
pub const HOUSEKEEPING_TICK: Duration = Duration::from_secs(1);
/// How long a reload waits for one new worker to become ready.
pub const RELOAD_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Beyond its own drain (`stop_grace`), how long a worker retired by a
/// reload or a scale-down may take to exit before it is killed.
pub const RETIRE_MARGIN: Duration = Duration::from_secs(2);
/// The shortest drain a worker gets at stop (it exits as soon as the
/// proxy is gone and its ring is empty).
pub const MIN_WORKER_DRAIN: Duration = Duration::from_millis(500);
/// After a second stop signal: how long the proxy gets to quit at once on
/// SIGINT (closing its connections itself) before it is killed.
pub const PROXY_QUIT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long to wait for children to be reaped after SIGKILL.
pub const KILL_REAP_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines of a child's log quoted when it fails to start.
pub const LOG_TAIL_LINES: usize = 5;

// ---- plugin checks -----------------------------------------------------------

/// The longest a plugin check (a child process that loads one plugin) may
/// take before it is killed and the plugin refused.
pub const PLUGIN_CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// The environment variable that overrides [`PLUGIN_CHECK_TIMEOUT`], in
/// milliseconds (tests of a plugin that hangs while it loads).
pub const PLUGIN_CHECK_TIMEOUT_ENV: &str = "SPP_PLUGIN_CHECK_TIMEOUT_MS";
/// How often the controller looks whether a plugin check has exited.
pub const PLUGIN_CHECK_POLL: Duration = Duration::from_millis(5);
/// How long the verdict may take to arrive once the check has exited.
pub const PLUGIN_CHECK_OUTPUT_WAIT: Duration = Duration::from_secs(1);
/// The most bytes read from a plugin check's verdict pipe.
pub const PLUGIN_CHECK_MAX_OUTPUT: u64 = 64 * 1024;

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
/// The window `spp stat` reports without `--watch`, seconds.
pub const STAT_WINDOW_S: u64 = 10;

// ---- statistics and the metrics endpoint -------------------------------------

/// Stats samples kept: a minute of history at one sample per second, plus
/// the newest (the longest `spp stat` window is a minute).
pub const STATS_HISTORY_SAMPLES: usize = 61;
/// The window of the Prometheus summaries' quantiles.
pub const METRICS_WINDOW: Duration = Duration::from_secs(60);
/// Metrics connections served at once; more are closed at accept.
pub const METRICS_MAX_CONNECTIONS: usize = 8;
/// The longest a metrics connection may take, request and response.
pub const METRICS_CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Read buffer of a metrics connection: the longest request head (hyper's
/// minimum).
pub const METRICS_MAX_REQUEST_BUFFER: usize = 8192;
/// Pause after a failed accept on the metrics endpoint (e.g. out of file
/// descriptors), so the loop does not spin.
pub const METRICS_ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Extra time `spp reload` waits for the controller's answer beyond the
/// bound of the reload itself.
pub const RELOAD_WAIT_MARGIN: Duration = Duration::from_secs(10);

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

/// How long a worker retired by a reload or a scale-down may take to exit
/// before it is killed: its own drain bound plus [`RETIRE_MARGIN`].
pub fn retire_timeout(stop_grace: Duration) -> Duration {
    stop_grace + RETIRE_MARGIN
}

/// How long a reload waits for a free worker slot in a group: a worker
/// retired just before (by a scale-down) may hold the spare slot until it
/// exits, which takes at most its [`retire_timeout`], the housekeeping tick
/// that notices it overran, and the reap after its kill; and at least
/// [`RELOAD_READY_TIMEOUT`]. `stop_grace`: the longest grace a retired
/// worker may have been given.
pub fn reload_slot_timeout(stop_grace: Duration) -> Duration {
    RELOAD_READY_TIMEOUT.max(retire_timeout(stop_grace) + HOUSEKEEPING_TICK + KILL_REAP_TIMEOUT)
}

/// The longest one reload can take: the wait for a first free slot
/// ([`reload_slot_timeout`]); then, in the largest group, every slot is
/// started (bounded by [`RELOAD_READY_TIMEOUT`]) and every old worker
/// retired (bounded by [`retire_timeout`] and the reap after a kill).
pub fn reload_timeout(stop_grace: Duration, largest_group_slots: u32) -> Duration {
    let per_worker = RELOAD_READY_TIMEOUT + retire_timeout(stop_grace) + KILL_REAP_TIMEOUT;
    reload_slot_timeout(stop_grace) + per_worker.saturating_mul(largest_group_slots.max(1))
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

    #[test]
    fn the_machine_cap_is_two_per_core_up_to_a_hundred() {
        assert_eq!(machine_cap(1), 2);
        assert_eq!(machine_cap(2), 4);
        assert_eq!(machine_cap(64), MACHINE_CAP_LIMIT);
        assert_eq!(machine_cap(0), 1);
        assert!(cpu_count() >= 1);
    }

    #[test]
    fn a_reload_is_bounded_by_its_largest_group() {
        let grace = Duration::from_secs(1);
        assert_eq!(
            reload_timeout(grace, 3),
            RELOAD_READY_TIMEOUT
                + 3 * (RELOAD_READY_TIMEOUT + retire_timeout(grace) + KILL_REAP_TIMEOUT)
        );
        assert_eq!(reload_timeout(grace, 0), reload_timeout(grace, 1));
    }

    #[test]
    fn a_reload_waits_for_a_slot_as_long_as_a_retired_worker_may_hold_it() {
        // A short grace: the ready timeout is the longer bound.
        assert_eq!(reload_slot_timeout(STOP_GRACE), RELOAD_READY_TIMEOUT);
        // A long grace: a worker retired by a scale-down holds the spare
        // slot until its retire timeout, the tick that kills it and its
        // reap are over.
        let long = RELOAD_READY_TIMEOUT * 2;
        let held = retire_timeout(long) + HOUSEKEEPING_TICK + KILL_REAP_TIMEOUT;
        assert!(held > RELOAD_READY_TIMEOUT);
        assert_eq!(reload_slot_timeout(long), held);
        assert!(reload_timeout(long, 1) >= reload_slot_timeout(long) + RELOAD_READY_TIMEOUT);
    }
}
