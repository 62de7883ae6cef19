//! UDP: one datagram is one request.
//!
//! `spp_input` sees the whole datagram and decides the request's length;
//! a result ≤ 0 drops it. Each accepted datagram gets an entry in the
//! bounded UDP flow table (`max_udp_flows`) recording the socket and the
//! sender; the entry's flow id travels with the request, and the first
//! reply for it is sent to that sender with `send_to` and frees the entry.
//! Entries no reply came for expire after the idle timeout. When the table
//! is full, datagrams are dropped and counted.

use crate::event_loop::Proxy;
use spp_plugin_api::abi::{SppAddr, SppConnInfo, SPP_HOOK_PANICKED, SPP_PROTO_UDP};
use std::io;
use std::net::SocketAddr;

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
    /// Reads datagrams from UDP socket `k` until it would block (or the
    /// per-turn share is used; then it is listed for the next turn).
    pub(crate) fn udp_readable(&mut self, k: usize) {
        let mut scratch = self.io.take_scratch();
        let recv_time_us = self.clock.wall_us;
        let mut drained = false;
        // The stamp of the requests below (see `Proxy::submit`).
        self.clock.refresh();
        for _ in 0..MAX_DATAGRAMS_PER_TURN {
            let Some(sock) = self.clients.udp_socks.get(k) else {
                break;
            };
            match sock.sock.recv_from(&mut scratch) {
                Ok((n, peer)) => self.udp_datagram(k, peer, &scratch[..n], recv_time_us),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                // EINTR, or an ICMP error left over from an earlier send_to.
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
        self.io.put_scratch(scratch);
    }

    fn udp_datagram(&mut self, k: usize, peer: SocketAddr, dgram: &[u8], recv_time_us: u64) {
        let stats = &mut self.clients.stats;
        stats.bytes_in += dgram.len() as u64;
        if dgram.len() > self.limits.max_request_size {
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
