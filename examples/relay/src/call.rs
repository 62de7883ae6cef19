//! One call to a backend: send one framed request, read one framed answer
//! (4-byte big-endian payload length, then the payload), all within a
//! deadline.
//!
//! Connections are kept per thread ([`MAX_CACHED`] at most, one per
//! address) and reused by the next call to the same address. A connection
//! that failed in any way is dropped, never reused (an answer arriving late
//! would otherwise be taken for the next call's). A cached connection the
//! backend closed while idle shows up as a reset or an end of stream before
//! any answer byte: the call then dials once afresh within the same
//! deadline, so an idle close is not reported as a backend failure.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Connections kept per thread at most (the oldest goes first).
pub const MAX_CACHED: usize = 16;

/// Bytes of a frame's length prefix.
const PREFIX: usize = 4;

/// L5's code for a timeout, which a timed-out call answers.
pub const CODE_TIMEOUT: i32 = -9999;
/// The code every other call failure answers (refused, reset, closed,
/// answer too large).
pub const CODE_CALL_FAILED: i32 = -1;

thread_local! {
    /// This thread's idle connections, oldest first.
    static CACHE: RefCell<Vec<(SocketAddr, TcpStream)>> = const { RefCell::new(Vec::new()) };
}

/// Why a call failed.
#[derive(Debug)]
pub enum CallError {
    /// The deadline passed (connecting, sending or reading).
    Timeout,
    /// The connection was reset or closed before any answer byte arrived.
    Reset,
    /// The connection closed in the middle of the answer.
    Closed,
    /// The answer announces more than `max_payload` bytes.
    TooLarge(usize),
    /// Any other I/O error (connection refused, say).
    Io(io::Error),
}

impl CallError {
    /// The code an error answer carries ([`CODE_TIMEOUT`] or
    /// [`CODE_CALL_FAILED`]).
    pub fn code(&self) -> i32 {
        match self {
            CallError::Timeout => CODE_TIMEOUT,
            _ => CODE_CALL_FAILED,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Timeout => write!(f, "timed out"),
            CallError::Reset => write!(f, "connection reset before the answer"),
            CallError::Closed => write!(f, "connection closed in the middle of the answer"),
            CallError::TooLarge(n) => write!(f, "answer of {n} bytes is too large"),
            CallError::Io(err) => write!(f, "{err}"),
        }
    }
}

/// Sends `request` (one whole frame) to `addr` and returns the answer
/// frame (prefix included), all before `timeout` has passed.
pub fn call(
    addr: SocketAddr,
    request: &[u8],
    timeout: Duration,
    max_payload: usize,
) -> Result<Vec<u8>, CallError> {
    let deadline = Instant::now() + timeout;
    if let Some(mut stream) = take_cached(addr) {
        match exchange(&mut stream, request, deadline, max_payload) {
            Ok(answer) => {
                keep(addr, stream);
                return Ok(answer);
            }
            // Closed while idle: dial again below.
            Err(CallError::Reset) => {}
            Err(err) => return Err(err),
        }
    }
    let mut stream = TcpStream::connect_timeout(&addr, remaining(deadline)?).map_err(classify)?;
    stream.set_nodelay(true).map_err(CallError::Io)?;
    let answer = exchange(&mut stream, request, deadline, max_payload)?;
    keep(addr, stream);
    Ok(answer)
}

/// Drops this thread's cached connections.
pub fn forget_all() {
    let _ = CACHE.try_with(|cache| cache.borrow_mut().clear());
}

/// Connections this thread has cached.
#[cfg(test)]
pub fn cached() -> usize {
    CACHE.with(|cache| cache.borrow().len())
}

fn take_cached(addr: SocketAddr) -> Option<TcpStream> {
    CACHE
        .try_with(|cache| {
            let mut cache = cache.borrow_mut();
            let at = cache.iter().position(|(a, _)| *a == addr)?;
            Some(cache.remove(at).1)
        })
        .ok()
        .flatten()
}

fn keep(addr: SocketAddr, stream: TcpStream) {
    let _ = CACHE.try_with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.len() >= MAX_CACHED {
            cache.remove(0);
        }
        cache.push((addr, stream));
    });
}

/// Time left before `deadline`; a timeout once none is.
fn remaining(deadline: Instant) -> Result<Duration, CallError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(CallError::Timeout)
    } else {
        Ok(left)
    }
}

/// Maps an I/O error; a reset or broken pipe is [`CallError::Reset`] (only
/// meaningful before any answer byte).
fn classify(err: io::Error) -> CallError {
    match err.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => CallError::Timeout,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::NotConnected => CallError::Reset,
        _ => CallError::Io(err),
    }
}

/// Writes the request and reads one answer frame on `stream`.
fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    deadline: Instant,
    max_payload: usize,
) -> Result<Vec<u8>, CallError> {
    let mut sent = 0;
    while sent < request.len() {
        stream
            .set_write_timeout(Some(remaining(deadline)?))
            .map_err(CallError::Io)?;
        match stream.write(&request[sent..]) {
            Ok(0) => return Err(CallError::Reset),
            Ok(n) => sent += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(classify(err)),
        }
    }
    let mut prefix = [0u8; PREFIX];
    read_full(stream, &mut prefix, deadline, true)?;
    let payload = u32::from_be_bytes(prefix) as usize;
    if payload > max_payload {
        return Err(CallError::TooLarge(payload));
    }
    let mut frame = vec![0u8; PREFIX + payload];
    frame[..PREFIX].copy_from_slice(&prefix);
    read_full(stream, &mut frame[PREFIX..], deadline, false)?;
    Ok(frame)
}

/// Fills `buf` from `stream` before `deadline`. `first`: nothing of the
/// answer has arrived before `buf`, so a close at its start is a
/// [`CallError::Reset`].
fn read_full(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
    first: bool,
) -> Result<(), CallError> {
    let mut got = 0;
    while got < buf.len() {
        stream
            .set_read_timeout(Some(remaining(deadline)?))
            .map_err(CallError::Io)?;
        let nothing_yet = first && got == 0;
        match stream.read(&mut buf[got..]) {
            Ok(0) if nothing_yet => return Err(CallError::Reset),
            Ok(0) => return Err(CallError::Closed),
            Ok(n) => got += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                return Err(match classify(err) {
                    CallError::Reset if !nothing_yet => CallError::Closed,
                    other => other,
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use spp_plugin_api::framing::encode_u32_be_prefixed as frame;
    use std::net::TcpListener;
    use std::thread::JoinHandle;

    const TIMEOUT: Duration = Duration::from_secs(10);

    /// Reads one request frame from `conn`; `None` at end of stream.
    fn read_request(conn: &mut TcpStream) -> Option<Vec<u8>> {
        let mut prefix = [0u8; PREFIX];
        conn.read_exact(&mut prefix).ok()?;
        let mut payload = vec![0u8; u32::from_be_bytes(prefix) as usize];
        conn.read_exact(&mut payload).ok()?;
        Some(payload)
    }

    /// A backend answering "re:" + payload on each of `conns` connections,
    /// closing each after `per_conn` requests. Returns its address and the
    /// requests it saw per connection.
    fn backend(conns: usize, per_conn: usize) -> (SocketAddr, JoinHandle<Vec<usize>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..conns {
                let (mut conn, _) = listener.accept().unwrap();
                conn.set_read_timeout(Some(TIMEOUT)).unwrap();
                let mut n = 0;
                while n < per_conn {
                    let Some(payload) = read_request(&mut conn) else {
                        break;
                    };
                    conn.write_all(&frame(&[b"re:", &payload[..]].concat()))
                        .unwrap();
                    n += 1;
                }
                seen.push(n);
            }
            seen
        });
        (addr, handle)
    }

    #[test]
    fn calls_reuse_the_connection_and_redial_after_an_idle_close() {
        forget_all();
        // Two requests on the first connection, then it is closed; the
        // third call finds it dead and dials again.
        let (addr, backend) = backend(2, 2);
        for i in 0..4 {
            let answer = call(addr, &frame(format!("q{i}").as_bytes()), TIMEOUT, 100).unwrap();
            assert_eq!(answer, frame(format!("re:q{i}").as_bytes()));
            assert_eq!(cached(), 1);
        }
        forget_all();
        assert_eq!(backend.join().unwrap(), vec![2, 2]);
    }

    #[test]
    fn a_refused_connection_fails_and_is_not_cached() {
        forget_all();
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        // The listener is gone: nothing accepts on `addr` any more.
        let err = call(addr, &frame(b"x"), TIMEOUT, 100).unwrap_err();
        assert!(matches!(err, CallError::Io(_)), "{err:?}");
        assert_eq!(err.code(), CODE_CALL_FAILED);
        assert_eq!(cached(), 0);
    }

    #[test]
    fn a_silent_backend_times_out_and_its_connection_is_dropped() {
        forget_all();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let err = call(addr, &frame(b"x"), Duration::from_millis(50), 100).unwrap_err();
        assert!(matches!(err, CallError::Timeout), "{err:?}");
        assert_eq!(err.code(), CODE_TIMEOUT);
        assert_eq!(cached(), 0);
    }

    #[test]
    fn oversized_or_truncated_answers_fail() {
        forget_all();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            read_request(&mut conn).unwrap();
            conn.write_all(&frame(&[7; 101])).unwrap();
            let (mut conn, _) = listener.accept().unwrap();
            read_request(&mut conn).unwrap();
            // Promises 10 bytes, sends 3, closes.
            conn.write_all(&[0, 0, 0, 10, 1, 2, 3]).unwrap();
        });
        let err = call(addr, &frame(b"x"), TIMEOUT, 100).unwrap_err();
        assert!(matches!(err, CallError::TooLarge(101)), "{err:?}");
        let err = call(addr, &frame(b"x"), TIMEOUT, 100).unwrap_err();
        assert!(matches!(err, CallError::Closed), "{err:?}");
        assert_eq!(cached(), 0);
        server.join().unwrap();
    }
}
