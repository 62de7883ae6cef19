//! Open-loop load in the echo framing: [`PacedLoad`] sends requests at a
//! fixed rate whatever the answers do (a request is due every `1 / rate`
//! from the start; a slow answer does not delay the next request), each on
//! a connection with nothing else in flight (one is opened when none is
//! idle), and counts every request once: echoed in time, answered with
//! something else (e.g. `relay-error:...`), broken connection, or no
//! answer within the client timeout.
//!
//! One thread polls every connection (`poll(2)`), so the load costs
//! little CPU next to the services under test. Counts are also kept per
//! second since the start, so a test can show when failures happened.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Echo frame header: 4-byte big-endian payload length.
const HEADER: usize = 4;
/// Largest answer payload read (the test payloads are tiny).
const MAX_ANSWER: usize = 64 << 10;
/// Most connections open at once (a request due when all are busy and
/// this many are open fails as "no connection").
pub const MAX_CONNECTIONS: usize = 4000;
/// Longest poll wait, so the stop flag is seen.
const MAX_POLL: Duration = Duration::from_millis(5);
/// Outcome texts kept with their counts.
const MAX_KINDS: usize = 32;

/// What a [`PacedLoad`] saw.
#[derive(Clone, Debug, Default)]
pub struct PacedReport {
    /// Requests sent (or due and not sendable, counted as failed).
    pub total: u64,
    /// Echoed within the client timeout.
    pub ok: u64,
    /// Every other outcome.
    pub failed: u64,
    /// Failed requests by kind (`relay-error:-9999`, `timeout`, ...).
    pub kinds: BTreeMap<String, u64>,
    /// `(ok, failed)` per second since the start (by send time).
    pub per_second: Vec<(u64, u64)>,
    /// Slowest echo.
    pub max_latency: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

impl PacedReport {
    /// `failed / total` (0 without requests).
    pub fn failure_ratio(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.failed as f64 / self.total as f64
        }
    }

    fn bucket(&mut self, second: usize) -> &mut (u64, u64) {
        if self.per_second.len() <= second {
            self.per_second.resize(second + 1, (0, 0));
        }
        &mut self.per_second[second]
    }

    fn succeed(&mut self, second: usize, latency: Duration) {
        self.ok += 1;
        self.max_latency = self.max_latency.max(latency);
        self.bucket(second).0 += 1;
    }

    fn fail(&mut self, second: usize, kind: &str) {
        self.failed += 1;
        self.bucket(second).1 += 1;
        if let Some(n) = self.kinds.get_mut(kind) {
            *n += 1;
        } else if self.kinds.len() < MAX_KINDS {
            self.kinds.insert(kind.to_string(), 1);
        } else {
            *self.kinds.entry("(other)".into()).or_default() += 1;
        }
    }
}

/// A request on the wire.
struct Pending {
    payload: Vec<u8>,
    sent: Instant,
    second: usize,
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    pending: Option<Pending>,
}

/// Open-loop clients of an echo-framed service, until
/// [`PacedLoad::finish`].
pub struct PacedLoad {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<PacedReport>>,
    /// When the first request was due.
    pub started: Instant,
}

impl PacedLoad {
    /// Starts sending `rate` requests per second to `addr`; a request not
    /// echoed within `timeout` fails.
    pub fn start(addr: SocketAddr, rate: u32, timeout: Duration) -> PacedLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || run(addr, rate, timeout, started, &flag));
        PacedLoad {
            stop,
            thread: Some(thread),
            started,
        }
    }

    /// Stops sending, waits for the answers in flight (each at most until
    /// its timeout) and returns the counts.
    pub fn finish(mut self) -> PacedReport {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(report)) => report,
            _ => panic!("the paced load thread panicked"),
        }
    }
}

impl Drop for PacedLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(
    addr: SocketAddr,
    rate: u32,
    timeout: Duration,
    started: Instant,
    stop: &AtomicBool,
) -> PacedReport {
    let interval = Duration::from_secs(1) / rate.max(1);
    let mut report = PacedReport::default();
    let mut conns: Vec<Conn> = Vec::new();
    let mut next = 0u64;
    let mut fds: Vec<libc::pollfd> = Vec::new();
    loop {
        let now = Instant::now();
        let stopping = stop.load(Ordering::SeqCst);
        // Every request due by now goes out.
        while !stopping && started + interval * next as u32 <= now {
            let second = (interval * next as u32).as_secs() as usize;
            report.total += 1;
            send(addr, &mut conns, next, second, &mut report);
            next += 1;
        }
        expire(&mut conns, timeout, &mut report);
        report.max_connections = report.max_connections.max(conns.len());
        if stopping && conns.iter().all(|c| c.pending.is_none()) {
            return report;
        }
        let wait = if stopping {
            MAX_POLL
        } else {
            (started + interval * next as u32)
                .saturating_duration_since(Instant::now())
                .min(MAX_POLL)
        };
        fds.clear();
        fds.extend(conns.iter().map(|c| libc::pollfd {
            fd: c.stream.as_raw_fd(),
            events: if c.pending.is_some() { libc::POLLIN } else { 0 },
            revents: 0,
        }));
        let ms = wait.as_millis().max(u128::from(!wait.is_zero())) as i32;
        // SAFETY: `fds` is a live array of `fds.len()` pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n <= 0 {
            continue;
        }
        let mut i = 0;
        while i < conns.len() {
            let ready = fds.get(i).is_some_and(|f| f.revents != 0);
            if ready && !receive(&mut conns[i], &mut report) {
                conns.swap_remove(i);
                fds.swap_remove(i);
                continue;
            }
            i += 1;
        }
    }
}

/// Sends request `id` on an idle connection (or a new one).
fn send(addr: SocketAddr, conns: &mut Vec<Conn>, id: u64, second: usize, report: &mut PacedReport) {
    let payload = format!("paced {id}").into_bytes();
    let at = match conns.iter().position(|c| c.pending.is_none()) {
        Some(at) => at,
        None if conns.len() >= MAX_CONNECTIONS => return report.fail(second, "no connection"),
        None => match connect(addr) {
            Ok(stream) => {
                conns.push(Conn {
                    stream,
                    buf: Vec::new(),
                    pending: None,
                });
                conns.len() - 1
            }
            Err(e) => return report.fail(second, &format!("connect: {:?}", e.kind())),
        },
    };
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&payload);
    // A tiny frame on a connection with nothing in flight fits its send
    // buffer: a short or blocked write means the connection is broken.
    match conns[at].stream.write(&frame) {
        Ok(n) if n == frame.len() => {
            conns[at].pending = Some(Pending {
                payload,
                sent: Instant::now(),
                second,
            });
        }
        Ok(_) | Err(_) => {
            conns.swap_remove(at);
            report.fail(second, "send");
        }
    }
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}

/// Reads what `conn` has; false when it must be closed.
fn receive(conn: &mut Conn, report: &mut PacedReport) -> bool {
    let mut chunk = [0u8; 4096];
    loop {
        match conn.stream.read(&mut chunk) {
            Ok(0) => return broken(conn, report, "closed"),
            Ok(n) => conn.buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return broken(conn, report, "reset"),
        }
    }
    if conn.buf.len() < HEADER {
        return true;
    }
    let len = u32::from_be_bytes([conn.buf[0], conn.buf[1], conn.buf[2], conn.buf[3]]) as usize;
    if len > MAX_ANSWER {
        return broken(conn, report, "answer too large");
    }
    if conn.buf.len() < HEADER + len {
        return true;
    }
    let Some(pending) = conn.pending.take() else {
        return broken(conn, report, "answer without a request");
    };
    let answer = &conn.buf[HEADER..HEADER + len];
    if answer == pending.payload.as_slice() {
        report.succeed(pending.second, pending.sent.elapsed());
    } else {
        report.fail(pending.second, &String::from_utf8_lossy(answer));
    }
    let rest = conn.buf.len() - HEADER - len;
    conn.buf.drain(..HEADER + len);
    rest == 0 || broken(conn, report, "answer without a request")
}

/// Counts the request in flight on `conn` (if any) as `kind`; false.
fn broken(conn: &mut Conn, report: &mut PacedReport, kind: &str) -> bool {
    if let Some(pending) = conn.pending.take() {
        report.fail(pending.second, kind);
    }
    false
}

/// Fails (and closes the connections of) requests older than `timeout`.
fn expire(conns: &mut Vec<Conn>, timeout: Duration, report: &mut PacedReport) {
    conns.retain_mut(|conn| match &conn.pending {
        Some(p) if p.sent.elapsed() > timeout => {
            let second = p.second;
            conn.pending = None;
            report.fail(second, "client timeout");
            false
        }
        _ => true,
    });
}
