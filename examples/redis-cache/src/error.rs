//! Why a request got no value: one enum for the cache, its redis side and
//! its backend side. [`CacheError::reason`] is the short word the client
//! sees in the frame `cache-error:<reason>`; `Display` carries the
//! context for the log.

use std::io;

/// Why a request got no value.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A redis command did not answer within `timeout_ms` (a slow or
    /// stopped redis-server, or a connection attempt that hangs).
    #[error("redis did not answer within timeout_ms")]
    RedisTimeout,
    /// redis-server cannot be reached: connection refused, reset or
    /// closed (it is down or restarting).
    #[error("redis is unreachable: {0}")]
    RedisDown(#[source] redis::RedisError),
    /// redis answered with an error (e.g. a wrong type, out of memory).
    #[error("redis failed: {0}")]
    Redis(#[source] redis::RedisError),
    /// The value redis holds is larger than `max_payload`.
    #[error("the value in redis is {0} bytes, above max_payload")]
    ValueTooLarge(usize),
    /// L5 has no instance of the miss's sid (code), or L5 is off.
    #[error("no route to the backend sid (L5 code {0})")]
    NoRoute(i32),
    /// The miss's backend call ran past `backend_timeout_ms`.
    #[error("the backend did not answer within backend_timeout_ms")]
    BackendTimeout,
    /// Every attempt of the miss's backend call failed.
    #[error("the backend call failed: {0}")]
    Backend(#[source] FetchError),
    /// The task passed the group's `task_timeout` (host-enforced).
    #[error("the request passed the group's task_timeout")]
    TaskTimeout,
    /// The task panicked.
    #[error("the request's task panicked")]
    Panicked,
    /// The task failed another way (a failure this version does not know).
    #[error("the request's task failed")]
    TaskFailed,
}

impl CacheError {
    /// The word after `cache-error:` in the client's frame.
    pub fn reason(&self) -> &'static str {
        match self {
            CacheError::RedisTimeout => "redis-timeout",
            CacheError::RedisDown(_) => "redis-down",
            CacheError::Redis(_) => "redis-failed",
            CacheError::ValueTooLarge(_) => "value-too-large",
            CacheError::NoRoute(_) => "backend-no-route",
            CacheError::BackendTimeout => "backend-timeout",
            CacheError::Backend(_) => "backend-failed",
            CacheError::TaskTimeout => "task-timeout",
            CacheError::Panicked => "panicked",
            CacheError::TaskFailed => "task-failed",
        }
    }

    /// A redis error, sorted into "unreachable" and "answered an error".
    pub fn from_redis(err: redis::RedisError) -> CacheError {
        if err.is_timeout() {
            // The client's own response/connection timeout (set to
            // timeout_ms too): the same outcome as ours.
            return CacheError::RedisTimeout;
        }
        if err.is_io_error() || err.is_connection_refusal() || err.is_connection_dropped() {
            CacheError::RedisDown(err)
        } else {
            CacheError::Redis(err)
        }
    }
}

/// Why one attempt to fetch a value from a backend instance failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Connecting failed (refused, unreachable).
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The instance.
        addr: std::net::SocketAddr,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// Sending the request or reading the answer failed, or the backend
    /// closed before a whole answer.
    #[error("exchange with {addr}: {source}")]
    Io {
        /// The instance.
        addr: std::net::SocketAddr,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The answer announced a payload above `max_payload`.
    #[error("{addr} announced a {len}-byte answer, above max_payload {max}")]
    TooLarge {
        /// The instance.
        addr: std::net::SocketAddr,
        /// The announced payload length.
        len: usize,
        /// The bound.
        max: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_one_distinct_word() {
        let io = || io::Error::from(io::ErrorKind::ConnectionRefused);
        let addr = "127.0.0.1:1".parse().unwrap();
        let all = [
            CacheError::RedisTimeout,
            CacheError::RedisDown(redis::RedisError::from(io())),
            CacheError::ValueTooLarge(1),
            CacheError::NoRoute(-10000),
            CacheError::BackendTimeout,
            CacheError::Backend(FetchError::Connect { addr, source: io() }),
            CacheError::TaskTimeout,
            CacheError::Panicked,
            CacheError::TaskFailed,
        ];
        let mut seen = std::collections::BTreeSet::new();
        for e in &all {
            let r = e.reason();
            assert!(!r.is_empty() && !r.contains(char::is_whitespace), "{r:?}");
            assert!(seen.insert(r), "{r} twice");
        }
    }

    #[test]
    fn a_refused_connection_is_redis_down() {
        let refused = redis::RedisError::from(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(CacheError::from_redis(refused).reason(), "redis-down");
    }
}
