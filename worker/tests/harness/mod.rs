//! A fake proxy for spp-worker tests: creates the shared state the
//! controller would (proxy region, pair region, doorbells), spawns the real
//! `spp-worker` with `SPP_LAUNCH` and the fds inherited, and plays the
//! proxy through the proxy's end of the pair protocol
//! ([`spp_ipc::pair::ProxyEnd`]): pushes requests, reads responses, answers
//! the drain. Every wait is bounded by [`DEADLINE`].
//!
//! Proxy shards: [`FakeProxy::shard`] makes another shard's side of the
//! same worker slot (its own pair region, proxy region and proxy doorbell;
//! the worker's doorbell shared), and [`FakeProxy::launch_with_shards`]
//! hands those to the worker in `other_shards`.

#![allow(dead_code)]

use spp_ipc::doorbell::Doorbell;
use spp_ipc::launch::{Launch, LogSpec, PairFds, ShardPairFds, WorkerLaunch, LAUNCH_ENV};
use spp_ipc::layout::{PairHeader, PairLayout, PairRegion, ProcessState, ProxyRegion, WorkerState};
use spp_ipc::pair::{ProxyEnd, ProxySleep, RequestTag, ResponseRecord};
use spp_ipc::record::{monotonic_ns, KIND_CLOSE, KIND_EXPIRED, KIND_RESPONSE};
use spp_ipc::ring::PushError;
use spp_ipc::shm::clear_cloexec;
use spp_plugin_api::abi::{SppAddr, SppConnInfo, SPP_PROTO_TCP};
use std::fs::File;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest any single wait in a test may take.
pub const DEADLINE: Duration = Duration::from_secs(20);
/// Ring data bytes of the test pairs.
pub const RING_CAPACITY: usize = 1 << 16;
/// The group id the tests use.
pub const GROUP: u32 = 3;
/// The worker index the tests use.
pub const INDEX: u32 = 1;
/// Pause between two looks at a state the worker publishes without ringing.
const POLL: Duration = Duration::from_millis(1);
/// Longest single doorbell wait while collecting responses.
const BELL_WAIT: Duration = Duration::from_millis(100);

/// One response record as the proxy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub kind: u16,
    pub flow: u64,
    pub bytes: Vec<u8>,
}

/// The controller's and proxy's side of one worker slot.
pub struct FakeProxy {
    pub proxy: ProxyRegion,
    pub proxy_bell: Doorbell,
    /// The proxy's end of the pair (the pair region, the worker's doorbell).
    end: ProxyEnd,
}

impl FakeProxy {
    /// A slot with both rings of [`RING_CAPACITY`], and a proxy that runs
    /// (state `Ready`, pid = this test process), so a draining worker waits
    /// for [`Self::ack_drain`].
    pub fn new() -> Self {
        Self::with_layout(PairLayout {
            request_capacity: RING_CAPACITY,
            response_capacity: RING_CAPACITY,
        })
    }

    /// [`Self::new`] with other ring sizes.
    pub fn with_layout(layout: PairLayout) -> Self {
        Self::on_bell(layout, Doorbell::create().expect("bell"))
    }

    /// Another proxy shard's side of the same worker slot: a pair region
    /// of its own (same group, index and layout), a proxy region and
    /// proxy doorbell of its own, and a copy of this slot's worker
    /// doorbell (one per worker, shared by its pairs).
    pub fn shard(&self) -> FakeProxy {
        // SAFETY: dup of an fd this test owns; the copy is adopted once.
        let bell = unsafe {
            let copy = libc::dup(self.end.worker_bell().raw_fd());
            assert!(copy >= 0, "dup the worker doorbell");
            Doorbell::from_raw_fd(copy)
        };
        Self::on_bell(self.pair().layout(), bell)
    }

    /// This side's fds as shard `shard` of `other_shards`.
    pub fn shard_fds(&self, shard: u16) -> ShardPairFds {
        ShardPairFds {
            shard,
            region_fd: self.pair().raw_fd(),
            proxy_region_fd: self.proxy.raw_fd(),
            proxy_bell_fd: self.proxy_bell.raw_fd(),
        }
    }

    /// [`Self::launch`] with `others` as shards 1, 2, ... of this slot.
    pub fn launch_with_shards(
        &self,
        others: &[&FakeProxy],
        plugin: &Path,
        conf: &str,
        spin_us: u64,
    ) -> WorkerLaunch {
        let mut spec = self.launch(plugin, conf, spin_us);
        spec.other_shards = others
            .iter()
            .enumerate()
            .map(|(i, other)| other.shard_fds(u16::try_from(i + 1).expect("shard index")))
            .collect();
        spec
    }

    /// A slot on its own pair region whose worker doorbell is `bell`.
    fn on_bell(layout: PairLayout, bell: Doorbell) -> Self {
        let pair = PairRegion::create(GROUP, INDEX, layout).expect("pair region");
        // SAFETY: the test is the slot's only proxy.
        let end = unsafe { ProxyEnd::attach(pair, bell) }.expect("the proxy end");
        let proxy = ProxyRegion::create().expect("proxy region");
        let header = proxy.header();
        header
            .proxy_state
            .store(ProcessState::Ready as u32, Ordering::Release);
        header
            .proxy_pid
            .store(std::process::id(), Ordering::Release);
        FakeProxy {
            proxy,
            proxy_bell: Doorbell::create().expect("proxy bell"),
            end,
        }
    }

    /// The proxy's end of the pair (the worker's state, generation and
    /// `completed_seq` as the proxy sees them).
    pub fn end(&self) -> &ProxyEnd {
        &self.end
    }

    /// The pair region.
    pub fn pair(&self) -> &PairRegion {
        self.end.region()
    }

    /// The pair header (for the worker's counters and state).
    pub fn header(&self) -> &PairHeader {
        self.pair().header()
    }

    /// The launch spec for a worker on this slot.
    pub fn launch(&self, plugin: &Path, conf: &str, spin_us: u64) -> WorkerLaunch {
        WorkerLaunch {
            service: "worker-test".into(),
            group: GROUP,
            index: INDEX,
            plugin: plugin.to_path_buf(),
            plugin_conf: conf.into(),
            pair: PairFds {
                index: INDEX,
                region_fd: self.pair().raw_fd(),
                bell_fd: self.end.worker_bell().raw_fd(),
            },
            pair_layout: self.pair().layout(),
            proxy_region_fd: self.proxy.raw_fd(),
            proxy_bell_fd: self.proxy_bell.raw_fd(),
            other_shards: Vec::new(),
            spin_us,
            msg_timeout_ms: 0,
            l5_table_fd: None,
            microthreads: None,
            async_tasks: None,
            drain_timeout_ms: 3000,
            log: LogSpec {
                level: "debug".into(),
                file: None,
            },
        }
    }

    /// Spawns `spp-worker` for this slot.
    pub fn spawn(&self, plugin: &Path, conf: &str, spin_us: u64) -> Worker {
        self.spawn_spec(&self.launch(plugin, conf, spin_us))
    }

    /// Spawns `spp-worker` with `spec` (from [`Self::launch`], adjusted).
    pub fn spawn_spec(&self, spec: &WorkerLaunch) -> Worker {
        Worker::spawn(
            Some(Launch::Worker(spec.clone()).to_env_value()),
            spec.inherited_fds(),
        )
    }

    /// Spawns `spp-worker` with `spec`, its stdout and stderr appending to
    /// `log` (what the controller does with `log.file`).
    pub fn spawn_logging(&self, spec: &WorkerLaunch, log: &Path) -> Worker {
        let file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the worker log");
        Worker::spawn_to(
            Some(Launch::Worker(spec.clone()).to_env_value()),
            spec.inherited_fds(),
            Some(file),
        )
    }

    /// The tag the proxy stamps on requests for the slot's current worker
    /// generation.
    pub fn current_tag(&self) -> u16 {
        RequestTag::of(self.end.worker_generation()).raw()
    }

    /// Pushes one request for the current worker generation (not yet
    /// published). Returns its flow, or `None` when the ring is full.
    pub fn push(&mut self, flow: u64, bytes: &[u8]) -> Option<u64> {
        self.push_tagged(flow, bytes, self.current_tag())
    }

    /// Pushes one request stamped with `tag` in its record flags.
    pub fn push_tagged(&mut self, flow: u64, bytes: &[u8], tag: u16) -> Option<u64> {
        self.push_full(flow, bytes, tag, monotonic_ns())
    }

    /// Pushes one request for the current generation that says it was
    /// queued `age` ago.
    pub fn push_aged(&mut self, flow: u64, bytes: &[u8], age: Duration) -> Option<u64> {
        let age_ns = u64::try_from(age.as_nanos()).expect("age fits u64 ns");
        let enqueued_ns = monotonic_ns().saturating_sub(age_ns);
        self.push_full(flow, bytes, self.current_tag(), enqueued_ns)
    }

    /// Pushes one request with every stamp given.
    fn push_full(&mut self, flow: u64, bytes: &[u8], tag: u16, enqueued_ns: u64) -> Option<u64> {
        let local = SppAddr::from_socket_addr("127.0.0.1:7963".parse().expect("addr"));
        let remote = SppAddr::from_socket_addr("127.0.0.1:40000".parse().expect("addr"));
        let conn = SppConnInfo {
            flow,
            recv_time_us: 1,
            proto: SPP_PROTO_TCP,
            local,
            remote,
            ..Default::default()
        };
        match self
            .end
            .push(RequestTag::from_raw(tag), &conn, bytes, enqueued_ns)
        {
            Ok(_seq) => Some(flow),
            Err(PushError::Full) => None,
            Err(PushError::TooLarge) => panic!("request of {} bytes can never fit", bytes.len()),
        }
    }

    /// Publishes pushed requests; returns whether the doorbell was rung
    /// (the worker was asleep).
    pub fn publish(&mut self) -> bool {
        self.end.publish()
    }

    /// Pushes and publishes one request.
    pub fn send(&mut self, flow: u64, bytes: &[u8]) -> bool {
        assert!(self.push(flow, bytes).is_some(), "request ring full");
        self.publish()
    }

    /// Takes every published response.
    pub fn poll(&mut self, out: &mut Vec<Response>) {
        let drained = self.end.drain_responses(usize::MAX, |record| {
            let (kind, flow, bytes) = match record {
                ResponseRecord::Reply { flow, bytes, close } => {
                    (if close { KIND_CLOSE } else { KIND_RESPONSE }, flow, bytes)
                }
                ResponseRecord::Expired { flow, request } => (KIND_EXPIRED, flow, request),
                ResponseRecord::Unexpected { kind, len } => {
                    panic!("a response record of kind {kind} ({len} bytes)")
                }
            };
            out.push(Response {
                kind,
                flow,
                bytes: bytes.to_vec(),
            });
        });
        if let Some(e) = &drained.corrupt {
            panic!("response ring corrupt: {e}");
        }
        self.end.pop_completed(&drained, |_| {});
    }

    /// Waits (sleeping on the proxy doorbell like the proxy does) until
    /// `out` holds at least `want` responses.
    pub fn collect(&mut self, out: &mut Vec<Response>, want: usize, worker: &mut Worker) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            self.poll(out);
            if out.len() >= want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {want} responses arrived; worker: {}",
                out.len(),
                worker.describe()
            );
            let end = &self.end;
            ProxySleep::new(&self.proxy)
                .sleep(&self.proxy_bell, BELL_WAIT, || end.responses_waiting());
        }
    }

    /// Waits until the worker says Ready.
    pub fn wait_ready(&self, worker: &mut Worker) {
        self.wait_state(WorkerState::Ready, worker);
    }

    /// Waits until the worker's slot is in `state`.
    pub fn wait_state(&self, state: WorkerState, worker: &mut Worker) {
        self.wait_for(worker, &format!("worker {state:?}"), |p| {
            p.end.worker_state() == state
        });
    }

    /// Waits until the worker announced that it sleeps.
    pub fn wait_asleep(&self, worker: &mut Worker) {
        self.wait_for(worker, "worker asleep", |p| p.end.worker_sleeping());
    }

    /// Waits until the worker reports `seq` in `completed_seq`.
    pub fn wait_completed(&self, seq: u64, worker: &mut Worker) {
        self.wait_for(worker, "completed_seq", |p| p.end.completed_seq() >= seq);
        assert_eq!(self.end.completed_seq(), seq);
    }

    /// Plays the proxy's side of a drain: waits until the worker says
    /// `Draining`, then acknowledges its generation's drain (the proxy
    /// pushes nothing more to it).
    pub fn ack_drain(&mut self, worker: &mut Worker) {
        self.wait_state(WorkerState::Draining, worker);
        self.ack_drain_now();
    }

    /// Acknowledges the drain of the slot's current worker generation at
    /// once, whatever its state.
    pub fn ack_drain_now(&mut self) {
        let generation = self.end.worker_generation();
        self.end.ack_drain(generation);
    }

    /// Stops the worker the way the controller and proxy do (SIGTERM, then
    /// the drain acknowledged) and returns its exit code.
    pub fn stop(&mut self, worker: &mut Worker) -> i32 {
        worker.signal(libc::SIGTERM);
        self.ack_drain(worker);
        worker.exit_code()
    }

    /// Waits (bounded) until `done` holds for the pair header.
    pub fn wait_until(&self, worker: &mut Worker, what: &str, done: impl Fn(&PairHeader) -> bool) {
        self.wait_for(worker, what, |p| done(p.header()));
    }

    /// Waits (bounded) until `done` holds for this fake proxy.
    fn wait_for(&self, worker: &mut Worker, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !done(self) {
            if let Some(status) = worker.try_status() {
                panic!(
                    "waiting for {what}: worker exited with {status}; stderr:\n{}",
                    worker.stderr()
                );
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(POLL);
        }
    }
}

/// A running `spp-worker`; killed on drop if still running.
pub struct Worker {
    child: Child,
    stderr: Option<JoinHandle<String>>,
    stderr_text: Option<String>,
    status: Option<ExitStatus>,
}

impl Worker {
    /// Spawns the worker binary with `launch` in `SPP_LAUNCH` (unset when
    /// `None`) and `fds` inherited; its stderr is collected.
    pub fn spawn(launch: Option<String>, fds: Vec<i32>) -> Worker {
        Self::spawn_to(launch, fds, None)
    }

    /// [`Self::spawn`], with stdout and stderr going to `log` instead when
    /// given (then [`Self::stderr`] is empty).
    pub fn spawn_to(launch: Option<String>, fds: Vec<i32>, log: Option<File>) -> Worker {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_spp-worker"));
        cmd.env_remove(LAUNCH_ENV).stdin(Stdio::null());
        match log {
            Some(file) => {
                let copy = file.try_clone().expect("dup the log file");
                cmd.stdout(copy).stderr(file);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::piped());
            }
        }
        if let Some(launch) = launch {
            cmd.env(LAUNCH_ENV, launch);
        }
        // SAFETY: only async-signal-safe calls (fcntl, prctl) between fork
        // and exec.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &fds {
                    clear_cloexec(fd)?;
                }
                // A test that panics must not leave a worker behind.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn spp-worker");
        let stderr = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        });
        Worker {
            child,
            stderr,
            stderr_text: None,
            status: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `signal` to the worker.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0, "kill");
    }

    /// The exit status if the worker has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Waits (bounded) for the worker to exit.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.try_status() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "worker did not exit; stderr so far unavailable (still running)"
            );
            std::thread::sleep(POLL);
        }
    }

    /// Everything the worker wrote to stderr (waits for it to exit).
    pub fn stderr(&mut self) -> String {
        if self.stderr_text.is_none() {
            self.wait();
            let text = self
                .stderr
                .take()
                .map(|t| t.join().unwrap_or_default())
                .unwrap_or_default();
            self.stderr_text = Some(text);
        }
        self.stderr_text.clone().unwrap_or_default()
    }

    /// A one-line state for assertion messages.
    pub fn describe(&mut self) -> String {
        match self.try_status() {
            Some(status) => format!("exited with {status}; stderr:\n{}", self.stderr()),
            None => format!("pid {} still running", self.pid()),
        }
    }

    /// The exit code, failing on death by signal.
    pub fn exit_code(&mut self) -> i32 {
        let status = self.wait();
        match status.code() {
            Some(code) => code,
            None => panic!(
                "worker killed by signal {:?}; stderr:\n{}",
                status.signal(),
                self.stderr()
            ),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The profile directory the test binary was built in (`deps/..`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

/// A plugin built by cargo: in the profile dir, or in `deps/` when it was
/// only built as a dev-dependency.
pub fn cargo_plugin(file: &str) -> PathBuf {
    let dir = profile_dir();
    [dir.join(file), dir.join("deps").join(file)]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "{file} not found in {} (build the workspace first)",
                dir.display()
            )
        })
}

/// `worker/tests/plugins/behaviours.c`, compiled once per test run.
pub fn behaviours_plugin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
            let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("libspp_test_behaviours.so");
            let tmp = out.with_extension(format!("so.{}", std::process::id()));
            let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
            let status = Command::new(&cc)
                .args([
                    "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread", "-I",
                ])
                .arg(manifest.join("../plugin-api/include"))
                .arg("-o")
                .arg(&tmp)
                .arg(manifest.join("tests/plugins/behaviours.c"))
                .status()
                .unwrap_or_else(|e| panic!("cannot run the C compiler {cc}: {e}"));
            assert!(status.success(), "compiling behaviours.c failed: {status}");
            std::fs::rename(&tmp, &out).expect("install test plugin");
            out
        })
        .clone()
}
