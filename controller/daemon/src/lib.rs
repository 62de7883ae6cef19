//! `spp-daemon`: the controller daemon of the spp socket server, the
//! long-lived process `spp start` runs. It binds the listeners, creates the
//! shared memory, spawns and supervises the proxy and the worker groups,
//! reloads, scales, samples stats, runs the L5 agent and answers the
//! control socket. The `spp` CLI (`spp-controller`) drives it; the config
//! is `spp-config`.
//!
//! Modules: [`service`] (the foreground controller: preflight, then the
//! supervisor on a tokio runtime), [`supervisor`] (children, restarts,
//! housekeeping, reload, stop), [`children`] (per-child bookkeeping),
//! [`spawn`] (finding the child executables, launch specs, fork/exec),
//! [`listeners`], [`resources`] (shared memory), [`scaling`] (the
//! expansion rule), [`stats`] (sampling, `spp stat`'s report and table,
//! Prometheus), [`l5`] (registration, discovery, the route table's agent),
//! [`control`] (the control socket: server and client, the request and
//! its JSON answers), [`status`] (the status report and its table),
//! [`plugin_check`] (a plugin loaded in a short-lived child, never in the
//! controller), [`privileges`] (who children run as, private file
//! modes), [`log_files`] (rotated log names, the rename half of a
//! rotation), [`notify`] (systemd readiness), [`pidfile`], [`pidfd`]
//! (signals that cannot reach a reused pid), [`logging`].

pub mod children;
pub mod control;
pub mod l5;
pub mod listeners;
pub mod log_files;
pub mod logging;
pub mod notify;
pub mod pidfd;
pub mod pidfile;
pub mod plugin_check;
pub mod privileges;
pub mod resources;
pub mod scaling;
pub mod service;
pub mod spawn;
pub mod stats;
pub mod status;
pub mod supervisor;

#[cfg(test)]
mod fuzz_tests;
