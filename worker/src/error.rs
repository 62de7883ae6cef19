//! [`WorkerError`]: everything that stops a worker, and the exit status each
//! one maps to (the controller shows it in `spp status`).
//!
//! An underlying error is shown in exactly one place: in the variant's
//! message (its field is not marked as the `source`), or, for the wrappers
//! that are nothing but their inner error, `transparent`. So a log line of
//! the message, or of the whole source chain, names each cause once.

use spp_ipc::launch::exit_code;
use spp_ipc::IpcError;
use spp_plugin_api::host::LoadError;
use std::os::fd::RawFd;
use std::path::PathBuf;

/// Why a worker stopped. Messages carry their context (file, fd, code), so
/// one log line says what went wrong.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// `SPP_LAUNCH` is missing or malformed.
    #[error(transparent)]
    Launch(IpcError),
    /// The launch spec is for another role.
    #[error("launch spec: role is `{role}`, but this is spp-worker")]
    WrongRole {
        /// The role the spec names.
        role: &'static str,
    },
    /// The launch spec is inconsistent.
    #[error("launch spec: {reason}")]
    BadSpec {
        /// What is wrong with it.
        reason: String,
    },
    /// An inherited region or doorbell cannot be used.
    #[error("launch spec: cannot use the {what} (fd {fd}): {cause}")]
    Attach {
        /// Which fd.
        what: &'static str,
        /// Its number.
        fd: RawFd,
        /// The underlying failure.
        cause: IpcError,
    },
    /// The plugin cannot be loaded (names the file; for an ABI mismatch,
    /// both versions).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// `plugin_conf` cannot be passed to C.
    #[error("plugin {path}: plugin_conf contains a NUL byte")]
    Conf {
        /// The plugin file.
        path: PathBuf,
    },
    /// The plugin's `spp_init` refused to start.
    #[error("plugin {path}: spp_init returned {code}")]
    Init {
        /// The plugin file.
        path: PathBuf,
        /// What it returned.
        code: i32,
    },
    /// A signal handler could not be installed.
    #[error("cannot install the {signal} handler: {cause}")]
    Signal {
        /// The signal's name.
        signal: &'static str,
        /// The OS error.
        cause: std::io::Error,
    },
    /// The request ring holds something that cannot be a valid record.
    #[error("request ring of group {group} worker {index}: {cause}")]
    Ring {
        /// The worker's group.
        group: u32,
        /// The worker's index.
        index: u32,
        /// What is wrong.
        cause: IpcError,
    },
    /// The `spp_host` services were installed a second time (a bug: they
    /// mark the main thread and exist once per process).
    #[error("the spp_host services can only be installed once per process")]
    HostInstalledTwice,
    /// A request record too short to hold its `RequestMeta`.
    #[error("request ring of group {group} worker {index}: a request record of {len} bytes has no room for its meta")]
    BadRecord {
        /// The worker's group.
        group: u32,
        /// The worker's index.
        index: u32,
        /// The record's payload length.
        len: usize,
    },
}

impl WorkerError {
    /// The process exit status for this error (one of
    /// [`spp_ipc::launch::exit_code`]).
    pub fn exit_code(&self) -> i32 {
        match self {
            WorkerError::Launch(_)
            | WorkerError::WrongRole { .. }
            | WorkerError::BadSpec { .. }
            | WorkerError::Attach { .. }
            | WorkerError::Load(_)
            | WorkerError::Conf { .. } => exit_code::SETUP,
            WorkerError::Init { code, .. } => exit_code::plugin_init(*code),
            WorkerError::Signal { .. }
            | WorkerError::Ring { .. }
            | WorkerError::BadRecord { .. }
            | WorkerError::HostInstalledTwice => exit_code::FAILURE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use spp_ipc::error_chain as chain;

    #[test]
    fn a_cause_is_shown_once_in_a_chain() {
        let err = WorkerError::Signal {
            signal: "SIGTERM",
            cause: std::io::Error::other("no handler slots"),
        };
        assert_eq!(
            chain(&err),
            "cannot install the SIGTERM handler: no handler slots"
        );
        let err = WorkerError::Launch(IpcError::Launch("SPP_LAUNCH is not set".into()));
        assert_eq!(chain(&err), "launch spec: SPP_LAUNCH is not set");
        assert_eq!(err.exit_code(), exit_code::SETUP);
        let init = |code| WorkerError::Init {
            path: "p.so".into(),
            code,
        };
        assert_eq!(init(7).exit_code(), 7, "the plugin's own code");
        assert_eq!(init(-1).exit_code(), 1, "clamped to 1..=255");
        assert_eq!(init(4096).exit_code(), 255);
    }
}
