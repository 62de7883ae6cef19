//! Logging set-up of the proxy and the worker: `tracing` to stderr (which
//! the controller points at the child's log file), one line per event with
//! its target, ANSI colours only when stderr is a terminal. The filter is
//! the launch spec's log level, in `tracing`'s `EnvFilter` syntax.
//!
//! Logging never takes a process down: every line goes through a
//! [`DropCounting`] writer, which writes to its fd with plain `write(2)`
//! calls and, when one fails (a full disk: `ENOSPC`), drops the rest of the
//! line and counts it ([`dropped`], and the shared counter named by
//! [`count_drops_in`]). Nothing is ever reported about a failed write on
//! the fd that just failed, and `tracing-subscriber`'s own error report
//! (an `eprintln!`, which panics when stderr fails) is turned off.
//!
//! The controller's own logging (file-based, rotated) is its own business,
//! but uses the same writer.

use crate::launch::DEFAULT_LOG_LEVEL;
use std::io::IsTerminal;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU64, Ordering};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Lines this process dropped because their write failed.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// The errno of the last failed log write (0: none yet).
static LAST_ERRNO: AtomicI32 = AtomicI32::new(0);
/// A shared-memory counter that also counts dropped lines (null: none).
static SINK: AtomicPtr<AtomicU64> = AtomicPtr::new(std::ptr::null_mut());

/// Lines this process dropped because writing them failed.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// The OS error of the last failed log write, if any.
pub fn last_error() -> Option<std::io::Error> {
    match LAST_ERRNO.load(Ordering::Relaxed) {
        0 => None,
        errno => Some(std::io::Error::from_raw_os_error(errno)),
    }
}

/// From now on, also counts dropped lines in `counter` (a `log_dropped`
/// field in shared memory, mapped for the process's life), adding the ones
/// dropped before. Added to with `fetch_add`: any thread may log.
pub fn count_drops_in(counter: &'static AtomicU64) {
    let ptr = std::ptr::from_ref(counter).cast_mut();
    if SINK.swap(ptr, Ordering::AcqRel).is_null() {
        counter.fetch_add(dropped(), Ordering::Relaxed);
    }
}

/// Counts one dropped line that failed with `err`.
fn count_drop(err: &std::io::Error) {
    DROPPED.fetch_add(1, Ordering::Relaxed);
    LAST_ERRNO.store(err.raw_os_error().unwrap_or(libc::EIO), Ordering::Relaxed);
    let sink = SINK.load(Ordering::Acquire);
    // SAFETY: SINK is null or was set from a `&'static AtomicU64`.
    if let Some(counter) = unsafe { sink.as_ref() } {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Writes `buf` whole to `fd` with `write(2)`, retrying on `EINTR` and
/// short writes.
fn write_fd(fd: RawFd, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is a valid slice for its length; a bad fd is an
        // error return, not undefined behaviour.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        let n = usize::try_from(n).unwrap_or(0);
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::WriteZero));
        }
        buf = &buf[n.min(buf.len())..];
    }
    Ok(())
}

/// A `MakeWriter` (and its writer) over one fd that never fails: a line
/// whose write fails is dropped and counted ([`dropped`]). The fd must
/// stay open (or be `dup2`ed over) for the process's life.
#[derive(Clone, Copy, Debug)]
pub struct DropCounting {
    fd: RawFd,
}

impl DropCounting {
    /// Writes to `fd`.
    pub const fn new(fd: RawFd) -> Self {
        DropCounting { fd }
    }

    /// Writes to stderr.
    pub const fn stderr() -> Self {
        DropCounting::new(libc::STDERR_FILENO)
    }
}

impl std::io::Write for DropCounting {
    /// Writes all of `buf` or drops it; always says it wrote it all.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Err(err) = write_fd(self.fd, buf) {
            count_drop(&err);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for DropCounting {
    type Writer = DropCounting;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

/// Writes `msg` and a newline to stderr and ignores a failure: for the few
/// messages a process writes before (or instead of) logging, where
/// `eprintln!` would panic on a full disk.
pub fn stderr_line(msg: &str) {
    let mut line = String::with_capacity(msg.len() + 1);
    line.push_str(msg);
    line.push('\n');
    if let Err(err) = write_fd(libc::STDERR_FILENO, line.as_bytes()) {
        count_drop(&err);
    }
}

/// Installs the process's subscriber, filtering at `level`. A `level` that
/// is not a valid filter falls back to [`DEFAULT_LOG_LEVEL`] and is warned
/// about once, through the new subscriber, with `role` (the binary's name)
/// in the line. Returns whether `level` was valid.
///
/// Call once, first thing in `main`; a second call (or another subscriber
/// already installed) leaves the first in place.
pub fn init(role: &str, level: &str) -> bool {
    let (filter, bad) = match EnvFilter::try_new(level) {
        Ok(filter) => (filter, None),
        Err(err) => (EnvFilter::new(DEFAULT_LOG_LEVEL), Some(err)),
    };
    // Fails only if a subscriber is already set; that one stays.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(DropCounting::stderr())
        .log_internal_errors(false)
        .with_target(true)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    match bad {
        None => true,
        Some(err) => {
            tracing::warn!(
                "{role}: log level {level:?} is not a valid filter ({err}); using {DEFAULT_LOG_LEVEL:?}"
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_failed_write_is_dropped_and_counted_not_an_error() {
        static SHARED: AtomicU64 = AtomicU64::new(0);
        count_drops_in(&SHARED);
        let before = dropped();
        let shared_before = SHARED.load(Ordering::Relaxed);
        // fd -1 fails every write (EBADF), as a full disk fails with ENOSPC.
        let mut w = DropCounting::new(-1).make_writer();
        assert_eq!(w.write(b"a line\n").unwrap(), 7);
        w.write_all(b"another\n").unwrap();
        assert!(dropped() >= before + 2);
        assert!(SHARED.load(Ordering::Relaxed) >= shared_before + 2);
        assert_eq!(
            last_error().and_then(|e| e.raw_os_error()),
            Some(libc::EBADF)
        );
    }

    #[test]
    fn a_full_device_drops_lines_without_a_panic() {
        let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
            return;
        };
        let fd = std::os::fd::AsRawFd::as_raw_fd(&full);
        let before = dropped();
        DropCounting::new(fd)
            .make_writer()
            .write_all(b"no space\n")
            .unwrap();
        assert!(dropped() > before);
    }

    #[test]
    fn a_pipe_gets_the_whole_line() {
        let mut fds = [0; 2];
        // SAFETY: a valid two-int array for pipe(2).
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        DropCounting::new(fds[1])
            .make_writer()
            .write_all(b"hello\n")
            .unwrap();
        let mut buf = [0u8; 16];
        // SAFETY: reading into a valid buffer from our pipe.
        let n = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len()) };
        assert_eq!(&buf[..usize::try_from(n).unwrap()], b"hello\n");
        // SAFETY: closing the pipe fds we created.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }
}
