//! Cross-process ping-pong over the real rings with the real doorbell
//! protocol: the cost of one request/response round trip between the
//! proxy and a worker, without sockets.
//!
//! The bench process plays the proxy: it creates a [`PairRegion`] (request
//! and response rings), a [`ProxyRegion`] (for the proxy's sleep flag) and
//! two [`Doorbell`]s, and re-executes itself with [`CHILD_ENV`] set and the
//! four fds inherited. The child plays a worker: it echoes every request
//! record as a response record. Both sides wait the way spp's processes do:
//! spin on the ring for the configured time, then [`SleepFlag::announce`],
//! look once more, and [`Doorbell::wait`]; a writer calls
//! [`wake_if_sleeping`] once per published batch.
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
use spp_ipc::doorbell::{wake_if_sleeping, Doorbell, SleepFlag};
use spp_ipc::layout::{PairLayout, PairRegion, ProxyRegion};
use spp_ipc::record::{KIND_REQUEST, KIND_RESPONSE};
use spp_ipc::ring::{Consumer, Producer, PushError};
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set (to the child's settings) in the re-executed bench binary.
const CHILD_ENV: &str = "SPP_BENCH_PINGPONG_CHILD";
/// Payload bytes of every request and response record.
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

const LAYOUT: PairLayout = PairLayout {
    request_capacity: RING_CAPACITY,
    response_capacity: RING_CAPACITY,
};

/// Waits for a record on `ring`, spinning up to `spin` first, then
/// sleeping on `bell` under `flag`. `on_timeout` runs after each fruitless
/// sleep slice.
fn wait_for_record(
    ring: &mut Consumer,
    flag: SleepFlag<'_>,
    bell: &Doorbell,
    spin: Duration,
    mut on_timeout: impl FnMut(),
) {
    if ring.has_data() {
        return;
    }
    if !spin.is_zero() {
        let started = Instant::now();
        'spin: loop {
            for _ in 0..SPINS_PER_CLOCK_READ {
                if ring.has_data() {
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
        flag.announce();
        if ring.has_data() {
            flag.clear();
            return;
        }
        let rung = bell.wait(WAIT_SLICE);
        flag.clear();
        if ring.has_data() {
            return;
        }
        if !rung {
            on_timeout();
        }
    }
}

/// Pushes one record, publishing (and waking the peer) while the ring is
/// full. Panics only if the record can never fit, which the constants rule
/// out.
fn push_record(ring: &mut Producer, kind: u16, data: &[u8], wake: impl Fn()) {
    loop {
        match ring.push(kind, 0, &[data]) {
            Ok(()) => return,
            Err(PushError::Full) => {
                ring.publish();
                wake();
                std::hint::spin_loop();
            }
            Err(PushError::TooLarge) => panic!("a {}-byte record never fits", data.len()),
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
        // SAFETY: this process is the only request consumer and response
        // producer; both ends live inside this function, as do the regions.
        let ends = unsafe {
            pair.request_consumer()
                .and_then(|c| Ok((c, pair.response_producer()?)))
        };
        let (mut requests, mut responses) = match ends {
            Ok(ends) => ends,
            Err(e) => {
                eprintln!("pingpong child: {e}");
                return CHILD_SETUP_FAILED;
            }
        };
        let my_flag = SleepFlag(&pair.header().worker_sleeping);
        let peer_flag = &proxy.header().proxy_sleeping;
        let wake_peer = || {
            wake_if_sleeping(peer_flag, &proxy_bell);
        };
        loop {
            wait_for_record(&mut requests, my_flag, &worker_bell, s.spin, || {});
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
                push_record(&mut responses, KIND_RESPONSE, record.data, wake_peer);
                requests.advance(stride);
            }
            requests.release();
            responses.publish();
            wake_peer();
        }
    }
}

/// The parent side of one ping-pong configuration, with its child.
struct PingPong {
    // Field order is drop order: the child goes first, then the ring ends,
    // then the regions they point into.
    child: Child,
    requests: Producer,
    responses: Consumer,
    worker_bell: Doorbell,
    proxy_bell: Doorbell,
    pair: PairRegion,
    proxy: ProxyRegion,
    spin: Duration,
}

impl PingPong {
    /// Creates the regions and bells and starts the echoing child.
    fn start(spin: Duration) -> PingPong {
        let pair = PairRegion::create(0, 0, LAYOUT).expect("pair region");
        let proxy = ProxyRegion::create().expect("proxy region");
        let worker_bell = Doorbell::create().expect("worker doorbell");
        let proxy_bell = Doorbell::create().expect("proxy doorbell");
        // SAFETY: this process is the only request producer and response
        // consumer; `PingPong` drops both before the regions.
        let (requests, responses) = unsafe {
            (
                pair.request_producer().expect("request producer"),
                pair.response_consumer().expect("response consumer"),
            )
        };
        let settings = child::Settings {
            pair_fd: pair.raw_fd(),
            proxy_fd: proxy.raw_fd(),
            worker_bell_fd: worker_bell.raw_fd(),
            proxy_bell_fd: proxy_bell.raw_fd(),
            spin,
        };
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
        let child = cmd.spawn().expect("spawn the pingpong child");
        PingPong {
            child,
            requests,
            responses,
            worker_bell,
            proxy_bell,
            pair,
            proxy,
            spin,
        }
    }

    /// One request out, its echo back.
    fn round_trip(&mut self, payload: &[u8; RECORD_BYTES]) {
        let worker_flag = &self.pair.header().worker_sleeping;
        let worker_bell = &self.worker_bell;
        push_record(&mut self.requests, KIND_REQUEST, payload, || {
            wake_if_sleeping(worker_flag, worker_bell);
        });
        self.requests.publish();
        wake_if_sleeping(worker_flag, worker_bell);
        let child = &mut self.child;
        wait_for_record(
            &mut self.responses,
            SleepFlag(&self.proxy.header().proxy_sleeping),
            &self.proxy_bell,
            self.spin,
            || {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("the pingpong child exited: {status}");
                }
            },
        );
        let record = self
            .responses
            .peek()
            .expect("response ring intact")
            .expect("a response after the wait");
        assert_eq!(record.kind, KIND_RESPONSE);
        assert_eq!(record.data, payload);
        black_box(record.data);
        let stride = record.stride();
        self.responses.advance(stride);
        self.responses.release();
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
