//! Building a C plugin from a build script (feature `c-build`): compile one
//! C file against `spp_plugin.h` into a shared object and put it next to
//! the Rust plugins in the profile directory (`target/<profile>/`).
//!
//! Why a build script and not a `cdylib`: a Rust `cdylib` only exports the
//! `#[no_mangle]` items of Rust code; symbols of C objects linked into it
//! are not re-exported, so `spp_process` & co. would be invisible to
//! `dlopen`. The plugin must be a plain C shared object, built by the C
//! compiler.
//!
//! ```no_run
//! // build.rs
//! use spp_plugin_api::c_build::CPlugin;
//! fn main() -> Result<(), String> {
//!     CPlugin::new("echo.c", "../../plugin-api/include").build("libspp_echo_c.so", &[])
//! }
//! ```

use std::path::{Path, PathBuf};

/// Flags of every build: a warning-free, position-independent shared
/// object.
pub const FLAGS: &[&str] = &["-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror"];
/// `OUT_DIR` is `target/<profile>/build/<pkg>-<hash>/out`: this many
/// parents up is `target/<profile>/`.
const PROFILE_DIR_DEPTH: usize = 3;
/// The header's file name inside the include directory.
const HEADER: &str = "spp_plugin.h";

/// One C source file and the directory holding `spp_plugin.h`, both
/// relative to the crate whose build script runs.
#[derive(Clone, Debug)]
pub struct CPlugin {
    source: PathBuf,
    include_dir: PathBuf,
}

impl CPlugin {
    /// The plugin built from `source` with `-I include_dir`; tells cargo to
    /// run the build script again when either (or the script) changes.
    pub fn new(source: impl Into<PathBuf>, include_dir: impl Into<PathBuf>) -> Self {
        let plugin = CPlugin {
            source: source.into(),
            include_dir: include_dir.into(),
        };
        println!("cargo:rerun-if-changed={}", plugin.source.display());
        println!(
            "cargo:rerun-if-changed={}",
            plugin.include_dir.join(HEADER).display()
        );
        println!("cargo:rerun-if-changed=build.rs");
        plugin
    }

    /// Compiles the source with the extra `defines` (`-DNAME=VALUE`) into
    /// `OUT_DIR/name`, then installs it as `target/<profile>/name`.
    pub fn build(&self, name: &str, defines: &[&str]) -> Result<(), String> {
        let out_dir = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?);
        let profile_dir = out_dir.ancestors().nth(PROFILE_DIR_DEPTH).ok_or_else(|| {
            format!(
                "OUT_DIR {} has no profile directory {PROFILE_DIR_DEPTH} levels up",
                out_dir.display()
            )
        })?;
        let built = out_dir.join(name);
        self.compile(&built, defines)?;
        install(&built, &profile_dir.join(name))
    }

    /// Runs the C compiler the `cc` crate picks (honours `CC`, `CFLAGS`,
    /// the target) with [`FLAGS`].
    fn compile(&self, output: &Path, defines: &[&str]) -> Result<(), String> {
        let compiler = cc::Build::new().get_compiler();
        let mut cmd = compiler.to_command();
        cmd.args(FLAGS)
            .arg("-I")
            .arg(&self.include_dir)
            .args(defines)
            .arg("-o")
            .arg(output)
            .arg(&self.source);
        let status = cmd
            .status()
            .map_err(|e| format!("cannot run the C compiler {:?}: {e}", compiler.path()))?;
        if !status.success() {
            return Err(format!(
                "compiling {} into {} failed ({status}): {cmd:?}",
                self.source.display(),
                output.display()
            ));
        }
        Ok(())
    }
}

/// Copies `from` to `to` through a temporary file and a rename, so a
/// process that has the old plugin mapped keeps its (unchanged) inode
/// instead of seeing its code rewritten under it.
fn install(from: &Path, to: &Path) -> Result<(), String> {
    let tmp = to.with_extension("so.tmp");
    std::fs::copy(from, &tmp)
        .map_err(|e| format!("copy {} to {}: {e}", from.display(), tmp.display()))?;
    std::fs::rename(&tmp, to)
        .map_err(|e| format!("rename {} to {}: {e}", tmp.display(), to.display()))
}
