//! The proxy's I/O: the mio poll and its event buffer, the signal pipe,
//! the proxy doorbell, the TCP listeners, the one scratch buffer every read
//! goes into (and the UDP batch buffers), and the sources with more to give than one turn's share
//! (listeners and UDP sockets to look at again next turn).
//!
//! Accepting lives here too, up to the new socket: out of fds, the reserve
//! fd is freed to accept and close one connection (so the client is
//! refused instead of left hanging), or accepting stops until the next
//! worker scan ([`Io::accept_starved`]).

use crate::error::ProxyError;
use crate::tcp::TcpListenerEntry;
use crate::token::Source;
use crate::udp::UdpSock;
use crate::udp_batch::RecvBatch;
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use spp_ipc::doorbell::Doorbell;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// Bytes of the shared read buffer (also the largest UDP datagram): a
/// request of up to this size that is in the socket whole is framed
/// straight from it, never copied to the connection's own buffer first.
pub const SCRATCH_SIZE: usize = 256 << 10;
/// Events taken from epoll per wait.
pub const EVENTS_CAPACITY: usize = 1024;

/// What one accept gave.
pub enum Accepted {
    /// A new connection.
    Conn(TcpStream, SocketAddr),
    /// Nothing more to accept now (or the listener is unknown).
    Drained,
    /// Out of fds and no reserve: stop until the next scan.
    Starved,
    /// One connection lost (reset, refused for lack of fds): go on.
    Skipped,
}

/// Poll, signals, doorbell, listeners, scratch buffer.
pub struct Io {
    poll: Poll,
    events: Option<Events>,
    /// SIGTERM, SIGINT and SIGHUP, as a pollable pipe.
    pub signals: Signals,
    bell: Doorbell,
    /// The inherited TCP listeners.
    pub listeners: Vec<TcpListenerEntry>,
    scratch: Vec<u8>,
    /// Held open so that, out of fds, one can be freed to refuse a client.
    reserve_fd: Option<std::fs::File>,
    /// Out of fds with no reserve: accepting resumes at the next scan tick.
    pub accept_starved: bool,
    /// Listeners to accept from again next turn.
    pub pending_accepts: Vec<usize>,
    /// UDP sockets to read again next turn.
    pub pending_udp: Vec<usize>,
    /// The UDP receive buffers (when there is a UDP socket; taken while
    /// a batch is handled).
    pub udp_recv: Option<Box<RecvBatch>>,
}

impl Io {
    /// A poll with every source registered: the listeners, `udp`, the
    /// doorbell and the signal pipe.
    pub fn new(
        bell: Doorbell,
        mut listeners: Vec<TcpListenerEntry>,
        udp: &mut [UdpSock],
    ) -> Result<Self, ProxyError> {
        let poll = Poll::new().map_err(ProxyError::io("creating the poll"))?;
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])
            .map_err(ProxyError::io("installing signal handlers"))?;
        let registry = poll.registry();
        for (i, l) in listeners.iter_mut().enumerate() {
            registry
                .register(&mut l.sock, Source::Listener(i).token(), Interest::READABLE)
                .map_err(ProxyError::io("polling a TCP listener"))?;
        }
        for (i, u) in udp.iter_mut().enumerate() {
            registry
                .register(&mut u.sock, Source::Udp(i).token(), Interest::READABLE)
                .map_err(ProxyError::io("polling a UDP socket"))?;
        }
        let raw_bell = bell.raw_fd();
        registry
            .register(
                &mut SourceFd(&raw_bell),
                Source::Bell.token(),
                Interest::READABLE,
            )
            .map_err(ProxyError::io("polling the proxy doorbell"))?;
        registry
            .register(&mut signals, Source::Signals.token(), Interest::READABLE)
            .map_err(ProxyError::io("polling the signal pipe"))?;
        Ok(Io {
            poll,
            events: Some(Events::with_capacity(EVENTS_CAPACITY)),
            signals,
            bell,
            listeners,
            scratch: vec![0; SCRATCH_SIZE],
            reserve_fd: std::fs::File::open("/dev/null").ok(),
            accept_starved: false,
            pending_accepts: Vec::new(),
            pending_udp: Vec::new(),
            udp_recv: (!udp.is_empty()).then(Box::default),
        })
    }

    /// The poll's registry.
    #[inline]
    pub fn registry(&self) -> &Registry {
        self.poll.registry()
    }

    /// Waits up to `timeout` for events; returns them (hand the buffer
    /// back with [`Self::put_events`]). An interrupted wait returns none.
    pub fn wait(&mut self, timeout: Duration) -> Result<Events, ProxyError> {
        let mut events = self
            .events
            .take()
            .unwrap_or_else(|| Events::with_capacity(EVENTS_CAPACITY));
        match self.poll.poll(&mut events, Some(timeout)) {
            Ok(()) => Ok(events),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(events),
            Err(source) => Err(ProxyError::Io {
                what: "waiting for events",
                source,
            }),
        }
    }

    /// Gives the event buffer back for the next wait.
    pub fn put_events(&mut self, events: Events) {
        self.events = Some(events);
    }

    /// Takes the scratch buffer (give it back with [`Self::put_scratch`]).
    #[inline]
    pub fn take_scratch(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.scratch)
    }

    /// Gives the scratch buffer back.
    #[inline]
    pub fn put_scratch(&mut self, scratch: Vec<u8>) {
        self.scratch = scratch;
    }

    /// Empties the doorbell after it woke the loop.
    pub fn drain_bell(&self) {
        self.bell.drain();
    }

    /// Accepts one connection from listener `li`; out of fds, frees the
    /// reserve fd to refuse one (counted in `refused`).
    pub fn accept(&mut self, li: usize, refused: &mut u64) -> Accepted {
        let Some(listener) = self.listeners.get(li) else {
            return Accepted::Drained;
        };
        match listener.sock.accept() {
            Ok((stream, peer)) => Accepted::Conn(stream, peer),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Accepted::Drained,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Accepted::Skipped,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                if self.shed_one(li, refused) {
                    return Accepted::Skipped;
                }
                if !self.accept_starved {
                    tracing::error!(listener = li, "out of file descriptors: {e}");
                }
                // Retried at the next worker scan tick, not in a spin.
                self.accept_starved = true;
                Accepted::Starved
            }
            // The controller shut the listener down: the service stops.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Accepted::Drained,
            // ECONNABORTED and friends: that one connection is gone.
            Err(e) => {
                tracing::debug!(listener = li, "accept: {e}");
                Accepted::Skipped
            }
        }
    }

    /// Out of fds: frees the reserve fd to accept and close one connection,
    /// so the client is refused instead of left hanging.
    fn shed_one(&mut self, li: usize, refused: &mut u64) -> bool {
        if self.reserve_fd.take().is_none() {
            return false;
        }
        let shed = self.listeners[li].sock.accept().is_ok();
        if shed {
            *refused += 1;
        }
        self.reserve_fd = std::fs::File::open("/dev/null").ok();
        shed
    }

    /// Stops polling the listeners and `udp` (a drain). Deregistered, not
    /// closed: the controller owns them and hands them to the next proxy.
    pub fn stop_listening(&mut self, udp: &mut [UdpSock]) {
        let registry = self.poll.registry();
        for l in &mut self.listeners {
            let _ = registry.deregister(&mut l.sock);
        }
        for u in udp {
            let _ = registry.deregister(&mut u.sock);
        }
        self.pending_accepts.clear();
        self.pending_udp.clear();
    }
}
