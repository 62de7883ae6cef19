//! The event loop: one thread, one epoll (mio, edge-triggered), the
//! listening sockets, the connections and a waker for [`StopHandle::stop`].
//!
//! Tokens: 0 is the waker, `1..=MAX_LISTENERS` the sockets asked for (in
//! order), then one per connection slot. Every socket gets a budget per
//! turn (accepts, reads, datagrams); one that used it all is revisited the
//! next turn, with a zero poll timeout, so a flooding client cannot starve
//! the others.

use super::config::{Limits, Listen, Proto};
use super::error::DirectError;
use super::tcp::{Conn, Next};
use super::udp;
use mio::net::{TcpListener, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The most sockets one server can listen on.
pub const MAX_LISTENERS: usize = 1024;

/// The waker's token.
const WAKER_TOKEN: Token = Token(0);
/// Token of the first listening socket.
const FIRST_LISTENER_TOKEN: usize = 1;
/// Token of connection slot 0.
const FIRST_CONN_TOKEN: usize = FIRST_LISTENER_TOKEN + MAX_LISTENERS;
/// Events taken per `epoll_wait`.
const EVENTS_CAPACITY: usize = 1024;
/// Bytes of the shared read buffer: fits any UDP datagram, and a TCP read
/// this size or larger is a sign more may wait.
const SCRATCH_BYTES: usize = 64 * 1024;
/// The `listen` backlog (the kernel caps it at `somaxconn`).
const LISTEN_BACKLOG: i32 = 4096;
/// Connections accepted from one listener per turn.
const MAX_ACCEPTS_PER_TURN: usize = 128;
/// Reads from one connection per turn.
const MAX_READS_PER_TURN: usize = 16;
/// Datagrams received from one UDP socket per turn.
const MAX_DATAGRAMS_PER_TURN: usize = 256;
/// How long accepting pauses when the process is out of file descriptors
/// (the backlog raises no new edge, so the listeners are retried then).
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

/// A bound socket.
enum Bound {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// Stops a running [`Server`] from any thread.
#[derive(Clone)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl StopHandle {
    /// Asks the server to return from [`Server::run`]; it does so at once.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::Release);
        // A failed wake leaves the flag set; nothing better to do here.
        let _ = self.waker.wake();
    }
}

/// The direct echo server (bound, not yet running).
pub struct Server {
    poll: Poll,
    sockets: Vec<Bound>,
    listening: Vec<Listen>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    scratch: Box<[u8]>,
    limits: Limits,
    stop: StopHandle,
    /// Tokens to revisit next turn (their budget ran out).
    revisit: Vec<Token>,
    /// The list being revisited this turn (kept for its capacity).
    revisiting: Vec<Token>,
    /// Accepting failed for want of file descriptors: retry the TCP
    /// listeners after [`ACCEPT_RETRY`].
    accept_starved: bool,
}

impl Server {
    /// Binds every socket in `listen` (TCP with SO_REUSEADDR) and prepares
    /// the event loop.
    pub fn bind(listen: &[Listen], limits: Limits) -> Result<Self, DirectError> {
        if listen.is_empty() {
            return Err(DirectError::NoListeners);
        }
        if listen.len() > MAX_LISTENERS {
            return Err(DirectError::TooManyListeners {
                count: listen.len(),
                max: MAX_LISTENERS,
            });
        }
        let poll_err = |what| move |source| DirectError::Poll { what, source };
        let poll = Poll::new().map_err(poll_err("create epoll"))?;
        let waker = Waker::new(poll.registry(), WAKER_TOKEN).map_err(poll_err("create waker"))?;
        let mut sockets = Vec::with_capacity(listen.len());
        let mut listening = Vec::with_capacity(listen.len());
        for (i, want) in listen.iter().enumerate() {
            let (mut socket, addr) = bind_one(want)?;
            let token = Token(FIRST_LISTENER_TOKEN + i);
            match &mut socket {
                Bound::Tcp(l) => poll.registry().register(l, token, Interest::READABLE),
                Bound::Udp(u) => poll.registry().register(u, token, Interest::READABLE),
            }
            .map_err(poll_err("register a listening socket"))?;
            sockets.push(socket);
            listening.push(Listen {
                proto: want.proto,
                addr,
            });
        }
        Ok(Server {
            poll,
            sockets,
            listening,
            conns: Vec::new(),
            free: Vec::new(),
            scratch: vec![0u8; SCRATCH_BYTES].into_boxed_slice(),
            limits,
            stop: StopHandle {
                flag: Arc::new(AtomicBool::new(false)),
                waker: Arc::new(waker),
            },
            revisit: Vec::new(),
            revisiting: Vec::new(),
            accept_starved: false,
        })
    }

    /// The sockets as bound (port 0 replaced by the real port), in the
    /// order asked for.
    pub fn listening(&self) -> &[Listen] {
        &self.listening
    }

    /// A handle that stops [`run`](Self::run) from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Binds and runs the server on a new thread.
    pub fn spawn(listen: &[Listen], limits: Limits) -> Result<Running, DirectError> {
        let mut server = Server::bind(listen, limits)?;
        let listening = server.listening.clone();
        let stop = server.stop_handle();
        let thread = std::thread::Builder::new()
            .name("spp-echo-direct".into())
            .spawn(move || server.run())
            .map_err(|source| DirectError::Poll {
                what: "start the server thread",
                source,
            })?;
        Ok(Running {
            listening,
            stop,
            thread: Some(thread),
        })
    }

    /// Serves until [`StopHandle::stop`]. Connections still open are
    /// closed when the server is dropped.
    pub fn run(&mut self) -> Result<(), DirectError> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        while !self.stop.flag.load(Ordering::Acquire) {
            let timeout = if !self.revisit.is_empty() {
                Some(Duration::ZERO)
            } else if self.accept_starved {
                Some(ACCEPT_RETRY)
            } else {
                None
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(DirectError::Poll {
                        what: "wait for events",
                        source,
                    })
                }
            }
            std::mem::swap(&mut self.revisit, &mut self.revisiting);
            if std::mem::take(&mut self.accept_starved) {
                for (i, socket) in self.sockets.iter().enumerate() {
                    if matches!(socket, Bound::Tcp(_)) {
                        self.revisiting.push(Token(FIRST_LISTENER_TOKEN + i));
                    }
                }
            }
            for event in events.iter() {
                let readable = event.is_readable() || event.is_read_closed() || event.is_error();
                self.dispatch(event.token(), readable, event.is_writable());
            }
            let mut again = std::mem::take(&mut self.revisiting);
            for token in again.drain(..) {
                self.dispatch(token, true, false);
            }
            self.revisiting = again;
        }
        Ok(())
    }

    fn dispatch(&mut self, token: Token, readable: bool, writable: bool) {
        match token.0 {
            0 => {} // The waker: the loop condition looks at the flag.
            t if t < FIRST_CONN_TOKEN => self.socket_ready(t - FIRST_LISTENER_TOKEN),
            t => self.conn_ready(t - FIRST_CONN_TOKEN, readable, writable),
        }
    }

    fn socket_ready(&mut self, index: usize) {
        let drained = match self.sockets.get(index) {
            Some(Bound::Udp(sock)) => udp::on_readable(
                sock,
                &mut self.scratch,
                self.limits.max_payload,
                MAX_DATAGRAMS_PER_TURN,
            ),
            Some(Bound::Tcp(_)) => self.accept(index),
            None => true,
        };
        if !drained {
            self.revisit.push(Token(FIRST_LISTENER_TOKEN + index));
        }
    }

    /// Accepts (within the budget) from TCP listener `index`. Returns
    /// whether it would block now.
    fn accept(&mut self, index: usize) -> bool {
        for _ in 0..MAX_ACCEPTS_PER_TURN {
            let Some(Bound::Tcp(listener)) = self.sockets.get(index) else {
                return true;
            };
            match listener.accept() {
                Ok((stream, _peer)) => self.add_conn(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    self.accept_starved = true;
                    return true;
                }
                // EINTR, ECONNABORTED: that one attempt is gone.
                Err(_) => {}
            }
        }
        false
    }

    fn add_conn(&mut self, stream: mio::net::TcpStream) {
        // Best effort: replies go out as soon as they are written.
        let _ = stream.set_nodelay(true);
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        let mut conn = Conn::new(stream);
        let registered = self.poll.registry().register(
            conn.stream_mut(),
            Token(FIRST_CONN_TOKEN + slot),
            Interest::READABLE | Interest::WRITABLE,
        );
        if registered.is_ok() {
            self.conns[slot] = Some(conn);
        } else {
            self.free.push(slot); // Dropping `conn` closes it.
        }
    }

    fn conn_ready(&mut self, slot: usize, readable: bool, writable: bool) {
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            return; // Closed earlier this turn.
        };
        let mut next = Next::Wait;
        if writable {
            next = conn.on_writable(&mut self.scratch, &self.limits, MAX_READS_PER_TURN);
        }
        if readable && next == Next::Wait {
            next = conn.on_readable(&mut self.scratch, &self.limits, MAX_READS_PER_TURN);
        }
        match next {
            Next::Wait => {}
            Next::Again => self.revisit.push(Token(FIRST_CONN_TOKEN + slot)),
            Next::Close => {
                if let Some(mut conn) = self.conns[slot].take() {
                    let _ = self.poll.registry().deregister(conn.stream_mut());
                }
                self.free.push(slot);
            }
        }
    }
}

/// Creates, binds (and for TCP, listens on) one socket; returns it with
/// its bound address.
fn bind_one(want: &Listen) -> Result<(Bound, SocketAddr), DirectError> {
    let err = |what| {
        move |source| DirectError::Bind {
            what,
            proto: want.proto,
            addr: want.addr,
            source,
        }
    };
    let (ty, protocol) = match want.proto {
        Proto::Tcp => (Type::STREAM, Protocol::TCP),
        Proto::Udp => (Type::DGRAM, Protocol::UDP),
    };
    let socket = Socket::new(Domain::for_address(want.addr), ty, Some(protocol))
        .map_err(err("create a socket for"))?;
    socket
        .set_nonblocking(true)
        .map_err(err("make non-blocking"))?;
    if want.proto == Proto::Tcp {
        socket
            .set_reuse_address(true)
            .map_err(err("set SO_REUSEADDR on"))?;
    }
    socket
        .bind(&SockAddr::from(want.addr))
        .map_err(err("bind"))?;
    let bound = socket
        .local_addr()
        .map_err(err("read the bound address of"))?
        .as_socket()
        .ok_or_else(|| err("read the bound address of")(io::ErrorKind::InvalidData.into()))?;
    let socket = match want.proto {
        Proto::Tcp => {
            socket.listen(LISTEN_BACKLOG).map_err(err("listen on"))?;
            Bound::Tcp(TcpListener::from_std(socket.into()))
        }
        Proto::Udp => Bound::Udp(UdpSocket::from_std(socket.into())),
    };
    Ok((socket, bound))
}

/// A server running on its own thread ([`Server::spawn`]); stopped and
/// joined when dropped.
pub struct Running {
    listening: Vec<Listen>,
    stop: StopHandle,
    thread: Option<JoinHandle<Result<(), DirectError>>>,
}

impl Running {
    /// The sockets as bound, in the order asked for.
    pub fn listening(&self) -> &[Listen] {
        &self.listening
    }

    /// The first bound address of `proto`, if any.
    pub fn addr(&self, proto: Proto) -> Option<SocketAddr> {
        self.listening
            .iter()
            .find(|l| l.proto == proto)
            .map(|l| l.addr)
    }

    /// Stops the server and waits for its thread; returns how it ended.
    pub fn stop(mut self) -> Result<(), DirectError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), DirectError> {
        self.stop.stop();
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| DirectError::Panicked)?,
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spp_plugin_api::framing::encode_u32_be_prefixed;
    use std::io::{Read, Write};

    #[test]
    fn in_process_server_echoes_and_stops() {
        let running = Server::spawn(
            &[Listen::tcp("127.0.0.1:0".parse().unwrap())],
            Limits::default(),
        )
        .unwrap();
        let addr = running.addr(Proto::Tcp).unwrap();
        assert_ne!(addr.port(), 0);
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        let frame = encode_u32_be_prefixed(b"hello");
        client.write_all(&frame).unwrap();
        let mut got = vec![0u8; frame.len()];
        client.read_exact(&mut got).unwrap();
        assert_eq!(got, frame);
        running.stop().unwrap();
    }

    #[test]
    fn nothing_to_listen_on_is_an_error() {
        assert!(matches!(
            Server::bind(&[], Limits::default()),
            Err(DirectError::NoListeners)
        ));
    }
}
