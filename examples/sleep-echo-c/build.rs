//! Compiles `sleep_echo.c` into `libspp_sleep_echo_c.so` and puts it next to
//! the Rust plugins in the profile directory (`target/<profile>/`).
//!
//! A build script and not a `cdylib` for the reason given in
//! `examples/echo-c/build.rs`: symbols of C objects linked into a Rust
//! `cdylib` are not exported, so the plugin must be a plain C shared object.

use std::path::{Path, PathBuf};

/// The plugin source, relative to this crate.
const SOURCE: &str = "sleep_echo.c";
/// Where `spp_plugin.h` lives, relative to this crate.
const INCLUDE_DIR: &str = "../../plugin-api/include";
/// The header itself, for rerun-if-changed.
const HEADER: &str = "../../plugin-api/include/spp_plugin.h";
/// The plugin the configs point at.
const PLUGIN: &str = "libspp_sleep_echo_c.so";
/// Flags of the build: a warning-free, position-independent shared object.
const FLAGS: &[&str] = &["-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror"];
/// `OUT_DIR` is `target/<profile>/build/<pkg>-<hash>/out`: this many parents
/// up is `target/<profile>/`.
const PROFILE_DIR_DEPTH: usize = 3;

fn main() -> Result<(), String> {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-changed={HEADER}");
    println!("cargo:rerun-if-changed=build.rs");

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?);
    let profile_dir = out_dir
        .ancestors()
        .nth(PROFILE_DIR_DEPTH)
        .ok_or_else(|| {
            format!(
                "OUT_DIR {} has no profile directory {PROFILE_DIR_DEPTH} levels up",
                out_dir.display()
            )
        })?
        .to_path_buf();
    let built = out_dir.join(PLUGIN);
    compile(&built)?;
    install(&built, &profile_dir.join(PLUGIN))
}

/// Runs the C compiler the `cc` crate picks (honours `CC`, `CFLAGS`, the
/// target) with our flags.
fn compile(output: &Path) -> Result<(), String> {
    let compiler = cc::Build::new().get_compiler();
    let mut cmd = compiler.to_command();
    cmd.args(FLAGS)
        .arg("-I")
        .arg(INCLUDE_DIR)
        .arg("-o")
        .arg(output)
        .arg(SOURCE);
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run the C compiler {:?}: {e}", compiler.path()))?;
    if !status.success() {
        return Err(format!(
            "compiling {SOURCE} into {} failed ({status}): {cmd:?}",
            output.display()
        ));
    }
    Ok(())
}

/// Copies `from` to `to` through a temporary file and a rename, so a process
/// that has the old plugin mapped keeps its (unchanged) inode.
fn install(from: &Path, to: &Path) -> Result<(), String> {
    let tmp = to.with_extension("so.tmp");
    std::fs::copy(from, &tmp)
        .map_err(|e| format!("copy {} to {}: {e}", from.display(), tmp.display()))?;
    std::fs::rename(&tmp, to)
        .map_err(|e| format!("rename {} to {}: {e}", tmp.display(), to.display()))
}
