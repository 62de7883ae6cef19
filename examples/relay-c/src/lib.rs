//! The relay plugin written in C: `relay.c` next to this crate, built
//! against `plugin-api/include/spp_plugin.h` by `build.rs` into
//! `target/<profile>/libspp_relay_c.so`. It is the model for C authors of
//! plugins that call other services from a micro-thread (`host->call`).
//! This Rust library is empty: it only gives the C plugin a place in the
//! workspace.
