//! The plugin ABI's promises, end to end with a C plugin built from
//! `spp_plugin.h` alone: a plugin whose `spp_init` refuses fails `spp
//! check` (and so the start) naming the file, the role and the code; one
//! that refuses only later exits with its own code and the controller
//! says so and retries with back-off; a stateful plugin in a group that
//! scales is warned about; `reply(NULL, len > 0)` is `SPP_ERR_BAD_ARG`;
//! `max_reply` tells the largest reply and a longer one is
//! `SPP_ERR_TOO_LARGE`; a worker learns that a connection it served
//! closed (`spp_flow_closed`).

use spp_tests::client::TcpClient;
use spp_tests::{kill, wait_for, Binaries, Service, ServiceConfig};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The C plugin. conf `refuse=N`: `spp_init` returns N. conf
/// `refuse_if=PATH`: returns 9 while PATH exists. Worker: `spp_flow_closed`
/// counts and remembers the last flow; payload `flow?` answers the
/// request's flow, `closed?` the count and the last closed flow; payload
/// `nullarg` answers the code of `reply(NULL, 5)`; `maxreply` answers
/// `max_reply` (after the size check) and the code of a reply one byte
/// longer; anything else is echoed. Framing: a 4-byte big-endian length.
const PLUGIN_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "spp_plugin.h"

static const spp_host *H;
static uint64_t closed_count, last_closed;
#ifdef STATEFUL
const uint32_t spp_plugin_stateful = 1;
#endif

uint32_t spp_plugin_abi_version(void) { return SPP_PLUGIN_ABI_VERSION; }

int spp_init(const spp_host *host, const char *conf) {
    H = host;
    if (strncmp(conf, "refuse=", 7) == 0) return atoi(conf + 7);
    if (strncmp(conf, "refuse_if=", 10) == 0 && access(conf + 10, F_OK) == 0) return 9;
    return 0;
}

int spp_input(const spp_conn_info *conn, const uint8_t *buf, size_t len) {
    (void)conn;
    if (len < 4) return 0;
    size_t n = ((size_t)buf[0] << 24) | ((size_t)buf[1] << 16) | ((size_t)buf[2] << 8) | buf[3];
    return len >= 4 + n ? (int)(4 + n) : 0;
}

static int answer(uint64_t flow, const char *text) {
    size_t n = strlen(text);
    uint8_t out[256];
    out[0] = 0; out[1] = 0; out[2] = (uint8_t)(n >> 8); out[3] = (uint8_t)n;
    memcpy(out + 4, text, n);
    return H->reply(H->ctx, flow, out, 4 + n);
}

void spp_flow_closed(uint64_t flow) {
    closed_count++;
    last_closed = flow;
}

int spp_process(const spp_conn_info *conn, const uint8_t *req, size_t len) {
    char text[200];
    if (len == 4 + 5 && memcmp(req + 4, "flow?", 5) == 0) {
        snprintf(text, sizeof text, "%llu", (unsigned long long)conn->flow);
        return answer(conn->flow, text);
    }
    if (len == 4 + 7 && memcmp(req + 4, "closed?", 7) == 0) {
        snprintf(text, sizeof text, "%llu %llu", (unsigned long long)closed_count,
                 (unsigned long long)last_closed);
        return answer(conn->flow, text);
    }
    if (len == 4 + 7 && memcmp(req + 4, "nullarg", 7) == 0) {
        snprintf(text, sizeof text, "%d", H->reply(H->ctx, conn->flow, NULL, 5));
        return answer(conn->flow, text);
    }
    if (len == 4 + 8 && memcmp(req + 4, "maxreply", 8) == 0) {
        if (H->size < offsetof(spp_host, max_reply) + sizeof H->max_reply)
            return answer(conn->flow, "old host");
        uint64_t max = H->max_reply;
        uint8_t *big = calloc(1, max + 1);
        int rc = big ? H->reply(H->ctx, conn->flow, big, max + 1) : -100;
        free(big);
        snprintf(text, sizeof text, "%llu %d", (unsigned long long)max, rc);
        return answer(conn->flow, text);
    }
    return H->reply(H->ctx, conn->flow, req, len);
}
"#;

/// Compiles [`PLUGIN_C`] into `dir` (with `defines`); `None` without a C
/// compiler.
fn build(dir: &Path, name: &str, defines: &[&str]) -> Option<PathBuf> {
    let src = dir.join("abi_plugin.c");
    std::fs::write(&src, PLUGIN_C).unwrap();
    let so = dir.join(name);
    let include = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-api/include");
    let built = Command::new("cc")
        .args([
            "-shared", "-fPIC", "-O1", "-Wall", "-Wextra", "-Werror", "-I", include,
        ])
        .args(defines)
        .arg("-o")
        .arg(&so)
        .arg(&src)
        .status();
    match built {
        Ok(s) if s.success() => Some(so),
        Ok(s) => panic!("compiling the ABI test plugin failed: {s}"),
        Err(e) => {
            eprintln!("skipped: no C compiler `cc` ({e})");
            None
        }
    }
}

/// One worker of `plugin` behind the Rust echo proxy plugin.
fn config(plugin: &Path, conf: &str) -> ServiceConfig {
    let mut cfg = ServiceConfig::single(plugin, 1);
    cfg.proxy_plugin = Binaries::locate().plugin("spp_echo");
    cfg.group_mut().plugin_conf = conf.to_string();
    cfg
}

#[test]
fn a_plugin_whose_init_refuses_fails_the_check_naming_file_role_and_code() {
    let dir = tempfile::tempdir().unwrap();
    let Some(so) = build(dir.path(), "libabi.so", &[]) else {
        return;
    };
    // A worker's conf.
    let service = Service::create(&config(&so, "refuse=42"));
    for cmd in ["check", "start"] {
        let out = service.spp(&[cmd]);
        let text = out.text();
        assert!(!out.ok(), "{cmd} passed: {text}");
        assert!(text.contains("group[0].plugin"), "{cmd}: {text}");
        assert!(text.contains(&so.display().to_string()), "{cmd}: {text}");
        assert!(text.contains("worker role"), "{cmd}: {text}");
        assert!(text.contains("spp_init returned 42"), "{cmd}: {text}");
    }
    assert!(!service.dir.path().join("run/spp.pid").exists());

    // The proxy's conf is proxy.plugin_conf.
    let mut cfg = config(&so, "");
    cfg.proxy_plugin = so.clone();
    cfg.proxy_plugin_conf = "refuse=-1".into();
    let service = Service::create(&cfg);
    let out = service.spp(&["check"]);
    let text = out.text();
    assert!(!out.ok(), "{text}");
    assert!(text.contains("proxy.plugin"), "{text}");
    assert!(text.contains("proxy role"), "{text}");
    assert!(
        text.contains("spp_init returned -1 (the proxy would exit with status 1)"),
        "{text}"
    );
}

#[test]
fn a_worker_whose_init_refuses_later_exits_with_its_code_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let Some(so) = build(dir.path(), "libabi.so", &[]) else {
        return;
    };
    let flag = dir.path().join("refuse-now");
    let service = Service::start(&config(&so, &format!("refuse_if={}", flag.display())));
    let mut client = TcpClient::connect(service.tcp()).expect("connect");
    assert_eq!(client.call(b"hello").expect("echo"), b"hello");

    std::fs::write(&flag, b"").unwrap();
    let old = service.pid_of("worker-g1-0").expect("worker pid");
    kill(old, libc::SIGKILL);
    let said = wait_for(Duration::from_secs(10), || {
        let log = std::fs::read_to_string(service.log_path("controller.log")).ok()?;
        log.contains("spp_init returned 9").then_some(log)
    })
    .unwrap_or_else(|| panic!("the controller never named the code:\n{}", service.logs()));
    assert!(
        said.contains("restarting in"),
        "retried with back-off:\n{said}"
    );
    let worker_log = std::fs::read_to_string(service.log_path("worker-g1-0.log")).unwrap();
    assert!(worker_log.contains("spp_init returned 9"), "{worker_log}");

    std::fs::remove_file(&flag).unwrap();
    service
        .wait_replaced("worker-g1-0", old, Duration::from_secs(15))
        .unwrap_or_else(|| panic!("the worker never came back:\n{}", service.logs()));
    let mut client = TcpClient::connect(service.tcp()).expect("connect");
    assert_eq!(client.call(b"again").expect("echo"), b"again");
}

#[test]
fn a_stateful_plugin_is_warned_about_only_where_its_group_scales() {
    let dir = tempfile::tempdir().unwrap();
    let Some(so) = build(dir.path(), "libstateful.so", &["-DSTATEFUL"]) else {
        return;
    };
    let mut scaling = config(&so, "");
    scaling.group_mut().min_workers = Some(1);
    scaling.group_mut().max_workers = Some(3);
    let out = Service::create(&scaling).spp(&["check"]);
    let text = out.text();
    assert!(out.ok(), "a warning is no refusal: {text}");
    assert!(text.contains("spp: warning:"), "{text}");
    assert!(text.contains("declares itself stateful"), "{text}");
    assert!(
        text.contains("min_workers = 1 and max_workers = 3"),
        "{text}"
    );

    let mut fixed = config(&so, "");
    fixed.group_mut().min_workers = Some(1);
    fixed.group_mut().max_workers = Some(1);
    let out = Service::create(&fixed).spp(&["check"]);
    assert!(out.ok(), "{}", out.text());
    assert!(!out.text().contains("stateful"), "{}", out.text());

    // The same plugin without the declaration: no warning while scaling.
    let Some(plain) = build(dir.path(), "libplain.so", &[]) else {
        return;
    };
    let mut scaling_plain = config(&plain, "");
    scaling_plain.group_mut().min_workers = Some(1);
    scaling_plain.group_mut().max_workers = Some(3);
    let out = Service::create(&scaling_plain).spp(&["check"]);
    assert!(out.ok(), "{}", out.text());
    assert!(!out.text().contains("stateful"), "{}", out.text());
}

#[test]
fn a_null_reply_is_a_bad_argument_and_max_reply_is_the_real_limit() {
    let dir = tempfile::tempdir().unwrap();
    let Some(so) = build(dir.path(), "libabi.so", &[]) else {
        return;
    };
    let service = Service::start(&config(&so, ""));
    let mut client = TcpClient::connect(service.tcp()).expect("connect");
    assert_eq!(client.call(b"nullarg").expect("answer"), b"-6");
    let answer = client.call(b"maxreply").expect("answer");
    let answer = String::from_utf8(answer).unwrap();
    let (max, rc) = answer.split_once(' ').expect("max and code");
    let max: u64 = max.parse().unwrap();
    // The test config's rings are 4 MiB: the largest record is under that.
    assert!(max > 0 && max < 4 << 20, "{answer}");
    assert_eq!(rc, "-3", "one byte more is SPP_ERR_TOO_LARGE: {answer}");
}

#[test]
fn a_worker_learns_that_a_connection_it_served_closed() {
    let dir = tempfile::tempdir().unwrap();
    let Some(so) = build(dir.path(), "libabi.so", &[]) else {
        return;
    };
    let service = Service::start(&config(&so, ""));
    let mut watcher = TcpClient::connect(service.tcp()).expect("connect");
    assert_eq!(watcher.call(b"closed?").expect("answer"), b"0 0");

    let mut gone = TcpClient::connect(service.tcp()).expect("connect");
    let flow = String::from_utf8(gone.call(b"flow?").expect("answer")).unwrap();
    drop(gone);
    let seen = wait_for(Duration::from_secs(10), || {
        let said = String::from_utf8(watcher.call(b"closed?").ok()?).ok()?;
        (said != "0 0").then_some(said)
    })
    .unwrap_or_else(|| panic!("spp_flow_closed never came:\n{}", service.logs()));
    assert_eq!(seen, format!("1 {flow}"), "once, for that flow");
}
