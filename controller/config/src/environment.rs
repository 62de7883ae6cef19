//! The config checks that depend on the machine: every plugin exists,
//! loads with the right ABI version and hooks and initializes with its
//! `plugin_conf` (and a plugin that declares itself stateful in a group
//! that scales is warned about: [`Warning`]), the open-file limit can
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

/// One plugin to check: the file, the process that loads it, and what that
/// process hands its `spp_init`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PluginTarget<'a> {
    /// The plugin file.
    pub path: &'a Path,
    /// The process that loads it.
    pub role: PluginRole,
    /// The group id (0 for the proxy).
    pub group: u32,
    /// `proxy.plugin_conf` or the group's `plugin_conf`.
    pub conf: &'a str,
}

/// What a passed check learned about a plugin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PluginFacts {
    /// It exports a non-zero `spp_plugin_stateful`.
    pub stateful: bool,
    /// It exports `spp_poll` (an event loop that completes deferred
    /// requests: meant for a group with `mode = "async"`).
    pub polls: bool,
}

/// Loads the plugin the way a process of the role will (ABI version,
/// required hooks, `spp_init` with the conf and `spp_fini`); `Err` carries
/// why it cannot be used.
pub type PluginCheck<'a> = &'a dyn Fn(&PluginTarget<'_>) -> Result<PluginFacts, String>;

/// Something [`check`] found that works but is likely a mistake; the
/// caller shows it (`spp check`, `spp start`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The config file.
    pub file: std::path::PathBuf,
    /// The key concerned.
    pub key: String,
    /// What is wrong and what to do.
    pub reason: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.file.display(), self.key, self.reason)
    }
}

/// Whether [`check`] may change the process (raise the soft fd limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `spp check`: look only.
    Inspect,
    /// `spp start`: raise the soft fd limit when it is too low.
    Prepare,
}

/// Runs every machine-dependent check; `load` checks each plugin. Returns
/// the warnings (a stateful plugin in a group that scales, a plugin with
/// `spp_poll` in a group that is not async).
pub fn check(cfg: &Config, mode: Mode, load: PluginCheck<'_>) -> Result<Vec<Warning>, ConfigError> {
    let proxy = PluginTarget {
        path: &cfg.proxy.plugin,
        role: PluginRole::Proxy,
        group: 0,
        conf: &cfg.proxy.plugin_conf,
    };
    plugin(cfg, "proxy.plugin", &proxy, load)?;
    let mut warnings = Vec::new();
    for (pos, group) in cfg.groups.iter().enumerate() {
        let key = format!("group[{pos}].plugin");
        let target = PluginTarget {
            path: &group.plugin,
            role: PluginRole::Worker,
            group: group.id,
            conf: &group.plugin_conf,
        };
        let facts = plugin(cfg, &key, &target, load)?;
        if facts.polls && group.async_tasks.is_none() {
            warnings.push(Warning {
                file: cfg.file.clone(),
                key: format!("group[{pos}].mode"),
                reason: format!(
                    "plugin {} exports spp_poll (async requests), but group {} is not \
                     mode = \"async\": it will run its tasks one at a time, each inside \
                     spp_process; set mode = \"async\" to run them concurrently",
                    group.plugin.display(),
                    group.id
                ),
            });
        }
        if facts.stateful && group.min_workers != group.max_workers {
            warnings.push(Warning {
                file: cfg.file.clone(),
                key,
                reason: format!(
                    "plugin {} declares itself stateful (spp_plugin_stateful), but group {} \
                     scales between min_workers = {} and max_workers = {}: each worker has its \
                     own memory, so its state is split between the workers and lost when one \
                     retires; set min_workers = max_workers or keep the state outside",
                    group.plugin.display(),
                    group.id,
                    group.min_workers,
                    group.max_workers
                ),
            });
        }
    }
    if let Some(l5) = &cfg.l5 {
        crate::l5::check_registry_dir(l5)
            .map_err(|reason| invalid(cfg, "l5.registry_dir", reason))?;
    }
    nofile(cfg, mode)?;
    Ok(warnings)
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
    target: &PluginTarget<'_>,
    load: PluginCheck<'_>,
) -> Result<PluginFacts, ConfigError> {
    if !target.path.is_file() {
        return Err(invalid(
            cfg,
            key,
            format!("plugin file {} does not exist", target.path.display()),
        ));
    }
    load(target).map_err(|reason| invalid(cfg, key, reason))
}

/// Open files the proxy needs: every connection, the inherited fds, and a
/// margin for logs, epoll, pidfds and the plugin.
pub fn files_needed(cfg: &Config) -> u64 {
    let inherited = cfg.proxy.listen.len() + 2 + 2 * cfg.total_slots();
    let proxy = cfg.proxy.max_connections as u64 + inherited as u64;
    // The controller holds every shard's listeners, region and doorbell,
    // a pair region per (shard, slot) and a doorbell per slot.
    let shards = usize::from(cfg.proxy.processes);
    let controller = shards * (cfg.proxy.listen.len() + 2) + (shards + 1) * cfg.total_slots();
    proxy.max(controller as u64) + defaults::NOFILE_MARGIN
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

#[cfg(test)]
#[path = "environment_tests.rs"]
mod tests;
