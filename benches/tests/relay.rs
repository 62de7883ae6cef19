//! End-to-end tests of the `spp-tokio-relay` binary: started on an
//! ephemeral port in front of an in-process direct echo server, its
//! `listening tcp ...` line read from stdout; real clients check pipelined
//! frames, many connections at once, an oversized frame, a backend that
//! goes away, and a clean exit on SIGTERM.

use spp_benches::direct::{Limits, Listen, Running, Server};
use spp_plugin_api::framing::encode_u32_be_prefixed;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a client waits for any reply before the test fails.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the relay gets to exit after SIGTERM.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The binary running; killed and reaped on drop.
struct Relay {
    child: Child,
    addr: SocketAddr,
}

impl Relay {
    fn start(backend: SocketAddr, extra: &[&str]) -> Relay {
        let mut child = Command::new(env!("CARGO_BIN_EXE_spp-tokio-relay"))
            .args(["--backend", &backend.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn spp-tokio-relay");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
        let line = lines
            .next()
            .expect("a listening line")
            .expect("readable stdout");
        let addr: SocketAddr = line
            .strip_prefix("listening tcp ")
            .unwrap_or_else(|| panic!("unexpected line {line:?}"))
            .parse()
            .expect("an address");
        assert_ne!(addr.port(), 0);
        Relay { child, addr }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect");
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        stream
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn backend() -> Running {
    Server::spawn(
        &[Listen::tcp("127.0.0.1:0".parse().unwrap())],
        Limits::default(),
    )
    .expect("bind the direct echo")
}

fn frame(i: usize, len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..len).map(|k| (i * 31 + k) as u8).collect();
    encode_u32_be_prefixed(&payload)
}

#[test]
fn frames_are_relayed_in_order_on_many_connections() {
    let echo = backend();
    let relay = Relay::start(echo.listening()[0].addr, &["--threads", "1", "--pool", "4"]);
    let mut clients: Vec<TcpStream> = (0..16).map(|_| relay.connect()).collect();
    let streams: Vec<Vec<u8>> = (0..clients.len())
        .map(|c| (0..50).flat_map(|i| frame(c * 100 + i, i * 7)).collect())
        .collect();
    for (client, stream) in clients.iter_mut().zip(&streams) {
        client.write_all(stream).unwrap();
    }
    for (client, stream) in clients.iter_mut().zip(&streams) {
        let mut got = vec![0u8; stream.len()];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, stream);
    }
    echo.stop().expect("clean stop");
}

#[test]
fn an_oversized_frame_or_a_gone_backend_closes_the_client() {
    let echo = backend();
    let relay = Relay::start(echo.listening()[0].addr, &[]);
    let mut client = relay.connect();
    client.write_all(&[0xff, 0xff, 0xff, 0xff]).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(client.read(&mut buf).unwrap(), 0, "closed");
    // Warm one keep-alive backend connection, then stop the backend.
    let mut client = relay.connect();
    client.write_all(&frame(1, 10)).unwrap();
    let mut got = vec![0u8; frame(1, 10).len()];
    client.read_exact(&mut got).unwrap();
    echo.stop().expect("clean stop");
    client.write_all(&frame(2, 10)).unwrap();
    // Closed (EOF or reset), not a read that timed out.
    match client.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the relay should close the client, got {other:?}"),
    }
}

#[test]
fn sigterm_exits_cleanly() {
    let echo = backend();
    let mut relay = Relay::start(echo.listening()[0].addr, &[]);
    let _idle = relay.connect();
    // SAFETY: kill has no memory effects; the pid is our child's.
    unsafe {
        libc::kill(relay.child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + EXIT_TIMEOUT;
    let status = loop {
        if let Some(status) = relay.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status}");
    echo.stop().expect("clean stop");
}
