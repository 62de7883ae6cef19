//! The proxy's error type, [`ProxyError`], and the process exit code each
//! kind of failure maps to (see the brief: 2 = bad launch spec or plugin
//! that cannot be loaded, 3 = the plugin's `spp_init` refused).

use spp_ipc::IpcError;
use spp_plugin_api::host::LoadError;
use std::io;
use std::path::PathBuf;

/// Exit status: the launch spec is unusable or the plugin cannot be loaded.
pub const EXIT_BAD_LAUNCH: u8 = 2;
/// Exit status: the plugin's `spp_init` returned non-zero.
pub const EXIT_PLUGIN_INIT: u8 = 3;
/// Exit status: a system call the event loop depends on failed.
pub const EXIT_RUNTIME: u8 = 1;

/// Everything that stops the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// `SPP_LAUNCH` is missing or malformed.
    #[error("cannot read the launch spec: {0}")]
    Launch(#[source] IpcError),
    /// `SPP_LAUNCH` describes another role.
    #[error("the launch spec is for role `{0}`, but this is spp-proxy")]
    WrongRole(&'static str),
    /// A value in the launch spec is out of range or inconsistent.
    #[error("launch spec: {field}: {reason}")]
    BadSpec {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An inherited shared-memory region or ring could not be used.
    #[error("{what}: {source}")]
    Region {
        /// Which region (names the group and slot for pairs).
        what: String,
        /// The IPC layer's error.
        #[source]
        source: IpcError,
    },
    /// An inherited listener fd is not what the spec says.
    #[error("listener #{index} ({addr}, fd {fd}): {reason}")]
    Listener {
        /// Index in the config's `listen` list.
        index: u16,
        /// The address the spec claims.
        addr: std::net::SocketAddr,
        /// The inherited fd.
        fd: i32,
        /// What is wrong.
        reason: String,
    },
    /// The plugin could not be loaded (its message names the file).
    #[error(transparent)]
    PluginLoad(#[from] LoadError),
    /// The plugin's `spp_init` returned non-zero.
    #[error("plugin {path}: spp_init returned {code}")]
    PluginInit {
        /// The plugin file.
        path: PathBuf,
        /// What `spp_init` returned.
        code: i32,
    },
    /// A system call of the event loop failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl ProxyError {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: &'static str) -> impl FnOnce(io::Error) -> ProxyError {
        move |source| ProxyError::Io { what, source }
    }

    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            ProxyError::Launch(_)
            | ProxyError::WrongRole(_)
            | ProxyError::BadSpec { .. }
            | ProxyError::Region { .. }
            | ProxyError::Listener { .. }
            | ProxyError::PluginLoad(_) => EXIT_BAD_LAUNCH,
            ProxyError::PluginInit { .. } => EXIT_PLUGIN_INIT,
            ProxyError::Io { .. } => EXIT_RUNTIME,
        }
    }
}
