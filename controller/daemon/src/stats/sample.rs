//! One reading of every shared stats block ([`Sample::read`]): the proxy's
//! counters and plugin metrics (summed over the proxy shards, and kept per
//! shard), and per group the sum of its slots'
//! counters, histograms and plugin metrics (plugin metrics summed by name).
//!
//! Every value is cumulative for the service's life (the regions outlive
//! the processes), so two samples give the figures of the time between
//! them. Histograms are kept sparse ([`Hist`]): a latency distribution
//! fills a few dozen of the ~1000 buckets, and the collector keeps a minute
//! of samples.

use crate::resources::Resources;
use spp_ipc::histogram::{HistogramSnapshot, BUCKETS};
use spp_ipc::layout::{ProcessState, ProxyStats, WorkerStats};
use spp_ipc::pair::PairObserver;
use spp_ipc::plugin_metrics::PluginMetricsSnapshot;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// A histogram copy holding only its non-empty buckets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hist {
    /// Samples.
    pub count: u64,
    /// Sum of the samples, ns.
    pub sum_ns: u64,
    /// The largest sample ever, ns.
    pub max_ns: u64,
    /// (bucket index, samples) of every non-empty bucket, by index.
    pub buckets: Vec<(u32, u64)>,
}

impl Hist {
    /// No samples.
    pub const EMPTY: Hist = Hist {
        count: 0,
        sum_ns: 0,
        max_ns: 0,
        buckets: Vec::new(),
    };

    /// The sparse form of `dense`.
    pub fn from_dense(dense: &HistogramSnapshot) -> Self {
        let mut buckets: Vec<(u32, u64)> = dense
            .buckets
            .iter()
            .enumerate()
            .filter(|(_, n)| **n != 0)
            .filter_map(|(i, n)| Some((u32::try_from(i).ok()?, *n)))
            .collect();
        buckets.shrink_to_fit();
        Hist {
            count: dense.count,
            sum_ns: dense.sum_ns,
            max_ns: dense.max_ns,
            buckets,
        }
    }

    /// The dense form, for `HistogramSnapshot::since` and `values`.
    pub fn to_dense(&self) -> HistogramSnapshot {
        let mut dense = HistogramSnapshot {
            count: self.count,
            sum_ns: self.sum_ns,
            max_ns: self.max_ns,
            buckets: vec![0; BUCKETS],
        };
        for &(index, n) in self.buckets.iter() {
            if let Some(cell) = dense.buckets.get_mut(index as usize) {
                *cell = n;
            }
        }
        dense
    }
}

/// A process's plugin metrics (a group's: summed over its slots by name).
#[derive(Clone, Debug, Default)]
pub struct PluginSample {
    /// Counter values by name.
    pub counters: BTreeMap<String, u64>,
    /// Latency histograms by name.
    pub latencies: BTreeMap<String, Hist>,
    /// Calls refused.
    pub refused: u64,
}

impl PluginSample {
    /// Nothing counted.
    pub const EMPTY: PluginSample = PluginSample {
        counters: BTreeMap::new(),
        latencies: BTreeMap::new(),
        refused: 0,
    };
}

/// Sums plugin metric blocks by name while a sample is read.
#[derive(Default)]
struct PluginSum {
    counters: BTreeMap<String, u64>,
    latencies: BTreeMap<String, HistogramSnapshot>,
    refused: u64,
}

impl PluginSum {
    fn add(&mut self, snap: PluginMetricsSnapshot) {
        for (name, value) in snap.counters {
            let sum = self.counters.entry(name).or_default();
            *sum = sum.wrapping_add(value);
        }
        for (name, hist) in snap.latencies {
            self.latencies.entry(name).or_default().add(&hist);
        }
        self.refused = self.refused.wrapping_add(snap.refused);
    }

    fn finish(self) -> PluginSample {
        PluginSample {
            counters: self.counters,
            latencies: self
                .latencies
                .into_iter()
                .map(|(name, dense)| (name, Hist::from_dense(&dense)))
                .collect(),
            refused: self.refused,
        }
    }
}

/// The proxy's part of a sample: every shard's, summed.
#[derive(Clone, Debug)]
pub struct ProxySample {
    /// Every proxy shard serves (Starting, Ready or Draining).
    pub up: bool,
    /// Requests queued to workers and not yet answered.
    pub in_flight: u64,
    /// `ProxyStats` (name, value), in layout order.
    pub counters: Vec<(&'static str, u64)>,
    /// Its plugin's metrics.
    pub plugin: PluginSample,
    /// Per shard, by index (one entry with one proxy).
    pub shards: Vec<ShardSample>,
}

/// One proxy shard's part of a sample.
#[derive(Clone, Debug)]
pub struct ShardSample {
    /// The shard's process serves.
    pub up: bool,
    /// Its requests queued to workers and not yet answered.
    pub in_flight: u64,
    /// Its `ProxyStats` (name, value), in layout order.
    pub counters: Vec<(&'static str, u64)>,
}

/// One group's part of a sample: the sum over its slots.
#[derive(Clone, Debug)]
pub struct GroupSample {
    /// Group id.
    pub id: u32,
    /// Worker slots.
    pub slots: u32,
    /// Slots whose worker is Starting, Ready or Draining.
    pub live: u32,
    /// `WorkerStats` (name, value) summed over the slots, in layout order.
    pub counters: Vec<(&'static str, u64)>,
    /// Queue wait, every slot.
    pub queue_wait: Hist,
    /// Process time, every slot.
    pub process_time: Hist,
    /// Plugin metrics of every slot, summed by name.
    pub plugin: PluginSample,
}

impl GroupSample {
    /// The baseline of a group that did not exist yet: nothing counted.
    pub const EMPTY: GroupSample = GroupSample {
        id: 0,
        slots: 0,
        live: 0,
        counters: Vec::new(),
        queue_wait: Hist::EMPTY,
        process_time: Hist::EMPTY,
        plugin: PluginSample::EMPTY,
    };
}

/// Every shared block, read once.
#[derive(Clone, Debug)]
pub struct Sample {
    /// When it was read.
    pub at: Instant,
    /// The controller's own log.
    pub log: LogSample,
    /// The proxy.
    pub proxy: ProxySample,
    /// The groups, in the order of `Resources::groups`.
    pub groups: Vec<GroupSample>,
}

/// A process in this state runs.
fn is_live(state: ProcessState) -> bool {
    matches!(
        state,
        ProcessState::Starting | ProcessState::Ready | ProcessState::Draining
    )
}

/// Adds `more` to `sum` field by field (both in layout order).
fn add_counters(sum: &mut [(&'static str, u64)], more: Vec<(&'static str, u64)>) {
    for ((_, total), (_, value)) in sum.iter_mut().zip(more) {
        *total = total.wrapping_add(value);
    }
}

/// The controller's log figures.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogSample {
    /// Lines the controller dropped (`logging::dropped`).
    pub controller_dropped: u64,
    /// The log dir (the controller log's directory) has no space left.
    pub dir_full: bool,
}

impl LogSample {
    /// Reads the controller's counter and asks the log dir's file system.
    pub fn read() -> LogSample {
        let dir = crate::logging::log_path().and_then(std::path::Path::parent);
        LogSample {
            controller_dropped: crate::logging::dropped(),
            dir_full: dir.is_some_and(crate::logging::dir_full),
        }
    }
}

impl Sample {
    /// Reads every block of `res`.
    pub fn read(res: &Resources, at: Instant) -> Sample {
        let mut proxy_plugin = PluginSum::default();
        let mut counters: Vec<_> = ProxyStats::NAMES.iter().map(|n| (*n, 0)).collect();
        let shards: Vec<ShardSample> = res
            .shards
            .iter()
            .map(|shard| {
                let header = shard.region.header();
                proxy_plugin.add(header.plugin.snapshot());
                let own = header.stats.snapshot();
                add_counters(&mut counters, own.clone());
                ShardSample {
                    up: is_live(shard.region.proxy_state()),
                    in_flight: header.in_flight.load(Ordering::Relaxed),
                    counters: own,
                }
            })
            .collect();
        let proxy = ProxySample {
            up: !shards.is_empty() && shards.iter().all(|s| s.up),
            in_flight: shards.iter().map(|s| s.in_flight).sum(),
            counters,
            plugin: proxy_plugin.finish(),
            shards,
        };
        let groups = res
            .groups
            .iter()
            .map(|group| {
                let mut counters: Vec<_> = WorkerStats::NAMES.iter().map(|n| (*n, 0)).collect();
                let mut queue_wait = HistogramSnapshot::default();
                let mut process_time = HistogramSnapshot::default();
                let mut plugin = PluginSum::default();
                let mut live = 0;
                for slot in &group.slots {
                    let h = slot.pair.header();
                    live += u32::from(is_live(PairObserver::new(&slot.pair).worker_state()));
                    add_counters(&mut counters, h.stats.snapshot());
                    queue_wait.add(&h.queue_wait.snapshot());
                    process_time.add(&h.process_time.snapshot());
                    plugin.add(h.plugin.snapshot());
                }
                GroupSample {
                    id: group.id,
                    slots: u32::try_from(group.slots.len()).unwrap_or(u32::MAX),
                    live,
                    counters,
                    queue_wait: Hist::from_dense(&queue_wait),
                    process_time: Hist::from_dense(&process_time),
                    plugin: plugin.finish(),
                }
            })
            .collect();
        Sample {
            at,
            log: LogSample::read(),
            proxy,
            groups,
        }
    }

    /// The group `id`, if this sample has it.
    pub fn group(&self, id: u32) -> Option<&GroupSample> {
        self.groups.iter().find(|g| g.id == id)
    }
}
