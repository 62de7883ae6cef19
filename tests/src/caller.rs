//! The commands of the test plugin `libspp_caller.so` (tests/plugins/caller)
//! and what it answers, in one place for every test.

use std::net::SocketAddr;

/// The plugin's library name for [`crate::Binaries::plugin`].
pub const PLUGIN: &str = "spp_caller";

/// Exception answer: the worker died holding the request.
pub const BUSY_DIED: &[u8] = b"busy:died";

/// `tcp <addr> <timeout_ms> <cap> <payload>`: one TCP call sending
/// `payload` as a frame, answered `ok:<answer payload>` or `err:<variant>`.
pub fn tcp(addr: SocketAddr, timeout_ms: u64, cap: usize, payload: &str) -> Vec<u8> {
    format!("tcp {addr} {timeout_ms} {cap} {payload}").into_bytes()
}

/// `udp <addr> <timeout_ms> <cap> <payload>`: the same over UDP.
pub fn udp(addr: SocketAddr, timeout_ms: u64, cap: usize, payload: &str) -> Vec<u8> {
    format!("udp {addr} {timeout_ms} {cap} {payload}").into_bytes()
}

/// `many <wait_for> <timeout_ms> <cap> <a1,a2,..> <payload>`: one TCP leg
/// per address in one `call_many`; answered `n=<successes>` then one
/// outcome per leg, a line each (see [`many_answer`]).
pub fn many(
    wait_for: usize,
    timeout_ms: u64,
    cap: usize,
    addrs: &[SocketAddr],
    payload: &str,
) -> Vec<u8> {
    let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    format!(
        "many {wait_for} {timeout_ms} {cap} {} {payload}",
        addrs.join(",")
    )
    .into_bytes()
}

/// What `many` answers for `successes` and these leg outcomes.
pub fn many_answer(successes: usize, legs: &[&str]) -> Vec<u8> {
    let mut text = format!("n={successes}");
    for leg in legs {
        text.push('\n');
        text.push_str(leg);
    }
    text.into_bytes()
}

/// `sleep <ms>`: answered `slept` (or `err:<HostError>`).
pub fn sleep(ms: u64) -> Vec<u8> {
    format!("sleep {ms}").into_bytes()
}

/// `panic`: the plugin panics.
pub const PANIC: &[u8] = b"panic";

/// `ok:<payload>`, as bytes.
pub fn ok(payload: &str) -> Vec<u8> {
    format!("ok:{payload}").into_bytes()
}

/// `err:<variant>`, as bytes (`err("Timeout")`).
pub fn err(variant: &str) -> Vec<u8> {
    format!("err:{variant}").into_bytes()
}
