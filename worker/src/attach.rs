//! Maps what the launch spec hands a worker: its pair region (request and
//! response rings, header, counters), its own doorbell, the proxy region
//! (for the proxy's sleep flag), the proxy's doorbell, the same three for
//! every other proxy shard (`WorkerLaunch::other_shards`: one pair region
//! per shard, in shard order 1, 2, ...; the worker's doorbell is shared by
//! every pair) and, when L5 routing is on, the service's L5 route table.
//!
//! Pair `k` is shard `k`'s. The worker's statistics, plugin metrics and
//! hang stamp live in pair 0's header (where the controller reads them);
//! [`Shared::enter_process`], [`Shared::leave_process`] and
//! [`Shared::beat`] also mirror the liveness stamps each proxy shard reads
//! into every pair (see the "several shards" section of
//! [`spp_ipc::pair`]).
//!
//! The result is leaked on purpose: the `spp_host` table, plugin threads
//! sending deferred replies or asking for L5 routes, and the SIGTERM handler
//! all point into it, and none of them can be told when it would go away.
//! It lives as long as the process, which is what the controller's memfds
//! do anyway.

use crate::error::WorkerError;
use spp_ipc::doorbell::Doorbell;
use spp_ipc::flow_shard::MAX_SHARDS;
use spp_ipc::l5::table::RouteTable;
use spp_ipc::launch::{WorkerLaunch, FIRST_INHERITED_FD};
use spp_ipc::layout::{PairHeader, PairRegion, ProxyRegion};
use spp_ipc::IpcError;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;

/// One more proxy shard's pair of this worker slot.
pub struct ShardPair {
    /// The pair region of (this shard, this worker slot).
    pub pair: PairRegion,
    /// The shard's proxy region (its sleep flag, state and pid).
    pub proxy: ProxyRegion,
    /// The shard's doorbell.
    pub proxy_bell: Doorbell,
}

/// Everything a worker shares with the proxy, mapped for the process's life.
pub struct Shared {
    /// This worker's pair region.
    pub pair: PairRegion,
    /// The proxy region.
    pub proxy: ProxyRegion,
    /// This worker's doorbell (the proxy and our own threads ring it).
    pub bell: Doorbell,
    /// The proxy's doorbell.
    pub proxy_bell: Doorbell,
    /// The service's L5 route table (`WorkerLaunch::l5_table_fd`); `None`
    /// when L5 routing is off, and the plugin's `get_route` answers
    /// `SPP_L5_SYSTEM`.
    pub routes: Option<RouteTable>,
    /// The pairs of shards 1, 2, ... (empty with one proxy).
    pub others: Vec<ShardPair>,
}

impl Shared {
    /// Shard 0's pair header (state, sequence numbers, sleep flag, and the
    /// worker's counters, histograms and plugin metrics).
    pub fn pair_header(&self) -> &PairHeader {
        self.pair.header()
    }

    /// Pairs this worker serves (1 + other shards).
    pub fn pair_count(&self) -> usize {
        1 + self.others.len()
    }

    /// Pair `k` (shard `k`): its region, its shard's proxy region and
    /// doorbell. `k` < [`Self::pair_count`].
    pub fn pair_at(&self, k: usize) -> (&PairRegion, &ProxyRegion, &Doorbell) {
        match k.checked_sub(1) {
            None => (&self.pair, &self.proxy, &self.proxy_bell),
            Some(i) => {
                let other = &self.others[i];
                (&other.pair, &other.proxy, &other.proxy_bell)
            }
        }
    }

    /// Every pair header, shard 0 first.
    fn headers(&self) -> impl Iterator<Item = &PairHeader> {
        std::iter::once(self.pair.header()).chain(self.others.iter().map(|o| o.pair.header()))
    }

    /// Before `spp_process` runs request `seq` of pair `pair`, at
    /// `since_ms` (never 0): `in_process_seq` in that pair only (a seq of
    /// that pair: only its proxy may book it as poison),
    /// `in_process_since_ms` in every pair (the controller's hang check
    /// reads pair 0's; each proxy shard's overdue rule its own).
    #[inline]
    pub fn enter_process(&self, pair: usize, seq: u64, since_ms: u64) {
        self.pair_at(pair)
            .0
            .header()
            .in_process_seq
            .store(seq, Ordering::Relaxed);
        for header in self.headers() {
            header
                .in_process_since_ms
                .store(since_ms, Ordering::Relaxed);
        }
    }

    /// After `spp_process` returned (or suspended) for a request of pair
    /// `pair`: the stamps of [`Self::enter_process`] back to 0.
    #[inline]
    pub fn leave_process(&self, pair: usize) {
        for header in self.headers() {
            header.in_process_since_ms.store(0, Ordering::Relaxed);
        }
        self.pair_at(pair)
            .0
            .header()
            .in_process_seq
            .store(0, Ordering::Relaxed);
    }

    /// `heartbeat_ms` = `ms` in every pair.
    #[inline]
    pub fn beat(&self, ms: u64) {
        for header in self.headers() {
            header.heartbeat_ms.store(ms, Ordering::Relaxed);
        }
    }

    /// Shard 0's proxy header (the proxy's sleep flag, state and pid).
    #[cfg(test)]
    pub fn proxy_header(&self) -> &spp_ipc::layout::ProxyHeader {
        self.proxy.header()
    }
}

/// Checks the spec's fds and maps them. Takes ownership of the four fds
/// (five with an L5 route table), and three more per other shard.
pub fn attach(launch: &WorkerLaunch) -> Result<&'static Shared, WorkerError> {
    if launch.other_shards.len() >= MAX_SHARDS {
        return Err(WorkerError::BadSpec {
            reason: format!(
                "{} other shards: at most {} shards in all",
                launch.other_shards.len(),
                MAX_SHARDS
            ),
        });
    }
    for (i, other) in launch.other_shards.iter().enumerate() {
        if usize::from(other.shard) != i + 1 {
            return Err(WorkerError::BadSpec {
                reason: format!(
                    "other_shards[{i}] is shard {}, not {} (shards 1.. in order)",
                    other.shard,
                    i + 1
                ),
            });
        }
    }
    if launch.pair.index != launch.index {
        return Err(WorkerError::BadSpec {
            reason: format!(
                "pair slot index {} differs from worker index {}",
                launch.pair.index, launch.index
            ),
        });
    }
    let mut fds = vec![
        ("pair region", launch.pair.region_fd),
        ("worker doorbell", launch.pair.bell_fd),
        ("proxy region", launch.proxy_region_fd),
        ("proxy doorbell", launch.proxy_bell_fd),
    ];
    fds.extend(launch.l5_table_fd.map(|fd| (L5_TABLE, fd)));
    for other in &launch.other_shards {
        fds.extend([
            ("shard pair region", other.region_fd),
            ("shard proxy region", other.proxy_region_fd),
            ("shard proxy doorbell", other.proxy_bell_fd),
        ]);
    }
    for (i, &(what, fd)) in fds.iter().enumerate() {
        if fd < FIRST_INHERITED_FD {
            return Err(WorkerError::BadSpec {
                reason: format!("{what} fd {fd} is a standard stream"),
            });
        }
        if let Some(&(other, _)) = fds[..i].iter().find(|&&(_, f)| f == fd) {
            return Err(WorkerError::BadSpec {
                reason: format!("{what} and {other} are both fd {fd}"),
            });
        }
        check_open_and_keep_private(what, fd)?;
    }

    // SAFETY: the fd was checked open above, is distinct from the other
    // fds, and the controller handed it to this process alone; the region
    // takes ownership.
    let pair = unsafe { open_pair(launch, launch.pair.region_fd) }?;
    // SAFETY: as above, for the proxy region fd.
    let proxy = unsafe { open_proxy(launch.proxy_region_fd) }?;
    let mut others = Vec::with_capacity(launch.other_shards.len());
    for other in &launch.other_shards {
        // SAFETY: each fd was checked open and distinct from every other
        // fd above, and is this process's own; each is adopted once.
        others.push(unsafe {
            ShardPair {
                pair: open_pair(launch, other.region_fd)?,
                proxy: open_proxy(other.proxy_region_fd)?,
                proxy_bell: Doorbell::from_raw_fd(other.proxy_bell_fd),
            }
        });
    }
    // SAFETY: both fds are open, distinct and ours (checked above); the
    // controller made them with eventfd.
    let (bell, proxy_bell) = unsafe {
        (
            Doorbell::from_raw_fd(launch.pair.bell_fd),
            Doorbell::from_raw_fd(launch.proxy_bell_fd),
        )
    };
    let routes = match launch.l5_table_fd {
        // SAFETY: the fd was checked open above, is distinct from the other
        // fds, and the controller handed this process its own copy of the
        // route-table memfd; the table takes ownership.
        Some(fd) => Some(
            unsafe { RouteTable::open(fd) }.map_err(|cause| WorkerError::Attach {
                what: L5_TABLE,
                fd,
                cause,
            })?,
        ),
        None => None,
    };
    Ok(Box::leak(Box::new(Shared {
        pair,
        proxy,
        bell,
        proxy_bell,
        routes,
        others,
    })))
}

/// Maps the pair region `fd` of this worker slot (of any shard) and checks
/// that it is this slot's.
///
/// # Safety
/// `fd` must be open, this process's own, and adopted only here.
unsafe fn open_pair(launch: &WorkerLaunch, fd: RawFd) -> Result<PairRegion, WorkerError> {
    // SAFETY: forwarded from the caller; the region takes ownership.
    let pair = unsafe { PairRegion::open(fd, launch.pair_layout) }.map_err(|cause| {
        WorkerError::Attach {
            what: "pair region",
            fd,
            cause,
        }
    })?;
    let header = pair.header();
    if (header.group, header.index) != (launch.group, launch.index) {
        return Err(WorkerError::BadSpec {
            reason: format!(
                "pair region (fd {fd}) belongs to group {} worker {}, not group {} worker {}",
                header.group, header.index, launch.group, launch.index
            ),
        });
    }
    Ok(pair)
}

/// Maps the proxy region `fd` (of any shard).
///
/// # Safety
/// As for [`open_pair`].
unsafe fn open_proxy(fd: RawFd) -> Result<ProxyRegion, WorkerError> {
    // SAFETY: forwarded from the caller; the region takes ownership.
    unsafe { ProxyRegion::open(fd) }.map_err(|cause| WorkerError::Attach {
        what: "proxy region",
        fd,
        cause,
    })
}

/// How errors name the route-table fd.
const L5_TABLE: &str = "L5 route table";

/// Fails unless `fd` is open, and marks it close-on-exec so processes a
/// plugin may spawn do not inherit the rings.
fn check_open_and_keep_private(what: &'static str, fd: RawFd) -> Result<(), WorkerError> {
    // SAFETY: fcntl on an fd number has no memory effects; a closed fd
    // yields EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(WorkerError::Attach {
            what,
            fd,
            cause: IpcError::last_os("fcntl on inherited fd"),
        });
    }
    Ok(())
}
