//! One TCP connection's state and buffers, and the pool the buffers come
//! from.
//!
//! Memory: an idle connection owns no buffer. Reads go into the loop's one
//! shared scratch buffer; a connection takes a buffer from the [`BufPool`]
//! only while it holds a partial request (`rbuf`) or response bytes the
//! socket has not taken yet (`wbuf`), and gives it back as soon as it is
//! empty again.
//!
//! The send buffer is read from an offset (`wpos`); the unsent bytes are
//! moved to its front only when appending would otherwise grow it, so
//! queueing a response behind a partly written one copies it once. A
//! response of at least [`DIRECT_WRITE_MIN`] bytes with nothing pending
//! before it is written to the socket at once, straight from the response
//! ring: only what the socket does not take is copied. Smaller ones wait
//! for the turn's one flush, so many small answers to one connection cost
//! one `write`.

use crate::order::{Dest, Order, Origin};
use crate::partial::PartialLink;
use mio::net::TcpStream;
use spp_plugin_api::abi::SppConnInfo;
use std::io::{self, Write};

/// Buffers kept for reuse at most.
pub const POOL_MAX_BUFFERS: usize = 64;
/// A buffer grown beyond this is freed instead of pooled.
pub const POOL_MAX_CAPACITY: usize = 64 << 10;

/// A response at least this long, with nothing pending before it, is
/// written when it is queued rather than copied for the turn's flush: the
/// copy (and the buffer it needs) costs more than the `write` it would
/// share with other answers.
pub const DIRECT_WRITE_MIN: usize = 16 << 10;

/// Reusable byte buffers, so steady traffic allocates nothing.
#[derive(Debug, Default)]
pub struct BufPool {
    bufs: Vec<Vec<u8>>,
}

impl BufPool {
    /// An empty buffer, pooled if one is available.
    pub fn get(&mut self) -> Vec<u8> {
        self.bufs.pop().unwrap_or_default()
    }

    /// Returns `buf` to the pool (or frees it if it is large or the pool is
    /// full).
    pub fn put(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() != 0
            && buf.capacity() <= POOL_MAX_CAPACITY
            && self.bufs.len() < POOL_MAX_BUFFERS
        {
            buf.clear();
            self.bufs.push(buf);
        }
    }
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Reading and framing.
    Open,
    /// Framing is on hold until its requests in flight have left: they sit
    /// on a worker that takes no more (draining, or gone and about to be
    /// failed), and the next one must not overtake them on another worker.
    /// The unframed bytes wait in `rbuf` and the socket is not read
    /// meanwhile (see `tcp.rs`).
    Held,
    /// The peer shut its sending side (read returned 0): closes once every
    /// request is answered and flushed.
    PeerClosed,
    /// Closes once every pending byte is written; input is ignored.
    /// `held`: framing was on hold when the close was asked; its unframed
    /// bytes are dropped once its requests in flight have left.
    Closing {
        /// Was [`ConnState::Held`].
        held: bool,
    },
}

/// Why response bytes could not be queued.
#[derive(Debug)]
pub enum QueueError {
    /// The client does not read: the send buffer would pass its bound.
    Slow,
    /// The socket failed.
    Io(io::Error),
}

/// One accepted TCP connection.
#[derive(Debug)]
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    /// Connection info handed to every hook (`flow` included).
    pub info: SppConnInfo,
    /// Bytes not framed yet: a request not complete yet, or, while held,
    /// whatever the last read brought (empty, capacity 0 when none).
    pub rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    /// Loop clock (ms) of the last byte read or written.
    pub last_active_ms: u64,
    /// Where it is in its life.
    pub state: ConnState,
    /// Listed in the clients' to-flush list this turn.
    pub in_flush_list: bool,
    /// Listed in the clients' read-again list.
    pub in_read_list: bool,
    /// Listed there to be read until its socket would block (not only
    /// until a short read).
    pub read_until_empty: bool,
    /// Its place among the connections holding a partial request
    /// ([`crate::partial`]).
    pub partial: PartialLink,
    /// The plugin's context for it (`spp_conn_open`, made at its first
    /// framing when the plugin has `spp_input_ctx`; an address, handed
    /// back to the plugin only), `None` until then.
    pub plugin_ctx: Option<usize>,
    /// Its unfinished requests and the answers held for request order
    /// ([`crate::order`]).
    pub order: Order,
    /// The group `spp_route` gave the first unframed request when framing
    /// went on hold for it (a slot of that group held an earlier
    /// unfinished request of this connection, see
    /// [`Order::may_push`]); 0 when none. Framing again uses it rather
    /// than routing the request twice.
    pub routed: u32,
}

impl Conn {
    /// A fresh connection with no buffers.
    pub fn new(stream: TcpStream, info: SppConnInfo, now_ms: u64) -> Self {
        Conn {
            stream,
            info,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            last_active_ms: now_ms,
            state: ConnState::Open,
            in_flush_list: false,
            in_read_list: false,
            read_until_empty: false,
            partial: PartialLink::default(),
            plugin_ctx: None,
            order: Order::default(),
            routed: 0,
        }
    }

    /// Whether the socket is read and its bytes framed (not while a close
    /// waits its turn behind earlier answers).
    #[inline]
    pub fn reads(&self) -> bool {
        self.state == ConnState::Open && !self.order.close_held()
    }

    /// Whether it closes once flushed.
    #[inline]
    pub fn is_closing(&self) -> bool {
        matches!(self.state, ConnState::Closing { .. })
    }

    /// Whether its framing is on hold (closing or not).
    #[inline]
    pub fn is_held(&self) -> bool {
        matches!(
            self.state,
            ConnState::Held | ConnState::Closing { held: true }
        )
    }

    /// Asks it to close once its pending bytes are written.
    #[inline]
    pub fn close_after_flush(&mut self) {
        let held = self.is_held();
        self.state = ConnState::Closing { held };
    }

    /// Response bytes waiting for the socket.
    #[inline]
    pub fn pending(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Whether the connection has nothing left to do and should close now:
    /// asked to close and flushed, or the peer is gone and every request
    /// was answered and flushed. `in_flight`: its requests in flight.
    pub fn is_finished(&self, in_flight: u32) -> bool {
        self.pending() == 0
            && match self.state {
                ConnState::Closing { .. } => true,
                ConnState::PeerClosed => in_flight == 0,
                ConnState::Open | ConnState::Held => false,
            }
    }

    /// Gives its buffers back to the pool.
    pub fn release_buffers(&mut self, pool: &mut BufPool) {
        pool.put(std::mem::take(&mut self.rbuf));
        pool.put(std::mem::take(&mut self.wbuf));
        self.wpos = 0;
        self.order.clear(pool);
    }

    /// Asks it to close once its earlier answers are out: now if `origin`
    /// answers the oldest unfinished request, else held in request order
    /// (it reads no more meanwhile).
    pub fn close_in_order(&mut self, origin: Origin, pool: &mut BufPool) {
        match self.order.dest(origin) {
            Dest::Now => self.close_after_flush(),
            Dest::Held(id) => self.order.hold(id, &[], true, pool),
        }
    }

    /// One request of it on worker slot `s` finished: the answers that
    /// were waiting for it move to the send buffer (without writing: the
    /// loop flushes), and a close that waited for it applies. Returns
    /// whether anything moved.
    pub fn request_left(&mut self, s: usize, pool: &mut BufPool) -> bool {
        if self.is_closing() {
            // Nothing after the close point goes out.
            self.order.clear(pool);
            return false;
        }
        self.order.left(s);
        let Conn {
            order, wbuf, wpos, ..
        } = self;
        let mut moved = false;
        let released = order.advance(|bytes| {
            moved = true;
            if wbuf.capacity() == 0 {
                *wbuf = pool.get();
            } else if *wpos != 0 && wbuf.len() + bytes.len() > wbuf.capacity() {
                wbuf.drain(..*wpos);
                *wpos = 0;
            }
            wbuf.extend_from_slice(bytes);
        });
        order.recycle(pool);
        if released.close {
            self.close_after_flush();
            return true;
        }
        moved
    }

    /// Appends response bytes to the send buffer; the loop flushes it once
    /// per turn. A large response with nothing pending before it
    /// ([`DIRECT_WRITE_MIN`]) is offered to the socket first. If that would
    /// pass `max_send_buffer`, the socket is offered the bytes first; what
    /// it does not take must fit the bound or the client counts as slow.
    /// Returns the bytes written to the socket.
    pub fn queue(
        &mut self,
        bytes: &[u8],
        pool: &mut BufPool,
        max_send_buffer: usize,
    ) -> Result<u64, QueueError> {
        let mut written = 0;
        let mut rest = bytes;
        if self.pending() == 0 && rest.len() >= DIRECT_WRITE_MIN {
            let n = write_some(&mut self.stream, rest).map_err(QueueError::Io)?;
            written += n as u64;
            rest = &rest[n..];
        }
        if self.pending() + rest.len() > max_send_buffer {
            written += self.flush(pool).map_err(QueueError::Io)?;
            if self.pending() == 0 {
                let n = write_some(&mut self.stream, rest).map_err(QueueError::Io)?;
                written += n as u64;
                rest = &rest[n..];
            }
            if self.pending() + rest.len() > max_send_buffer {
                return Err(QueueError::Slow);
            }
        }
        if !rest.is_empty() {
            if self.wbuf.capacity() == 0 {
                self.wbuf = pool.get();
            } else if self.wpos != 0 && self.wbuf.len() + rest.len() > self.wbuf.capacity() {
                // Needs room: reclaim the written prefix before growing.
                self.wbuf.drain(..self.wpos);
                self.wpos = 0;
            }
            self.wbuf.extend_from_slice(rest);
        }
        Ok(written)
    }

    /// Writes pending bytes until the socket would block. Returns the bytes
    /// written; the send buffer goes back to the pool once empty.
    pub fn flush(&mut self, pool: &mut BufPool) -> io::Result<u64> {
        let mut written = 0;
        while self.wpos < self.wbuf.len() {
            let n = write_some(&mut self.stream, &self.wbuf[self.wpos..])?;
            if n == 0 {
                break;
            }
            self.wpos += n;
            written += n as u64;
        }
        if self.wbuf.capacity() != 0 && self.wpos == self.wbuf.len() {
            pool.put(std::mem::take(&mut self.wbuf));
            self.wpos = 0;
        }
        Ok(written)
    }
}

/// One `write`, retried on EINTR; 0 when the socket would block.
fn write_some(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<usize> {
    if bytes.is_empty() {
        return Ok(0);
    }
    loop {
        match stream.write(bytes) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pair() -> (Conn, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (
            Conn::new(TcpStream::from_std(server), SppConnInfo::default(), 0),
            client,
        )
    }

    #[test]
    fn queued_bytes_reach_the_peer_and_the_buffer_is_pooled() {
        let (mut conn, mut client) = pair();
        let mut pool = BufPool::default();
        conn.queue(b"hello ", &mut pool, 1024).unwrap();
        conn.queue(b"world", &mut pool, 1024).unwrap();
        assert_eq!(conn.pending(), 11);
        assert_eq!(conn.flush(&mut pool).unwrap(), 11);
        assert_eq!(conn.pending(), 0);
        assert_eq!(pool.bufs.len(), 1);
        let mut got = [0u8; 11];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello world");
    }

    #[test]
    fn a_large_response_is_written_at_once_and_only_its_rest_buffered() {
        let (mut conn, mut client) = pair();
        let mut pool = BufPool::default();
        // Small: waits for the turn's flush.
        assert_eq!(conn.queue(b"small", &mut pool, 1 << 20).unwrap(), 0);
        assert_eq!(conn.pending(), 5);
        conn.flush(&mut pool).unwrap();
        // Large, nothing pending: written now, nothing copied.
        let large = vec![3u8; DIRECT_WRITE_MIN];
        let written = conn.queue(&large, &mut pool, 1 << 20).unwrap();
        assert_eq!(written as usize + conn.pending(), large.len());
        assert_eq!(conn.pending(), 0, "a loopback socket takes 16 KiB");
        // Large behind pending bytes: queued behind them, in order.
        conn.queue(b"x", &mut pool, 1 << 20).unwrap();
        assert_eq!(conn.queue(&large, &mut pool, 1 << 20).unwrap(), 0);
        assert_eq!(conn.pending(), 1 + large.len());
        conn.flush(&mut pool).unwrap();
        let mut got = vec![0u8; 5 + 2 * large.len() + 1];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got[..5], b"small");
        assert_eq!(&got[5..5 + large.len()], &large[..]);
        assert_eq!(got[5 + large.len()], b'x');
        assert!(got[6 + large.len()..].iter().all(|&b| b == 3));
    }

    #[test]
    fn a_client_that_never_reads_is_slow() {
        let (mut conn, _client) = pair();
        let mut pool = BufPool::default();
        let chunk = vec![7u8; 1 << 16];
        let mut result = Ok(0);
        for _ in 0..10_000 {
            result = conn.queue(&chunk, &mut pool, 1 << 18);
            if result.is_err() {
                break;
            }
        }
        assert!(matches!(result, Err(QueueError::Slow)), "{result:?}");
        assert!(conn.pending() <= 1 << 18);
    }

    #[test]
    fn the_unsent_tail_moves_only_when_the_buffer_needs_room() {
        let (mut conn, _client) = pair();
        let mut pool = BufPool::default();
        // As if the socket had taken the first 40 of 50 queued bytes.
        conn.wbuf = Vec::with_capacity(100);
        conn.wbuf.extend((0..50u8).collect::<Vec<_>>());
        conn.wpos = 40;
        conn.queue(&[50, 51, 52], &mut pool, 1000).unwrap();
        assert_eq!(conn.wpos, 40, "bytes were moved although there was room");
        assert_eq!(conn.pending(), 13);
        let room = conn.wbuf.capacity() - conn.wbuf.len();
        conn.queue(&vec![9u8; room + 1], &mut pool, 1000).unwrap();
        assert_eq!(conn.wpos, 0, "the written prefix was not reclaimed");
        assert_eq!(conn.pending(), 13 + room + 1);
        assert_eq!(
            &conn.wbuf[..13],
            &[40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52]
        );
    }

    /// An idle connection's whole footprint in the proxy is this struct
    /// in its table entry (no buffers); keep it far below the 4 KiB a later
    /// issue allows per idle connection.
    const MAX_CONN_STRUCT: usize = 256;

    #[test]
    fn an_idle_connection_is_small() {
        let size = std::mem::size_of::<Conn>();
        assert!(size <= MAX_CONN_STRUCT, "{size}");
    }

    #[test]
    fn finished_rules() {
        let (mut conn, _client) = pair();
        assert!(!conn.is_finished(0));
        conn.state = ConnState::PeerClosed;
        assert!(!conn.is_finished(1));
        assert!(conn.is_finished(0));
        conn.state = ConnState::Held;
        assert!(!conn.is_finished(0));
        conn.close_after_flush();
        assert_eq!(conn.state, ConnState::Closing { held: true });
        assert!(conn.is_held());
        assert!(conn.is_finished(3));
        conn.state = ConnState::PeerClosed;
        conn.close_after_flush();
        assert_eq!(conn.state, ConnState::Closing { held: false });
        conn.queue(b"x", &mut BufPool::default(), 10).unwrap();
        assert!(!conn.is_finished(0), "bytes are pending");
    }
}
