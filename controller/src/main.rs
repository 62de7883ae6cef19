//! `spp`, the controller and ops CLI of the spp socket server.
//!
//! * `spp check -c FILE`: validate the config.
//! * `spp start -c FILE [--foreground] [--wait 30s]`: start the service
//!   (proxy + worker groups) and return once it answers.
//! * `spp status -c FILE [--json]`: ask the running controller.
//! * `spp stop -c FILE`: drain and stop everything.
//!
//! Modules: [`cli`] (arguments), [`config`] (the TOML file and its checks),
//! [`defaults`], [`service`] (the foreground controller), [`supervisor`]
//! (children, restarts, stop), [`children`] (per-child bookkeeping),
//! [`spawn`], [`listeners`], [`resources`] (shared memory), [`control`]
//! (the control socket), [`status`], [`pidfile`], [`daemon`] (detached
//! start, stop), [`logging`].

mod children;
mod cli;
mod config;
mod control;
mod daemon;
mod defaults;
mod listeners;
mod logging;
mod pidfile;
mod resources;
mod service;
mod spawn;
mod stats;
mod status;
mod supervisor;

use anyhow::Context;
use clap::Parser;
use cli::{Cli, Command, EXIT_FAILURE, EXIT_NOT_RUNNING, EXIT_OK, EXIT_UNKNOWN};
use config::environment::{self, Mode};
use control::{ControlError, Request};
use pidfile::Holder;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // The error and every cause, each once.
            eprintln!("spp: {}", spp_ipc::error_chain(e.as_ref()));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Check { config } => {
            let cfg = config::load(&config.path)?;
            environment::check(&cfg, Mode::Inspect)?;
            println!("config OK: {}", cfg.summary());
            Ok(EXIT_OK)
        }
        Command::Start {
            config,
            foreground: true,
            detached,
            ..
        } => match service::run(&config.path, !detached) {
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
            let status = daemon::start(&config.path, wait)?;
            println!(
                "spp: service {} is running (controller pid {})",
                status.service, status.controller_pid
            );
            for l in &status.listeners {
                println!("  listen[{}] {}://{}", l.index, l.transport, l.addr);
            }
            Ok(EXIT_OK)
        }
        Command::Status { config, json } => {
            let cfg = config::load(&config.path)?;
            match control::request(&cfg.socket_path(), Request::Status) {
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
                // The pid file's lock says whether a controller runs.
                Err(ControlError::NotRunning { .. }) => match pidfile::probe(&cfg.pid_file()) {
                    Holder::Free => {
                        println!("spp: service {} is not running", cfg.service.name);
                        Ok(EXIT_NOT_RUNNING)
                    }
                    Holder::Held(pid) => {
                        let pid = pid.map_or_else(|| "?".to_string(), |p| p.to_string());
                        println!(
                            "spp: service {}: its controller (pid {pid}) does not answer on {} (starting or stopping)",
                            cfg.service.name,
                            cfg.socket_path().display()
                        );
                        Ok(EXIT_UNKNOWN)
                    }
                },
                Err(e) => Err(e.into()),
            }
        }
        Command::Stop { config } => {
            let cfg = config::load(&config.path)?;
            match daemon::stop(&cfg)? {
                daemon::Stopped::Stopped(pid) => {
                    println!(
                        "spp: service {} stopped (controller pid {pid})",
                        cfg.service.name
                    )
                }
                daemon::Stopped::NotRunning => {
                    println!("spp: service {} is not running", cfg.service.name)
                }
            }
            Ok(EXIT_OK)
        }
    }
}
