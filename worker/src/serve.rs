//! The ring loop: take a batch of requests, call `spp_process` on each in
//! place (the request bytes stay in the ring, no copy), forward deferred
//! replies, then release the request ring and publish the response ring once
//! for the whole batch. With nothing to do: spin `spin_us` (yielding the CPU
//! every few spins, see [`SPIN_YIELD_EVERY`]), announce sleep, look once
//! more, and block on the doorbell for at most a heartbeat.
//!
//! Each request record carries, in its header flags, the
//! [`generation_tag`] of the worker the proxy meant it for. One stamped for
//! another generation was pushed before the proxy adopted this worker (its
//! predecessor's, already failed by the proxy): it is skipped unserved, but
//! still completed, so `completed_seq` keeps pace with `pushed_seq`.
//!
//! A stop signal switches the slot to `Draining`. The proxy only notices at
//! its next scan and may push until then, so the loop goes on serving until
//! the ring has stayed empty, and `pushed_seq` unchanged, for
//! [`DRAIN_SETTLE`] (at most [`DRAIN_MAX`] in all); then replies are flushed,
//! `spp_fini` called, and the loop returns.

use crate::attach::Shared;
use crate::error::WorkerError;
use crate::host::{HostServices, DEFERRED_CAPACITY};
use crate::throttle::LogThrottle;
use spp_ipc::doorbell::SleepFlag;
use spp_ipc::launch::WorkerLaunch;
use spp_ipc::layout::WorkerState;
use spp_ipc::record::{generation_tag, monotonic_ns, split_request, KIND_REQUEST, NS_PER_MS};
use spp_ipc::ring::Consumer;
use spp_plugin_api::abi::SPP_HOOK_PANICKED;
use spp_plugin_api::host::PluginLibrary;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Requests served between two publishes of the response ring (and releases
/// of the request ring) at most.
pub const BATCH_MAX: usize = 64;
/// The longest the worker sleeps without a loop turn (and a heartbeat).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Spin iterations between two `sched_yield`s (and looks at the clock)
/// while spinning. Three busy processes (load, proxy, worker) share two
/// vCPUs here: a pure spinner holds its CPU for the whole spin while the
/// proxy it waits for, or the client, sits runnable behind it on the same
/// CPU. Yielding hands the CPU over when someone else wants it and costs a
/// cheap syscall when nobody does. Measured (64-byte echo, 1 worker, CPU
/// shared with other load, ratios to the direct server in one run): N=64
/// throughput 0.96 → 1.15, p99 1.74 → 1.37; N=1 p50 7.9 → 1.2. Yielding
/// every 16 spins instead was worse at N=64 (p99 ~2.0): the yields
/// themselves then cost the proxy ~1 µs per request.
const SPIN_YIELD_EVERY: u32 = 64;
/// Forwarding rounds after `spp_fini` at most: enough to empty a full
/// deferred-reply channel once.
const FINAL_FLUSH_ROUNDS: usize = DEFERRED_CAPACITY.div_ceil(BATCH_MAX);
/// How long a draining worker waits with an empty request ring and an
/// unchanged `pushed_seq` before it stops: the proxy sees `Draining` only at
/// its next scan of the slots (up to 50 ms later) and may push until then.
pub const DRAIN_SETTLE: Duration = Duration::from_millis(200);
/// The longest a drain takes; requests still queued then are left to the
/// proxy, which fails them when the worker exits.
pub const DRAIN_MAX: Duration = Duration::from_secs(3);

/// What one loop turn did.
#[derive(Clone, Copy, Debug, Default)]
struct Turn {
    /// Request-ring records consumed (served or skipped).
    records: usize,
    /// Deferred replies forwarded.
    deferred: usize,
}

/// The throttled warnings of the serve loop.
#[derive(Debug, Default)]
struct Warnings {
    panicked: LogThrottle,
    stale: LogThrottle,
    unknown: LogThrottle,
}

/// The worker's serving state.
pub struct Server {
    shared: &'static Shared,
    host: HostServices,
    plugin: &'static PluginLibrary,
    requests: Consumer,
    spin: Duration,
    stop: Arc<AtomicBool>,
    group: u32,
    index: u32,
    /// The [`generation_tag`] of this worker's generation.
    tag: u16,
    warnings: Warnings,
}

impl Server {
    /// A server for the worker `spec` describes, of `generation` (its
    /// `worker_generation`), on its attached rings.
    pub fn new(
        spec: &WorkerLaunch,
        generation: u64,
        shared: &'static Shared,
        host: HostServices,
        plugin: &'static PluginLibrary,
        requests: Consumer,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Server {
            shared,
            host,
            plugin,
            requests,
            spin: Duration::from_micros(spec.spin_us),
            stop,
            group: spec.group,
            index: spec.index,
            tag: generation_tag(generation),
            warnings: Warnings::default(),
        }
    }

    /// Serves until a stop signal, then drains. Errors only on a corrupt
    /// request ring.
    pub fn run(mut self) -> Result<(), WorkerError> {
        loop {
            let turn = self.turn()?;
            if self.stop.load(Ordering::Relaxed) {
                return self.drain();
            }
            if turn.records == 0 && turn.deferred == 0 {
                self.idle();
            }
        }
    }

    /// One loop turn: a batch of requests, deferred replies, one publish.
    fn turn(&mut self) -> Result<Turn, WorkerError> {
        let started = monotonic_ns();
        let records = self.process_batch()?;
        let deferred = self.host.forward_deferred(BATCH_MAX);
        self.requests.release();
        if records != 0 {
            // Written with the publish, before the replies become visible.
            let busy = monotonic_ns().saturating_sub(started);
            self.host.with_responder(|r| r.tally().busy_ns += busy);
        }
        self.host.publish();
        self.shared
            .pair_header()
            .heartbeat_ms
            .store(started / NS_PER_MS, Ordering::Relaxed);
        Ok(Turn { records, deferred })
    }

    /// Calls `spp_process` on up to [`BATCH_MAX`] published requests (or
    /// skips them). Returns how many records it consumed.
    fn process_batch(&mut self) -> Result<usize, WorkerError> {
        let mut served = 0;
        while served < BATCH_MAX {
            let (group, index) = (self.group, self.index);
            let record = self.requests.peek().map_err(|cause| WorkerError::Ring {
                group,
                index,
                cause,
            })?;
            let Some(record) = record else { break };
            let stride = record.stride();
            if record.kind == KIND_REQUEST {
                let Some((meta, req)) = split_request(record.data) else {
                    let len = record.data.len();
                    return Err(WorkerError::BadRecord {
                        group: self.group,
                        index: self.index,
                        len,
                    });
                };
                let (flow, seq) = (meta.conn.flow, meta.seq);
                if record.flags != self.tag {
                    // Pushed for another generation of this slot: the proxy
                    // failed it already. Not served, but completed.
                    self.host
                        .with_responder(|responder| responder.complete(seq));
                    if let Some(suppressed) = self.warnings.stale.allow() {
                        tracing::warn!(
                            flow,
                            seq,
                            tag = record.flags,
                            own_tag = self.tag,
                            suppressed,
                            "skipping a request meant for another worker generation"
                        );
                    }
                    self.requests.advance(stride);
                    served += 1;
                    continue;
                }
                // The request is read in place; the ring is not released
                // before the batch ends, so `req` stays valid for the call.
                // Counted before the call (one plain store, no lock), so a
                // request stuck inside `process` shows in the stats.
                crate::stats::bump(&self.shared.pair_header().stats.requests, 1);
                let rc = self.plugin.process(&meta.conn, req).unwrap_or(-1);
                self.host.with_responder(|responder| {
                    if rc != 0 {
                        let tally = responder.tally();
                        if rc == SPP_HOOK_PANICKED {
                            tally.plugin_panics += 1;
                        } else {
                            tally.process_errors += 1;
                        }
                        // Counted in `replies_dropped` if it cannot be queued.
                        let _ = responder.close(flow);
                    }
                    responder.complete(seq);
                });
                if rc == SPP_HOOK_PANICKED {
                    if let Some(suppressed) = self.warnings.panicked.allow() {
                        tracing::warn!(
                            flow,
                            suppressed,
                            "spp_process panicked; closing the connection"
                        );
                    }
                }
            } else if let Some(suppressed) = self.warnings.unknown.allow() {
                tracing::warn!(
                    kind = record.kind,
                    suppressed,
                    "skipping a request-ring record of unknown kind"
                );
            }
            self.requests.advance(stride);
            served += 1;
        }
        Ok(served)
    }

    /// No work: spin, then sleep on the doorbell until rung or a heartbeat
    /// passes.
    fn idle(&mut self) {
        if !self.spin.is_zero() {
            let started = Instant::now();
            let mut spins = 0u32;
            loop {
                if self.work_waiting() {
                    return;
                }
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(SPIN_YIELD_EVERY) {
                    std::thread::yield_now();
                    if started.elapsed() >= self.spin {
                        break;
                    }
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        let flag = SleepFlag(&self.shared.pair_header().worker_sleeping);
        flag.announce();
        if !self.work_waiting() {
            self.shared.bell.wait(HEARTBEAT_INTERVAL);
        }
        flag.clear();
    }

    /// Requests in the ring, deferred replies, or a stop request.
    fn work_waiting(&self) -> bool {
        self.requests.has_data() || self.host.has_deferred() || self.stop.load(Ordering::Relaxed)
    }

    /// Serves until the ring settles (see [`DRAIN_SETTLE`], [`DRAIN_MAX`]),
    /// flushes, calls `spp_fini`.
    fn drain(mut self) -> Result<(), WorkerError> {
        let header = self.shared.pair_header();
        header
            .worker_state
            .store(WorkerState::Draining as u32, Ordering::Release);
        tracing::info!("stop requested: draining the request ring");
        // The proxy sends nothing new to a Draining slot once it noticed;
        // until then anything it pushes is served.
        let started = Instant::now();
        let mut pushed = header.pushed_seq.load(Ordering::Acquire);
        let mut quiet_since = started;
        loop {
            let turn = self.turn()?;
            let now = Instant::now();
            let pushed_now = header.pushed_seq.load(Ordering::Acquire);
            if turn.records != 0 || pushed_now != pushed {
                pushed = pushed_now;
                quiet_since = now;
            }
            let quiet = now.saturating_duration_since(quiet_since);
            if quiet >= DRAIN_SETTLE && !self.requests.has_data() {
                break;
            }
            let elapsed = now.saturating_duration_since(started);
            if elapsed >= DRAIN_MAX {
                let completed = header.completed_seq.load(Ordering::Acquire);
                tracing::warn!(
                    left = pushed_now.saturating_sub(completed),
                    "the request ring did not settle within {DRAIN_MAX:?}; \
                     leaving what is queued to the proxy"
                );
                break;
            }
            if turn.records == 0 && turn.deferred == 0 {
                let settle_left = DRAIN_SETTLE.saturating_sub(quiet);
                self.drain_wait(settle_left.min(DRAIN_MAX.saturating_sub(elapsed)));
            }
        }
        self.plugin.fini();
        self.final_flush();
        tracing::info!(
            requests = header.stats.requests.load(Ordering::Relaxed),
            replies = header.stats.replies.load(Ordering::Relaxed),
            "drained"
        );
        Ok(())
    }

    /// Draining with nothing to do: sleep on the doorbell (the proxy rings
    /// it after a push) for at most `timeout`.
    fn drain_wait(&self, timeout: Duration) {
        let flag = SleepFlag(&self.shared.pair_header().worker_sleeping);
        flag.announce();
        if !self.requests.has_data() && !self.host.has_deferred() {
            self.shared.bell.wait(timeout);
        }
        flag.clear();
    }

    /// After `spp_fini`: forwards the replies `spp_fini` and plugin threads
    /// made until now (bounded: threads may go on replying), and publishes.
    fn final_flush(&mut self) {
        for _ in 0..FINAL_FLUSH_ROUNDS {
            if self.host.forward_deferred(BATCH_MAX) == 0 {
                break;
            }
        }
        self.host.publish();
    }
}
