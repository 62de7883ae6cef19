//! Log files of children: on SIGHUP a child reopens its log path and puts
//! the new file in place of its stdout and stderr, so `logrotate` (rename,
//! then SIGHUP) needs no `copytruncate`. [`reopen_after_sighup`] is what
//! the proxy and the worker do on SIGHUP, outside the signal handler.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Opens `path` for appending (creating it) and makes it this process's
/// stdout and stderr. Writes already under way finish on the old file.
pub fn reopen_stdio(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    // Never through a link planted at the log's name.
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    for target in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        // SAFETY: dup2 onto the standard descriptors with an fd we own; it
        // atomically replaces them and does not touch `file`.
        if unsafe { libc::dup2(file.as_raw_fd(), target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// SIGHUP: reopens `log_file` (the launch spec's, if any) onto stdout and
/// stderr, so a rotated (renamed) log is let go, and says so in the log. A
/// failure is logged and leaves logging on the old file. Not
/// async-signal-safe: call it from the main loop, never in the handler.
pub fn reopen_after_sighup(log_file: Option<&Path>) {
    let Some(path) = log_file else {
        tracing::info!("SIGHUP: no log file to reopen");
        return;
    };
    match reopen_stdio(path) {
        Ok(()) => tracing::info!(file = %path.display(), "SIGHUP: log file reopened"),
        Err(err) => tracing::warn!(
            file = %path.display(),
            "SIGHUP: cannot reopen the log file ({err}); logging on to the old one"
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn without_a_log_file_a_reopen_does_nothing() {
        super::reopen_after_sighup(None);
        let err = std::path::Path::new("/nonexistent-dir/x.log");
        // Logged, not returned: the process logs on to its old file.
        super::reopen_after_sighup(Some(err));
    }

    #[test]
    fn a_missing_directory_is_an_error_not_a_panic() {
        let err = super::reopen_stdio(std::path::Path::new("/nonexistent-dir/x.log"));
        assert!(err.is_err());
    }
}
