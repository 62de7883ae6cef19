//! The controller in the foreground (`spp start --foreground`): validates
//! the config, takes the pid file, binds the control socket and the
//! listeners, creates the shared memory, starts the stats collector (and
//! its Prometheus endpoint when `service.metrics` is set), and runs the
//! [`Supervisor`] on a current-thread tokio runtime until the service is
//! stopped. Removes the socket and the pid file on the way out.

use crate::control::{self, ControlError};
use crate::listeners::{self, ListenError};
use crate::logging::{self, LogError};
use crate::pidfile::{PidFile, PidFileError};
use crate::plugin_check;
use crate::privileges;
use crate::resources::{ResourceError, Resources};
use crate::spawn::{Binaries, SpawnError};
use crate::stats::{self, StatsError};
use crate::supervisor::{SuperviseError, Supervisor};
use spp_config::environment::Mode;
use spp_config::{self as config, Config, ConfigError, RunAs};
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// Control requests queued for the supervisor at most.
const CONTROL_QUEUE: usize = 64;

/// Why the controller could not run the service.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The child executables are missing.
    #[error(transparent)]
    Binaries(#[from] SpawnError),
    /// A directory could not be created.
    #[error("creating {}", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Logging could not be set up.
    #[error(transparent)]
    Log(#[from] LogError),
    /// Another controller runs, or the pid file is unusable.
    #[error(transparent)]
    PidFile(#[from] PidFileError),
    /// The control socket could not be bound.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// A listener could not be bound.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// Shared memory could not be created.
    #[error(transparent)]
    Resource(#[from] ResourceError),
    /// The metrics endpoint could not be started.
    #[error(transparent)]
    Stats(#[from] StatsError),
    /// `service.user` cannot be taken on by children of this process.
    #[error("{}: service.user: {reason}", file.display())]
    RunAs {
        /// The config file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// The async runtime could not be built.
    #[error("building the runtime: {0}")]
    Runtime(std::io::Error),
    /// The start failed.
    #[error(transparent)]
    Supervise(#[from] SuperviseError),
}

/// Everything checked before anything starts: the config, the plugins, the
/// fd limit (raised when `mode` is [`Mode::Prepare`]) and the executables.
/// The plugins are loaded in a child ([`plugin_check`]), never here.
pub fn preflight(config_path: &Path, mode: Mode) -> Result<(Config, Binaries), RunError> {
    let cfg = config::load(config_path)?;
    if let Some(who) = &cfg.service.run_as {
        privileges::can_drop_to(who).map_err(|reason| RunError::RunAs {
            file: cfg.file.clone(),
            reason,
        })?;
    }
    plugin_check::environment(&cfg, mode)?;
    let bins = Binaries::locate()?;
    Ok((cfg, bins))
}

/// Creates `dir` and its parents, mode 0750 ([`privileges::private_dir`]).
pub fn make_dir(dir: &Path) -> Result<(), RunError> {
    make_dir_for(dir, None)
}

/// [`make_dir`], owned by `owner` (the log dir: the service user reopens
/// its logs there).
fn make_dir_for(dir: &Path, owner: Option<&RunAs>) -> Result<(), RunError> {
    privileges::private_dir(dir, owner).map_err(|source| RunError::Dir {
        path: dir.to_path_buf(),
        source,
    })
}

/// Runs the service in this process until it is stopped. Logs to stderr,
/// and also to `controller.log` when `log_to_file` (false when stderr
/// already is that file). Errors after logging started are logged too.
pub fn run(config_path: &Path, log_to_file: bool) -> Result<(), RunError> {
    privileges::private_umask();
    let (cfg, bins) = preflight(config_path, Mode::Prepare)?;
    make_dir(&cfg.service.run_dir)?;
    make_dir_for(&cfg.service.log_dir, cfg.service.run_as.as_ref())?;
    let log_file = cfg.controller_log();
    let output = if log_to_file {
        logging::Output::AlsoFile(&log_file)
    } else {
        logging::Output::StderrIsFile(&log_file)
    };
    logging::init(&cfg.service.log_level, output)?;
    let result = run_logged(cfg, bins);
    if let Err(e) = &result {
        tracing::error!("{}", logging::error_chain(e));
    }
    result
}

fn run_logged(cfg: Config, bins: Binaries) -> Result<(), RunError> {
    let pid_file = PidFile::acquire(&cfg.pid_file())?;
    let socket_path = cfg.socket_path();
    let result = serve(cfg, bins, &socket_path);
    if let Err(e) = std::fs::remove_file(&socket_path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("removing {}: {e}", socket_path.display());
        }
    }
    pid_file.remove();
    result
}

fn serve(cfg: Config, bins: Binaries, socket_path: &Path) -> Result<(), RunError> {
    let socket = control::bind(socket_path)?;
    let listeners = listeners::bind_all(&cfg)?;
    let res = Resources::create(&cfg)?;
    tracing::info!(
        "controller pid {} starting service {} from {}",
        std::process::id(),
        cfg.service.name,
        cfg.file.display()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    runtime.block_on(async move {
        let socket =
            tokio::net::UnixListener::from_std(socket).map_err(|source| ControlError::Bind {
                path: socket_path.to_path_buf(),
                what: "register",
                source,
            })?;
        let collector = stats::Collector::new(&cfg);
        if let Some(addr) = cfg.service.metrics {
            stats::serve_metrics(addr, &collector)?;
        }
        let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
        let server = tokio::spawn(control::serve(socket, tx));
        let outcome = Supervisor::run(cfg, bins, listeners, res, rx, collector).await;
        server.abort();
        outcome.map_err(RunError::from)
    })
}
