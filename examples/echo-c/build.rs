//! Compiles `echo.c` into `libspp_echo_c.so`, plus the wrong-ABI test variant
//! `libspp_echo_c_abi99.so` (the same source built with
//! `-DSPP_TEST_ABI_VERSION=99`), and puts both next to the Rust plugins in the
//! profile directory (`target/<profile>/`), with
//! `spp_plugin_api::c_build` (see there why a build script and not a
//! `cdylib`).

use spp_plugin_api::c_build::CPlugin;

/// The wrong ABI version the test variant exports.
const TEST_ABI_VERSION: u32 = 99;

fn main() -> Result<(), String> {
    let plugin = CPlugin::new("echo.c", "../../plugin-api/include");
    // The plugin every config points at.
    plugin.build("libspp_echo_c.so", &[])?;
    // The variant that reports a wrong ABI version (for loader tests).
    let abi99 = format!("-DSPP_TEST_ABI_VERSION={TEST_ABI_VERSION}");
    plugin.build("libspp_echo_c_abi99.so", &[&abi99])
}
