//! Operations on an installed service that cron, timers and systemd run:
//! [`logs`] (rotated log names, the rename half of a rotation), [`diskclear`]
//! (`spp diskclear`), [`monitor`] (`spp monitor`) and [`notify`] (systemd
//! readiness).

pub mod diskclear;
pub mod logs;
pub mod monitor;
pub mod notify;

use crate::config::ConfigError;
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
