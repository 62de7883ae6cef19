//! The hooks a Rust plugin implements: the required ones in [`Plugin`],
//! each optional one in a trait of its own ([`OnRoute`], [`OnException`],
//! [`OnClose`], [`OnFini`]), exported only when the plugin lists it in
//! [`export_plugin!`](crate::export_plugin) — as a C plugin exports only
//! the optional hooks it has, and the host treats a missing one as "not
//! implemented" (default group, connection closed, nothing called).
//!
//! Both directions are checked when the plugin compiles: listing a hook
//! whose trait is not implemented fails (`the trait bound ... OnRoute is
//! not satisfied`), and implementing a hook trait without listing it fails
//! (`... does not list route`), so a hook is never silently dead.
//!
//! # Per-connection state
//!
//! [`Plugin::ConnState`] is the plugin's state of one proxy connection,
//! handed to the proxy-side hooks by `&mut` instead of a map keyed by flow:
//! created with `Default` by the first `input` of a TCP connection and
//! handed by value to [`OnClose::close`] when the connection closes
//! (dropped there). Limits, from what the C ABI tells a plugin today:
//! * proxy only: `process` gets no state; keep per-flow worker state
//!   yourself and free it in [`OnFlowClosed::flow_closed`] (best effort:
//!   keep a time bound too);
//! * TCP only: a UDP flow is one datagram and gets no `spp_close`, so each
//!   UDP hook call gets a fresh default state, kept for that call only;
//! * a hook for a flow whose connection is already gone (an exception for
//!   a request its worker died holding, after the client left) gets a
//!   fresh default state, not kept;
//! * one thread: the states live in a thread-local map of the thread that
//!   runs the proxy hooks (the proxy's event loop); every hook of one
//!   connection must run on that thread, as it does today;
//! * a plugin whose `ConnState` is not zero-sized must list `close` (that
//!   is where the state is dropped); `export_plugin!` refuses to compile
//!   otherwise. A zero-sized state (`()`) costs nothing: no map is kept.

use crate::plugin::{AfterException, Conn, ExceptionReason, Host, Input, Processed};
use crate::rt;

/// A business plugin: the hooks every plugin has. Implement it (and the
/// optional hook traits you need) and export it with
/// [`export_plugin!`](crate::export_plugin). One value is created per
/// process by [`Plugin::init`] and shared by every hook (hence `Sync`).
///
/// ```
/// use spp_plugin_api::{export_plugin, Conn, Host, Input, Plugin, Processed};
///
/// struct Echo(Host);
///
/// impl Plugin for Echo {
///     type ConnState = ();
///     fn init(host: Host, _conf: &str) -> Result<Self, i32> {
///         Ok(Echo(host))
///     }
///     fn input(&self, _c: Conn<'_>, _state: &mut (), buf: &[u8]) -> Input {
///         if buf.is_empty() { Input::NeedMore } else { Input::Complete(buf.len()) }
///     }
///     fn process(&self, c: Conn<'_>, req: &[u8]) -> Processed {
///         Processed::replied(self.0.reply(c.flow(), req))
///     }
/// }
///
/// export_plugin!(Echo);
/// # fn main() {}
/// ```
pub trait Plugin: Send + Sync + Sized + 'static {
    /// The plugin's state of one proxy TCP connection (see the [module
    /// docs](self) for its life and limits); `()` when none.
    type ConnState: Default + 'static;

    /// Whether the plugin keeps state in a worker's memory across requests
    /// (exported as `spp_plugin_stateful`). Each worker is its own process
    /// with its own memory, so such state is split between the workers of
    /// a group and lost when one retires: `spp check` and `spp start` warn
    /// about a group of a stateful plugin whose `min_workers !=
    /// max_workers`. Default `false`.
    const STATEFUL: bool = false;

    /// Builds the plugin (`spp_init`, both roles). `conf` is the group's
    /// `plugin_conf` string. An `Err(code)` makes the process exit with
    /// that (non-zero) code.
    fn init(host: Host, conf: &str) -> Result<Self, i32>;

    /// Proxy (`spp_input`): finds the end of the first request in `buf`.
    fn input(&self, conn: Conn<'_>, state: &mut Self::ConnState, buf: &[u8]) -> Input;

    /// Worker (`spp_process`): handles one request, replying through the
    /// [`Host`] now or later.
    fn process(&self, conn: Conn<'_>, req: &[u8]) -> Processed;
}

/// Optional proxy hook `spp_route`: the group that serves a request.
/// Without it every request goes to group
/// [`SPP_DEFAULT_GROUP`](crate::abi::SPP_DEFAULT_GROUP). List it
/// as `route`.
#[diagnostic::on_unimplemented(
    message = "`export_plugin!` lists `route` but `{Self}` does not implement `OnRoute`",
    label = "implement `OnRoute` or drop `route` from the hooks list"
)]
pub trait OnRoute: Plugin + rt::ExportsRoute {
    /// The group id that serves `req`.
    fn route(&self, conn: Conn<'_>, state: &mut Self::ConnState, req: &[u8]) -> u32;
}

/// Optional proxy hook `spp_exception`: a request could not be handed to
/// a worker. Without it the connection is closed. List it as `exception`.
#[diagnostic::on_unimplemented(
    message = "`export_plugin!` lists `exception` but `{Self}` does not implement `OnException`",
    label = "implement `OnException` or drop `exception` from the hooks list"
)]
pub trait OnException: Plugin + rt::ExportsException {
    /// `req` is `None` when its bytes are gone. The plugin may answer
    /// through the [`Host`] and keep the connection.
    fn exception(
        &self,
        conn: Conn<'_>,
        state: &mut Self::ConnState,
        req: Option<&[u8]>,
        why: ExceptionReason,
    ) -> AfterException;
}

/// Optional proxy hook `spp_close`: a TCP connection closed, with
/// `leftover` unframed bytes; `state` is its [`Plugin::ConnState`], dropped
/// after this call. Required when `ConnState` is not zero-sized. List it
/// as `close`.
#[diagnostic::on_unimplemented(
    message = "`export_plugin!` lists `close` but `{Self}` does not implement `OnClose`",
    label = "implement `OnClose` or drop `close` from the hooks list"
)]
pub trait OnClose: Plugin + rt::ExportsClose {
    /// The connection of `conn` closed.
    fn close(&self, conn: Conn<'_>, state: Self::ConnState, leftover: &[u8]);
}

/// Optional worker hook `spp_flow_closed`: a TCP connection this worker
/// served requests of closed; free what the plugin keeps for the flow.
/// Called on the worker's main thread after the worker took every request
/// of the flow it was sent; best effort (see `spp_plugin.h`: not after a
/// proxy restart, nor when the proxy's bounded queue of notices
/// overflowed), so keep a time-based bound too. List it as `flow_closed`.
#[diagnostic::on_unimplemented(
    message = "`export_plugin!` lists `flow_closed` but `{Self}` does not implement `OnFlowClosed`",
    label = "implement `OnFlowClosed` or drop `flow_closed` from the hooks list"
)]
pub trait OnFlowClosed: Plugin + rt::ExportsFlowClosed {
    /// The connection of `flow` closed.
    fn flow_closed(&self, flow: u64);
}

/// Optional hook `spp_fini`, both roles: the process is about to exit
/// normally. List it as `fini`.
#[diagnostic::on_unimplemented(
    message = "`export_plugin!` lists `fini` but `{Self}` does not implement `OnFini`",
    label = "implement `OnFini` or drop `fini` from the hooks list"
)]
pub trait OnFini: Plugin + rt::ExportsFini {
    /// Last call before exit.
    fn fini(&self);
}
