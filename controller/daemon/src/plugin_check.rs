//! Checking a business plugin without loading it into the controller: the
//! controller is long-lived, and a plugin may start threads and can never
//! be unloaded safely. So `spp check`, `spp start` (and the controller's
//! own preflight) and `spp reload` run `spp __check-plugin --role ROLE
//! PATH`, a short-lived child of the `spp` executable that loads the
//! plugin the way the role's process will (ABI version, required hooks),
//! prints its [`Verdict`] as one JSON line on stdout and exits
//! ([`EXIT_PASSED`] or [`EXIT_REFUSED`]).
//!
//! Parent end: [`environment`] (every machine-dependent config check, the
//! plugins checked by [`in_child`]). Child end: [`run_child`], which the
//! `spp` binary calls for [`SUBCOMMAND`].

use crate::privileges::Credentials;
use serde::{Deserialize, Serialize};
use spp_config::defaults;
use spp_config::environment::{self, Mode, PluginRole};
use spp_config::{Config, ConfigError};
use spp_plugin_api::host::{PluginLibrary, Role};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

/// The hidden `spp` subcommand that checks one plugin.
pub const SUBCOMMAND: &str = "__check-plugin";
/// Exit status of [`SUBCOMMAND`]: the plugin loads.
pub const EXIT_PASSED: u8 = 0;
/// Exit status of [`SUBCOMMAND`]: the plugin is refused (see the reason).
pub const EXIT_REFUSED: u8 = 1;
/// The running executable, even when its file was replaced since (an
/// upgrade): the check runs the same build as the controller.
const SELF_EXE: &str = "/proc/self/exe";

/// What [`SUBCOMMAND`] prints: one JSON line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The plugin file.
    pub plugin: String,
    /// `"proxy"` or `"worker"`.
    pub role: String,
    /// Whether it loads.
    pub ok: bool,
    /// Why not (the loader's error and its causes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Every machine-dependent check of `cfg` ([`environment::check`]), each
/// plugin checked in a child ([`in_child`]).
pub fn environment(cfg: &Config, mode: Mode) -> Result<(), ConfigError> {
    let run_as = cfg.service.run_as.as_ref().map(Credentials::from);
    environment::check(cfg, mode, &|path: &Path, role: PluginRole| {
        in_child_as(path, role, run_as)
    })
}

/// Checks the plugin at `path` for `role` in a child process of this
/// executable; `Err` carries the reason (the loader's, or why the check
/// itself failed).
pub fn in_child(path: &Path, role: PluginRole) -> Result<(), String> {
    in_child_as(path, role, None)
}

/// [`in_child`] with the child running as `run_as` (`service.user`), as
/// the proxy and the workers will.
pub fn in_child_as(
    path: &Path,
    role: PluginRole,
    run_as: Option<Credentials>,
) -> Result<(), String> {
    let mut cmd = Command::new(SELF_EXE);
    cmd.arg(SUBCOMMAND)
        .arg("--role")
        .arg(role.as_str())
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // SAFETY: close_range, setgroups, setgid and setuid are
    // async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            crate::spawn::cloexec_all_but_stdio();
            if let Some(who) = run_as {
                crate::privileges::drop_to(who)?;
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the plugin check ({SELF_EXE} {SUBCOMMAND}): {e}"))?;
    let (tx, rx) = mpsc::channel();
    if let Some(mut out) = child.stdout.take() {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text);
            let _ = tx.send(text);
        });
    }
    let deadline = Instant::now() + defaults::PLUGIN_CHECK_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                // The child is ours and not reaped yet: the kill reaches it.
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "loading it did not finish within {:?} (the check was killed)",
                    defaults::PLUGIN_CHECK_TIMEOUT
                ));
            }
            Ok(None) => std::thread::sleep(defaults::PLUGIN_CHECK_POLL),
            Err(e) => return Err(format!("waiting for the plugin check: {e}")),
        }
    };
    let text = rx
        .recv_timeout(defaults::PLUGIN_CHECK_OUTPUT_WAIT)
        .unwrap_or_default();
    match parse_verdict(&text) {
        Some(v) if v.ok && status.success() => Ok(()),
        Some(Verdict {
            ok: false,
            reason: Some(reason),
            ..
        }) => Err(reason),
        _ => Err(format!(
            "the plugin check ({SUBCOMMAND}) ended with {status} without a passing verdict"
        )),
    }
}

/// The last line of `text` that is a [`Verdict`] (a plugin may print to
/// stdout while it loads).
fn parse_verdict(text: &str) -> Option<Verdict> {
    text.lines()
        .rev()
        .find_map(|line| serde_json::from_str(line.trim()).ok())
}

/// The child end: loads the plugin at `path` for `role` (`"proxy"` or
/// `"worker"`), prints the [`Verdict`] and returns the exit status. The
/// plugin stays loaded until the process exits: unloading one is never
/// safe.
pub fn run_child(path: &Path, role: &str) -> u8 {
    let verdict = |ok: bool, reason: Option<String>| Verdict {
        plugin: path.display().to_string(),
        role: role.to_string(),
        ok,
        reason,
    };
    let result = match PluginRole::from_name(role) {
        None => Err(format!("unknown role {role:?} (proxy or worker)")),
        Some(role) => {
            let role = match role {
                PluginRole::Proxy => Role::Proxy,
                PluginRole::Worker => Role::Worker,
            };
            PluginLibrary::load(path, role)
                .map(std::mem::forget)
                .map_err(|e| spp_ipc::error_chain(&e))
        }
    };
    let (verdict, code) = match result {
        Ok(()) => (verdict(true, None), EXIT_PASSED),
        Err(reason) => (verdict(false, Some(reason)), EXIT_REFUSED),
    };
    let line = serde_json::to_string(&verdict).unwrap_or_default();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_verdict_line_counts() {
        let refused = Verdict {
            plugin: "/p.so".into(),
            role: "worker".into(),
            ok: false,
            reason: Some("plugin /p.so: cannot load\n  caused by: x".into()),
        };
        let text = format!(
            "plugin chatter\n{}\n",
            serde_json::to_string(&refused).unwrap()
        );
        assert_eq!(parse_verdict(&text), Some(refused));
        assert_eq!(parse_verdict("no verdict\n"), None);
        let passed = r#"{"plugin":"/p.so","role":"proxy","ok":true}"#;
        assert!(parse_verdict(passed).unwrap().ok);
    }
}
