//! An async plugin where the host cannot defer (a plain or micro-thread
//! group, an older host): `spp_process` runs the task to completion and
//! replies before it returns, with the same panic handling.

use spp_plugin_api::abi::{self, SppConnInfo, SPP_OK};
use spp_plugin_api::{export_async_plugin, AsyncPlugin, Conn, Host, Input, Reply, Request};
use std::time::Duration;

#[path = "../src/asynchronous/fake_host.rs"]
mod fake_host;
use fake_host::Setup;

struct Script;

impl AsyncPlugin for Script {
    type ConnState = ();
    fn init(_host: Host, _conf: &str) -> Result<Self, i32> {
        Ok(Script)
    }
    fn input(&self, _c: Conn<'_>, _s: &mut (), buf: &[u8]) -> Input {
        Input::Complete(buf.len())
    }
    async fn process(&self, req: Request) -> Reply {
        match req.body().as_ref() {
            b"panic" => panic!("asked to"),
            b"close" => Reply::bytes(&b"bye"[..]).and_close(),
            _ => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Reply::bytes(req.into_body())
            }
        }
    }
}

export_async_plugin!(Script);

fn process(flow: u64, body: &[u8]) -> i32 {
    let info = SppConnInfo {
        flow,
        ..SppConnInfo::default()
    };
    // SAFETY: valid pointers for the call.
    unsafe { spp_process(&info, body.as_ptr(), body.len()) }
}

/// One test: one host per process (an older one, without defer).
#[test]
fn without_defer_process_runs_the_task_to_completion() {
    let (fake, table) = fake_host::leak(Setup {
        defers: true,
        size: std::mem::offset_of!(abi::SppHost, defer) as u32,
        ..Setup::default()
    });
    // SAFETY: the table is leaked; the conf is NUL-terminated.
    assert_eq!(unsafe { spp_init(table, c"".as_ptr()) }, 0);

    assert_eq!(process(300, b"echo"), SPP_OK);
    assert_eq!(
        fake.replies(300),
        vec![b"echo".to_vec()],
        "answered within the call"
    );
    assert_eq!(process(301, b"close"), -1);
    assert_eq!(fake.replies(301), vec![b"bye".to_vec()]);
    assert_eq!(process(302, b"panic"), -1, "failed(): close by default");
    assert_eq!(fake.counter(spp_plugin_api::asynchronous::PANICKED), 1);
    assert_eq!(process(303, b"again"), SPP_OK);
    assert_eq!(fake.peek_token(), 1, "defer was never called");
    spp_fini();
}
