//! One attempt to fetch a value from an instance of the slow service: a
//! new TCP connection, the request frame sent as it came, one answer
//! frame read (4-byte big-endian length, at most `max_payload`, then the
//! payload). No timeout here: the caller ([`spp_plugin_api::SidCall`])
//! bounds each attempt and drops it when its time is up, which closes the
//! connection.
//!
//! A connection per miss keeps the example short; misses are the slow,
//! rare path (hits never come here).

use crate::error::FetchError;
use spp_plugin_api::framing::U32_PREFIX_LEN;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `request` (a whole frame) to `addr` and returns the answer's
/// whole frame (length prefix included).
pub async fn fetch(
    addr: SocketAddr,
    request: bytes::Bytes,
    max_payload: usize,
) -> Result<Vec<u8>, FetchError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|source| FetchError::Connect { addr, source })?;
    let io = |source| FetchError::Io { addr, source };
    // One request, one answer: no Nagle delay for the small frame.
    stream.set_nodelay(true).map_err(io)?;
    stream.write_all(&request).await.map_err(io)?;
    let mut header = [0u8; U32_PREFIX_LEN];
    stream.read_exact(&mut header).await.map_err(io)?;
    let len = u32::from_be_bytes(header) as usize;
    if len > max_payload {
        return Err(FetchError::TooLarge {
            addr,
            len,
            max: max_payload,
        });
    }
    let mut frame = vec![0u8; U32_PREFIX_LEN + len];
    frame[..U32_PREFIX_LEN].copy_from_slice(&header);
    stream
        .read_exact(&mut frame[U32_PREFIX_LEN..])
        .await
        .map_err(io)?;
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spp_plugin_api::framing::encode_u32_be_prefixed;
    use tokio::net::TcpListener;

    /// A one-connection server answering `answer` (raw bytes) to one frame.
    async fn serve_once(answer: Vec<u8>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut header = [0u8; 4];
            s.read_exact(&mut header).await.unwrap();
            let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
            s.read_exact(&mut body).await.unwrap();
            s.write_all(&answer).await.unwrap();
        });
        addr
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn the_answer_frame_comes_back_whole() {
        run(async {
            let addr = serve_once(encode_u32_be_prefixed(b"value")).await;
            let got = fetch(addr, encode_u32_be_prefixed(b"key").into(), 16).await;
            assert_eq!(got.unwrap(), encode_u32_be_prefixed(b"value"));
        });
    }

    #[test]
    fn a_large_answer_or_a_short_one_fails() {
        run(async {
            let addr = serve_once(encode_u32_be_prefixed(b"0123456789")).await;
            let got = fetch(addr, encode_u32_be_prefixed(b"k").into(), 4).await;
            assert!(
                matches!(got, Err(FetchError::TooLarge { len: 10, .. })),
                "{got:?}"
            );
            // Announces 10 bytes, sends 2, closes.
            let mut short = 10u32.to_be_bytes().to_vec();
            short.extend_from_slice(b"ab");
            let addr = serve_once(short).await;
            let got = fetch(addr, encode_u32_be_prefixed(b"k").into(), 16).await;
            assert!(matches!(got, Err(FetchError::Io { .. })), "{got:?}");
        });
    }

    #[test]
    fn a_refused_connection_fails_at_once() {
        run(async {
            let addr = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap()
            };
            let got = fetch(addr, encode_u32_be_prefixed(b"k").into(), 16).await;
            assert!(matches!(got, Err(FetchError::Connect { .. })), "{got:?}");
        });
    }
}
