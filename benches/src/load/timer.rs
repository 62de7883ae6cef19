//! The drivers' wake-up timer, re-armed only when a wake-up is needed
//! *earlier* than the one already set (or the old one has fired); a
//! wake-up that comes early is harmless, the driver re-checks its
//! deadlines. This keeps timer updates off the per-request path in closed
//! loop, where the timer only watches for timeouts.
//!
//! Two kinds: [`Timer::coarse`] is a tokio sleep (millisecond resolution:
//! fine for timeouts); [`Timer::precise`] is a Linux `timerfd` on the
//! runtime's reactor (nanosecond resolution). Open loop needs the precise
//! one: latency counts from the intended send time, so a send that a
//! millisecond timer wakes up to a millisecond late would add the
//! harness's own lateness to every measurement.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::Sleep;

/// Shortest relative expiry given to the timerfd (zero would disarm it).
const MIN_EXPIRY: Duration = Duration::from_nanos(1);

/// A re-armable wake-up.
pub struct Timer {
    kind: Kind,
    deadline: Instant,
}

enum Kind {
    Coarse(Pin<Box<Sleep>>),
    Precise(AsyncFd<OwnedFd>),
}

impl Timer {
    /// A tokio sleep set to `at`.
    pub fn coarse(at: Instant) -> Self {
        Timer {
            kind: Kind::Coarse(Box::pin(tokio::time::sleep_until(at.into()))),
            deadline: at,
        }
    }

    /// A timerfd set to `at` (must be called inside a tokio runtime); a
    /// coarse timer if the timerfd cannot be created.
    pub fn precise(at: Instant) -> Self {
        match new_timerfd() {
            Ok(fd) => {
                let mut timer = Timer {
                    kind: Kind::Precise(fd),
                    deadline: at,
                };
                timer.set(at, Instant::now());
                timer
            }
            Err(_) => Timer::coarse(at),
        }
    }

    /// Makes sure the timer fires no later than `at`.
    pub fn arm(&mut self, at: Instant, now: Instant) {
        if at < self.deadline || self.deadline <= now {
            self.set(at, now);
        }
    }

    fn set(&mut self, at: Instant, now: Instant) {
        self.deadline = at;
        let failed = match &mut self.kind {
            Kind::Coarse(sleep) => {
                sleep.as_mut().reset(at.into());
                false
            }
            Kind::Precise(fd) => set_timerfd(fd, at.saturating_duration_since(now)).is_err(),
        };
        if failed {
            // settime on a valid timerfd does not fail; if it ever does,
            // fall back to the coarse timer rather than never waking up.
            *self = Timer::coarse(at);
        }
    }

    /// Waits for the timer.
    pub async fn fired(&mut self) {
        match &mut self.kind {
            Kind::Coarse(sleep) => sleep.as_mut().await,
            Kind::Precise(fd) => {
                if wait_timerfd(fd).await.is_err() {
                    let at = self.deadline;
                    *self = Timer::coarse(at);
                }
            }
        }
    }
}

fn new_timerfd() -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: plain syscall with constant arguments; it returns a new fd
    // or -1.
    let raw = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a freshly created fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: an OwnedFd keeps its fd open and unchanged until it is
    // dropped, which only the AsyncFd that takes it can do.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| e.into_parts().1)
}

fn set_timerfd(fd: &AsyncFd<OwnedFd>, after: Duration) -> io::Result<()> {
    let after = after.max(MIN_EXPIRY);
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: libc::time_t::try_from(after.as_secs()).unwrap_or(libc::time_t::MAX),
            // Below 1e9: fits every c_long.
            tv_nsec: after.subsec_nanos() as libc::c_long,
        },
    };
    // SAFETY: the fd is a live timerfd owned by `fd`; `spec` is a valid
    // itimerspec on the stack; the old value is not requested (null).
    let rc = unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

async fn wait_timerfd(fd: &AsyncFd<OwnedFd>) -> io::Result<()> {
    // Each pass waits for readiness; a stale readiness is cleared by the
    // WouldBlock read, so the loop waits properly on the next pass.
    loop {
        let mut guard = fd.readable().await?;
        let read = guard.try_io(|inner| {
            let mut expirations = [0u8; 8];
            // SAFETY: reads at most 8 bytes into a live 8-byte buffer from
            // the timerfd owned by `inner`.
            let n = unsafe {
                libc::read(
                    inner.as_raw_fd(),
                    expirations.as_mut_ptr().cast(),
                    expirations.len(),
                )
            };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        });
        match read {
            Ok(result) => return result,
            Err(_would_block) => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precise_timer_fires_and_rearms() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let t0 = Instant::now();
            let mut timer = Timer::precise(t0 + Duration::from_millis(2));
            assert!(matches!(timer.kind, Kind::Precise(_)));
            timer.fired().await;
            assert!(Instant::now() >= t0 + Duration::from_millis(2));
            let now = Instant::now();
            // An expired timer is re-armed even for a later time.
            timer.arm(now + Duration::from_micros(300), now);
            timer.fired().await;
            assert!(Instant::now() >= now + Duration::from_micros(300));
            // A later time does not postpone a pending wake-up.
            let now = Instant::now();
            timer.arm(now + Duration::from_millis(1), now);
            timer.arm(now + Duration::from_secs(60), now);
            timer.fired().await;
            assert!(Instant::now() < now + Duration::from_secs(60));
        });
    }
}
