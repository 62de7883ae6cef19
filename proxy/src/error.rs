//! The proxy's error type, [`ProxyError`], and the process exit code each
//! kind of failure maps to (`spp_ipc::launch::exit_code`: `SETUP` for a bad
//! launch spec or a plugin that cannot be loaded, `plugin_init(code)` (the
//! plugin's code, clamped) when its `spp_init` refused, `FAILURE` for a
//! runtime failure).
//!
//! A variant that wraps another error marks it `#[source]` and leaves it
//! out of its own message, so `{e:#}` (or [`spp_ipc::error_chain`]) shows it once.

use spp_ipc::launch::exit_code;
use spp_ipc::IpcError;
use spp_plugin_api::host::LoadError;
use std::io;
use std::path::PathBuf;

/// Everything that stops the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// `SPP_LAUNCH` is missing or malformed.
    #[error("cannot read the launch spec")]
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
    #[error("{what}")]
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
    #[error("{what}")]
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

    /// The process exit status for this error (`launch::exit_code`).
    pub fn exit_code(&self) -> i32 {
        match self {
            ProxyError::Launch(_)
            | ProxyError::WrongRole(_)
            | ProxyError::BadSpec { .. }
            | ProxyError::Region { .. }
            | ProxyError::Listener { .. }
            | ProxyError::PluginLoad(_) => exit_code::SETUP,
            ProxyError::PluginInit { code, .. } => exit_code::plugin_init(*code),
            ProxyError::Io { .. } => exit_code::FAILURE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts how often `needle` occurs in `hay`.
    fn count(hay: &str, needle: &str) -> usize {
        hay.matches(needle).count()
    }

    #[test]
    fn a_wrapped_cause_is_shown_once() {
        let cause = "the disk is on fire";
        let io_err = ProxyError::Io {
            what: "waiting for events",
            source: io::Error::other(cause),
        };
        let launch = ProxyError::Launch(IpcError::Launch(cause.into()));
        for e in [io_err, launch] {
            let text = spp_ipc::error_chain(&e);
            assert_eq!(count(&text, cause), 1, "{text}");
            let alternate = format!("{:#}", anyhow::Error::from(e));
            assert_eq!(count(&alternate, cause), 1, "{alternate}");
        }
    }

    #[test]
    fn exit_codes_are_the_shared_ones() {
        let init = ProxyError::PluginInit {
            path: "p.so".into(),
            code: 7,
        };
        assert_eq!(init.exit_code(), 7, "the plugin's own code");
        let negative = ProxyError::PluginInit {
            path: "p.so".into(),
            code: -1,
        };
        assert_eq!(negative.exit_code(), 1, "clamped to 1..=255");
        assert_eq!(
            ProxyError::WrongRole("worker").exit_code(),
            exit_code::SETUP
        );
    }
}
