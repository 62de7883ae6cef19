//! Doorbells: an `eventfd` a sleeping reader blocks on (the proxy's joins
//! its epoll), plus the "sleeping" flag protocol that makes writers ring it
//! only when the reader really sleeps (a wake-up costs microseconds, a
//! record ~100 ns — `docs/PERFORMANCE.md` — so never ring per message).
//!
//! Reader: spin briefly on the ring; then [`SleepFlag::announce`], look at
//! the ring once more, and only if it is still empty block on the bell.
//! Writer: after publishing a batch, [`wake_if_sleeping`]. The two SeqCst
//! fences make it impossible for both sides to miss each other.

use crate::error::IpcError;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::time::Duration;

/// Bytes of an eventfd counter, the unit of every read and write.
const EVENTFD_COUNTER_BYTES: usize = std::mem::size_of::<u64>();

/// A non-blocking eventfd.
#[derive(Debug)]
pub struct Doorbell {
    fd: OwnedFd,
}

impl Doorbell {
    /// A new doorbell (close-on-exec, non-blocking).
    pub fn create() -> Result<Self, IpcError> {
        // SAFETY: plain syscall with valid flags.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(IpcError::last_os("eventfd"));
        }
        Ok(Doorbell {
            // SAFETY: a fresh fd we own.
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
        })
    }

    /// Adopts an inherited eventfd.
    ///
    /// # Safety
    /// `fd` must be an open eventfd this process owns.
    pub unsafe fn from_raw_fd(fd: RawFd) -> Self {
        Doorbell {
            // SAFETY: ownership is transferred by the caller.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        }
    }

    /// The fd, for epoll or for passing to a child.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Wakes the reader. Never blocks.
    pub fn ring(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64. EAGAIN (counter at its
        // maximum) means the reader is being woken anyway.
        unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&one as *const u64).cast(),
                EVENTFD_COUNTER_BYTES,
            )
        };
    }

    /// Clears pending rings. Never blocks.
    pub fn drain(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64; EAGAIN means none pending.
        unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut count as *mut u64).cast(),
                EVENTFD_COUNTER_BYTES,
            )
        };
    }

    /// Blocks until rung or `timeout` passes; clears the bell. Returns
    /// whether it was rung.
    pub fn wait(&self, timeout: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n > 0 {
            self.drain();
            true
        } else {
            false
        }
    }
}

/// A reader's "I am asleep" flag in shared memory.
#[derive(Clone, Copy)]
pub struct SleepFlag<'a>(pub &'a AtomicU32);

impl SleepFlag<'_> {
    /// Announces the reader is about to sleep. The reader must look at its
    /// rings once more after this and before blocking.
    pub fn announce(&self) {
        self.0.store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// The reader is awake again.
    pub fn clear(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// Writer side: call once per published batch. Rings `bell` only when the
/// reader announced sleep, and at most once per sleep. Returns whether it
/// rang.
#[inline]
pub fn wake_if_sleeping(flag: &AtomicU32, bell: &Doorbell) -> bool {
    fence(Ordering::SeqCst);
    if flag.load(Ordering::Relaxed) != 0 && flag.swap(0, Ordering::AcqRel) != 0 {
        bell.ring();
        true
    } else {
        false
    }
}
