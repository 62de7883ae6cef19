//! [`Responder`] over two pairs (two proxy shards): which ring each
//! answer goes to.

use super::tests::drain;
use super::*;
use crate::attach::ShardPair;
use spp_ipc::doorbell::Doorbell;
use spp_ipc::flow_shard::with_shard;
use spp_ipc::layout::{PairLayout, PairRegion, ProxyRegion};
use spp_ipc::pair::{ProxyEnd, WorkerSlot};
use spp_ipc::record::{KIND_CLOSE, KIND_EXPIRED, KIND_RESPONSE};
use spp_ipc::ring::MIN_CAPACITY;
use std::sync::atomic::Ordering;

const LAYOUT: PairLayout = PairLayout {
    request_capacity: MIN_CAPACITY,
    response_capacity: MIN_CAPACITY,
};

/// A responder on `pairs` fresh pairs, and each pair's proxy end.
fn setup(pairs: usize) -> (&'static Shared, Responder, Vec<ProxyEnd>) {
    let shard = || ShardPair {
        pair: PairRegion::create(1, 0, LAYOUT).unwrap(),
        proxy: ProxyRegion::create().unwrap(),
        proxy_bell: Doorbell::create().unwrap(),
    };
    let first = shard();
    let shared: &'static Shared = Box::leak(Box::new(Shared {
        pair: first.pair,
        proxy: first.proxy,
        bell: Doorbell::create().unwrap(),
        proxy_bell: first.proxy_bell,
        routes: None,
        others: (1..pairs).map(|_| shard()).collect(),
    }));
    let dup = |fd| {
        // SAFETY: dup of an fd the test owns.
        let copy = unsafe { libc::dup(fd) };
        assert!(copy >= 0, "dup");
        copy
    };
    let mut ends = Vec::new();
    let mut proxies = Vec::new();
    for k in 0..pairs {
        let (pair, proxy, proxy_bell) = shared.pair_at(k);
        // SAFETY: the proxy's own mapping of the pair and its own copy of
        // the worker's doorbell (fresh fds, adopted once); the only proxy
        // end of the pair.
        proxies.push(unsafe {
            ProxyEnd::attach(
                PairRegion::open(dup(pair.raw_fd()), LAYOUT).unwrap(),
                Doorbell::from_raw_fd(dup(shared.bell.raw_fd())),
            )
            .unwrap()
        });
        let slot = WorkerSlot::take(pair, proxy_bell, std::process::id());
        // SAFETY: the only worker end of the pair; `shared` is leaked.
        ends.push(unsafe { slot.attach_responses(proxy).unwrap() });
    }
    (shared, Responder::new(ends, shared), proxies)
}

#[test]
fn answers_go_to_the_serving_pair_or_the_flows_shard() {
    let (shared, mut r, mut proxies) = setup(2);
    // The request being served: its pair, whatever the flow's bits.
    r.serving(Some((1, 40)));
    assert_eq!(r.reply(40, b"served"), SPP_OK);
    r.serving(None);
    // By flow id alone (a deferred reply): the flow's shard.
    assert_eq!(r.reply(with_shard(41, 1), b"later"), SPP_OK);
    assert_eq!(r.close(with_shard(42, 0)), SPP_OK);
    // A shard this worker has no pair of: refused and counted.
    assert_eq!(r.reply(with_shard(43, 5), b"lost"), SPP_ERR_BAD_ARG);
    assert!(r.expire_on(1, 44, b"late"));
    r.complete_on(1, 9);
    r.complete_on(0, 3);
    r.publish();
    assert_eq!(
        drain(&mut proxies[1]),
        vec![
            (KIND_RESPONSE, 40, b"served".to_vec()),
            (KIND_RESPONSE, with_shard(41, 1), b"later".to_vec()),
            (KIND_EXPIRED, 44, b"late".to_vec()),
        ]
    );
    assert_eq!(drain(&mut proxies[0]), vec![(KIND_CLOSE, 42, vec![])]);
    assert_eq!(proxies[1].completed_seq(), 9, "completed per pair");
    assert_eq!(proxies[0].completed_seq(), 3);
    // The counters live in pair 0's header only.
    let stats = &shared.pair_header().stats;
    assert_eq!(stats.replies.load(Ordering::Relaxed), 3);
    assert_eq!(stats.replies_dropped.load(Ordering::Relaxed), 1);
    assert_eq!(stats.stale_dropped.load(Ordering::Relaxed), 1);
    let other = &shared.pair_at(1).0.header().stats;
    assert_eq!(other.replies.load(Ordering::Relaxed), 0);
}

#[test]
fn with_one_pair_every_answer_goes_to_it() {
    let (_shared, mut r, mut proxies) = setup(1);
    assert_eq!(r.reply(with_shard(7, 5), b"x"), SPP_OK);
    r.publish();
    assert_eq!(
        drain(&mut proxies[0]),
        vec![(KIND_RESPONSE, with_shard(7, 5), b"x".to_vec())]
    );
}

#[test]
fn a_full_ring_of_one_shard_does_not_drop_the_others_replies() {
    let (shared, mut r, mut proxies) = setup(2);
    let big = vec![1u8; r.max_reply()];
    let on_one = with_shard(1, 1);
    // Shard 1's proxy reads nothing: two of the largest fill its ring, the
    // third waits FULL_WAIT and drops, the fourth drops at once (stalled).
    assert_eq!(r.reply(on_one, &big), SPP_OK);
    assert_eq!(r.reply(on_one, &big), SPP_OK);
    assert_eq!(r.reply(on_one, &big), SPP_ERR_FULL);
    assert_eq!(r.reply(on_one, &big), SPP_ERR_FULL);
    // Shard 0's ring is not stalled by it: both fit at once.
    assert_eq!(r.reply(with_shard(2, 0), &big), SPP_OK);
    assert_eq!(r.reply(with_shard(3, 0), &big), SPP_OK);
    r.publish();
    assert_eq!(drain(&mut proxies[0]).len(), 2);
    assert_eq!(drain(&mut proxies[1]).len(), 2);
    let stats = &shared.pair_header().stats;
    assert_eq!(stats.replies_dropped.load(Ordering::Relaxed), 2);
    assert_eq!(
        r.reply(on_one, b"again"),
        SPP_OK,
        "room again ends the stall"
    );
}
