//! The plugin half of the config's machine-dependent checks: each plugin
//! is loaded the way its process will load it (ABI version, required
//! hooks).

use spp_config::environment::{self, Mode, PluginRole};
use spp_config::{Config, ConfigError};
use spp_plugin_api::host::{PluginLibrary, Role};
use std::path::Path;

/// Every machine-dependent check of `cfg` ([`environment::check`]), each
/// plugin checked by [`load`].
pub fn environment(cfg: &Config, mode: Mode) -> Result<(), ConfigError> {
    environment::check(cfg, mode, &load)
}

/// Loads the plugin at `path` for `role`; `Err` carries the reason.
pub fn load(path: &Path, role: PluginRole) -> Result<(), String> {
    let role = match role {
        PluginRole::Proxy => Role::Proxy,
        PluginRole::Worker => Role::Worker,
    };
    PluginLibrary::load(path, role)
        .map(drop)
        .map_err(|e| spp_ipc::error_chain(&e))
}
