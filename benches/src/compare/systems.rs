//! The running systems under one lock, and the signal thread: Ctrl-C or
//! SIGTERM stops everything this program started (spp with `spp stop`, the
//! children by PID) and exits with status 130. Normal ends and errors stop
//! them through [`Systems::stop_all`] and the services' `Drop`.

use std::sync::{Arc, Mutex, MutexGuard};

use super::child::ChildServer;
use super::error::CompareError;
use super::spp::SppService;

/// Exit status after an interrupt (128 + SIGINT).
const EXIT_INTERRUPTED: i32 = 130;

/// What is running.
#[derive(Debug, Default)]
pub struct Systems {
    /// The spp service.
    pub spp: Option<SppService>,
    /// The direct baseline.
    pub direct: Option<ChildServer>,
    /// haproxy in front of the baseline.
    pub haproxy: Option<ChildServer>,
    /// The other spp services (sleep-echo, relay), stopped first.
    pub extra_spp: Vec<SppService>,
    /// The other child servers (tokio relays), stopped before the baseline.
    pub extra: Vec<ChildServer>,
    interrupted: bool,
}

impl Systems {
    /// Fails once an interrupt arrived (nothing new may start then).
    pub fn check(&self) -> Result<(), CompareError> {
        if self.interrupted {
            Err(CompareError::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Stops everything and forgets it (removing spp's temp dir); returns
    /// the spp stop's error, if any.
    pub fn stop_all(&mut self) -> Result<(), CompareError> {
        let mut first_error = Ok(());
        for mut s in self.extra_spp.drain(..) {
            let stopped = s.stop();
            if first_error.is_ok() {
                first_error = stopped;
            }
        }
        for mut c in self.extra.drain(..) {
            c.stop();
        }
        if let Some(mut h) = self.haproxy.take() {
            h.stop();
        }
        if let Some(mut d) = self.direct.take() {
            d.stop();
        }
        let stopped = match self.spp.take() {
            Some(mut s) => s.stop(),
            None => Ok(()),
        };
        first_error.and(stopped)
    }
}

/// The systems, shared with the signal thread.
#[derive(Clone, Debug, Default)]
pub struct Shared(Arc<Mutex<Systems>>);

impl Shared {
    /// Locks the systems (a panicked holder leaves them usable).
    pub fn lock(&self) -> MutexGuard<'_, Systems> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// SIGINT and SIGTERM.
fn stop_signals() -> libc::sigset_t {
    // SAFETY: `sigset_t` is plain data; sigemptyset initialises it, and the
    // signal numbers are valid.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Blocks SIGINT and SIGTERM in the calling thread (and so in every thread
/// it starts later) and starts the thread that takes them. Call before
/// starting any other thread.
pub fn watch_signals(shared: &Shared) -> Result<(), CompareError> {
    let set = stop_signals();
    // SAFETY: `set` is an initialised sigset; the old mask is not wanted.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(CompareError::Io {
            what: "cannot block SIGINT/SIGTERM for",
            path: "spp-bench".into(),
            source: std::io::Error::from_raw_os_error(rc),
        });
    }
    let shared = shared.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut signal = 0;
            // SAFETY: `set` is initialised and blocked in this thread (the
            // mask is inherited); `signal` is a valid out pointer.
            if unsafe { libc::sigwait(&set, &mut signal) } == 0 {
                let mut systems = shared.lock();
                systems.interrupted = true;
                eprintln!("spp-bench: interrupted; stopping the servers it started");
                let _ = systems.stop_all();
                std::process::exit(EXIT_INTERRUPTED);
            }
        })
        .map_err(|source| CompareError::Io {
            what: "cannot start the signal thread of",
            path: "spp-bench".into(),
            source,
        })?;
    Ok(())
}
