//! nginx as the HTTP suite's reference: one worker process, started by
//! `spp-bench` with its own prefix and config in a temp dir (error log,
//! pid file and temp paths inside it, access log off, `daemon off`), on a
//! port picked by binding and closing, answering every request with
//! `return 200 "<body>"`; ready once a GET gets its 200.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::super::child::{self, ChildServer};
use super::super::error::CompareError;
use super::super::process;

/// How long nginx gets to answer its first GET.
const READY: Duration = Duration::from_secs(5);
/// Attempts at starting it (the picked port may be taken meanwhile).
const ATTEMPTS: usize = 3;
/// Time limit of one readiness probe's connect, write and read.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// The system's name in errors.
const NAME: &str = "nginx";

/// nginx, started and answering.
#[derive(Debug)]
pub struct Nginx {
    /// The master process (its worker is its child).
    pub server: ChildServer,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// The config: one worker, `return 200 body`, keep-alive without a
/// request limit (spp has none), no access log.
fn config(prefix: &Path, port: u16, body: &str) -> String {
    let p = prefix.display();
    format!(
        "worker_processes 1;\ndaemon off;\nerror_log {p}/error.log warn;\npid {p}/nginx.pid;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n    access_log off;\n    keepalive_requests 1000000000;\n    keepalive_timeout 60s;\n\
         \x20   client_body_temp_path {p}/body;\n    proxy_temp_path {p}/proxy;\n\
         \x20   fastcgi_temp_path {p}/fastcgi;\n    uwsgi_temp_path {p}/uwsgi;\n    scgi_temp_path {p}/scgi;\n\
         \x20   server {{\n        listen 127.0.0.1:{port};\n        default_type text/plain;\n\
         \x20       location / {{ return 200 {body:?}; }}\n    }}\n}}\n"
    )
}

/// A free port on 127.0.0.1 right now (bound, then closed).
fn free_port() -> Result<u16, CompareError> {
    let fail = |e: std::io::Error| CompareError::NotStarted {
        system: NAME,
        why: format!("cannot find a free port: {e}"),
    };
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(fail)?;
    Ok(listener.local_addr().map_err(fail)?.port())
}

/// One GET through `addr`; true on a 200.
pub fn get_ok(addr: SocketAddr) -> std::io::Result<bool> {
    let mut s = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    s.set_read_timeout(Some(PROBE_TIMEOUT))?;
    s.set_write_timeout(Some(PROBE_TIMEOUT))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head)?;
    Ok(head.starts_with(b"HTTP/1.1 200"))
}

/// Starts nginx with its prefix in `dir`, answering `body`.
pub fn start(program: &Path, dir: &Path, body: &str) -> Result<Nginx, CompareError> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| CompareError::Io { what, path, source }
    };
    let conf = dir.join("nginx.conf");
    let mut last = String::new();
    for _ in 0..ATTEMPTS {
        let port = free_port()?;
        std::fs::write(&conf, config(dir, port, body)).map_err(io("cannot write", &conf))?;
        let mut server = child::spawn(
            NAME,
            Command::new(program)
                .arg("-p")
                .arg(dir)
                .arg("-e")
                .arg(dir.join("error.log"))
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + READY;
        loop {
            if let Ok(true) = get_ok(addr) {
                return Ok(Nginx { server, addr });
            }
            if server.pid().is_none_or(|pid| !process::alive(pid)) {
                let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                last = format!("it exited (port {port}): {}", log.trim());
                break;
            }
            if Instant::now() >= deadline {
                last = format!("no 200 from 127.0.0.1:{port} within {READY:?}");
                break;
            }
            std::thread::sleep(process::POLL);
        }
        server.stop();
    }
    Err(CompareError::NotStarted {
        system: NAME,
        why: last,
    })
}

/// `nginx -v`'s line (it prints to stderr).
pub fn version(program: &Path) -> String {
    Command::new(program)
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .next()
                .map(|l| l.trim_start_matches("nginx version: ").to_owned())
        })
        .unwrap_or_else(|| "nginx (unknown version)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_one_worker_and_the_fixed_answer() {
        let text = config(Path::new("/tmp/p"), 8081, "hello world");
        assert!(text.contains("worker_processes 1;"), "{text}");
        assert!(text.contains("listen 127.0.0.1:8081;"), "{text}");
        assert!(text.contains("return 200 \"hello world\";"), "{text}");
        assert!(text.contains("access_log off;"), "{text}");
        assert!(text.contains("pid /tmp/p/nginx.pid;"), "{text}");
    }
}
