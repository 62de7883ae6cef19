//! Cross-process ping-pong over the real rings with the real pair protocol
//! ([`spp_ipc::pair`]): the cost of one request/response round trip between
//! the proxy and a worker, without sockets.
//!
//! The bench process plays the proxy: it creates a [`PairRegion`] (request
//! and response rings), a [`ProxyRegion`] (for the proxy's sleep flag) and
//! two [`Doorbell`]s, attaches the proxy's end ([`ProxyEnd`]), and
//! re-executes itself with [`CHILD_ENV`] set and the four fds inherited.
//! The child plays a worker: it takes the slot ([`WorkerSlot`]) and echoes
//! every request as a reply, completing it. Records carry what spp's do:
//! a request meta (connection, `seq`, enqueue time) in front of the 64-byte
//! request, a response meta in front of the reply. Both sides wait the way
//! spp's processes do: spin on the ring for the configured time, then
//! announce sleep, look once more, and block on their doorbell; a writer
//! wakes the other side at most once per published batch, and only if it
//! sleeps.
//!
//! * `pingpong/spin_50us_64B`: both sides spin up to 50 µs before sleeping
//!   (spp's default), so a round trip never sleeps: the ring's cost plus
//!   two cache-line transfers each way.
//! * `pingpong/sleep_immediately_64B`: spin 0, so every round trip sleeps
//!   and is woken twice: the doorbell's cost.
//!
//! The child dies with the bench: it is killed and reaped when its
//! benchmark ends, and `PR_SET_PDEATHSIG` kills it if the bench dies first.

mod common;

use criterion::{black_box, criterion_group, Criterion};
use spp_ipc::doorbell::Doorbell;
use spp_ipc::layout::{PairLayout, PairRegion, ProxyRegion, WorkerState};
use spp_ipc::pair::{
    ProxyEnd, ProxySleep, Request, RequestTag, ResponseKind, ResponseRecord, Slept,
    WorkerResponses, WorkerSlot,
};
use spp_ipc::ring::PushError;
use spp_plugin_api::abi::SppConnInfo;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set (to the child's settings) in the re-executed bench binary.
const CHILD_ENV: &str = "SPP_BENCH_PINGPONG_CHILD";
/// Payload bytes of every request and reply.
const RECORD_BYTES: usize = 64;
/// Data bytes of each ring.
const RING_CAPACITY: usize = 1 << 16;
/// The spin of the "spin before sleep" configuration (spp's default).
const SPIN: Duration = Duration::from_micros(50);
/// The longest single doorbell wait; after it the waiter checks its peer
/// is alive (the parent) or simply waits again (the child).
const WAIT_SLICE: Duration = Duration::from_secs(1);
/// Spin iterations between two looks at the clock.
const SPINS_PER_CLOCK_READ: u32 = 64;
/// Exit status of a child that could not attach.
const CHILD_SETUP_FAILED: i32 = 2;
/// The longest the parent waits for the child to take the slot.
const CHILD_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// The flow every request of the bench comes from.
const FLOW: u64 = 1;

const LAYOUT: PairLayout = PairLayout {
    request_capacity: RING_CAPACITY,
    response_capacity: RING_CAPACITY,
};

/// Waits until `ready`, spinning up to `spin` first, then sleeping with
/// `sleep` (which announces sleep, looks once more, blocks, clears).
/// `on_timeout` runs after each fruitless sleep slice.
fn wait_for(
    ready: impl Fn() -> bool,
    spin: Duration,
    mut sleep: impl FnMut() -> Slept,
    mut on_timeout: impl FnMut(),
) {
    if ready() {
        return;
    }
    if !spin.is_zero() {
        let started = Instant::now();
        'spin: loop {
            for _ in 0..SPINS_PER_CLOCK_READ {
                if ready() {
                    return;
                }
                std::hint::spin_loop();
            }
            if started.elapsed() >= spin {
                break 'spin;
            }
        }
    }
    loop {
        let slept = sleep();
        if ready() {
            return;
        }
        if slept == Slept::TimedOut {
            on_timeout();
        }
    }
}

/// Pushes one reply, publishing (and waking the proxy) while the ring is
/// full. Panics only if the reply can never fit, which the constants rule
/// out.
fn push_reply(responses: &mut WorkerResponses<'_>, flow: u64, data: &[u8]) {
    loop {
        match responses.push(ResponseKind::Reply, flow, data) {
            Ok(()) => return,
            Err(PushError::Full) => {
                responses.publish();
                responses.wake_proxy();
                std::hint::spin_loop();
            }
            Err(PushError::TooLarge) => panic!("a {}-byte reply never fits", data.len()),
        }
    }
}

/// The child: echo every request as a response until killed.
mod child {
    use super::*;

    /// The child's settings, as passed in [`CHILD_ENV`].
    pub struct Settings {
        pub pair_fd: RawFd,
        pub proxy_fd: RawFd,
        pub worker_bell_fd: RawFd,
        pub proxy_bell_fd: RawFd,
        pub spin: Duration,
    }

    impl Settings {
        pub fn encode(&self) -> String {
            format!(
                "{},{},{},{},{}",
                self.pair_fd,
                self.proxy_fd,
                self.worker_bell_fd,
                self.proxy_bell_fd,
                self.spin.as_nanos()
            )
        }

        fn decode(text: &str) -> Option<Settings> {
            let mut it = text.split(',');
            let mut next = || it.next()?.parse::<u64>().ok();
            let fd = |v: u64| RawFd::try_from(v).ok();
            Some(Settings {
                pair_fd: fd(next()?)?,
                proxy_fd: fd(next()?)?,
                worker_bell_fd: fd(next()?)?,
                proxy_bell_fd: fd(next()?)?,
                spin: Duration::from_nanos(next()?),
            })
        }
    }

    /// Runs the echo loop; returns only on a setup error (exit status).
    pub fn run(spec: &str) -> i32 {
        let Some(s) = Settings::decode(spec) else {
            eprintln!("pingpong child: bad {CHILD_ENV}={spec:?}");
            return CHILD_SETUP_FAILED;
        };
        // SAFETY: the parent passed these fds (cleared FD_CLOEXEC for
        // exactly them) and gives them to this process alone; each is
        // adopted once.
        let attached = unsafe {
            PairRegion::open(s.pair_fd, LAYOUT).and_then(|pair| {
                let proxy = ProxyRegion::open(s.proxy_fd)?;
                Ok((pair, proxy))
            })
        };
        let (pair, proxy) = match attached {
            Ok(regions) => regions,
            Err(e) => {
                eprintln!("pingpong child: {e}");
                return CHILD_SETUP_FAILED;
            }
        };
        // SAFETY: as above, for the two eventfds.
        let (worker_bell, proxy_bell) = unsafe {
            (
                Doorbell::from_raw_fd(s.worker_bell_fd),
                Doorbell::from_raw_fd(s.proxy_bell_fd),
            )
        };
        let slot = WorkerSlot::take(&pair, &proxy_bell, std::process::id());
        // SAFETY: this process is the only worker of the pair; both ends
        // live inside this function, as do the regions.
        let ends = unsafe {
            slot.attach_requests(&worker_bell)
                .and_then(|requests| Ok((requests, slot.attach_responses(&proxy)?)))
        };
        let (mut requests, mut responses) = match ends {
            Ok(ends) => ends,
            Err(e) => {
                eprintln!("pingpong child: {e}");
                return CHILD_SETUP_FAILED;
            }
        };
        slot.set_ready();
        loop {
            wait_for(
                || requests.has_requests(),
                s.spin,
                || requests.sleep(WAIT_SLICE, || false),
                || {},
            );
            loop {
                let record = match requests.peek() {
                    Ok(Some(record)) => record,
                    Ok(None) => break,
                    Err(e) => {
                        eprintln!("pingpong child: {e}");
                        return CHILD_SETUP_FAILED;
                    }
                };
                let stride = record.stride();
                match record.request {
                    Request::Mine { meta, bytes, .. } => {
                        push_reply(&mut responses, meta.conn.flow, bytes);
                        responses.complete(meta.seq);
                    }
                    Request::OtherGeneration { meta, .. } => responses.complete(meta.seq),
                    other => {
                        eprintln!("pingpong child: unexpected {other:?}");
                        return CHILD_SETUP_FAILED;
                    }
                }
                requests.advance(stride);
            }
            requests.release();
            responses.publish();
        }
    }
}

/// The parent side of one ping-pong configuration, with its child.
struct PingPong {
    // Field order is drop order: the child goes first, then the proxy's
    // end (with the pair region it maps), then the rest.
    child: Child,
    end: ProxyEnd,
    /// The tag of the child's generation.
    tag: RequestTag,
    proxy_bell: Doorbell,
    proxy: ProxyRegion,
    spin: Duration,
}

impl PingPong {
    /// Creates the regions and bells, starts the echoing child and waits
    /// until it serves.
    fn start(spin: Duration) -> PingPong {
        let pair = PairRegion::create(0, 0, LAYOUT).expect("pair region");
        let proxy = ProxyRegion::create().expect("proxy region");
        let worker_bell = Doorbell::create().expect("worker doorbell");
        let proxy_bell = Doorbell::create().expect("proxy doorbell");
        let settings = child::Settings {
            pair_fd: pair.raw_fd(),
            proxy_fd: proxy.raw_fd(),
            worker_bell_fd: worker_bell.raw_fd(),
            proxy_bell_fd: proxy_bell.raw_fd(),
            spin,
        };
        // SAFETY: this process is the pair's only proxy.
        let end = unsafe { ProxyEnd::attach(pair, worker_bell) }.expect("the proxy end");
        let inherit = [
            settings.pair_fd,
            settings.proxy_fd,
            settings.worker_bell_fd,
            settings.proxy_bell_fd,
        ];
        let exe = std::env::current_exe().expect("the bench binary's path");
        let parent = std::process::id() as libc::pid_t;
        let mut cmd = Command::new(exe);
        cmd.env(CHILD_ENV, settings.encode())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // SAFETY: the closure runs between fork and exec and makes only
        // async-signal-safe calls (fcntl, prctl, getppid) on data captured
        // before the fork; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                for fd in inherit {
                    spp_ipc::shm::clear_cloexec(fd)?;
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The bench died before the death signal was armed.
                if libc::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn the pingpong child");
        let deadline = Instant::now() + CHILD_READY_TIMEOUT;
        while end.worker_state() != WorkerState::Ready {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the pingpong child exited: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "the pingpong child never got ready"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let tag = RequestTag::of(end.worker_generation());
        PingPong {
            child,
            end,
            tag,
            proxy_bell,
            proxy,
            spin,
        }
    }

    /// One request out, its echo back.
    fn round_trip(&mut self, payload: &[u8; RECORD_BYTES]) {
        let PingPong {
            child,
            end,
            tag,
            proxy_bell,
            proxy,
            spin,
        } = self;
        let conn = SppConnInfo {
            flow: FLOW,
            ..Default::default()
        };
        loop {
            match end.push(*tag, &conn, payload, 0) {
                Ok(_seq) => break,
                Err(PushError::Full) => {
                    end.publish();
                    std::hint::spin_loop();
                }
                Err(PushError::TooLarge) => panic!("a {RECORD_BYTES}-byte request never fits"),
            }
        }
        end.publish();
        let end_ref = &*end;
        let sleep = ProxySleep::new(proxy);
        wait_for(
            || end_ref.responses_waiting(),
            *spin,
            || sleep.sleep(proxy_bell, WAIT_SLICE, || end_ref.responses_waiting()),
            || {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("the pingpong child exited: {status}");
                }
            },
        );
        let mut replies = 0;
        let drained = end.drain_responses(1, |record| {
            let ResponseRecord::Reply { flow, bytes, close } = record else {
                panic!("unexpected {record:?}");
            };
            assert_eq!((flow, close), (FLOW, false));
            assert_eq!(bytes, payload);
            black_box(bytes);
            replies += 1;
        });
        assert_eq!(replies, 1, "a response after the wait");
        end.pop_completed(&drained, |_| {});
    }
}

impl Drop for PingPong {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pingpong(c: &mut Criterion) {
    let mut group = c.benchmark_group("pingpong");
    let payload = [0x5Au8; RECORD_BYTES];
    for (name, spin) in [
        ("spin_50us_64B", SPIN),
        ("sleep_immediately_64B", Duration::ZERO),
    ] {
        // Started on first use, so a filtered-out benchmark spawns nothing;
        // dropped (child killed and reaped) when this iteration ends.
        let mut pp: Option<PingPong> = None;
        group.bench_function(name, |b| {
            let pp = pp.get_or_insert_with(|| PingPong::start(spin));
            b.iter(|| pp.round_trip(&payload))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::quick();
    targets = pingpong
}

/// `criterion_main!`, plus the child mode of the re-executed binary.
fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        std::process::exit(child::run(&spec));
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
