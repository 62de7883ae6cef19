//! `spp-bench`: the load harness's command line. Parses arguments into a
//! [`LoadSpec`], runs [`spp_benches::load::run`], prints the human table or
//! `--json`, and draws `--plot`. Exit status: 0 after a run (its errors
//! are in the report), 1 when the run could not happen (unreachable
//! target, unreadable file, unwritable plot), 2 for bad arguments.
//!
//! Two subcommands start the servers themselves (see
//! [`spp_benches::compare`]): `spp-bench compare` (spp against the direct
//! baseline and haproxy) and `spp-bench idle-memory`. A first argument of
//! `compare` or `idle-memory` picks them; anything else is a load run.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use bytesize::ByteSize;
use clap::error::ErrorKind;
use clap::{ArgGroup, CommandFactory, Parser};
use spp_benches::compare::{self, CompareSpec, IdleSpec, RunShape, Shared, Suite};
use spp_benches::load::spec::{
    DEFAULT_CONNECTIONS, DEFAULT_DURATION, DEFAULT_IN_FLIGHT, DEFAULT_PAYLOAD, DEFAULT_THREADS,
    DEFAULT_TIMEOUT, DEFAULT_WARMUP,
};
use spp_benches::load::{self, Load, LoadError, LoadSpec, Request, ResponseRule, Target};

/// The subcommand that runs the comparison.
const COMPARE: &str = "compare";
/// The subcommand that measures memory per idle connection.
const IDLE_MEMORY: &str = "idle-memory";

const SUBCOMMANDS: &str = "\
Subcommands (they start the servers themselves):
  spp-bench compare [OPTIONS]       spp vs the direct baseline (and haproxy) in one run
  spp-bench compare --table         SPP's table: echo, sleep-echo, relay vs a tokio relay
  spp-bench compare --shards        proxy shards: 1 vs N, CPU per request, accept balance
  spp-bench compare --async-relay   the async relay (both runtimes) vs the micro-thread and tokio relays
  spp-bench compare --http          spp's HTTP plugin vs nginx under wrk (if installed)
  spp-bench compare --redis         the RESP example vs redis-server (redis-benchmark)
  spp-bench idle-memory [OPTIONS]   the spp proxy's memory per idle connection
Run `spp-bench compare --help` for their options.";

/// How long every run lasts and what it sends; shared by a plain run and
/// `compare`.
#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Measured duration (e.g. 3s, 500ms, 1m).
    #[arg(short, long, default_value_t = DEFAULT_DURATION.into(), value_name = "DURATION")]
    duration: humantime::Duration,

    /// Warm-up before measuring (load is sent, nothing recorded).
    #[arg(short, long, default_value_t = DEFAULT_WARMUP.into(), value_name = "DURATION")]
    warmup: humantime::Duration,

    /// Echo payload size (e.g. 64, 1KiB).
    #[arg(short, long, default_value_t = ByteSize(DEFAULT_PAYLOAD as u64), value_name = "BYTES")]
    size: ByteSize,
}

/// Load generator for spp and other TCP/UDP request-response servers.
///
/// By default every request is the echo protocol (a 4-byte big-endian
/// length, then the payload) and the response must equal it.
#[derive(Debug, Parser)]
#[command(name = "spp-bench", version, after_help = SUBCOMMANDS)]
#[command(group(
    ArgGroup::new("rule")
        .args(["response_length", "response_delimiter", "response"])
        .multiple(false)
))]
struct Cli {
    /// The server: [tcp://|udp://]HOST:PORT (tcp:// if no scheme).
    #[arg(value_parser = parse_target)]
    target: Target,

    /// Connections (TCP) or sockets (UDP); with --short, concurrent
    /// connect-request-close loops.
    #[arg(short, long, default_value_t = DEFAULT_CONNECTIONS, value_name = "N")]
    connections: usize,

    /// Closed loop: requests in flight on each connection.
    #[arg(short = 'p', long, default_value_t = DEFAULT_IN_FLIGHT, value_name = "N")]
    in_flight: usize,

    /// Open loop: total requests per second, spread over the connections;
    /// latency counts from each request's intended send time.
    #[arg(short = 'R', long, value_name = "REQ/S", conflicts_with = "in_flight")]
    rate: Option<f64>,

    #[command(flatten)]
    shape: RunArgs,

    /// Send this file as every request instead of an echo frame; needs a
    /// response rule (--response-length, --response-delimiter, --response).
    #[arg(long, value_name = "FILE", requires = "rule", conflicts_with = "size")]
    request: Option<PathBuf>,

    /// Each response is exactly this long.
    #[arg(long, value_name = "BYTES", requires = "request")]
    response_length: Option<ByteSize>,

    /// Each response ends with this delimiter (escapes: \r \n \t \0 \\ \xHH).
    #[arg(long, value_name = "STRING", requires = "request")]
    response_delimiter: Option<String>,

    /// Each response must equal this file.
    #[arg(long, value_name = "FILE", requires = "request")]
    response: Option<PathBuf>,

    /// Short connections: connect, one request, close, repeat (TCP);
    /// latency includes the connect.
    #[arg(long, conflicts_with_all = ["rate", "in_flight"])]
    short: bool,

    /// A request unanswered this long counts as a timeout.
    #[arg(long, default_value_t = DEFAULT_TIMEOUT.into(), value_name = "DURATION")]
    timeout: humantime::Duration,

    /// Load threads, each a one-thread tokio runtime.
    #[arg(short, long, default_value_t = DEFAULT_THREADS, value_name = "N")]
    threads: usize,

    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,

    /// Draw the latency percentile distribution into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,

    /// No progress bar (it is only drawn on a terminal anyway).
    #[arg(short, long)]
    quiet: bool,
}

fn parse_target(text: &str) -> Result<Target, String> {
    text.parse().map_err(|e: load::LoadError| e.to_string())
}

/// Decodes `\r`, `\n`, `\t`, `\0`, `\\` and `\xHH` in a delimiter.
fn unescape(text: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'0') => out.push(0),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                let hex = std::str::from_utf8(&hex).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) if hex.len() == 2 => out.push(v),
                    _ => bail!("bad \\x escape in delimiter {text:?}: need two hex digits"),
                }
            }
            _ => bail!("bad escape in delimiter {text:?} (known: \\r \\n \\t \\0 \\\\ \\xHH)"),
        }
    }
    Ok(out)
}

fn to_usize(size: ByteSize, what: &str) -> anyhow::Result<usize> {
    usize::try_from(size.as_u64()).with_context(|| format!("{what} {size} is too large"))
}

impl Cli {
    fn spec(&self) -> anyhow::Result<LoadSpec> {
        let mut spec = LoadSpec::new(self.target.clone());
        spec.connections = self.connections;
        spec.load = match self.rate {
            Some(rate) => Load::Open { rate },
            None => Load::Closed {
                in_flight: self.in_flight,
            },
        };
        spec.short = self.short;
        spec.request = match &self.request {
            None => Request::Echo {
                payload: to_usize(self.shape.size, "--size")?,
            },
            Some(path) => {
                let rule = if let Some(n) = self.response_length {
                    ResponseRule::Length(to_usize(n, "--response-length")?)
                } else if let Some(d) = &self.response_delimiter {
                    ResponseRule::Delimiter(unescape(d)?)
                } else if let Some(file) = &self.response {
                    let bytes = std::fs::read(file).map_err(|source| LoadError::ReadFile {
                        path: file.clone(),
                        source,
                    })?;
                    ResponseRule::Exact(bytes)
                } else {
                    bail!("--request needs a response rule");
                };
                Request::from_file(path, rule)?
            }
        };
        spec.duration = self.shape.duration.into();
        spec.warmup = self.shape.warmup.into();
        spec.timeout = self.timeout.into();
        spec.threads = self.threads;
        spec.progress = !self.quiet;
        spec.validate()?;
        Ok(spec)
    }
}

fn run(cli: &Cli, spec: &LoadSpec) -> anyhow::Result<()> {
    let report = load::run(spec)?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    if let Some(path) = &cli.plot {
        load::plot::write_svg(path, &[(report.target.as_str(), &report)])?;
        if !cli.json {
            println!("plot        {}", path.display());
        }
    }
    Ok(())
}

/// Prints a one-line error and returns the failure status.
fn fail(e: &anyhow::Error) -> ExitCode {
    // Every error message carries its cause already.
    eprintln!("spp-bench: {e}");
    ExitCode::FAILURE
}

/// `spp-bench compare`: starts spp, the direct baseline and (if
/// installed) haproxy, runs every scenario against each, alternating, over
/// several rounds, and prints the medians and the spp/other ratios. With
/// `--table`, SPP's published table instead: echo, echo after a sleep
/// (micro-threads), echo through spp's relay, each on long and short
/// connections, and a tokio relay in front of the baseline, with the
/// issue's figures and targets. Every server it started is stopped at the
/// end, also on error or Ctrl-C.
#[derive(Debug, Parser)]
#[command(name = "spp-bench compare", version)]
#[command(group(clap::ArgGroup::new("relay_suites").args(["table", "async_relay"])))]
struct CompareCli {
    /// Directory of spp, spp-proxy, spp-worker, spp-echo-direct and
    /// libspp_echo.so (default: spp-bench's own directory).
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,

    /// spp worker processes.
    #[arg(long, default_value_t = compare::DEFAULT_WORKERS, value_name = "N")]
    workers: u32,

    /// spp proxy processes (`proxy.processes`, shards) of the echo
    /// service, 1..=64.
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    proxy_processes: u16,

    /// Rounds per scenario (each round runs every system once).
    #[arg(short, long, default_value_t = compare::DEFAULT_ROUNDS, value_name = "N")]
    rounds: usize,

    #[command(flatten)]
    shape: RunArgs,

    /// Load threads.
    #[arg(short, long, default_value_t = DEFAULT_THREADS, value_name = "N")]
    threads: usize,

    /// Leave haproxy out even if it is installed.
    #[arg(long)]
    no_haproxy: bool,

    /// Run SPP's table (needs spp-tokio-relay, libspp_sleep_echo.so and
    /// libspp_relay.so next to the other binaries).
    #[arg(long)]
    table: bool,

    /// Run the proxy-shard figures: echo N=256 and a 50 µs proxy `input`
    /// N=128 with one shard against --shard-count, CPU per request of every
    /// spp process against the baseline's (N=64), and the accept balance
    /// over 10 000 short connections.
    #[arg(long, conflicts_with_all = ["table", "http", "redis"])]
    shards: bool,

    /// Run the async relay figures: examples/relay-async (needs
    /// libspp_relay_async.so) with its runtime driven on the worker's
    /// thread and on a plugin thread (SPP_ASYNC_RUNTIME=thread), the
    /// micro-thread relay (libspp_relay.so) and the tokio relays
    /// (spp-tokio-relay), all in front of the direct echo, N=64, with CPU
    /// per request of every process.
    #[arg(long, conflicts_with_all = ["table", "shards", "http", "redis"])]
    async_relay: bool,

    /// Shards: proxy shards of the sharded services, 2..=64.
    #[arg(long, default_value_t = compare::shards::DEFAULT_SHARD_COUNT, value_name = "N",
          requires = "shards", value_parser = clap::value_parser!(u16).range(2..=64))]
    shard_count: u16,

    /// Run the HTTP suite instead: spp's HTTP plugin (libspp_http.so)
    /// against nginx under wrk at 64 and 1 connections; skipped when wrk
    /// or nginx is not installed.
    #[arg(long, conflicts_with = "table")]
    http: bool,

    /// Table: sleep-echo's sleep, ms.
    #[arg(long, default_value_t = compare::DEFAULT_SLEEP_MS, value_name = "MS", requires = "table")]
    sleep_ms: u64,

    /// Table: connections of the sleep-echo scenarios.
    #[arg(long, default_value_t = compare::DEFAULT_SLEEP_CONNECTIONS, value_name = "N", requires = "table")]
    sleep_connections: usize,

    /// Table and async relay: spp relay worker processes.
    #[arg(long, default_value_t = compare::DEFAULT_RELAY_WORKERS, value_name = "N", requires = "relay_suites")]
    relay_workers: u32,

    /// Table and async relay: threads of the second tokio relay (default:
    /// one per CPU; the first has one).
    #[arg(long, value_name = "N", requires = "relay_suites")]
    tokio_threads: Option<usize>,

    /// Classic suite: connections of the long-connection TCP closed loop
    /// (default 64), e.g. 4000 for many connections.
    #[arg(long, value_name = "N", conflicts_with = "table")]
    tcp_connections: Option<usize>,

    /// Write one latency-distribution SVG per scenario into DIR.
    #[arg(long, value_name = "DIR")]
    plot: Option<PathBuf>,

    /// Run the RESP suite instead: spp's RESP example (libspp_resp.so)
    /// against redis-server, driven by redis-benchmark without pipelining
    /// and with -P 16 (skipped when either is not installed).
    #[arg(long, conflicts_with = "table")]
    redis: bool,

    /// RESP suite: redis-benchmark's parallel clients (-c).
    #[arg(long, default_value_t = compare::redis::DEFAULT_CLIENTS, value_name = "N", requires = "redis")]
    redis_clients: usize,

    /// RESP suite: requests per test without pipelining (-n).
    #[arg(long, default_value_t = compare::redis::DEFAULT_REQUESTS, value_name = "N", requires = "redis")]
    redis_requests: usize,

    /// RESP suite: redis-benchmark's tests (-t), e.g. ping,set,get,mset.
    #[arg(long, default_value = compare::redis::DEFAULT_TESTS, value_name = "LIST", requires = "redis")]
    redis_tests: String,

    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,

    /// No per-run lines on stderr.
    #[arg(short, long)]
    quiet: bool,
}

/// `spp-bench idle-memory`: the spp proxy's RSS growth per idle TCP
/// connection, against the direct baseline's in the same run.
#[derive(Debug, Parser)]
#[command(name = "spp-bench idle-memory", version)]
struct IdleCli {
    /// Directory of the binaries (default: spp-bench's own directory).
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,

    /// Idle connections to hold open to each server.
    #[arg(short, long, default_value_t = compare::idle::DEFAULT_CONNECTIONS, value_name = "N")]
    connections: usize,

    /// spp worker processes.
    #[arg(long, default_value_t = compare::DEFAULT_WORKERS, value_name = "N")]
    workers: u32,

    /// spp proxy processes (`proxy.processes`, shards) of the echo
    /// service, 1..=64.
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    proxy_processes: u16,

    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn compare_main(args: Vec<OsString>) -> anyhow::Result<()> {
    let cli = CompareCli::parse_from(args);
    if cli.redis {
        return redis_main(&cli);
    }
    let spec = CompareSpec {
        bin_dir: cli.bin_dir.clone(),
        workers: cli.workers,
        proxy_processes: cli.proxy_processes,
        rounds: cli.rounds,
        shape: RunShape {
            duration: cli.shape.duration.into(),
            warmup: cli.shape.warmup.into(),
            payload: to_usize(cli.shape.size, "--size")?,
            threads: cli.threads,
        },
        plot_dir: cli.plot.clone(),
        haproxy: !cli.no_haproxy,
        progress: !cli.quiet,
        suite: if cli.table {
            Suite::Table
        } else if cli.shards {
            Suite::Shards
        } else if cli.async_relay {
            Suite::AsyncRelay
        } else {
            Suite::Classic
        },
        sleep_ms: cli.sleep_ms,
        sleep_connections: cli.sleep_connections,
        relay_workers: cli.relay_workers,
        tokio_threads: cli.tokio_threads,
        shard_count: cli.shard_count,
        tcp_connections: cli.tcp_connections,
    };
    if let Err(e) = spec.validate() {
        CompareCli::command()
            .error(ErrorKind::ValueValidation, e)
            .exit();
    }
    let shared = Shared::default();
    compare::watch_signals(&shared)?;
    if cli.http {
        let http = compare::wrk::HttpSpec {
            bin_dir: spec.bin_dir,
            workers: spec.workers,
            rounds: spec.rounds,
            duration: spec.shape.duration,
            progress: spec.progress,
        };
        let report = compare::wrk::run(&http, &shared)?;
        if cli.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{report}");
        }
        return Ok(());
    }
    let report = compare::run(&spec, &shared)?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

/// `spp-bench compare --redis`: the RESP suite.
fn redis_main(cli: &CompareCli) -> anyhow::Result<()> {
    let spec = compare::redis::RedisSpec {
        bin_dir: cli.bin_dir.clone(),
        rounds: cli.rounds,
        clients: cli.redis_clients,
        requests: cli.redis_requests,
        tests: cli.redis_tests.clone(),
        progress: !cli.quiet,
    };
    let shared = Shared::default();
    compare::watch_signals(&shared)?;
    let report = compare::redis::run(&spec, &shared)?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

fn idle_main(args: Vec<OsString>) -> anyhow::Result<()> {
    let cli = IdleCli::parse_from(args);
    let spec = IdleSpec {
        bin_dir: cli.bin_dir,
        connections: cli.connections,
        workers: cli.workers,
    };
    let shared = Shared::default();
    compare::watch_signals(&shared)?;
    let report = compare::idle::run(&spec, &shared)?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let sub = args.get(1).and_then(|a| a.to_str()).map(str::to_owned);
    if let Some(sub @ (COMPARE | IDLE_MEMORY)) = sub.as_deref() {
        // The subcommand's parser sees `spp-bench <sub>` as its name.
        args.remove(0);
        let outcome = if sub == COMPARE {
            compare_main(args)
        } else {
            idle_main(args)
        };
        return match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        };
    }
    let cli = Cli::parse_from(args);
    let spec = match cli.spec() {
        Ok(spec) => spec,
        // An unreadable file is not a usage error.
        Err(e) if matches!(e.downcast_ref(), Some(LoadError::ReadFile { .. })) => return fail(&e),
        // The rest are bad arguments: clap's format and status (2).
        Err(e) => Cli::command().error(ErrorKind::ValueValidation, e).exit(),
    };
    match run(&cli, &spec) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiters_unescape() {
        assert_eq!(unescape("\\r\\n").unwrap(), b"\r\n");
        assert_eq!(unescape("END\\x00").unwrap(), b"END\0");
        assert_eq!(unescape("a\\\\b\\t").unwrap(), b"a\\b\t");
        assert!(unescape("\\q").is_err());
        assert!(unescape("\\x4").is_err());
        assert!(unescape("\\xzz").is_err());
    }

    #[test]
    fn arguments_map_to_a_spec() {
        let cli = Cli::try_parse_from([
            "spp-bench",
            "udp://127.0.0.1:7963",
            "-c",
            "8",
            "-R",
            "1000",
            "-s",
            "128",
            "-d",
            "2s",
            "-w",
            "0s",
            "-t",
            "2",
        ])
        .unwrap();
        let spec = cli.spec().unwrap();
        assert_eq!(spec.connections, 8);
        assert_eq!(spec.load, Load::Open { rate: 1000.0 });
        assert_eq!(spec.request, Request::Echo { payload: 128 });
        assert_eq!(spec.threads, 2);
        assert!(Cli::try_parse_from(["spp-bench", "x:1", "-R", "5", "-p", "2"]).is_err());
        assert!(Cli::try_parse_from(["spp-bench", "x:1", "--response-length", "5"]).is_err());
        assert!(Cli::try_parse_from(["spp-bench", "x:1", "--request", "f"]).is_err());
        assert!(Cli::try_parse_from(["spp-bench", "x:1", "--short", "-R", "5"]).is_err());
    }

    #[test]
    fn table_options_need_the_table() {
        let cli = CompareCli::try_parse_from([
            "spp-bench compare",
            "--table",
            "--sleep-ms",
            "50",
            "--tokio-threads",
            "2",
        ])
        .unwrap();
        assert!(cli.table);
        assert_eq!((cli.sleep_ms, cli.tokio_threads), (50, Some(2)));
        assert!(CompareCli::try_parse_from(["spp-bench compare", "--sleep-ms", "50"]).is_err());
        assert!(CompareCli::try_parse_from(["spp-bench compare", "--relay-workers", "2"]).is_err());
        let cli = CompareCli::try_parse_from([
            "spp-bench compare",
            "--async-relay",
            "--relay-workers",
            "2",
        ])
        .unwrap();
        assert!(cli.async_relay && cli.relay_workers == 2);
        assert!(
            CompareCli::try_parse_from(["spp-bench compare", "--async-relay", "--table"]).is_err()
        );
    }
}
