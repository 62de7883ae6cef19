//! Stop signals. SIGTERM (from the controller) and SIGINT (Ctrl-C on a
//! foreground service) both ask for a drain: the handler sets a flag and
//! rings the worker's own doorbell, so a sleeping main loop wakes at once
//! instead of at its next heartbeat.

use crate::error::WorkerError;
use std::os::fd::RawFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The signals that start a drain, with their names for errors.
const STOP_SIGNALS: [(libc::c_int, &str); 2] =
    [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")];

/// Installs the handlers. The returned flag turns true once a stop signal
/// arrived. `bell_fd` must stay open for the process's life (it is leaked
/// with the rest of the shared state).
pub fn install(bell_fd: RawFd) -> Result<Arc<AtomicBool>, WorkerError> {
    let stop = Arc::new(AtomicBool::new(false));
    for (signal, name) in STOP_SIGNALS {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(|cause| {
            WorkerError::Signal {
                signal: name,
                cause,
            }
        })?;
        // SAFETY: the action only calls write(2) on an eventfd that stays
        // open for the process's life; write is async-signal-safe and the
        // closure touches no other state. It runs after the flag is set
        // (signal-hook runs actions in registration order).
        unsafe { signal_hook::low_level::register(signal, move || ring_raw(bell_fd)) }.map_err(
            |cause| WorkerError::Signal {
                signal: name,
                cause,
            },
        )?;
    }
    Ok(stop)
}

/// `Doorbell::ring` without the `Doorbell`: async-signal-safe.
fn ring_raw(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to an fd; failure (EAGAIN when
    // the counter is saturated) means the reader is being woken anyway.
    unsafe { libc::write(fd, (&one as *const u64).cast(), std::mem::size_of::<u64>()) };
}
