//! What each `spp` command does: [`run`] dispatches the parsed
//! [`Cli`] to the daemon client, the renderers, [`crate::package`] and
//! [`crate::ops`], and returns the exit status.

use crate::cli::{
    Cli, Command, L5Command, NewCommand, NewPlugin, EXIT_FAILURE, EXIT_NOT_RUNNING, EXIT_OK,
    EXIT_UNKNOWN,
};
use crate::{lifecycle, ops, package, scaffold};
use anyhow::Context;
use spp_config::defaults;
use spp_config::environment::Mode;
use spp_config::locate::Location;
use spp_daemon::control::{self, ControlError, Request};
use spp_daemon::pidfile::{self, Holder};
use spp_daemon::{l5, logging, plugin_check, service, stats, status};
use std::path::Path;
use std::time::Duration;

/// Runs one command; the exit status, or the error to print.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Check { config } => {
            let cfg = spp_config::load(&config.file())?;
            plugin_check::environment(&cfg, Mode::Inspect)?;
            println!("config OK: {}", cfg.summary());
            Ok(EXIT_OK)
        }
        Command::Start {
            config,
            foreground: true,
            detached,
            ..
        } => match service::run(&config.file(), !detached) {
            Ok(()) => Ok(EXIT_OK),
            // Once logging is up, the error was logged to stderr already.
            Err(_) if logging::initialized() => Ok(EXIT_FAILURE),
            Err(e) => Err(e.into()),
        },
        Command::Start {
            config,
            foreground: false,
            wait,
            ..
        } => {
            print_started(&lifecycle::start(&config.file(), wait)?);
            Ok(EXIT_OK)
        }
        Command::Status { config, json } => {
            let at = locate(&config.file())?;
            match control::request(&at.socket_path(), Request::Status) {
                Ok(value) if json => {
                    println!("{}", serde_json::to_string_pretty(&value)?);
                    Ok(EXIT_OK)
                }
                Ok(value) => {
                    let status: status::Status = serde_json::from_value(value)
                        .context("the controller's status is not understood")?;
                    print!("{}", status::render_table(&status));
                    Ok(EXIT_OK)
                }
                Err(ControlError::NotRunning { .. }) => Ok(not_running(&at)),
                Err(e) => Err(e.into()),
            }
        }
        Command::Stat {
            config,
            json,
            watch,
        } => stat(&locate(&config.file())?, json, watch),
        Command::Reload { config } => {
            let cfg = spp_config::load(&config.file())?;
            plugin_check::environment(&cfg, Mode::Inspect)?;
            reload(&cfg)
        }
        Command::Restart { config, wait } => {
            // A bad file must not stop the running service.
            let (cfg, _) = service::preflight(&config.file(), Mode::Inspect)?;
            match lifecycle::stop(&Location::from(&cfg))? {
                lifecycle::Stopped::Stopped(pid) => println!(
                    "spp: service {} stopped (controller pid {pid})",
                    cfg.service.name
                ),
                lifecycle::Stopped::NotRunning => {
                    println!("spp: service {} was not running", cfg.service.name)
                }
            }
            print_started(&lifecycle::start(&config.file(), wait)?);
            Ok(EXIT_OK)
        }
        Command::Stop { config } => {
            let at = locate(&config.file())?;
            match lifecycle::stop(&at)? {
                lifecycle::Stopped::Stopped(pid) => {
                    println!("spp: service {} stopped (controller pid {pid})", at.name)
                }
                lifecycle::Stopped::NotRunning => {
                    println!("spp: service {} is not running", at.name)
                }
            }
            Ok(EXIT_OK)
        }
        Command::Monitor { config } => Ok(ops::monitor::run(&config)?),
        Command::Diskclear { config } => Ok(ops::diskclear::run(&config)?),
        Command::Package {
            config,
            output,
            pkg_version,
        } => {
            let built = package::build::package(&config, &output, pkg_version.as_deref())?;
            println!(
                "spp: package {} {} written to {} ({} files)",
                built.manifest.name,
                built.manifest.version,
                built.out.display(),
                built.manifest.files.len()
            );
            Ok(EXIT_OK)
        }
        Command::Install {
            package: pkg,
            prefix,
            keep_config,
            replace_config,
        } => {
            let policy = match (keep_config, replace_config) {
                (true, _) => package::install::ConfigPolicy::Keep,
                (_, true) => package::install::ConfigPolicy::Replace,
                _ => package::install::ConfigPolicy::KeepIfChanged,
            };
            let done = package::install::install(&pkg, &prefix.prefix, policy)?;
            let dir = package::install::absolute(&prefix.prefix)?;
            match &done.upgraded_from {
                Some(from) => println!(
                    "spp: {} upgraded from {from} to {} in {}",
                    done.manifest.name,
                    done.manifest.version,
                    dir.display()
                ),
                None => println!(
                    "spp: {} {} installed in {}",
                    done.manifest.name,
                    done.manifest.version,
                    dir.display()
                ),
            }
            if done.kept_config {
                println!("  kept the operator's {}", package::CONFIG);
            }
            match done.applied {
                package::install::Applied::NotRunning => {}
                package::install::Applied::Reloaded => {
                    println!("  the running service was reloaded")
                }
                package::install::Applied::Restarted => {
                    println!("  the running service was restarted")
                }
            }
            Ok(EXIT_OK)
        }
        Command::Checksum { prefix } => {
            let dir = package::install::absolute(&prefix.prefix)?;
            let (manifest, findings) = package::checksum::verify(&dir)?;
            for f in &findings {
                println!("{f}");
            }
            let failed = findings.iter().filter(|f| f.fails()).count();
            if failed == 0 {
                println!(
                    "spp: {} {} in {}: {} files verified{}",
                    manifest.name,
                    manifest.version,
                    dir.display(),
                    manifest.files.len(),
                    if findings.is_empty() {
                        ""
                    } else {
                        " (operator config modified)"
                    }
                );
                Ok(EXIT_OK)
            } else {
                println!(
                    "spp: {} in {}: {failed} file(s) modified, missing or unexpected",
                    manifest.name,
                    dir.display()
                );
                Ok(EXIT_FAILURE)
            }
        }
        Command::Uninstall { prefix, purge } => {
            let dir = package::install::absolute(&prefix.prefix)?;
            let done = package::install::uninstall(&dir, purge)?;
            if let Some(pid) = done.stopped {
                println!("spp: service stopped (controller pid {pid})");
            }
            if done.prefix_removed {
                println!("spp: {} uninstalled and removed", dir.display());
            } else if purge {
                println!("spp: {} uninstalled, logs removed", dir.display());
            } else {
                println!(
                    "spp: {} uninstalled; logs kept in {}",
                    dir.display(),
                    dir.join("log").display()
                );
            }
            Ok(EXIT_OK)
        }
        Command::CheckPlugin {
            role,
            group,
            conf,
            path,
        } => Ok(plugin_check::run_child(&path, &role, group, &conf)),
        Command::New {
            command: NewCommand::Plugin(args),
        } => new_plugin(args),
        Command::L5 { command } => match command {
            L5Command::List { config, json } => l5(&locate(&config.file())?, json, None),
            L5Command::Get {
                config,
                json,
                modid,
                cmdid,
            } => l5(
                &locate(&config.file())?,
                json,
                Some(spp_ipc::l5::Sid { modid, cmdid }),
            ),
        },
    }
}

/// `spp new plugin`: writes the project, then says how to run it.
fn new_plugin(args: NewPlugin) -> anyhow::Result<u8> {
    let lang = args.lang;
    let created = scaffold::new_plugin(&scaffold::Options {
        name: args.name.clone(),
        lang,
        dir: args.dir,
        api_path: args.api_path,
        api_git: args.api_git,
        port: args.port,
    })?;
    let dir = created.dir.display();
    let (what, build) = match lang {
        scaffold::Lang::Rust => ("Rust plugin crate", "cargo build --release"),
        scaffold::Lang::C => ("C plugin", "make"),
    };
    println!("spp: created {what} {:?} in {dir}", args.name);
    for file in &created.files {
        println!("  {}", file.display());
    }
    if let Some(source) = &created.api {
        println!("spp-plugin-api: {}", created.api_note);
        if *source == scaffold::api::Source::Unknown {
            eprintln!(
                "spp: warning: the spp source tree this spp was built from is gone: set spp-plugin-api in {dir}/Cargo.toml (or run again with --api-path DIR or --api-git URL)"
            );
        }
    }
    let listen = match created.port {
        0 => "a port the system picks (spp status shows it)".to_string(),
        port => format!("127.0.0.1:{port}"),
    };
    println!("build and start it (listening on {listen}):");
    println!("  cd {dir}");
    println!("  {build}");
    println!("  spp start -c spp.toml");
    println!("or in one command: make -C {dir} run");
    Ok(EXIT_OK)
}

/// A `--prefix DIR` command run by another `spp` than `DIR/bin/spp`
/// execs that one, so the service runs on the installed binaries. Returns
/// an error only when the exec failed.
pub fn exec_installed(cli: &Cli) -> Option<String> {
    use std::os::unix::process::CommandExt;
    let config = match &cli.command {
        Command::Check { config }
        | Command::Start { config, .. }
        | Command::Status { config, .. }
        | Command::Stat { config, .. }
        | Command::Reload { config }
        | Command::Restart { config, .. }
        | Command::Stop { config }
        | Command::Monitor { config }
        | Command::Diskclear { config } => config,
        _ => return None,
    };
    let prefix = config.prefix.as_ref()?;
    let installed = prefix.join("bin/spp");
    let installed = std::fs::canonicalize(&installed).ok()?;
    let me = std::env::current_exe().ok()?;
    if std::fs::canonicalize(&me).ok()? == installed {
        return None;
    }
    let err = std::process::Command::new(&installed)
        .args(std::env::args_os().skip(1))
        .env_remove(defaults::BIN_DIR_ENV)
        .exec();
    Some(format!("cannot run {}: {err}", installed.display()))
}

/// `spp l5 list` (`only` = `None`) and `spp l5 get`: the route table.
fn l5(at: &Location, json: bool, only: Option<spp_ipc::l5::Sid>) -> anyhow::Result<u8> {
    let value = match control::request(&at.socket_path(), Request::L5) {
        Ok(value) => value,
        Err(ControlError::NotRunning { .. }) => return Ok(not_running(at)),
        Err(e) => return Err(e.into()),
    };
    let report: l5::report::L5Report =
        serde_json::from_value(value).context("the controller's L5 report is not understood")?;
    if let Some(sid) = only {
        if report.sid(sid).is_none() {
            eprintln!(
                "spp: sid {sid} is not in the route table of service {} (spp l5 list shows every sid)",
                at.name
            );
            return Ok(EXIT_FAILURE);
        }
    }
    if json {
        let value = match only.and_then(|sid| report.sid(sid)) {
            Some(sid) => serde_json::to_value(sid)?,
            None => serde_json::to_value(&report)?,
        };
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", l5::report::render_report(&report, only));
    }
    Ok(EXIT_OK)
}

/// Where the service `path` describes runs, for the commands that only
/// talk to it: a file that does not validate gets a one-line warning (the
/// file, key and reason) as long as its `[service]` keys can be read.
fn locate(path: &Path) -> anyhow::Result<Location> {
    let (at, invalid) = spp_config::locate::locate(path)?;
    if let Some(e) = invalid {
        let why = spp_ipc::error_chain(&e);
        let why: Vec<&str> = why
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        eprintln!(
            "spp: warning: the config does not validate: {}; looking for service {} in {}",
            why.join("; "),
            at.name,
            at.run_dir.display()
        );
    }
    Ok(at)
}

/// What `spp start` and `spp restart` print once the service runs.
fn print_started(status: &status::Status) {
    println!(
        "spp: service {} is running (controller pid {})",
        status.service, status.controller_pid
    );
    for l in &status.listeners {
        println!("  listen[{}] {}://{}", l.index, l.transport, l.addr);
    }
    if let Some(warning) = &status.log.warning {
        println!(
            "spp: warning: {warning}: log lines are dropped and counted (spp status shows how many)"
        );
    }
}

/// No controller answers: says whether one runs at all (the pid file's
/// lock tells) and returns the exit status.
fn not_running(at: &Location) -> u8 {
    match pidfile::probe(&at.pid_file()) {
        Holder::Free => {
            println!("spp: service {} is not running", at.name);
            EXIT_NOT_RUNNING
        }
        Holder::Held(pid) => {
            let pid = pid.map_or_else(|| "?".to_string(), |p| p.to_string());
            println!(
                "spp: service {}: its controller (pid {pid}) does not answer on {} (starting or stopping)",
                at.name,
                at.socket_path().display()
            );
            EXIT_UNKNOWN
        }
    }
}

/// `spp stat`: one report, or one every `watch` seconds until interrupted.
fn stat(at: &Location, json: bool, watch: Option<u64>) -> anyhow::Result<u8> {
    let window_s = watch.unwrap_or(defaults::STAT_WINDOW_S);
    loop {
        let value = match control::request(&at.socket_path(), Request::Stat { window_s }) {
            Ok(value) => value,
            Err(ControlError::NotRunning { .. }) => return Ok(not_running(at)),
            Err(e) => return Err(e.into()),
        };
        if json && watch.is_some() {
            println!("{}", serde_json::to_string(&value)?);
        } else if json {
            println!("{}", serde_json::to_string_pretty(&value)?);
        } else {
            let report: stats::StatReport = serde_json::from_value(value)
                .context("the controller's stats are not understood")?;
            print!("{}", stats::render_table(&report));
        }
        let Some(secs) = watch else {
            return Ok(EXIT_OK);
        };
        std::thread::sleep(Duration::from_secs(secs));
        if !json {
            println!();
        }
    }
}

/// `spp reload`: asks the controller to reload and prints what changed.
fn reload(cfg: &spp_config::Config) -> anyhow::Result<u8> {
    let socket = cfg.socket_path();
    // The reload's own bound depends on the largest group now running.
    let largest = control::request(&socket, Request::Status)
        .ok()
        .and_then(|v| serde_json::from_value::<status::Status>(v).ok())
        .and_then(|s| s.groups.iter().map(|g| g.workers).max())
        .into_iter()
        .chain(cfg.groups.iter().map(|g| g.max_workers))
        .max()
        .unwrap_or(1);
    let wait = defaults::reload_timeout(cfg.service.stop_grace, largest.saturating_add(1))
        + defaults::RELOAD_WAIT_MARGIN;
    let value = match control::request_within(&socket, Request::Reload, wait) {
        Ok(value) => value,
        Err(ControlError::NotRunning { .. }) => return Ok(not_running(&Location::from(cfg))),
        Err(e) => return Err(e.into()),
    };
    let generation = value["config_generation"].as_u64().unwrap_or_default();
    let file = value["file"].as_str().unwrap_or_default();
    println!(
        "spp: service {} reloaded from {file} (config generation {generation})",
        cfg.service.name
    );
    for change in value["changes"].as_array().into_iter().flatten() {
        println!("  {}", change.as_str().unwrap_or_default());
    }
    Ok(EXIT_OK)
}
