//! The proxy–worker pair protocol, in one place: what the proxy and one
//! worker say to each other through their pair region
//! ([`PairRegion`](crate::layout::PairRegion)), the two doorbells and the
//! two sleep flags. The mechanism underneath is [`ring`](crate::ring)
//! (the SPSC rings), [`doorbell`](crate::doorbell) (eventfds and the
//! sleep-flag fences) and [`layout`](crate::layout) (where every field
//! lives); this module is the only code that reads or writes the protocol
//! fields of a [`PairHeader`](crate::layout::PairHeader): `pushed_seq`,
//! `completed_seq`, `drain_ack`, `worker_generation`, `worker_state`,
//! `worker_pid`, `worker_sleeping`, and the proxy's `proxy_sleeping`.
//!
//! * [`ProxyEnd`]: the proxy's end of one pair. It owns the mapping, the
//!   request ring's producer, the response ring's consumer, the worker's
//!   doorbell and the FIFO of requests in flight. Push requests (each with
//!   the next `seq` and the [`RequestTag`] of the worker generation it is
//!   for), publish them once per batch and wake the worker only if it
//!   sleeps, drain the response ring and pop the requests the worker
//!   completed, watch the worker's state and generation, acknowledge its
//!   drain.
//! * [`WorkerSlot`], [`WorkerRequests`], [`WorkerResponses`]: the worker's
//!   end, in three parts so the request ring (read in place while the
//!   plugin runs) and the response ring (written by the plugin's replies)
//!   can live in different owners. [`WorkerSlot::take`] bumps the
//!   generation at start; the slot sets the state and sees `drain_ack`.
//!   The requests part takes requests and tells those stamped for another
//!   generation apart, and sleeps on the worker's doorbell; the responses
//!   part pushes responses, remembers the last completed `seq`, and
//!   publishes both once per batch, waking the proxy only if it sleeps.
//! * [`ProxySleep`]: the proxy's sleep flag (one per proxy, shared by all
//!   its pairs).
//! * [`PairObserver`], [`mark_worker_down`]: the pair seen from outside
//!   both ends (the controller, tests): loads only, and the controller's
//!   one write after it reaped a worker.
//!
//! # The protocol
//!
//! Requests: every request record carries a [`RequestMeta`] with a per-pair
//! `seq` (1, 2, 3, … ; a restarted proxy continues after `pushed_seq`) and,
//! in its record flags, the [`RequestTag`] of the worker generation the
//! proxy adopted. A worker skips (does not serve, but completes) a request
//! stamped for another generation: it was pushed for a dead predecessor,
//! and the proxy already failed it.
//!
//! Completion: the worker remembers the `seq` of the last request it
//! finished (served, expired or skipped) and stores it in `completed_seq`
//! when it publishes its responses. The proxy keeps a FIFO of
//! ([`InFlight`]) requests per pair and pops those `completed_seq` covers.
//!
//! Flow closed: a worker whose plugin has `spp_flow_closed` says so in
//! `worker_hooks` ([`WorkerSlot::set_hooks`], before `Ready`). When a TCP
//! connection closes, the proxy queues its flow for every worker slot that
//! served requests of it (its dispatch ledger keeps up to a few slots per
//! connection) and, at the end of its loop turn, pushes them as
//! `KIND_FLOW_CLOSED` records of up to `FLOW_CLOSED_BATCH` flows
//! ([`ProxyEnd::push_flows_closed`]), stamped with the worker's tag, and
//! publishes them with the turn's requests. They take no `seq` and complete
//! nothing; being in the request ring behind the flow's requests, a worker
//! sees them after it took every request of that flow. The proxy's queue
//! per slot is bounded; what does not fit (a ring full for long) is dropped
//! and counted (`flow_closed_dropped`). Old workers skip the unknown kind.
//!
//! Drain: a worker leaving service sets `Draining` and rings the proxy's
//! doorbell; the proxy stops pushing to it, publishes what it pushed, and
//! stores the worker's generation in `drain_ack`. The worker exits once it
//! saw the ack and its request ring is empty.
//!
//! Sleep: a side with nothing to do spins a while, then announces sleep
//! on its flag, looks at its rings once more, and only then blocks on its
//! doorbell. The other side rings that doorbell after publishing a batch,
//! and only if the flag is set ([`crate::doorbell::wake_if_sleeping`]):
//! never one syscall per message.
//!
//! # Several shards
//!
//! With `proxy.processes = N` a worker slot has one pair region per proxy
//! shard (`WorkerLaunch::pair` is shard 0's, `WorkerLaunch::other_shards`
//! the others', in shard order). Seen from one proxy shard nothing
//! changes: it pushes to its pair, wakes the worker through its pair's
//! `worker_sleeping` flag, and reads state, generation, `drain_ack`,
//! `completed_seq` of its own pair. The worker:
//!
//! * takes every pair ([`WorkerSlot::take`] on each: pid, a generation of
//!   that pair, `Starting`), and sets hooks, `Ready`, `Draining` (which
//!   rings that shard's proxy doorbell) and `InitFailed` on every pair;
//! * keeps every per-pair protocol field per pair: `seq`, the
//!   generation tag, `completed_seq`, `drain_ack`, the sleep flag, and
//!   `in_process_seq` (a `seq` of that pair: only the proxy that pushed
//!   the request may book it as poison);
//! * keeps its identity and its statistics in **shard 0's** pair header,
//!   where the controller reads them: `WorkerStats`, the `queue_wait` and
//!   `process_time` histograms, the plugin's metrics, and
//!   `in_process_since_ms` / `heartbeat_ms` for the hang check. The last
//!   two are also mirrored into every other pair, because each proxy
//!   shard's stall and overdue rules read them from its own pair (a
//!   worker inside a long call for shard 0 is not frozen for shard 1);
//! * answers a request on the response ring of the pair it came from, and
//!   a reply by flow id alone (a deferred `spp_reply`) on the pair of
//!   [`crate::flow_shard::shard_of`] the flow (a shard it has no pair of:
//!   dropped and counted in `replies_dropped`);
//! * takes requests round-robin, a bounded batch per pair per turn, from
//!   a starting pair that rotates, so no shard starves another;
//! * sleeps with [`sleep_all`]: every pair's flag announced, every
//!   request ring looked at once more, one block on its one doorbell;
//! * is done draining once every pair acknowledged (or that pair's proxy
//!   is gone) and every request ring is empty.
//!
//! The controller marks the slot down on **every** pair after it reaped
//! the worker ([`mark_worker_down`] on each), so each shard fails what it
//! had in flight.
//!
//! # Memory ordering, once
//!
//! 1. **`pushed_seq` before the request ring's write index.** The proxy
//!    stores `pushed_seq` (Release), then publishes the ring (Release store
//!    of `write`). A worker that sees a request (Acquire load of `write`)
//!    also sees a `pushed_seq` at least that request's `seq`, so `pushed_seq`
//!    is never behind a request a worker can see, and a restarted proxy
//!    that continues after it never reuses a `seq`.
//! 2. **Responses before `completed_seq`.** The worker publishes its
//!    response ring (Release store of `write`), then stores `completed_seq`
//!    (Release). The proxy loads `completed_seq` (Acquire) *before* it
//!    reads the response ring (Acquire load of `write`), so every reply of
//!    every request that `completed_seq` covers is already in the ring it
//!    then reads. A drain that empties the ring thus delivers those replies
//!    before the requests are popped as completed. A drain cut short by its
//!    bound ([`Drained::more`]) may have left some of those replies in the
//!    ring: pop only after a drain that was not (the proxy does), or a
//!    connection could send its next request elsewhere before them.
//! 3. **Everything pushed before `drain_ack`.** The proxy publishes what it
//!    pushed (rule 1), then stores `drain_ack` (Release). A worker that
//!    loads `drain_ack` (Acquire) equal to its generation and then looks at
//!    its request ring sees every request the proxy will ever push to it.
//! 4. **Generation before state.** A starting worker stores its pid, bumps
//!    `worker_generation` (AcqRel), then stores `Starting` and later `Ready`
//!    (Release). The proxy loads the state (Acquire), then the generation
//!    (Acquire): a `Ready` it sees goes with that worker's generation or a
//!    later one, never an earlier one. (The proxy reads the state again
//!    before acknowledging a drain; see its dispatcher.)
//! 5. **Sleep flags.** The sleeper stores its flag and issues a SeqCst
//!    fence, then looks at its rings; the waker publishes, issues a SeqCst
//!    fence, then loads the flag (and swaps it to 0 before ringing). By the
//!    two fences either the waker sees the flag, or the sleeper's second
//!    look sees the published data: nobody sleeps on a batch nobody rings
//!    for. A waker rings at most once per announced sleep.
//! 6. **Tags and metas** travel inside the records and are ordered by the
//!    ring's own Release/Acquire indices; nothing else is needed.
//!
//! Everything here is per message allocation-free, lock-free and
//! syscall-free; the only syscalls are the doorbell's, and those only when
//! the peer announced sleep.

mod observer;
mod proxy_end;
mod shards;
mod worker_end;

#[cfg(test)]
mod shard_tests;
#[cfg(test)]
mod tests;

pub use observer::{mark_worker_down, PairObserver};
pub use proxy_end::{Drained, ProxyEnd, ResponseRecord};
pub use shards::{sleep_all, sleep_all_where, Rotation, TurnOrder};
pub use worker_end::{
    wake_worker, FlowsClosed, Request, RequestRecord, ResponseKind, WorkerRequests,
    WorkerResponses, WorkerSlot,
};

use crate::doorbell::{Doorbell, SleepFlag};
use crate::layout::ProxyRegion;
pub use crate::record::RequestMeta;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The longest a worker's loop goes without stamping `heartbeat_ms` while
/// it is not inside `spp_process`: it sleeps on its doorbell at most this
/// long. Whoever judges a worker frozen by its heartbeat (the controller)
/// allows this much on top of its bound.
pub const WORKER_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// The stamp (`RecordHeader::flags`) a request carries: the low bits of the
/// generation of the worker it was pushed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestTag(u16);

impl RequestTag {
    /// The tag of requests pushed for the worker of `generation`.
    #[inline]
    pub fn of(generation: u64) -> Self {
        RequestTag(crate::record::generation_tag(generation))
    }

    /// A tag from its raw record flags, for tests that stamp a foreign
    /// one; production code takes tags from [`RequestTag::of`] only.
    #[doc(hidden)]
    #[inline]
    pub fn from_raw(flags: u16) -> Self {
        RequestTag(flags)
    }

    /// The raw record flags.
    #[inline]
    pub fn raw(self) -> u16 {
        self.0
    }
}

/// A request queued to a worker whose completion the proxy has not seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InFlight {
    /// Its per-pair sequence number.
    pub seq: u64,
    /// The flow it came from (`SppConnInfo::flow`).
    pub flow: u64,
    /// Its `RequestMeta::enqueued_ns` (CLOCK_MONOTONIC), as the proxy
    /// stamped it: no clock read of its own.
    pub enqueued_ns: u64,
}

/// What a sleep on a doorbell ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slept {
    /// Work showed up after the announce: did not block.
    Work,
    /// Blocked and was rung.
    Rung,
    /// Blocked until the timeout.
    TimedOut,
}

/// Announce sleep on `flag`, look once more with `work_waiting`, block in
/// `block` (on the bell) for at most `timeout` only if there is none,
/// clear the flag.
fn sleep_on(
    flag: SleepFlag<'_>,
    timeout: Duration,
    work_waiting: impl FnOnce() -> bool,
    block: impl FnOnce(Duration) -> bool,
) -> Slept {
    flag.announce();
    let slept = if work_waiting() {
        Slept::Work
    } else if block(timeout) {
        Slept::Rung
    } else {
        Slept::TimedOut
    };
    flag.clear();
    slept
}

/// The proxy's sleep flag (`ProxyHeader::proxy_sleeping`): one per proxy,
/// set by the proxy before it blocks, cleared by whichever worker wakes it
/// (see rule 5 of the module doc).
#[derive(Clone, Copy)]
pub struct ProxySleep<'a> {
    flag: SleepFlag<'a>,
}

impl<'a> ProxySleep<'a> {
    /// The sleep flag of the proxy of `proxy`.
    pub fn new(proxy: &'a ProxyRegion) -> Self {
        ProxySleep {
            flag: SleepFlag(&proxy.header().proxy_sleeping),
        }
    }

    /// Announces the proxy is about to block. It must look at its response
    /// rings once more after this, and block only if they are empty.
    #[inline]
    pub fn announce(&self) {
        self.flag.announce();
    }

    /// The proxy is awake again.
    #[inline]
    pub fn clear(&self) {
        self.flag.clear();
    }

    /// Whether the flag is set (a worker has not woken the proxy since it
    /// announced sleep).
    pub fn announced(&self) -> bool {
        self.flag.0.load(Ordering::SeqCst) != 0
    }

    /// For a proxy that blocks on its doorbell `bell` (tests, benches; the
    /// real proxy polls it with its sockets): announce, look once more with
    /// `work_waiting`, block for at most `timeout` if there is nothing,
    /// clear.
    pub fn sleep(
        &self,
        bell: &Doorbell,
        timeout: Duration,
        work_waiting: impl FnOnce() -> bool,
    ) -> Slept {
        sleep_on(self.flag, timeout, work_waiting, |timeout| {
            bell.wait(timeout)
        })
    }
}
