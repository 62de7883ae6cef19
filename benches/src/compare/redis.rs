//! `spp-bench compare --redis`: the RESP example (`libspp_resp.so`, one
//! worker holding the key space) against `redis-server`, both driven by
//! `redis-benchmark` with the same tests, clients and request counts,
//! without pipelining and with `-P 16`. Optional: when `redis-server` or
//! `redis-benchmark` is not on `PATH` the suite reports itself skipped.
//!
//! Method: redis-server runs as our child on a free 127.0.0.1 port in its
//! own temp dir (`--save '' --appendonly no`, no persistence, as spp's
//! key space has none), ready once it answers PING; spp runs from a
//! generated config (the resp plugin, one worker) via `spp start`. Each
//! round runs every pipeline depth against both systems in turn (spp,
//! redis, spp, redis, ...), so drifts of a shared machine hit both alike;
//! each figure is the median over the rounds with its min–max, and the
//! ratio is spp's median over redis's. A run whose output holds an error
//! (a command spp answered with `-ERR`, a lost connection) fails the
//! comparison: the figures are only worth something if every answer was
//! right.

use std::fmt;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::resource::{getrusage, UsageWho};
use serde::{Deserialize, Serialize};

use super::bins::{on_path, Binaries};
use super::child::{self, ChildServer};
use super::cpu::{cpu_ticks, ticks_per_second};
use super::error::CompareError;
use super::process;
use super::spp::{SppService, SppSetup};
use super::summary::Spread;
use super::systems::Shared;

/// The server program looked up on `PATH`.
pub const REDIS_SERVER: &str = "redis-server";
/// The load generator looked up on `PATH`.
pub const REDIS_BENCHMARK: &str = "redis-benchmark";
/// The RESP plugin's file name.
pub const RESP_PLUGIN: &str = "libspp_resp.so";
/// Default redis-benchmark tests (`-t`).
pub const DEFAULT_TESTS: &str = "ping,set,get";
/// Default parallel clients (`-c`).
pub const DEFAULT_CLIENTS: usize = 50;
/// Default requests per test without pipelining (`-n`); pipelined runs
/// send [`PIPELINED_FACTOR`] times as many.
pub const DEFAULT_REQUESTS: usize = 100_000;
/// How many more requests a pipelined run sends (it runs that much faster).
pub const PIPELINED_FACTOR: usize = 10;
/// Pipeline depths compared (`-P`); 1 is no pipelining.
pub const PIPELINES: [usize; 2] = [1, 16];
/// Random keys (`-r`), so GET and SET spread over a real key space.
pub const KEYSPACE: usize = 100_000;
/// Target of spp / redis throughput without pipelining.
pub const TARGET_PLAIN: f64 = 1.0;
/// Target of spp / redis throughput with `-P 16`.
pub const TARGET_PIPELINED: f64 = 1.3;
/// How long redis-server gets to answer its first PING.
const REDIS_READY: Duration = Duration::from_secs(10);
/// Attempts at starting redis-server (the picked port may be taken).
const REDIS_ATTEMPTS: usize = 3;
/// Time limit of one readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Workers of the spp RESP service: the key space lives in one.
const RESP_WORKERS: u32 = 1;
/// Most parallel clients accepted.
pub const MAX_CLIENTS: usize = 10_000;
/// Most requests per test accepted.
pub const MAX_REQUESTS: usize = 100_000_000;
/// What the report says when a tool is missing.
pub const REDIS_MISSING: &str = "not installed (apt-get install redis-server redis-tools), skipped";

/// What to run.
#[derive(Clone, Debug)]
pub struct RedisSpec {
    /// Where spp's binaries and `libspp_resp.so` are (default: next to
    /// the running executable).
    pub bin_dir: Option<PathBuf>,
    /// Rounds (each runs every depth against both systems).
    pub rounds: usize,
    /// Parallel clients.
    pub clients: usize,
    /// Requests per test without pipelining.
    pub requests: usize,
    /// redis-benchmark's `-t`.
    pub tests: String,
    /// One line per run on stderr.
    pub progress: bool,
}

impl RedisSpec {
    /// The defaults: 3 rounds, 50 clients, 100 000 requests (1 000 000
    /// pipelined), ping, set and get.
    pub fn new() -> Self {
        RedisSpec {
            bin_dir: None,
            rounds: super::DEFAULT_ROUNDS,
            clients: DEFAULT_CLIENTS,
            requests: DEFAULT_REQUESTS,
            tests: DEFAULT_TESTS.into(),
            progress: false,
        }
    }
}

impl RedisSpec {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), CompareError> {
        let invalid = |field, why: String| Err(CompareError::Invalid { field, why });
        if !(1..=super::run::MAX_ROUNDS).contains(&self.rounds) {
            return invalid("rounds", format!("must be 1..={}", super::run::MAX_ROUNDS));
        }
        if !(1..=MAX_CLIENTS).contains(&self.clients) {
            return invalid("redis-clients", format!("must be 1..={MAX_CLIENTS}"));
        }
        if self.requests == 0 || self.requests > MAX_REQUESTS {
            return invalid("redis-requests", format!("must be 1..={MAX_REQUESTS}"));
        }
        Ok(())
    }
}

impl Default for RedisSpec {
    fn default() -> Self {
        Self::new()
    }
}

/// One test at one pipeline depth, both systems.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RedisRow {
    /// redis-benchmark's test name (`SET`, `PING_INLINE`, ...).
    pub test: String,
    /// `-P`.
    pub pipeline: usize,
    /// spp's requests per second over the rounds.
    pub spp_rps: Spread,
    /// redis-server's.
    pub redis_rps: Spread,
    /// spp's p50 latency (ms), median over rounds.
    pub spp_p50_ms: f64,
    /// redis-server's.
    pub redis_p50_ms: f64,
    /// Median over the rounds of spp / redis in the same round (paired,
    /// so a drift of the machine between rounds cancels out).
    pub ratio: f64,
    /// The per-round ratios' spread.
    pub ratio_rounds: Spread,
    /// The target ratio for this depth.
    pub target: f64,
    /// redis-benchmark's own CPU while driving spp, as a share of one core
    /// (it is single-threaded), median over rounds: at
    /// [`CLIENT_BOUND_SHARE`] or more the client, not the server, sets the
    /// pace, and no server can show a higher ratio on this machine.
    pub client_spp: f64,
    /// The same while driving redis-server.
    pub client_redis: f64,
}

/// The suite's result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RedisReport {
    /// Why nothing ran, when something was missing.
    pub skipped: Option<String>,
    /// Clients, rounds and requests used.
    pub clients: usize,
    /// Rounds.
    pub rounds: usize,
    /// Requests per test without pipelining.
    pub requests: usize,
    /// One row per test and depth.
    pub rows: Vec<RedisRow>,
    /// Server CPU per request, per depth.
    pub cpu: Vec<CpuRow>,
}

/// Server CPU time per request at one depth (every test of a run
/// together): spp's controller, proxy and worker against redis-server.
/// A busy shared machine slows both systems' throughput; CPU per request
/// moves much less.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CpuRow {
    /// `-P`.
    pub pipeline: usize,
    /// spp's processes, µs of CPU per request, over the rounds.
    pub spp_us: Spread,
    /// redis-server's.
    pub redis_us: Spread,
}

/// A run whose client used at least this share of its core was paced by
/// the client (redis-benchmark), not by the server under test.
pub const CLIENT_BOUND_SHARE: f64 = 0.85;

/// User + system CPU of this process's reaped children so far (the
/// redis-benchmark runs; the servers are still running and not counted).
fn children_cpu() -> Duration {
    match getrusage(UsageWho::RUSAGE_CHILDREN) {
        Ok(usage) => {
            let secs = |t: nix::sys::time::TimeVal| {
                Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
                    + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
            };
            secs(usage.user_time()) + secs(usage.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

/// One redis-benchmark result line.
#[derive(Clone, Debug, PartialEq)]
struct Measured {
    test: String,
    rps: f64,
    p50_ms: f64,
    /// redis-benchmark's CPU over the run's wall time (of one core).
    client_share: f64,
}

/// redis-server as our child.
struct RedisServer {
    server: ChildServer,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts redis-server on a free loopback port with its own temp dir
    /// and no persistence; returns once it answers PING.
    fn start(program: &Path) -> Result<Self, CompareError> {
        let mut last = String::new();
        for _ in 0..REDIS_ATTEMPTS {
            let dir = child::temp_dir("spp-bench-redis-")?;
            let port = child::free_port("redis-server")?;
            let mut cmd = Command::new(program);
            cmd.args(["--bind", "127.0.0.1", "--port"])
                .arg(port.to_string())
                .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                .arg("--dir")
                .arg(dir.path())
                .arg("--logfile")
                .arg(dir.path().join("redis.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // SAFETY: prctl is async-signal-safe and allocates nothing; it
            // makes the server die with spp-bench (also on Ctrl-C's exit).
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let mut server = RedisServer {
                server: child::spawn("redis-server", &mut cmd)?,
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                _dir: dir,
            };
            let deadline = Instant::now() + REDIS_READY;
            while Instant::now() < deadline {
                if ping(server.addr) {
                    return Ok(server);
                }
                if server.server.exited() {
                    break;
                }
                std::thread::sleep(process::POLL);
            }
            last = format!("no PONG on {} within {REDIS_READY:?}", server.addr);
            server.server.stop();
        }
        Err(CompareError::NotStarted {
            system: "redis-server",
            why: last,
        })
    }

    fn pid(&self) -> Option<u32> {
        self.server.pid()
    }
}

/// Whether a RESP server at `addr` answers PING.
fn ping(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(PROBE_TIMEOUT));
    let _ = s.set_write_timeout(Some(PROBE_TIMEOUT));
    let mut answer = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
}

/// Requests per test at `pipeline`.
fn requests_of(spec: &RedisSpec, pipeline: usize) -> usize {
    if pipeline > 1 {
        spec.requests * PIPELINED_FACTOR
    } else {
        spec.requests
    }
}

/// Runs redis-benchmark once against `addr` with one `-t` test (which may
/// yield several rows: `ping` is PING_INLINE and PING_MBULK), each row
/// carrying the client's own CPU share of that run.
fn bench(
    program: &Path,
    spec: &RedisSpec,
    addr: SocketAddr,
    pipeline: usize,
    test: &str,
) -> Result<Vec<Measured>, CompareError> {
    let requests = requests_of(spec, pipeline);
    let mut cmd = Command::new(program);
    cmd.arg("-h")
        .arg(addr.ip().to_string())
        .arg("-p")
        .arg(addr.port().to_string())
        .arg("-c")
        .arg(spec.clients.to_string())
        .arg("-n")
        .arg(requests.to_string())
        .arg("-P")
        .arg(pipeline.to_string())
        .arg("-r")
        .arg(KEYSPACE.to_string())
        .arg("-t")
        .arg(test)
        .arg("--csv")
        .stdin(Stdio::null());
    let (client_before, wall) = (children_cpu(), Instant::now());
    let output = process::detach(&mut cmd)
        .output()
        .map_err(|source| CompareError::Spawn {
            program: program.to_path_buf(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let failed = |why: String| CompareError::NotStarted {
        system: "redis-benchmark",
        why: format!("against {addr} -P {pipeline}: {why}"),
    };
    if !output.status.success() {
        return Err(failed(format!("{}: {stdout} {stderr}", output.status)));
    }
    let text = format!("{stdout}\n{stderr}");
    if let Some(line) = text.lines().find(|l| {
        let l = l.to_ascii_lowercase();
        l.contains("error") || l.contains("err ") || l.contains("warning")
    }) {
        return Err(failed(format!("it reported {line:?}")));
    }
    let client_share = children_cpu().saturating_sub(client_before).as_secs_f64()
        / wall.elapsed().as_secs_f64().max(f64::MIN_POSITIVE);
    let mut measured = parse_csv(&stdout);
    if measured.is_empty() {
        return Err(failed(format!("no results in {stdout:?}")));
    }
    for m in &mut measured {
        m.client_share = client_share;
    }
    Ok(measured)
}

/// redis-benchmark's `--csv` lines: `"TEST","rps","avg","min","p50",...`
/// after a header line.
fn parse_csv(text: &str) -> Vec<Measured> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line
                .split(',')
                .map(|f| f.trim().trim_matches('"'))
                .collect();
            let test = (*fields.first()?).to_owned();
            let rps: f64 = fields.get(1)?.parse().ok()?;
            let p50_ms: f64 = fields
                .get(4)
                .and_then(|f| f.parse().ok())
                .unwrap_or(f64::NAN);
            Some(Measured {
                test,
                rps,
                p50_ms,
                client_share: f64::NAN,
            })
        })
        .collect()
}

/// Runs the suite (or reports it skipped).
pub fn run(spec: &RedisSpec, shared: &Shared) -> Result<RedisReport, CompareError> {
    let mut report = RedisReport {
        clients: spec.clients,
        rounds: spec.rounds,
        requests: spec.requests,
        ..RedisReport::default()
    };
    let (Some(server_bin), Some(bench_bin)) = (on_path(REDIS_SERVER), on_path(REDIS_BENCHMARK))
    else {
        report.skipped = Some(format!(
            "{REDIS_SERVER} or {REDIS_BENCHMARK} {REDIS_MISSING}"
        ));
        return Ok(report);
    };
    spec.validate()?;
    let bins = Binaries::locate(spec.bin_dir.as_deref())?;
    let plugin = bins.require(RESP_PLUGIN)?;
    // The config lives in a temp dir: a relative --bin-dir must not leak.
    let plugin = std::fs::canonicalize(&plugin).map_err(|source| CompareError::Io {
        what: "cannot resolve",
        path: plugin.clone(),
        source,
    })?;
    shared.lock().check()?;
    let mut redis = RedisServer::start(&server_bin)?;
    let setup = SppSetup {
        name: "spp-bench-resp",
        workers: RESP_WORKERS,
        connections: spec.clients,
        plugin,
        plugin_conf: String::new(),
        microthread: false,
        async_mode: false,
        env: Vec::new(),
        proxy_processes: 1,
        proxy_plugin_conf: String::new(),
    };
    let mut service = SppService::prepare(&bins, &setup)?;
    let spp_addr = service.start();
    // From here on Ctrl-C stops spp too (redis-server dies with us).
    shared.lock().extra_spp.push(service);
    let spp_addr = spp_addr?.tcp;
    if spec.progress {
        eprintln!(
            "redis suite: spp (pids {:?}) on {spp_addr}, redis-server (pid {:?}) on {}",
            shared.lock().extra_spp.last().map(SppService::pids),
            redis.pid(),
            redis.addr
        );
    }
    // runs[depth][system] = one Vec<Measured> per round.
    let mut runs: Vec<[Vec<Vec<Measured>>; 2]> =
        PIPELINES.iter().map(|_| [vec![], vec![]]).collect();
    // cpu[depth][system] = µs of server CPU per request, one per round.
    let mut cpu: Vec<[Vec<f64>; 2]> = PIPELINES.iter().map(|_| [vec![], vec![]]).collect();
    let spp_pids = shared
        .lock()
        .extra_spp
        .last()
        .map(SppService::pids)
        .unwrap_or_default();
    let redis_pids: Vec<u32> = redis.pid().into_iter().collect();
    let hz = ticks_per_second();
    let outcome = (|| {
        for round in 0..spec.rounds {
            for (d, &pipeline) in PIPELINES.iter().enumerate() {
                for (s, addr) in [spp_addr, redis.addr].into_iter().enumerate() {
                    shared.lock().check()?;
                    let pids = if s == 0 { &spp_pids } else { &redis_pids };
                    let before = cpu_ticks(pids);
                    let mut measured = Vec::new();
                    // One run per test, so each row knows its client's CPU.
                    for test in spec.tests.split(',').map(str::trim) {
                        measured.extend(bench(&bench_bin, spec, addr, pipeline, test)?);
                    }
                    let ticks = cpu_ticks(pids).saturating_sub(before);
                    let requests = (requests_of(spec, pipeline) * measured.len()) as f64;
                    cpu[d][s].push(ticks as f64 / hz * 1e6 / requests);
                    if spec.progress {
                        let who = if s == 0 { "spp" } else { "redis" };
                        let line: Vec<String> = measured
                            .iter()
                            .map(|m| format!("{} {:.0}", m.test, m.rps))
                            .collect();
                        eprintln!(
                            "round {} -P {pipeline} {who}: {}",
                            round + 1,
                            line.join(", ")
                        );
                    }
                    runs[d][s].push(measured);
                }
            }
        }
        Ok::<(), CompareError>(())
    })();
    redis.server.stop();
    let stopped = shared.lock().stop_all();
    outcome?;
    stopped?;
    for (d, &pipeline) in PIPELINES.iter().enumerate() {
        report.rows.extend(rows(pipeline, &runs[d]));
        report.cpu.push(CpuRow {
            pipeline,
            spp_us: Spread::of(&cpu[d][0]),
            redis_us: Spread::of(&cpu[d][1]),
        });
    }
    Ok(report)
}

/// Folds the rounds of one depth into a row per test.
fn rows(pipeline: usize, runs: &[Vec<Vec<Measured>>; 2]) -> Vec<RedisRow> {
    let tests: Vec<String> = runs[0]
        .first()
        .map(|r| r.iter().map(|m| m.test.clone()).collect())
        .unwrap_or_default();
    let target = if pipeline > 1 {
        TARGET_PIPELINED
    } else {
        TARGET_PLAIN
    };
    tests
        .into_iter()
        .map(|test| {
            let pick = |s: usize, f: fn(&Measured) -> f64| -> Vec<f64> {
                runs[s]
                    .iter()
                    .filter_map(|round| round.iter().find(|m| m.test == test).map(f))
                    .collect()
            };
            let spp_rps = Spread::of(&pick(0, |m| m.rps));
            let redis_rps = Spread::of(&pick(1, |m| m.rps));
            let paired: Vec<f64> = runs[0]
                .iter()
                .zip(&runs[1])
                .filter_map(|(a, b)| {
                    let a = a.iter().find(|m| m.test == test)?.rps;
                    let b = b.iter().find(|m| m.test == test)?.rps;
                    Some(a / b)
                })
                .collect();
            let ratio_rounds = Spread::of(&paired);
            let client_spp = Spread::of(&pick(0, |m| m.client_share)).median;
            let client_redis = Spread::of(&pick(1, |m| m.client_share)).median;
            RedisRow {
                spp_p50_ms: Spread::of(&pick(0, |m| m.p50_ms)).median,
                redis_p50_ms: Spread::of(&pick(1, |m| m.p50_ms)).median,
                test,
                pipeline,
                spp_rps,
                redis_rps,
                ratio: ratio_rounds.median,
                ratio_rounds,
                target,
                client_spp,
                client_redis,
            }
        })
        .collect()
}

impl fmt::Display for RedisReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(why) = &self.skipped {
            return writeln!(f, "redis suite: {why}");
        }
        writeln!(
            f,
            "spp RESP example (1 worker) vs redis-server, redis-benchmark -c {} -r {KEYSPACE}, \
             {} requests ({}x pipelined), median of {} rounds [min-max]",
            self.clients, self.requests, PIPELINED_FACTOR, self.rounds
        )?;
        writeln!(
            f,
            "{:<15} {:>3} {:>26} {:>26} {:>13} {:>9} {:>18} {:>6}",
            "test",
            "-P",
            "spp rps",
            "redis rps",
            "p50 ms s/r",
            "client s/r",
            "ratio [rounds]",
            "target"
        )?;
        for r in &self.rows {
            let spread = |s: &Spread| format!("{:.0} [{:.0}-{:.0}]", s.median, s.min, s.max);
            let met = if r.ratio >= r.target {
                "met"
            } else if r.client_spp >= CLIENT_BOUND_SHARE {
                "MISSED (client-bound)"
            } else {
                "MISSED"
            };
            writeln!(
                f,
                "{:<15} {:>3} {:>26} {:>26} {:>13} {:>9} {:>18} {:>6} {met}",
                r.test,
                r.pipeline,
                spread(&r.spp_rps),
                spread(&r.redis_rps),
                format!("{:.3}/{:.3}", r.spp_p50_ms, r.redis_p50_ms),
                format!(
                    "{:.0}%/{:.0}%",
                    r.client_spp * 100.0,
                    r.client_redis * 100.0
                ),
                format!(
                    "{:.2} [{:.2}-{:.2}]",
                    r.ratio, r.ratio_rounds.min, r.ratio_rounds.max
                ),
                format!("≥{:.1}", r.target)
            )?;
        }
        for c in &self.cpu {
            writeln!(
                f,
                "server CPU per request, -P {:>2}: spp {:.2} µs [{:.2}-{:.2}], redis-server {:.2} µs [{:.2}-{:.2}]",
                c.pipeline,
                c.spp_us.median,
                c.spp_us.min,
                c.spp_us.max,
                c.redis_us.median,
                c.redis_us.min,
                c.redis_us.max
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines_are_read() {
        let text = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                    \"PING_INLINE\",\"98039.22\",\"0.279\",\"0.096\",\"0.271\",\"0.391\",\"0.471\",\"1.031\"\n\
                    \"SET\",\"95238.10\",\"0.290\",\"0.088\",\"0.279\",\"0.415\",\"0.511\",\"1.143\"\n";
        let got = parse_csv(text);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].test, "PING_INLINE");
        assert!((got[1].rps - 95238.10).abs() < 1e-6);
        assert!((got[1].p50_ms - 0.279).abs() < 1e-9);
    }

    #[test]
    fn rows_take_medians_and_ratios() {
        let m = |rps: f64| {
            vec![Measured {
                test: "GET".into(),
                rps,
                p50_ms: 0.5,
                client_share: 0.9,
            }]
        };
        let runs = [
            vec![m(100.0), m(300.0), m(200.0)],
            vec![m(100.0), m(100.0), m(100.0)],
        ];
        let rows = rows(16, &runs);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].spp_rps.median, 200.0);
        assert_eq!(rows[0].ratio, 2.0);
        assert_eq!(rows[0].target, TARGET_PIPELINED);
        assert_eq!(rows[0].client_spp, 0.9);
    }
}
