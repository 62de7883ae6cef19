//! UDP in batches: `recvmmsg` reads up to [`UDP_BATCH`] datagrams per call
//! into preallocated buffers ([`RecvBatch`]), and a turn's replies are
//! queued per socket ([`ReplyQueue`]) and sent with `sendmmsg`, up to
//! [`UDP_BATCH`] per call, each to its own address.
//!
//! Nothing here allocates per datagram: the receive buffers, the message
//! headers and each socket's reply queue (its bytes and entries) are
//! allocated once. A reply queue fills only while its socket would block
//! (a full queue of [`UDP_BATCH`] replies is sent at once); past
//! [`UDP_REPLY_QUEUE_LEN`] replies or [`UDP_REPLY_QUEUE_BYTES`] bytes a
//! reply is dropped and counted (`udp_dropped`). A socket that would block
//! is polled for writability until its queue is empty.

use std::collections::VecDeque;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams per `recvmmsg` and replies per `sendmmsg`.
pub const UDP_BATCH: usize = 32;
/// Bytes of each receive buffer: the largest datagram read whole (a
/// longer one is truncated, counted as oversized and dropped).
pub const UDP_DATAGRAM_MAX: usize = 64 << 10;
/// Replies one socket may hold while it would block.
pub const UDP_REPLY_QUEUE_LEN: usize = 1024;
/// Bytes of replies one socket may hold while it would block.
pub const UDP_REPLY_QUEUE_BYTES: usize = 1 << 20;

/// Bytes of a `sockaddr_storage` (what the kernel may write as a source).
const STORAGE_LEN: libc::socklen_t = size_of::<libc::sockaddr_storage>() as libc::socklen_t;

/// [`UDP_BATCH`] receive buffers with their headers, allocated once.
pub struct RecvBatch {
    bufs: Box<[u8]>,
    iovs: Box<[libc::iovec]>,
    addrs: Box<[libc::sockaddr_storage]>,
    hdrs: Box<[libc::mmsghdr]>,
    /// Datagrams the last [`Self::recv`] read.
    len: usize,
}

/// One received datagram.
pub struct Datagram<'a> {
    /// Its sender (`None`: not an IP address; dropped).
    pub peer: Option<SocketAddr>,
    /// Its bytes (the start only, when `truncated`).
    pub bytes: &'a [u8],
    /// It was longer than [`UDP_DATAGRAM_MAX`].
    pub truncated: bool,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            bufs: vec![0; UDP_BATCH * UDP_DATAGRAM_MAX].into_boxed_slice(),
            // SAFETY: iovec, sockaddr_storage and mmsghdr are plain C
            // structs (integers and raw pointers) for which zero is valid.
            iovs: (0..UDP_BATCH).map(|_| unsafe { zeroed() }).collect(),
            // SAFETY: as above.
            addrs: (0..UDP_BATCH).map(|_| unsafe { zeroed() }).collect(),
            // SAFETY: as above.
            hdrs: (0..UDP_BATCH).map(|_| unsafe { zeroed() }).collect(),
            len: 0,
        }
    }
}

impl RecvBatch {
    /// Reads up to [`UDP_BATCH`] datagrams from the non-blocking socket
    /// `fd` with one `recvmmsg`; returns how many (an error when none could
    /// be read, `WouldBlock` when none was there).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.len = 0;
        let chunks = self.bufs.chunks_exact_mut(UDP_DATAGRAM_MAX);
        let parts = self.iovs.iter_mut().zip(self.addrs.iter_mut());
        for ((hdr, (iov, addr)), buf) in self.hdrs.iter_mut().zip(parts).zip(chunks) {
            iov.iov_base = buf.as_mut_ptr().cast();
            iov.iov_len = buf.len();
            point_header(hdr, iov, addr, STORAGE_LEN);
        }
        // SAFETY: `hdrs` holds UDP_BATCH headers, each pointing at its own
        // iovec (over its own UDP_DATAGRAM_MAX bytes of `bufs`) and its own
        // sockaddr_storage, all owned by `self` and alive for the call; no
        // control buffer; no timeout (the socket is non-blocking).
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                UDP_BATCH as libc::c_uint,
                0,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.len = (n as usize).min(UDP_BATCH);
        Ok(self.len)
    }

    /// Datagram `i` of the last [`Self::recv`].
    pub fn get(&self, i: usize) -> Option<Datagram<'_>> {
        if i >= self.len {
            return None;
        }
        let hdr = &self.hdrs[i];
        let len = (hdr.msg_len as usize).min(UDP_DATAGRAM_MAX);
        let start = i * UDP_DATAGRAM_MAX;
        Some(Datagram {
            peer: from_storage(&self.addrs[i], hdr.msg_hdr.msg_namelen),
            bytes: &self.bufs[start..start + len],
            truncated: hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        })
    }
}

/// A queued reply: its bytes in the queue's buffer, and where it goes.
#[derive(Clone, Copy)]
struct Reply {
    off: usize,
    len: usize,
    peer: SocketAddr,
}

/// Why a reply was not queued.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueFull;

/// One socket's replies not sent yet (bounded; see the module doc).
#[derive(Default)]
pub struct ReplyQueue {
    bytes: Vec<u8>,
    entries: VecDeque<Reply>,
    /// The socket would block: wait until it is writable.
    pub blocked: bool,
    /// Registered for writability (while blocked).
    pub polled_writable: bool,
}

impl ReplyQueue {
    /// Replies queued.
    #[inline]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No reply queued.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Queues `bytes` for `peer` (the buffers are allocated at the first).
    pub fn push(&mut self, bytes: &[u8], peer: SocketAddr) -> Result<(), QueueFull> {
        if self.entries.len() >= UDP_REPLY_QUEUE_LEN || bytes.len() > UDP_REPLY_QUEUE_BYTES {
            return Err(QueueFull);
        }
        if self.bytes.capacity() == 0 {
            self.bytes.reserve_exact(UDP_REPLY_QUEUE_BYTES);
            self.entries.reserve_exact(UDP_REPLY_QUEUE_LEN);
        }
        if self.bytes.len() + bytes.len() > UDP_REPLY_QUEUE_BYTES {
            self.compact();
            if self.bytes.len() + bytes.len() > UDP_REPLY_QUEUE_BYTES {
                return Err(QueueFull);
            }
        }
        let off = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        self.entries.push_back(Reply {
            off,
            len: bytes.len(),
            peer,
        });
        Ok(())
    }

    /// Moves the unsent bytes to the front of the buffer.
    fn compact(&mut self) {
        let Some(first) = self.entries.front().map(|r| r.off) else {
            self.bytes.clear();
            return;
        };
        self.bytes.drain(..first);
        self.entries.iter_mut().for_each(|r| r.off -= first);
    }

    /// Drops the oldest reply (one the socket refused).
    fn pop(&mut self) {
        self.entries.pop_front();
        if self.entries.is_empty() {
            self.bytes.clear();
        }
    }
}

/// What one [`SendBatch::flush`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Replies sent.
    pub sent: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Replies the socket refused (dropped).
    pub failed: u64,
}

/// The message headers `sendmmsg` is given, allocated once.
pub struct SendBatch {
    iovs: Box<[libc::iovec]>,
    addrs: Box<[libc::sockaddr_storage]>,
    hdrs: Box<[libc::mmsghdr]>,
}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch {
            // SAFETY: plain C structs for which zero is valid (as in
            // `RecvBatch::default`).
            iovs: (0..UDP_BATCH).map(|_| unsafe { zeroed() }).collect(),
            // SAFETY: as above.
            addrs: (0..UDP_BATCH).map(|_| unsafe { zeroed() }).collect(),
            // SAFETY: as above.
            hdrs: (0..UDP_BATCH).map(|_| unsafe { zeroed() }).collect(),
        }
    }
}

impl SendBatch {
    /// Sends `queue`'s replies on the non-blocking socket `fd`, up to
    /// [`UDP_BATCH`] per `sendmmsg`, until it is empty or the socket would
    /// block (then `queue.blocked` is set and the rest stays queued). A
    /// reply the socket refuses for another reason is dropped.
    pub fn flush(&mut self, fd: RawFd, queue: &mut ReplyQueue) -> Flushed {
        let mut done = Flushed::default();
        // Each round sends or drops at least one reply, or stops; EINTR
        // rounds are bounded too.
        let mut rounds = 2 * queue.len() + 4;
        while !queue.is_empty() && rounds > 0 {
            rounds -= 1;
            let n = self.fill(queue);
            // SAFETY: the first `n` (≤ UDP_BATCH) headers point at their
            // own iovec over bytes in `queue.bytes` and their own address
            // in `addrs`, filled just now; `queue` is not changed until the
            // call returns.
            let sent = unsafe { libc::sendmmsg(fd, self.hdrs.as_mut_ptr(), n as libc::c_uint, 0) };
            if sent < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => {
                        queue.blocked = true;
                        break;
                    }
                    io::ErrorKind::Interrupted => continue,
                    _ => {
                        tracing::debug!(peer = ?queue.entries.front().map(|r| r.peer), "UDP reply not sent: {e}");
                        done.failed += 1;
                        queue.pop();
                        continue;
                    }
                }
            }
            for hdr in &self.hdrs[..(sent as usize).min(n)] {
                done.sent += 1;
                done.bytes += u64::from(hdr.msg_len);
                queue.pop();
            }
        }
        if queue.is_empty() {
            queue.blocked = false;
        }
        done
    }

    /// Points the headers at `queue`'s first replies; returns how many.
    fn fill(&mut self, queue: &mut ReplyQueue) -> usize {
        let base = queue.bytes.as_mut_ptr();
        let parts = self.iovs.iter_mut().zip(self.addrs.iter_mut());
        let mut n = 0;
        for ((hdr, (iov, addr)), reply) in self.hdrs.iter_mut().zip(parts).zip(&queue.entries) {
            // In bounds: `off + len <= bytes.len()` for every entry.
            iov.iov_base = base.wrapping_add(reply.off).cast();
            iov.iov_len = reply.len;
            let namelen = to_storage(reply.peer, addr);
            point_header(hdr, iov, addr, namelen);
            n += 1;
        }
        n
    }
}

/// Every UDP socket's reply queue (by its index in `Clients::udp_socks`,
/// made at its first reply) and the headers they are sent with.
#[derive(Default)]
pub struct UdpOut {
    /// The queues.
    pub queues: Vec<ReplyQueue>,
    /// The `sendmmsg` headers.
    pub batch: SendBatch,
}

impl UdpOut {
    /// Socket `k`'s queue.
    pub fn queue(&mut self, k: usize) -> &mut ReplyQueue {
        if k >= self.queues.len() {
            self.queues.resize_with(k + 1, ReplyQueue::default);
        }
        &mut self.queues[k]
    }

    /// Some queue holds replies its socket is not known to block.
    pub fn ready(&self) -> bool {
        self.queues.iter().any(|q| !q.is_empty() && !q.blocked)
    }
}

/// Writes `addr` into `out`; returns its length.
fn to_storage(addr: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    let out: *mut libc::sockaddr_storage = out;
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for
            // sockaddr_in.
            unsafe { out.cast::<libc::sockaddr_in>().write(sin) };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for
            // sockaddr_in6.
            unsafe { out.cast::<libc::sockaddr_in6>().write(sin6) };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// The address the kernel wrote into `s` (`len` bytes), if it is IP.
fn from_storage(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let s: *const libc::sockaddr_storage = s;
    // SAFETY: every sockaddr starts with its family; the storage is
    // aligned for and larger than each cast below, and the kernel wrote a
    // whole address of the family it names (checked against `len`).
    unsafe {
        match i32::from((*s).ss_family) {
            libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
                let a = &*s.cast::<libc::sockaddr_in>();
                let ip = Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes());
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
                let a = &*s.cast::<libc::sockaddr_in6>();
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

/// Points one `mmsghdr` at its one iovec and its address (`namelen` bytes
/// of it used), with no control data, ready for `recvmmsg`/`sendmmsg`.
fn point_header(
    hdr: &mut libc::mmsghdr,
    iov: &mut libc::iovec,
    addr: &mut libc::sockaddr_storage,
    namelen: libc::socklen_t,
) {
    hdr.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
    hdr.msg_hdr.msg_namelen = namelen;
    hdr.msg_hdr.msg_iov = iov;
    hdr.msg_hdr.msg_iovlen = 1;
    hdr.msg_hdr.msg_control = std::ptr::null_mut();
    hdr.msg_hdr.msg_controllen = 0;
    hdr.msg_hdr.msg_flags = 0;
    hdr.msg_len = 0;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    #[test]
    fn addresses_round_trip() {
        for a in ["127.0.0.1:4242", "[::1]:9", "[fe80::1%3]:65535"] {
            let addr: SocketAddr = a.parse().unwrap();
            // SAFETY: zero is a valid sockaddr_storage.
            let mut s: libc::sockaddr_storage = unsafe { zeroed() };
            let len = to_storage(addr, &mut s);
            assert_eq!(from_storage(&s, len), Some(addr));
        }
    }

    #[test]
    fn a_batch_reads_each_datagram_with_its_sender_and_replies_go_back() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        let to = server.local_addr().unwrap();
        let clients: Vec<_> = (0..3)
            .map(|_| {
                let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                c
            })
            .collect();
        for (i, c) in clients.iter().enumerate() {
            c.send_to(format!("ping {i}").as_bytes(), to).unwrap();
        }
        let mut batch = RecvBatch::default();
        let mut queue = ReplyQueue::default();
        let mut got = 0;
        for _ in 0..100 {
            match batch.recv(server.as_raw_fd()) {
                Ok(n) => {
                    for i in 0..n {
                        let d = batch.get(i).unwrap();
                        assert!(!d.truncated);
                        let mut reply = b"re ".to_vec();
                        reply.extend_from_slice(d.bytes);
                        queue.push(&reply, d.peer.unwrap()).unwrap();
                        got += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
            if got == clients.len() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(got, clients.len());
        let done = SendBatch::default().flush(server.as_raw_fd(), &mut queue);
        assert_eq!(done.sent, 3);
        assert!(queue.is_empty() && !queue.blocked);
        for (i, c) in clients.iter().enumerate() {
            let mut buf = [0u8; 64];
            let n = c.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], format!("re ping {i}").as_bytes());
        }
    }

    #[test]
    fn the_reply_queue_is_bounded_and_compacts() {
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut q = ReplyQueue::default();
        for _ in 0..UDP_REPLY_QUEUE_LEN {
            q.push(b"x", peer).unwrap();
        }
        assert_eq!(q.push(b"x", peer), Err(QueueFull));
        q.pop();
        q.push(b"y", peer).unwrap();
        let mut q = ReplyQueue::default();
        let half = vec![7u8; UDP_REPLY_QUEUE_BYTES / 2];
        q.push(&half, peer).unwrap();
        q.push(&half, peer).unwrap();
        assert_eq!(q.push(b"z", peer), Err(QueueFull));
        q.pop();
        q.push(b"z", peer).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q.entries[0].off, 0, "compacted");
    }
}
