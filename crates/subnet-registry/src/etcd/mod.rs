//! The registry on etcd v3, with the keys and values flannel uses:
//! `<prefix>/config` and `<prefix>/subnets/<lease key>`, each lease held by
//! an etcd lease of its lifetime, reservations by no etcd lease at all.

mod connection;
mod options;
mod watch;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use etcd_client::{
    Compare, CompareOp, GetOptions, KeyValue, PutOptions, Txn, TxnOp, TxnOpResponse,
};
use subnet_core::lease::{LeaseAttrs, LeaseKey};

use connection::Connection;
pub use options::{ConnectError, EtcdConfig};

use crate::error::{CreateLeaseError, DeleteLeaseError, RegistryError, RenewLeaseError};
use crate::registry::{
    decode_lease, ConfigValue, Expiry, InvalidLease, Lease, LeaseReadError, LeaseSnapshot,
    LeaseWatch, Registry, Revision,
};

/// The largest listing the client accepts. A lease value is about 150
/// bytes, so this holds over a million leases in one response.
const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// A registry on an etcd v3 cluster. Clones share the connections.
///
/// Each request has the configured timeout. A request that cannot reach
/// its endpoint moves on to the next endpoint (or, with one endpoint, is
/// tried once more), and any other failure is returned as a
/// [`RegistryError`]: only the caller knows whether repeating it is useful.
/// Watches reconnect with backoff and resume where they stopped.
#[derive(Clone)]
pub struct EtcdRegistry {
    connection: Arc<Connection>,
    prefix: String,
}

impl std::fmt::Debug for EtcdRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdRegistry")
            .field("prefix", &self.prefix)
            .field("timeout", &self.connection.timeout())
            .finish_non_exhaustive()
    }
}

impl EtcdRegistry {
    /// Sets up the clients for `config`. With credentials, it logs in at the
    /// first endpoint that responds, and fails when the credentials are
    /// rejected or no endpoint responds. Without credentials, connections
    /// open on first use, so only bad settings and unreadable TLS files fail
    /// here.
    pub async fn connect(config: &EtcdConfig) -> Result<Self, ConnectError> {
        Ok(Self {
            connection: Arc::new(Connection::open(config).await?),
            prefix: config.prefix.trim_end_matches('/').to_owned(),
        })
    }

    /// Returns the key prefix of the network.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Stores `text` as the network config, as `etcdctl put <prefix>/config`
    /// does.
    pub async fn put_config(&self, text: &str) -> Result<Revision, RegistryError> {
        let key = self.config_key();
        let response = self
            .connection
            .call("put", &key, |client| {
                let (key, text) = (key.clone(), text.to_owned());
                async move { client.kv_client().put(key, text, None).await }
            })
            .await?;
        Ok(revision_of(response.header()))
    }

    /// Compacts the store's history up to `revision`; watches that had not
    /// seen it resync.
    pub async fn compact(&self, revision: Revision) -> Result<(), RegistryError> {
        self.connection
            .call("compact", "the store", |client| async move {
                client.kv_client().compact(revision, None).await
            })
            .await?;
        Ok(())
    }

    fn config_key(&self) -> String {
        format!("{}/config", self.prefix)
    }

    fn subnets_prefix(&self) -> String {
        format!("{}/subnets/", self.prefix)
    }

    fn lease_path(&self, key: &LeaseKey) -> String {
        format!("{}/subnets/{key}", self.prefix)
    }

    /// Runs a transaction on `path`. A retry after a lost response finds
    /// the key already written and fails its comparison. Callers treat that
    /// as a changed key and read it again, which finds this host's lease.
    async fn txn(&self, path: &str, txn: Txn) -> Result<etcd_client::TxnResponse, RegistryError> {
        self.connection
            .call("txn", path, |client| {
                let txn = txn.clone();
                async move { client.kv_client().txn(txn).await }
            })
            .await
    }

    /// Decodes a key-value pair under the subnets prefix.
    fn decode(&self, kv: &KeyValue, expiry: Expiry) -> Result<Lease, InvalidLease> {
        let path = String::from_utf8_lossy(kv.key()).into_owned();
        let name = &kv.key()[self.subnets_prefix().len().min(kv.key().len())..];
        decode_lease(&path, name, kv.value(), expiry, kv.mod_revision())
    }

    /// Grants an etcd lease of `ttl`, rounded up to whole seconds.
    async fn grant(&self, path: &str, ttl: Duration) -> Result<i64, RegistryError> {
        let seconds = i64::try_from(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0))
            .unwrap_or(i64::MAX)
            .max(1);
        let response = self
            .connection
            .call("lease grant", path, |client| async move {
                client.lease_client().grant(seconds, None).await
            })
            .await?;
        Ok(response.id())
    }

    /// Revokes an etcd lease that no key uses any more. A failure only
    /// leaves the lease to run out, so it is logged and not returned.
    async fn revoke_unused(&self, path: &str, id: i64) {
        let revoked = self
            .connection
            .call("lease revoke", path, |client| async move {
                client.lease_client().revoke(id).await
            })
            .await;
        if let Err(error) = revoked {
            tracing::debug!(%error, lease_id = id, "unused etcd lease left to expire");
        }
    }

    /// Returns the time left on etcd lease `id`, or `None` once it is gone.
    async fn time_to_live(&self, path: &str, id: i64) -> Result<Option<Duration>, RegistryError> {
        let response = self
            .connection
            .call("lease time-to-live", path, |client| async move {
                client.lease_client().time_to_live(id, None).await
            })
            .await?;
        Ok(u64::try_from(response.ttl()).ok().map(Duration::from_secs))
    }
}

fn revision_of(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    header.map_or(0, etcd_client::ResponseHeader::revision)
}

impl Registry for EtcdRegistry {
    fn config_path(&self) -> String {
        self.config_key()
    }

    async fn config(&self) -> Result<ConfigValue, RegistryError> {
        let key = self.config_key();
        let response = self
            .connection
            .call("get", &key, |client| {
                let key = key.clone();
                async move { client.kv_client().get(key, None).await }
            })
            .await?;
        // Text that is not UTF-8 cannot be JSON: it is passed on lossily so
        // that the config parser reports where it breaks.
        let text = response
            .kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
        Ok(ConfigValue {
            text,
            revision: revision_of(response.header()),
        })
    }

    async fn wait_config_change(&self, after: Revision) -> Result<(), RegistryError> {
        watch::wait_key_change(self, self.config_key(), after).await
    }

    async fn leases(&self) -> Result<LeaseSnapshot, RegistryError> {
        let prefix = self.subnets_prefix();
        let response = self
            .connection
            .call("get", &prefix, |client| {
                let prefix = prefix.clone();
                async move {
                    let mut kv = client
                        .kv_client()
                        .max_decoding_message_size(MAX_RESPONSE_BYTES);
                    kv.get(prefix, Some(GetOptions::new().with_prefix())).await
                }
            })
            .await?;

        let mut snapshot = LeaseSnapshot {
            revision: revision_of(response.header()),
            ..LeaseSnapshot::default()
        };
        for kv in response.kvs() {
            let expiry = if kv.lease() == 0 {
                Expiry::Never
            } else {
                Expiry::Unknown
            };
            match self.decode(kv, expiry) {
                Ok(lease) => snapshot.leases.push(lease),
                Err(invalid) => snapshot.invalid.push(invalid),
            }
        }
        Ok(snapshot)
    }

    async fn lease(&self, key: &LeaseKey) -> Result<Option<Lease>, LeaseReadError> {
        let path = self.lease_path(key);
        let response = self
            .connection
            .call("get", &path, |client| {
                let path = path.clone();
                async move { client.kv_client().get(path, None).await }
            })
            .await?;
        let Some(kv) = response.kvs().first() else {
            return Ok(None);
        };

        let expiry = if kv.lease() == 0 {
            Expiry::Never
        } else {
            let now = SystemTime::now();
            match self.time_to_live(&path, kv.lease()).await? {
                Some(left) => Expiry::At(now + left),
                // The lease ran out between the two reads.
                None => return Ok(None),
            }
        };
        Ok(Some(self.decode(kv, expiry)?))
    }

    async fn create_lease(
        &self,
        key: &LeaseKey,
        attrs: &LeaseAttrs,
        ttl: Duration,
    ) -> Result<Lease, CreateLeaseError> {
        let path = self.lease_path(key);
        let registry_error = |source| CreateLeaseError::Registry { key: *key, source };

        // Measured before the grant, so the expiry is never later than
        // etcd's.
        let granted_at = SystemTime::now();
        let lease_id = self.grant(&path, ttl).await.map_err(registry_error)?;

        let txn = Txn::new()
            .when([Compare::version(path.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                path.clone(),
                attrs.to_json(),
                Some(PutOptions::new().with_lease(lease_id)),
            )]);
        let response = match self.txn(&path, txn).await {
            Ok(response) => response,
            Err(error) => {
                self.revoke_unused(&path, lease_id).await;
                return Err(registry_error(error));
            }
        };
        if !response.succeeded() {
            self.revoke_unused(&path, lease_id).await;
            return Err(CreateLeaseError::Taken { key: *key });
        }

        Ok(Lease {
            key: *key,
            attrs: attrs.clone(),
            expiry: Expiry::At(granted_at + ttl),
            mod_revision: revision_of(response.header()),
        })
    }

    async fn renew_lease(
        &self,
        lease: &Lease,
        attrs: &LeaseAttrs,
        ttl: Duration,
    ) -> Result<Lease, RenewLeaseError> {
        let path = self.lease_path(&lease.key);
        let registry_error = |source| RenewLeaseError::Registry {
            key: lease.key,
            source,
        };

        // A reservation is rewritten without an etcd lease, so it stays one.
        let granted_at = SystemTime::now();
        let (new_lease_id, expiry) = if lease.is_reservation() {
            (None, Expiry::Never)
        } else {
            let id = self.grant(&path, ttl).await.map_err(registry_error)?;
            (Some(id), Expiry::At(granted_at + ttl))
        };

        let mut put = PutOptions::new().with_prev_key();
        if let Some(id) = new_lease_id {
            put = put.with_lease(id);
        }
        let txn = Txn::new()
            .when([Compare::mod_revision(
                path.clone(),
                CompareOp::Equal,
                lease.mod_revision,
            )])
            .and_then([TxnOp::put(path.clone(), attrs.to_json(), Some(put))]);
        let result = self.txn(&path, txn).await;

        let response = match result {
            Ok(response) if response.succeeded() => response,
            other => {
                if let Some(id) = new_lease_id {
                    self.revoke_unused(&path, id).await;
                }
                return Err(match other {
                    Err(error) => registry_error(error),
                    Ok(_) => RenewLeaseError::Changed {
                        key: lease.key,
                        revision: lease.mod_revision,
                    },
                });
            }
        };

        // The key now uses the new etcd lease; the old one holds nothing.
        let old_lease_id = response.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Put(put) => put.prev_key().map(KeyValue::lease),
            _ => None,
        });
        if let Some(old) = old_lease_id.filter(|id| *id != 0) {
            self.revoke_unused(&path, old).await;
        }

        Ok(Lease {
            key: lease.key,
            attrs: attrs.clone(),
            expiry,
            mod_revision: revision_of(response.header()),
        })
    }

    async fn delete_lease(&self, lease: &Lease) -> Result<bool, DeleteLeaseError> {
        if lease.is_reservation() {
            return Err(DeleteLeaseError::Reservation { key: lease.key });
        }
        let path = self.lease_path(&lease.key);

        // The etcd lease is left to run out rather than revoked, so that
        // watchers see a deletion here and not an expiry.
        let txn = Txn::new()
            .when([Compare::mod_revision(
                path.clone(),
                CompareOp::Equal,
                lease.mod_revision,
            )])
            .and_then([TxnOp::delete(path.clone(), None)]);
        let response = self
            .txn(&path, txn)
            .await
            .map_err(|source| DeleteLeaseError::Registry {
                key: lease.key,
                source,
            })?;
        Ok(response.succeeded())
    }

    async fn watch_leases(&self, after: Revision) -> Result<LeaseWatch, RegistryError> {
        Ok(watch::lease_watch(self.clone(), after))
    }
}
