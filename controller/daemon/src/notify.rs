//! systemd readiness (`Type=notify`): when `NOTIFY_SOCKET` is set, the
//! foreground controller sends `READY=1` once the service runs (every
//! process ready) and `STOPPING=1` when its stop begins. A datagram on the
//! socket the variable names (a path, or `@name` in the abstract
//! namespace); without the variable nothing is sent.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The variable systemd sets.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
/// Sent once every process is ready.
pub const READY: &str = "READY=1";
/// Sent when the stop begins.
pub const STOPPING: &str = "STOPPING=1";

/// Sends `state` to `$NOTIFY_SOCKET`; `Ok(false)` when it is not set.
pub fn notify(state: &str) -> std::io::Result<bool> {
    match std::env::var_os(NOTIFY_SOCKET) {
        Some(socket) if !socket.is_empty() => notify_to(&socket, state).map(|()| true),
        _ => Ok(false),
    }
}

/// Sends `state` to the socket `socket` names.
pub fn notify_to(socket: &OsStr, state: &str) -> std::io::Result<()> {
    let bytes = socket.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        }
        None => SocketAddr::from_pathname(socket)?,
    };
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

/// [`notify`], logging a failure (readiness is best effort: the service
/// runs either way, and systemd times the start out if it never hears).
pub fn send(state: &str) {
    match notify(state) {
        Ok(true) => tracing::info!("systemd notified: {state}"),
        Ok(false) => {}
        Err(e) => tracing::warn!("notifying systemd ({state}): {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_reaches_a_fake_notify_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let fake = UnixDatagram::bind(&path).unwrap();
        fake.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        notify_to(path.as_os_str(), READY).unwrap();
        let mut buf = [0u8; 64];
        let n = fake.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn an_abstract_socket_is_reached_too() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("spp-notify-test-{}", std::process::id());
        let fake =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        fake.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        notify_to(OsStr::new(&format!("@{name}")), STOPPING).unwrap();
        let mut buf = [0u8; 64];
        let n = fake.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
