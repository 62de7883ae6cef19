//! Binds every configured listener in the controller, so the sockets
//! outlive any proxy: a restarted proxy inherits the same listening fds and
//! no connection is refused meanwhile.
//!
//! With `proxy.processes = N` > 1 every address gets N sockets, one per
//! proxy shard, all with `SO_REUSEPORT` (the kernel spreads connections
//! and datagrams over them by a hash of the peer's address): the first is
//! bound as configured (port 0 resolves to a free port), the others to the
//! address it got. All are bound before any child starts. With one
//! process each address has one plain socket, as before.
//!
//! When the service stops, [`BoundListener::close`] ends listening before
//! the proxy drains: newcomers are refused at once instead of waiting in
//! the backlog to be reset when the proxy exits, and the port is free for
//! the next start.

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use spp_config::defaults;
use spp_config::{Config, ListenAddr};
use spp_ipc::launch::{ListenerFd, Transport};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

/// Why a listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// A socket call failed.
    #[error("proxy.listen[{index}] {addr}: {what}")]
    Socket {
        /// Index in `proxy.listen`.
        index: usize,
        /// The configured address.
        addr: ListenAddr,
        /// The call that failed.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// More listeners than a listener index can count.
    #[error("proxy.listen: {0} listeners are too many")]
    TooMany(usize),
}

/// A bound (and, for TCP, listening) socket.
pub struct BoundListener {
    /// Index in `proxy.listen`.
    pub index: u16,
    /// The proxy shard it is for (0 with one proxy process).
    pub shard: u16,
    /// What the config asked for.
    pub config: ListenAddr,
    /// The address actually bound (differs when the port was 0).
    pub local: SocketAddr,
    /// `None` once closed.
    socket: Option<Socket>,
}

impl BoundListener {
    /// The launch-spec entry for this listener.
    /// Once closed, the fd is -1 (the service is stopping: no proxy is
    /// started any more).
    pub fn launch_fd(&self) -> ListenerFd {
        ListenerFd {
            index: self.index,
            transport: self.config.transport,
            addr: self.local,
            fd: self.socket.as_ref().map_or(-1, AsRawFd::as_raw_fd),
        }
    }

    /// The service stops: a TCP listener stops listening — `shutdown`
    /// acts on the socket, so for the proxy's inherited copy too: a
    /// connect is refused at once, and the connections still in the
    /// backlog are reset — and the controller's fd is closed. The port
    /// can then be bound again (`SO_REUSEADDR`) even while the draining
    /// proxy still holds its copy. Idempotent.
    pub fn close(&mut self) {
        let Some(socket) = self.socket.take() else {
            return;
        };
        if self.config.transport == Transport::Tcp {
            if let Err(e) = socket.shutdown(std::net::Shutdown::Read) {
                tracing::warn!(
                    "proxy.listen[{}] {}: stop listening: {e}",
                    self.index,
                    self.local
                );
            }
        }
    }
}

/// Binds every `proxy.listen` address (SO_REUSEADDR; IPv6 only for v6
/// addresses; TCP listening with [`defaults::LISTEN_BACKLOG`]), once per
/// proxy shard (`SO_REUSEPORT` when there are several; see the module
/// docs), in config order, the shards of one address in a row. The fds
/// are close-on-exec; the launcher clears that for the proxy.
pub fn bind_all(cfg: &Config) -> Result<Vec<BoundListener>, ListenError> {
    let shards = cfg.proxy.processes.max(1);
    let mut all = Vec::with_capacity(cfg.proxy.listen.len() * usize::from(shards));
    for (index, addr) in cfg.proxy.listen.iter().enumerate() {
        if shards == 1 {
            all.push(bind(index, *addr, None)?);
            continue;
        }
        let first = bind(index, *addr, Some((0, addr.addr)))?;
        // The others join the port the first one got.
        let local = first.local;
        all.push(first);
        for shard in 1..shards {
            all.push(bind(index, *addr, Some((shard, local)))?);
        }
    }
    Ok(all)
}

/// The listeners of proxy shard `shard`.
pub fn of_shard(all: &[BoundListener], shard: u16) -> impl Iterator<Item = &BoundListener> {
    all.iter().filter(move |l| l.shard == shard)
}

/// One socket per configured address (shard 0's): what status, logs and L5
/// registration show.
pub fn addresses(all: &[BoundListener]) -> impl Iterator<Item = &BoundListener> {
    of_shard(all, 0)
}

/// Binds `config`; `shared`: `SO_REUSEPORT`, for `(shard, at this
/// address)`.
fn bind(
    index: usize,
    config: ListenAddr,
    shared: Option<(u16, SocketAddr)>,
) -> Result<BoundListener, ListenError> {
    let fail = |what: &'static str| {
        move |source| ListenError::Socket {
            index,
            addr: config,
            what,
            source,
        }
    };
    let (ty, protocol) = match config.transport {
        Transport::Tcp => (Type::STREAM, Protocol::TCP),
        Transport::Udp => (Type::DGRAM, Protocol::UDP),
    };
    let socket = Socket::new(Domain::for_address(config.addr), ty, Some(protocol))
        .map_err(fail("socket"))?;
    socket
        .set_reuse_address(true)
        .map_err(fail("SO_REUSEADDR"))?;
    if config.addr.is_ipv6() {
        socket.set_only_v6(true).map_err(fail("IPV6_V6ONLY"))?;
    }
    if shared.is_some() {
        socket.set_reuse_port(true).map_err(fail("SO_REUSEPORT"))?;
    }
    let (shard, at) = shared.unwrap_or((0, config.addr));
    socket.bind(&SockAddr::from(at)).map_err(fail("bind"))?;
    if config.transport == Transport::Tcp {
        socket
            .listen(defaults::LISTEN_BACKLOG)
            .map_err(fail("listen"))?;
    }
    let local = socket
        .local_addr()
        .map_err(fail("getsockname"))?
        .as_socket()
        .ok_or_else(|| fail("getsockname")(std::io::Error::other("not an IP address")))?;
    let index = u16::try_from(index).map_err(|_| ListenError::TooMany(index + 1))?;
    Ok(BoundListener {
        index,
        shard,
        config,
        local,
        socket: Some(socket),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use spp_config::validate::parse_listen;

    #[test]
    fn port_zero_reports_the_bound_port_and_tcp_listens() {
        let l = bind(0, parse_listen("tcp://127.0.0.1:0").unwrap(), None).unwrap();
        assert_ne!(l.local.port(), 0);
        std::net::TcpStream::connect(l.local).unwrap();
        let u = bind(1, parse_listen("udp://[::1]:0").unwrap(), None).unwrap();
        assert!(u.local.is_ipv6());
        assert_eq!(u.launch_fd().index, 1);
    }

    #[test]
    fn a_closed_listener_refuses_at_once_and_frees_its_port() {
        let mut l = bind(0, parse_listen("tcp://127.0.0.1:0").unwrap(), None).unwrap();
        // As the proxy's inherited copy would.
        let copy = l.socket.as_ref().unwrap().try_clone().unwrap();
        l.close();
        l.close();
        assert_eq!(l.launch_fd().fd, -1);
        let refused = std::net::TcpStream::connect(l.local).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        let again = bind(
            1,
            ListenAddr {
                transport: Transport::Tcp,
                addr: l.local,
            },
            None,
        );
        assert!(again.is_ok(), "the port is still taken");
        drop(copy);
    }

    #[test]
    fn a_taken_address_names_the_listener() {
        let first = bind(0, parse_listen("tcp://127.0.0.1:0").unwrap(), None).unwrap();
        let again = ListenAddr {
            transport: Transport::Tcp,
            addr: first.local,
        };
        let err = bind(3, again, None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("proxy.listen[3]"), "{err}");
        assert!(err.contains("bind"), "{err}");
    }

    #[test]
    fn every_shard_gets_its_own_socket_on_the_port_the_first_got() {
        let tcp = parse_listen("tcp://127.0.0.1:0").unwrap();
        let first = bind(0, tcp, Some((0, tcp.addr))).unwrap();
        let second = bind(0, tcp, Some((1, first.local))).unwrap();
        assert_eq!((first.shard, second.shard), (0, 1));
        assert_eq!(first.local, second.local);
        assert_ne!(first.launch_fd().fd, second.launch_fd().fd);
        let udp = parse_listen("udp://127.0.0.1:0").unwrap();
        let u0 = bind(1, udp, Some((0, udp.addr))).unwrap();
        let u1 = bind(1, udp, Some((1, u0.local))).unwrap();
        assert_eq!(u0.local, u1.local);
        // Connections reach the shared port; closing every socket frees it.
        std::net::TcpStream::connect(first.local).unwrap();
        let all = [first, second, u0, u1];
        assert_eq!(of_shard(&all, 1).count(), 2);
        assert_eq!(addresses(&all).map(|l| l.index).collect::<Vec<_>>(), [0, 1]);
        let mut all = all;
        for l in &mut all {
            l.close();
        }
        let refused = std::net::TcpStream::connect(all[0].local).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}
