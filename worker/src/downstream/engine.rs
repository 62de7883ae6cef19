//! [`Engine`]: the worker's one epoll set (via mio) over its doorbell and
//! every downstream socket, and the sockets themselves: a slab of
//! connections, each owned by the runtime slot of the micro-thread using
//! it, or idle in its destination's keep-alive pool.
//!
//! A socket is registered once, when opened, with its slab key as token
//! (edge-triggered, readable and writable), and stays registered while
//! pooled: an event for an idle connection means the peer closed it or
//! sent something unasked, and it is closed at once. An event for an
//! owned connection names the slot to resume; the micro-thread then does
//! its non-blocking I/O until `WouldBlock` (see [`super::leg`]).
//!
//! The engine lives in a thread-local of the worker's main thread
//! ([`with`]): the scheduler polls it between run slices and the
//! micro-threads open and release sockets in theirs; neither ever holds it
//! across a suspension.

use mio::net::{TcpStream, UdpSocket};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use spp_ipc::doorbell::Doorbell;
use spp_ipc::record::monotonic_ns;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::Duration;

/// The doorbell's token (no slab key reaches it).
const DOORBELL: Token = Token(usize::MAX);
/// Events taken per `epoll_wait`.
const EVENTS_PER_POLL: usize = 256;
/// A pooled connection idle longer than this is closed instead of reused.
pub const IDLE_KEEP_NS: u64 = 60 * 1_000_000_000;
/// Idle connections kept per destination; more are closed when released.
pub const IDLE_PER_DESTINATION: usize = 1024;

/// A downstream socket.
pub enum Socket {
    /// A keep-alive TCP connection.
    Tcp(TcpStream),
    /// A connected UDP socket (one call's).
    Udp(UdpSocket),
}

/// One downstream connection.
struct Conn {
    socket: Socket,
    dest: SocketAddr,
    /// The runtime slot using it; `None` while pooled.
    owner: Option<u32>,
    /// When it was last released to the pool (ns).
    idle_since: u64,
}

/// Which connection of the slab.
pub type ConnId = usize;

/// The epoll set and the downstream connections of one worker.
pub struct Engine {
    poll: Poll,
    events: Events,
    conns: Slab<Conn>,
    idle: HashMap<SocketAddr, Vec<ConnId>>,
    /// Connections with an owner.
    owned: usize,
    /// Slots a socket event was for, since the last [`Engine::take_ready`].
    ready: Vec<u32>,
}

thread_local! {
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
}

/// Installs this thread's engine (the worker's main thread, micro-thread
/// mode), its epoll set holding `bell`.
pub fn install(bell: &Doorbell) -> io::Result<()> {
    let poll = Poll::new()?;
    let fd: RawFd = bell.raw_fd();
    poll.registry()
        .register(&mut SourceFd(&fd), DOORBELL, Interest::READABLE)?;
    let engine = Engine {
        poll,
        events: Events::with_capacity(EVENTS_PER_POLL),
        conns: Slab::new(),
        idle: HashMap::new(),
        owned: 0,
        ready: Vec::new(),
    };
    ENGINE.with(|slot| *slot.borrow_mut() = Some(engine));
    Ok(())
}

/// Runs `f` on this thread's engine; `None` when there is none (plain
/// mode, another thread) or it is in use further up this stack.
pub fn with<R>(f: impl FnOnce(&mut Engine) -> R) -> Option<R> {
    ENGINE
        .try_with(|slot| slot.try_borrow_mut().ok()?.as_mut().map(f))
        .ok()
        .flatten()
}

impl Engine {
    /// Whether any connection is in use (a poll can find events).
    pub fn busy(&self) -> bool {
        self.owned > 0
    }

    /// Waits up to `timeout` (zero: just looks) for events; the slots they
    /// are for go to the ready list, and a rung doorbell is cleared.
    /// Returns whether the doorbell was rung.
    pub fn poll(&mut self, bell: &Doorbell, timeout: Duration) -> bool {
        if let Err(err) = self.poll.poll(&mut self.events, Some(timeout)) {
            if err.kind() != io::ErrorKind::Interrupted {
                tracing::warn!(%err, "epoll_wait failed");
            }
            return false;
        }
        let mut rung = false;
        let mut dead = Vec::new();
        for event in self.events.iter() {
            let token = event.token();
            if token == DOORBELL {
                rung = true;
                continue;
            }
            match self.conns.get(token.0).map(|conn| conn.owner) {
                Some(Some(slot)) => self.ready.push(slot),
                Some(None) => dead.push(token.0),
                None => {}
            }
        }
        for id in dead {
            self.close_idle(id);
        }
        if rung {
            bell.drain();
        }
        rung
    }

    /// Moves the ready slots into `out` (cleared first).
    pub fn take_ready(&mut self, out: &mut Vec<u32>) {
        out.clear();
        std::mem::swap(out, &mut self.ready);
    }

    /// Whether slots are ready to resume.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// A TCP connection to `dest` for `owner`: a pooled one (`true`) if
    /// one is fresh enough, else a new one whose non-blocking connect is
    /// under way (`false`).
    pub fn open_tcp(&mut self, dest: SocketAddr, owner: u32) -> io::Result<(ConnId, bool)> {
        let now = monotonic_ns();
        while let Some(id) = self.idle.get_mut(&dest).and_then(Vec::pop) {
            let fresh = self
                .conns
                .get(id)
                .is_some_and(|conn| now.saturating_sub(conn.idle_since) < IDLE_KEEP_NS);
            if fresh {
                self.adopt(id, owner);
                return Ok((id, true));
            }
            self.remove(id);
        }
        let stream = TcpStream::connect(dest)?;
        // Small requests and answers: never wait for Nagle.
        stream.set_nodelay(true)?;
        Ok((self.insert(Socket::Tcp(stream), dest, owner)?, false))
    }

    /// A fresh UDP socket connected to `dest`, for `owner`.
    pub fn open_udp(&mut self, dest: SocketAddr, owner: u32) -> io::Result<ConnId> {
        let local: SocketAddr = if dest.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local)?;
        socket.connect(dest)?;
        self.insert(Socket::Udp(socket), dest, owner)
    }

    /// The socket of `id`.
    pub fn socket(&mut self, id: ConnId) -> Option<&mut Socket> {
        self.conns.get_mut(id).map(|conn| &mut conn.socket)
    }

    /// Gives `id` back: to its destination's pool when `keep` (and the
    /// pool has room), else closed.
    pub fn release(&mut self, id: ConnId, keep: bool) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.owner.take().is_some() {
            self.owned -= 1;
        }
        let pool = self.idle.entry(conn.dest).or_default();
        if keep && matches!(conn.socket, Socket::Tcp(_)) && pool.len() < IDLE_PER_DESTINATION {
            conn.idle_since = monotonic_ns();
            pool.push(id);
        } else {
            self.remove(id);
        }
    }

    fn insert(&mut self, mut socket: Socket, dest: SocketAddr, owner: u32) -> io::Result<ConnId> {
        let entry = self.conns.vacant_entry();
        let token = Token(entry.key());
        let interest = Interest::READABLE | Interest::WRITABLE;
        let registry = self.poll.registry();
        match &mut socket {
            Socket::Tcp(stream) => registry.register(stream, token, interest)?,
            Socket::Udp(udp) => registry.register(udp, token, interest)?,
        }
        let id = entry.key();
        entry.insert(Conn {
            socket,
            dest,
            owner: Some(owner),
            idle_since: 0,
        });
        self.owned += 1;
        Ok(id)
    }

    fn adopt(&mut self, id: ConnId, owner: u32) {
        if let Some(conn) = self.conns.get_mut(id) {
            if conn.owner.replace(owner).is_none() {
                self.owned += 1;
            }
        }
    }

    /// An idle connection had an event: unless it is a late edge of its
    /// last call (nothing to read: a peek would block), the peer closed it
    /// or spoke out of turn, so it leaves its pool and is closed.
    fn close_idle(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        if conn.owner.is_some() {
            return;
        }
        if let Socket::Tcp(stream) = &conn.socket {
            let mut probe = [0u8; 1];
            if matches!(stream.peek(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
                return;
            }
        }
        if let Some(pool) = self.idle.get_mut(&conn.dest) {
            pool.retain(|&other| other != id);
        }
        self.remove(id);
    }

    /// Deregisters and closes `id` (it is out of every pool).
    fn remove(&mut self, id: ConnId) {
        if !self.conns.contains(id) {
            return;
        }
        let mut conn = self.conns.remove(id);
        if conn.owner.is_some() {
            self.owned -= 1;
        }
        let registry = self.poll.registry();
        // Closing the fd removes it from the epoll set anyway; deregister
        // first so a duplicate of it (none here) could not linger.
        let _ = match &mut conn.socket {
            Socket::Tcp(stream) => registry.deregister(stream),
            Socket::Udp(udp) => registry.deregister(udp),
        };
    }
}
