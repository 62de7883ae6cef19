//! The command line: `spp check | start | status | stat | reload | restart
//! | stop -c FILE` (or `--prefix DIR`), `spp l5 list | get`, and the package
//! operations `spp package | install | checksum | uninstall`; `spp new
//! plugin` writes a plugin project.

use clap::{Args, Parser, Subcommand};
use spp_config::defaults;
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

/// Exit status when stdout's reader went away (`spp status | head -c1`):
/// that of a command killed by SIGPIPE, without the noise.
pub const EXIT_BROKEN_PIPE: u8 = 128 + 13;

const EXIT_CODES: &str = "\
Exit status:
  0  success (`stop` also when nothing was running)
  1  failure: invalid config, start failed, already running, stop timed out,
     reload refused or failed
  3  `status`, `stat`, `reload`, `l5`: the service is not running
  4  `status`: a controller runs but does not answer (starting or stopping)
141  stdout was a pipe whose reader went away (output stopped quietly)";

/// spp — a socket server: proxy, shared-memory rings and worker groups
/// running business plugins, supervised from one config file.
#[derive(Debug, Parser)]
#[command(name = "spp", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The config file argument every command takes: `-c FILE`, or
/// `--prefix DIR` for an installed package (its `DIR/conf/spp.toml`).
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ConfigArg {
    /// The service's config file (TOML).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub path: Option<PathBuf>,
    /// An installed package (`spp install`): as `-c DIR/conf/spp.toml`.
    #[arg(long, value_name = "DIR")]
    pub prefix: Option<PathBuf>,
}

impl ConfigArg {
    /// The config file: `-c FILE`, or `DIR/conf/spp.toml`.
    pub fn file(&self) -> PathBuf {
        match (&self.path, &self.prefix) {
            (Some(path), _) => path.clone(),
            (None, Some(prefix)) => prefix.join(crate::package::CONFIG),
            // clap's group makes one of them required.
            (None, None) => PathBuf::new(),
        }
    }
}

/// `--prefix DIR` of an installed package.
#[derive(Debug, Args)]
pub struct PrefixArg {
    /// The install directory.
    #[arg(long, value_name = "DIR")]
    pub prefix: PathBuf,
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
    /// One-shot health check for cron or a timer: is the controller alive
    /// and every group at strength? A service that is down is started
    /// again. One status line; exit 0 healthy, 10 degraded, 11 restarted,
    /// 12 could not be restarted, 13 hung controller.
    Monitor {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Remove rotated logs and core files beyond the configured age and
    /// total size (never a live log); print what was freed.
    Diskclear {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Build a package: the spp binaries, the plugins the config names,
    /// the config (paths made relative to the package), a systemd unit and
    /// MANIFEST.json (sha256 and mode of every file).
    Package {
        /// The service's config file (validated first).
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
        /// The archive to write (tar.gz).
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: PathBuf,
        /// The package version (default: spp's own).
        #[arg(long = "version", value_name = "V")]
        pkg_version: Option<String>,
    },
    /// Install a package into DIR (bin, conf, plugins, log, run), verified
    /// against its manifest before anything is written; over an existing
    /// install, upgrade (a running service is reloaded or restarted).
    Install {
        /// The package (tar.gz from `spp package`).
        package: PathBuf,
        #[command(flatten)]
        prefix: PrefixArg,
        /// Keep an existing conf/spp.toml even when the operator did not
        /// change it.
        #[arg(long, conflicts_with = "replace_config")]
        keep_config: bool,
        /// Install the package's conf/spp.toml even over one the operator
        /// changed.
        #[arg(long)]
        replace_config: bool,
    },
    /// Verify every installed file against DIR/MANIFEST.json; list the
    /// modified, missing and unexpected ones (exit 1 if any, a changed
    /// conf/spp.toml alone excepted).
    Checksum {
        #[command(flatten)]
        prefix: PrefixArg,
    },
    /// Stop the service and remove what install put in DIR; log/ stays
    /// unless --purge.
    Uninstall {
        #[command(flatten)]
        prefix: PrefixArg,
        /// Remove log/ too (and DIR when it is then empty).
        #[arg(long)]
        purge: bool,
    },
    /// Write a new plugin project that builds and runs as it is.
    ///
    /// `spp new plugin NAME --lang rust|c`: a length-prefixed echo showing
    /// every hook, an spp.toml serving it and a README with the commands.
    New {
        /// What to create.
        #[command(subcommand)]
        command: NewCommand,
    },
    /// Internal: load one plugin the way the role's process will, print
    /// the verdict as one JSON line and exit 0 (it loads) or 1 (refused).
    /// Run by `check`, `start` and `reload` so that the long-lived
    /// controller never loads a business plugin.
    #[command(name = spp_daemon::plugin_check::SUBCOMMAND, hide = true)]
    CheckPlugin {
        /// The process that would load it.
        #[arg(long, value_parser = ["proxy", "worker"])]
        role: String,
        /// The group id the worker would serve (0 for the proxy).
        #[arg(long, default_value_t = 0)]
        group: u32,
        /// The `plugin_conf` handed to `spp_init`.
        #[arg(long, default_value = "", allow_hyphen_values = true)]
        conf: String,
        /// The plugin file.
        path: PathBuf,
    },
    /// Show the running service's L5 route table: per sid its instances,
    /// weights, health and last period's outcomes.
    L5 {
        /// What to show.
        #[command(subcommand)]
        command: L5Command,
    },
}

/// `spp new ...`.
#[derive(Debug, Subcommand)]
pub enum NewCommand {
    /// A plugin project (Rust or C) in a new directory.
    ///
    /// `--lang rust` writes a Cargo crate (a cdylib on spp-plugin-api),
    /// `--lang c` a C file with a copy of spp_plugin.h and a Makefile; both
    /// a length-prefixed echo with every hook, an spp.toml that serves it
    /// on 127.0.0.1 and a README. Then, in that directory, `cargo build
    /// --release` (or `make`) and `spp start -c spp.toml`; or `make run`.
    #[command(after_help = NEW_PLUGIN_HELP)]
    Plugin(NewPlugin),
}

const NEW_PLUGIN_HELP: &str = "\
spp-plugin-api (Rust) is not on crates.io: the crate depends on it by path,
from --api-path, else from the spp source tree this spp was built from
(relative when the project lies inside that tree); --api-git URL takes it
from a git repository instead. When none is known, Cargo.toml says what to
fill in.

Examples:
  spp new plugin hello --lang c && make -C hello run
  spp new plugin hello --lang rust && make -C hello run";

/// The arguments of `spp new plugin`.
#[derive(Debug, Args)]
pub struct NewPlugin {
    /// The plugin's name: a lowercase ASCII letter, then lowercase letters,
    /// digits, '_' or '-' (the package, the library libNAME.so with '-'
    /// as '_', and the service name).
    pub name: String,
    /// The plugin's language.
    #[arg(long, value_enum)]
    pub lang: crate::scaffold::Lang,
    /// The directory to create (default: ./NAME); it must not exist.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Rust: depend on the spp-plugin-api of this spp source tree (or its
    /// plugin-api directory).
    #[arg(long, value_name = "DIR", conflicts_with = "api_git")]
    pub api_path: Option<PathBuf>,
    /// Rust: take spp-plugin-api from this git repository of spp.
    #[arg(long, value_name = "URL")]
    pub api_git: Option<String>,
    /// The TCP port spp.toml listens on, on 127.0.0.1 (default: one that
    /// is free now; 0: the system picks one at each start).
    #[arg(long)]
    pub port: Option<u16>,
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
        assert!(Cli::try_parse_from(["spp", "status", "-c", "x", "--prefix", "d"]).is_err());
        let cli = Cli::try_parse_from(["spp", "stop", "--prefix", "/opt/s"]).unwrap();
        match cli.command {
            Command::Stop { config } => {
                assert_eq!(config.file(), PathBuf::from("/opt/s/conf/spp.toml"))
            }
            other => panic!("{other:?}"),
        }
        let cli =
            Cli::try_parse_from(["spp", "package", "-c", "x", "-o", "p.tgz", "--version", "2"])
                .unwrap();
        assert!(matches!(cli.command, Command::Package { pkg_version: Some(v), .. } if v == "2"));
        assert!(Cli::try_parse_from([
            "spp",
            "install",
            "p",
            "--prefix",
            "d",
            "--keep-config",
            "--replace-config"
        ])
        .is_err());
        assert!(Cli::try_parse_from(["spp", "install", "p"]).is_err());
        assert!(Cli::try_parse_from(["spp", "uninstall", "--prefix", "d", "--purge"]).is_ok());
        assert!(Cli::try_parse_from(["spp", "checksum", "--prefix", "d"]).is_ok());
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
        let cli = Cli::try_parse_from(["spp", "new", "plugin", "kv", "--lang", "c"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::New { command: NewCommand::Plugin(NewPlugin { lang: crate::scaffold::Lang::C, ref name, dir: None, .. }) } if name == "kv"
        ));
        assert!(Cli::try_parse_from(["spp", "new", "plugin", "kv"]).is_err());
        assert!(Cli::try_parse_from(["spp", "new", "plugin", "kv", "--lang", "go"]).is_err());
        assert!(Cli::try_parse_from([
            "spp",
            "new",
            "plugin",
            "kv",
            "--lang",
            "rust",
            "--api-path",
            "a",
            "--api-git",
            "u"
        ])
        .is_err());
        let cli = Cli::try_parse_from(["spp", "restart", "-c", "x", "--wait", "9s"]).unwrap();
        assert!(
            matches!(cli.command, Command::Restart { wait, .. } if wait == Duration::from_secs(9))
        );
    }
}
