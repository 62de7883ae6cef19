//! What the direct echo server listens on and its limits; every default is
//! here.

use std::fmt;
use std::net::SocketAddr;

/// The largest payload a frame may announce: a larger one closes its TCP
/// connection (after the frames before it are answered) or drops its
/// datagram. The spp proxy's default `max_request_size`.
pub const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;

/// Unsent reply bytes per connection above which the server stops reading
/// from that client until it reads its replies. The spp proxy's default
/// `max_send_buffer`.
pub const DEFAULT_MAX_PENDING: usize = 4 << 20;

/// A transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    /// A byte stream of pipelined frames.
    Tcp,
    /// One frame per datagram.
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// One socket to serve on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Listen {
    /// TCP or UDP.
    pub proto: Proto,
    /// Where (port 0 picks a free port; [`Server::listening`] tells which).
    ///
    /// [`Server::listening`]: super::Server::listening
    pub addr: SocketAddr,
}

impl Listen {
    /// A TCP listener on `addr`.
    pub fn tcp(addr: SocketAddr) -> Self {
        Listen {
            proto: Proto::Tcp,
            addr,
        }
    }

    /// A UDP socket on `addr`.
    pub fn udp(addr: SocketAddr) -> Self {
        Listen {
            proto: Proto::Udp,
            addr,
        }
    }
}

/// `listening tcp 127.0.0.1:4000`: the line the binary prints per socket.
impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "listening {} {}", self.proto, self.addr)
    }
}

/// The server's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// See [`DEFAULT_MAX_PAYLOAD`].
    pub max_payload: usize,
    /// See [`DEFAULT_MAX_PENDING`].
    pub max_pending: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload: DEFAULT_MAX_PAYLOAD,
            max_pending: DEFAULT_MAX_PENDING,
        }
    }
}
