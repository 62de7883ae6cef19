//! UDP: one datagram is one frame; a datagram holding a complete frame is
//! answered with that frame (bytes after it are ignored, as the spp proxy
//! does), anything else is dropped. A reply the socket will not take right
//! now is dropped too: UDP promises no delivery.

use mio::net::UdpSocket;
use spp_plugin_api::framing::u32_be_prefixed;
use spp_plugin_api::Input;
use std::io;

/// Receives and echoes at most `budget` datagrams. Returns whether the
/// socket was drained (false: revisit it next turn).
pub(super) fn on_readable(
    sock: &UdpSocket,
    scratch: &mut [u8],
    max_payload: usize,
    budget: usize,
) -> bool {
    for _ in 0..budget {
        match sock.recv_from(scratch) {
            Ok((n, peer)) => {
                if let Input::Complete(len) = u32_be_prefixed(&scratch[..n], max_payload) {
                    // Dropped on any failure (buffer full, peer gone).
                    let _ = sock.send_to(&scratch[..len], peer);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            // EINTR, or an ICMP error left over from an earlier send_to.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionRefused
                ) => {}
            // Anything else is not this datagram's fault; wait for the
            // next edge rather than spin.
            Err(_) => return true,
        }
    }
    false
}
