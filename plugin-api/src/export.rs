//! [`export_plugin!`](crate::export_plugin): a [`Plugin`](crate::Plugin)
//! as the C hooks of `spp_plugin.h`.

/// Exports a [`Plugin`](crate::Plugin) implementation as the C hooks of
/// `spp_plugin.h`. Use it once per `cdylib` crate.
///
/// `export_plugin!(P)` exports the required hooks (`spp_plugin_abi_version`,
/// `spp_init`, `spp_input`, `spp_process`);
/// `export_plugin!(P, hooks: [route, exception, close, fini])` also
/// exports the optional hooks listed, each implemented by its trait
/// ([`OnRoute`](crate::OnRoute), [`OnException`](crate::OnException),
/// [`OnClose`](crate::OnClose), [`OnFini`](crate::OnFini),
/// [`OnFlowClosed`](crate::OnFlowClosed) as `flow_closed`). A hook not
/// listed is not exported at all, so the host applies its default. The
/// compiler checks the list against the traits both ways (see
/// [`hooks`](crate::hooks)), and refuses a plugin whose
/// [`ConnState`](crate::Plugin::ConnState) is not zero-sized without
/// `close` (the state would never be dropped).
///
/// ```
/// use spp_plugin_api::{
///     export_plugin, AfterException, Conn, ExceptionReason, Host, Input, OnClose,
///     OnException, Plugin, Processed,
/// };
///
/// /// Counts the requests of each connection; answers "busy" when a
/// /// request cannot be served.
/// struct Counting(Host);
///
/// impl Plugin for Counting {
///     type ConnState = u64;
///     fn init(host: Host, _conf: &str) -> Result<Self, i32> {
///         Ok(Counting(host))
///     }
///     fn input(&self, _c: Conn<'_>, requests: &mut u64, buf: &[u8]) -> Input {
///         *requests += 1;
///         Input::Complete(buf.len())
///     }
///     fn process(&self, c: Conn<'_>, req: &[u8]) -> Processed {
///         Processed::replied(self.0.reply(c.flow(), req))
///     }
/// }
///
/// impl OnException for Counting {
///     fn exception(
///         &self,
///         c: Conn<'_>,
///         _requests: &mut u64,
///         _req: Option<&[u8]>,
///         _why: ExceptionReason,
///     ) -> AfterException {
///         match self.0.reply(c.flow(), b"busy") {
///             Ok(()) => AfterException::Keep,
///             Err(_) => AfterException::Close,
///         }
///     }
/// }
///
/// impl OnClose for Counting {
///     fn close(&self, _c: Conn<'_>, requests: u64, _leftover: &[u8]) {
///         let _ = self.0.count("requests_per_conn", requests);
///     }
/// }
///
/// export_plugin!(Counting, hooks: [exception, close]);
/// # fn main() {}
/// ```
///
/// What the compiler refuses. A hook listed but not implemented:
///
/// ```compile_fail,E0277
/// # use spp_plugin_api::*;
/// # struct P;
/// # impl Plugin for P {
/// #     type ConnState = ();
/// #     fn init(_: Host, _: &str) -> Result<Self, i32> { Ok(P) }
/// #     fn input(&self, _: Conn<'_>, _: &mut (), _: &[u8]) -> Input { Input::NeedMore }
/// #     fn process(&self, _: Conn<'_>, _: &[u8]) -> Processed { Processed::Done }
/// # }
/// export_plugin!(P, hooks: [route]);
/// # fn main() {}
/// ```
///
/// A hook implemented but not listed:
///
/// ```compile_fail,E0277
/// # use spp_plugin_api::*;
/// # struct P;
/// # impl Plugin for P {
/// #     type ConnState = ();
/// #     fn init(_: Host, _: &str) -> Result<Self, i32> { Ok(P) }
/// #     fn input(&self, _: Conn<'_>, _: &mut (), _: &[u8]) -> Input { Input::NeedMore }
/// #     fn process(&self, _: Conn<'_>, _: &[u8]) -> Processed { Processed::Done }
/// # }
/// impl OnFini for P {
///     fn fini(&self) {}
/// }
/// export_plugin!(P);
/// # fn main() {}
/// ```
///
/// A per-connection state without `close`:
///
/// ```compile_fail,E0080
/// # use spp_plugin_api::*;
/// # struct P;
/// # impl Plugin for P {
/// #     type ConnState = u64;
/// #     fn init(_: Host, _: &str) -> Result<Self, i32> { Ok(P) }
/// #     fn input(&self, _: Conn<'_>, _: &mut u64, _: &[u8]) -> Input { Input::NeedMore }
/// #     fn process(&self, _: Conn<'_>, _: &[u8]) -> Processed { Processed::Done }
/// # }
/// export_plugin!(P);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        $crate::export_plugin!($plugin, hooks: []);
    };
    ($plugin:ty, hooks: [$($hook:ident),* $(,)?]) => {
        $crate::__spp_export_common!($plugin, [$($hook),*], "export_plugin!");

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
        pub unsafe extern "C" fn spp_process(
            conn: *const $crate::abi::SppConnInfo,
            req: *const u8,
            len: usize,
        ) -> ::std::ffi::c_int {
            // SAFETY: forwarded host guarantees.
            unsafe { $crate::rt::process(&__SPP_PLUGIN_SLOT, conn, req, len) }
        }

        $( $crate::__spp_export_hook!($hook, $plugin, __SPP_PLUGIN_SLOT); )*
    };
}

/// One optional hook of [`export_plugin!`](crate::export_plugin): its C
/// symbol and the marker that lets its trait be implemented.
#[doc(hidden)]
#[macro_export]
macro_rules! __spp_export_hook {
    (route, $plugin:ty, $slot:ident) => {
        impl $crate::rt::ExportsRoute for $plugin {}

        /// # Safety
        /// Called by the spp host with pointers valid per `spp_plugin.h`.
        #[no_mangle]
        pub unsafe extern "C" fn spp_route(
            conn: *const $crate::abi::SppConnInfo,
            req: *const u8,
            len: usize,
        ) -> ::std::ffi::c_int {
            // SAFETY: forwarded host guarantees.
            unsafe { $crate::rt::route(&$slot, conn, req, len) }
        }
    };
    (exception, $plugin:ty, $slot:ident) => {
        impl $crate::rt::ExportsException for $plugin {}

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
            unsafe { $crate::rt::exception(&$slot, conn, req, len, reason) }
        }
    };
    (close, $plugin:ty, $slot:ident) => {
        impl $crate::rt::ExportsClose for $plugin {}

        /// # Safety
        /// Called by the spp host with pointers valid per `spp_plugin.h`.
        #[no_mangle]
        pub unsafe extern "C" fn spp_close(
            conn: *const $crate::abi::SppConnInfo,
            leftover: *const u8,
            len: usize,
        ) {
            // SAFETY: forwarded host guarantees.
            unsafe { $crate::rt::close(&$slot, conn, leftover, len) }
        }
    };
    (flow_closed, $plugin:ty, $slot:ident) => {
        impl $crate::rt::ExportsFlowClosed for $plugin {}

        #[no_mangle]
        pub extern "C" fn spp_flow_closed(flow: u64) {
            $crate::rt::flow_closed(&$slot, flow)
        }
    };
    (fini, $plugin:ty, $slot:ident) => {
        impl $crate::rt::ExportsFini for $plugin {}

        #[no_mangle]
        pub extern "C" fn spp_fini() {
            $crate::rt::fini(&$slot)
        }
    };
}

/// What both export macros ([`export_plugin!`](crate::export_plugin) and
/// `export_async_plugin!`) emit alike: the per-connection states and the
/// plugin's slot, the check that a non-zero-sized state lists `close`,
/// `spp_plugin_stateful` and `spp_plugin_abi_version`.
#[doc(hidden)]
#[macro_export]
macro_rules! __spp_export_common {
    ($plugin:ty, [$($hook:ident),*], $macro_name:literal) => {
        ::std::thread_local! {
            static __SPP_CONN_STATES: ::std::cell::RefCell<
                $crate::rt::ConnStates<<$plugin as $crate::Plugin>::ConnState>,
            > = ::std::cell::RefCell::new(::std::default::Default::default());
        }

        static __SPP_PLUGIN_SLOT: $crate::rt::Slot<$plugin> =
            $crate::rt::Slot::new(&__SPP_CONN_STATES);

        // A state that is not zero-sized is dropped in `spp_close`: `close`
        // must be listed. (`close` is `true` when listed: the inner items
        // shadow the outer one.)
        const _: () = {
            #[allow(non_upper_case_globals, dead_code)]
            const close: bool = false;
            const CLOSE_LISTED: bool = {
                $(
                    #[allow(non_upper_case_globals, dead_code)]
                    const $hook: bool = true;
                )*
                close
            };
            ::std::assert!(
                CLOSE_LISTED
                    || ::std::mem::size_of::<<$plugin as $crate::Plugin>::ConnState>() == 0,
                ::std::concat!("a plugin with a per-connection state (ConnState) must list `close` in ", $macro_name, "(..., hooks: [close]): the state is dropped there"),
            );
        };

        /// Non-zero when the plugin keeps state in a worker's memory
        /// (`Plugin::STATEFUL`).
        #[no_mangle]
        pub static spp_plugin_stateful: u32 =
            <$plugin as $crate::Plugin>::STATEFUL as u32;

        #[no_mangle]
        pub extern "C" fn spp_plugin_abi_version() -> u32 {
            $crate::SPP_PLUGIN_ABI_VERSION
        }
    };
}
