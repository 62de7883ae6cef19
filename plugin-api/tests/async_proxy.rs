//! An async plugin in the proxy role: no runtime is made (`init` runs
//! outside any), the proxy hooks are the synchronous ones (`input`, and
//! `route` through the blanket `Plugin` impl), `spp_poll` has nothing to
//! drive, and a listed `fini` runs the plugin's `OnFini`.

use spp_plugin_api::abi::{self, SppConnInfo, SPP_ERR_UNSUPPORTED, SPP_ROLE_PROXY};
use spp_plugin_api::{
    export_async_plugin, AsyncPlugin, Conn, Host, Input, OnFini, OnRoute, Reply, Request,
};
use std::sync::atomic::{AtomicBool, Ordering};

#[path = "../src/asynchronous/fake_host.rs"]
mod fake_host;
use fake_host::Setup;

static INIT_IN_RUNTIME: AtomicBool = AtomicBool::new(true);
static FINI_CALLED: AtomicBool = AtomicBool::new(false);

struct Front;

impl AsyncPlugin for Front {
    type ConnState = ();
    fn init(_host: Host, _conf: &str) -> Result<Self, i32> {
        INIT_IN_RUNTIME.store(
            tokio::runtime::Handle::try_current().is_ok(),
            Ordering::SeqCst,
        );
        Ok(Front)
    }
    fn input(&self, _c: Conn<'_>, _s: &mut (), buf: &[u8]) -> Input {
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => Input::Complete(i + 1),
            None => Input::NeedMore,
        }
    }
    async fn process(&self, req: Request) -> Reply {
        Reply::bytes(req.into_body())
    }
}

impl OnRoute for Front {
    fn route(&self, _c: Conn<'_>, _s: &mut (), req: &[u8]) -> u32 {
        if req.starts_with(b"2") {
            2
        } else {
            1
        }
    }
}

impl OnFini for Front {
    fn fini(&self) {
        FINI_CALLED.store(true, Ordering::SeqCst);
    }
}

export_async_plugin!(Front, hooks: [route, fini]);

#[test]
fn the_proxy_role_makes_no_runtime_and_keeps_the_sync_hooks() {
    let (_fake, table) = fake_host::leak(Setup {
        role: SPP_ROLE_PROXY,
        defers: false,
        ..Setup::default()
    });
    // SAFETY: the table is leaked; the conf is NUL-terminated.
    assert_eq!(unsafe { spp_init(table, c"".as_ptr()) }, 0);
    assert!(!INIT_IN_RUNTIME.load(Ordering::SeqCst));

    let info = SppConnInfo::default();
    let buf = b"2 hello\nrest";
    // SAFETY: valid pointers for each call.
    unsafe {
        assert_eq!(spp_input(&info, buf.as_ptr(), buf.len()), 8);
        assert_eq!(spp_route(&info, buf.as_ptr(), 8), 2);
        assert_eq!(spp_process(&info, buf.as_ptr(), 8), -1, "not a worker");
        let mut busy = 0;
        assert_eq!(spp_poll(-1, 0, &mut busy), SPP_ERR_UNSUPPORTED);
    }
    spp_fini();
    assert!(FINI_CALLED.load(Ordering::SeqCst));
}
