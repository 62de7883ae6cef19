//! The standard server package (issue 6): `spp package` builds a tar.gz of
//! the binaries, plugins, config, a systemd unit and `MANIFEST.json`;
//! `spp install` verifies it before anything reaches the prefix and
//! upgrades in place; `spp checksum` verifies an install; `spp uninstall`
//! removes it.
//!
//! Archive layout (and, under the prefix, the install's):
//!
//! ```text
//! MANIFEST.json          name, version, build info, every file's sha256 and mode
//! spp.service            the systemd unit (`@PREFIX@` replaced at install)
//! bin/spp bin/spp-proxy bin/spp-worker
//! plugins/NAME ...       every plugin the config names, once
//! conf/spp.toml          plugin paths ../plugins/NAME, run_dir ../run, log_dir ../log
//! ```

pub mod build;
pub mod checksum;
pub mod install;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Component, Path};

/// The manifest's file name, at the archive root and under the prefix.
pub const MANIFEST: &str = "MANIFEST.json";
/// The systemd unit's file name.
pub const UNIT: &str = "spp.service";
/// The config inside a package.
pub const CONFIG: &str = "conf/spp.toml";
/// Replaced by the install prefix in [`UNIT`].
pub const PREFIX_MARK: &str = "@PREFIX@";
/// The manifest format written by this version.
pub const FORMAT: u32 = 1;

/// `MANIFEST.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: u32,
    /// The service name (`[service] name`).
    pub name: String,
    /// The package version (`--version`, default spp's own).
    pub version: String,
    /// Who built it and when.
    pub build: BuildInfo,
    /// Every file of the package but the manifest, sorted by path.
    pub files: Vec<FileEntry>,
}

/// Build information.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BuildInfo {
    /// The version of the `spp` that built the package.
    pub spp_version: String,
    /// Seconds since the Unix epoch.
    pub built_at: u64,
    /// The host that built it (`uname -n`), if known.
    pub host: Option<String>,
}

/// One file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Relative path, `/`-separated.
    pub path: String,
    /// Lower-case hex sha256 of the content.
    pub sha256: String,
    /// Permission bits, octal text such as `"0755"`.
    pub mode: String,
}

impl Manifest {
    /// The entry for `path`.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
    }

    /// Reads and checks a manifest file.
    pub fn read(path: &Path) -> anyhow::Result<Manifest> {
        let text =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let m: Manifest = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a valid spp manifest", path.display()))?;
        anyhow::ensure!(
            m.format == FORMAT,
            "{}: manifest format {} is not supported (this spp reads {FORMAT})",
            path.display(),
            m.format
        );
        for f in &m.files {
            safe_relative(&f.path)
                .with_context(|| format!("{}: file entry {:?}", path.display(), f.path))?;
            parse_mode(&f.mode)
                .with_context(|| format!("{}: file entry {:?}", path.display(), f.path))?;
        }
        Ok(m)
    }
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex sha256 of a file's content.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// `"0755"` for 0o755.
pub fn format_mode(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

/// 0o755 for `"0755"`.
pub fn parse_mode(text: &str) -> anyhow::Result<u32> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .with_context(|| format!("mode {text:?} is not an octal permission like \"0755\""))
}

/// Checks that `path` is relative, `/`-separated and has only normal
/// components (no `..`, no root, no `.`).
pub fn safe_relative(path: &str) -> anyhow::Result<()> {
    let p = Path::new(path);
    let ok = !path.is_empty()
        && !path.contains('\\')
        && p.components().all(|c| matches!(c, Component::Normal(_)))
        && !path
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    anyhow::ensure!(
        ok,
        "path {path:?} is not a plain relative path inside the package"
    );
    Ok(())
}

/// The systemd unit for a prefix (`@PREFIX@` in the package's copy). It
/// has no `User=`: the controller starts as root to bind the listeners
/// and create the run dir, and the proxy, the workers and the plugin
/// checks drop to `service.user` / `service.group` of `conf/spp.toml`
/// (`spp_daemon::privileges`). `UMask=0027` keeps what it creates private.
pub fn unit_text(prefix: &str, name: &str) -> String {
    format!(
        "[Unit]
Description=spp service {name}
After=network.target

[Service]
Type=notify
NotifyAccess=main
ExecStartPre={prefix}/bin/spp check --prefix {prefix}
ExecStart={prefix}/bin/spp start --foreground --prefix {prefix}
ExecReload={prefix}/bin/spp reload --prefix {prefix}
ExecStop={prefix}/bin/spp stop --prefix {prefix}
Restart=on-failure
TimeoutStopSec=60
# The controller runs as root (it binds the listeners); the proxy, the
# workers and the plugin checks run as service.user / service.group of
# conf/spp.toml. Set them there, not with User= here.
UMask=0027

[Install]
WantedBy=multi-user.target
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_modes() {
        assert!(safe_relative("bin/spp").is_ok());
        for bad in [
            "../x",
            "/etc/passwd",
            "bin/../../x",
            "a//b",
            "./a",
            "",
            "a/.",
        ] {
            assert!(safe_relative(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_mode("0755").unwrap(), 0o755);
        assert_eq!(format_mode(0o100644), "0644");
        assert!(parse_mode("9").is_err());
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(unit_text(PREFIX_MARK, "x")
            .contains("ExecStart=@PREFIX@/bin/spp start --foreground --prefix @PREFIX@"));
    }
}
