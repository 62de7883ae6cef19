//! Opening connections and sockets, and the reachability probe that turns
//! an unreachable target into one clear error before any load is sent.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpStream, UdpSocket};

use super::error::LoadError;
use super::protocol::Codec;
use super::spec::{Target, Transport, MAX_DATAGRAM_BYTES};

/// Probe buffer: one datagram of any size.
const PROBE_BUF_BYTES: usize = MAX_DATAGRAM_BYTES + 1;
/// Sequence number of the probe request (never used by the run).
const PROBE_SEQ: u64 = u64::MAX;

/// Opens a TCP connection with `TCP_NODELAY`, failing after `timeout`.
pub async fn connect_tcp(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn std_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = std::net::UdpSocket::bind(local)?;
    sock.connect(addr)?;
    Ok(sock)
}

/// A UDP socket connected to `addr` (so ICMP errors are reported), on the
/// current tokio runtime.
pub fn connect_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let sock = std_udp(addr)?;
    sock.set_nonblocking(true)?;
    UdpSocket::from_std(sock)
}

/// Checks, before the run, that the target accepts a TCP connection or
/// answers one UDP request (blocking, at most about `timeout`).
pub fn probe(target: &Target, codec: &Codec, timeout: Duration) -> Result<(), LoadError> {
    let connect_error = |source| LoadError::Connect {
        target: target.to_string(),
        source,
    };
    match target.transport {
        Transport::Tcp => {
            std::net::TcpStream::connect_timeout(&target.addr, timeout).map_err(connect_error)?;
            Ok(())
        }
        Transport::Udp => {
            let sock = std_udp(target.addr).map_err(connect_error)?;
            sock.set_read_timeout(Some(timeout))
                .map_err(connect_error)?;
            let mut request = Vec::with_capacity(codec.request_len());
            codec.write_request(PROBE_SEQ, &mut request);
            sock.send(&request).map_err(connect_error)?;
            let mut buf = vec![0; PROBE_BUF_BYTES];
            match sock.recv(&mut buf) {
                Ok(_) => Ok(()),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    Err(LoadError::NoResponse {
                        target: target.to_string(),
                        timeout,
                    })
                }
                Err(e) => Err(connect_error(e)),
            }
        }
    }
}
