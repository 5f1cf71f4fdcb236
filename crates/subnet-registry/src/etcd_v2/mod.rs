//! The registry on the etcd v2 keys API, as flannel 0.5 stores its data:
//! `<prefix>/config` and `<prefix>/subnets/<lease key>` in the v2 keyspace,
//! each lease a key with a TTL, each reservation a key without one.
//!
//! etcd keeps v2 keys apart from v3 keys, so a network that older daemons
//! keep in the v2 keyspace is only visible through this registry. etcd 3.4
//! serves the v2 API only when started with `--enable-v2=true`.
//!
//! Revisions are etcd's v2 store index (`X-Etcd-Index` and each node's
//! `modifiedIndex`). The store remembers only its last 1000 changes, so a
//! watch that falls further behind resyncs from a fresh listing.

mod client;
mod node;
mod transport;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use subnet_core::lease::{LeaseAttrs, LeaseKey};

pub use client::ConnectError;
use client::{Client, Reply};
use node::{encode_value, key_url, unexpected, Node, Outcome};

use crate::error::{CreateLeaseError, DeleteLeaseError, RegistryError, RenewLeaseError};
use crate::etcd::EtcdConfig;
use crate::registry::{
    decode_lease, ConfigValue, InvalidLease, Lease, LeaseReadError, LeaseSnapshot, LeaseWatch,
    Registry, Revision,
};

/// How long a watch request waits for an event by default. TCP keepalive
/// finds a dead connection sooner, and this bounds the wait on a server that
/// stays connected but never responds.
pub const DEFAULT_POLL_TIMEOUT: Duration = Duration::from_secs(60);

/// A registry in the v2 keyspace of an etcd cluster. Clones share the
/// connection pool.
///
/// It takes the same [`EtcdConfig`] as [`EtcdRegistry`](crate::EtcdRegistry):
/// endpoints, prefix, TLS files, user name and password (sent with basic
/// authentication) and timeouts. Each request has the request timeout. A
/// request that cannot reach its endpoint, times out or gets a server error
/// moves on to the next endpoint (or, with one endpoint, is tried once
/// more). Any other failure is returned as a [`RegistryError`]. Watches
/// reconnect with backoff and resume where they stopped.
#[derive(Clone)]
pub struct EtcdV2Registry {
    client: Arc<Client>,
    prefix: String,
    poll_timeout: Duration,
}

impl std::fmt::Debug for EtcdV2Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdV2Registry")
            .field("prefix", &self.prefix)
            .field("timeout", &self.client.timeout())
            .field("poll_timeout", &self.poll_timeout)
            .finish_non_exhaustive()
    }
}

impl EtcdV2Registry {
    /// Sets up the client for `config`. Only bad settings and unreadable
    /// TLS files fail here: connections open on first use, and rejected
    /// credentials show up as errors of the first request.
    pub fn connect(config: &EtcdConfig) -> Result<Self, ConnectError> {
        Ok(Self {
            client: Arc::new(Client::new(config)?),
            prefix: config.prefix.trim_end_matches('/').to_owned(),
            poll_timeout: DEFAULT_POLL_TIMEOUT,
        })
    }

    /// Sets how long a watch request waits in etcd for an event before it
    /// is sent again, 60 seconds by default. A request sent again resumes
    /// from the store index at which the previous one began. So a watch
    /// falls out of etcd's 1000-change history only when more than 1000
    /// other changes happen while one request waits.
    pub fn with_poll_timeout(mut self, timeout: Duration) -> Self {
        self.poll_timeout = timeout;
        self
    }

    /// Returns the key prefix of the network.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Stores `text` as the network config, as
    /// `ETCDCTL_API=2 etcdctl set <prefix>/config` does, and returns the
    /// store index of the write.
    pub async fn put_config(&self, text: &str) -> Result<Revision, RegistryError> {
        let key = self.config_key();
        let form = format!("value={}", encode_value(text));
        let reply = self
            .client
            .call("set", &key, Method::PUT, &key_url(&key), Some(form))
            .await?;
        match Outcome::parse(&reply, "set", &key)? {
            Outcome::Done(done) => Ok(done.node.modified_index),
            Outcome::Failed(status, error) => Err(unexpected("set", &key, status, &error)),
        }
    }

    fn config_key(&self) -> String {
        format!("{}/config", self.prefix)
    }

    fn subnets_dir(&self) -> String {
        format!("{}/subnets", self.prefix)
    }

    fn lease_path(&self, key: &LeaseKey) -> String {
        format!("{}/subnets/{key}", self.prefix)
    }

    /// Decodes a node under the subnets directory into a lease.
    fn decode(&self, node: &Node) -> Result<Lease, InvalidLease> {
        let name = node
            .key
            .strip_prefix(&self.subnets_dir())
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or(&node.key);
        let value = node.value.as_deref().unwrap_or_default();
        decode_lease(
            &node.key,
            name.as_bytes(),
            value.as_bytes(),
            node.expiry(),
            node.modified_index,
        )
    }

    /// Returns the lease key of a node path under the subnets directory.
    fn lease_key_of(&self, path: &str) -> Option<LeaseKey> {
        path.strip_prefix(&self.subnets_dir())?
            .strip_prefix('/')?
            .parse()
            .ok()
    }

    /// Builds a listing from the response to a recursive GET of the subnets
    /// directory. A missing directory is an empty listing.
    fn snapshot(
        &self,
        reply: &Reply,
        operation: &'static str,
    ) -> Result<LeaseSnapshot, RegistryError> {
        let dir = self.subnets_dir();
        let mut snapshot = LeaseSnapshot::default();
        match Outcome::parse(reply, operation, &dir)? {
            Outcome::Done(done) => {
                snapshot.revision = reply.index.unwrap_or(done.node.modified_index);
                let mut nodes = done.node.nodes;
                nodes.sort_by(|a, b| a.key.cmp(&b.key));
                for node in &nodes {
                    // Directories hold no lease; flannel never makes them.
                    if node.dir {
                        tracing::debug!(key = %node.key, "skipping directory under the subnets directory");
                        continue;
                    }
                    match self.decode(node) {
                        Ok(lease) => snapshot.leases.push(lease),
                        Err(invalid) => snapshot.invalid.push(invalid),
                    }
                }
            }
            Outcome::Failed(_, error) if error.error_code == node::KEY_NOT_FOUND => {
                snapshot.revision = reply.index.unwrap_or_default();
            }
            Outcome::Failed(status, error) => {
                return Err(unexpected(operation, &dir, status, &error))
            }
        }
        Ok(snapshot)
    }

    /// Writes a lease value, with `ttl` unless `ttl` is `None`, and with the
    /// given condition (`prevExist=false` or `prevIndex=N`).
    async fn put_lease(
        &self,
        path: &str,
        attrs: &LeaseAttrs,
        ttl: Option<Duration>,
        condition: &str,
    ) -> Result<Outcome, RegistryError> {
        let mut form = format!("value={}", encode_value(&attrs.to_json()));
        if let Some(ttl) = ttl {
            form.push_str(&format!("&ttl={}", whole_seconds(ttl)));
        }
        let url = format!("{}?{condition}", key_url(path));
        let reply = self
            .client
            .call("compare-and-set", path, Method::PUT, &url, Some(form))
            .await?;
        Outcome::parse(&reply, "compare-and-set", path)
    }
}

/// Rounds a TTL up to whole seconds, at least one, as etcd v2 takes it.
fn whole_seconds(ttl: Duration) -> u64 {
    (ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)).max(1)
}

impl Registry for EtcdV2Registry {
    fn config_path(&self) -> String {
        self.config_key()
    }

    async fn config(&self) -> Result<ConfigValue, RegistryError> {
        let key = self.config_key();
        let reply = self
            .client
            .call("get", &key, Method::GET, &key_url(&key), None)
            .await?;
        let text = match Outcome::parse(&reply, "get", &key)? {
            Outcome::Done(done) if done.node.dir => {
                return Err(RegistryError::UnexpectedResponse {
                    operation: "get",
                    key,
                    detail: "the config key is a directory; expected a JSON value".to_owned(),
                })
            }
            Outcome::Done(done) => done.node.value,
            Outcome::Failed(_, error) if error.error_code == node::KEY_NOT_FOUND => None,
            Outcome::Failed(status, error) => return Err(unexpected("get", &key, status, &error)),
        };
        Ok(ConfigValue {
            text,
            revision: reply.index.unwrap_or_default(),
        })
    }

    async fn wait_config_change(&self, after: Revision) -> Result<(), RegistryError> {
        watch::wait_key_change(self, self.config_key(), after).await
    }

    async fn leases(&self) -> Result<LeaseSnapshot, RegistryError> {
        let dir = self.subnets_dir();
        let url = format!("{}?recursive=true", key_url(&dir));
        let reply = self
            .client
            .call("get", &dir, Method::GET, &url, None)
            .await?;
        self.snapshot(&reply, "get")
    }

    async fn lease(&self, key: &LeaseKey) -> Result<Option<Lease>, LeaseReadError> {
        let path = self.lease_path(key);
        let reply = self
            .client
            .call("get", &path, Method::GET, &key_url(&path), None)
            .await?;
        match Outcome::parse(&reply, "get", &path)? {
            Outcome::Done(done) if done.node.dir => Err(RegistryError::UnexpectedResponse {
                operation: "get",
                key: path,
                detail: "the lease key is a directory".to_owned(),
            }
            .into()),
            Outcome::Done(done) => Ok(Some(self.decode(&done.node)?)),
            Outcome::Failed(_, error) if error.error_code == node::KEY_NOT_FOUND => Ok(None),
            Outcome::Failed(status, error) => Err(unexpected("get", &path, status, &error).into()),
        }
    }

    async fn create_lease(
        &self,
        key: &LeaseKey,
        attrs: &LeaseAttrs,
        ttl: Duration,
    ) -> Result<Lease, CreateLeaseError> {
        let path = self.lease_path(key);
        let registry_error = |source| CreateLeaseError::Registry { key: *key, source };

        let outcome = self
            .put_lease(&path, attrs, Some(ttl), "prevExist=false")
            .await
            .map_err(registry_error)?;
        match outcome {
            Outcome::Done(done) => Ok(Lease {
                key: *key,
                attrs: attrs.clone(),
                expiry: done.node.expiry(),
                mod_revision: done.node.modified_index,
            }),
            Outcome::Failed(_, error)
                if matches!(error.error_code, node::KEY_EXISTS | node::NOT_A_FILE) =>
            {
                Err(CreateLeaseError::Taken { key: *key })
            }
            Outcome::Failed(status, error) => Err(registry_error(unexpected(
                "compare-and-set",
                &path,
                status,
                &error,
            ))),
        }
    }

    async fn renew_lease(
        &self,
        lease: &Lease,
        attrs: &LeaseAttrs,
        ttl: Duration,
    ) -> Result<Lease, RenewLeaseError> {
        let path = self.lease_path(&lease.key);

        // A reservation is rewritten without a TTL, so it stays one.
        let ttl = (!lease.is_reservation()).then_some(ttl);
        let condition = format!("prevIndex={}", lease.mod_revision);
        let outcome = self
            .put_lease(&path, attrs, ttl, &condition)
            .await
            .map_err(|source| RenewLeaseError::Registry {
                key: lease.key,
                source,
            })?;
        match outcome {
            Outcome::Done(done) => Ok(Lease {
                key: lease.key,
                attrs: attrs.clone(),
                expiry: done.node.expiry(),
                mod_revision: done.node.modified_index,
            }),
            Outcome::Failed(_, error)
                if matches!(
                    error.error_code,
                    node::COMPARE_FAILED | node::KEY_NOT_FOUND | node::NOT_A_FILE
                ) =>
            {
                Err(RenewLeaseError::Changed {
                    key: lease.key,
                    revision: lease.mod_revision,
                })
            }
            Outcome::Failed(status, error) => Err(RenewLeaseError::Registry {
                key: lease.key,
                source: unexpected("compare-and-set", &path, status, &error),
            }),
        }
    }

    async fn delete_lease(&self, lease: &Lease) -> Result<bool, DeleteLeaseError> {
        if lease.is_reservation() {
            return Err(DeleteLeaseError::Reservation { key: lease.key });
        }
        let path = self.lease_path(&lease.key);
        let url = format!("{}?prevIndex={}", key_url(&path), lease.mod_revision);
        let registry_error = |source| DeleteLeaseError::Registry {
            key: lease.key,
            source,
        };

        let reply = self
            .client
            .call("compare-and-delete", &path, Method::DELETE, &url, None)
            .await
            .map_err(registry_error)?;
        match Outcome::parse(&reply, "compare-and-delete", &path).map_err(registry_error)? {
            Outcome::Done(_) => Ok(true),
            Outcome::Failed(_, error)
                if matches!(
                    error.error_code,
                    node::COMPARE_FAILED | node::KEY_NOT_FOUND | node::NOT_A_FILE
                ) =>
            {
                Ok(false)
            }
            Outcome::Failed(status, error) => Err(registry_error(unexpected(
                "compare-and-delete",
                &path,
                status,
                &error,
            ))),
        }
    }

    async fn watch_leases(&self, after: Revision) -> Result<LeaseWatch, RegistryError> {
        Ok(watch::lease_watch(self.clone(), after))
    }
}
