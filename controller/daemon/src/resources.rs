//! The shared memory and doorbells of a service: one proxy region and
//! doorbell, per worker slot (every group: `max_workers` and one spare
//! for reloads, see [`spp_config::GroupConfig::slots`]) one pair region
//! and doorbell, and with `[l5]` the L5 route table every worker inherits.
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
    /// The proxy region or doorbell.
    #[error("creating the proxy {what}")]
    Proxy {
        /// "region" or "doorbell".
        what: &'static str,
        /// The IPC error.
        source: IpcError,
    },
    /// A worker slot's region or doorbell.
    #[error("creating the {what} of worker slot g{group}/{index}")]
    Slot {
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

/// One worker slot's region and doorbell.
pub struct Slot {
    /// Index inside the group.
    pub index: u32,
    /// The pair region (header + request ring + response ring).
    pub pair: PairRegion,
    /// The worker's doorbell.
    pub bell: Doorbell,
}

impl Slot {
    /// The launch-spec entry for this slot.
    pub fn fds(&self) -> PairFds {
        PairFds {
            index: self.index,
            region_fd: self.pair.raw_fd(),
            bell_fd: self.bell.raw_fd(),
        }
    }

    /// Marks the slot's worker gone (after reaping it), and clears the
    /// hang stamp a killed worker may have left.
    pub fn mark_down(&self) {
        let header = self.pair.header();
        header.in_process_since_ms.store(0, Ordering::Relaxed);
        spp_ipc::pair::mark_worker_down(&self.pair);
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

/// Everything shared between the processes of one service.
pub struct Resources {
    /// The proxy region.
    pub proxy: ProxyRegion,
    /// The proxy's doorbell.
    pub proxy_bell: Doorbell,
    /// Per group, in config order.
    pub groups: Vec<GroupSlots>,
    /// The L5 route table (`[l5]` on), inherited by every worker.
    pub l5: Option<RouteTable>,
}

impl Resources {
    /// Creates every region and doorbell `cfg` needs.
    pub fn create(cfg: &Config) -> Result<Self, ResourceError> {
        let proxy = ProxyRegion::create().map_err(|source| ResourceError::Proxy {
            what: "region",
            source,
        })?;
        let proxy_bell = Doorbell::create().map_err(|source| ResourceError::Proxy {
            what: "doorbell",
            source,
        })?;
        let mut groups = Vec::with_capacity(cfg.groups.len());
        for g in &cfg.groups {
            let slot_err = |index, what| {
                move |source| ResourceError::Slot {
                    group: g.id,
                    index,
                    what,
                    source,
                }
            };
            let slots = (0..g.slots())
                .map(|index| {
                    Ok(Slot {
                        index,
                        pair: PairRegion::create(g.id, index, cfg.rings)
                            .map_err(slot_err(index, "pair region"))?,
                        bell: Doorbell::create().map_err(slot_err(index, "doorbell"))?,
                    })
                })
                .collect::<Result<Vec<_>, ResourceError>>()?;
            groups.push(GroupSlots { id: g.id, slots });
        }
        let l5 = match cfg.l5 {
            Some(_) => Some(RouteTable::create().map_err(ResourceError::RouteTable)?),
            None => None,
        };
        Ok(Resources {
            proxy,
            proxy_bell,
            groups,
            l5,
        })
    }

    /// The launch-spec view of every group.
    pub fn group_fds(&self) -> Vec<GroupFds> {
        self.groups
            .iter()
            .map(|g| GroupFds {
                id: g.id,
                slots: g.slots.iter().map(Slot::fds).collect(),
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

    /// Marks the proxy gone (after reaping it).
    pub fn mark_proxy_down(&self) {
        self.proxy
            .header()
            .proxy_state
            .store(ProxyState::Down as u32, Ordering::Release);
    }
}
