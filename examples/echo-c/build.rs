//! Compiles `echo.c` into `libspp_echo_c.so`, plus the wrong-ABI test variant
//! `libspp_echo_c_abi99.so` (the same source built with
//! `-DSPP_TEST_ABI_VERSION=99`), and puts both next to the Rust plugins in the
//! profile directory (`target/<profile>/`).
//!
//! Why a build script and not a `cdylib`: a Rust `cdylib` only exports the
//! `#[no_mangle]` items of Rust code; symbols of C objects linked into it are
//! not re-exported, so `spp_process` & co. would be invisible to `dlopen`.
//! The plugin must be a plain C shared object, built by the C compiler.

use std::path::{Path, PathBuf};

/// The plugin source, relative to this crate.
const SOURCE: &str = "echo.c";
/// Where `spp_plugin.h` lives, relative to this crate.
const INCLUDE_DIR: &str = "../../plugin-api/include";
/// The header itself, for rerun-if-changed.
const HEADER: &str = "../../plugin-api/include/spp_plugin.h";
/// The plugin every config points at.
const PLUGIN: &str = "libspp_echo_c.so";
/// The variant that reports a wrong ABI version (for loader tests).
const PLUGIN_ABI99: &str = "libspp_echo_c_abi99.so";
/// The wrong ABI version the test variant exports.
const TEST_ABI_VERSION: u32 = 99;
/// Flags of every build: a warning-free, position-independent shared object.
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

    let abi99 = format!("-DSPP_TEST_ABI_VERSION={TEST_ABI_VERSION}");
    for (name, defines) in [(PLUGIN, &[][..]), (PLUGIN_ABI99, &[abi99.as_str()][..])] {
        let built = out_dir.join(name);
        compile(&built, defines)?;
        install(&built, &profile_dir.join(name))?;
    }
    Ok(())
}

/// Runs the C compiler the `cc` crate picks (honours `CC`, `CFLAGS`, the
/// target) with our flags.
fn compile(output: &Path, defines: &[&str]) -> Result<(), String> {
    let compiler = cc::Build::new().get_compiler();
    let mut cmd = compiler.to_command();
    cmd.args(FLAGS)
        .arg("-I")
        .arg(INCLUDE_DIR)
        .args(defines)
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
/// that has the old plugin mapped keeps its (unchanged) inode instead of
/// seeing its code rewritten under it.
fn install(from: &Path, to: &Path) -> Result<(), String> {
    let tmp = to.with_extension("so.tmp");
    std::fs::copy(from, &tmp)
        .map_err(|e| format!("copy {} to {}: {e}", from.display(), tmp.display()))?;
    std::fs::rename(&tmp, to)
        .map_err(|e| format!("rename {} to {}: {e}", tmp.display(), to.display()))
}
