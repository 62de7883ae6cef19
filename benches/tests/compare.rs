//! `spp-bench compare` and `spp-bench idle-memory` end to end, against the
//! binaries of this build (run `cargo build --workspace` first so `spp`,
//! `spp-proxy`, `spp-worker` and `libspp_echo.so` sit next to
//! `spp-bench`). Short runs; no timing is asserted.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use spp_benches::compare::process::alive;
use spp_benches::compare::{
    CompareReport, IdleReport, Suite, System, HAPROXY_MISSING, SCENARIOS, TABLE,
};

/// The directory holding `spp-bench` and, after a workspace build, the
/// spp binaries.
fn bin_dir() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_spp-bench"));
    let dir = exe
        .parent()
        .expect("spp-bench has a directory")
        .to_path_buf();
    for name in ["spp", "spp-proxy", "spp-worker", "libspp_echo.so"] {
        assert!(
            dir.join(name).is_file(),
            "{} is missing: build first with `cargo build --workspace`",
            dir.join(name).display()
        );
    }
    dir
}

fn spp_bench(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spp-bench"))
        .args(args)
        .arg("--bin-dir")
        .arg(dir)
        .output()
        .expect("run spp-bench")
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_short_comparison_covers_every_scenario_and_stops_its_servers() {
    let dir = bin_dir();
    let plots = tempfile::tempdir().expect("tempdir");
    let plot_dir = plots.path().to_str().expect("utf-8 temp path");
    let out = spp_bench(
        &[
            "compare", "-r", "1", "-d", "300ms", "-w", "100ms", "--json", "-q", "--plot", plot_dir,
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", text(&out));
    let report: CompareReport = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("report JSON: {e}\n{}", text(&out)));
    let haproxy_ran = !report.haproxy.ends_with("skipped");
    assert_eq!(report.scenarios.len(), SCENARIOS.len());
    for (scenario, result) in SCENARIOS.iter().zip(&report.scenarios) {
        assert_eq!(result.name, scenario.name);
        let mut expected = vec![System::Direct, System::Spp];
        if haproxy_ran && scenario.applies_to(System::Haproxy) {
            expected.push(System::Haproxy);
        }
        let got: Vec<System> = result.systems.iter().map(|s| s.system).collect();
        assert_eq!(got, expected, "systems of {}", scenario.name);
        for system in &result.systems {
            assert_eq!(system.rounds.len(), 1);
            assert!(
                system.rounds.iter().all(|r| r.requests > 0),
                "{} against {} answered nothing: {:?}",
                scenario.name,
                system.system,
                system.rounds
            );
        }
        assert!(result.ratios.throughput_spp_direct.is_some());
        assert!(plots
            .path()
            .join(format!("{}.svg", scenario.name))
            .is_file());
    }
    let pids = &report.processes;
    assert!(pids.spp.len() >= 3, "controller, proxy, worker: {pids:?}");
    let all = pids
        .spp
        .iter()
        .copied()
        .chain(pids.direct)
        .chain(pids.haproxy);
    for pid in all {
        assert!(!alive(pid), "pid {pid} still runs after compare");
    }
}

#[test]
fn spps_table_runs_every_scenario_and_figure_and_stops_its_servers() {
    let dir = bin_dir();
    for name in ["spp-tokio-relay", "libspp_sleep_echo.so", "libspp_relay.so"] {
        assert!(dir.join(name).is_file(), "{name} is missing: build first");
    }
    let out = spp_bench(
        &[
            "compare",
            "--table",
            "-r",
            "1",
            "-d",
            "200ms",
            "-w",
            "50ms",
            "--sleep-ms",
            "20",
            "--sleep-connections",
            "50",
            "--json",
            "-q",
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", text(&out));
    let report: CompareReport = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("report JSON: {e}\n{}", text(&out)));
    assert_eq!(report.suite, Suite::Table);
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(report.scenarios.len(), TABLE.len());
    for (scenario, result) in TABLE.iter().zip(&report.scenarios) {
        assert_eq!(result.name, scenario.name);
        let expected = scenario.systems.to_vec();
        let got: Vec<System> = result.systems.iter().map(|s| s.system).collect();
        assert_eq!(got, expected, "systems of {}", scenario.name);
        for system in &result.systems {
            assert!(
                system.rounds.iter().all(|r| r.requests > 0),
                "{} against {} answered nothing: {:?}",
                scenario.name,
                system.system,
                system.rounds
            );
        }
    }
    for name in ["sleep_over_ideal", "sleep_p99_ms", "relay_over_tokio_1t"] {
        assert!(
            report.checks.iter().any(|c| c.name == name),
            "no {name}: {:?}",
            report.checks
        );
    }
    let sleep = report
        .checks
        .iter()
        .find(|c| c.name == "sleep_over_ideal")
        .and_then(|c| c.value)
        .expect("a sleep figure");
    assert!(sleep > 0.0, "{sleep}");
    let pids = &report.processes;
    assert!(
        pids.extra.len() >= 11,
        "sleep and relay spps, tokio relays: {pids:?}"
    );
    let all = pids
        .spp
        .iter()
        .chain(&pids.extra)
        .copied()
        .chain(pids.direct);
    for pid in all {
        assert!(!alive(pid), "pid {pid} still runs after compare --table");
    }
}

#[test]
fn the_table_names_every_system_or_says_haproxy_was_skipped() {
    let dir = bin_dir();
    let out = spp_bench(
        &["compare", "-r", "1", "-d", "100ms", "-w", "0s", "-q"],
        &dir,
    );
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    for scenario in SCENARIOS {
        assert!(table.contains(scenario.title), "{table}");
    }
    assert!(table.contains("spp/direct"), "{table}");
    let haproxy_line = table
        .lines()
        .find(|l| l.starts_with("haproxy: "))
        .unwrap_or_else(|| panic!("no haproxy line: {table}"));
    if haproxy_line.contains(HAPROXY_MISSING) {
        assert_eq!(haproxy_line, format!("haproxy: {HAPROXY_MISSING}"));
    }
}

#[test]
fn idle_memory_holds_the_connections_and_stops_its_servers() {
    let dir = bin_dir();
    let out = spp_bench(&["idle-memory", "-c", "200", "--json"], &dir);
    assert!(out.status.success(), "{}", text(&out));
    let report: IdleReport = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("report JSON: {e}\n{}", text(&out)));
    assert_eq!(report.connections, 200);
    assert!(report.spp.rss_before > 0 && report.direct.rss_before > 0);
    for pid in [report.spp.pid, report.direct.pid] {
        assert!(!alive(pid), "pid {pid} still runs");
    }
}

#[test]
fn a_missing_binary_directory_is_a_clear_error() {
    let missing = tempfile::tempdir().expect("tempdir");
    let out = spp_bench(&["compare", "-r", "1"], missing.path());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is missing") && err.contains("--bin-dir"),
        "{err}"
    );
    // The plain load usage still parses (and fails on the bad target).
    let out = Command::new(env!("CARGO_BIN_EXE_spp-bench"))
        .arg("127.0.0.1:0")
        .output()
        .expect("run spp-bench");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
