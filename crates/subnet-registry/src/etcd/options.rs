//! How to reach etcd: endpoints, TLS, credentials and timeouts.

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};

use crate::DEFAULT_PREFIX;

/// Connection settings of an [`EtcdRegistry`](super::EtcdRegistry). Its
/// `Debug` output hides the password.
#[derive(Clone)]
pub struct EtcdConfig {
    /// Client URLs of the cluster members, such as `http://127.0.0.1:2379`.
    /// Requests are balanced over those that respond.
    pub endpoints: Vec<String>,
    /// The key prefix of the network, `/coreos.com/network` by default.
    pub prefix: String,
    /// PEM file of the certificate authority that signed the servers'
    /// certificates. Setting it turns TLS on; endpoints must then be
    /// `https://` URLs.
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate, for servers that check clients.
    /// Needs [`key_file`](EtcdConfig::key_file).
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    pub key_file: Option<PathBuf>,
    /// User name for etcd authentication. Needs
    /// [`password`](EtcdConfig::password).
    pub username: Option<String>,
    /// Password for etcd authentication.
    pub password: Option<String>,
    /// The time allowed for each request, 10 seconds by default.
    pub request_timeout: Duration,
    /// The time allowed to open a connection, 5 seconds by default.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            endpoints: vec![
                "http://127.0.0.1:4001".to_owned(),
                "http://127.0.0.1:2379".to_owned(),
            ],
            prefix: DEFAULT_PREFIX.to_owned(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            username: None,
            password: None,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl EtcdConfig {
    /// Settings for the given endpoints, with the defaults for the rest.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Builds the client options, reading the TLS files.
    pub(crate) fn connect_options(&self) -> Result<ConnectOptions, ConnectError> {
        if self.endpoints.is_empty() {
            return Err(ConnectError::NoEndpoints);
        }
        let mut options = ConnectOptions::new()
            .with_connect_timeout(self.connect_timeout)
            // HTTP/2 pings find a dead connection under a long watch.
            .with_keep_alive(Duration::from_secs(10), self.request_timeout)
            .with_keep_alive_while_idle(true);

        match (&self.username, &self.password) {
            (Some(user), Some(password)) => {
                // etcd's simple tokens lapse after five idle minutes.
                options = options
                    .with_user(user.clone(), password.clone())
                    .with_auto_token_refresh(true);
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(ConnectError::Incomplete {
                    given: "username",
                    missing: "password",
                })
            }
            (None, Some(_)) => {
                return Err(ConnectError::Incomplete {
                    given: "password",
                    missing: "username",
                })
            }
        }

        let identity = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Some(Identity::from_pem(
                read_pem("client certificate", cert)?,
                read_pem("client key", key)?,
            )),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConnectError::Incomplete {
                    given: "certfile",
                    missing: "keyfile",
                })
            }
            (None, Some(_)) => {
                return Err(ConnectError::Incomplete {
                    given: "keyfile",
                    missing: "certfile",
                })
            }
        };
        if self.ca_file.is_some() || identity.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &self.ca_file {
                tls = tls.ca_certificate(Certificate::from_pem(read_pem("CA certificate", ca)?));
            }
            if let Some(identity) = identity {
                tls = tls.identity(identity);
            }
            options = options.with_tls(tls);
        }
        Ok(options)
    }
}

fn read_pem(what: &'static str, path: &PathBuf) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path).map_err(|source| ConnectError::ReadFile {
        what,
        path: path.clone(),
        source,
    })
}

/// Setting up the etcd client failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No endpoint was given.
    #[error("no etcd endpoint given; expected at least one URL such as http://127.0.0.1:2379")]
    NoEndpoints,
    /// One half of a pair of settings was given without the other.
    #[error("etcd {given} is set but {missing} is not; set both or neither")]
    Incomplete {
        /// The setting that was given.
        given: &'static str,
        /// The setting it needs.
        missing: &'static str,
    },
    /// A TLS file could not be read.
    #[error("reading the etcd {what} from {path}: {source}", path = path.display())]
    ReadFile {
        /// Which file: CA certificate, client certificate or client key.
        what: &'static str,
        /// The file's path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The client rejected the settings or could not authenticate.
    #[error("connecting to etcd at {endpoints}: {source}")]
    Client {
        /// The endpoints, comma-separated.
        endpoints: String,
        /// The client's error.
        source: etcd_client::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_password() {
        let mut config = EtcdConfig::new(["http://127.0.0.1:2379"]);
        config.username = Some("flannel".to_owned());
        config.password = Some("s3cret".to_owned());
        let text = format!("{config:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("password: Some(\"<hidden>\")"), "{text}");
        assert!(text.contains("flannel"), "{text}");
    }
}
