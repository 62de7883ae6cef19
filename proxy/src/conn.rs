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
//! queueing a response behind a partly written one copies it once.

use mio::net::TcpStream;
use spp_plugin_api::abi::SppConnInfo;
use std::io::{self, Write};

/// Buffers kept for reuse at most.
pub const POOL_MAX_BUFFERS: usize = 64;
/// A buffer grown beyond this is freed instead of pooled.
pub const POOL_MAX_CAPACITY: usize = 64 << 10;

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

/// Connection flag: the peer shut its sending side (read returned 0).
pub const PEER_EOF: u8 = 1;
/// Connection flag: close once every pending byte is written.
pub const CLOSE_AFTER_FLUSH: u8 = 1 << 1;
/// Connection flag: listed in the loop's to-flush list this turn.
pub const IN_FLUSH_LIST: u8 = 1 << 2;
/// Connection flag: listed in the loop's read-again list.
pub const IN_READ_LIST: u8 = 1 << 3;
/// Connection flag: framing is on hold until `in_flight` reaches 0. Its
/// requests in flight sit on a worker that takes no more (draining, or
/// gone and about to be failed); the next one must not overtake them on
/// another worker. The unframed bytes wait in `rbuf` and the socket is not
/// read meanwhile (see `tcp.rs`).
pub const HELD: u8 = 1 << 4;

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
    /// Bytes not framed yet: a request not complete yet, or, while `HELD`,
    /// whatever the last read brought (empty, capacity 0 when none).
    pub rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    /// Requests queued to workers whose `process` has not returned.
    pub in_flight: u32,
    /// The worker slot of the latest request queued; while `in_flight` is
    /// non-zero the next request goes there too (responses stay in order).
    pub affinity: u32,
    /// Loop clock (ms) of the last byte read or written.
    pub last_active_ms: u64,
    /// `PEER_EOF` | `CLOSE_AFTER_FLUSH` | `HELD` | list memberships.
    pub flags: u8,
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
            in_flight: 0,
            affinity: 0,
            last_active_ms: now_ms,
            flags: 0,
        }
    }

    /// Whether `flag` is set.
    #[inline]
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Response bytes waiting for the socket.
    #[inline]
    pub fn pending(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Whether the connection has nothing left to do and should close now:
    /// asked to close and flushed, or the peer is gone and every request
    /// was answered and flushed.
    pub fn is_finished(&self) -> bool {
        self.pending() == 0
            && (self.has(CLOSE_AFTER_FLUSH) || (self.has(PEER_EOF) && self.in_flight == 0))
    }

    /// Gives both buffers back to the pool.
    pub fn release_buffers(&mut self, pool: &mut BufPool) {
        pool.put(std::mem::take(&mut self.rbuf));
        pool.put(std::mem::take(&mut self.wbuf));
        self.wpos = 0;
    }

    /// Appends response bytes to the send buffer; the loop flushes it once
    /// per turn. If that would pass `max_send_buffer`, the socket is offered
    /// the bytes first; what it does not take must fit the bound or the
    /// client counts as slow. Returns the bytes written to the socket.
    pub fn queue(
        &mut self,
        bytes: &[u8],
        pool: &mut BufPool,
        max_send_buffer: usize,
    ) -> Result<u64, QueueError> {
        let mut written = 0;
        let mut rest = bytes;
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
        assert!(!conn.is_finished());
        conn.flags |= PEER_EOF;
        conn.in_flight = 1;
        assert!(!conn.is_finished());
        conn.in_flight = 0;
        assert!(conn.is_finished());
        conn.flags = CLOSE_AFTER_FLUSH;
        conn.in_flight = 3;
        assert!(conn.is_finished());
    }
}
