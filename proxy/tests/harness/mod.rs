//! Test rig for the real `spp-proxy` binary: the test process plays the
//! controller (it creates the proxy region, one pair region per worker
//! slot, the doorbells and the listeners, and starts the proxy with them
//! inherited; it can publish live limits) and the worker (a thread that
//! serves a pair's request ring by echoing every request back, or by
//! reporting each as expired — `KIND_EXPIRED`, with or without its bytes —
//! as a real worker does with a request older than `msg_timeout`). The
//! fake worker speaks the pair protocol through its worker end
//! (`spp_ipc::pair::WorkerSlot`, `WorkerRequests`, `WorkerResponses`); like
//! a real worker, it skips (and counts) requests stamped for another
//! worker generation.

#![allow(dead_code)]

use spp_ipc::doorbell::Doorbell;
use spp_ipc::launch::{
    GroupFds, Launch, ListenerFd, LogSpec, PairFds, ProxyLaunch, ProxyLimits, Transport, LAUNCH_ENV,
};
use spp_ipc::layout::{PairLayout, PairRegion, ProxyRegion, ProxyState, ProxyStats};
use spp_ipc::pair::{Request, ResponseKind, WorkerSlot};
use spp_ipc::ring::PushError;
use spp_ipc::shm::clear_cloexec;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long any single wait in a test may take.
pub const DEADLINE: Duration = Duration::from_secs(20);
/// Ring sizes of every pair.
pub const RING_CAPACITY: usize = 1 << 20;
/// Longest a fake worker blocks on its doorbell before looking again.
const WORKER_WAIT: Duration = Duration::from_millis(20);
/// Pause between two looks at something a test waits for.
const POLL_STEP: Duration = Duration::from_millis(2);

/// Waits until `cond` holds, failing the test after [`DEADLINE`].
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(POLL_STEP);
    }
}

/// The echo plugin's frame: 4-byte big-endian length + payload.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

/// Reads one echo frame; `None` on EOF or reset.
pub fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut header = [0u8; 4];
    s.read_exact(&mut header).ok()?;
    let mut payload = vec![0u8; u32::from_be_bytes(header) as usize];
    s.read_exact(&mut payload).ok()?;
    Some(payload)
}

/// One request / response round trip.
pub fn round_trip(s: &mut TcpStream, payload: &[u8]) -> Option<Vec<u8>> {
    s.write_all(&frame(payload)).ok()?;
    read_frame(s)
}

/// Whether the proxy closed `s` (EOF or reset), waiting at most the read
/// timeout.
pub fn is_closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// A client connection with bounded reads and writes.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to the proxy");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Where cargo put the echo plugin (a dev-dependency of this crate).
pub fn echo_plugin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps dir").to_path_buf();
    for dir in [deps.clone(), deps.join("..")] {
        let path = dir.join("libspp_echo.so");
        if path.exists() {
            return path;
        }
    }
    panic!(
        "libspp_echo.so not found next to {}; run `cargo build -p spp-example-echo`",
        deps.display()
    );
}

/// Builds `tests/plugins/hooks.c` (once per test binary) next to the test
/// binary and returns its path.
pub fn hooks_plugin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| build_hooks("libspp_proxy_test_hooks.so", &[]))
        .clone()
}

/// [`hooks_plugin`] framing TCP with `spp_input_ctx` and a context per
/// connection (`-DHOOKS_CTX`).
pub fn hooks_plugin_with_ctx() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| build_hooks("libspp_proxy_test_hooks_ctx.so", &["-DHOOKS_CTX"]))
        .clone()
}

/// [`hooks_plugin`] built without `spp_exception` (`-DHOOKS_NO_EXCEPTION`),
/// for what the proxy does when a plugin has no exception hook.
pub fn hooks_plugin_without_exception() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            build_hooks(
                "libspp_proxy_test_hooks_noexc.so",
                &["-DHOOKS_NO_EXCEPTION"],
            )
        })
        .clone()
}

fn build_hooks(name: &str, defines: &[&str]) -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let exe = std::env::current_exe().expect("test binary path");
    let out_dir = exe.parent().expect("deps dir").to_path_buf();
    let out = out_dir.join(name);
    let tmp = out_dir.join(format!("{name}.{}", std::process::id()));
    let status = Command::new("cc")
        .args([
            "-shared", "-fPIC", "-pthread", "-O1", "-Wall", "-Wextra", "-Werror",
        ])
        .args(defines)
        .arg("-I")
        .arg(manifest.join("../plugin-api/include"))
        .arg("-o")
        .arg(&tmp)
        .arg(manifest.join("tests/plugins/hooks.c"))
        .status()
        .expect("run the C compiler `cc`");
    assert!(status.success(), "compiling tests/plugins/hooks.c failed");
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// A process that stands in for a worker's pid, so a test can make that
/// "worker" die. Killed and reaped on drop.
pub struct Sleeper(Child);

impl Sleeper {
    /// Starts `sleep` for longer than any test.
    pub fn spawn() -> Sleeper {
        Sleeper(
            Command::new("sleep")
                .arg("600")
                .spawn()
                .expect("start sleep"),
        )
    }

    /// Its pid.
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Kills it and waits for it to be gone.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a fake worker answers a request with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Answer {
    /// A response with the request's bytes.
    Echo = 0,
    /// `KIND_EXPIRED` carrying the request's bytes.
    ExpiredWithBytes = 1,
    /// `KIND_EXPIRED` without the bytes (they did not fit).
    ExpiredEmpty = 2,
    /// `KIND_EXPIRED` with the bytes for a payload starting with
    /// [`LATE_MARK`], an echo for any other.
    ExpireMarked = 3,
    /// A response framing the request's note, then its payload.
    EchoNote = 4,
}

/// The first payload byte of a request [`Answer::ExpireMarked`] expires.
pub const LATE_MARK: u8 = b'L';
/// Bytes of the echo frame's length prefix.
pub const FRAME_HEADER: usize = 4;

/// What a fake worker does with requests.
#[derive(Clone)]
pub struct WorkerCtl {
    stop: Arc<AtomicBool>,
    hold: Arc<AtomicBool>,
    /// Asked to start draining / did.
    drain: Arc<AtomicBool>,
    draining: Arc<AtomicBool>,
    answer: Arc<AtomicU8>,
    skipped: Arc<AtomicU64>,
    served: Arc<AtomicU64>,
}

impl WorkerCtl {
    /// Stop consuming requests (they stay in flight).
    pub fn hold(&self) {
        self.hold.store(true, Ordering::SeqCst);
    }
    /// Resume consuming.
    pub fn release(&self) {
        self.hold.store(false, Ordering::SeqCst);
    }
    /// How the next requests are answered.
    pub fn answer(&self, answer: Answer) {
        self.answer.store(answer as u8, Ordering::SeqCst);
    }
    /// Requests skipped because they were stamped for another generation.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::SeqCst)
    }
    /// Requests answered (echoed or reported expired).
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }
}

/// A worker thread echoing one pair's requests.
pub struct FakeWorker {
    pub ctl: WorkerCtl,
    /// The `worker_generation` it took the slot with.
    pub generation: u64,
    handle: Option<JoinHandle<()>>,
}

impl FakeWorker {
    /// Takes the slot like a real worker (pid, new generation, discard the
    /// ring, Ready) and serves it until dropped.
    pub fn start(rig: &Rig, slot: usize, pid: u32, hold: bool) -> FakeWorker {
        let ctl = WorkerCtl {
            stop: Arc::new(AtomicBool::new(false)),
            hold: Arc::new(AtomicBool::new(hold)),
            drain: Arc::new(AtomicBool::new(false)),
            draining: Arc::new(AtomicBool::new(false)),
            answer: Arc::new(AtomicU8::new(Answer::Echo as u8)),
            skipped: Arc::new(AtomicU64::new(0)),
            served: Arc::new(AtomicU64::new(0)),
        };
        let pair = Arc::clone(&rig.pairs[slot]);
        let bell = Arc::clone(&rig.worker_bells[slot]);
        let proxy = Arc::clone(&rig.proxy_region);
        let proxy_bell = Arc::clone(&rig.proxy_bell);
        // The generation it took the slot with; 0 until it is Ready.
        let ready = Arc::new(AtomicU64::new(0));
        let ready2 = Arc::clone(&ready);
        let thread_ctl = ctl.clone();
        let handle = std::thread::spawn(move || {
            serve(&pair, &bell, &proxy, &proxy_bell, pid, &thread_ctl, &ready2)
        });
        wait_for("fake worker ready", || ready.load(Ordering::Acquire) != 0);
        FakeWorker {
            ctl,
            generation: ready.load(Ordering::Acquire),
            handle: Some(handle),
        }
    }

    /// The worker leaves service (`Draining`, and the proxy's doorbell
    /// rung) as a real one does; it keeps answering what it holds. Returns
    /// once it has said so.
    pub fn start_draining(&self) {
        self.ctl.drain.store(true, Ordering::SeqCst);
        wait_for("the worker to start draining", || {
            self.ctl.draining.load(Ordering::SeqCst)
        });
    }

    /// Stops the thread (the slot keeps its state).
    pub fn stop(mut self) {
        self.join();
    }

    fn join(&mut self) {
        self.ctl.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.join().expect("fake worker panicked");
        }
    }
}

impl Drop for FakeWorker {
    fn drop(&mut self) {
        self.join();
    }
}

fn serve(
    pair: &PairRegion,
    bell: &Doorbell,
    proxy: &ProxyRegion,
    proxy_bell: &Doorbell,
    pid: u32,
    ctl: &WorkerCtl,
    ready: &AtomicU64,
) {
    let slot = WorkerSlot::take(pair, proxy_bell, pid);
    // SAFETY: this thread is the only request consumer and response
    // producer of the pair while it runs; the regions outlive it (Arc).
    let mut requests = unsafe { slot.attach_requests(bell) }.unwrap();
    // SAFETY: as above.
    let mut responses = unsafe { slot.attach_responses(proxy) }.unwrap();
    slot.set_ready();
    ready.store(slot.generation(), Ordering::Release);
    while !ctl.stop.load(Ordering::SeqCst) {
        if ctl.drain.load(Ordering::SeqCst) && !ctl.draining.load(Ordering::SeqCst) {
            slot.start_draining();
            ctl.draining.store(true, Ordering::SeqCst);
        }
        if ctl.hold.load(Ordering::SeqCst) {
            std::thread::sleep(WORKER_WAIT);
            continue;
        }
        let mut last_seq = None;
        while let Some(rec) = requests.peek().unwrap() {
            let stride = rec.stride();
            match rec.request {
                Request::OtherGeneration { meta, .. } => {
                    // Pushed for another generation: the proxy fails it.
                    ctl.skipped.fetch_add(1, Ordering::SeqCst);
                    last_seq = Some(meta.seq);
                }
                Request::Mine {
                    meta,
                    note,
                    bytes: req,
                } => {
                    let answer = ctl.answer.load(Ordering::SeqCst);
                    let noted;
                    let (kind, bytes) = match answer {
                        a if a == Answer::EchoNote as u8 => {
                            let body = [note, req.get(FRAME_HEADER..).unwrap_or(&[])].concat();
                            noted = frame(&body);
                            (ResponseKind::Reply, &noted[..])
                        }
                        a if a == Answer::ExpiredWithBytes as u8 => (ResponseKind::Expired, req),
                        a if a == Answer::ExpiredEmpty as u8 => (ResponseKind::Expired, &[][..]),
                        a if a == Answer::ExpireMarked as u8
                            && req.get(FRAME_HEADER) == Some(&LATE_MARK) =>
                        {
                            (ResponseKind::Expired, req)
                        }
                        _ => (ResponseKind::Reply, req),
                    };
                    ctl.served.fetch_add(1, Ordering::SeqCst);
                    loop {
                        match responses.push(kind, meta.conn.flow, bytes) {
                            Ok(()) => break,
                            Err(PushError::TooLarge) => panic!("reply too large for the ring"),
                            Err(PushError::Full) => {
                                responses.publish();
                                responses.wake_proxy();
                                if ctl.stop.load(Ordering::SeqCst) {
                                    return;
                                }
                                std::thread::yield_now();
                            }
                        }
                    }
                    last_seq = Some(meta.seq);
                }
                Request::Malformed { len } => panic!("malformed request record ({len} bytes)"),
                Request::UnknownKind { .. } | Request::FlowsClosed(_) => {}
            }
            requests.advance(stride);
        }
        if let Some(seq) = last_seq {
            requests.release();
            responses.complete(seq);
            responses.publish();
            continue;
        }
        requests.sleep(WORKER_WAIT, || false);
    }
}

/// Limits for a test proxy (generous unless a test narrows one).
pub fn limits() -> ProxyLimits {
    ProxyLimits {
        max_connections: 1000,
        max_request_size: 1 << 20,
        max_send_buffer: 4 << 20,
        idle_timeout_ms: 60_000,
        request_timeout_ms: 60_000,
        max_udp_flows: 1000,
        spin_us: 50,
        drain_timeout_ms: 10_000,
    }
}

/// The controller side: shared state, listeners and the proxy process.
/// Set `log_file` before starting the proxy to hand it a log file to
/// reopen on SIGHUP.
pub struct Rig {
    pub proxy_region: Arc<ProxyRegion>,
    pub proxy_bell: Arc<Doorbell>,
    pub pairs: Vec<Arc<PairRegion>>,
    pub worker_bells: Vec<Arc<Doorbell>>,
    pub tcp: TcpListener,
    pub udp: UdpSocket,
    pub tcp_addr: SocketAddr,
    pub udp_addr: SocketAddr,
    /// A TCP listener on [::1], when this host has IPv6 loopback.
    pub tcp6: Option<TcpListener>,
    pub child: Option<Child>,
    /// `LogSpec::file` for the proxy (its stderr is the rig's log either way).
    pub log_file: Option<PathBuf>,
    /// Every fd handed to the proxy (same numbers in the proxy).
    pub fds: Vec<RawFd>,
    layout: PairLayout,
    log: tempfile::NamedTempFile,
}

impl Rig {
    /// Creates the shared state and listeners for one group (id 1) of
    /// `slots` worker slots.
    pub fn new(slots: u32) -> Rig {
        Rig::with_request_ring(slots, RING_CAPACITY)
    }

    /// [`Rig::new`] with request rings of `request_capacity` bytes.
    pub fn with_request_ring(slots: u32, request_capacity: usize) -> Rig {
        let layout = PairLayout {
            request_capacity,
            response_capacity: RING_CAPACITY,
        };
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        Rig {
            proxy_region: Arc::new(ProxyRegion::create().unwrap()),
            proxy_bell: Arc::new(Doorbell::create().unwrap()),
            pairs: (0..slots)
                .map(|i| Arc::new(PairRegion::create(1, i, layout).unwrap()))
                .collect(),
            worker_bells: (0..slots)
                .map(|_| Arc::new(Doorbell::create().unwrap()))
                .collect(),
            tcp_addr: tcp.local_addr().unwrap(),
            udp_addr: udp.local_addr().unwrap(),
            tcp,
            udp,
            tcp6: TcpListener::bind("[::1]:0").ok(),
            child: None,
            log_file: None,
            fds: Vec::new(),
            layout,
            log: tempfile::NamedTempFile::new().unwrap(),
        }
    }

    /// Starts `spp-proxy` and waits until it is Ready.
    pub fn start_proxy(&mut self, limits: ProxyLimits) {
        self.start_proxy_with(limits, echo_plugin(), "");
    }

    /// Starts `spp-proxy` with `plugin` and waits until it is Ready.
    pub fn start_proxy_with(&mut self, limits: ProxyLimits, plugin: PathBuf, conf: &str) {
        self.spawn_proxy(limits, plugin, conf);
        wait_for("proxy ready", || {
            self.assert_running();
            self.proxy_region.proxy_state() == ProxyState::Ready
        });
    }

    /// Starts `spp-proxy` without waiting for it.
    pub fn spawn_proxy(&mut self, limits: ProxyLimits, plugin: PathBuf, conf: &str) {
        let layout = self.layout;
        let spec = ProxyLaunch {
            service: "proxy-test".into(),
            epoch: 3,
            shard: 0,
            shards: 1,
            plugin,
            plugin_conf: conf.into(),
            listeners: vec![
                ListenerFd {
                    index: 0,
                    transport: Transport::Tcp,
                    addr: self.tcp_addr,
                    fd: self.tcp.as_raw_fd(),
                },
                ListenerFd {
                    index: 1,
                    transport: Transport::Udp,
                    addr: self.udp_addr,
                    fd: self.udp.as_raw_fd(),
                },
            ]
            .into_iter()
            .chain(self.tcp6.as_ref().map(|l| ListenerFd {
                index: 2,
                transport: Transport::Tcp,
                addr: l.local_addr().unwrap(),
                fd: l.as_raw_fd(),
            }))
            .collect(),
            proxy_region_fd: self.proxy_region.raw_fd(),
            proxy_bell_fd: self.proxy_bell.raw_fd(),
            pair_layout: layout,
            groups: vec![GroupFds {
                id: 1,
                slots: self
                    .pairs
                    .iter()
                    .zip(&self.worker_bells)
                    .enumerate()
                    .map(|(i, (p, b))| PairFds {
                        index: i as u32,
                        region_fd: p.raw_fd(),
                        bell_fd: b.raw_fd(),
                    })
                    .collect(),
                msg_timeout_ms: 0,
            }],
            limits,
            log: LogSpec {
                level: "debug".into(),
                file: self.log_file.clone(),
            },
        };
        let fds: Vec<RawFd> = spec.inherited_fds();
        self.fds.clone_from(&fds);
        let log = self.log.reopen().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_spp-proxy"));
        cmd.env(LAUNCH_ENV, Launch::Proxy(spec).to_env_value())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: the closure only makes fcntl calls (async-signal-safe) on
        // fd numbers, iterating a Vec allocated before the fork.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &fds {
                    clear_cloexec(fd)?;
                }
                Ok(())
            });
        }
        self.child = Some(cmd.spawn().expect("start spp-proxy"));
    }

    /// Panics with the proxy's log if it exited.
    pub fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("proxy started");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("spp-proxy exited with {status}; log:\n{}", self.log_text());
        }
    }

    /// The proxy's stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Waits until the proxy's log (its stderr) contains `needle`.
    pub fn wait_log(&mut self, needle: &str) {
        wait_for(needle, || {
            self.assert_running();
            self.log_text().contains(needle)
        });
    }

    /// Publishes `limits` as a reload would (the proxy applies them at its
    /// next scan).
    pub fn publish_limits(&self, limits: &ProxyLimits) {
        self.proxy_region.header().limits.publish(limits);
    }

    /// The proxy's counters.
    pub fn stats(&self) -> &ProxyStats {
        &self.proxy_region.header().stats
    }

    /// Requests the proxy counts as in flight.
    pub fn in_flight(&self) -> u64 {
        self.proxy_region.header().in_flight.load(Ordering::Relaxed)
    }

    /// Sends `signal` to the proxy.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = self.child.as_ref().expect("proxy started").id() as libc::pid_t;
        // SAFETY: signalling our own child by pid.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Waits for the proxy to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("proxy started");
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < end,
                "spp-proxy did not exit; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(POLL_STEP);
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- spp-proxy log ---\n{}", self.log_text());
        }
    }
}
