//! One client per etcd endpoint, with failover: requests go to the
//! endpoint that last responded, and move on to the next one when it cannot
//! be reached.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tokio::sync::OnceCell;

use super::options::{ConnectError, EtcdConfig};
use crate::error::RegistryError;

/// The clients of all endpoints, each connected on first use.
pub(super) struct Connection {
    endpoints: Vec<String>,
    options: ConnectOptions,
    clients: Vec<OnceCell<Client>>,
    /// The endpoint that responded last.
    current: AtomicUsize,
    timeout: Duration,
}

/// The outcome of one failed attempt.
enum Failure {
    /// The endpoint could not be reached: try the next one.
    Unreachable(RegistryError),
    /// The endpoint returned an error, so retrying elsewhere will not help.
    Rejected(RegistryError),
}

impl Connection {
    /// Sets up the client of the first endpoint that accepts it. The etcd
    /// client logs in while connecting when credentials are set, so bad
    /// credentials fail here; without them it contacts no server yet.
    pub(super) async fn open(config: &EtcdConfig) -> Result<Self, ConnectError> {
        let options = config.connect_options()?;
        let connection = Self {
            endpoints: config.endpoints.clone(),
            clients: config.endpoints.iter().map(|_| OnceCell::new()).collect(),
            options,
            current: AtomicUsize::new(0),
            timeout: config.request_timeout,
        };

        let mut last_error = None;
        for index in 0..connection.endpoints.len() {
            match connection.client_at(index).await {
                Ok(_) => {
                    connection.current.store(index, Ordering::Relaxed);
                    return Ok(connection);
                }
                Err(error) if is_unreachable(&error) => last_error = Some(error),
                Err(source) => {
                    return Err(ConnectError::Client {
                        endpoints: connection.endpoints[index].clone(),
                        source,
                    })
                }
            }
        }
        Err(ConnectError::Client {
            endpoints: connection.endpoints.join(","),
            source: last_error.unwrap_or_else(|| {
                etcd_client::Error::InvalidArgs("no endpoint responded".to_owned())
            }),
        })
    }

    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Moves on to the next endpoint after the one that failed.
    pub(super) fn fail_over(&self, failed: usize) {
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

    /// Runs `request` with the timeout, on the current endpoint and then on
    /// each other one while endpoints cannot be reached. With one endpoint,
    /// it is tried twice, because a restarted server first shows up as a
    /// broken connection.
    pub(super) async fn call<T, F, Fut>(
        &self,
        operation: &'static str,
        key: &str,
        mut request: F,
    ) -> Result<T, RegistryError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let attempts = self.endpoints.len().max(2);
        let mut last_error = None;
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(50 * attempt as u64)).await;
            }
            let index = self.current.load(Ordering::Relaxed);
            match self.attempt(index, operation, key, &mut request).await {
                Ok(response) => return Ok(response),
                Err(Failure::Rejected(error)) => return Err(error),
                Err(Failure::Unreachable(error)) => {
                    tracing::debug!(%error, endpoint = %self.endpoints[index], "etcd request failed");
                    self.fail_over(index);
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    async fn attempt<T, F, Fut>(
        &self,
        index: usize,
        operation: &'static str,
        key: &str,
        request: &mut F,
    ) -> Result<T, Failure>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let etcd_error = |source| RegistryError::Etcd {
            operation,
            key: key.to_owned(),
            source,
        };
        let timeout_error = || RegistryError::Timeout {
            operation,
            key: key.to_owned(),
            timeout: self.timeout,
        };
        let outcome = tokio::time::timeout(self.timeout, async {
            let client = self.client_at(index).await?;
            request(client).await
        })
        .await;
        match outcome {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) if is_unreachable(&error) => {
                Err(Failure::Unreachable(etcd_error(error)))
            }
            Ok(Err(error)) => Err(Failure::Rejected(etcd_error(error))),
            Err(_) => Err(Failure::Unreachable(timeout_error())),
        }
    }

    async fn client_at(&self, index: usize) -> Result<Client, etcd_client::Error> {
        let client = self.clients[index]
            .get_or_try_init(|| {
                Client::connect([self.endpoints[index].as_str()], Some(self.options.clone()))
            })
            .await?;
        Ok(client.clone())
    }
}

/// Returns whether an error means the endpoint could not be reached, as
/// opposed to an answer from etcd.
fn is_unreachable(error: &etcd_client::Error) -> bool {
    match error {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(status) => match status.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => true,
            // hyper reports a connection that broke under a request this way.
            tonic::Code::Unknown => status.message().contains("transport error"),
            _ => false,
        },
        _ => false,
    }
}
