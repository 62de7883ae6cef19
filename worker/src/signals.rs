//! Signals. SIGTERM (from the controller) and SIGINT (Ctrl-C on a
//! foreground service) both ask for a drain; SIGHUP asks to reopen the log
//! file (log rotation). Each handler only sets its flag and rings the
//! worker's own doorbell, so a sleeping main loop wakes at once instead of
//! at its next heartbeat; the main loop does the work (a drain, or
//! [`spp_ipc::logfile::reopen_after_sighup`], which is not
//! async-signal-safe).

use crate::error::WorkerError;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The signals that start a drain, with their names for errors.
const STOP_SIGNALS: [(libc::c_int, &str); 2] =
    [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")];
/// The signal that asks for the log file to be reopened.
const REOPEN_SIGNAL: (libc::c_int, &str) = (libc::SIGHUP, "SIGHUP");

/// The flags the handlers set.
#[derive(Clone, Debug)]
pub struct Signals {
    /// True once a stop signal arrived (never reset).
    pub stop: Arc<AtomicBool>,
    /// True when a SIGHUP arrived that [`Signals::take_reopen`] has not
    /// taken yet.
    pub reopen: Arc<AtomicBool>,
}

impl Signals {
    /// Whether a stop signal arrived.
    #[inline]
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Whether a SIGHUP is waiting (one plain load).
    #[inline]
    pub fn reopen_pending(&self) -> bool {
        self.reopen.load(Ordering::Relaxed)
    }

    /// Takes a waiting SIGHUP: true once per burst of them. The swap only
    /// happens when one is pending, so the common case is a plain load.
    #[inline]
    pub fn take_reopen(&self) -> bool {
        self.reopen_pending() && self.reopen.swap(false, Ordering::AcqRel)
    }
}

/// Installs the handlers. `bell_fd` must stay open for the process's life
/// (it is leaked with the rest of the shared state).
pub fn install(bell_fd: RawFd) -> Result<Signals, WorkerError> {
    let signals = Signals {
        stop: Arc::new(AtomicBool::new(false)),
        reopen: Arc::new(AtomicBool::new(false)),
    };
    let handlers = STOP_SIGNALS
        .iter()
        .map(|&signal| (signal, &signals.stop))
        .chain([(REOPEN_SIGNAL, &signals.reopen)]);
    for ((signal, name), flag) in handlers {
        let failed = |cause| WorkerError::Signal {
            signal: name,
            cause,
        };
        signal_hook::flag::register(signal, Arc::clone(flag)).map_err(failed)?;
        // SAFETY: the action only calls write(2) on an eventfd that stays
        // open for the process's life; write is async-signal-safe and the
        // closure touches no other state. It runs after the flag is set
        // (signal-hook runs actions in registration order).
        unsafe { signal_hook::low_level::register(signal, move || ring_raw(bell_fd)) }
            .map_err(failed)?;
    }
    Ok(signals)
}

/// `Doorbell::ring` without the `Doorbell`: async-signal-safe.
fn ring_raw(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to an fd; failure (EAGAIN when
    // the counter is saturated) means the reader is being woken anyway.
    unsafe { libc::write(fd, (&one as *const u64).cast(), std::mem::size_of::<u64>()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reopen_is_taken_once() {
        let signals = Signals {
            stop: Arc::new(AtomicBool::new(false)),
            reopen: Arc::new(AtomicBool::new(false)),
        };
        assert!(!signals.take_reopen());
        signals.reopen.store(true, Ordering::Relaxed);
        assert!(signals.reopen_pending());
        assert!(signals.take_reopen());
        assert!(!signals.take_reopen(), "taken already");
        assert!(!signals.stop_requested());
    }
}
