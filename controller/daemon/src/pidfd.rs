//! Process file descriptors (`pidfd_open(2)`, Linux 5.3+): a pidfd names
//! one process for as long as it is open, so a signal sent through it
//! ([`Pidfd::signal`], `pidfd_send_signal(2)`) reaches that process or
//! fails with `ESRCH` once it has been reaped; it never reaches a later
//! process that reused the pid, as `kill(2)` could.
//!
//! The supervisor opens one for each child right after spawning it (before
//! anything can reap it) and keeps it in the child's
//! [`Running`](crate::children::Running); `spp stop` waits on one for the
//! controller to exit (`wait_gone` in the CLI's `lifecycle`).

use nix::sys::signal::Signal;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// An open pidfd.
#[derive(Debug)]
pub struct Pidfd(OwnedFd);

impl Pidfd {
    /// Opens a pidfd for `pid`. `ESRCH`: no such process; `ENOSYS`: the
    /// kernel has no `pidfd_open`.
    pub fn open(pid: u32) -> io::Result<Self> {
        let pid =
            libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        let raw = i32::try_from(raw).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
        // SAFETY: a fresh fd that nothing else owns.
        Ok(Pidfd(unsafe { OwnedFd::from_raw_fd(raw) }))
    }

    /// Sends `sig` to the process; `ESRCH` once it has been reaped.
    pub fn signal(&self, sig: Signal) -> io::Result<()> {
        // SAFETY: pidfd_send_signal takes an fd we own, a signal number, a
        // null siginfo (the kernel fills in a SI_USER one) and no flags.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                sig as libc::c_int,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// The fd, for `poll(2)` (readable once the process has exited).
    pub fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn a_signal_reaches_the_live_child_and_never_a_reaped_one() {
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .expect("spawn sleep");
        let pidfd = Pidfd::open(child.id()).expect("pidfd_open");
        pidfd
            .signal(Signal::SIGKILL)
            .expect("signal the live child");
        let status = child.wait().expect("reap");
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        // Reaped: its pid may name another process by now; the pidfd does
        // not follow it.
        let err = pidfd.signal(Signal::SIGTERM).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH), "{err}");
    }

    #[test]
    fn no_pidfd_for_a_pid_that_does_not_exist() {
        let err = Pidfd::open(u32::MAX).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH), "{err}");
    }
}
