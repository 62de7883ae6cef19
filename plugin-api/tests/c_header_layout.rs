//! The C header and the Rust mirror must agree byte for byte: compile a C
//! program against `include/spp_plugin.h` that prints sizes and offsets,
//! and compare them with `spp_plugin_api::abi`.

use spp_plugin_api::abi::{SppAddr, SppCall, SppConnInfo, SppHost, SppL5Route};
use std::mem::{offset_of, size_of};
use std::process::Command;

const PROGRAM: &str = r#"
#include <stdio.h>
#include <stddef.h>
#include "spp_plugin.h"
int main(void) {
    printf("addr %zu %zu %zu\n", sizeof(spp_addr), offsetof(spp_addr, port), offsetof(spp_addr, ip));
    printf("conn %zu %zu %zu %zu %zu\n", sizeof(spp_conn_info), offsetof(spp_conn_info, proto),
           offsetof(spp_conn_info, listener), offsetof(spp_conn_info, local), offsetof(spp_conn_info, remote));
    printf("host %zu %zu %zu %zu %zu %zu %zu\n", sizeof(spp_host), offsetof(spp_host, ctx), offsetof(spp_host, reply),
           offsetof(spp_host, close), offsetof(spp_host, log), offsetof(spp_host, count),
           offsetof(spp_host, record_latency));
    printf("l5 %zu %zu %zu %zu %zu %zu\n", sizeof(spp_l5_route), offsetof(spp_l5_route, addr),
           offsetof(spp_l5_route, slot), offsetof(spp_host, get_route), offsetof(spp_host, get_route_hash),
           offsetof(spp_host, report));
    printf("call %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu\n", sizeof(spp_call), offsetof(spp_call, addr),
           offsetof(spp_call, modid), offsetof(spp_call, hash_key), offsetof(spp_call, req),
           offsetof(spp_call, check), offsetof(spp_call, answer), offsetof(spp_call, answer_len),
           offsetof(spp_call, result), offsetof(spp_call, route), offsetof(spp_host, call),
           offsetof(spp_host, call_many));
    printf("sleep %zu\n", offsetof(spp_host, sleep));
    printf("max_reply %zu %d\n", offsetof(spp_host, max_reply), SPP_ERR_BAD_ARG);
    printf("note %zu %zu %zu %zu %u\n", offsetof(spp_conn_info, note), offsetof(spp_conn_info, note_len),
           offsetof(spp_conn_info, _reserved2), offsetof(spp_host, set_note), SPP_NOTE_MAX);
    printf("abi %u\n", SPP_PLUGIN_ABI_VERSION);
    return 0;
}
"#;

#[test]
fn c_header_and_rust_mirror_agree() {
    let dir = std::env::temp_dir().join(format!("spp-c-header-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("layout.c");
    let exe = dir.join("layout");
    std::fs::write(&src, PROGRAM).unwrap();
    let include = concat!(env!("CARGO_MANIFEST_DIR"), "/include");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Werror", "-I", include, "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}`: {e}"));
    assert!(status.success(), "compiling against spp_plugin.h failed");
    let out = Command::new(&exe).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    let expected = format!(
        "addr {} {} {}\nconn {} {} {} {} {}\nhost {} {} {} {} {} {} {}\nl5 {} {} {} {} {} {}\ncall {} {} {} {} {} {} {} {} {} {} {} {}\nsleep {}\nmax_reply {} {}\nnote {} {} {} {} {}\nabi {}\n",
        size_of::<SppAddr>(),
        offset_of!(SppAddr, port),
        offset_of!(SppAddr, ip),
        size_of::<SppConnInfo>(),
        offset_of!(SppConnInfo, proto),
        offset_of!(SppConnInfo, listener),
        offset_of!(SppConnInfo, local),
        offset_of!(SppConnInfo, remote),
        size_of::<SppHost>(),
        offset_of!(SppHost, ctx),
        offset_of!(SppHost, reply),
        offset_of!(SppHost, close),
        offset_of!(SppHost, log),
        offset_of!(SppHost, count),
        offset_of!(SppHost, record_latency),
        size_of::<SppL5Route>(),
        offset_of!(SppL5Route, addr),
        offset_of!(SppL5Route, slot),
        offset_of!(SppHost, get_route),
        offset_of!(SppHost, get_route_hash),
        offset_of!(SppHost, report),
        size_of::<SppCall>(),
        offset_of!(SppCall, addr),
        offset_of!(SppCall, modid),
        offset_of!(SppCall, hash_key),
        offset_of!(SppCall, req),
        offset_of!(SppCall, check),
        offset_of!(SppCall, answer),
        offset_of!(SppCall, answer_len),
        offset_of!(SppCall, result),
        offset_of!(SppCall, route),
        offset_of!(SppHost, call),
        offset_of!(SppHost, call_many),
        offset_of!(SppHost, sleep),
        offset_of!(SppHost, max_reply),
        spp_plugin_api::abi::SPP_ERR_BAD_ARG,
        offset_of!(SppConnInfo, note),
        offset_of!(SppConnInfo, note_len),
        offset_of!(SppConnInfo, _reserved2),
        offset_of!(SppHost, set_note),
        spp_plugin_api::abi::SPP_NOTE_MAX,
        spp_plugin_api::SPP_PLUGIN_ABI_VERSION,
    );
    assert_eq!(text, expected);
}
