//! The sleep-echo plugin written in C: `sleep_echo.c` next to this crate,
//! built against `plugin-api/include/spp_plugin.h` by `build.rs` into
//! `target/<profile>/libspp_sleep_echo_c.so`. It is the model for C authors
//! of micro-thread plugins. This Rust library is empty: it only gives the C
//! plugin a place in the workspace.
