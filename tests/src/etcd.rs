//! A real etcd server for the L5 etcd tests: started on two ephemeral
//! 127.0.0.1 ports with a temp data dir, waited on until `/health` says so,
//! stopped (and started again on the same ports and data) on demand, and
//! killed by pid when dropped (and by the kernel, `PR_SET_PDEATHSIG`, if
//! the test dies first).
//!
//! The binary is `$SPP_TEST_ETCD`, else `/usr/bin/etcd`, else `etcd` on
//! `PATH` (Debian package `etcd-server`; `.ci/run` installs it). A missing
//! binary fails the test with a message that says so.
//!
//! [`Etcd::keys`] reads a prefix through etcd's JSON gateway (`POST
//! /v3/kv/range`), so a test can see what is registered without a client
//! library.

use crate::http::{free_local_addr, get, post_json};
use crate::wait_for;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long etcd may take to answer `/health` after it is spawned.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long etcd may take to exit after SIGTERM (then SIGKILL).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Spawns tried with fresh ports (another process may take a port between
/// the probe and etcd's bind).
const START_ATTEMPTS: usize = 3;
/// The env var naming another etcd binary.
pub const ETCD_ENV: &str = "SPP_TEST_ETCD";

/// A running (or stopped, restartable) etcd.
pub struct Etcd {
    bin: PathBuf,
    dir: tempfile::TempDir,
    data: PathBuf,
    client: SocketAddr,
    peer: SocketAddr,
    /// More addresses it serves clients on (same port), besides
    /// `client`.
    also: Vec<IpAddr>,
    child: Option<Child>,
}

/// The etcd binary; panics naming what was looked for when there is none.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os(ETCD_ENV) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "${ETCD_ENV} names {}, which is not a file",
            path.display()
        );
        return path;
    }
    let mut candidates = vec![PathBuf::from("/usr/bin/etcd")];
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join("etcd")));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "etcd is not installed: the L5 etcd tests need an etcd 3.4 server binary \
                 (Debian/Ubuntu: `apt-get install etcd-server`, which .ci/run does), \
                 at /usr/bin/etcd, on PATH, or named by ${ETCD_ENV}"
            )
        })
}

impl Etcd {
    /// Starts etcd on fresh ephemeral ports and waits until it is healthy;
    /// panics with its log when it does not come up.
    pub fn start() -> Etcd {
        Etcd::start_also_on(&[])
    }

    /// [`Etcd::start`], serving clients on `also` too (same port as on
    /// 127.0.0.1), e.g. the host side of a network namespace's veth so
    /// that services inside the namespace can register.
    pub fn start_also_on(also: &[IpAddr]) -> Etcd {
        let bin = binary();
        let mut why = String::new();
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::tempdir().expect("etcd tempdir");
            let mut etcd = Etcd {
                bin: bin.clone(),
                data: dir.path().join("data"),
                dir,
                client: free_local_addr(),
                peer: free_local_addr(),
                also: also.to_vec(),
                child: None,
            };
            match etcd.spawn_and_wait() {
                Ok(()) => return etcd,
                Err(e) => why = e,
            }
        }
        panic!("etcd did not start in {START_ATTEMPTS} attempts: {why}");
    }

    /// `127.0.0.1:<client port>`.
    pub fn client_addr(&self) -> SocketAddr {
        self.client
    }

    /// The client address on `ip` (one of those given to
    /// [`Etcd::start_also_on`], or 127.0.0.1).
    pub fn client_addr_on(&self, ip: IpAddr) -> SocketAddr {
        SocketAddr::new(ip, self.client.port())
    }

    /// The `l5.backend` value naming this server.
    pub fn backend(&self) -> String {
        format!("etcd://{}", self.client)
    }

    /// The server's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether `/health` answers healthy now.
    pub fn healthy(&self) -> bool {
        get(self.client, "/health")
            .map(|r| r.status == 200 && r.body.replace(' ', "").contains("\"health\":\"true\""))
            .unwrap_or(false)
    }

    /// Stops the server (SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]) and
    /// reaps it; its ports and data stay for [`Etcd::restart`].
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            crate::kill(pid, libc::SIGTERM);
        }
        let exited = wait_for(STOP_TIMEOUT, || child.try_wait().ok().flatten()).is_some();
        if !exited {
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    /// Starts the stopped server again on the same ports and data, and
    /// waits until it is healthy; panics with its log if it is not.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "etcd restart while it runs");
        if let Err(why) = self.spawn_and_wait() {
            panic!("etcd did not restart: {why}");
        }
    }

    /// Every key under `prefix` with its value, read through the JSON
    /// gateway.
    pub fn keys(&self, prefix: &str) -> Result<Vec<(String, String)>, String> {
        let body = serde_json::json!({
            "key": base64_encode(prefix.as_bytes()),
            "range_end": base64_encode(&prefix_end(prefix.as_bytes())),
        })
        .to_string();
        let value = self.call("/v3/kv/range", &body)?;
        let text = |v: &Value| -> Result<String, String> {
            let raw = base64_decode(v.as_str().unwrap_or_default())?;
            Ok(String::from_utf8_lossy(&raw).into_owned())
        };
        value["kvs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|kv| Ok((text(&kv["key"])?, text(&kv["value"])?)))
            .collect()
    }

    /// The lease holding `key` (`None`: no such key, or a key without a
    /// lease).
    pub fn lease_of(&self, key: &str) -> Result<Option<i64>, String> {
        let body = serde_json::json!({ "key": base64_encode(key.as_bytes()) }).to_string();
        let value = self.call("/v3/kv/range", &body)?;
        Ok(value["kvs"]
            .as_array()
            .and_then(|kvs| kvs.first())
            .and_then(|kv| int64(&kv["lease"]))
            .filter(|&lease| lease != 0))
    }

    /// The TTL a lease was granted with, in seconds (`None`: no such
    /// lease, e.g. it expired).
    pub fn lease_granted_ttl(&self, lease: i64) -> Result<Option<i64>, String> {
        let body = serde_json::json!({ "ID": lease.to_string() }).to_string();
        let value = self.call("/v3/lease/timetolive", &body)?;
        // An expired or unknown lease answers TTL -1.
        if int64(&value["TTL"]).unwrap_or(-1) < 0 {
            return Ok(None);
        }
        Ok(int64(&value["grantedTTL"]))
    }

    /// POSTs `body` to the gateway's `path`; the answer's JSON.
    fn call(&self, path: &str, body: &str) -> Result<Value, String> {
        let response =
            post_json(self.client, path, body).map_err(|e| format!("etcd {path}: {e}"))?;
        if response.status != 200 {
            return Err(format!(
                "etcd {path}: HTTP {}: {}",
                response.status, response.body
            ));
        }
        serde_json::from_str(&response.body)
            .map_err(|e| format!("etcd {path}: {e}: {}", response.body))
    }

    /// Puts `key` = `value` (no lease), through the JSON gateway.
    pub fn put(&self, key: &str, value: &str) -> Result<(), String> {
        let body = serde_json::json!({
            "key": base64_encode(key.as_bytes()),
            "value": base64_encode(value.as_bytes()),
        })
        .to_string();
        self.call("/v3/kv/put", &body).map(drop)
    }

    /// The tail of etcd's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let body = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = body.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("etcd log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("etcd log: {e}"))?;
        let (client, peer) = (
            format!("http://{}", self.client),
            format!("http://{}", self.peer),
        );
        let listen_client = std::iter::once(client.clone())
            .chain(
                self.also
                    .iter()
                    .map(|&ip| format!("http://{}", self.client_addr_on(ip))),
            )
            .collect::<Vec<_>>()
            .join(",");
        let mut command = Command::new(&self.bin);
        // SAFETY: prctl is async-signal-safe and touches no memory of the
        // parent; it runs in the forked child before exec. etcd then dies
        // with the thread that started it, even when the test process is
        // killed before its Drop runs.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .args(["--name", "spp-test"])
            .arg("--data-dir")
            .arg(&self.data)
            .args(["--listen-client-urls", &listen_client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("spp-test={peer}")])
            .args(["--initial-cluster-state", "new"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.bin.display()))?;
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
            self.healthy().then_some(true)
        });
        match (up, exited) {
            (Some(true), _) => Ok(()),
            (_, Some(status)) => {
                self.child = None;
                Err(format!("etcd exited ({status}):\n{}", self.log_tail()))
            }
            _ => {
                self.stop();
                Err(format!(
                    "etcd was not healthy within {START_TIMEOUT:?}:\n{}",
                    self.log_tail()
                ))
            }
        }
    }

    /// The data dir (for messages).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill is SIGKILL to this child's pid.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An int64 of the gateway's JSON (written as a string, or a number).
fn int64(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str()?.parse().ok())
}

/// The end of the key range of `prefix` (its last byte plus one).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (what etcd's gateway takes for bytes).
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional).
pub fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = B64
            .iter()
            .position(|&b| b == c)
            .ok_or_else(|| format!("not base64: {text:?}"))?;
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("/spp/l5/", "L3NwcC9sNS8="),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), coded);
            assert_eq!(base64_decode(coded).unwrap(), plain.as_bytes());
        }
        assert_eq!(prefix_end(b"/a/"), b"/a0");
    }
}
