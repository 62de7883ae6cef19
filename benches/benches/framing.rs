//! The cost of framing: cutting [`FRAMES`] pipelined 64-byte echo frames
//! (4-byte big-endian length + payload) off one buffer, the way the proxy
//! does after a read. Throughput is in frames/s.
//!
//! * `framing/u32_be_prefixed_64B`: the Rust helper
//!   ([`spp_plugin_api::framing::u32_be_prefixed`]) called directly.
//! * `framing/plugin_input_ffi_64B`: the same framing done by the bundled
//!   echo plugin, `libspp_echo.so` loaded with
//!   [`spp_plugin_api::host::PluginLibrary`], through its `spp_input` hook
//!   (an indirect call across the C ABI, the plugin's panic guard, and the
//!   same helper inside): side by side with the above, the FFI cost per
//!   frame.
//!
//! The plugin is looked for in `$SPP_ECHO_PLUGIN`, else next to this bench
//! binary's profile directory (`target/release/libspp_echo.so`). Build it
//! first with `cargo build --release -p spp-example-echo`; without it the
//! FFI benchmark is skipped with a note on stderr.

mod common;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use spp_ipc::host_kit::{self, HostCtx, RoleFns, TableRole};
use spp_ipc::plugin_metrics::PluginMetrics;
use spp_plugin_api::abi::{SppConnInfo, SppHost, SPP_OK};
use spp_plugin_api::framing::{encode_u32_be_prefixed, u32_be_prefixed};
use spp_plugin_api::host::{PluginLibrary, Role};
use spp_plugin_api::Input;
use std::ffi::{c_int, c_void};
use std::path::PathBuf;

/// Payload bytes of every frame.
const PAYLOAD_BYTES: usize = 64;
/// Frames in the pipelined buffer.
const FRAMES: usize = 1024;
/// The framing limit, as the proxy's default `max_request_size`.
const MAX_PAYLOAD: usize = 1 << 20;
/// Overrides where the echo plugin is loaded from.
const PLUGIN_ENV: &str = "SPP_ECHO_PLUGIN";
/// The echo plugin's file name in the target directory.
const PLUGIN_FILE: &str = "libspp_echo.so";

/// [`FRAMES`] frames back to back.
fn pipelined() -> Vec<u8> {
    (0..FRAMES)
        .flat_map(|i| encode_u32_be_prefixed(&[i as u8; PAYLOAD_BYTES]))
        .collect()
}

/// Cuts every frame off `buf` with `cut` (bytes of the next frame, 0 when
/// incomplete); returns the frames seen.
#[inline(always)]
fn count_frames(buf: &[u8], mut cut: impl FnMut(&[u8]) -> usize) -> usize {
    let mut used = 0;
    let mut frames = 0;
    loop {
        let n = cut(&buf[used..]);
        if n == 0 {
            return frames;
        }
        used += n;
        frames += 1;
    }
}

/// The echo plugin: `$SPP_ECHO_PLUGIN`, or `target/<profile>/` found from
/// this binary (`target/<profile>/deps/framing-*`).
fn plugin_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(PLUGIN_ENV) {
        return Some(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join(PLUGIN_FILE);
    path.exists().then_some(path)
}

/// `spp_host.reply`: the input hook never replies.
unsafe extern "C" fn no_reply(_: *mut c_void, _: u64, _: *const u8, _: usize) -> c_int {
    SPP_OK
}

/// `spp_host.close`: the input hook never closes.
unsafe extern "C" fn no_close(_: *mut c_void, _: u64) -> c_int {
    SPP_OK
}

/// The proxy's host table built by the shared kit (log, metrics into a
/// private block) with services that never reply or close; leaked with
/// its context: the plugin may keep the pointer.
fn host_table() -> &'static SppHost {
    let metrics: &'static PluginMetrics = Box::leak(PluginMetrics::boxed());
    let ctx: &'static HostCtx<()> = Box::leak(Box::new(HostCtx::new(metrics, ())));
    Box::leak(Box::new(host_kit::table(
        TableRole::Proxy,
        ctx,
        RoleFns::without_l5(no_reply, no_close),
    )))
}

fn framing(c: &mut Criterion) {
    let buf = pipelined();
    let mut group = c.benchmark_group("framing");
    group.throughput(Throughput::Elements(FRAMES as u64));

    group.bench_function("u32_be_prefixed_64B", |b| {
        b.iter(|| {
            let frames = count_frames(black_box(&buf), |rest| {
                match u32_be_prefixed(rest, MAX_PAYLOAD) {
                    Input::Complete(n) => n,
                    Input::NeedMore | Input::Close => 0,
                }
            });
            assert_eq!(frames, FRAMES);
        })
    });

    let Some(path) = plugin_path() else {
        eprintln!(
            "framing/plugin_input_ffi_64B skipped: {PLUGIN_FILE} not found \
             (cargo build --release -p spp-example-echo, or set {PLUGIN_ENV})"
        );
        group.finish();
        return;
    };
    let plugin = PluginLibrary::load(&path, Role::Proxy)
        .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()));
    // SAFETY: the table is leaked: valid at the same address until after
    // `fini`.
    let rc = unsafe { plugin.init(host_table(), c"") };
    assert_eq!(rc, 0, "echo plugin init failed");
    let conn = SppConnInfo::default();
    group.bench_function("plugin_input_ffi_64B", |b| {
        b.iter(|| {
            let frames = count_frames(black_box(&buf), |rest| match plugin.input(&conn, rest) {
                Some(n) if n > 0 => n as usize,
                _ => 0,
            });
            assert_eq!(frames, FRAMES);
        })
    });
    group.finish();
    plugin.fini();
}

criterion_group! {
    name = benches;
    config = common::quick();
    targets = framing
}
criterion_main!(benches);
