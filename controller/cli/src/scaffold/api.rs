//! Where a generated Rust plugin gets `spp-plugin-api` from. spp is not on
//! crates.io, so the crate is a path dependency on the spp source tree:
//! the one given with `--api-path`, else the one this `spp` was built from
//! (recorded at build time) while it still exists; `--api-git URL` names a
//! git repository instead. With neither, the dependency is a placeholder
//! path with a comment saying what to write, never a crates.io version
//! (the name there is not ours).

use super::ScaffoldError;
use std::path::{Component, Path, PathBuf};

/// The package name of the plugin API.
pub const PACKAGE: &str = "spp-plugin-api";

/// The plugin API directory of the source tree this `spp` was built from.
pub const BUILT_FROM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../plugin-api");

/// Where the dependency comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A plugin API directory (canonical).
    Path(PathBuf),
    /// A git repository holding the spp workspace.
    Git(String),
    /// Not known: the user fills it in.
    Unknown,
}

/// The source for `--api-path`/`--api-git`, else the tree `spp` was built
/// from, else [`Source::Unknown`].
pub fn resolve(api_path: Option<&Path>, api_git: Option<&str>) -> Result<Source, ScaffoldError> {
    if let Some(dir) = api_path {
        return find(dir)
            .map(Source::Path)
            .ok_or_else(|| ScaffoldError::BadApiPath {
                path: dir.to_path_buf(),
            });
    }
    if let Some(url) = api_git {
        return Ok(Source::Git(url.to_string()));
    }
    Ok(find(Path::new(BUILT_FROM)).map_or(Source::Unknown, Source::Path))
}

/// The plugin API directory at `dir` or at `dir/plugin-api` (an spp
/// source tree), canonical.
fn find(dir: &Path) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.join("plugin-api")]
        .into_iter()
        .find(|candidate| {
            std::fs::read_to_string(candidate.join("Cargo.toml")).is_ok_and(|manifest| {
                manifest
                    .lines()
                    .any(|line| line.trim() == format!("name = \"{PACKAGE}\""))
            })
        })
        .and_then(|found| std::fs::canonicalize(found).ok())
}

/// The `[dependencies]` lines of the generated `Cargo.toml` for a project
/// at `project` (canonical), and a short note on where the API comes from.
pub fn dependency(source: &Source, project: &Path) -> (String, String) {
    match source {
        Source::Path(api) => {
            let path = relative_inside(project, api).unwrap_or_else(|| api.clone());
            let shown = path.display().to_string();
            (
                format!(
                    "# spp is not on crates.io: the plugin API comes from an spp source\n\
                     # tree (`spp new plugin --api-path DIR` picks another).\n\
                     {PACKAGE} = {{ path = {} }}",
                    toml_string(&shown)
                ),
                format!("by path, from {}", api.display()),
            )
        }
        Source::Git(url) => (
            format!(
                "# spp is not on crates.io: the plugin API comes from the spp\n\
                 # repository (add `tag = \"...\"` or `rev = \"...\"` to pin it).\n\
                 {PACKAGE} = {{ git = {} }}",
                toml_string(url)
            ),
            format!("from git, {url}"),
        ),
        Source::Unknown => (
            format!(
                "# spp is not on crates.io, and the spp source tree this `spp` was built\n\
                 # from is gone. Point this at an spp checkout of the same version:\n\
                 #   {PACKAGE} = {{ path = \"/path/to/spp/plugin-api\" }}\n\
                 # or at its git repository:\n\
                 #   {PACKAGE} = {{ git = \"https://example.org/spp.git\", tag = \"v{}\" }}\n\
                 # (`spp new plugin --api-path DIR` or `--api-git URL` writes it for you).\n\
                 {PACKAGE} = {{ path = \"SET-ME/spp/plugin-api\" }}",
                env!("CARGO_PKG_VERSION")
            ),
            "not found: set it in Cargo.toml".to_string(),
        ),
    }
}

/// `api` relative to `project` when both lie in the same spp source tree
/// (the API's parent directory), so the tree can move as a whole.
fn relative_inside(project: &Path, api: &Path) -> Option<PathBuf> {
    let tree = api.parent()?;
    let inside = project.strip_prefix(tree).ok()?;
    let depth = inside
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count();
    let mut path: PathBuf = std::iter::repeat_n("..", depth).collect();
    path.push(api.file_name()?);
    Some(path)
}

/// `text` as a TOML basic string (quoted, escaped).
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_spp_was_built_from_is_found() {
        let Source::Path(api) = resolve(None, None).unwrap() else {
            panic!("the build tree's plugin-api is not found");
        };
        assert!(api.join("include/spp_plugin.h").is_file());
        // The tree's root is accepted too.
        let root = api.parent().unwrap();
        assert_eq!(
            resolve(Some(root), None).unwrap(),
            Source::Path(api.clone())
        );
        assert!(matches!(
            resolve(Some(Path::new("/nonexistent")), None),
            Err(ScaffoldError::BadApiPath { .. })
        ));
    }

    #[test]
    fn inside_the_tree_the_path_is_relative() {
        let api = Path::new("/src/spp/plugin-api");
        assert_eq!(
            relative_inside(Path::new("/src/spp/examples/mine"), api),
            Some(PathBuf::from("../../plugin-api"))
        );
        assert_eq!(relative_inside(Path::new("/home/me/mine"), api), None);
        let (dep, _) = dependency(&Source::Path(api.to_path_buf()), Path::new("/home/me/mine"));
        assert!(
            dep.ends_with("spp-plugin-api = { path = \"/src/spp/plugin-api\" }"),
            "{dep}"
        );
        let (dep, _) = dependency(&Source::Unknown, Path::new("/x"));
        assert!(dep.contains("not on crates.io"), "{dep}");
        let (dep, _) = dependency(&Source::Git("https://h/spp.git".into()), Path::new("/x"));
        assert!(dep.ends_with("{ git = \"https://h/spp.git\" }"), "{dep}");
    }
}
