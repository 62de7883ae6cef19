//! The shared memory and doorbells of a service: per proxy shard
//! (`proxy.processes`) one proxy region and doorbell; per worker slot
//! (every group: `max_workers` and one spare for reloads, see
//! [`spp_config::GroupConfig::slots`]) one doorbell and one pair region per
//! shard; and with `[l5]` the L5 route table every worker inherits. The
//! worker writes its own stats, heartbeat and hang stamp in shard 0's pair
//! ([`Slot::pair`]).
//! The controller creates them once and keeps them for the service's life,
//! so restarted children continue on them.

use spp_config::Config;
use spp_ipc::doorbell::Doorbell;
use spp_ipc::l5::table::RouteTable;
use spp_ipc::launch::{GroupFds, PairFds};
use spp_ipc::layout::{PairRegion, ProxyRegion, ProxyState};
use spp_ipc::IpcError;
use std::sync::atomic::Ordering;

/// Why the shared resources could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// A proxy shard's region or doorbell.
    #[error("creating the {what} of proxy shard {shard}")]
    Proxy {
        /// The shard.
        shard: u16,
        /// "region" or "doorbell".
        what: &'static str,
        /// The IPC error.
        source: IpcError,
    },
    /// A worker slot's region or doorbell.
    #[error("creating the {what} of worker slot g{group}/{index} (proxy shard {shard})")]
    Slot {
        /// The proxy shard of the pair region (0 for the doorbell).
        shard: u16,
        /// Group id.
        group: u32,
        /// Slot index.
        index: u32,
        /// "pair region" or "doorbell".
        what: &'static str,
        /// The IPC error.
        source: IpcError,
    },
    /// The L5 route table.
    #[error("creating the L5 route table")]
    RouteTable(#[source] IpcError),
}

/// One worker slot's regions and doorbell.
pub struct Slot {
    /// Index inside the group.
    pub index: u32,
    /// The pair region (header + request ring + response ring) with proxy
    /// shard 0, where the worker keeps its stats and stamps.
    pub pair: PairRegion,
    /// The pair regions with shards 1, 2, ... (empty with one proxy).
    pub shard_pairs: Vec<PairRegion>,
    /// The worker's doorbell (every shard rings the same).
    pub bell: Doorbell,
}

impl Slot {
    /// The launch-spec entry for this slot, as proxy shard 0 sees it.
    pub fn fds(&self) -> PairFds {
        PairFds {
            index: self.index,
            region_fd: self.pair.raw_fd(),
            bell_fd: self.bell.raw_fd(),
        }
    }

    /// The pair region with proxy shard `shard`.
    pub fn pair_of(&self, shard: u16) -> Option<&PairRegion> {
        match shard {
            0 => Some(&self.pair),
            s => self.shard_pairs.get(usize::from(s) - 1),
        }
    }

    /// Every pair region, shard 0 first.
    pub fn pairs(&self) -> impl Iterator<Item = &PairRegion> {
        std::iter::once(&self.pair).chain(&self.shard_pairs)
    }

    /// The launch-spec entry for this slot, as proxy shard `shard` sees
    /// it.
    pub fn fds_of(&self, shard: u16) -> Option<PairFds> {
        Some(PairFds {
            index: self.index,
            region_fd: self.pair_of(shard)?.raw_fd(),
            bell_fd: self.bell.raw_fd(),
        })
    }

    /// Marks the slot's worker gone on every shard's pair (after reaping
    /// it), and clears the hang stamp a killed worker may have left.
    pub fn mark_down(&self) {
        let header = self.pair.header();
        header.in_process_since_ms.store(0, Ordering::Relaxed);
        for pair in self.pairs() {
            spp_ipc::pair::mark_worker_down(pair);
        }
    }

    /// The sum of every pair's `completed_seq` (wrapping): it moves when
    /// the worker completes a request from any shard.
    pub fn completed_seqs(&self) -> u64 {
        self.pairs().fold(0u64, |sum, p| {
            sum.wrapping_add(spp_ipc::pair::PairObserver::new(p).completed_seq())
        })
    }

    /// Whether any shard published requests the worker has not finished.
    pub fn requests_waiting(&self) -> bool {
        self.pairs()
            .any(|p| spp_ipc::pair::PairObserver::new(p).requests_waiting())
    }

    /// CLOCK_MONOTONIC ms at which the worker's current `spp_process` call
    /// began, `None` while it is not inside one.
    pub fn in_process_since_ms(&self) -> Option<u64> {
        match self
            .pair
            .header()
            .in_process_since_ms
            .load(Ordering::Relaxed)
        {
            0 => None,
            ms => Some(ms),
        }
    }

    /// Nanoseconds the slot's workers spent inside `spp_process` so far
    /// (wrapping; subtract two readings).
    pub fn process_ns(&self) -> u64 {
        self.pair
            .header()
            .process_time
            .sum_ns
            .load(Ordering::Relaxed)
    }
}

/// One group's slots.
pub struct GroupSlots {
    /// Group id.
    pub id: u32,
    /// Slots `0..=max_workers` (the last one is the spare).
    pub slots: Vec<Slot>,
}

/// One proxy shard's region and doorbell.
pub struct ProxyShard {
    /// The proxy region (state, stats, limits, plugin metrics).
    pub region: ProxyRegion,
    /// The shard's doorbell (workers ring it).
    pub bell: Doorbell,
}

/// Everything shared between the processes of one service.
pub struct Resources {
    /// Per proxy shard (at least one), by index.
    pub shards: Vec<ProxyShard>,
    /// Per group, in config order.
    pub groups: Vec<GroupSlots>,
    /// The L5 route table (`[l5]` on), inherited by every worker.
    pub l5: Option<RouteTable>,
}

impl Resources {
    /// Creates every region and doorbell `cfg` needs.
    pub fn create(cfg: &Config) -> Result<Self, ResourceError> {
        let count = cfg.proxy.processes.max(1);
        let shards = (0..count)
            .map(|shard| {
                let fail = |what| {
                    move |source| ResourceError::Proxy {
                        shard,
                        what,
                        source,
                    }
                };
                Ok(ProxyShard {
                    region: ProxyRegion::create().map_err(fail("region"))?,
                    bell: Doorbell::create().map_err(fail("doorbell"))?,
                })
            })
            .collect::<Result<Vec<_>, ResourceError>>()?;
        let mut groups = Vec::with_capacity(cfg.groups.len());
        for g in &cfg.groups {
            let slot_err = |index, shard, what| {
                move |source| ResourceError::Slot {
                    shard,
                    group: g.id,
                    index,
                    what,
                    source,
                }
            };
            let pair = |index, shard| {
                PairRegion::create(g.id, index, cfg.rings).map_err(slot_err(
                    index,
                    shard,
                    "pair region",
                ))
            };
            let slots = (0..g.slots())
                .map(|index| {
                    Ok(Slot {
                        index,
                        pair: pair(index, 0)?,
                        shard_pairs: (1..count)
                            .map(|shard| pair(index, shard))
                            .collect::<Result<Vec<_>, _>>()?,
                        bell: Doorbell::create().map_err(slot_err(index, 0, "doorbell"))?,
                    })
                })
                .collect::<Result<Vec<_>, ResourceError>>()?;
            groups.push(GroupSlots { id: g.id, slots });
        }
        let l5 = match cfg.l5 {
            Some(_) => Some(RouteTable::create().map_err(ResourceError::RouteTable)?),
            None => None,
        };
        Ok(Resources { shards, groups, l5 })
    }

    /// The launch-spec view of every group, for proxy shard `shard`.
    pub fn group_fds(&self, shard: u16) -> Vec<GroupFds> {
        self.groups
            .iter()
            .map(|g| GroupFds {
                id: g.id,
                slots: g.slots.iter().filter_map(|s| s.fds_of(shard)).collect(),
                // Set from the config by `spawn` (the slots know no
                // timeouts).
                msg_timeout_ms: 0,
            })
            .collect()
    }

    /// The slot of group position `group_pos`, index `index`.
    pub fn slot(&self, group_pos: usize, index: u32) -> Option<&Slot> {
        self.groups.get(group_pos)?.slots.get(index as usize)
    }

    /// Worker slots created for the group at `group_pos`.
    pub fn slot_count(&self, group_pos: usize) -> u32 {
        self.groups
            .get(group_pos)
            .map_or(0, |g| u32::try_from(g.slots.len()).unwrap_or(u32::MAX))
    }

    /// Proxy shard `shard`.
    pub fn shard(&self, shard: u16) -> Option<&ProxyShard> {
        self.shards.get(usize::from(shard))
    }

    /// Proxy shards.
    pub fn shard_count(&self) -> u16 {
        u16::try_from(self.shards.len()).unwrap_or(u16::MAX)
    }

    /// Marks proxy shard `shard` gone (after reaping it).
    pub fn mark_proxy_down(&self, shard: u16) {
        if let Some(s) = self.shard(shard) {
            s.region
                .header()
                .proxy_state
                .store(ProxyState::Down as u32, Ordering::Release);
        }
    }
}
