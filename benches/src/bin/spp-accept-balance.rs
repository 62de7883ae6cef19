//! `spp-accept-balance`: how evenly K acceptor processes (the shape of K
//! proxy shards) share short TCP connections, and how fast they take
//! them, for the two ways of giving every shard the same port:
//!
//! * `reuseport` — one `SO_REUSEPORT` listening socket per acceptor, all
//!   bound to the same address (the kernel hashes each connection to one);
//! * `exclusive` — one shared listening socket, registered in each
//!   acceptor's epoll with `EPOLLEXCLUSIVE` (the kernel wakes one waiter).
//!
//! The acceptors are this program re-executed with `--acceptor-fd`, each a
//! single-threaded epoll loop that accepts at most `--accepts-per-wake`
//! ([`MAX_ACCEPTS_PER_WAKE`], as the proxy per turn) per wake, reads
//! the client's [`PAYLOAD`] bytes, echoes them and closes. The client
//! (threads of this process) opens `--connections` connections, each:
//! connect, write, read the echo, close; `--concurrency` at a time.
//! Per run: each acceptor's share, max/min share, connections per second.
//!
//! Then the stranding check: with the sockets kept open by this process
//! (as the controller keeps them), one acceptor is killed and
//! [`STRANDED_PROBES`] connections are made; it reports how many were
//! served at once, and how many were served only once a new acceptor
//! took the dead one's socket (and how long they waited).

use anyhow::{bail, Context};
use clap::Parser;
use socket2::{Domain, Socket, Type};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Bytes each connection sends and gets back.
const PAYLOAD: usize = 64;
/// Connections an acceptor takes per wake at most, by default (the
/// proxy's `MAX_ACCEPTS_PER_TURN`).
const MAX_ACCEPTS_PER_WAKE: usize = 128;
/// Listen backlog of every socket.
const BACKLOG: i32 = 1024;
/// Events per `epoll_wait`.
const EVENTS: usize = 256;
/// Connections made while one acceptor is dead.
const STRANDED_PROBES: usize = 100;
/// How long a probe may wait for its echo before it counts as stranded.
const STRANDED_AFTER: Duration = Duration::from_millis(300);
/// The epoll data of the listening socket and of the stop pipe.
const LISTENER_KEY: u64 = u64::MAX;
const STOP_KEY: u64 = u64::MAX - 1;

#[derive(Parser, Debug)]
#[command(about = "Accept balance and short-connection rate: SO_REUSEPORT vs EPOLLEXCLUSIVE")]
struct Args {
    /// Short connections per run.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Client connections at a time.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Acceptor counts to run (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "2,4")]
    acceptors: Vec<usize>,
    /// Runs per (option, acceptor count).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Connections an acceptor takes per wake at most.
    #[arg(long, default_value_t = MAX_ACCEPTS_PER_WAKE)]
    accepts_per_wake: usize,
    /// Internal: run as an acceptor on this inherited listening fd.
    #[arg(long, hide = true)]
    acceptor_fd: Option<RawFd>,
    /// Internal: register the listener with EPOLLEXCLUSIVE.
    #[arg(long, hide = true)]
    exclusive: bool,
}

/// The two ways of sharing a port between acceptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sharing {
    ReusePort,
    Exclusive,
}

impl Sharing {
    fn name(self) -> &'static str {
        match self {
            Sharing::ReusePort => "reuseport",
            Sharing::Exclusive => "exclusive",
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(fd) = args.acceptor_fd {
        return acceptor(fd, args.exclusive, args.accepts_per_wake);
    }
    println!(
        "{} short connections per run ({} B echo, {} at a time), {} runs each, \
         at most {} accepts per wake",
        args.connections, PAYLOAD, args.concurrency, args.rounds, args.accepts_per_wake
    );
    println!("option     K  shares (per acceptor)              max/min  conn/s");
    for &k in &args.acceptors {
        for sharing in [Sharing::ReusePort, Sharing::Exclusive] {
            for _ in 0..args.rounds {
                let run = Run::start(sharing, k, args.accepts_per_wake)?;
                let started = Instant::now();
                let failed = client(run.addr, args.connections, args.concurrency);
                let secs = started.elapsed().as_secs_f64();
                let counts = run.finish()?;
                let total: u64 = counts.iter().sum();
                let shares: Vec<String> = counts
                    .iter()
                    .map(|&c| format!("{:.3}", c as f64 / total.max(1) as f64))
                    .collect();
                let max = counts.iter().copied().max().unwrap_or(0);
                let min = counts.iter().copied().min().unwrap_or(0);
                println!(
                    "{:<9} {:>2}  {:<33} {:>7.3}  {:>6.0}{}",
                    sharing.name(),
                    k,
                    shares.join(" "),
                    max as f64 / min.max(1) as f64,
                    (args.connections - failed) as f64 / secs,
                    if failed > 0 {
                        format!("  ({failed} failed)")
                    } else {
                        String::new()
                    }
                );
            }
        }
    }
    for sharing in [Sharing::ReusePort, Sharing::Exclusive] {
        stranded(sharing, args.accepts_per_wake)?;
    }
    Ok(())
}

/// The acceptors of one run and the sockets they serve.
struct Run {
    sharing: Sharing,
    sockets: Vec<Socket>,
    children: Vec<(Child, BufReader<ChildStdout>)>,
    addr: SocketAddr,
    accepts_per_wake: usize,
}

impl Run {
    /// Binds the socket(s) on 127.0.0.1:0 and starts `k` acceptors.
    fn start(sharing: Sharing, k: usize, accepts_per_wake: usize) -> anyhow::Result<Run> {
        let count = if sharing == Sharing::ReusePort { k } else { 1 };
        let mut sockets = Vec::with_capacity(count);
        let mut addr: SocketAddr = "127.0.0.1:0".parse()?;
        for _ in 0..count {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
            s.set_reuse_port(sharing == Sharing::ReusePort)?;
            s.set_nonblocking(true)?;
            s.bind(&addr.into())?;
            s.listen(BACKLOG)?;
            addr = s
                .local_addr()?
                .as_socket()
                .context("bound to a non-IP address")?;
            sockets.push(s);
        }
        let mut run = Run {
            sharing,
            sockets,
            children: Vec::new(),
            addr,
            accepts_per_wake,
        };
        for i in 0..k {
            run.spawn(i % count)?;
        }
        Ok(run)
    }

    /// Starts an acceptor on socket `i`; returns once it is ready.
    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let fd = self.sockets[i].as_raw_fd();
        // Inheritable for this one spawn only (this process spawns from
        // one thread).
        self.sockets[i].set_cloexec(false)?;
        let spawned = Command::new(std::env::current_exe()?)
            .arg("--acceptor-fd")
            .arg(fd.to_string())
            .arg("--accepts-per-wake")
            .arg(self.accepts_per_wake.to_string())
            .args(
                self.sharing
                    .eq(&Sharing::Exclusive)
                    .then_some("--exclusive"),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn();
        self.sockets[i].set_cloexec(true)?;
        let mut child = spawned.context("starting an acceptor")?;
        let mut out = BufReader::new(child.stdout.take().context("acceptor stdout")?);
        let mut line = String::new();
        out.read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("acceptor said {line:?}");
        }
        self.children.push((child, out));
        Ok(())
    }

    /// Stops every acceptor; returns how many each accepted.
    fn finish(mut self) -> anyhow::Result<Vec<u64>> {
        let mut counts = Vec::new();
        for (child, out) in &mut self.children {
            drop(child.stdin.take());
            let mut line = String::new();
            out.read_line(&mut line)?;
            child.wait()?;
            let n = line
                .trim()
                .strip_prefix("accepted ")
                .and_then(|n| n.parse().ok())
                .with_context(|| format!("acceptor said {line:?}"))?;
            counts.push(n);
        }
        Ok(counts)
    }
}

/// Opens `total` short connections to `addr`, `concurrency` at a time;
/// returns how many failed.
fn client(addr: SocketAddr, total: usize, concurrency: usize) -> usize {
    let next = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..concurrency.max(1) {
            scope.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    if one_connection(addr).is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    failed.into_inner()
}

/// Connect, write [`PAYLOAD`] bytes, read them back, close.
fn one_connection(addr: SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_nodelay(true)?;
    let buf = [7u8; PAYLOAD];
    s.write_all(&buf)?;
    let mut back = [0u8; PAYLOAD];
    s.read_exact(&mut back)?;
    Ok(())
}

/// Kills one of two acceptors (its socket stays open here), makes
/// [`STRANDED_PROBES`] connections, then starts a new acceptor on the
/// dead one's socket, and reports who was served when.
fn stranded(sharing: Sharing, accepts_per_wake: usize) -> anyhow::Result<()> {
    let mut run = Run::start(sharing, 2, accepts_per_wake)?;
    let (mut dead, _) = run.children.remove(0);
    dead.kill()?;
    dead.wait()?;
    let mut probes = Vec::with_capacity(STRANDED_PROBES);
    for _ in 0..STRANDED_PROBES {
        let mut s = TcpStream::connect_timeout(&run.addr, Duration::from_secs(2))?;
        s.write_all(&[1u8; PAYLOAD])?;
        probes.push(s);
    }
    let sent = Instant::now();
    std::thread::sleep(STRANDED_AFTER);
    let mut waiting = Vec::new();
    for mut s in probes {
        s.set_nonblocking(true)?;
        let mut back = [0u8; PAYLOAD];
        match s.read(&mut back) {
            Ok(n) if n > 0 => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => waiting.push(s),
            other => bail!("probe: {other:?}"),
        }
    }
    let at_once = STRANDED_PROBES - waiting.len();
    let stranded = waiting.len();
    run.spawn(0)?;
    let mut later = 0;
    let mut slowest = Duration::ZERO;
    for mut s in waiting {
        s.set_nonblocking(false)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut back = [0u8; PAYLOAD];
        if s.read_exact(&mut back).is_ok() {
            later += 1;
            slowest = slowest.max(sent.elapsed());
        }
    }
    println!(
        "{}: one of 2 acceptors killed, socket kept open: {STRANDED_PROBES} connections made, \
         {at_once} served at once, {stranded} waited; {later} of those served after a new \
         acceptor took the socket (last {} ms after sending)",
        sharing.name(),
        slowest.as_millis()
    );
    run.finish()?;
    Ok(())
}

/// The acceptor process: serves `fd` until its stdin closes, then prints
/// how many connections it accepted.
fn acceptor(fd: RawFd, exclusive: bool, accepts_per_wake: usize) -> anyhow::Result<()> {
    let ep = Epoll::new()?;
    let listen_events = libc::EPOLLIN as u32
        | if exclusive {
            libc::EPOLLEXCLUSIVE as u32
        } else {
            0
        };
    ep.add(fd, listen_events, LISTENER_KEY)?;
    ep.add(libc::STDIN_FILENO, libc::EPOLLIN as u32, STOP_KEY)?;
    println!("ready");
    std::io::stdout().flush()?;
    // SAFETY: zero is a valid epoll_event.
    let mut events: Vec<libc::epoll_event> = vec![unsafe { std::mem::zeroed() }; EVENTS];
    let mut accepted = 0u64;
    loop {
        // SAFETY: `events` holds EVENTS entries the kernel may write.
        let n = unsafe { libc::epoll_wait(ep.0, events.as_mut_ptr(), EVENTS as i32, -1) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        for ev in &events[..n as usize] {
            match ev.u64 {
                STOP_KEY => {
                    println!("accepted {accepted}");
                    return Ok(());
                }
                LISTENER_KEY => {
                    for _ in 0..accepts_per_wake.max(1) {
                        // SAFETY: plain accept4 on our listening fd; the
                        // peer address is not asked for.
                        let c = unsafe {
                            libc::accept4(
                                fd,
                                std::ptr::null_mut(),
                                std::ptr::null_mut(),
                                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                            )
                        };
                        if c < 0 {
                            break;
                        }
                        accepted += 1;
                        ep.add(c, libc::EPOLLIN as u32, c as u64)?;
                    }
                }
                key => echo_and_close(key as RawFd),
            }
        }
    }
}

/// Reads what the client sent, echoes it, closes (the whole payload
/// comes in one segment on loopback; a short echo shows as a client
/// error).
fn echo_and_close(c: RawFd) {
    let mut buf = [0u8; PAYLOAD];
    // SAFETY: `c` is a connection this acceptor owns; `buf` is writable
    // for its length.
    let n = unsafe { libc::read(c, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 && std::io::Error::last_os_error().kind() == ErrorKind::WouldBlock {
        return;
    }
    if n > 0 {
        // SAFETY: as above; `n` bytes of `buf` are initialised.
        unsafe { libc::write(c, buf.as_ptr().cast(), n as usize) };
    }
    // SAFETY: closing our own connection (which also leaves the epoll).
    unsafe { libc::close(c) };
}

/// An epoll instance.
struct Epoll(RawFd);

impl Epoll {
    fn new() -> std::io::Result<Epoll> {
        // SAFETY: no pointers involved.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Epoll(fd))
    }

    fn add(&self, fd: RawFd, events: u32, key: u64) -> std::io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: key };
        // SAFETY: `ev` is a valid epoll_event for the call's duration.
        if unsafe { libc::epoll_ctl(self.0, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: our own epoll fd, closed once.
        unsafe { libc::close(self.0) };
    }
}
