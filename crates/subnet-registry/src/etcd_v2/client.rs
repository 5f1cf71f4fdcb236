//! The HTTP client of the etcd v2 keys API: one connection pool over all
//! endpoints, basic authentication, TLS, a timeout on every request and
//! failover to the next endpoint when one cannot be reached.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use super::transport::Connector;
use crate::error::RegistryError;
use crate::etcd::EtcdConfig;
use crate::registry::Revision;

/// The header in which etcd v2 returns its store index.
const INDEX_HEADER: &str = "x-etcd-index";

/// A response from etcd: any HTTP status, with the store index and the body.
#[derive(Debug)]
pub(super) struct Reply {
    pub(super) status: StatusCode,
    /// The `X-Etcd-Index` header, when present.
    pub(super) index: Option<Revision>,
    pub(super) body: Bytes,
}

/// How long to wait for the response body.
#[derive(Debug, Clone, Copy)]
pub(super) enum BodyWait {
    /// As long as the request timeout.
    Timeout,
    /// A long poll: up to this long, after which the request is given up
    /// and no reply is returned.
    Poll(Duration),
}

/// The outcome of a long poll.
#[derive(Debug)]
pub(super) enum Polled {
    /// etcd responded with an event or an error.
    Response(Reply),
    /// etcd accepted the watch but sent no event within the wait. No
    /// matching event exists up to `index`, the store index when the watch
    /// began.
    Quiet {
        /// The `X-Etcd-Index` header of the watch, when present.
        index: Option<Revision>,
    },
}

/// The HTTP clients of all endpoints, sharing one connection pool.
pub(super) struct Client {
    http: HttpClient<Connector, Full<Bytes>>,
    /// Base URLs without a trailing slash, such as `http://127.0.0.1:2379`.
    endpoints: Vec<String>,
    /// The endpoint that responded last.
    current: AtomicUsize,
    timeout: Duration,
    authorization: Option<HeaderValue>,
}

impl Client {
    /// Checks the settings and reads the TLS files. No server is contacted.
    pub(super) fn new(config: &EtcdConfig) -> Result<Self, ConnectError> {
        if config.endpoints.is_empty() {
            return Err(ConnectError::NoEndpoints);
        }
        let endpoints = config
            .endpoints
            .iter()
            .map(|endpoint| parse_endpoint(endpoint))
            .collect::<Result<Vec<_>, _>>()?;

        let authorization = match (&config.username, &config.password) {
            (Some(user), Some(password)) => {
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                let value = HeaderValue::from_str(&format!("Basic {token}"))
                    .map_err(|_| ConnectError::InvalidCredentials)?;
                Some(value)
            }
            (None, None) => None,
            (Some(_), None) => return Err(incomplete("username", "password")),
            (None, Some(_)) => return Err(incomplete("password", "username")),
        };

        let tls = tls_config(config, &endpoints)?;
        let http = HttpClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(Connector::new(tls, config.connect_timeout));
        Ok(Self {
            http,
            endpoints,
            current: AtomicUsize::new(0),
            timeout: config.request_timeout,
            authorization,
        })
    }

    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends one request to `path_and_query` (such as
    /// `/v2/keys/coreos.com/network/config`) with an optional form body, and
    /// returns etcd's response, whatever its status. An endpoint that cannot be
    /// reached, times out or responds with a server error is given up for the
    /// next one. With a single endpoint the request is tried twice, because a
    /// restarted server first shows up as a broken pooled connection.
    pub(super) async fn call(
        &self,
        operation: &'static str,
        key: &str,
        method: Method,
        path_and_query: &str,
        form: Option<String>,
    ) -> Result<Reply, RegistryError> {
        let polled = self
            .send(
                operation,
                key,
                method,
                path_and_query,
                form,
                BodyWait::Timeout,
            )
            .await?;
        match polled {
            Polled::Response(reply) => Ok(reply),
            // Not reached: with `BodyWait::Timeout`, a late body fails the
            // attempt instead.
            Polled::Quiet { .. } => Err(RegistryError::Timeout {
                operation,
                key: key.to_owned(),
                timeout: self.timeout,
            }),
        }
    }

    /// Sends a long-poll GET, which returns [`Polled::Quiet`] when no event
    /// came within `max_wait` after etcd accepted the request.
    pub(super) async fn long_poll(
        &self,
        operation: &'static str,
        key: &str,
        path_and_query: &str,
        max_wait: Duration,
    ) -> Result<Polled, RegistryError> {
        self.send(
            operation,
            key,
            Method::GET,
            path_and_query,
            None,
            BodyWait::Poll(max_wait),
        )
        .await
    }

    async fn send(
        &self,
        operation: &'static str,
        key: &str,
        method: Method,
        path_and_query: &str,
        form: Option<String>,
        wait: BodyWait,
    ) -> Result<Polled, RegistryError> {
        let attempts = self.endpoints.len().max(2);
        let mut last_error = None;
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(50 * attempt as u64)).await;
            }
            let index = self.current.load(Ordering::Relaxed);
            let request = self.request(index, &method, path_and_query, form.clone());
            let endpoint = &self.endpoints[index];
            match self.attempt(operation, key, endpoint, request, wait).await {
                Ok(polled) => return Ok(polled),
                Err(error) => {
                    tracing::debug!(%error, %endpoint, "etcd request failed");
                    self.fail_over(index);
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    fn request(
        &self,
        index: usize,
        method: &Method,
        path_and_query: &str,
        form: Option<String>,
    ) -> Request<Full<Bytes>> {
        let uri = format!("{}{path_and_query}", self.endpoints[index]);
        let mut builder = Request::builder().method(method.clone()).uri(uri);
        if let Some(authorization) = &self.authorization {
            builder = builder.header(AUTHORIZATION, authorization.clone());
        }
        let body = match form {
            Some(form) => {
                builder = builder.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
                Bytes::from(form)
            }
            None => Bytes::new(),
        };
        // The endpoint was parsed as a URI when the client was made, and
        // the path is percent-encoded by the caller.
        builder
            .body(Full::new(body))
            .expect("request built from a checked endpoint and an encoded path")
    }

    async fn attempt(
        &self,
        operation: &'static str,
        key: &str,
        endpoint: &str,
        request: Request<Full<Bytes>>,
        wait: BodyWait,
    ) -> Result<Polled, RegistryError> {
        // NOTE: etcd v2 API errors other than those the callers act on
        // arrive as UnexpectedResponse, with the etcd error code only in
        // the text.
        let transport_error = |message: String| RegistryError::Transport {
            operation,
            key: key.to_owned(),
            endpoint: endpoint.to_owned(),
            message,
        };
        let timeout_error = || RegistryError::Timeout {
            operation,
            key: key.to_owned(),
            timeout: self.timeout,
        };

        let response = match tokio::time::timeout(self.timeout, self.http.request(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => return Err(transport_error(error_chain(&error))),
            Err(_) => return Err(timeout_error()),
        };
        let status = response.status();
        let index = response
            .headers()
            .get(INDEX_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok());

        let body_limit = match wait {
            BodyWait::Timeout => self.timeout,
            BodyWait::Poll(max_wait) => max_wait,
        };
        let body = match tokio::time::timeout(body_limit, response.into_body().collect()).await {
            Ok(Ok(body)) => body.to_bytes(),
            Ok(Err(error)) => return Err(transport_error(error_chain(&error))),
            Err(_) => match wait {
                BodyWait::Timeout => return Err(timeout_error()),
                BodyWait::Poll(_) => return Ok(Polled::Quiet { index }),
            },
        };

        if status.is_server_error() {
            return Err(RegistryError::UnexpectedResponse {
                operation,
                key: key.to_owned(),
                detail: format!("HTTP {status}: {}", String::from_utf8_lossy(&body).trim()),
            });
        }
        Ok(Polled::Response(Reply {
            status,
            index,
            body,
        }))
    }

    /// Moves on to the next endpoint after the one that failed.
    fn fail_over(&self, failed: usize) {
        let next = (failed + 1) % self.endpoints.len();
        if self
            .current
            .compare_exchange(failed, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
            && next != failed
        {
            tracing::warn!(
                failed = %self.endpoints[failed],
                next = %self.endpoints[next],
                "etcd endpoint unreachable; failing over"
            );
        }
    }
}

/// Formats an error with its causes, because hyper's outer errors name
/// only the stage ("client error (Connect)").
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn incomplete(given: &'static str, missing: &'static str) -> ConnectError {
    ConnectError::Incomplete { given, missing }
}

/// Checks that `endpoint` is an `http://` or `https://` URL with a host and
/// no path, and returns it without a trailing slash.
fn parse_endpoint(endpoint: &str) -> Result<String, ConnectError> {
    let invalid = |reason: &'static str| ConnectError::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let trimmed = endpoint.trim_end_matches('/');
    let uri: Uri = trimmed.parse().map_err(|_| invalid("it is not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(invalid("the scheme must be http or https"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("it has no host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(invalid("it must not have a path or a query"));
    }
    Ok(trimmed.to_owned())
}

/// Builds the TLS settings when any endpoint is `https://`.
fn tls_config(
    config: &EtcdConfig,
    endpoints: &[String],
) -> Result<Option<Arc<ClientConfig>>, ConnectError> {
    let identity = match (&config.cert_file, &config.key_file) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => return Err(incomplete("certfile", "keyfile")),
        (None, Some(_)) => return Err(incomplete("keyfile", "certfile")),
    };
    let Some(https) = endpoints.iter().find(|e| e.starts_with("https://")) else {
        if config.ca_file.is_some() || identity.is_some() {
            return Err(ConnectError::TlsWithoutHttps {
                endpoints: endpoints.join(","),
            });
        }
        return Ok(None);
    };
    let Some(ca_file) = &config.ca_file else {
        return Err(ConnectError::HttpsWithoutCa {
            endpoint: https.clone(),
        });
    };

    let mut roots = RootCertStore::empty();
    for cert in read_certificates("CA certificate", ca_file)? {
        roots
            .add(cert)
            .map_err(|source| ConnectError::Tls { source })?;
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| ConnectError::Tls { source })?
        .with_root_certificates(roots);
    let tls = match identity {
        Some((cert, key)) => {
            let chain = read_certificates("client certificate", cert)?;
            let key_pem = read_file("client key", key)?;
            let key_der =
                PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| ConnectError::InvalidPem {
                    what: "client key",
                    path: key.clone(),
                    expected: "a PEM private key",
                })?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|source| ConnectError::Tls { source })?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Some(Arc::new(tls)))
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path).map_err(|source| ConnectError::ReadFile {
        what,
        path: path.to_owned(),
        source,
    })
}

fn read_certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ConnectError> {
    let pem = read_file(what, path)?;
    let invalid = || ConnectError::InvalidPem {
        what,
        path: path.to_owned(),
        expected: "one or more PEM certificates",
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| invalid())?;
    if certs.is_empty() {
        return Err(invalid());
    }
    Ok(certs)
}

/// Setting up the etcd v2 client failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No endpoint was given.
    #[error("no etcd endpoint given; expected at least one URL such as http://127.0.0.1:2379")]
    NoEndpoints,
    /// An endpoint is not a usable URL.
    #[error("invalid etcd endpoint {endpoint:?}: {reason}; expected a URL such as http://127.0.0.1:2379")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// The reason it is invalid.
        reason: &'static str,
    },
    /// One half of a pair of settings was given without the other.
    #[error("etcd {given} is set but {missing} is not; set both or neither")]
    Incomplete {
        /// The setting that was given.
        given: &'static str,
        /// The setting it needs.
        missing: &'static str,
    },
    /// The user name or password cannot be sent in an HTTP header.
    #[error(
        "the etcd username or password contains characters that cannot be sent in an HTTP header"
    )]
    InvalidCredentials,
    /// An `https://` endpoint was given without a CA file to check it.
    #[error("etcd endpoint {endpoint} uses https but no CA file is set; set the etcd CA file")]
    HttpsWithoutCa {
        /// The first `https://` endpoint.
        endpoint: String,
    },
    /// TLS files were given but no endpoint uses `https://`.
    #[error("etcd TLS files are set but no endpoint uses https: {endpoints}")]
    TlsWithoutHttps {
        /// The endpoints, comma-separated.
        endpoints: String,
    },
    /// A TLS file could not be read.
    #[error("reading the etcd {what} from {path}: {source}", path = path.display())]
    ReadFile {
        /// The file's role: CA certificate, client certificate or client key.
        what: &'static str,
        /// The file's path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A TLS file does not contain what it should.
    #[error("the etcd {what} file {path} is invalid: expected {expected}", path = path.display())]
    InvalidPem {
        /// The file's role: CA certificate, client certificate or client key.
        what: &'static str,
        /// The file's path.
        path: PathBuf,
        /// The content the file must have.
        expected: &'static str,
    },
    /// The TLS library rejected the certificates or the key.
    #[error("setting up TLS for etcd: {source}")]
    Tls {
        /// The TLS library's error.
        source: tokio_rustls::rustls::Error,
    },
}
