//! Fuzz targets for what the controller takes from outside: the control
//! socket's request lines ([`control`]: arbitrary bytes and JSON get an
//! error answer, never a panic, and the server keeps answering), and in
//! `l5::registry::embedded`'s own fuzz file the registry's records. The
//! case count ([`config`]) is shared by both.
//!
//! Bounded in the normal test suite ([`DEFAULT_CASES`] cases per target);
//! `SPP_FUZZ_CASES=100000 cargo test -p spp-daemon --lib fuzz_tests` is the
//! long mode.

use crate::control::{self, Pending, Request};
use proptest::prelude::*;
use spp_config::defaults;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Cases per target in the normal suite.
const DEFAULT_CASES: u32 = 256;
/// The environment variable that sets the cases per target (long mode).
const CASES_ENV: &str = "SPP_FUZZ_CASES";

/// [`DEFAULT_CASES`], or the number in [`CASES_ENV`]; no regression files
/// (what a run finds becomes a named regression test).
pub(crate) fn config() -> ProptestConfig {
    let cases = std::env::var(CASES_ENV)
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(DEFAULT_CASES);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// What the stub supervisor answers to every well-formed request.
fn served() -> serde_json::Value {
    serde_json::json!({ "served": true })
}

/// A control socket served for the whole test run (a thread with its own
/// runtime and a supervisor stub that answers [`served`]); its path.
fn server() -> &'static PathBuf {
    static SERVER: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &SERVER
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("spp.sock");
            let listener = control::bind(&path).expect("bind");
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let (tx, mut rx) = tokio::sync::mpsc::channel::<Pending>(16);
                    let listener = tokio::net::UnixListener::from_std(listener).expect("listener");
                    tokio::spawn(control::serve(listener, tx));
                    while let Some(pending) = rx.recv().await {
                        let _ = pending.reply.send(served());
                    }
                });
            });
            (dir, path)
        })
        .1
}

/// Sends `bytes` on a fresh connection, closes the sending side, and
/// returns the one answer line, parsed.
fn ask(bytes: &[u8]) -> serde_json::Value {
    let mut stream = UnixStream::connect(server()).expect("connect");
    stream
        .set_read_timeout(Some(2 * defaults::CONTROL_IO_TIMEOUT))
        .expect("timeout");
    // The server may answer and close before reading everything.
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut line = Vec::new();
    BufReader::new(stream)
        .read_until(b'\n', &mut line)
        .expect("an answer");
    serde_json::from_slice(&line).expect("the answer is JSON")
}

/// Request lines: bytes of any kind, JSON of any shape, and near misses of
/// the real requests.
fn line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        "[ -~]{0,64}".prop_map(String::into_bytes),
        r#"\{ ?("cmd"|"window_s"|"x") ?: ?("status"|"stop"|"stat"|"reload"|"l5"|[0-9-]{1,22}|null|true|\[\]|\{\})( ?, ?"window_s" ?: ?[0-9.e-]{0,22})?\}"#
            .prop_map(String::into_bytes),
        Just(vec![b'{'; defaults::MAX_CONTROL_LINE + 8]),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Any line parses into a request or an `{"error": ...}` answer.
    #[test]
    fn any_request_line_is_a_request_or_an_error_answer(bytes in line()) {
        if let Err(answer) = control::parse_request(&bytes) {
            prop_assert!(answer["error"].as_str().is_some_and(|e| e.starts_with("bad request")));
        }
    }

    /// Through the socket: every connection gets one JSON answer, an error
    /// unless the bytes held a well-formed request line.
    #[test]
    fn the_control_socket_answers_any_bytes(bytes in line(), newline in any::<bool>()) {
        let mut sent = bytes.clone();
        if newline {
            sent.push(b'\n');
        }
        let answer = ask(&sent);
        let first = sent.split_inclusive(|b| *b == b'\n').next().unwrap_or_default();
        let well_formed = first.ends_with(b"\n")
            && first.len() <= defaults::MAX_CONTROL_LINE
            && serde_json::from_slice::<Request>(first).is_ok();
        if well_formed {
            prop_assert_eq!(answer, served());
        } else {
            prop_assert!(answer["error"].is_string(), "{answer}");
        }
    }
}
