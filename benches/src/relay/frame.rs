//! Reading one echo-framed message (a 4-byte big-endian payload length,
//! then the payload) from a buffered stream into a reused buffer.

use std::io::{Error, ErrorKind};

use tokio::io::{AsyncBufRead, AsyncReadExt};

use crate::load::spec::ECHO_HEADER_BYTES;

/// Reads one whole frame (header included) into `buf`. `Ok(false)` at a
/// clean end of stream before a frame starts; an error for a payload over
/// `max_payload`, a stream ending inside a frame, or a read error.
pub async fn read<R>(src: &mut R, buf: &mut Vec<u8>, max_payload: usize) -> std::io::Result<bool>
where
    R: AsyncBufRead + Unpin,
{
    let mut header = [0u8; ECHO_HEADER_BYTES];
    let first = src.read(&mut header).await?;
    if first == 0 {
        return Ok(false);
    }
    src.read_exact(&mut header[first..]).await?;
    let len = usize::try_from(u32::from_be_bytes(header)).unwrap_or(usize::MAX);
    if len > max_payload {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("frame of {len} bytes, the limit is {max_payload}"),
        ));
    }
    buf.clear();
    buf.extend_from_slice(&header);
    buf.resize(ECHO_HEADER_BYTES + len, 0);
    src.read_exact(&mut buf[ECHO_HEADER_BYTES..]).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn frames_are_cut_and_bounded() {
        run(async {
            let bytes: &[u8] = b"\0\0\0\x02hi\0\0\0\0\0\0\0\x09";
            let mut src = tokio::io::BufReader::new(bytes);
            let mut buf = Vec::new();
            assert!(read(&mut src, &mut buf, 8).await.unwrap());
            assert_eq!(buf, b"\0\0\0\x02hi");
            assert!(read(&mut src, &mut buf, 8).await.unwrap());
            assert_eq!(buf, b"\0\0\0\0");
            let err = read(&mut src, &mut buf, 8).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidData);
            let mut empty = tokio::io::BufReader::new(&b""[..]);
            assert!(!read(&mut empty, &mut buf, 8).await.unwrap());
            let mut cut = tokio::io::BufReader::new(&b"\0\0\0\x05ab"[..]);
            assert!(read(&mut cut, &mut buf, 8).await.is_err());
        });
    }
}
