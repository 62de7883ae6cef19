//! `spp package -c FILE -o OUT.tar.gz [--version V]`.

use super::{format_mode, sha256_hex, unit_text, BuildInfo, FileEntry, Manifest, FORMAT};
use anyhow::Context;
use spp_config::environment::Mode;
use spp_daemon::plugin_check;
use spp_daemon::spawn::Binaries;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What `spp package` made.
#[derive(Debug)]
pub struct Built {
    /// The manifest written into the archive.
    pub manifest: Manifest,
    /// The archive.
    pub out: PathBuf,
}

/// Builds the package of the service `config` describes into `out`. The
/// config is validated (and its plugins loaded) first; nothing is written
/// when it is invalid.
pub fn package(config: &Path, out: &Path, version: Option<&str>) -> anyhow::Result<Built> {
    let cfg = spp_config::load(config)?;
    plugin_check::environment(&cfg, Mode::Inspect)?;
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("cannot read {}", config.display()))?;

    // Plugins, once each by their real path, under a unique file name.
    let mut plugins: BTreeMap<PathBuf, String> = BTreeMap::new();
    let mut names: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut name_of = |path: &Path| -> anyhow::Result<String> {
        let real =
            std::fs::canonicalize(path).with_context(|| format!("plugin {}", path.display()))?;
        if let Some(name) = plugins.get(&real) {
            return Ok(name.clone());
        }
        let base = real
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("plugin {} has no usable file name", real.display()))?
            .to_string();
        let mut name = base.clone();
        let mut n = 2;
        while names.contains_key(&name) {
            name = format!("{n}-{base}");
            n += 1;
        }
        names.insert(name.clone(), real.clone());
        plugins.insert(real, name.clone());
        Ok(name)
    };
    let proxy_plugin = name_of(&cfg.proxy.plugin)?;
    let group_plugins = cfg
        .groups
        .iter()
        .map(|g| name_of(&g.plugin))
        .collect::<anyhow::Result<Vec<_>>>()?;

    // The config as written, with its paths made relative to the package.
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("{} is not TOML", config.display()))?;
    set_str(&mut doc["service"]["run_dir"], "../run");
    set_str(&mut doc["service"]["log_dir"], "../log");
    set_str(
        &mut doc["proxy"]["plugin"],
        &format!("../plugins/{proxy_plugin}"),
    );
    let groups = doc
        .get_mut("group")
        .and_then(|g| g.as_array_of_tables_mut())
        .context("the config has no [[group]] tables")?;
    anyhow::ensure!(
        groups.len() == group_plugins.len(),
        "{}: [[group]] tables and validated groups differ",
        config.display()
    );
    for (table, name) in groups.iter_mut().zip(&group_plugins) {
        set_str(&mut table["plugin"], &format!("../plugins/{name}"));
    }
    let conf = doc.to_string().into_bytes();

    // Every file: (path in the package, content, mode).
    let bins = Binaries::locate()?;
    let spp = std::env::current_exe().context("cannot find the running spp")?;
    let mut files: Vec<(String, Vec<u8>, u32)> = Vec::new();
    let read = |path: &Path| -> anyhow::Result<(Vec<u8>, u32)> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o7777;
        Ok((bytes, mode))
    };
    for (name, path) in [
        ("spp", &spp),
        (spp_config::defaults::PROXY_BIN, &bins.proxy),
        (spp_config::defaults::WORKER_BIN, &bins.worker),
    ] {
        let (bytes, _) = read(path)?;
        files.push((format!("bin/{name}"), bytes, 0o755));
    }
    for (name, real) in &names {
        let (bytes, mode) = read(real)?;
        files.push((format!("plugins/{name}"), bytes, mode | 0o444));
    }
    files.push((super::CONFIG.to_string(), conf, 0o644));
    files.push((
        super::UNIT.to_string(),
        unit_text(super::PREFIX_MARK, &cfg.service.name).into_bytes(),
        0o644,
    ));
    files.sort_by(|a, b| a.0.cmp(&b.0));

    let built_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let manifest = Manifest {
        format: FORMAT,
        name: cfg.service.name.clone(),
        version: version.unwrap_or(env!("CARGO_PKG_VERSION")).to_string(),
        build: BuildInfo {
            spp_version: env!("CARGO_PKG_VERSION").to_string(),
            built_at,
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty()),
        },
        files: files
            .iter()
            .map(|(path, bytes, mode)| FileEntry {
                path: path.clone(),
                sha256: sha256_hex(bytes),
                mode: format_mode(*mode),
            })
            .collect(),
    };
    let manifest_json = serde_json::to_vec_pretty(&manifest)?;

    // Written next to OUT, then renamed: a failed build leaves no archive.
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    {
        let gz = flate2::write::GzEncoder::new(tmp.as_file(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        let mut add = |path: &str, bytes: &[u8], mode: u32| -> std::io::Result<()> {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(mode);
            header.set_mtime(built_at);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_cksum();
            tar.append_data(&mut header, path, bytes)
        };
        add(super::MANIFEST, &manifest_json, 0o644)?;
        for (path, bytes, mode) in &files {
            add(path, bytes, *mode)?;
        }
        tar.into_inner()?.finish()?;
    }
    tmp.persist(out)
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(Built {
        manifest,
        out: out.to_path_buf(),
    })
}

/// Sets a string value, keeping the comments and spacing around the old one.
fn set_str(item: &mut toml_edit::Item, text: &str) {
    let mut value = toml_edit::Value::from(text);
    if let Some(old) = item.as_value() {
        *value.decor_mut() = old.decor().clone();
    }
    *item = toml_edit::Item::Value(value);
}
