//! The proxy's side of every flow: the TCP connection table, the UDP flow
//! table, and what happens to bytes addressed to a flow.
//!
//! [`Clients::deliver`] is the one place response bytes go, whether they
//! come from a worker's response ring or from the plugin's `reply` service:
//! TCP bytes are queued on the connection's bounded send buffer (written
//! once per loop turn by [`Clients::flush_marked`]); a UDP reply is queued
//! for the request's sender (sent in batches, [`crate::udp_batch`]) and
//! frees the flow. Bytes for a
//! flow that no longer exists are dropped and counted.
//!
//! A connection's state is a [`ConnState`]; besides the tables, three
//! lists name connections for the loop: the to-flush list
//! ([`Clients::mark_flush`], written by [`Clients::flush_marked`]), the
//! read-again list ([`Clients::list_read`]: a connection that had more to
//! read than its share of the turn, or whose hold ended) and
//! [`Clients::resume`]: the dispatcher's ledger counts requests in flight,
//! and tells [`Clients::requests_emptied`] when a connection's last one
//! left; a held connection is then listed there for the loop to frame
//! again, a peer-closed one checked for closing.
//!
//! Answer order: every TCP delivery says who made it ([`Origin`]: a worker
//! slot, or the proxy's plugin, [`Clients::origin`]); the connection's
//! [`Order`](crate::order::Order) sends it now or holds it until the
//! earlier requests are answered ([`Clients::request_left`] releases),
//! the held bytes counting against `max_send_buffer` (past it the
//! connection closes: `held_overflow`). Closes asked for a request take
//! their turn the same way ([`Clients::close_in_order`]).
//!
//! Operations that may close a connection call the plugin's `close` hook
//! through a [`HookCall`], so they run inside `Hooks::with`, which applies
//! what the hook queued.

use crate::conn::{BufPool, Conn, ConnState, QueueError};
use crate::dispatch::Ledger;
use crate::flow::{self, Proto, SlotTable};
use crate::hooks::HookCall;
use crate::order::{Dest, Origin};
use crate::partial::PartialList;
use crate::tcp::TcpListenerEntry;
use crate::token::Source;
use crate::udp::{UdpFlow, UdpSock};
use crate::udp_batch::UdpOut;
use mio::net::TcpStream;
use mio::{Interest, Registry};
use spp_ipc::layout::ProxyTally;
use spp_plugin_api::abi::{SppAddr, SppConnInfo, SPP_PROTO_TCP};
use std::net::SocketAddr;

/// What a held segment costs beyond its bytes, counted against
/// `max_send_buffer` (its header and padding, at most).
const HELD_SEGMENT_COST: usize = 16;

/// Why a TCP connection is closed (decides the counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// It finished normally (peer gone and answered, or asked to close).
    Done,
    /// The socket failed.
    Broken,
    /// No traffic for the idle timeout.
    Idle,
    /// The client does not read its responses.
    Slow,
    /// `spp_input` rejected the stream, or a hook panicked.
    BadInput,
    /// A request passed `max_request_size`.
    Oversized,
    /// The proxy is stopping.
    Shutdown,
    /// A partial request was not completed within `request_timeout`.
    RequestTimeout,
    /// The table was full: it had waited longest on a partial request and
    /// made room for a new connection.
    Evicted,
    /// Answers held for request order ([`crate::order`]) would have passed
    /// `max_send_buffer`.
    HeldOverflow,
}

/// Every flow the proxy serves, and what delivering to one needs.
pub struct Clients {
    /// Open TCP connections.
    pub conns: SlotTable<Conn>,
    /// UDP requests awaiting their reply.
    pub udp_flows: SlotTable<UdpFlow>,
    /// The UDP sockets replies leave from.
    pub udp_socks: Vec<UdpSock>,
    /// Their queued replies ([`Clients::flush_udp`]).
    pub udp_out: UdpOut,
    /// Reusable buffers for connections.
    pub pool: BufPool,
    /// Connections holding a partial request, oldest first.
    pub partial: PartialList,
    /// Counter deltas for this turn (added to the shared stats once per
    /// turn; gauges are stored there directly).
    pub stats: ProxyTally,
    /// Bound of each connection's send buffer.
    pub max_send_buffer: usize,
    /// The loop clock, ms.
    pub now_ms: u64,
    /// Flows of held connections whose last request in flight left;
    /// the loop frames them again ([`crate::tcp`]). An entry may name a
    /// connection closed since: it is looked up by flow id.
    pub resume: Vec<u64>,
    /// The throttle of the `spp_input` overrun warning.
    pub overrun_log: crate::overrun::OverrunLog,
    /// TCP connections closed since the loop last told the dispatcher
    /// (whose workers get `spp_flow_closed`); kept allocated between turns.
    pub closed_flows: Vec<u64>,
    /// Who makes the answers the proxy plugin's `reply`/`close` calls
    /// deliver ([`Self::deliver`]): [`Origin::Local`] but while an
    /// exception hook answers a request failed on a worker slot.
    pub origin: Origin,
    flush_list: Vec<u32>,
    flush_spare: Vec<u32>,
    read_list: Vec<u32>,
    read_spare: Vec<u32>,
}

impl Clients {
    /// Empty tables for flows of `epoch` and proxy shard `shard`.
    pub fn new(
        epoch: u16,
        shard: u16,
        max_connections: usize,
        max_udp_flows: usize,
        max_send_buffer: usize,
    ) -> Self {
        Clients {
            conns: SlotTable::new(epoch, shard, Proto::Tcp, max_connections),
            udp_flows: SlotTable::new(epoch, shard, Proto::Udp, max_udp_flows),
            udp_socks: Vec::new(),
            udp_out: UdpOut::default(),
            pool: BufPool::default(),
            partial: PartialList::default(),
            stats: ProxyTally::default(),
            max_send_buffer,
            now_ms: 0,
            resume: Vec::new(),
            overrun_log: Default::default(),
            closed_flows: Vec::new(),
            origin: Origin::Local,
            flush_list: Vec::new(),
            flush_spare: Vec::new(),
            read_list: Vec::new(),
            read_spare: Vec::new(),
        }
    }

    /// Takes a connection accepted on `listener` into the table and polls
    /// it; refused (dropped: the client sees an orderly close) when the
    /// table is full.
    pub fn admit(
        &mut self,
        registry: &Registry,
        listener: &TcpListenerEntry,
        stream: TcpStream,
        peer: SocketAddr,
    ) {
        if self.conns.is_full() {
            self.stats.conns_refused += 1;
            return;
        }
        let local = match listener.local {
            Some(local) => local,
            None => match stream.local_addr() {
                Ok(addr) => SppAddr::from_socket_addr(addr),
                Err(_) => return, // Already reset by the peer.
            },
        };
        // Best effort: responses go out as soon as they are written.
        let _ = stream.set_nodelay(true);
        let info = SppConnInfo {
            proto: SPP_PROTO_TCP,
            listener: listener.index,
            local,
            remote: SppAddr::from_socket_addr(peer),
            ..SppConnInfo::default()
        };
        let now_ms = self.now_ms;
        let Some((slot, _)) = self
            .conns
            .insert_with(|flow| Conn::new(stream, SppConnInfo { flow, ..info }, now_ms))
        else {
            return;
        };
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if let Err(e) = registry.register(
            &mut conn.stream,
            Source::Conn(slot).token(),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::warn!("cannot poll a new connection: {e}");
            self.conns.remove(slot);
            return;
        }
        self.stats.conns_accepted += 1;
    }

    /// Lists connection `slot` to be read again (next turn, or later this
    /// one), unless it is listed already or does not read.
    /// It is then read until its socket would block.
    #[inline]
    pub fn list_read(&mut self, slot: u32) {
        self.defer_read(slot, true);
    }

    /// Lists connection `slot` to be read at the next turn (its readiness
    /// came when the turn's read budget was spent), unless it does not
    /// read. `until_empty`: read it until its socket would block (as
    /// [`Self::list_read`]); otherwise a short read ends its reading, as
    /// for a fresh readiness edge.
    #[inline]
    pub fn defer_read(&mut self, slot: u32, until_empty: bool) {
        if let Some(conn) = self.conns.get_mut(slot) {
            if conn.in_read_list {
                conn.read_until_empty |= until_empty;
            } else if conn.reads() {
                conn.in_read_list = true;
                conn.read_until_empty = until_empty;
                self.read_list.push(slot);
            }
        }
    }

    /// Takes the read-again list; each entry stays listed until
    /// [`Self::unlist_read`] right before it is read. Give it back with
    /// [`Self::return_read_list`].
    pub fn take_read_list(&mut self) -> Vec<u32> {
        std::mem::replace(&mut self.read_list, std::mem::take(&mut self.read_spare))
    }

    /// Unlists connection `slot` from the read-again list; false when it
    /// is gone.
    #[inline]
    pub fn unlist_read(&mut self, slot: u32) -> bool {
        self.take_listed_read(slot).is_some()
    }

    /// Unlists connection `slot` from the read-again list and says whether
    /// to read it until its socket would block (see [`Self::defer_read`]);
    /// `None` when it is gone.
    #[inline]
    pub fn take_listed_read(&mut self, slot: u32) -> Option<bool> {
        let conn = self.conns.get_mut(slot)?;
        conn.in_read_list = false;
        Some(conn.read_until_empty)
    }

    /// Lists again the entries of a list from [`Self::take_read_list`]
    /// that the turn had no budget left to read (still open and listed:
    /// not unlisted yet, so [`Self::list_read`] skipped them meanwhile).
    pub fn defer_reads(&mut self, rest: &[u32]) {
        for &slot in rest {
            if self.conns.get(slot).is_some_and(|c| c.in_read_list) {
                self.read_list.push(slot);
            }
        }
    }

    /// Hands back a list from [`Self::take_read_list`], for its allocation.
    pub fn return_read_list(&mut self, mut list: Vec<u32>) {
        list.clear();
        self.read_spare = list;
    }

    /// Whether connections wait to be read again.
    #[inline]
    pub fn reads_pending(&self) -> bool {
        !self.read_list.is_empty()
    }

    /// Asks TCP connection `flow` (if it is still open) to close once
    /// flushed, and lists it for the flush.
    pub fn close_after_flush(&mut self, flow: u64) {
        if let Some(slot) = self.conns.slot_of(flow) {
            if let Some(conn) = self.conns.get_mut(slot) {
                conn.close_after_flush();
            }
            self.mark_flush(slot);
        }
    }

    /// Lists connection `slot` for a flush (and close check) this turn.
    #[inline]
    pub fn mark_flush(&mut self, slot: u32) {
        if let Some(conn) = self.conns.get_mut(slot) {
            if !conn.in_flush_list {
                conn.in_flush_list = true;
                self.flush_list.push(slot);
            }
        }
    }

    /// Closes connection `slot` now: calls the plugin's `close` hook with
    /// its unframed bytes, returns its buffers, counts `why`.
    pub fn close_conn(&mut self, hook: HookCall<'_>, slot: u32, why: CloseReason) {
        self.partial.unlink(&mut self.conns, slot);
        let Some(mut conn) = self.conns.remove(slot) else {
            return;
        };
        hook.close(&conn.info, &conn.rbuf, conn.plugin_ctx);
        self.closed_flows.push(conn.info.flow);
        conn.release_buffers(&mut self.pool);
        match why {
            CloseReason::Idle => self.stats.idle_closed += 1,
            CloseReason::Slow => self.stats.slow_closed += 1,
            CloseReason::RequestTimeout => self.stats.request_timeouts += 1,
            CloseReason::Evicted => self.stats.evicted_partial += 1,
            CloseReason::HeldOverflow => self.stats.held_overflow += 1,
            CloseReason::Done
            | CloseReason::Broken
            | CloseReason::BadInput
            | CloseReason::Oversized
            | CloseReason::Shutdown => {}
        }
        tracing::trace!(flow = conn.info.flow, ?why, "connection closed");
        // Dropping the stream closes the fd, which also removes it from epoll.
    }

    /// Sends `bytes` to `flow`, made by [`Self::origin`]. Empty `bytes` or
    /// `close` closes a TCP flow once its pending bytes are flushed; a UDP
    /// flow ends with its first reply (or close).
    pub fn deliver(&mut self, hook: HookCall<'_>, flow: u64, bytes: &[u8], close: bool) {
        self.deliver_from(hook, self.origin, flow, bytes, close);
    }

    /// [`Self::deliver`] for an answer made by `origin`: on a TCP
    /// connection it goes out in request order ([`crate::order`]), held
    /// until the earlier answers are out. Held answers count against
    /// `max_send_buffer` with the send buffer; past it the connection is
    /// closed (`held_overflow`).
    pub fn deliver_from(
        &mut self,
        hook: HookCall<'_>,
        origin: Origin,
        flow: u64,
        bytes: &[u8],
        close: bool,
    ) {
        match flow::decode(flow).proto {
            Proto::Tcp => self.deliver_tcp(hook, origin, flow, bytes, close),
            Proto::Udp => self.deliver_udp(flow, bytes),
        }
    }

    fn deliver_tcp(
        &mut self,
        hook: HookCall<'_>,
        origin: Origin,
        flow: u64,
        bytes: &[u8],
        close: bool,
    ) {
        let Some(slot) = self.conns.slot_of(flow) else {
            self.stats.stale_responses += 1;
            return;
        };
        let max = self.max_send_buffer;
        let Clients {
            conns, pool, stats, ..
        } = self;
        let Some(conn) = conns.get_mut(slot) else {
            return;
        };
        if conn.is_closing() {
            // Asked to close already: later bytes have nowhere to go.
            stats.stale_responses += 1;
            return;
        }
        if let Dest::Held(id) = conn.order.dest(origin) {
            if conn.pending() + conn.order.held_bytes() + HELD_SEGMENT_COST + bytes.len() > max {
                tracing::debug!(
                    flow,
                    "answers held for request order pass max_send_buffer; closing"
                );
                return self.close_conn(hook, slot, CloseReason::HeldOverflow);
            }
            conn.order.hold(id, bytes, close || bytes.is_empty(), pool);
            return;
        }
        if !bytes.is_empty() {
            match conn.queue(bytes, pool, max) {
                Ok(written) => {
                    stats.bytes_out += written;
                    if written != 0 {
                        conn.last_active_ms = self.now_ms;
                    }
                }
                Err(QueueError::Slow) => {
                    tracing::debug!(flow, "client does not read its responses; closing");
                    return self.close_conn(hook, slot, CloseReason::Slow);
                }
                Err(QueueError::Io(e)) => {
                    tracing::debug!(flow, "write failed: {e}");
                    return self.close_conn(hook, slot, CloseReason::Broken);
                }
            }
        }
        if close || bytes.is_empty() {
            conn.close_after_flush();
        }
        self.mark_flush(slot);
    }

    fn deliver_udp(&mut self, flow: u64, bytes: &[u8]) {
        let Some(slot) = self.udp_flows.slot_of(flow) else {
            self.stats.stale_responses += 1;
            return;
        };
        if let Some(entry) = self.udp_flows.remove(slot) {
            if !bytes.is_empty() {
                self.queue_udp_reply(usize::from(entry.sock), entry.peer, bytes);
            }
        }
    }

    /// A request of TCP connection `flow` on worker slot `s` left its worker
    /// (answered, expired or failed; called for each, before
    /// [`Self::requests_emptied`]): answers held behind it move to the send
    /// buffer.
    #[inline]
    pub fn request_left(&mut self, flow: u64, s: usize) {
        let Some(slot) = self.conns.slot_of(flow) else {
            return;
        };
        let Clients { conns, pool, .. } = self;
        if conns.get_mut(slot).is_some_and(|c| c.request_left(s, pool)) {
            self.mark_flush(slot);
        }
    }

    /// Asks TCP connection `flow` to close once the answers before the
    /// point `origin` stands for are out (see `Conn::close_in_order`).
    pub fn close_in_order(&mut self, flow: u64, origin: Origin) {
        let Some(slot) = self.conns.slot_of(flow) else {
            return;
        };
        let Clients { conns, pool, .. } = self;
        if let Some(conn) = conns.get_mut(slot) {
            conn.close_in_order(origin, pool);
        }
        self.mark_flush(slot);
    }

    /// The last request in flight of TCP connection `flow` left (answered,
    /// expired or failed; the dispatcher's ledger counts them): a held
    /// connection is listed to frame again, a peer-closed one to close.
    #[inline]
    pub fn requests_emptied(&mut self, flow: u64) {
        let Some(slot) = self.conns.slot_of(flow) else {
            return;
        };
        let Some(conn) = self.conns.get(slot) else {
            return;
        };
        if conn.is_held() {
            self.resume.push(flow);
        }
        if matches!(
            conn.state,
            ConnState::PeerClosed | ConnState::Closing { .. }
        ) {
            self.mark_flush(slot);
        }
    }

    /// Writes every listed connection's pending bytes and closes those that
    /// are finished.
    /// `ledger` says which still have requests in flight.
    pub fn flush_marked(&mut self, hook: HookCall<'_>, ledger: &Ledger) {
        let mut list =
            std::mem::replace(&mut self.flush_list, std::mem::take(&mut self.flush_spare));
        for &slot in &list {
            let Clients {
                conns, pool, stats, ..
            } = self;
            let Some(conn) = conns.get_mut(slot) else {
                continue;
            };
            conn.in_flush_list = false;
            match conn.flush(pool) {
                Ok(written) => {
                    stats.bytes_out += written;
                    if written != 0 {
                        conn.last_active_ms = self.now_ms;
                    }
                }
                Err(e) => {
                    tracing::debug!(flow = conn.info.flow, "write failed: {e}");
                    self.close_conn(hook, slot, CloseReason::Broken);
                    continue;
                }
            }
            if conn.is_finished(ledger.of_conn(conn.info.flow).0) {
                self.close_conn(hook, slot, CloseReason::Done);
            }
        }
        list.clear();
        self.flush_spare = list;
    }

    /// Closes connections without traffic for `idle_ms` (those waiting for
    /// a worker, with requests in flight or framing on hold, are exempt
    /// unless `strict`) and forgets UDP requests that waited that long for
    /// a reply. Costs O(flows in use). `ledger` says which connections
    /// have requests in flight.
    pub fn sweep_idle(&mut self, hook: HookCall<'_>, ledger: &Ledger, idle_ms: u64, strict: bool) {
        let now = self.now_ms;
        // From the end: a removal moves the last (already seen) slot here.
        let mut i = self.conns.live_slots().len();
        while i > 0 {
            i -= 1;
            let Some(&slot) = self.conns.live_slots().get(i) else {
                continue;
            };
            let expired = self.conns.get(slot).is_some_and(|c| {
                now.saturating_sub(c.last_active_ms) >= idle_ms
                    && (strict || (ledger.of_conn(c.info.flow).0 == 0 && !c.is_held()))
            });
            if expired {
                self.close_conn(hook, slot, CloseReason::Idle);
            }
        }
        let mut i = self.udp_flows.live_slots().len();
        while i > 0 {
            i -= 1;
            let Some(&slot) = self.udp_flows.live_slots().get(i) else {
                continue;
            };
            if self
                .udp_flows
                .get(slot)
                .is_some_and(|f| now.saturating_sub(f.created_ms) >= idle_ms)
            {
                self.udp_flows.remove(slot);
            }
        }
    }

    /// Records where connection `flow`'s framing left it: holding a
    /// partial request (reading, with unframed bytes) links it in
    /// [`Self::partial`], stamped now if it held none before or `used`
    /// bytes were just framed off its front (a new partial request);
    /// anything else unlinks it. See [`crate::partial`].
    pub fn track_partial(&mut self, flow: u64, used: usize) {
        let Some(slot) = self.conns.slot_of(flow) else {
            return;
        };
        let Some(conn) = self.conns.get(slot) else {
            return;
        };
        if conn.reads() && !conn.rbuf.is_empty() {
            if used != 0 || !conn.partial.is_linked() {
                self.partial.start(&mut self.conns, slot, self.now_ms);
            }
        } else if conn.partial.is_linked() {
            self.partial.unlink(&mut self.conns, slot);
        }
    }

    /// Closes every connection whose partial request is not complete
    /// `request_ms` after its first byte. Costs O(connections closed):
    /// the list is oldest first. A listed connection that stopped reading
    /// meanwhile (held, peer closed, closing) is unlinked, not closed.
    pub fn expire_partial(&mut self, hook: HookCall<'_>, request_ms: u64) {
        let now = self.now_ms;
        while let Some((slot, since)) = self.partial.oldest(&self.conns) {
            if now.saturating_sub(since) < request_ms {
                break;
            }
            if self.conns.get(slot).is_some_and(Conn::reads) {
                tracing::debug!(slot, waited_ms = now - since, "request timeout");
                self.close_conn(hook, slot, CloseReason::RequestTimeout);
            } else {
                self.partial.unlink(&mut self.conns, slot);
            }
        }
    }

    /// The table is full: closes the connection that has waited longest on
    /// a partial request, if any, to make room for a new one. Returns
    /// whether it closed one.
    pub fn evict_partial(&mut self, hook: HookCall<'_>) -> bool {
        while let Some((slot, since)) = self.partial.oldest(&self.conns) {
            if self.conns.get(slot).is_some_and(Conn::reads) {
                tracing::debug!(
                    slot,
                    waited_ms = self.now_ms.saturating_sub(since),
                    "connection table full: closing the oldest partial request"
                );
                self.close_conn(hook, slot, CloseReason::Evicted);
                return true;
            }
            self.partial.unlink(&mut self.conns, slot);
        }
        false
    }

    /// Drain end: closes every connection with nothing left to send and
    /// lets the others close once flushed.
    pub fn close_all(&mut self, hook: HookCall<'_>) {
        let mut i = self.conns.live_slots().len();
        while i > 0 {
            i -= 1;
            let Some(&slot) = self.conns.live_slots().get(i) else {
                continue;
            };
            let Some(conn) = self.conns.get_mut(slot) else {
                continue;
            };
            if conn.pending() == 0 {
                self.close_conn(hook, slot, CloseReason::Shutdown);
            } else {
                conn.close_after_flush();
                self.mark_flush(slot);
            }
        }
    }

    /// Drain deadline: offers every connection's pending bytes to its
    /// socket once more (without waiting) and closes all of them, calling
    /// the close hook for each.
    pub fn close_now(&mut self, hook: HookCall<'_>) {
        while let Some(&slot) = self.conns.live_slots().last() {
            let Clients {
                conns, pool, stats, ..
            } = self;
            if let Some(conn) = conns.get_mut(slot) {
                if conn.pending() != 0 {
                    stats.bytes_out += conn.flush(pool).unwrap_or(0);
                }
            }
            self.close_conn(hook, slot, CloseReason::Shutdown);
        }
        self.flush_list.clear();
    }

    /// Whether connections are listed for a flush that has not run yet
    /// (hooks can list them after the turn's flush).
    #[inline]
    pub fn flush_pending(&self) -> bool {
        !self.flush_list.is_empty()
    }
}

#[cfg(test)]
#[path = "clients_tests.rs"]
mod tests;
