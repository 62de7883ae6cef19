//! The short-connection driver: connect, send one request, read its
//! response, close, repeat, for as long as the run sends. Latency covers
//! the whole exchange, connect included; the rate is the figure of merit.

use std::rc::Rc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::buffer::InBuf;
use super::driver::{ThreadCtx, READ_CHUNK, RECONNECT_BACKOFF};
use super::protocol::{Codec, Frame};

/// How one exchange ended.
enum Outcome {
    Ok,
    Mismatch,
    Timeout,
    Closed,
    ConnectFailed,
}

/// Runs connect-request-close exchanges until the run stops sending.
pub async fn drive(ctx: Rc<ThreadCtx>) {
    let mut out = Vec::with_capacity(ctx.codec.request_len());
    let mut inbuf = InBuf::new(READ_CHUNK);
    let mut seq = 0u64;
    // Bounded: each exchange ends within the timeout, and no new one
    // starts once sending stops.
    loop {
        let t0 = Instant::now();
        if !ctx.clock.sending(t0) {
            break;
        }
        let outcome = exchange(&ctx, seq, t0, &mut out, &mut inbuf).await;
        seq = seq.wrapping_add(1);
        let now = Instant::now();
        {
            let mut rec = ctx.recorder.borrow_mut();
            match outcome {
                Outcome::Ok => rec.success(t0, now),
                Outcome::Mismatch => rec.mismatch(t0),
                Outcome::Timeout => rec.timeout(t0),
                Outcome::Closed => {
                    rec.closed(now);
                    rec.aborted(t0);
                }
                Outcome::ConnectFailed => rec.connect_error(t0),
            }
        }
        if matches!(outcome, Outcome::ConnectFailed) {
            tokio::time::sleep(RECONNECT_BACKOFF).await;
        }
    }
}

async fn exchange(
    ctx: &ThreadCtx,
    seq: u64,
    t0: Instant,
    out: &mut Vec<u8>,
    inbuf: &mut InBuf,
) -> Outcome {
    let deadline = (t0 + ctx.clock.timeout).into();
    let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(ctx.addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(_)) | Err(_) => return Outcome::ConnectFailed,
    };
    // A failure here would show in the latency, not in correctness.
    let _ = stream.set_nodelay(true);
    out.clear();
    ctx.codec.write_request(seq, out);
    inbuf.clear();
    tokio::time::timeout_at(deadline, request(&ctx.codec, stream, seq, out, inbuf))
        .await
        .unwrap_or(Outcome::Timeout)
}

async fn request(
    codec: &Codec,
    mut stream: TcpStream,
    seq: u64,
    out: &[u8],
    inbuf: &mut InBuf,
) -> Outcome {
    if stream.write_all(out).await.is_err() {
        return Outcome::Closed;
    }
    let mut scanned = 0;
    // Bounded by the caller's deadline.
    loop {
        match stream.read(inbuf.spare(READ_CHUNK)).await {
            Ok(0) | Err(_) => return Outcome::Closed,
            Ok(n) => inbuf.advance(n),
        }
        match codec.frame(inbuf.filled(), &mut scanned) {
            Frame::Incomplete => {}
            Frame::Invalid => return Outcome::Mismatch,
            Frame::Complete(len) => {
                return match inbuf.filled().get(..len) {
                    Some(frame) if codec.check(seq, frame) => Outcome::Ok,
                    _ => Outcome::Mismatch,
                };
            }
        }
    }
}
