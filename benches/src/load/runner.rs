//! Runs a [`LoadSpec`]: probe the target, start the load threads (each a
//! one-thread tokio runtime with its share of the connections), let every
//! thread connect, release them together at one start instant, show
//! progress while they run, and merge their results into a [`Report`].

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use tokio::net::{TcpStream, UdpSocket};
use tokio::task::LocalSet;

use super::connect::{connect_tcp, connect_udp, probe};
use super::driver::{Feed, ThreadCtx};
use super::error::LoadError;
use super::progress::{Progress, PROGRESS_TICK};
use super::protocol::Codec;
use super::record::{Recorder, ThreadProgress, ThreadStats};
use super::report::Report;
use super::schedule::Clock;
use super::spec::{LoadSpec, Transport};
use super::{short, tcp, udp};

/// What a load thread tells the runner.
enum Msg {
    /// Connected (or failed to).
    Ready(usize, Result<(), LoadError>),
    /// Finished, with its results.
    Done(usize, Result<ThreadStats, LoadError>),
}

/// One load thread's share of the run.
struct Plan {
    index: usize,
    /// Global indices of its connections.
    connections: Vec<usize>,
    spec: Arc<LoadSpec>,
    codec: Arc<Codec>,
    progress: Arc<ThreadProgress>,
}

/// One connection, opened before the start.
enum Endpoint {
    Tcp(TcpStream),
    Udp(UdpSocket),
    /// Short connections open their own.
    Short,
}

/// Runs the load described by `spec` and reports what it measured.
///
/// Fails before sending load if the spec is invalid or the target is
/// unreachable; failures *during* the run are counted in the report.
pub fn run(spec: &LoadSpec) -> Result<Report, LoadError> {
    spec.validate()?;
    let codec = Arc::new(Codec::new(&spec.request));
    probe(&spec.target, &codec, spec.timeout)?;
    let threads = spec.effective_threads();
    let shared = Arc::new(spec.clone());
    let cells: Vec<Arc<ThreadProgress>> = (0..threads).map(|_| Arc::default()).collect();

    let (events_tx, events) = mpsc::channel();
    let mut starts = Vec::with_capacity(threads);
    let mut handles = Vec::with_capacity(threads);
    for (index, cell) in cells.iter().enumerate() {
        let (start_tx, start_rx) = mpsc::channel();
        let plan = Plan {
            index,
            connections: (index..spec.connections).step_by(threads).collect(),
            spec: shared.clone(),
            codec: codec.clone(),
            progress: cell.clone(),
        };
        let tx = events_tx.clone();
        let spawned = thread::Builder::new()
            .name(format!("spp-bench-{index}"))
            .spawn(move || load_thread(plan, tx, start_rx));
        match spawned {
            Ok(handle) => {
                starts.push(start_tx);
                handles.push(handle);
            }
            Err(source) => {
                release(&starts, None);
                join_all(handles);
                return Err(LoadError::Thread { index, source });
            }
        }
    }
    drop(events_tx);

    let mut failure = await_ready(&events, &handles).err();
    let start = Instant::now();
    release(&starts, failure.is_none().then_some(start));
    let mut progress = Progress::new(
        spec.progress && failure.is_none(),
        start,
        spec.warmup,
        spec.duration,
        cells,
    );
    let results = collect(&events, threads, &mut progress);
    progress.finish();
    for (index, joined) in join_all(handles).into_iter().enumerate() {
        if joined.is_err() {
            failure.get_or_insert(LoadError::ThreadPanicked { index });
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }

    let mut merged = ThreadStats::empty()?;
    for (index, result) in results.into_iter().enumerate() {
        let stats = result.unwrap_or(Err(LoadError::ThreadPanicked { index }))?;
        merged.merge(&stats)?;
    }
    Ok(Report::new(spec, threads, &merged))
}

/// Sends every thread the start instant (or `None`: abort).
fn release(starts: &[Sender<Option<Instant>>], start: Option<Instant>) {
    for s in starts {
        // A thread that already ended needs no start.
        let _ = s.send(start);
    }
}

fn join_all(handles: Vec<JoinHandle<()>>) -> Vec<thread::Result<()>> {
    handles.into_iter().map(JoinHandle::join).collect()
}

/// Waits until every thread has connected; the first failure wins. A
/// thread that ends without reporting (a panic) is noticed at the next tick.
fn await_ready(events: &Receiver<Msg>, handles: &[JoinHandle<()>]) -> Result<(), LoadError> {
    let mut reported = vec![false; handles.len()];
    let mut failure = None;
    // Bounded: every thread reports once, or ends and is noticed.
    while reported.iter().any(|r| !r) {
        match events.recv_timeout(PROGRESS_TICK) {
            Ok(Msg::Ready(index, result)) => {
                if let Some(r) = reported.get_mut(index) {
                    *r = true;
                }
                if let Err(e) = result {
                    failure.get_or_insert(e);
                }
            }
            // Only a thread that failed to connect ends before the start,
            // and it reported the failure first.
            Ok(Msg::Done(index, result)) => {
                if let Some(r) = reported.get_mut(index) {
                    *r = true;
                }
                if let Err(e) = result {
                    failure.get_or_insert(e);
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                let silent = reported
                    .iter()
                    .zip(handles)
                    .position(|(r, h)| !r && h.is_finished());
                if let Some(index) = silent {
                    failure.get_or_insert(LoadError::ThreadPanicked { index });
                    break;
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Collects every thread's results, ticking the progress bar meanwhile.
fn collect(
    events: &Receiver<Msg>,
    threads: usize,
    progress: &mut Progress,
) -> Vec<Option<Result<ThreadStats, LoadError>>> {
    let mut results: Vec<_> = (0..threads).map(|_| None).collect();
    let mut pending = threads;
    // Bounded: the threads stop at the run's hard stop; a thread that
    // dies drops its sender, and the channel disconnects when all are gone.
    while pending > 0 {
        match events.recv_timeout(PROGRESS_TICK) {
            Ok(Msg::Done(index, result)) => {
                if let Some(slot) = results.get_mut(index) {
                    *slot = Some(result);
                }
                pending -= 1;
            }
            Ok(Msg::Ready(..)) => {}
            Err(RecvTimeoutError::Timeout) => progress.tick(),
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    results
}

/// The body of one load thread.
fn load_thread(plan: Plan, events: Sender<Msg>, start: Receiver<Option<Instant>>) {
    let index = plan.index;
    let result = run_thread(plan, &events, start);
    // The runner may have given up already.
    let _ = events.send(Msg::Done(index, result));
}

fn run_thread(
    plan: Plan,
    events: &Sender<Msg>,
    start: Receiver<Option<Instant>>,
) -> Result<ThreadStats, LoadError> {
    let index = plan.index;
    let spec = &plan.spec;
    let setup = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| LoadError::Thread { index, source })
        .and_then(|rt| {
            let endpoints = rt.block_on(open_endpoints(&plan))?;
            Ok((rt, endpoints))
        });
    let (rt, endpoints) = match setup {
        Ok(ready) => {
            let _ = events.send(Msg::Ready(index, Ok(())));
            ready
        }
        Err(e) => {
            let _ = events.send(Msg::Ready(index, Err(e)));
            return Err(LoadError::Aborted { index });
        }
    };
    let Ok(Some(start)) = start.recv() else {
        return Err(LoadError::Aborted { index });
    };

    let clock = Clock::new(start, spec.warmup, spec.duration, spec.timeout);
    let ctx = Rc::new(ThreadCtx {
        addr: spec.target.addr,
        codec: plan.codec.clone(),
        clock,
        recorder: RefCell::new(Recorder::new(clock, plan.progress.clone())?),
    });
    let local = LocalSet::new();
    let tasks: Vec<_> = plan
        .connections
        .iter()
        .zip(endpoints)
        .map(|(&conn, endpoint)| {
            let feed = Feed::new(spec.load, &clock, conn, spec.connections);
            let ctx = ctx.clone();
            match endpoint {
                Endpoint::Tcp(s) => local.spawn_local(tcp::drive(ctx, s, feed)),
                Endpoint::Udp(s) => local.spawn_local(udp::drive(ctx, s, feed)),
                Endpoint::Short => local.spawn_local(short::drive(ctx)),
            }
        })
        .collect();
    let panicked = local.block_on(&rt, async {
        let mut panicked = false;
        for task in tasks {
            panicked |= task.await.is_err();
        }
        panicked
    });
    if panicked {
        return Err(LoadError::ThreadPanicked { index });
    }
    let stats = ctx.recorder.borrow().stats().clone();
    Ok(stats)
}

/// Opens this thread's connections (one after the other, each within the
/// timeout).
async fn open_endpoints(plan: &Plan) -> Result<Vec<Endpoint>, LoadError> {
    let spec = &plan.spec;
    let target = &spec.target;
    let connect_error = |source| LoadError::Connect {
        target: target.to_string(),
        source,
    };
    let mut endpoints = Vec::with_capacity(plan.connections.len());
    for _ in &plan.connections {
        let endpoint = match (spec.short, target.transport) {
            (true, _) => Endpoint::Short,
            (false, Transport::Tcp) => Endpoint::Tcp(
                connect_tcp(target.addr, spec.timeout)
                    .await
                    .map_err(connect_error)?,
            ),
            (false, Transport::Udp) => {
                Endpoint::Udp(connect_udp(target.addr).map_err(connect_error)?)
            }
        };
        endpoints.push(endpoint);
    }
    Ok(endpoints)
}
