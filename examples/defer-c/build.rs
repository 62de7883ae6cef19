//! Compiles `defer.c` into `libspp_defer_c.so` and puts it next to the
//! Rust plugins in the profile directory (`target/<profile>/`), with
//! `spp_plugin_api::c_build` (see there why a build script and not a
//! `cdylib`). `-pthread`: the plugin answers from a thread of its own.

use spp_plugin_api::c_build::CPlugin;

fn main() -> Result<(), String> {
    CPlugin::new("defer.c", "../../plugin-api/include").build("libspp_defer_c.so", &["-pthread"])
}
