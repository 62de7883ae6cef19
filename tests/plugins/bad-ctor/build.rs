//! Compiles `bad_ctor.c` once per fate into `libspp_bad_ctor_<fate>.so`
//! (the fate chosen by `-DBAD_CTOR_<FATE>`) and puts each next to the other
//! plugins in the profile directory (`target/<profile>/`), with
//! `spp_plugin_api::c_build` (see there why a build script and not a
//! `cdylib`).

use spp_plugin_api::c_build::CPlugin;

/// The fates (keep in step with `FATES` in src/lib.rs).
const FATES: &[&str] = &[
    "exit0",
    "exit7",
    "abort",
    "segv",
    "hang",
    "chatter_exit0",
    "chatter",
    "fork",
];

fn main() -> Result<(), String> {
    let plugin = CPlugin::new("bad_ctor.c", "../../../plugin-api/include");
    for fate in FATES {
        let name = format!("libspp_bad_ctor_{fate}.so");
        let define = format!("-DBAD_CTOR_{}", fate.to_uppercase());
        plugin.build(&name, &[&define])?;
    }
    Ok(())
}
