//! Chaos: business plugins that misbehave the moment they are mapped (a
//! constructor that `_exit`s, aborts, crashes, hangs or prints a fake
//! verdict; tests/plugins/bad-ctor). `spp check` and `spp start` load each
//! plugin only in a throw-away `spp __check-plugin` child, so they fail
//! with a reason that names the plugin and its loader's fate, and nothing
//! is left running.

use spp_tests::client::TcpClient;
use spp_tests::service::run_spp_with_env;
use spp_tests::{pid_alive, wait_for, Binaries, Service, ServiceConfig, SppOutput};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The environment variable that bounds one plugin check, in milliseconds
/// (spp_config::defaults::PLUGIN_CHECK_TIMEOUT_ENV).
const CHECK_TIMEOUT_ENV: &str = "SPP_PLUGIN_CHECK_TIMEOUT_MS";
/// The check timeout these tests use, so the hanging plugin costs little.
const CHECK_TIMEOUT_MS: &str = "1500";
/// How long one `spp` command may take here: the check timeout twice
/// (CLI and controller) and slack for a loaded machine.
const CLI_DEADLINE: Duration = Duration::from_secs(30);
/// How long a check child may take to disappear after the command.
const GONE_WITHIN: Duration = Duration::from_secs(5);

/// A config dir holding `spp.toml` with `plugin` as both the proxy's and
/// the worker's plugin.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    plugin: PathBuf,
}

fn setup(fate: &str) -> Setup {
    let bins = Binaries::locate();
    let plugin = bins.plugin(&format!("spp_bad_ctor_{fate}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = ServiceConfig::single(&plugin, 1);
    let config = dir.path().join("spp.toml");
    std::fs::write(&config, cfg.render(dir.path())).expect("write config");
    Setup {
        dir,
        config,
        plugin,
    }
}

/// Runs `spp <cmd> -c <config>` with the short check timeout; panics if
/// it does not end within the CLI's deadline.
fn spp(setup: &Setup, cmd: &str) -> SppOutput {
    let config = setup.config.to_string_lossy();
    let out = run_spp_with_env(
        &Binaries::locate(),
        &[cmd, "-c", &config],
        &[(CHECK_TIMEOUT_ENV, CHECK_TIMEOUT_MS)],
    );
    assert!(out.code.is_some(), "spp {cmd} did not end: {}", out.text());
    out
}

/// PIDs of processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
                && pid_alive(*pid)
        })
        .collect()
}

/// `spp check` and `spp start` both fail, naming the plugin and `fate`;
/// nothing runs afterwards (no check child, no controller, no pid file).
fn refused_by_check_and_start(fate: &str, expected: &str) {
    let setup = setup(fate);
    let plugin = setup.plugin.display().to_string();
    for cmd in ["check", "start"] {
        let out = spp(&setup, cmd);
        let text = out.text();
        assert!(!out.ok(), "spp {cmd} must fail for {fate}: {text}");
        assert!(text.contains(&plugin), "spp {cmd} names the plugin: {text}");
        assert!(
            text.contains(expected),
            "spp {cmd} says {expected:?}: {text}"
        );
        let left = wait_for(GONE_WITHIN, || {
            let mut pids = processes_mentioning(&plugin);
            pids.extend(processes_mentioning(
                &setup.dir.path().display().to_string(),
            ));
            pids.is_empty().then_some(())
        });
        assert!(
            left.is_some(),
            "nothing left running after spp {cmd} ({fate}): {:?}",
            processes_mentioning(&plugin)
        );
        let run = setup.dir.path().join("run");
        assert!(!run.join("spp.pid").exists(), "no pid file after spp {cmd}");
        assert!(!run.join("spp.sock").exists(), "no socket after spp {cmd}");
    }
}

#[test]
fn a_constructor_that_exits_0_fails_check_and_start() {
    refused_by_check_and_start("exit0", "exited with status 0 before a verdict");
}

#[test]
fn a_constructor_that_exits_7_fails_check_and_start() {
    refused_by_check_and_start("exit7", "exited with status 7 before a verdict");
}

#[test]
fn a_constructor_that_aborts_fails_check_and_start() {
    refused_by_check_and_start("abort", "killed by signal 6 (SIGABRT)");
}

#[test]
fn a_constructor_that_segfaults_fails_check_and_start() {
    refused_by_check_and_start("segv", "killed by signal 11 (SIGSEGV)");
}

#[test]
fn a_constructor_that_hangs_is_killed_after_the_check_timeout() {
    let started = Instant::now();
    refused_by_check_and_start("hang", "did not finish within 1.5s");
    assert!(
        started.elapsed() < CLI_DEADLINE,
        "bounded by the check timeout: {:?}",
        started.elapsed()
    );
}

#[test]
fn a_fake_verdict_on_stdout_does_not_pass_a_plugin_that_exits() {
    refused_by_check_and_start("chatter_exit0", "exited with status 0 before a verdict");
}

#[test]
fn a_plugin_that_prints_while_it_loads_still_passes_and_serves() {
    let cfg = ServiceConfig::single(&Binaries::locate().plugin("spp_bad_ctor_chatter"), 1);
    let (mut service, out) = Service::try_start(&cfg);
    assert!(out.ok(), "start: {}\n{}", out.text(), service.logs());
    let mut client = TcpClient::connect(service.tcp()).expect("connect");
    client.send(b"hello").expect("send");
    assert_eq!(client.recv().expect("reply"), b"hello");
    let check = service.spp(&["check"]);
    assert!(check.ok(), "check: {}", check.text());
    let stop = service.stop();
    assert!(stop.ok(), "stop: {}", stop.text());
}

#[test]
fn a_plugin_that_forks_while_it_loads_passes_though_its_child_holds_the_pipe() {
    let setup = setup("fork");
    let out = spp(&setup, "check");
    assert!(out.ok(), "check: {}", out.text());
}
