//! Picking a route over the published weights (workers): the weighted
//! choice with its skip rule and probes ([`RouteTable::pick`]) and the
//! consistent-hash choice ([`RouteTable::pick_hash`]), both inside the
//! table's seqlock read. The rules themselves are the policy modules'
//! ([`PickRules::skips`], [`crate::l5::probe`], [`crate::l5::rendezvous`]);
//! this module applies them to the shared-memory nodes.

use super::budget::{probe_candidate, Probe};
use super::{find_sid, nodes_of, RouteTable, PICK_ATTEMPTS};
use crate::l5::hash::{mix64, scale};
use crate::l5::layout::{Buffer, NodeEntry, SidEntry};
use crate::l5::pick_rules::{PeriodSoFar, PickRules};
use crate::l5::rendezvous::Contender;
use crate::l5::view::Route;
use crate::l5::{L5Error, Sid};
use std::sync::atomic::Ordering;

impl RouteTable {
    /// Weighted-random route for `sid`; `random` is a fresh random u64
    /// (workers; no lock, no allocation, no syscall). See the module doc
    /// for the rules.
    ///
    /// The node choice is made inside the seqlock read section; the probe
    /// budget is only spent after that read was validated, by a
    /// compare-exchange on the generation-tagged budget word, so a retried
    /// read loses nothing and a late reader of an older publish cannot
    /// spend the budget of a newer one.
    pub fn pick(&self, sid: Sid, random: u64) -> Result<Route, L5Error> {
        let rules = self.rules();
        let choice = self.read(|buf| self.plan(buf, sid, random, &rules))?;
        let route = match choice {
            (_, Some(probe)) if probe.take(&rules) => probe.route,
            (normal, _) => normal,
        };
        self.count_pick(&route);
        Ok(route)
    }

    /// The read-section half of [`Self::pick`]: the weighted choice and
    /// the probe it would make, spending nothing (the caller validates the
    /// read, then asks [`Probe::take`]).
    pub(super) fn plan<'a>(
        &'a self,
        buf: &'a Buffer,
        sid: Sid,
        random: u64,
        rules: &PickRules,
    ) -> Result<(Route, Option<Probe<'a>>), L5Error> {
        let entry = find_sid(buf, sid).ok_or(L5Error::UnknownSid)?;
        let nodes = nodes_of(buf, entry).ok_or(L5Error::Busy)?;
        if nodes.is_empty() {
            return Err(L5Error::NoServer);
        }
        let normal = route_to(sid, self.choose(entry, nodes, random, rules));
        let probe = probe_candidate(entry, nodes, random, rules).map(|node| Probe {
            entry,
            route: route_to(sid, node),
            tag: buf.generation.load(Ordering::Relaxed) as u32,
            initial: entry.probe_initial.load(Ordering::Relaxed),
        });
        Ok((normal, probe))
    }

    /// The node a weighted pick (not a probe) lands on (`nodes` is not
    /// empty).
    fn choose<'b>(
        &self,
        entry: &SidEntry,
        nodes: &'b [NodeEntry],
        random: u64,
        rules: &PickRules,
    ) -> &'b NodeEntry {
        let total = entry.total_weight.load(Ordering::Relaxed);
        let mut r = random;
        if total > 0 {
            for _ in 0..PICK_ATTEMPTS {
                let node = weighted(nodes, scale(r, total));
                if !self.skipped(node, rules) {
                    return node;
                }
                r = mix64(r);
            }
            let start = scale(r, nodes.len() as u64) as usize;
            let (after, before) = nodes.split_at(start.min(nodes.len()));
            if let Some(node) = before
                .iter()
                .chain(after)
                .find(|n| is_live(n) && !self.skipped(n, rules))
            {
                return node;
            }
            // Every live node is skipped: the skip rule yields, and the
            // pick stays weighted over the live nodes (a dead node gets
            // only probes while any node is live).
            return weighted(nodes, scale(mix64(r ^ 0x5bd1_e995), total));
        }
        // Fail open: every node dead.
        &nodes[(scale(mix64(r ^ 0x5bd1_e995), nodes.len() as u64) as usize).min(nodes.len() - 1)]
    }

    /// Whether a pick passes over `node` ([`PickRules::skips`] on what
    /// its slot counted since the publish). A node whose slot changed
    /// hands is not skipped.
    fn skipped(&self, node: &NodeEntry, rules: &PickRules) -> bool {
        let Some(slot) = self
            .shared()
            .slots
            .get(node.slot.load(Ordering::Relaxed) as usize)
        else {
            return false;
        };
        if slot.epoch.load(Ordering::Relaxed) != node.slot_epoch.load(Ordering::Relaxed) {
            return false;
        }
        rules.skips(&PeriodSoFar {
            success: slot
                .success
                .load(Ordering::Relaxed)
                .saturating_sub(node.base_success.load(Ordering::Relaxed)),
            failure: slot
                .failure
                .load(Ordering::Relaxed)
                .saturating_sub(node.base_failure.load(Ordering::Relaxed)),
            consecutive_errors: slot.consecutive_errors.load(Ordering::Relaxed),
        })
    }

    /// Counts a pick on the route's slot, unless the slot changed hands.
    fn count_pick(&self, route: &Route) {
        if let Some(slot) = self.shared().slots.get(route.slot as usize) {
            if slot.epoch.load(Ordering::Relaxed) == route.slot_epoch {
                slot.picks.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Consistent-hash route for `sid` keyed by `key` (same key → same
    /// node while the node set and weights do not change): weighted
    /// rendezvous hashing over the live nodes, passing over skipped ones;
    /// when none is live, over every node by static weight.
    pub fn pick_hash(&self, sid: Sid, key: u64) -> Result<Route, L5Error> {
        let rules = self.rules();
        let key = mix64(key);
        let route = self.read(|buf| {
            let entry = find_sid(buf, sid).ok_or(L5Error::UnknownSid)?;
            let nodes = nodes_of(buf, entry).ok_or(L5Error::Busy)?;
            let mut best: Option<Contender<&NodeEntry>> = None;
            let mut best_ok: Option<Contender<&NodeEntry>> = None;
            for node in nodes.iter().filter(|n| is_live(n)) {
                let mut c = Contender::new(
                    node,
                    key,
                    node.addr_hash.load(Ordering::Relaxed),
                    node.weight.load(Ordering::Relaxed),
                );
                // `best_ok` never scores above `best`: beating `best` beats
                // both, and while they are the same node, losing to `best`
                // loses to both.
                if best.as_mut().is_none_or(|b| c.beats(b)) {
                    if !self.skipped(node, &rules) {
                        best_ok = Some(c);
                    }
                    best = Some(c);
                } else if best_ok.map(|o| o.item as *const NodeEntry)
                    != best.map(|b| b.item as *const NodeEntry)
                    && best_ok.as_mut().is_none_or(|o| c.beats(o))
                    && !self.skipped(node, &rules)
                {
                    best_ok = Some(c);
                }
            }
            if best.is_none() {
                for node in nodes {
                    let weight = node.static_weight.load(Ordering::Relaxed).max(1);
                    let mut c =
                        Contender::new(node, key, node.addr_hash.load(Ordering::Relaxed), weight);
                    if best.as_mut().is_none_or(|b| c.beats(b)) {
                        best = Some(c);
                    }
                }
            }
            let winner = best_ok.or(best).ok_or(L5Error::NoServer)?;
            Ok(route_to(sid, winner.item))
        })?;
        self.count_pick(&route);
        Ok(route)
    }
}

/// Live: not dead and weighing more than 0.
fn is_live(node: &NodeEntry) -> bool {
    node.dead.load(Ordering::Relaxed) == 0 && node.weight.load(Ordering::Relaxed) > 0
}

/// The node a weighted draw at `at` (in `0..total_weight`) lands on: the
/// first whose cumulative weight exceeds it (a dead node adds 0, so it is
/// never hit while the total is > 0); clamped into range for torn reads.
fn weighted(nodes: &[NodeEntry], at: u64) -> &NodeEntry {
    let i = nodes.partition_point(|n| n.cumulative.load(Ordering::Relaxed) <= at);
    &nodes[i.min(nodes.len() - 1)]
}

/// The route to `node` of `sid`.
pub(super) fn route_to(sid: Sid, node: &NodeEntry) -> Route {
    Route {
        sid,
        addr: node.addr(),
        slot: node.slot.load(Ordering::Relaxed),
        slot_epoch: node.slot_epoch.load(Ordering::Relaxed),
    }
}
