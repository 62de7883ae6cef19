//! The host side of the ABI: [`PluginLibrary`] opens a plugin `.so`,
//! checks its ABI version and resolves its hooks once, so the hot path is a
//! plain indirect call. Used by the proxy, the worker and `spp check`.

use crate::abi::{self, symbols, SppConnInfo, SppHost, SPP_PLUGIN_ABI_VERSION};
use std::ffi::{c_int, CStr};
use std::path::{Path, PathBuf};

/// Which process loads the plugin; decides which hooks are required.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The proxy needs `spp_input`.
    Proxy,
    /// A worker needs `spp_process`.
    Worker,
}

impl Role {
    /// The `spp_host.role` value.
    pub fn raw(self) -> u32 {
        match self {
            Role::Proxy => abi::SPP_ROLE_PROXY,
            Role::Worker => abi::SPP_ROLE_WORKER,
        }
    }
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `dlopen` failed.
    #[error("plugin {path}: cannot load")]
    Open {
        /// The plugin file.
        path: PathBuf,
        /// The loader's message.
        source: libloading::Error,
    },
    /// A required hook is not exported.
    #[error("plugin {path}: does not export the required hook `{symbol}`")]
    MissingHook {
        /// The plugin file.
        path: PathBuf,
        /// The missing symbol.
        symbol: &'static str,
    },
    /// The plugin was built against another ABI version.
    #[error(
        "plugin {path}: ABI version {plugin} is not supported (this host speaks version {host})"
    )]
    AbiMismatch {
        /// The plugin file.
        path: PathBuf,
        /// What the plugin exports.
        plugin: u32,
        /// What this host speaks.
        host: u32,
    },
}

/// A loaded plugin with its hooks resolved.
pub struct PluginLibrary {
    path: PathBuf,
    init: Option<abi::InitHook>,
    input: Option<abi::InputHook>,
    route: Option<abi::RouteHook>,
    process: Option<abi::ProcessHook>,
    exception: Option<abi::ExceptionHook>,
    close: Option<abi::CloseHook>,
    fini: Option<abi::FiniHook>,
    flow_closed: Option<abi::FlowClosedHook>,
    poll: Option<abi::PollHook>,
    conn_open: Option<abi::ConnOpenHook>,
    input_ctx: Option<abi::InputCtxHook>,
    conn_free: Option<abi::ConnFreeHook>,
    stateful: bool,
    // Keeps the code behind the function pointers mapped; dropped last.
    _lib: libloading::Library,
}

fn symbol_name(sym: &'static [u8]) -> &'static str {
    std::str::from_utf8(&sym[..sym.len().saturating_sub(1)]).unwrap_or("?")
}

impl PluginLibrary {
    /// Opens `path`, checks the ABI version and resolves the hooks `role`
    /// requires (and every optional one).
    pub fn load(path: &Path, role: Role) -> Result<Self, LoadError> {
        let path_buf = path.to_path_buf();
        // SAFETY: loading a library runs its initialisers; a plugin is
        // trusted code named by the operator's config.
        let lib = unsafe { libloading::Library::new(path) }.map_err(|source| LoadError::Open {
            path: path_buf.clone(),
            source,
        })?;

        let get = |sym: &'static [u8]| -> Option<*const ()> {
            // SAFETY: each symbol is looked up as an untyped pointer and
            // cast to the type `spp_plugin.h` declares for it below; the
            // pointers stay valid while `lib` lives, and `PluginLibrary`
            // keeps `lib` for as long as it hands them out.
            unsafe { lib.get::<*const ()>(sym) }.ok().map(|s| *s)
        };
        let version_ptr = get(symbols::ABI_VERSION).ok_or(LoadError::MissingHook {
            path: path_buf.clone(),
            symbol: symbol_name(symbols::ABI_VERSION),
        })?;
        // SAFETY: the symbol is `uint32_t spp_plugin_abi_version(void)`.
        let version =
            unsafe { std::mem::transmute::<*const (), abi::AbiVersionHook>(version_ptr)() };
        if version != SPP_PLUGIN_ABI_VERSION {
            return Err(LoadError::AbiMismatch {
                path: path_buf,
                plugin: version,
                host: SPP_PLUGIN_ABI_VERSION,
            });
        }

        // SAFETY: `spp_plugin_stateful` is a `const uint32_t` variable
        // (spp_plugin.h); the pointer is to its 4 bytes, mapped while `lib`
        // lives, and read once here.
        let stateful = get(symbols::STATEFUL)
            .is_some_and(|p| unsafe { p.cast::<u32>().read_unaligned() } != 0);
        // SAFETY: (all transmutes below) each pointer is the symbol of that
        // name, whose C signature is the target type (spp_plugin.h).
        let plugin = unsafe {
            PluginLibrary {
                init: get(symbols::INIT)
                    .map(|p| std::mem::transmute::<*const (), abi::InitHook>(p)),
                input: get(symbols::INPUT)
                    .map(|p| std::mem::transmute::<*const (), abi::InputHook>(p)),
                route: get(symbols::ROUTE)
                    .map(|p| std::mem::transmute::<*const (), abi::RouteHook>(p)),
                process: get(symbols::PROCESS)
                    .map(|p| std::mem::transmute::<*const (), abi::ProcessHook>(p)),
                exception: get(symbols::EXCEPTION)
                    .map(|p| std::mem::transmute::<*const (), abi::ExceptionHook>(p)),
                close: get(symbols::CLOSE)
                    .map(|p| std::mem::transmute::<*const (), abi::CloseHook>(p)),
                fini: get(symbols::FINI)
                    .map(|p| std::mem::transmute::<*const (), abi::FiniHook>(p)),
                flow_closed: get(symbols::FLOW_CLOSED)
                    .map(|p| std::mem::transmute::<*const (), abi::FlowClosedHook>(p)),
                poll: get(symbols::POLL)
                    .map(|p| std::mem::transmute::<*const (), abi::PollHook>(p)),
                conn_open: get(symbols::CONN_OPEN)
                    .map(|p| std::mem::transmute::<*const (), abi::ConnOpenHook>(p)),
                input_ctx: get(symbols::INPUT_CTX)
                    .map(|p| std::mem::transmute::<*const (), abi::InputCtxHook>(p)),
                conn_free: get(symbols::CONN_FREE)
                    .map(|p| std::mem::transmute::<*const (), abi::ConnFreeHook>(p)),
                stateful,
                path: path_buf,
                _lib: lib,
            }
        };
        let missing = match role {
            Role::Proxy if plugin.input.is_none() => Some(symbols::INPUT),
            Role::Worker if plugin.process.is_none() => Some(symbols::PROCESS),
            _ => None,
        };
        if let Some(symbol) = missing {
            return Err(LoadError::MissingHook {
                path: plugin.path.clone(),
                symbol: symbol_name(symbol),
            });
        }
        Ok(plugin)
    }

    /// The file this plugin was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the plugin declares itself stateful (exports a non-zero
    /// `spp_plugin_stateful`).
    pub fn stateful(&self) -> bool {
        self.stateful
    }

    /// Calls `spp_init` (0 when the plugin has none).
    ///
    /// # Safety
    /// `host` must stay valid, at the same address, until [`Self::fini`]
    /// returns: the plugin may keep the pointer.
    pub unsafe fn init(&self, host: *const SppHost, conf: &CStr) -> c_int {
        match self.init {
            // SAFETY: the caller keeps `host` alive; `conf` is NUL-terminated.
            Some(f) => unsafe { f(host, conf.as_ptr()) },
            None => 0,
        }
    }

    /// Calls `spp_input`; `None` when the plugin has no input hook (a
    /// worker-only plugin).
    #[inline]
    pub fn input(&self, conn: &SppConnInfo, buf: &[u8]) -> Option<c_int> {
        // SAFETY: both pointers are valid for the call, `len` matches.
        self.input
            .map(|f| unsafe { f(conn, buf.as_ptr(), buf.len()) })
    }

    /// Calls `spp_route`; `None` when the plugin has none (group 1).
    #[inline]
    pub fn route(&self, conn: &SppConnInfo, req: &[u8]) -> Option<c_int> {
        // SAFETY: both pointers are valid for the call, `len` matches.
        self.route
            .map(|f| unsafe { f(conn, req.as_ptr(), req.len()) })
    }

    /// Calls `spp_process`; `None` when the plugin has none.
    #[inline]
    pub fn process(&self, conn: &SppConnInfo, req: &[u8]) -> Option<c_int> {
        // SAFETY: both pointers are valid for the call, `len` matches.
        self.process
            .map(|f| unsafe { f(conn, req.as_ptr(), req.len()) })
    }

    /// Calls `spp_exception`; `None` when the plugin has none (close).
    pub fn exception(
        &self,
        conn: &SppConnInfo,
        req: Option<&[u8]>,
        reason: c_int,
    ) -> Option<c_int> {
        let (ptr, len) = req.map_or((std::ptr::null(), 0), |r| (r.as_ptr(), r.len()));
        // SAFETY: `conn` is valid; `ptr` is null or points to `len` bytes.
        self.exception.map(|f| unsafe { f(conn, ptr, len, reason) })
    }

    /// Calls `spp_close` if the plugin has it.
    pub fn close(&self, conn: &SppConnInfo, leftover: &[u8]) {
        if let Some(f) = self.close {
            // SAFETY: both pointers are valid for the call, `len` matches.
            unsafe { f(conn, leftover.as_ptr(), leftover.len()) }
        }
    }

    /// Whether the plugin frames TCP with `spp_input_ctx` (and a context
    /// per connection) instead of `spp_input`.
    #[inline]
    pub fn has_input_ctx(&self) -> bool {
        self.input_ctx.is_some()
    }

    /// Calls `spp_conn_open` (0, NULL, when the plugin has none): the
    /// context of a new connection, as an opaque address the host only
    /// hands back.
    pub fn conn_open(&self, conn: &SppConnInfo) -> usize {
        match self.conn_open {
            // SAFETY: `conn` is valid for the call.
            Some(f) => unsafe { f(conn) as usize },
            None => 0,
        }
    }

    /// Calls `spp_input_ctx` with the connection's context (what
    /// [`Self::conn_open`] returned for it; never dereferenced here);
    /// `None` when the plugin has none.
    #[inline]
    pub fn input_ctx(&self, conn: &SppConnInfo, conn_ctx: usize, buf: &[u8]) -> Option<c_int> {
        let ctx = conn_ctx as *mut std::ffi::c_void;
        // SAFETY: `conn` and `buf` are valid for the call; `ctx` is the
        // plugin's own value, handed back as is.
        self.input_ctx
            .map(|f| unsafe { f(conn, ctx, buf.as_ptr(), buf.len()) })
    }

    /// Calls `spp_conn_free` with the connection's context, if the plugin
    /// has the hook.
    pub fn conn_free(&self, conn: &SppConnInfo, conn_ctx: usize) {
        if let Some(f) = self.conn_free {
            // SAFETY: `conn` is valid; the context is the plugin's own
            // value, handed back once.
            unsafe { f(conn, conn_ctx as *mut std::ffi::c_void) }
        }
    }

    /// Whether the plugin has `spp_flow_closed`.
    pub fn has_flow_closed(&self) -> bool {
        self.flow_closed.is_some()
    }

    /// Calls `spp_flow_closed(flow)` if the plugin has it.
    #[inline]
    pub fn flow_closed(&self, flow: u64) {
        if let Some(f) = self.flow_closed {
            // SAFETY: plain call with a value argument.
            unsafe { f(flow) }
        }
    }

    /// Whether the plugin has `spp_poll` (an event loop of its own for the
    /// worker to drive, `mode = "async"`).
    pub fn has_poll(&self) -> bool {
        self.poll.is_some()
    }

    /// Calls `spp_poll(wake_fd, wait_ms, &busy_ns)`: its return code and
    /// the nanoseconds it reports as spent running plugin code. `None`
    /// when the plugin has no `spp_poll`.
    #[inline]
    pub fn poll(&self, wake_fd: c_int, wait_ms: u32) -> Option<(c_int, u64)> {
        let f = self.poll?;
        let mut busy_ns = 0u64;
        // SAFETY: `busy_ns` is a live, writable u64 for the call; `wake_fd`
        // is only polled by the plugin, never closed or read.
        let rc = unsafe { f(wake_fd, wait_ms, &mut busy_ns) };
        Some((rc, busy_ns))
    }

    /// Calls `spp_fini` if the plugin has it.
    pub fn fini(&self) {
        if let Some(f) = self.fini {
            // SAFETY: plain call with no arguments.
            unsafe { f() }
        }
    }
}
