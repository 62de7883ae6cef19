//! The pick-time half of the fault-tolerance rules, as pure functions:
//! which node a pick passes over ([`PickRules::skips`]). The numbers come
//! from [`BalancerConfig`] and travel to every worker through the route
//! table's header as parts per million ([`PickRules::from_config`]); the
//! table ([`super::table`]) stores and loads them and asks these
//! functions, it decides nothing itself.

use super::balancer::BalancerConfig;

/// Ratios in the rules (and in the table header) are parts per million.
pub const PPM: u64 = 1_000_000;

/// The pick rules, in the integer form the table header holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PickRules {
    /// Skip a node whose success ratio this period is below this, ppm.
    pub skip_ratio_ppm: u32,
    /// Skip a node with this many consecutive errors; 0 = never.
    pub trip_errors: u32,
    /// The skip ratio needs this many samples.
    pub min_requests: u64,
    /// Share of picks that try to probe a dead node, ppm.
    pub probe_share_ppm: u32,
}

/// What a node did since the last publish, as a pick sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeriodSoFar {
    /// Successes since the publish.
    pub success: u64,
    /// Failures since the publish.
    pub failure: u64,
    /// Failures in a row now.
    pub consecutive_errors: u32,
}

/// `share` (clamped to 0..=1) in parts per million.
fn ppm(share: f64) -> u32 {
    (share.clamp(0.0, 1.0) * PPM as f64).round() as u32
}

impl PickRules {
    /// The rules of `cfg`: `skip_ratio`, `trip_errors`, `min_requests`,
    /// `probe_share`.
    pub fn from_config(cfg: &BalancerConfig) -> Self {
        PickRules {
            skip_ratio_ppm: ppm(cfg.skip_ratio),
            trip_errors: cfg.trip_errors,
            min_requests: cfg.min_requests,
            probe_share_ppm: ppm(cfg.probe_share),
        }
    }

    /// Pick rule "skip": this period's success ratio below `skip_ratio`
    /// with at least `min_requests` samples, or `trip_errors` failures in
    /// a row.
    #[inline]
    pub fn skips(&self, period: &PeriodSoFar) -> bool {
        // 0 = never (as far as a u32 counts).
        let trip = if self.trip_errors == 0 {
            u32::MAX
        } else {
            self.trip_errors
        };
        if period.consecutive_errors >= trip {
            return true;
        }
        let (ok, bad) = (period.success, period.failure);
        let samples = ok.saturating_add(bad);
        samples >= self.min_requests
            && u128::from(ok) * u128::from(PPM)
                < u128::from(self.skip_ratio_ppm) * u128::from(samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_becomes_parts_per_million() {
        let rules = PickRules::from_config(&BalancerConfig::default());
        assert_eq!(
            rules,
            PickRules {
                skip_ratio_ppm: 600_000,
                trip_errors: 10,
                min_requests: 10,
                probe_share_ppm: 10_000,
            }
        );
    }

    #[test]
    fn a_node_is_skipped_below_the_ratio_or_after_a_run_of_errors() {
        let rules = PickRules::from_config(&BalancerConfig::default());
        let period = |success, failure, consecutive_errors| PeriodSoFar {
            success,
            failure,
            consecutive_errors,
        };
        assert!(!rules.skips(&period(5, 4, 0)), "too few samples");
        assert!(rules.skips(&period(5, 5, 0)), "50 % of 10");
        assert!(!rules.skips(&period(6, 4, 0)), "60 % is not below");
        assert!(rules.skips(&period(0, 0, 10)), "tripped");
        let never = PickRules {
            trip_errors: 0,
            ..rules
        };
        assert!(!never.skips(&period(0, 0, u32::MAX - 1)), "0 = never trips");
    }
}
