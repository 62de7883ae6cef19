//! # spp-plugin-api — the spp business plugin ABI, version 1
//!
//! A plugin is a `.so` the spp proxy and workers `dlopen`. Its C ABI is
//! described by `include/spp_plugin.h` (mirrored in [`abi`]). Rust authors
//! implement [`Plugin`] (plus the trait of each optional hook they need:
//! [`OnRoute`], [`OnException`], [`OnClose`], [`OnFini`]) and export it
//! with one macro, listing the optional hooks:
//!
//! ```
//! use spp_plugin_api::{export_plugin, Conn, Host, Input, OnRoute, Plugin, Processed};
//!
//! struct Echo(Host);
//!
//! impl Plugin for Echo {
//!     type ConnState = ();
//!     fn init(host: Host, _conf: &str) -> Result<Self, i32> { Ok(Echo(host)) }
//!     fn input(&self, _c: Conn<'_>, _state: &mut (), buf: &[u8]) -> Input {
//!         if buf.is_empty() { Input::NeedMore } else { Input::Complete(buf.len()) }
//!     }
//!     fn process(&self, c: Conn<'_>, req: &[u8]) -> Processed {
//!         Processed::replied(self.0.reply(c.flow(), req))
//!     }
//! }
//!
//! impl OnRoute for Echo {
//!     fn route(&self, _c: Conn<'_>, _state: &mut (), req: &[u8]) -> u32 {
//!         if req.starts_with(b"2") { 2 } else { 1 }
//!     }
//! }
//!
//! export_plugin!(Echo, hooks: [route]);
//! # fn main() {}
//! ```
//!
//! Optional hooks not listed are not exported, as in a C plugin. A
//! per-connection state ([`Plugin::ConnState`]) replaces a map keyed by
//! flow on the proxy side; see [`hooks`] for its life and limits.
//!
//! Build the crate as `crate-type = ["cdylib"]`. Panics inside a hook are
//! caught at the boundary: the request's connection is closed and the host
//! counts it; the process lives on.
//!
//! ## Async plugins (feature `async`)
//!
//! A plugin whose worker side awaits (tokio clients, timers) implements
//! [`AsyncPlugin`] instead and exports it with `export_async_plugin!`:
//! each request becomes a task on the plugin's own current-thread tokio
//! runtime, bounded by the group's `task_timeout`, with panics caught per
//! task. See the `asynchronous` module for where that runtime runs.
//!
#![cfg_attr(
    feature = "async",
    doc = r#"```
use spp_plugin_api::{export_async_plugin, AsyncPlugin, Conn, Host, Input, Reply, Request};
use std::time::Duration;

struct SlowEcho;

impl AsyncPlugin for SlowEcho {
    type ConnState = ();
    fn init(_host: Host, _conf: &str) -> Result<Self, i32> { Ok(SlowEcho) }
    fn input(&self, _c: Conn<'_>, _state: &mut (), buf: &[u8]) -> Input {
        if buf.is_empty() { Input::NeedMore } else { Input::Complete(buf.len()) }
    }
    async fn process(&self, req: Request) -> Reply {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Reply::bytes(req.into_body())
    }
}

export_async_plugin!(SlowEcho);
# fn main() {}
```
"#
)]
//!
//! With the `host` feature, [`host::PluginLibrary`] is the loader the spp
//! processes use, and [`no_l5`] the L5 services of a host without a route
//! table.

pub mod abi;
#[cfg(feature = "async")]
pub mod asynchronous;
#[cfg(feature = "c-build")]
pub mod c_build;
mod call;
pub mod conf;
mod export;
pub mod framing;
pub mod hooks;
#[cfg(feature = "host")]
pub mod host;
#[cfg(feature = "host")]
pub mod no_l5;
mod plugin;
#[doc(hidden)]
pub mod rt;

#[cfg(test)]
mod fuzz_tests;

pub use abi::SPP_PLUGIN_ABI_VERSION;
#[cfg(feature = "async")]
pub use asynchronous::{
    timed_call, AsyncPlugin, Reply, Request, SidCall, SidCallError, TaskFailure,
};
pub use call::{Answered, Call, CallError, Check, Leg, Target};
pub use hooks::{OnClose, OnException, OnFini, OnFlowClosed, OnRoute, Plugin};
pub use plugin::{
    AfterException, Conn, ExceptionReason, Host, HostError, Input, Level, Processed, Route,
    RouteError,
};
