//! A worker frozen outside `spp_process` (SIGSTOP here; in the field a
//! plugin thread holding the loop, a stalled page fault): its heartbeat
//! stops while requests wait for it. The controller kills it and starts a
//! successor (`last_exit` says "frozen"), the proxy stops sending to it and
//! fails what waited there past `msg_timeout`, so no client waits for ever
//! and the live worker serves on.

use spp_tests::client::TcpClient;
use spp_tests::faulty::{self, is_busy};
use spp_tests::view::{self, proxy_counter};
use spp_tests::{kill, wait_for, Binaries, Service, ServiceConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `msg_timeout` of the group.
const MSG_TIMEOUT: Duration = Duration::from_millis(500);
/// `hang_timeout` of the group.
const HANG_TIMEOUT: Duration = Duration::from_secs(1);
/// What a request may take at most, beyond `msg_timeout + hang_timeout`:
/// the worker's heartbeat interval, a housekeeping tick, the proxy's scan,
/// and a loaded machine.
const SLACK: Duration = Duration::from_secs(3);
/// Client threads calling throughout.
const CLIENTS: usize = 4;
/// How long the load runs after the stop.
const AFTER_STOP: Duration = Duration::from_secs(6);
/// How long to wait for readiness, replacement and counters.
const WAIT: Duration = Duration::from_secs(20);
/// Requests sent this long after the stop must be served normally.
const SETTLE: Duration = Duration::from_secs(1);
/// Share of the requests sent after [`SETTLE`] that must be echoed.
const MIN_SERVED: f64 = 0.95;

/// How one call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Echoed.
    Echo,
    /// The exception hook answered.
    Busy,
    /// The connection closed (or reset).
    Closed,
    /// Anything else: a wrong answer or a read timeout.
    Wrong,
}

/// One call: when it was sent, how long it took, how it ended.
#[derive(Clone, Copy, Debug)]
struct Call {
    sent: Instant,
    took: Duration,
    end: End,
}

/// Sends SIGCONT to the worker this test stopped when dropped, if it is
/// still stopped (not killed and its pid reused), so a failing test never
/// leaves a stopped process behind.
struct Continue(i32);

impl Drop for Continue {
    fn drop(&mut self) {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0)).unwrap_or_default();
        let state = stat.rsplit(')').next().unwrap_or("").trim_start();
        if state.starts_with('T') {
            kill(self.0, libc::SIGCONT);
        }
    }
}

fn call(client: &mut Option<TcpClient>, addr: std::net::SocketAddr, payload: &[u8]) -> End {
    if client.is_none() {
        *client = TcpClient::connect(addr).ok();
    }
    let Some(c) = client.as_mut() else {
        return End::Closed;
    };
    let end = match c.call(payload) {
        Ok(reply) if reply == payload => End::Echo,
        Ok(reply) if is_busy(&reply) => End::Busy,
        Ok(_) => End::Wrong,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
            ) =>
        {
            End::Closed
        }
        Err(_) => End::Wrong,
    };
    if end != End::Echo && end != End::Busy {
        *client = None;
    }
    end
}

fn start_clients(
    service: &Service,
    stop: &Arc<AtomicBool>,
    calls: &Arc<Mutex<Vec<Call>>>,
) -> Vec<JoinHandle<()>> {
    (0..CLIENTS)
        .map(|k| {
            let addr = service.tcp();
            let stop = Arc::clone(stop);
            let calls = Arc::clone(calls);
            std::thread::spawn(move || {
                let mut client = None;
                let mut n = 0u64;
                // Bounded by the flag; each call by the read timeout.
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let payload = format!("c{k}-{n}");
                    let sent = Instant::now();
                    let end = call(&mut client, addr, payload.as_bytes());
                    let took = sent.elapsed();
                    if let Ok(mut calls) = calls.lock() {
                        calls.push(Call { sent, took, end });
                    }
                }
            })
        })
        .collect()
}

#[test]
fn a_worker_frozen_outside_process_is_killed_replaced_and_routed_around() {
    let bins = Binaries::locate();
    let mut cfg = ServiceConfig::single(&bins.plugin(faulty::PLUGIN), 2);
    cfg.group_mut().msg_timeout = Some(format!("{}ms", MSG_TIMEOUT.as_millis()));
    cfg.group_mut().hang_timeout = Some(format!("{}ms", HANG_TIMEOUT.as_millis()));
    let service = Service::start(&cfg);
    let status = service.status();
    assert_eq!(view::ready_workers(&status, 1).len(), 2, "{status}");
    let victim = "worker-g1-0";
    let victim_pid = service.pid_of(victim).expect("victim pid");
    let other_pid = service.pid_of("worker-g1-1").expect("other pid");

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let threads = start_clients(&service, &stop, &calls);
    let warm = wait_for(WAIT, || {
        let n = calls.lock().map_or(0, |c| c.len());
        (n >= 200).then_some(())
    });
    assert!(warm.is_some(), "the load never got going");

    kill(victim_pid, libc::SIGSTOP);
    let _cont = Continue(victim_pid);
    let stopped_at = Instant::now();
    let replaced = service.wait_replaced(victim, victim_pid, WAIT);
    let replaced_after = stopped_at.elapsed();
    // Run the load on for a while after the stop, then end it.
    let rest = AFTER_STOP.saturating_sub(stopped_at.elapsed());
    std::thread::sleep(rest);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("client thread");
    }
    let new_pid = replaced.unwrap_or_else(|| panic!("{victim} not replaced\n{}", service.logs()));
    assert_ne!(new_pid, victim_pid);

    let status = service.status();
    let proc = view::process(&status, victim).expect("victim in status");
    let last_exit = proc.last_exit.clone().unwrap_or_default();
    assert!(last_exit.contains("frozen"), "last_exit says why: {proc:?}");
    let other = view::process(&status, "worker-g1-1").expect("other in status");
    assert_eq!(other.pid, Some(other_pid), "the live worker lives on");

    let calls = calls.lock().expect("calls").clone();
    let bound = MSG_TIMEOUT + HANG_TIMEOUT + SLACK;
    let wrong: Vec<&Call> = calls.iter().filter(|c| c.end == End::Wrong).collect();
    assert!(
        wrong.is_empty(),
        "every call got an answer, an exception or a close: {wrong:?}"
    );
    let slowest = calls.iter().map(|c| c.took).max().unwrap_or_default();
    assert!(slowest <= bound, "slowest call {slowest:?} > {bound:?}");
    let late: Vec<&Call> = calls
        .iter()
        .filter(|c| c.sent >= stopped_at + SETTLE)
        .collect();
    let echoed = late.iter().filter(|c| c.end == End::Echo).count();
    let ratio = echoed as f64 / late.len().max(1) as f64;
    let failed = calls.iter().filter(|c| c.end != End::Echo).count();
    eprintln!(
        "frozen: replaced after {replaced_after:?}; {} calls, {failed} not echoed, slowest {slowest:?}; \
         after {SETTLE:?}: {echoed}/{} echoed ({ratio:.4}); proxy {}",
        calls.len(),
        late.len(),
        status["proxy_stats"]
    );
    assert!(
        late.len() >= 100,
        "too few calls after the stop to judge: {}",
        late.len()
    );
    assert!(
        ratio >= MIN_SERVED,
        "{echoed} of {} calls sent after {SETTLE:?} echoed",
        late.len()
    );
    // The proxy passed over the frozen worker and failed what it held.
    assert!(
        proxy_counter(&status, "stalled_skips") >= 1,
        "stalled_skips counted: {}",
        status["proxy_stats"]
    );
    assert!(
        proxy_counter(&status, "proxy_expired") + proxy_counter(&status, "worker_died_failed") >= 1,
        "the frozen worker's requests were failed: {}",
        status["proxy_stats"]
    );
}
