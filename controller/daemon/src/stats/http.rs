//! The Prometheus endpoint: HTTP/1.1 (hyper) on a task of the current
//! tokio runtime. `GET /metrics` (and `HEAD`) answers the text exposition
//! of the newest published window, encoded once per window
//! ([`Published::exposition`]) and shared by every scrape of it; any other
//! path is 404, any other method 405.
//!
//! The server lives as long as the [`Collector`](super::Collector) it
//! serves: when the collector is dropped, the publishing channel closes and
//! the listener with it.
//!
//! Bounded: at most [`MAX_CONNECTIONS`] connections are served at once
//! (more are closed at accept), each connection carries one request
//! (no keep-alive), may take [`CONNECTION_TIMEOUT`] in all, and may send
//! headers of at most [`MAX_REQUEST_BUFFER`] bytes.

use super::exposition;
use super::report::StatReport;
use super::{Published, StatsError};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// The path of the exposition.
pub const METRICS_PATH: &str = "/metrics";
pub use spp_config::defaults::{
    METRICS_ACCEPT_ERROR_PAUSE as ACCEPT_ERROR_PAUSE,
    METRICS_CONNECTION_TIMEOUT as CONNECTION_TIMEOUT, METRICS_MAX_CONNECTIONS as MAX_CONNECTIONS,
    METRICS_MAX_REQUEST_BUFFER as MAX_REQUEST_BUFFER,
};

/// Binds `addr` now and serves on a task of the current runtime; returns
/// the bound address (the real port when `addr` has port 0).
pub fn start(
    addr: SocketAddr,
    windows: watch::Receiver<Option<Arc<Published>>>,
) -> Result<SocketAddr, StatsError> {
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|source| StatsError::NoRuntime { addr, source })?;
    let bind_err = |source| StatsError::Bind { addr, source };
    let std_listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
    std_listener.set_nonblocking(true).map_err(bind_err)?;
    let local_addr = std_listener.local_addr().map_err(bind_err)?;
    // Inside the runtime's context (try_current succeeded).
    let listener = TcpListener::from_std(std_listener).map_err(bind_err)?;
    runtime.spawn(serve(listener, windows));
    Ok(local_addr)
}

/// Serves until the collector is gone.
async fn serve(listener: TcpListener, windows: watch::Receiver<Option<Arc<Published>>>) {
    let mut publisher = windows.clone();
    tokio::select! {
        () = accept_loop(listener, windows) => {}
        () = async { while publisher.changed().await.is_ok() {} } => {
            tracing::debug!("metrics endpoint: the collector is gone, closing");
        }
    }
}

async fn accept_loop(listener: TcpListener, windows: watch::Receiver<Option<Arc<Published>>>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%peer, "metrics endpoint: too many connections, closing");
            drop(stream);
            continue;
        };
        let windows = windows.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| {
                let response = respond(&req, &windows);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = http1::Builder::new()
                .keep_alive(false)
                .max_buf_size(MAX_REQUEST_BUFFER)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics connection failed"),
                Err(_) => tracing::debug!(%peer, "metrics connection timed out"),
            }
        });
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}

/// The answer to one request.
fn respond(
    req: &Request<Incoming>,
    windows: &watch::Receiver<Option<Arc<Published>>>,
) -> Response<Full<Bytes>> {
    if req.uri().path() != METRICS_PATH {
        return plain(StatusCode::NOT_FOUND, "not found; try /metrics\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    // Clone the Arc out so the channel is not held while encoding.
    let window = windows.borrow().clone();
    let text = match window {
        Some(w) => w.exposition(),
        // Before the first sample (at most one housekeeping tick).
        None => exposition::render(&StatReport::default())
            .map(Bytes::from)
            .map_err(|e| e.to_string()),
    };
    match text {
        Ok(text) => {
            let mut response = Response::new(Full::new(text));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(exposition::CONTENT_TYPE),
            );
            response
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics endpoint: encoding failed");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n")
        }
    }
}
