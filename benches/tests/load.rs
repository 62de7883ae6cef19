//! End-to-end tests of the load harness against tiny servers started
//! inside the test (threads with std sockets on 127.0.0.1, ephemeral
//! ports): every load shape runs clean against an echo server, and a
//! misbehaving server's wrong answers, closes and silences are counted.
//! Runs are short (0.3 s) and nothing asserts on timing.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use spp_benches::load::{
    self, Load, LoadError, LoadSpec, Report, Request, ResponseRule, Target, Transport,
};

const RUN: Duration = Duration::from_millis(300);
const WARMUP: Duration = Duration::from_millis(50);
/// Runs that must see every kind of misbehaviour several times.
const MISBEHAVE_RUN: Duration = Duration::from_millis(1500);
/// UDP server threads check their stop flag this often.
const UDP_POLL: Duration = Duration::from_millis(20);
const BUF: usize = 64 * 1024;

/// What a TCP test server does with a connection.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Echo every byte.
    Echo,
    /// Rotate per connection: answer with the last byte flipped; close
    /// after the first read; read and never answer.
    Misbehave,
}

/// A TCP server on 127.0.0.1:0, one thread per connection; stopped on drop.
struct TcpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl TcpServer {
    fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let accepted = AtomicUsize::new(0);
        let accept = thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let n = accepted.fetch_add(1, Ordering::Relaxed);
                thread::spawn(move || serve(stream, behaviour, n));
            }
        });
        TcpServer {
            addr,
            stop,
            accept: Some(accept),
        }
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn serve(mut stream: TcpStream, behaviour: Behaviour, n: usize) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; BUF];
    // Ends when the client closes (every run closes its connections).
    loop {
        let got = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(got) => got,
        };
        let reply = &mut buf[..got];
        match (behaviour, n % 3) {
            (Behaviour::Echo, _) => {}
            (Behaviour::Misbehave, 0) => reply[got - 1] ^= 0xff,
            (Behaviour::Misbehave, 1) => return,
            (Behaviour::Misbehave, _) => continue,
        }
        if stream.write_all(reply).is_err() {
            return;
        }
    }
}

/// A UDP server on 127.0.0.1:0; stopped on drop.
struct UdpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl UdpServer {
    /// Echoes datagrams, or with `corrupt` flips their last byte.
    fn start(corrupt: bool) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(UDP_POLL)).unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let handle = thread::spawn(move || {
            let mut buf = vec![0u8; BUF];
            while !stopping.load(Ordering::Relaxed) {
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        if corrupt && n > 0 {
                            buf[n - 1] ^= 0xff;
                        }
                        let _ = sock.send_to(&buf[..n], from);
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => {}
                }
            }
        });
        UdpServer {
            addr,
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn spec(transport: Transport, addr: SocketAddr) -> LoadSpec {
    let mut s = LoadSpec::new(Target::new(transport, addr));
    s.duration = RUN;
    s.warmup = WARMUP;
    s
}

fn assert_clean(r: &Report) {
    assert!(r.requests > 0, "no requests: {r:#?}");
    assert_eq!(r.errors.total, 0, "errors: {r:#?}");
    assert!(r.latency_us.p50 > 0.0 && r.latency_us.max >= r.latency_us.p99);
    assert!(!r.distribution.is_empty());
}

#[test]
fn closed_loop_tcp_on_two_threads() {
    let server = TcpServer::start(Behaviour::Echo);
    let mut s = spec(Transport::Tcp, server.addr);
    s.connections = 4;
    s.threads = 2;
    s.load = Load::Closed { in_flight: 3 };
    let r = load::run(&s).unwrap();
    assert_clean(&r);
    assert_eq!(r.threads, 2);
    assert_eq!(r.send_lag_us, None);
}

#[test]
fn open_loop_tcp() {
    let server = TcpServer::start(Behaviour::Echo);
    let mut s = spec(Transport::Tcp, server.addr);
    s.connections = 2;
    s.load = Load::Open { rate: 2000.0 };
    let r = load::run(&s).unwrap();
    assert_clean(&r);
    assert!(r.send_lag_us.is_some());
}

#[test]
fn udp_closed_and_open_loop() {
    let server = UdpServer::start(false);
    let mut s = spec(Transport::Udp, server.addr);
    s.connections = 3;
    s.load = Load::Closed { in_flight: 2 };
    let r = load::run(&s).unwrap();
    assert_clean(&r);
    assert_eq!(r.transport, Transport::Udp);
    s.load = Load::Open { rate: 1000.0 };
    assert_clean(&load::run(&s).unwrap());
}

#[test]
fn short_connections() {
    let server = TcpServer::start(Behaviour::Echo);
    let mut s = spec(Transport::Tcp, server.addr);
    s.connections = 2;
    s.short = true;
    let r = load::run(&s).unwrap();
    assert_clean(&r);
    assert!(r.short_connections);
}

#[test]
fn request_files_with_response_rules() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ping");
    std::fs::write(&file, b"PING 1\r\n").unwrap();
    let tcp = TcpServer::start(Behaviour::Echo);
    let udp = UdpServer::start(false);
    let rules = [
        ResponseRule::Delimiter(b"\r\n".to_vec()),
        ResponseRule::Length(8),
        ResponseRule::Exact(b"PING 1\r\n".to_vec()),
    ];
    for rule in rules {
        for (transport, addr) in [(Transport::Tcp, tcp.addr), (Transport::Udp, udp.addr)] {
            let mut s = spec(transport, addr);
            s.load = Load::Closed { in_flight: 2 };
            s.request = Request::from_file(&file, rule.clone()).unwrap();
            assert_clean(&load::run(&s).unwrap());
        }
    }
    // A rule the echo cannot satisfy is counted, not ignored.
    let mut s = spec(Transport::Tcp, tcp.addr);
    s.request = Request::from_file(&file, ResponseRule::Exact(b"PONG 1\r\n".to_vec())).unwrap();
    let r = load::run(&s).unwrap();
    assert_eq!(r.requests, 0);
    assert!(r.errors.mismatches > 0, "{r:#?}");
}

#[test]
fn misbehaving_tcp_server_is_counted() {
    let server = TcpServer::start(Behaviour::Misbehave);
    let mut s = spec(Transport::Tcp, server.addr);
    s.connections = 3;
    s.warmup = Duration::ZERO;
    s.timeout = Duration::from_millis(50);
    s.duration = MISBEHAVE_RUN;
    let r = load::run(&s).unwrap();
    let e = &r.errors;
    assert!(e.mismatches > 0, "{r:#?}");
    assert!(e.closed > 0, "{r:#?}");
    assert!(e.timeouts > 0, "{r:#?}");
    assert!(r.reconnects > 0, "{r:#?}");
    assert_eq!(
        e.total,
        e.mismatches + e.timeouts + e.closed + e.aborted + e.connect_errors
    );
}

#[test]
fn misbehaving_short_connections_are_counted() {
    let server = TcpServer::start(Behaviour::Misbehave);
    let mut s = spec(Transport::Tcp, server.addr);
    s.short = true;
    s.warmup = Duration::ZERO;
    s.timeout = Duration::from_millis(50);
    // Each connection misbehaves one of three ways in turn: run long enough
    // for many connections even on a busy machine.
    s.duration = MISBEHAVE_RUN;
    let r = load::run(&s).unwrap();
    let e = &r.errors;
    assert!(e.mismatches > 0 && e.closed > 0 && e.timeouts > 0, "{r:#?}");
}

#[test]
fn wrong_udp_answers_are_counted() {
    let server = UdpServer::start(true);
    let mut s = spec(Transport::Udp, server.addr);
    s.connections = 2;
    let r = load::run(&s).unwrap();
    assert_eq!(r.requests, 0);
    assert!(r.errors.mismatches > 0, "{r:#?}");
}

/// An address nothing listens on (bound, then released).
fn closed_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn unreachable_targets_fail_clearly() {
    let addr = closed_port();
    let err = load::run(&spec(Transport::Tcp, addr)).unwrap_err();
    assert!(matches!(err, LoadError::Connect { .. }), "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp = sock.local_addr().unwrap();
    // Bound but never answering: the probe times out.
    let mut s = spec(Transport::Udp, udp);
    s.timeout = Duration::from_millis(50);
    let err = load::run(&s).unwrap_err();
    assert!(matches!(err, LoadError::NoResponse { .. }), "{err}");
    drop(sock);
    // Nothing bound: ICMP port unreachable.
    let err = load::run(&s).unwrap_err();
    assert!(matches!(err, LoadError::Connect { .. }), "{err}");
}

#[test]
fn invalid_specs_are_refused() {
    let mut s = spec(Transport::Tcp, closed_port());
    s.connections = 0;
    assert!(matches!(
        load::run(&s),
        Err(LoadError::InvalidSpec {
            field: "connections",
            ..
        })
    ));
}

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_spp-bench"))
}

#[test]
fn cli_prints_json_and_plots() {
    let server = TcpServer::start(Behaviour::Echo);
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("latency.svg");
    let out = bench()
        .arg(format!("tcp://{}", server.addr))
        .args(["-c", "2", "-d", "300ms", "-w", "50ms", "--json", "--plot"])
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Report = serde_json::from_slice(&out.stdout).unwrap();
    assert_clean(&report);
    assert_eq!(report.connections, 2);
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(picture.starts_with("<svg") && picture.contains("99%"));

    let out = bench()
        .arg(server.addr.to_string())
        .args(["-d", "300ms", "-w", "0s"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("throughput") && table.contains("p99.9"),
        "{table}"
    );
    // Not a terminal: no progress bar.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cli_errors_are_clear() {
    let bad = bench()
        .args(["127.0.0.1:1", "-c", "many"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let bad = bench().args(["ftp://127.0.0.1:1"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("scheme"));
    let bad = bench()
        .args(["udp://127.0.0.1:1", "--size", "70000"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("size"));
    let bad = bench()
        .args([
            "127.0.0.1:1",
            "--request",
            "/nonexistent/req",
            "--response-length",
            "4",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/nonexistent/req"));

    let addr = closed_port();
    let out = bench().arg(addr.to_string()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("tcp://{addr}")), "{stderr}");
}
