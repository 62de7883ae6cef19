//! The table `spp stat` prints: a proxy summary, one aligned row per group
//! (rates, busy time, errors, queue-wait and process-time percentiles) and
//! the plugins' own metrics, with humanised units (`1.2k/s`, `350µs`,
//! `12.3ms`, `1.5MiB/s`).

use super::report::{GroupReport, Latency, PluginReport, Rate, StatReport};
use std::fmt::Write;

/// Proxy counters shown as "problems" when they grew in the window.
const PROXY_PROBLEMS: &[&str] = &[
    "conns_refused",
    "frame_errors",
    "input_overrun",
    "flow_closed_dropped",
    "oversized",
    "ring_full",
    "no_worker",
    "worker_died_failed",
    "stale_failed",
    "exceptions",
    "plugin_panics",
    "slow_closed",
    "idle_closed",
    "stale_responses",
    "udp_dropped",
    "host_refused",
    "log_dropped",
    "poison_refused",
    "request_timeouts",
    "evicted_partial",
    "held_overflow",
];

/// The counter of log lines dropped, in the proxy's and the workers'
/// counters.
const LOG_DROPPED: &str = "log_dropped";

/// What the less obvious columns mean.
const LEGEND: &str = "busy: s inside spp_process per s · util: busy per live worker · \
err/panic/stale/dropped: in the window\n";

/// Columns separated by this.
const GAP: &str = "  ";

/// Decimal scale steps for counts and rates.
const SCALES: [(f64, &str); 4] = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")];
/// Binary scale steps for bytes.
const BYTE_SCALES: [(f64, &str); 4] = [
    (1_099_511_627_776.0, "TiB"),
    (1_073_741_824.0, "GiB"),
    (1_048_576.0, "MiB"),
    (1024.0, "KiB"),
];

/// `x` with at most one decimal, none for 100 and more: `1.2`, `12.3`,
/// `75`, `123`.
fn short(x: f64) -> String {
    let s = if x < 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    };
    match s.strip_suffix(".0") {
        Some(whole) => whole.to_string(),
        None => s,
    }
}

/// A count or rate with a k/M/G/T suffix: `950`, `1.2k`, `12.3M`.
pub fn count(x: f64) -> String {
    for (scale, unit) in SCALES {
        if x >= scale {
            return format!("{}{unit}", short(x / scale));
        }
    }
    short(x)
}

/// A rate: `0/s`, `950/s`, `1.2k/s`.
pub fn rate(per_s: f64) -> String {
    format!("{}/s", count(per_s))
}

/// Bytes per second: `512B/s`, `1.5MiB/s`.
pub fn bytes_rate(per_s: f64) -> String {
    for (scale, unit) in BYTE_SCALES {
        if per_s >= scale {
            return format!("{}{unit}/s", short(per_s / scale));
        }
    }
    format!("{}B/s", short(per_s))
}

/// A duration in ns: `850ns`, `3.5µs`, `350µs`, `12.3ms`, `1.2s`.
pub fn duration(ns: u64) -> String {
    let ns = ns as f64;
    for (scale, unit) in [(1e9, "s"), (1e6, "ms"), (1e3, "µs")] {
        if ns >= scale {
            return format!("{}{unit}", short(ns / scale));
        }
    }
    format!("{ns:.0}ns")
}

/// Aligns `rows` into columns: the first `left` columns left-aligned, the
/// others right-aligned.
fn align(rows: &[Vec<String>], left: usize) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width = |c: usize| {
        rows.iter()
            .filter_map(|r| r.get(c))
            .map(|cell| cell.chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..columns).map(width).collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str(GAP);
            }
            let pad = widths[c].saturating_sub(cell.chars().count());
            if c < left {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            } else {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The four percentile cells of a latency: p50, p99, p99.9, max (`-`
/// without a sample in the window).
fn latency_cells(l: &Latency) -> [String; 4] {
    if l.count == 0 {
        return std::array::from_fn(|_| "-".to_string());
    }
    [l.p50_ns, l.p99_ns, l.p999_ns, l.max_ns].map(duration)
}

fn group_row(g: &GroupReport) -> Vec<String> {
    let delta = |field: &str| count(g.counter(field).delta as f64);
    let mut row = vec![
        g.id.to_string(),
        format!("{}/{}", g.workers, g.slots),
        format!("{:.2}", g.busy),
        g.utilisation
            .map_or("-".to_string(), |u| format!("{:.0}%", u * 100.0)),
        rate(g.counter("requests").per_s),
        rate(g.counter("replies").per_s),
        delta("process_errors"),
        delta("plugin_panics"),
        delta("stale_dropped"),
        delta("replies_dropped"),
    ];
    row.extend(latency_cells(&g.queue_wait));
    row.extend(latency_cells(&g.process_time));
    row
}

fn plugin_rows(rows: &mut Vec<Vec<String>>, owner: &str, plugin: &PluginReport) {
    for (name, Rate { total, per_s, .. }) in &plugin.counters {
        rows.push(vec![
            owner.to_string(),
            name.clone(),
            rate(*per_s),
            count(*total as f64),
        ]);
    }
    for (name, l) in &plugin.latencies {
        let mut row = vec![
            owner.to_string(),
            name.clone(),
            rate(l.per_s),
            count(l.total_count as f64),
        ];
        row.extend(latency_cells(l));
        rows.push(row);
    }
    if plugin.refused.total > 0 {
        rows.push(vec![
            owner.to_string(),
            "(refused calls)".to_string(),
            rate(plugin.refused.per_s),
            count(plugin.refused.total as f64),
        ]);
    }
}

/// "log ..." when log lines were dropped or the log dir is full.
fn log_line(report: &StatReport) -> Option<String> {
    let proxy = report.proxy.counter(LOG_DROPPED).total;
    let workers: u64 = report
        .groups
        .iter()
        .map(|g| g.counter(LOG_DROPPED).total)
        .sum();
    let controller = report.log.controller_dropped.total;
    if proxy + workers + controller == 0 && !report.log.dir_full {
        return None;
    }
    let full = if report.log.dir_full {
        "  LOG DIR FULL"
    } else {
        ""
    };
    Some(format!(
        "log    lines dropped: proxy {}, workers {}, controller {}{full}",
        count(proxy as f64),
        count(workers as f64),
        count(controller as f64)
    ))
}

/// The report as the table `spp stat` prints.
pub fn render(report: &StatReport) -> String {
    let mut out = String::new();
    let window = if report.window_s > 0.0 {
        format!("last {:.1} s", report.window_s)
    } else {
        "totals only: rates need a second sample".to_string()
    };
    let _ = writeln!(out, "service {} · {window}", report.service);

    let p = &report.proxy;
    let _ = writeln!(
        out,
        "proxy  {}  conns {} open, {} new  requests {}  in {}  out {}  in flight {}",
        if p.up { "up" } else { "DOWN" },
        count(p.connections_active as f64),
        rate(p.counter("conns_accepted").per_s),
        rate(p.counter("requests").per_s),
        bytes_rate(p.counter("bytes_in").per_s),
        bytes_rate(p.counter("bytes_out").per_s),
        count(p.in_flight as f64),
    );
    if p.shards.len() > 1 {
        for s in &p.shards {
            let _ = writeln!(
                out,
                "  shard {}  {}  conns {} open, {} new  requests {}  in flight {}",
                s.shard,
                if s.up { "up" } else { "DOWN" },
                count(s.connections_active as f64),
                rate(s.conns_accepted.per_s),
                rate(s.requests.per_s),
                count(s.in_flight as f64),
            );
        }
    }
    let problems: Vec<String> = PROXY_PROBLEMS
        .iter()
        .filter(|f| p.counter(f).delta > 0)
        .map(|f| format!("{f} {}", count(p.counter(f).delta as f64)))
        .collect();
    if !problems.is_empty() {
        let _ = writeln!(out, "       in window: {}", problems.join(", "));
    }
    if let Some(line) = log_line(report) {
        let _ = writeln!(out, "{line}");
    }

    out.push('\n');
    let header = [
        "group", "workers", "busy", "util", "req", "replies", "err", "panic", "stale", "dropped",
        "wait p50", "p99", "p99.9", "max", "proc p50", "p99", "p99.9", "max",
    ];
    let mut rows = vec![header.map(str::to_string).to_vec()];
    rows.extend(report.groups.iter().map(group_row));
    out.push_str(&align(&rows, 1));

    let mut plugin = vec![[
        "plugin", "metric", "rate", "total", "p50", "p99", "p99.9", "max",
    ]
    .map(str::to_string)
    .to_vec()];
    plugin_rows(&mut plugin, "proxy", &p.plugin);
    for g in &report.groups {
        plugin_rows(&mut plugin, &format!("g{}", g.id), &g.plugin);
    }
    if plugin.len() > 1 {
        out.push('\n');
        out.push_str(&align(&plugin, 2));
    }
    out.push('\n');
    out.push_str(LEGEND);
    out
}
