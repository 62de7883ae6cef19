//! The other servers, as child processes of `spp-bench`: the direct
//! baseline (`spp-echo-direct`, ports read from its `listening ...`
//! lines), the tokio relay in front of it (`spp-tokio-relay`, likewise),
//! and haproxy in TCP mode in front of it (a generated config on a port
//! picked by binding and closing, then checked with an echo round trip).
//! All are stopped with SIGTERM, then SIGKILL, by PID.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::error::CompareError;
use super::process;

/// How long a server gets to stop after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long haproxy gets to answer its first echo.
const HAPROXY_READY: Duration = Duration::from_secs(5);
/// Attempts at starting haproxy (the picked port may be taken meanwhile).
const HAPROXY_ATTEMPTS: usize = 3;
/// Time limit of one readiness probe's connect, write and read.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// The probe's echo frame: a 4-byte big-endian length and the payload.
const PROBE_FRAME: &[u8] = b"\0\0\0\x05probe";

/// A server running as our child.
#[derive(Debug)]
pub struct ChildServer {
    name: &'static str,
    child: Option<Child>,
}

impl ChildServer {
    /// Its pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM, wait up to the grace, then SIGKILL; reaps it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        process::signal(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(process::POLL),
            }
        }
    }

    /// Whether it has exited (or is not running at all).
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| !matches!(c.try_wait(), Ok(None)))
    }

    /// Which system it is.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `cmd` detached ([`process::detach`]) as the server `name`.
pub fn spawn(name: &'static str, cmd: &mut Command) -> Result<ChildServer, CompareError> {
    let program = PathBuf::from(cmd.get_program());
    let child = process::detach(cmd)
        .spawn()
        .map_err(|source| CompareError::Spawn { program, source })?;
    Ok(ChildServer {
        name,
        child: Some(child),
    })
}

/// The direct baseline, started and listening.
#[derive(Debug)]
pub struct Direct {
    /// The process.
    pub server: ChildServer,
    /// Its TCP address.
    pub tcp: SocketAddr,
    /// Its UDP address.
    pub udp: SocketAddr,
}

/// Reads `listening <proto> ADDR` lines, one per entry of `protos`, from
/// the server's stdout.
fn listening(server: &mut ChildServer, protos: &[&str]) -> Result<Vec<SocketAddr>, CompareError> {
    let system = server.name;
    let not_started = |why: String| CompareError::NotStarted { system, why };
    let stdout = server
        .child
        .as_mut()
        .and_then(|c| c.stdout.take())
        .ok_or_else(|| not_started("no stdout".into()))?;
    let mut lines = BufReader::new(stdout).lines();
    let mut addrs = Vec::with_capacity(protos.len());
    for proto in protos {
        let line = lines
            .next()
            .ok_or_else(|| not_started("it exited before listening".into()))?
            .map_err(|e| not_started(format!("reading its output: {e}")))?;
        let addr = line
            .strip_prefix("listening ")
            .and_then(|rest| rest.strip_prefix(proto))
            .and_then(|rest| rest.trim().parse().ok())
            .ok_or_else(|| not_started(format!("unexpected line {line:?}")))?;
        addrs.push(addr);
    }
    Ok(addrs)
}

/// Starts `spp-echo-direct` on TCP and UDP 127.0.0.1:0 and reads its ports.
pub fn start_direct(program: &Path) -> Result<Direct, CompareError> {
    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).to_string();
    let mut server = spawn(
        "direct",
        Command::new(program)
            .args(["--tcp", &any, "--udp", &any])
            .stdin(Stdio::null())
            .stdout(Stdio::piped()),
    )?;
    let addrs = listening(&mut server, &["tcp", "udp"])?;
    let (tcp, udp) = (addrs[0], addrs[1]);
    Ok(Direct { server, tcp, udp })
}

/// Starts `spp-tokio-relay` on 127.0.0.1:0 in front of `backend`, with
/// `threads` tokio worker threads (default: one per CPU); returns it and
/// its address.
pub fn start_tokio_relay(
    program: &Path,
    name: &'static str,
    backend: SocketAddr,
    threads: Option<usize>,
) -> Result<(ChildServer, SocketAddr), CompareError> {
    let mut cmd = Command::new(program);
    cmd.arg("--backend")
        .arg(backend.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    if let Some(n) = threads {
        cmd.arg("--threads").arg(n.to_string());
    }
    let mut server = spawn(name, &mut cmd)?;
    let addr = listening(&mut server, &["tcp"])?[0];
    Ok((server, addr))
}

/// haproxy, started and answering.
#[derive(Debug)]
pub struct Haproxy {
    /// The process.
    pub server: ChildServer,
    /// Its frontend.
    pub addr: SocketAddr,
    /// `haproxy -v`'s first line.
    pub version: String,
}

/// The haproxy config: one TCP frontend on `port`, one backend `backend`.
/// `maxconn` is left to haproxy, which derives it from the open-files limit.
fn haproxy_config(port: u16, backend: SocketAddr) -> String {
    format!(
        "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\n\
         frontend spp_bench\n    bind 127.0.0.1:{port}\n    default_backend direct\n\n\
         backend direct\n    server direct {backend}\n"
    )
}

/// A new temp dir named `prefix…`, removed when dropped (a server's
/// config, logs and prefix).
pub fn temp_dir(prefix: &str) -> Result<tempfile::TempDir, CompareError> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|source| CompareError::Io {
            what: "cannot create a temp dir in",
            path: std::env::temp_dir(),
            source,
        })
}

/// A free port on 127.0.0.1 right now (bound, then closed), for the
/// server `system`.
pub fn free_port(system: &'static str) -> Result<u16, CompareError> {
    let fail = |e: std::io::Error| CompareError::NotStarted {
        system,
        why: format!("cannot find a free port: {e}"),
    };
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(fail)?;
    Ok(listener.local_addr().map_err(fail)?.port())
}

/// One echo round trip through `addr`.
fn echo_once(addr: SocketAddr) -> std::io::Result<bool> {
    let mut s = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    s.set_read_timeout(Some(PROBE_TIMEOUT))?;
    s.set_write_timeout(Some(PROBE_TIMEOUT))?;
    s.write_all(PROBE_FRAME)?;
    let mut back = vec![0; PROBE_FRAME.len()];
    s.read_exact(&mut back)?;
    Ok(back == PROBE_FRAME)
}

fn version(program: &Path) -> String {
    Command::new(program)
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "haproxy (unknown version)".into())
}

/// Starts haproxy in TCP mode in front of `backend`, its config in `dir`.
pub fn start_haproxy(
    program: &Path,
    dir: &Path,
    backend: SocketAddr,
) -> Result<Haproxy, CompareError> {
    let config = dir.join("haproxy.cfg");
    let mut last = String::new();
    for _ in 0..HAPROXY_ATTEMPTS {
        let port = free_port("haproxy")?;
        std::fs::write(&config, haproxy_config(port, backend)).map_err(|source| {
            CompareError::Io {
                what: "cannot write",
                path: config.clone(),
                source,
            }
        })?;
        let log_path = dir.join("haproxy.log");
        let log = std::fs::File::create(&log_path).map_err(|source| CompareError::Io {
            what: "cannot create",
            path: log_path.clone(),
            source,
        })?;
        let mut server = spawn(
            "haproxy",
            Command::new(program)
                .arg("-db")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log),
        )?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + HAPROXY_READY;
        loop {
            if let Ok(true) = echo_once(addr) {
                return Ok(Haproxy {
                    server,
                    addr,
                    version: version(program),
                });
            }
            let exited = server
                .child
                .as_mut()
                .map(|c| matches!(c.try_wait(), Ok(Some(_))))
                .unwrap_or(true);
            if exited {
                let said = std::fs::read_to_string(&log_path).unwrap_or_default();
                let alert = said.lines().rfind(|l| l.contains("ALERT")).unwrap_or("");
                last = format!("it exited (port {port}): {}", alert.trim());
                break;
            }
            if Instant::now() >= deadline {
                last = format!("no echo through 127.0.0.1:{port} within {HAPROXY_READY:?}");
                break;
            }
            std::thread::sleep(process::POLL);
        }
        server.stop();
    }
    Err(CompareError::NotStarted {
        system: "haproxy",
        why: last,
    })
}
