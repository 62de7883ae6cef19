//! The worker's keep-alive connections to its backends: per destination
//! ([`Pool`]) at most `pool` tokio `TcpStream`s, each carrying one request
//! at a time (as `spp-tokio-relay`'s pool). A call takes a permit (so no
//! more than `pool` calls to one destination run at once; the others wait
//! for a permit), an idle connection or a new one, does its round trip,
//! and puts the connection back. A reused connection that fails is
//! dropped and the call tried once on a fresh one (the backend may have
//! closed it while idle); a fresh one that fails fails the call. A call
//! dropped half-way (its timeout, a cancelled task) drops its connection
//! with it, since its state is unknown; its permit comes back.
//!
//! [`Pools`] keeps one [`Pool`] per destination (a fixed `addr=`, or each
//! L5 instance a sid's calls reach), at most [`MAX_DESTINATIONS`]; past
//! that, pools no call is using are forgotten first (counted by the
//! caller).
//!
//! The timeout is not applied here: the caller wraps each call in
//! `timed_call` or `SidCall`, which bound, report and count it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use spp_plugin_api::framing::U32_PREFIX_LEN;

/// Read buffer of a backend connection.
const READ_BUF: usize = 16 << 10;
/// Most destinations with a pool of their own.
pub const MAX_DESTINATIONS: usize = 1024;

/// Why one call to a backend failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Connect, write or read failed, or the backend closed the connection.
    #[error("backend {dest}: {source}")]
    Io {
        /// The backend.
        dest: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The answer announced a payload over `max_payload`.
    #[error("backend {dest} answered {len} payload bytes, the limit is {max}")]
    TooLarge {
        /// The backend.
        dest: SocketAddr,
        /// What it announced.
        len: usize,
        /// `max_payload`.
        max: usize,
    },
    /// The pool was closed (never, while the plugin lives).
    #[error("the pool of backend {0} is closed")]
    Closed(SocketAddr),
}

/// One keep-alive backend connection, buffered for reading.
type Conn = BufReader<TcpStream>;

/// Locks `m`; a panicked holder (a task that panicked while holding it)
/// leaves the data usable: it is a list or a map, never half-written.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Keep-alive connections to one backend.
#[derive(Debug)]
pub struct Pool {
    dest: SocketAddr,
    max_payload: usize,
    permits: Semaphore,
    idle: Mutex<Vec<Conn>>,
}

impl Pool {
    /// An empty pool for `dest` (connections open on demand), at most
    /// `size` connections.
    pub fn new(dest: SocketAddr, size: usize, max_payload: usize) -> Self {
        let size = size.max(1);
        Pool {
            dest,
            max_payload,
            permits: Semaphore::new(size),
            idle: Mutex::new(Vec::with_capacity(size)),
        }
    }

    fn io(&self, source: std::io::Error) -> RelayError {
        RelayError::Io {
            dest: self.dest,
            source,
        }
    }

    async fn connect(&self) -> Result<Conn, RelayError> {
        let stream = TcpStream::connect(self.dest)
            .await
            .map_err(|e| self.io(e))?;
        stream.set_nodelay(true).map_err(|e| self.io(e))?;
        Ok(BufReader::with_capacity(READ_BUF, stream))
    }

    /// Sends `request` (a whole frame) and returns the answer frame.
    pub async fn call(&self, request: &[u8]) -> Result<Vec<u8>, RelayError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| RelayError::Closed(self.dest))?;
        let reused = lock(&self.idle).pop();
        if let Some(mut conn) = reused {
            if let Ok(answer) = self.round_trip(&mut conn, request).await {
                lock(&self.idle).push(conn);
                return Ok(answer);
            }
        }
        let mut conn = self.connect().await?;
        let answer = self.round_trip(&mut conn, request).await?;
        lock(&self.idle).push(conn);
        Ok(answer)
    }

    async fn round_trip(&self, conn: &mut Conn, request: &[u8]) -> Result<Vec<u8>, RelayError> {
        conn.get_mut()
            .write_all(request)
            .await
            .map_err(|e| self.io(e))?;
        let mut header = [0u8; U32_PREFIX_LEN];
        conn.read_exact(&mut header).await.map_err(|e| self.io(e))?;
        let len = usize::try_from(u32::from_be_bytes(header)).unwrap_or(usize::MAX);
        if len > self.max_payload {
            return Err(RelayError::TooLarge {
                dest: self.dest,
                len,
                max: self.max_payload,
            });
        }
        let mut answer = vec![0u8; U32_PREFIX_LEN + len];
        answer[..U32_PREFIX_LEN].copy_from_slice(&header);
        conn.read_exact(&mut answer[U32_PREFIX_LEN..])
            .await
            .map_err(|e| self.io(e))?;
        Ok(answer)
    }
}

/// One [`Pool`] per destination.
#[derive(Debug)]
pub struct Pools {
    size: usize,
    max_payload: usize,
    by_dest: Mutex<HashMap<SocketAddr, Arc<Pool>>>,
}

impl Pools {
    /// No pool yet; each will hold at most `size` connections.
    pub fn new(size: usize, max_payload: usize) -> Self {
        Pools {
            size,
            max_payload,
            by_dest: Mutex::new(HashMap::new()),
        }
    }

    /// The pool of `dest`, made on first use; and how many unused pools
    /// were forgotten to make room for it.
    pub fn of(&self, dest: SocketAddr) -> (Arc<Pool>, usize) {
        let mut map = lock(&self.by_dest);
        if let Some(pool) = map.get(&dest) {
            return (Arc::clone(pool), 0);
        }
        let mut forgotten = 0;
        if map.len() >= MAX_DESTINATIONS {
            let before = map.len();
            map.retain(|_, pool| Arc::strong_count(pool) > 1);
            forgotten = before - map.len();
        }
        let pool = Arc::new(Pool::new(dest, self.size, self.max_payload));
        // Still full (every pool in use): serve this call without keeping
        // its pool.
        if map.len() < MAX_DESTINATIONS {
            map.insert(dest, Arc::clone(&pool));
        }
        (pool, forgotten)
    }

    /// Drops every idle connection (the plugin's `fini`).
    pub fn clear(&self) {
        lock(&self.by_dest).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_are_kept_per_destination_and_bounded() {
        let pools = Pools::new(4, 100);
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let (first, _) = pools.of(a);
        let (again, forgotten) = pools.of(a);
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(forgotten, 0);
        drop((first, again));
        for port in 2..=MAX_DESTINATIONS as u16 {
            let _ = pools.of(SocketAddr::from(([127, 0, 0, 1], port)));
        }
        assert_eq!(lock(&pools.by_dest).len(), MAX_DESTINATIONS);
        // Full, none in use: all are forgotten for the newcomer.
        let (_, forgotten) = pools.of("127.0.0.2:1".parse().unwrap());
        assert_eq!(forgotten, MAX_DESTINATIONS);
        assert_eq!(lock(&pools.by_dest).len(), 1);
    }
}
