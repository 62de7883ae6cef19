//! Fuzz targets for the framing helpers ([`framing`]), which every plugin
//! that uses them runs on bytes straight from a client, and on the
//! `plugin_conf` text they parse. They must never panic; a frame they cut
//! lies inside the buffer and respects the limit.
//!
//! Bounded in the normal test suite ([`DEFAULT_CASES`] cases per target);
//! `SPP_FUZZ_CASES=100000 cargo test -p spp-plugin-api fuzz_tests` is the
//! long mode.

use crate::framing::{self, U32_PREFIX_LEN};
use crate::Input;
use proptest::prelude::*;

/// Cases per target in the normal suite.
const DEFAULT_CASES: u32 = 256;
/// The environment variable that sets the cases per target (long mode).
const CASES_ENV: &str = "SPP_FUZZ_CASES";

/// [`DEFAULT_CASES`], or the number in [`CASES_ENV`]; no regression files
/// (what a run finds becomes a named regression test).
fn config() -> ProptestConfig {
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

/// A limit: small, around the frames generated, or none.
fn limit() -> impl Strategy<Value = usize> {
    prop_oneof![0usize..64, 0usize..4096, Just(usize::MAX), any::<usize>()]
}

proptest! {
    #![proptest_config(config())]

    /// Any bytes: a complete frame lies inside the buffer, holds its
    /// prefix and respects the limit; a too-long announcement closes.
    #[test]
    fn u32_be_prefixed_cuts_only_inside_the_buffer(
        buf in proptest::collection::vec(any::<u8>(), 0..256),
        max in limit(),
    ) {
        match framing::u32_be_prefixed(&buf, max) {
            Input::Complete(n) => {
                prop_assert!(n >= U32_PREFIX_LEN && n <= buf.len(), "{n} of {}", buf.len());
                prop_assert!(n - U32_PREFIX_LEN <= max);
            }
            Input::NeedMore => prop_assert!(
                buf.len() < U32_PREFIX_LEN
                    || u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize
                        > buf.len() - U32_PREFIX_LEN
            ),
            Input::Close => prop_assert!(buf.len() >= U32_PREFIX_LEN),
        }
    }

    /// Encoded frames, back to back and cut anywhere, come out whole and
    /// in order: never a frame boundary where there is none.
    #[test]
    fn encoded_frames_split_back(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let stream: Vec<u8> = payloads.iter().flat_map(|p| framing::encode_u32_be_prefixed(p)).collect();
        let cut = cut.index(stream.len() + 1);
        let mut at = 0;
        let mut seen = 0;
        while let Input::Complete(n) = framing::u32_be_prefixed(&stream[at..cut], 64) {
            prop_assert_eq!(&stream[at + U32_PREFIX_LEN..at + n], &payloads[seen][..]);
            at += n;
            seen += 1;
        }
        prop_assert!(seen <= payloads.len());
        if cut == stream.len() {
            prop_assert_eq!(seen, payloads.len());
        }
    }

    /// Any `plugin_conf` text gives a limit or an error naming the item.
    #[test]
    fn max_payload_from_conf_never_panics(
        conf in prop_oneof![
            ".*",
            "(max_payload=[0-9]{0,25}|[a-z_]{0,12}=?[0-9a-z]{0,4})([, ]{1,2}(max_payload=[0-9]{0,25}|[a-z_]{0,12}))*",
        ],
    ) {
        match framing::max_payload_from_conf(&conf, 7) {
            Ok(_) => {}
            Err(why) => prop_assert!(why.contains("max_payload") || why.contains("unknown setting"), "{why}"),
        }
    }
}
