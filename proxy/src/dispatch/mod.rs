//! Worker groups and slots: who gets the next request, what each worker
//! still holds, and which workers are alive.
//!
//! Parts: [`policy`] (the pure choice — affinity, least outstanding,
//! rotation), [`ledger`] (in-flight counting per connection), [`slot`]
//! (the proxy's end of one pair, `spp_ipc::pair::ProxyEnd`, whose FIFO is
//! the slot's requests in flight; publishing once per turn) and
//! [`liveness`] (adoption, pidfds, dead generations, the drain handshake).
//! [`Dispatcher`] puts them together and is the only one that changes what
//! counts as in flight: it pushes, pops completed and fails requests, and
//! updates the per-slot FIFO and the per-connection ledger in the same
//! call.
//!
//! Inside a group the adopted worker with the fewest requests outstanding
//! gets the next one (ties go round-robin), except that a TCP connection
//! with requests still in flight sticks to the worker holding them, so
//! that pipelined requests are answered in order. While that worker takes
//! nothing more (draining, or gone with its requests about to fail) the
//! connection's framing waits until they have left
//! ([`Dispatcher::affinity`] says [`Affinity::Hold`]), rather than letting
//! the next request overtake them on another worker. A slot that would
//! blur the connection's answer order (`crate::order`) is passed over,
//! and [`Refusal::Busy`] says when none is left. Pushes are published
//! once per loop turn per dirty ring, or as soon as a batch of records or
//! bytes is pushed to it ([`slot`]), and a worker is woken only if it
//! announced sleep.
//!
//! Every request record is stamped (`RecordHeader::flags`) with the
//! `generation_tag` of the worker it was pushed for; a worker skips
//! records stamped for another generation, so a request pushed for a dead
//! predecessor (which the proxy fails) is never also served by its
//! successor.
//!
//! A worker whose ring stopped moving ([`stall`]) gets no new request while
//! another of its group takes them (`stalled_skips`), and the requests it
//! holds past `msg_timeout` plus a grace are handed back for failing
//! ([`Dispatcher::take_overdue`]).
//!
//! Group ids are `1..=255` (`spp_route` returns one); a 256-entry table
//! maps an id to its group, so routing a request costs no search.

pub mod closed;
pub mod ledger;
pub mod liveness;
pub mod policy;
pub mod slot;
pub mod stall;

use crate::error::ProxyError;
pub use ledger::Ledger;
use mio::Registry;
pub use policy::Affinity;
use policy::Rotation;
use slot::Slot;
use spp_ipc::launch::GroupFds;
use spp_ipc::layout::PairLayout;
use spp_ipc::pair::{Drained, InFlight, ResponseRecord};
use spp_ipc::record::max_request_len;
use spp_ipc::ring::PushError;
use spp_plugin_api::abi::SppConnInfo;

/// Entries of the group id → group index table (ids are `0..GROUP_IDS`).
pub const GROUP_IDS: usize = 256;
/// A group id the table does not know.
const NO_GROUP: u8 = u8::MAX;

/// Why a request could not be queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown group, or no adopted worker in it.
    NoWorker,
    /// Every adopted worker's request ring is full.
    QueueFull,
    /// The request can never fit a request ring.
    TooLarge,
    /// Every accepting worker of the group is busy for this connection:
    /// it holds an earlier unfinished request of it, not the latest
    /// (`crate::order::Order::may_push`). The caller holds the
    /// connection's framing until its requests in flight have left.
    Busy,
}

/// A request on its way to a worker: its connection, its note (from the
/// input hook's `set_note`; may be empty) and its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Outgoing<'a> {
    /// The connection it came from.
    pub conn: &'a SppConnInfo,
    /// The note that travels with it.
    pub note: &'a [u8],
    /// The request bytes.
    pub bytes: &'a [u8],
}

/// Every group and slot the proxy serves.
pub struct Dispatcher {
    slots: Vec<Slot>,
    groups: Vec<Rotation>,
    /// Group id → index in `groups` ([`NO_GROUP`] when unknown).
    group_index: [u8; GROUP_IDS],
    dirty: Vec<usize>,
    ledger: Ledger,
    /// Closed flows waiting to be told to the workers that served them.
    closed: closed::ClosedFlows,
    layout: PairLayout,
    /// Picks that passed over a stalled worker since the last
    /// [`Self::take_stalled_skips`].
    stalled_skips: u64,
}

impl Dispatcher {
    /// Opens every slot the launch spec lists.
    pub fn open(groups: &[GroupFds], layout: PairLayout) -> Result<Self, ProxyError> {
        let mut slots = Vec::new();
        let mut out = Vec::with_capacity(groups.len());
        let mut group_index = [NO_GROUP; GROUP_IDS];
        for g in groups {
            let Some(entry) = group_index.get_mut(g.id as usize) else {
                return Err(ProxyError::BadSpec {
                    field: "groups",
                    reason: format!("group id {} is not below {GROUP_IDS}", g.id),
                });
            };
            if *entry != NO_GROUP {
                return Err(ProxyError::BadSpec {
                    field: "groups",
                    reason: format!("group {} listed twice", g.id),
                });
            }
            // Distinct ids below GROUP_IDS: at most 256 groups, so every
            // index but the last fits below NO_GROUP.
            *entry = u8::try_from(out.len())
                .ok()
                .filter(|&i| i != NO_GROUP)
                .ok_or_else(|| ProxyError::BadSpec {
                    field: "groups",
                    reason: format!("more than {NO_GROUP} groups"),
                })?;
            let mut members = Vec::with_capacity(g.slots.len());
            for fds in &g.slots {
                members.push(slots.len());
                slots.push(Slot::open(g.id, g.msg_timeout_ms, fds, layout)?);
            }
            out.push(Rotation::new(members));
        }
        Ok(Dispatcher {
            ledger: Ledger::default(),
            slots,
            groups: out,
            group_index,
            dirty: Vec::new(),
            closed: closed::ClosedFlows::default(),
            layout,
            stalled_skips: 0,
        })
    }

    /// The largest request a request ring can carry (`None` without
    /// slots; every pair has the same layout).
    pub fn max_request_len(&self) -> Option<usize> {
        (!self.slots.is_empty()).then(|| max_request_len(self.layout.request_capacity))
    }

    /// The index in `groups` of group `id`.
    #[inline]
    fn group_of(&self, id: u32) -> Option<usize> {
        let gi = *self.group_index.get(id as usize)?;
        (gi != NO_GROUP).then_some(usize::from(gi))
    }

    /// Number of slots.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Whether slot `s` takes requests now (an adopted worker that is
    /// `Ready`).
    #[inline]
    pub fn accepting(&self, s: usize) -> bool {
        self.slots.get(s).is_some_and(Slot::accepting)
    }

    /// Requests in flight over all slots.
    #[inline]
    pub fn in_flight(&self) -> usize {
        self.slots.iter().map(Slot::in_flight).sum()
    }

    /// Who counts what is in flight.
    #[inline]
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Where the next request of TCP connection `flow` must go (see
    /// [`policy::affinity`]), and how many it has in flight.
    #[inline]
    pub fn affinity(&self, flow: u64) -> (Affinity, u32) {
        let (outstanding, slot) = self.ledger.of_conn(flow);
        let accepting = outstanding != 0 && self.accepting(slot);
        (policy::affinity(outstanding, slot, accepting), outstanding)
    }

    /// Queues one request to the least-loaded adopted worker of `group`,
    /// or to slot `prefer` if that is an adopted worker of `group` (a
    /// connection whose earlier requests are still there sticks to it, so
    /// its responses come back in order; the caller holds a connection
    /// whose affinity is [`Affinity::Hold`] instead of pushing).
    /// `now_ns` is the request's `enqueued_ns` (CLOCK_MONOTONIC; see
    /// `Proxy::submit` for how fresh it is). Returns the slot used. Not
    /// visible to the worker until [`Self::publish`]. The request's note
    /// travels with it (meta | note | bytes).
    ///
    /// `busy(s)`: slot `s` must not take this connection's request (answer
    /// order, see `crate::order`); when every accepting slot of the group
    /// is busy the request is refused with [`Refusal::Busy`].
    #[inline]
    pub fn push(
        &mut self,
        group: u32,
        request: Outgoing<'_>,
        now_ns: u64,
        prefer: Option<usize>,
        busy: impl Fn(usize) -> bool,
    ) -> Result<usize, Refusal> {
        let Outgoing {
            conn,
            note,
            bytes: req,
        } = request;
        if let Some(p) = prefer {
            if self
                .slots
                .get(p)
                .is_some_and(|s| s.group == group && s.accepting())
                && !busy(p)
            {
                return match self.push_to(p, conn, note, req, now_ns, true) {
                    Ok(()) => Ok(p),
                    Err(PushError::Full) => Err(Refusal::QueueFull),
                    Err(PushError::TooLarge) => Err(Refusal::TooLarge),
                };
            }
        }
        let Some(gi) = self.group_of(group) else {
            return Err(Refusal::NoWorker);
        };
        let slots = &self.slots;
        let mut skipped = false;
        let mut any_busy = false;
        let first = self.groups[gi].least_outstanding(|s| {
            let slot = &slots[s];
            let stalled = slot.stalled();
            let free = slot.accepting() && !busy(s);
            any_busy |= slot.accepting() && !free;
            skipped |= stalled && free;
            (free && !stalled).then(|| slot.in_flight())
        });
        let first = match first {
            Some(first) => {
                self.stalled_skips += u64::from(skipped);
                first
            }
            // Every free accepting worker is stalled: the least loaded.
            None => self.groups[gi]
                .least_outstanding(|s| {
                    (slots[s].accepting() && !busy(s)).then(|| slots[s].in_flight())
                })
                .ok_or(if any_busy {
                    Refusal::Busy
                } else {
                    Refusal::NoWorker
                })?,
        };
        let alone = self.groups[gi].members().len() == 1;
        match self.push_to(first, conn, note, req, now_ns, alone) {
            Ok(()) => return Ok(first),
            Err(PushError::TooLarge) => return Err(Refusal::TooLarge),
            Err(PushError::Full) => {}
        }
        if alone {
            return Err(Refusal::QueueFull);
        }
        // The least-loaded ring is full; any other worker with room will do.
        for k in 0..self.groups[gi].members().len() {
            let s = self.groups[gi].members()[k];
            if s != first
                && self.slots[s].accepting()
                && !busy(s)
                && self.push_to(s, conn, note, req, now_ns, false).is_ok()
            {
                return Ok(s);
            }
        }
        // Every ring is full: wait a little for the least-loaded one.
        match self.push_to(first, conn, note, req, now_ns, true) {
            Ok(()) => Ok(first),
            Err(_) => Err(Refusal::QueueFull),
        }
    }

    #[inline]
    fn push_to(
        &mut self,
        s: usize,
        conn: &SppConnInfo,
        note: &[u8],
        req: &[u8],
        now_ns: u64,
        may_wait: bool,
    ) -> Result<(), PushError> {
        let slot = &mut self.slots[s];
        // Only adopted slots are pushed to; a slot without one is full.
        let Some(tag) = slot.liveness.tag() else {
            return Err(PushError::Full);
        };
        let newly_dirty = slot.push(tag, conn, note, req, now_ns, may_wait)?;
        self.ledger.pushed(s, conn.flow);
        if newly_dirty {
            self.dirty.push(s);
        }
        Ok(())
    }

    /// Picks that passed over a stalled worker since the last call.
    pub fn take_stalled_skips(&mut self) -> u64 {
        std::mem::take(&mut self.stalled_skips)
    }

    /// The scan's look at every slot's progress at loop time `now_ms`
    /// ([`stall::Stall::observe`]).
    pub fn observe_progress(&mut self, now_ms: u64) {
        for slot in &mut self.slots {
            slot.observe_progress(now_ms);
        }
    }

    /// Takes the oldest request in flight in slot `s` if it is overdue at
    /// loop time `now_ms` ([`stall::overdue`]: a frozen worker holds it
    /// past `msg_timeout` plus a grace), and whether it was its
    /// connection's last. The caller fails it and closes its connection.
    pub fn take_overdue(&mut self, s: usize, now_ms: u64) -> Option<(InFlight, bool)> {
        if !self.slots.get(s)?.oldest_overdue(now_ms) {
            return None;
        }
        self.take_in_flight(s)
    }

    /// TCP connection `flow` closed: queues it for the workers that served
    /// it and have `spp_flow_closed` ([`closed`]); pushed at the next
    /// [`Self::publish`].
    pub fn flow_closed(&mut self, flow: u64) {
        let served = self.ledger.take_served(flow);
        for s in served.slots() {
            if self.slots.get(s).is_some_and(Slot::wants_flow_closed) {
                self.closed.queue(s, flow);
            }
        }
    }

    /// Closed-flow notices dropped (a full queue) since the last call.
    pub fn take_flow_closed_dropped(&mut self) -> u64 {
        self.closed.take_dropped()
    }

    /// Publishes every ring pushed to since the last call (closed-flow
    /// notices first pushed as far as there is room) and wakes each such
    /// worker if it sleeps.
    pub fn publish(&mut self) {
        if !self.closed.is_empty() {
            // A slot listed twice is published once (the second finds
            // nothing unpublished).
            let dirty = &mut self.dirty;
            self.closed.flush(&mut self.slots, |s| dirty.push(s));
        }
        for s in self.dirty.drain(..) {
            self.slots[s].publish_listed();
        }
    }

    /// Takes up to `cap` response records of slot `s`, handing each to
    /// `on_record`; pass the result to [`Self::pop_completed`]. A corrupt
    /// ring was emptied ([`Drained::corrupt`]): the caller fails what is
    /// in flight there.
    #[inline]
    pub fn drain_responses(
        &mut self,
        s: usize,
        cap: usize,
        on_record: impl FnMut(ResponseRecord<'_>),
    ) -> Drained {
        self.slots[s].drain_responses(cap, on_record)
    }

    /// The hash of the request slot `s`'s gone worker died processing, if
    /// that request was in flight to it (`ProxyEnd::died_holding`, read
    /// when the worker was retired; given once).
    pub fn died_holding(&mut self, s: usize) -> Option<u64> {
        self.slots[s].take_died_holding()
    }

    /// Group id and index of slot `s`, for logs.
    pub fn slot_name(&self, s: usize) -> (u32, u32) {
        self.slots[s].name()
    }

    /// Pops the requests of slot `s` that `drained` saw completed, handing
    /// each one's flow to `left`, with whether it was its connection's
    /// last in flight.
    #[inline]
    pub fn pop_completed(&mut self, s: usize, drained: &Drained, mut left: impl FnMut(u64, bool)) {
        let ledger = &mut self.ledger;
        self.slots[s].pop_completed(drained, |done| {
            let emptied = ledger.left(done.flow);
            left(done.flow, emptied);
        });
    }

    /// Takes the oldest request still in flight in slot `s` (to fail it),
    /// and whether it was its connection's last.
    pub fn take_in_flight(&mut self, s: usize) -> Option<(InFlight, bool)> {
        let entry = self.slots[s].take_in_flight()?;
        Some((entry, self.ledger.left(entry.flow)))
    }

    /// Whether any response ring holds published records (checked while
    /// spinning: one line per slot, the ring's write index).
    #[inline]
    pub fn responses_waiting(&self) -> bool {
        self.slots.iter().any(Slot::has_responses)
    }

    /// Whether any worker completed requests not popped yet, with no reply
    /// in its ring (requests answered later, or not at all): checked once
    /// before the loop sleeps, so a held connection waiting for them to
    /// leave is not left until the next scan. Not while spinning: under
    /// load the next drain pops them anyway, and an extra turn per batch
    /// would cost a syscall.
    pub fn completions_waiting(&self) -> bool {
        self.slots.iter().any(Slot::has_completions)
    }

    /// Whether nothing more can come out of slot `s` without new requests
    /// (see `Slot::settled`). Used to finish a drain.
    pub fn settled(&self, s: usize, waited: bool) -> bool {
        self.slots[s].settled(waited)
    }

    /// Looks at every slot's shared state: adopts workers that became
    /// `Ready`, notices replaced or stopped ones. Slots whose worker is gone
    /// are pushed to `gone`; the caller drains and fails them.
    pub fn scan(&mut self, registry: &Registry, gone: &mut Vec<usize>) {
        for s in 0..self.slots.len() {
            if self.slots[s].scan(s, registry) {
                gone.push(s);
            }
        }
    }

    /// [`Self::scan`] for the slots of one group; returns whether any
    /// worker there accepts requests afterwards.
    pub fn scan_group(&mut self, group: u32, registry: &Registry, gone: &mut Vec<usize>) -> bool {
        let Some(gi) = self.group_of(group) else {
            return false;
        };
        let mut any = false;
        for k in 0..self.groups[gi].members().len() {
            let s = self.groups[gi].members()[k];
            if self.slots[s].scan(s, registry) {
                gone.push(s);
            }
            any |= self.slots[s].accepting();
        }
        any
    }

    /// The pidfd of slot `s` fired: its worker exited. Returns whether a
    /// worker was live there (the caller then drains and fails the slot).
    pub fn worker_exited(&mut self, s: usize, registry: &Registry) -> bool {
        self.slots
            .get_mut(s)
            .is_some_and(|slot| slot.exited(registry))
    }
}

#[cfg(test)]
mod tests;
