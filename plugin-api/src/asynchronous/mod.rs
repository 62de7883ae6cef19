//! # Async plugins and where their runtime runs (feature `async`)
//!
//! An [`AsyncPlugin`] answers each request from an `async fn`: a task on
//! a current-thread tokio runtime, so tokio-based clients (redis, HTTP,
//! databases, `tokio::time`) work inside it. The plugin is its own shared
//! object with its own copy of tokio, so the runtime lives on the plugin's
//! side of the C ABI, which stays the same (a C host sees an ordinary
//! plugin with the optional hook `spp_poll`).
//!
//! ## One request
//! `spp_process` (worker thread) asks the host to keep the request in
//! flight (`spp_host.defer`, in a group with `mode = "async"`), copies its
//! bytes once into a [`Request`] ([`bytes::Bytes`]) and spawns its task.
//! The task's [`Reply`] is sent with `host.reply`, then the request is
//! completed (`host.complete`; rc -1 closes the connection). Until then the
//! worker counts it against the group's `max_in_flight` and starts no
//! later request of the same flow.
//!
//! ## Bounds per task
//! * a panic fails that request only: [`AsyncPlugin::failed`] with
//!   [`TaskFailure::Panicked`], counter `async_task_panicked`;
//! * the group's `task_timeout` (`spp_host.task_timeout_ms`; 0 = none)
//!   drops the future: `failed(TimedOut)`, counter `async_task_timed_out`;
//! * `spp_flow_closed` cancels (drops) the flow's running tasks (counter
//!   `async_task_cancelled`; their requests complete with rc -1), then
//!   calls [`AsyncPlugin::flow_closed`];
//! * the time spent polling tasks is the worker's busy time.
//!
//! ## Placement: on the worker's thread (default, "driven")
//! A current-thread runtime with a `LocalSet` lives in a thread-local of
//! the worker's thread, made at `spp_init` (which runs inside its context).
//! The host drives it through `spp_poll`: each loop turn runs the ready
//! tasks once without blocking, and an idle worker waits inside
//! `spp_poll` on the runtime's own I/O and timers plus the host's doorbell
//! (an `AsyncFd`). Tasks complete on the worker's thread, so their answers
//! are published at once, and `spp_poll` reports the poll time as busy
//! time. Tasks are `spawn_local`ed: they need not be `Send`.
//!
//! ## Placement: on a plugin thread (`SPP_ASYNC_RUNTIME=thread`)
//! A measurement switch read at `spp_init`: the runtime runs on a plugin
//! thread, requests travel to it through a channel, tasks reply and
//! complete through the host's deferred path (from another thread), and
//! `spp_poll` answers `SPP_ERR_UNSUPPORTED`. The worker's busy time then
//! holds only its own hook calls (one reason this is not the default).
//!
//! ## Outside an async group
//! When `defer` answers `SPP_ERR_UNSUPPORTED` (a plain or micro-thread
//! group, an older host), `spp_process` runs the future to completion
//! with `block_on`: correct, one request at a time. The proxy role never
//! makes a runtime; `spp check`'s `spp_init`/`spp_fini` make and tear down
//! one runtime, no thread (the plugin thread of the measurement placement
//! is stopped and joined by `spp_fini`).
//!
//! ## L5 from tasks
//! `Host::get_route`, `get_route_hash` and `report` work from any thread;
//! [`SidCall`] calls a sid with retry on another instance, reports each
//! attempt, and counts it per destination; [`timed_call`] bounds and
//! counts a call to a fixed address.

mod deadline;
mod driven;
mod executor;
mod export;
#[doc(hidden)]
pub mod glue;
mod l5;
mod plugin;
mod pooled;
mod task;
mod threaded;

#[cfg(test)]
mod tests;

pub use l5::{timed_call, SidCall, SidCallError};
pub use plugin::{AsyncPlugin, Reply, Request, TaskFailure};
pub use task::{CANCELLED, PANICKED, TIMED_OUT};
pub use threaded::{RUNTIME_ENV, RUNTIME_THREAD};
