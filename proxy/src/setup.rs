//! Turning the launch spec into live resources: checks the limits (also
//! used for limits published while the proxy runs) and the
//! inherited fds (open, distinct, of the kind the spec says, bound where it
//! says), marks every one close-on-exec (nothing a proxy plugin execs
//! inherits a listener, region or doorbell), sets the sockets non-blocking,
//! and maps the proxy region and every worker slot.

use crate::dispatch::Dispatcher;
use crate::error::ProxyError;
use crate::flow::MAX_SLOTS;
use crate::tcp::TcpListenerEntry;
use crate::udp::UdpSock;
use socket2::{Socket, Type};
use spp_ipc::doorbell::Doorbell;
use spp_ipc::launch::{ListenerFd, ProxyLaunch, ProxyLimits, Transport, FIRST_INHERITED_FD};
use spp_ipc::layout::ProxyRegion;
use spp_plugin_api::abi::SppAddr;
use std::collections::HashSet;
use std::os::fd::FromRawFd;

/// Everything the spec hands over, opened.
pub struct Opened {
    /// The proxy region.
    pub region: ProxyRegion,
    /// The proxy's doorbell.
    pub bell: Doorbell,
    /// TCP listeners.
    pub listeners: Vec<TcpListenerEntry>,
    /// UDP sockets.
    pub udp: Vec<UdpSock>,
    /// Groups and worker slots.
    pub dispatch: Dispatcher,
}

/// Checks the limits the controller sent.
pub fn check_limits(limits: &ProxyLimits) -> Result<(), ProxyError> {
    match limits_problem(limits) {
        Some((field, reason)) => Err(ProxyError::BadSpec { field, reason }),
        None => Ok(()),
    }
}

/// The first limit out of range, as (field, why); `None` when all are
/// fine. Also checks limits published while the proxy runs.
pub fn limits_problem(limits: &ProxyLimits) -> Option<(&'static str, String)> {
    if limits.max_connections == 0 || limits.max_connections > MAX_SLOTS {
        return Some((
            "limits.max_connections",
            format!("{} is not in 1..={MAX_SLOTS}", limits.max_connections),
        ));
    }
    if limits.max_udp_flows == 0 || limits.max_udp_flows > MAX_SLOTS {
        return Some((
            "limits.max_udp_flows",
            format!("{} is not in 1..={MAX_SLOTS}", limits.max_udp_flows),
        ));
    }
    if limits.max_request_size == 0 {
        return Some(("limits.max_request_size", "must be at least 1 byte".into()));
    }
    if limits.max_send_buffer == 0 {
        return Some(("limits.max_send_buffer", "must be at least 1 byte".into()));
    }
    if limits.idle_timeout_ms == 0 {
        return Some(("limits.idle_timeout_ms", "must be at least 1 ms".into()));
    }
    if limits.request_timeout_ms == 0 {
        return Some(("limits.request_timeout_ms", "must be at least 1 ms".into()));
    }
    None
}

/// Checks that every inherited fd is open, not stdio, and listed once, and
/// sets its `FD_CLOEXEC` (the controller cleared it to pass it to us).
fn check_fds(launch: &ProxyLaunch) -> Result<(), ProxyError> {
    let mut seen = HashSet::new();
    for fd in launch.inherited_fds() {
        if fd < FIRST_INHERITED_FD {
            return Err(ProxyError::BadSpec {
                field: "fds",
                reason: format!("fd {fd} is stdio"),
            });
        }
        if !seen.insert(fd) {
            return Err(ProxyError::BadSpec {
                field: "fds",
                reason: format!("fd {fd} is listed twice"),
            });
        }
        // SAFETY: F_GETFD only reads the flags of an fd number.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags < 0 {
            return Err(ProxyError::BadSpec {
                field: "fds",
                reason: format!("fd {fd} is not open: {}", std::io::Error::last_os_error()),
            });
        }
        // SAFETY: F_SETFD only changes the fd flags of an fd we were given.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
            return Err(ProxyError::BadSpec {
                field: "fds",
                reason: format!(
                    "fd {fd}: cannot set close-on-exec: {}",
                    std::io::Error::last_os_error()
                ),
            });
        }
    }
    Ok(())
}

/// Checks the shard index: below the shard count, which flow ids can
/// tell apart ([`spp_ipc::flow_shard::MAX_SHARDS`]).
fn check_shard(launch: &ProxyLaunch) -> Result<(), ProxyError> {
    let max = spp_ipc::flow_shard::MAX_SHARDS;
    if launch.shards == 0 || usize::from(launch.shards) > max || launch.shard >= launch.shards {
        return Err(ProxyError::BadSpec {
            field: "shard",
            reason: format!(
                "shard {} of {} is not a shard index below a count in 1..={max}",
                launch.shard, launch.shards
            ),
        });
    }
    Ok(())
}

/// Opens everything the spec lists. Takes ownership of every fd in it.
pub fn open(launch: &ProxyLaunch) -> Result<Opened, ProxyError> {
    check_shard(launch)?;
    check_fds(launch)?;
    // SAFETY: checked open and listed once; the spec gives it to us alone.
    let region = unsafe { ProxyRegion::open(launch.proxy_region_fd) }.map_err(|source| {
        ProxyError::Region {
            what: format!("proxy region (fd {})", launch.proxy_region_fd),
            source,
        }
    })?;
    // SAFETY: as above, for the doorbell eventfd.
    let bell = unsafe { Doorbell::from_raw_fd(launch.proxy_bell_fd) };
    let mut listeners = Vec::new();
    let mut udp = Vec::new();
    for spec in &launch.listeners {
        let (sock, bound) = open_socket(spec)?;
        let local = SppAddr::from_socket_addr(bound);
        match spec.transport {
            Transport::Tcp => listeners.push(TcpListenerEntry {
                sock: mio::net::TcpListener::from_std(sock.into()),
                index: spec.index,
                local: (!bound.ip().is_unspecified()).then_some(local),
            }),
            Transport::Udp => udp.push(UdpSock {
                sock: mio::net::UdpSocket::from_std(sock.into()),
                listener: spec.index,
                local,
            }),
        }
    }
    let dispatch = Dispatcher::open(&launch.groups, launch.pair_layout)?;
    Ok(Opened {
        region,
        bell,
        listeners,
        udp,
        dispatch,
    })
}

/// Adopts one inherited socket after checking its kind and address.
fn open_socket(spec: &ListenerFd) -> Result<(Socket, std::net::SocketAddr), ProxyError> {
    let fail = |reason: String| ProxyError::Listener {
        index: spec.index,
        addr: spec.addr,
        fd: spec.fd,
        reason,
    };
    // SAFETY: checked open and listed once; the spec gives it to us alone.
    let sock = unsafe { Socket::from_raw_fd(spec.fd) };
    let kind = sock
        .r#type()
        .map_err(|e| fail(format!("not a socket: {e}")))?;
    match spec.transport {
        Transport::Tcp => {
            if kind != Type::STREAM || !sock.is_listener().unwrap_or(false) {
                return Err(fail("not a listening TCP socket".into()));
            }
        }
        Transport::Udp => {
            if kind != Type::DGRAM {
                return Err(fail("not a UDP socket".into()));
            }
        }
    }
    let bound = sock
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .ok_or_else(|| fail("has no IP address".into()))?;
    if bound.ip() != spec.addr.ip() || (spec.addr.port() != 0 && bound.port() != spec.addr.port()) {
        return Err(fail(format!("is bound to {bound}")));
    }
    sock.set_nonblocking(true)
        .map_err(|e| fail(format!("cannot make it non-blocking: {e}")))?;
    Ok((sock, bound))
}
