//! Maps what the launch spec hands a worker: its pair region (request and
//! response rings, header, counters), its own doorbell, the proxy region
//! (for the proxy's sleep flag), the proxy's doorbell and, when L5 routing
//! is on, the service's L5 route table.
//!
//! The result is leaked on purpose: the `spp_host` table, plugin threads
//! sending deferred replies or asking for L5 routes, and the SIGTERM handler
//! all point into it, and none of them can be told when it would go away.
//! It lives as long as the process, which is what the controller's memfds
//! do anyway.

use crate::error::WorkerError;
use spp_ipc::doorbell::Doorbell;
use spp_ipc::l5::table::RouteTable;
use spp_ipc::launch::{WorkerLaunch, FIRST_INHERITED_FD};
use spp_ipc::layout::{PairHeader, PairRegion, ProxyHeader, ProxyRegion};
use spp_ipc::IpcError;
use std::os::fd::RawFd;

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
}

impl Shared {
    /// The pair header (state, sequence numbers, sleep flag, counters).
    pub fn pair_header(&self) -> &PairHeader {
        self.pair.header()
    }

    /// The proxy header (the proxy's sleep flag).
    pub fn proxy_header(&self) -> &ProxyHeader {
        self.proxy.header()
    }
}

/// Checks the spec's fds and maps them. Takes ownership of the four fds
/// (five with an L5 route table).
pub fn attach(launch: &WorkerLaunch) -> Result<&'static Shared, WorkerError> {
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
    let pair = unsafe { PairRegion::open(launch.pair.region_fd, launch.pair_layout) }.map_err(
        |cause| WorkerError::Attach {
            what: "pair region",
            fd: launch.pair.region_fd,
            cause,
        },
    )?;
    let header = pair.header();
    if (header.group, header.index) != (launch.group, launch.index) {
        return Err(WorkerError::BadSpec {
            reason: format!(
                "pair region belongs to group {} worker {}, not group {} worker {}",
                header.group, header.index, launch.group, launch.index
            ),
        });
    }
    // SAFETY: as above, for the proxy region fd.
    let proxy = unsafe { ProxyRegion::open(launch.proxy_region_fd) }.map_err(|cause| {
        WorkerError::Attach {
            what: "proxy region",
            fd: launch.proxy_region_fd,
            cause,
        }
    })?;
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
    })))
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
