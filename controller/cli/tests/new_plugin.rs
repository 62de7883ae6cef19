//! `spp new plugin`: a generated project builds with its own commands
//! (`make` for C; `cargo build --release --offline` for Rust, against the
//! spp-plugin-api of this tree) and its spp.toml, started with the real
//! `spp`, answers a client with the echo. Also: an existing directory and
//! a bad name are refused with a clear error. Needs the workspace built
//! (`cargo build --workspace`: spp-proxy and spp-worker next to spp).

mod common;

use common::{call, pid_gone, signal, text};
use serde_json::Value;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// How long a client waits for an answer, and spp for readiness.
const WAIT: Duration = Duration::from_secs(30);

/// Runs the `spp` under test.
fn spp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spp"))
        .args(args)
        .output()
        .expect("run spp")
}

/// `spp new plugin NAME --lang LANG --dir DIR --port 0`, which must succeed.
fn generate(name: &str, lang: &str, dir: &Path) -> Output {
    let dir = dir.to_str().expect("utf-8 temp path");
    let out = spp(&[
        "new", "plugin", name, "--lang", lang, "--dir", dir, "--port", "0",
    ]);
    assert!(out.status.success(), "spp new: {}", text(&out));
    out
}

/// Whether `tool` runs (`tool --version`).
fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// A generated service: stopped (by `spp stop`, or its controller's pid)
/// when dropped, whatever the test did.
struct Running {
    dir: PathBuf,
}

impl Running {
    fn config(&self) -> String {
        self.dir.join("spp.toml").display().to_string()
    }

    /// The TCP address its first listener is bound to.
    fn addr(&self) -> String {
        let out = spp(&["status", "-c", &self.config(), "--json"]);
        assert!(out.status.success(), "status: {}", text(&out));
        let status: Value = serde_json::from_slice(&out.stdout).expect("status json");
        status["listeners"][0]["addr"]
            .as_str()
            .expect("a listener")
            .to_string()
    }

    /// Sends one framed payload and checks the echo.
    fn echoes(&self, payload: &[u8]) {
        let mut conn = TcpStream::connect(self.addr()).expect("connect");
        conn.set_read_timeout(Some(WAIT)).unwrap();
        assert_eq!(call(&mut conn, payload).expect("an answer"), payload);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if spp(&["stop", "-c", &self.config()]).status.success() {
            return;
        }
        let pid = std::fs::read_to_string(self.dir.join("run/spp.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u64>().ok())
            .filter(|&pid| !pid_gone(pid));
        if let Some(pid) = pid {
            signal(pid, libc::SIGTERM);
            let deadline = Instant::now() + WAIT;
            while !pid_gone(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

#[test]
fn a_c_plugin_builds_with_make_and_serves_with_make_run() {
    if !have("make") || !have("cc") {
        eprintln!("skipped: `make` and `cc` are needed to build the generated C plugin");
        return;
    }
    common::bin_dir();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hello-c");
    let out = generate("hello-c", "c", &dir);
    assert!(text(&out).contains("make -C"), "{}", text(&out));
    for file in [
        "hello-c.c",
        "spp_plugin.h",
        "Makefile",
        "spp.toml",
        "README.md",
    ] {
        assert!(dir.join(file).is_file(), "{file} is missing");
    }

    // `make` builds the plugin with the warnings as errors.
    let make = Command::new("make").arg("-C").arg(&dir).output().unwrap();
    assert!(make.status.success(), "make: {}", text(&make));
    assert!(text(&make).contains("-fPIC") && text(&make).contains("-Werror"));
    assert!(dir.join("libhello_c.so").is_file());

    // `make run` starts the service with the spp that generated it.
    let svc = Running { dir: dir.clone() };
    let run = Command::new("make")
        .arg("-C")
        .arg(&dir)
        .arg("run")
        .output()
        .unwrap();
    assert!(run.status.success(), "make run: {}", text(&run));
    assert!(
        text(&run).contains("service hello-c is running"),
        "{}",
        text(&run)
    );
    svc.echoes(b"hello from C");
    svc.echoes(b"");
    let stop = Command::new("make")
        .arg("-C")
        .arg(&dir)
        .arg("stop")
        .output()
        .unwrap();
    assert!(stop.status.success(), "make stop: {}", text(&stop));
}

/// Builds the generated crate in `dir` (`CMD --release --offline`), its
/// target dir a link to one kept across runs so the dependencies are built
/// once.
fn cargo(dir: &Path, cmd: &str) -> Output {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Command::new(cargo)
        .args([cmd, "--release", "--offline"])
        .current_dir(dir)
        .env("CARGO_INCREMENTAL", "0")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("run cargo")
}

#[test]
fn a_rust_plugin_builds_with_cargo_and_serves_with_spp_start() {
    common::bin_dir();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hello-rs");
    let out = generate("hello-rs", "rust", &dir);
    // Outside the tree, the crate depends on this tree's plugin API by its
    // absolute path.
    let api =
        std::fs::canonicalize(concat!(env!("CARGO_MANIFEST_DIR"), "/../../plugin-api")).unwrap();
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let dep = format!("spp-plugin-api = {{ path = \"{}\" }}", api.display());
    assert!(manifest.contains(&dep), "{manifest}");
    assert!(
        text(&out).contains("cargo build --release"),
        "{}",
        text(&out)
    );

    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("new-plugin-target");
    std::fs::create_dir_all(&cache).unwrap();
    std::os::unix::fs::symlink(&cache, dir.join("target")).unwrap();
    let started = Instant::now();
    let build = cargo(&dir, "build");
    assert!(build.status.success(), "cargo build: {}", text(&build));
    assert!(
        !text(&build).contains("warning:"),
        "the generated crate builds without warnings: {}",
        text(&build)
    );
    let test = cargo(&dir, "test");
    assert!(test.status.success(), "cargo test: {}", text(&test));
    eprintln!("built and tested in {:?}", started.elapsed());
    assert!(dir.join("target/release/libhello_rs.so").is_file());

    // The README's second command.
    let svc = Running { dir: dir.clone() };
    let start = spp(&["start", "-c", &svc.config()]);
    assert!(start.status.success(), "spp start: {}", text(&start));
    svc.echoes(b"hello from Rust");
    let stop = spp(&["stop", "-c", &svc.config()]);
    assert!(stop.status.success(), "spp stop: {}", text(&stop));
}

#[test]
fn an_existing_directory_or_a_bad_name_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = tmp.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("mine.txt"), "keep me").unwrap();
    let dir = taken.to_str().unwrap();
    let out = spp(&["new", "plugin", "kv", "--lang", "c", "--dir", dir]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{dir} already exists")),
        "{}",
        text(&out)
    );
    let left: Vec<_> = std::fs::read_dir(&taken).unwrap().collect();
    assert_eq!(left.len(), 1, "nothing written into {dir}");

    let fresh = tmp.path().join("fresh");
    let fresh = fresh.to_str().unwrap();
    for bad in ["Kv", "k v", "fn", "kv-"] {
        let out = spp(&["new", "plugin", bad, "--lang", "rust", "--dir", fresh]);
        assert_eq!(out.status.code(), Some(1), "{bad}: {}", text(&out));
        assert!(
            text(&out).contains(&format!("{bad:?} is not a usable plugin name")),
            "{}",
            text(&out)
        );
        assert!(!Path::new(fresh).exists());
    }

    let out = spp(&[
        "new",
        "plugin",
        "kv",
        "--lang",
        "rust",
        "--dir",
        fresh,
        "--api-path",
        dir,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no spp-plugin-api there"),
        "{}",
        text(&out)
    );

    let help = spp(&["new", "plugin", "--help"]);
    assert!(help.status.success());
    for needle in [
        "--lang <LANG>",
        "--dir <DIR>",
        "--api-path",
        "not on crates.io",
    ] {
        assert!(text(&help).contains(needle), "{needle}: {}", text(&help));
    }
}
