//! Latency histograms in shared memory.
//!
//! A [`SharedHistogram`] is a fixed array of log-linear buckets of
//! nanoseconds, `#[repr(C)]`, so a process records into it without a lock
//! or an allocation and the controller reads it from outside. Values below
//! [`SUB_BUCKETS`] ns have a bucket each; above, every power of two is cut
//! into [`SUB_BUCKETS`] equal buckets, so a bucket is at most 1/32 (3.1 %)
//! of its values wide — HDR-style precision over the whole range up to
//! [`MAX_TRACKED_NS`] (≈ 275 s; longer values land in the last bucket).
//!
//! Two ways to record:
//! * [`SharedHistogram::record`]: the block's single writer (a worker's own
//!   loop) adds with plain loads and stores, no locked instruction;
//! * [`SharedHistogram::record_shared`]: any thread of any process
//!   (plugin latency samples) adds with `fetch_add`.
//!
//! Readers take a [`HistogramSnapshot`]; snapshots add up (a group is the
//! sum of its workers) and subtract (an interval is the difference of two
//! snapshots). Percentiles are computed by the controller with the
//! `hdrhistogram` crate from the bucket counts.

use std::sync::atomic::{AtomicU64, Ordering};

/// log2 of [`SUB_BUCKETS`].
pub const SUB_BUCKET_BITS: u32 = 5;
/// Buckets per power of two (and the exact buckets below it).
pub const SUB_BUCKETS: usize = 1 << SUB_BUCKET_BITS;
/// Values from `2^MAX_EXPONENT` ns on share the last bucket.
pub const MAX_EXPONENT: u32 = 38;
/// The largest value tracked with full precision (≈ 275 s).
pub const MAX_TRACKED_NS: u64 = (1 << MAX_EXPONENT) - 1;
/// Number of buckets: the exact ones, then [`SUB_BUCKETS`] per power of two
/// from `2^SUB_BUCKET_BITS` to `2^MAX_EXPONENT`, then one overflow bucket.
pub const BUCKETS: usize =
    SUB_BUCKETS + (MAX_EXPONENT - SUB_BUCKET_BITS) as usize * SUB_BUCKETS + 1;

/// The bucket `ns` falls in.
#[inline]
pub fn bucket_of(ns: u64) -> usize {
    if ns < SUB_BUCKETS as u64 {
        return ns as usize;
    }
    if ns > MAX_TRACKED_NS {
        return BUCKETS - 1;
    }
    let exponent = 63 - ns.leading_zeros(); // >= SUB_BUCKET_BITS
    let sub = (ns >> (exponent - SUB_BUCKET_BITS)) as usize & (SUB_BUCKETS - 1);
    SUB_BUCKETS + (exponent - SUB_BUCKET_BITS) as usize * SUB_BUCKETS + sub
}

/// The smallest value of bucket `index`.
pub fn bucket_low(index: usize) -> u64 {
    if index < SUB_BUCKETS {
        return index as u64;
    }
    if index >= BUCKETS - 1 {
        return MAX_TRACKED_NS + 1;
    }
    let octave = (index - SUB_BUCKETS) / SUB_BUCKETS;
    let sub = ((index - SUB_BUCKETS) % SUB_BUCKETS) as u64;
    let exponent = octave as u32 + SUB_BUCKET_BITS;
    (1u64 << exponent) + (sub << (exponent - SUB_BUCKET_BITS))
}

/// The value a bucket stands for in percentiles: the middle of its range
/// (the overflow bucket stands for its lower edge).
pub fn bucket_value(index: usize) -> u64 {
    if index >= BUCKETS - 1 {
        return bucket_low(index);
    }
    let low = bucket_low(index);
    let high = bucket_low(index + 1);
    low + (high - low) / 2
}

/// A latency histogram in shared memory (nanoseconds).
#[repr(C)]
pub struct SharedHistogram {
    /// Samples recorded.
    pub count: AtomicU64,
    /// Sum of every sample, ns (wraps after ~584 years of samples).
    pub sum_ns: AtomicU64,
    /// The largest sample, ns.
    pub max_ns: AtomicU64,
    /// Zero.
    pub _reserved: AtomicU64,
    /// Samples per bucket (see [`bucket_of`]).
    pub buckets: [AtomicU64; BUCKETS],
}

impl SharedHistogram {
    /// Records one sample. Only the block's single writer may call it: it
    /// adds with a plain load and store, no locked instruction.
    #[inline]
    pub fn record(&self, ns: u64) {
        let add = |cell: &AtomicU64, n: u64| {
            cell.store(
                cell.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            )
        };
        add(&self.buckets[bucket_of(ns)], 1);
        add(&self.sum_ns, ns);
        if ns > self.max_ns.load(Ordering::Relaxed) {
            self.max_ns.store(ns, Ordering::Relaxed);
        }
        // Last, so a reader that sees the count sees the bucket.
        self.count.store(
            self.count.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Release,
        );
    }

    /// Records one sample from any thread or process.
    #[inline]
    pub fn record_shared(&self, ns: u64) {
        self.buckets[bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Release);
    }

    /// Copies the histogram out. Taken while a writer records, the copy
    /// may miss the newest samples in some fields; the next one has them.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let count = self.count.load(Ordering::Acquire);
        HistogramSnapshot {
            count,
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
            max_ns: self.max_ns.load(Ordering::Relaxed),
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// A copy of a [`SharedHistogram`], or the sum or difference of copies.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HistogramSnapshot {
    /// Samples.
    pub count: u64,
    /// Sum of the samples, ns.
    pub sum_ns: u64,
    /// The largest sample, ns (of all time for a difference).
    pub max_ns: u64,
    /// Samples per bucket, [`BUCKETS`] entries.
    pub buckets: Vec<u64>,
}

impl Default for HistogramSnapshot {
    fn default() -> Self {
        HistogramSnapshot {
            count: 0,
            sum_ns: 0,
            max_ns: 0,
            buckets: vec![0; BUCKETS],
        }
    }
}

impl HistogramSnapshot {
    /// Adds `other` (e.g. another worker of the same group).
    pub fn add(&mut self, other: &HistogramSnapshot) {
        self.count = self.count.wrapping_add(other.count);
        self.sum_ns = self.sum_ns.wrapping_add(other.sum_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine = mine.wrapping_add(*theirs);
        }
    }

    /// What was recorded after `earlier` (a snapshot of the same
    /// histogram); counts never go backwards, so a difference saturates.
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        HistogramSnapshot {
            count: self.count.saturating_sub(earlier.count),
            sum_ns: self.sum_ns.saturating_sub(earlier.sum_ns),
            max_ns: self.max_ns,
            buckets: self
                .buckets
                .iter()
                .zip(&earlier.buckets)
                .map(|(now, then)| now.saturating_sub(*then))
                .collect(),
        }
    }

    /// Every non-empty bucket as (value it stands for, samples).
    pub fn values(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, n)| **n != 0)
            .map(|(i, n)| (bucket_value(i), *n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_the_range_in_order_with_bounded_width() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(31), 31);
        assert_eq!(bucket_of(32), 32);
        assert_eq!(bucket_of(MAX_TRACKED_NS), BUCKETS - 2);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        for i in 0..BUCKETS - 1 {
            let (low, next) = (bucket_low(i), bucket_low(i + 1));
            assert!(low < next, "bucket {i}");
            assert_eq!(bucket_of(low), i);
            assert_eq!(bucket_of(next - 1), i);
            assert!((next - low) * SUB_BUCKETS as u64 <= low.max(SUB_BUCKETS as u64));
        }
    }

    #[test]
    fn snapshots_add_and_subtract() {
        let h: Box<SharedHistogram> = Box::new(unsafe_zeroed());
        h.record(100);
        let first = h.snapshot();
        h.record(1_000_000);
        h.record_shared(1_000_000);
        let second = h.snapshot();
        let delta = second.since(&first);
        assert_eq!(delta.count, 2);
        assert_eq!(delta.sum_ns, 2_000_000);
        assert_eq!(delta.values().count(), 1);
        let mut total = first.clone();
        total.add(&delta);
        assert_eq!(total.count, second.count);
        assert_eq!(second.max_ns, 1_000_000);
    }

    fn unsafe_zeroed() -> SharedHistogram {
        // SAFETY: all-zero is a valid value of every field (atomics).
        unsafe { std::mem::zeroed() }
    }
}
