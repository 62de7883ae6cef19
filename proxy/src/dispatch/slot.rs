//! One worker slot: the proxy's end of one pair region
//! ([`spp_ipc::pair::ProxyEnd`]: the request ring it produces, the response
//! ring it consumes, sequence numbers, the pair's FIFO of requests in
//! flight, the drain acknowledgement, waking the worker), plus who serves
//! it ([`Liveness`]) and its name.
//!
//! Pushes are published once per loop turn per dirty ring (`Slot::publish`):
//! the pair end stores `pushed_seq`, publishes the ring's write index, and
//! wakes the worker only if it announced sleep. A long turn does not keep
//! the worker waiting for its end: once [`PUBLISH_EVERY_RECORDS`] records
//! or [`publish_every_bytes`] bytes are pushed unpublished, `Slot::push`
//! publishes them at once (one release store and a look at the sleep flag
//! per batch, never per request), so the worker serves the first requests
//! of a turn while the proxy still reads the rest, and releases their ring
//! space before many large requests could fill the ring.
//!
//! A full ring whose worker is running (not stalled) gets a short, bounded
//! wait before the request fails ([`Slot::wait_for_room`]: what was
//! pushed is published, then the push is retried, yielding the CPU to the
//! worker, for at most [`FULL_WAIT_NS`]); a wait that ends without room
//! makes every later push to the slot fail at once until one finds room
//! again, so a worker that stopped costs the proxy one wait, not one per
//! request.

use super::liveness::Liveness;
use super::stall::{self, Oldest, Stall};
use crate::error::ProxyError;
use spp_ipc::doorbell::Doorbell;
use spp_ipc::launch::PairFds;
use spp_ipc::layout::{PairLayout, PairRegion, HOOK_FLOW_CLOSED};
use spp_ipc::pair::{Drained, InFlight, ProxyEnd, RequestTag, ResponseRecord};
use spp_ipc::record::monotonic_ns;
use spp_ipc::ring::PushError;
use spp_plugin_api::abi::SppConnInfo;

/// Records pushed to one ring unpublished at most: the turn that pushes
/// the next one publishes them all first (see the module doc).
pub const PUBLISH_EVERY_RECORDS: u32 = 128;
/// Bytes pushed to one ring unpublished at most, unless the ring is small
/// ([`publish_every_bytes`]).
pub const PUBLISH_EVERY_BYTES: usize = 64 << 10;
/// At most this share of the ring (1/N) is pushed unpublished.
pub const PUBLISH_RING_SHARE: usize = 16;

/// How long a push waits at most for room in a full request ring whose
/// worker is running, before the request fails (`ring_full`). Long enough
/// for a worker that was off its CPU to come back and release a batch on
/// a busy small machine; short against `msg_timeout`.
pub const FULL_WAIT_NS: u64 = 2_000_000;
/// Spins between two `sched_yield`s (and looks at the clock) while waiting
/// for room.
pub const FULL_WAIT_YIELD_EVERY: u32 = 64;

/// The unpublished bytes after which a push publishes, for a request ring
/// of `capacity` bytes: [`PUBLISH_EVERY_BYTES`], or a
/// [`PUBLISH_RING_SHARE`]th of a smaller ring.
pub fn publish_every_bytes(capacity: usize) -> usize {
    PUBLISH_EVERY_BYTES
        .min(capacity / PUBLISH_RING_SHARE)
        .max(1)
}

/// One worker slot (pair region) of a group.
pub struct Slot {
    end: ProxyEnd,
    /// The worker served through it, and the generations seen die.
    pub(super) liveness: Liveness,
    /// Group id.
    pub(super) group: u32,
    /// Index in the group.
    pub(super) index: u32,
    /// The group's `msg_timeout` in ms (0: off).
    msg_timeout_ms: u64,
    /// Whether its ring moves ([`stall`]).
    stall: Stall,
    /// Listed in the dispatcher's to-publish list this turn.
    listed: bool,
    /// Records and bytes pushed since the last publish.
    unpublished_records: u32,
    unpublished_bytes: usize,
    /// [`publish_every_bytes`] of its request ring.
    publish_bytes: usize,
    /// A wait for room ended without room, and no push found room since:
    /// pushes to a full ring fail at once.
    pub(super) gave_up_waiting: bool,
}

impl Slot {
    /// Maps an inherited pair region and attaches the proxy's end.
    pub(super) fn open(
        group: u32,
        msg_timeout_ms: u64,
        fds: &PairFds,
        layout: PairLayout,
    ) -> Result<Self, ProxyError> {
        let what = || {
            format!(
                "group {group} worker slot {} (fd {})",
                fds.index, fds.region_fd
            )
        };
        // SAFETY: the launch contract hands this fd to the proxy alone; the
        // caller checked it appears once in the spec.
        let pair = unsafe { PairRegion::open(fds.region_fd, layout) }.map_err(|source| {
            ProxyError::Region {
                what: what(),
                source,
            }
        })?;
        let h = pair.header();
        if h.group != group || h.index != fds.index {
            return Err(ProxyError::BadSpec {
                field: "groups",
                reason: format!(
                    "{}: region belongs to group {} slot {}",
                    what(),
                    h.group,
                    h.index
                ),
            });
        }
        // SAFETY: the launch contract hands this eventfd to the proxy.
        let bell = unsafe { Doorbell::from_raw_fd(fds.bell_fd) };
        // SAFETY: the proxy is the only proxy end of a pair; this slot owns
        // it for the process's life.
        let end = unsafe { ProxyEnd::attach(pair, bell) }.map_err(|source| ProxyError::Region {
            what: what(),
            source,
        })?;
        Ok(Slot {
            end,
            liveness: Liveness::default(),
            group,
            index: fds.index,
            msg_timeout_ms,
            stall: Stall::default(),
            listed: false,
            unpublished_records: 0,
            unpublished_bytes: 0,
            publish_bytes: publish_every_bytes(layout.request_capacity),
            gave_up_waiting: false,
        })
    }

    /// The proxy's end of the pair.
    #[inline]
    pub(super) fn end(&self) -> &ProxyEnd {
        &self.end
    }

    /// Whether an adopted, `Ready` worker runs here.
    #[inline]
    pub(super) fn accepting(&self) -> bool {
        self.liveness.accepting()
    }

    /// Whether the worker's ring stopped moving (see [`stall`]).
    #[inline]
    pub(super) fn stalled(&self) -> bool {
        self.stall.stalled()
    }

    /// One scan's look at the worker's progress at loop time `now_ms`;
    /// logs when the slot becomes stalled.
    pub(super) fn observe_progress(&mut self, now_ms: u64) {
        let progress = (
            self.end.completed_seq(),
            self.end.worker_generation(),
            self.end.worker_heartbeat_ms(),
        );
        let in_flight = self.end.in_flight();
        if self
            .stall
            .observe(now_ms, progress, in_flight, self.msg_timeout_ms)
        {
            tracing::warn!(
                group = self.group,
                worker = self.index,
                in_flight,
                "worker stalled (no request finished lately): new requests go elsewhere"
            );
        }
    }

    /// Whether the oldest request in flight is overdue at loop time
    /// `now_ms` (see [`stall::overdue`]); only for a live worker.
    pub(super) fn oldest_overdue(&self, now_ms: u64) -> bool {
        if !self.liveness.is_live() {
            return false;
        }
        let Some(oldest) = self.end.oldest_in_flight() else {
            return false;
        };
        if oldest.seq <= self.end.completed_seq() {
            // Finished: its replies are in the ring, popped at the next drain.
            return false;
        }
        let oldest = Oldest {
            enqueued_ns: oldest.enqueued_ns,
            in_process_since_ms: self.end.worker_in_process_since_ms(),
            heartbeat_ms: self.end.worker_heartbeat_ms(),
        };
        stall::overdue(&oldest, now_ms, self.msg_timeout_ms)
    }

    /// Requests pushed here and not yet seen completed.
    #[inline]
    pub(super) fn in_flight(&self) -> usize {
        self.end.in_flight()
    }

    /// Pushes one request with its note, stamped `tag` (unpublished, unless
    /// it makes [`PUBLISH_EVERY_RECORDS`] or the slot's byte share: then
    /// everything pushed is published now). `may_wait`: a full ring gets
    /// its bounded wait for room (see the module doc). Returns whether the
    /// slot was not listed for the end-of-turn publish yet (the caller
    /// lists it).
    #[inline]
    pub(super) fn push(
        &mut self,
        tag: RequestTag,
        conn: &SppConnInfo,
        note: &[u8],
        req: &[u8],
        now_ns: u64,
        may_wait: bool,
    ) -> Result<bool, PushError> {
        match self.end.push_noted(tag, conn, note, req, now_ns) {
            Ok(_) => self.gave_up_waiting = false,
            Err(PushError::Full) if may_wait && !self.gave_up_waiting && !self.stalled() => {
                self.wait_for_room(tag, conn, note, req, now_ns)?;
            }
            Err(e) => return Err(e),
        }
        self.unpublished_records += 1;
        self.unpublished_bytes += req.len() + note.len();
        if self.unpublished_records >= PUBLISH_EVERY_RECORDS
            || self.unpublished_bytes >= self.publish_bytes
        {
            self.publish();
        }
        Ok(!std::mem::replace(&mut self.listed, true))
    }

    /// The request ring is full: publishes what was pushed (the worker
    /// cannot free what it does not see) and retries the push, yielding the
    /// CPU every [`FULL_WAIT_YIELD_EVERY`] tries, for at most
    /// [`FULL_WAIT_NS`]. Without room by then, later pushes fail at once
    /// until one finds room.
    #[cold]
    fn wait_for_room(
        &mut self,
        tag: RequestTag,
        conn: &SppConnInfo,
        note: &[u8],
        req: &[u8],
        now_ns: u64,
    ) -> Result<(), PushError> {
        self.publish();
        let deadline = monotonic_ns().saturating_add(FULL_WAIT_NS);
        let mut tries = 0u32;
        loop {
            match self.end.push_noted(tag, conn, note, req, now_ns) {
                Err(PushError::Full) => {}
                Ok(_) => return Ok(()),
                Err(e) => return Err(e),
            }
            tries = tries.wrapping_add(1);
            if tries.is_multiple_of(FULL_WAIT_YIELD_EVERY) {
                std::thread::yield_now();
                if monotonic_ns() >= deadline {
                    self.gave_up_waiting = true;
                    return Err(PushError::Full);
                }
            } else {
                std::hint::spin_loop();
            }
        }
    }

    /// Whether the adopted worker's plugin has `spp_flow_closed`.
    #[inline]
    pub(super) fn wants_flow_closed(&self) -> bool {
        self.liveness.is_live() && self.end.worker_hooks() & HOOK_FLOW_CLOSED != 0
    }

    /// Pushes one `KIND_FLOW_CLOSED` record of `flows` for the adopted
    /// worker; `None` when there is none (nobody to tell).
    pub(super) fn push_flows_closed(&mut self, flows: &[u64]) -> Option<Result<(), PushError>> {
        let tag = self.liveness.tag()?;
        Some(self.end.push_flows_closed(tag, flows))
    }

    /// Publishes what was pushed since the last publish (if anything) and
    /// wakes the worker if it sleeps.
    #[inline]
    pub(super) fn publish(&mut self) {
        self.unpublished_records = 0;
        self.unpublished_bytes = 0;
        self.end.publish();
    }

    /// The end-of-turn publish: [`Self::publish`], and the slot is no
    /// longer listed for it.
    #[inline]
    pub(super) fn publish_listed(&mut self) {
        self.listed = false;
        self.publish();
    }

    /// The drain handshake: worker `generation` of this slot is `Draining`
    /// and gets nothing more (the caller made sure). Publishes what was
    /// pushed to it, then stores `drain_ack` so the worker knows its ring
    /// holds everything it will ever get.
    pub(super) fn ack_drain(&mut self, generation: u64) {
        if self.end.ack_drain(generation) {
            tracing::info!(
                group = self.group,
                worker = self.index,
                generation,
                in_flight = self.end.in_flight(),
                "worker draining: sends it nothing more"
            );
        }
    }

    /// Takes up to `cap` response records (see `ProxyEnd::drain_responses`).
    #[inline]
    pub(super) fn drain_responses(
        &mut self,
        cap: usize,
        on_record: impl FnMut(ResponseRecord<'_>),
    ) -> Drained {
        self.end.drain_responses(cap, on_record)
    }

    /// Pops the requests `drained` saw completed, handing each to `done`.
    #[inline]
    pub(super) fn pop_completed(&mut self, drained: &Drained, done: impl FnMut(InFlight)) {
        self.end.pop_completed(drained, done);
    }

    /// Takes the oldest request still in flight (to fail it).
    pub(super) fn take_in_flight(&mut self) -> Option<InFlight> {
        self.end.take_in_flight()
    }

    /// Whether the response ring holds published records.
    #[inline]
    pub(super) fn has_responses(&self) -> bool {
        self.end.responses_waiting()
    }

    /// Whether the worker completed requests not popped yet (a drain pops
    /// them).
    #[inline]
    pub(super) fn has_completions(&self) -> bool {
        self.end.completions_waiting()
    }

    /// Group id and index, for logs.
    pub fn name(&self) -> (u32, u32) {
        (self.group, self.index)
    }
}
