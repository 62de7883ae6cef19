//! What the test plugin `libspp_faulty.so` (tests/plugins/faulty) answers
//! and the payloads that drive it, in one place for every test.

/// The plugin's library name for [`crate::Binaries::plugin`].
pub const PLUGIN: &str = "spp_faulty";

/// What every exception answer starts with.
pub const BUSY_PREFIX: &[u8] = b"busy";
/// Exception answer: no live worker in the routed group.
pub const BUSY_NO_WORKER: &[u8] = b"busy:noworker";
/// Exception answer: the worker died holding the request.
pub const BUSY_DIED: &[u8] = b"busy:died";
/// Exception answer: the request waited past `msg_timeout`.
pub const BUSY_TIMEOUT: &[u8] = b"busy:timeout";

/// Exception answer: refused as a poison request (`SPP_EXC_POISON`).
pub const BUSY_POISON: &[u8] = b"busy:poison";
/// `abort`: the plugin aborts the worker process.
pub const ABORT: &[u8] = b"abort";

/// Whether `reply` is one of the exception hook's answers.
pub fn is_busy(reply: &[u8]) -> bool {
    reply.starts_with(BUSY_PREFIX)
}

/// `sleep:<ms>` with a tag, so every request's echo is distinct.
pub fn sleep(ms: u64, tag: &str) -> Vec<u8> {
    format!("sleep:{ms}:{tag}").into_bytes()
}

/// `count:<name>:<delta>`: adds `delta` to the plugin counter `name`.
pub fn count(name: &str, delta: u64) -> Vec<u8> {
    format!("count:{name}:{delta}").into_bytes()
}

/// `lat:<name>:<micros>`: one latency sample of `micros` µs in `name`.
pub fn lat(name: &str, micros: u64) -> Vec<u8> {
    format!("lat:{name}:{micros}").into_bytes()
}
