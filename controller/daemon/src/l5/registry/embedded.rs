//! The embedded backend (`l5.backend = "embedded"`): a registry shared by
//! every spp on the machine, as files in one directory (`l5.registry_dir`).
//!
//! Registration: one file per registering controller,
//! `<service>-<pid>.json` ([`file_name`]; the directory is created sticky
//! and writable by every user, mode [`defaults::L5_REGISTRY_DIR_MODE`]),
//! holding a [`Record`]: the
//! service, the controller's pid, a heartbeat (Unix time, ms) and the
//! instances it registers. It is written atomically (a temporary
//! `.<name>.<pid>-<nanos>-<n>.tmp`, created with `O_EXCL | O_NOFOLLOW`
//! in the same directory, then `rename`) at every
//! [`Command::Register`] and every `ttl / 3` after that
//! ([`defaults::l5_heartbeat_interval`]); an empty list withdraws the
//! instances (the file stays, empty). [`Command::Deregister`] (or the
//! command channel closing) removes the file and ends the task.
//!
//! Discovery: every `scan` interval (`period / 5`, at least 200 ms:
//! [`defaults::l5_scan_interval`]) the directory is listed (at most
//! [`defaults::L5_MAX_REGISTRY_FILES`] entries) and every `*.json` file read
//! (at most [`defaults::L5_MAX_REGISTRY_FILE_BYTES`]; a file that does not
//! parse, or names a bad pid or instance, is skipped and logged once). A
//! file is opened `O_NOFOLLOW | O_NONBLOCK` and skipped unless `fstat`
//! says it is a regular file. A file whose pid is gone (`kill(pid, 0)` says
//! ESRCH, and only then) is deleted, and so is a temporary file older than
//! `ttl` left by a writer that is gone. A file whose pid is alive but whose
//! heartbeat is older than `ttl` is left out of discovery and kept (its
//! writer may be hung, or the clock may have jumped; deleting it could race
//! a fresh rename). A well-formed file is then held to [`trusted`]: owned
//! by the user its pid runs as, a heartbeat at most
//! [`defaults::L5_MAX_CLOCK_SKEW`] in the future, weights at most
//! [`defaults::L5_MAX_REGISTRY_WEIGHT`], and, when another user (not root)
//! owns it, naming only addresses that user listens on
//! ([`super::listening`]); one that fails is skipped and logged like a
//! malformed one. Only its owner (or root) deletes a dead
//! writer's file. The directory is checked at every write and scan: one
//! writable by group or others without the sticky bit is refused (the
//! write or scan fails with an error naming it, and `spp check` / start
//! refuse it first: `spp_config::l5::check_registry_dir`); one owned by
//! another user is warned about once. The live instances (at most
//! [`MAX_INSTANCES`], sorted, duplicates once) are published as a
//! [`Discovered`] when they or the error change. When the directory cannot
//! be listed or this service's file cannot be written, the last instances
//! stay published with the error.
//!
//! File work runs on tokio's blocking pool, so a slow disk never stalls the
//! supervisor's thread. Heartbeats use the wall clock (they are compared
//! across processes).

use super::listening::Listening;
use super::{Command, Discovered, EmbeddedSettings};
use serde::{Deserialize, Serialize};
use spp_config::defaults;
use spp_ipc::l5::{Instance, MAX_WEIGHT, MIN_WEIGHT};
use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tracing::{info, warn};

/// The most instances discovery accepts (what the route table holds).
pub const MAX_INSTANCES: usize = spp_ipc::l5::table::MAX_NODES;
/// File name suffix of a registration.
const SUFFIX: &str = ".json";
/// File name suffix of a registration being written.
const TMP_SUFFIX: &str = ".tmp";

/// One registration file (unknown fields are ignored, so a newer writer
/// may add some).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The registering service's name.
    pub service: String,
    /// Its controller's pid.
    pub pid: u32,
    /// When the file was last written, ms since the Unix epoch.
    pub heartbeat_ms: u64,
    /// What it registers.
    pub instances: Vec<Instance>,
}

/// The registration file of `service`'s controller `pid`: the service
/// name with every character but ASCII letters, digits, `-`, `_` and `.`
/// replaced by `_` (and a leading `.` too), so that it stays one visible
/// file in the directory.
pub fn file_name(service: &str, pid: u32) -> String {
    let safe: String = service
        .chars()
        .enumerate()
        .map(|(i, c)| {
            let ok = c.is_ascii_alphanumeric() || c == '-' || c == '_' || (c == '.' && i > 0);
            if ok {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}-{pid}{SUFFIX}")
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Runs the backend until [`Command::Deregister`] or the command channel
/// closes (both remove this service's file).
pub async fn run(
    settings: EmbeddedSettings,
    mut commands: mpsc::Receiver<Command>,
    out: watch::Sender<Arc<Discovered>>,
) {
    let mut scan = tokio::time::interval(settings.scan);
    scan.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let beat_every = defaults::l5_heartbeat_interval(settings.ttl);
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + beat_every, beat_every);
    beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut reg = Registry::new(settings);
    loop {
        tokio::select! {
            biased;
            command = commands.recv() => match command {
                Some(Command::Register(instances)) => {
                    reg.mine = Some(instances);
                    reg.write().await;
                    beat.reset();
                    reg.scan(&out).await;
                }
                Some(Command::Deregister) | None => {
                    reg.remove().await;
                    return;
                }
            },
            _ = beat.tick(), if reg.mine.is_some() => reg.write().await,
            _ = scan.tick() => reg.scan(&out).await,
        }
    }
}

/// The task's state.
struct Registry {
    settings: EmbeddedSettings,
    /// This service's file.
    file: PathBuf,
    /// What this service registers (`None` until the first command).
    mine: Option<Vec<Instance>>,
    /// The last failure to write this service's file.
    write_error: Option<String>,
    /// The last failure to list the directory.
    scan_error: Option<String>,
    /// Files found malformed at the last scan (logged once each).
    malformed: BTreeSet<String>,
}

impl Registry {
    fn new(settings: EmbeddedSettings) -> Self {
        let file = settings
            .dir
            .join(file_name(&settings.service, settings.pid));
        Registry {
            settings,
            file,
            mine: None,
            write_error: None,
            scan_error: None,
            malformed: BTreeSet::new(),
        }
    }

    /// Writes this service's file (atomically).
    async fn write(&mut self) {
        let Some(instances) = self.mine.clone() else {
            return;
        };
        let record = Record {
            service: self.settings.service.clone(),
            pid: self.settings.pid,
            heartbeat_ms: unix_ms(SystemTime::now()),
            instances,
        };
        let file = self.file.clone();
        let done = tokio::task::spawn_blocking(move || write_record(&file, &record)).await;
        let error = match done {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(format!("writing {}: {e}", self.file.display())),
        };
        if error.is_some() && error != self.write_error {
            warn!("l5 registry: {}", error.as_deref().unwrap_or_default());
        }
        self.write_error = error;
    }

    /// Removes this service's file (deregistration).
    async fn remove(&mut self) {
        let file = self.file.clone();
        let done = tokio::task::spawn_blocking(move || std::fs::remove_file(&file)).await;
        match done {
            Ok(Ok(())) => info!("l5 registry: removed {}", self.file.display()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Ok(Err(e)) => warn!("l5 registry: removing {}: {e}", self.file.display()),
            Err(e) => warn!("l5 registry: removing {}: {e}", self.file.display()),
        }
    }

    /// Lists the directory and publishes what changed.
    async fn scan(&mut self, out: &watch::Sender<Arc<Discovered>>) {
        let (dir, ttl) = (self.settings.dir.clone(), self.settings.ttl);
        let now = SystemTime::now();
        let done = tokio::task::spawn_blocking(move || scan_dir(&dir, ttl, now)).await;
        let found = match done {
            Ok(Ok(found)) => {
                self.scan_error = None;
                Some(found)
            }
            Ok(Err(e)) => {
                self.fail_scan(Some(e));
                None
            }
            Err(e) => {
                self.fail_scan(Some(format!(
                    "listing {}: {e}",
                    self.settings.dir.display()
                )));
                None
            }
        };
        if let Some(found) = &found {
            self.log_scan(found);
        }
        let error = self.write_error.clone().or_else(|| self.scan_error.clone());
        out.send_if_modified(|current| {
            let instances = match &found {
                Some(found) => found.instances.clone(),
                None => current.instances.clone(),
            };
            let changed = current.instances != instances || current.error != error;
            *current = Arc::new(Discovered {
                instances,
                at: if found.is_some() {
                    Some(now)
                } else {
                    current.at
                },
                error: error.clone(),
            });
            changed
        });
    }

    fn fail_scan(&mut self, error: Option<String>) {
        if error.is_some() && error != self.scan_error {
            warn!("l5 registry: {}", error.as_deref().unwrap_or_default());
        }
        self.scan_error = error;
    }

    fn log_scan(&mut self, found: &Scan) {
        for name in &found.removed {
            info!(
                "l5 registry: removed stale {}",
                self.settings.dir.join(name).display()
            );
        }
        let names: BTreeSet<String> = found.malformed.iter().map(|(n, _)| n.clone()).collect();
        for (name, why) in &found.malformed {
            if !self.malformed.contains(name) {
                warn!(
                    "l5 registry: skipping {}: {why}",
                    self.settings.dir.join(name).display()
                );
            }
        }
        self.malformed = names;
        if found.truncated {
            warn!(
                "l5 registry: {} holds more than {MAX_INSTANCES} instances or {} files; the rest is ignored",
                self.settings.dir.display(),
                defaults::L5_MAX_REGISTRY_FILES
            );
        }
    }
}

/// Writes `record` to `file` through a temporary file and a rename, so a
/// reader sees the old file or the new one, never a part. The temporary
/// file, `.<name>.<pid>-<nanos>-<counter>.tmp`, is created anew
/// (`O_CREAT | O_EXCL | O_NOFOLLOW`, mode
/// [`defaults::L5_RECORD_FILE_MODE`]): a file or link someone placed at a
/// guessed name is never followed nor overwritten. A directory that does
/// not exist is created with [`defaults::L5_REGISTRY_DIR_MODE`]; one that
/// [`spp_config::l5::registry_dir_refusal`] refuses is an error.
pub fn write_record(file: &Path, record: &Record) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = file.parent().unwrap_or(Path::new("."));
    create_dir(dir)?;
    check_dir(dir)?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = serde_json::to_vec(record).map_err(|e| format!("encoding {name}: {e}"))?;
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{name}.{}-{nanos:08x}-{n}{TMP_SUFFIX}",
        std::process::id()
    ));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .and_then(|mut f| {
            // Readable by every spp on the machine whatever the umask.
            f.set_permissions(std::fs::Permissions::from_mode(
                defaults::L5_RECORD_FILE_MODE,
            ))?;
            f.write_all(&text)
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("writing {}: {e}", tmp.display()));
    }
    std::fs::rename(&tmp, file).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("renaming {} to {}: {e}", tmp.display(), file.display())
    })
}

/// Creates the registry directory if it is missing, sticky and writable
/// by every user ([`defaults::L5_REGISTRY_DIR_MODE`], like /tmp), so
/// several users' services can register in it.
fn create_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    std::fs::set_permissions(
        dir,
        std::fs::Permissions::from_mode(defaults::L5_REGISTRY_DIR_MODE),
    )
    .map_err(|e| format!("setting the mode of {}: {e}", dir.display()))
}

/// Refuses `dir` when others could replace or remove registrations in it
/// (writable by group or others without the sticky bit: an error naming
/// it); warns once per process when it is owned by another user (not
/// root), who could.
fn check_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    static WARNED: AtomicBool = AtomicBool::new(false);
    let Ok(meta) = std::fs::metadata(dir) else {
        return Ok(());
    };
    if let Some(why) = spp_config::l5::registry_dir_refusal(meta.mode()) {
        return Err(format!("refusing {}: it {why}", dir.display()));
    }
    if let Some(why) = dir_hazard(meta.mode(), meta.uid(), nix::unistd::geteuid().as_raw()) {
        if !WARNED.swap(true, Ordering::Relaxed) {
            warn!(
                "l5 registry: {} {why}; that user could replace or remove registrations",
                dir.display()
            );
        }
    }
    Ok(())
}

/// Why a registry directory of `mode` owned by `owner` is unsafe for user
/// `me`, if it is (the refused modes first, then another owner).
fn dir_hazard(mode: u32, owner: u32, me: u32) -> Option<String> {
    if let Some(why) = spp_config::l5::registry_dir_refusal(mode) {
        return Some(why);
    }
    if owner != me && owner != 0 {
        return Some(format!("is owned by uid {owner}"));
    }
    None
}

/// What one listing found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Every live instance, sorted, each (sid, address) once.
    pub instances: Vec<Instance>,
    /// Files deleted: their writer is gone.
    pub removed: Vec<String>,
    /// Files left out (heartbeat older than the ttl) but kept: their
    /// writer's pid is alive (or cannot be told dead).
    pub stale: Vec<String>,
    /// Files skipped, with why.
    pub malformed: Vec<(String, String)>,
    /// Files or instances were left out (over the limits).
    pub truncated: bool,
}

/// Lists `dir` at `now`: reads every registration, deletes the ones of
/// dead writers, leaves out the ones whose heartbeat is older than `ttl`,
/// skips the malformed ones.
pub fn scan_dir(dir: &Path, ttl: Duration, now: SystemTime) -> Result<Scan, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // Nobody registered yet.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Scan::default()),
        Err(e) => return Err(format!("listing {}: {e}", dir.display())),
    };
    check_dir(dir)?;
    let mut scan = Scan::default();
    let mut listening = None;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("listing {}: {e}", dir.display()))?;
        if names.len() == defaults::L5_MAX_REGISTRY_FILES {
            scan.truncated = true;
            break;
        }
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    let now_ms = unix_ms(now);
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    for name in names {
        let path = dir.join(&name);
        if name.starts_with('.') {
            if name.ends_with(TMP_SUFFIX)
                && older_than(&path, ttl, now)
                && tmp_writer(&name).is_none_or(pid_gone)
            {
                remove(&path, &name, &mut scan.removed);
            }
            continue;
        }
        if !name.ends_with(SUFFIX) {
            continue;
        }
        let (record, owner) = match read_record(&path) {
            Ok(read) => read,
            Err(why) => {
                scan.malformed.push((name, why));
                continue;
            }
        };
        // Only a dead writer's file is deleted. A live one with an old
        // heartbeat (hung, or a clock that jumped) is left out of
        // discovery but kept: its owner may be renaming a fresh one in.
        if pid_gone(record.pid) {
            if may_remove(owner) {
                remove(&path, &name, &mut scan.removed);
            } else {
                scan.stale.push(name);
            }
            continue;
        }
        if let Err(why) = trusted(&record, owner, now_ms) {
            scan.malformed.push((name, why));
            continue;
        }
        if let Err(why) = listens_where_it_registers(&record, owner, &mut listening) {
            scan.malformed.push((name, why));
            continue;
        }
        if now_ms.saturating_sub(record.heartbeat_ms) > ttl_ms {
            scan.stale.push(name);
            continue;
        }
        for instance in record.instances {
            if scan.instances.len() == MAX_INSTANCES {
                scan.truncated = true;
                break;
            }
            scan.instances.push(instance);
        }
    }
    scan.instances.sort_by_key(|i| (i.sid, i.addr));
    scan.instances.dedup_by_key(|i| (i.sid, i.addr));
    Ok(scan)
}

/// Whether a registration file owned by `owner` is ours to delete (the
/// sticky bit lets only its owner, or root, do it).
fn may_remove(owner: u32) -> bool {
    let me = nix::unistd::geteuid().as_raw();
    me == 0 || me == owner
}

/// The trust rules a well-formed registration must pass (see
/// `docs/ARCHITECTURE.md`, "Who the embedded registry trusts"): the file's
/// owner is the user its controller `pid` runs as, so nobody can register
/// in another user's name; its heartbeat is not further ahead of `now_ms`
/// than [`defaults::L5_MAX_CLOCK_SKEW`] (a far-future heartbeat would keep
/// it alive forever); every weight is at most
/// [`defaults::L5_MAX_REGISTRY_WEIGHT`].
pub fn trusted(record: &Record, owner: u32, now_ms: u64) -> Result<(), String> {
    match process_uid(record.pid) {
        Some(uid) if uid == owner => {}
        Some(uid) => {
            return Err(format!(
                "the file is owned by uid {owner}, but pid {} runs as uid {uid}",
                record.pid
            ))
        }
        None => return Err(format!("cannot tell who pid {} runs as", record.pid)),
    }
    let skew = u64::try_from(defaults::L5_MAX_CLOCK_SKEW.as_millis()).unwrap_or(u64::MAX);
    if record.heartbeat_ms > now_ms.saturating_add(skew) {
        return Err(format!(
            "heartbeat {} ms ahead of this clock (more than {:?})",
            record.heartbeat_ms - now_ms,
            defaults::L5_MAX_CLOCK_SKEW
        ));
    }
    if let Some(heavy) = record
        .instances
        .iter()
        .find(|i| i.weight > defaults::L5_MAX_REGISTRY_WEIGHT)
    {
        return Err(format!(
            "instance {} {} weight {} is more than {}",
            heavy.sid,
            heavy.addr,
            heavy.weight,
            defaults::L5_MAX_REGISTRY_WEIGHT
        ));
    }
    Ok(())
}

/// Another user's registration names only addresses that user listens on
/// (TCP listening or UDP bound, [`Listening`]): a local user cannot point
/// a sid at someone else's address. Registrations by this process's own
/// user or by root are taken as they are. `listening` is read at the first
/// foreign registration of a scan.
fn listens_where_it_registers(
    record: &Record,
    owner: u32,
    listening: &mut Option<Listening>,
) -> Result<(), String> {
    if owner == 0 || owner == nix::unistd::geteuid().as_raw() {
        return Ok(());
    }
    let listening = listening.get_or_insert_with(Listening::read);
    match record
        .instances
        .iter()
        .find(|i| !listening.held_by(i.addr, owner))
    {
        Some(foreign) => Err(format!(
            "instance {} {}: uid {owner} does not listen on that address",
            foreign.sid, foreign.addr
        )),
        None => Ok(()),
    }
}

/// The effective uid of process `pid` (its `/proc/<pid>/status` `Uid:`
/// line, readable by every user), `None` if it cannot be read.
fn process_uid(pid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Reads and checks one registration (size, shape, pid, instances); with
/// its file's owner. The
/// file is opened with `O_NOFOLLOW | O_NONBLOCK` and checked after opening
/// (`fstat`): a link, FIFO or device swapped in is skipped, never followed
/// nor waited on.
fn read_record(path: &Path) -> Result<(Record, u32), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let max = defaults::L5_MAX_REGISTRY_FILE_BYTES;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    let owner = std::os::unix::fs::MetadataExt::uid(&meta);
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > max {
        return Err(format!("{} bytes, more than {max}", meta.len()));
    }
    let mut text = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > max {
        return Err(format!("more than {max} bytes"));
    }
    let record: Record = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    if record.pid == 0 || i32::try_from(record.pid).is_err() {
        return Err(format!("pid {} is not a process id", record.pid));
    }
    if record.instances.len() > MAX_INSTANCES {
        return Err(format!(
            "{} instances, more than {MAX_INSTANCES}",
            record.instances.len()
        ));
    }
    if let Some(bad) = record.instances.iter().find(|i| {
        !(MIN_WEIGHT..=MAX_WEIGHT).contains(&i.weight)
            || i.addr.port() == 0
            || i.addr.ip().is_unspecified()
    }) {
        return Err(format!(
            "instance {} {} weight {} cannot be called",
            bad.sid, bad.addr, bad.weight
        ));
    }
    Ok((record, owner))
}

/// Whether process `pid` is certainly gone: `kill(pid, 0)` says ESRCH.
/// Anything else (it exists, EPERM: as another user, or another error)
/// counts as alive, so its file is never deleted.
fn pid_gone(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// The pid in a temporary file's name (`.<name>.<pid>-<nanos>-<n>.tmp`).
fn tmp_writer(name: &str) -> Option<u32> {
    let (_, tail) = name.strip_suffix(TMP_SUFFIX)?.rsplit_once('.')?;
    tail.split('-').next()?.parse().ok()
}

/// Whether `path` was last modified more than `ttl` before `now`.
fn older_than(path: &Path, ttl: Duration, now: SystemTime) -> bool {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|at| now.duration_since(at).is_ok_and(|age| age > ttl))
}

/// Deletes a stale file (someone else may have done so already).
fn remove(path: &Path, name: &str, removed: &mut Vec<String>) {
    match std::fs::remove_file(path) {
        Ok(()) => removed.push(name.to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!("l5 registry: removing stale {}: {e}", path.display()),
    }
}

#[cfg(test)]
#[path = "embedded_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "embedded_fuzz_tests.rs"]
mod fuzz_tests;
