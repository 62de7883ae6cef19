//! The host table of the plugin check's child: enough for a plugin's
//! `spp_init` and `spp_fini` to run as they will in the real process, and
//! nothing that reaches a client. `reply` and `close` answer
//! `SPP_ERR_UNSUPPORTED` (there is no connection); `log` writes to the
//! child's stderr (the check's output); `count` and `record_latency` count
//! into a block nobody shows; L5, `sleep` and `call` answer as outside a
//! worker's micro-thread (`SPP_L5_SYSTEM`, `SPP_ERR_UNSUPPORTED`). Role,
//! group and worker index are the real ones (worker index 0).

use spp_config::environment::PluginRole;
use spp_ipc::host_kit::{self, HostCtx, RoleFns, TableRole};
use spp_ipc::plugin_metrics::PluginMetrics;
use spp_plugin_api::abi::{SppHost, SPP_ERR_UNSUPPORTED};
use spp_plugin_api::host::PluginLibrary;
use std::ffi::{c_int, c_void, CStr};

/// Calls the plugin's `spp_init` with an inert table for `role` (and
/// `group`); its return code. The table is leaked: the plugin may keep the
/// pointer, and its threads may outlive the call.
pub fn init(plugin: &PluginLibrary, role: PluginRole, group: u32, conf: &CStr) -> c_int {
    let metrics: &'static PluginMetrics = Box::leak(PluginMetrics::boxed());
    let ctx: &'static HostCtx<()> = Box::leak(Box::new(HostCtx::new(metrics, ())));
    let who = match role {
        PluginRole::Proxy => TableRole::Proxy,
        PluginRole::Worker => TableRole::Worker { group, index: 0 },
    };
    let table: &'static SppHost = Box::leak(Box::new(host_kit::table(
        who,
        ctx,
        RoleFns::without_l5(reply, close),
    )));
    // SAFETY: the table is leaked, so it stays valid and in place for the
    // process's life; `conf` is NUL-terminated.
    unsafe { plugin.init(table, conf) }
}

/// `spp_host.reply` of the check: there is no connection.
///
/// # Safety
/// Any arguments: nothing is dereferenced.
unsafe extern "C" fn reply(_ctx: *mut c_void, _flow: u64, _data: *const u8, _len: usize) -> c_int {
    SPP_ERR_UNSUPPORTED
}

/// `spp_host.close` of the check: there is no connection.
///
/// # Safety
/// Any arguments: nothing is dereferenced.
unsafe extern "C" fn close(_ctx: *mut c_void, _flow: u64) -> c_int {
    SPP_ERR_UNSUPPORTED
}
