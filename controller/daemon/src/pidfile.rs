//! The single-instance guard: `<run_dir>/spp.pid` holds the controller's
//! pid under an exclusive open-file-description lock (`F_OFD_SETLK`) kept
//! for the controller's life. A second controller fails to take the lock
//! and reports the first one's pid.
//!
//! The lock, not the text, says whether a controller runs: a file whose
//! lock is held belongs to a running controller even while its pid is not
//! written yet. [`probe`] tests the lock with `F_OFD_GETLK`, which takes
//! nothing, so `spp stop` / `spp status` never make a starting controller
//! fail. The pid is written over the old text before the file is cut to
//! length, so the file is never empty once written.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Attempts to take the lock when the file keeps being replaced under us.
const LOCK_ATTEMPTS: usize = 3;

/// Pid file failures.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    /// Another controller holds the lock.
    #[error("already running (pid {pid}; pid file {})", path.display())]
    AlreadyRunning {
        /// The other controller's pid (as its file says; "?" while it has
        /// not written it yet).
        pid: String,
        /// The pid file.
        path: PathBuf,
    },
    /// A file operation failed.
    #[error("pid file {}: {what}", path.display())]
    Io {
        /// The pid file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Who holds a pid file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// Nobody: no controller runs (the file may be missing or stale).
    Free,
    /// A running controller, with its pid once it has written it.
    Held(Option<u32>),
}

/// The held pid file. Dropping it releases the lock; [`PidFile::remove`]
/// also deletes the file.
#[derive(Debug)]
pub struct PidFile {
    file: File,
    path: PathBuf,
}

/// Reads the pid written in `path` (its first line): a positive `pid_t`.
pub fn read_pid(path: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    (pid > 0 && libc::pid_t::try_from(pid).is_ok()).then_some(pid)
}

/// A whole-file write lock request for `fcntl`.
fn write_lock() -> libc::flock {
    // SAFETY: `flock` is a plain C struct; all zeroes is a valid value
    // (and the l_pid of 0 that OFD locks require).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock
}

/// Whether someone holds the lock of `path`; takes no lock itself.
pub fn probe(path: &Path) -> Holder {
    let Ok(file) = File::open(path) else {
        return Holder::Free;
    };
    let mut lock = write_lock();
    // SAFETY: fcntl on an fd we own with a valid `flock` to fill in.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut lock) } != 0 {
        return Holder::Free;
    }
    if lock.l_type == libc::F_UNLCK as libc::c_short {
        Holder::Free
    } else {
        Holder::Held(read_pid(path))
    }
}

impl PidFile {
    /// Takes the lock on `path` and writes our pid in it.
    pub fn acquire(path: &Path) -> Result<Self, PidFileError> {
        let io = |what| {
            move |source| PidFileError::Io {
                path: path.to_path_buf(),
                what,
                source,
            }
        };
        for _ in 0..LOCK_ATTEMPTS {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(io("open"))?;
            let lock = write_lock();
            // SAFETY: fcntl on an fd we own with a valid `flock`.
            if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) } != 0 {
                let err = std::io::Error::last_os_error();
                if !matches!(err.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) {
                    return Err(io("lock")(err));
                }
                let pid = read_pid(path).map_or_else(|| "?".to_string(), |p| p.to_string());
                return Err(PidFileError::AlreadyRunning {
                    pid,
                    path: path.to_path_buf(),
                });
            }
            // A controller that was exiting may have unlinked the file we
            // opened: our lock must be on the file that is at `path`.
            let ours = file.metadata().map_err(io("fstat"))?;
            let current = match std::fs::metadata(path) {
                Ok(m) => m,
                Err(_) => continue,
            };
            if (ours.dev(), ours.ino()) != (current.dev(), current.ino()) {
                continue;
            }
            // Over the old text, then cut: never empty in between.
            let line = format!("{}\n", std::process::id());
            file.write_all_at(line.as_bytes(), 0).map_err(io("write"))?;
            file.set_len(line.len() as u64).map_err(io("truncate"))?;
            file.sync_all().map_err(io("sync"))?;
            return Ok(PidFile {
                file,
                path: path.to_path_buf(),
            });
        }
        Err(io("lock")(std::io::Error::other(
            "the file kept being replaced",
        )))
    }

    /// Deletes the file, then releases the lock.
    pub fn remove(self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!("removing pid file {}: {e}", self.path.display());
        }
        drop(self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spp.pid");
        assert_eq!(probe(&path), Holder::Free);
        let held = PidFile::acquire(&path).unwrap();
        assert_eq!(read_pid(&path), Some(std::process::id()));
        assert_eq!(probe(&path), Holder::Held(Some(std::process::id())));
        let err = PidFile::acquire(&path).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("already running (pid {}", std::process::id())),
            "{err}"
        );
        held.remove();
        assert!(!path.exists());
        assert_eq!(probe(&path), Holder::Free);
        let again = PidFile::acquire(&path).unwrap();
        drop(again);
        // A stale file (no lock holder) is taken over.
        assert_eq!(probe(&path), Holder::Free);
        PidFile::acquire(&path).unwrap().remove();
    }

    #[test]
    fn a_held_file_without_a_pid_still_counts_as_running() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spp.pid");
        let held = PidFile::acquire(&path).unwrap();
        // As between a holder's lock and its write.
        std::fs::write(&path, "").unwrap();
        assert_eq!(probe(&path), Holder::Held(None));
        drop(held);
        assert_eq!(probe(&path), Holder::Free);
    }

    #[test]
    fn a_longer_stale_pid_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spp.pid");
        std::fs::write(&path, "4000000000\n").unwrap();
        assert_eq!(probe(&path), Holder::Free);
        let held = PidFile::acquire(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        drop(held);
    }

    #[test]
    fn only_the_first_line_is_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spp.pid");
        std::fs::write(&path, "12\n345\n").unwrap();
        assert_eq!(read_pid(&path), Some(12));
        // Never a pid `kill` would take for a group.
        std::fs::write(&path, "0\n").unwrap();
        assert_eq!(read_pid(&path), None);
        std::fs::write(&path, "4000000000\n").unwrap();
        assert_eq!(read_pid(&path), None);
    }
}
