//! `spp install PKG --prefix DIR` and `spp uninstall --prefix DIR`.
//!
//! Install unpacks into a temporary directory next to DIR (same file
//! system), verifies every file against the manifest there, and only then
//! moves the files into DIR with renames: a damaged package leaves DIR as
//! it was. Over an existing install it is an upgrade; a running service is
//! reloaded by the installed `spp` when only plugins, config or manifest
//! changed (and the proxy's plugin did not), restarted otherwise.

use super::{parse_mode, safe_relative, sha256_file, unit_text, Manifest, CONFIG, MANIFEST, UNIT};
use anyhow::{bail, Context};
use spp_config::locate;
use spp_daemon::pidfile::{self, Holder};
use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What to do with an existing conf/spp.toml.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigPolicy {
    /// Keep it when the operator changed it (its hash is not the old
    /// manifest's).
    KeepIfChanged,
    /// Always keep an existing one.
    Keep,
    /// Always install the package's.
    Replace,
}

/// What the install did to a running service.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Nothing was running.
    NotRunning,
    /// `spp reload` replaced the workers.
    Reloaded,
    /// `spp restart`.
    Restarted,
}

/// The outcome of an install.
#[derive(Debug)]
pub struct Installed {
    /// The new manifest.
    pub manifest: Manifest,
    /// The version replaced, on an upgrade.
    pub upgraded_from: Option<String>,
    /// Whether an operator's conf/spp.toml was kept.
    pub kept_config: bool,
    /// What happened to the running service.
    pub applied: Applied,
}

/// An absolute prefix (DIR need not exist).
pub fn absolute(prefix: &Path) -> anyhow::Result<PathBuf> {
    let abs =
        std::path::absolute(prefix).with_context(|| format!("prefix {}", prefix.display()))?;
    // Resolve `..` lexically so the unit and the checksum see one spelling.
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Unpacks `pkg` into `into` (empty), refusing anything but plain files
/// and directories at safe relative paths; returns the files unpacked.
fn unpack(pkg: &Path, into: &Path) -> anyhow::Result<BTreeSet<String>> {
    let file =
        std::fs::File::open(pkg).with_context(|| format!("cannot open {}", pkg.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut files = BTreeSet::new();
    let entries = archive
        .entries()
        .with_context(|| format!("{} is not a tar.gz archive", pkg.display()))?;
    for entry in entries {
        let mut entry = entry.with_context(|| format!("{}: damaged archive", pkg.display()))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = raw.trim_end_matches('/').to_string();
        safe_relative(&name).with_context(|| format!("{}: refused entry", pkg.display()))?;
        let dest = into.join(&name);
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(&dest)?;
            }
            tar::EntryType::Regular => {
                anyhow::ensure!(
                    files.insert(name.clone()),
                    "{}: {name} appears twice in the archive",
                    pkg.display()
                );
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let mode = entry.header().mode()? & 0o7777;
                let mut bytes = Vec::new();
                entry
                    .read_to_end(&mut bytes)
                    .with_context(|| format!("{}: {name}: damaged archive", pkg.display()))?;
                std::fs::write(&dest, &bytes)?;
                std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))?;
            }
            other => bail!(
                "{}: {name} is a {other:?} entry; a package holds only files and directories",
                pkg.display()
            ),
        }
    }
    Ok(files)
}

/// Checks the unpacked files against the manifest found among them.
fn verify_unpacked(pkg: &Path, dir: &Path, files: &BTreeSet<String>) -> anyhow::Result<Manifest> {
    anyhow::ensure!(
        files.contains(MANIFEST),
        "{}: damaged package: {MANIFEST} is missing",
        pkg.display()
    );
    let manifest = Manifest::read(&dir.join(MANIFEST))
        .with_context(|| format!("{}: damaged package", pkg.display()))?;
    for entry in &manifest.files {
        let ok_place = entry.path == CONFIG
            || entry.path == UNIT
            || entry.path.starts_with("bin/")
            || entry.path.starts_with("plugins/");
        anyhow::ensure!(
            ok_place,
            "{}: damaged package: {} is outside bin/, plugins/, {CONFIG}, {UNIT}",
            pkg.display(),
            entry.path
        );
        anyhow::ensure!(
            files.contains(&entry.path),
            "{}: damaged package: {} is in the manifest but not in the archive",
            pkg.display(),
            entry.path
        );
        let path = dir.join(&entry.path);
        let hash = sha256_file(&path)?;
        anyhow::ensure!(
            hash == entry.sha256,
            "{}: damaged package: {} has sha256 {hash}, the manifest says {}",
            pkg.display(),
            entry.path,
            entry.sha256
        );
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o7777;
        anyhow::ensure!(
            mode == parse_mode(&entry.mode)?,
            "{}: damaged package: {} has mode {:04o}, the manifest says {}",
            pkg.display(),
            entry.path,
            mode,
            entry.mode
        );
    }
    for name in files {
        anyhow::ensure!(
            name == MANIFEST || manifest.file(name).is_some(),
            "{}: damaged package: {name} is not in the manifest",
            pkg.display()
        );
    }
    for needed in ["bin/spp", "bin/spp-proxy", "bin/spp-worker", CONFIG, UNIT] {
        anyhow::ensure!(
            manifest.file(needed).is_some(),
            "{}: not an spp package: {needed} is missing",
            pkg.display()
        );
    }
    Ok(manifest)
}

/// Whether the service of the install at `prefix` runs.
fn running(prefix: &Path) -> bool {
    let conf = prefix.join(CONFIG);
    match locate::locate(&conf) {
        Ok((at, _)) => matches!(pidfile::probe(&at.pid_file()), Holder::Held(_)),
        Err(_) => false,
    }
}

/// Runs the installed `spp ARGS --prefix DIR` (its own binaries).
fn installed_spp(prefix: &Path, args: &[&str]) -> anyhow::Result<bool> {
    let spp = prefix.join("bin/spp");
    let status = Command::new(&spp)
        .args(args)
        .arg("--prefix")
        .arg(prefix)
        .env_remove(spp_config::defaults::BIN_DIR_ENV)
        .status()
        .with_context(|| format!("cannot run {}", spp.display()))?;
    Ok(status.success())
}

/// Replaces `dest` (a directory, maybe absent) by `new` with renames; the
/// old one goes to `trash`.
fn swap_dir(new: &Path, dest: &Path, trash: &Path) -> anyhow::Result<()> {
    if dest.exists() {
        std::fs::rename(dest, trash)
            .with_context(|| format!("cannot move {} aside", dest.display()))?;
    }
    std::fs::rename(new, dest).with_context(|| format!("cannot move {} into place", dest.display()))
}

/// Installs (or upgrades to) the package `pkg` at `prefix`.
pub fn install(pkg: &Path, prefix: &Path, policy: ConfigPolicy) -> anyhow::Result<Installed> {
    let prefix = absolute(prefix)?;
    let parent = prefix
        .parent()
        .context("the prefix cannot be the root directory")?;
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let old_manifest_path = prefix.join(MANIFEST);
    let old = if old_manifest_path.exists() {
        Some(Manifest::read(&old_manifest_path)?)
    } else {
        for dir in ["bin", "plugins", "conf"] {
            anyhow::ensure!(
                !prefix.join(dir).exists(),
                "{} holds {dir}/ but no {MANIFEST}: not an spp install, refusing to install over it",
                prefix.display()
            );
        }
        None
    };

    // Unpack and verify next to the prefix: nothing reaches DIR before this
    // succeeds.
    let staging = tempfile::Builder::new()
        .prefix(".spp-install-")
        .tempdir_in(parent)
        .with_context(|| {
            format!(
                "cannot create a temporary directory in {}",
                parent.display()
            )
        })?;
    let stage = staging.path().join("new");
    std::fs::create_dir(&stage)?;
    let files = unpack(pkg, &stage)?;
    let manifest = verify_unpacked(pkg, &stage, &files)?;
    if let Some(old) = &old {
        anyhow::ensure!(
            old.name == manifest.name,
            "{} holds service {}, the package is service {}",
            prefix.display(),
            old.name,
            manifest.name
        );
    }

    // What changed, for the running service.
    let changed = |path: &str| match &old {
        None => true,
        Some(old) => old.file(path).map(|f| &f.sha256) != manifest.file(path).map(|f| &f.sha256),
    };
    let dir_changed = |dir: &str| {
        let in_dir = |m: &Manifest| -> Vec<(String, String)> {
            m.files
                .iter()
                .filter(|f| f.path.starts_with(&format!("{dir}/")))
                .map(|f| (f.path.clone(), format!("{}{}", f.sha256, f.mode)))
                .collect()
        };
        old.as_ref().is_none_or(|o| in_dir(o) != in_dir(&manifest))
    };
    let bin_changed = dir_changed("bin");
    let plugins_changed = dir_changed("plugins");

    let conf_dest = prefix.join(CONFIG);
    let kept_config = conf_dest.exists()
        && match policy {
            ConfigPolicy::Replace => false,
            ConfigPolicy::Keep => true,
            ConfigPolicy::KeepIfChanged => {
                let now = sha256_file(&conf_dest).ok();
                let was = old
                    .as_ref()
                    .and_then(|o| o.file(CONFIG))
                    .map(|f| f.sha256.clone());
                now.is_none() || now != was
            }
        };
    let was_running = old.is_some() && running(&prefix);

    // The proxy's plugin cannot be swapped by a reload.
    let proxy_plugin_changed = {
        let conf = if kept_config {
            conf_dest.clone()
        } else {
            stage.join(CONFIG)
        };
        let text = std::fs::read_to_string(&conf).unwrap_or_default();
        let plugin = text
            .parse::<toml_edit::DocumentMut>()
            .ok()
            .and_then(|d| d.get("proxy")?.get("plugin")?.as_str().map(str::to_string));
        match plugin.as_deref().and_then(|p| p.strip_prefix("../")) {
            Some(rel) => changed(rel),
            None => true,
        }
    };

    // Into place: directories by rename, single files by rename.
    std::fs::create_dir_all(&prefix)
        .with_context(|| format!("cannot create {}", prefix.display()))?;
    let trash = staging.path().join("old");
    std::fs::create_dir(&trash)?;
    for dir in ["log", "run", "conf"] {
        std::fs::create_dir_all(prefix.join(dir))?;
    }
    if bin_changed {
        swap_dir(&stage.join("bin"), &prefix.join("bin"), &trash.join("bin"))?;
    }
    if plugins_changed {
        swap_dir(
            &stage.join("plugins"),
            &prefix.join("plugins"),
            &trash.join("plugins"),
        )?;
    }
    if !kept_config {
        std::fs::rename(stage.join(CONFIG), &conf_dest)
            .with_context(|| format!("cannot write {}", conf_dest.display()))?;
    }
    let unit = stage.join(UNIT);
    std::fs::write(
        &unit,
        unit_text(&prefix.display().to_string(), &manifest.name),
    )?;
    std::fs::set_permissions(
        &unit,
        std::fs::Permissions::from_mode(parse_mode(
            manifest.file(UNIT).map_or("0644", |f| f.mode.as_str()),
        )?),
    )?;
    std::fs::rename(&unit, prefix.join(UNIT))?;
    // The manifest last: until it is in place, the old one describes DIR.
    std::fs::rename(stage.join(MANIFEST), &old_manifest_path)?;

    let applied = if !was_running {
        Applied::NotRunning
    } else if !bin_changed && !proxy_plugin_changed && installed_spp(&prefix, &["reload"])? {
        Applied::Reloaded
    } else {
        anyhow::ensure!(
            installed_spp(&prefix, &["restart"])?,
            "installed, but `spp restart --prefix {}` failed (see above)",
            prefix.display()
        );
        Applied::Restarted
    };
    Ok(Installed {
        upgraded_from: old.map(|o| o.version),
        manifest,
        kept_config,
        applied,
    })
}

/// What uninstall removed.
#[derive(Debug)]
pub struct Uninstalled {
    /// The controller stopped, if one ran.
    pub stopped: Option<u32>,
    /// Whether DIR itself is gone (`--purge` and nothing else was in it).
    pub prefix_removed: bool,
}

/// Stops the service of the install at `prefix` and removes its files
/// (log/ too with `purge`).
pub fn uninstall(prefix: &Path, purge: bool) -> anyhow::Result<Uninstalled> {
    let prefix = absolute(prefix)?;
    anyhow::ensure!(
        prefix.join(MANIFEST).is_file(),
        "{} is not an spp install ({MANIFEST} is missing)",
        prefix.display()
    );
    let mut stopped = None;
    if let Ok((at, _)) = locate::locate(&prefix.join(CONFIG)) {
        if let crate::lifecycle::Stopped::Stopped(pid) = crate::lifecycle::stop(&at)? {
            stopped = Some(pid);
        }
    }
    let mut dirs = vec!["bin", "plugins", "conf", "run"];
    if purge {
        dirs.push("log");
    }
    for dir in dirs {
        let path = prefix.join(dir);
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    for file in [UNIT, MANIFEST] {
        let path = prefix.join(file);
        if path.exists() {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    // Only an empty prefix goes: anything else in it is not ours.
    let prefix_removed = purge && std::fs::remove_dir(&prefix).is_ok();
    Ok(Uninstalled {
        stopped,
        prefix_removed,
    })
}
