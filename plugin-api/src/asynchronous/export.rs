//! [`export_async_plugin!`](crate::export_async_plugin): an
//! [`AsyncPlugin`](crate::AsyncPlugin) as the C hooks of `spp_plugin.h`.

/// Exports an [`AsyncPlugin`](crate::AsyncPlugin) implementation as the C
/// hooks of `spp_plugin.h`. Use it once per `cdylib` crate.
///
/// `export_async_plugin!(P)` exports `spp_plugin_abi_version`, `spp_init`,
/// `spp_input`, `spp_process`, `spp_poll`, `spp_flow_closed` (it cancels
/// the flow's tasks, then calls
/// [`AsyncPlugin::flow_closed`](crate::AsyncPlugin::flow_closed)) and
/// `spp_fini` (it tears the runtime down).
/// `export_async_plugin!(P, hooks: [route, exception, close, fini])` also
/// exports the optional hooks listed, each implemented by its trait as
/// for [`export_plugin!`](crate::export_plugin) (the plugin is a
/// [`Plugin`](crate::Plugin) through a blanket impl; write the concrete
/// state type, e.g. `&mut ()`, in the hooks' signatures). `fini` runs
/// [`OnFini::fini`](crate::OnFini::fini) before the runtime is torn down.
///
/// ```
/// use spp_plugin_api::{export_async_plugin, AsyncPlugin, Conn, Host, Input, OnRoute, Reply, Request};
///
/// struct Api;
///
/// impl AsyncPlugin for Api {
///     type ConnState = ();
///     fn init(_host: Host, _conf: &str) -> Result<Self, i32> { Ok(Api) }
///     fn input(&self, _c: Conn<'_>, _s: &mut (), buf: &[u8]) -> Input {
///         if buf.is_empty() { Input::NeedMore } else { Input::Complete(buf.len()) }
///     }
///     async fn process(&self, req: Request) -> Reply {
///         Reply::bytes(req.into_body())
///     }
/// }
///
/// impl OnRoute for Api {
///     fn route(&self, _c: Conn<'_>, _s: &mut (), _req: &[u8]) -> u32 { 1 }
/// }
///
/// export_async_plugin!(Api, hooks: [route]);
/// # fn main() {}
/// ```
///
/// `flow_closed` is always exported, so listing it is refused:
///
/// ```compile_fail
/// # use spp_plugin_api::*;
/// # struct P;
/// # impl AsyncPlugin for P {
/// #     type ConnState = ();
/// #     fn init(_: Host, _: &str) -> Result<Self, i32> { Ok(P) }
/// #     fn input(&self, _: Conn<'_>, _: &mut (), _: &[u8]) -> Input { Input::NeedMore }
/// #     async fn process(&self, _: Request) -> Reply { Reply::none() }
/// # }
/// export_async_plugin!(P, hooks: [flow_closed]);
/// # fn main() {}
/// ```
///
/// As with `export_plugin!`, a per-connection state needs `close`:
///
/// ```compile_fail,E0080
/// # use spp_plugin_api::*;
/// # struct P;
/// # impl AsyncPlugin for P {
/// #     type ConnState = u64;
/// #     fn init(_: Host, _: &str) -> Result<Self, i32> { Ok(P) }
/// #     fn input(&self, _: Conn<'_>, _: &mut u64, _: &[u8]) -> Input { Input::NeedMore }
/// #     async fn process(&self, _: Request) -> Reply { Reply::none() }
/// # }
/// export_async_plugin!(P);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_async_plugin {
    ($plugin:ty) => {
        $crate::export_async_plugin!($plugin, hooks: []);
    };
    ($plugin:ty, hooks: [$($hook:ident),* $(,)?]) => {
        impl $crate::rt::ExportsAsync for $plugin {}

        $crate::__spp_export_common!($plugin, [$($hook),*], "export_async_plugin!");

        /// # Safety
        /// Called by the spp host with pointers valid per `spp_plugin.h`.
        #[no_mangle]
        pub unsafe extern "C" fn spp_init(
            host: *const $crate::abi::SppHost,
            conf: *const ::std::ffi::c_char,
        ) -> ::std::ffi::c_int {
            // SAFETY: forwarded host guarantees.
            unsafe { $crate::asynchronous::glue::init(&__SPP_PLUGIN_SLOT, host, conf) }
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
        pub unsafe extern "C" fn spp_process(
            conn: *const $crate::abi::SppConnInfo,
            req: *const u8,
            len: usize,
        ) -> ::std::ffi::c_int {
            // SAFETY: forwarded host guarantees.
            unsafe { $crate::asynchronous::glue::process(&__SPP_PLUGIN_SLOT, conn, req, len) }
        }

        /// # Safety
        /// Called by the spp host with a valid (or null) `busy_ns`.
        #[no_mangle]
        pub unsafe extern "C" fn spp_poll(
            wake_fd: ::std::ffi::c_int,
            wait_ms: u32,
            busy_ns: *mut u64,
        ) -> ::std::ffi::c_int {
            // SAFETY: forwarded host guarantees.
            unsafe { $crate::asynchronous::glue::poll(wake_fd, wait_ms, busy_ns) }
        }

        #[no_mangle]
        pub extern "C" fn spp_flow_closed(flow: u64) {
            $crate::asynchronous::glue::flow_closed(&__SPP_PLUGIN_SLOT, flow)
        }

        #[no_mangle]
        pub extern "C" fn spp_fini() {
            // The plugin's `OnFini` when `fini` is listed (the inner item
            // shadows this one), else nothing.
            #[allow(dead_code)]
            fn __spp_user_fini(_: &$plugin) {}
            {
                $( $crate::__spp_async_user_fini!($hook, $plugin); )*
                $crate::asynchronous::glue::fini(&__SPP_PLUGIN_SLOT, __spp_user_fini)
            }
        }

        $( $crate::__spp_export_async_hook!($hook, $plugin, __SPP_PLUGIN_SLOT); )*
    };
}

/// One optional hook of [`export_async_plugin!`](crate::export_async_plugin).
#[doc(hidden)]
#[macro_export]
macro_rules! __spp_export_async_hook {
    (flow_closed, $plugin:ty, $slot:ident) => {
        ::std::compile_error!(
            "export_async_plugin! always exports spp_flow_closed (it cancels the flow's tasks, then calls AsyncPlugin::flow_closed): drop `flow_closed` from the hooks list and override AsyncPlugin::flow_closed instead"
        );
    };
    (fini, $plugin:ty, $slot:ident) => {
        impl $crate::rt::ExportsFini for $plugin {}
    };
    ($hook:ident, $plugin:ty, $slot:ident) => {
        $crate::__spp_export_hook!($hook, $plugin, $slot);
    };
}

/// The `OnFini` call of an async plugin's `spp_fini`, when `fini` is
/// listed.
#[doc(hidden)]
#[macro_export]
macro_rules! __spp_async_user_fini {
    (fini, $plugin:ty) => {
        fn __spp_user_fini(p: &$plugin) {
            <$plugin as $crate::OnFini>::fini(p)
        }
    };
    ($other:ident, $plugin:ty) => {};
}
