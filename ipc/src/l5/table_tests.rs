//! Route table tests: publish and pick, the pick-time rules, consistent
//! hashing, slot epochs, a second mapping of the same memfd, and readers
//! racing a writer.

use super::*;
use crate::l5::code;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

const SID: Sid = Sid {
    modid: 64001,
    cmdid: 1,
};

/// A small seeded xorshift64*, so every "random" test is reproducible.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn addr(i: u32) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8)),
        9000 + i as u16,
    )
}

fn instance(sid: Sid, i: u32, weight: u32) -> Instance {
    Instance {
        sid,
        addr: addr(i),
        weight,
    }
}

/// A node spec: (weight, dead).
type Spec = (u32, bool);

/// The view of `sid` with node `i` at `addr(i)`, static weight 1000.
fn view_of(table: &mut RouteTable, sid: Sid, nodes: &[Spec], budget: u32) -> SidView {
    let nodes = nodes
        .iter()
        .enumerate()
        .map(|(i, &(weight, dead))| {
            let instance = instance(sid, i as u32, 1000);
            NodeView {
                instance,
                weight,
                dead,
                slot: table.slot_for(&instance).unwrap(),
            }
        })
        .collect();
    SidView {
        sid,
        nodes,
        probe_budget: budget,
    }
}

fn publish(table: &mut RouteTable, nodes: &[Spec], budget: u32) {
    let view = view_of(table, SID, nodes, budget);
    table.publish(&[view]).unwrap();
}

/// How often each node index (by address) was picked in `n` seeded picks.
fn pick_counts(table: &RouteTable, nodes: usize, n: u32, seed: u64) -> Vec<u32> {
    let mut rng = XorShift(seed);
    let mut hits = vec![0u32; nodes];
    for _ in 0..n {
        let route = table.pick(SID, rng.next()).unwrap();
        let i = (0..nodes)
            .position(|i| addr(i as u32) == route.addr)
            .unwrap();
        hits[i] += 1;
    }
    hits
}

fn report_n(table: &RouteTable, node: u32, success: u32, failure: u32) {
    let route = route_of(table, node);
    for i in 0..success.max(failure) {
        if i < success {
            table.report(&route, 0, 100);
        }
        if i < failure {
            table.report(&route, -1, 100);
        }
    }
}

/// A route to node `node` of SID, as a pick would hand it out.
fn route_of(table: &RouteTable, node: u32) -> Route {
    let view = table.view();
    let n = view[0]
        .nodes
        .iter()
        .find(|n| n.instance.addr == addr(node))
        .unwrap();
    Route {
        sid: SID,
        addr: addr(node),
        slot: n.slot,
        slot_epoch: table.shared().slots[n.slot as usize]
            .epoch
            .load(Ordering::Relaxed),
    }
}

fn assert_share(hits: u32, n: u32, share: f64) {
    let expected = f64::from(n) * share;
    let off = (f64::from(hits) - expected).abs();
    assert!(
        off <= 0.03 * expected,
        "{hits} of {n} picks, expected {expected:.0} ± 3 %"
    );
}

#[test]
fn an_empty_table_knows_no_sid_and_errors_map_to_l5_codes() {
    let mut table = RouteTable::create().unwrap();
    assert_eq!(table.pick(SID, 1), Err(L5Error::UnknownSid));
    assert_eq!(table.pick_hash(SID, 1), Err(L5Error::UnknownSid));
    assert_eq!(table.generation(), 0);
    let empty = SidView {
        sid: SID,
        nodes: vec![],
        probe_budget: 0,
    };
    table.publish(&[empty]).unwrap();
    assert_eq!(table.pick(SID, 1), Err(L5Error::NoServer));
    assert_eq!(table.pick_hash(SID, 1), Err(L5Error::NoServer));
    let other = Sid { modid: 1, cmdid: 1 };
    assert_eq!(table.pick(other, 1), Err(L5Error::UnknownSid));
    assert_eq!(L5Error::UnknownSid.code(), code::UNKNOWN_SID);
    assert_eq!(L5Error::NoServer.code(), code::NO_SERVER);
    assert_eq!(L5Error::Busy.code(), code::SYSTEM);
    assert_eq!(L5Error::Invalid("x").code(), code::SYSTEM);
    publish(&mut table, &[(100, false)], 0);
    assert_eq!(table.pick(SID, 7).unwrap().addr, addr(0));
    assert_eq!(table.generation(), 2);
}

#[test]
fn a_second_mapping_of_the_fd_sees_publishes_and_shares_the_counters() {
    let mut table = RouteTable::create().unwrap();
    // SAFETY: dup gives this test its own fd to hand to `open`.
    let fd = unsafe { libc::dup(table.raw_fd()) };
    assert!(fd >= 0);
    // SAFETY: `fd` is a fresh dup of a route-table memfd, owned here.
    let worker = unsafe { RouteTable::open(fd) }.unwrap();
    publish(&mut table, &[(100, false), (300, false)], 0);
    let route = worker.pick(SID, 42).unwrap();
    worker.report(&route, 0, 250);
    worker.report(&route, -3, 750);
    let counts = table.counts(route.slot);
    assert_eq!(
        counts,
        NodeCounts {
            picks: 1,
            success: 1,
            failure: 1,
            latency_us: 1000,
            consecutive_errors: 1
        }
    );
    assert_eq!(worker.view(), table.view());
    assert_eq!(worker.generation(), 1);

    // A memfd of the right size without the header is refused.
    let blank = SharedRegion::create("blank", super::super::layout::TABLE_SIZE).unwrap();
    // SAFETY: as above.
    let fd = unsafe { libc::dup(blank.raw_fd()) };
    // SAFETY: `fd` is ours; `open` must refuse it.
    let err = unsafe { RouteTable::open(fd) }.unwrap_err();
    assert!(err.to_string().contains("l5 route table"), "{err}");
}

#[test]
fn the_view_reads_back_what_was_published_sorted_by_sid() {
    let mut table = RouteTable::create().unwrap();
    let b = Sid { modid: 2, cmdid: 1 };
    let a = Sid { modid: 1, cmdid: 7 };
    let vb = view_of(&mut table, b, &[(10, false), (0, true)], 3);
    let mut va = view_of(&mut table, a, &[(1000, false)], 0);
    va.nodes[0].instance.addr = "[fe80::1%3]:53".parse().unwrap();
    let inst = va.nodes[0].instance;
    va.nodes[0].slot = table.slot_for(&inst).unwrap();
    table.publish(&[vb.clone(), va.clone()]).unwrap();
    assert_eq!(table.view(), vec![va.clone(), vb]);
    assert_eq!(table.pick(a, 5).unwrap().addr, inst.addr);
}

#[test]
fn publish_refuses_inconsistent_or_oversized_views() {
    let mut table = RouteTable::create().unwrap();
    let v = view_of(&mut table, SID, &[(100, false)], 0);
    assert_eq!(
        table.publish(&[v.clone(), v.clone()]),
        Err(L5Error::Invalid("a sid appears twice"))
    );
    let mut wrong = v.clone();
    wrong.nodes[0].slot = 77;
    assert!(matches!(table.publish(&[wrong]), Err(L5Error::Invalid(_))));
    let mut wrong = v.clone();
    wrong.nodes[0].slot = MAX_NODES as u32;
    assert!(matches!(table.publish(&[wrong]), Err(L5Error::Invalid(_))));
    let mut wrong = v.clone();
    wrong.nodes[0].instance.addr = addr(99);
    assert!(matches!(table.publish(&[wrong]), Err(L5Error::Invalid(_))));
    let many: Vec<SidView> = (0..=MAX_SIDS as u32)
        .map(|m| SidView {
            sid: Sid { modid: m, cmdid: 0 },
            nodes: vec![],
            probe_budget: 0,
        })
        .collect();
    assert_eq!(table.publish(&many), Err(L5Error::Full("sids")));
    // Nothing was published by the failed calls.
    assert_eq!(table.generation(), 0);
    // Slots run out at MAX_NODES.
    for i in 1..MAX_NODES as u32 {
        table.slot_for(&instance(SID, i, 100)).unwrap();
    }
    assert_eq!(
        table.slot_for(&instance(SID, 5000, 100)),
        Err(L5Error::Full("stats slots"))
    );
    // The same instance keeps its slot.
    assert_eq!(table.slot_for(&v.nodes[0].instance), Ok(v.nodes[0].slot));
}

#[test]
fn weighted_picks_follow_the_weights() {
    let mut table = RouteTable::create().unwrap();
    publish(
        &mut table,
        &[(100, false), (200, false), (300, false), (400, false)],
        0,
    );
    let n = 100_000;
    let hits = pick_counts(&table, 4, n, 0x5eed);
    for (i, share) in [0.1, 0.2, 0.3, 0.4].into_iter().enumerate() {
        assert_share(hits[i], n, share);
    }
    let picks: u64 = (0..4)
        .map(|i| table.counts(route_of(&table, i).slot).picks)
        .sum();
    assert_eq!(picks, u64::from(n), "every pick is counted on its slot");
}

#[test]
fn a_node_failing_this_period_is_skipped_until_the_next_publish() {
    let mut table = RouteTable::create().unwrap();
    let nodes = [(100, false), (100, false)];
    publish(&mut table, &nodes, 0);
    // 4 of 9 fail: too few samples to judge.
    report_n(&table, 0, 5, 4);
    assert_share(pick_counts(&table, 2, 10_000, 1)[0], 10_000, 0.5);
    // The 10th sample, a failure: ratio 0.5 < 0.6 with 10 samples.
    report_n(&table, 0, 0, 1);
    assert_eq!(pick_counts(&table, 2, 10_000, 2)[0], 0);
    // A new period (publish) starts from the counts at publish time.
    publish(&mut table, &nodes, 0);
    assert_share(pick_counts(&table, 2, 10_000, 3)[0], 10_000, 0.5);
    // 6 of 10 succeed: at the threshold, not below it.
    report_n(&table, 0, 6, 4);
    assert_share(pick_counts(&table, 2, 10_000, 4)[0], 10_000, 0.5);
}

#[test]
fn consecutive_errors_trip_a_node_at_pick_time_and_a_success_resets_them() {
    let mut table = RouteTable::create().unwrap();
    publish(&mut table, &[(100, false), (100, false), (100, false)], 0);
    // Plenty of successes, then 10 failures in a row.
    report_n(&table, 1, 1000, 0);
    report_n(&table, 1, 0, 10);
    assert_eq!(
        table.counts(route_of(&table, 1).slot).consecutive_errors,
        10
    );
    assert_eq!(pick_counts(&table, 3, 10_000, 5)[1], 0);
    report_n(&table, 1, 1, 0);
    assert_eq!(table.counts(route_of(&table, 1).slot).consecutive_errors, 0);
    assert_share(pick_counts(&table, 3, 30_000, 6)[1], 30_000, 1.0 / 3.0);
    // trip_errors comes from the rules the controller sets.
    table.set_rules(&BalancerConfig {
        trip_errors: 3,
        ..BalancerConfig::default()
    });
    report_n(&table, 2, 0, 3);
    assert_eq!(pick_counts(&table, 3, 10_000, 7)[2], 0);
}

#[test]
fn dead_nodes_get_only_probes_bounded_by_the_budget() {
    let mut table = RouteTable::create().unwrap();
    // Budget 5: 100k picks at 1 % would want ~1000 probes; 5 happen.
    publish(&mut table, &[(100, false), (0, true)], 5);
    assert_eq!(pick_counts(&table, 2, 100_000, 8)[1], 5);
    assert_eq!(table.view()[0].probe_budget, 0);
    // A large budget: about 1 % of the picks probe.
    publish(&mut table, &[(100, false), (0, true)], 1000);
    let probes = pick_counts(&table, 2, 20_000, 9)[1];
    assert!(
        (150..=250).contains(&probes),
        "{probes} probes in 20k picks"
    );
    assert_eq!(table.view()[0].probe_budget, 1000 - probes);
    // probe_share 0: no probe at all.
    table.set_rules(&BalancerConfig {
        probe_share: 0.0,
        ..BalancerConfig::default()
    });
    publish(&mut table, &[(100, false), (0, true)], 1000);
    assert_eq!(pick_counts(&table, 2, 20_000, 10)[1], 0);
    // No budget: no probe either.
    table.set_rules(&BalancerConfig::default());
    publish(&mut table, &[(100, false), (0, true)], 0);
    assert_eq!(pick_counts(&table, 2, 20_000, 11)[1], 0);
}

#[test]
fn every_node_dead_or_skipped_fails_open() {
    let mut table = RouteTable::create().unwrap();
    publish(&mut table, &[(0, true), (0, true), (0, true)], 0);
    let hits = pick_counts(&table, 3, 30_000, 12);
    for hit in hits {
        assert_share(hit, 30_000, 1.0 / 3.0);
    }
    // Every live node skipped: the skip rule yields and the pick stays
    // weighted (not uniform).
    publish(&mut table, &[(100, false), (300, false)], 0);
    report_n(&table, 0, 0, 10);
    report_n(&table, 1, 0, 10);
    let hits = pick_counts(&table, 2, 20_000, 13);
    assert_share(hits[0], 20_000, 0.25);
    assert_share(hits[1], 20_000, 0.75);
    // One live node, skipped, beside dead nodes with no probe budget: the
    // dead nodes get nothing (random over every node only when all are
    // dead).
    publish(
        &mut table,
        &[(0, true), (100, false), (0, true), (0, true)],
        0,
    );
    report_n(&table, 1, 0, 10);
    assert_eq!(pick_counts(&table, 4, 10_000, 15), [0, 10_000, 0, 0]);
    // One node left unskipped takes everything, however light. (A success
    // clears node 0's errors in a row; a publish does not.)
    publish(&mut table, &[(1, false), (1000, false), (1000, false)], 0);
    report_n(&table, 0, 1, 0);
    report_n(&table, 1, 0, 10);
    report_n(&table, 2, 0, 10);
    assert_eq!(pick_counts(&table, 3, 10_000, 14)[0], 10_000);
}

fn hash_map_of(table: &RouteTable, keys: u64) -> Vec<SocketAddr> {
    (0..keys)
        .map(|k| table.pick_hash(SID, k).unwrap().addr)
        .collect()
}

#[test]
fn hash_picks_are_stable_and_move_only_the_removed_nodes_keys() {
    let mut table = RouteTable::create().unwrap();
    let eight = [(100, false); 8];
    publish(&mut table, &eight, 0);
    let before = hash_map_of(&table, 10_000);
    for i in 0..8 {
        let share = before.iter().filter(|&&a| a == addr(i)).count();
        assert!((1_000..=1_500).contains(&share), "node {i}: {share}");
    }
    publish(&mut table, &eight, 0);
    assert!(
        hash_map_of(&table, 10_000) == before,
        "stable across publishes"
    );

    // Node 3 removed (a publish without it): only its keys move.
    let view = view_of(&mut table, SID, &eight, 0);
    let mut seven = view.clone();
    seven.nodes.remove(3);
    table.publish(&[seven]).unwrap();
    let after = hash_map_of(&table, 10_000);
    let mut moved_to = HashSet::new();
    for (b, a) in before.iter().zip(&after) {
        if *b == addr(3) {
            assert_ne!(*a, addr(3));
            moved_to.insert(*a);
        } else {
            assert_eq!(a, b, "a key of a remaining node moved");
        }
    }
    assert_eq!(moved_to.len(), 7, "its keys spread over the others");
    // Dead counts as removed.
    let mut dead = view.clone();
    dead.nodes[3].dead = true;
    dead.nodes[3].weight = 0;
    table.publish(&[dead]).unwrap();
    assert!(
        hash_map_of(&table, 10_000) == after,
        "dead counts as removed"
    );
}

#[test]
fn with_unequal_weights_hash_picks_move_only_to_or_from_the_changed_node() {
    let mut table = RouteTable::create().unwrap();
    let weights: Vec<Spec> = (1..=8).map(|w| (100 * w, false)).collect();
    publish(&mut table, &weights, 0);
    let before = hash_map_of(&table, 20_000);
    // Shares follow the weights (node i weighs (i + 1) / 36 of the total).
    for i in 0..8u32 {
        let hits = before.iter().filter(|&&a| a == addr(i)).count() as f64;
        let expected = 20_000.0 * f64::from(i + 1) / 36.0;
        assert!(
            (hits - expected).abs() < 0.15 * expected,
            "node {i}: {hits} vs {expected}"
        );
    }
    // Node 5 heavier: keys only move to it.
    let mut heavier = weights.clone();
    heavier[5].0 = 900;
    publish(&mut table, &heavier, 0);
    let after = hash_map_of(&table, 20_000);
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a);
    assert!(moved.clone().all(|(_, a)| *a == addr(5)));
    assert!(moved.count() > 0);
    // Node 2 removed: only its keys move.
    let mut view = view_of(&mut table, SID, &weights, 0);
    view.nodes.remove(2);
    table.publish(&[view]).unwrap();
    let after = hash_map_of(&table, 20_000);
    for (b, a) in before.iter().zip(&after) {
        assert!(*b == addr(2) || a == b, "a key of a remaining node moved");
    }
}

#[test]
fn hash_picks_follow_weights_pass_over_tripped_nodes_and_fail_open() {
    let mut table = RouteTable::create().unwrap();
    publish(&mut table, &[(100, false), (300, false)], 0);
    let n = 40_000;
    let map = hash_map_of(&table, n);
    let light = map.iter().filter(|&&a| a == addr(0)).count() as u32;
    assert_share(light, n as u32, 0.25);
    // Node 1 tripped: its keys go to node 0 until a success.
    report_n(&table, 1, 0, 10);
    assert!(hash_map_of(&table, 1000).iter().all(|&a| a == addr(0)));
    // A success clears the trip; a new period clears this period's ratio.
    report_n(&table, 1, 1, 0);
    publish(&mut table, &[(100, false), (300, false)], 0);
    assert!(hash_map_of(&table, n) == map, "keys came back");
    // Every node dead: still a stable answer.
    publish(&mut table, &[(0, true), (0, true)], 0);
    let open = hash_map_of(&table, 1000);
    assert!(open.contains(&addr(0)) && open.contains(&addr(1)));
    assert!(
        hash_map_of(&table, 1000) == open,
        "stable when failing open"
    );
}

#[test]
fn reports_for_a_slot_that_changed_hands_are_dropped() {
    let mut table = RouteTable::create().unwrap();
    publish(&mut table, &[(100, false), (100, false)], 0);
    let old = route_of(&table, 1);
    let kept = route_of(&table, 0);
    table.report(&old, 0, 10);
    assert_eq!(table.counts(old.slot).success, 1);
    // A zeroed route (never picked) counts nowhere.
    table.report(
        &Route {
            sid: SID,
            addr: addr(0),
            slot: 0,
            slot_epoch: 0,
        },
        0,
        1,
    );
    table.report(
        &Route {
            slot: u32::MAX,
            ..old
        },
        0,
        1,
    );
    // Node 1 goes away: its slot is freed, zeroed, and its routes dropped.
    table.retain_slots(&|i: &Instance| i.addr != addr(1));
    assert_eq!(table.counts(old.slot), NodeCounts::default());
    table.report(&old, 0, 10);
    assert_eq!(table.counts(old.slot), NodeCounts::default());
    // The slot goes to a newcomer (lowest free first): old routes still
    // drop, the newcomer's count.
    let newcomer = instance(SID, 7, 100);
    assert_eq!(table.slot_for(&newcomer), Ok(old.slot));
    table.report(&old, -1, 10);
    assert_eq!(table.counts(old.slot), NodeCounts::default());
    let view = SidView {
        sid: SID,
        nodes: vec![NodeView {
            instance: newcomer,
            weight: 100,
            dead: false,
            slot: old.slot,
        }],
        probe_budget: 0,
    };
    table.publish(&[view]).unwrap();
    let fresh = table.pick(SID, 3).unwrap();
    assert_eq!((fresh.addr, fresh.slot), (newcomer.addr, old.slot));
    assert_ne!(fresh.slot_epoch, old.slot_epoch);
    table.report(&fresh, 0, 10);
    assert_eq!(table.counts(old.slot).success, 1);
    assert_eq!(table.counts(kept.slot).success, 0);
}

#[test]
fn an_opened_table_rebuilds_the_slot_book_from_shared_memory() {
    let mut table = RouteTable::create().unwrap();
    let a = table.slot_for(&instance(SID, 0, 100)).unwrap();
    let b = table.slot_for(&instance(SID, 1, 100)).unwrap();
    // SAFETY: a fresh dup, owned here.
    let fd = unsafe { libc::dup(table.raw_fd()) };
    // SAFETY: `fd` is a dup of a route-table memfd.
    let mut again = unsafe { RouteTable::open(fd) }.unwrap();
    assert_eq!(again.slot_for(&instance(SID, 1, 200)), Ok(b));
    assert_eq!(again.slot_for(&instance(SID, 0, 100)), Ok(a));
    let c = again.slot_for(&instance(SID, 2, 100)).unwrap();
    assert!(c != a && c != b);
}

/// The layout of publish `g`: 8 nodes at 10.a.k.1:(1000 + 8a + k) with
/// a = g % 256; only node g % 8 is alive, so a pick must return it, with
/// the address of the same publish.
fn torn_view(slots: &HashMap<SocketAddr, u32>, g: u32) -> SidView {
    let a = g % 256;
    let nodes = (0..8)
        .map(|k| {
            let addr = torn_addr(a, k);
            let live = k == g % 8;
            NodeView {
                instance: Instance {
                    sid: SID,
                    addr,
                    weight: 100 + a,
                },
                weight: if live { 50 + a } else { 0 },
                dead: !live,
                slot: slots[&addr],
            }
        })
        .collect();
    SidView {
        sid: SID,
        nodes,
        probe_budget: 0,
    }
}

fn torn_addr(a: u32, k: u32) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, a as u8, k as u8, 1)),
        (1000 + 8 * a + k) as u16,
    )
}

/// Checks a route against the layout of some publish; returns `a`.
fn check_torn_route(route: &Route, slots: &HashMap<SocketAddr, u32>) -> u32 {
    let SocketAddr::V4(v4) = route.addr else {
        panic!("not v4: {route:?}");
    };
    let [ten, a, k, one] = v4.ip().octets();
    assert_eq!((ten, one), (10, 1), "{route:?}");
    let (a, k) = (u32::from(a), u32::from(k));
    assert_eq!(
        u32::from(v4.port()),
        1000 + 8 * a + k,
        "torn address {route:?}"
    );
    assert_eq!(
        k,
        a % 8,
        "a dead node picked, or weight from another publish: {route:?}"
    );
    assert_eq!(route.slot, slots[&route.addr], "torn slot {route:?}");
    assert_eq!(route.slot_epoch, 1);
    a
}

#[test]
fn readers_racing_a_writer_never_see_a_torn_entry() {
    // Bounded: the reader makes READS lookups and the viewer VIEWS views
    // while the writer publishes until told to stop (MAX_PUBLISHES at most).
    const READS: u32 = 500_000;
    const VIEWS: u32 = 10_000;
    const MAX_PUBLISHES: u32 = 50_000_000;
    let mut table = RouteTable::create().unwrap();
    let mut slots = HashMap::new();
    for a in 0..256 {
        for k in 0..8 {
            let addr = torn_addr(a, k);
            let slot = table
                .slot_for(&Instance {
                    sid: SID,
                    addr,
                    weight: 100,
                })
                .unwrap();
            slots.insert(addr, slot);
        }
    }
    table.publish(&[torn_view(&slots, 0)]).unwrap();
    // The reader maps the table again, as a worker process would.
    // SAFETY: a fresh dup, owned by the reader's mapping.
    let fd = unsafe { libc::dup(table.raw_fd()) };
    // SAFETY: `fd` is a dup of a route-table memfd.
    let reader = unsafe { RouteTable::open(fd) }.unwrap();
    let table = Arc::new(table);
    let slots = Arc::new(slots);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(std::sync::Barrier::new(3));

    let writer = {
        let (table, slots, stop, start) =
            (table.clone(), slots.clone(), stop.clone(), start.clone());
        std::thread::spawn(move || {
            start.wait();
            let mut g = 1;
            while !stop.load(Ordering::Relaxed) && g <= MAX_PUBLISHES {
                table.publish(&[torn_view(&slots, g)]).unwrap();
                g += 1;
            }
            g - 1
        })
    };
    let viewer = {
        let (table, start) = (table.clone(), start.clone());
        std::thread::spawn(move || {
            start.wait();
            for _ in 0..VIEWS {
                // The writer holds the process's publish lock: a view in
                // the same process is never torn nor busy.
                let view = table.try_view().unwrap();
                let nodes = &view[0].nodes;
                let a = u32::from(match nodes[0].instance.addr.ip() {
                    IpAddr::V4(ip) => ip.octets()[1],
                    IpAddr::V6(_) => panic!("v6"),
                });
                for (k, node) in nodes.iter().enumerate() {
                    assert_eq!(node.instance.addr, torn_addr(a, k as u32));
                    assert_eq!(node.instance.weight, 100 + a);
                    let live = k as u32 == a % 8;
                    let weight = if live { 50 + a } else { 0 };
                    assert_eq!((node.dead, node.weight), (!live, weight));
                }
            }
        })
    };
    start.wait();
    let mut rng = XorShift(0xace);
    let (mut ok, mut busy, mut seen) = (0u32, 0u32, HashSet::new());
    for i in 0..READS {
        let result = if i % 2 == 0 {
            reader.pick(SID, rng.next())
        } else {
            reader.pick_hash(SID, rng.next())
        };
        match result {
            Ok(route) => {
                seen.insert(check_torn_route(&route, &slots));
                ok += 1;
            }
            Err(L5Error::Busy) => busy += 1,
            Err(other) => panic!("{other:?}"),
        }
    }
    viewer.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let published = writer.join().unwrap();
    assert!(seen.len() > 1, "the reader saw only one publish");
    assert!(busy <= ok / 10, "busy {busy}, ok {ok}");
    assert_eq!(reader.generation(), u64::from(published) + 1);
}

#[path = "table_probe_tests.rs"]
mod probe;
