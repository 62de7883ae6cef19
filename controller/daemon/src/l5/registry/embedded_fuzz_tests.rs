//! Fuzz target for the embedded registry's records: whatever another
//! process (or user) left in a registration file, [`scan_dir`] never
//! panics, and every instance it gives out can be called (weight in
//! bounds, a real address and port) and stays within [`MAX_INSTANCES`].
//! Case count: [`crate::fuzz_tests::config`] (`SPP_FUZZ_CASES` for the
//! long mode).

use super::*;
use proptest::prelude::*;
use serde_json::{json, Value};

/// The ttl of the scans.
const TTL: Duration = Duration::from_secs(10);

/// A JSON value of any kind, small.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-z_]{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An address as a registry file may spell it.
fn addr() -> impl Strategy<Value = Value> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| Value::from(format!("{}:{port}", std::net::Ipv4Addr::from(ip)))),
        (any::<[u16; 8]>(), any::<u16>()).prop_map(|(ip, port)| Value::from(format!(
            "[{}]:{port}",
            std::net::Ipv6Addr::from(ip)
        ))),
        Just(Value::from("0.0.0.0:80")),
        Just(Value::from("127.0.0.1:0")),
        any_json(),
    ]
}

/// A record's fields, each right or wrong.
fn record_json() -> impl Strategy<Value = Value> {
    let me = std::process::id();
    let now = unix_ms(SystemTime::now());
    let instance = (any::<u32>(), any::<u32>(), addr(), prop_oneof![
        Just(Value::from(MIN_WEIGHT)),
        Just(Value::from(MAX_WEIGHT)),
        any::<u32>().prop_map(Value::from),
        any_json(),
    ])
        .prop_map(|(modid, cmdid, addr, weight)| {
            json!({ "sid": { "modid": modid, "cmdid": cmdid }, "addr": addr, "weight": weight })
        });
    (
        prop_oneof![
            Just(Value::from(me)),
            any::<u32>().prop_map(Value::from),
            any_json()
        ],
        prop_oneof![
            (0..2 * TTL.as_millis() as u64)
                .prop_map(move |age| Value::from(now.saturating_sub(age))),
            any::<u64>().prop_map(Value::from),
            any_json(),
        ],
        prop_oneof![
            proptest::collection::vec(instance, 0..6).prop_map(Value::from),
            any_json(),
        ],
        any_json(),
    )
        .prop_map(|(pid, heartbeat, instances, extra)| {
            json!({
                "service": "fuzz",
                "pid": pid,
                "heartbeat_ms": heartbeat,
                "instances": instances,
                "extra": extra,
            })
        })
}

/// File contents: bytes, JSON of any shape, or a record's shape.
fn contents() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        any_json().prop_map(|v| v.to_string().into_bytes()),
        record_json().prop_map(|v| v.to_string().into_bytes()),
        record_json().prop_map(|v| {
            let mut text = v.to_string().into_bytes();
            text.truncate(text.len() / 2);
            text
        }),
    ]
}

proptest! {
    #![proptest_config(crate::fuzz_tests::config())]

    /// Registration files of any contents, one or several.
    #[test]
    fn a_scan_survives_any_registration_files(
        files in proptest::collection::vec(contents(), 1..4),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        for (n, text) in files.iter().enumerate() {
            std::fs::write(dir.path().join(format!("fuzz-{n}.json")), text).expect("write");
        }
        let scan = scan_dir(dir.path(), TTL, SystemTime::now());
        let scan = scan.map_err(TestCaseError::fail)?;
        prop_assert!(scan.instances.len() <= MAX_INSTANCES);
        for i in &scan.instances {
            prop_assert!((MIN_WEIGHT..=MAX_WEIGHT).contains(&i.weight), "{i:?}");
            prop_assert!(i.addr.port() != 0 && !i.addr.ip().is_unspecified(), "{i:?}");
        }
    }
}
