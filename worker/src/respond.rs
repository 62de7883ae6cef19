//! [`Responder`]: the worker's response policy over its ends of the
//! response rings ([`WorkerResponses`], one per pair, which owns the
//! protocol: records, `completed_seq`, waking that pair's proxy), used only
//! on the main thread. It pushes replies and closes, and `KIND_EXPIRED`
//! records (a request that waited past `msg_timeout`, see
//! [`Responder::expire_on`]), publishes them in batches (at the latest
//! every [`PUBLISH_EVERY`] records) together with each pair's
//! `completed_seq` and the batch's counters (a [`WorkerTally`], flushed
//! into pair 0's header before the rings' publish so a proxy that sees
//! the replies sees the counters), and decides what happens when a ring
//! is full: publish, wake that ring's proxy, wait a bounded time for room,
//! then drop the record and count it in `replies_dropped`.
//!
//! Which pair an answer goes to (one pair per proxy shard): a request's
//! expiry, completion and error close go to the pair it came from (the
//! caller names it). A reply or close by flow id goes to the pair of the
//! request being served when it is that request's flow
//! ([`Responder::serving`]), else to the pair of
//! [`shard_of`](spp_ipc::flow_shard::shard_of) the flow (deferred replies,
//! replies to other connections); a flow of a shard this worker has no
//! pair of is refused (`SPP_ERR_BAD_ARG`) and counted in
//! `replies_dropped`. With one pair (one proxy) every answer goes to it,
//! whatever the flow's bits.

use crate::attach::Shared;
use spp_ipc::flow_shard::shard_of;
use spp_ipc::layout::WorkerTally;
use spp_ipc::pair::{ResponseKind, WorkerResponses};
use spp_ipc::ring::PushError;
use spp_plugin_api::abi::{SPP_ERR_BAD_ARG, SPP_ERR_FULL, SPP_ERR_TOO_LARGE, SPP_OK};
use std::ffi::c_int;
use std::time::{Duration, Instant};

/// Response records pushed without a publish at most: a plugin answering one
/// request with many replies still feeds the proxy as it goes.
pub const PUBLISH_EVERY: usize = 64;
/// How long one reply may wait for room in a full response ring before it is
/// dropped. The proxy drains the ring every loop turn, so a ring full for
/// this long means the proxy is stuck or gone.
pub const FULL_WAIT: Duration = Duration::from_millis(10);
/// Busy spins while waiting for room before switching to `yield_now`.
pub const FULL_WAIT_SPINS: u32 = 1024;

/// One pair's response ring end and its stall.
struct End {
    end: WorkerResponses<'static>,
    /// A wait for room timed out and the ring has not taken a record since:
    /// further replies drop at once instead of waiting again each.
    stalled: bool,
}

/// The worker's ends of the response rings plus their batching state.
pub struct Responder {
    /// Pair `k`'s end at `k` (shard `k`).
    ends: Vec<End>,
    shared: &'static Shared,
    /// Records pushed since the last publish.
    unpublished: usize,
    /// The (pair, flow) of the request being served now, if any.
    serving: Option<(usize, u64)>,
    /// Counters since the last publish (everything but `requests`, which
    /// the serve loop bumps live).
    tally: WorkerTally,
}

impl Responder {
    /// Wraps the worker's ends of the response rings, pair `k` at `k`;
    /// `shared` holds the counters.
    pub fn new(ends: Vec<WorkerResponses<'static>>, shared: &'static Shared) -> Self {
        Responder {
            ends: ends
                .into_iter()
                .map(|end| End {
                    end,
                    stalled: false,
                })
                .collect(),
            shared,
            unpublished: 0,
            serving: None,
            tally: WorkerTally::default(),
        }
    }

    /// The counters written to shared memory at the next publish.
    pub fn tally(&mut self) -> &mut WorkerTally {
        &mut self.tally
    }

    /// The largest reply every ring can carry.
    pub fn max_reply(&self) -> usize {
        self.ends
            .iter()
            .map(|e| e.end.max_payload())
            .min()
            .unwrap_or(0)
    }

    /// The request of `flow` from pair `pair` is being served (`None`:
    /// none is): its replies go back on that pair.
    #[inline]
    pub fn serving(&mut self, now: Option<(usize, u64)>) {
        self.serving = now;
    }

    /// The pair a reply to `flow` goes to; `None`: no pair of this worker.
    /// With one pair, always that one, whatever the flow's bits say (one
    /// proxy, exactly as before shards).
    #[inline]
    fn pair_of(&self, flow: u64) -> Option<usize> {
        match self.serving {
            _ if self.ends.len() == 1 => Some(0),
            Some((pair, serving)) if serving == flow => Some(pair),
            _ => {
                let pair = usize::from(shard_of(flow));
                (pair < self.ends.len()).then_some(pair)
            }
        }
    }

    /// Queues `data` for `flow` (empty = close after flush). Returns an
    /// `SPP_*` code.
    pub fn reply(&mut self, flow: u64, data: &[u8]) -> c_int {
        match self.pair_of(flow) {
            Some(pair) => self.push(pair, ResponseKind::Reply, flow, data),
            None => self.unknown_shard(),
        }
    }

    /// Queues a close of `flow` after its pending bytes. Returns an `SPP_*`
    /// code.
    pub fn close(&mut self, flow: u64) -> c_int {
        match self.pair_of(flow) {
            Some(pair) => self.close_on(pair, flow),
            None => self.unknown_shard(),
        }
    }

    /// Queues a close of `flow` on pair `pair`. Returns an `SPP_*` code.
    pub fn close_on(&mut self, pair: usize, flow: u64) -> c_int {
        self.push(pair, ResponseKind::Close, flow, &[])
    }

    /// A reply for a flow of a shard this worker has no pair of: dropped.
    fn unknown_shard(&mut self) -> c_int {
        self.tally.replies_dropped += 1;
        SPP_ERR_BAD_ARG
    }

    /// Records that `spp_process` returned for request `seq` of pair
    /// `pair`; written to its `completed_seq` at the next publish, after
    /// the replies it made.
    #[inline]
    pub fn complete_on(&mut self, pair: usize, seq: u64) {
        self.ends[pair].end.complete(seq);
    }

    /// [`Self::complete_on`] pair 0.
    #[cfg(test)]
    pub fn complete(&mut self, seq: u64) {
        self.complete_on(0, seq);
    }

    /// Writes the counters, makes every queued record visible, then each
    /// pair's `completed_seq`, and wakes the proxy of each pair that moved
    /// if it sleeps (a request may complete without a reply, and the proxy
    /// still waits for it). Returns whether records were published.
    pub fn publish(&mut self) -> bool {
        // Before the rings' Release stores: a proxy that sees the replies
        // sees the counters that go with them.
        self.tally.flush(&self.shared.pair_header().stats);
        self.unpublished = 0;
        let mut published = false;
        for end in &mut self.ends {
            published |= end.end.publish();
        }
        published
    }

    /// [`Self::expire_on`] pair 0.
    #[cfg(test)]
    pub fn expire(&mut self, flow: u64, request: &[u8]) -> bool {
        self.expire_on(0, flow, request)
    }

    /// Reports that the request `request` for `flow` from pair `pair`
    /// waited past `msg_timeout` and is not processed: a `KIND_EXPIRED`
    /// record with the request bytes, or with none when they can never
    /// fit the ring (the proxy then calls its exception hook without
    /// them). Counted in `stale_dropped`; a record that cannot be queued
    /// (ring full for too long) also in `replies_dropped`, like a reply.
    /// Returns whether it was queued.
    pub fn expire_on(&mut self, pair: usize, flow: u64, request: &[u8]) -> bool {
        self.tally.stale_dropped += 1;
        // Without the bytes when they can never fit, or when the ring has
        // no room for them: the proxy still learns the flow must be failed.
        let queued = match self.push_record(pair, ResponseKind::Expired, flow, request) {
            Err(PushError::TooLarge | PushError::Full) if !request.is_empty() => {
                self.push_record(pair, ResponseKind::Expired, flow, &[])
            }
            other => other,
        };
        if queued.is_err() {
            self.tally.replies_dropped += 1;
        }
        queued.is_ok()
    }

    /// Queues a reply record on pair `pair` and counts it. Returns an
    /// `SPP_*` code.
    fn push(&mut self, pair: usize, kind: ResponseKind, flow: u64, data: &[u8]) -> c_int {
        match self.push_record(pair, kind, flow, data) {
            Ok(()) => {
                self.tally.replies += 1;
                self.tally.reply_bytes += data.len() as u64;
                SPP_OK
            }
            Err(err) => {
                self.tally.replies_dropped += 1;
                match err {
                    PushError::Full => SPP_ERR_FULL,
                    PushError::TooLarge => SPP_ERR_TOO_LARGE,
                }
            }
        }
    }

    /// Queues one record on pair `pair`, waiting a bounded time for room
    /// (once per stall of that ring), and publishes every
    /// [`PUBLISH_EVERY`] records.
    fn push_record(
        &mut self,
        pair: usize,
        kind: ResponseKind,
        flow: u64,
        data: &[u8],
    ) -> Result<(), PushError> {
        let mut result = self.try_push(pair, kind, flow, data);
        if result == Err(PushError::Full) && !self.ends[pair].stalled {
            result = self.wait_for_room(pair, kind, flow, data);
            self.ends[pair].stalled = result.is_err();
        }
        if result.is_ok() {
            self.ends[pair].stalled = false;
            self.unpublished += 1;
            if self.unpublished >= PUBLISH_EVERY {
                self.publish();
            }
        }
        result
    }

    #[inline]
    fn try_push(
        &mut self,
        pair: usize,
        kind: ResponseKind,
        flow: u64,
        data: &[u8],
    ) -> Result<(), PushError> {
        self.ends[pair].end.push(kind, flow, data)
    }

    /// Pair `pair`'s ring is full: hand the proxies what we have, then
    /// spin, then yield, for at most [`FULL_WAIT`].
    fn wait_for_room(
        &mut self,
        pair: usize,
        kind: ResponseKind,
        flow: u64,
        data: &[u8],
    ) -> Result<(), PushError> {
        self.publish();
        let started = Instant::now();
        let mut spins = 0u32;
        loop {
            match self.try_push(pair, kind, flow, data) {
                Err(PushError::Full) => {}
                done => return done,
            }
            if spins < FULL_WAIT_SPINS {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            if started.elapsed() >= FULL_WAIT {
                return Err(PushError::Full);
            }
            // The proxy may have gone to sleep between our publish and now.
            self.ends[pair].end.wake_proxy();
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
#[path = "respond_shard_tests.rs"]
mod shard_tests;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use spp_ipc::doorbell::Doorbell;
    use spp_ipc::layout::{PairLayout, PairRegion, ProxyRegion};
    use spp_ipc::pair::{ProxyEnd, ProxySleep, ResponseRecord, WorkerSlot};
    use spp_ipc::record::{KIND_CLOSE, KIND_EXPIRED, KIND_RESPONSE};
    use spp_ipc::ring::MIN_CAPACITY;
    use std::os::fd::RawFd;
    use std::sync::atomic::Ordering;

    /// A responder on a fresh pair, and the proxy's end of the pair.
    pub(crate) fn setup() -> (&'static Shared, Responder, ProxyEnd) {
        setup_with_routes(None)
    }

    /// [`setup`], with `routes` as the process's L5 route table.
    pub(crate) fn setup_with_routes(
        routes: Option<spp_ipc::l5::table::RouteTable>,
    ) -> (&'static Shared, Responder, ProxyEnd) {
        let (shared, responder, proxy, _slot) = setup_slot(routes);
        (shared, responder, proxy)
    }

    /// [`setup_with_routes`], plus the worker's hold on its slot
    /// (generation 1).
    pub(crate) fn setup_slot(
        routes: Option<spp_ipc::l5::table::RouteTable>,
    ) -> (&'static Shared, Responder, ProxyEnd, WorkerSlot<'static>) {
        let layout = PairLayout {
            request_capacity: MIN_CAPACITY,
            response_capacity: MIN_CAPACITY,
        };
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            pair: PairRegion::create(1, 0, layout).unwrap(),
            proxy: ProxyRegion::create().unwrap(),
            bell: Doorbell::create().unwrap(),
            proxy_bell: Doorbell::create().unwrap(),
            routes,
            others: Vec::new(),
        }));
        let dup = |fd: RawFd| {
            // SAFETY: dup of an fd the test owns.
            let copy = unsafe { libc::dup(fd) };
            assert!(copy >= 0, "dup");
            copy
        };
        // SAFETY: the proxy's own mapping of the pair and its own copy of
        // the worker's doorbell (fresh fds, adopted once); the only proxy
        // end of the pair.
        let proxy = unsafe {
            ProxyEnd::attach(
                PairRegion::open(dup(shared.pair.raw_fd()), layout).unwrap(),
                Doorbell::from_raw_fd(dup(shared.bell.raw_fd())),
            )
            .unwrap()
        };
        let slot = WorkerSlot::take(&shared.pair, &shared.proxy_bell, std::process::id());
        // SAFETY: the only worker end of the pair; `shared` is leaked.
        let responses = unsafe { slot.attach_responses(&shared.proxy).unwrap() };
        (shared, Responder::new(vec![responses], shared), proxy, slot)
    }

    /// Every published record: (kind, flow, bytes).
    pub(crate) fn drain(proxy: &mut ProxyEnd) -> Vec<(u16, u64, Vec<u8>)> {
        let mut out = Vec::new();
        let drained = proxy.drain_responses(usize::MAX, |record| {
            out.push(match record {
                ResponseRecord::Reply { flow, bytes, close } => (
                    if close { KIND_CLOSE } else { KIND_RESPONSE },
                    flow,
                    bytes.to_vec(),
                ),
                ResponseRecord::Expired { flow, request } => (KIND_EXPIRED, flow, request.to_vec()),
                other => panic!("unexpected {other:?}"),
            })
        });
        assert!(drained.corrupt.is_none());
        out
    }

    #[test]
    fn replies_and_closes_become_visible_at_publish_with_completed_seq() {
        let (shared, mut r, mut c) = setup();
        assert_eq!(r.reply(7, b"hello"), SPP_OK);
        assert_eq!(r.close(8), SPP_OK);
        r.complete(42);
        assert!(drain(&mut c).is_empty());
        let sleep = ProxySleep::new(&shared.proxy);
        sleep.announce();
        assert!(r.publish());
        assert!(!sleep.announced(), "the sleeping proxy was woken");
        assert!(shared.proxy_bell.wait(Duration::ZERO));
        assert_eq!(
            drain(&mut c),
            vec![
                (KIND_RESPONSE, 7, b"hello".to_vec()),
                (KIND_CLOSE, 8, vec![])
            ]
        );
        let header = shared.pair_header();
        assert_eq!(c.completed_seq(), 42);
        assert_eq!(header.stats.replies.load(Ordering::Relaxed), 2);
        assert_eq!(header.stats.reply_bytes.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn a_completion_without_a_reply_wakes_a_sleeping_proxy() {
        let (shared, mut r, mut c) = setup();
        let sleep = ProxySleep::new(&shared.proxy);
        sleep.announce();
        assert!(!r.publish(), "nothing to publish");
        assert!(sleep.announced(), "no wake");
        r.complete(7);
        assert!(!r.publish(), "still no records");
        assert_eq!(c.completed_seq(), 7);
        assert!(!sleep.announced(), "woken");
        assert!(shared.proxy_bell.wait(Duration::ZERO), "rang");
        assert!(drain(&mut c).is_empty());
        // Nothing new: no second wake.
        sleep.announce();
        r.publish();
        assert!(sleep.announced());
    }

    #[test]
    fn counters_reach_shared_memory_at_publish() {
        let (shared, mut r, _c) = setup();
        let stats = &shared.pair_header().stats;
        assert_eq!(r.reply(1, b"abc"), SPP_OK);
        r.tally().process_errors += 1;
        assert_eq!(stats.replies.load(Ordering::Relaxed), 0, "not yet");
        r.publish();
        assert_eq!(stats.replies.load(Ordering::Relaxed), 1);
        assert_eq!(stats.reply_bytes.load(Ordering::Relaxed), 3);
        assert_eq!(stats.process_errors.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn many_replies_publish_on_their_own() {
        let (_shared, mut r, mut c) = setup();
        for flow in 0..PUBLISH_EVERY as u64 {
            assert_eq!(r.reply(flow, b"x"), SPP_OK);
        }
        assert_eq!(drain(&mut c).len(), PUBLISH_EVERY);
    }

    #[test]
    fn an_expired_request_goes_back_with_its_bytes_or_without_them() {
        let (shared, mut r, mut c) = setup();
        assert!(r.expire(1, b"late"));
        let too_big = vec![7u8; r.max_reply() + 1];
        assert!(r.expire(2, &too_big), "sent without the bytes");
        r.publish();
        assert_eq!(
            drain(&mut c),
            vec![
                (KIND_EXPIRED, 1, b"late".to_vec()),
                (KIND_EXPIRED, 2, vec![])
            ]
        );
        let stats = &shared.pair_header().stats;
        assert_eq!(stats.stale_dropped.load(Ordering::Relaxed), 2);
        assert_eq!(stats.replies.load(Ordering::Relaxed), 0, "not replies");
        assert_eq!(stats.replies_dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_expired_record_meets_a_full_ring_like_a_reply() {
        let (shared, mut r, mut c) = setup();
        let big = vec![1u8; r.max_reply()];
        assert_eq!(r.reply(1, &big), SPP_OK);
        assert_eq!(r.reply(2, &big), SPP_OK);
        // Nobody consumes: waits FULL_WAIT, then drops and counts it.
        assert!(!r.expire(3, b"late"));
        r.publish();
        let stats = &shared.pair_header().stats;
        assert_eq!(stats.stale_dropped.load(Ordering::Relaxed), 1);
        assert_eq!(stats.replies_dropped.load(Ordering::Relaxed), 1);
        assert_eq!(drain(&mut c).len(), 2);
        assert!(r.expire(4, b"late"), "room again");
    }

    #[test]
    fn too_large_and_full_are_refused_and_counted() {
        let (shared, mut r, mut c) = setup();
        assert_eq!(r.reply(1, &vec![0; r.max_reply() + 1]), SPP_ERR_TOO_LARGE);
        let big = vec![1u8; r.max_reply()];
        // Two of the largest fill the ring exactly.
        assert_eq!(r.reply(2, &big), SPP_OK);
        assert_eq!(r.reply(3, &big), SPP_OK);
        // Nobody consumes: the next one waits FULL_WAIT, then drops; the one
        // after drops at once (stalled).
        assert_eq!(r.reply(4, &big), SPP_ERR_FULL);
        assert_eq!(r.reply(5, &big), SPP_ERR_FULL);
        r.publish();
        assert_eq!(
            shared
                .pair_header()
                .stats
                .replies_dropped
                .load(Ordering::Relaxed),
            3
        );
        assert_eq!(drain(&mut c).len(), 2, "the wait published what was queued");
        assert_eq!(r.reply(6, &big), SPP_OK, "room again ends the stall");
    }
}
