//! Starting a child: finding the `spp-proxy` / `spp-worker` executables,
//! writing their launch specs (limits, timeouts, log level and file), and
//! spawning them with exactly the listed
//! fds inherited, `PR_SET_PDEATHSIG(SIGTERM)`, their own process group,
//! their output appended to their log file (/dev/null when it cannot be
//! opened: a child never fails to start for its log), and as
//! `service.user` when set ([`crate::privileges::drop_to`]).

use crate::listeners::BoundListener;
use crate::privileges::{self, Credentials};
use crate::resources::Resources;
use spp_config::defaults;
use spp_config::{Config, RunAs};
use spp_ipc::l5::table::RouteTable;
use spp_ipc::launch::{
    Launch, LogSpec, ProxyLaunch, ProxyLimits, ShardPairFds, WorkerLaunch, FIRST_INHERITED_FD,
    LAUNCH_ENV,
};
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The running executable's path is unknown.
    #[error("cannot locate the spp executable: {0}")]
    CurrentExe(std::io::Error),
    /// A child executable is missing.
    #[error("cannot find {} (set {} to the directory holding spp-proxy and spp-worker)", path.display(), defaults::BIN_DIR_ENV)]
    MissingBinary {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The child's log file cannot be opened.
    #[error("opening log {}", path.display())]
    Log {
        /// The log file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// fork/exec failed.
    #[error("starting {}", bin.display())]
    Exec {
        /// The executable.
        bin: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An fd to inherit has a stdio number (the controller was started
    /// with stdio closed): the child's stdio would replace it.
    #[error("fd {fd} to inherit is below {FIRST_INHERITED_FD} (start spp with stdin, stdout and stderr open)")]
    StdioFd {
        /// The fd.
        fd: RawFd,
    },
    /// A proxy shard the config promises does not exist.
    #[error("no proxy shard {shard}")]
    NoShard {
        /// The shard.
        shard: u16,
    },
    /// A worker slot the config promises does not exist.
    #[error("no worker slot g{group}/{index}")]
    NoSlot {
        /// Group id.
        group: u32,
        /// Slot index.
        index: u32,
    },
}

/// Where the child executables are.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// `spp-proxy`.
    pub proxy: PathBuf,
    /// `spp-worker`.
    pub worker: PathBuf,
}

impl Binaries {
    /// Looks in `$SPP_BIN_DIR`, else next to the running executable.
    pub fn locate() -> Result<Self, SpawnError> {
        let dir = match std::env::var_os(defaults::BIN_DIR_ENV) {
            Some(dir) => std::path::absolute(&dir).unwrap_or_else(|_| PathBuf::from(dir)),
            None => {
                let exe = std::env::current_exe().map_err(SpawnError::CurrentExe)?;
                exe.parent().map(Path::to_path_buf).unwrap_or_default()
            }
        };
        let find = |name: &str| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(SpawnError::MissingBinary { path })
            }
        };
        Ok(Binaries {
            proxy: find(defaults::PROXY_BIN)?,
            worker: find(defaults::WORKER_BIN)?,
        })
    }
}

/// The child's log level, and its log file (reopened on SIGHUP).
fn log_spec(cfg: &Config, log: &Path) -> LogSpec {
    LogSpec {
        level: cfg.service.log_level.clone(),
        file: Some(log.to_path_buf()),
    }
}

/// Milliseconds of `d` for a launch spec (saturating).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The proxy limits `cfg` asks for (the launch spec's, and what a reload
/// publishes).
pub fn proxy_limits(cfg: &Config) -> ProxyLimits {
    let p = &cfg.proxy;
    ProxyLimits {
        max_connections: p.max_connections,
        max_request_size: p.max_request_size,
        max_send_buffer: p.max_send_buffer,
        idle_timeout_ms: millis(p.idle_timeout),
        request_timeout_ms: millis(p.request_timeout),
        max_udp_flows: p.max_udp_flows,
        spin_us: u64::try_from(p.spin.as_micros()).unwrap_or(u64::MAX),
        drain_timeout_ms: millis(defaults::proxy_drain_timeout(cfg.service.stop_grace)),
    }
}

/// The launch spec of proxy shard `shard`: its listeners, its region and
/// doorbell, its pair with every worker slot; `epoch` counts the shard's
/// earlier starts, `log` is its log file.
pub fn proxy_launch(
    cfg: &Config,
    listeners: &[BoundListener],
    res: &Resources,
    shard: u16,
    epoch: u16,
    log: &Path,
) -> Result<ProxyLaunch, SpawnError> {
    let p = &cfg.proxy;
    let own = res.shard(shard).ok_or(SpawnError::NoShard { shard })?;
    Ok(ProxyLaunch {
        service: cfg.service.name.clone(),
        epoch,
        shard,
        shards: res.shard_count(),
        plugin: p.plugin.clone(),
        plugin_conf: p.plugin_conf.clone(),
        listeners: crate::listeners::of_shard(listeners, shard)
            .map(BoundListener::launch_fd)
            .collect(),
        proxy_region_fd: own.region.raw_fd(),
        proxy_bell_fd: own.bell.raw_fd(),
        pair_layout: cfg.rings,
        groups: res
            .group_fds(shard)
            .into_iter()
            .map(|mut g| {
                g.msg_timeout_ms = cfg
                    .groups
                    .iter()
                    .find(|c| c.id == g.id)
                    .map_or(0, |c| millis(c.msg_timeout));
                g
            })
            .collect(),
        limits: proxy_limits(cfg),
        log: log_spec(cfg, log),
    })
}

/// The launch spec of worker `index` of the group at `group_pos`; `log`
/// is its log file.
pub fn worker_launch(
    cfg: &Config,
    res: &Resources,
    group_pos: usize,
    index: u32,
    log: &Path,
) -> Result<WorkerLaunch, SpawnError> {
    let group = cfg
        .groups
        .get(group_pos)
        .ok_or(SpawnError::NoSlot { group: 0, index })?;
    let slot = res.slot(group_pos, index).ok_or(SpawnError::NoSlot {
        group: group.id,
        index,
    })?;
    let shard0 = res.shard(0).ok_or(SpawnError::NoShard { shard: 0 })?;
    let other_shards = (1..res.shard_count())
        .map(|shard| {
            let proxy = res.shard(shard).ok_or(SpawnError::NoShard { shard })?;
            let pair = slot.pair_of(shard).ok_or(SpawnError::NoShard { shard })?;
            Ok(ShardPairFds {
                shard,
                region_fd: pair.raw_fd(),
                proxy_region_fd: proxy.region.raw_fd(),
                proxy_bell_fd: proxy.bell.raw_fd(),
            })
        })
        .collect::<Result<Vec<_>, SpawnError>>()?;
    Ok(WorkerLaunch {
        service: cfg.service.name.clone(),
        group: group.id,
        index,
        plugin: group.plugin.clone(),
        plugin_conf: group.plugin_conf.clone(),
        pair: slot.fds(),
        pair_layout: cfg.rings,
        proxy_region_fd: shard0.region.raw_fd(),
        proxy_bell_fd: shard0.bell.raw_fd(),
        other_shards,
        spin_us: u64::try_from(group.spin.as_micros()).unwrap_or(u64::MAX),
        msg_timeout_ms: millis(group.msg_timeout),
        drain_timeout_ms: millis(cfg.service.stop_grace),
        l5_table_fd: res.l5.as_ref().map(RouteTable::raw_fd),
        microthreads: group
            .microthreads
            .map(|m| spp_ipc::launch::MicroThreadSpec {
                max_in_flight: m.max_in_flight,
                stack_size: m.stack_size,
            }),
        async_tasks: group.async_tasks.map(|a| spp_ipc::launch::AsyncSpec {
            max_in_flight: a.max_in_flight,
            task_timeout_ms: millis(a.task_timeout),
        }),
        log: log_spec(cfg, log),
    })
}

/// `close_range(2)` flag: mark the range close-on-exec instead of closing.
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;

/// Marks every fd but stdin, stdout and stderr close-on-exec, so that
/// nothing the caller leaked reaches a child (a no-op on kernels without
/// `close_range`; our own fds are close-on-exec anyway). Async-signal-safe:
/// meant for `pre_exec`.
pub fn cloexec_all_but_stdio() {
    // SAFETY: close_range only changes fd flags; it takes plain integers.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            FIRST_INHERITED_FD as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
}

/// Opens `log` for a child's stdout and stderr. When it cannot be opened
/// (a full log disk, a vanished directory), the child still starts, its
/// output going to /dev/null: that is warned about and counted
/// (`logging::count_unopened_log`), and its SIGHUP reopen tries the file
/// again. Errs only when /dev/null cannot be opened either.
fn open_log(log: &Path, run_as: Option<&RunAs>) -> std::io::Result<std::fs::File> {
    match privileges::open_log(log, run_as) {
        Ok(file) => Ok(file),
        Err(err) => {
            crate::logging::count_unopened_log();
            tracing::warn!(
                log = %log.display(),
                "cannot open the child's log ({err}); its output goes to /dev/null"
            );
            std::fs::OpenOptions::new().write(true).open("/dev/null")
        }
    }
}

/// Spawns `bin` with `launch` in its environment, `fds` (and stdio) as the
/// only inherited fds, stdin from /dev/null and stdout + stderr appended to
/// `log` (0640, owned by `run_as` when set; /dev/null when it cannot be
/// opened, see [`open_log`]), running as `run_as` when set.
/// Must be called on the thread that lives as long as the child
/// should (PR_SET_PDEATHSIG fires when the spawning thread exits).
pub fn spawn(
    bin: &Path,
    launch: &Launch,
    fds: Vec<RawFd>,
    log: &Path,
    run_as: Option<&RunAs>,
) -> Result<tokio::process::Child, SpawnError> {
    if let Some(&fd) = fds.iter().find(|&&fd| fd < FIRST_INHERITED_FD) {
        return Err(SpawnError::StdioFd { fd });
    }
    let log_err = |source| SpawnError::Log {
        path: log.to_path_buf(),
        source,
    };
    let out = open_log(log, run_as).map_err(log_err)?;
    let err = out.try_clone().map_err(log_err)?;
    let drop_to = run_as.map(Credentials::from);
    let mut cmd = std::process::Command::new(bin);
    cmd.env(LAUNCH_ENV, launch.to_env_value())
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0);
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe calls (close_range, fcntl, setgroups, setgid,
    // setuid, prctl, getppid) on data allocated before the fork; it
    // allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            cloexec_all_but_stdio();
            for &fd in &fds {
                spp_ipc::shm::clear_cloexec(fd)?;
            }
            // Before the death signal: a change of credentials clears it.
            if let Some(who) = drop_to {
                privileges::drop_to(who)?;
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The controller died before the death signal was armed.
            if libc::getppid() != me {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    tokio::process::Command::from(cmd)
        .spawn()
        .map_err(|source| SpawnError::Exec {
            bin: bin.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_shards() -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("spp.toml");
        let text = "[service]\nname = \"s\"\n[proxy]\n\
                    listen = [\"tcp://127.0.0.1:0\", \"udp://127.0.0.1:0\"]\n\
                    plugin = \"p.so\"\nmax_request_size = \"16KiB\"\nprocesses = 2\n\
                    [rings]\nrequest_size = \"64KiB\"\nresponse_size = \"64KiB\"\n\
                    [[group]]\nid = 1\nplugin = \"w.so\"\nworkers = 1\n";
        std::fs::write(&file, text).unwrap();
        let cfg = spp_config::load(&file).unwrap();
        (dir, cfg)
    }

    #[test]
    fn each_shard_gets_its_listeners_region_and_pairs_and_workers_every_pair() {
        let (dir, cfg) = two_shards();
        let listeners = crate::listeners::bind_all(&cfg).unwrap();
        assert_eq!(listeners.len(), 4, "2 addresses x 2 shards");
        let res = Resources::create(&cfg).unwrap();
        let log = dir.path().join("x.log");
        let p1 = proxy_launch(&cfg, &listeners, &res, 1, 7, &log).unwrap();
        assert_eq!((p1.shard, p1.shards, p1.epoch), (1, 2, 7));
        let own: Vec<RawFd> = crate::listeners::of_shard(&listeners, 1)
            .map(|l| l.launch_fd().fd)
            .collect();
        assert_eq!(p1.listeners.iter().map(|l| l.fd).collect::<Vec<_>>(), own);
        assert_eq!(p1.proxy_region_fd, res.shards[1].region.raw_fd());
        let slot = res.slot(0, 0).unwrap();
        let pair = &p1.groups[0].slots[0];
        assert_eq!(pair.region_fd, slot.shard_pairs[0].raw_fd());
        assert_eq!(pair.bell_fd, slot.bell.raw_fd(), "one bell per worker");
        let p0 = proxy_launch(&cfg, &listeners, &res, 0, 0, &log).unwrap();
        assert_eq!(p0.groups[0].slots[0].region_fd, slot.pair.raw_fd());
        assert!(proxy_launch(&cfg, &listeners, &res, 2, 0, &log).is_err());

        let w = worker_launch(&cfg, &res, 0, 0, &log).unwrap();
        assert_eq!(w.proxy_region_fd, res.shards[0].region.raw_fd());
        assert_eq!(
            w.other_shards,
            vec![ShardPairFds {
                shard: 1,
                region_fd: slot.shard_pairs[0].raw_fd(),
                proxy_region_fd: res.shards[1].region.raw_fd(),
                proxy_bell_fd: res.shards[1].bell.raw_fd(),
            }]
        );
    }

    #[test]
    fn a_log_that_cannot_be_opened_falls_back_to_dev_null_and_is_counted() {
        let before = crate::logging::dropped();
        let out = open_log(std::path::Path::new("/nonexistent-dir/child.log"), None);
        assert!(out.is_ok(), "{out:?}");
        assert!(crate::logging::dropped() > before);
    }
}
