//! Stats tests on real shared regions (`Resources::create`): counters,
//! histograms and plugin metrics are written as the proxy and workers
//! would, sampled at chosen instants, and the report, the table, the
//! Prometheus text and the HTTP endpoint are checked. No timing asserts:
//! the instants are given, not measured.

use super::names::{self, PROXY_COUNTERS, WORKER_COUNTERS};
use super::report::{Latency, Rate};
use super::*;
use spp_config::{self as config, Config};
use spp_ipc::doorbell::Doorbell;
use spp_ipc::layout::WorkerState;
use spp_ipc::pair::WorkerSlot;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MS: u64 = 1_000_000;
const US: u64 = 1_000;
/// A percentile may be off by a bucket's half width (1.6 %) plus the HDR
/// histogram's 1 %.
const TOLERANCE: f64 = 0.03;
/// Bound on one HTTP exchange in the tests (not an assertion).
const IO_BOUND: Duration = Duration::from_secs(10);
/// Bounded retries while the server releases a connection slot.
const RETRIES: usize = 500;

fn config() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spp.toml");
    let text = r#"
[service]
name = "stat-test"

[proxy]
listen = ["tcp://127.0.0.1:0"]
plugin = "libnone.so"
max_request_size = "16KiB"

[rings]
request_size = "64KiB"
response_size = "64KiB"

[[group]]
id = 1
plugin = "libnone.so"
workers = 2
max_workers = 2

[[group]]
id = 2
plugin = "libnone.so"
workers = 1
"#;
    std::fs::write(&file, text).unwrap();
    let cfg = config::load(&file).unwrap();
    (dir, cfg)
}

fn add(cell: &AtomicU64, n: u64) {
    cell.fetch_add(n, Ordering::Relaxed);
}

fn close(actual: u64, expected: u64) -> bool {
    (actual as f64 - expected as f64).abs() <= expected as f64 * TOLERANCE
}

/// The scenario most tests share: history before `t0`, a first sample at
/// `t0`, two seconds of traffic, a second sample at `t0 + 2 s`.
fn scenario() -> (tempfile::TempDir, Resources, Collector) {
    let (dir, cfg) = config();
    let res = Resources::create(&cfg).unwrap();
    let mut collector = Collector::new(&cfg);
    let w0 = res.slot(0, 0).unwrap().pair.header();
    let w1 = res.slot(0, 1).unwrap().pair.header();
    let g2 = res.slot(1, 0).unwrap().pair.header();
    let proxy = res.shards[0].region.header();

    // Before the window: must count in totals only.
    add(&w0.stats.requests, 10);
    w0.queue_wait.record(1_000 * MS);
    let t0 = Instant::now();
    collector.sample(&res, t0);

    proxy
        .proxy_state
        .store(WorkerState::Ready as u32, Ordering::Release);
    add(&proxy.stats.requests, 200);
    add(&proxy.stats.bytes_in, 2048);
    add(&proxy.stats.ring_full, 3);
    proxy.stats.conns_active.store(5, Ordering::Relaxed);
    proxy.plugin.count(b"accepted_tls", 2).unwrap();
    // Both group-1 workers say Ready, as a worker does (this process plays
    // them; the proxy's doorbell is a stand-in nobody waits on).
    let proxy_bell = Doorbell::create().unwrap();
    for s in 0..2 {
        let pair = &res.slot(0, s).unwrap().pair;
        WorkerSlot::take(pair, &proxy_bell, std::process::id()).set_ready();
    }
    for (w, requests, busy) in [(w0, 100, 1_000 * MS), (w1, 50, 500 * MS)] {
        add(&w.stats.requests, requests);
        add(&w.stats.replies, requests);
        add(&w.stats.busy_ns, busy);
    }
    add(&g2.stats.requests, 7);
    add(&g2.stats.stale_dropped, 1);
    (0..990).for_each(|_| w0.queue_wait.record(100 * US));
    (0..10).for_each(|_| w1.queue_wait.record(10 * MS));
    (0..100).for_each(|_| w0.process_time.record(2 * MS));
    w0.plugin.count(b"hits", 4).unwrap();
    w1.plugin.count(b"misses", 1).unwrap();
    w1.plugin.count(b"hits", 6).unwrap();
    (0..3).for_each(|_| w1.plugin.record_latency(b"db", 5 * MS).unwrap());
    collector.sample(&res, t0 + Duration::from_secs(2));
    (dir, res, collector)
}

#[test]
fn a_report_sums_groups_and_gives_window_rates_and_percentiles() {
    let (_dir, res, collector) = scenario();
    let r = collector.report(Duration::from_secs(60));
    assert_eq!(r.service, "stat-test");
    assert_eq!(r.window_s, 2.0);

    let p = &r.proxy;
    assert!(p.up);
    assert_eq!(p.connections_active, 5);
    assert!(!p.counters.contains_key(names::PROXY_CONNS_ACTIVE));
    let requests = Rate {
        total: 200,
        delta: 200,
        per_s: 100.0,
    };
    assert_eq!(p.counter("requests"), requests);
    assert_eq!(p.counter("bytes_in").per_s, 1024.0);
    assert_eq!(p.counter("ring_full").delta, 3);
    assert_eq!(p.plugin.counters["accepted_tls"].total, 2);

    assert_eq!(r.groups.len(), 2);
    let g1 = &r.groups[0];
    assert_eq!((g1.id, g1.workers), (1, 2));
    assert_eq!(g1.slots as usize, res.groups[0].slots.len());
    let g1_requests = Rate {
        total: 160,
        delta: 150,
        per_s: 75.0,
    };
    assert_eq!(g1.counter("requests"), g1_requests);
    assert_eq!(g1.counter("replies").delta, 150);
    assert_eq!(g1.busy, 0.75, "1.5 s inside process over 2 s");
    assert_eq!(g1.utilisation, Some(0.375));

    let wait = &g1.queue_wait;
    assert_eq!((wait.count, wait.total_count), (1000, 1001));
    assert_eq!(wait.per_s, 500.0);
    assert!(close(wait.p50_ns, 100 * US), "{wait:?}");
    assert!(close(wait.p90_ns, 100 * US), "{wait:?}");
    assert!(close(wait.p99_ns, 100 * US), "{wait:?}");
    assert!(close(wait.p999_ns, 10 * MS), "{wait:?}");
    assert!(
        close(wait.max_ns, 10 * MS),
        "the 1 s sample is before the window: {wait:?}"
    );
    assert_eq!(wait.mean_ns, (990 * 100 * US + 10 * 10 * MS) / 1000);
    let process = &g1.process_time;
    assert_eq!(process.count, 100);
    assert!(close(process.p50_ns, 2 * MS) && close(process.max_ns, 2 * MS));

    let plugin = &g1.plugin;
    assert_eq!(
        plugin.counters["hits"].total, 10,
        "summed over the slots by name"
    );
    assert_eq!(plugin.counters["hits"].per_s, 5.0);
    assert_eq!(plugin.counters["misses"].total, 1);
    assert_eq!(plugin.latencies["db"].count, 3);
    assert!(close(plugin.latencies["db"].p99_ns, 5 * MS));

    let g2 = &r.groups[1];
    assert_eq!((g2.id, g2.workers, g2.utilisation), (2, 0, None));
    assert_eq!(g2.counter("requests").per_s, 3.5);
    assert_eq!(g2.counter("stale_dropped").delta, 1);
    assert_eq!(g2.process_time, Latency::default());
}

#[test]
fn the_window_picks_the_sample_that_old_or_the_oldest() {
    let (_dir, cfg) = config();
    let res = Resources::create(&cfg).unwrap();
    let mut collector = Collector::new(&cfg);
    assert_eq!(collector.report(Duration::from_secs(10)).window_s, 0.0);

    let t0 = Instant::now();
    let requests = &res.shards[0].region.header().stats.requests;
    add(requests, 10);
    collector.sample(&res, t0);
    let once = collector.report(Duration::from_secs(10));
    assert_eq!(once.window_s, 0.0);
    let totals_only = Rate {
        total: 10,
        delta: 0,
        per_s: 0.0,
    };
    assert_eq!(once.proxy.counter("requests"), totals_only);

    for s in 1..=5 {
        add(requests, 10 * s);
        collector.sample(&res, t0 + Duration::from_secs(s));
    }
    let window = |s| collector.report(Duration::from_secs(s));
    assert_eq!(window(2).window_s, 2.0);
    assert_eq!(window(2).proxy.counter("requests").delta, 40 + 50);
    assert_eq!(
        window(0).window_s,
        1.0,
        "a zero window is the last interval"
    );
    assert_eq!(window(100).window_s, 5.0, "clamped to the oldest sample");
    assert_eq!(window(100).proxy.counter("requests").per_s, 150.0 / 5.0);
}

#[test]
fn the_history_is_bounded() {
    let (_dir, cfg) = config();
    let res = Resources::create(&cfg).unwrap();
    let mut collector = Collector::new(&cfg);
    let t0 = Instant::now();
    for s in 0..(HISTORY_SAMPLES as u64 + 5) {
        collector.sample(&res, t0 + Duration::from_secs(s));
    }
    assert_eq!(collector.history.len(), HISTORY_SAMPLES);
    let all = collector.report(Duration::from_secs(3600));
    assert_eq!(all.window_s, (HISTORY_SAMPLES - 1) as f64);
}

#[test]
fn a_group_missing_from_the_base_counts_from_zero() {
    let (_dir, _res, collector) = scenario();
    let newest = collector.history.back().unwrap();
    let mut base = (**collector.history.front().unwrap()).clone();
    base.groups.retain(|g| g.id != 2);
    let r = report::build("x", newest, Some(&base));
    let g2 = r.groups.iter().find(|g| g.id == 2).unwrap();
    assert_eq!(g2.counter("requests").delta, 7);
}

#[test]
fn the_report_round_trips_through_json() {
    let (_dir, _res, collector) = scenario();
    let report = collector.report(Duration::from_secs(60));
    let json = serde_json::to_string(&report).unwrap();
    let back: StatReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
    let partial: StatReport = serde_json::from_str(r#"{"service":"s"}"#).unwrap();
    assert_eq!(partial.service, "s");
}

#[test]
fn units_are_humanised() {
    assert_eq!(table::rate(0.0), "0/s");
    assert_eq!(table::rate(950.0), "950/s");
    assert_eq!(table::rate(1234.0), "1.2k/s");
    assert_eq!(table::rate(12_345.0), "12.3k/s");
    assert_eq!(table::rate(75.0), "75/s");
    assert_eq!(table::rate(0.5), "0.5/s");
    assert_eq!(table::count(123_456.0), "123k");
    assert_eq!(table::rate(2_500_000.0), "2.5M/s");
    assert_eq!(table::duration(850), "850ns");
    assert_eq!(table::duration(3_500), "3.5µs");
    assert_eq!(table::duration(350 * US), "350µs");
    assert_eq!(table::duration(12_300 * US), "12.3ms");
    assert_eq!(table::duration(1_200 * MS), "1.2s");
    assert_eq!(table::bytes_rate(512.0), "512B/s");
    assert_eq!(table::bytes_rate(1.5 * 1_048_576.0), "1.5MiB/s");
}

#[test]
fn the_table_has_one_aligned_row_per_group_and_the_plugin_metrics() {
    let (_dir, _res, collector) = scenario();
    let text = render_table(&collector.report(Duration::from_secs(60)));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("service stat-test") && lines[0].contains("last 2.0 s"));
    assert!(text.contains("ring_full 3"), "{text}");
    let header = lines.iter().position(|l| l.starts_with("group")).unwrap();
    let (g1, g2) = (lines[header + 1], lines[header + 2]);
    assert!(g1.starts_with("1 ") && g2.starts_with("2 "), "{text}");
    assert!(
        g1.contains("75/s") && g1.contains("µs") && g1.contains("2/"),
        "{text}"
    );
    let width = |l: &str| l.chars().count();
    assert_eq!(width(g1), width(lines[header]), "{text}");
    assert_eq!(width(g2), width(lines[header]), "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("g1") && l.contains("hits")),
        "{text}"
    );
    assert!(lines
        .iter()
        .any(|l| l.starts_with("proxy") && l.contains("accepted_tls")));
}

#[test]
fn dropped_log_lines_and_a_full_log_dir_show_in_the_table_and_the_exposition() {
    let (_dir, _res, collector) = scenario();
    let mut report = collector.report(METRICS_WINDOW);
    // Other tests of this process may have counted for the controller.
    report.log = report::LogReport::default();
    let quiet = render_table(&report);
    assert!(!quiet.contains("lines dropped"), "{quiet}");
    report.proxy.counters.insert(
        "log_dropped".into(),
        Rate {
            total: 3,
            ..Rate::default()
        },
    );
    report.log.controller_dropped.total = 2;
    report.log.dir_full = true;
    let table = render_table(&report);
    assert!(
        table.contains("log    lines dropped: proxy 3, workers 0, controller 2  LOG DIR FULL"),
        "{table}"
    );
    let text = exposition::render(&report).unwrap();
    for line in [
        "spp_proxy_log_dropped_total 3",
        "spp_worker_log_dropped_total{group=\"1\"} 0",
        &format!("{} 2", names::CONTROLLER_LOG_DROPPED),
        &format!("{} 1", names::LOG_DIR_FULL),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line:?} missing in\n{text}"
        );
    }
}

#[test]
fn the_exposition_has_the_stable_names_and_parses() {
    let (_dir, _res, collector) = scenario();
    let text = exposition::render(&collector.report(METRICS_WINDOW)).unwrap();
    for line in [
        "# TYPE spp_proxy_requests_total counter",
        "spp_proxy_requests_total 200",
        "# TYPE spp_proxy_connections_active gauge",
        "spp_proxy_connections_active 5",
        "spp_proxy_up 1",
        "spp_worker_requests_total{group=\"1\"} 160",
        "spp_worker_busy_seconds_total{group=\"1\"} 1.5",
        "spp_group_workers{group=\"1\"} 2",
        "# TYPE spp_group_queue_wait_seconds summary",
        "spp_group_queue_wait_seconds_count{group=\"1\"} 1001",
        "spp_group_process_seconds{group=\"2\",quantile=\"0.5\"} NaN",
        "spp_plugin_counter_total{process=\"proxy\",name=\"accepted_tls\"} 2",
        "spp_plugin_counter_total{process=\"worker\",group=\"1\",name=\"hits\"} 10",
        "spp_stats_window_seconds 2",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line:?} missing in\n{text}"
        );
    }
    for prefix in [
        "spp_group_queue_wait_seconds{group=\"1\",quantile=\"0.999\"} 0.01",
        "spp_group_queue_wait_seconds{group=\"1\",quantile=\"1\"} 0.01",
        "spp_plugin_latency_seconds{process=\"worker\",group=\"1\",name=\"db\",quantile=\"0.99\"} 0.00",
    ] {
        assert!(text.lines().any(|l| l.starts_with(prefix)), "{prefix:?}\n{text}");
    }
    for c in PROXY_COUNTERS.iter().chain(WORKER_COUNTERS) {
        assert!(
            text.contains(&format!("# TYPE {} ", c.metric)),
            "{}",
            c.metric
        );
    }
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(series.starts_with("spp_"), "{line}");
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
}

#[test]
fn the_latency_fields_follow_the_summary_quantiles() {
    let latency = Latency {
        p50_ns: 1,
        p90_ns: 2,
        p99_ns: 3,
        p999_ns: 4,
        max_ns: 5,
        ..Latency::default()
    };
    let values = latency.quantiles_ns();
    // Field by field, in the order of names::QUANTILES (1 = the maximum).
    let expect: Vec<(f64, u64)> = vec![(0.5, 1), (0.9, 2), (0.99, 3), (0.999, 4), (1.0, 5)];
    let got: Vec<(f64, u64)> = names::QUANTILES.into_iter().zip(values).collect();
    assert_eq!(got, expect);
}

#[test]
fn a_window_is_encoded_once_for_every_scrape() {
    let (_dir, res, mut collector) = scenario();
    let mut windows = collector.subscribe();
    let window = windows
        .borrow_and_update()
        .clone()
        .expect("a published window");
    let first = window.exposition().unwrap();
    let second = window.exposition().unwrap();
    // The same buffer, not an equal one built again.
    assert_eq!(first.as_ptr(), second.as_ptr());
    let direct = exposition::render(&collector.report(METRICS_WINDOW)).unwrap();
    assert_eq!(first, direct.as_bytes());

    // The next sample is a new window with its own text.
    add(&res.shards[0].region.header().stats.requests, 1);
    let last = collector.history.back().unwrap().at;
    collector.sample(&res, last + Duration::from_secs(1));
    let next = windows.borrow_and_update().clone().expect("a newer window");
    assert!(!Arc::ptr_eq(&window, &next));
    let text = next.exposition().unwrap();
    assert!(
        String::from_utf8_lossy(&text).contains("\nspp_proxy_requests_total 201\n"),
        "{text:?}"
    );
}

#[test]
fn outside_a_runtime_the_endpoint_does_not_start() {
    let (_dir, cfg) = config();
    let collector = Collector::new(&cfg);
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    match serve_metrics(any_port, &collector) {
        Err(e @ StatsError::NoRuntime { .. }) => assert!(e.to_string().contains("127.0.0.1:0")),
        other => panic!("{other:?}"),
    }
}

/// One HTTP/1.1 exchange over a fresh connection: what the server sent
/// before closing (empty if it reset the connection).
async fn exchange(addr: SocketAddr, method: &str, path: &str) -> String {
    let request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    let talk = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    match tokio::time::timeout(IO_BOUND, talk).await {
        Ok(Ok(reply)) => String::from_utf8_lossy(&reply).into_owned(),
        Ok(Err(_)) => String::new(),
        Err(_) => panic!("{method} {path}: no answer within {IO_BOUND:?}"),
    }
}

#[tokio::test]
async fn the_endpoint_serves_metrics_and_404s_elsewhere() {
    let (_dir, res, mut collector) = scenario();
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let addr = start_metrics(any_port, &collector).unwrap();

    let ok = exchange(addr, "GET", "/metrics").await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("text/plain; version=0.0.4"), "{ok}");
    assert!(ok.contains("\nspp_proxy_requests_total 200\n"), "{ok}");
    assert!(exchange(addr, "GET", "/").await.starts_with("HTTP/1.1 404"));
    assert!(exchange(addr, "GET", "/metricsx")
        .await
        .starts_with("HTTP/1.1 404"));
    let post = exchange(addr, "POST", "/metrics").await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");

    // A new sample is what the next scrape sees.
    add(&res.shards[0].region.header().stats.requests, 1);
    let last = collector.history.back().unwrap().at;
    collector.sample(&res, last + Duration::from_secs(1));
    let again = exchange(addr, "GET", "/metrics").await;
    assert!(
        again.contains("\nspp_proxy_requests_total 201\n"),
        "{again}"
    );

    // The address is taken: the error says so and nothing starts.
    match serve_metrics(addr, &collector) {
        Err(StatsError::Bind { addr: a, .. }) => assert_eq!(a, addr),
        other => panic!("bound twice: {other:?}"),
    }

    // The endpoint ends with its collector.
    drop(collector);
    let mut refused = false;
    for _ in 0..RETRIES {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the listener closes when the collector is dropped");
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_at_accept() {
    let (_dir, _res, collector) = scenario();
    let addr = start_metrics("127.0.0.1:0".parse().unwrap(), &collector).unwrap();

    // Every slot held by a client that never finishes its request.
    let mut idle = Vec::new();
    for _ in 0..http::MAX_CONNECTIONS {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\n")
            .await
            .unwrap();
        idle.push(stream);
    }
    // Accepted after them (one listener, FIFO): no slot left.
    assert_eq!(exchange(addr, "GET", "/metrics").await, "");

    drop(idle);
    let mut served = false;
    for _ in 0..RETRIES {
        if exchange(addr, "GET", "/metrics")
            .await
            .starts_with("HTTP/1.1 200")
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(served, "slots come back when the clients go");
}

#[test]
fn proxy_shards_are_summed_and_shown_one_by_one() {
    let (dir, _) = config();
    let file = dir.path().join("spp.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let text = text.replace(
        "max_request_size = \"16KiB\"",
        "max_request_size = \"16KiB\"\nprocesses = 2",
    );
    std::fs::write(&file, text).unwrap();
    let cfg = config::load(&file).unwrap();
    let res = Resources::create(&cfg).unwrap();
    assert_eq!(res.shard_count(), 2);
    let mut collector = Collector::new(&cfg);
    let t0 = Instant::now();
    collector.sample(&res, t0);
    for (shard, requests, accepted) in [(0, 30, 3), (1, 12, 2)] {
        let header = res.shards[shard].region.header();
        header
            .proxy_state
            .store(WorkerState::Ready as u32, Ordering::Release);
        add(&header.stats.requests, requests);
        add(&header.stats.conns_accepted, accepted);
        header.stats.conns_active.store(accepted, Ordering::Relaxed);
    }
    collector.sample(&res, t0 + Duration::from_secs(1));
    let report = collector.report(Duration::from_secs(1));
    let p = &report.proxy;
    assert!(p.up);
    assert_eq!(p.counter("requests").total, 42, "summed");
    assert_eq!(p.connections_active, 5);
    assert_eq!(p.shards.len(), 2);
    assert_eq!(p.shards[1].requests.total, 12);
    assert_eq!(p.shards[1].conns_accepted.total, 2);
    let table = render_table(&report);
    assert!(table.contains("shard 1  up"), "{table}");
    let text = exposition::render(&report).unwrap();
    for line in [
        "spp_proxy_shard_requests_total{shard=\"0\"} 30",
        "spp_proxy_shard_requests_total{shard=\"1\"} 12",
        "spp_proxy_shard_up{shard=\"1\"} 1",
        "spp_proxy_shard_connections_active{shard=\"0\"} 3",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
}
