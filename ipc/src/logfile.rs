//! Log files of children: on SIGHUP a child reopens its log path and puts
//! the new file in place of its stdout and stderr, so `logrotate` (rename,
//! then SIGHUP) needs no `copytruncate`.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Opens `path` for appending (creating it) and makes it this process's
/// stdout and stderr. Writes already under way finish on the old file.
pub fn reopen_stdio(path: &Path) -> std::io::Result<()> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    for target in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        // SAFETY: dup2 onto the standard descriptors with an fd we own; it
        // atomically replaces them and does not touch `file`.
        if unsafe { libc::dup2(file.as_raw_fd(), target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_missing_directory_is_an_error_not_a_panic() {
        let err = super::reopen_stdio(std::path::Path::new("/nonexistent-dir/x.log"));
        assert!(err.is_err());
    }
}
