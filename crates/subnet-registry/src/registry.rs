//! The registry trait: what every store of network configs and subnet
//! leases offers, and the values it returns.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use futures::Stream;
use subnet_core::lease::{LeaseAttrs, LeaseAttrsError, LeaseKey, LeaseKeyError};

use crate::error::{CreateLeaseError, DeleteLeaseError, RegistryError, RenewLeaseError};

/// A store revision: etcd's cluster-wide revision, or the in-memory
/// registry's counter. Every change to the store raises it by one.
pub type Revision = i64;

/// When a lease ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// A reservation: a key without an etcd lease. It never expires and
    /// the lease manager never deletes it.
    Never,
    /// The lease expires at this time, by the registry's clock. For etcd
    /// this is measured when the lease is read or granted, so it may be a
    /// round trip early, never late.
    At(SystemTime),
    /// The key is held by an etcd lease whose remaining time this read did
    /// not fetch. Listings return this, because fetching the time of every
    /// lease would cost one round trip per lease; [`Registry::lease`]
    /// fetches it.
    Unknown,
}

/// A subnet lease as stored: its key, its attributes and when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The leased subnet or subnets.
    pub key: LeaseKey,
    /// The value stored under the key.
    pub attrs: LeaseAttrs,
    /// When the lease ends; [`Expiry::Never`] for a reservation.
    pub expiry: Expiry,
    /// The revision of the last change to this key. Renewing and deleting
    /// succeed only while the key still has this revision.
    pub mod_revision: Revision,
}

impl Lease {
    /// Returns whether this is a reservation, which never expires.
    pub fn is_reservation(&self) -> bool {
        self.expiry == Expiry::Never
    }
}

/// Every lease in the store at one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseSnapshot {
    /// The store revision the listing was read at. Watching from just after
    /// it misses no change.
    pub revision: Revision,
    /// The leases that parsed, in key order of the store.
    pub leases: Vec<Lease>,
    /// Entries under the leases prefix that are not valid leases. Their
    /// keys still occupy subnets, so an allocator must avoid those that
    /// parse.
    pub invalid: Vec<InvalidLease>,
}

/// An entry under `<prefix>/subnets/` that is not a valid lease. The store
/// keeps it untouched; readers skip it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidLease {
    /// The key is not a lease key.
    #[error("skipping {path}: {source}")]
    Key {
        /// The full store key.
        path: String,
        /// The parse error of the key.
        source: LeaseKeyError,
    },
    /// The key parses but the value is not lease JSON.
    #[error("skipping lease {path}: {source}")]
    Value {
        /// The full store key.
        path: String,
        /// The parsed key, whose subnets stay taken.
        key: LeaseKey,
        /// The parse error of the value.
        source: LeaseAttrsError,
    },
    /// The key or the value is not UTF-8.
    #[error("skipping {path}: the key or the value is not UTF-8")]
    NotUtf8 {
        /// The full store key, with invalid bytes replaced.
        path: String,
        /// The parsed key when only the value is bad.
        key: Option<LeaseKey>,
    },
}

impl InvalidLease {
    /// Returns the subnets this entry occupies, if its key parses.
    pub fn key(&self) -> Option<LeaseKey> {
        match self {
            Self::Key { .. } => None,
            Self::Value { key, .. } => Some(*key),
            Self::NotUtf8 { key, .. } => *key,
        }
    }

    /// Returns the full store key of the entry.
    pub fn path(&self) -> &str {
        match self {
            Self::Key { path, .. } | Self::Value { path, .. } | Self::NotUtf8 { path, .. } => path,
        }
    }
}

/// The raw network config and the revision it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigValue {
    /// The text stored at `<prefix>/config`; `None` when the key is missing.
    pub text: Option<String>,
    /// The store revision of the read.
    pub revision: Revision,
}

/// A change under `<prefix>/subnets/`, in store order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryEvent {
    /// A lease was created, renewed or rewritten.
    Added(Lease),
    /// A lease was deleted.
    Removed {
        /// The deleted lease's key.
        key: LeaseKey,
        /// The revision of the deletion.
        revision: Revision,
    },
    /// A lease's time ran out and the store deleted it.
    Expired {
        /// The expired lease's key.
        key: LeaseKey,
        /// The revision of the expiry.
        revision: Revision,
    },
    /// An entry was written that is not a valid lease; readers skip it.
    Invalid(InvalidLease),
    /// The watch could not resume where it stopped because the store
    /// compacted that history away. The snapshot replaces everything known
    /// so far, and events continue after its revision.
    Resync(LeaseSnapshot),
}

/// A stream of lease changes. It never ends on its own: the etcd registry
/// reconnects with backoff after errors and resynchronises after a
/// compaction.
pub type LeaseWatch = Pin<Box<dyn Stream<Item = RegistryEvent> + Send>>;

/// A store of one network's config and subnet leases, shared by every host
/// of the network.
///
/// Implementations: [`EtcdRegistry`](crate::EtcdRegistry) and
/// [`MemoryRegistry`](crate::MemoryRegistry).
pub trait Registry: Send + Sync + 'static {
    /// The store key of the network config, for messages.
    fn config_path(&self) -> String;

    /// Reads the raw network config. Parsing is left to the caller so that it
    /// can report a bad config and keep waiting for a good one.
    fn config(&self) -> impl Future<Output = Result<ConfigValue, RegistryError>> + Send;

    /// Resolves once the config key changes after `after`, or at once if it
    /// already has. It may also resolve spuriously, such as after a
    /// compaction, so callers re-read the config.
    fn wait_config_change(
        &self,
        after: Revision,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;

    /// Lists every lease with the store revision, in a constant number of
    /// round trips whatever the number of leases.
    fn leases(&self) -> impl Future<Output = Result<LeaseSnapshot, RegistryError>> + Send;

    /// Reads one lease with its exact expiry; `None` when the key is absent.
    /// An invalid entry is returned as an error.
    fn lease(
        &self,
        key: &LeaseKey,
    ) -> impl Future<Output = Result<Option<Lease>, LeaseReadError>> + Send;

    /// Creates a lease that lives for `ttl`, only if no entry has its key.
    fn create_lease(
        &self,
        key: &LeaseKey,
        attrs: &LeaseAttrs,
        ttl: Duration,
    ) -> impl Future<Output = Result<Lease, CreateLeaseError>> + Send;

    /// Writes new attributes and, unless `lease` is a reservation, a new
    /// expiry of now plus `ttl`. Fails with
    /// [`RenewLeaseError::Changed`] when the key was deleted or rewritten
    /// since `lease` was read. A reservation stays a reservation.
    fn renew_lease(
        &self,
        lease: &Lease,
        attrs: &LeaseAttrs,
        ttl: Duration,
    ) -> impl Future<Output = Result<Lease, RenewLeaseError>> + Send;

    /// Deletes the lease if the key has not changed since `lease` was read.
    /// Returns whether it was deleted.
    fn delete_lease(
        &self,
        lease: &Lease,
    ) -> impl Future<Output = Result<bool, DeleteLeaseError>> + Send;

    /// Streams the lease changes made after revision `after`, such as the
    /// revision of a [`LeaseSnapshot`].
    fn watch_leases(
        &self,
        after: Revision,
    ) -> impl Future<Output = Result<LeaseWatch, RegistryError>> + Send;
}

/// Reading one lease failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseReadError {
    /// The entry exists but is not a valid lease.
    #[error(transparent)]
    Invalid(#[from] InvalidLease),
    /// The store could not be read.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Decodes a stored entry under the subnets prefix into a lease.
pub(crate) fn decode_lease(
    path: &str,
    name: &[u8],
    value: &[u8],
    expiry: Expiry,
    mod_revision: Revision,
) -> Result<Lease, InvalidLease> {
    let Ok(name) = std::str::from_utf8(name) else {
        return Err(InvalidLease::NotUtf8 {
            path: path.to_owned(),
            key: None,
        });
    };
    let key: LeaseKey = name.parse().map_err(|source| InvalidLease::Key {
        path: path.to_owned(),
        source,
    })?;
    let Ok(value) = std::str::from_utf8(value) else {
        return Err(InvalidLease::NotUtf8 {
            path: path.to_owned(),
            key: Some(key),
        });
    };
    let attrs = LeaseAttrs::from_json(value).map_err(|source| InvalidLease::Value {
        path: path.to_owned(),
        key,
        source,
    })?;
    Ok(Lease {
        key,
        attrs,
        expiry,
        mod_revision,
    })
}
