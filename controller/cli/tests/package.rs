//! The standard package end to end (build the workspace first: `cargo
//! build --workspace`): `spp package` of an echo config, `spp install` to a
//! temporary prefix, `start --prefix`, an answered request, `spp checksum`
//! clean then failing on a changed plugin, damaged archives refused with
//! the prefix untouched, an upgrade under load that loses no request, and
//! `spp uninstall` leaving only log/ (nothing with --purge).

mod common;

use common::{bin_dir, call, pid_gone, text, wait_for, worker_pids};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// A work directory with an echo config (ephemeral ports) and, once
/// installed, a prefix; the service is stopped on drop.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    prefix: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let plugin = bin_dir().join("libspp_echo.so");
        let config = dir.path().join("src/spp.toml");
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        std::fs::write(
            &config,
            format!(
                r#"# the echo service, packaged
[service]
name = "echo-pkg"
run_dir = "run"
log_dir = "log"
stop_grace = "2s"

[proxy]
listen = ["tcp://127.0.0.1:0", "udp://127.0.0.1:0"]
plugin = "{plugin}"
max_request_size = "16KiB"

[rings]
request_size = "64KiB"
response_size = "64KiB"

[[group]]
id = 1
plugin = "{plugin}"   # the same library: packaged once
workers = 2
max_workers = 2
"#,
                plugin = plugin.display()
            ),
        )
        .unwrap();
        let prefix = dir.path().join("opt/echo");
        Setup {
            dir,
            config,
            prefix,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `spp ARGS` (the build's spp, no SPP_BIN_DIR).
    fn spp(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_spp"))
            .args(args)
            .env_remove("SPP_BIN_DIR")
            .output()
            .expect("run spp")
    }

    /// `spp ARGS --prefix PREFIX`.
    fn on_prefix(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--prefix", self.prefix.to_str().unwrap()]);
        self.spp(&all)
    }

    fn package(&self, out: &str, version: &str) -> PathBuf {
        let pkg = self.path(out);
        let o = self.spp(&[
            "package",
            "-c",
            self.config.to_str().unwrap(),
            "-o",
            pkg.to_str().unwrap(),
            "--version",
            version,
        ]);
        assert!(o.status.success(), "package: {}", text(&o));
        pkg
    }

    fn install(&self, pkg: &Path) -> Output {
        self.on_prefix(&["install", pkg.to_str().unwrap()])
    }

    fn status(&self) -> Option<Value> {
        let o = self.on_prefix(&["status", "--json"]);
        o.status
            .success()
            .then(|| serde_json::from_slice(&o.stdout).ok())
            .flatten()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if self.prefix.join("conf/spp.toml").exists() {
            let _ = self.on_prefix(&["stop"]);
        }
    }
}

/// Every file under `dir` with its content (the prefix's state).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.insert(p.clone(), Vec::new());
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

fn tcp_addr(status: &Value) -> String {
    status["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["transport"] == "tcp")
        .and_then(|l| l["addr"].as_str())
        .unwrap()
        .to_string()
}

/// Copies archive `from` to `to`, letting `edit` change each entry (path,
/// content) or drop it (`false`); `extra` entries are appended with raw
/// names (so `../x` gets in).
fn rewrite(
    from: &Path,
    to: &Path,
    mut edit: impl FnMut(&str, &mut Vec<u8>) -> bool,
    extra: &[(&str, &[u8])],
) {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(from).unwrap(),
    ));
    let out = std::fs::File::create(to).unwrap();
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        out,
        flate2::Compression::fast(),
    ));
    let mut append = |name: &str, mode: u32, data: &[u8]| {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    };
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mode = entry.header().mode().unwrap();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        if edit(&name, &mut data) {
            append(&name, mode, &data);
        }
    }
    for (name, data) in extra {
        append(name, 0o644, data);
    }
    builder.into_inner().unwrap().finish().unwrap();
}

#[test]
fn package_install_start_answer_checksum_and_uninstall() {
    let s = Setup::new();
    let pkg = s.package("echo-1.tar.gz", "1.0.0");

    // An invalid config writes nothing.
    let bad = s.path("src/bad.toml");
    std::fs::write(&bad, "[service]\nname = \"x\"\n").unwrap();
    let o = s.spp(&[
        "package",
        "-c",
        bad.to_str().unwrap(),
        "-o",
        s.path("bad.tgz").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(!s.path("bad.tgz").exists());

    let o = s.install(&pkg);
    assert!(o.status.success(), "install: {}", text(&o));
    for d in ["bin", "conf", "plugins", "log", "run"] {
        assert!(s.prefix.join(d).is_dir(), "{d}/ missing");
    }
    // One plugin file for the two uses; paths rewritten, the rest as written.
    let plugins: Vec<_> = std::fs::read_dir(s.prefix.join("plugins"))
        .unwrap()
        .collect();
    assert_eq!(plugins.len(), 1);
    let conf = std::fs::read_to_string(s.prefix.join("conf/spp.toml")).unwrap();
    assert!(
        conf.contains("plugin = \"../plugins/libspp_echo.so\"   # the same library"),
        "{conf}"
    );
    assert!(
        conf.contains("run_dir = \"../run\"") && conf.contains("log_dir = \"../log\""),
        "{conf}"
    );
    assert!(conf.starts_with("# the echo service, packaged"), "{conf}");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(s.prefix.join("MANIFEST.json")).unwrap()).unwrap();
    assert_eq!(manifest["name"], "echo-pkg");
    assert_eq!(manifest["version"], "1.0.0");
    let unit = std::fs::read_to_string(s.prefix.join("spp.service")).unwrap();
    let p = s.prefix.display().to_string();
    assert!(unit.contains("Type=notify"), "{unit}");
    assert!(
        unit.contains(&format!("ExecStartPre={p}/bin/spp check --prefix {p}")),
        "{unit}"
    );

    let o = s.on_prefix(&["start", "--wait", "30s"]);
    assert!(o.status.success(), "start: {}", text(&o));
    let status = s.status().expect("status");
    // The service runs on the installed binaries.
    let pid = status["controller_pid"].as_u64().unwrap();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe, s.prefix.join("bin/spp"));
    let mut conn = TcpStream::connect(tcp_addr(&status)).unwrap();
    conn.set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(call(&mut conn, b"hello").unwrap(), b"hello");

    let o = s.on_prefix(&["checksum"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // An operator's config change is reported but does not fail.
    let mut edited = conf.clone();
    edited.push_str("\n# tuned by ops\n");
    std::fs::write(s.prefix.join("conf/spp.toml"), &edited).unwrap();
    let o = s.on_prefix(&["checksum"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("modified   conf/spp.toml (operator config"),
        "{}",
        text(&o)
    );

    // One byte of the plugin: fails, naming it; so do an unexpected and a
    // missing file.
    let plugin = s.prefix.join("plugins/libspp_echo.so");
    let mut bytes = std::fs::read(&plugin).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&plugin, &bytes).unwrap();
    std::fs::write(s.prefix.join("bin/extra"), "x").unwrap();
    let o = s.on_prefix(&["checksum"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("modified   plugins/libspp_echo.so"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("unexpected bin/extra"), "{}", text(&o));
    bytes[last] ^= 0xff;
    std::fs::write(&plugin, &bytes).unwrap();
    std::fs::remove_file(s.prefix.join("bin/extra")).unwrap();
    let o = s.on_prefix(&["checksum"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Uninstall stops the service and keeps only log/.
    let o = s.on_prefix(&["uninstall"]);
    assert!(o.status.success(), "uninstall: {}", text(&o));
    wait_for("the controller to exit", WAIT, || {
        pid_gone(pid).then_some(())
    });
    let left: Vec<String> = std::fs::read_dir(&s.prefix)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["log"]);
    assert!(s.prefix.join("log/controller.log").is_file());

    // Again, with --purge: nothing is left.
    let o = s.install(&pkg);
    assert!(o.status.success(), "install: {}", text(&o));
    let o = s.on_prefix(&["uninstall", "--purge"]);
    assert!(o.status.success(), "uninstall: {}", text(&o));
    assert!(!s.prefix.exists());
}

#[test]
fn a_damaged_package_is_refused_and_the_prefix_untouched() {
    let s = Setup::new();
    let pkg = s.package("echo-1.tar.gz", "1.0.0");
    let prefix_parent = s.prefix.parent().unwrap().to_path_buf();

    let flipped = s.path("flipped.tar.gz");
    rewrite(
        &pkg,
        &flipped,
        |name, data| {
            if name == "plugins/libspp_echo.so" {
                data[100] ^= 1;
            }
            true
        },
        &[],
    );
    let relabelled = s.path("relabelled.tar.gz");
    rewrite(
        &pkg,
        &relabelled,
        |name, data| {
            if name == "MANIFEST.json" {
                let mut m: Value = serde_json::from_slice(data).unwrap();
                for f in m["files"].as_array_mut().unwrap() {
                    if f["path"] == "bin/spp-worker" {
                        f["sha256"] = Value::from("00".repeat(32));
                    }
                }
                *data = serde_json::to_vec(&m).unwrap();
            }
            true
        },
        &[],
    );
    let missing = s.path("missing.tar.gz");
    rewrite(&pkg, &missing, |name, _| name != "bin/spp-proxy", &[]);
    let extra = s.path("extra.tar.gz");
    rewrite(&pkg, &extra, |_, _| true, &[("plugins/backdoor.so", b"x")]);
    let traversal = s.path("traversal.tar.gz");
    rewrite(&pkg, &traversal, |_, _| true, &[("../../evil", b"x")]);
    let cases = [
        (&flipped, "plugins/libspp_echo.so"),
        (&relabelled, "bin/spp-worker"),
        (&missing, "bin/spp-proxy"),
        (&extra, "plugins/backdoor.so"),
        (&traversal, "../../evil"),
    ];

    // Onto a fresh prefix: nothing is created.
    for (bad, name) in &cases {
        let o = s.install(bad);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains(name), "{name}: {}", text(&o));
        assert!(!s.prefix.exists(), "{name}");
    }
    assert!(!s.path("evil").exists() && !s.dir.path().parent().unwrap().join("evil").exists());

    // Over an install: not a byte changes, no staging left behind.
    let o = s.install(&pkg);
    assert!(o.status.success(), "install: {}", text(&o));
    let before = snapshot(&s.prefix);
    for (bad, name) in &cases {
        let o = s.install(bad);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains(name), "{name}: {}", text(&o));
        assert_eq!(snapshot(&s.prefix), before, "{name}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&prefix_parent)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "echo")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let o = s.on_prefix(&["checksum"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn an_upgrade_under_load_loses_no_request() {
    let s = Setup::new();
    let v1 = s.package("echo-1.tar.gz", "1.0.0");
    let v2 = s.package("echo-2.tar.gz", "2.0.0");
    let o = s.install(&v1);
    assert!(o.status.success(), "install: {}", text(&o));
    let o = s.on_prefix(&["start", "--wait", "30s"]);
    assert!(o.status.success(), "start: {}", text(&o));
    let before = s.status().expect("status");
    let old = worker_pids(&before);
    assert_eq!(old.len(), 2);

    // The operator tuned the config: the upgrade keeps it.
    let conf = s.prefix.join("conf/spp.toml");
    let mut tuned = std::fs::read_to_string(&conf).unwrap();
    tuned.push_str("\n# tuned by ops\n");
    std::fs::write(&conf, &tuned).unwrap();

    let client = TcpStream::connect(tcp_addr(&before)).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let (done, calls) = common::keep_calling(client);
    // Until the client has been answered at least once.
    let o = s.install(&v2);
    done.store(true, Ordering::Relaxed);
    assert!(o.status.success(), "upgrade: {}", text(&o));
    assert!(
        text(&o).contains("upgraded from 1.0.0 to 2.0.0"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("kept the operator's conf/spp.toml"),
        "{}",
        text(&o)
    );
    let answered = calls.join().unwrap().expect("every call answered");
    assert!(answered > 0);

    assert_eq!(std::fs::read_to_string(&conf).unwrap(), tuned);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(s.prefix.join("MANIFEST.json")).unwrap()).unwrap();
    assert_eq!(manifest["version"], "2.0.0");
    let status = s.status().expect("status after upgrade");
    assert_eq!(status["controller_pid"], before["controller_pid"]);
    let new = worker_pids(&status);
    assert_eq!(new.len(), 2);
    assert!(new.iter().all(|p| !old.contains(p)), "{old:?} -> {new:?}");
    assert_eq!(status["proxy_stats"]["worker_died_failed"], 0, "{status:#}");

    // --replace-config installs the package's config again.
    let o = s.on_prefix(&["install", v2.to_str().unwrap(), "--replace-config"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!std::fs::read_to_string(&conf)
        .unwrap()
        .contains("tuned by ops"));
    let o = s.on_prefix(&["checksum"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
