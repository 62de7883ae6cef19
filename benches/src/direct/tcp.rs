//! One TCP client of the direct echo server: cutting frames off what it
//! sends and writing them straight back.
//!
//! Bytes are read into the server's shared scratch buffer. Every complete
//! frame of a read is echoed with one `write` from that buffer; only a
//! partial frame at the end is copied into the connection's `partial`
//! buffer, and only bytes the socket would not take go to its `pending`
//! buffer. Both buffers are reused for the connection's life (shrunk back
//! when a burst made them large). While more than `max_pending` bytes are
//! unsent the connection is not read; the next writable edge resumes it.

use super::config::Limits;
use mio::net::TcpStream;
use spp_plugin_api::framing::u32_be_prefixed;
use spp_plugin_api::Input;
use std::io::{self, Read, Write};

/// Capacity a connection buffer keeps once emptied; a larger one (after a
/// burst or a large frame) is given back to the allocator.
const RETAINED_CAPACITY: usize = 64 * 1024;

/// What the event loop should do with a connection after an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Wait for the next event.
    Wait,
    /// Its read budget ran out with data maybe left: revisit next turn.
    Again,
    /// Close it now.
    Close,
}

/// One accepted TCP connection.
pub(super) struct Conn {
    stream: TcpStream,
    /// The start of a frame whose end has not arrived yet.
    partial: Vec<u8>,
    /// Reply bytes the socket did not take; `pending[sent..]` is unsent.
    pending: Vec<u8>,
    sent: usize,
    /// Not reading: too many reply bytes unsent.
    paused: bool,
    /// Peer EOF or a malformed frame: close once `pending` is flushed.
    closing: bool,
}

impl Conn {
    /// Wraps an accepted, non-blocking stream. Allocates nothing.
    pub(super) fn new(stream: TcpStream) -> Self {
        Conn {
            stream,
            partial: Vec::new(),
            pending: Vec::new(),
            sent: 0,
            paused: false,
            closing: false,
        }
    }

    /// The socket, for (de)registration.
    pub(super) fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    fn unsent(&self) -> usize {
        self.pending.len() - self.sent
    }

    /// Reads (at most `budget` times) and echoes every complete frame.
    pub(super) fn on_readable(
        &mut self,
        scratch: &mut [u8],
        limits: &Limits,
        budget: usize,
    ) -> Next {
        if self.closing || self.paused {
            return Next::Wait;
        }
        for _ in 0..budget {
            if self.unsent() >= limits.max_pending {
                self.paused = true;
                return Next::Wait;
            }
            match self.stream.read(scratch) {
                Ok(0) => {
                    self.closing = true;
                    return self.close_if_flushed();
                }
                Ok(n) => {
                    if self.on_bytes(&scratch[..n], limits.max_payload).is_err() {
                        return Next::Close;
                    }
                    if self.closing {
                        return self.close_if_flushed();
                    }
                    if n < scratch.len() {
                        // A short read emptied the socket; the next arrival
                        // raises a new edge.
                        return Next::Wait;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Next::Close,
            }
        }
        Next::Again
    }

    /// Writes what is pending; resumes reading if that made room.
    pub(super) fn on_writable(
        &mut self,
        scratch: &mut [u8],
        limits: &Limits,
        budget: usize,
    ) -> Next {
        if self.flush().is_err() {
            return Next::Close;
        }
        if self.closing {
            return self.close_if_flushed();
        }
        if self.paused && self.unsent() < limits.max_pending {
            self.paused = false;
            return self.on_readable(scratch, limits, budget);
        }
        Next::Wait
    }

    fn close_if_flushed(&self) -> Next {
        if self.unsent() == 0 {
            Next::Close
        } else {
            Next::Wait
        }
    }

    /// Frames `data` (behind any partial frame held) and echoes every
    /// complete frame. A malformed frame marks the connection closing.
    fn on_bytes(&mut self, data: &[u8], max_payload: usize) -> io::Result<()> {
        let Conn {
            stream,
            partial,
            pending,
            sent,
            closing,
            ..
        } = self;
        if partial.is_empty() {
            // Common case: echo straight from the scratch buffer.
            let (used, malformed) = complete_frames(data, max_payload);
            send(stream, pending, sent, &data[..used])?;
            if malformed {
                *closing = true;
            } else {
                partial.extend_from_slice(&data[used..]);
            }
        } else {
            partial.extend_from_slice(data);
            let (used, malformed) = complete_frames(partial, max_payload);
            send(stream, pending, sent, &partial[..used])?;
            if malformed {
                *closing = true;
                partial.clear();
            } else {
                partial.drain(..used);
            }
            if partial.is_empty() {
                shrink(partial);
            }
        }
        Ok(())
    }

    /// Writes pending bytes until the socket would block.
    fn flush(&mut self) -> io::Result<()> {
        while self.sent < self.pending.len() {
            let n = write_some(&mut self.stream, &self.pending[self.sent..])?;
            if n == 0 {
                return Ok(());
            }
            self.sent += n;
        }
        self.pending.clear();
        self.sent = 0;
        shrink(&mut self.pending);
        Ok(())
    }
}

/// The length of the complete frames at the front of `buf`, and whether a
/// malformed frame follows them.
fn complete_frames(buf: &[u8], max_payload: usize) -> (usize, bool) {
    let mut used = 0;
    loop {
        match u32_be_prefixed(&buf[used..], max_payload) {
            Input::Complete(n) => used += n,
            Input::NeedMore => return (used, false),
            Input::Close => return (used, true),
        }
    }
}

/// Echoes `bytes`: written at once when nothing is queued ahead of them,
/// what the socket does not take is queued.
fn send(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    sent: &mut usize,
    bytes: &[u8],
) -> io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    if *sent < pending.len() {
        // Behind queued bytes; the writable edge flushes them in order.
        if *sent > pending.len() / 2 {
            pending.drain(..*sent);
            *sent = 0;
        }
        pending.extend_from_slice(bytes);
        return Ok(());
    }
    let n = write_some(stream, bytes)?;
    if n < bytes.len() {
        pending.clear();
        *sent = 0;
        pending.extend_from_slice(&bytes[n..]);
    }
    Ok(())
}

/// One `write`, retried on EINTR; 0 when the socket would block.
fn write_some(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<usize> {
    loop {
        match stream.write(bytes) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Gives back the memory of an empty buffer a burst made large.
fn shrink(buf: &mut Vec<u8>) {
    if buf.capacity() > RETAINED_CAPACITY {
        buf.shrink_to(RETAINED_CAPACITY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spp_plugin_api::framing::encode_u32_be_prefixed;

    #[test]
    fn complete_frames_stop_at_a_partial_or_malformed_frame() {
        let two = [encode_u32_be_prefixed(b"abc"), encode_u32_be_prefixed(b"")].concat();
        assert_eq!(complete_frames(&two, 16), (11, false));
        assert_eq!(complete_frames(&two[..9], 16), (7, false));
        let bad = [two.clone(), encode_u32_be_prefixed(&[0; 17])].concat();
        assert_eq!(complete_frames(&bad, 16), (11, true));
        assert_eq!(complete_frames(&[], 16), (0, false));
    }
}
