//! Test-only C plugins whose constructor (code that runs the moment the
//! plugin is mapped, before any hook) misbehaves: `bad_ctor.c` next to this
//! crate, built by `build.rs` into `target/<profile>/libspp_bad_ctor_<fate>.so`,
//! one per fate (see [`FATES`]). This Rust library only names them.

/// Every variant: the `.so` is `libspp_bad_ctor_<fate>.so`, built with
/// `-DBAD_CTOR_<FATE>`.
/// * `exit0` / `exit7`: the constructor calls `_exit(0)` / `_exit(7)`.
/// * `abort` / `segv`: it aborts / writes through a null pointer.
/// * `hang`: it sleeps forever.
/// * `chatter_exit0`: it prints garbage and a fake passing verdict to stdout,
///   then `_exit(0)`s.
/// * `chatter`: it prints the same to stdout, then returns: the plugin
///   loads and works (an echo).
/// * `fork`: it forks a child that keeps every inherited fd (the check's
///   pipe too) open for 3 s, then returns: the plugin loads.
pub const FATES: &[&str] = &[
    "exit0",
    "exit7",
    "abort",
    "segv",
    "hang",
    "chatter_exit0",
    "chatter",
    "fork",
];
