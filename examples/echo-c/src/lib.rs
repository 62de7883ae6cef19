//! The echo plugin written in C: `echo.c` next to this crate, built against
//! `plugin-api/include/spp_plugin.h` by `build.rs` into
//! `target/<profile>/libspp_echo_c.so` (and `libspp_echo_c_abi99.so`, a
//! variant reporting ABI version 99 that loaders must refuse). This Rust
//! library is empty: it only gives the C plugin a place in the workspace.
