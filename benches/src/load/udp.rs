//! The UDP socket driver: one task per connected socket, closed or open
//! loop, one datagram per request and per response.
//!
//! Echo responses are matched to their request by the sequence number the
//! payload carries (payloads of at least 8 bytes), so loss and reordering
//! are handled; other protocols match first in, first out. An unanswered
//! request times out and frees its slot; a response arriving after that is
//! counted as late (not an error). ICMP "port unreachable" reports count
//! as closed.

use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::time::Instant;

use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::driver::{earliest, Feed, ThreadCtx};
use super::record::Recorder;

/// Receive buffer: the largest datagram.
const RECV_BUF_BYTES: usize = 1 << 16;
/// Most datagrams received per readiness event before re-checking timers.
const MAX_RECV_BATCH: usize = 64;

/// A request and whether it is settled (answered or failed).
#[derive(Clone, Copy, Debug)]
struct Pending {
    seq: u64,
    sent: Instant,
    done: bool,
}

/// One socket's requests. `outstanding` is ordered by `seq`; its last
/// `unsent` entries are queued but not yet sent.
struct Sock {
    outstanding: VecDeque<Pending>,
    unsent: usize,
    next_seq: u64,
    out: Vec<u8>,
    buf: Vec<u8>,
    by_seq: bool,
}

impl Sock {
    /// Drops settled requests from the front and times out the expired.
    fn expire(&mut self, ctx: &ThreadCtx, now: Instant) {
        let mut rec = ctx.recorder.borrow_mut();
        while let Some(&front) = self.outstanding.front() {
            if !front.done && front.sent + ctx.clock.timeout > now {
                break;
            }
            if !front.done {
                rec.timeout(front.sent);
            }
            self.outstanding.pop_front();
        }
        self.unsent = self.unsent.min(self.outstanding.len());
    }

    /// Sends queued requests while the socket takes them.
    fn send(&mut self, ctx: &ThreadCtx, sock: &UdpSocket, now: Instant) {
        while self.unsent > 0 {
            let index = self.outstanding.len() - self.unsent;
            let Some(p) = self.outstanding.get_mut(index) else {
                self.unsent = 0;
                return;
            };
            self.out.clear();
            ctx.codec.write_request(p.seq, &mut self.out);
            match sock.try_send(&self.out) {
                Ok(_) => self.unsent -= 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    // Refused (ICMP) or another send error: this request is lost.
                    p.done = true;
                    let mut rec = ctx.recorder.borrow_mut();
                    rec.closed(now);
                    rec.aborted(p.sent);
                    self.unsent -= 1;
                }
            }
        }
    }

    /// Receives the datagrams that are waiting.
    fn receive(&mut self, ctx: &ThreadCtx, sock: &UdpSocket) {
        for _ in 0..MAX_RECV_BATCH {
            let n = match sock.try_recv(&mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    ctx.recorder.borrow_mut().closed(Instant::now());
                    continue;
                }
            };
            let now = Instant::now();
            let mut rec = ctx.recorder.borrow_mut();
            if self.by_seq {
                self.settle_by_seq(ctx, &mut rec, n, now);
            } else {
                self.settle_in_order(ctx, &mut rec, n, now);
            }
        }
    }

    fn settle_by_seq(&mut self, ctx: &ThreadCtx, rec: &mut Recorder, n: usize, now: Instant) {
        let datagram = &self.buf[..n];
        let Some(seq) = ctx.codec.datagram_seq(datagram) else {
            // Garbled: it names no request (which will time out).
            rec.mismatch(now);
            return;
        };
        match self.outstanding.binary_search_by_key(&seq, |p| p.seq) {
            Ok(i) => match self.outstanding.get_mut(i) {
                Some(p) if !p.done => {
                    p.done = true;
                    if ctx.codec.check_datagram(seq, datagram) {
                        rec.success(p.sent, now);
                    } else {
                        rec.mismatch(p.sent);
                    }
                }
                _ => rec.late(now),
            },
            Err(_) if seq < self.next_seq => rec.late(now),
            Err(_) => rec.mismatch(now),
        }
    }

    fn settle_in_order(&mut self, ctx: &ThreadCtx, rec: &mut Recorder, n: usize, now: Instant) {
        let datagram = &self.buf[..n];
        let sent_count = self.outstanding.len() - self.unsent;
        let oldest = self
            .outstanding
            .iter_mut()
            .take(sent_count)
            .find(|p| !p.done);
        match oldest {
            Some(p) => {
                p.done = true;
                if ctx.codec.check_datagram(p.seq, datagram) {
                    rec.success(p.sent, now);
                } else {
                    rec.mismatch(p.sent);
                }
            }
            None => rec.mismatch(now),
        }
    }
}

/// Drives one socket until the run ends.
pub async fn drive(ctx: Rc<ThreadCtx>, sock: UdpSocket, mut feed: Feed) {
    let clock = ctx.clock;
    let mut s = Sock {
        outstanding: VecDeque::new(),
        unsent: 0,
        next_seq: 0,
        out: Vec::with_capacity(ctx.codec.request_len()),
        buf: vec![0; RECV_BUF_BYTES],
        by_seq: ctx.codec.matches_by_seq(),
    };
    let mut timer = feed.timer(clock.hard_stop());
    // Bounded by the clock: each pass waits for the socket or the timer,
    // and the timer never sleeps past the hard stop.
    loop {
        let now = Instant::now();
        s.expire(&ctx, now);
        if now >= clock.hard_stop() {
            break;
        }
        feed.due(&ctx, s.outstanding.len(), now, |sent| {
            let seq = s.next_seq;
            s.next_seq = seq.wrapping_add(1);
            s.outstanding.push_back(Pending {
                seq,
                sent,
                done: false,
            });
            s.unsent += 1;
        });
        if !clock.sending(now) && s.outstanding.is_empty() {
            break;
        }
        s.send(&ctx, &sock, now);
        let interest = if s.unsent > 0 {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        // After expire() the front is the oldest unsettled request.
        let wake = earliest(
            &clock,
            [
                s.outstanding.front().map(|p| p.sent + clock.timeout),
                feed.next_wake(&clock),
                Some(clock.measure_until).filter(|_| clock.sending(now)),
            ],
        );
        timer.arm(wake, now);
        tokio::select! {
            biased;
            ready = sock.ready(interest) => match ready {
                Ok(r) if r.is_readable() => s.receive(&ctx, &sock),
                Ok(_) => {}
                Err(_) => {
                    // The socket is unusable: its requests are lost.
                    let mut rec = ctx.recorder.borrow_mut();
                    rec.closed(now);
                    for p in s.outstanding.drain(..).filter(|p| !p.done) {
                        rec.aborted(p.sent);
                    }
                    break;
                }
            },
            () = timer.fired() => {}
        }
    }
    feed.abandon(&ctx);
}
