//! The redis side: `GET key` and `SET key value EX ttl_s` through one
//! multiplexed connection per worker (the `redis` crate's
//! `ConnectionManager`: every task's commands are pipelined on it, and it
//! reconnects after the connection is lost).
//!
//! The manager is made at the first command, inside the worker's tokio
//! runtime (it spawns its connection's driver task there) and connects
//! lazily: a worker starts, and stays up, while redis is down. Each
//! command is bounded by `timeout_ms` twice over: the client's own
//! connection and response timeouts, and a `tokio::time::timeout` around
//! the whole command. A connection attempt is made once (no retry loop
//! inside the client): while redis is down each command fails at once
//! (refused) and the next one tries to connect again, so the first
//! command after redis returns may still fail, and the ones after it
//! succeed.

use crate::error::CacheError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

/// The redis-server of this worker and the connection to it.
pub struct Store {
    client: redis::Client,
    conn: OnceLock<ConnectionManager>,
    timeout: Duration,
    ttl_s: u64,
}

impl Store {
    /// A store for the redis-server at `addr` (nothing is connected yet).
    pub fn new(addr: SocketAddr, timeout: Duration, ttl_s: u64) -> Result<Store, String> {
        let client = redis::Client::open(format!("redis://{addr}/"))
            .map_err(|e| format!("redis={addr}: {e}"))?;
        Ok(Store {
            client,
            conn: OnceLock::new(),
            timeout,
            ttl_s,
        })
    }

    /// The value of `key`, `None` when redis has none.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, CacheError> {
        let mut conn = self.conn()?;
        self.bounded(redis::cmd("GET").arg(key).query_async(&mut conn))
            .await
    }

    /// Sets `key` to `value` for `ttl_s` seconds.
    pub async fn set(&self, key: &[u8], value: &[u8]) -> Result<(), CacheError> {
        let mut conn = self.conn()?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("EX").arg(self.ttl_s);
        self.bounded(cmd.query_async::<()>(&mut conn)).await
    }

    /// `command`, bounded by `timeout_ms`, its error sorted.
    async fn bounded<T>(
        &self,
        command: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, CacheError> {
        match tokio::time::timeout(self.timeout, command).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(CacheError::from_redis(e)),
            Err(_elapsed) => Err(CacheError::RedisTimeout),
        }
    }

    /// A handle on the worker's connection (made at the first call, in
    /// the calling task's runtime).
    fn conn(&self) -> Result<ConnectionManager, CacheError> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(0);
        let made = ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            .map_err(CacheError::Redis)?;
        // No await since the check: a manager made by another thread in
        // between (only in the runtime-on-a-thread placement) wins, and
        // this one is dropped unused.
        Ok(self.conn.get_or_init(|| made).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn run<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    const TIMEOUT: Duration = Duration::from_millis(200);

    #[test]
    fn a_refused_redis_is_down_at_once_and_tried_again() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let store = Store::new(addr, TIMEOUT, 60).unwrap();
        run(async {
            for _ in 0..3 {
                let started = Instant::now();
                let got = store.get(b"k").await;
                assert!(matches!(got, Err(CacheError::RedisDown(_))), "{got:?}");
                assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());
            }
        });
    }

    #[test]
    fn a_silent_redis_times_out() {
        // Accepts connections (the kernel's backlog) and never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let store = Store::new(silent.local_addr().unwrap(), TIMEOUT, 60).unwrap();
        run(async {
            for _ in 0..2 {
                let started = Instant::now();
                let got = store.set(b"k", b"v").await;
                assert!(matches!(got, Err(CacheError::RedisTimeout)), "{got:?}");
                assert!(started.elapsed() < TIMEOUT * 3, "{:?}", started.elapsed());
            }
        });
    }
}
