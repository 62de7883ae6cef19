//! The fault-tolerance rules: MSEC nlb's "standard" policy plus
//! PolarisMesh's fast trip, as pure functions over per-period counts.
//!
//! The controller keeps one [`NodeHealth`] per node of a sid and, every
//! [`BalancerConfig::period`], calls [`reshape`] with what each node did in
//! that period ([`PeriodCounts`], differences of the table's
//! [`super::view::NodeCounts`]). The result is published into the route
//! table ([`NodeHealth::published_weight`], [`NodeHealth::dead`], the
//! returned probe budget). The rules, each a small named function below,
//! and their source in L5's published rules (MSEC nlb "standard", Polaris):
//!
//! | rule | function | reference |
//! |---|---|---|
//! | a node with fewer than `min_requests` (10) requests in the period, counting what earlier small periods carried over, is not judged; its counts accumulate | [`judge`] | nlb: "A node with < 10 requests in the period is skipped (its counters keep accumulating)" |
//! | success ratio ≥ `good_ratio` (0.98): weight += `grow_share` (5 %) × static, capped at static | [`grow`] | nlb: "Success ratio ≥ 0.98: dynamic weight += 5 % of static weight, capped at static" |
//! | below: weight *= ratio² | [`lower`] | nlb: "Below 0.98: dynamic weight *= success_ratio²" |
//! | guard: more than `guard_share` (50 %) of the nodes already below half their static weight → weights are not lowered | [`guard_holds`] | nlb: "Guard: if more than 50 % of the nodes already sit below half their static weight, do not lower weights" |
//! | ratio 0, or weight decayed below 1 → dead | [`judge_live`] | nlb: "Success ratio 0, or weight decayed to 0: node is dead" |
//! | `consecutive_errors` ≥ `trip_errors` (10) → dead at once | [`fast_trip`] | Polaris: "10 consecutive errors trip a node at once" |
//! | a dead node whose probes this period succeed ≥ `good_ratio` (any number ≥ 1) comes back at `revive_share` (10 %) × static, then climbs by [`grow`] | [`revive`] | nlb: "a dead node whose probes succeed ≥ 0.98 comes back at 10 % of static weight and climbs 5 % per period" |
//! | probe budget = max(1, `probe_share` (1 %) × last period's requests of the sid) when a node is dead, else 0 | [`probe_budget`] | nlb: "at most 1 % of last period's requests (≥ 1) go to dead nodes" |
//!
//! The ratio-0 and fast-trip rules hold even when the guard does: the guard
//! protects weights from a failure that merely degrades every node; a node
//! that answers nothing is dead, and when every node is dead the table fails
//! open (picks at random among all), as L5 and Polaris do. The pick-time
//! rules (`skip_ratio`, `trip_errors`, probes) live in
//! [`super::pick_rules`] and [`super::probe`], applied by
//! [`super::table::RouteTable::pick`].

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Every tunable of the rules; the defaults are the nlb "standard" and
/// Polaris numbers of the L5 reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BalancerConfig {
    /// Reshape period (5 s).
    pub period: Duration,
    /// Fewer requests than this in a period: the node is not judged (10).
    pub min_requests: u64,
    /// Success ratio at or above which a node is healthy (0.98).
    pub good_ratio: f64,
    /// Healthy: weight grows by this share of the static weight (0.05).
    pub grow_share: f64,
    /// Guard: when more than this share of nodes sit below half their
    /// static weight, weights are not lowered (0.5).
    pub guard_share: f64,
    /// Share of last period's requests that may probe dead nodes (0.01).
    pub probe_share: f64,
    /// A revived node starts at this share of its static weight (0.10).
    pub revive_share: f64,
    /// At pick time, a node below this success ratio this period (with at
    /// least `min_requests` samples) is skipped (0.6).
    pub skip_ratio: f64,
    /// Consecutive errors that trip a node at once (10).
    pub trip_errors: u32,
}

impl Default for BalancerConfig {
    fn default() -> Self {
        BalancerConfig {
            period: Duration::from_secs(5),
            min_requests: 10,
            good_ratio: 0.98,
            grow_share: 0.05,
            guard_share: 0.5,
            probe_share: 0.01,
            revive_share: 0.10,
            skip_ratio: 0.6,
            trip_errors: 10,
        }
    }
}

impl BalancerConfig {
    /// Checks every value is usable: `Err((key, reason))` names the first
    /// bad key (as in `[l5.balancer]`) and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.period.is_zero() {
            return Err(("period", "must be more than 0".into()));
        }
        if self.min_requests == 0 {
            return Err(("min_requests", "must be at least 1".into()));
        }
        if self.trip_errors == 0 {
            return Err(("trip_errors", "must be at least 1".into()));
        }
        let shares = [
            ("good_ratio", self.good_ratio, false),
            ("grow_share", self.grow_share, false),
            ("guard_share", self.guard_share, true),
            ("probe_share", self.probe_share, true),
            ("revive_share", self.revive_share, false),
            ("skip_ratio", self.skip_ratio, true),
        ];
        for (key, value, zero_ok) in shares {
            let low_ok = if zero_ok { value >= 0.0 } else { value > 0.0 };
            if !(low_ok && value <= 1.0) {
                let range = if zero_ok {
                    "0..=1"
                } else {
                    "a share in (0, 1]"
                };
                return Err((key, format!("{value} is not in {range}")));
            }
        }
        Ok(())
    }
}

/// The balancer's state of one node (the controller keeps one per node).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeHealth {
    /// Static weight from the registry.
    pub static_weight: u32,
    /// Current (dynamic) weight, 0..=static.
    pub weight: f64,
    /// Dead: only probes reach it.
    pub dead: bool,
    /// Successes of periods too small to judge, carried over.
    pub pending_success: u64,
    /// Failures of periods too small to judge, carried over.
    pub pending_failure: u64,
}

impl NodeHealth {
    /// A new node at full weight.
    pub fn new(static_weight: u32) -> Self {
        NodeHealth {
            static_weight,
            weight: f64::from(static_weight),
            dead: false,
            pending_success: 0,
            pending_failure: 0,
        }
    }

    /// The weight to publish in the route table: 0 when dead, else the
    /// rounded weight and at least 1 (a live node stays reachable).
    pub fn published_weight(&self) -> u32 {
        if self.dead {
            0
        } else {
            // Saturating float-to-int cast; `weight` is within 0..=static.
            (self.weight.round() as u32).clamp(1, self.static_weight.max(1))
        }
    }

    /// Marks the node dead: weight 0, nothing pending.
    fn kill(&mut self) {
        self.dead = true;
        self.weight = 0.0;
        self.clear_pending();
    }

    fn clear_pending(&mut self) {
        self.pending_success = 0;
        self.pending_failure = 0;
    }

    /// Keeps the invariants whatever came before: weight finite, within
    /// 0..=static, and 0 when dead.
    fn settle(&mut self) {
        let cap = f64::from(self.static_weight);
        self.weight = if self.dead || self.weight.is_nan() {
            0.0
        } else {
            self.weight.clamp(0.0, cap)
        };
    }

    /// Below half its static weight (dead nodes too): what the guard counts.
    fn below_half(&self) -> bool {
        self.dead || self.weight < f64::from(self.static_weight) / 2.0
    }
}

/// What one node did during one period (differences of
/// [`super::view::NodeCounts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodCounts {
    /// Successful calls.
    pub success: u64,
    /// Failed calls.
    pub failure: u64,
    /// Failures in a row at the end of the period.
    pub consecutive_errors: u32,
}

impl PeriodCounts {
    /// What happened between two readings of one slot's counters (`prev`
    /// taken a period before `now`). A counter that went backwards (the
    /// slot was reassigned and zeroed) counts from zero.
    pub fn between(prev: &super::view::NodeCounts, now: &super::view::NodeCounts) -> PeriodCounts {
        let since = |old: u64, new: u64| if new >= old { new - old } else { new };
        PeriodCounts {
            success: since(prev.success, now.success),
            failure: since(prev.failure, now.failure),
            consecutive_errors: now.consecutive_errors,
        }
    }

    /// Requests of the period.
    pub fn requests(&self) -> u64 {
        self.success.saturating_add(self.failure)
    }
}

/// Applies one period to the nodes of one sid (`counts[i]` is what
/// `nodes[i]` did; a node without counts did nothing) and returns the probe
/// budget of the next period.
pub fn reshape(nodes: &mut [NodeHealth], counts: &[PeriodCounts], cfg: &BalancerConfig) -> u32 {
    for node in nodes.iter_mut() {
        node.settle();
    }
    let guard = guard_holds(nodes, cfg);
    for (i, node) in nodes.iter_mut().enumerate() {
        let period = counts.get(i).copied().unwrap_or_default();
        if node.dead {
            revive(node, &period, cfg);
        } else if fast_trip(&period, cfg) {
            node.kill();
        } else {
            judge_live(node, &period, guard, cfg);
        }
        node.settle();
    }
    probe_budget(nodes, counts, cfg)
}

/// Rule "guard": more than `guard_share` of the nodes already sit below
/// half their static weight (before this period's changes).
pub fn guard_holds(nodes: &[NodeHealth], cfg: &BalancerConfig) -> bool {
    if nodes.is_empty() {
        return false;
    }
    let below = nodes.iter().filter(|n| n.below_half()).count();
    below as f64 > cfg.guard_share * nodes.len() as f64
}

/// Rule "fast trip" (Polaris): `trip_errors` failures in a row.
pub fn fast_trip(period: &PeriodCounts, cfg: &BalancerConfig) -> bool {
    period.consecutive_errors >= cfg.trip_errors.max(1)
}

/// Rule "not judged": adds the period to what is pending and returns
/// `Some((success, requests))` once there are at least `min_requests`
/// (clearing what was pending), else `None` (the counts accumulate).
pub fn judge(
    node: &mut NodeHealth,
    period: &PeriodCounts,
    cfg: &BalancerConfig,
) -> Option<(u64, u64)> {
    node.pending_success = node.pending_success.saturating_add(period.success);
    node.pending_failure = node.pending_failure.saturating_add(period.failure);
    let success = node.pending_success;
    let requests = success.saturating_add(node.pending_failure);
    if requests < cfg.min_requests.max(1) {
        return None;
    }
    node.clear_pending();
    Some((success, requests))
}

/// A live node's period: not judged below `min_requests` ([`judge`]); else
/// [`grow`] when healthy, dead at ratio 0, [`lower`]ed (unless `guard`)
/// otherwise, and dead when its weight decayed below 1.
pub fn judge_live(node: &mut NodeHealth, period: &PeriodCounts, guard: bool, cfg: &BalancerConfig) {
    let Some((success, requests)) = judge(node, period, cfg) else {
        return;
    };
    let ratio = success as f64 / requests as f64;
    if ratio >= cfg.good_ratio {
        grow(node, cfg);
    } else if success == 0 {
        node.kill();
    } else if !guard {
        lower(node, ratio);
        if node.weight < 1.0 {
            node.kill();
        }
    }
}

/// Rule "grow": weight += `grow_share` × static, capped at static.
pub fn grow(node: &mut NodeHealth, cfg: &BalancerConfig) {
    let cap = f64::from(node.static_weight);
    node.weight = (node.weight + cfg.grow_share * cap).min(cap);
}

/// Rule "lower": weight *= ratio².
pub fn lower(node: &mut NodeHealth, ratio: f64) {
    node.weight *= ratio * ratio;
}

/// Rule "revive": a dead node whose probes this period (at least one)
/// succeeded at `good_ratio` or better comes back at `revive_share` ×
/// static. Returns whether it did.
pub fn revive(node: &mut NodeHealth, period: &PeriodCounts, cfg: &BalancerConfig) -> bool {
    node.clear_pending();
    let probes = period.requests();
    if probes == 0 || (period.success as f64) < cfg.good_ratio * probes as f64 {
        return false;
    }
    node.dead = false;
    node.weight = cfg.revive_share * f64::from(node.static_weight);
    true
}

/// Rule "probe budget": max(1, `probe_share` × the sid's requests of the
/// period) when a node is dead, else 0.
pub fn probe_budget(nodes: &[NodeHealth], counts: &[PeriodCounts], cfg: &BalancerConfig) -> u32 {
    if !nodes.iter().any(|n| n.dead) {
        return 0;
    }
    let requests: u64 = counts
        .iter()
        .take(nodes.len())
        .fold(0u64, |sum, c| sum.saturating_add(c.requests()));
    // Saturating float-to-int cast.
    let share = (cfg.probe_share * requests as f64).floor() as u64;
    u32::try_from(share).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
#[path = "balancer_tests.rs"]
mod tests;
