//! `spp check` and the refusals that happen before anything starts.

mod common;

use common::{text, Service};

#[test]
fn check_accepts_a_good_config() {
    let svc = Service::new(2, "");
    let out = svc.spp(&["check"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.starts_with("config OK: service \"t\", 3 listener(s)"),
        "{said}"
    );
    assert!(said.contains("g1 2 workers (2..=3)"), "{said}");
}

#[test]
fn a_bad_config_is_refused_naming_file_and_key_and_nothing_starts() {
    let svc = Service::new(1, "stop_grace = \"5\"");
    for args in [&["check"][..], &["start"], &["start", "--foreground"]] {
        let out = svc.spp(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        let said = text(&out);
        assert!(said.contains(&svc.config.display().to_string()), "{said}");
        assert!(said.contains("service.stop_grace"), "{said}");
    }
    assert!(common::gone(&svc.path("run")), "the run dir was created");
}

#[test]
fn an_unknown_key_is_refused_with_its_line() {
    let svc = Service::new(1, "colour = \"blue\"");
    let out = svc.spp(&["check"]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains("line 5: service.colour: unknown field `colour`"),
        "{said}"
    );
}

#[test]
fn a_missing_plugin_is_refused_naming_the_key_and_file() {
    let svc = Service::new(1, "");
    let cfg = std::fs::read_to_string(&svc.config).unwrap();
    let echo = common::echo_plugin().display().to_string();
    let cfg = cfg.replacen(&echo, "nowhere/libnone.so", 2);
    std::fs::write(&svc.config, cfg).unwrap();
    let out = svc.spp(&["check"]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(said.contains("proxy.plugin: plugin file"), "{said}");
    assert!(
        said.contains(&svc.path("nowhere/libnone.so").display().to_string()),
        "{said}"
    );
}

/// Builds a C plugin from `source` with the system C compiler; `None` when
/// there is none.
fn c_plugin(svc: &Service, name: &str, source: &str) -> Option<std::path::PathBuf> {
    let c = svc.path(&format!("{name}.c"));
    let so = svc.path(&format!("lib{name}.so"));
    std::fs::write(&c, source).unwrap();
    let built = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&c)
        .status();
    match built {
        Ok(s) if s.success() => Some(so),
        _ => {
            eprintln!("no C compiler: skipped");
            None
        }
    }
}

fn use_group_plugin(svc: &Service, plugin: &std::path::Path) {
    let cfg = std::fs::read_to_string(&svc.config).unwrap();
    let (proxy, group) = cfg.split_once("[[group]]").unwrap();
    let echo = common::echo_plugin().display().to_string();
    let group = group.replace(&echo, &plugin.display().to_string());
    std::fs::write(&svc.config, format!("{proxy}[[group]]{group}")).unwrap();
}

#[test]
fn a_wrong_abi_version_is_refused_naming_the_file_and_both_versions() {
    let svc = Service::new(1, "");
    let src = "unsigned spp_plugin_abi_version(void) { return 99; }\nint spp_process(void) { return 0; }\n";
    let Some(so) = c_plugin(&svc, "future", src) else {
        return;
    };
    use_group_plugin(&svc, &so);
    let out = svc.spp(&["check"]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(said.contains("group[0].plugin"), "{said}");
    assert!(said.contains(&so.display().to_string()), "{said}");
    assert!(
        said.contains("ABI version 99 is not supported (this host speaks version 1)"),
        "{said}"
    );
}

#[test]
fn a_worker_plugin_without_process_is_refused() {
    let svc = Service::new(1, "");
    let Some(so) = c_plugin(
        &svc,
        "noprocess",
        "unsigned spp_plugin_abi_version(void) { return 1; }\n",
    ) else {
        return;
    };
    use_group_plugin(&svc, &so);
    let out = svc.spp(&["check"]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(said.contains("group[0].plugin"), "{said}");
    assert!(
        said.contains("does not export the required hook `spp_process`"),
        "{said}"
    );
}

#[test]
fn status_and_stop_when_nothing_runs() {
    let svc = Service::new(1, "");
    let out = svc.spp(&["status"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("not running"));
    let out = svc.spp(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let out = svc.spp(&["stop"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("not running"));
}

#[test]
fn missing_child_executables_are_named() {
    let svc = Service::new(1, "");
    std::fs::remove_file(svc.bin.join("spp-worker")).unwrap();
    let out = svc.spp(&["start"]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains("spp-worker") && said.contains("SPP_BIN_DIR"),
        "{said}"
    );
}

#[test]
fn max_connections_beyond_the_hard_fd_limit_is_refused() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid out pointer.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(rc, 0);
    // The most connections the proxy takes; with the fds it inherits they
    // need more files than the usual hard limit (1Mi) allows.
    let most = spp_ipc::launch::MAX_FLOW_SLOTS as u64;
    if limit.rlim_max == libc::RLIM_INFINITY || limit.rlim_max > most {
        eprintln!("the hard fd limit covers {most} connections here: skipped");
        return;
    }
    let svc = Service::new(1, "");
    let cfg = std::fs::read_to_string(&svc.config).unwrap();
    let cfg = cfg.replacen(
        "max_request_size",
        &format!("max_connections = {most}\nmax_request_size"),
        1,
    );
    std::fs::write(&svc.config, cfg).unwrap();
    let out = svc.spp(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out);
    assert!(
        said.contains("proxy.max_connections") && said.contains("RLIMIT_NOFILE"),
        "{said}"
    );
}
