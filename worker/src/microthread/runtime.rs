//! [`Runtime`]: the micro-threads of one worker. Admission copies a
//! request's bytes into a reused per-slot buffer and queues it behind its
//! flow's running request, if any (the bound and the per-flow order are
//! [`Admission`]'s, shared with async mode); a run slice resumes one micro-thread
//! (stamping `in_process_*` for the hang and poison checks, as plain mode
//! does around a call); a micro-thread that yields a wake time goes on the
//! timer heap; one that returns gives its stack back, books its outcome,
//! moves `completed_seq` (see [`Admission`]) and starts the next request
//! of its flow.
//!
//! Seqs are per pair (one pair per proxy shard): each in-flight request
//! remembers its pair, `completed_seq` is kept per pair (one
//! `Completions` each, in [`Admission`]), and its answers go back on its pair. Flow ids
//! are unique across shards, so a flow's requests queue behind each other
//! whatever the pair.

use super::pool::StackPool;
use super::{set_current, MicroYielder, Wake};
use crate::admission::Admission;
use crate::downstream::engine;
use crate::serve::{book_outcome, Handler};
use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult};
use spp_ipc::record::{monotonic_ns, RequestMeta, NS_PER_MS};
use spp_plugin_api::abi::{SppConnInfo, SPP_NOTE_MAX};
use spp_plugin_api::host::PluginLibrary;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ffi::c_int;
use std::time::Duration;

/// What `spp_process` "returned" when no micro-thread could be started
/// (no stack): the request fails like a plugin error.
const NO_STACK: c_int = -1;

/// One micro-thread running `spp_process`.
type Micro = Coroutine<(), Wake, c_int, DefaultStack>;

/// A request's own copy of what `spp_process` reads; boxed so its address
/// stays put while a micro-thread points at it (`conn.note` points into
/// `note`).
struct Job {
    conn: SppConnInfo,
    note: [u8; SPP_NOTE_MAX],
    bytes: Vec<u8>,
}

/// One in-flight request.
struct Slot {
    job: Box<Job>,
    micro: Option<Micro>,
    seq: u64,
    /// The pair (shard) it came from.
    pair: usize,
    /// Run-slice time so far (ns), for `process_time`.
    cpu_ns: u64,
    /// Suspended, waiting for its timer or a socket event.
    waiting: bool,
    /// Bumped at each resume: a timer entry of an older suspension is
    /// stale.
    suspension: u32,
}

/// The micro-threads of one worker.
pub struct Runtime {
    slots: Vec<Slot>,
    free: Vec<u32>,
    stacks: StackPool,
    /// (wake ns, slot, suspension) of every suspended micro-thread with a
    /// deadline; entries of a suspension already over are skipped.
    timers: BinaryHeap<Reverse<(Wake, u32, u32)>>,
    /// The `max_in_flight` bound, per-flow order and `completed_seq`.
    admission: Admission,
    /// Run-slice ns since the last [`Runtime::take_busy`].
    busy_ns: u64,
    /// Slots a downstream socket event was for (reused buffer).
    io_ready: Vec<u32>,
}

impl Runtime {
    /// At most `max_in_flight` requests, on stacks of `stack_size` bytes,
    /// from `pairs` pairs.
    pub fn new(max_in_flight: usize, stack_size: usize, pairs: usize) -> Self {
        Runtime {
            slots: Vec::with_capacity(max_in_flight),
            free: Vec::with_capacity(max_in_flight),
            stacks: StackPool::new(stack_size, max_in_flight),
            timers: BinaryHeap::with_capacity(max_in_flight),
            admission: Admission::new(max_in_flight, pairs),
            busy_ns: 0,
            io_ready: Vec::with_capacity(max_in_flight),
        }
    }

    /// Whether another request may be taken from pair `pair`'s ring.
    #[inline]
    pub fn can_take(&self, pair: usize) -> bool {
        self.admission.can_take(pair)
    }

    /// Whether another request may be taken from some pair's ring.
    pub fn can_take_any(&self) -> bool {
        self.admission.can_take_any()
    }

    /// Requests held (running, suspended or queued behind their flow).
    pub fn in_flight(&self) -> usize {
        self.admission.in_flight()
    }

    /// The earliest wake time of a suspended micro-thread.
    pub fn next_wake(&self) -> Option<Wake> {
        self.timers.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Run-slice time since the last call (for `busy_ns`).
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

    /// Takes a request of pair `pair` (its note and bytes are copied):
    /// runs it now, or queues it behind its flow's running request. Call
    /// only when [`can_take`] that pair.
    ///
    /// [`can_take`]: Runtime::can_take
    pub fn admit(
        &mut self,
        handler: &mut Handler,
        pair: usize,
        meta: &RequestMeta,
        note: &[u8],
        req: &[u8],
    ) {
        crate::stats::bump(&handler.shared.pair_header().stats.requests, 1);
        let idx = match self.free.pop() {
            Some(idx) => idx,
            None => {
                self.slots.push(Slot {
                    job: Box::new(Job {
                        conn: SppConnInfo::default(),
                        note: [0; SPP_NOTE_MAX],
                        bytes: Vec::new(),
                    }),
                    micro: None,
                    seq: 0,
                    pair: 0,
                    cpu_ns: 0,
                    waiting: false,
                    suspension: 0,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[idx as usize];
        let job = &mut *slot.job;
        // `split_request` bounds the note by SPP_NOTE_MAX.
        let note = &note[..note.len().min(SPP_NOTE_MAX)];
        job.note[..note.len()].copy_from_slice(note);
        job.conn = meta.conn.with_note(&job.note[..note.len()]);
        slot.job.bytes.clear();
        slot.job.bytes.extend_from_slice(req);
        slot.seq = meta.seq;
        slot.pair = pair;
        slot.cpu_ns = 0;
        if self.admission.enter(idx, meta.conn.flow, pair, meta.seq) {
            self.start(handler, idx);
        }
    }

    /// Resumes every micro-thread whose wake time is at or before `now`.
    /// Returns how many it resumed.
    pub fn wake_due(&mut self, handler: &mut Handler, now: Wake) -> usize {
        let mut woken = 0;
        while let Some(&Reverse((at, idx, suspension))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let slot = &self.slots[idx as usize];
            if slot.waiting && slot.suspension == suspension {
                woken += 1;
                self.run_slice(handler, idx);
            }
        }
        woken
    }

    /// Drops the timer entries at the top of the heap that belong to a
    /// suspension already over (the call was answered before its
    /// deadline), so [`Runtime::next_wake`] names a real deadline and an
    /// idle worker does not wake for nothing.
    pub fn drop_stale_timers(&mut self) {
        while let Some(&Reverse((_, idx, suspension))) = self.timers.peek() {
            let slot = &self.slots[idx as usize];
            if slot.waiting && slot.suspension == suspension {
                break;
            }
            self.timers.pop();
        }
    }

    /// Resumes the suspended micro-threads a downstream socket event is
    /// for (looking for new events first, without waiting, while sockets
    /// are in use). A slot with several events, or not suspended, is
    /// resumed at most once. Returns how many it resumed.
    pub fn wake_io(&mut self, handler: &mut Handler) -> usize {
        let bell = &handler.shared.bell;
        let mut ready = std::mem::take(&mut self.io_ready);
        let taken = engine::with(|engine| {
            if engine.busy() {
                engine.poll(bell, Duration::ZERO);
            }
            engine.take_ready(&mut ready);
        });
        let mut woken = 0;
        if taken.is_some() {
            for &idx in &ready {
                if self
                    .slots
                    .get(idx as usize)
                    .is_some_and(|slot| slot.waiting)
                {
                    woken += 1;
                    self.run_slice(handler, idx);
                }
            }
        }
        ready.clear();
        self.io_ready = ready;
        woken
    }

    /// Starts the micro-thread of slot `idx`, and the next requests of its
    /// flow while each finishes without suspending.
    fn start(&mut self, handler: &mut Handler, idx: u32) {
        let Some(stack) = self.stacks.take() else {
            self.finish(handler, idx, NO_STACK);
            return;
        };
        let plugin: &'static PluginLibrary = handler.plugin;
        let job: *const Job = &*self.slots[idx as usize].job;
        let body = move |yielder: &MicroYielder, ()| {
            set_current(yielder);
            // SAFETY: the job is boxed in its slot, which is neither
            // reused nor freed before this micro-thread returns (the slot
            // is freed in `finish`, after the coroutine completed), and it
            // is not written meanwhile.
            let job = unsafe { &*job };
            let rc = plugin.process(&job.conn, &job.bytes).unwrap_or(-1);
            set_current(std::ptr::null());
            rc
        };
        self.slots[idx as usize].micro = Some(Coroutine::with_stack(stack, body));
        self.run_slice(handler, idx);
    }

    /// Runs slot `idx`'s micro-thread until it suspends or returns.
    fn run_slice(&mut self, handler: &mut Handler, idx: u32) {
        let shared = handler.shared;
        let slot = &mut self.slots[idx as usize];
        let Some(micro) = slot.micro.as_mut() else {
            return;
        };
        slot.waiting = false;
        slot.suspension = slot.suspension.wrapping_add(1);
        super::set_current_slot(idx);
        let (pair, flow) = (slot.pair, slot.job.conn.flow);
        if !shared.others.is_empty() {
            handler
                .host
                .with_responder(|r| r.serving(Some((pair, flow))));
        }
        let started = monotonic_ns();
        shared.enter_process(pair, slot.seq, (started / NS_PER_MS).max(1));
        let result = micro.resume(());
        set_current(std::ptr::null());
        let ended = monotonic_ns();
        shared.leave_process(pair);
        if !shared.others.is_empty() {
            handler.host.with_responder(|r| r.serving(None));
        }
        let beat_ms = ended / NS_PER_MS;
        if beat_ms != handler.beat_ms {
            handler.beat_ms = beat_ms;
            shared.beat(beat_ms);
        }
        let spent = ended.saturating_sub(started);
        slot.cpu_ns += spent;
        self.busy_ns += spent;
        match result {
            CoroutineResult::Yield(wake) => {
                slot.waiting = true;
                if wake != Wake::MAX {
                    self.timers.push(Reverse((wake, idx, slot.suspension)));
                }
            }
            CoroutineResult::Return(rc) => self.finish(handler, idx, rc),
        }
    }

    /// Slot `idx`'s request is done with `rc`: stack back to the pool,
    /// outcome booked, `completed_seq` moved, slot freed, and the flow's
    /// next request started.
    fn finish(&mut self, handler: &mut Handler, idx: u32, rc: c_int) {
        let slot = &mut self.slots[idx as usize];
        if let Some(micro) = slot.micro.take() {
            self.stacks.give(micro.into_stack());
        }
        let (flow, seq, pair) = (slot.job.conn.flow, slot.seq, slot.pair);
        handler
            .shared
            .pair_header()
            .process_time
            .record(slot.cpu_ns);
        let (upto, next) = self.admission.leave(idx, flow, pair, seq);
        handler.host.with_responder(|responder| {
            book_outcome(responder, pair, flow, rc);
            if let Some(upto) = upto {
                responder.complete_on(pair, upto);
            }
        });
        handler.warn_panicked(flow, rc);
        self.free.push(idx);
        let Some(next) = next else {
            return;
        };
        // Recursion depth: at most the flow's queued requests, which
        // are bounded by `max_in_flight`.
        self.start(handler, next);
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
}
