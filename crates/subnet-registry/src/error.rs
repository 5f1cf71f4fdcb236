//! Errors of the registry operations. Each operation has its own enum, so
//! that callers can match the outcomes they act on (a key already taken, a
//! lease changed behind their back) apart from store failures.

use std::time::Duration;

use subnet_core::lease::LeaseKey;

/// The store could not be reached or returned an error.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The etcd client returned an error.
    #[error("etcd {operation} of {key} failed: {source}")]
    Etcd {
        /// What was being done: `get`, `txn`, `watch`, `lease grant`, ...
        operation: &'static str,
        /// The key or prefix it was done on.
        key: String,
        /// The client's error.
        source: etcd_client::Error,
    },
    /// An HTTP request to an etcd v2 endpoint failed: no connection, a
    /// broken connection or a TLS failure. The next request tries the next
    /// endpoint.
    #[error("etcd v2 {operation} of {key} at {endpoint} failed: {message}")]
    Transport {
        /// What was being done.
        operation: &'static str,
        /// The key or prefix it was done on.
        key: String,
        /// The endpoint the request went to.
        endpoint: String,
        /// The HTTP client's error with its causes.
        message: String,
    },
    /// etcd did not respond in time.
    #[error("etcd {operation} of {key} timed out after {timeout:?}")]
    Timeout {
        /// What was being done.
        operation: &'static str,
        /// The key or prefix it was done on.
        key: String,
        /// The time allowed for each call.
        timeout: Duration,
    },
    /// etcd returned a response that violates its protocol, such as a
    /// transaction without the expected response.
    #[error("etcd {operation} of {key} returned an unexpected response: {detail}")]
    UnexpectedResponse {
        /// What was being done.
        operation: &'static str,
        /// The key or prefix it was done on.
        key: String,
        /// What was wrong.
        detail: String,
    },
}

/// Creating a lease failed.
#[derive(Debug, thiserror::Error)]
pub enum CreateLeaseError {
    /// Another entry already has the key: pick another subnet.
    #[error("lease {key} is already taken")]
    Taken {
        /// The key that exists.
        key: LeaseKey,
    },
    /// The store failed; retrying later may succeed.
    #[error("creating lease {key}: {source}")]
    Registry {
        /// The key being created.
        key: LeaseKey,
        /// The store's error.
        source: RegistryError,
    },
}

/// Renewing a lease failed.
#[derive(Debug, thiserror::Error)]
pub enum RenewLeaseError {
    /// The key was deleted, expired or rewritten since the lease was read:
    /// read it again or acquire a new lease.
    #[error("lease {key} was deleted or changed since revision {revision}")]
    Changed {
        /// The lease's key.
        key: LeaseKey,
        /// The revision the caller's copy was read at.
        revision: i64,
    },
    /// The store failed; retrying later may succeed.
    #[error("renewing lease {key}: {source}")]
    Registry {
        /// The lease's key.
        key: LeaseKey,
        /// The store's error.
        source: RegistryError,
    },
}

/// Deleting a lease failed.
#[derive(Debug, thiserror::Error)]
pub enum DeleteLeaseError {
    /// The lease is a reservation, which only an operator removes.
    #[error("lease {key} is a reservation; remove it with etcdctl if it is no longer wanted")]
    Reservation {
        /// The reservation's key.
        key: LeaseKey,
    },
    /// The store failed; retrying later may succeed.
    #[error("deleting lease {key}: {source}")]
    Registry {
        /// The lease's key.
        key: LeaseKey,
        /// The store's error.
        source: RegistryError,
    },
}
