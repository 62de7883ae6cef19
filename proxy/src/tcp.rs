//! TCP: accepting connections (with the connection cap) and the read side
//! — bytes into the shared scratch buffer, cut into requests by
//! `spp_input`, each handed to `Proxy::submit`.
//!
//! Framing: `spp_input` is called on the bytes at hand until it needs
//! more, so many pipelined requests in one read are all queued, and a
//! request split over many reads is kept in the connection's `rbuf` until
//! it is complete. A result larger than the bytes at hand is a plugin error
//! ([`crate::overrun`]): the connection is closed (`input_overrun`). Once
//! `max_request_size` bytes are buffered without a complete request, or
//! `spp_input` names a longer one, the connection is closed (`oversized`);
//! a negative result closes it too (`frame_errors`).
//! Framing stops as soon as a hook run inside it closed the connection or
//! asked for it to close (an exception hook's reply overflowing the send
//! buffer, `host->close`): no later request is framed, routed or queued.
//!
//! Holding: a connection's requests in flight all sit on one worker (its
//! affinity, kept by the dispatcher's ledger), so that their answers come
//! back in order. When that worker takes nothing more (it is draining, or
//! gone and its requests are about to fail), the next request must not
//! overtake them on another worker: framing stops before it
//! (`ConnState::Held`), the unframed bytes stay in
//! `rbuf` and the socket is not read, so the connection's memory stays
//! bounded by what one read brought. When its last request in flight
//! leaves (answered, expired or failed), `Clients::requests_emptied` lists
//! it and `Proxy::resume_held` frames its buffered bytes at the end of the
//! same turn, then reads the socket again (its readiness edge may have
//! passed meanwhile). The wait is bounded: a draining worker finishes what
//! it holds within its `drain_timeout`, and a dead one's requests fail at
//! once. The check costs one look per read, and only for a connection with
//! requests in flight.
//!
//! Framing also holds before a request whose routed group has no worker
//! it may go to without blurring answer order (`crate::order`: every
//! accepting worker of the group holds an earlier unfinished request of
//! the connection, not its latest): its group is kept in `Conn::routed`
//! so it is not routed twice, and it is framed again when the requests in
//! flight have left, as above.
//!
//! Slow clients: a connection left holding a partial request is listed,
//! stamped with when that request started (`crate::partial`); the idle
//! sweep closes it once `request_timeout` passed, and at the connection
//! cap a newcomer takes the place of the one that has waited longest. A
//! FIN that comes with the last bytes is read in the same turn (the event
//! says the peer closed, so the socket is read until it ends), so the
//! connection closes as soon as its requests are answered.
//!
//! Each framing starts by reading the clock the requests it queues are
//! stamped with (see `Proxy::submit`). Every hook runs through the hooks
//! runner, which applies the plugin's queued `reply`/`close` calls right
//! after it.

use crate::clients::{Clients, CloseReason};
use crate::conn::ConnState;
use crate::dispatch::Affinity;
use crate::event_loop::Proxy;
use crate::hooks::Verdict;
use crate::io::Accepted;
use crate::order::Origin;
use crate::requests::NotQueued;
use mio::net::TcpListener;
use spp_plugin_api::abi::{SppAddr, SppConnInfo, SPP_HOOK_PANICKED};
use std::io::{self, Read};

/// Connections accepted from one listener per loop turn before others get
/// a go.
pub const MAX_ACCEPTS_PER_TURN: usize = 128;
/// Reads from one connection per loop turn before others get a go.
pub const MAX_READS_PER_TURN: usize = 4;

/// One inherited TCP listener.
pub struct TcpListenerEntry {
    /// The socket (non-blocking).
    pub sock: TcpListener,
    /// Index of its address in the config's `listen` list.
    pub index: u16,
    /// Its bound address when that is a specific IP (then every accepted
    /// connection's local address); `None` for a wildcard bind.
    pub local: Option<SppAddr>,
}

/// How framing a buffer ended.
enum Framed {
    /// Every complete request was queued; the rest (if any) is partial.
    More,
    /// Close the connection now.
    Abort(CloseReason),
    /// Close once pending bytes are written; ignore further input.
    CloseAfterFlush,
    /// A hook closed the connection already.
    Closed,
    /// Framing is on hold (`ConnState::Held`); the rest waits in `rbuf`.
    Held,
}

impl Proxy {
    /// Accepts from listener `li` until it would block (or the turn's share
    /// is used; then it is listed for the next turn).
    pub(crate) fn accept_ready(&mut self, li: usize) {
        for _ in 0..MAX_ACCEPTS_PER_TURN {
            match self.io.accept(li, &mut self.clients.stats.conns_refused) {
                Accepted::Conn(stream, peer) => {
                    if self.clients.conns.is_full() {
                        // Slowloris: the newcomer takes the place of the
                        // oldest partial request, if any (`crate::partial`).
                        self.hooks
                            .with(&mut self.clients, |c, hook| c.evict_partial(hook));
                    }
                    self.clients
                        .admit(self.io.registry(), &self.io.listeners[li], stream, peer);
                }
                Accepted::Drained | Accepted::Starved => return,
                Accepted::Skipped => {}
            }
        }
        self.io.pending_accepts.push(li);
    }

    /// Reads what connection `slot` has (bounded per turn), framing and
    /// queueing every complete request. `until_empty`: a short read does
    /// not end the reading, the socket is read until it would block or
    /// ends — when the event says the peer shut its side (the FIN came
    /// with the last bytes, and no further edge will come for it) or the
    /// connection had more than its share last turn.
    pub(crate) fn conn_readable(&mut self, slot: u32, until_empty: bool) {
        self.turn_reads += 1;
        let mut scratch = self.io.take_scratch();
        let recv_time_us = self.clock.wall_us;
        let mut again = true;
        for _ in 0..MAX_READS_PER_TURN {
            let Some(conn) = self.clients.conns.get_mut(slot) else {
                again = false;
                break;
            };
            if self.life.draining || !conn.reads() {
                again = false;
                break;
            }
            match conn.stream.read(&mut scratch) {
                Ok(0) => {
                    conn.state = ConnState::PeerClosed;
                    // A partial request can no longer complete.
                    self.clients.partial.unlink(&mut self.clients.conns, slot);
                    self.clients.mark_flush(slot);
                    again = false;
                    break;
                }
                Ok(n) => {
                    conn.last_active_ms = self.clients.now_ms;
                    conn.info.recv_time_us = recv_time_us;
                    self.clients.stats.bytes_in += n as u64;
                    self.on_bytes(slot, &scratch[..n]);
                    if n < scratch.len() && !until_empty {
                        // A short read emptied the socket; the next arrival
                        // raises a new edge.
                        again = false;
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    again = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(flow = conn.info.flow, "read failed: {e}");
                    self.hooks.with(&mut self.clients, |c, hook| {
                        c.close_conn(hook, slot, CloseReason::Broken);
                    });
                    again = false;
                    break;
                }
            }
        }
        if again {
            self.clients.list_read(slot);
        }
        self.io.put_scratch(scratch);
    }

    /// Frames `data` just read on connection `slot`, behind any partial
    /// request it already holds.
    fn on_bytes(&mut self, slot: u32, data: &[u8]) {
        let Some(conn) = self.clients.conns.get_mut(slot) else {
            return;
        };
        let info = conn.info;
        let (used, outcome) = if conn.rbuf.is_empty() {
            // Common case: frame straight from the scratch buffer.
            let (used, outcome) = self.frame(&info, data);
            // Keep a partial request; on a hold keep every unframed byte; on
            // an abort keep the rest too, for the close hook's `leftover`.
            let keep = matches!(outcome, Framed::More | Framed::Held | Framed::Abort(_))
                && used < data.len();
            if let (true, Some(conn)) = (keep, self.clients.conns.lookup_mut(info.flow)) {
                if conn.rbuf.capacity() == 0 {
                    conn.rbuf = self.clients.pool.get();
                }
                conn.rbuf.extend_from_slice(&data[used..]);
            }
            (used, outcome)
        } else {
            let mut rbuf = std::mem::take(&mut conn.rbuf);
            rbuf.extend_from_slice(data);
            let (used, outcome) = self.frame(&info, &rbuf);
            match (&outcome, self.clients.conns.lookup_mut(info.flow)) {
                (Framed::More | Framed::Held, Some(conn)) if used < rbuf.len() => {
                    rbuf.drain(..used);
                    conn.rbuf = rbuf;
                }
                (Framed::Abort(_), Some(conn)) => {
                    rbuf.drain(..used);
                    conn.rbuf = rbuf; // The close hook sees the leftover.
                }
                _ => self.clients.pool.put(rbuf),
            }
            (used, outcome)
        };
        match outcome {
            Framed::More | Framed::Closed | Framed::Held => {}
            Framed::Abort(why) => {
                if let Some(slot) = self.clients.conns.slot_of(info.flow) {
                    self.hooks
                        .with(&mut self.clients, |c, hook| c.close_conn(hook, slot, why));
                }
            }
            Framed::CloseAfterFlush => {
                let Clients { conns, pool, .. } = &mut self.clients;
                if let Some(conn) = conns.lookup_mut(info.flow) {
                    // After the answers to the requests before it.
                    conn.close_in_order(Origin::Local, pool);
                    let leftover = std::mem::take(&mut conn.rbuf);
                    pool.put(leftover);
                    self.clients.mark_flush(slot);
                }
            }
        }
        // Slowloris: when a partial request started (`crate::partial`).
        self.clients.track_partial(info.flow, used);
    }

    /// Frames again the connections whose hold ended this turn (listed by
    /// `Clients::requests_emptied`): their buffered bytes now, their socket
    /// at the next turn. Called once the turn's responses and failures are
    /// handled; the caller publishes what it queued.
    pub(crate) fn resume_held(&mut self) {
        let mut list = std::mem::take(&mut self.clients.resume);
        for &flow in &list {
            let Some(slot) = self.clients.conns.slot_of(flow) else {
                continue; // Closed since: nothing is left of it.
            };
            if self.dispatch.ledger().of_conn(flow).0 != 0 {
                continue;
            }
            let Some(conn) = self.clients.conns.get_mut(slot) else {
                continue;
            };
            match conn.state {
                ConnState::Held => {}
                ConnState::Closing { held: true } => {
                    // Closing (a failed request's hook said so): further
                    // input is ignored, as when framing stops for the same
                    // reason.
                    conn.state = ConnState::Closing { held: false };
                    let leftover = std::mem::take(&mut conn.rbuf);
                    self.clients.pool.put(leftover);
                    continue;
                }
                ConnState::Open | ConnState::PeerClosed | ConnState::Closing { held: false } => {
                    continue;
                }
            }
            conn.state = ConnState::Open;
            if self.life.draining {
                // SIGTERM: nothing new is queued; the bytes stay for the
                // close hook's `leftover`.
                continue;
            }
            // Waiting on the worker is not idleness.
            conn.last_active_ms = self.clients.now_ms;
            self.on_bytes(slot, &[]);
            // The socket was not read while held; its edge may be spent.
            if let Some(slot) = self.clients.conns.slot_of(flow) {
                self.clients.list_read(slot);
            }
        }
        list.clear();
        // Framing lets no request leave a worker, so nothing was listed
        // meanwhile; keep the list's allocation.
        if self.clients.resume.is_empty() {
            self.clients.resume = list;
        }
    }

    /// The plugin's context of the connection of `info` when the plugin
    /// frames with `spp_input_ctx` (made by `spp_conn_open` on first use);
    /// `None` when it frames with plain `spp_input`.
    fn plugin_ctx(&mut self, info: &SppConnInfo) -> Option<usize> {
        if !self.hooks.has_input_ctx() {
            return None;
        }
        let known = self.clients.conns.lookup_mut(info.flow)?.plugin_ctx;
        if known.is_some() {
            return known;
        }
        let ctx = self.hooks.conn_open(info);
        // Stored before anything the hook queued is applied (see
        // `Hooks::conn_open`): a close frees it through `spp_conn_free`.
        let conn = self.clients.conns.lookup_mut(info.flow)?;
        conn.plugin_ctx = Some(ctx);
        Some(ctx)
    }

    /// Cuts complete requests off the front of `buf` and submits them.
    /// Returns the bytes used and how it ended. Holds the connection
    /// instead (using nothing) while its requests in flight sit on a worker
    /// that takes no more (see the module doc).
    fn frame(&mut self, info: &SppConnInfo, buf: &[u8]) -> (usize, Framed) {
        let mut affinity = None;
        match self.dispatch.affinity(info.flow) {
            (Affinity::Free, _) => {}
            (Affinity::Stick(slot), _) => affinity = Some(slot),
            (Affinity::Hold(slot), in_flight) => {
                if let Some(conn) = self.clients.conns.lookup_mut(info.flow) {
                    conn.state = ConnState::Held;
                    tracing::debug!(
                        flow = info.flow,
                        worker_slot = slot,
                        in_flight,
                        "connection held: its worker takes no more requests"
                    );
                    return (0, Framed::Held);
                }
            }
        }
        self.clock.refresh();
        let max = self.limits.max_request_size;
        let plugin_ctx = self.plugin_ctx(info);
        let mut used = 0;
        // The group of a request framing held before (routed already).
        let mut routed = self
            .clients
            .conns
            .lookup_mut(info.flow)
            .map_or(0, |c| std::mem::take(&mut c.routed));
        loop {
            let rest = &buf[used..];
            if rest.is_empty() {
                break (used, Framed::More);
            }
            let verdict = match plugin_ctx {
                Some(ctx) => self.hooks.input_ctx(&mut self.clients, info, ctx, rest),
                None => self.hooks.input(&mut self.clients, info, rest),
            }
            .unwrap_or(-1);
            if verdict == SPP_HOOK_PANICKED {
                self.clients.stats.plugin_panics += 1;
                break (used, Framed::Abort(CloseReason::BadInput));
            }
            if verdict < 0 {
                self.clients.stats.frame_errors += 1;
                break (used, Framed::Abort(CloseReason::BadInput));
            }
            let len = verdict as usize;
            if len > rest.len() {
                // More than it was given: a plugin error, not "need more".
                self.clients.stats.input_overrun += 1;
                let now_ms = self.clients.now_ms;
                self.clients
                    .overrun_log
                    .report(now_ms, info.flow, len, rest.len());
                break (used, Framed::Abort(CloseReason::BadInput));
            }
            if len > max || (len == 0 || len > rest.len()) && rest.len() >= max {
                self.clients.stats.oversized += 1;
                break (used, Framed::Abort(CloseReason::Oversized));
            }
            if len == 0 || len > rest.len() {
                break (used, Framed::More);
            }
            let request = &rest[..len];
            // The note this input call set (none: empty); a request held
            // below is framed again later, and its input call sets it again.
            let note = self.hooks.take_note();
            let submitted = self.submit(
                info,
                note.bytes(),
                request,
                affinity,
                std::mem::take(&mut routed),
            );
            if let Err(NotQueued::Busy { group }) = submitted {
                // Answer order: every worker of its group holds an earlier
                // unfinished request of this connection. Wait until they
                // have left, then frame it again (routed already).
                if let Some(conn) = self.clients.conns.lookup_mut(info.flow) {
                    conn.state = ConnState::Held;
                    conn.routed = group;
                    tracing::debug!(
                        flow = info.flow,
                        group,
                        "connection held: its answers would leave out of order"
                    );
                    break (used, Framed::Held);
                }
                break (used, Framed::Closed);
            }
            self.clients.stats.requests += 1;
            used += len;
            match submitted {
                Ok(slot) => affinity = Some(slot),
                Err(NotQueued::Failed(Verdict::Keep) | NotQueued::Busy { .. }) => {}
                Err(NotQueued::Failed(Verdict::Close)) => break (used, Framed::CloseAfterFlush),
            }
            // A hook may have closed the connection (or asked to, in turn)
            // meanwhile.
            match self.clients.conns.lookup_mut(info.flow) {
                None => break (used, Framed::Closed),
                Some(conn) if conn.is_closing() || conn.order.close_held() => {
                    break (used, Framed::CloseAfterFlush)
                }
                Some(_) => {}
            }
        }
    }
}
