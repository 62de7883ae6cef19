//! `spp-echo-direct`: the "no framework" baseline echo server (see
//! [`spp_benches::direct`]). One thread, one epoll; the spp echo protocol
//! (4-byte big-endian length + payload, the reply is the same frame) on
//! every `--tcp` and `--udp` address.
//!
//! Once every socket is bound it prints one line per socket on stdout,
//! `listening tcp 127.0.0.1:40123`, in the order TCP then UDP (each in
//! command-line order), so scripts can read the ports. It runs until
//! SIGTERM or SIGINT and then exits with status 0.

use anyhow::Context;
use clap::{ArgGroup, Parser};
use spp_benches::direct::{
    Limits, Listen, Server, StopHandle, DEFAULT_MAX_PAYLOAD, DEFAULT_MAX_PENDING,
};
use std::io::Write;
use std::net::SocketAddr;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Single-threaded epoll echo server for the spp echo protocol: the baseline spp is compared against."
)]
#[command(group(ArgGroup::new("listen").required(true).multiple(true).args(["tcp", "udp"])))]
struct Args {
    /// Serve TCP on ADDR (repeatable), e.g. 127.0.0.1:0 for a free port.
    #[arg(long, value_name = "ADDR")]
    tcp: Vec<SocketAddr>,
    /// Serve UDP on ADDR (repeatable), one frame per datagram.
    #[arg(long, value_name = "ADDR")]
    udp: Vec<SocketAddr>,
    /// Largest payload a frame may announce (e.g. 1MiB); a larger one
    /// closes the connection or drops the datagram.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value_t = DEFAULT_MAX_PAYLOAD)]
    max_payload: usize,
    /// Unsent reply bytes per connection above which the client is not
    /// read until it catches up (e.g. 4MiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value_t = DEFAULT_MAX_PENDING)]
    max_pending: usize,
}

fn parse_size(text: &str) -> Result<usize, String> {
    let size: bytesize::ByteSize = text.parse()?;
    usize::try_from(size.as_u64()).map_err(|_| format!("{text} is too large"))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listen: Vec<Listen> = args
        .tcp
        .iter()
        .map(|&a| Listen::tcp(a))
        .chain(args.udp.iter().map(|&a| Listen::udp(a)))
        .collect();
    // Blocked before any thread exists, so every thread inherits the mask
    // and only the signal thread's sigwait takes them.
    let signals = block_stop_signals().context("cannot block SIGTERM/SIGINT")?;
    spp_benches::fdlimit::raise_to_hard();
    let limits = Limits {
        max_payload: args.max_payload,
        max_pending: args.max_pending,
    };
    let mut server = Server::bind(&listen, limits)?;
    stop_on_signal(signals, server.stop_handle())?;
    let mut out = std::io::stdout().lock();
    for socket in server.listening() {
        writeln!(out, "{socket}")?;
    }
    out.flush()?;
    drop(out);
    server.run()?;
    Ok(())
}

/// SIGTERM and SIGINT, blocked in the calling thread.
fn block_stop_signals() -> std::io::Result<libc::sigset_t> {
    // SAFETY: `sigset_t` is plain data; sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset; the signal numbers are valid.
    let rc = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    Ok(set)
}

/// A thread that waits for one of `signals` and stops the server.
fn stop_on_signal(signals: libc::sigset_t, stop: StopHandle) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut signal = 0;
            // SAFETY: `signals` is an initialised sigset, blocked in this
            // thread (inherited mask); `signal` is a valid out pointer.
            if unsafe { libc::sigwait(&signals, &mut signal) } == 0 {
                stop.stop();
                return;
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}
