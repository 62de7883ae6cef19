//! Worker groups and slots: which workers are alive, who gets the next
//! request, and what each worker still holds.
//!
//! Each [`Slot`] is one (proxy, worker) pair region: the proxy produces its
//! request ring and consumes its response ring. A slot takes requests only
//! while a worker we *adopted* runs in it: one whose state is `Ready`, whose
//! `worker_generation` we have not seen die, and whose pid we hold a pidfd
//! for (registered in the poll, so death is noticed at once; where
//! pidfd_open is unavailable, death shows through the slot's state and
//! generation, checked every scan).
//!
//! Per slot a FIFO of (seq, flow) tracks requests in flight; entries are
//! popped as the worker's `completed_seq` passes them. Inside a group the
//! adopted worker with the fewest entries gets the next request (ties go
//! round-robin), except that a TCP connection with requests still in
//! flight sticks to the worker holding them, so that pipelined requests
//! are answered in order. While that worker takes nothing more (draining,
//! or gone with its requests about to fail) the connection's framing waits
//! until they have left ([`Dispatcher::accepting`], `conn::HELD`), rather
//! than letting the next request overtake them on another worker. Pushes
//! are published once per loop turn per dirty ring, and a worker is woken
//! only if it announced sleep.
//!
//! Drain handshake: a worker leaving service sets its state to `Draining`
//! and rings the proxy's doorbell. At the next scan its slot stops taking
//! requests; the proxy publishes what it pushed there and stores
//! `PairHeader::drain_ack` = that worker's generation, after which it
//! pushes nothing more to it. The worker exits once it has seen the ack and
//! emptied its ring.
//!
//! Every request record is stamped (`RecordHeader::flags`) with the
//! [`generation_tag`] of the worker it was pushed for; a worker skips
//! records stamped for another generation, so a request pushed for a dead
//! predecessor (which the proxy fails) is never also served by its
//! successor.
//!
//! Group ids are `1..=255` (`spp_route` returns one); a 256-entry table
//! maps an id to its group, so routing a request costs no search.

use crate::error::ProxyError;
use crate::token::Source;
use mio::unix::SourceFd;
use mio::{Interest, Registry};
use spp_ipc::doorbell::{wake_if_sleeping, Doorbell};
use spp_ipc::launch::{GroupFds, PairFds};
use spp_ipc::layout::{PairHeader, PairLayout, PairRegion, WorkerState};
use spp_ipc::record::{
    generation_tag, max_request_len, meta_bytes, RequestMeta, KIND_REQUEST, REQUEST_META_SIZE,
};
use spp_ipc::ring::{Consumer, Producer, PushError};
use spp_plugin_api::abi::SppConnInfo;
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;

/// Entries of the group id → group index table (ids are `0..GROUP_IDS`).
pub const GROUP_IDS: usize = 256;
/// A group id the table does not know.
const NO_GROUP: u8 = u8::MAX;

/// A request queued to a worker whose `process` has not returned yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InFlight {
    /// Its per-pair sequence number.
    pub seq: u64,
    /// The flow it came from.
    pub flow: u64,
}

/// Why a request could not be queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown group, or no adopted worker in it.
    NoWorker,
    /// Every adopted worker's request ring is full.
    QueueFull,
    /// The request can never fit a request ring.
    TooLarge,
}

/// The worker we currently serve through a slot.
struct Live {
    pid: u32,
    generation: u64,
    /// `generation_tag(generation)`: the flags of every request pushed.
    tag: u16,
    /// Readable once the worker exits (`None` if pidfd_open failed).
    pidfd: Option<OwnedFd>,
    /// State is `Ready` (a `Draining` worker keeps what it has, takes nothing).
    accepting: bool,
}

/// One worker slot (pair region) of a group.
pub struct Slot {
    producer: Producer,
    consumer: Consumer,
    next_seq: u64,
    inflight: VecDeque<InFlight>,
    dirty: bool,
    live: Option<Live>,
    /// A generation whose worker we saw die; never adopted again.
    dead_generation: Option<u64>,
    group: u32,
    index: u32,
    bell: Doorbell,
    // Last: the rings above point into this mapping.
    pair: PairRegion,
}

impl Slot {
    /// Maps an inherited pair region and attaches the proxy's ends.
    fn open(group: u32, fds: &PairFds, layout: PairLayout) -> Result<Self, ProxyError> {
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
        // SAFETY: the proxy is the only request producer and response
        // consumer of a pair; both ends live inside `Slot`, which owns the
        // mapping and drops it last.
        let (producer, consumer) = unsafe { (pair.request_producer(), pair.response_consumer()) };
        let producer = producer.map_err(|source| ProxyError::Region {
            what: what(),
            source,
        })?;
        let consumer = consumer.map_err(|source| ProxyError::Region {
            what: what(),
            source,
        })?;
        // SAFETY: the launch contract hands this eventfd to the proxy.
        let bell = unsafe { Doorbell::from_raw_fd(fds.bell_fd) };
        let next_seq = h.pushed_seq.load(Ordering::Acquire).wrapping_add(1);
        Ok(Slot {
            producer,
            consumer,
            next_seq,
            inflight: VecDeque::new(),
            dirty: false,
            live: None,
            dead_generation: None,
            group,
            index: fds.index,
            bell,
            pair,
        })
    }

    fn header(&self) -> &PairHeader {
        self.pair.header()
    }

    fn accepting(&self) -> bool {
        self.live.as_ref().is_some_and(|l| l.accepting)
    }

    /// Publishes what was pushed since the last publish (if anything) and
    /// wakes the worker if it sleeps.
    fn publish(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        // Stored before the ring's write index, so it is never behind a
        // request a worker can see (a restarted proxy continues after it).
        self.pair
            .header()
            .pushed_seq
            .store(self.next_seq.wrapping_sub(1), Ordering::Release);
        self.producer.publish();
        wake_if_sleeping(&self.pair.header().worker_sleeping, &self.bell);
    }

    /// The drain handshake: worker `generation` of this slot is
    /// `Draining` and gets nothing more (the caller made sure). Publishes
    /// what was pushed to it, then stores `drain_ack` so the worker knows
    /// its ring holds everything it will ever get.
    fn ack_drain(&mut self, generation: u64) {
        if self.header().drain_ack.load(Ordering::Acquire) == generation {
            return;
        }
        self.publish();
        self.header().drain_ack.store(generation, Ordering::Release);
        tracing::info!(
            group = self.group,
            worker = self.index,
            generation,
            in_flight = self.inflight.len(),
            "worker draining: sends it nothing more"
        );
    }

    /// The response ring's consuming end.
    pub fn consumer(&mut self) -> &mut Consumer {
        &mut self.consumer
    }

    /// Group id and index, for logs.
    pub fn name(&self) -> (u32, u32) {
        (self.group, self.index)
    }
}

struct Group {
    slots: Vec<usize>,
    rotor: usize,
}

/// Every group and slot the proxy serves.
pub struct Dispatcher {
    slots: Vec<Slot>,
    groups: Vec<Group>,
    /// Group id → index in `groups` ([`NO_GROUP`] when unknown).
    group_index: [u8; GROUP_IDS],
    dirty: Vec<usize>,
    in_flight: usize,
    layout: PairLayout,
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
                slots.push(Slot::open(g.id, fds, layout)?);
            }
            out.push(Group {
                slots: members,
                rotor: 0,
            });
        }
        Ok(Dispatcher {
            slots,
            groups: out,
            group_index,
            dirty: Vec::new(),
            in_flight: 0,
            layout,
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

    /// Slot `s`.
    pub fn slot_mut(&mut self, s: usize) -> &mut Slot {
        &mut self.slots[s]
    }

    /// Whether slot `s` takes requests now (an adopted worker that is
    /// `Ready`). A connection whose requests are in flight in a slot that
    /// does not is held until they leave, so nothing overtakes them.
    #[inline]
    pub fn accepting(&self, s: usize) -> bool {
        self.slots.get(s).is_some_and(Slot::accepting)
    }

    /// Requests in flight over all slots.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Queues one request to the least-loaded adopted worker of `group`,
    /// or to slot `prefer` if that is an adopted worker of `group` (a
    /// connection whose earlier requests are still there sticks to it, so
    /// its responses come back in order; the caller holds a connection
    /// whose `prefer` is not [`Self::accepting`] instead of pushing).
    /// `now_ns` is the request's `enqueued_ns` (CLOCK_MONOTONIC; see
    /// `Proxy::submit` for how fresh it is). Returns the slot used. Not
    /// visible to the worker until [`Self::publish`].
    #[inline]
    pub fn push(
        &mut self,
        group: u32,
        conn: &SppConnInfo,
        req: &[u8],
        now_ns: u64,
        prefer: Option<usize>,
    ) -> Result<usize, Refusal> {
        if let Some(p) = prefer {
            if self
                .slots
                .get(p)
                .is_some_and(|s| s.group == group && s.accepting())
            {
                return match self.push_to(p, conn, req, now_ns) {
                    Ok(()) => Ok(p),
                    Err(PushError::Full) => Err(Refusal::QueueFull),
                    Err(PushError::TooLarge) => Err(Refusal::TooLarge),
                };
            }
        }
        let Some(gi) = self.group_of(group) else {
            return Err(Refusal::NoWorker);
        };
        let g = &mut self.groups[gi];
        let n = g.slots.len();
        let start = g.rotor;
        g.rotor = if start + 1 >= n { 0 } else { start + 1 };
        let mut best: Option<usize> = None;
        let mut best_load = usize::MAX;
        for k in 0..n {
            let s = g.slots[(start + k) % n];
            let slot = &self.slots[s];
            if slot.accepting() && slot.inflight.len() < best_load {
                best = Some(s);
                best_load = slot.inflight.len();
            }
        }
        let Some(first) = best else {
            return Err(Refusal::NoWorker);
        };
        match self.push_to(first, conn, req, now_ns) {
            Ok(()) => return Ok(first),
            Err(PushError::TooLarge) => return Err(Refusal::TooLarge),
            Err(PushError::Full) => {}
        }
        // The least-loaded ring is full; any other worker with room will do.
        for k in 0..n {
            let s = self.groups[gi].slots[k];
            if s != first && self.slots[s].accepting() && self.push_to(s, conn, req, now_ns).is_ok()
            {
                return Ok(s);
            }
        }
        Err(Refusal::QueueFull)
    }

    fn push_to(
        &mut self,
        s: usize,
        conn: &SppConnInfo,
        req: &[u8],
        now_ns: u64,
    ) -> Result<(), PushError> {
        let slot = &mut self.slots[s];
        // Only adopted slots are pushed to; a slot without one is full.
        let Some(tag) = slot.live.as_ref().map(|l| l.tag) else {
            return Err(PushError::Full);
        };
        let seq = slot.next_seq;
        let meta = RequestMeta {
            conn: *conn,
            seq,
            enqueued_ns: now_ns,
        };
        slot.producer
            .push_with(KIND_REQUEST, tag, REQUEST_META_SIZE + req.len(), |dst| {
                dst[..REQUEST_META_SIZE].copy_from_slice(meta_bytes(&meta));
                dst[REQUEST_META_SIZE..].copy_from_slice(req);
            })?;
        slot.next_seq = seq.wrapping_add(1);
        slot.inflight.push_back(InFlight {
            seq,
            flow: conn.flow,
        });
        self.in_flight += 1;
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(s);
        }
        Ok(())
    }

    /// Publishes every ring pushed to since the last call and wakes each
    /// such worker if it sleeps.
    pub fn publish(&mut self) {
        for s in self.dirty.drain(..) {
            self.slots[s].publish();
        }
    }

    /// The worker's `completed_seq` of slot `s`, as of now.
    #[inline]
    pub fn completed_seq(&self, s: usize) -> u64 {
        self.slots[s].header().completed_seq.load(Ordering::Acquire)
    }

    /// Pops the requests of slot `s` up to `completed` (a value of
    /// [`Self::completed_seq`]), handing each flow to `done`.
    #[inline]
    pub fn pop_completed(&mut self, s: usize, completed: u64, mut done: impl FnMut(u64)) {
        let slot = &mut self.slots[s];
        while let Some(front) = slot.inflight.front() {
            if front.seq > completed {
                break;
            }
            done(front.flow);
            slot.inflight.pop_front();
            self.in_flight -= 1;
        }
    }

    /// Takes the oldest request still in flight in slot `s` (to fail it).
    pub fn take_in_flight(&mut self, s: usize) -> Option<InFlight> {
        let entry = self.slots[s].inflight.pop_front()?;
        self.in_flight -= 1;
        Some(entry)
    }

    /// Whether any response ring holds published records.
    #[inline]
    pub fn responses_waiting(&self) -> bool {
        self.slots.iter().any(|s| s.consumer.has_data())
    }

    /// Whether nothing more can come out of slot `s` without new requests:
    /// its response ring is empty and its worker is asleep, gone, or has
    /// been quiet for a while (`waited`). Used to finish a drain.
    pub fn settled(&self, s: usize, waited: bool) -> bool {
        let slot = &self.slots[s];
        if slot.consumer.has_data() {
            return false;
        }
        slot.live.is_none() || waited || slot.header().worker_sleeping.load(Ordering::Acquire) != 0
    }

    /// Looks at every slot's shared state: adopts workers that became
    /// `Ready`, notices replaced or stopped ones. Slots whose worker is gone
    /// are pushed to `gone`; the caller drains and fails them.
    pub fn scan(&mut self, registry: &Registry, gone: &mut Vec<usize>) {
        for s in 0..self.slots.len() {
            if self.scan_slot(s, registry) {
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
        for k in 0..self.groups[gi].slots.len() {
            let s = self.groups[gi].slots[k];
            if self.scan_slot(s, registry) {
                gone.push(s);
            }
            any |= self.slots[s].accepting();
        }
        any
    }

    fn scan_slot(&mut self, s: usize, registry: &Registry) -> bool {
        let slot = &mut self.slots[s];
        let h = slot.pair.header();
        let state = WorkerState::from_raw(h.worker_state.load(Ordering::Acquire));
        let generation = h.worker_generation.load(Ordering::Acquire);
        let mut gone = false;
        if let Some(live) = &mut slot.live {
            let replaced = live.generation != generation;
            if replaced
                || matches!(
                    state,
                    WorkerState::Down | WorkerState::Empty | WorkerState::Starting
                )
            {
                tracing::warn!(
                    group = slot.group,
                    worker = slot.index,
                    pid = live.pid,
                    "worker {}; failing its requests",
                    if replaced { "was replaced" } else { "is down" }
                );
                gone = self.retire(s, registry);
            } else {
                live.accepting = state == WorkerState::Ready;
            }
        }
        // The state is read again after the generation: a Draining worker
        // may be reaped and succeeded between the two loads above, and the
        // ack must never name the successor's generation (it would end that
        // worker's own drain early). The controller writes Down before a
        // successor starts, so Draining twice means the same worker.
        let still_draining =
            WorkerState::from_raw(self.slots[s].header().worker_state.load(Ordering::Acquire))
                == WorkerState::Draining;
        if state == WorkerState::Draining && still_draining {
            // Either the worker we serve (no longer accepting, above) or
            // one we never pushed to (never adopted, or retired above).
            self.slots[s].ack_drain(generation);
        }
        let slot = &self.slots[s];
        if slot.live.is_none()
            && state == WorkerState::Ready
            && slot.dead_generation != Some(generation)
        {
            self.adopt(s, generation, registry);
        }
        gone
    }

    fn adopt(&mut self, s: usize, generation: u64, registry: &Registry) {
        let slot = &mut self.slots[s];
        let (group, index) = (slot.group, slot.index);
        let pid = slot.header().worker_pid.load(Ordering::Acquire);
        let pidfd = match pidfd_open(pid) {
            Ok(fd) => Some(fd),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                tracing::warn!(group, worker = index, pid, "worker says Ready but is gone");
                slot.dead_generation = Some(generation);
                return;
            }
            Err(e) => {
                // Old kernel or a sandbox: serve it anyway and notice its
                // death through its state (the controller writes Down).
                tracing::warn!(
                    group,
                    worker = index,
                    pid,
                    "cannot watch worker ({e}); relying on its state"
                );
                None
            }
        };
        let h = slot.header();
        if h.worker_generation.load(Ordering::Acquire) != generation
            || WorkerState::from_raw(h.worker_state.load(Ordering::Acquire)) != WorkerState::Ready
        {
            return; // It changed under us; the next scan decides.
        }
        if let Some(fd) = &pidfd {
            let raw = fd.as_raw_fd();
            let token = Source::Pidfd(s).token();
            if let Err(e) = registry.register(&mut SourceFd(&raw), token, Interest::READABLE) {
                tracing::warn!(
                    group,
                    worker = index,
                    pid,
                    "cannot poll the worker's pidfd: {e}"
                );
                return;
            }
        }
        tracing::info!(group, worker = index, pid, generation, "worker ready");
        slot.live = Some(Live {
            pid,
            generation,
            tag: generation_tag(generation),
            pidfd,
            accepting: true,
        });
    }

    /// The pidfd of slot `s` fired: its worker exited. Returns whether a
    /// worker was live there (the caller then drains and fails the slot).
    pub fn worker_exited(&mut self, s: usize, registry: &Registry) -> bool {
        let Some(slot) = self.slots.get(s) else {
            return false;
        };
        let Some(live) = &slot.live else {
            return false;
        };
        // The event may be a stale one of a predecessor retired earlier in
        // this turn; only the current worker's own pidfd counts.
        if !live.pidfd.as_ref().is_some_and(fd_readable) {
            return false;
        }
        tracing::warn!(
            group = slot.group,
            worker = slot.index,
            pid = live.pid,
            "worker exited"
        );
        self.retire(s, registry)
    }

    fn retire(&mut self, s: usize, registry: &Registry) -> bool {
        let slot = &mut self.slots[s];
        let Some(live) = slot.live.take() else {
            return false;
        };
        if let Some(fd) = &live.pidfd {
            // Best effort: closing the pidfd below removes it from epoll anyway.
            let _ = registry.deregister(&mut SourceFd(&fd.as_raw_fd()));
        }
        slot.dead_generation = Some(live.generation);
        true
    }
}

/// Whether `fd` is readable right now (a pidfd: its process exited).
fn fd_readable(fd: &OwnedFd) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    unsafe { libc::poll(&mut pfd, 1, 0) == 1 && pfd.revents & libc::POLLIN != 0 }
}

/// `pidfd_open(pid, 0)`: an fd that becomes readable when `pid` exits.
fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("bad worker pid {pid}"),
            )
        })?;
    // SAFETY: plain syscall with a pid and no flags; returns a new fd
    // (close-on-exec) or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own; it fits in a c_int.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}
