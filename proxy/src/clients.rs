//! The proxy's side of every flow: the TCP connection table, the UDP flow
//! table, and what happens to bytes addressed to a flow.
//!
//! [`Clients::deliver`] is the one place response bytes go, whether they
//! come from a worker's response ring or from the plugin's `reply` service:
//! TCP bytes are queued on the connection's bounded send buffer (written
//! once per loop turn by [`Clients::flush_marked`]); a UDP reply is sent to
//! the request's sender with one `send_to` and frees the flow. Bytes for a
//! flow that no longer exists are dropped and counted.
//!
//! Requests leaving a worker are accounted here too ([`Clients::request_done`],
//! [`Clients::request_left`]): a connection whose last one left while its
//! framing was on hold (`conn::HELD`) is listed in [`Clients::resume`] for
//! the event loop to frame again.

use crate::conn::{BufPool, Conn, QueueError, CLOSE_AFTER_FLUSH, HELD, IN_FLUSH_LIST, PEER_EOF};
use crate::flow::{self, Proto, SlotTable};
use crate::udp::{UdpFlow, UdpSock};
use spp_ipc::layout::ProxyTally;
use spp_plugin_api::host::PluginLibrary;

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
}

/// Every flow the proxy serves, and what delivering to one needs.
pub struct Clients {
    /// Open TCP connections.
    pub conns: SlotTable<Conn>,
    /// UDP requests awaiting their reply.
    pub udp_flows: SlotTable<UdpFlow>,
    /// The UDP sockets replies leave from.
    pub udp_socks: Vec<UdpSock>,
    /// Reusable buffers for connections.
    pub pool: BufPool,
    /// Counter deltas for this turn (added to the shared stats once per
    /// turn; gauges are stored there directly).
    pub stats: ProxyTally,
    /// Bound of each connection's send buffer.
    pub max_send_buffer: usize,
    /// The loop clock, ms.
    pub now_ms: u64,
    /// Flows of `HELD` connections whose last request in flight left;
    /// the loop frames them again ([`crate::tcp`]). An entry may name a
    /// connection closed since: it is looked up by flow id.
    pub resume: Vec<u64>,
    flush_list: Vec<u32>,
    flush_spare: Vec<u32>,
}

impl Clients {
    /// Empty tables for flows of `epoch`.
    pub fn new(
        epoch: u16,
        max_connections: usize,
        max_udp_flows: usize,
        max_send_buffer: usize,
    ) -> Self {
        Clients {
            conns: SlotTable::new(epoch, Proto::Tcp, max_connections),
            udp_flows: SlotTable::new(epoch, Proto::Udp, max_udp_flows),
            udp_socks: Vec::new(),
            pool: BufPool::default(),
            stats: ProxyTally::default(),
            max_send_buffer,
            now_ms: 0,
            resume: Vec::new(),
            flush_list: Vec::new(),
            flush_spare: Vec::new(),
        }
    }

    /// Lists connection `slot` for a flush (and close check) this turn.
    #[inline]
    pub fn mark_flush(&mut self, slot: u32) {
        if let Some(conn) = self.conns.get_mut(slot) {
            if !conn.has(IN_FLUSH_LIST) {
                conn.flags |= IN_FLUSH_LIST;
                self.flush_list.push(slot);
            }
        }
    }

    /// Closes connection `slot` now: calls the plugin's `close` hook with
    /// its unframed bytes, returns its buffers, counts `why`.
    pub fn close_conn(&mut self, plugin: &PluginLibrary, slot: u32, why: CloseReason) {
        let Some(mut conn) = self.conns.remove(slot) else {
            return;
        };
        plugin.close(&conn.info, &conn.rbuf);
        conn.release_buffers(&mut self.pool);
        match why {
            CloseReason::Idle => self.stats.idle_closed += 1,
            CloseReason::Slow => self.stats.slow_closed += 1,
            CloseReason::Done
            | CloseReason::Broken
            | CloseReason::BadInput
            | CloseReason::Oversized
            | CloseReason::Shutdown => {}
        }
        tracing::trace!(flow = conn.info.flow, ?why, "connection closed");
        // Dropping the stream closes the fd, which also removes it from epoll.
    }

    /// Sends `bytes` to `flow`. Empty `bytes` or `close` closes a TCP flow
    /// once its pending bytes are flushed; a UDP flow ends with its first
    /// reply (or close).
    pub fn deliver(&mut self, plugin: &PluginLibrary, flow: u64, bytes: &[u8], close: bool) {
        match flow::decode(flow).proto {
            Proto::Tcp => self.deliver_tcp(plugin, flow, bytes, close),
            Proto::Udp => self.deliver_udp(flow, bytes),
        }
    }

    fn deliver_tcp(&mut self, plugin: &PluginLibrary, flow: u64, bytes: &[u8], close: bool) {
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
        if conn.has(CLOSE_AFTER_FLUSH) {
            // Asked to close already: later bytes have nowhere to go.
            stats.stale_responses += 1;
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
                    return self.close_conn(plugin, slot, CloseReason::Slow);
                }
                Err(QueueError::Io(e)) => {
                    tracing::debug!(flow, "write failed: {e}");
                    return self.close_conn(plugin, slot, CloseReason::Broken);
                }
            }
        }
        if close || bytes.is_empty() {
            conn.flags |= CLOSE_AFTER_FLUSH;
        }
        self.mark_flush(slot);
    }

    fn deliver_udp(&mut self, flow: u64, bytes: &[u8]) {
        let Some(slot) = self.udp_flows.slot_of(flow) else {
            self.stats.stale_responses += 1;
            return;
        };
        if let Some(entry) = self.udp_flows.remove(slot) {
            if bytes.is_empty() {
                return;
            }
            let sent = self
                .udp_socks
                .get(usize::from(entry.sock))
                .map(|s| s.sock.send_to(bytes, entry.peer));
            match sent {
                Some(Ok(n)) => self.stats.bytes_out += n as u64,
                Some(Err(e)) => {
                    tracing::debug!(flow, peer = %entry.peer, "UDP reply not sent: {e}");
                    self.stats.udp_dropped += 1;
                }
                None => self.stats.udp_dropped += 1,
            }
        }
    }

    /// A request of `flow` left its worker (`process` returned).
    #[inline]
    pub fn request_done(&mut self, flow: u64) {
        if let Some(slot) = self.conns.slot_of(flow) {
            self.request_left(slot);
        }
    }

    /// One request of connection `slot` is no longer in flight (done or
    /// failed). Its last one lets a finished peer's connection close and a
    /// held connection frame again.
    #[inline]
    pub fn request_left(&mut self, slot: u32) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        conn.in_flight = conn.in_flight.saturating_sub(1);
        if conn.in_flight == 0 && conn.has(PEER_EOF | HELD) {
            if conn.has(HELD) {
                self.resume.push(conn.info.flow);
            }
            if conn.has(PEER_EOF) {
                self.mark_flush(slot);
            }
        }
    }

    /// Writes every listed connection's pending bytes and closes those that
    /// are finished.
    pub fn flush_marked(&mut self, plugin: &PluginLibrary) {
        let mut list =
            std::mem::replace(&mut self.flush_list, std::mem::take(&mut self.flush_spare));
        for &slot in &list {
            let Clients {
                conns, pool, stats, ..
            } = self;
            let Some(conn) = conns.get_mut(slot) else {
                continue;
            };
            conn.flags &= !IN_FLUSH_LIST;
            match conn.flush(pool) {
                Ok(written) => {
                    stats.bytes_out += written;
                    if written != 0 {
                        conn.last_active_ms = self.now_ms;
                    }
                }
                Err(e) => {
                    tracing::debug!(flow = conn.info.flow, "write failed: {e}");
                    self.close_conn(plugin, slot, CloseReason::Broken);
                    continue;
                }
            }
            if conn.is_finished() {
                self.close_conn(plugin, slot, CloseReason::Done);
            }
        }
        list.clear();
        self.flush_spare = list;
    }

    /// Closes connections without traffic for `idle_ms` (those waiting for
    /// a worker, with requests in flight or framing on hold, are exempt
    /// unless `strict`) and forgets UDP requests that waited that long for
    /// a reply. Costs O(flows in use).
    pub fn sweep_idle(&mut self, plugin: &PluginLibrary, idle_ms: u64, strict: bool) {
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
                    && (strict || (c.in_flight == 0 && !c.has(HELD)))
            });
            if expired {
                self.close_conn(plugin, slot, CloseReason::Idle);
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

    /// Drain end: closes every connection with nothing left to send and
    /// lets the others close once flushed.
    pub fn close_all(&mut self, plugin: &PluginLibrary) {
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
                self.close_conn(plugin, slot, CloseReason::Shutdown);
            } else {
                conn.flags |= CLOSE_AFTER_FLUSH;
                self.mark_flush(slot);
            }
        }
    }

    /// Drain deadline: offers every connection's pending bytes to its
    /// socket once more (without waiting) and closes all of them, calling
    /// the close hook for each.
    pub fn close_now(&mut self, plugin: &PluginLibrary) {
        while let Some(&slot) = self.conns.live_slots().last() {
            let Clients {
                conns, pool, stats, ..
            } = self;
            if let Some(conn) = conns.get_mut(slot) {
                if conn.pending() != 0 {
                    stats.bytes_out += conn.flush(pool).unwrap_or(0);
                }
            }
            self.close_conn(plugin, slot, CloseReason::Shutdown);
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
