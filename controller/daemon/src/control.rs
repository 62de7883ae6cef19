//! The control socket `<run_dir>/spp.sock`: a unix stream socket (mode
//! 0600, peers must be this user or root) where a client writes one JSON
//! request line and reads one JSON response line.
//!
//! Requests: `{"cmd":"status"}` → the [`crate::status::Status`] object;
//! `{"cmd":"stop"}` → `{"stopping":true,"controller_pid":N,
//! "stop_timeout_ms":N}` (how long the stop may take, from the running
//! config);
//! `{"cmd":"stat","window_s":N}` → the [`crate::stats::StatReport`] over
//! the last N seconds; `{"cmd":"reload"}` → answered when the reload is
//! over: `{"reloaded":true,"file":"...","config_generation":N,
//! "changes":[...]}`; `{"cmd":"l5"}` → the [`crate::l5::report::L5Report`]
//! (an error when `[l5]` is off). A
//! refused, failed or malformed request gets `{"error":"..."}`.
//!
//! Bounded: at most [`defaults::MAX_CONTROL_CONNECTIONS`] connections are
//! served at once (more are answered "busy" and closed), a request line
//! has at most [`defaults::MAX_CONTROL_LINE`] bytes and must arrive within
//! [`defaults::CONTROL_IO_TIMEOUT`].

use serde::{Deserialize, Serialize};
use spp_config::defaults;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Key of the answer to `stop`: how long the stop may take, ms
/// ([`defaults::stop_timeout`] of the running `stop_grace`).
pub const STOP_TIMEOUT_KEY: &str = "stop_timeout_ms";

/// Control socket failures.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The socket cannot be created.
    #[error("control socket {}: {what}", path.display())]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The call that failed.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// Nothing listens on the socket.
    #[error("not running (no controller answers on {})", path.display())]
    NotRunning {
        /// The socket path.
        path: PathBuf,
    },
    /// Talking to the controller failed.
    #[error("control socket {}: {what}", path.display())]
    Io {
        /// The socket path.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The controller's answer is not what was expected.
    #[error("control socket {}: bad response: {reason}", path.display())]
    BadResponse {
        /// The socket path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The controller refused the request.
    #[error("the controller says: {0}")]
    Refused(String),
}

/// A control request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    /// Report the status.
    Status,
    /// Stop the service.
    Stop,
    /// Report the stats over the last `window_s` seconds.
    Stat {
        /// The window, seconds.
        #[serde(default = "default_stat_window")]
        window_s: u64,
    },
    /// Re-read the config file and apply what may change while running.
    Reload,
    /// Report the L5 route table.
    L5,
}

fn default_stat_window() -> u64 {
    defaults::STAT_WINDOW_S
}

/// What a bad request is told to send instead.
const KNOWN_REQUESTS: &str = r#"send {"cmd":"status"}, {"cmd":"stop"}, {"cmd":"stat","window_s":10}, {"cmd":"reload"} or {"cmd":"l5"}"#;

/// A request handed to the supervisor, with where to send its answer.
pub struct Pending {
    /// What was asked.
    pub request: Request,
    /// The JSON answer.
    pub reply: oneshot::Sender<serde_json::Value>,
}

/// The `{"error": ...}` answer.
pub fn error_response(message: &str) -> serde_json::Value {
    serde_json::json!({ "error": message })
}

/// Binds the socket at `path` with mode 0600, replacing a stale one. The
/// caller must hold the pid file lock (so no live controller owns it).
pub fn bind(path: &Path) -> Result<std::os::unix::net::UnixListener, ControlError> {
    let fail = |what| {
        move |source| ControlError::Bind {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail("removing the stale socket")(e)),
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(fail("bind"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(fail("chmod 0600"))?;
    listener
        .set_nonblocking(true)
        .map_err(fail("set non-blocking"))?;
    Ok(listener)
}

/// Serves the socket forever, handing each request to the supervisor.
pub async fn serve(listener: tokio::net::UnixListener, to_supervisor: mpsc::Sender<Pending>) {
    let slots = Arc::new(Semaphore::new(defaults::MAX_CONTROL_CONNECTIONS));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => match Arc::clone(&slots).try_acquire_owned() {
                Ok(permit) => {
                    let to_supervisor = to_supervisor.clone();
                    tokio::spawn(async move {
                        handle(stream, to_supervisor).await;
                        drop(permit);
                    });
                }
                Err(_) => busy(&stream),
            },
            Err(e) => tracing::warn!("control socket accept: {e}"),
        }
    }
}

/// Answers a connection over the limit without waiting for it, and drops
/// it.
fn busy(stream: &tokio::net::UnixStream) {
    let limit = defaults::MAX_CONTROL_CONNECTIONS;
    let answer = error_response(&format!(
        "busy: {limit} control connections are open already; try again"
    ));
    // Best effort: a fresh socket's buffer takes one short line.
    let _ = stream.try_write(format!("{answer}\n").as_bytes());
}

/// Whether the peer may control us: the same user, or root.
fn peer_allowed(stream: &tokio::net::UnixStream) -> bool {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    stream
        .peer_cred()
        .is_ok_and(|c| c.uid() == me || c.uid() == 0)
}

async fn handle(stream: tokio::net::UnixStream, to_supervisor: mpsc::Sender<Pending>) {
    let allowed = peer_allowed(&stream);
    let (read, mut write) = stream.into_split();
    let answer = if allowed {
        answer(read, &to_supervisor).await
    } else {
        error_response("permission denied: not the service's user")
    };
    let line = format!("{answer}\n");
    match tokio::time::timeout(
        defaults::CONTROL_IO_TIMEOUT,
        write.write_all(line.as_bytes()),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("control socket reply: {e}"),
        Err(_) => tracing::debug!("control socket reply: timed out"),
    }
}

async fn answer(
    read: tokio::net::unix::OwnedReadHalf,
    to_supervisor: &mpsc::Sender<Pending>,
) -> serde_json::Value {
    let mut line = Vec::new();
    let limit = defaults::MAX_CONTROL_LINE as u64;
    let mut reader = tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(read, limit));
    let read = tokio::time::timeout(
        defaults::CONTROL_IO_TIMEOUT,
        reader.read_until(b'\n', &mut line),
    )
    .await;
    match read {
        Err(_) => return error_response("timed out waiting for the request line"),
        Ok(Err(e)) => return error_response(&format!("reading the request: {e}")),
        Ok(Ok(_)) if !line.ends_with(b"\n") => {
            let limit = defaults::MAX_CONTROL_LINE;
            return error_response(&format!(
                "the request must be one JSON line of at most {limit} bytes"
            ));
        }
        Ok(Ok(_)) => {}
    }
    let request = match parse_request(&line) {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    let (reply, answer) = oneshot::channel();
    if to_supervisor
        .send(Pending { request, reply })
        .await
        .is_err()
    {
        return error_response("the controller is shutting down");
    }
    answer
        .await
        .unwrap_or_else(|_| error_response("the controller is shutting down"))
}

/// The request in one line of bytes from a client, or the error answer
/// that says why it is none.
pub(crate) fn parse_request(line: &[u8]) -> Result<Request, serde_json::Value> {
    serde_json::from_slice(line)
        .map_err(|e| error_response(&format!("bad request ({e}); {KNOWN_REQUESTS}")))
}

/// Sends `request` to the controller listening on `path` and returns its
/// answer (blocking; for the CLI), waiting at most
/// [`defaults::CONTROL_IO_TIMEOUT`] for it.
pub fn request(path: &Path, request: Request) -> Result<serde_json::Value, ControlError> {
    request_within(path, request, defaults::CONTROL_IO_TIMEOUT)
}

/// [`request`], waiting up to `answer_timeout` for the answer (a reload is
/// answered when it is over).
pub fn request_within(
    path: &Path,
    request: Request,
    answer_timeout: Duration,
) -> Result<serde_json::Value, ControlError> {
    let io = |what| {
        move |source| ControlError::Io {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    let mut stream = match std::os::unix::net::UnixStream::connect(path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ControlError::NotRunning {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(io("connect")(e)),
    };
    stream
        .set_read_timeout(Some(answer_timeout.max(defaults::CONTROL_IO_TIMEOUT)))
        .map_err(io("set timeout"))?;
    stream
        .set_write_timeout(Some(defaults::CONTROL_IO_TIMEOUT))
        .map_err(io("set timeout"))?;
    let mut line = serde_json::to_string(&request).unwrap_or_default();
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io("send"))?;
    let mut answer = Vec::new();
    BufReader::new(stream.take(defaults::MAX_CONTROL_RESPONSE as u64))
        .read_until(b'\n', &mut answer)
        .map_err(io("receive"))?;
    let value: serde_json::Value =
        serde_json::from_slice(&answer).map_err(|e| ControlError::BadResponse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if let Some(message) = value.get("error").and_then(|m| m.as_str()) {
        return Err(ControlError::Refused(message.to_string()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_json_word() {
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"cmd":"status"}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"stop"}"#).unwrap(),
            Request::Stop
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"reboot"}"#).is_err());
        assert_eq!(
            serde_json::to_string(&Request::Stat { window_s: 5 }).unwrap(),
            r#"{"cmd":"stat","window_s":5}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"stat"}"#).unwrap(),
            Request::Stat {
                window_s: defaults::STAT_WINDOW_S
            }
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"reload"}"#).unwrap(),
            Request::Reload
        );
        assert_eq!(
            serde_json::to_string(&Request::L5).unwrap(),
            r#"{"cmd":"l5"}"#
        );
    }

    /// Reads one answer line from a raw connection.
    fn read_answer(stream: std::os::unix::net::UnixStream) -> serde_json::Value {
        let mut line = Vec::new();
        BufReader::new(stream).read_until(b'\n', &mut line).unwrap();
        serde_json::from_slice(&line).unwrap()
    }

    #[test]
    fn connections_and_request_lines_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spp.sock");
        let listener = bind(&path).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client_path = path.clone();
        let client = std::thread::spawn(move || {
            let connect = || std::os::unix::net::UnixStream::connect(&client_path).unwrap();
            // A request line longer than the limit is refused.
            let mut long = connect();
            long.write_all(&vec![b' '; defaults::MAX_CONTROL_LINE + 1])
                .unwrap();
            let too_long = read_answer(long);
            // Idle connections fill every slot; the next one is turned away.
            let idle: Vec<_> = (0..defaults::MAX_CONTROL_CONNECTIONS)
                .map(|_| connect())
                .collect();
            let busy = read_answer(connect());
            drop(idle);
            (too_long, busy)
        });
        let (too_long, busy) = rt.block_on(async move {
            let (tx, _rx) = mpsc::channel(4);
            let listener = tokio::net::UnixListener::from_std(listener).unwrap();
            tokio::spawn(serve(listener, tx));
            tokio::task::spawn_blocking(move || client.join().unwrap())
                .await
                .unwrap()
        });
        let said = too_long["error"].as_str().unwrap_or_default();
        assert!(said.contains("at most 4096 bytes"), "{too_long}");
        let said = busy["error"].as_str().unwrap_or_default();
        assert!(said.starts_with("busy"), "{busy}");
    }

    #[test]
    fn a_round_trip_through_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spp.sock");
        let listener = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client_path = path.clone();
        let client = std::thread::spawn(move || {
            let ok = request(&client_path, Request::Status);
            let refused = request(&client_path, Request::Stop);
            (ok, refused)
        });
        let (ok, refused) = rt.block_on(async move {
            let (tx, mut rx) = mpsc::channel(4);
            let listener = tokio::net::UnixListener::from_std(listener).unwrap();
            tokio::spawn(serve(listener, tx));
            let first = rx.recv().await.unwrap();
            assert_eq!(first.request, Request::Status);
            first
                .reply
                .send(serde_json::json!({"state": "running"}))
                .unwrap();
            let second = rx.recv().await.unwrap();
            second.reply.send(error_response("no")).unwrap();
            // Keep serving until the client has read both answers.
            tokio::task::spawn_blocking(move || client.join().unwrap())
                .await
                .unwrap()
        });
        assert_eq!(ok.unwrap()["state"], "running");
        assert!(matches!(refused, Err(ControlError::Refused(m)) if m == "no"));
        drop(dir);
        let gone = request(&path, Request::Status);
        assert!(
            matches!(gone, Err(ControlError::NotRunning { .. })),
            "{gone:?}"
        );
    }
}
