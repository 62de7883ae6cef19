//! Why the direct echo server could not start or keep running. Trouble
//! with one client is never an error here: that client is closed.

use std::io;
use std::net::SocketAddr;

/// The direct echo server's errors.
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    /// No socket was asked for.
    #[error("nothing to listen on: give at least one TCP or UDP address")]
    NoListeners,
    /// More sockets than the token space holds.
    #[error("{count} sockets asked for; at most {max} are supported")]
    TooManyListeners {
        /// How many were asked for.
        count: usize,
        /// [`super::MAX_LISTENERS`].
        max: usize,
    },
    /// A socket could not be created, bound or put to listen.
    #[error("cannot {what} {proto} {addr}: {source}")]
    Bind {
        /// The step that failed.
        what: &'static str,
        /// "tcp" or "udp".
        proto: super::Proto,
        /// The address asked for.
        addr: SocketAddr,
        /// The system's reason.
        source: io::Error,
    },
    /// epoll itself failed.
    #[error("event loop: cannot {what}: {source}")]
    Poll {
        /// The step that failed.
        what: &'static str,
        /// The system's reason.
        source: io::Error,
    },
    /// The server thread panicked (in-process use).
    #[error("the echo server thread panicked")]
    Panicked,
}
