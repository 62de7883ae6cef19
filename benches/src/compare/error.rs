//! [`CompareError`]: everything that can stop a comparison or an
//! idle-memory run, with the file, process or system it concerns.

use std::path::PathBuf;

use thiserror::Error;

use crate::load::LoadError;

/// Why a comparison (or idle-memory run) could not go on.
#[derive(Debug, Error)]
pub enum CompareError {
    /// A binary or plugin is not where it should be.
    #[error("{} is missing: build with `cargo build --release --workspace`, or point --bin-dir at the directory holding spp, spp-proxy, spp-worker, spp-echo-direct and libspp_echo.so (and for the table spp-tokio-relay, libspp_sleep_echo.so and libspp_relay.so)", path.display())]
    MissingBinary {
        /// The path looked at.
        path: PathBuf,
    },
    /// Our own executable's path is unknown.
    #[error("cannot find spp-bench's own directory (use --bin-dir): {0}")]
    OwnPath(#[source] std::io::Error),
    /// A file or directory operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A process could not be started.
    #[error("cannot run {}: {source}", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An `spp` command failed.
    #[error("`spp {command}` failed ({status}): {output}")]
    Spp {
        /// The subcommand line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed (stdout and stderr).
        output: String,
    },
    /// `spp status --json` said something unexpected.
    #[error("unexpected `spp status --json` output: {why}")]
    Status {
        /// What is wrong.
        why: String,
    },
    /// A server process did not come up.
    #[error("{system} did not start: {why}")]
    NotStarted {
        /// Which system.
        system: &'static str,
        /// What happened.
        why: String,
    },
    /// A load run could not happen.
    #[error("{scenario} against {system}: {source}")]
    Load {
        /// The scenario.
        scenario: &'static str,
        /// The system.
        system: &'static str,
        /// The cause.
        source: LoadError,
    },
    /// The plot could not be drawn.
    #[error("plot: {0}")]
    Plot(#[source] LoadError),
    /// Too few file descriptors for the connections asked for.
    #[error("{wanted} connections need about {needed} open files, but RLIMIT_NOFILE's hard limit is {hard}; raise it (ulimit -Hn, or LimitNOFILE) or ask for fewer")]
    FdLimit {
        /// Connections asked for.
        wanted: usize,
        /// Descriptors needed.
        needed: u64,
        /// The hard limit.
        hard: u64,
    },
    /// Idle connections could not be opened or were not all accepted.
    #[error("idle connections to {system}: {why}")]
    Idle {
        /// Which system.
        system: &'static str,
        /// What happened.
        why: String,
    },
    /// Ctrl-C or SIGTERM arrived.
    #[error("interrupted")]
    Interrupted,
    /// Bad options.
    #[error("invalid {field}: {why}")]
    Invalid {
        /// The option.
        field: &'static str,
        /// Why.
        why: String,
    },
}
