//! The Rust plugins export exactly the hooks they implement: the required
//! ones, and the optional ones listed in their `export_plugin!` — an
//! optional hook they do not have is absent from the `.so`, as in a C
//! plugin, so the host applies its default.

use spp_tests::Binaries;

/// The hooks every plugin exports.
const REQUIRED: [&str; 4] = [
    "spp_plugin_abi_version",
    "spp_init",
    "spp_input",
    "spp_process",
];
/// The optional hooks.
const OPTIONAL: [&str; 4] = ["spp_route", "spp_exception", "spp_close", "spp_fini"];

/// The optional hooks `plugin` exports.
fn optional_hooks(plugin: &str) -> Vec<&'static str> {
    let path = Binaries::locate().plugin(plugin);
    // SAFETY: loading runs no code of the plugin beyond what the Rust
    // runtime of a cdylib runs at load (none of its hooks); the library
    // is dropped before the test ends.
    let lib = unsafe { libloading::Library::new(&path) }
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let has = |name: &str| {
        // SAFETY: the symbol is only looked up, never called.
        unsafe { lib.get::<unsafe extern "C" fn()>(name.as_bytes()) }.is_ok()
    };
    for name in REQUIRED {
        assert!(has(name), "{plugin} lacks the required {name}");
    }
    OPTIONAL.into_iter().filter(|name| has(name)).collect()
}

#[test]
fn a_plugin_exports_only_the_optional_hooks_it_implements() {
    assert_eq!(optional_hooks("spp_echo"), Vec::<&str>::new());
    assert_eq!(optional_hooks("spp_two_group"), ["spp_route"]);
    assert_eq!(
        optional_hooks(spp_tests::faulty::PLUGIN),
        ["spp_route", "spp_exception"]
    );
    assert_eq!(
        optional_hooks(spp_tests::relay::PLUGIN),
        ["spp_exception", "spp_fini"]
    );
}
