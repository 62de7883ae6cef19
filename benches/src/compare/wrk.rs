//! `spp-bench compare --http`: spp's HTTP/1.1 example plugin
//! (`libspp_http.so`, one worker) against nginx (one worker, `return 200
//! "hello world"`, its own prefix in a temp dir), both driven by `wrk
//! --latency` at 64 connections and at 1 connection. Optional: when `wrk`
//! or `nginx` is not on `PATH` the suite says so and measures nothing.
//!
//! Method: each round runs wrk against spp, then nginx, for the same
//! duration (after one unmeasured warm-up run each), so drifts of the
//! shared machine hit both alike. Per run: requests per second, p99, and
//! CPU per request — utime + stime of every process of the server (spp's
//! controller, proxy and workers; nginx's master and worker) from
//! `/proc/PID/stat` before and after the run, over the requests wrk
//! counted. Figures are the median of the rounds with their min–max;
//! ratios are spp over nginx, checked against the targets:
//! throughput ≥ [`TARGET_THROUGHPUT`] and p99 ≤ [`TARGET_P99`] at 64
//! connections, CPU per request ≤ [`TARGET_CPU`] at 1 connection.
//!
//! Modules: [`tool`] (finding programs, running wrk, CPU time),
//! [`nginx`] (the reference server).

pub mod nginx;
pub mod tool;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::bins::{self, Binaries};
use super::child;
use super::cpu;
use super::error::CompareError;
use super::spp::{SppService, SppSetup};
use super::summary::Spread;
use super::systems::Shared;
use tool::WrkRun;

/// The HTTP plugin's file name.
pub const HTTP_PLUGIN: &str = "libspp_http.so";
/// The body both servers answer.
pub const BODY: &str = "hello world";
/// The connection counts, in the order they run.
pub const CONNECTIONS: [usize; 2] = [64, 1];
/// Default length of one measured run.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(5);
/// Length of the unmeasured warm-up run of each server.
pub const WARMUP: Duration = Duration::from_secs(1);
/// Target: spp / nginx throughput at 64 connections, at least.
pub const TARGET_THROUGHPUT: f64 = 1.0;
/// Target: spp / nginx p99 at 64 connections, at most.
pub const TARGET_P99: f64 = 1.2;
/// Target: spp / nginx CPU per request at 1 connection, at most.
pub const TARGET_CPU: f64 = 1.3;
/// What the report says when a tool is missing.
pub const MISSING: &str = "wrk or nginx is not installed (apt-get install wrk nginx): skipped";
/// µs per second.
const US: f64 = 1e6;

/// What to run.
#[derive(Clone, Debug)]
pub struct HttpSpec {
    /// Where the binaries are (default: next to the running executable).
    pub bin_dir: Option<PathBuf>,
    /// spp worker processes.
    pub workers: u32,
    /// Rounds per connection count.
    pub rounds: usize,
    /// Length of each measured run (whole seconds, at least 1).
    pub duration: Duration,
    /// One line per run on stderr.
    pub progress: bool,
}

/// One server's figures at one connection count.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Requests per second.
    pub throughput_rps: Spread,
    /// 99th percentile latency, µs.
    pub p99_us: Spread,
    /// CPU time of all the server's processes per request, µs.
    pub cpu_us_per_request: Spread,
    /// Socket errors and non-2xx answers over all rounds.
    pub errors: u64,
}

/// spp over nginx, of the medians.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct HttpRatios {
    /// Throughput.
    pub throughput: f64,
    /// p99 latency.
    pub p99: f64,
    /// CPU per request.
    pub cpu: f64,
}

/// One connection count.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HttpScenario {
    /// wrk connections.
    pub connections: usize,
    /// spp's figures.
    pub spp: Figures,
    /// nginx's figures.
    pub nginx: Figures,
    /// spp / nginx.
    pub ratios: HttpRatios,
}

/// The suite's outcome.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HttpReport {
    /// Why nothing ran, if so.
    pub skipped: Option<String>,
    /// `nginx -v`.
    pub nginx_version: String,
    /// spp workers.
    pub workers: u32,
    /// Rounds per connection count.
    pub rounds: usize,
    /// Seconds per measured run.
    pub duration_s: u64,
    /// One entry per connection count.
    pub scenarios: Vec<HttpScenario>,
}

/// What one server gives a run: where to send wrk and whose CPU to count.
struct Target {
    url: String,
    pids: Vec<u32>,
}

/// One measured run: wrk's figures and the CPU µs per request.
fn measure(
    wrk: &std::path::Path,
    target: &Target,
    connections: usize,
    duration: Duration,
) -> Result<(WrkRun, f64), CompareError> {
    let before = cpu::cpu_seconds(&target.pids);
    let run = tool::run_wrk(wrk, &target.url, connections, duration)?;
    let used = cpu::cpu_seconds(&target.pids) - before;
    let per_request = used * US / run.requests.max(1) as f64;
    Ok((run, per_request))
}

fn fold(runs: &[(WrkRun, f64)]) -> Figures {
    let of = |f: fn(&(WrkRun, f64)) -> f64| Spread::of(&runs.iter().map(f).collect::<Vec<_>>());
    Figures {
        throughput_rps: of(|r| r.0.rps),
        p99_us: of(|r| r.0.p99_us),
        cpu_us_per_request: of(|r| r.1),
        errors: runs.iter().map(|r| r.0.errors).sum(),
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

/// Runs the suite: starts spp and nginx, measures, stops both (also on
/// error; on Ctrl-C through `shared`).
pub fn run(spec: &HttpSpec, shared: &Shared) -> Result<HttpReport, CompareError> {
    let mut report = HttpReport {
        skipped: None,
        nginx_version: String::new(),
        workers: spec.workers,
        rounds: spec.rounds,
        duration_s: spec.duration.as_secs().max(1),
        scenarios: Vec::new(),
    };
    let (Some(wrk), Some(nginx_bin)) = (bins::on_path("wrk"), bins::on_path("nginx")) else {
        report.skipped = Some(MISSING.into());
        return Ok(report);
    };
    report.nginx_version = nginx::version(&nginx_bin);
    let bins = Binaries::locate(spec.bin_dir.as_deref())?;
    let setup = SppSetup {
        name: "spp-bench-http",
        workers: spec.workers,
        connections: CONNECTIONS[0],
        plugin: bins.require(HTTP_PLUGIN)?,
        plugin_conf: format!("body={BODY}"),
        microthread: false,
        async_mode: false,
        env: Vec::new(),
        proxy_processes: 1,
        proxy_plugin_conf: String::new(),
    };
    let prefix = child::temp_dir("spp-bench-nginx-")?;
    let measured = (|| {
        let spp = {
            let mut systems = shared.lock();
            systems.check()?;
            let mut service = SppService::prepare(&bins, &setup)?;
            let started = service.start();
            let pids = service.pids();
            systems.extra_spp.push(service);
            Target {
                url: format!("http://{}/", started?.tcp),
                pids,
            }
        };
        let nginx = {
            let mut systems = shared.lock();
            systems.check()?;
            let server = nginx::start(&nginx_bin, prefix.path(), BODY)?;
            let master = server.server.pid();
            systems.extra.push(server.server);
            let mut pids: Vec<u32> = master.into_iter().collect();
            pids.extend(master.map(tool::children).unwrap_or_default());
            Target {
                url: format!("http://{}/", server.addr),
                pids,
            }
        };
        for target in [&spp, &nginx] {
            tool::run_wrk(&wrk, &target.url, CONNECTIONS[0], WARMUP)?;
        }
        CONNECTIONS
            .iter()
            .map(|&connections| {
                let mut runs = [Vec::new(), Vec::new()];
                for round in 0..spec.rounds {
                    for (i, target) in [&spp, &nginx].into_iter().enumerate() {
                        shared.lock().check()?;
                        let (run, cpu) = measure(&wrk, target, connections, spec.duration)?;
                        if spec.progress {
                            eprintln!(
                                "http c={connections} round {} {}: {:.0} req/s, p99 {:.0} µs, {cpu:.1} µs CPU/req",
                                round + 1,
                                ["spp", "nginx"][i],
                                run.rps,
                                run.p99_us
                            );
                        }
                        runs[i].push((run, cpu));
                    }
                }
                let (spp, nginx) = (fold(&runs[0]), fold(&runs[1]));
                let ratios = HttpRatios {
                    throughput: ratio(spp.throughput_rps.median, nginx.throughput_rps.median),
                    p99: ratio(spp.p99_us.median, nginx.p99_us.median),
                    cpu: ratio(
                        spp.cpu_us_per_request.median,
                        nginx.cpu_us_per_request.median,
                    ),
                };
                Ok(HttpScenario {
                    connections,
                    spp,
                    nginx,
                    ratios,
                })
            })
            .collect::<Result<Vec<_>, CompareError>>()
    })();
    let stopped = shared.lock().stop_all();
    report.scenarios = measured?;
    stopped?;
    Ok(report)
}

fn spread(s: &Spread, digits: usize) -> String {
    format!("{:.d$} ({:.d$}–{:.d$})", s.median, s.min, s.max, d = digits)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

impl fmt::Display for HttpReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(why) = &self.skipped {
            return writeln!(f, "HTTP (wrk vs nginx): {why}");
        }
        writeln!(
            f,
            "HTTP (wrk -t{} --latency, {} s x {} rounds; spp http plugin, {} worker(s); nginx {}, 1 worker)",
            tool::WRK_THREADS,
            self.duration_s,
            self.rounds,
            self.workers,
            self.nginx_version
        )?;
        writeln!(
            f,
            "{:<6} {:<7} {:>26} {:>24} {:>22} {:>6}",
            "conns",
            "server",
            "req/s (min–max)",
            "p99 µs (min–max)",
            "CPU µs/req (min–max)",
            "errors"
        )?;
        for s in &self.scenarios {
            for (name, fig) in [("spp", &s.spp), ("nginx", &s.nginx)] {
                writeln!(
                    f,
                    "{:<6} {:<7} {:>26} {:>24} {:>22} {:>6}",
                    s.connections,
                    name,
                    spread(&fig.throughput_rps, 0),
                    spread(&fig.p99_us, 0),
                    spread(&fig.cpu_us_per_request, 1),
                    fig.errors
                )?;
            }
            let r = &s.ratios;
            write!(
                f,
                "{:<6} spp/nginx: throughput {:.2}, p99 {:.2}, CPU/req {:.2}",
                s.connections, r.throughput, r.p99, r.cpu
            )?;
            if s.connections == CONNECTIONS[0] {
                write!(
                    f,
                    "  [throughput ≥ {TARGET_THROUGHPUT}: {}; p99 ≤ {TARGET_P99}: {}]",
                    verdict(r.throughput >= TARGET_THROUGHPUT),
                    verdict(r.p99 <= TARGET_P99)
                )?;
            }
            if s.connections == 1 {
                write!(
                    f,
                    "  [CPU/req ≤ {TARGET_CPU}: {}]",
                    verdict(r.cpu <= TARGET_CPU)
                )?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
