//! The ring loop: take a batch of requests, call `spp_process` on each in
//! place (the request bytes stay in the ring, no copy), forward deferred
//! replies, then release the request ring and publish the response ring once
//! for the whole batch. With nothing to do: spin `spin_us`, announce sleep,
//! look once more, and block on the doorbell for at most a heartbeat.
//!
//! A stop signal switches the slot to `Draining`: the requests already in
//! the ring are served, replies flushed, `spp_fini` called, and the loop
//! returns.

use crate::attach::Shared;
use crate::error::WorkerError;
use crate::host::{HostServices, DEFERRED_CAPACITY};
use crate::stats::BatchTally;
use spp_ipc::doorbell::SleepFlag;
use spp_ipc::launch::WorkerLaunch;
use spp_ipc::layout::WorkerState;
use spp_ipc::record::{monotonic_ns, split_request, KIND_REQUEST};
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
/// Spin iterations between two looks at the clock while spinning.
const SPIN_CLOCK_EVERY: u32 = 64;
/// Forwarding rounds after `spp_fini` at most: enough to empty a full
/// deferred-reply channel once.
const FINAL_FLUSH_ROUNDS: usize = DEFERRED_CAPACITY.div_ceil(BATCH_MAX);
/// Nanoseconds per millisecond, for `heartbeat_ms`.
const NS_PER_MS: u64 = 1_000_000;

/// What one loop turn did.
#[derive(Clone, Copy, Debug, Default)]
struct Turn {
    requests: usize,
    deferred: usize,
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
    tally: BatchTally,
}

impl Server {
    /// A server for the worker `spec` describes, on its attached rings.
    pub fn new(
        spec: &WorkerLaunch,
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
            tally: BatchTally::default(),
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
            if turn.requests == 0 && turn.deferred == 0 {
                self.idle();
            }
        }
    }

    /// One loop turn: a batch of requests, deferred replies, one publish.
    fn turn(&mut self) -> Result<Turn, WorkerError> {
        let started = monotonic_ns();
        let requests = self.process_batch()?;
        let deferred = self.host.forward_deferred(BATCH_MAX);
        self.requests.release();
        let header = self.shared.pair_header();
        if requests != 0 {
            // Before the publish: a proxy that sees the replies sees the
            // counters that go with them.
            self.tally.busy_ns = monotonic_ns().saturating_sub(started);
            self.tally.commit(&header.stats);
        }
        self.host.publish();
        header
            .heartbeat_ms
            .store(started / NS_PER_MS, Ordering::Relaxed);
        Ok(Turn { requests, deferred })
    }

    /// Calls `spp_process` on up to [`BATCH_MAX`] published requests.
    fn process_batch(&mut self) -> Result<usize, WorkerError> {
        let mut served = 0;
        while served < BATCH_MAX {
            let (group, index) = (self.group, self.index);
            let record = self.requests.peek().map_err(|source| WorkerError::Ring {
                group,
                index,
                source,
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
                // The request is read in place; the ring is not released
                // before the batch ends, so `req` stays valid for the call.
                // Counted before the call (one plain store, no lock), so a
                // request stuck inside `process` shows in the stats.
                crate::stats::bump(&self.shared.pair_header().stats.requests, 1);
                let rc = self.plugin.process(&meta.conn, req).unwrap_or(-1);
                let (flow, seq) = (meta.conn.flow, meta.seq);
                let host = self.host;
                let tally = &mut self.tally;
                host.with_responder(|responder| {
                    if rc != 0 {
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
                    tracing::warn!(flow, "spp_process panicked; closing the connection");
                }
            } else {
                tracing::warn!(
                    kind = record.kind,
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
                std::hint::spin_loop();
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(SPIN_CLOCK_EVERY) && started.elapsed() >= self.spin {
                    break;
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

    /// Serves what is already in the ring, flushes, calls `spp_fini`.
    fn drain(mut self) -> Result<(), WorkerError> {
        let header = self.shared.pair_header();
        header
            .worker_state
            .store(WorkerState::Draining as u32, Ordering::Release);
        tracing::info!("stop requested: draining the request ring");
        // The proxy sends nothing new to a Draining slot, so the ring runs
        // empty; a turn that found no request ends the drain.
        while self.turn()?.requests != 0 {}
        self.plugin.fini();
        self.final_flush();
        tracing::info!(
            requests = header.stats.requests.load(Ordering::Relaxed),
            replies = header.stats.replies.load(Ordering::Relaxed),
            "drained"
        );
        Ok(())
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
