//! The persistent TCP connection driver: one task per connection, closed
//! or open loop, requests pipelined on the connection and answered in
//! order.
//!
//! The task is a small event loop over the socket's readiness (no split
//! halves, no extra tasks): queue the requests that are due, write what the
//! socket takes, read what arrived and match it to the oldest outstanding
//! request. A closed connection, an unframeable response or a timeout ends
//! the connection's *session*: its outstanding requests are counted as
//! aborted, and it reconnects (counted) while the measured window lasts.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::rc::Rc;
use std::time::Instant;

use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::buffer::InBuf;
use super::connect::connect_tcp;
use super::driver::{earliest, Feed, ThreadCtx, READ_CHUNK, RECONNECT_BACKOFF};
use super::protocol::Frame;
use super::timer::Timer;

/// A request written (or queued to be written) and not yet answered.
#[derive(Clone, Copy, Debug)]
struct Pending {
    seq: u64,
    /// When its latency counts from.
    sent: Instant,
}

/// Why a session ended.
enum SessionEnd {
    /// The run is over for this connection.
    Done,
    /// The connection is unusable; reconnect.
    Broken,
}

/// What a read produced.
enum Received {
    /// Responses (or nothing yet); carry on.
    More,
    /// The peer closed or reset the connection.
    Closed,
    /// The bytes cannot be framed: the stream is out of step.
    Invalid,
}

/// One connection's buffers and outstanding requests (kept across
/// reconnects so buffers are reused).
struct Conn {
    out: Vec<u8>,
    written: usize,
    inbuf: InBuf,
    scanned: usize,
    outstanding: VecDeque<Pending>,
    next_seq: u64,
}

impl Conn {
    fn new() -> Self {
        Conn {
            out: Vec::new(),
            written: 0,
            inbuf: InBuf::new(READ_CHUNK),
            scanned: 0,
            outstanding: VecDeque::new(),
            next_seq: 0,
        }
    }

    fn has_output(&self) -> bool {
        self.written < self.out.len()
    }

    /// Writes as much queued output as the socket takes now.
    fn flush(&mut self, stream: &TcpStream) -> io::Result<()> {
        while self.has_output() {
            match stream.try_write(&self.out[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.written = 0;
        Ok(())
    }

    /// Reads once and consumes every whole response.
    fn receive(&mut self, ctx: &ThreadCtx, stream: &TcpStream) -> Received {
        match read_once(stream, self.inbuf.spare(READ_CHUNK)) {
            Ok(0) => return Received::Closed,
            Ok(n) => self.inbuf.advance(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                return Received::More
            }
            Err(_) => return Received::Closed,
        }
        let now = Instant::now();
        let mut rec = ctx.recorder.borrow_mut();
        // Each pass consumes at least one byte (every frame is non-empty),
        // so this ends within the buffer's length.
        loop {
            match ctx.codec.frame(self.inbuf.filled(), &mut self.scanned) {
                Frame::Incomplete => return Received::More,
                Frame::Invalid => {
                    let sent = self.outstanding.pop_front().map_or(now, |p| p.sent);
                    rec.mismatch(sent);
                    return Received::Invalid;
                }
                Frame::Complete(len) => {
                    let frame = &self.inbuf.filled()[..len];
                    match self.outstanding.pop_front() {
                        Some(p) if ctx.codec.check(p.seq, frame) => rec.success(p.sent, now),
                        Some(p) => rec.mismatch(p.sent),
                        // A response nobody asked for.
                        None => rec.mismatch(now),
                    }
                    self.inbuf.consume(len);
                    self.scanned = 0;
                }
            }
        }
    }

    /// The connection is gone: its outstanding requests are lost.
    fn abort(&mut self, ctx: &ThreadCtx) {
        let mut rec = ctx.recorder.borrow_mut();
        for p in self.outstanding.drain(..) {
            rec.aborted(p.sent);
        }
        self.out.clear();
        self.written = 0;
        self.inbuf.clear();
        self.scanned = 0;
    }
}

/// One `read` on the socket. A short read means the socket was drained,
/// so the readiness is cleared right away (as tokio's own `poll_read`
/// does): the next wait goes to epoll instead of costing a `read` that
/// returns `EAGAIN`, one syscall less per response.
fn read_once(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let room = buf.len();
    let mut got = 0;
    let result = stream.try_io(Interest::READABLE, || {
        got = (&*SockRef::from(stream)).read(buf)?;
        if got > 0 && got < room {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(got)
        }
    });
    match result {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        other => other,
    }
}

/// Drives one connection until the run ends.
pub async fn drive(ctx: Rc<ThreadCtx>, mut stream: TcpStream, mut feed: Feed) {
    let mut conn = Conn::new();
    let mut timer = feed.timer(ctx.clock.hard_stop());
    // Each pass either ends the run for this connection or reconnects;
    // reconnecting gives up when the measured window closes.
    loop {
        match session(&ctx, &stream, &mut conn, &mut feed, &mut timer).await {
            SessionEnd::Done => break,
            SessionEnd::Broken => {
                conn.abort(&ctx);
                drop(stream);
                match reconnect(&ctx).await {
                    Some(s) => stream = s,
                    None => break,
                }
            }
        }
    }
    feed.abandon(&ctx);
}

async fn session(
    ctx: &ThreadCtx,
    stream: &TcpStream,
    conn: &mut Conn,
    feed: &mut Feed,
    timer: &mut Timer,
) -> SessionEnd {
    let clock = &ctx.clock;
    // Bounded by the clock: every pass either waits for the socket or the
    // timer, and the timer never sleeps past the hard stop.
    loop {
        let now = Instant::now();
        if let Some(&oldest) = conn.outstanding.front() {
            if oldest.sent + clock.timeout <= now {
                conn.outstanding.pop_front();
                ctx.recorder.borrow_mut().timeout(oldest.sent);
                return SessionEnd::Broken;
            }
        }
        if now >= clock.hard_stop() {
            return SessionEnd::Done;
        }
        feed.due(ctx, conn.outstanding.len(), now, |sent| {
            let seq = conn.next_seq;
            conn.next_seq = seq.wrapping_add(1);
            ctx.codec.write_request(seq, &mut conn.out);
            conn.outstanding.push_back(Pending { seq, sent });
        });
        if !clock.sending(now) && conn.outstanding.is_empty() {
            return SessionEnd::Done;
        }
        if conn.flush(stream).is_err() {
            ctx.recorder.borrow_mut().closed(now);
            return SessionEnd::Broken;
        }
        let interest = if conn.has_output() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let wake = earliest(
            clock,
            [
                conn.outstanding.front().map(|p| p.sent + clock.timeout),
                feed.next_wake(clock),
                Some(clock.measure_until).filter(|_| clock.sending(now)),
            ],
        );
        timer.arm(wake, now);
        tokio::select! {
            biased;
            ready = stream.ready(interest) => {
                let readable = match ready {
                    Ok(r) => r.is_readable() || r.is_read_closed(),
                    Err(_) => {
                        ctx.recorder.borrow_mut().closed(now);
                        return SessionEnd::Broken;
                    }
                };
                if readable {
                    match conn.receive(ctx, stream) {
                        Received::More => {}
                        Received::Closed => {
                            ctx.recorder.borrow_mut().closed(Instant::now());
                            return SessionEnd::Broken;
                        }
                        Received::Invalid => return SessionEnd::Broken,
                    }
                }
            }
            () = timer.fired() => {}
        }
    }
}

/// Re-opens the connection, retrying while the measured window lasts.
async fn reconnect(ctx: &ThreadCtx) -> Option<TcpStream> {
    // Bounded: each attempt takes at least the backoff or succeeds, and
    // attempts stop when sending stops.
    loop {
        let now = Instant::now();
        if !ctx.clock.sending(now) {
            return None;
        }
        match connect_tcp(ctx.addr, ctx.clock.timeout).await {
            Ok(s) => {
                ctx.recorder.borrow_mut().reconnect(now);
                return Some(s);
            }
            Err(_) => {
                ctx.recorder.borrow_mut().connect_error(now);
                tokio::time::sleep(RECONNECT_BACKOFF).await;
            }
        }
    }
}
