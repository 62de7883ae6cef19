//! `spp-tokio-relay`: the relay a Rust developer would write with tokio
//! (see [`spp_benches::relay`]), the peer spp's relay plugin is compared
//! against. It listens on `--listen` (TCP), forwards every echo-framed
//! request to `--backend` over a pool of keep-alive connections and
//! returns the answer.
//!
//! Once listening it prints `listening tcp 127.0.0.1:40123` on stdout (as
//! `spp-echo-direct` does), so scripts can read the port. It runs until
//! SIGTERM or SIGINT and then exits with status 0.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use spp_benches::relay::{self, RelayConfig, DEFAULT_POOL, DEFAULT_TIMEOUT};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "tokio relay for the spp echo protocol: forwards each frame to a backend over keep-alive connections."
)]
struct Args {
    /// Where to listen (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The backend every frame is forwarded to.
    #[arg(long, value_name = "ADDR")]
    backend: SocketAddr,
    /// tokio worker threads (default: one per CPU).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Most keep-alive backend connections (and requests in flight).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_POOL)]
    pool: usize,
    /// How long one backend round trip may take (e.g. 1s).
    #[arg(long, value_name = "DURATION", default_value_t = DEFAULT_TIMEOUT.into())]
    timeout: humantime::Duration,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.pool > 0, "--pool must be at least 1");
    spp_benches::fdlimit::raise_to_hard();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = args.threads {
        anyhow::ensure!(n > 0, "--threads must be at least 1");
        builder.worker_threads(n);
    }
    let runtime = builder.build().context("cannot start the tokio runtime")?;
    let mut config = RelayConfig::new(args.backend);
    config.pool = args.pool;
    config.timeout = args.timeout.into();
    runtime.block_on(async move {
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        let listener = relay::bind(args.listen).await?;
        let addr = listener
            .local_addr()
            .context("cannot read the bound address")?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening tcp {addr}")?;
        out.flush()?;
        drop(out);
        tokio::select! {
            () = relay::serve(listener, config) => {}
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok::<(), anyhow::Error>(())
    })?;
    // Client tasks still running are dropped with the runtime.
    runtime.shutdown_background();
    Ok(())
}
