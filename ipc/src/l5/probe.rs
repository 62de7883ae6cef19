//! The probe policy of a pick, as pure functions: whether a pick looks for
//! a dead node at all ([`wants_probe`]), which dead node it probes
//! ([`dead_node_to_probe`]) and whether a pick that found budget left is
//! due to spend it ([`probe_due`]). How big the budget is, is the
//! balancer's rule ([`super::balancer::probe_budget`]); spending it safely
//! in shared memory is the route table's job (`table::budget`).

use super::hash::{mix64, scale};
use super::pick_rules::{PickRules, PPM};

/// Whether a pick of a sid with `dead_nodes` dead nodes considers probing
/// one.
#[inline]
pub fn wants_probe(dead_nodes: u32, rules: &PickRules) -> bool {
    dead_nodes != 0 && rules.probe_share_ppm != 0
}

/// Which dead node (0-based, counting dead nodes only, below
/// `dead_nodes`) a pick drawing `random` probes.
#[inline]
pub fn dead_node_to_probe(random: u64, dead_nodes: u32) -> usize {
    scale(mix64(random), u64::from(dead_nodes)) as usize
}

/// Picks between two probes: ⌈1 / probe_share⌉.
#[inline]
pub fn probe_spacing(rules: &PickRules) -> u64 {
    PPM.div_ceil(u64::from(rules.probe_share_ppm.max(1)))
}

/// Whether a pick that found `left` of the `initial` budget, and is the
/// `tick`-th such pick of the period, probes: the first unit of a period
/// is spent whatever the clock says (a low-traffic period still probes),
/// later ones every [`probe_spacing`] picks.
#[inline]
pub fn probe_due(left: u32, initial: u32, tick: u64, rules: &PickRules) -> bool {
    left == initial || tick.is_multiple_of(probe_spacing(rules))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l5::balancer::BalancerConfig;

    #[test]
    fn probes_are_due_first_then_every_spacing() {
        let rules = PickRules::from_config(&BalancerConfig::default());
        assert_eq!(probe_spacing(&rules), 100);
        assert!(probe_due(5, 5, 37, &rules), "nothing spent yet");
        assert!(!probe_due(4, 5, 37, &rules));
        assert!(probe_due(4, 5, 200, &rules));
        assert!(!wants_probe(0, &rules));
        let off = PickRules {
            probe_share_ppm: 0,
            ..rules
        };
        assert!(!wants_probe(3, &off));
        assert!((0..1000).all(|r| dead_node_to_probe(r, 3) < 3));
    }
}
