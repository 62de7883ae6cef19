//! [`Leg`]: one downstream call as a state machine over non-blocking
//! sockets, stepped on its micro-thread each time it is resumed:
//! `Start` (pick the destination, open or reuse a connection) →
//! `Connecting` → `Sending` → `Receiving` (read until `WouldBlock`, then
//! the plugin's check) → done with `SPP_OK` or an `SPP_CALL_*` code.
//!
//! An attempt that fails on a pooled connection before any answer byte
//! (the backend closed it while idle) is made again at once on a fresh
//! connection. An L5 call with `SPP_CALL_RETRY` whose first attempt fails
//! (refused, closed, timed out, socket error) is tried once more on
//! another instance; each attempt has half the timeout. Every attempt on
//! an L5 route is reported to L5 with its outcome and latency.

use super::engine::{self, ConnId, Socket};
use super::stats;
use spp_ipc::l5::table::{Route, RouteTable};
use spp_ipc::l5::Sid;
use spp_ipc::record::{monotonic_ns, NS_PER_MS};
use spp_plugin_api::abi::*;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

/// ns per µs.
const NS_PER_US: u64 = 1_000;
/// Draws from L5 looking for an instance other than the one that failed.
const RETRY_DRAWS: usize = 4;

/// Where a leg is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No connection yet (or a new attempt).
    Start,
    /// TCP connect under way.
    Connecting,
    /// Request bytes going out.
    Sending,
    /// Waiting for a complete answer.
    Receiving,
    /// Finished; the result is in the call.
    Done,
}

/// One call in progress.
pub struct Leg<'a> {
    call: &'a mut SppCall,
    routes: Option<&'a RouteTable>,
    state: State,
    conn: Option<ConnId>,
    /// The connection came from the pool (a failure before any answer
    /// byte may be its idle close, not the backend's answer).
    reused: bool,
    /// A failed pooled connection was already replaced once.
    reopened: bool,
    dest: Option<SocketAddr>,
    route: Option<Route>,
    attempts: u8,
    sent: usize,
    got: usize,
    started: u64,
    attempt_started: u64,
    attempt_deadline: u64,
    deadline: u64,
}

impl<'a> Leg<'a> {
    /// A leg for `call` (already validated), starting now.
    pub fn new(call: &'a mut SppCall, routes: Option<&'a RouteTable>, now: u64) -> Self {
        let ms = match call.timeout_ms {
            0 => SPP_CALL_DEFAULT_TIMEOUT_MS,
            ms => ms,
        };
        let deadline = now.saturating_add(u64::from(ms) * NS_PER_MS);
        call.answer_len = 0;
        call.result = SPP_CALL_CANCELLED;
        call.latency_us = 0;
        Leg {
            call,
            routes,
            state: State::Start,
            conn: None,
            reused: false,
            reopened: false,
            dest: None,
            route: None,
            attempts: 0,
            sent: 0,
            got: 0,
            started: now,
            attempt_started: now,
            attempt_deadline: deadline,
            deadline,
        }
    }

    /// Whether it finished.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether it finished with an answer.
    pub fn succeeded(&self) -> bool {
        self.done() && self.call.result == SPP_OK
    }

    /// The call's result code so far.
    pub fn result(&self) -> i32 {
        self.call.result
    }

    /// When it must be looked at again at the latest.
    pub fn wake_at(&self) -> u64 {
        self.attempt_deadline
    }

    /// Does all the I/O it can without blocking.
    pub fn step(&mut self, owner: u32) {
        loop {
            let now = monotonic_ns();
            let before = self.state;
            match self.state {
                State::Start => self.start(owner, now),
                State::Connecting => self.connecting(),
                State::Sending => self.sending(),
                State::Receiving => self.receiving(),
                State::Done => return,
            }
            if self.state == State::Done {
                return;
            }
            if before == State::Sending && self.state == State::Receiving {
                // The answer cannot be there yet: wait for its event
                // (an arrival always raises one) rather than read in vain.
                return;
            }
            if self.state == before {
                // Waiting for an event; or out of time.
                if now >= self.attempt_deadline {
                    self.fail(SPP_CALL_TIMEOUT);
                    continue;
                }
                return;
            }
        }
    }

    /// Ends it as cancelled (`call_many` returned without it).
    pub fn cancel(&mut self) {
        if self.state != State::Done {
            self.drop_conn(false);
            self.finish(SPP_CALL_CANCELLED, monotonic_ns());
        }
    }

    fn start(&mut self, owner: u32, now: u64) {
        self.attempt_started = now;
        self.sent = 0;
        self.got = 0;
        let dest = match self.dest {
            Some(dest) => dest,
            None => match self.pick() {
                Ok(dest) => dest,
                Err(code) => return self.finish(code, now),
            },
        };
        self.dest = Some(dest);
        let opened = engine::with(|engine| {
            if self.call.transport == SPP_CALL_UDP {
                engine.open_udp(dest, owner).map(|id| (id, false))
            } else {
                engine.open_tcp(dest, owner)
            }
        });
        match opened {
            Some(Ok((id, reused))) => {
                self.conn = Some(id);
                self.reused = reused;
                self.state = if reused || self.call.transport == SPP_CALL_UDP {
                    State::Sending
                } else {
                    State::Connecting
                };
            }
            Some(Err(err)) => self.fail(io_code(&err)),
            None => self.finish(SPP_ERR_UNSUPPORTED, now),
        }
    }

    /// The destination: the call's address, or an L5 instance (on a retry,
    /// one other than the failed one if L5 has it).
    fn pick(&mut self) -> Result<SocketAddr, i32> {
        if self.call.flags & SPP_CALL_L5 == 0 {
            return self.call.addr.to_socket_addr().ok_or(SPP_CALL_BAD_ARGS);
        }
        let routes = self.routes.ok_or(SPP_CALL_NO_ROUTE)?;
        let sid = Sid {
            modid: self.call.modid,
            cmdid: self.call.cmdid,
        };
        let failed = self.route.take().map(|route| route.addr);
        let mut route = None;
        for draw in 0..RETRY_DRAWS {
            let picked = if self.call.flags & SPP_CALL_L5_HASH != 0 && draw == 0 {
                routes.pick_hash(sid, self.call.hash_key)
            } else {
                routes.pick(sid, crate::l5::next_random())
            };
            let Ok(picked) = picked else { break };
            let other = Some(picked.addr) != failed;
            route = Some(picked);
            if other {
                break;
            }
        }
        let route = route.ok_or(SPP_CALL_NO_ROUTE)?;
        let addr = route.addr;
        self.route = Some(route);
        Ok(addr)
    }

    fn connecting(&mut self) {
        let connected = self.io(|socket| match socket {
            Socket::Tcp(stream) => match stream.take_error() {
                Ok(Some(err)) | Err(err) => Err(err),
                Ok(None) => match stream.peer_addr() {
                    Ok(_) => Ok(true),
                    Err(err) if err.kind() == io::ErrorKind::NotConnected => Ok(false),
                    Err(err) => Err(err),
                },
            },
            Socket::Udp(_) => Ok(true),
        });
        match connected {
            Some(Ok(true)) => self.state = State::Sending,
            Some(Ok(false)) | None => {}
            Some(Err(err)) => self.fail_io(&err),
        }
    }

    fn sending(&mut self) {
        // SAFETY: the plugin's `req_len` bytes at `req`, valid for the
        // call (checked non-null when `req_len > 0` by `validate`).
        let req = unsafe { bytes(self.call.req, self.call.req_len) };
        let sent = self.sent;
        let Some(written) = self.io(|socket| match socket {
            Socket::Tcp(stream) => stream.write(&req[sent..]),
            Socket::Udp(udp) => udp.send(req),
        }) else {
            return;
        };
        match written {
            Ok(n) => {
                self.sent += n;
                if self.sent >= req.len() || self.call.transport == SPP_CALL_UDP {
                    self.state = State::Receiving;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => self.fail_io(&err),
        }
    }

    fn receiving(&mut self) {
        if self.call.transport == SPP_CALL_UDP {
            return self.receive_datagram();
        }
        let cap = self.call.answer_cap;
        // SAFETY: the plugin's `answer_cap` writable bytes at `answer`,
        // valid for the call (checked non-null by `validate`).
        let answer = unsafe { bytes_mut(self.call.answer, cap) };
        // Read until `WouldBlock` or EOF, except that a short read (it took
        // everything there was) goes to the check first: a complete answer
        // then ends the call one syscall sooner.
        loop {
            let mut drained = false;
            let mut closed = false;
            while self.got < cap {
                let into = &mut answer[self.got..];
                let wanted = into.len();
                let Some(read) = self.io(|socket| match socket {
                    Socket::Tcp(stream) => stream.read(into),
                    Socket::Udp(_) => Err(io::ErrorKind::Unsupported.into()),
                }) else {
                    return;
                };
                match read {
                    Ok(0) => {
                        (drained, closed) = (true, true);
                        break;
                    }
                    Ok(n) => {
                        self.got += n;
                        if n < wanted {
                            break;
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        drained = true;
                        break;
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => return self.fail_io(&err),
                }
            }
            let verdict = if self.got == 0 {
                0
            } else {
                self.check(&answer[..self.got])
            };
            match verdict {
                n if n > 0 && n as usize <= self.got => {
                    let exact = n as usize == self.got && !closed;
                    self.call.answer_len = n as usize;
                    return self.succeed(exact);
                }
                0 if self.got == cap => return self.fail(SPP_CALL_TOO_LARGE),
                0 if closed => return self.fail_closed(),
                // Incomplete: wait for the next arrival once the socket
                // is known empty; else look again.
                0 if drained => return,
                0 => {}
                _ => return self.fail(SPP_CALL_MALFORMED),
            }
        }
    }

    fn receive_datagram(&mut self) {
        let cap = self.call.answer_cap;
        let answer = self.call.answer;
        loop {
            let Some(n) = self.io(|socket| {
                let fd = match socket {
                    Socket::Udp(udp) => std::os::fd::AsRawFd::as_raw_fd(udp),
                    Socket::Tcp(stream) => std::os::fd::AsRawFd::as_raw_fd(stream),
                };
                // SAFETY: `answer` has `cap` writable bytes (`validate`);
                // MSG_TRUNC makes recv return the datagram's real length,
                // never writing past `cap`.
                unsafe { libc::recv(fd, answer.cast(), cap, libc::MSG_TRUNC | libc::MSG_DONTWAIT) }
            }) else {
                return;
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::WouldBlock => return,
                    io::ErrorKind::Interrupted => continue,
                    _ => return self.fail_io(&err),
                }
            }
            let len = n as usize;
            if len > cap {
                return self.fail(SPP_CALL_TOO_LARGE);
            }
            // SAFETY: recv wrote `len` <= `cap` bytes at `answer`.
            let datagram = unsafe { bytes(self.call.answer, len) };
            if self.call.check.is_none() {
                self.call.answer_len = len;
                return self.succeed(false);
            }
            match self.check(datagram) {
                n if n > 0 && n as usize <= len => {
                    self.call.answer_len = n as usize;
                    return self.succeed(false);
                }
                0 => continue,
                _ => return self.fail(SPP_CALL_MALFORMED),
            }
        }
    }

    /// The plugin's check over `buf` (> 0 complete, 0 more, < 0 bad).
    fn check(&self, buf: &[u8]) -> i32 {
        match self.call.check {
            // SAFETY: the plugin's own function and user pointer, called as
            // the header says (on its micro-thread, with readable bytes).
            Some(check) => unsafe { check(self.call.check_user, buf.as_ptr(), buf.len()) },
            None => -1,
        }
    }

    /// Runs `op` (one socket operation, no plugin code) on this leg's
    /// socket; `None` without one.
    fn io<R>(&self, op: impl FnOnce(&mut Socket) -> R) -> Option<R> {
        let id = self.conn?;
        engine::with(|engine| engine.socket(id).map(op)).flatten()
    }

    fn succeed(&mut self, keep: bool) {
        let now = monotonic_ns();
        self.drop_conn(keep);
        self.report(0, now);
        self.finish(SPP_OK, now);
    }

    fn fail_io(&mut self, err: &io::Error) {
        self.fail(io_code(err));
    }

    /// Closed before a complete answer.
    fn fail_closed(&mut self) {
        self.fail(SPP_CALL_CLOSED);
    }

    /// The attempt failed with `code`: on a pooled connection before any
    /// answer byte, again on a fresh one; an L5 call with retry, once more
    /// on another instance; else the call ends with `code`.
    fn fail(&mut self, code: i32) {
        let now = monotonic_ns();
        self.drop_conn(false);
        let stale_pooled = self.reused && self.got == 0 && code != SPP_CALL_TIMEOUT;
        if stale_pooled && !self.reopened {
            self.reopened = true;
            self.state = State::Start;
            return;
        }
        self.report(-1, now);
        stats::failed(self.dest, code);
        let retryable = matches!(
            code,
            SPP_CALL_TIMEOUT | SPP_CALL_REFUSED | SPP_CALL_CLOSED | SPP_CALL_IO
        );
        let may_retry = self.call.flags & (SPP_CALL_L5 | SPP_CALL_RETRY)
            == SPP_CALL_L5 | SPP_CALL_RETRY
            && self.attempts == 0
            && self.routes.is_some()
            && now < self.deadline;
        if retryable && may_retry {
            self.attempts += 1;
            self.attempt_deadline = self.deadline;
            self.dest = None;
            self.state = State::Start;
            return;
        }
        self.finish(code, now);
    }

    fn report(&self, result: i32, now: u64) {
        let latency_us = now.saturating_sub(self.attempt_started) / NS_PER_US;
        if let (Some(route), Some(routes)) = (&self.route, self.routes) {
            routes.report(route, result, latency_us);
        }
        if result >= 0 {
            stats::succeeded(self.dest, now.saturating_sub(self.attempt_started));
        }
    }

    fn drop_conn(&mut self, keep: bool) {
        if let Some(id) = self.conn.take() {
            engine::with(|engine| engine.release(id, keep));
        }
    }

    fn finish(&mut self, code: i32, now: u64) {
        self.call.result = code;
        self.call.latency_us =
            u32::try_from(now.saturating_sub(self.started) / NS_PER_US).unwrap_or(u32::MAX);
        if let Some(route) = &self.route {
            self.call.route = crate::l5::to_abi(route);
        }
        self.state = State::Done;
    }
}

impl Drop for Leg<'_> {
    /// A leg dropped while its connection is open (unwinding) closes it.
    fn drop(&mut self) {
        self.drop_conn(false);
    }
}

/// The call code of a socket error.
fn io_code(err: &io::Error) -> i32 {
    match err.kind() {
        io::ErrorKind::ConnectionRefused
        | io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkUnreachable
        | io::ErrorKind::AddrNotAvailable => SPP_CALL_REFUSED,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => SPP_CALL_CLOSED,
        io::ErrorKind::TimedOut => SPP_CALL_TIMEOUT,
        _ => {
            tracing::debug!(%err, "downstream socket error");
            SPP_CALL_IO
        }
    }
}

/// `len` bytes at `ptr` (none when `len` is 0).
///
/// # Safety
/// `ptr` must be valid for reading `len` bytes while the slice is used.
unsafe fn bytes<'b>(ptr: *const u8, len: usize) -> &'b [u8] {
    if len == 0 || ptr.is_null() {
        &[]
    } else {
        // SAFETY: forwarded from the caller.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

/// `len` writable bytes at `ptr` (none when `len` is 0).
///
/// # Safety
/// `ptr` must be valid for writing `len` bytes while the slice is used,
/// and not aliased.
unsafe fn bytes_mut<'b>(ptr: *mut u8, len: usize) -> &'b mut [u8] {
    if len == 0 || ptr.is_null() {
        &mut []
    } else {
        // SAFETY: forwarded from the caller.
        unsafe { std::slice::from_raw_parts_mut(ptr, len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_errors_map_to_distinct_codes() {
        let code = |kind: io::ErrorKind| io_code(&io::Error::from(kind));
        assert_eq!(code(io::ErrorKind::ConnectionRefused), SPP_CALL_REFUSED);
        assert_eq!(code(io::ErrorKind::ConnectionReset), SPP_CALL_CLOSED);
        assert_eq!(code(io::ErrorKind::BrokenPipe), SPP_CALL_CLOSED);
        assert_eq!(code(io::ErrorKind::TimedOut), SPP_CALL_TIMEOUT);
        assert_eq!(code(io::ErrorKind::OutOfMemory), SPP_CALL_IO);
    }
}
