//! Async mode end to end (issue 15): a group with `mode = "async"` runs
//! each request as a task of the plugin's own tokio runtime.
//!
//! With `examples/sleep-echo-async` (echo after `tokio::time::sleep`; a
//! payload `sleep:<ms>:...` sleeps its own time, one starting `panic`
//! panics in its task; a failed task is answered `async-error:timeout` or
//! `async-error:panic`): answers after the await, many at once on one
//! worker, pipelined ones in order; a task past `task_timeout`; a task
//! that panics; clients gone while their tasks sleep; back-pressure at
//! `max_in_flight`; a stop with tasks in flight. With
//! `examples/relay-async`: relayed answers through spp's echo, with the
//! runtime on the worker's thread and on a plugin thread
//! (`SPP_ASYNC_RUNTIME=thread`), and through an L5 sid.

use spp_tests::backend::refused_addr;
use spp_tests::client::TcpClient;
use spp_tests::{l5, wait_for, Binaries, L5Config, Service, ServiceConfig};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The sleep-echo example's library name.
const SLEEP_ECHO: &str = "spp_sleep_echo_async";
/// The async relay example's library name.
const RELAY: &str = "spp_relay_async";
/// Bound on waits for a counter or a gauge to show.
const WAIT: Duration = Duration::from_secs(10);
/// The answer of a task past `task_timeout`.
const TIMED_OUT: &[u8] = b"async-error:timeout";
/// The answer of a task that panicked.
const PANICKED: &[u8] = b"async-error:panic";
/// The worker of every test service.
const WORKER: &str = "worker-g1-0";

/// One async worker of `plugin` with `conf` and `extra` group lines, one
/// TCP listener.
fn config(plugin: &str, conf: String, extra: &[&str]) -> ServiceConfig {
    let mut cfg = ServiceConfig::single(&Binaries::locate().plugin(plugin), 1);
    cfg.listen = vec!["tcp://127.0.0.1:0".into()];
    let group = cfg.group_mut();
    group.plugin_conf = conf;
    group.extra.push("mode = \"async\"".into());
    group.extra.extend(extra.iter().map(|l| l.to_string()));
    cfg
}

/// sleep-echo-async sleeping `sleep_ms` by default.
fn sleep_echo(sleep_ms: u64, extra: &[&str]) -> ServiceConfig {
    config(SLEEP_ECHO, format!("sleep_ms={sleep_ms}"), extra)
}

/// `n` connected clients.
fn clients(service: &Service, n: usize) -> Vec<TcpClient> {
    (0..n)
        .map(|_| TcpClient::connect(service.tcp()).expect("connect"))
        .collect()
}

/// The group's plugin counter `name` once it reaches `want` (its last
/// value otherwise, after [`WAIT`]).
fn plugin_counter(service: &Service, name: &str, want: u64) -> u64 {
    let mut last = 0;
    let _ = wait_for(WAIT, || {
        let report = service.stat_json().ok()?;
        let group = report["groups"].as_array()?.first()?.clone();
        last = group["plugin"]["counters"][name]["total"].as_u64()?;
        (last >= want).then_some(())
    });
    last
}

/// Closes `client` with a reset (SO_LINGER 0), so the proxy sees the
/// connection gone at once rather than a half-close it would answer.
fn reset(client: TcpClient) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd owned by `client`, and a pointer to a
    // `linger` of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            client.stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
    drop(client);
}

#[test]
fn answers_come_after_the_await_many_at_once_and_pipelined_in_order() {
    const SLEEP_MS: u64 = 200;
    const CLIENTS: usize = 100;
    let service = Service::start(&sleep_echo(SLEEP_MS, &[]));
    let mut all = clients(&service, CLIENTS);
    let started = Instant::now();
    for (i, client) in all.iter_mut().enumerate() {
        client.send(format!("req {i}").as_bytes()).expect("send");
    }
    // One at a time, the worker would need CLIENTS x SLEEP_MS (20 s);
    // with CLIENTS tasks at once it needs little more than one sleep.
    // Count the answers that came before a quarter of the serial time.
    let bound = Duration::from_millis(SLEEP_MS * CLIENTS as u64 / 4);
    let mut in_time = 0;
    for (i, client) in all.iter_mut().enumerate() {
        let answer = client.recv().expect("answer");
        assert_eq!(answer, format!("req {i}").as_bytes(), "client {i}");
        if started.elapsed() < bound {
            in_time += 1;
        }
    }
    let took = started.elapsed();
    // Each answer came after its sleep, never before.
    assert!(took >= Duration::from_millis(SLEEP_MS), "{took:?}");
    assert_eq!(
        in_time, CLIENTS,
        "only {in_time} of {CLIENTS} answered within {bound:?} (all took {took:?})"
    );

    // Pipelined requests of one connection come back in order, whatever
    // each one sleeps.
    let mut one = TcpClient::connect(service.tcp()).expect("connect");
    let pipelined = ["sleep:300:a", "sleep:1:b", "c", "sleep:50:d", "sleep:0:e"];
    for p in pipelined {
        one.send(p.as_bytes()).expect("send");
    }
    for p in pipelined {
        assert_eq!(one.recv().expect("answer"), p.as_bytes());
    }
    let want = CLIENTS as u64 + pipelined.len() as u64;
    assert_eq!(plugin_counter(&service, "echo_answered", want), want);
}

#[test]
fn a_task_past_task_timeout_is_answered_timeout_and_the_worker_lives() {
    const LATE_MS: u64 = 5_000;
    let service = Service::start(&sleep_echo(10, &["task_timeout = \"500ms\""]));
    let pid = service.pid_of(WORKER);
    let mut client = TcpClient::connect(service.tcp()).expect("connect");
    assert_eq!(client.call(b"before").expect("echo"), b"before");
    let started = Instant::now();
    let answer = client
        .call(format!("sleep:{LATE_MS}:late").as_bytes())
        .expect("an answer for the late task");
    assert_eq!(answer, TIMED_OUT, "{}", String::from_utf8_lossy(&answer));
    // Answered at the timeout, not when the sleep would have ended.
    assert!(started.elapsed() < Duration::from_millis(LATE_MS));
    // The connection and the worker serve on.
    assert_eq!(client.call(b"after").expect("echo"), b"after");
    assert_eq!(service.pid_of(WORKER), pid, "the worker lived on");
    assert!(plugin_counter(&service, "async_task_timed_out", 1) >= 1);
    assert!(plugin_counter(&service, "echo_failed", 1) >= 1);
}

#[test]
fn a_task_that_panics_fails_its_request_only() {
    const BYSTANDERS: usize = 10;
    let service = Service::start(&sleep_echo(300, &[]));
    let pid = service.pid_of(WORKER);
    let mut others = clients(&service, BYSTANDERS);
    for (i, client) in others.iter_mut().enumerate() {
        client.send(format!("other {i}").as_bytes()).expect("send");
    }
    let mut victim = TcpClient::connect(service.tcp()).expect("connect");
    let answer = victim.call(b"panic please").expect("an answer");
    assert_eq!(answer, PANICKED, "{}", String::from_utf8_lossy(&answer));
    // The requests sleeping beside it are answered.
    for (i, client) in others.iter_mut().enumerate() {
        assert_eq!(
            client.recv().expect("answer"),
            format!("other {i}").as_bytes()
        );
    }
    assert_eq!(victim.call(b"again").expect("echo"), b"again");
    assert_eq!(service.pid_of(WORKER), pid, "the worker lived on");
    assert!(plugin_counter(&service, "async_task_panicked", 1) >= 1);
}

#[test]
fn tasks_of_clients_gone_are_cancelled_and_in_flight_returns_to_zero() {
    const GONE: usize = 20;
    // Far longer than the wait below: only a cancellation ends them in
    // time.
    const SLEEP_MS: u64 = 20_000;
    let service = Service::start(&sleep_echo(SLEEP_MS, &["task_timeout = \"60s\""]));
    let pid = service.pid_of(WORKER);
    let mut gone = clients(&service, GONE);
    for client in &mut gone {
        client.send(b"never read").expect("send");
    }
    service.wait_in_flight(GONE as u64, WAIT);
    for client in gone {
        reset(client);
    }
    service.wait_in_flight(0, WAIT);
    let cancelled = plugin_counter(&service, "async_task_cancelled", GONE as u64);
    assert!(cancelled >= GONE as u64, "async_task_cancelled {cancelled}");
    let mut again = TcpClient::connect(service.tcp()).expect("connect");
    assert_eq!(
        again.call(b"sleep:1:after").expect("echo"),
        b"sleep:1:after"
    );
    assert_eq!(service.pid_of(WORKER), pid, "the worker lived on");
}

#[test]
fn max_in_flight_bounds_the_tasks_and_every_request_is_answered() {
    const MAX: u64 = 4;
    const CLIENTS: usize = 40;
    const SLEEP_MS: u64 = 200;
    let service = Service::start(&sleep_echo(SLEEP_MS, &["max_in_flight = 4"]));
    let addr = service.tcp();
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut client = TcpClient::connect(addr).expect("connect");
                let answer = client.call(format!("slow {i}").as_bytes());
                done.fetch_add(1, Ordering::Relaxed);
                answer.map(|a| (i, a))
            })
        })
        .collect();
    // Read the gauge while the requests run (bounded by WAIT).
    let mut most = 0;
    let deadline = Instant::now() + WAIT;
    while done.load(Ordering::Relaxed) < CLIENTS && Instant::now() < deadline {
        if let Some(n) = service.in_flight() {
            most = most.max(n);
        }
    }
    let took = started.elapsed();
    for thread in threads {
        let (i, answer) = thread.join().expect("client thread").expect("answer");
        assert_eq!(answer, format!("slow {i}").as_bytes(), "client {i}");
    }
    eprintln!("{CLIENTS} requests, max_in_flight {MAX}: in_flight read at most {most}, all answered in {took:?}");
    assert!(
        most <= MAX,
        "in_flight read {most}, above max_in_flight {MAX}"
    );
    // At most MAX at once: CLIENTS / MAX sleeps one after the other.
    let waves = CLIENTS as u64 / MAX;
    assert!(
        took >= Duration::from_millis(SLEEP_MS * (waves - 1)),
        "{took:?}: max_in_flight did not bound the worker"
    );
}

#[test]
fn a_stop_with_tasks_in_flight_answers_them_within_stop_grace() {
    const CLIENTS: usize = 20;
    let mut service = Service::start(&sleep_echo(300, &[]));
    let mut sleeping = clients(&service, CLIENTS);
    for (i, client) in sleeping.iter_mut().enumerate() {
        client.send(format!("drain {i}").as_bytes()).expect("send");
    }
    let stop_started = Instant::now();
    let out = service.stop();
    assert!(out.ok(), "spp stop: {}", out.text());
    for (i, client) in sleeping.iter_mut().enumerate() {
        assert_eq!(
            client.recv().expect("answered before the stop"),
            format!("drain {i}").as_bytes()
        );
    }
    // Within stop_grace (5 s in tests).
    let took = stop_started.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// spp's echo (one plain worker), the relay's backend.
fn echo_backend() -> Service {
    let plugin = Binaries::locate().plugin("spp_echo");
    let mut cfg = ServiceConfig::single(&plugin, 1);
    cfg.listen = vec!["tcp://127.0.0.1:0".into()];
    Service::start(&cfg)
}

/// `clients` connections each relaying `calls` requests; every answer
/// must be the echo of its request.
fn relay_round(relay: &Service, clients_n: usize, calls: usize) {
    let mut all = clients(relay, clients_n);
    for round in 0..calls {
        for (i, client) in all.iter_mut().enumerate() {
            client
                .send(format!("r{round} c{i}").as_bytes())
                .expect("send");
        }
        for (i, client) in all.iter_mut().enumerate() {
            let answer = client.recv().expect("answer");
            assert_eq!(answer, format!("r{round} c{i}").as_bytes(), "client {i}");
        }
    }
}

#[test]
fn the_async_relay_answers_through_spps_echo_with_either_runtime() {
    const CLIENTS: usize = 20;
    const CALLS: usize = 5;
    let echo = echo_backend();
    let conf = format!("addr={} timeout_ms=2000 pool=8", echo.tcp());
    let cfg = config(RELAY, conf, &[]);
    let relay = Service::start(&cfg);
    relay_round(&relay, CLIENTS, CALLS);
    let want = (CLIENTS * CALLS) as u64;
    assert_eq!(plugin_counter(&relay, "relay_ok", want), want);
    drop(relay);

    // The runtime on a plugin thread (the benchmark's other placement):
    // the environment of `spp start` reaches the worker.
    let threaded =
        Service::start_wrapped(&cfg, vec!["env".into(), "SPP_ASYNC_RUNTIME=thread".into()]);
    relay_round(&threaded, CLIENTS, CALLS);
    assert_eq!(plugin_counter(&threaded, "relay_ok", want), want);
}

#[test]
fn the_async_relay_answers_error_frames_and_routes_sids_through_l5() {
    // Nothing listens there: the call fails, the client gets a frame.
    let dead = Service::start(&config(RELAY, format!("addr={}", refused_addr()), &[]));
    let mut client = TcpClient::connect(dead.tcp()).expect("connect");
    assert_eq!(client.call(b"q").expect("answer"), b"relay-error:-1");
    assert_eq!(plugin_counter(&dead, "relay_error", 1), 1);
    drop(dead);

    // A sid with one static route to spp's echo.
    const SID: (u32, u32) = (64201, 1);
    let echo = echo_backend();
    let addr: SocketAddr = echo.tcp();
    let registry = tempfile::tempdir().expect("registry dir");
    let routes = registry.path().join("static.routes");
    let line = format!("{} {} {} {}\n", SID.0, SID.1, addr.ip(), addr.port());
    std::fs::write(&routes, line).expect("routes file");
    let conf = format!("modid={} cmdid={} timeout_ms=2000", SID.0, SID.1);
    let mut cfg = config(RELAY, conf, &[]);
    cfg.l5 = Some(L5Config {
        backend: Some("embedded".into()),
        registry_dir: Some(registry.path().to_path_buf()),
        routes_file: Some(routes),
        ..L5Config::default()
    });
    let relay = Service::start(&cfg);
    l5::wait_view(&relay, SID, "the static route should be listed", |n| {
        n.len() == 1
    });
    relay_round(&relay, 4, 3);
    let per_dest = format!("call:{addr}:ok");
    assert_eq!(plugin_counter(&relay, &per_dest, 12), 12);
}
