//! Weighted rendezvous (highest random weight) hashing for
//! [`super::table::RouteTable::pick_hash`]: a key goes to the node with the
//! highest `weight / -ln(u)`, `u` uniform in (0, 1) from the hash of (key,
//! node address). The same key goes to the same node while the node set
//! and weights do not change; removing a node moves only its keys, and
//! changing one node's weight moves keys only to or from it.

use super::layout::{mix64, NodeEntry};
use std::sync::atomic::Ordering;

/// A node's standing in weighted rendezvous hashing for one key: its score
/// is `weight / -ln(u)` with `u` uniform in (0, 1) from the hash of (key,
/// node address), and the highest score wins. Between equal weights the
/// larger hash wins with no logarithm (the score grows with `u`); between
/// different weights the scores are compared by cross-multiplication, each
/// logarithm computed once.
#[derive(Clone, Copy)]
pub(super) struct Contender<'b> {
    /// The node.
    pub(super) node: &'b NodeEntry,
    /// Its weight.
    pub(super) weight: u32,
    /// 53 bits of the (key, node) hash.
    pub(super) hash: u64,
    /// `-ln(u)`, NaN until needed.
    pub(super) neg_ln: f64,
}

impl<'b> Contender<'b> {
    /// `node` with `weight`, for the (mixed) `key`.
    pub(super) fn new(node: &'b NodeEntry, key: u64, weight: u32) -> Self {
        Contender {
            node,
            weight,
            hash: mix64(key ^ node.addr_hash.load(Ordering::Relaxed)) >> 11,
            neg_ln: f64::NAN,
        }
    }

    /// `u`, uniform in (0, 1).
    pub(super) fn u(&self) -> f64 {
        (self.hash as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn neg_ln(&mut self) -> f64 {
        if self.neg_ln.is_nan() {
            self.neg_ln = -self.u().ln();
        }
        self.neg_ln
    }

    /// Whether `self` scores higher than `other`: `self.weight / l_self >
    /// other.weight / l_other`, i.e. `other.weight × l_self < self.weight ×
    /// l_other`. Most losers are told apart without their logarithm:
    /// `-ln(u) ≥ x + x²/2` with `x = 1 - u`, so a loser whose lower bound
    /// already fails the test needs no `ln`.
    pub(super) fn beats(&mut self, other: &mut Contender<'_>) -> bool {
        if self.weight == other.weight {
            return self.hash > other.hash;
        }
        let (mine, theirs) = (f64::from(self.weight), f64::from(other.weight));
        let need = mine * other.neg_ln();
        let x = 1.0 - self.u();
        if theirs * (x + x * x / 2.0) > need * (1.0 + 1e-9) {
            return false;
        }
        need > theirs * self.neg_ln()
    }
}
