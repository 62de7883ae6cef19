//! Weighted rendezvous (highest random weight) hashing, the choice behind
//! [`super::table::RouteTable::pick_hash`]: a key goes to the node with
//! the highest `weight / -ln(u)`, `u` uniform in (0, 1) from the hash of
//! (key, node address). The same key goes to the same node while the node
//! set and weights do not change; removing a node moves only its keys, and
//! changing one node's weight moves keys only to or from it.
//!
//! Pure scoring over (item, weight, hash): the route table supplies the
//! nodes and their address hashes.

use super::hash::mix64;

/// An item's standing in weighted rendezvous hashing for one key: its
/// score is `weight / -ln(u)` with `u` uniform in (0, 1) from the hash of
/// (key, item address), and the highest score wins. Between equal weights
/// the larger hash wins with no logarithm (the score grows with `u`);
/// between different weights the scores are compared by
/// cross-multiplication, each logarithm computed once.
#[derive(Clone, Copy, Debug)]
pub struct Contender<T> {
    /// What competes (a node of the table).
    pub item: T,
    /// Its weight.
    pub weight: u32,
    /// 53 bits of the (key, item) hash.
    pub hash: u64,
    /// `-ln(u)`, NaN until needed.
    neg_ln: f64,
}

impl<T> Contender<T> {
    /// `item`, whose address hashes to `addr_hash`, with `weight`, for the
    /// (mixed) `key`.
    #[inline]
    pub fn new(item: T, key: u64, addr_hash: u64, weight: u32) -> Self {
        Contender {
            item,
            weight,
            hash: mix64(key ^ addr_hash) >> 11,
            neg_ln: f64::NAN,
        }
    }

    /// `u`, uniform in (0, 1).
    #[inline]
    pub fn u(&self) -> f64 {
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
    pub fn beats<U>(&mut self, other: &mut Contender<U>) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rendezvous_shortcuts_agree_with_the_plain_scores() {
        // A seeded xorshift64*, so the test is reproducible.
        let mut state = 0xbeef_u64;
        let mut next = || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let contender = |hash: u64, weight: u32| Contender {
            item: (),
            weight,
            hash: hash >> 11,
            neg_ln: f64::NAN,
        };
        let plain = |c: &Contender<()>| f64::from(c.weight) / -c.u().ln();
        let mut disagreements = 0;
        for i in 0..200_000u32 {
            let w1 = 100 + (next() % 4) as u32 * if i % 2 == 0 { 0 } else { 900 };
            let w2 = if i % 3 == 0 {
                w1
            } else {
                100 + (next() % 10_000) as u32
            };
            let (mut a, mut b) = (contender(next(), w1), contender(next(), w2));
            let (sa, sb) = (plain(&a), plain(&b));
            if a.beats(&mut b) != (sa > sb) && (sa - sb).abs() > 1e-9 * sa.max(sb) {
                disagreements += 1;
            }
        }
        assert_eq!(disagreements, 0);
    }
}
