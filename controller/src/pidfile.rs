//! The single-instance guard: `<run_dir>/spp.pid` holds the controller's
//! pid under an exclusive `flock` kept for the controller's life. A second
//! controller fails to take the lock and reports the first one's pid.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Attempts to take the lock when the file keeps being replaced under us.
const LOCK_ATTEMPTS: usize = 3;

/// Pid file failures.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    /// Another controller holds the lock.
    #[error("already running (pid {pid}; pid file {})", path.display())]
    AlreadyRunning {
        /// The other controller's pid (as its file says; "?" if unreadable).
        pid: String,
        /// The pid file.
        path: PathBuf,
    },
    /// A file operation failed.
    #[error("pid file {}: {what}: {source}", path.display())]
    Io {
        /// The pid file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The held pid file. Dropping it releases the lock; [`PidFile::remove`]
/// also deletes the file.
#[derive(Debug)]
pub struct PidFile {
    file: File,
    path: PathBuf,
}

/// Reads the pid written in `path`.
pub fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
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
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(io("open"))?;
            // SAFETY: flock on an fd we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                    return Err(io("flock")(err));
                }
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let pid = text
                    .trim()
                    .parse::<u32>()
                    .map_or_else(|_| "?".to_string(), |p| p.to_string());
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
            file.set_len(0).map_err(io("truncate"))?;
            file.rewind().map_err(io("rewind"))?;
            writeln!(file, "{}", std::process::id()).map_err(io("write"))?;
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
        let held = PidFile::acquire(&path).unwrap();
        assert_eq!(read_pid(&path), Some(std::process::id()));
        let err = PidFile::acquire(&path).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("already running (pid {}", std::process::id())),
            "{err}"
        );
        held.remove();
        assert!(!path.exists());
        let again = PidFile::acquire(&path).unwrap();
        drop(again);
        // A stale file (no lock holder) is taken over.
        PidFile::acquire(&path).unwrap().remove();
    }
}
