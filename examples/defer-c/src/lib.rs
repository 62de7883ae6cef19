//! The defer plugin written in C: `defer.c` next to this crate, built
//! against `plugin-api/include/spp_plugin.h` by `build.rs` into
//! `target/<profile>/libspp_defer_c.so`. It is the model for C authors of
//! async plugins (`mode = "async"`: `host->defer`, then `host->reply` and
//! `host->complete` from a thread of the plugin). This Rust library is
//! empty: it only gives the C plugin a place in the workspace.
