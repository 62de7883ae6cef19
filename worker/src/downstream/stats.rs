//! Per-destination call metrics, kept in the worker's plugin-metrics block
//! so `spp stat` and the Prometheus endpoint show them with no new
//! plumbing: a counter `call:<ip:port>:ok` and a latency histogram
//! `call:<ip:port>` per destination, and a counter
//! `call:<ip:port>:<error>` per error kind seen (`timeout`, `refused`,
//! `closed`, `too_large`, `malformed`, `io`).
//!
//! Names are made once per (destination, kind) and cached. They share the
//! block's slots with the plugin's own metrics (32 counters, 8 histograms
//! per worker): past that, samples are dropped (the block counts nothing
//! for a name it could not place), never an error for the call. An IPv6
//! destination whose name would pass the 48-byte limit is not counted.

use spp_ipc::plugin_metrics::PluginMetrics;
use spp_plugin_api::abi::*;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;

/// Every call metric's name starts with this.
pub const CALL_METRIC_PREFIX: &str = "call:";
/// The kind of a successful call (and of the latency histogram's name,
/// which has no kind).
const OK: i32 = SPP_OK;
/// The histogram's key in the name cache (no call result has it).
const LATENCY: i32 = i32::MIN;

thread_local! {
    static METRICS: Cell<Option<&'static PluginMetrics>> = const { Cell::new(None) };
    static NAMES: RefCell<HashMap<(SocketAddr, i32), String>> = RefCell::new(HashMap::new());
}

/// Call metrics of this thread go to `metrics`.
pub fn install(metrics: &'static PluginMetrics) {
    METRICS.with(|m| m.set(Some(metrics)));
}

/// A call to `dest` answered after `ns`.
pub fn succeeded(dest: Option<SocketAddr>, ns: u64) {
    with_name(dest, OK, |m, name| {
        let _ = m.count(name, 1);
    });
    with_name(dest, LATENCY, |m, name| {
        let _ = m.record_latency(name, ns);
    });
}

/// A call (or attempt) to `dest` failed with `code`.
pub fn failed(dest: Option<SocketAddr>, code: i32) {
    with_name(dest, code, |m, name| {
        let _ = m.count(name, 1);
    });
}

/// The name's text after the address.
fn kind(code: i32) -> Option<&'static str> {
    Some(match code {
        LATENCY => "",
        OK => ":ok",
        SPP_CALL_TIMEOUT => ":timeout",
        SPP_CALL_REFUSED => ":refused",
        SPP_CALL_CLOSED => ":closed",
        SPP_CALL_TOO_LARGE => ":too_large",
        SPP_CALL_MALFORMED => ":malformed",
        SPP_CALL_IO => ":io",
        _ => return None,
    })
}

fn with_name(dest: Option<SocketAddr>, code: i32, f: impl FnOnce(&PluginMetrics, &[u8])) {
    let (Some(dest), Some(metrics)) = (dest, METRICS.with(Cell::get)) else {
        return;
    };
    let Some(kind) = kind(code) else { return };
    let _ = NAMES.try_with(|names| {
        let mut names = names.borrow_mut();
        let name = names
            .entry((dest, code))
            .or_insert_with(|| format!("{CALL_METRIC_PREFIX}{dest}{kind}"));
        f(metrics, name.as_bytes());
    });
}
