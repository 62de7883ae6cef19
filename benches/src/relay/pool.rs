//! The backend pool: up to `pool` keep-alive connections to one backend,
//! each carrying one request at a time. A request takes a permit (so no
//! more than `pool` are in flight), an idle connection or a new one, does
//! its round trip under the timeout, and puts the connection back. A
//! reused connection that fails is dropped and the request tried once on a
//! fresh one (the backend may have closed it while idle); a fresh one that
//! fails fails the request.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::error::RelayError;
use super::{frame, RelayConfig};

/// Pause after a failed accept before the next one.
pub const RETRY_PAUSE: Duration = Duration::from_millis(10);
/// Read buffer of a backend connection.
const BACKEND_READ_BUF: usize = 16 << 10;

/// One keep-alive backend connection, buffered for reading.
type Conn = BufReader<TcpStream>;

/// Keep-alive connections to one backend.
#[derive(Debug)]
pub struct Pool {
    backend: SocketAddr,
    max_payload: usize,
    timeout: Duration,
    permits: Semaphore,
    idle: Mutex<Vec<Conn>>,
}

impl Pool {
    /// An empty pool for `config.backend` (connections open on demand).
    pub fn new(config: &RelayConfig) -> Self {
        let size = config.pool.max(1);
        Pool {
            backend: config.backend,
            max_payload: config.max_payload,
            timeout: config.timeout,
            permits: Semaphore::new(size),
            idle: Mutex::new(Vec::with_capacity(size)),
        }
    }

    fn backend_error(&self, source: std::io::Error) -> RelayError {
        RelayError::Backend {
            addr: self.backend,
            source,
        }
    }

    async fn connect(&self) -> Result<Conn, RelayError> {
        let stream = TcpStream::connect(self.backend)
            .await
            .map_err(|e| self.backend_error(e))?;
        stream
            .set_nodelay(true)
            .map_err(|e| self.backend_error(e))?;
        Ok(BufReader::with_capacity(BACKEND_READ_BUF, stream))
    }

    fn take_idle(&self) -> Option<Conn> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    fn put_back(&self, conn: Conn) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
    }

    /// Sends `request` (a whole frame) and reads the answer frame into
    /// `answer`.
    pub async fn call(&self, request: &[u8], answer: &mut Vec<u8>) -> Result<(), RelayError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| RelayError::Closed)?;
        if let Some(mut conn) = self.take_idle() {
            if self.round_trip(&mut conn, request, answer).await.is_ok() {
                self.put_back(conn);
                return Ok(());
            }
        }
        let mut conn = self.connect().await?;
        self.round_trip(&mut conn, request, answer).await?;
        self.put_back(conn);
        Ok(())
    }

    async fn round_trip(
        &self,
        conn: &mut Conn,
        request: &[u8],
        answer: &mut Vec<u8>,
    ) -> Result<(), RelayError> {
        let exchange = async {
            conn.get_mut().write_all(request).await?;
            if frame::read(conn, answer, self.max_payload).await? {
                Ok(())
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            }
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.backend_error(e)),
            Err(_) => Err(RelayError::Timeout {
                addr: self.backend,
                timeout: self.timeout,
            }),
        }
    }
}
