//! Privileges and file modes: who the children run as
//! (`service.user` / `service.group`), and what the controller creates
//! (nothing world-readable).
//!
//! The controller binds the listeners, creates the shared memory, the run
//! dir, the pid file and the control socket, then spawns every child —
//! proxy, workers, `spp __check-plugin` — through [`drop_to`] in the fork
//! (supplementary groups, gid, uid, in that order, before exec): the data
//! plane and every plugin run as the service user. The controller itself
//! keeps its credentials: running as the service user it could be ptraced
//! or signalled by a compromised plugin of that uid, and it needs its
//! rights to drop each new child, chown the child logs and rotate them;
//! what it runs is the control socket (0600, peer credentials checked) and
//! the registry, never a plugin or a client's bytes.
//!
//! Modes: the controller sets its umask to [`defaults::UMASK`] at start
//! (children inherit it), so files are 0640 and directories 0750;
//! [`private_dir`] also fixes the mode of a directory that already
//! existed, and [`open_log`] that of a log file. The log dir belongs to
//! the service user (it reopens its own logs after a rotation, creating
//! them); the controller opens its own log there with `O_NOFOLLOW`, so a
//! link planted by that user is never written through.

use spp_config::{defaults, RunAs};
use std::fs::File;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Sets the process umask to [`defaults::UMASK`] (files 0640, dirs 0750).
pub fn private_umask() {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(defaults::UMASK));
}

/// Creates `dir` (and its parents) and sets its mode to
/// [`defaults::PRIVATE_DIR_MODE`]; with `owner`, chowns it to that user
/// and group.
pub fn private_dir(dir: &Path, owner: Option<&RunAs>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(
        dir,
        std::fs::Permissions::from_mode(defaults::PRIVATE_DIR_MODE),
    )?;
    if let Some(who) = owner {
        std::os::unix::fs::chown(dir, Some(who.uid), Some(who.gid))?;
    }
    Ok(())
}

/// Opens the log file `path` for appending, creating it with
/// [`defaults::PRIVATE_FILE_MODE`], never through a symbolic link
/// (`O_NOFOLLOW`); an existing file gets that mode too and, with `owner`,
/// is chowned to that user and group (who reopens it after a rotation).
pub fn open_log(path: &Path, owner: Option<&RunAs>) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(defaults::PRIVATE_FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(defaults::PRIVATE_FILE_MODE))?;
    if let Some(who) = owner {
        std::os::unix::fs::fchown(&file, Some(who.uid), Some(who.gid))?;
    }
    Ok(file)
}

/// Whether children of this process can run as `who`: as root, or as
/// that very user and group already.
pub fn can_drop_to(who: &RunAs) -> Result<(), String> {
    let (uid, gid) = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    if uid == 0 || (uid == who.uid && gid == who.gid) {
        return Ok(());
    }
    Err(format!(
        "children cannot run as {} ({}:{}) when spp runs as uid {uid}: start it as root or drop the key",
        who.user, who.uid, who.gid
    ))
}

/// Uid and gid a child drops to, copied out of the config before the fork
/// so the child allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The user.
    pub uid: u32,
    /// Its group (the only group the child keeps).
    pub gid: u32,
}

impl From<&RunAs> for Credentials {
    fn from(who: &RunAs) -> Self {
        Credentials {
            uid: who.uid,
            gid: who.gid,
        }
    }
}

/// Drops this (forked) process to `who`: supplementary groups to just
/// its gid, then the gid, then the uid (real, effective and saved), and
/// checks the uid cannot be regained. Async-signal-safe and
/// allocation-free: meant for `pre_exec`. Note that a change of
/// credentials clears `PR_SET_PDEATHSIG`: arm it after this.
pub fn drop_to(who: Credentials) -> std::io::Result<()> {
    use nix::unistd::{getegid, geteuid, setgid, setgroups, setuid, Gid, Uid};
    if geteuid().as_raw() == who.uid && getegid().as_raw() == who.gid {
        // Already that user (a controller not started as root).
        return Ok(());
    }
    let gid = Gid::from_raw(who.gid);
    setgroups(&[gid])?;
    setgid(gid)?;
    setuid(Uid::from_raw(who.uid))?;
    // Root kept by a failed drop would be silent; refuse to exec then.
    if who.uid != 0 && setuid(Uid::from_raw(0)).is_ok() {
        return Err(std::io::Error::from_raw_os_error(libc::EPERM));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn only_root_or_that_user_can_start_children_as_a_user() {
        let me = nix::unistd::geteuid().as_raw();
        let my_gid = nix::unistd::getegid().as_raw();
        let who = |uid, gid| RunAs {
            user: "x".into(),
            uid,
            group: "x".into(),
            gid,
        };
        assert!(can_drop_to(&who(me, my_gid)).is_ok());
        let other = can_drop_to(&who(me.wrapping_add(1), my_gid));
        assert_eq!(other.is_ok(), me == 0, "{other:?}");
    }

    #[test]
    fn logs_and_dirs_are_not_world_readable() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/log");
        private_dir(&dir, None).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o750);
        let log = dir.join("x.log");
        std::fs::write(&log, "old\n").unwrap();
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
        drop(open_log(&log, None).unwrap());
        assert_eq!(std::fs::metadata(&log).unwrap().mode() & 0o7777, 0o640);
        // A link planted at the log's name is not followed.
        let link = dir.join("l.log");
        std::os::unix::fs::symlink(&log, &link).unwrap();
        assert!(open_log(&link, None).is_err());
    }
}
