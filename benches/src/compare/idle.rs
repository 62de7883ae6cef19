//! `spp-bench idle-memory`: the proxy's resident memory per idle TCP
//! connection, against the direct baseline's in the same run. Opens N
//! connections to each (one system at a time), waits until the server holds
//! them all (spp: `conns_active` in `spp status --json`; direct: its open
//! descriptors in /proc), and divides the VmRSS growth by N.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::bins::Binaries;
use super::child;
use super::error::CompareError;
use super::process;
use super::spp::{self, SppService, SppSetup};
use super::systems::Shared;

/// Default idle connections.
pub const DEFAULT_CONNECTIONS: usize = 10_000;
/// Descriptors this program needs besides the connections.
const FD_HEADROOM: u64 = 64;
/// How long the servers get to take every connection.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the servers are polled.
const SETTLE_POLL: Duration = Duration::from_millis(50);
/// Bytes per KiB (/proc reports kB).
const KIB: u64 = 1024;

/// What to measure.
#[derive(Clone, Debug)]
pub struct IdleSpec {
    /// Where the binaries are (default: next to the running executable).
    pub bin_dir: Option<PathBuf>,
    /// Idle connections to open to each system.
    pub connections: usize,
    /// spp worker processes.
    pub workers: u32,
}

/// One system's growth.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdleResult {
    /// The measured process.
    pub pid: u32,
    /// VmRSS before connecting, bytes.
    pub rss_before: u64,
    /// VmRSS with every connection held, bytes.
    pub rss_after: u64,
    /// `(after - before) / connections`, bytes.
    pub bytes_per_connection: f64,
}

/// The idle-memory report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdleReport {
    /// Connections held open to each system.
    pub connections: usize,
    /// The spp proxy.
    pub spp: IdleResult,
    /// The direct baseline.
    pub direct: IdleResult,
    /// spp bytes per connection / direct bytes per connection.
    pub ratio_spp_direct: Option<f64>,
}

impl std::fmt::Display for IdleReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "idle memory: {} idle TCP connections each",
            self.connections
        )?;
        writeln!(
            f,
            "{:<12} {:>8} {:>14} {:>14} {:>12}",
            "system", "pid", "RSS before", "RSS after", "bytes/conn"
        )?;
        for (name, r) in [("spp proxy", &self.spp), ("direct", &self.direct)] {
            writeln!(
                f,
                "{:<12} {:>8} {:>12}Ki {:>12}Ki {:>12.0}",
                name,
                r.pid,
                r.rss_before / KIB,
                r.rss_after / KIB,
                r.bytes_per_connection
            )?;
        }
        match self.ratio_spp_direct {
            Some(r) => writeln!(f, "spp/direct   {r:.2}"),
            None => writeln!(f, "spp/direct   -"),
        }
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard one; fails if even that is
/// too low for `connections`.
pub fn raise_fd_limit(connections: usize) -> Result<(), CompareError> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid out pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(CompareError::Io {
            what: "cannot read RLIMIT_NOFILE of",
            path: "spp-bench".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    let needed = u64::try_from(connections)
        .unwrap_or(u64::MAX)
        .saturating_add(FD_HEADROOM);
    let hard: u64 = limit.rlim_max;
    if hard < needed {
        return Err(CompareError::FdLimit {
            wanted: connections,
            needed,
            hard,
        });
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a valid, initialised rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(CompareError::Io {
                what: "cannot raise RLIMIT_NOFILE of",
                path: "spp-bench".into(),
                source: std::io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}

/// VmRSS of `pid`, bytes.
fn rss(pid: u32) -> Result<u64, CompareError> {
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    let text = std::fs::read_to_string(&path).map_err(|source| CompareError::Io {
        what: "cannot read",
        path: path.clone(),
        source,
    })?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * KIB)
        .ok_or_else(|| CompareError::Io {
            what: "no VmRSS in",
            path,
            source: std::io::ErrorKind::InvalidData.into(),
        })
}

/// Open descriptors of `pid`.
fn open_fds(pid: u32) -> Result<usize, CompareError> {
    let path = PathBuf::from(format!("/proc/{pid}/fd"));
    std::fs::read_dir(&path)
        .map(Iterator::count)
        .map_err(|source| CompareError::Io {
            what: "cannot list",
            path,
            source,
        })
}

/// Opens `n` TCP connections to `addr`.
fn connect_all(
    system: &'static str,
    addr: SocketAddr,
    n: usize,
) -> Result<Vec<TcpStream>, CompareError> {
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let c = TcpStream::connect(addr).map_err(|e| CompareError::Idle {
            system,
            why: format!("opened {i} of {n} connections to {addr}, then: {e}"),
        })?;
        conns.push(c);
    }
    Ok(conns)
}

/// Polls `held` until it returns true or the settle timeout passes.
fn wait_held(
    system: &'static str,
    n: usize,
    mut held: impl FnMut() -> Result<Option<u64>, CompareError>,
) -> Result<(), CompareError> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let now = held()?;
        if now == Some(n as u64) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CompareError::Idle {
                system,
                why: format!(
                    "the server holds {} of {n} connections after {SETTLE_TIMEOUT:?}",
                    now.map(|v| v.to_string()).unwrap_or_else(|| "?".into())
                ),
            });
        }
        std::thread::sleep(SETTLE_POLL);
    }
}

fn result(pid: u32, before: u64, after: u64, n: usize) -> IdleResult {
    IdleResult {
        pid,
        rss_before: before,
        rss_after: after,
        bytes_per_connection: (after as f64 - before as f64) / n.max(1) as f64,
    }
}

/// Runs the measurement; the servers are registered in `shared` and always
/// stopped before this returns.
pub fn run(spec: &IdleSpec, shared: &Shared) -> Result<IdleReport, CompareError> {
    if spec.connections == 0 {
        return Err(CompareError::Invalid {
            field: "connections",
            why: "must be at least 1".into(),
        });
    }
    raise_fd_limit(spec.connections)?;
    let bins = Binaries::locate(spec.bin_dir.as_deref())?;
    let outcome = measure(spec, &bins, shared);
    let stopped = shared.lock().stop_all();
    let report = outcome?;
    stopped?;
    Ok(report)
}

fn measure(spec: &IdleSpec, bins: &Binaries, shared: &Shared) -> Result<IdleReport, CompareError> {
    let n = spec.connections;
    let (spp_addrs, direct_addr, direct_pid) = {
        let mut systems = shared.lock();
        systems.check()?;
        let setup = SppSetup::echo(bins, spec.workers, n);
        let spp = systems.spp.insert(SppService::prepare(bins, &setup)?);
        let addrs = spp.start()?;
        let direct = child::start_direct(&bins.direct())?;
        let pid = direct
            .server
            .pid()
            .ok_or_else(|| CompareError::NotStarted {
                system: "direct",
                why: "no pid".into(),
            })?;
        let addr = direct.tcp;
        systems.direct = Some(direct.server);
        (addrs, addr, pid)
    };

    // spp: the proxy's growth while it holds n connections.
    let proxy = spp_addrs.proxy_pid;
    let before = rss(proxy)?;
    let conns = connect_all("spp", spp_addrs.tcp, n)?;
    wait_held("spp", n, || {
        let mut systems = shared.lock();
        match systems.spp.as_mut() {
            Some(s) => Ok(spp::conns_active(&s.status()?)),
            None => Err(CompareError::Interrupted),
        }
    })?;
    let spp = result(proxy, before, rss(proxy)?, n);
    drop(conns);

    // direct: the same, counting its descriptors.
    let base_fds = open_fds(direct_pid)?;
    let before = rss(direct_pid)?;
    let conns = connect_all("direct", direct_addr, n)?;
    wait_held("direct", n, || {
        if !process::alive(direct_pid) {
            return Err(CompareError::Idle {
                system: "direct",
                why: "the server exited".into(),
            });
        }
        Ok(Some(open_fds(direct_pid)?.saturating_sub(base_fds) as u64))
    })?;
    let direct = result(direct_pid, before, rss(direct_pid)?, n);
    drop(conns);

    let ratio = (direct.bytes_per_connection > 0.0)
        .then(|| spp.bytes_per_connection / direct.bytes_per_connection);
    Ok(IdleReport {
        connections: n,
        spp,
        direct,
        ratio_spp_direct: ratio,
    })
}
