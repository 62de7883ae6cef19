//! The tokio relay: the peer a Rust developer would write instead of an
//! spp relay plugin. It listens on TCP, reads the echo framing from each
//! client (a 4-byte big-endian payload length, then the payload), forwards
//! every frame to one backend over a pool of keep-alive connections
//! ([`pool`]), and writes the backend's answer frame back. One request at
//! a time per client connection (pipelined frames are answered in order);
//! as many in flight as there are clients, up to the pool's size.
//!
//! The `spp-tokio-relay` binary runs [`serve`] on a multi-threaded tokio
//! runtime whose worker-thread count it takes as a flag, so it can be
//! compared with one spp relay worker on equal terms.
//!
//! ```no_run
//! use spp_benches::relay::{self, RelayConfig};
//!
//! # async fn demo() -> Result<(), relay::RelayError> {
//! let config = RelayConfig::new("127.0.0.1:7000".parse().unwrap());
//! let listener = relay::bind("127.0.0.1:0".parse().unwrap()).await?;
//! relay::serve(listener, config).await;
//! # Ok(())
//! # }
//! ```
//!
//! Failures: a frame over `max_payload` (from a client or the backend), a
//! backend that refuses, closes or stays silent past `timeout`: the
//! client's connection is closed (a reused backend connection that fails
//! is retried once on a fresh one, as it may have been closed while idle).

mod error;
pub mod frame;
pub mod pool;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

pub use error::RelayError;
pub use pool::Pool;

/// Most backend connections kept (and most requests in flight to it).
pub const DEFAULT_POOL: usize = 64;
/// Largest payload a frame may announce (the direct echo's default).
pub const DEFAULT_MAX_PAYLOAD: usize = crate::direct::DEFAULT_MAX_PAYLOAD;
/// How long one backend round trip may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Read buffer of a client connection.
const CLIENT_READ_BUF: usize = 16 << 10;

/// What the relay forwards to and its limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayConfig {
    /// The backend every frame goes to.
    pub backend: SocketAddr,
    /// Most backend connections (see [`DEFAULT_POOL`]).
    pub pool: usize,
    /// See [`DEFAULT_MAX_PAYLOAD`].
    pub max_payload: usize,
    /// See [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
}

impl RelayConfig {
    /// The defaults, forwarding to `backend`.
    pub fn new(backend: SocketAddr) -> Self {
        RelayConfig {
            backend,
            pool: DEFAULT_POOL,
            max_payload: DEFAULT_MAX_PAYLOAD,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Binds the listener.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, RelayError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RelayError::Bind { addr, source })
}

/// Accepts clients for ever, one task each.
pub async fn serve(listener: TcpListener, config: RelayConfig) {
    let pool = Arc::new(Pool::new(&config));
    // Runs until the runtime is shut down; a failed accept (out of
    // descriptors, a connection reset in the backlog) only skips it.
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(client(stream, Arc::clone(&pool), config.max_payload));
            }
            Err(_) => tokio::time::sleep(pool::RETRY_PAUSE).await,
        }
    }
}

/// One client: frame in, round trip, frame out, until it closes or fails.
async fn client(stream: TcpStream, pool: Arc<Pool>, max_payload: usize) {
    // A failure here would show in the latency, not in correctness.
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::with_capacity(CLIENT_READ_BUF, read);
    let mut request = Vec::new();
    let mut answer = Vec::new();
    // Bounded by the client: each pass needs one more frame from it.
    loop {
        match frame::read(&mut read, &mut request, max_payload).await {
            Ok(true) => {}
            Ok(false) | Err(_) => return,
        }
        if pool.call(&request, &mut answer).await.is_err() {
            return;
        }
        if write.write_all(&answer).await.is_err() {
            return;
        }
    }
}
