//! [`Runtime`]: the in-flight table of an async worker. Admission calls
//! `spp_process` on the ring's bytes in place when the request's flow is
//! free, or copies the request into its slot to run when the flow's
//! running request completes ([`Admission`]). A call that returns without
//! `defer` completes its request at once with its return code; a deferred
//! one stays until the plugin completes it (the token book in
//! [`super`]) or it expires. Each completion books the outcome (a
//! non-zero code closes the connection, as in plain mode), moves
//! `completed_seq` and starts the flow's next request.
//!
//! Around each `spp_process` call, as in plain mode: `in_process_*`
//! stamped (hang and poison checks), the heartbeat, `process_time`
//! (the call's duration) and `busy_ns`.

use super::slots;
use crate::admission::Admission;
use crate::serve::{book_outcome, Handler};
use crate::throttle::LogThrottle;
use spp_ipc::record::{monotonic_ns, RequestMeta, NS_PER_MS};
use spp_plugin_api::abi::{SppConnInfo, SPP_NOTE_MAX};
use std::ffi::c_int;

/// What `spp_process` "returned" when the plugin has none.
const NO_PROCESS: c_int = -1;

/// A queued request's own copy of what `spp_process` reads.
struct Job {
    conn: SppConnInfo,
    note: [u8; SPP_NOTE_MAX],
    bytes: Vec<u8>,
}

/// One held request.
struct Slot {
    /// The copy of a request queued behind its flow (taken out while its
    /// `spp_process` runs).
    job: Option<Box<Job>>,
    flow: u64,
    seq: u64,
    /// The pair (shard) it came from.
    pair: usize,
    /// CLOCK_MONOTONIC ns after which a deferred request is expired
    /// (`u64::MAX`: not deferred).
    deadline: u64,
}

/// The held requests of one async worker.
pub struct Runtime {
    slots: Vec<Slot>,
    free: Vec<u32>,
    admission: Admission,
    /// `task_timeout` + `SPP_TASK_GRACE_MS`, ns.
    expire_after_ns: u64,
    /// The earliest deadline of a deferred request (`u64::MAX`: none); a
    /// scan at or after it finds what expired.
    next_expiry: u64,
    /// `spp_process` ns (and `spp_poll` busy ns) since the last
    /// [`Runtime::take_busy`].
    busy_ns: u64,
    /// Slots found expired (reused buffer).
    expired: Vec<u32>,
    warn_expired: LogThrottle,
}

impl Runtime {
    /// At most `max_in_flight` requests from `pairs` pairs; a deferred
    /// request expires `expire_after_ns` after its call began.
    pub fn new(max_in_flight: usize, pairs: usize, expire_after_ns: u64) -> Self {
        Runtime {
            slots: Vec::with_capacity(max_in_flight),
            free: Vec::with_capacity(max_in_flight),
            admission: Admission::new(max_in_flight, pairs),
            expire_after_ns,
            next_expiry: u64::MAX,
            busy_ns: 0,
            expired: Vec::with_capacity(max_in_flight),
            warn_expired: LogThrottle::default(),
        }
    }

    /// Whether another request may be taken from pair `pair`'s ring.
    #[inline]
    pub fn can_take(&self, pair: usize) -> bool {
        self.admission.can_take(pair)
    }

    /// Requests held (running, deferred or queued behind their flow).
    pub fn in_flight(&self) -> usize {
        self.admission.in_flight()
    }

    /// When the next deferred request may expire (`None`: none deferred).
    pub fn next_expiry(&self) -> Option<u64> {
        (self.next_expiry != u64::MAX).then_some(self.next_expiry)
    }

    /// Adds busy time the plugin reported (`spp_poll`).
    pub fn add_busy(&mut self, ns: u64) {
        self.busy_ns = self.busy_ns.saturating_add(ns);
    }

    /// Busy time since the last call (for `busy_ns`).
    pub fn take_busy(&mut self) -> u64 {
        std::mem::take(&mut self.busy_ns)
    }

    /// A request of pair `pair` done the moment it was taken (expired,
    /// another generation's): completed in order with the others.
    pub fn done_at_once(&mut self, handler: &Handler, pair: usize, seq: u64) {
        if let Some(upto) = self.admission.done_at_once(pair, seq) {
            handler.host.with_responder(|r| r.complete_on(pair, upto));
        }
    }

    /// Takes a request of pair `pair`: calls `spp_process` on `req` in
    /// place now if its flow is free (the caller releases the ring only
    /// after this returns), or copies it to run after its flow's running
    /// request. Call only when [`Runtime::can_take`] that pair.
    pub fn admit(
        &mut self,
        handler: &mut Handler,
        pair: usize,
        meta: &RequestMeta,
        note: &[u8],
        req: &[u8],
    ) {
        crate::stats::bump(&handler.shared.pair_header().stats.requests, 1);
        let idx = self.slot();
        let flow = meta.conn.flow;
        let slot = &mut self.slots[idx as usize];
        slot.flow = flow;
        slot.seq = meta.seq;
        slot.pair = pair;
        slot.deadline = u64::MAX;
        if self.admission.enter(idx, flow, pair, meta.seq) {
            let conn = meta.conn.with_note(note);
            self.run(handler, idx, &conn, req);
        } else {
            let job = slot.job.get_or_insert_with(|| {
                Box::new(Job {
                    conn: SppConnInfo::default(),
                    note: [0; SPP_NOTE_MAX],
                    bytes: Vec::new(),
                })
            });
            // `split_request` bounds the note by SPP_NOTE_MAX.
            let note = &note[..note.len().min(SPP_NOTE_MAX)];
            job.note[..note.len()].copy_from_slice(note);
            job.conn = meta.conn;
            job.conn.note_len = note.len() as u32;
            job.bytes.clear();
            job.bytes.extend_from_slice(req);
        }
    }

    /// A free slot (a new one, up to `max_in_flight`).
    fn slot(&mut self) -> u32 {
        if let Some(idx) = self.free.pop() {
            return idx;
        }
        self.slots.push(Slot {
            job: None,
            flow: 0,
            seq: 0,
            pair: 0,
            deadline: u64::MAX,
        });
        let idx = (self.slots.len() - 1) as u32;
        slots::ensure(idx);
        idx
    }

    /// Applies the completions the plugin made on this thread (queued by
    /// `spp_host.complete`) and those forwarded from its threads. Returns
    /// how many.
    pub fn drain_completions(&mut self, handler: &mut Handler) -> usize {
        let mut done = 0;
        while let Some((idx, rc)) = slots::take_completion() {
            done += 1;
            self.finish(handler, idx, rc);
        }
        done
    }

    /// Expires the deferred requests whose deadline passed by `now`: each
    /// has its connection closed, is counted and completed. Returns how
    /// many.
    pub fn expire_due(&mut self, handler: &mut Handler, now: u64) -> usize {
        if now < self.next_expiry {
            return 0;
        }
        let mut expired = std::mem::take(&mut self.expired);
        let mut next = u64::MAX;
        for (idx, slot) in self.slots.iter().enumerate() {
            if slot.deadline == u64::MAX || !slots::is_deferred(idx as u32) {
                continue;
            }
            if slot.deadline <= now {
                expired.push(idx as u32);
            } else {
                next = next.min(slot.deadline);
            }
        }
        self.next_expiry = next;
        let count = expired.len();
        for &idx in &expired {
            let (pair, flow) = {
                let slot = &self.slots[idx as usize];
                (slot.pair, slot.flow)
            };
            handler.host.with_responder(|r| {
                r.tally().tasks_expired += 1;
                // Counted in `replies_dropped` if it cannot be queued.
                let _ = r.close_on(pair, flow);
            });
            if let Some(suppressed) = self.warn_expired.allow() {
                tracing::warn!(
                    flow,
                    expire_after_ms = self.expire_after_ns / NS_PER_MS,
                    suppressed,
                    "a deferred request was not completed within task_timeout and its grace; \
                     closing its connection"
                );
            }
            self.finish(handler, idx, 0);
        }
        expired.clear();
        self.expired = expired;
        count
    }

    /// Calls `spp_process` for slot `idx` on `conn`/`req`, then completes
    /// it with the return code unless it deferred.
    fn run(&mut self, handler: &mut Handler, idx: u32, conn: &SppConnInfo, req: &[u8]) {
        let shared = handler.shared;
        let (pair, seq, flow) = {
            let slot = &self.slots[idx as usize];
            (slot.pair, slot.seq, slot.flow)
        };
        if !shared.others.is_empty() {
            handler
                .host
                .with_responder(|r| r.serving(Some((pair, flow))));
        }
        slots::begin(idx);
        let started = monotonic_ns();
        shared.enter_process(pair, seq, (started / NS_PER_MS).max(1));
        let rc = handler.plugin.process(conn, req).unwrap_or(NO_PROCESS);
        let ended = monotonic_ns();
        shared.leave_process(pair);
        let deferred = slots::end(idx);
        if !shared.others.is_empty() {
            handler.host.with_responder(|r| r.serving(None));
        }
        let beat_ms = ended / NS_PER_MS;
        if beat_ms != handler.beat_ms {
            handler.beat_ms = beat_ms;
            shared.beat(beat_ms);
        }
        let spent = ended.saturating_sub(started);
        shared.pair_header().process_time.record(spent);
        self.busy_ns = self.busy_ns.saturating_add(spent);
        if deferred {
            let deadline = started.saturating_add(self.expire_after_ns);
            self.slots[idx as usize].deadline = deadline;
            self.next_expiry = self.next_expiry.min(deadline);
        } else {
            self.finish(handler, idx, rc);
        }
    }

    /// Runs the copied request of slot `idx` (queued behind its flow).
    fn run_queued(&mut self, handler: &mut Handler, idx: u32) {
        let Some(job) = self.slots[idx as usize].job.take() else {
            // Never: a queued request always has its copy.
            self.finish(handler, idx, NO_PROCESS);
            return;
        };
        let conn = job.conn.with_note(&job.note[..job.conn.note_len as usize]);
        self.run(handler, idx, &conn, &job.bytes);
        // Back for the slot's next queued request (nothing admits while
        // this runs, so the slot has no other copy meanwhile).
        let slot = &mut self.slots[idx as usize];
        if slot.job.is_none() {
            slot.job = Some(job);
        }
    }

    /// Slot `idx`'s request is done with `rc`: outcome booked,
    /// `completed_seq` moved, slot freed (its token unknown), and the
    /// flow's next request started.
    fn finish(&mut self, handler: &mut Handler, idx: u32, rc: c_int) {
        let (flow, seq, pair) = {
            let slot = &mut self.slots[idx as usize];
            slot.deadline = u64::MAX;
            (slot.flow, slot.seq, slot.pair)
        };
        slots::free(idx);
        let (upto, next) = self.admission.leave(idx, flow, pair, seq);
        handler.host.with_responder(|responder| {
            book_outcome(responder, pair, flow, rc);
            if let Some(upto) = upto {
                responder.complete_on(pair, upto);
            }
        });
        handler.warn_panicked(flow, rc);
        self.free.push(idx);
        if let Some(next) = next {
            // Recursion depth: at most the flow's queued requests, which
            // are bounded by `max_in_flight`.
            self.run_queued(handler, next);
        }
    }
}

impl crate::holding::Holder for Runtime {
    fn can_take(&self, pair: usize) -> bool {
        Runtime::can_take(self, pair)
    }

    fn done_at_once(&mut self, handler: &Handler, pair: usize, seq: u64) {
        Runtime::done_at_once(self, handler, pair, seq);
    }

    fn admit(
        &mut self,
        handler: &mut Handler,
        pair: usize,
        meta: &RequestMeta,
        note: &[u8],
        req: &[u8],
    ) {
        Runtime::admit(self, handler, pair, meta, note, req);
    }

    fn after_hook(&mut self, handler: &mut Handler) {
        // Completions made in that call (of other requests).
        self.drain_completions(handler);
    }
}
