//! The comparison run: start the systems the suite needs (spp and the
//! direct baseline always; haproxy if installed for the classic suite;
//! for SPP's table a sleep-echo spp service, two relay spp services — in
//! front of spp's echo and of the baseline — and two tokio relays in front
//! of the baseline); for the shard suite spp echo with one shard and with
//! several, and both again behind a proxy plugin whose `input` costs CPU;
//! for the async relay suite the micro-thread relay, the async relay
//! twice (runtime driven on the worker's thread; on a plugin thread) and
//! the tokio relays, all in front of the baseline;
//! run every scenario round by round, each round against every system in
//! turn (A B A B ...), in the shard and async relay suites with every
//! process's CPU read before and after each run; measure the accept balance; stop everything;
//! fold the rounds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::load::{self, Report, Transport};

use super::bins::{self, Binaries};
use super::checks;
use super::child;
use super::cpu::{self, Watched};
use super::error::CompareError;
use super::idle;
use super::report::{CompareReport, Processes, ScenarioResult, Skipped};
use super::scenario::{RunShape, Scenario, Suite, System, DEFAULT_SLEEP_CONNECTIONS};
use super::shards::{self, ShardFigures};
use super::spp::{SppService, SppSetup};
use super::summary::{Ratios, SystemResult};
use super::systems::{Shared, Systems};

/// Default rounds per scenario.
pub const DEFAULT_ROUNDS: usize = 3;
/// Default spp workers.
pub const DEFAULT_WORKERS: u32 = 1;
/// Default spp relay workers (SPP's table).
pub const DEFAULT_RELAY_WORKERS: u32 = 1;
/// Default sleep of the sleep-echo scenarios, ms.
pub const DEFAULT_SLEEP_MS: u64 = 100;
/// Workers of the sleep-echo service (the figure is for one).
pub const SLEEP_WORKERS: u32 = 1;
/// Most rounds accepted.
pub const MAX_ROUNDS: usize = 1_000;
/// Most spp workers accepted.
pub const MAX_WORKERS: u32 = 256;
/// Longest sleep accepted, ms.
pub const MAX_SLEEP_MS: u64 = 10_000;
/// Most sleep-echo connections accepted (within `max_in_flight`'s limit).
pub const MAX_SLEEP_CONNECTIONS: usize = 50_000;
/// Most proxy shards accepted (`proxy.processes`'s limit).
pub const MAX_SHARDS: u16 = 64;
/// Most connections of the classic suite's TCP closed loop accepted.
pub const MAX_TCP_CONNECTIONS: usize = 50_000;
/// Most tokio relay threads accepted.
pub const MAX_TOKIO_THREADS: usize = 256;
/// The classic suite's long-connection TCP closed loop
/// ([`CompareSpec::tcp_connections`] changes its connection count).
const CLASSIC_TCP: &str = "tcp_n64";
/// What the report says when haproxy is not on `PATH`.
pub const HAPROXY_MISSING: &str = "not installed, skipped";

/// What to compare and how.
#[derive(Clone, Debug)]
pub struct CompareSpec {
    /// Where the binaries are (default: next to the running executable).
    pub bin_dir: Option<PathBuf>,
    /// Which scenarios.
    pub suite: Suite,
    /// spp worker processes (the echo service).
    pub workers: u32,
    /// spp proxy processes (shards) of the echo service.
    pub proxy_processes: u16,
    /// Rounds per scenario.
    pub rounds: usize,
    /// Timing, payload and load threads of every run.
    pub shape: RunShape,
    /// Write one SVG per scenario here.
    pub plot_dir: Option<PathBuf>,
    /// Compare against haproxy too when it is installed (classic suite).
    pub haproxy: bool,
    /// One line per run on stderr.
    pub progress: bool,
    /// sleep-echo's sleep, ms (SPP's table).
    pub sleep_ms: u64,
    /// Connections of the sleep-echo scenarios (SPP's table).
    pub sleep_connections: usize,
    /// spp relay workers (SPP's table).
    pub relay_workers: u32,
    /// Threads of the multi-thread tokio relay (none: one per CPU); the
    /// other one always has one.
    pub tokio_threads: Option<usize>,
    /// Shards of the shard suite's sharded services (its [`System::Spp`]
    /// and [`System::SppCost`]).
    pub shard_count: u16,
    /// Connections of the classic suite's long-connection TCP closed loop
    /// (none: its 64); another count renames it `tcp_n<N>`.
    pub tcp_connections: Option<usize>,
}

impl CompareSpec {
    /// The defaults: the classic suite, 3 rounds, 1 worker, 3 s measured
    /// after 0.5 s warm-up, 64-byte payload, one load thread, haproxy if
    /// installed; for the table 100 ms sleeps on 2000 connections and one
    /// relay worker.
    pub fn new() -> Self {
        CompareSpec {
            bin_dir: None,
            suite: Suite::Classic,
            workers: DEFAULT_WORKERS,
            proxy_processes: 1,
            rounds: DEFAULT_ROUNDS,
            shape: RunShape {
                duration: load::spec::DEFAULT_DURATION,
                warmup: load::spec::DEFAULT_WARMUP,
                payload: load::spec::DEFAULT_PAYLOAD,
                threads: load::spec::DEFAULT_THREADS,
            },
            plot_dir: None,
            haproxy: true,
            progress: false,
            sleep_ms: DEFAULT_SLEEP_MS,
            sleep_connections: DEFAULT_SLEEP_CONNECTIONS,
            relay_workers: DEFAULT_RELAY_WORKERS,
            tokio_threads: None,
            shard_count: shards::DEFAULT_SHARD_COUNT,
            tcp_connections: None,
        }
    }

    /// The echo service's proxy shards: `shard_count` in the shard suite,
    /// else `proxy_processes`.
    pub fn spp_shards(&self) -> u16 {
        match self.suite {
            Suite::Shards => self.shard_count,
            _ => self.proxy_processes,
        }
    }

    /// The scenarios it runs.
    pub fn scenarios(&self) -> Vec<Scenario> {
        let mut scenarios = self.suite.scenarios(self.sleep_connections);
        if let (Suite::Classic, Some(n)) = (self.suite, self.tcp_connections) {
            for s in &mut scenarios {
                if s.name == CLASSIC_TCP && n != s.connections {
                    // Once per run: the name lives as long as the report.
                    s.name = format!("tcp_n{n}").leak();
                    s.title = "TCP N=many closed loop";
                    s.connections = n;
                }
            }
        }
        if self.suite == Suite::Classic {
            // A payload past the largest datagram (e.g. 64 KiB) runs TCP only.
            let addr = SocketAddr::from(([127, 0, 0, 1], 1));
            scenarios.retain(|s| {
                s.transport == Transport::Tcp || s.spec(addr, &self.shape).validate().is_ok()
            });
        }
        scenarios
    }

    /// sleep-echo's sleep.
    pub fn sleep(&self) -> Duration {
        Duration::from_millis(self.sleep_ms)
    }

    /// Checks ranges (the load harness checks the rest on the first run).
    pub fn validate(&self) -> Result<(), CompareError> {
        let invalid = |field, why: String| Err(CompareError::Invalid { field, why });
        if !(1..=MAX_ROUNDS).contains(&self.rounds) {
            return invalid("rounds", format!("must be 1..={MAX_ROUNDS}"));
        }
        if !(1..=MAX_WORKERS).contains(&self.workers) {
            return invalid("workers", format!("must be 1..={MAX_WORKERS}"));
        }
        if !(1..=MAX_WORKERS).contains(&self.relay_workers) {
            return invalid("relay-workers", format!("must be 1..={MAX_WORKERS}"));
        }
        if !(1..=MAX_SLEEP_MS).contains(&self.sleep_ms) {
            return invalid("sleep-ms", format!("must be 1..={MAX_SLEEP_MS}"));
        }
        if !(1..=MAX_SLEEP_CONNECTIONS).contains(&self.sleep_connections) {
            return invalid(
                "sleep-connections",
                format!("must be 1..={MAX_SLEEP_CONNECTIONS}"),
            );
        }
        if let Some(n) = self.tokio_threads {
            if !(1..=MAX_TOKIO_THREADS).contains(&n) {
                return invalid("tokio-threads", format!("must be 1..={MAX_TOKIO_THREADS}"));
            }
        }
        if !(2..=MAX_SHARDS).contains(&self.shard_count) {
            return invalid("shard-count", format!("must be 2..={MAX_SHARDS}"));
        }
        if let Some(n) = self.tcp_connections {
            if !(1..=MAX_TCP_CONNECTIONS).contains(&n) {
                return invalid(
                    "tcp-connections",
                    format!("must be 1..={MAX_TCP_CONNECTIONS}"),
                );
            }
        }
        if self.shape.duration.is_zero() {
            return invalid("duration", "must be more than 0".into());
        }
        for s in &self.scenarios() {
            let addr = SocketAddr::from(([127, 0, 0, 1], 1));
            s.spec(addr, &self.shape)
                .validate()
                .map_err(|e| CompareError::Invalid {
                    field: "load",
                    why: e.to_string(),
                })?;
        }
        Ok(())
    }
}

impl Default for CompareSpec {
    fn default() -> Self {
        CompareSpec::new()
    }
}

/// Where the started systems listen.
#[derive(Debug, Default)]
struct Endpoints(Vec<(System, Transport, SocketAddr)>);

impl Endpoints {
    fn add(&mut self, system: System, transport: Transport, addr: SocketAddr) {
        self.0.push((system, transport, addr));
    }

    fn of(&self, system: System, transport: Transport) -> Option<SocketAddr> {
        self.0
            .iter()
            .find(|(s, t, _)| *s == system && *t == transport)
            .map(|(_, _, a)| *a)
    }
}

/// What [`start`] started.
#[derive(Debug, Default)]
struct Started {
    endpoints: Endpoints,
    haproxy: String,
    skipped: Vec<Skipped>,
    processes: Processes,
    /// The processes whose CPU each run of a system reads (shard suite).
    watched: Vec<(System, Vec<Watched>)>,
}

impl Started {
    fn watched(&self, system: System) -> &[Watched] {
        self.watched
            .iter()
            .find(|(s, _)| *s == system)
            .map(|(_, w)| w.as_slice())
            .unwrap_or(&[])
    }
}

/// Runs the comparison. The servers are registered in `shared` as they
/// start (so a signal thread can stop them) and are always stopped before
/// this returns.
pub fn run(spec: &CompareSpec, shared: &Shared) -> Result<CompareReport, CompareError> {
    spec.validate()?;
    let bins = Binaries::locate(spec.bin_dir.as_deref())?;
    let most = spec
        .scenarios()
        .iter()
        .map(|s| s.connections)
        .max()
        .unwrap_or(1);
    idle::raise_fd_limit(most)?;
    let outcome = start_and_measure(spec, &bins, shared);
    let stopped = shared.lock().stop_all();
    let report = outcome?;
    stopped?;
    Ok(report)
}

fn start_and_measure(
    spec: &CompareSpec,
    bins: &Binaries,
    shared: &Shared,
) -> Result<CompareReport, CompareError> {
    let started = start(spec, bins, shared)?;
    let mut scenarios = Vec::new();
    for scenario in &spec.scenarios() {
        scenarios.push(measure(spec, scenario, &started)?);
    }
    let shard_figures = match (
        spec.suite,
        started.endpoints.of(System::Spp, Transport::Tcp),
    ) {
        (Suite::Shards, Some(addr)) => {
            if spec.progress {
                eprintln!(
                    "accept balance: {} short connections",
                    shards::BALANCE_CONNECTIONS
                );
            }
            Some(ShardFigures {
                shard_count: spec.shard_count,
                input_cost_us: shards::INPUT_COST_US,
                accept_balance: shards::accept_balance(
                    shared,
                    addr,
                    shards::BALANCE_CONNECTIONS,
                    spec.shape.payload,
                )?,
            })
        }
        _ => None,
    };
    let plots = match &spec.plot_dir {
        Some(dir) => plot(dir, &scenarios)?,
        None => Vec::new(),
    };
    let checks = match spec.suite {
        Suite::Classic => Vec::new(),
        Suite::Table => checks::table(&scenarios, spec.sleep()),
        Suite::Shards => shards::checks(
            &scenarios,
            shard_figures.as_ref().map(|f| &f.accept_balance),
        ),
        Suite::AsyncRelay => checks::async_relay(&scenarios),
    };
    Ok(CompareReport {
        suite: spec.suite,
        rounds: spec.rounds,
        duration_s: spec.shape.duration.as_secs_f64(),
        warmup_s: spec.shape.warmup.as_secs_f64(),
        payload: spec.shape.payload,
        workers: spec.workers,
        proxy_processes: spec.proxy_processes,
        threads: spec.shape.threads,
        haproxy: started.haproxy,
        sleep_ms: spec.sleep_ms,
        relay_workers: spec.relay_workers,
        tokio_threads: spec.tokio_threads,
        skipped: started.skipped,
        checks,
        shards: shard_figures,
        scenarios,
        processes: started.processes,
        plots,
    })
}

/// The most connections any scenario of `system` opens.
fn connections_of(spec: &CompareSpec, system: System) -> usize {
    spec.scenarios()
        .iter()
        .filter(|s| s.systems.contains(&system))
        .map(|s| s.connections)
        .max()
        .unwrap_or(1)
}

/// Starts the systems; returns their addresses, haproxy's line, the
/// systems skipped, and the pids.
fn start(spec: &CompareSpec, bins: &Binaries, shared: &Shared) -> Result<Started, CompareError> {
    let mut systems = shared.lock();
    systems.check()?;
    let wanted = spec.suite.systems();
    let mut out = Started::default();
    let setup = SppSetup {
        proxy_processes: spec.spp_shards(),
        ..SppSetup::echo(bins, spec.workers, connections_of(spec, System::Spp))
    };
    let spp = systems.spp.insert(SppService::prepare(bins, &setup)?);
    let spp_addrs = spp.start()?;
    out.watched
        .push((System::Spp, cpu::spp_processes(&spp.status()?)));
    let spp_dir = spp.dir().to_path_buf();
    out.processes.spp = spp.pids();
    out.endpoints
        .add(System::Spp, Transport::Tcp, spp_addrs.tcp);
    out.endpoints
        .add(System::Spp, Transport::Udp, spp_addrs.udp);
    let direct = child::start_direct(&bins.direct())?;
    out.endpoints
        .add(System::Direct, Transport::Tcp, direct.tcp);
    out.endpoints
        .add(System::Direct, Transport::Udp, direct.udp);
    out.processes.direct = direct.server.pid();
    if let Some(pid) = direct.server.pid() {
        let label = System::Direct.name().to_owned();
        out.watched
            .push((System::Direct, vec![Watched { label, pid }]));
    }
    let direct_tcp = direct.tcp;
    systems.direct = Some(direct.server);
    out.haproxy = match bins::find_haproxy() {
        _ if !wanted.contains(&System::Haproxy) => "not in this suite".to_owned(),
        None => HAPROXY_MISSING.to_owned(),
        Some(_) if !spec.haproxy => "not asked for, skipped".to_owned(),
        Some(program) => match child::start_haproxy(&program, &spp_dir, direct_tcp) {
            Ok(h) => {
                out.processes.haproxy = h.server.pid();
                out.endpoints.add(System::Haproxy, Transport::Tcp, h.addr);
                systems.haproxy = Some(h.server);
                h.version
            }
            Err(e) => format!("{e}; skipped"),
        },
    };
    if wanted.contains(&System::SppSleep) {
        let setup = SppSetup {
            name: "spp-bench-sleep",
            workers: SLEEP_WORKERS,
            connections: connections_of(spec, System::SppSleep),
            plugin: bins.require(bins::SLEEP_ECHO_PLUGIN)?,
            plugin_conf: format!("sleep_ms={}", spec.sleep_ms),
            microthread: true,
            async_mode: false,
            env: Vec::new(),
            proxy_processes: 1,
            proxy_plugin_conf: String::new(),
        };
        start_extra_spp(&mut systems, &mut out, System::SppSleep, bins, &setup)?;
    }
    for (system, name, backend) in [
        (System::SppRelay, "spp-bench-relay", spp_addrs.tcp),
        (System::SppRelayDirect, "spp-bench-relay-direct", direct_tcp),
    ] {
        if !wanted.contains(&system) {
            continue;
        }
        let setup = SppSetup {
            name,
            workers: spec.relay_workers,
            connections: connections_of(spec, system),
            plugin: bins.require(bins::RELAY_PLUGIN)?,
            plugin_conf: format!("addr={backend}"),
            microthread: true,
            async_mode: false,
            env: Vec::new(),
            proxy_processes: 1,
            proxy_plugin_conf: String::new(),
        };
        start_extra_spp(&mut systems, &mut out, system, bins, &setup)?;
    }
    for (system, name, runtime) in [
        (System::SppRelayAsync, "spp-bench-relay-async", None),
        (
            System::SppRelayAsyncThread,
            "spp-bench-relay-async-thread",
            Some(bins::ASYNC_RUNTIME_THREAD),
        ),
    ] {
        if !wanted.contains(&system) {
            continue;
        }
        let setup = SppSetup {
            name,
            workers: spec.relay_workers,
            connections: connections_of(spec, system),
            plugin: bins.require(bins::RELAY_ASYNC_PLUGIN)?,
            plugin_conf: format!("addr={direct_tcp}"),
            microthread: false,
            async_mode: true,
            env: runtime
                .map(|r| (bins::ASYNC_RUNTIME_ENV.to_owned(), r.to_owned()))
                .into_iter()
                .collect(),
            proxy_processes: 1,
            proxy_plugin_conf: String::new(),
        };
        start_extra_spp(&mut systems, &mut out, system, bins, &setup)?;
    }
    for (system, name, shards, proxy_plugin_conf) in [
        (System::SppOneShard, "spp-bench-1shard", 1, String::new()),
        (
            System::SppCostOneShard,
            "spp-bench-cost-1shard",
            1,
            shards::costly_input_conf(),
        ),
        (
            System::SppCost,
            "spp-bench-cost",
            spec.shard_count,
            shards::costly_input_conf(),
        ),
    ] {
        if !wanted.contains(&system) {
            continue;
        }
        let setup = SppSetup {
            name,
            proxy_processes: shards,
            proxy_plugin_conf,
            ..SppSetup::echo(bins, spec.workers, connections_of(spec, system))
        };
        start_extra_spp(&mut systems, &mut out, system, bins, &setup)?;
    }
    for (system, threads) in [
        (System::TokioRelay1, Some(1)),
        (System::TokioRelay, spec.tokio_threads),
    ] {
        if !wanted.contains(&system) {
            continue;
        }
        let program = bins.require(bins::TOKIO_RELAY)?;
        let (server, addr) =
            child::start_tokio_relay(&program, system.name(), direct_tcp, threads)?;
        out.processes.extra.extend(server.pid());
        if let Some(pid) = server.pid() {
            let label = system.name().to_owned();
            out.watched.push((system, vec![Watched { label, pid }]));
        }
        out.endpoints.add(system, Transport::Tcp, addr);
        systems.extra.push(server);
    }
    Ok(out)
}

/// Starts one more spp service; one that does not start is skipped (the
/// report says why), the rest of the run goes on.
fn start_extra_spp(
    systems: &mut Systems,
    out: &mut Started,
    system: System,
    bins: &Binaries,
    setup: &SppSetup,
) -> Result<(), CompareError> {
    systems.extra_spp.push(SppService::prepare(bins, setup)?);
    let Some(service) = systems.extra_spp.last_mut() else {
        return Ok(());
    };
    let started = service.start();
    out.processes.extra.extend(service.pids());
    match started {
        Ok(addrs) => {
            out.endpoints.add(system, Transport::Tcp, addrs.tcp);
            out.watched
                .push((system, cpu::spp_processes(&service.status()?)));
        }
        Err(e) => {
            let log = service.dir().join("log").display().to_string();
            // Stopped now; its stop error says no more than the start's.
            let _ = service.stop();
            systems.extra_spp.pop();
            out.skipped.push(Skipped {
                system,
                why: format!("{e} (logs were in {log})"),
            });
        }
    }
    Ok(())
}

/// The load run of `scenario` against `addr`: the response timeout covers
/// a sleep-echo's sleep.
fn load_spec(
    spec: &CompareSpec,
    scenario: &Scenario,
    system: System,
    addr: SocketAddr,
) -> load::LoadSpec {
    let mut load = scenario.spec(addr, &spec.shape);
    if system == System::SppSleep {
        load.timeout += spec.sleep();
    }
    load
}

/// One scenario: `rounds` rounds, each against every system in turn.
fn measure(
    spec: &CompareSpec,
    scenario: &Scenario,
    started: &Started,
) -> Result<ScenarioResult, CompareError> {
    let endpoints = &started.endpoints;
    let hz = cpu::ticks_per_second();
    let systems: Vec<(System, SocketAddr)> = scenario
        .systems
        .iter()
        .copied()
        .filter(|s| scenario.applies_to(*s))
        .filter_map(|s| endpoints.of(s, scenario.transport).map(|a| (s, a)))
        .collect();
    let mut rounds: Vec<Vec<Report>> = vec![Vec::with_capacity(spec.rounds); systems.len()];
    let mut cpu_rounds = vec![Vec::with_capacity(spec.rounds); systems.len()];
    for round in 1..=spec.rounds {
        for (i, (system, addr)) in systems.iter().enumerate() {
            let load = load_spec(spec, scenario, *system, *addr);
            let watched = match spec.suite {
                Suite::Shards | Suite::AsyncRelay => started.watched(*system),
                _ => &[],
            };
            let before = cpu::snapshot(watched);
            let report = load::run(&load).map_err(|source| CompareError::Load {
                scenario: scenario.name,
                system: system.name(),
                source,
            })?;
            let mut cpu_note = String::new();
            if !watched.is_empty() {
                // The reads span the warm-up too: count its requests at
                // the measured rate.
                let requests = report.throughput_rps * (report.warmup_s + report.duration_s);
                let after = cpu::snapshot(watched);
                let used = cpu::per_request(watched, &before, &after, requests, hz);
                let us = |l: &str| used.get(l).copied().unwrap_or(0.0);
                cpu_note = format!(
                    ", CPU µs/req {:.1} (client {:.1}, others {:.1})",
                    us(cpu::TOTAL),
                    us(cpu::CLIENT),
                    us(cpu::OTHERS)
                );
                cpu_rounds[i].push(used);
            }
            if spec.progress {
                eprintln!(
                    "{} round {round}/{} {system}: {:.0} req/s, p50 {:.1} µs, p99 {:.1} µs, {} errors{cpu_note}",
                    scenario.title,
                    spec.rounds,
                    report.throughput_rps,
                    report.latency_us.p50,
                    report.latency_us.p99,
                    report.errors.total
                );
            }
            rounds[i].push(report);
        }
    }
    let results: Vec<SystemResult> = systems
        .iter()
        .zip(rounds.into_iter().zip(cpu_rounds))
        .map(|((system, _), (r, c))| SystemResult::new(*system, r).with_cpu(&c))
        .collect();
    Ok(ScenarioResult {
        name: scenario.name.to_owned(),
        title: scenario.title.to_owned(),
        connections: scenario.connections,
        short: scenario.short,
        ratios: Ratios::new(&results),
        systems: results,
    })
}

/// One SVG per scenario: each system's median-throughput round.
fn plot(dir: &Path, scenarios: &[ScenarioResult]) -> Result<Vec<String>, CompareError> {
    std::fs::create_dir_all(dir).map_err(|source| CompareError::Io {
        what: "cannot create",
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files = Vec::with_capacity(scenarios.len());
    for sc in scenarios {
        let series: Vec<(&str, &Report)> = sc
            .systems
            .iter()
            .filter_map(|r| r.median_round().map(|m| (r.system.name(), m)))
            .collect();
        let path = dir.join(format!("{}.svg", sc.name));
        load::plot::write_svg(&path, &series).map_err(CompareError::Plot)?;
        files.push(path.display().to_string());
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_connections_resize_the_classic_tcp_loop_only() {
        let mut spec = CompareSpec::new();
        spec.tcp_connections = Some(4000);
        let scenarios = spec.scenarios();
        let tcp: Vec<_> = scenarios
            .iter()
            .filter(|s| !s.short && s.transport == Transport::Tcp)
            .map(|s| (s.name, s.connections))
            .collect();
        assert_eq!(tcp, [("tcp_n4000", 4000), ("tcp_n1", 1)]);
        spec.shape.payload = 64 << 10;
        assert!(spec
            .scenarios()
            .iter()
            .all(|s| s.transport == Transport::Tcp));
        assert!(spec.validate().is_ok());
        spec.tcp_connections = Some(0);
        assert!(spec.validate().is_err());
    }
}
