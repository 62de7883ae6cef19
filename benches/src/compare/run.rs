//! The comparison run: start spp, the direct baseline and (if installed)
//! haproxy; run every scenario round by round, each round against every
//! system in turn (A B A B ...); stop everything; fold the rounds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::load::{self, Report, Transport};

use super::bins::{self, Binaries};
use super::child;
use super::error::CompareError;
use super::report::{CompareReport, Processes, ScenarioResult};
use super::scenario::{RunShape, Scenario, System, SCENARIOS};
use super::spp::{SppService, SppSetup};
use super::summary::{Ratios, SystemResult};
use super::systems::Shared;

/// Default rounds per scenario.
pub const DEFAULT_ROUNDS: usize = 3;
/// Default spp workers.
pub const DEFAULT_WORKERS: u32 = 1;
/// Most rounds accepted.
pub const MAX_ROUNDS: usize = 1_000;
/// Most spp workers accepted.
pub const MAX_WORKERS: u32 = 256;
/// What the report says when haproxy is not on `PATH`.
pub const HAPROXY_MISSING: &str = "not installed, skipped";

/// What to compare and how.
#[derive(Clone, Debug)]
pub struct CompareSpec {
    /// Where the binaries are (default: next to the running executable).
    pub bin_dir: Option<PathBuf>,
    /// spp worker processes.
    pub workers: u32,
    /// Rounds per scenario.
    pub rounds: usize,
    /// Timing, payload and load threads of every run.
    pub shape: RunShape,
    /// Write one SVG per scenario here.
    pub plot_dir: Option<PathBuf>,
    /// Compare against haproxy too when it is installed.
    pub haproxy: bool,
    /// One line per run on stderr.
    pub progress: bool,
}

impl CompareSpec {
    /// The defaults: 3 rounds, 1 worker, 3 s measured after 0.5 s warm-up,
    /// 64-byte payload, one load thread, haproxy if installed.
    pub fn new() -> Self {
        CompareSpec {
            bin_dir: None,
            workers: DEFAULT_WORKERS,
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
        }
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
        if self.shape.duration.is_zero() {
            return invalid("duration", "must be more than 0".into());
        }
        for s in &SCENARIOS {
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

/// Where each system listens.
struct Addrs {
    spp_tcp: SocketAddr,
    spp_udp: SocketAddr,
    direct_tcp: SocketAddr,
    direct_udp: SocketAddr,
    haproxy: Option<SocketAddr>,
}

impl Addrs {
    fn of(&self, system: System, transport: Transport) -> Option<SocketAddr> {
        match (system, transport) {
            (System::Direct, Transport::Tcp) => Some(self.direct_tcp),
            (System::Direct, Transport::Udp) => Some(self.direct_udp),
            (System::Spp, Transport::Tcp) => Some(self.spp_tcp),
            (System::Spp, Transport::Udp) => Some(self.spp_udp),
            (System::Haproxy, Transport::Tcp) => self.haproxy,
            (System::Haproxy, Transport::Udp) => None,
        }
    }
}

/// Runs the comparison. The servers are registered in `shared` as they
/// start (so a signal thread can stop them) and are always stopped before
/// this returns.
pub fn run(spec: &CompareSpec, shared: &Shared) -> Result<CompareReport, CompareError> {
    spec.validate()?;
    let bins = Binaries::locate(spec.bin_dir.as_deref())?;
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
    let (addrs, haproxy, processes) = start(spec, bins, shared)?;
    let mut scenarios = Vec::with_capacity(SCENARIOS.len());
    for scenario in &SCENARIOS {
        scenarios.push(measure(spec, scenario, &addrs)?);
    }
    let plots = match &spec.plot_dir {
        Some(dir) => plot(dir, &scenarios)?,
        None => Vec::new(),
    };
    Ok(CompareReport {
        rounds: spec.rounds,
        duration_s: spec.shape.duration.as_secs_f64(),
        warmup_s: spec.shape.warmup.as_secs_f64(),
        payload: spec.shape.payload,
        workers: spec.workers,
        threads: spec.shape.threads,
        haproxy,
        scenarios,
        processes,
        plots,
    })
}

/// Starts the three systems; returns their addresses, haproxy's line for
/// the report, and their pids.
fn start(
    spec: &CompareSpec,
    bins: &Binaries,
    shared: &Shared,
) -> Result<(Addrs, String, Processes), CompareError> {
    let mut systems = shared.lock();
    systems.check()?;
    let setup = SppSetup {
        workers: spec.workers,
        connections: SCENARIOS.iter().map(|s| s.connections).max().unwrap_or(1),
    };
    let spp = systems.spp.insert(SppService::prepare(bins, &setup)?);
    let spp_addrs = spp.start()?;
    let spp_dir = spp.dir().to_path_buf();
    let spp_pids = spp.pids();
    let direct = child::start_direct(&bins.direct())?;
    let (direct_tcp, direct_udp) = (direct.tcp, direct.udp);
    let direct_pid = direct.server.pid();
    systems.direct = Some(direct.server);
    let (haproxy_addr, haproxy_line, haproxy_pid) = match bins::find_haproxy() {
        None => (None, HAPROXY_MISSING.to_owned(), None),
        Some(_) if !spec.haproxy => (None, "not asked for, skipped".to_owned(), None),
        Some(program) => match child::start_haproxy(&program, &spp_dir, direct_tcp) {
            Ok(h) => {
                let pid = h.server.pid();
                systems.haproxy = Some(h.server);
                (Some(h.addr), h.version, pid)
            }
            Err(e) => (None, format!("{e}; skipped"), None),
        },
    };
    let addrs = Addrs {
        spp_tcp: spp_addrs.tcp,
        spp_udp: spp_addrs.udp,
        direct_tcp,
        direct_udp,
        haproxy: haproxy_addr,
    };
    let processes = Processes {
        spp: spp_pids,
        direct: direct_pid,
        haproxy: haproxy_pid,
    };
    Ok((addrs, haproxy_line, processes))
}

/// One scenario: `rounds` rounds, each against every system in turn.
fn measure(
    spec: &CompareSpec,
    scenario: &Scenario,
    addrs: &Addrs,
) -> Result<ScenarioResult, CompareError> {
    let systems: Vec<(System, SocketAddr)> = [System::Direct, System::Spp, System::Haproxy]
        .into_iter()
        .filter(|s| scenario.applies_to(*s))
        .filter_map(|s| addrs.of(s, scenario.transport).map(|a| (s, a)))
        .collect();
    let mut rounds: Vec<Vec<Report>> = vec![Vec::with_capacity(spec.rounds); systems.len()];
    for round in 1..=spec.rounds {
        for (i, (system, addr)) in systems.iter().enumerate() {
            let report = load::run(&scenario.spec(*addr, &spec.shape)).map_err(|source| {
                CompareError::Load {
                    scenario: scenario.name,
                    system: system.name(),
                    source,
                }
            })?;
            if spec.progress {
                eprintln!(
                    "{} round {round}/{} {system}: {:.0} req/s, p50 {:.1} µs, p99 {:.1} µs, {} errors",
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
        .zip(rounds)
        .map(|((system, _), r)| SystemResult::new(*system, r))
        .collect();
    Ok(ScenarioResult {
        name: scenario.name.to_owned(),
        title: scenario.title.to_owned(),
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
