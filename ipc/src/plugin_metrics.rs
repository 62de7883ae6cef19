//! Metrics a plugin keeps through the host services (`spp_host.count`,
//! `spp_host.record_latency`): named counters and named latency
//! histograms in shared memory, one [`PluginMetrics`] block per process
//! (in its pair region for a worker, in the proxy region for the proxy).
//!
//! A name takes a slot the first time it is used and keeps it for the
//! service's life (a restarted worker finds its predecessor's slots, so the
//! values keep counting). Slots are claimed lock-free: a slot goes
//! `FREE → CLAIMING → READY` by compare-and-swap, the name is written
//! between the two, and readers look at a slot only once it is `READY`.
//! Every later call finds its slot by comparing names (at most
//! [`PLUGIN_COUNTERS`] short compares) and adds with `fetch_add`, so any
//! thread may call.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::histogram::{HistogramSnapshot, SharedHistogram};
use spp_plugin_api::abi::{SPP_ERR_BAD_NAME, SPP_ERR_FULL, SPP_OK};
use std::ffi::{c_char, c_int};

/// Named counters one process may have.
pub const PLUGIN_COUNTERS: usize = 32;
/// Named latency histograms one process may have.
pub const PLUGIN_LATENCIES: usize = 8;
/// Words of a stored name.
const NAME_WORDS: usize = 6;
/// The longest metric name, bytes.
pub const METRIC_NAME_MAX: usize = NAME_WORDS * 8;
/// Looks (with a yield between) waiting for another thread to finish
/// claiming a slot; past them the slot is skipped.
const CLAIM_SPINS: u32 = 10_000;

/// Slot state: nobody uses it.
const FREE: u64 = 0;
/// Slot state: a thread is writing its name.
const CLAIMING: u64 = 1;
/// Slot state: named, in use.
const READY: u64 = 2;

/// Why a metric call was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetricError {
    /// The name is empty, too long, or has characters other than ASCII
    /// letters, digits, `_`, `.`, `-` and `:`.
    #[error("metric names are 1..={METRIC_NAME_MAX} bytes of [A-Za-z0-9_.:-]")]
    BadName,
    /// Every slot has another name.
    #[error("every metric slot of this process is taken")]
    Full,
}

/// A stored name: up to [`METRIC_NAME_MAX`] bytes, zero-padded.
#[repr(C)]
#[derive(Default)]
pub struct MetricName {
    /// `FREE`, `CLAIMING` or `READY`.
    pub state: AtomicU64,
    /// The name bytes, little-endian in words, zero-padded.
    pub words: [AtomicU64; NAME_WORDS],
}

impl MetricName {
    /// The name, if the slot is in use.
    pub fn get(&self) -> Option<String> {
        if self.state.load(Ordering::Acquire) != READY {
            return None;
        }
        let mut bytes = Vec::with_capacity(METRIC_NAME_MAX);
        for w in &self.words {
            bytes.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        }
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        bytes.truncate(len);
        String::from_utf8(bytes).ok()
    }

    fn matches(&self, packed: &[u64; NAME_WORDS]) -> bool {
        self.words
            .iter()
            .zip(packed)
            .all(|(w, p)| w.load(Ordering::Relaxed) == *p)
    }

    /// Finds `packed` here or claims the slot for it. `Some(true)` when this
    /// slot has the name, `Some(false)` when it has another, `None` when it
    /// is free and could not be claimed in time.
    fn find_or_claim(&self, packed: &[u64; NAME_WORDS]) -> Option<bool> {
        for _ in 0..CLAIM_SPINS {
            match self.state.load(Ordering::Acquire) {
                READY => return Some(self.matches(packed)),
                FREE => {
                    if self
                        .state
                        .compare_exchange(FREE, CLAIMING, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        for (w, p) in self.words.iter().zip(packed) {
                            w.store(*p, Ordering::Relaxed);
                        }
                        self.state.store(READY, Ordering::Release);
                        return Some(true);
                    }
                }
                // Another thread is writing the name: a few stores. Yield,
                // in case it was preempted mid-claim.
                _ => std::thread::yield_now(),
            }
        }
        None
    }

    /// A slot left `CLAIMING` by a process that died mid-claim goes back to
    /// `FREE`. Only a process starting on the block, before any plugin
    /// code runs, may call it.
    fn recover(&self) {
        let _ = self
            .state
            .compare_exchange(CLAIMING, FREE, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// Checks and packs a name.
fn pack(name: &[u8]) -> Result<[u64; NAME_WORDS], MetricError> {
    let ok = |b: &u8| b.is_ascii_alphanumeric() || b"_.:-".contains(b);
    if name.is_empty() || name.len() > METRIC_NAME_MAX || !name.iter().all(ok) {
        return Err(MetricError::BadName);
    }
    let mut bytes = [0u8; METRIC_NAME_MAX];
    bytes[..name.len()].copy_from_slice(name);
    let mut packed = [0u64; NAME_WORDS];
    for (word, chunk) in packed.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        *word = u64::from_le_bytes(b);
    }
    Ok(packed)
}

/// One named counter.
#[repr(C)]
#[derive(Default)]
pub struct PluginCounter {
    /// Its name.
    pub name: MetricName,
    /// Its value.
    pub value: AtomicU64,
}

/// One named latency histogram.
#[repr(C)]
pub struct PluginLatency {
    /// Its name.
    pub name: MetricName,
    /// Zero.
    pub _reserved: AtomicU64,
    /// The samples, ns.
    pub histogram: SharedHistogram,
}

/// The plugin metrics of one process.
#[repr(C)]
pub struct PluginMetrics {
    /// Named counters.
    pub counters: [PluginCounter; PLUGIN_COUNTERS],
    /// Named latency histograms.
    pub latencies: [PluginLatency; PLUGIN_LATENCIES],
    /// Calls refused (bad name, no free slot).
    pub refused: AtomicU64,
}

/// A copy of a [`PluginMetrics`] block.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct PluginMetricsSnapshot {
    /// (name, value) of every counter in use.
    pub counters: Vec<(String, u64)>,
    /// (name, samples) of every latency histogram in use.
    pub latencies: Vec<(String, HistogramSnapshot)>,
    /// Calls refused.
    pub refused: u64,
}

impl PluginMetrics {
    /// A zeroed block on the heap (built there: ~80 KiB would strain a
    /// stack), for a host without shared memory (tests, benches): nothing
    /// outside this process sees it.
    pub fn boxed() -> Box<Self> {
        // SAFETY: all-zero is a valid value of every field (atomics and
        // byte arrays), and `new_zeroed` allocates for `Self`'s layout.
        unsafe { Box::<Self>::new_zeroed().assume_init() }
    }

    /// Adds `delta` to the counter `name`, creating it at first use.
    pub fn count(&self, name: &[u8], delta: u64) -> Result<(), MetricError> {
        let counter = self.find(name, self.counters.iter().map(|c| (&c.name, c)))?;
        counter.value.fetch_add(delta, Ordering::Relaxed);
        Ok(())
    }

    /// Records `ns` in the latency histogram `name`, creating it at first
    /// use.
    pub fn record_latency(&self, name: &[u8], ns: u64) -> Result<(), MetricError> {
        let latency = self.find(name, self.latencies.iter().map(|l| (&l.name, l)))?;
        latency.histogram.record_shared(ns);
        Ok(())
    }

    fn find<'a, T: 'a>(
        &self,
        name: &[u8],
        slots: impl Iterator<Item = (&'a MetricName, &'a T)>,
    ) -> Result<&'a T, MetricError> {
        let found = pack(name).and_then(|packed| {
            for (slot_name, slot) in slots {
                if slot_name.find_or_claim(&packed) == Some(true) {
                    return Ok(slot);
                }
            }
            Err(MetricError::Full)
        });
        if found.is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Frees slots a dead predecessor left half-claimed. Call once when a
    /// process takes the block over, before its plugin runs.
    pub fn recover(&self) {
        for c in &self.counters {
            c.name.recover();
        }
        for l in &self.latencies {
            l.name.recover();
        }
    }

    /// Copies every metric in use.
    pub fn snapshot(&self) -> PluginMetricsSnapshot {
        PluginMetricsSnapshot {
            counters: self
                .counters
                .iter()
                .filter_map(|c| Some((c.name.get()?, c.value.load(Ordering::Relaxed))))
                .collect(),
            latencies: self
                .latencies
                .iter()
                .filter_map(|l| Some((l.name.get()?, l.histogram.snapshot())))
                .collect(),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

/// The `spp_host.count` service over `metrics`, for hosts to call from
/// their `extern "C"` function: `SPP_OK`, `SPP_ERR_BAD_NAME` (also for a
/// null name) or `SPP_ERR_FULL`.
///
/// # Safety
/// `name` is null or points to `len` readable bytes.
pub unsafe fn host_count(
    metrics: &PluginMetrics,
    name: *const c_char,
    len: usize,
    delta: u64,
) -> c_int {
    // SAFETY: forwarded from the caller.
    let name = unsafe { name_bytes(metrics, name, len) };
    host_code(name.and_then(|n| metrics.count(n, delta)))
}

/// The `spp_host.record_latency` service over `metrics`; see
/// [`host_count`].
///
/// # Safety
/// As for [`host_count`].
pub unsafe fn host_record_latency(
    metrics: &PluginMetrics,
    name: *const c_char,
    len: usize,
    nanos: u64,
) -> c_int {
    // SAFETY: forwarded from the caller.
    let name = unsafe { name_bytes(metrics, name, len) };
    host_code(name.and_then(|n| metrics.record_latency(n, nanos)))
}

/// The name's bytes; a null, empty or too long name is refused (and
/// counted) before any byte is read.
///
/// # Safety
/// As for [`host_count`].
unsafe fn name_bytes<'a>(
    metrics: &PluginMetrics,
    name: *const c_char,
    len: usize,
) -> Result<&'a [u8], MetricError> {
    if name.is_null() || len == 0 || len > METRIC_NAME_MAX {
        metrics.refused.fetch_add(1, Ordering::Relaxed);
        return Err(MetricError::BadName);
    }
    // SAFETY: non-null, and the caller promises `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(name.cast::<u8>(), len) })
}

fn host_code(result: Result<(), MetricError>) -> c_int {
    match result {
        Ok(()) => SPP_OK,
        Err(MetricError::BadName) => SPP_ERR_BAD_NAME,
        Err(MetricError::Full) => SPP_ERR_FULL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block() -> Box<PluginMetrics> {
        PluginMetrics::boxed()
    }

    #[test]
    fn names_take_slots_once_and_keep_counting() {
        let m = block();
        m.count(b"cache_hits", 2).unwrap();
        m.count(b"cache_hits", 3).unwrap();
        m.count(b"db.errors", 1).unwrap();
        m.record_latency(b"db_query", 1500).unwrap();
        let s = m.snapshot();
        assert_eq!(
            s.counters,
            vec![("cache_hits".to_string(), 5), ("db.errors".to_string(), 1)]
        );
        assert_eq!(s.latencies.len(), 1);
        assert_eq!(s.latencies[0].1.count, 1);
        assert_eq!(m.count(b"", 1), Err(MetricError::BadName));
        assert_eq!(m.count(b"has space", 1), Err(MetricError::BadName));
        assert_eq!(
            m.count(&[b'a'; METRIC_NAME_MAX + 1], 1),
            Err(MetricError::BadName)
        );
        m.count(&[b'a'; METRIC_NAME_MAX], 1).unwrap();
        assert_eq!(m.snapshot().refused, 3);
    }

    #[test]
    fn a_full_table_refuses_new_names_only() {
        let m = block();
        for i in 0..PLUGIN_COUNTERS {
            m.count(format!("c{i}").as_bytes(), 1).unwrap();
        }
        assert_eq!(m.count(b"one_more", 1), Err(MetricError::Full));
        m.count(b"c0", 1).unwrap();
        assert_eq!(m.snapshot().counters[0].1, 2);
    }

    #[test]
    fn threads_share_counters() {
        let m: &'static PluginMetrics = Box::leak(block());
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(move || (0..1000).for_each(|_| m.count(b"n", 1).unwrap())))
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(m.snapshot().counters, vec![("n".to_string(), 4000)]);
    }
}
