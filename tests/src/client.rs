//! Blocking clients for the echo protocol (4-byte big-endian length +
//! payload), with timeouts on every read and write.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

/// Default I/O timeout of test clients.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Encodes one frame.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// A TCP echo-protocol client.
pub struct TcpClient {
    /// The stream.
    pub stream: TcpStream,
}

impl TcpClient {
    /// Connects with timeouts set and TCP_NODELAY.
    pub fn connect(addr: SocketAddr) -> io::Result<TcpClient> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(TcpClient { stream })
    }

    /// Sends one frame.
    pub fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        self.stream.write_all(&frame(payload))
    }

    /// Reads one frame's payload.
    pub fn recv(&mut self) -> io::Result<Vec<u8>> {
        let mut header = [0u8; 4];
        self.stream.read_exact(&mut header)?;
        let mut payload = vec![0u8; u32::from_be_bytes(header) as usize];
        self.stream.read_exact(&mut payload)?;
        Ok(payload)
    }

    /// One request, one response.
    pub fn call(&mut self, payload: &[u8]) -> io::Result<Vec<u8>> {
        self.send(payload)?;
        self.recv()
    }

    /// Whether the server closed the connection (EOF or reset) within the
    /// read timeout, reading and discarding anything before it.
    pub fn closed_by_server(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// A UDP echo-protocol client.
pub struct UdpClient {
    socket: UdpSocket,
    server: SocketAddr,
}

impl UdpClient {
    /// Binds an ephemeral loopback port.
    pub fn new(server: SocketAddr) -> io::Result<UdpClient> {
        let bind: SocketAddr = if server.is_ipv6() {
            "[::1]:0".parse()
        } else {
            "127.0.0.1:0".parse()
        }
        .map_err(|_| io::Error::other("bad bind address"))?;
        let socket = UdpSocket::bind(bind)?;
        socket.set_read_timeout(Some(Duration::from_millis(500)))?;
        Ok(UdpClient { socket, server })
    }

    /// One datagram out, one back; retried a few times (UDP may drop).
    pub fn call(&self, payload: &[u8]) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; 65536];
        let mut last = io::Error::other("no attempt");
        for _ in 0..10 {
            self.socket.send_to(&frame(payload), self.server)?;
            match self.socket.recv_from(&mut buf) {
                Ok((n, _)) if n >= 4 => return Ok(buf[4..n].to_vec()),
                Ok(_) => last = io::Error::other("short datagram"),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}
