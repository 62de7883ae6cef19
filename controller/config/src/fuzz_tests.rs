//! Fuzz targets for the config parser: arbitrary TOML text, and the
//! example configs with a value replaced, a line inserted or the text cut
//! short, through [`raw::parse`] and [`validate::validate_on`]; and the L5
//! routes file ([`l5::parse_routes`]). Never a panic: either a config, or
//! an error that names the file, the key and the reason.
//!
//! Bounded in the normal test suite ([`DEFAULT_CASES`] cases per target);
//! `SPP_FUZZ_CASES=100000 cargo test -p spp-config fuzz_tests` is the long
//! mode.

use crate::{l5, raw, validate, ConfigError};
use proptest::prelude::*;
use std::path::Path;

/// Cases per target in the normal suite.
const DEFAULT_CASES: u32 = 256;
/// The environment variable that sets the cases per target (long mode).
const CASES_ENV: &str = "SPP_FUZZ_CASES";
/// The file the errors must name.
const FILE: &str = "/fuzz/spp.toml";
/// Cores of the machine the config is validated for.
const CPUS: usize = 4;
/// The configs mutated: the shipped examples.
const EXAMPLES: &[&str] = &[
    include_str!("../../../examples/echo/spp.toml"),
    include_str!("../../../examples/two-group/spp.toml"),
    include_str!("../../../examples/relay/spp.toml"),
];

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

/// Parses and validates `text`; an error must name the file and a key.
fn check(text: &str) -> Result<(), TestCaseError> {
    let file = Path::new(FILE);
    let result = raw::parse(file, text).and_then(|raw| validate::validate_on(file, raw, CPUS));
    match result {
        Ok(_) => Ok(()),
        Err(e @ (ConfigError::Syntax { .. } | ConfigError::Invalid { .. })) => {
            let said = e.to_string();
            prop_assert!(said.starts_with(FILE), "names the file: {said}");
            prop_assert!(
                !e.key().unwrap_or_default().is_empty(),
                "names a key: {said}"
            );
            Ok(())
        }
        Err(e) => Err(TestCaseError::fail(format!("unexpected error kind: {e}"))),
    }
}

/// TOML values, the kinds the config takes and the edges of each.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (0u64..100_000).prop_map(|n| n.to_string()),
        Just("18446744073709551615".to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        prop::sample::select(vec!["nan", "inf", "-inf", "-0.0", "1e308", "true", "false"])
            .prop_map(str::to_string),
        "[0-9]{1,22}(ns|us|ms|s|m|h|d|y|B|KiB|MiB|GiB|TiB|PiB|EiB|kB|GB)?"
            .prop_map(|s| format!("{s:?}")),
        "[ -~]{0,24}".prop_map(|s| format!("{s:?}")),
        "(tcp|udp|unix)://[0-9.:\\[\\]a-z/]{0,24}".prop_map(|s| format!("{s:?}")),
        Just("[]".to_string()),
        "[0-9a-z\"., ]{0,20}".prop_map(|s| format!("[{s}]")),
        Just("{}".to_string()),
    ]
}

/// An example config with one change.
fn mutated() -> impl Strategy<Value = String> {
    let example = prop::sample::select(EXAMPLES.to_vec());
    prop_oneof![
        // A value replaced.
        (example.clone(), any::<prop::sample::Index>(), value()).prop_map(|(text, at, v)| {
            let lines: Vec<&str> = text.lines().collect();
            let keyed: Vec<usize> = (0..lines.len())
                .filter(|&i| !lines[i].trim_start().starts_with('#') && lines[i].contains('='))
                .collect();
            let pick = keyed[at.index(keyed.len())];
            lines
                .iter()
                .enumerate()
                .map(|(i, line)| match (i == pick, line.split_once('=')) {
                    (true, Some((key, _))) => format!("{key}= {v}"),
                    _ => line.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n")
        }),
        // A line inserted.
        (example.clone(), any::<prop::sample::Index>(), "[ -~]{0,40}").prop_map(
            |(text, at, line)| {
                let mut lines: Vec<&str> = text.lines().collect();
                lines.insert(at.index(lines.len() + 1), &line);
                lines.join("\n")
            }
        ),
        // The text cut short.
        (example, any::<prop::sample::Index>()).prop_map(|(text, at)| {
            let mut cut = at.index(text.len() + 1);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text[..cut].to_string()
        }),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Text of any shape.
    #[test]
    fn any_text_is_a_config_or_a_named_error(text in ".{0,300}") {
        check(&text)?;
    }

    /// Text of TOML's shape: tables, keys and values.
    #[test]
    fn toml_shaped_text_is_a_config_or_a_named_error(
        text in "((\\[{1,2}[a-z0-9_.]{0,10}\\]{1,2}|[a-z_]{1,16} ?= ?[\"\\[{0-9a-z.:/ ,}\\]]{0,20})\n){0,12}",
    ) {
        check(&text)?;
    }

    /// The examples with a value replaced, a line inserted or cut short.
    #[test]
    fn a_mutated_example_is_a_config_or_a_named_error(text in mutated()) {
        check(&text)?;
    }

    /// A routes file of any text: instances or an error naming the file.
    #[test]
    fn any_routes_file_is_instances_or_a_named_error(
        text in prop_oneof![
            ".{0,200}",
            "([0-9]{0,12}(:[0-9]{0,12})? +[0-9.:\\[\\]a-f]{0,30} *[0-9]{0,12}( *#.{0,5})?\n){0,8}",
        ],
    ) {
        let path = Path::new("/fuzz/routes");
        if let Err(why) = l5::parse_routes(path, &text) {
            prop_assert!(why.starts_with("/fuzz/routes:"), "names the file: {why}");
        }
    }
}
