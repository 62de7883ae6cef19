//! A real redis-server for the redis cache test: started on an ephemeral
//! 127.0.0.1 port in a temp dir of its own (`--save '' --appendonly no`:
//! nothing written), waited on until it answers `PING`, and killed by pid
//! on demand and when dropped (and by the kernel, `PR_SET_PDEATHSIG`, if
//! the test dies first).
//!
//! The binary is `$SPP_TEST_REDIS`, else `/usr/bin/redis-server`, else
//! `redis-server` on `PATH` (Debian package `redis-server`; `tests/run`
//! installs it). [`binary`] answers `None` when there is none, so the
//! test can say it skips.
//!
//! [`Redis::command`] speaks RESP itself (one command, one reply), so a
//! test reads and writes keys without a client library.

use crate::http::free_local_addr;
use crate::wait_for;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long redis-server may take to answer `PING` after it is spawned.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on one command's connect, write and read.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Spawns tried with fresh ports (another process may take a port between
/// the probe and redis-server's bind).
const START_ATTEMPTS: usize = 3;
/// The env var naming another redis-server binary.
pub const REDIS_ENV: &str = "SPP_TEST_REDIS";
/// Largest bulk reply [`Redis::command`] reads.
const MAX_BULK: usize = 64 << 20;
/// Deepest array nesting [`Redis::command`] reads.
const MAX_DEPTH: usize = 8;

/// A reply in RESP2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resp {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`.
    Error(String),
    /// `:1`.
    Int(i64),
    /// `$3 abc`, or `$-1` (`None`: no such key).
    Bulk(Option<Vec<u8>>),
    /// `*2 ...`.
    Array(Vec<Resp>),
}

/// The redis-server binary, `None` when it is not installed.
pub fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(REDIS_ENV) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "${REDIS_ENV} names {}, which is not a file",
            path.display()
        );
        return Some(path);
    }
    let mut candidates = vec![PathBuf::from("/usr/bin/redis-server")];
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join("redis-server")));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// A running redis-server.
pub struct Redis {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    child: Option<Child>,
}

impl Redis {
    /// Starts `bin` on a fresh ephemeral port and waits until it answers
    /// `PING`; panics with its log when it does not come up.
    pub fn start(bin: &std::path::Path) -> Redis {
        let mut why = String::new();
        for _ in 0..START_ATTEMPTS {
            let mut redis = Redis {
                dir: tempfile::tempdir().expect("redis tempdir"),
                addr: free_local_addr(),
                child: None,
            };
            match redis.spawn_and_wait(bin) {
                Ok(()) => return redis,
                Err(e) => why = e,
            }
        }
        panic!("redis-server did not start in {START_ATTEMPTS} attempts: {why}");
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `kill -9` of the server (by its pid) and its reaping.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill is SIGKILL to this child's pid.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends one command (`args[0]` is its name) on a new connection and
    /// reads its reply.
    pub fn command(&self, args: &[&[u8]]) -> io::Result<Resp> {
        let mut stream = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        stream.write_all(&out)?;
        read_reply(&mut BufReader::new(stream), 0)
    }

    /// `GET key`: the value, `None` when there is none.
    pub fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        match self.command(&[b"GET", key])? {
            Resp::Bulk(value) => Ok(value),
            other => Err(unexpected("GET", &other)),
        }
    }

    /// `SET key value`.
    pub fn set(&self, key: &[u8], value: &[u8]) -> io::Result<()> {
        match self.command(&[b"SET", key, value])? {
            Resp::Simple(ok) if ok == "OK" => Ok(()),
            other => Err(unexpected("SET", &other)),
        }
    }

    /// `TTL key` in seconds (-1: no TTL, -2: no key).
    pub fn ttl(&self, key: &[u8]) -> io::Result<i64> {
        match self.command(&[b"TTL", key])? {
            Resp::Int(ttl) => Ok(ttl),
            other => Err(unexpected("TTL", &other)),
        }
    }

    /// The tail of redis-server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let body = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = body.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn spawn_and_wait(&mut self, bin: &std::path::Path) -> Result<(), String> {
        let log = std::fs::File::create(self.dir.path().join("redis.log"))
            .map_err(|e| format!("redis log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("redis log: {e}"))?;
        let mut command = Command::new(bin);
        // SAFETY: prctl is async-signal-safe and touches no memory of the
        // parent; it runs in the forked child before exec. redis-server
        // then dies with the thread that started it, even when the test
        // process is killed before its Drop runs.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .args(["--port", &self.addr.port().to_string()])
            .args(["--bind", &self.addr.ip().to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        self.child = Some(child);
        let mut exited = None;
        let up = wait_for(START_TIMEOUT, || {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                exited = Some(status);
                return Some(false);
            }
            let pong = self.command(&[b"PING"]).ok()? == Resp::Simple("PONG".into());
            pong.then_some(true)
        });
        match (up, exited) {
            (Some(true), _) => Ok(()),
            (_, Some(status)) => {
                self.child = None;
                Err(format!(
                    "redis-server exited ({status}):\n{}",
                    self.log_tail()
                ))
            }
            _ => {
                self.kill();
                Err(format!(
                    "redis-server did not answer PING within {START_TIMEOUT:?}:\n{}",
                    self.log_tail()
                ))
            }
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn unexpected(what: &str, reply: &Resp) -> io::Error {
    io::Error::other(format!("{what}: unexpected reply {reply:?}"))
}

fn bad(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Reads one RESP2 reply.
fn read_reply(r: &mut impl BufRead, depth: usize) -> io::Result<Resp> {
    if depth > MAX_DEPTH {
        return Err(bad("reply nested too deep".into()));
    }
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at(line.len().min(1));
    let number = || {
        rest.parse::<i64>()
            .map_err(|_| bad(format!("bad number in {line:?}")))
    };
    match kind {
        "+" => Ok(Resp::Simple(rest.into())),
        "-" => Ok(Resp::Error(rest.into())),
        ":" => Ok(Resp::Int(number()?)),
        "$" => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(Resp::Bulk(None));
            };
            if len > MAX_BULK {
                return Err(bad(format!("bulk of {len} bytes")));
            }
            let mut body = vec![0u8; len + 2];
            r.read_exact(&mut body)?;
            body.truncate(len);
            Ok(Resp::Bulk(Some(body)))
        }
        "*" => {
            let n = usize::try_from(number()?).unwrap_or(0).min(MAX_BULK);
            (0..n)
                .map(|_| read_reply(r, depth + 1))
                .collect::<io::Result<_>>()
                .map(Resp::Array)
        }
        _ => Err(bad(format!("unknown reply {line:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read() {
        let text = b"+OK\r\n-ERR no\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*2\r\n:1\r\n$0\r\n\r\n";
        let mut r = &text[..];
        let want = [
            Resp::Simple("OK".into()),
            Resp::Error("ERR no".into()),
            Resp::Int(42),
            Resp::Bulk(Some(b"abc".to_vec())),
            Resp::Bulk(None),
            Resp::Array(vec![Resp::Int(1), Resp::Bulk(Some(Vec::new()))]),
        ];
        for w in want {
            assert_eq!(read_reply(&mut r, 0).unwrap(), w);
        }
        assert!(read_reply(&mut &b"?x\r\n"[..], 0).is_err());
        assert!(read_reply(&mut &b""[..], 0).is_err());
    }
}
