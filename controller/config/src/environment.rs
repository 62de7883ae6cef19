//! The config checks that depend on the machine: every plugin exists and
//! loads with the right ABI version and hooks, the open-file limit can
//! cover `proxy.max_connections`, and the embedded L5 registry's directory
//! is not writable by others without the sticky bit.
//!
//! Loading a plugin is the caller's [`PluginCheck`]: the controller never
//! maps a business plugin into its own long-lived process (plugins may
//! start threads and cannot be unloaded safely), so `spp-daemon` checks
//! each one in a short-lived child. This module only says which file to
//! check for which role and turns the verdict into a [`ConfigError`].

use super::{Config, ConfigError};
use crate::defaults;
use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
use std::path::Path;

/// Which process loads a plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PluginRole {
    /// `proxy.plugin`.
    Proxy,
    /// A `[[group]]`'s `plugin`.
    Worker,
}

impl PluginRole {
    /// `"proxy"` or `"worker"`.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginRole::Proxy => "proxy",
            PluginRole::Worker => "worker",
        }
    }

    /// The role named `name` (as [`PluginRole::as_str`] writes it).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "proxy" => Some(PluginRole::Proxy),
            "worker" => Some(PluginRole::Worker),
            _ => None,
        }
    }
}

/// Loads the plugin at the path the way a process of the role will (ABI
/// version, required hooks); `Err` carries why it cannot be used.
pub type PluginCheck<'a> = &'a dyn Fn(&Path, PluginRole) -> Result<(), String>;

/// Whether [`check`] may change the process (raise the soft fd limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `spp check`: look only.
    Inspect,
    /// `spp start`: raise the soft fd limit when it is too low.
    Prepare,
}

/// Runs every machine-dependent check; `load` checks each plugin.
pub fn check(cfg: &Config, mode: Mode, load: PluginCheck<'_>) -> Result<(), ConfigError> {
    plugin(
        cfg,
        "proxy.plugin",
        &cfg.proxy.plugin,
        PluginRole::Proxy,
        load,
    )?;
    for (pos, group) in cfg.groups.iter().enumerate() {
        plugin(
            cfg,
            &format!("group[{pos}].plugin"),
            &group.plugin,
            PluginRole::Worker,
            load,
        )?;
    }
    if let Some(l5) = &cfg.l5 {
        crate::l5::check_registry_dir(l5)
            .map_err(|reason| invalid(cfg, "l5.registry_dir", reason))?;
    }
    nofile(cfg, mode)
}

fn invalid(cfg: &Config, key: &str, reason: String) -> ConfigError {
    ConfigError::Invalid {
        file: cfg.file.clone(),
        key: key.to_string(),
        reason,
    }
}

/// Checks that the plugin exists, then has `load` check it.
fn plugin(
    cfg: &Config,
    key: &str,
    path: &Path,
    role: PluginRole,
    load: PluginCheck<'_>,
) -> Result<(), ConfigError> {
    if !path.is_file() {
        return Err(invalid(
            cfg,
            key,
            format!("plugin file {} does not exist", path.display()),
        ));
    }
    load(path, role).map_err(|reason| invalid(cfg, key, reason))
}

/// Open files the proxy needs: every connection, the inherited fds, and a
/// margin for logs, epoll, pidfds and the plugin.
pub fn files_needed(cfg: &Config) -> u64 {
    let inherited = cfg.proxy.listen.len() + 2 + 2 * cfg.total_slots();
    cfg.proxy.max_connections as u64 + inherited as u64 + defaults::NOFILE_MARGIN
}

fn nofile(cfg: &Config, mode: Mode) -> Result<(), ConfigError> {
    let needed = files_needed(cfg);
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| {
        invalid(
            cfg,
            "proxy.max_connections",
            format!("cannot read RLIMIT_NOFILE: {e}"),
        )
    })?;
    if soft == RLIM_INFINITY || soft >= needed {
        return Ok(());
    }
    if hard != RLIM_INFINITY && hard < needed {
        return Err(invalid(
            cfg,
            "proxy.max_connections",
            format!(
                "{} connections need {needed} open files, but the hard RLIMIT_NOFILE is {hard}: \
                 lower max_connections or raise the limit (ulimit -Hn, systemd LimitNOFILE=)",
                cfg.proxy.max_connections
            ),
        ));
    }
    if mode == Mode::Prepare {
        setrlimit(Resource::RLIMIT_NOFILE, needed, hard).map_err(|e| {
            invalid(
                cfg,
                "proxy.max_connections",
                format!("cannot raise RLIMIT_NOFILE to {needed}: {e}"),
            )
        })?;
    }
    Ok(())
}
