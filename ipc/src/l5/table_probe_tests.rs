//! Probe-budget tests of the route table: a low-traffic period still
//! probes, probes are spaced by the probe share, and a unit is spent only
//! by a validated read of the current publish.

use super::*;

#[test]
fn a_low_traffic_period_still_probes_once() {
    let mut table = RouteTable::create().unwrap();
    // 10 picks a period, budget 1: every period probes exactly once, on
    // its first pick.
    for period in 0..50u64 {
        publish(&mut table, &[(100, false), (0, true)], 1);
        let mut rng = XorShift(100 + period);
        let first = table.pick(SID, rng.next()).unwrap();
        assert_eq!(first.addr, addr(1), "period {period}: first pick probes");
        for _ in 1..10 {
            assert_eq!(table.pick(SID, rng.next()).unwrap().addr, addr(0));
        }
        assert_eq!(table.view()[0].probe_budget, 0);
    }
}

#[test]
fn probes_are_spaced_every_one_over_probe_share_picks() {
    let mut table = RouteTable::create().unwrap();
    // 1 %: picks 0, 100, 200, ... probe while the budget lasts.
    publish(&mut table, &[(100, false), (0, true)], 1000);
    let mut rng = XorShift(21);
    let probes: Vec<u32> = (0..1000u32)
        .filter(|_| table.pick(SID, rng.next()).unwrap().addr == addr(1))
        .collect();
    assert_eq!(probes, (0..10).map(|k| k * 100).collect::<Vec<_>>());
    // 25 %: every 4th pick, until the budget (3) is spent.
    table.set_rules(&BalancerConfig {
        probe_share: 0.25,
        ..BalancerConfig::default()
    });
    publish(&mut table, &[(100, false), (0, true)], 3);
    let probes: Vec<u32> = (0..100u32)
        .filter(|_| table.pick(SID, rng.next()).unwrap().addr == addr(1))
        .collect();
    assert_eq!(probes, [0, 4, 8]);
    assert_eq!(table.probe_budget_left(SID), Some(0));
}

#[test]
fn a_retried_read_spends_no_probe_budget() {
    let mut table = RouteTable::create().unwrap();
    publish(&mut table, &[(100, false), (0, true)], 5);
    let rules = table.rules();
    let mut attempts = 0;
    let (_, probe) = table
        .read(|buf| {
            attempts += 1;
            let plan = table.plan(buf, SID, 7, &rules);
            if attempts == 1 {
                // A writer rewrote the buffer meanwhile: this read retries.
                buf.seq.fetch_add(2, Ordering::Relaxed);
            }
            plan
        })
        .unwrap();
    assert_eq!(attempts, 2);
    assert_eq!(
        table.probe_budget_left(SID),
        Some(5),
        "reading spent a unit"
    );
    assert!(probe.unwrap().take(&rules));
    assert_eq!(table.probe_budget_left(SID), Some(4));
}

#[test]
fn a_reader_of_an_older_publish_cannot_spend_the_new_budget() {
    let mut table = RouteTable::create().unwrap();
    publish(&mut table, &[(100, false), (0, true)], 5);
    let next = view_of(&mut table, SID, &[(100, false), (0, true)], 9);
    let after = view_of(&mut table, SID, &[(100, false), (0, true)], 7);
    let rules = table.rules();
    // A reader validates its read of generation 1 ...
    let (_, probe) = table.read(|buf| table.plan(buf, SID, 7, &rules)).unwrap();
    let probe = probe.unwrap();
    // ... is preempted while two publishes go by, the second rewriting
    // the very buffer it read, with a fresh budget ...
    table.publish(&[next]).unwrap();
    table.publish(&[after]).unwrap();
    let t = table.shared();
    let active = &t.buffers[t.header.active.load(Ordering::Relaxed) as usize];
    assert!(std::ptr::eq(probe.entry, find_sid(active, SID).unwrap()));
    // ... and then cannot take a unit of it.
    assert!(!probe.take(&rules));
    assert_eq!(table.probe_budget_left(SID), Some(7));
    assert_eq!(table.view()[0].probe_budget, 7);
}
