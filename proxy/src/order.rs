//! Answer order on one TCP connection: answers leave in request order
//! whatever the groups or workers that serve them.
//!
//! A connection's requests not yet finished are kept as *runs*: requests
//! in a row pushed to the same worker slot (a run on a slot answers in
//! order by itself: a worker serves one flow's requests one after another),
//! plus *local* runs for answers the proxy's plugin gives itself (an
//! exception answer for a refused request, a reply from `spp_input` or
//! `spp_route`), which are finished as soon as they are made. The oldest
//! run is the *head*: its answers go straight to the send buffer. Answers
//! of a later run are *held* here, each as a segment tagged with its run,
//! until every earlier run finished; then they move to the send buffer in
//! order ([`Order::advance`]).
//!
//! A request is finished when it leaves its worker: its `seq` completed
//! (`spp_process` returned, or its micro-thread ended), it expired, or it
//! failed. Replies a worker sends after that (a deferred reply from
//! another thread) belong to no run: they queue behind everything pending
//! (a local run at the tail).
//!
//! Which run an answer from a worker slot belongs to must be known without
//! a tag on the response record: [`Order::may_push`] keeps at most one
//! unfinished run per slot (a request goes to a slot only when that slot
//! holds the tail run or none of the connection's unfinished requests), so
//! the unfinished run on the slot is the one. When no slot of the routed
//! group qualifies, the connection holds its framing until its requests in
//! flight have left (`ConnState::Held`).
//!
//! Bounded: the held bytes count against `max_send_buffer` with the send
//! buffer (the caller closes a connection past it, `held_overflow`), and a
//! connection has at most [`MAX_RUNS`] runs (past it, framing holds). The
//! head run sits inline, so a connection served by one worker at a time
//! never allocates here; the rest (run queue, held bytes) is boxed once per
//! connection that pipelines over several slots and kept for its life, and
//! the held bytes use a pooled buffer.

use crate::conn::BufPool;
use std::collections::VecDeque;

/// Runs one connection may have (framing holds past it).
pub const MAX_RUNS: usize = 256;
/// The slot of a local run (answers made by the proxy's plugin).
const LOCAL: u32 = u32::MAX;
/// Bytes of a held segment's header: run id, then length | [`CLOSE_BIT`].
const SEGMENT_HEADER: usize = 8;
/// Set in a segment's length word: close after its bytes.
const CLOSE_BIT: u32 = 1 << 31;

/// Who made an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The worker of this slot, for the connection's unfinished request
    /// there (if any).
    Worker(usize),
    /// The proxy's plugin (exception answers, replies from proxy hooks):
    /// behind every answer pending.
    Local,
}

/// Where an answer goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// To the send buffer now.
    Now,
    /// Held for this run ([`Order::hold`]).
    Held(u32),
}

/// A run of requests on one slot (or a local run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    id: u32,
    slot: u32,
    /// Its requests not finished yet (0 for a local run).
    undone: u32,
}

/// One connection's unfinished requests and held answers.
#[derive(Debug, Default)]
pub struct Order {
    /// The head run, inline.
    head: Option<Run>,
    next_id: u32,
    /// A close is held.
    close_held: bool,
    /// The rest, allocated for a connection's first run after the head
    /// (the connection keeps it): an idle connection stays small.
    more: Option<Box<Tail>>,
}

/// The runs after the head and the held answers.
#[derive(Debug, Default)]
struct Tail {
    /// The runs after the head, oldest first.
    rest: VecDeque<Run>,
    /// Held segments: header, then bytes, 8-aligned.
    held: Vec<u8>,
}

/// What a connection without a [`Tail`] has.
static NO_TAIL: Tail = Tail {
    rest: VecDeque::new(),
    held: Vec::new(),
};

/// What [`Order::advance`] released.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// A held close came up: close the connection after the bytes.
    pub close: bool,
}

impl Order {
    /// Whether no request is unfinished and nothing is held.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    /// Bytes held (headers included), counted against `max_send_buffer`.
    #[inline]
    pub fn held_bytes(&self) -> usize {
        self.t().held.len()
    }

    #[inline]
    fn t(&self) -> &Tail {
        self.more.as_deref().unwrap_or(&NO_TAIL)
    }

    #[inline]
    fn t_mut(&mut self) -> &mut Tail {
        self.more.get_or_insert_with(Box::default)
    }

    /// Whether a close is held (the connection reads no more meanwhile).
    #[inline]
    pub fn close_held(&self) -> bool {
        self.close_held
    }

    #[inline]
    fn tail(&self) -> Option<&Run> {
        self.t().rest.back().or(self.head.as_ref())
    }

    fn runs(&self) -> impl Iterator<Item = &Run> {
        self.head.iter().chain(self.t().rest.iter())
    }

    /// Whether the next request may go to slot `s` without making its
    /// answers ambiguous: `s` holds the tail run, or none of the unfinished
    /// ones, and the run count is below [`MAX_RUNS`].
    #[inline]
    pub fn may_push(&self, s: usize) -> bool {
        match self.tail() {
            None => true,
            Some(t) if t.slot as usize == s => true,
            Some(_) => {
                self.t().rest.len() + 1 < MAX_RUNS
                    && !self.runs().any(|r| r.slot as usize == s && r.undone != 0)
            }
        }
    }

    /// A request was pushed to slot `s` (allowed by [`Self::may_push`]).
    #[inline]
    pub fn pushed(&mut self, s: usize) {
        let slot = s as u32;
        let tail = match self.more.as_deref_mut().and_then(|t| t.rest.back_mut()) {
            Some(t) => Some(t),
            None => self.head.as_mut(),
        };
        let run = match tail {
            Some(t) if t.slot == slot => {
                t.undone += 1;
                return;
            }
            _ => self.new_run(slot, 1),
        };
        self.append(run);
    }

    fn new_run(&mut self, slot: u32, undone: u32) -> Run {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        Run { id, slot, undone }
    }

    fn append(&mut self, run: Run) {
        if self.head.is_none() {
            self.head = Some(run);
        } else {
            self.t_mut().rest.push_back(run);
        }
    }

    /// Where an answer from `origin` goes.
    #[inline]
    pub fn dest(&mut self, origin: Origin) -> Dest {
        let Some(head) = self.head else {
            return Dest::Now;
        };
        if let Origin::Worker(s) = origin {
            let slot = s as u32;
            if head.slot == slot && head.undone != 0 {
                return Dest::Now;
            }
            if let Some(r) = self
                .t()
                .rest
                .iter()
                .find(|r| r.slot == slot && r.undone != 0)
            {
                return Dest::Held(r.id);
            }
        }
        // Local, or after its request finished: behind everything pending.
        match self.t().rest.back() {
            Some(t) if t.slot == LOCAL => Dest::Held(t.id),
            _ => {
                let run = self.new_run(LOCAL, 0);
                self.t_mut().rest.push_back(run);
                Dest::Held(run.id)
            }
        }
    }

    /// Holds `bytes` (then a close if `close`) for run `id`; the held
    /// buffer comes from `pool` when it had none.
    pub fn hold(&mut self, id: u32, bytes: &[u8], close: bool, pool: &mut BufPool) {
        self.close_held |= close;
        let held = &mut self.t_mut().held;
        if held.capacity() == 0 {
            *held = pool.get();
        }
        let len = bytes.len() as u32 | if close { CLOSE_BIT } else { 0 };
        held.extend_from_slice(&id.to_ne_bytes());
        held.extend_from_slice(&len.to_ne_bytes());
        held.extend_from_slice(bytes);
        let pad = held.len().next_multiple_of(SEGMENT_HEADER) - held.len();
        held.extend_from_slice(&[0; SEGMENT_HEADER][..pad]);
    }

    /// One request on slot `s` finished (its answers are all in). Then
    /// [`Self::advance`] releases what it unblocked.
    #[inline]
    pub fn left(&mut self, s: usize) {
        let slot = s as u32;
        if let Some(h) = self
            .head
            .as_mut()
            .filter(|h| h.slot == slot && h.undone != 0)
        {
            h.undone -= 1;
            return;
        }
        if let Some(r) = self
            .more
            .as_deref_mut()
            .and_then(|t| t.rest.iter_mut().find(|r| r.slot == slot && r.undone != 0))
        {
            r.undone -= 1;
        }
    }

    /// Drops finished runs from the head, handing the held answers of each
    /// run that becomes the head to `out`, in order, and stops at a held
    /// close (everything after it is dropped: the connection closes). Cheap
    /// when the head is unfinished. Then [`Self::recycle`].
    #[inline]
    pub fn advance(&mut self, out: impl FnMut(&[u8])) -> Released {
        match self.head {
            Some(h) if h.undone == 0 => self.advance_slow(out),
            _ => Released::default(),
        }
    }

    fn advance_slow(&mut self, mut out: impl FnMut(&[u8])) -> Released {
        while self.head.is_some_and(|h| h.undone == 0) {
            let Some(tail) = self.more.as_deref_mut() else {
                self.head = None;
                break;
            };
            self.head = tail.rest.pop_front();
            let Some(next) = self.head else {
                break;
            };
            if tail.release(next.id, &mut out) {
                self.head = None;
                tail.rest.clear();
                tail.held.clear();
                self.close_held = false;
                return Released { close: true };
            }
        }
        Released::default()
    }

    /// Gives the held buffer back to `pool` once it is empty.
    #[inline]
    pub fn recycle(&mut self, pool: &mut BufPool) {
        if let Some(t) = self.more.as_deref_mut() {
            if t.held.is_empty() && t.held.capacity() != 0 {
                pool.put(std::mem::take(&mut t.held));
            }
        }
    }

    /// Forgets every run and held answer (the connection closes).
    pub fn clear(&mut self, pool: &mut BufPool) {
        self.head = None;
        self.close_held = false;
        if let Some(t) = self.more.as_deref_mut() {
            t.rest.clear();
            t.held.clear();
        }
        self.recycle(pool);
    }
}

impl Tail {
    /// Hands run `id`'s held segments to `out` and removes them. Returns
    /// whether one of them closes.
    fn release(&mut self, id: u32, out: &mut impl FnMut(&[u8])) -> bool {
        let mut read = 0;
        let mut write = 0;
        let mut close = false;
        while read + SEGMENT_HEADER <= self.held.len() {
            let word = |at: usize| {
                let mut b = [0u8; 4];
                b.copy_from_slice(&self.held[at..at + 4]);
                u32::from_ne_bytes(b)
            };
            let (sid, len) = (word(read), word(read + 4));
            let n = (len & !CLOSE_BIT) as usize;
            let size = (SEGMENT_HEADER + n).next_multiple_of(SEGMENT_HEADER);
            if sid == id && !close {
                out(&self.held[read + SEGMENT_HEADER..read + SEGMENT_HEADER + n]);
                close = len & CLOSE_BIT != 0;
            } else {
                self.held.copy_within(read..read + size, write);
                write += size;
            }
            read += size;
        }
        self.held.truncate(write);
        close
    }
}

#[cfg(test)]
#[path = "order_tests.rs"]
mod tests;
