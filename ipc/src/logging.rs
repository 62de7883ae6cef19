//! Logging set-up of the proxy and the worker: `tracing` to stderr (which
//! the controller points at the child's log file), one line per event with
//! its target, ANSI colours only when stderr is a terminal. The filter is
//! the launch spec's log level, in `tracing`'s `EnvFilter` syntax.
//!
//! The controller's own logging (file-based, rotated) is its own business.

use crate::launch::DEFAULT_LOG_LEVEL;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the process's subscriber, filtering at `level`. A `level` that
/// is not a valid filter falls back to [`DEFAULT_LOG_LEVEL`] and is warned
/// about once, through the new subscriber, with `role` (the binary's name)
/// in the line. Returns whether `level` was valid.
///
/// Call once, first thing in `main`; a second call (or another subscriber
/// already installed) leaves the first in place.
pub fn init(role: &str, level: &str) -> bool {
    let (filter, bad) = match EnvFilter::try_new(level) {
        Ok(filter) => (filter, None),
        Err(err) => (EnvFilter::new(DEFAULT_LOG_LEVEL), Some(err)),
    };
    // Fails only if a subscriber is already set; that one stays.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    match bad {
        None => true,
        Some(err) => {
            tracing::warn!(
                "{role}: log level {level:?} is not a valid filter ({err}); using {DEFAULT_LOG_LEVEL:?}"
            );
            false
        }
    }
}
