//! `spp new plugin NAME --lang rust|c [--dir DIR]`: writes a ready plugin
//! project into a new directory: for Rust a `cdylib` crate on
//! `spp-plugin-api` ([`api`] says where that comes from), for C a `.c`
//! file next to a copy of `spp_plugin.h` and a Makefile; both with a
//! length-prefixed echo showing every hook, an `spp.toml` that serves it on
//! a loopback port and a README with the commands that build and start it.
//! The files are templates ([`templates`]); the name rules are [`name`].
//! An existing directory is never written into.

pub mod api;
pub mod name;
pub mod templates;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The address the generated config listens on.
const LOOPBACK: &str = "127.0.0.1";

/// The language of the generated plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A Cargo crate (`cdylib`) implementing `spp_plugin_api::Plugin`.
    Rust,
    /// A C file with `spp_plugin.h` and a Makefile.
    C,
}

/// Why `spp new` wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// NAME breaks the rules of [`name::check`].
    #[error("{name:?} is not a usable plugin name: {why}")]
    BadName {
        /// The name given.
        name: String,
        /// The rule it breaks.
        why: String,
    },
    /// The project directory exists.
    #[error(
        "{} already exists: spp new only writes into a new directory (remove it or pick another --dir)",
        path.display()
    )]
    Exists {
        /// The directory.
        path: PathBuf,
    },
    /// `--api-path` holds no plugin API.
    #[error(
        "--api-path {}: no {} there (give an spp source tree or its plugin-api directory)",
        path.display(),
        api::PACKAGE
    )]
    BadApiPath {
        /// The directory given.
        path: PathBuf,
    },
    /// No free loopback port to suggest.
    #[error("cannot find a free port on {LOOPBACK} (give one with --port)")]
    NoPort(#[source] io::Error),
    /// A file or directory could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// What was being written.
        path: PathBuf,
        /// The system's reason.
        #[source]
        source: io::Error,
    },
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    /// The plugin's name (package, library and service name).
    pub name: String,
    /// Its language.
    pub lang: Lang,
    /// The project directory to create (default: `./NAME`).
    pub dir: Option<PathBuf>,
    /// Rust: the spp source tree (or its `plugin-api`) to depend on.
    pub api_path: Option<PathBuf>,
    /// Rust: a git repository to take `spp-plugin-api` from instead.
    pub api_git: Option<String>,
    /// The TCP port of the listener (default: one free now; 0: the system
    /// picks one at each start).
    pub port: Option<u16>,
}

/// What was generated.
#[derive(Debug, Clone)]
pub struct Created {
    /// The project directory, as given.
    pub dir: PathBuf,
    /// The files written, relative to `dir`.
    pub files: Vec<PathBuf>,
    /// The listener's port.
    pub port: u16,
    /// Rust: where `spp-plugin-api` comes from.
    pub api: Option<api::Source>,
    /// Rust: that, in words.
    pub api_note: String,
}

/// Generates the project of `opts`; on a failure half-way, removes the
/// directory it created.
pub fn new_plugin(opts: &Options) -> Result<Created, ScaffoldError> {
    name::check(&opts.name).map_err(|why| ScaffoldError::BadName {
        name: opts.name.clone(),
        why,
    })?;
    let api = match opts.lang {
        Lang::Rust => Some(api::resolve(
            opts.api_path.as_deref(),
            opts.api_git.as_deref(),
        )?),
        Lang::C => None,
    };
    let port = match opts.port {
        Some(port) => port,
        None => free_port().map_err(ScaffoldError::NoPort)?,
    };
    let dir = opts
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&opts.name));
    create_new_dir(&dir)?;
    let written = write_project(opts, &dir, port, api.as_ref());
    match written {
        Ok((files, api_note)) => Ok(Created {
            dir,
            files,
            port,
            api,
            api_note,
        }),
        Err(e) => {
            // The directory is ours: created above.
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

/// Creates `dir` (and its missing parents); refuses one that exists.
fn create_new_dir(dir: &Path) -> Result<(), ScaffoldError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ScaffoldError::Write { path, source }
    };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(write_err(parent))?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(ScaffoldError::Exists {
            path: dir.to_path_buf(),
        }),
        Err(e) => Err(write_err(dir)(e)),
    }
}

/// Writes every file of the project into `dir` (new and empty); the files
/// and the note on the plugin API.
fn write_project(
    opts: &Options,
    dir: &Path,
    port: u16,
    api: Option<&api::Source>,
) -> Result<(Vec<PathBuf>, String), ScaffoldError> {
    let canonical = std::fs::canonicalize(dir).map_err(|source| ScaffoldError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let name = opts.name.as_str();
    let lib = name::lib_name(name);
    let type_name = name::type_name(name);
    let (api_dep, api_note) = api
        .map(|source| api::dependency(source, &canonical))
        .unwrap_or_default();
    let spp = std::env::current_exe()
        .map(|exe| exe.display().to_string())
        .unwrap_or_else(|_| "spp".to_string());
    let (plugin, build_cmd, build_what, files) = match opts.lang {
        Lang::Rust => (
            format!("target/release/lib{lib}.so"),
            "cargo build --release",
            "build the plugin (`make run`: build and start)",
            templates::RUST,
        ),
        Lang::C => (
            format!("lib{lib}.so"),
            "make",
            "build the plugin (`make run`: build and start)",
            templates::C,
        ),
    };
    let build_hint = format!("  {build_cmd:<30}{build_what}");
    let (port_note, port_shown, addr) = if port == 0 {
        (
            "Port 0: the system picks a free one at each start (`spp status` shows it)."
                .to_string(),
            "PORT".to_string(),
            format!("a port of {LOOPBACK} the system picks (`spp status -c spp.toml` shows it)"),
        )
    } else {
        (
            format!("Port {port} was free when `spp new` wrote this file."),
            port.to_string(),
            format!("{LOOPBACK}:{port}"),
        )
    };
    let port = port.to_string();
    let values: [(&str, &str); 12] = [
        ("name", name),
        ("lib", &lib),
        ("type", &type_name),
        ("api_dep", &api_dep),
        ("api_note", &api_note),
        ("spp", &spp),
        ("port", &port),
        ("port_note", &port_note),
        ("port_shown", &port_shown),
        ("addr", &addr),
        ("plugin", &plugin),
        ("build_hint", &build_hint),
    ];
    let mut written = Vec::with_capacity(files.len());
    for file in files {
        let rel = PathBuf::from(templates::render(file.path, &values));
        write_new(&dir.join(&rel), &templates::render(file.text, &values))?;
        written.push(rel);
    }
    Ok((written, api_note))
}

/// Writes a new file (and its directory).
fn write_new(path: &Path, text: &str) -> Result<(), ScaffoldError> {
    let write = || -> io::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?
            .write_all(text.as_bytes())
    };
    write().map_err(|source| ScaffoldError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// A TCP port of the loopback address that is free now.
fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind((LOOPBACK, 0))?
        .local_addr()?
        .port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(name: &str, lang: Lang, dir: &Path) -> Options {
        Options {
            name: name.into(),
            lang,
            dir: Some(dir.to_path_buf()),
            api_path: None,
            api_git: None,
            port: Some(7001),
        }
    }

    #[test]
    fn a_rust_project_is_written_and_never_over_an_existing_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/my-echo");
        let created = new_plugin(&opts("my-echo", Lang::Rust, &dir)).unwrap();
        assert_eq!(created.files.len(), templates::RUST.len());
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("pub struct MyEcho {"), "{lib}");
        assert!(lib.contains(
            "export_plugin!(MyEcho, hooks: [route, exception, close, flow_closed, fini]);"
        ));
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"my-echo\""));
        assert!(
            manifest.contains("spp-plugin-api = { path = "),
            "{manifest}"
        );
        let config = std::fs::read_to_string(dir.join("spp.toml")).unwrap();
        assert!(config.contains("listen = [\"tcp://127.0.0.1:7001\"]"));
        assert!(config.contains("plugin = \"target/release/libmy_echo.so\""));
        // The config is valid (loading the plugin is `spp check`'s job).
        let cfg = spp_config::load(&dir.join("spp.toml")).unwrap();
        assert_eq!(cfg.service.name, "my-echo");
        assert!(cfg.groups[0]
            .plugin
            .ends_with("target/release/libmy_echo.so"));

        let again = new_plugin(&opts("my-echo", Lang::Rust, &dir)).unwrap_err();
        assert!(matches!(again, ScaffoldError::Exists { .. }), "{again}");
        assert!(again.to_string().contains(&dir.display().to_string()));
        assert!(
            dir.join("src/lib.rs").is_file(),
            "the existing project stays"
        );
    }

    #[test]
    fn a_c_project_carries_the_header() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("kv");
        new_plugin(&opts("kv", Lang::C, &dir)).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("spp_plugin.h")).unwrap(),
            templates::HEADER
        );
        let makefile = std::fs::read_to_string(dir.join("Makefile")).unwrap();
        assert!(
            makefile.contains("-fPIC -Wall -Wextra -Werror"),
            "{makefile}"
        );
        assert!(makefile.contains("$(CC) $(CFLAGS) -shared -o $@ kv.c"));
        assert!(dir.join("kv.c").is_file());
    }

    #[test]
    fn a_bad_name_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("x");
        let err = new_plugin(&opts("My Plugin", Lang::C, &dir)).unwrap_err();
        assert!(
            err.to_string()
                .contains("\"My Plugin\" is not a usable plugin name"),
            "{err}"
        );
        assert!(!dir.exists());
    }
}
