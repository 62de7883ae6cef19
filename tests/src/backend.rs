//! Downstream backends for the call tests: threads of the test process on
//! 127.0.0.1 ephemeral ports, speaking the echo protocol's frames (4-byte
//! big-endian length, then the payload) and misbehaving on purpose.
//!
//! * [`TcpBackend`] serves every accepted connection on its own thread as
//!   its [`Behaviour`] says and counts the connections it accepted.
//! * [`UdpBackend`] echoes each datagram, or keeps silent.
//! * [`refused_addr`] is a loopback port nothing listens on.
//!
//! Dropping a backend stops its threads (each wakes at least every
//! [`POLL`]) and waits for them.

use crate::client::frame;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often a backend thread blocked on a read looks at its stop flag.
pub const POLL: Duration = Duration::from_millis(50);
/// The largest request frame a backend reads (a larger one closes).
const MAX_FRAME: usize = 1 << 20;
/// The accept backlog of a [`TcpBackend`].
const BACKLOG: i32 = 1024;
/// What [`Behaviour::HalfThenClose`] announces, of which it sends half.
const HALF_ANNOUNCED: usize = 100;

/// What a [`TcpBackend`] does with each request frame.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// Echoes the frame after `delay`.
    Echo {
        /// Wait before each answer.
        delay: Duration,
    },
    /// Echoes the first frame at once, then closes the connection (a
    /// backend that drops idle keep-alive connections).
    EchoOnceThenClose,
    /// Reads and never answers (the connection stays open).
    Silent,
    /// Sends the header of a frame and half its payload, then closes.
    HalfThenClose,
    /// Answers a frame of this many payload bytes.
    Oversize(usize),
    /// Answers `<name>:<payload>` after `delay` (which backend answered).
    Named {
        /// The tag before the payload.
        name: &'static str,
        /// Wait before each answer.
        delay: Duration,
    },
}

impl Behaviour {
    /// Echoes at once.
    pub const ECHO: Behaviour = Behaviour::Echo {
        delay: Duration::ZERO,
    };
}

/// A TCP backend on 127.0.0.1.
pub struct TcpBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl TcpBackend {
    /// Listens on an ephemeral port and serves as `behaviour` says.
    pub fn start(behaviour: Behaviour) -> TcpBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
        // std listens with a backlog of 128: a burst of more connects than
        // that would wait out a SYN retransmit (1 s) and time the test,
        // not spp. Listening again on Linux only raises the backlog.
        // SAFETY: plain syscall on a socket this function owns.
        let rc = unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) };
        assert_eq!(rc, 0, "listen: {}", io::Error::last_os_error());
        let addr = listener.local_addr().expect("backend addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (accepted, stop) = (accepted.clone(), stop.clone());
            std::thread::spawn(move || accept_loop(&listener, behaviour, &accepted, &stop))
        };
        TcpBackend {
            addr,
            accepted,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for TcpBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, POLL);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    behaviour: Behaviour,
    accepted: &AtomicUsize,
    stop: &Arc<AtomicBool>,
) {
    let mut conns = Vec::new();
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        accepted.fetch_add(1, Ordering::SeqCst);
        let stop = stop.clone();
        conns.push(std::thread::spawn(move || {
            let _ = serve(stream, behaviour, &stop);
        }));
    }
    for conn in conns {
        let _ = conn.join();
    }
}

/// Serves one connection until EOF, an error, a close its behaviour asks
/// for, or the stop flag.
fn serve(mut stream: TcpStream, behaviour: Behaviour, stop: &AtomicBool) -> io::Result<()> {
    stream.set_read_timeout(Some(POLL))?;
    stream.set_nodelay(true)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::SeqCst) {
                    return Ok(());
                }
                continue;
            }
            Err(e) => return Err(e),
        }
        while let Some(header) = buf.first_chunk::<4>() {
            let len = u32::from_be_bytes(*header) as usize;
            if len > MAX_FRAME {
                return Ok(());
            }
            if buf.len() < 4 + len {
                break;
            }
            let request: Vec<u8> = buf.drain(..4 + len).collect();
            match behaviour {
                Behaviour::Echo { delay } => {
                    std::thread::sleep(delay);
                    stream.write_all(&request)?;
                }
                Behaviour::EchoOnceThenClose => {
                    stream.write_all(&request)?;
                    return stream.shutdown(std::net::Shutdown::Both);
                }
                Behaviour::Silent => {}
                Behaviour::HalfThenClose => {
                    let mut half = (HALF_ANNOUNCED as u32).to_be_bytes().to_vec();
                    half.extend_from_slice(&[b'h'; HALF_ANNOUNCED / 2]);
                    stream.write_all(&half)?;
                    stream.flush()?;
                    return stream.shutdown(std::net::Shutdown::Both);
                }
                Behaviour::Oversize(n) => stream.write_all(&frame(&vec![b'x'; n]))?,
                Behaviour::Named { name, delay } => {
                    std::thread::sleep(delay);
                    let mut answer = format!("{name}:").into_bytes();
                    answer.extend_from_slice(&request[4..]);
                    stream.write_all(&frame(&answer))?;
                }
            }
        }
    }
}

/// A UDP backend on 127.0.0.1: echoes each datagram, or keeps silent.
pub struct UdpBackend {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpBackend {
    /// Binds an ephemeral port; `echo` false: reads and never answers.
    pub fn start(echo: bool) -> UdpBackend {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind udp backend");
        socket.set_read_timeout(Some(POLL)).expect("udp timeout");
        let addr = socket.local_addr().expect("udp backend addr");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::SeqCst) {
                    if let Ok((n, from)) = socket.recv_from(&mut buf) {
                        if echo {
                            let _ = socket.send_to(&buf[..n], from);
                        }
                    }
                }
            })
        };
        UdpBackend {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for UdpBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A loopback port nothing listens on (bound, then closed): a connect
/// there is refused.
pub fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::TcpClient;

    #[test]
    fn each_behaviour_answers_as_documented() {
        let echo = TcpBackend::start(Behaviour::ECHO);
        let mut client = TcpClient::connect(echo.addr()).expect("connect");
        assert_eq!(client.call(b"one").expect("echo"), b"one");
        assert_eq!(client.call(b"two").expect("echo"), b"two");
        assert_eq!(echo.accepted(), 1);

        let once = TcpBackend::start(Behaviour::EchoOnceThenClose);
        let mut client = TcpClient::connect(once.addr()).expect("connect");
        assert_eq!(client.call(b"only").expect("echo"), b"only");
        assert!(client.closed_by_server());

        let big = TcpBackend::start(Behaviour::Oversize(300));
        let mut client = TcpClient::connect(big.addr()).expect("connect");
        assert_eq!(client.call(b"x").expect("answer"), vec![b'x'; 300]);

        let half = TcpBackend::start(Behaviour::HalfThenClose);
        let mut client = TcpClient::connect(half.addr()).expect("connect");
        client.send(b"x").expect("send");
        let mut got = Vec::new();
        let _ = client.stream.read_to_end(&mut got);
        assert_eq!(got.len(), 4 + HALF_ANNOUNCED / 2, "{got:?}");

        let silent = TcpBackend::start(Behaviour::Silent);
        let mut client = TcpClient::connect(silent.addr()).expect("connect");
        client
            .stream
            .set_read_timeout(Some(POLL * 4))
            .expect("timeout");
        assert!(client.call(b"x").is_err(), "silent answered");

        assert!(TcpStream::connect(refused_addr()).is_err());

        let udp = UdpBackend::start(true);
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        socket.send_to(b"dgram", udp.addr()).expect("send");
        let mut buf = [0u8; 64];
        let (n, _) = socket.recv_from(&mut buf).expect("echo");
        assert_eq!(&buf[..n], b"dgram");
    }
}
