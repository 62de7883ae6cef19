//! Probing dead nodes: which dead node a pick would probe
//! ([`probe_candidate`], inside the seqlock read), and paying for it
//! afterwards ([`Probe::take`], a compare-exchange on the sid's budget word
//! tagged with the generation that was read), so a retried read spends
//! nothing and a reader of an older publish cannot spend a newer budget.

use super::layout::{mix64, unpack_probe, Buffer, NodeEntry, SidEntry, PPM};
use super::table::{scale, Route, Rules};
use std::sync::atomic::Ordering;

/// Compare-exchange attempts to take one unit of probe budget.
const PROBE_CAS_ATTEMPTS: u32 = 8;

/// The dead node this pick would probe if the budget allows (inside the
/// read section: reads only, spends nothing).
pub(super) fn probe_candidate<'b>(
    entry: &SidEntry,
    nodes: &'b [NodeEntry],
    random: u64,
    rules: &Rules,
) -> Option<&'b NodeEntry> {
    let dead = entry.dead_count.load(Ordering::Relaxed);
    if dead == 0 || rules.probe_ppm == 0 {
        return None;
    }
    let k = scale(mix64(random), u64::from(dead));
    nodes
        .iter()
        .filter(|n| n.dead.load(Ordering::Relaxed) != 0)
        .nth(k as usize)
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
    /// generation that was read and has a unit left, the pick is due (the
    /// first of the period, or every ⌈1 / probe_share⌉-th pick that found
    /// budget left), and the unit was taken by compare-exchange.
    pub(super) fn take(&self, rules: &Rules) -> bool {
        let word = &self.entry.probe;
        let mut now = word.load(Ordering::Relaxed);
        let (tag, left) = unpack_probe(now);
        if tag != self.tag || left == 0 {
            return false;
        }
        let every = PPM.div_ceil(u64::from(rules.probe_ppm.max(1)));
        let tick = self.entry.probe_clock.fetch_add(1, Ordering::Relaxed);
        // No unit taken yet this period: the first pick probes whatever
        // the clock says (a stale reader's tick cannot cost a low-traffic
        // period its only probe).
        if left != self.initial && !tick.is_multiple_of(every) {
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
