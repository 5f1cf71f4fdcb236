//! `/healthz` and `/readyz` over plain HTTP/1.1.
//!
//! `/healthz` returns 200 while the process runs. `/readyz` returns 200 once
//! subnet.env is written and the backend runs, 503 before. Every response
//! closes the connection. Only the request line is interpreted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest request head read before responding with 431.
const MAX_HEAD: usize = 8 * 1024;

/// A client must send its request head within this time.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Readiness shared between the daemon and the health endpoints.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the daemon ready or not ready.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    /// Returns whether the daemon is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A failure to start the health listener.
#[derive(Debug, thiserror::Error)]
#[error("listening for health checks on {address} (-healthz-ip, -healthz-port) failed: {source}")]
pub struct HealthError {
    /// The address.
    pub address: SocketAddr,
    /// The error.
    #[source]
    pub source: std::io::Error,
}

/// Binds the health listener.
pub async fn bind(address: SocketAddr) -> Result<TcpListener, HealthError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| HealthError { address, source })
}

/// Serves health checks on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, readiness: Readiness) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "accepting a health check connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let readiness = readiness.clone();
        tokio::spawn(async move {
            if let Err(err) = answer(stream, &readiness).await {
                tracing::debug!(%peer, error = %err, "health check connection failed");
            }
        });
    }
}

async fn answer(mut stream: TcpStream, readiness: &Readiness) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let complete = tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream, &mut head))
        .await
        .unwrap_or(Ok(false))?;
    let (status, body) = if complete {
        route(&head, readiness)
    } else if head.len() >= MAX_HEAD {
        (
            "431 Request Header Fields Too Large",
            "request head too large\n",
        )
    } else {
        ("400 Bad Request", "incomplete request\n")
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Reads until the blank line ending the head; false when the peer closed
/// first or the head grew past [`MAX_HEAD`].
async fn read_head(stream: &mut TcpStream, head: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut buffer = [0u8; 1024];
    while head.len() < MAX_HEAD {
        let len = stream.read(&mut buffer).await?;
        if len == 0 {
            return Ok(false);
        }
        head.extend_from_slice(&buffer[..len]);
        if head.windows(4).any(|window| window == b"\r\n\r\n")
            || head.windows(2).any(|w| w == b"\n\n")
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn route(head: &[u8], readiness: &Readiness) -> (&'static str, &'static str) {
    let line = head.split(|&byte| byte == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return ("400 Bad Request", "malformed request line\n");
    };
    let path = target.split('?').next().unwrap_or(target);
    if method != "GET" && method != "HEAD" {
        return (
            "405 Method Not Allowed",
            "only GET and HEAD are supported\n",
        );
    }
    match path {
        "/healthz" => ("200 OK", "ok\n"),
        "/readyz" if readiness.is_ready() => ("200 OK", "ready\n"),
        "/readyz" => (
            "503 Service Unavailable",
            "not ready: subnet.env not written yet\n",
        ),
        _ => ("404 Not Found", "not found; try /healthz or /readyz\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn request(address: SocketAddr, raw: &str) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(raw.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    fn status_line(response: &str) -> &str {
        response.lines().next().unwrap_or_default()
    }

    #[tokio::test]
    async fn endpoints_answer() {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let address = listener.local_addr().unwrap();
        let readiness = Readiness::default();
        let server = tokio::spawn(serve(listener, readiness.clone()));

        let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            status_line(&request(address, &get("/healthz")).await),
            "HTTP/1.1 200 OK"
        );
        assert_eq!(
            status_line(&request(address, &get("/readyz")).await),
            "HTTP/1.1 503 Service Unavailable"
        );
        readiness.set(true);
        let response = request(address, &get("/readyz?verbose")).await;
        assert_eq!(status_line(&response), "HTTP/1.1 200 OK");
        assert!(response.ends_with("\r\n\r\nready\n"), "{response}");
        assert_eq!(
            status_line(&request(address, &get("/metrics")).await),
            "HTTP/1.1 404 Not Found"
        );
        assert_eq!(
            status_line(&request(address, "POST /readyz HTTP/1.1\r\n\r\n").await),
            "HTTP/1.1 405 Method Not Allowed"
        );
        assert_eq!(
            status_line(&request(address, "\r\n\r\n").await),
            "HTTP/1.1 400 Bad Request"
        );
        server.abort();
    }

    #[tokio::test]
    async fn bind_error_names_address() {
        let first = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let address = first.local_addr().unwrap();
        let err = bind(address).await.unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "listening for health checks on {address} (-healthz-ip, -healthz-port) failed: "
            )),
            "{err}"
        );
    }
}
