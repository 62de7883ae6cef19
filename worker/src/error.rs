//! [`WorkerError`]: everything that stops a worker, and the exit status each
//! one maps to (the controller shows it in `spp status`).

use spp_ipc::IpcError;
use spp_plugin_api::host::LoadError;
use std::os::fd::RawFd;
use std::path::PathBuf;

/// Exit status of a worker that failed while serving (corrupt ring, signal
/// set-up).
pub const EXIT_RUNTIME: u8 = 1;
/// Exit status for a bad launch spec or a plugin that cannot be loaded.
pub const EXIT_LAUNCH: u8 = 2;
/// Exit status when the plugin's `spp_init` returned non-zero.
pub const EXIT_INIT: u8 = 3;

/// Why a worker stopped. Messages carry their context (file, fd, code), so
/// one log line says what went wrong.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// `SPP_LAUNCH` is missing or malformed.
    #[error("{0}")]
    Launch(#[source] IpcError),
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
    #[error("launch spec: cannot use the {what} (fd {fd}): {source}")]
    Attach {
        /// Which fd.
        what: &'static str,
        /// Its number.
        fd: RawFd,
        /// The underlying failure.
        #[source]
        source: IpcError,
    },
    /// The plugin cannot be loaded (names the file; for an ABI mismatch,
    /// both versions).
    #[error("{0}")]
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
    #[error("cannot install the {signal} handler: {source}")]
    Signal {
        /// The signal's name.
        signal: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The request ring holds something that cannot be a valid record.
    #[error("request ring of group {group} worker {index}: {source}")]
    Ring {
        /// The worker's group.
        group: u32,
        /// The worker's index.
        index: u32,
        /// What is wrong.
        #[source]
        source: IpcError,
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
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            WorkerError::Launch(_)
            | WorkerError::WrongRole { .. }
            | WorkerError::BadSpec { .. }
            | WorkerError::Attach { .. }
            | WorkerError::Load(_)
            | WorkerError::Conf { .. } => EXIT_LAUNCH,
            WorkerError::Init { .. } => EXIT_INIT,
            WorkerError::Signal { .. }
            | WorkerError::Ring { .. }
            | WorkerError::BadRecord { .. }
            | WorkerError::HostInstalledTwice => EXIT_RUNTIME,
        }
    }
}
