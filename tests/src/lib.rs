//! The end-to-end test harness: runs the real `spp` binaries on 127.0.0.1.
//!
//! * [`Binaries`] finds `spp`, `spp-proxy`, `spp-worker` and the plugins in
//!   the cargo target dir (run `cargo build --workspace` first; the README's
//!   test command does).
//! * [`ServiceConfig`] writes a config into a temp dir with ephemeral ports
//!   (every key the controller knows, the optional ones only when set).
//! * [`Service`] starts it with `spp start`, reads `spp status --json` and
//!   `spp stat --json`, runs `spp reload` / `spp restart`, and always stops
//!   it (and, failing that, kills the processes it saw, by PID) when
//!   dropped.
//! * [`view`] reads the status JSON; [`client`] holds small blocking
//!   clients for the echo protocol; [`load`] runs clients in the
//!   background and counts what they saw; [`faulty`] names the test
//!   plugin's payloads and answers; [`caller`] names the call test
//!   plugin's commands and answers, and [`backend`] runs the downstream
//!   backends its calls reach; [`http`] GETs the metrics endpoint and
//!   [`metrics`] names the metrics and parses what it serves.
//! * L5: [`L5Config`] writes the `[l5]` table; [`l5`] reads `spp l5
//!   list/get` and the L5 part of the status; [`relay`] runs clients of
//!   the relay example plugin and counts failed calls; [`etcd`] runs a real
//!   etcd server; [`redis`] a real redis-server; [`netns`] makes network
//!   namespaces (root only) for the partition test; [`paced`] sends
//!   open-loop load at a fixed rate.
//!
//! Every wait is bounded by a deadline and polls a real condition.

pub mod backend;
pub mod caller;
pub mod client;
mod config;
pub mod etcd;
pub mod faulty;
pub mod http;
pub mod l5;
pub mod load;
pub mod metrics;
pub mod netns;
pub mod paced;
pub mod redis;
pub mod relay;
pub mod service;
pub mod view;

pub use config::{
    GroupConfig, L5Config, ScalingConfig, ServiceConfig, TEST_RING_SIZE, TEST_STOP_GRACE,
};
pub use service::{Service, SppOutput};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the built binaries and plugins are.
#[derive(Clone, Debug)]
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// Finds the profile dir (`target/debug`) from the test executable
    /// (`target/debug/deps/<test>`), and checks the binaries are built.
    pub fn locate() -> Binaries {
        let exe = std::env::current_exe().expect("current_exe");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary lives in target/<profile>/deps")
            .to_path_buf();
        for name in ["spp", "spp-proxy", "spp-worker"] {
            assert!(
                dir.join(name).is_file(),
                "{} is missing: build first with `cargo build --workspace` (the README's test command does)",
                dir.join(name).display()
            );
        }
        Binaries { dir }
    }

    /// The `spp` CLI.
    pub fn spp(&self) -> PathBuf {
        self.dir.join("spp")
    }

    /// A plugin by library name, e.g. `plugin("spp_echo")`.
    pub fn plugin(&self, name: &str) -> PathBuf {
        let path = self.dir.join(format!("lib{name}.so"));
        assert!(
            path.is_file(),
            "{} is missing: build first with `cargo build --workspace`",
            path.display()
        );
        path
    }
}

/// Polls `cond` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(value) = cond() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Sends `sig` to `pid` (a process this test started, directly or through
/// the service it started).
pub fn kill(pid: i32, sig: i32) {
    // SAFETY: plain syscall; `pid` is one of ours.
    unsafe { libc::kill(pid, sig) };
}

/// The inodes of the mappings of `path` in process `pid` (a process that
/// loaded a plugin maps it; a file replaced by rename has a new inode).
pub fn mapped_inodes(pid: i32, path: &Path) -> Vec<u64> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let wanted = path.display().to_string();
    let mut inodes: Vec<u64> = maps
        .lines()
        .filter_map(|line| {
            // address perms offset dev inode path
            let mut fields = line.split_whitespace();
            let inode = fields.nth(4)?.parse().ok()?;
            let rest: Vec<&str> = fields.collect();
            (rest.first() == Some(&wanted.as_str())).then_some(inode)
        })
        .collect();
    inodes.sort_unstable();
    inodes.dedup();
    inodes
}
