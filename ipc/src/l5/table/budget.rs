//! Spending the probe budget in shared memory: which dead node a pick
//! would probe ([`probe_candidate`], inside the seqlock read), and paying
//! for it afterwards ([`Probe::take`], a compare-exchange on the sid's
//! budget word tagged with the generation that was read), so a retried
//! read spends nothing and a reader of an older publish cannot spend a
//! newer budget. When to probe and which dead node is the policy of
//! [`crate::l5::probe`].

use crate::l5::layout::{unpack_probe, Buffer, NodeEntry, SidEntry};
use crate::l5::pick_rules::PickRules;
use crate::l5::probe::{dead_node_to_probe, probe_due, wants_probe};
use crate::l5::view::Route;
use std::sync::atomic::Ordering;

/// Compare-exchange attempts to take one unit of probe budget.
const PROBE_CAS_ATTEMPTS: u32 = 8;

/// The dead node this pick would probe if the budget allows (inside the
/// read section: reads only, spends nothing).
pub(super) fn probe_candidate<'b>(
    entry: &SidEntry,
    nodes: &'b [NodeEntry],
    random: u64,
    rules: &PickRules,
) -> Option<&'b NodeEntry> {
    let dead = entry.dead_count.load(Ordering::Relaxed);
    if !wants_probe(dead, rules) {
        return None;
    }
    nodes
        .iter()
        .filter(|n| n.dead.load(Ordering::Relaxed) != 0)
        .nth(dead_node_to_probe(random, dead))
}

/// A probe chosen in a validated read, not yet paid for.
pub(super) struct Probe<'a> {
    /// The sid's entry in the buffer that was read.
    pub(super) entry: &'a SidEntry,
    /// The dead node to probe.
    pub(super) route: Route,
    /// The low 32 bits of the generation that was read.
    pub(super) tag: u32,
    /// The budget published with that generation.
    pub(super) initial: u32,
}

impl Probe<'_> {
    /// Whether this pick probes: the budget word still carries the
    /// generation that was read and has a unit left, the pick is due
    /// ([`probe_due`]), and the unit was taken by compare-exchange.
    pub(super) fn take(&self, rules: &PickRules) -> bool {
        let word = &self.entry.probe;
        let mut now = word.load(Ordering::Relaxed);
        let (tag, left) = unpack_probe(now);
        if tag != self.tag || left == 0 {
            return false;
        }
        let tick = self.entry.probe_clock.fetch_add(1, Ordering::Relaxed);
        if !probe_due(left, self.initial, tick, rules) {
            return false;
        }
        for _ in 0..PROBE_CAS_ATTEMPTS {
            let (tag, left) = unpack_probe(now);
            if tag != self.tag || left == 0 {
                return false;
            }
            match word.compare_exchange(now, now - 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => now = seen,
            }
        }
        false
    }
}

/// The probe budget left in `entry` of `buf` (0 when the word carries
/// another generation, e.g. a torn read).
pub(super) fn budget_left(buf: &Buffer, entry: &SidEntry) -> u32 {
    let (tag, left) = unpack_probe(entry.probe.load(Ordering::Relaxed));
    if tag == buf.generation.load(Ordering::Relaxed) as u32 {
        left
    } else {
        0
    }
}
