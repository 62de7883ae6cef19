//! [`Completions`]: `completed_seq` when requests finish out of order.
//!
//! The pair protocol completes by one number: every seq up to
//! `completed_seq` is done. Micro-threads finish in any order, so the
//! worker keeps the seqs it took and has not yet completed, in ring order
//! (increasing), each marked done or not, and completes up to the first
//! one still running. Bounded: when it holds `capacity` seqs the worker
//! stops taking from its ring (a long-suspended request then holds back
//! at most that many finished ones).

use std::collections::VecDeque;

/// Seqs taken and not yet completed, in ring order.
pub struct Completions {
    pending: VecDeque<(u64, bool)>,
    capacity: usize,
}

impl Completions {
    /// Room for `capacity` seqs (allocated once).
    pub fn new(capacity: usize) -> Self {
        Completions {
            pending: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Whether no further seq may be taken.
    pub fn is_full(&self) -> bool {
        self.pending.len() >= self.capacity
    }

    /// Whether every seq taken is completed.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// `seq` (higher than every seq before it) starts running.
    pub fn start(&mut self, seq: u64) {
        self.pending.push_back((seq, false));
    }

    /// `seq` (higher than every seq before it) is done the moment it is
    /// taken (expired, skipped). Returns the new `completed_seq`, if it
    /// moved.
    pub fn done_at_once(&mut self, seq: u64) -> Option<u64> {
        if self.pending.is_empty() {
            return Some(seq);
        }
        self.pending.push_back((seq, true));
        None
    }

    /// The started `seq` finished. Returns the new `completed_seq`, if it
    /// moved.
    pub fn finish(&mut self, seq: u64) -> Option<u64> {
        if let Ok(at) = self.pending.binary_search_by_key(&seq, |&(s, _)| s) {
            self.pending[at].1 = true;
        }
        let mut upto = None;
        while let Some(&(s, true)) = self.pending.front() {
            upto = Some(s);
            self.pending.pop_front();
        }
        upto
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_up_to_the_first_unfinished_seq() {
        let mut c = Completions::new(8);
        assert_eq!(c.done_at_once(1), Some(1), "nothing running: at once");
        c.start(2);
        c.start(3);
        assert_eq!(c.done_at_once(4), None, "behind 2");
        c.start(5);
        assert_eq!(c.finish(3), None, "2 still runs");
        assert_eq!(c.finish(2), Some(4), "2, 3 and 4 are done");
        assert!(!c.is_empty());
        assert_eq!(c.finish(5), Some(5));
        assert!(c.is_empty());
        assert_eq!(c.finish(99), None, "unknown seq: nothing moves");
    }

    #[test]
    fn is_bounded() {
        let mut c = Completions::new(3);
        c.start(1);
        c.start(2);
        assert!(!c.is_full());
        assert_eq!(c.done_at_once(3), None);
        assert!(c.is_full());
        assert_eq!(c.finish(2), None);
        assert!(c.is_full());
        assert_eq!(c.finish(1), Some(3));
        assert!(!c.is_full() && c.is_empty());
    }

    #[test]
    fn any_finishing_order_completes_everything_in_order() {
        // Reverse, interleaved, and in order.
        for order in [[4u64, 3, 2, 1], [2, 4, 1, 3], [1, 2, 3, 4]] {
            let mut c = Completions::new(4);
            (1..=4).for_each(|s| c.start(s));
            let mut last = 0;
            for s in order {
                if let Some(upto) = c.finish(s) {
                    assert!(upto > last);
                    last = upto;
                }
            }
            assert_eq!(last, 4, "{order:?}");
            assert!(c.is_empty());
        }
    }
}
