//! What to run: the target, the load shape, the request and response rule,
//! the timing. [`LoadSpec::new`] fills in the defaults (the method of
//! `docs/PERFORMANCE.md`: one connection, one request in flight, 64-byte echo payload,
//! 0.5 s warm-up, 3 s measured, one load thread).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::LoadError;

/// Default number of connections (or UDP sockets).
pub const DEFAULT_CONNECTIONS: usize = 1;
/// Default requests in flight per connection in closed loop.
pub const DEFAULT_IN_FLIGHT: usize = 1;
/// Default measured duration.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(3);
/// Default warm-up before measuring.
pub const DEFAULT_WARMUP: Duration = Duration::from_millis(500);
/// Default echo payload size in bytes.
pub const DEFAULT_PAYLOAD: usize = 64;
/// Default time a request may wait for its response.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default number of load threads (each runs a one-thread tokio runtime).
pub const DEFAULT_THREADS: usize = 1;

/// Most connections one run may open.
pub const MAX_CONNECTIONS: usize = 100_000;
/// Most requests in flight on one connection (closed loop).
pub const MAX_IN_FLIGHT: usize = 65_536;
/// Most load threads.
pub const MAX_THREADS: usize = 256;
/// Largest request or response frame (matches the echo plugin's default).
pub const MAX_FRAME_BYTES: usize = 64 << 20;
/// Largest UDP payload (IPv4: 65535 - 8 UDP - 20 IP header bytes).
pub const MAX_DATAGRAM_BYTES: usize = 65_507;
/// Size of the length header of the echo protocol.
pub const ECHO_HEADER_BYTES: usize = 4;
/// Longest warm-up or measured duration accepted.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Shortest response timeout accepted.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// TCP or UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// Stream connections; responses are framed by the response rule.
    Tcp,
    /// Connected UDP sockets; one datagram is one request or response.
    Udp,
}

impl Transport {
    /// The URL scheme: `tcp` or `udp`.
    pub fn scheme(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// Where to send load: `[tcp://|udp://]HOST:PORT`, resolved once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// TCP or UDP.
    pub transport: Transport,
    /// The resolved address (the first one the resolver returned).
    pub addr: SocketAddr,
}

impl Target {
    /// A target at a known address.
    pub fn new(transport: Transport, addr: SocketAddr) -> Self {
        Target { transport, addr }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.transport.scheme(), self.addr)
    }
}

impl FromStr for Target {
    type Err = LoadError;

    fn from_str(text: &str) -> Result<Self, LoadError> {
        let bad = |why: &str| LoadError::BadTarget {
            text: text.to_owned(),
            why: why.to_owned(),
        };
        let (transport, rest) = match text.split_once("://") {
            Some(("tcp", rest)) => (Transport::Tcp, rest),
            Some(("udp", rest)) => (Transport::Udp, rest),
            Some(_) => return Err(bad("the scheme must be tcp:// or udp://")),
            None => (Transport::Tcp, text),
        };
        if rest.is_empty() || !rest.contains(':') {
            return Err(bad("expected HOST:PORT (IPv6 as [ADDR]:PORT)"));
        }
        let mut addrs = rest
            .to_socket_addrs()
            .map_err(|source| LoadError::Resolve {
                text: text.to_owned(),
                source,
            })?;
        let addr = addrs
            .next()
            .ok_or_else(|| bad("the name resolved to no address"))?;
        if addr.port() == 0 {
            return Err(bad("port 0 is not a destination"));
        }
        Ok(Target { transport, addr })
    }
}

/// The load shape.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Load {
    /// Closed loop: every connection keeps `in_flight` requests outstanding
    /// and sends the next one when a response arrives. Latency is measured
    /// from the write.
    Closed {
        /// Requests outstanding per connection.
        in_flight: usize,
    },
    /// Open loop: requests leave at a fixed total rate, spread evenly over
    /// the connections, whatever the responses do. Latency is measured from
    /// the *intended* send time, so a stalled server shows in the tail
    /// instead of slowing the load down (no coordinated omission).
    Open {
        /// Total requests per second over all connections.
        rate: f64,
    },
}

/// How a response is recognised and checked when the request comes from a
/// file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseRule {
    /// The response is exactly this many bytes (any content).
    Length(usize),
    /// The response ends with (and includes) this delimiter.
    Delimiter(Vec<u8>),
    /// The response must equal these bytes.
    Exact(Vec<u8>),
}

impl ResponseRule {
    /// A short human description.
    pub fn describe(&self) -> String {
        match self {
            ResponseRule::Length(n) => format!("{n}-byte response"),
            ResponseRule::Delimiter(d) => {
                format!("response ending in \"{}\"", d.escape_ascii())
            }
            ResponseRule::Exact(b) => format!("exact {}-byte response", b.len()),
        }
    }
}

/// What each request is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// The echo protocol: a 4-byte big-endian length, then the payload. The
    /// payload carries the request's sequence number, and the response
    /// must equal the request.
    Echo {
        /// Payload bytes (after the length header).
        payload: usize,
    },
    /// These bytes, sent as they are; responses follow `rule`.
    Raw {
        /// The request.
        bytes: Vec<u8>,
        /// How the response is framed and checked.
        rule: ResponseRule,
    },
}

impl Request {
    /// A request read from a file.
    pub fn from_file(path: &Path, rule: ResponseRule) -> Result<Self, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        Ok(Request::Raw { bytes, rule })
    }

    /// Bytes on the wire per request.
    pub fn wire_len(&self) -> usize {
        match self {
            Request::Echo { payload } => ECHO_HEADER_BYTES + payload,
            Request::Raw { bytes, .. } => bytes.len(),
        }
    }

    /// A short human description.
    pub fn describe(&self) -> String {
        match self {
            Request::Echo { payload } => format!("echo, {payload}-byte payload"),
            Request::Raw { bytes, rule } => {
                format!(
                    "{}-byte request from file, {}",
                    bytes.len(),
                    rule.describe()
                )
            }
        }
    }
}

/// Everything a run needs. Build with [`LoadSpec::new`] and change fields.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// Where to send load.
    pub target: Target,
    /// Connections (TCP) or sockets (UDP), or concurrent short-connection
    /// loops with `short`.
    pub connections: usize,
    /// Closed or open loop.
    pub load: Load,
    /// Short connections: connect, one request, close, repeat (TCP, closed
    /// loop with one request in flight). Latency covers the connect.
    pub short: bool,
    /// The request and response rule.
    pub request: Request,
    /// Warm-up: load is sent but nothing is recorded.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// A request unanswered this long counts as a timeout.
    pub timeout: Duration,
    /// Load threads, each with its own one-thread tokio runtime.
    pub threads: usize,
    /// Draw a progress bar on stderr (only if stderr is a terminal).
    pub progress: bool,
}

impl LoadSpec {
    /// The defaults against `target`.
    pub fn new(target: Target) -> Self {
        LoadSpec {
            target,
            connections: DEFAULT_CONNECTIONS,
            load: Load::Closed {
                in_flight: DEFAULT_IN_FLIGHT,
            },
            short: false,
            request: Request::Echo {
                payload: DEFAULT_PAYLOAD,
            },
            warmup: DEFAULT_WARMUP,
            duration: DEFAULT_DURATION,
            timeout: DEFAULT_TIMEOUT,
            threads: DEFAULT_THREADS,
            progress: false,
        }
    }

    /// Threads actually used: never more than connections.
    pub fn effective_threads(&self) -> usize {
        self.threads.min(self.connections).max(1)
    }

    /// Checks ranges and combinations.
    pub fn validate(&self) -> Result<(), LoadError> {
        let invalid = |field: &'static str, why: String| Err(LoadError::InvalidSpec { field, why });
        if !(1..=MAX_CONNECTIONS).contains(&self.connections) {
            return invalid("connections", format!("must be 1..={MAX_CONNECTIONS}"));
        }
        if !(1..=MAX_THREADS).contains(&self.threads) {
            return invalid("threads", format!("must be 1..={MAX_THREADS}"));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return invalid("duration", "must be more than 0 and at most 24h".into());
        }
        if self.warmup > MAX_DURATION {
            return invalid("warmup", "must be at most 24h".into());
        }
        if self.timeout < MIN_TIMEOUT || self.timeout > MAX_DURATION {
            return invalid("timeout", "must be 1ms..=24h".into());
        }
        match self.load {
            Load::Closed { in_flight } if !(1..=MAX_IN_FLIGHT).contains(&in_flight) => {
                return invalid("in-flight", format!("must be 1..={MAX_IN_FLIGHT}"));
            }
            Load::Open { rate } if !(rate.is_finite() && rate > 0.0) => {
                return invalid("rate", "must be a positive number of requests/s".into());
            }
            _ => {}
        }
        self.validate_request()?;
        if self.short {
            if self.target.transport == Transport::Udp {
                return invalid("short", "short connections need a tcp:// target".into());
            }
            if self.load != (Load::Closed { in_flight: 1 }) {
                return invalid(
                    "short",
                    "short connections carry one request each: use closed loop, 1 in flight".into(),
                );
            }
        }
        Ok(())
    }

    fn validate_request(&self) -> Result<(), LoadError> {
        let invalid = |field: &'static str, why: String| Err(LoadError::InvalidSpec { field, why });
        let limit = match self.target.transport {
            Transport::Tcp => MAX_FRAME_BYTES,
            Transport::Udp => MAX_DATAGRAM_BYTES,
        };
        if self.request.wire_len() > limit {
            return invalid(
                "size",
                format!(
                    "a request of {} bytes exceeds {limit}",
                    self.request.wire_len()
                ),
            );
        }
        match &self.request {
            Request::Echo { .. } => Ok(()),
            Request::Raw { bytes, rule } => {
                if bytes.is_empty() {
                    return invalid("request", "the request file is empty".into());
                }
                match rule {
                    ResponseRule::Length(n) if !(1..=limit).contains(n) => {
                        invalid("response-length", format!("must be 1..={limit}"))
                    }
                    ResponseRule::Delimiter(d) if d.is_empty() => {
                        invalid("response-delimiter", "must not be empty".into())
                    }
                    ResponseRule::Exact(b) if b.is_empty() || b.len() > limit => {
                        invalid("response", format!("the file must hold 1..={limit} bytes"))
                    }
                    _ => Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t: Target = "127.0.0.1:7963".parse().unwrap();
        assert_eq!(t.transport, Transport::Tcp);
        assert_eq!(t.to_string(), "tcp://127.0.0.1:7963");
        let t: Target = "udp://[::1]:9".parse().unwrap();
        assert_eq!(t.transport, Transport::Udp);
        assert_eq!(t.to_string(), "udp://[::1]:9");
        assert!("http://127.0.0.1:80".parse::<Target>().is_err());
        assert!("127.0.0.1".parse::<Target>().is_err());
        assert!("127.0.0.1:0".parse::<Target>().is_err());
        assert!("tcp://".parse::<Target>().is_err());
    }

    #[test]
    fn specs_are_checked() {
        let target: Target = "127.0.0.1:1".parse().unwrap();
        let ok = LoadSpec::new(target.clone());
        assert!(ok.validate().is_ok());
        let mut s = ok.clone();
        s.connections = 0;
        assert!(s.validate().is_err());
        let mut s = ok.clone();
        s.load = Load::Open { rate: 0.0 };
        assert!(s.validate().is_err());
        let mut s = ok.clone();
        s.short = true;
        s.load = Load::Closed { in_flight: 2 };
        assert!(s.validate().is_err());
        let mut s = ok.clone();
        s.target.transport = Transport::Udp;
        s.request = Request::Echo { payload: 70_000 };
        assert!(s.validate().is_err());
        let mut s = ok;
        s.request = Request::Raw {
            bytes: b"PING\r\n".to_vec(),
            rule: ResponseRule::Delimiter(Vec::new()),
        };
        assert!(s.validate().is_err());
    }
}
