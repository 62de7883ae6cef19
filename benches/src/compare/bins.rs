//! Where the programs are: the release binaries next to `spp-bench` (or in
//! `--bin-dir`), and `haproxy` on `PATH`.

use std::path::{Path, PathBuf};

use super::error::CompareError;

/// The spp controller.
pub const SPP: &str = "spp";
/// The binaries `spp` needs next to it.
const SPP_CHILDREN: [&str; 2] = ["spp-proxy", "spp-worker"];
/// The baseline server.
pub const DIRECT: &str = "spp-echo-direct";
/// The echo plugin's file name.
pub const ECHO_PLUGIN: &str = "libspp_echo.so";
/// The sleep-echo plugin's file name (SPP's table only).
pub const SLEEP_ECHO_PLUGIN: &str = "libspp_sleep_echo.so";
/// The relay plugin's file name (SPP's table only).
pub const RELAY_PLUGIN: &str = "libspp_relay.so";
/// The async relay plugin's file name (the async relay suite only).
pub const RELAY_ASYNC_PLUGIN: &str = "libspp_relay_async.so";
/// The environment variable the async plugin layer reads at `spp_init`
/// to run its runtime on a plugin thread instead of the worker's own (the
/// default), and its value for that placement.
pub use spp_plugin_api::asynchronous::{
    RUNTIME_ENV as ASYNC_RUNTIME_ENV, RUNTIME_THREAD as ASYNC_RUNTIME_THREAD,
};
/// The tokio relay (SPP's table only).
pub const TOKIO_RELAY: &str = "spp-tokio-relay";
/// The haproxy program looked up on `PATH`.
pub const HAPROXY: &str = "haproxy";

/// The directory holding the built binaries.
#[derive(Clone, Debug)]
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// `dir`, or the directory of the running executable; checks that every
    /// needed file is there.
    pub fn locate(dir: Option<&Path>) -> Result<Self, CompareError> {
        let dir = match dir {
            Some(d) => d.to_path_buf(),
            None => {
                let exe = std::env::current_exe().map_err(CompareError::OwnPath)?;
                exe.parent()
                    .map(Path::to_path_buf)
                    .ok_or_else(|| CompareError::OwnPath(std::io::ErrorKind::NotFound.into()))?
            }
        };
        let bins = Binaries { dir };
        for name in [SPP, DIRECT, ECHO_PLUGIN].into_iter().chain(SPP_CHILDREN) {
            let path = bins.dir.join(name);
            if !path.is_file() {
                return Err(CompareError::MissingBinary { path });
            }
        }
        Ok(bins)
    }

    /// `name` in the directory, if it is there (for the files only some
    /// suites need).
    pub fn require(&self, name: &str) -> Result<PathBuf, CompareError> {
        let path = self.dir.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(CompareError::MissingBinary { path })
        }
    }

    /// The `spp` controller CLI.
    pub fn spp(&self) -> PathBuf {
        self.dir.join(SPP)
    }

    /// The direct echo server.
    pub fn direct(&self) -> PathBuf {
        self.dir.join(DIRECT)
    }

    /// The echo plugin.
    pub fn echo_plugin(&self) -> PathBuf {
        self.dir.join(ECHO_PLUGIN)
    }
}

/// `name`'s path if it is an executable file on `PATH` (haproxy, wrk,
/// nginx, redis-server, redis-benchmark).
pub fn on_path(name: &str) -> Option<PathBuf> {
    which::which(name).ok()
}

/// `haproxy`'s path if it is an executable file on `PATH`.
pub fn find_haproxy() -> Option<PathBuf> {
    on_path(HAPROXY)
}
