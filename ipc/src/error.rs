//! The error type of the IPC layer.

use std::io;

/// Everything that can go wrong creating, mapping or reading shared state.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A mapped region does not hold what its header promises.
    #[error("shared memory region {what}: {reason}")]
    BadLayout {
        /// Which region.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A ring holds a record that cannot be valid; the ring must be reset.
    #[error("ring corrupt at offset {offset}: {reason}")]
    Corrupt {
        /// Byte position of the bad record.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// The launch spec in the environment is missing or malformed.
    #[error("launch spec: {0}")]
    Launch(String),
}

impl IpcError {
    /// Wraps the last OS error.
    pub fn last_os(what: &'static str) -> Self {
        IpcError::Sys {
            what,
            source: io::Error::last_os_error(),
        }
    }
}
