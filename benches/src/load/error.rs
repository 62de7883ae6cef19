//! The load harness's error type: everything that stops a run before it
//! produces a [`Report`](super::Report).
//!
//! Errors *during* a run (mismatched responses, timeouts, closed
//! connections, failed reconnects) are not errors of the harness: they are
//! counted in the report.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why a load run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The target string is not `[tcp://|udp://]HOST:PORT`.
    #[error("bad target {text:?}: {why}")]
    BadTarget {
        /// The target as given.
        text: String,
        /// What is wrong with it.
        why: String,
    },
    /// The target host name did not resolve.
    #[error("cannot resolve {text:?}: {source}")]
    Resolve {
        /// The target as given.
        text: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// A setting is out of range or contradicts another one.
    #[error("invalid setting {field}: {why}")]
    InvalidSpec {
        /// The setting (named as on the command line).
        field: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// A request or expected-response file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The target refused or did not accept a connection before the run.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// The target, `tcp://ADDR` or `udp://ADDR`.
        target: String,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The UDP target did not answer the probe request.
    #[error("no response from {target} within {}", humantime::format_duration(*timeout))]
    NoResponse {
        /// The target, `udp://ADDR`.
        target: String,
        /// How long the probe waited.
        timeout: Duration,
    },
    /// A load thread or its runtime could not be created.
    #[error("cannot start load thread {index}: {source}")]
    Thread {
        /// The thread's index.
        index: usize,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A load thread panicked (a bug in the harness).
    #[error("load thread {index} panicked")]
    ThreadPanicked {
        /// The thread's index.
        index: usize,
    },
    /// A load thread stopped because another one failed to start.
    #[error("load thread {index} stopped: the run was aborted")]
    Aborted {
        /// The thread's index.
        index: usize,
    },
    /// The latency histogram could not be created or merged.
    #[error("latency histogram: {0}")]
    Histogram(String),
    /// The SVG plot could not be drawn or written.
    #[error("cannot write plot {}: {message}", path.display())]
    Plot {
        /// The SVG file.
        path: PathBuf,
        /// The drawing backend's error.
        message: String,
    },
}
