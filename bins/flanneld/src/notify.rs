//! systemd readiness notification (`sd_notify`): one datagram such as
//! `READY=1` to the unix socket named by `$NOTIFY_SOCKET`. A name starting
//! with `@` is a socket in the abstract namespace.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Environment variable that systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// A failure to send a notification.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `$NOTIFY_SOCKET` is neither an absolute path nor an `@` name.
    #[error("{NOTIFY_SOCKET}={0:?} is not a socket path; expected an absolute path or @name")]
    BadAddress(String),
    /// Creating the socket or sending failed.
    #[error("sending {state:?} to {NOTIFY_SOCKET}={socket:?} failed: {source}")]
    Send {
        /// The message.
        state: String,
        /// The socket name.
        socket: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Sends `state` (for example `READY=1`) to the socket `socket` names.
pub fn notify_to(socket: &str, state: &str) -> Result<(), NotifyError> {
    let address = if let Some(name) = socket.strip_prefix('@') {
        SocketAddr::from_abstract_name(name.as_bytes())
    } else if socket.starts_with('/') {
        SocketAddr::from_pathname(socket)
    } else {
        return Err(NotifyError::BadAddress(socket.to_owned()));
    };
    let send_error = |source| NotifyError::Send {
        state: state.to_owned(),
        socket: socket.to_owned(),
        source,
    };
    let address = address.map_err(send_error)?;
    let sender = UnixDatagram::unbound().map_err(send_error)?;
    sender
        .send_to_addr(state.as_bytes(), &address)
        .map_err(send_error)?;
    Ok(())
}

/// Sends `state` to `$NOTIFY_SOCKET`; returns `Ok(false)` when the variable
/// is not set (flanneld was not started by systemd as `Type=notify`).
pub fn notify(state: &str) -> Result<bool, NotifyError> {
    match std::env::var(NOTIFY_SOCKET) {
        Ok(socket) if !socket.is_empty() => notify_to(&socket, state).map(|()| true),
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_socket_receives_ready() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        notify_to(path.to_str().unwrap(), "READY=1").unwrap();
        let mut buffer = [0u8; 64];
        let len = receiver.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..len], b"READY=1");
    }

    #[test]
    fn abstract_socket_receives_ready() {
        let name = format!("flanneld-notify-test-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&address).unwrap();
        notify_to(&format!("@{name}"), "READY=1").unwrap();
        let mut buffer = [0u8; 64];
        let len = receiver.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..len], b"READY=1");
    }

    #[test]
    fn relative_name_rejected() {
        let err = notify_to("notify.sock", "READY=1").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"NOTIFY_SOCKET="notify.sock" is not a socket path; expected an absolute path or @name"#
        );
    }

    #[test]
    fn missing_listener_reported() {
        let err = notify_to("/nonexistent/notify.sock", "READY=1").unwrap_err();
        assert!(
            err.to_string().starts_with(
                r#"sending "READY=1" to NOTIFY_SOCKET="/nonexistent/notify.sock" failed: "#
            ),
            "{err}"
        );
    }
}
