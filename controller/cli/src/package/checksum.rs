//! `spp checksum --prefix DIR`: every installed file against
//! `DIR/MANIFEST.json`.

use super::{format_mode, sha256_file, sha256_hex, Manifest, CONFIG, MANIFEST, PREFIX_MARK, UNIT};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Content or mode differ; the text says how.
    Modified { path: String, why: String },
    /// In the manifest, not on disk.
    Missing { path: String },
    /// Under bin/ or plugins/, not in the manifest.
    Unexpected { path: String },
}

impl Finding {
    /// Whether it makes `spp checksum` fail: everything but a changed
    /// operator config.
    pub fn fails(&self) -> bool {
        !matches!(self, Finding::Modified { path, .. } if path == CONFIG)
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Modified { path, why } if path == CONFIG => {
                write!(f, "modified   {path} (operator config: {why})")
            }
            Finding::Modified { path, why } => write!(f, "modified   {path} ({why})"),
            Finding::Missing { path } => write!(f, "missing    {path}"),
            Finding::Unexpected { path } => write!(f, "unexpected {path}"),
        }
    }
}

/// Checks the install at `prefix`: the manifest and the findings.
pub fn verify(prefix: &Path) -> anyhow::Result<(Manifest, Vec<Finding>)> {
    let manifest = Manifest::read(&prefix.join(MANIFEST))?;
    let prefix_text = prefix.display().to_string();
    let mut findings = Vec::new();
    for entry in &manifest.files {
        let path = prefix.join(&entry.path);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => {
                findings.push(Finding::Modified {
                    path: entry.path.clone(),
                    why: "not a regular file".into(),
                });
                continue;
            }
            Err(_) => {
                findings.push(Finding::Missing {
                    path: entry.path.clone(),
                });
                continue;
            }
        };
        // The unit was written with the prefix in place of the mark.
        let hash = if entry.path == UNIT {
            std::fs::read_to_string(&path)
                .map(|t| sha256_hex(t.replace(&prefix_text, PREFIX_MARK).as_bytes()))
        } else {
            sha256_file(&path)
        };
        let mut why = Vec::new();
        match hash {
            Ok(h) if h == entry.sha256 => {}
            Ok(_) => why.push("content differs from the manifest's sha256".to_string()),
            Err(e) => why.push(format!("cannot read: {e}")),
        }
        let mode = format_mode(meta.permissions().mode());
        if mode != entry.mode {
            why.push(format!("mode {mode}, the manifest says {}", entry.mode));
        }
        if !why.is_empty() {
            findings.push(Finding::Modified {
                path: entry.path.clone(),
                why: why.join("; "),
            });
        }
    }
    for dir in ["bin", "plugins"] {
        let mut stack = vec![prefix.join(dir)];
        while let Some(d) = stack.pop() {
            let Ok(read) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in read.flatten() {
                let path = e.path();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(path);
                    continue;
                }
                let rel = path
                    .strip_prefix(prefix)
                    .map(|r| r.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if manifest.file(&rel).is_none() {
                    findings.push(Finding::Unexpected { path: rel });
                }
            }
        }
    }
    findings.sort_by_key(|f| match f {
        Finding::Modified { path, .. }
        | Finding::Missing { path }
        | Finding::Unexpected { path } => path.clone(),
    });
    Ok((manifest, findings))
}
