//! [`RelayError`]: why the tokio relay could not start or a round trip
//! failed.

use std::net::SocketAddr;

use thiserror::Error;

/// A tokio-relay failure, with the address it concerns.
#[derive(Debug, Error)]
pub enum RelayError {
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A backend connect, write or read failed.
    #[error("backend {addr}: {source}")]
    Backend {
        /// The backend.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The backend did not answer within the timeout.
    #[error("backend {addr} did not answer within {timeout:?}")]
    Timeout {
        /// The backend.
        addr: SocketAddr,
        /// The limit.
        timeout: std::time::Duration,
    },
    /// The pool was closed.
    #[error("the backend pool is closed")]
    Closed,
}
