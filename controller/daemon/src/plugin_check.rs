//! Checking a business plugin without loading it into the controller: the
//! controller is long-lived, and a plugin may start threads and can never
//! be unloaded safely. So `spp check`, `spp start` (and the controller's
//! own preflight) and `spp reload` run `spp __check-plugin --role ROLE
//! --group ID --conf=CONF PATH`, a short-lived child of the `spp`
//! executable that loads the plugin the way the role's process will (ABI
//! version, required hooks), calls its `spp_init` with the role's
//! `plugin_conf` and an inert host table ([`inert`]: reply and close answer
//! `SPP_ERR_UNSUPPORTED`, log writes to stderr, metrics count nowhere that
//! is shown) and then its `spp_fini`, prints its [`Verdict`] as one line
//! ([`VERDICT_PREFIX`] and JSON) on stdout and exits ([`EXIT_PASSED`] or
//! [`EXIT_REFUSED`]). A plugin whose `spp_init` refuses fails the check
//! naming the file, the role and the code, instead of failing the start.
//!
//! The child is throw-away because a plugin runs code the moment it is
//! mapped (constructors): it may `_exit`, abort, crash, hang or print.
//! The parent trusts only a verdict line that agrees with how the child
//! ended, and names every other fate ([`judge`]): an exit before a
//! verdict, a signal, a timeout ([`timeout`]). The child moves its own
//! stdout aside before it loads the plugin ([`divert_stdout`]): what the
//! plugin prints goes to stderr and can never pass for the verdict.
//!
//! Parent end: [`environment`] (every machine-dependent config check, the
//! plugins checked by [`in_child`]). Child end: [`run_child`], which the
//! `spp` binary calls for [`SUBCOMMAND`].

use crate::privileges::Credentials;
use serde::{Deserialize, Serialize};
use spp_config::defaults;
use spp_config::environment::{self, Mode, PluginFacts, PluginRole, PluginTarget, Warning};
use spp_config::{Config, ConfigError};
use spp_plugin_api::host::{PluginLibrary, Role};
use std::ffi::CString;
use std::io::{BufRead, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[path = "plugin_check_inert.rs"]
pub mod inert;

/// The hidden `spp` subcommand that checks one plugin.
pub const SUBCOMMAND: &str = "__check-plugin";
/// Exit status of [`SUBCOMMAND`]: the plugin loads.
pub const EXIT_PASSED: u8 = 0;
/// Exit status of [`SUBCOMMAND`]: the plugin is refused (see the reason).
pub const EXIT_REFUSED: u8 = 1;
/// The running executable, even when its file was replaced since (an
/// upgrade): the check runs the same build as the controller.
const SELF_EXE: &str = "/proc/self/exe";
/// What starts the verdict line, so that no other output passes for it.
pub const VERDICT_PREFIX: &str = "spp-plugin-verdict: ";

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
    /// It exports a non-zero `spp_plugin_stateful`.
    #[serde(default)]
    pub stateful: bool,
    /// It exports `spp_poll`.
    #[serde(default)]
    pub polls: bool,
}

/// Every machine-dependent check of `cfg` ([`environment::check`]), each
/// plugin checked in a child ([`in_child`]). Each warning is printed to
/// stderr (`spp: warning: ...`: the terminal of `spp check`/`start`, the
/// controller's log) and returned.
pub fn environment(cfg: &Config, mode: Mode) -> Result<Vec<Warning>, ConfigError> {
    let run_as = cfg.service.run_as.as_ref().map(Credentials::from);
    let warnings = environment::check(cfg, mode, &|target: &PluginTarget<'_>| {
        in_child_as(target, run_as)
    })?;
    for w in &warnings {
        eprintln!("spp: warning: {w}");
    }
    Ok(warnings)
}

/// Checks the plugin of `target` in a child process of this executable;
/// `Err` carries the reason (the loader's, `spp_init`'s code, or why the
/// check itself failed).
pub fn in_child(target: &PluginTarget<'_>) -> Result<PluginFacts, String> {
    in_child_as(target, None)
}

/// [`in_child`] with the child running as `run_as` (`service.user`), as
/// the proxy and the workers will.
pub fn in_child_as(
    target: &PluginTarget<'_>,
    run_as: Option<Credentials>,
) -> Result<PluginFacts, String> {
    let path = target.path;
    let mut cmd = Command::new(SELF_EXE);
    cmd.arg(SUBCOMMAND)
        .arg("--role")
        .arg(target.role.as_str())
        .arg("--group")
        .arg(target.group.to_string())
        .arg(format!("--conf={}", target.conf))
        .arg("--")
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
    // Verdicts are passed on line by line as they come, not at EOF: a
    // process the plugin forked while loading may hold the pipe open.
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(out.take(defaults::PLUGIN_CHECK_MAX_OUTPUT));
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let verdict = parse_verdict(&String::from_utf8_lossy(&line));
                        if verdict.is_some_and(|v| tx.send(v).is_err()) {
                            break;
                        }
                    }
                }
            }
        });
    }
    let limit = timeout();
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                // The child is ours and not reaped yet: the kill reaches it.
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "plugin {}: loading it did not finish within {limit:?} (the check was killed)",
                    path.display()
                ));
            }
            Ok(None) => std::thread::sleep(defaults::PLUGIN_CHECK_POLL),
            Err(e) => return Err(format!("waiting for the plugin check: {e}")),
        }
    };
    // The last verdict, once the first has come (or the pipe closed).
    let verdict = rx
        .recv_timeout(defaults::PLUGIN_CHECK_OUTPUT_WAIT)
        .ok()
        .map(|first| rx.try_iter().last().unwrap_or(first));
    judge(path, status, verdict)
}

/// How long a check may take: [`defaults::PLUGIN_CHECK_TIMEOUT`], or the
/// milliseconds in [`defaults::PLUGIN_CHECK_TIMEOUT_ENV`] when it is set
/// (tests of hanging plugins; an operator with a slow plugin).
pub fn timeout() -> Duration {
    std::env::var(defaults::PLUGIN_CHECK_TIMEOUT_ENV)
        .ok()
        .and_then(|ms| ms.trim().parse::<u64>().ok())
        .map_or(defaults::PLUGIN_CHECK_TIMEOUT, Duration::from_millis)
}

/// The outcome of a check that ended with `status` and printed `verdict`:
/// a verdict counts only when the exit status agrees with it; every other
/// fate is a refusal that says what happened.
fn judge(path: &Path, status: ExitStatus, verdict: Option<Verdict>) -> Result<PluginFacts, String> {
    let code = status.code();
    match verdict {
        Some(v) if v.ok && code == Some(i32::from(EXIT_PASSED)) => Ok(PluginFacts {
            stateful: v.stateful,
            polls: v.polls,
        }),
        Some(Verdict {
            ok: false,
            reason: Some(reason),
            ..
        }) if code == Some(i32::from(EXIT_REFUSED)) => Err(reason),
        Some(_) => Err(format!(
            "plugin {}: the plugin's loader {} after its verdict",
            path.display(),
            fate(status)
        )),
        None => Err(format!(
            "plugin {}: the plugin's loader {} before a verdict",
            path.display(),
            fate(status)
        )),
    }
}

/// How a process ended, in words: "exited with status 7", "was killed by
/// signal 11 (SIGSEGV)".
fn fate(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    match status.signal() {
        Some(sig) => match nix::sys::signal::Signal::try_from(sig) {
            Ok(name) => format!("was killed by signal {sig} ({name})"),
            Err(_) => format!("was killed by signal {sig}"),
        },
        None => format!("ended with {status}"),
    }
}

/// The last [`VERDICT_PREFIX`] line of `text` that holds a [`Verdict`].
fn parse_verdict(text: &str) -> Option<Verdict> {
    text.lines().rev().find_map(|line| {
        let json = line.trim_end().strip_prefix(VERDICT_PREFIX)?;
        serde_json::from_str(json).ok()
    })
}

/// Loads the plugin, then calls `spp_init` and `spp_fini` as a process of
/// `role` would; what it declares (stateful, `spp_poll`), or why it cannot
/// be used.
fn load_and_init(
    path: &Path,
    role: PluginRole,
    group: u32,
    conf: &str,
) -> Result<PluginFacts, String> {
    let lib_role = match role {
        PluginRole::Proxy => Role::Proxy,
        PluginRole::Worker => Role::Worker,
    };
    let plugin = PluginLibrary::load(path, lib_role).map_err(|e| spp_ipc::error_chain(&e))?;
    let conf_c = CString::new(conf)
        .map_err(|_| format!("plugin {}: plugin_conf contains a NUL byte", path.display()))?;
    let who = match role {
        PluginRole::Proxy => "the proxy".to_string(),
        PluginRole::Worker => format!("worker g{group}/0"),
    };
    let code = inert::init(&plugin, role, group, &conf_c);
    if code != 0 {
        // Never unloaded (see `run_child`); no spp_fini after a refusal,
        // as in a real process.
        std::mem::forget(plugin);
        return Err(format!(
            "plugin {} ({} role, as {who}): spp_init returned {code} (the {} would exit with \
             status {}); see its log lines above",
            path.display(),
            role.as_str(),
            role.as_str(),
            spp_ipc::launch::exit_code::plugin_init(code)
        ));
    }
    plugin.fini();
    let facts = PluginFacts {
        stateful: plugin.stateful(),
        polls: plugin.has_poll(),
    };
    std::mem::forget(plugin);
    Ok(facts)
}

/// Keeps stdout for the verdict only: returns a close-on-exec copy of it
/// and points fd 1 at stderr, so that whatever the plugin prints while it
/// loads goes to stderr. `None` (the verdict then goes to fd 1 as is) when
/// the fds cannot be moved.
fn divert_stdout() -> Option<std::fs::File> {
    let stdout = std::io::stdout();
    let kept = stdout.as_fd().try_clone_to_owned().ok()?;
    let stderr = std::io::stderr();
    // SAFETY: dup2 on two fds this process holds open (0..=2 are always
    // open in a child we spawned); it only replaces fd 1, which `kept`
    // still refers to.
    let moved = unsafe { libc::dup2(stderr.as_fd().as_raw_fd(), stdout.as_fd().as_raw_fd()) };
    (moved >= 0).then(|| std::fs::File::from(kept))
}

/// The child end: loads the plugin at `path` for `role` (`"proxy"` or
/// `"worker"`), calls its `spp_init` with `conf` ([`inert::init`]) and
/// `spp_fini`, prints the [`Verdict`] and returns the exit status. The
/// plugin stays loaded until the process exits: unloading one is never
/// safe.
pub fn run_child(path: &Path, role: &str, group: u32, conf: &str) -> u8 {
    let verdict_out = divert_stdout();
    // The plugin's log lines go to stderr with the check's output.
    spp_ipc::logging::init("spp-check-plugin", defaults::LOG_LEVEL);
    let verdict = |ok: bool, reason: Option<String>, facts: PluginFacts| Verdict {
        plugin: path.display().to_string(),
        role: role.to_string(),
        ok,
        reason,
        stateful: facts.stateful,
        polls: facts.polls,
    };
    let result = match PluginRole::from_name(role) {
        None => Err(format!("unknown role {role:?} (proxy or worker)")),
        Some(role) => load_and_init(path, role, group, conf),
    };
    let (verdict, code) = match result {
        Ok(facts) => (verdict(true, None, facts), EXIT_PASSED),
        Err(reason) => (
            verdict(false, Some(reason), PluginFacts::default()),
            EXIT_REFUSED,
        ),
    };
    let line = serde_json::to_string(&verdict).unwrap_or_default();
    let line = format!("{VERDICT_PREFIX}{line}\n");
    match verdict_out {
        Some(mut out) => {
            let _ = out.write_all(line.as_bytes());
        }
        None => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(v: &Verdict) -> String {
        format!("{VERDICT_PREFIX}{}", serde_json::to_string(v).unwrap())
    }

    fn refused() -> Verdict {
        Verdict {
            plugin: "/p.so".into(),
            role: "worker".into(),
            ok: false,
            reason: Some("plugin /p.so: cannot load\n  caused by: x".into()),
            stateful: false,
            polls: false,
        }
    }

    #[test]
    fn the_last_verdict_line_counts() {
        let text = format!("plugin chatter\n{}\n", line(&refused()));
        assert_eq!(parse_verdict(&text), Some(refused()));
        assert_eq!(parse_verdict("no verdict\n"), None);
        let passed = format!(r#"{VERDICT_PREFIX}{{"plugin":"/p.so","role":"proxy","ok":true}}"#);
        assert!(parse_verdict(&passed).unwrap().ok);
    }

    #[test]
    fn a_bare_json_line_is_no_verdict() {
        let fake = r#"{"plugin":"/p.so","role":"proxy","ok":true}"#;
        assert_eq!(parse_verdict(fake), None);
        assert_eq!(parse_verdict(&format!("x{VERDICT_PREFIX}{fake}")), None);
        assert_eq!(parse_verdict(&format!("{VERDICT_PREFIX}{{garbage")), None);
    }

    #[test]
    fn every_fate_is_named() {
        let path = Path::new("/p.so");
        let exited = |code: i32| ExitStatus::from_raw(code << 8);
        let passed = Verdict {
            ok: true,
            reason: None,
            ..refused()
        };
        assert_eq!(
            judge(path, exited(0), Some(passed.clone())),
            Ok(PluginFacts::default())
        );
        let stateful = Verdict {
            stateful: true,
            ..passed.clone()
        };
        assert_eq!(
            judge(path, exited(0), Some(stateful)),
            Ok(PluginFacts {
                stateful: true,
                polls: false
            })
        );
        assert!(judge(path, exited(1), Some(refused()))
            .unwrap_err()
            .contains("cannot load"));
        let err = judge(path, exited(0), None).unwrap_err();
        assert!(
            err.contains("/p.so") && err.contains("exited with status 0 before a verdict"),
            "{err}"
        );
        let err = judge(path, exited(7), None).unwrap_err();
        assert!(err.contains("exited with status 7"), "{err}");
        let err = judge(path, ExitStatus::from_raw(libc::SIGSEGV), None).unwrap_err();
        assert!(err.contains("killed by signal 11 (SIGSEGV)"), "{err}");
        let err = judge(path, exited(7), Some(passed)).unwrap_err();
        assert!(
            err.contains("exited with status 7 after its verdict"),
            "{err}"
        );
    }
}
