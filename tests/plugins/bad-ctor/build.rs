//! Compiles `bad_ctor.c` once per fate into `libspp_bad_ctor_<fate>.so`
//! (the fate chosen by `-DBAD_CTOR_<FATE>`) and puts each next to the other
//! plugins in the profile directory (`target/<profile>/`), the way
//! examples/echo-c/build.rs does (see there why a build script and not a
//! `cdylib`).

use std::path::{Path, PathBuf};

/// The plugin source, relative to this crate.
const SOURCE: &str = "bad_ctor.c";
/// Where `spp_plugin.h` lives, relative to this crate.
const INCLUDE_DIR: &str = "../../../plugin-api/include";
/// The header itself, for rerun-if-changed.
const HEADER: &str = "../../../plugin-api/include/spp_plugin.h";
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

    for fate in FATES {
        let name = format!("libspp_bad_ctor_{fate}.so");
        let define = format!("-DBAD_CTOR_{}", fate.to_uppercase());
        let built = out_dir.join(&name);
        compile(&built, &define)?;
        install(&built, &profile_dir.join(&name))?;
    }
    Ok(())
}

/// Runs the C compiler the `cc` crate picks with our flags and `define`.
fn compile(output: &Path, define: &str) -> Result<(), String> {
    let compiler = cc::Build::new().get_compiler();
    let mut cmd = compiler.to_command();
    cmd.args(FLAGS)
        .arg("-I")
        .arg(INCLUDE_DIR)
        .arg(define)
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

/// Copies `from` to `to` through a temporary file and a rename (a process
/// with the old plugin mapped keeps its inode).
fn install(from: &Path, to: &Path) -> Result<(), String> {
    let tmp = to.with_extension("so.tmp");
    std::fs::copy(from, &tmp)
        .map_err(|e| format!("copy {} to {}: {e}", from.display(), tmp.display()))?;
    std::fs::rename(&tmp, to)
        .map_err(|e| format!("rename {} to {}: {e}", tmp.display(), to.display()))
}
