//! The measurement placement (`SPP_ASYNC_RUNTIME=thread`) through the C
//! hooks, against a fake host that defers: tasks run, reply and complete
//! on the plugin thread; `spp_poll` answers `SPP_ERR_UNSUPPORTED`;
//! `spp_flow_closed` cancels there; `spp_fini` stops and joins the thread.

use spp_plugin_api::abi::{self, SppConnInfo, SPP_ERR_UNSUPPORTED, SPP_OK};
use spp_plugin_api::asynchronous::{RUNTIME_ENV, RUNTIME_THREAD};
use spp_plugin_api::{export_async_plugin, AsyncPlugin, Conn, Host, Input, Reply, Request};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread::ThreadId;
use std::time::Duration;

#[path = "../src/asynchronous/fake_host.rs"]
mod fake_host;
use fake_host::Setup;

/// Whether `init` ran inside a tokio runtime's context.
static INIT_IN_RUNTIME: AtomicBool = AtomicBool::new(false);
/// The threads tasks ran on.
static TASK_THREADS: Mutex<Vec<ThreadId>> = Mutex::new(Vec::new());

struct Script;

impl AsyncPlugin for Script {
    type ConnState = ();
    fn init(_host: Host, _conf: &str) -> Result<Self, i32> {
        INIT_IN_RUNTIME.store(
            tokio::runtime::Handle::try_current().is_ok(),
            Ordering::SeqCst,
        );
        Ok(Script)
    }
    fn input(&self, _c: Conn<'_>, _s: &mut (), buf: &[u8]) -> Input {
        Input::Complete(buf.len())
    }
    async fn process(&self, req: Request) -> Reply {
        TASK_THREADS
            .lock()
            .unwrap()
            .push(std::thread::current().id());
        if req.body().as_ref() == b"hang" {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        Reply::bytes(req.into_body())
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

/// One test: the placement is chosen once per process.
#[test]
fn tasks_run_on_the_plugin_thread_and_complete_from_there() {
    std::env::set_var(RUNTIME_ENV, RUNTIME_THREAD);
    let (fake, table) = fake_host::leak(Setup::default());
    // SAFETY: the table is leaked; the conf is NUL-terminated.
    assert_eq!(unsafe { spp_init(table, c"".as_ptr()) }, 0);
    assert!(INIT_IN_RUNTIME.load(Ordering::SeqCst));
    assert!(spp_plugin_api::asynchronous::glue::is_threaded());

    let mut busy = 0;
    // SAFETY: `busy` is writable.
    assert_eq!(unsafe { spp_poll(-1, 0, &mut busy) }, SPP_ERR_UNSUPPORTED);

    let token = fake.peek_token();
    assert_eq!(process(200, b"echo"), SPP_OK);
    assert_eq!(fake.wait_completed(token, Duration::from_secs(5)), Some(0));
    assert_eq!(fake.replies(200), vec![b"echo".to_vec()]);
    let threads = TASK_THREADS.lock().unwrap().clone();
    assert!(!threads.contains(&std::thread::current().id()));

    let hung = fake.peek_token();
    assert_eq!(process(201, b"hang"), SPP_OK);
    spp_flow_closed(201);
    assert_eq!(fake.wait_completed(hung, Duration::from_secs(5)), Some(-1));

    let last = fake.peek_token();
    assert_eq!(process(202, b"hang"), SPP_OK);
    spp_fini();
    assert_eq!(
        fake.completed(last),
        Some(-1),
        "dropped (and completed) by fini"
    );
}
