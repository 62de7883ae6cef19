//! The command line: `spp check | start | status | stat | reload | restart
//! | stop -c FILE`, and `spp l5 list | get`.

use crate::defaults;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: failure (bad config, start failed, stop timed out...).
pub const EXIT_FAILURE: u8 = 1;
/// Exit status of `spp status` when the service is not running (LSB).
pub const EXIT_NOT_RUNNING: u8 = 3;
/// Exit status of `spp status` when a controller runs but does not answer
/// (starting or stopping; LSB "unknown").
pub const EXIT_UNKNOWN: u8 = 4;

const EXIT_CODES: &str = "\
Exit status:
  0  success (`stop` also when nothing was running)
  1  failure: invalid config, start failed, already running, stop timed out,
     reload refused or failed
  3  `status`, `stat`, `reload`, `l5`: the service is not running
  4  `status`: a controller runs but does not answer (starting or stopping)";

/// spp — a socket server: proxy, shared-memory rings and worker groups
/// running business plugins, supervised from one config file.
#[derive(Debug, Parser)]
#[command(name = "spp", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The config file argument every command takes.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The service's config file (TOML).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub path: PathBuf,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config (plugins load, limits fit); print a summary.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Start the service; return once every process is ready.
    Start {
        #[command(flatten)]
        config: ConfigArg,
        /// Run the controller in this process (for systemd and tests).
        #[arg(long)]
        foreground: bool,
        /// How long to wait for the service to become ready.
        #[arg(long, value_name = "DURATION", default_value = defaults::START_WAIT, value_parser = parse_duration)]
        wait: Duration,
        /// Internal: stderr already is controller.log.
        #[arg(long, hide = true, requires = "foreground")]
        detached: bool,
    },
    /// Show the running service's processes and counters (with a warning
    /// when FILE does not validate, as long as its [service] keys can be
    /// read).
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON for machines.
        #[arg(long)]
        json: bool,
    },
    /// Show per-group rates and latency percentiles (with a warning when
    /// FILE does not validate, as long as its [service] keys can be read).
    Stat {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON for machines (one line per report with --watch).
        #[arg(long)]
        json: bool,
        /// Report over the last SECS seconds, again every SECS seconds,
        /// until interrupted.
        #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
        watch: Option<u64>,
    },
    /// Re-read the config file the service was started from and apply it
    /// without dropping requests: limits, worker counts, timeouts, scaling;
    /// every worker is replaced (new plugin build) once its successor is
    /// ready. FILE is checked first.
    Reload {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Stop the service if it runs, then start it (FILE is checked first).
    Restart {
        #[command(flatten)]
        config: ConfigArg,
        /// How long to wait for the service to become ready.
        #[arg(long, value_name = "DURATION", default_value = defaults::START_WAIT, value_parser = parse_duration)]
        wait: Duration,
    },
    /// Stop the service (drain, then stop every process); works while FILE
    /// does not validate, as long as its [service] keys can be read.
    Stop {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Show the running service's L5 route table: per sid its instances,
    /// weights, health and last period's outcomes.
    L5 {
        /// What to show.
        #[command(subcommand)]
        command: L5Command,
    },
}

/// `spp l5 ...`.
#[derive(Debug, Subcommand)]
pub enum L5Command {
    /// Every sid in the table.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON for machines.
        #[arg(long)]
        json: bool,
    },
    /// One sid.
    Get {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON for machines.
        #[arg(long)]
        json: bool,
        /// Module id of the sid.
        modid: u32,
        /// Command id of the sid.
        cmdid: u32,
    },
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration like \"30s\": {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["spp", "start", "-c", "x.toml", "--wait", "5s"]).unwrap();
        match cli.command {
            Command::Start {
                wait, foreground, ..
            } => {
                assert_eq!(wait, Duration::from_secs(5));
                assert!(!foreground);
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["spp", "start", "-c", "x", "--wait", "5"]).is_err());
        assert!(Cli::try_parse_from(["spp", "status"]).is_err());
        let cli =
            Cli::try_parse_from(["spp", "stat", "-c", "x", "--watch", "2", "--json"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Stat {
                watch: Some(2),
                json: true,
                ..
            }
        ));
        assert!(Cli::try_parse_from(["spp", "stat", "-c", "x", "--watch", "0"]).is_err());
        assert!(Cli::try_parse_from(["spp", "reload", "-c", "x"]).is_ok());
        let cli =
            Cli::try_parse_from(["spp", "l5", "get", "-c", "x", "64001", "1", "--json"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::L5 {
                command: L5Command::Get {
                    modid: 64001,
                    cmdid: 1,
                    json: true,
                    ..
                }
            }
        ));
        assert!(Cli::try_parse_from(["spp", "l5", "list", "-c", "x"]).is_ok());
        assert!(Cli::try_parse_from(["spp", "l5", "get", "-c", "x", "1"]).is_err());
        let cli = Cli::try_parse_from(["spp", "restart", "-c", "x", "--wait", "9s"]).unwrap();
        assert!(
            matches!(cli.command, Command::Restart { wait, .. } if wait == Duration::from_secs(9))
        );
    }
}
