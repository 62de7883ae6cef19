//! `examples/redis-cache` end to end: a real redis-server on an ephemeral
//! port, a slow backend (the sleep-echo example on micro-threads,
//! registering a sid in an embedded L5 registry of this test's own), and
//! spp serving the cache plugin in an async group that consumes the sid.
//!
//! A first GET of a key is a miss answered with the backend's value (the
//! key itself: sleep-echo echoes), and the key is then in redis with its
//! TTL (read with RESP on the redis port); the second GET is a hit;
//! concurrent misses overlap in one async worker; a key
//! set directly in redis is served without the backend; with the backend
//! stopped a miss gets `cache-error:backend-*` and nothing is stored; with
//! redis-server frozen (SIGSTOP) a request gets `cache-error:redis-timeout`
//! after `timeout_ms` and hits resume once it is thawed; with redis-server
//! killed, requests get `cache-error:redis-*` frames quickly
//! (the backend not asked: no miss is counted) and the worker lives.
//!
//! Needs `redis-server` (Debian package `redis-server`; `tests/run`
//! installs it): without it the test says so and passes without running.

use spp_tests::client::TcpClient;
use spp_tests::redis::{self, Redis};
use spp_tests::{l5, wait_for, Binaries, L5Config, Service, ServiceConfig};
use std::path::Path;
use std::time::{Duration, Instant};

/// The sid the slow backend registers.
const SID: (u32, u32) = (64301, 1);
/// The backend's sleep before each answer: the "slow service".
const BACKEND_SLEEP_MS: u64 = 200;
/// Concurrent misses of one worker: one after another they would take
/// `CONCURRENT * BACKEND_SLEEP_MS`.
const CONCURRENT: u64 = 10;
/// `ttl_s` of the cache.
const TTL_S: i64 = 60;
/// `timeout_ms` of the cache's redis commands.
const REDIS_TIMEOUT_MS: u64 = 300;
/// Bound on one answer while redis is down: the redis timeout, far below
/// the group's task_timeout (5 s), with room for a loaded machine.
const ERROR_WITHIN: Duration = Duration::from_millis(1500);
/// Bound on waits for a counter to show.
const COUNTER_TIMEOUT: Duration = Duration::from_secs(10);

/// The `[l5]` of a test service in the embedded registry `registry`.
fn embedded(registry: &Path, sid: Option<(u32, u32)>) -> L5Config {
    L5Config {
        registry_dir: Some(registry.to_path_buf()),
        ..l5::test_l5("embedded", sid)
    }
}

/// The slow backend: sleep-echo on micro-threads, registering [`SID`].
fn backend_config(registry: &Path) -> ServiceConfig {
    let mut cfg = ServiceConfig::single(&Binaries::locate().plugin("spp_sleep_echo"), 1);
    cfg.name = "slow".into();
    cfg.listen = vec!["tcp://127.0.0.1:0".into()];
    let group = cfg.group_mut();
    group.plugin_conf = format!("sleep_ms={BACKEND_SLEEP_MS}");
    group.extra.push("mode = \"microthread\"".into());
    cfg.l5 = Some(embedded(registry, Some(SID)));
    cfg
}

/// The cache in one async worker, consuming [`SID`], on `redis`.
fn cache_config(registry: &Path, redis: &Redis) -> ServiceConfig {
    let mut cfg = ServiceConfig::single(&Binaries::locate().plugin("spp_redis_cache"), 1);
    cfg.name = "cache".into();
    cfg.listen = vec!["tcp://127.0.0.1:0".into()];
    let group = cfg.group_mut();
    group.plugin_conf = format!(
        "redis={} modid={} cmdid={} ttl_s={TTL_S} timeout_ms={REDIS_TIMEOUT_MS} \
         backend_timeout_ms=2000",
        redis.addr(),
        SID.0,
        SID.1
    );
    group.extra.push("mode = \"async\"".into());
    group.extra.push("task_timeout = \"5s\"".into());
    cfg.l5 = Some(embedded(registry, None));
    cfg
}

/// The group's plugin counter `name` (0 until it shows).
fn counter(service: &Service, name: &str) -> u64 {
    let report = service.stat_json().ok();
    report
        .as_ref()
        .and_then(|r| {
            r["groups"].as_array()?.first()?["plugin"]["counters"][name]["total"].as_u64()
        })
        .unwrap_or(0)
}

/// Waits until the plugin counter `name` reads `want`; panics with the
/// last reading otherwise.
fn wait_counter(service: &Service, name: &str, want: u64) {
    let mut last = 0;
    let seen = wait_for(COUNTER_TIMEOUT, || {
        last = counter(service, name);
        (last == want).then_some(())
    });
    assert!(
        seen.is_some(),
        "counter {name} should read {want}, reads {last}\n{}",
        service.logs()
    );
}

/// Requests the backend's proxy took, once it stops changing within a
/// short bound (its counters are published once per event-loop turn).
fn backend_requests_settled(backend: &Service) -> u64 {
    let mut last = l5::requests(backend);
    let _ = wait_for(Duration::from_millis(500), || {
        let now = l5::requests(backend);
        let settled = now == last;
        last = now;
        settled.then_some(())
    });
    last
}

fn call(client: &mut TcpClient, key: &[u8]) -> Vec<u8> {
    client
        .call(key)
        .unwrap_or_else(|e| panic!("call {:?}: {e}", String::from_utf8_lossy(key)))
}

#[test]
fn a_miss_fills_redis_from_the_sid_a_hit_skips_it_and_redis_down_answers_errors() {
    let Some(bin) = redis::binary() else {
        eprintln!(
            "SKIPPED: redis-server is not installed (Debian: apt-get install redis-server; \
             tests/run installs it), so examples/redis-cache is not tested here"
        );
        return;
    };
    let mut redis = Redis::start(&bin);
    let registry = tempfile::tempdir().expect("registry dir");
    let mut backend = Service::start(&backend_config(registry.path()));
    let backend_addr = backend.tcp();
    l5::wait_registered(&backend, SID, backend_addr);
    let cache = Service::start(&cache_config(registry.path(), &redis));
    l5::wait_view(
        &cache,
        SID,
        "the cache should route to the backend",
        |nodes| l5::find(nodes, backend_addr).is_some_and(l5::Node::live),
    );
    let mut client = TcpClient::connect(cache.tcp()).expect("connect to the cache");

    // A miss: the backend's value (sleep-echo answers the key), now in
    // redis with its TTL.
    let before = backend_requests_settled(&backend);
    let started = Instant::now();
    assert_eq!(call(&mut client, b"k1"), b"k1", "{}", cache.logs());
    assert!(
        started.elapsed() >= Duration::from_millis(BACKEND_SLEEP_MS),
        "a miss waits for the slow backend: {:?}",
        started.elapsed()
    );
    assert_eq!(
        redis.get(b"k1").expect("GET k1"),
        Some(b"k1".to_vec()),
        "the miss should SET the key"
    );
    let ttl = redis.ttl(b"k1").expect("TTL k1");
    assert!((1..=TTL_S).contains(&ttl), "TTL of k1: {ttl}");
    wait_counter(&cache, "misses", 1);
    assert_eq!(backend_requests_settled(&backend), before + 1);

    // A hit: same value, the backend not asked.
    assert_eq!(call(&mut client, b"k1"), b"k1");
    wait_counter(&cache, "hits", 1);

    // A key set directly in redis: its value, the backend not asked.
    redis.set(b"k2", b"from-redis").expect("SET k2");
    assert_eq!(call(&mut client, b"k2"), b"from-redis");
    wait_counter(&cache, "hits", 2);
    assert_eq!(counter(&cache, "misses"), 1, "no other miss");
    assert_eq!(
        backend_requests_settled(&backend),
        before + 1,
        "hits never reach the backend"
    );

    // Concurrent misses overlap in the one async worker: together they
    // take far less than one after another.
    let cache_addr = cache.tcp();
    let started = Instant::now();
    let answers: Vec<Vec<u8>> = (0..CONCURRENT)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = TcpClient::connect(cache_addr).expect("connect");
                call(&mut c, format!("many{i}").as_bytes())
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect();
    let took = started.elapsed();
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer, format!("many{i}").as_bytes());
    }
    let serial = Duration::from_millis(CONCURRENT * BACKEND_SLEEP_MS);
    eprintln!("{CONCURRENT} concurrent misses: {took:?} (one after another: {serial:?})");
    assert!(
        took < serial * 3 / 4,
        "{CONCURRENT} concurrent misses took {took:?} (one after another: {serial:?})"
    );
    wait_counter(&cache, "misses", 1 + CONCURRENT);

    // The backend stopped: a miss gets an error frame (its instance
    // refused, or already deregistered), and nothing is stored.
    let out = backend.stop();
    assert!(out.ok(), "spp stop of the backend: {}", out.text());
    let answer = call(&mut client, b"orphan");
    assert!(
        answer.starts_with(b"cache-error:backend-"),
        "backend gone: {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(redis.get(b"orphan").expect("GET orphan"), None);
    wait_counter(&cache, "errors", 1);
    wait_counter(&cache, "misses", 2 + CONCURRENT);

    // redis-server frozen (SIGSTOP): `redis-timeout` after timeout_ms,
    // far before task_timeout; thawed, the same connection serves hits.
    let redis_pid = redis
        .pid()
        .and_then(|p| i32::try_from(p).ok())
        .expect("redis pid");
    spp_tests::kill(redis_pid, libc::SIGSTOP);
    let started = Instant::now();
    let answer = call(&mut client, b"k1");
    let took = started.elapsed();
    spp_tests::kill(redis_pid, libc::SIGCONT);
    assert_eq!(
        String::from_utf8_lossy(&answer),
        "cache-error:redis-timeout",
        "redis frozen"
    );
    assert!(
        took >= Duration::from_millis(REDIS_TIMEOUT_MS) && took < ERROR_WITHIN,
        "the timeout took {took:?}"
    );
    wait_counter(&cache, "errors", 2);
    // The first call is expected to hit; errors until then are counted.
    let mut errors = 2;
    let thawed = wait_for(COUNTER_TIMEOUT, || {
        let hit = call(&mut client, b"k1") == b"k1";
        errors += u64::from(!hit);
        hit.then_some(())
    });
    assert!(thawed.is_some(), "hits again once redis is thawed");

    // redis-server killed: error frames, quickly, from a worker that
    // lives on; the backend is not asked.
    let worker = cache.pid_of("worker-g1-0").expect("worker pid");
    redis.kill();
    const DOWN_CALLS: u64 = 5;
    for i in 0..DOWN_CALLS {
        let key = format!("down{i}");
        let started = Instant::now();
        let answer = call(&mut client, key.as_bytes());
        let took = started.elapsed();
        assert!(
            answer.starts_with(b"cache-error:redis-"),
            "redis down: {:?}",
            String::from_utf8_lossy(&answer)
        );
        assert!(took < ERROR_WITHIN, "the error took {took:?}");
    }
    wait_counter(&cache, "errors", errors + DOWN_CALLS);
    assert_eq!(
        cache.pid_of("worker-g1-0"),
        Some(worker),
        "the worker lives on"
    );
    assert_eq!(cache.process("worker-g1-0")["state"], "ready");
    assert_eq!(
        counter(&cache, "misses"),
        2 + CONCURRENT,
        "with redis down nothing is a miss"
    );
}
