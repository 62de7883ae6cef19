//! Compiles `relay.c` into `libspp_relay_c.so` and puts it next to the Rust
//! plugins in the profile directory (`target/<profile>/`), with
//! `spp_plugin_api::c_build` (see there why a build script and not a
//! `cdylib`).

use spp_plugin_api::c_build::CPlugin;

fn main() -> Result<(), String> {
    CPlugin::new("relay.c", "../../plugin-api/include").build("libspp_relay_c.so", &[])
}
