//! The ring loop: take a batch of requests, call `spp_process` on each in
//! place (the request bytes stay in the ring, no copy), forward deferred
//! replies, then release the request ring and publish the response ring once
//! for the whole batch. With nothing to do: spin `spin_us` (yielding the CPU
//! every few spins, see [`SPIN_YIELD_EVERY`]), announce sleep, look once
//! more, and block on the doorbell for at most a heartbeat.
//!
//! The ring ends are the worker's end of the pair protocol
//! ([`spp_ipc::pair`]): [`WorkerRequests`] tells this generation's requests
//! from those stamped for another one, which were pushed before the proxy
//! adopted this worker (its predecessor's, already failed by the proxy):
//! those are skipped unserved, but still completed, so `completed_seq`
//! keeps pace with `pushed_seq`.
//!
//! Per request taken, in the pair header, with one clock read per request
//! (the end of one call is the start of the next, the batch's first request
//! starts at the turn's clock read) and no lock, allocation or syscall:
//! its queue wait (now − `enqueued_ns`) goes to `queue_wait`. A request
//! that waited longer than the launch spec's `msg_timeout_ms` (when not 0)
//! is not processed: it goes back as a `KIND_EXPIRED` record
//! ([`Responder::expire`](crate::respond::Responder::expire)), counted in
//! `stale_dropped`, and its seq is completed. Otherwise
//! `in_process_since_ms` is stored before the call (the controller's hang
//! check), with `in_process_seq` (the request the proxy books as poison if
//! the worker dies in the call), the call's duration goes to
//! `process_time` and `busy_ns`, both go back to 0 as soon as the call
//! returns, and `heartbeat_ms` takes the call's end.
//!
//! Liveness: `heartbeat_ms` is stamped at every loop turn and after every
//! `spp_process` call, and the loop never sleeps longer than
//! [`HEARTBEAT_INTERVAL`] without a turn, so a worker with requests waiting
//! whose stamp is older than its group's `hang_timeout` plus that interval,
//! and which is not inside `spp_process`, is frozen (SIGSTOP, a plugin
//! thread holding the loop, a stalled page fault): the controller kills it
//! (`spp_daemon::supervisor::housekeeping`).
//!
//! A stop signal switches the slot to `Draining` and rings the proxy's
//! doorbell ([`WorkerSlot::start_draining`]). The loop goes on serving
//! until the proxy will push nothing more ([`DrainWatch`]: it acknowledged
//! the drain, or it is not running) and the request ring is empty, for at most the launch spec's
//! `drain_timeout_ms`; then replies are flushed, `spp_fini` called, and the
//! loop returns. A SIGHUP reopens the launch spec's log file between two
//! turns.
//!
//! Several proxy shards (one pair each, see `attach`): a turn visits every
//! pair once, from a starting pair that rotates each turn
//! ([`Rotation`]), and takes at most [`BATCH_MAX`] records from each; with
//! more than one pair, a pair's batch is released and published as soon
//! as it is done, so one shard's replies do not wait for the others'
//! batches. Each request is answered and completed on its own pair. Idle,
//! the loop looks at every ring (one shared load each, no syscall) and
//! sleeps on all of them at once ([`sleep_all`]). Stop: `Draining` on
//! every pair, and the drain ends once every pair is released and every
//! ring empty.

use crate::attach::Shared;
use crate::drain::{DrainWatch, DRAIN_POLL};
use crate::error::WorkerError;
use crate::host::{HostServices, DEFERRED_CAPACITY};
use crate::respond::Responder;
use crate::signals::Signals;
use crate::throttle::LogThrottle;
use spp_ipc::launch::{AsyncSpec, MicroThreadSpec, WorkerLaunch};
use spp_ipc::pair::{sleep_all, Request, RequestRecord, Rotation, WorkerRequests, WorkerSlot};
use spp_ipc::record::{monotonic_ns, RequestMeta, NS_PER_MS, NS_PER_US};
use spp_ipc::spin::AdaptiveSpin;
use spp_plugin_api::abi::SPP_HOOK_PANICKED;
use spp_plugin_api::host::PluginLibrary;
use std::cell::Cell;
use std::ffi::c_int;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Requests served between two publishes of the response ring (and releases
/// of the request ring) at most; per pair and turn with several shards.
pub const BATCH_MAX: usize = 64;
/// Request-ring bytes taken between two releases at most (the batch ends
/// after the record that reaches it): large requests free their ring
/// space while the proxy still pushes, so a ring that holds one request
/// per client never fills with requests already served.
pub const BATCH_BYTES: u64 = 256 << 10;
/// The longest the worker sleeps without a loop turn (and a heartbeat).
pub const HEARTBEAT_INTERVAL: Duration = spp_ipc::pair::WORKER_HEARTBEAT_INTERVAL;
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
pub(crate) const SPIN_YIELD_EVERY: u32 = 64;
/// Tells the adaptive spin how long a wait lasted (sleep included).
pub(crate) fn record_wait(spin: &Cell<AdaptiveSpin>, waited_ns: u64) {
    let mut s = spin.get();
    s.record(waited_ns);
    spin.set(s);
}

/// The next published record of `requests` (one pair's ring), a corrupt
/// ring reported as worker `group`/`index`'s.
pub(crate) fn peek_request<'r>(
    requests: &'r mut WorkerRequests<'static>,
    group: u32,
    index: u32,
) -> Result<Option<RequestRecord<'r>>, WorkerError> {
    requests.peek().map_err(|cause| WorkerError::Ring {
        group,
        index,
        cause,
    })
}

/// Nanoseconds since `since`, saturated.
pub(crate) fn elapsed_ns(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Forwarding rounds after `spp_fini` at most: enough to empty a full
/// deferred-reply channel once.
const FINAL_FLUSH_ROUNDS: usize = DEFERRED_CAPACITY.div_ceil(BATCH_MAX);
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
    expired: LogThrottle,
    unknown: LogThrottle,
}

/// The worker's serving state.
pub struct Server {
    pub(crate) shared: &'static Shared,
    pub(crate) host: HostServices,
    plugin: &'static PluginLibrary,
    /// Pair `k`'s request ring at `k` (shard 0 first).
    pub(crate) requests: Vec<WorkerRequests<'static>>,
    /// The order the pairs are visited in, turn after turn.
    pub(crate) rotation: Rotation,
    /// How long an idle turn spins now (adapts within the group's `spin`).
    pub(crate) spin: Cell<AdaptiveSpin>,
    pub(crate) signals: Signals,
    pub(crate) group: u32,
    pub(crate) index: u32,
    /// This worker's hold on its slot in every pair (generation, state,
    /// drain ack), pair `k` at `k`.
    slots: Vec<WorkerSlot<'static>>,
    /// What is done with each request taken from the ring.
    pub(crate) handler: Handler,
    /// The longest a drain may take.
    pub(crate) drain_timeout: Duration,
    /// Micro-thread mode (`None`: plain, one `spp_process` at a time).
    micro: Option<MicroThreadSpec>,
    /// Async mode (`None`: another mode).
    tasks: Option<AsyncSpec>,
    /// The log file to reopen on SIGHUP.
    log_file: Option<PathBuf>,
}

/// The per-request part of the server, apart from the ring so that a
/// request read in place can be handed to it.
pub(crate) struct Handler {
    pub(crate) shared: &'static Shared,
    pub(crate) host: HostServices,
    pub(crate) plugin: &'static PluginLibrary,
    /// The tag of this worker's generation (for logs).
    tag: u16,
    /// A request that waited longer than this (ns) is not processed
    /// (`u64::MAX`: no limit).
    stale_after_ns: u64,
    /// The `heartbeat_ms` this handler stored last.
    pub(crate) beat_ms: u64,
    warnings: Warnings,
}

/// What happened to one request of this worker's generation.
enum Taken {
    /// It waited too long and went back as `KIND_EXPIRED`.
    Expired,
    /// `spp_process` ran; the clock when it returned.
    Processed { ended_ns: u64 },
}

impl Server {
    /// A server for the worker `spec` describes, holding `slots` (one per
    /// pair), on its attached request rings (pair `k` at `k`).
    pub fn new(
        spec: &WorkerLaunch,
        slots: Vec<WorkerSlot<'static>>,
        shared: &'static Shared,
        host: HostServices,
        plugin: &'static PluginLibrary,
        requests: Vec<WorkerRequests<'static>>,
        signals: Signals,
    ) -> Self {
        let tag = slots.first().map_or(0, |slot| slot.tag().raw());
        let stale_after_ns = match spec.msg_timeout_ms {
            0 => u64::MAX,
            ms => ms.saturating_mul(NS_PER_MS),
        };
        Server {
            shared,
            host,
            plugin,
            rotation: Rotation::new(requests.len()),
            requests,
            spin: Cell::new(AdaptiveSpin::new(spec.spin_us.saturating_mul(NS_PER_US))),
            signals,
            group: spec.group,
            index: spec.index,
            slots,
            handler: Handler {
                shared,
                host,
                plugin,
                tag,
                stale_after_ns,
                beat_ms: 0,
                warnings: Warnings::default(),
            },
            drain_timeout: Duration::from_millis(spec.drain_timeout_ms),
            micro: spec.microthreads,
            tasks: spec.async_tasks,
            log_file: spec.log.file.clone(),
        }
    }

    /// Serves until a stop signal, then drains. Errors only on a corrupt
    /// request ring.
    pub fn run(mut self) -> Result<(), WorkerError> {
        // Chosen once: plain mode keeps its own loop, untouched.
        if let Some(micro) = self.micro {
            return crate::microthread::serve::run(self, micro);
        }
        if let Some(tasks) = self.tasks {
            return crate::tasks::serve::run(self, tasks);
        }
        loop {
            let turn = self.turn()?;
            self.reopen_log_if_asked();
            if self.signals.stop_requested() {
                return self.drain();
            }
            if turn.records == 0 && turn.deferred == 0 {
                self.idle();
            }
        }
    }

    /// One loop turn: a batch of requests from each pair, deferred
    /// replies, one publish (and one per pair's batch with several pairs).
    fn turn(&mut self) -> Result<Turn, WorkerError> {
        let started = monotonic_ns();
        let several = self.requests.len() > 1;
        let mut now = started;
        let mut records = 0;
        for pair in self.rotation.turn() {
            let taken;
            (taken, now) = self.process_batch(pair, now)?;
            records += taken;
            if several && taken > 0 {
                self.requests[pair].release();
                self.host.publish();
            }
        }
        let deferred = self.host.forward_deferred(BATCH_MAX);
        for requests in &mut self.requests {
            requests.release();
        }
        self.host.publish();
        self.shared.beat(started / NS_PER_MS);
        Ok(Turn { records, deferred })
    }

    /// Takes up to [`BATCH_MAX`] published requests ([`BATCH_BYTES`] of
    /// ring) of pair `pair`: processes them, expires stale ones, skips
    /// other generations'. `now` is the clock (CLOCK_MONOTONIC ns) at the
    /// start of the batch. Returns how many records it consumed, and the
    /// clock at its end.
    fn process_batch(&mut self, pair: usize, mut now: u64) -> Result<(usize, u64), WorkerError> {
        let mut served = 0;
        let mut busy_ns = 0u64;
        let mut processed = false;
        let mut taken = 0;
        while served < BATCH_MAX && taken < BATCH_BYTES {
            let record = peek_request(&mut self.requests[pair], self.group, self.index)?;
            let Some(record) = record else { break };
            let stride = record.stride();
            match record.request {
                Request::Mine { meta, note, bytes } => {
                    // The request is read in place; the ring is not
                    // released before the batch ends, so `note` and
                    // `bytes` stay valid.
                    match self.handler.take(pair, meta, note, bytes, now) {
                        Taken::Expired => {}
                        Taken::Processed { ended_ns } => {
                            busy_ns += ended_ns.saturating_sub(now);
                            now = ended_ns;
                            processed = true;
                        }
                    }
                }
                Request::OtherGeneration { meta, tag } => self.handler.skip(pair, meta, tag),
                Request::FlowsClosed(flows) => {
                    for flow in flows.iter() {
                        self.handler.plugin.flow_closed(flow);
                    }
                }
                Request::Malformed { len } => {
                    return Err(WorkerError::BadRecord {
                        group: self.group,
                        index: self.index,
                        len,
                    });
                }
                Request::UnknownKind { kind } => {
                    if let Some(suppressed) = self.handler.warnings.unknown.allow() {
                        tracing::warn!(
                            kind,
                            suppressed,
                            "skipping a request-ring record of unknown kind"
                        );
                    }
                }
            }
            self.requests[pair].advance(stride);
            served += 1;
            taken += stride;
        }
        if processed {
            // Written with the publish, like the other counters.
            self.host.with_responder(|r| r.tally().busy_ns += busy_ns);
        }
        Ok((served, now))
    }

    /// No work: spin, then sleep on the doorbell until rung or a heartbeat
    /// passes.
    /// The spin adapts (`spp_ipc::spin`) to how long this wait lasted,
    /// sleep included, so light load spins little.
    fn idle(&mut self) {
        let started = Instant::now();
        let budget = Duration::from_nanos(self.spin.get().budget_ns());
        if !budget.is_zero() {
            let mut spins = 0u32;
            loop {
                if self.work_waiting() {
                    record_wait(&self.spin, elapsed_ns(started));
                    return;
                }
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(SPIN_YIELD_EVERY) {
                    std::thread::yield_now();
                    if started.elapsed() >= budget {
                        break;
                    }
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        let bell = &self.shared.bell;
        sleep_all(
            &self.requests,
            HEARTBEAT_INTERVAL,
            || self.other_work_waiting(),
            |timeout| bell.wait(timeout),
        );
        record_wait(&self.spin, elapsed_ns(started));
    }

    /// Requests in a ring, deferred replies, or a signal to act on.
    pub(crate) fn work_waiting(&self) -> bool {
        self.requests_waiting() || self.other_work_waiting()
    }

    /// Whether any pair's request ring holds published records (one shared
    /// load per pair, no syscall).
    #[inline]
    pub(crate) fn requests_waiting(&self) -> bool {
        self.requests.iter().any(WorkerRequests::has_requests)
    }

    /// Deferred replies, or a signal to act on.
    pub(crate) fn other_work_waiting(&self) -> bool {
        self.host.has_deferred() || self.signals.stop_requested() || self.signals.reopen_pending()
    }

    /// After a SIGHUP: reopens the log file onto stdout and stderr, so a
    /// rotated (renamed) log is let go. Runs on the main loop, never in the
    /// signal handler.
    pub(crate) fn reopen_log_if_asked(&self) {
        if !self.signals.take_reopen() {
            return;
        }
        spp_ipc::logfile::reopen_after_sighup(self.log_file.as_deref());
    }

    /// Serves until the proxy pushes nothing more and the ring is empty
    /// (see [`DrainWatch`]), for at most `drain_timeout`; flushes, calls
    /// `spp_fini`.
    fn drain(mut self) -> Result<(), WorkerError> {
        let header = self.shared.pair_header();
        // The proxy stops pushing at the scan that sees `Draining`; this
        // wakes it so that scan comes now rather than at its next timer.
        for slot in &self.slots {
            slot.start_draining();
        }
        tracing::info!(
            pairs = self.slots.len(),
            "stop requested: draining the request ring"
        );
        let started = Instant::now();
        let mut watch = DrainWatch::for_pairs(self.shared, &self.slots);
        loop {
            let turn = self.turn()?;
            self.reopen_log_if_asked();
            let now = Instant::now();
            // The release first: once it is seen, the ring holds every
            // request the proxy will ever push to us.
            if let Some(why) = watch.released(now) {
                if !self.requests_waiting() {
                    tracing::info!("{why}, and the request ring is empty");
                    break;
                }
            }
            let elapsed = now.saturating_duration_since(started);
            if elapsed >= self.drain_timeout {
                tracing::warn!(
                    left = self.backlog(),
                    released = watch.released(now).is_some(),
                    "the drain did not finish within {:?}; leaving what is queued to the proxy",
                    self.drain_timeout
                );
                break;
            }
            if turn.records == 0 && turn.deferred == 0 {
                self.drain_wait(DRAIN_POLL.min(self.drain_timeout - elapsed));
            }
        }
        self.plugin.fini();
        self.final_flush();
        tracing::info!(
            requests = header.stats.requests.load(Ordering::Relaxed),
            replies = header.stats.replies.load(Ordering::Relaxed),
            stale_dropped = header.stats.stale_dropped.load(Ordering::Relaxed),
            "drained"
        );
        Ok(())
    }

    /// Draining with nothing to do: sleep on the doorbell (the proxy rings
    /// it after a push) for at most `timeout`.
    fn drain_wait(&self, timeout: Duration) {
        let bell = &self.shared.bell;
        sleep_all(
            &self.requests,
            timeout,
            || self.host.has_deferred(),
            |timeout| bell.wait(timeout),
        );
    }

    /// Requests pushed and not completed over every pair (for logs).
    pub(crate) fn backlog(&self) -> u64 {
        self.slots.iter().map(|slot| slot.backlog()).sum()
    }

    /// The plugin (for `spp_fini` after a micro-thread or async drain,
    /// and `spp_poll`).
    pub(crate) fn plugin(&self) -> &'static PluginLibrary {
        self.plugin
    }

    /// The worker's hold on its slot in every pair.
    pub(crate) fn slots(&self) -> &[WorkerSlot<'static>] {
        &self.slots
    }

    /// After `spp_fini`: forwards the replies `spp_fini` and plugin threads
    /// made until now (bounded: threads may go on replying), and publishes.
    pub(crate) fn final_flush(&mut self) {
        for _ in 0..FINAL_FLUSH_ROUNDS {
            if self.host.forward_deferred(BATCH_MAX) == 0 {
                break;
            }
        }
        self.host.publish();
    }
}

impl Handler {
    /// A request pushed for another generation of this slot: the proxy
    /// failed it already. Not served, but completed.
    fn skip(&mut self, pair: usize, meta: &RequestMeta, tag: u16) {
        let seq = meta.seq;
        self.host
            .with_responder(|responder| responder.complete_on(pair, seq));
        self.skip_logged(meta, tag);
    }

    /// [`Handler::skip`] without the completion (the caller completes).
    pub(crate) fn skip_logged(&mut self, meta: &RequestMeta, tag: u16) {
        let (flow, seq) = (meta.conn.flow, meta.seq);
        if let Some(suppressed) = self.warnings.stale.allow() {
            tracing::warn!(
                flow,
                seq,
                tag,
                own_tag = self.tag,
                suppressed,
                "skipping a request meant for another worker generation"
            );
        }
    }

    /// Takes one request of this generation at `now` (CLOCK_MONOTONIC ns):
    /// records its queue wait, then expires or processes it. `note` (its
    /// note, in place in the ring) reaches the plugin as `conn.note`.
    fn take(
        &mut self,
        pair: usize,
        meta: &RequestMeta,
        note: &[u8],
        req: &[u8],
        now: u64,
    ) -> Taken {
        let header = self.shared.pair_header();
        let (flow, seq) = (meta.conn.flow, meta.seq);
        if self.expired(pair, meta, req, now) {
            self.host
                .with_responder(|responder| responder.complete_on(pair, seq));
            return Taken::Expired;
        }
        // Counted and stamped before the call (plain stores, no lock), so a
        // request stuck inside `process` shows. 0 means "not inside".
        crate::stats::bump(&header.stats.requests, 1);
        // The request's seq too (in its own pair): if the plugin kills the
        // process, that pair's proxy books this request as the one in
        // process (poison).
        self.shared
            .enter_process(pair, seq, (now / NS_PER_MS).max(1));
        // A copy whose note points at the ring's bytes (never at what the
        // shared meta's pointer field holds).
        let conn = meta.conn.with_note(note);
        // With one pair every answer goes there: no need to say which.
        if !self.shared.others.is_empty() {
            self.host
                .with_responder(|responder| responder.serving(Some((pair, flow))));
        }
        let rc = self.plugin.process(&conn, req).unwrap_or(-1);
        let ended_ns = monotonic_ns();
        // Cleared at once, so waiting for response-ring room below never
        // looks like a hang (same cache line as the stamp: more stores).
        self.shared.leave_process(pair);
        // The loop moved: a long batch of calls, each shorter than
        // `hang_timeout`, never looks frozen to the controller. Stored at
        // most once per ms: the line also holds `completed_seq`, which the
        // proxy watches.
        let beat_ms = ended_ns / NS_PER_MS;
        if beat_ms != self.beat_ms {
            self.beat_ms = beat_ms;
            self.shared.beat(beat_ms);
        }
        header.process_time.record(ended_ns.saturating_sub(now));
        self.host.with_responder(|responder| {
            responder.serving(None);
            book_outcome(responder, pair, flow, rc);
            responder.complete_on(pair, seq);
        });
        self.warn_panicked(flow, rc);
        Taken::Processed { ended_ns }
    }

    /// Records `meta`'s queue wait at `now`; if it waited past
    /// `msg_timeout`, sends it back on pair `pair` as `KIND_EXPIRED` (not
    /// completed: the caller completes) and returns true.
    #[inline]
    pub(crate) fn expired(
        &mut self,
        pair: usize,
        meta: &RequestMeta,
        req: &[u8],
        now: u64,
    ) -> bool {
        let flow = meta.conn.flow;
        let waited = now.saturating_sub(meta.enqueued_ns);
        self.shared.pair_header().queue_wait.record(waited);
        if waited <= self.stale_after_ns {
            return false;
        }
        self.host
            .with_responder(|responder| responder.expire_on(pair, flow, req));
        if let Some(suppressed) = self.warnings.expired.allow() {
            tracing::warn!(
                flow,
                waited_ms = waited / NS_PER_MS,
                suppressed,
                "a request waited longer than msg_timeout; not processed"
            );
        }
        true
    }

    /// Logs (throttled) a `spp_process` that panicked.
    #[inline]
    pub(crate) fn warn_panicked(&mut self, flow: u64, rc: c_int) {
        if rc == SPP_HOOK_PANICKED {
            if let Some(suppressed) = self.warnings.panicked.allow() {
                tracing::warn!(
                    flow,
                    suppressed,
                    "spp_process panicked; closing the connection"
                );
            }
        }
    }
}

/// Counts a failed `spp_process` (`rc != 0`: a panic or an error) and
/// closes its connection (on pair `pair`, which the request came from).
#[inline]
pub(crate) fn book_outcome(responder: &mut Responder, pair: usize, flow: u64, rc: c_int) {
    if rc != 0 {
        let tally = responder.tally();
        if rc == SPP_HOOK_PANICKED {
            tally.plugin_panics += 1;
        } else {
            tally.process_errors += 1;
        }
        // Counted in `replies_dropped` if it cannot be queued.
        let _ = responder.close_on(pair, flow);
    }
}
