//! Operations on an installed service that cron and timers run:
//! [`diskclear`] (`spp diskclear`) and [`monitor`] (`spp monitor`). The
//! daemon's halves live in `spp-daemon`: rotated log names and the rename
//! half of a rotation (`log_files`), systemd readiness (`notify`).

pub mod diskclear;
pub mod monitor;

use spp_config::ConfigError;
use std::path::PathBuf;

/// Why an operation could not be carried out at all.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The config does not load.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A directory could not be read.
    #[error("reading {}", path.display())]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}
