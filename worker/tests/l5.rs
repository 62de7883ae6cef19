//! spp-worker's L5 host services end to end: the real binary inherits a
//! route table the test publishes (as the controller would), and the relay
//! example plugin calls real TCP backends through `get_route` / `report`.
//! The outcomes the worker reports land in the table's per-node counters.

mod harness;

use harness::{cargo_plugin, FakeProxy, Response, Worker};
use spp_ipc::l5::table::{NodeView, RouteTable, SidView};
use spp_ipc::l5::{Instance, Sid, DEFAULT_WEIGHT};
use spp_ipc::launch::MicroThreadSpec;
use spp_ipc::record::KIND_RESPONSE;
use spp_plugin_api::framing::encode_u32_be_prefixed as frame;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The sid the relay is configured for.
const SID: Sid = Sid {
    modid: 64001,
    cmdid: 1,
};
/// How often backend threads look at their stop flag.
const BACKEND_POLL: Duration = Duration::from_millis(20);
/// The relay worker's micro-thread settings.
const RELAY_MAX_IN_FLIGHT: u32 = 64;
const RELAY_STACK_SIZE: u64 = 64 << 10;

fn relay_plugin() -> std::path::PathBuf {
    cargo_plugin("libspp_relay.so")
}

/// A TCP backend on 127.0.0.1 answering each echo-framed request with
/// `<name>:` + its payload. Stopped and joined on drop.
struct Backend {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    fn start(name: &'static str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("backend addr");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let flag = flag.clone();
                        conns.push(std::thread::spawn(move || serve(name, conn, &flag)));
                    }
                    Err(_) => std::thread::sleep(BACKEND_POLL),
                }
            }
            for conn in conns {
                let _ = conn.join();
            }
        });
        Backend {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

/// Answers frames on `conn` until it closes or `stop` is set.
fn serve(name: &str, mut conn: TcpStream, stop: &AtomicBool) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(BACKEND_POLL));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match conn.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock)
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue
            }
            Err(_) => return,
        }
        while let Some(header) = buf.first_chunk::<4>() {
            let len = 4 + u32::from_be_bytes(*header) as usize;
            if buf.len() < len {
                break;
            }
            let answer = frame(&[name.as_bytes(), b":", &buf[4..len]].concat());
            if conn.write_all(&answer).is_err() {
                return;
            }
            buf.drain(..len);
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An address nothing listens on (a listener bound and closed at once).
fn dead_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
}

/// A table holding [`SID`] with `addrs` as live nodes of equal weight.
/// Returns it with each node's stats slot.
fn table_with(addrs: &[SocketAddr]) -> (RouteTable, Vec<u32>) {
    let mut table = RouteTable::create().expect("route table");
    let mut nodes = Vec::new();
    let mut slots = Vec::new();
    for &addr in addrs {
        let instance = Instance {
            sid: SID,
            addr,
            weight: DEFAULT_WEIGHT,
        };
        let slot = table.slot_for(&instance).expect("slot");
        slots.push(slot);
        nodes.push(NodeView {
            instance,
            weight: DEFAULT_WEIGHT,
            dead: false,
            slot,
        });
    }
    table
        .publish(&[SidView {
            sid: SID,
            nodes,
            probe_budget: 0,
        }])
        .expect("publish");
    (table, slots)
}

/// Spawns the relay worker with `conf` in micro-thread mode (where its
/// `host.call` runs), inheriting `table` if given.
fn relay_worker(proxy: &FakeProxy, conf: &str, table: Option<&RouteTable>) -> Worker {
    let mut spec = proxy.launch(&relay_plugin(), conf, 0);
    spec.l5_table_fd = table.map(RouteTable::raw_fd);
    spec.microthreads = Some(MicroThreadSpec {
        max_in_flight: RELAY_MAX_IN_FLIGHT,
        stack_size: RELAY_STACK_SIZE,
    });
    proxy.spawn_spec(&spec)
}

/// Sends `count` requests one at a time; returns the answers' payloads.
fn relay_requests(proxy: &mut FakeProxy, worker: &mut Worker, count: usize) -> Vec<String> {
    let mut payloads = Vec::new();
    for i in 0..count {
        proxy.send(i as u64, &frame(format!("q{i}").as_bytes()));
        let mut got: Vec<Response> = Vec::new();
        proxy.collect(&mut got, 1, worker);
        assert_eq!(got.len(), 1, "one answer per request");
        assert_eq!((got[0].kind, got[0].flow), (KIND_RESPONSE, i as u64));
        let bytes = &got[0].bytes;
        let len = u32::from_be_bytes(bytes[..4].try_into().expect("prefix")) as usize;
        assert_eq!(bytes.len(), 4 + len, "one whole frame");
        payloads.push(String::from_utf8_lossy(&bytes[4..]).into_owned());
    }
    payloads
}

/// The worker's plugin counter `name` (0 if never counted).
fn counter(proxy: &FakeProxy, name: &str) -> u64 {
    proxy
        .header()
        .plugin
        .snapshot()
        .counters
        .into_iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, v)| v)
}

#[test]
fn the_relay_spreads_calls_over_live_nodes_and_reports_them() {
    const COUNT: usize = 200;
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (table, slots) = table_with(&[a.addr, b.addr]);
    let mut proxy = FakeProxy::new();
    let mut worker = relay_worker(&proxy, "modid=64001 cmdid=1 timeout_ms=2000", Some(&table));
    proxy.wait_ready(&mut worker);

    let answers = relay_requests(&mut proxy, &mut worker, COUNT);
    let by_a = answers.iter().filter(|p| p.starts_with("a:")).count();
    let by_b = answers.iter().filter(|p| p.starts_with("b:")).count();
    for (i, payload) in answers.iter().enumerate() {
        assert!(payload.ends_with(&format!(":q{i}")), "{payload}");
    }
    assert_eq!(by_a + by_b, COUNT, "{answers:?}");
    assert!(
        by_a > 0 && by_b > 0,
        "both nodes served: a {by_a}, b {by_b}"
    );

    // Every call was reported on its node's slot, as a success.
    let (ca, cb) = (table.counts(slots[0]), table.counts(slots[1]));
    assert_eq!((ca.success, cb.success), (by_a as u64, by_b as u64));
    assert_eq!((ca.failure, cb.failure), (0, 0));
    assert!(ca.latency_us > 0 && cb.latency_us > 0);
    assert_eq!(counter(&proxy, "relay_ok"), COUNT as u64);
    assert_eq!(proxy.stop(&mut worker), 0);
}

#[test]
fn a_failed_call_is_reported_and_retried_on_another_node() {
    const COUNT: usize = 100;
    let live = Backend::start("live");
    let dead = dead_addr();
    let (table, slots) = table_with(&[live.addr, dead]);
    let mut proxy = FakeProxy::new();
    let mut worker = relay_worker(&proxy, "modid=64001 cmdid=1 timeout_ms=2000", Some(&table));
    proxy.wait_ready(&mut worker);

    let answers = relay_requests(&mut proxy, &mut worker, COUNT);
    let ok = answers.iter().filter(|p| p.starts_with("live:")).count() as u64;
    let errors = answers.iter().filter(|p| *p == "relay-error:-1").count() as u64;
    assert_eq!(ok + errors, COUNT as u64, "{answers:?}");
    // The host's retry avoids the failed node while another one comes up
    // (a few draws); an error answer means both attempts went to the dead
    // node, so the dead node has at least two failures per error answer.
    let (live_counts, dead_counts) = (table.counts(slots[0]), table.counts(slots[1]));
    assert_eq!(live_counts.success, ok);
    assert_eq!(live_counts.failure, 0);
    assert!(
        dead_counts.failure > 0,
        "the dead node was tried and reported"
    );
    assert!(
        dead_counts.failure >= 2 * errors,
        "{dead_counts:?}, {errors}"
    );
    assert_eq!(dead_counts.success, 0);
    // The plugin sees calls after the host's retry: only the error
    // answers failed.
    assert_eq!(counter(&proxy, "relay_ok"), ok);
    assert_eq!(counter(&proxy, "relay_call_failed"), errors);
    assert_eq!(counter(&proxy, "relay_error"), errors);
    assert_eq!(proxy.stop(&mut worker), 0);
}

#[test]
fn with_no_usable_route_the_client_gets_an_error_answer() {
    // The only node is dead: two calls, two failures, one error answer.
    let dead = dead_addr();
    let (table, slots) = table_with(&[dead]);
    let mut proxy = FakeProxy::new();
    let mut worker = relay_worker(&proxy, "modid=64001 cmdid=1", Some(&table));
    proxy.wait_ready(&mut worker);
    assert_eq!(
        relay_requests(&mut proxy, &mut worker, 3),
        vec!["relay-error:-1"; 3]
    );
    assert_eq!(table.counts(slots[0]).failure, 6);
    assert_eq!(proxy.stop(&mut worker), 0);

    // A sid the table does not know: L5's code, and no call.
    let mut proxy = FakeProxy::new();
    let mut worker = relay_worker(&proxy, "modid=7 cmdid=7", Some(&table));
    proxy.wait_ready(&mut worker);
    assert_eq!(
        relay_requests(&mut proxy, &mut worker, 1),
        vec!["relay-error:-8999"]
    );
    assert_eq!(proxy.stop(&mut worker), 0);

    // No table at all (L5 off): system error.
    let mut proxy = FakeProxy::new();
    let mut worker = relay_worker(&proxy, "modid=64001 cmdid=1", None);
    proxy.wait_ready(&mut worker);
    assert_eq!(
        relay_requests(&mut proxy, &mut worker, 1),
        vec!["relay-error:-9998"]
    );
    assert_eq!(proxy.stop(&mut worker), 0);
}

#[test]
fn a_bad_route_table_fd_is_a_setup_error() {
    // Not a route table: a file with nothing in it.
    let file = std::fs::File::open("/dev/null").expect("open /dev/null");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    let proxy = FakeProxy::new();
    let mut spec = proxy.launch(&relay_plugin(), "modid=64001 cmdid=1", 0);
    spec.l5_table_fd = Some(fd);
    let mut worker = proxy.spawn_spec(&spec);
    assert_eq!(worker.exit_code(), 2);
    let stderr = worker.stderr();
    assert!(
        stderr.contains(&format!("cannot use the L5 route table (fd {fd})")),
        "{stderr}"
    );

    // The same fd as another one the spec names.
    let mut spec = proxy.launch(&relay_plugin(), "modid=64001 cmdid=1", 0);
    spec.l5_table_fd = Some(spec.proxy_bell_fd);
    let mut worker = proxy.spawn_spec(&spec);
    assert_eq!(worker.exit_code(), 2);
    let stderr = worker.stderr();
    assert!(
        stderr.contains("L5 route table and proxy doorbell are both fd"),
        "{stderr}"
    );
}

#[test]
fn a_relay_worker_without_a_sid_refuses_to_start() {
    let proxy = FakeProxy::new();
    let mut worker = proxy.spawn(&relay_plugin(), "timeout_ms=100", 0);
    assert_eq!(worker.exit_code(), 1, "the relay's own spp_init code");
    let stderr = worker.stderr();
    assert!(
        stderr.contains("relay: bad plugin_conf: modid and cmdid are required"),
        "{stderr}"
    );
}
