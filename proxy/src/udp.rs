//! UDP: one datagram is one request.
//!
//! `spp_input` sees the whole datagram and decides the request's length;
//! a result ≤ 0 drops it. Each accepted datagram gets an entry in the
//! bounded UDP flow table (`max_udp_flows`) recording the socket and the
//! sender; the entry's flow id travels with the request, and the first
//! reply for it is sent to that sender with `send_to` and frees the entry.
//! Entries no reply came for expire after the idle timeout. When the table
//! is full, datagrams are dropped and counted.

use crate::clients::Clients;
use crate::event_loop::Proxy;
use crate::token::Source;
use crate::udp_batch::{Datagram, UDP_BATCH};
use mio::{Interest, Registry};
use spp_plugin_api::abi::{SppAddr, SppConnInfo, SPP_HOOK_PANICKED, SPP_PROTO_UDP};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

/// Datagrams read from one socket per loop turn before others get a go.
pub const MAX_DATAGRAMS_PER_TURN: usize = 256;

/// One inherited UDP socket.
pub struct UdpSock {
    /// The socket (non-blocking).
    pub sock: mio::net::UdpSocket,
    /// Index of its address in the config's `listen` list.
    pub listener: u16,
    /// Its bound address, as plugins see it.
    pub local: SppAddr,
}

/// A UDP request awaiting its reply.
pub struct UdpFlow {
    /// The request's connection info (flow included).
    pub info: SppConnInfo,
    /// Who sent it; the reply goes there.
    pub peer: SocketAddr,
    /// Which socket (index into `Clients::udp_socks`) it came in on.
    pub sock: u16,
    /// Loop clock (ms) when it arrived.
    pub created_ms: u64,
}

impl Proxy {
    /// Reads datagrams from UDP socket `k`, [`UDP_BATCH`] per `recvmmsg`,
    /// until it would block (or the per-turn share is used; then it is
    /// listed for the next turn).
    pub(crate) fn udp_readable(&mut self, k: usize) {
        let Some(mut batch) = self.io.udp_recv.take() else {
            return;
        };
        let recv_time_us = self.clock.wall_us;
        let mut drained = false;
        // The stamp of the requests below (see `Proxy::submit`).
        self.clock.refresh();
        for _ in 0..MAX_DATAGRAMS_PER_TURN.div_ceil(UDP_BATCH) {
            let Some(sock) = self.clients.udp_socks.get(k) else {
                drained = true;
                break;
            };
            match batch.recv(sock.sock.as_raw_fd()) {
                Ok(n) => {
                    for d in (0..n).filter_map(|i| batch.get(i)) {
                        self.udp_datagram(k, d, recv_time_us);
                    }
                    // Fewer than asked for: nothing more was there (a
                    // datagram arriving later raises a new edge).
                    if n < UDP_BATCH {
                        drained = true;
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                // EINTR, or an ICMP error left over from an earlier send.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionRefused
                    ) => {}
                Err(e) => {
                    tracing::warn!(socket = k, "UDP receive failed: {e}");
                    drained = true;
                    break;
                }
            }
        }
        if !drained {
            self.io.pending_udp.push(k);
        }
        self.io.udp_recv = Some(batch);
    }

    fn udp_datagram(&mut self, k: usize, d: Datagram<'_>, recv_time_us: u64) {
        let stats = &mut self.clients.stats;
        stats.bytes_in += d.bytes.len() as u64;
        let Some(peer) = d.peer else {
            stats.udp_dropped += 1;
            return;
        };
        let dgram = d.bytes;
        if d.truncated || dgram.len() > self.limits.max_request_size {
            stats.oversized += 1;
            stats.udp_dropped += 1;
            return;
        }
        let sock = &self.clients.udp_socks[k];
        let mut info = SppConnInfo {
            recv_time_us,
            proto: SPP_PROTO_UDP,
            listener: sock.listener,
            local: sock.local,
            remote: SppAddr::from_socket_addr(peer),
            ..SppConnInfo::default()
        };
        let now_ms = self.clients.now_ms;
        let made = self.clients.udp_flows.insert_with(|flow| UdpFlow {
            info: SppConnInfo { flow, ..info },
            peer,
            sock: k as u16,
            created_ms: now_ms,
        });
        let Some((slot, flow)) = made else {
            self.clients.stats.udp_dropped += 1;
            return;
        };
        info.flow = flow;
        let verdict = self
            .hooks
            .input(&mut self.clients, &info, dgram)
            .unwrap_or(-1);
        if verdict <= 0 {
            if verdict == SPP_HOOK_PANICKED {
                self.clients.stats.plugin_panics += 1;
            }
            self.clients.stats.udp_dropped += 1;
            self.clients.udp_flows.remove(slot);
            return;
        }
        let len = verdict as usize;
        if len > dgram.len() {
            // More than it was given: a plugin error, the datagram dropped.
            self.clients.stats.input_overrun += 1;
            self.clients.stats.udp_dropped += 1;
            let now_ms = self.clients.now_ms;
            self.clients
                .overrun_log
                .report(now_ms, flow, len, dgram.len());
            self.clients.udp_flows.remove(slot);
            return;
        }
        self.clients.stats.requests += 1;
        let note = self.hooks.take_note();
        if self
            .submit(&info, note.bytes(), &dgram[..len], None, 0)
            .is_err()
        {
            // Failed; the exception hook (if any) has answered already.
            if let Some(slot) = self.clients.udp_flows.slot_of(flow) {
                self.clients.udp_flows.remove(slot);
            }
        }
    }
}

impl Clients {
    /// Queues a UDP reply to `peer` on socket `k` (sent at the end of the
    /// turn, or now when a batch is full); dropped and counted when the
    /// socket's queue is full.
    pub(crate) fn queue_udp_reply(&mut self, k: usize, peer: SocketAddr, bytes: &[u8]) {
        if k >= self.udp_socks.len() {
            self.stats.udp_dropped += 1;
            return;
        }
        let queue = self.udp_out.queue(k);
        if queue.push(bytes, peer).is_err() {
            self.stats.udp_dropped += 1;
            return;
        }
        if queue.len() >= UDP_BATCH && !queue.blocked {
            self.send_udp(k);
        }
    }

    /// Sends what socket `k` has queued, as far as it takes.
    fn send_udp(&mut self, k: usize) {
        let (Some(sock), Some(queue)) = (self.udp_socks.get(k), self.udp_out.queues.get_mut(k))
        else {
            return;
        };
        let done = self.udp_out.batch.flush(sock.sock.as_raw_fd(), queue);
        self.stats.bytes_out += done.bytes;
        self.stats.udp_dropped += done.failed;
    }

    /// Socket `k` is writable again: its queue is sent at the end of the
    /// turn.
    pub(crate) fn udp_writable(&mut self, k: usize) {
        if let Some(q) = self.udp_out.queues.get_mut(k) {
            q.blocked = false;
        }
    }

    /// End of turn: sends every socket's queued replies; a socket that
    /// would block is polled for writability until its queue is empty.
    pub fn flush_udp(&mut self, registry: &Registry) {
        for k in 0..self.udp_out.queues.len() {
            if !self.udp_out.queues[k].blocked {
                self.send_udp(k);
            }
            let q = &mut self.udp_out.queues[k];
            let want = q.blocked;
            if want == q.polled_writable {
                continue;
            }
            let Some(sock) = self.udp_socks.get_mut(k) else {
                continue;
            };
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            match registry.reregister(&mut sock.sock, Source::Udp(k).token(), interest) {
                Ok(()) => q.polled_writable = want,
                // Deregistered (a drain): retried each turn instead.
                Err(_) => {
                    q.blocked = false;
                    q.polled_writable = false;
                }
            }
        }
    }
}
