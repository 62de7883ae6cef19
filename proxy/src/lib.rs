//! The spp proxy as a library: [`serve`] runs one proxy process from its
//! launch spec; `main.rs` only reads the spec, sets up logging and calls
//! in.
//!
//! It listens on the inherited TCP and UDP sockets, frames requests with
//! the plugin's `spp_input`, routes them through shared-memory rings to the
//! workers and writes their responses back.
//!
//! # The parts
//!
//! [`event_loop::Proxy`] owns a few parts, each with one job, and moves
//! work between them:
//!
//! * [`io::Io`] — the poll, the signal pipe, the doorbell, the TCP
//!   listeners, the one scratch buffer every read goes into;
//! * [`clients::Clients`] — TCP connections ([`conn::Conn`], whose life is a
//!   [`conn::ConnState`]), UDP flows ([`udp`]), delivering bytes to a flow,
//!   the flush / read-again / resume lists;
//! * [`dispatch::Dispatcher`] — the worker slots: the pure choice
//!   ([`dispatch::policy`]), what is in flight (per slot the FIFO of the
//!   pair's proxy end, per connection [`dispatch::ledger`]; only the
//!   dispatcher changes either), the pair ends ([`dispatch::slot`], over
//!   `spp_ipc::pair::ProxyEnd`) and which workers are alive
//!   ([`dispatch::liveness`]);
//! * [`hooks::Hooks`] — the plugin: runs each hook and applies the
//!   `reply`/`close` calls it queued right after it ([`host`] is the
//!   `spp_host` table they go through).
//!
//! Answers on a TCP connection leave in request order whatever group or
//! worker serves each: [`order`] holds the early ones.
//!
//! The rest: [`lifecycle`] (signals: drain, stop, log reopening),
//! [`live_limits`] (limits changed while running), [`requests`] (route,
//! queue or fail one request), [`responses`] (draining response rings,
//! failing a dead worker's requests), [`flow`] (flow ids), [`setup`] (the
//! launch spec), [`udp_batch`] (`recvmmsg`/`sendmmsg`), [`token`] (poll
//! tokens), [`error`].
//!
//! # One request, from `read` to `write`
//!
//! 1. [`Proxy::run`](event_loop::Proxy::run) waits in `Io::wait`; a
//!    readable connection's event reaches `Proxy::conn_readable`
//!    ([`tcp`]), which reads into the scratch buffer.
//! 2. `Proxy::on_bytes` / `Proxy::frame` ([`tcp`]) ask
//!    [`Hooks::input`](hooks::Hooks::input) where the first request ends;
//!    before that, [`Dispatcher::affinity`](dispatch::Dispatcher::affinity)
//!    says whether the connection sticks to a worker or must hold.
//! 3. `Proxy::submit` ([`requests`]) stamps the request, asks
//!    [`Hooks::route`](hooks::Hooks::route) for the group and calls
//!    [`Dispatcher::push`](dispatch::Dispatcher::push): the policy picks a
//!    slot, `Slot::push` writes the record into its request ring through
//!    the pair's proxy end (which keeps it in flight, by `seq`), the
//!    [`Ledger`](dispatch::Ledger) counts it for its connection. A refusal
//!    goes to [`Hooks::exception`](hooks::Hooks::exception).
//! 4. At the end of the turn (`Proxy::end_of_turn`, [`event_loop`])
//!    [`Dispatcher::publish`](dispatch::Dispatcher::publish) publishes each
//!    ring pushed to once and wakes its worker if it sleeps; a ring that
//!    took a batch of records or bytes ([`dispatch::slot`]) was published
//!    already when the push that filled the batch happened, so a long turn
//!    does not keep its worker waiting. A turn reads a bounded number of
//!    connections and bytes ([`event_loop::TURN_READ_CONNS`]); the other
//!    ready ones wait in the read-again list for the next turn.
//! 5. The worker answers into the response ring. `Proxy::drain_responses`
//!    ([`responses`]) takes each record through
//!    [`Dispatcher::drain_responses`](dispatch::Dispatcher::drain_responses),
//!    decides with [`responses::action`] and hands the bytes to
//!    [`Hooks::deliver`](hooks::Hooks::deliver) →
//!    [`Clients::deliver`](clients::Clients::deliver), which queues them on
//!    the connection's bounded send buffer; then
//!    [`Dispatcher::pop_completed`](dispatch::Dispatcher::pop_completed)
//!    drops what the worker's `completed_seq` covers.
//! 6. Still in that turn, [`Clients::flush_marked`](clients::Clients::flush_marked)
//!    writes every connection with new bytes once (`Conn::flush`).
//!
//! Exit status (see `main.rs`): 0 after SIGINT or a finished SIGTERM
//! drain; 2 for a bad launch spec or a plugin that cannot be loaded; 3
//! when the plugin's `spp_init` refuses; 1 when the event loop itself
//! fails.

pub mod clients;
pub mod conn;
pub mod dispatch;
pub mod error;
pub mod event_loop;
pub mod flow;
pub mod hooks;
pub mod host;
pub mod io;
pub mod lifecycle;
pub mod live_limits;
pub mod order;
pub mod overrun;
pub mod partial;
pub mod poison;
pub mod requests;
pub mod responses;
pub mod setup;
pub mod tcp;
pub mod token;
pub mod udp;
pub mod udp_batch;

use anyhow::Context;
pub use error::ProxyError;
use event_loop::Proxy;
use spp_ipc::launch::ProxyLaunch;

/// Runs the proxy described by `launch` until SIGINT or a finished drain:
/// sets it up, calls the plugin's `spp_init`, runs the loop, calls
/// `spp_fini`. A failure carries a [`ProxyError`] (for the exit code).
pub fn serve(launch: &ProxyLaunch) -> anyhow::Result<()> {
    tracing::info!(service = %launch.service, shard = launch.shard, shards = launch.shards, epoch = launch.epoch, plugin = %launch.plugin.display(), "proxy starting");
    let mut proxy = Proxy::new(launch)?;
    proxy.init_plugin(&launch.plugin_conf)?;
    let outcome = proxy.run();
    proxy.finish();
    outcome.context("event loop failed")
}
