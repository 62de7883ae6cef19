//! The error type of the IPC layer.

use std::error::Error;
use std::io;

/// Everything that can go wrong creating, mapping or reading shared state.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// A system call failed.
    #[error("{what}")]
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

/// `err` and its causes, `: `-separated (`opening log x: Permission
/// denied`), for logs and operator messages. A cause whose text the message
/// before it already ends with is not repeated.
pub fn error_chain(err: &(dyn Error + 'static)) -> String {
    let mut text = String::new();
    for err in std::iter::successors(Some(err), |&e| e.source()) {
        let message = err.to_string();
        if text.is_empty() {
            text = message;
        } else if !text.ends_with(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_shows_every_cause_once() {
        let err = IpcError::Sys {
            what: "mmap region",
            source: io::Error::from_raw_os_error(libc::ENOMEM),
        };
        let text = error_chain(&err);
        assert!(text.starts_with("mmap region: "), "{text}");
        assert_eq!(text.matches("memory").count(), 1, "{text}");
    }
}
