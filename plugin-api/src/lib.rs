//! # spp-plugin-api — the spp business plugin ABI, version 1
//!
//! A plugin is a `.so` the spp proxy and workers `dlopen`. Its C ABI is
//! described by `include/spp_plugin.h` (mirrored in [`abi`]). Rust authors
//! implement [`Plugin`] and export it with one macro:
//!
//! ```ignore
//! use spp_plugin_api::{export_plugin, Conn, Host, Input, Plugin};
//!
//! struct Echo(Host);
//!
//! impl Plugin for Echo {
//!     fn init(host: Host, _conf: &str) -> Result<Self, i32> { Ok(Echo(host)) }
//!     fn input(&self, _c: Conn<'_>, buf: &[u8]) -> Input {
//!         if buf.is_empty() { Input::NeedMore } else { Input::Complete(buf.len()) }
//!     }
//!     fn process(&self, c: Conn<'_>, req: &[u8]) -> Result<(), ()> {
//!         self.0.reply(c.flow(), req).map_err(|_| ())
//!     }
//! }
//!
//! export_plugin!(Echo);
//! ```
//!
//! Build the crate as `crate-type = ["cdylib"]`. Panics inside a hook are
//! caught at the boundary: the request's connection is closed and the host
//! counts it; the process lives on.
//!
//! With the `host` feature, [`host::PluginLibrary`] is the loader the spp
//! processes use, and [`no_l5`] the L5 services of a host without a route
//! table.

pub mod abi;
pub mod framing;
#[cfg(feature = "host")]
pub mod host;
#[cfg(feature = "host")]
pub mod no_l5;
mod plugin;

pub use abi::SPP_PLUGIN_ABI_VERSION;
pub use plugin::{
    rt, AfterException, Conn, ExceptionReason, Host, HostError, Input, Level, Plugin, Route,
    RouteError,
};

/// Exports a [`Plugin`] implementation as the C hooks of `spp_plugin.h`.
/// Use it once per `cdylib` crate.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        static __SPP_PLUGIN_SLOT: $crate::rt::Slot<$plugin> = $crate::rt::Slot::new();

        #[no_mangle]
        pub extern "C" fn spp_plugin_abi_version() -> u32 {
            $crate::SPP_PLUGIN_ABI_VERSION
        }

        /// # Safety
        /// Called by the spp host with pointers valid per `spp_plugin.h`.
        #[no_mangle]
        pub unsafe extern "C" fn spp_init(
            host: *const $crate::abi::SppHost,
            conf: *const ::std::ffi::c_char,
        ) -> ::std::ffi::c_int {
            // SAFETY: forwarded host guarantees.
            unsafe { $crate::rt::init(&__SPP_PLUGIN_SLOT, host, conf) }
        }

        /// # Safety
        /// Called by the spp host with pointers valid per `spp_plugin.h`.
        #[no_mangle]
        pub unsafe extern "C" fn spp_input(
            conn: *const $crate::abi::SppConnInfo,
            buf: *const u8,
            len: usize,
        ) -> ::std::ffi::c_int {
            // SAFETY: forwarded host guarantees.
            unsafe { $crate::rt::input(&__SPP_PLUGIN_SLOT, conn, buf, len) }
        }

        /// # Safety
        /// Called by the spp host with pointers valid per `spp_plugin.h`.
        #[no_mangle]
        pub unsafe extern "C" fn spp_route(
            conn: *const $crate::abi::SppConnInfo,
            req: *const u8,
            len: usize,
        ) -> ::std::ffi::c_int {
            // SAFETY: forwarded host guarantees.
            unsafe { $crate::rt::route(&__SPP_PLUGIN_SLOT, conn, req, len) }
        }

        /// # Safety
        /// Called by the spp host with pointers valid per `spp_plugin.h`.
        #[no_mangle]
        pub unsafe extern "C" fn spp_process(
            conn: *const $crate::abi::SppConnInfo,
            req: *const u8,
            len: usize,
        ) -> ::std::ffi::c_int {
            // SAFETY: forwarded host guarantees.
            unsafe { $crate::rt::process(&__SPP_PLUGIN_SLOT, conn, req, len) }
        }

        /// # Safety
        /// Called by the spp host with pointers valid per `spp_plugin.h`.
        #[no_mangle]
        pub unsafe extern "C" fn spp_exception(
            conn: *const $crate::abi::SppConnInfo,
            req: *const u8,
            len: usize,
            reason: ::std::ffi::c_int,
        ) -> ::std::ffi::c_int {
            // SAFETY: forwarded host guarantees.
            unsafe { $crate::rt::exception(&__SPP_PLUGIN_SLOT, conn, req, len, reason) }
        }

        /// # Safety
        /// Called by the spp host with pointers valid per `spp_plugin.h`.
        #[no_mangle]
        pub unsafe extern "C" fn spp_close(
            conn: *const $crate::abi::SppConnInfo,
            leftover: *const u8,
            len: usize,
        ) {
            // SAFETY: forwarded host guarantees.
            unsafe { $crate::rt::close(&__SPP_PLUGIN_SLOT, conn, leftover, len) }
        }

        #[no_mangle]
        pub extern "C" fn spp_fini() {
            $crate::rt::fini(&__SPP_PLUGIN_SLOT)
        }
    };
}
