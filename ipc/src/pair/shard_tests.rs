//! A worker fed by two proxy shards, in one process: two pair regions,
//! each mapped twice (the shard's proxy end and the worker's end), two
//! proxy regions and proxy doorbells, and one worker doorbell shared by
//! both pairs, as `WorkerLaunch::other_shards` hands them.

use super::*;
use crate::flow_shard::{shard_of, with_shard};
use crate::layout::{PairLayout, PairRegion, ProxyRegion};
use crate::ring::MIN_CAPACITY;
use spp_plugin_api::abi::SppConnInfo;
use std::os::fd::RawFd;
use std::time::Instant;

const LAYOUT: PairLayout = PairLayout {
    request_capacity: MIN_CAPACITY,
    response_capacity: MIN_CAPACITY,
};
/// Shards in these tests.
const SHARDS: usize = 2;
/// Records a worker takes from one pair per turn at most.
const PER_PAIR: usize = 8;

fn dup(fd: RawFd) -> RawFd {
    // SAFETY: dup of an fd this test owns.
    let copy = unsafe { libc::dup(fd) };
    assert!(copy >= 0, "dup");
    copy
}

/// The worker's side of one shard's pair: its own mapping of the pair,
/// and the shard's proxy region and doorbell.
struct WorkerPair {
    pair: PairRegion,
    proxy_region: ProxyRegion,
    proxy_bell: Doorbell,
}

/// Two shards' pairs of one worker slot: each shard's proxy end, the
/// worker's side of each, and the worker's one doorbell (each proxy end
/// holds its own copy of it).
fn rig() -> (Vec<ProxyEnd>, Vec<WorkerPair>, Doorbell) {
    let bell = Doorbell::create().unwrap();
    let (mut proxies, mut workers) = (Vec::new(), Vec::new());
    for _ in 0..SHARDS {
        let pair = PairRegion::create(1, 0, LAYOUT).unwrap();
        // SAFETY: fresh fds of our own, each adopted once; the only proxy
        // end of this fresh region.
        unsafe {
            workers.push(WorkerPair {
                pair: PairRegion::open(dup(pair.raw_fd()), LAYOUT).unwrap(),
                proxy_region: ProxyRegion::create().unwrap(),
                proxy_bell: Doorbell::create().unwrap(),
            });
            proxies
                .push(ProxyEnd::attach(pair, Doorbell::from_raw_fd(dup(bell.raw_fd()))).unwrap());
        }
    }
    (proxies, workers, bell)
}

/// The worker's ends of every pair.
struct WorkerSet<'a> {
    requests: Vec<WorkerRequests<'a>>,
    responses: Vec<WorkerResponses<'a>>,
    rotation: Rotation,
}

fn take<'a>(shards: &'a [WorkerPair], bell: &'a Doorbell) -> WorkerSet<'a> {
    let mut set = WorkerSet {
        requests: Vec::new(),
        responses: Vec::new(),
        rotation: Rotation::new(shards.len()),
    };
    for shard in shards {
        let slot = WorkerSlot::take(&shard.pair, &shard.proxy_bell, 4242);
        // SAFETY: one worker end per pair; the shards outlive the set.
        unsafe {
            set.requests.push(slot.attach_requests(bell).unwrap());
            set.responses
                .push(slot.attach_responses(&shard.proxy_region).unwrap());
        }
        slot.set_ready();
    }
    set
}

impl WorkerSet<'_> {
    /// One turn: at most `PER_PAIR` requests from each pair, in the
    /// rotation's order, each echoed as "<pair>:<bytes>" on its own pair
    /// and completed there; every pair published. Returns the flows served,
    /// in order.
    fn turn(&mut self) -> Vec<u64> {
        let mut served = Vec::new();
        for k in self.rotation.turn() {
            let (requests, responses) = (&mut self.requests[k], &mut self.responses[k]);
            for _ in 0..PER_PAIR {
                let Some(record) = requests.peek().unwrap() else {
                    break;
                };
                let Request::Mine { meta, bytes, .. } = record.request else {
                    panic!("unexpected {:?}", record.request);
                };
                let mut answer = format!("{k}:").into_bytes();
                answer.extend_from_slice(bytes);
                responses
                    .push(ResponseKind::Reply, meta.conn.flow, &answer)
                    .unwrap();
                responses.complete(meta.seq);
                served.push(meta.conn.flow);
                let stride = record.stride();
                requests.advance(stride);
            }
            requests.release();
            responses.publish();
        }
        served
    }
}

fn conn(flow: u64) -> SppConnInfo {
    SppConnInfo {
        flow,
        ..Default::default()
    }
}

/// Pushes a request for `flow` on `shard`'s pair, stamped for its worker.
fn push(shard: &mut ProxyEnd, flow: u64, bytes: &[u8]) -> Result<u64, crate::ring::PushError> {
    let tag = RequestTag::of(shard.worker_generation());
    shard.push(tag, &conn(flow), bytes, 0)
}

/// Every reply on `shard`'s response ring: (flow, bytes); pops what
/// completed.
fn replies(shard: &mut ProxyEnd) -> Vec<(u64, Vec<u8>)> {
    let mut got = Vec::new();
    let drained = shard.drain_responses(usize::MAX, |rec| match rec {
        ResponseRecord::Reply { flow, bytes, .. } => got.push((flow, bytes.to_vec())),
        other => panic!("unexpected {other:?}"),
    });
    assert!(drained.corrupt.is_none());
    shard.pop_completed(&drained, |_| {});
    got
}

#[test]
fn each_answer_arrives_on_the_ring_its_request_came_from() {
    let (mut shards, workers, bell) = rig();
    let mut set = take(&workers, &bell);
    for (k, shard) in shards.iter_mut().enumerate() {
        for i in 0..3u64 {
            let flow = with_shard(100 + i, k as u16);
            push(shard, flow, format!("req{i}").as_bytes()).unwrap();
        }
        shard.publish();
    }
    assert_eq!(set.turn().len(), 6);
    for (k, shard) in shards.iter_mut().enumerate() {
        let got = replies(shard);
        let want: Vec<_> = (0..3u64)
            .map(|i| {
                (
                    with_shard(100 + i, k as u16),
                    format!("{k}:req{i}").into_bytes(),
                )
            })
            .collect();
        assert_eq!(got, want, "shard {k}");
        assert!(got
            .iter()
            .all(|(flow, _)| usize::from(shard_of(*flow)) == k));
        assert_eq!(shard.completed_seq(), 3, "completed per pair");
        assert_eq!(shard.in_flight(), 0);
    }
}

#[test]
fn a_trickle_on_one_shard_is_served_while_another_floods() {
    let (mut shards, workers, bell) = rig();
    let mut set = take(&workers, &bell);
    let (flood, trickle) = shards.split_at_mut(1);
    let (flood, trickle) = (&mut flood[0], &mut trickle[0]);
    let mut next_flood = 0u64;
    let mut refill = |flood: &mut ProxyEnd| {
        while push(flood, next_flood, b"flood").is_ok() {
            next_flood += 1;
        }
        flood.publish();
        replies(flood);
    };
    // Shard 0 keeps its ring full; shard 1 sends one request now and then.
    for round in 0..20u64 {
        refill(flood);
        let flow = with_shard(round, 1);
        push(trickle, flow, b"trickle").unwrap();
        trickle.publish();
        let mut turns = 0;
        loop {
            turns += 1;
            let served = set.turn();
            assert!(served.len() <= PER_PAIR * SHARDS, "a turn is bounded");
            if served.contains(&flow) {
                break;
            }
            assert!(turns < 2, "round {round}: the trickle waited {turns} turns");
            refill(flood);
        }
        assert_eq!(replies(trickle), vec![(flow, b"1:trickle".to_vec())]);
    }
    assert!(next_flood > 100, "shard 0 really flooded ({next_flood})");
}

#[test]
fn a_push_on_any_shard_wakes_a_worker_sleeping_on_all() {
    let (mut shards, workers, bell) = rig();
    let mut set = take(&workers, &bell);
    for waker in 0..SHARDS {
        std::thread::scope(|scope| {
            let shards = &mut shards;
            scope.spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(10);
                // Every shard sees the worker asleep on its own pair.
                while !shards.iter().all(|s| s.worker_sleeping()) {
                    assert!(Instant::now() < deadline, "the worker never slept");
                    std::thread::yield_now();
                }
                push(&mut shards[waker], 7, b"wake").unwrap();
                assert!(shards[waker].publish(), "rang the shared bell");
            });
            let slept = sleep_all(
                &set.requests,
                Duration::from_secs(10),
                || false,
                |timeout| bell.wait(timeout),
            );
            // Rung, not timed out: the push woke it.
            assert_eq!(slept, Slept::Rung, "shard {waker}");
        });
        assert!(
            shards.iter().all(|s| !s.worker_sleeping()),
            "every flag cleared"
        );
        assert!(set.requests[waker].has_requests());
        assert_eq!(set.turn(), vec![7]);
        assert_eq!(replies(&mut shards[waker]).len(), 1);
    }
    push(&mut shards[1], 8, b"waiting").unwrap();
    shards[1].publish();
    // Work already waiting: no block at all.
    let slept = sleep_all(
        &set.requests,
        Duration::from_secs(10),
        || false,
        |_| panic!("blocked with work waiting"),
    );
    assert_eq!(slept, Slept::Work);
}

#[test]
fn the_rotation_starts_one_pair_further_each_turn() {
    let mut rotation = Rotation::new(3);
    let turns: Vec<Vec<usize>> = (0..4).map(|_| rotation.turn().collect()).collect();
    assert_eq!(
        turns,
        vec![vec![0, 1, 2], vec![1, 2, 0], vec![2, 0, 1], vec![0, 1, 2]]
    );
    let mut one = Rotation::new(1);
    assert_eq!(one.turn().collect::<Vec<_>>(), vec![0]);
    assert_eq!(one.turn().collect::<Vec<_>>(), vec![0]);
}
