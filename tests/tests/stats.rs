//! Service statistics end to end: after real traffic, `spp stat --json`
//! and the Prometheus endpoint show the requests of the proxy and of the
//! group, non-zero queue-wait and process-time percentiles, and what the
//! plugin counted through the host services; the table has a row per
//! group.

use serde_json::Value;
use spp_tests::client::TcpClient;
use spp_tests::faulty;
use spp_tests::http::{self, free_local_addr};
use spp_tests::metrics::{self, Sample};
use spp_tests::{wait_for, Binaries, GroupConfig, Service, ServiceConfig};
use std::net::SocketAddr;
use std::time::Duration;

/// The group the requests go to (the default group of a plugin without
/// `spp_route`), and an idle second group.
const BUSY_GROUP: u32 = 1;
const IDLE_GROUP: u32 = 2;
/// Plain echo requests sent.
const ECHOES: u64 = 200;
/// A plugin counter, bumped [`COUNT_CALLS`] times by [`COUNT_DELTA`].
const COUNTER: &str = "e2e_hits";
const COUNT_CALLS: u64 = 5;
const COUNT_DELTA: u64 = 3;
/// A plugin latency, sampled [`LAT_CALLS`] times at [`LAT_MICROS`] µs.
const LATENCY: &str = "e2e.lat";
const LAT_CALLS: u64 = 4;
const LAT_MICROS: u64 = 1500;
/// Every request the worker group sees.
const ALL_REQUESTS: u64 = ECHOES + COUNT_CALLS + LAT_CALLS;
/// `spp stat --watch` interval, seconds, and the reports read from it.
const WATCH_SECS: u64 = 1;
const WATCH_REPORTS: usize = 2;
/// Bound on every wait (the controller samples every second).
const WAIT: Duration = Duration::from_secs(20);

fn stats_config(metrics: SocketAddr) -> ServiceConfig {
    let bins = Binaries::locate();
    let mut cfg = ServiceConfig::single(&bins.plugin(faulty::PLUGIN), 2);
    cfg.metrics = Some(metrics.to_string());
    cfg.groups
        .push(GroupConfig::new(IDLE_GROUP, &bins.plugin("spp_echo"), 1));
    cfg
}

fn group(report: &Value, id: u32) -> &Value {
    report["groups"]
        .as_array()
        .and_then(|groups| groups.iter().find(|g| g["id"] == id))
        .unwrap_or(&Value::Null)
}

/// The traffic: echoes, plugin counter calls and latency samples.
fn send_traffic(service: &Service) {
    let mut client = TcpClient::connect(service.tcp()).expect("connect");
    for i in 0..ECHOES {
        let payload = format!("stat {i}");
        assert_eq!(
            client.call(payload.as_bytes()).expect("echo"),
            payload.as_bytes()
        );
    }
    for _ in 0..COUNT_CALLS {
        let payload = faulty::count(COUNTER, COUNT_DELTA);
        assert_eq!(client.call(&payload).expect("count"), payload);
    }
    for _ in 0..LAT_CALLS {
        let payload = faulty::lat(LATENCY, LAT_MICROS);
        assert_eq!(client.call(&payload).expect("lat"), payload);
    }
}

/// What the JSON report must show once the traffic is sampled; `Err`
/// says what is missing.
fn check_report(report: &Value) -> Result<(), String> {
    let g = group(report, BUSY_GROUP);
    let checks: [(&str, bool); 8] = [
        (
            "group requests total",
            g["counters"]["requests"]["total"].as_u64() >= Some(ALL_REQUESTS),
        ),
        (
            "proxy requests total",
            report["proxy"]["counters"]["requests"]["total"].as_u64() >= Some(ALL_REQUESTS),
        ),
        (
            "queue_wait p50",
            g["queue_wait"]["p50_ns"].as_u64() > Some(0),
        ),
        (
            "queue_wait p99",
            g["queue_wait"]["p99_ns"].as_u64() > Some(0),
        ),
        (
            "process_time p50",
            g["process_time"]["p50_ns"].as_u64() > Some(0),
        ),
        (
            "process_time p99",
            g["process_time"]["p99_ns"].as_u64() > Some(0),
        ),
        (
            "plugin counter",
            g["plugin"]["counters"][COUNTER]["total"].as_u64() == Some(COUNT_CALLS * COUNT_DELTA),
        ),
        (
            "plugin latency",
            g["plugin"]["latencies"][LATENCY]["total_count"].as_u64() == Some(LAT_CALLS),
        ),
    ];
    let missing: Vec<&str> = checks
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(what, _)| *what)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("missing {missing:?} in {report:#}"))
    }
}

/// What the exposition must show; `Err` says what is missing.
fn check_exposition(samples: &[Sample]) -> Result<(), String> {
    use metrics::*;
    let busy = BUSY_GROUP.to_string();
    let group = [(LABEL_GROUP, busy.as_str())];
    let plugin = |name| {
        [
            (LABEL_PROCESS, PROCESS_WORKER),
            (LABEL_GROUP, busy.as_str()),
            (LABEL_NAME, name),
        ]
    };
    let at_least = |name: &str, labels: &[(&str, &str)], min: f64| {
        value(samples, name, labels).is_some_and(|v| v >= min)
    };
    let latency_sum = value(
        samples,
        &format!("{PLUGIN_LATENCY}{SUM_SUFFIX}"),
        &plugin(LATENCY),
    );
    let expected_sum = (LAT_CALLS * LAT_MICROS) as f64 * 1e-6;
    let checks = [
        (
            PROXY_REQUESTS,
            at_least(PROXY_REQUESTS, &[], ALL_REQUESTS as f64),
        ),
        (
            WORKER_REQUESTS,
            at_least(WORKER_REQUESTS, &group, ALL_REQUESTS as f64),
        ),
        (
            GROUP_QUEUE_WAIT,
            at_least(
                &format!("{GROUP_QUEUE_WAIT}{COUNT_SUFFIX}"),
                &group,
                ALL_REQUESTS as f64,
            ),
        ),
        (
            GROUP_PROCESS,
            at_least(
                &format!("{GROUP_PROCESS}{COUNT_SUFFIX}"),
                &group,
                ALL_REQUESTS as f64,
            ),
        ),
        (
            PLUGIN_COUNTER,
            value(samples, PLUGIN_COUNTER, &plugin(COUNTER))
                == Some((COUNT_CALLS * COUNT_DELTA) as f64),
        ),
        (
            PLUGIN_LATENCY,
            value(
                samples,
                &format!("{PLUGIN_LATENCY}{COUNT_SUFFIX}"),
                &plugin(LATENCY),
            ) == Some(LAT_CALLS as f64)
                && latency_sum.is_some_and(|s| (s - expected_sum).abs() < expected_sum * 1e-6),
        ),
    ];
    let missing: Vec<&str> = checks
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(what, _)| *what)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("missing or wrong {missing:?}"))
    }
}

#[test]
fn stat_and_the_metrics_endpoint_show_traffic_latencies_and_plugin_metrics() {
    let metrics_addr = free_local_addr();
    let service = Service::start(&stats_config(metrics_addr));

    // Rates and percentiles cover the time between two samples: wait for
    // the first window before sending.
    let windowed = wait_for(WAIT, || {
        let report = service.stat_json().ok()?;
        (report["window_s"].as_f64() > Some(0.0)).then_some(())
    });
    assert!(
        windowed.is_some(),
        "spp stat --json never showed a window: {:?}",
        service.stat_json()
    );
    send_traffic(&service);

    let mut last = String::new();
    let shown = wait_for(WAIT, || {
        let outcome = service.stat_json().and_then(|r| check_report(&r));
        outcome.map_err(|why| last = why).ok()
    });
    assert!(shown.is_some(), "spp stat --json: {last}");

    let mut last = String::new();
    let exposed = wait_for(WAIT, || {
        let outcome = http::get(metrics_addr, "/metrics")
            .map_err(|e| format!("GET /metrics: {e}"))
            .and_then(|r| {
                if r.status != 200 {
                    return Err(format!("GET /metrics: {}\n{}", r.head, r.body));
                }
                let samples = metrics::parse(&r.body)?;
                check_exposition(&samples).map_err(|why| format!("{why}\n{}", r.body))
            });
        outcome.map_err(|why| last = why).ok()
    });
    assert!(exposed.is_some(), "Prometheus endpoint: {last}");

    let table = service.spp(&["stat"]);
    assert!(table.ok(), "spp stat: {}", table.text());
    let rows = group_rows(&table.stdout);
    assert_eq!(
        rows,
        vec![BUSY_GROUP.to_string(), IDLE_GROUP.to_string()],
        "one row per group:\n{}",
        table.stdout
    );
    assert!(
        table.stdout.contains(COUNTER) && table.stdout.contains(LATENCY),
        "the plugin's metrics are in the table:\n{}",
        table.stdout
    );
}

#[test]
fn stat_watch_prints_a_report_every_interval() {
    let bins = Binaries::locate();
    let service = Service::start(&ServiceConfig::single(&bins.plugin(faulty::PLUGIN), 1));
    let lines = service
        .stat_watch(WATCH_SECS, WATCH_REPORTS, WAIT)
        .unwrap_or_else(|why| panic!("{why}"));
    for line in &lines {
        let report: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("one JSON report per line ({e}): {line}"));
        assert!(
            group(&report, BUSY_GROUP).is_object(),
            "the report has the group: {report}"
        );
    }
}

/// The first cell of each row of the group table (the lines after the
/// header that starts with "group", up to a blank line).
fn group_rows(table: &str) -> Vec<String> {
    table
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("group"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}
