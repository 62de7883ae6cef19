//! Unit tests of each balancer rule (deterministic, seeded) and the
//! property test of the weight bounds.

use super::*;
use proptest::prelude::*;

fn cfg() -> BalancerConfig {
    BalancerConfig::default()
}

fn counts(success: u64, failure: u64) -> PeriodCounts {
    PeriodCounts {
        success,
        failure,
        consecutive_errors: 0,
    }
}

/// A small seeded xorshift64*, so the "random" tests are reproducible.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn the_defaults_are_the_reference_numbers_and_pass_the_check() {
    let c = cfg();
    assert_eq!(c.period, Duration::from_secs(5));
    assert_eq!(c.min_requests, 10);
    assert_eq!(
        (c.good_ratio, c.grow_share, c.guard_share),
        (0.98, 0.05, 0.5)
    );
    assert_eq!(
        (c.probe_share, c.revive_share, c.skip_ratio),
        (0.01, 0.10, 0.6)
    );
    assert_eq!(c.trip_errors, 10);
    assert_eq!(c.check(), Ok(()));
    let bad = BalancerConfig {
        good_ratio: 1.5,
        ..cfg()
    };
    let (key, reason) = bad.check().unwrap_err();
    assert_eq!(key, "good_ratio");
    assert!(reason.contains("1.5"), "{reason}");
    let bad = BalancerConfig {
        trip_errors: 0,
        ..cfg()
    };
    assert_eq!(bad.check().unwrap_err().0, "trip_errors");
}

#[test]
fn a_small_period_is_not_judged_and_its_counts_carry_over() {
    let mut nodes = vec![NodeHealth::new(100), NodeHealth::new(100)];
    // 9 requests, all failed: under min_requests, nothing changes.
    reshape(&mut nodes, &[counts(0, 9), counts(100, 0)], &cfg());
    assert_eq!(nodes[0].weight, 100.0);
    assert!(!nodes[0].dead);
    assert_eq!((nodes[0].pending_success, nodes[0].pending_failure), (0, 9));
    // One more success: 1 of 10 judged together → weight × 0.1².
    reshape(&mut nodes, &[counts(1, 0), counts(100, 0)], &cfg());
    assert!((nodes[0].weight - 1.0).abs() < 1e-9, "{:?}", nodes[0]);
    assert!(!nodes[0].dead);
    assert_eq!((nodes[0].pending_success, nodes[0].pending_failure), (0, 0));
}

#[test]
fn a_healthy_node_grows_by_five_percent_up_to_its_static_weight() {
    let mut nodes = vec![NodeHealth::new(200)];
    nodes[0].weight = 100.0;
    reshape(&mut nodes, &[counts(98, 2)], &cfg());
    assert_eq!(nodes[0].weight, 110.0);
    for _ in 0..30 {
        reshape(&mut nodes, &[counts(100, 0)], &cfg());
    }
    assert_eq!(nodes[0].weight, 200.0);
}

#[test]
fn a_failing_node_is_lowered_by_the_square_of_its_ratio() {
    let mut nodes = vec![NodeHealth::new(100), NodeHealth::new(100)];
    reshape(&mut nodes, &[counts(90, 10), counts(100, 0)], &cfg());
    assert!((nodes[0].weight - 81.0).abs() < 1e-9, "{}", nodes[0].weight);
    assert_eq!(nodes[1].weight, 100.0);
    reshape(&mut nodes, &[counts(50, 50), counts(100, 0)], &cfg());
    assert!(
        (nodes[0].weight - 20.25).abs() < 1e-9,
        "{}",
        nodes[0].weight
    );
}

#[test]
fn the_guard_keeps_weights_when_most_nodes_are_already_low() {
    // 3 of 4 nodes below half: a failure that hits every node lowers none.
    let mut nodes: Vec<NodeHealth> = (0..4).map(|_| NodeHealth::new(100)).collect();
    for node in &mut nodes[..3] {
        node.weight = 40.0;
    }
    let period = vec![counts(50, 50); 4];
    reshape(&mut nodes, &period, &cfg());
    assert_eq!(
        nodes.iter().map(|n| n.weight).collect::<Vec<_>>(),
        vec![40.0, 40.0, 40.0, 100.0]
    );
    // Exactly half below is not "more than half": weights are lowered.
    let mut nodes: Vec<NodeHealth> = (0..4).map(|_| NodeHealth::new(100)).collect();
    nodes[0].weight = 40.0;
    nodes[1].weight = 40.0;
    reshape(&mut nodes, &period, &cfg());
    assert!((nodes[3].weight - 25.0).abs() < 1e-9, "{}", nodes[3].weight);
    assert!(guard_holds(
        &[
            NodeHealth {
                dead: true,
                weight: 0.0,
                ..NodeHealth::new(100)
            },
            NodeHealth::new(100),
            {
                let mut n = NodeHealth::new(100);
                n.weight = 49.0;
                n
            }
        ],
        &cfg()
    ));
}

#[test]
fn ratio_zero_or_a_weight_decayed_below_one_is_dead() {
    let mut nodes = vec![NodeHealth::new(100), NodeHealth::new(100)];
    nodes[1].weight = 3.0;
    reshape(&mut nodes, &[counts(0, 10), counts(1, 9)], &cfg());
    assert!(nodes[0].dead && nodes[0].weight == 0.0);
    // 3 × 0.1² = 0.03 < 1.
    assert!(nodes[1].dead && nodes[1].weight == 0.0);
    // Ratio 0 kills even while the guard holds.
    let mut nodes: Vec<NodeHealth> = (0..3).map(|_| NodeHealth::new(100)).collect();
    nodes[0].weight = 10.0;
    nodes[1].weight = 10.0;
    reshape(
        &mut nodes,
        &[counts(0, 20), counts(5, 5), counts(20, 0)],
        &cfg(),
    );
    assert!(nodes[0].dead);
    assert_eq!(nodes[1].weight, 10.0, "guarded");
}

#[test]
fn consecutive_errors_trip_a_node_at_once() {
    let mut nodes = vec![NodeHealth::new(100)];
    // Only 5 requests (not judged by ratio), but 10 errors in a row at the
    // end of the period (carried over from before).
    let period = PeriodCounts {
        success: 0,
        failure: 5,
        consecutive_errors: 10,
    };
    reshape(&mut nodes, &[period], &cfg());
    assert!(nodes[0].dead);
    let mut nodes = vec![NodeHealth::new(100)];
    let period = PeriodCounts {
        consecutive_errors: 9,
        ..counts(100, 9)
    };
    reshape(&mut nodes, &[period], &cfg());
    assert!(!nodes[0].dead, "9 in a row is below the trip");
}

#[test]
fn a_dead_node_whose_probes_succeed_revives_at_ten_percent_then_climbs() {
    let mut nodes = vec![NodeHealth::new(100), NodeHealth::new(100)];
    nodes[1].dead = true;
    nodes[1].weight = 0.0;
    // No probe: stays dead.
    reshape(&mut nodes, &[counts(100, 0), counts(0, 0)], &cfg());
    assert!(nodes[1].dead);
    // A failed probe: stays dead.
    reshape(&mut nodes, &[counts(100, 0), counts(0, 1)], &cfg());
    assert!(nodes[1].dead);
    // One successful probe is enough.
    reshape(&mut nodes, &[counts(100, 0), counts(1, 0)], &cfg());
    assert!(!nodes[1].dead);
    assert!((nodes[1].weight - 10.0).abs() < 1e-9);
    // Then +5 per judged healthy period: 18 periods to full weight.
    let mut periods = 0;
    while nodes[1].weight < 100.0 {
        reshape(&mut nodes, &[counts(100, 0), counts(10, 0)], &cfg());
        periods += 1;
        assert!(periods <= 18, "climbs 5 % per period");
    }
    assert_eq!(periods, 18);
}

#[test]
fn the_probe_budget_is_one_percent_of_last_periods_requests_and_at_least_one() {
    let mut nodes = vec![NodeHealth::new(100), NodeHealth::new(100)];
    assert_eq!(
        reshape(&mut nodes, &[counts(500, 0), counts(500, 0)], &cfg()),
        0
    );
    nodes[1].dead = true;
    assert_eq!(
        reshape(&mut nodes, &[counts(5000, 0), counts(0, 0)], &cfg()),
        50
    );
    assert_eq!(
        reshape(&mut nodes, &[counts(20, 0), counts(0, 0)], &cfg()),
        1
    );
    assert_eq!(
        reshape(&mut nodes, &[counts(0, 0), counts(0, 0)], &cfg()),
        1
    );
}

#[test]
fn a_seeded_outage_and_recovery_follow_the_rules() {
    // Four nodes; node 2 fails every call for 10 periods, then recovers.
    // Traffic per node follows its weight (seeded), probes reach the dead.
    let cfg = cfg();
    let mut rng = XorShift(0x5eed);
    let mut nodes: Vec<NodeHealth> = (0..4).map(|_| NodeHealth::new(100)).collect();
    let mut budget = 0u32;
    let mut died_at = None;
    let mut revived_at = None;
    for period in 0..60 {
        let failing = period < 10;
        let total: f64 = nodes.iter().map(|n| n.weight).sum();
        let counts: Vec<PeriodCounts> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let calls = if n.dead {
                    u64::from(budget.min(1))
                } else {
                    (400.0 * n.weight / total) as u64 + rng.below(5)
                };
                let bad = i == 2 && failing;
                PeriodCounts {
                    success: if bad { 0 } else { calls },
                    failure: if bad { calls } else { 0 },
                    consecutive_errors: if bad { calls as u32 } else { 0 },
                }
            })
            .collect();
        budget = reshape(&mut nodes, &counts, &cfg);
        if nodes[2].dead && died_at.is_none() {
            died_at = Some(period);
        }
        if died_at.is_some() && !nodes[2].dead && revived_at.is_none() {
            revived_at = Some(period);
            assert!((nodes[2].weight - 10.0).abs() < 1e-9);
        }
        assert!(nodes
            .iter()
            .enumerate()
            .all(|(i, n)| i == 2 || n.weight == 100.0));
    }
    assert_eq!(died_at, Some(0), "dead after its first failing period");
    assert_eq!(revived_at, Some(10), "revived by its first good probe");
    assert_eq!(nodes[2].weight, 100.0, "back at full weight");
}

#[test]
fn published_weights_are_zero_when_dead_and_at_least_one_when_live() {
    let mut node = NodeHealth::new(100);
    node.weight = 0.4;
    assert_eq!(node.published_weight(), 1);
    node.weight = 57.6;
    assert_eq!(node.published_weight(), 58);
    node.dead = true;
    assert_eq!(node.published_weight(), 0);
}

#[test]
fn period_counts_are_differences_and_restart_after_a_reset() {
    use crate::l5::view::NodeCounts;
    let prev = NodeCounts {
        success: 10,
        failure: 5,
        ..NodeCounts::default()
    };
    let now = NodeCounts {
        success: 15,
        failure: 7,
        consecutive_errors: 2,
        ..NodeCounts::default()
    };
    assert_eq!(
        PeriodCounts::between(&prev, &now),
        PeriodCounts {
            success: 5,
            failure: 2,
            consecutive_errors: 2
        }
    );
    let reset = NodeCounts {
        success: 3,
        ..NodeCounts::default()
    };
    assert_eq!(PeriodCounts::between(&prev, &reset).success, 3);
}

fn period_strategy() -> impl Strategy<Value = PeriodCounts> {
    (0u64..200, 0u64..200, 0u32..30).prop_map(|(success, failure, consecutive_errors)| {
        PeriodCounts {
            success,
            failure,
            consecutive_errors,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the counts, weights stay within [0, static], a dead node
    /// has weight 0, and the probe budget is 0 exactly when nobody is dead.
    #[test]
    fn weights_stay_within_bounds(
        statics in prop::collection::vec(0u32..=10_000, 1..8),
        periods in prop::collection::vec(prop::collection::vec(period_strategy(), 8), 1..40),
        good_ratio in 0.5f64..=1.0,
        grow_share in 0.01f64..=1.0,
        revive_share in 0.01f64..=1.0,
        guard_share in 0.0f64..=1.0,
    ) {
        let cfg = BalancerConfig { good_ratio, grow_share, revive_share, guard_share, ..cfg() };
        let mut nodes: Vec<NodeHealth> = statics.iter().map(|&w| NodeHealth::new(w)).collect();
        for counts in &periods {
            let budget = reshape(&mut nodes, counts, &cfg);
            for node in &nodes {
                prop_assert!(node.weight >= 0.0 && node.weight <= f64::from(node.static_weight),
                    "{node:?}");
                prop_assert!(!node.dead || node.weight == 0.0, "{node:?}");
                prop_assert!(node.published_weight() <= node.static_weight.max(1));
            }
            prop_assert_eq!(budget == 0, !nodes.iter().any(|n| n.dead));
        }
    }
}
