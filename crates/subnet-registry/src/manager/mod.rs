//! The lease manager: waits for the network config, acquires this host's
//! subnet lease, keeps it renewed, and streams the other hosts' leases.
//!
//! It is written once against [`Registry`], and takes a [`Clock`] and a
//! random number generator so that renewals and subnet choices can be
//! tested without sleeping and without chance.

mod acquire;
pub mod free;
mod keeper;
mod peers;

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use subnet_core::lease::{LeaseAttrs, LeaseKey};
use subnet_core::NetworkConfig;

pub use acquire::AcquireError;
pub use keeper::{LeaseEvent, LeaseKeeper};
pub use peers::{PeerEvent, PeerWatch};

use crate::backoff::Backoff;
use crate::clock::{Clock, SystemClock};
use crate::error::DeleteLeaseError;
use crate::registry::{Lease, Registry};

/// How long a lease lives: 24 hours, as in flannel.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// How much time may be left on a lease before it is renewed: 60 minutes,
/// flannel's `-subnet-lease-renew-margin` default.
pub const DEFAULT_RENEW_MARGIN: Duration = Duration::from_secs(60 * 60);

/// What this host puts into its lease, and how the lease is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerConfig {
    /// The address other hosts send overlay traffic to (`PublicIP`). Leases
    /// and reservations with this address are this host's.
    pub public_ip: Ipv4Addr,
    /// The IPv6 address other hosts send overlay traffic to; required when
    /// the network config enables IPv6.
    pub public_ipv6: Option<Ipv6Addr>,
    /// The backend type written into the lease, such as `udp` or `vxlan`.
    pub backend_type: String,
    /// Backend data written into the lease, such as the VXLAN VTEP MAC.
    pub backend_data: Option<serde_json::Value>,
    /// The subnet this host had before, from its previous `subnet.env`.
    /// It is reused when still free and inside the config.
    pub previous_subnet: Option<LeaseKey>,
    /// Renew when less than this is left on the lease.
    pub renew_margin: Duration,
    /// How long each lease or renewal lasts.
    pub lease_ttl: Duration,
    /// The longest wait between retries after a store failure.
    pub max_retry_delay: Duration,
}

impl ManagerConfig {
    /// Settings for a host at `public_ip` running the udp backend, with
    /// flannel's defaults for the rest.
    pub fn new(public_ip: Ipv4Addr) -> Self {
        Self {
            public_ip,
            public_ipv6: None,
            backend_type: "udp".to_owned(),
            backend_data: None,
            previous_subnet: None,
            renew_margin: DEFAULT_RENEW_MARGIN,
            lease_ttl: DEFAULT_LEASE_TTL,
            max_retry_delay: Duration::from_secs(30),
        }
    }

    /// The attributes written into this host's lease.
    pub fn attrs(&self) -> LeaseAttrs {
        LeaseAttrs {
            public_ip: self.public_ip,
            public_ipv6: self.public_ipv6,
            backend_type: self.backend_type.clone(),
            backend_data: self.backend_data.clone(),
        }
    }
}

/// Acquires and keeps this host's subnet lease in a [`Registry`]. Clones
/// share the registry, clock and random number generator.
pub struct LeaseManager<R, C = SystemClock> {
    shared: Arc<Shared<R, C>>,
}

struct Shared<R, C> {
    registry: R,
    config: ManagerConfig,
    clock: C,
    rng: Mutex<Box<dyn RngCore + Send>>,
}

impl<R, C> Clone for LeaseManager<R, C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<R, C: fmt::Debug> fmt::Debug for LeaseManager<R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseManager")
            .field("config", &self.shared.config)
            .field("clock", &self.shared.clock)
            .finish_non_exhaustive()
    }
}

impl<R: Registry> LeaseManager<R, SystemClock> {
    /// Creates a manager on the system clock with a randomly seeded
    /// generator.
    pub fn new(registry: R, config: ManagerConfig) -> Self {
        Self::with_clock_and_rng(registry, config, SystemClock, StdRng::from_os_rng())
    }
}

impl<R: Registry, C: Clock> LeaseManager<R, C> {
    /// Creates a manager that reads time from `clock` and picks subnets
    /// with `rng`.
    pub fn with_clock_and_rng(
        registry: R,
        config: ManagerConfig,
        clock: C,
        rng: impl RngCore + Send + 'static,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                registry,
                config,
                clock,
                rng: Mutex::new(Box::new(rng)),
            }),
        }
    }

    /// The registry the manager works on.
    pub fn registry(&self) -> &R {
        &self.shared.registry
    }

    /// The manager's settings.
    pub fn config(&self) -> &ManagerConfig {
        &self.shared.config
    }

    /// Waits until the store holds a valid network config and returns it.
    ///
    /// A missing config is logged once with the key waited for; an invalid
    /// one is logged with the exact error each time it changes, and the
    /// wait goes on. Store failures are logged and retried with backoff, so
    /// this returns only with a config; drop the future to stop waiting.
    pub async fn wait_for_config(&self) -> NetworkConfig {
        let registry = &self.shared.registry;
        let path = registry.config_path();
        let mut logged_missing = false;
        let mut last_error: Option<String> = None;
        let mut backoff = self.backoff();

        loop {
            let value = match registry.config().await {
                Ok(value) => value,
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, retry_in = ?delay, "reading the network config failed");
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };

            match value.text.as_deref().map(NetworkConfig::parse) {
                Some(Ok(config)) => {
                    tracing::info!(key = %path, revision = value.revision, "network config read");
                    return config;
                }
                Some(Err(error)) => {
                    let message = error.to_string();
                    if last_error.as_ref() != Some(&message) {
                        tracing::error!(
                            key = %path, %error,
                            "invalid network config; waiting for a valid one"
                        );
                        last_error = Some(message);
                    }
                }
                None if !logged_missing => {
                    tracing::info!(key = %path, "waiting for the network config to be written");
                    logged_missing = true;
                }
                None => {}
            }

            // Wait for the next change; on failure, re-read after a delay.
            if let Err(error) = registry.wait_config_change(value.revision).await {
                let delay = backoff.next_delay();
                tracing::warn!(%error, retry_in = ?delay, "watching the network config failed");
                tokio::time::sleep(delay).await;
            } else {
                backoff.reset();
            }
        }
    }

    /// Acquires a lease for this host under `config`, in flannel's order:
    /// this host's own lease or reservation (by `PublicIP`), then the
    /// previous subnet if it is free and inside the config, then a random
    /// free subnet. A subnet taken by another host in the meantime is
    /// retried with a fresh listing.
    ///
    /// Store failures are returned, not retried; see
    /// [`AcquireError::is_retryable`].
    pub async fn acquire(&self, config: &NetworkConfig) -> Result<Lease, AcquireError> {
        acquire::acquire(self, config, self.shared.config.previous_subnet).await
    }

    /// Returns a stream that keeps `lease` renewed under `config` and
    /// reports each renewal and each change of subnet. It does its work only
    /// while polled, so spawn a task that drains it.
    pub fn keep_renewed(&self, config: NetworkConfig, lease: Lease) -> LeaseKeeper {
        keeper::keep_renewed(self.clone(), config, lease)
    }

    /// Lists the other hosts' leases and then follows their changes. The
    /// stream starts with an [`PeerEvent::Added`] for each current peer.
    /// Leases with `own` as key are left out.
    pub async fn watch_peers(
        &self,
        own: Option<LeaseKey>,
    ) -> Result<PeerWatch, crate::error::RegistryError> {
        peers::watch_peers(&self.shared.registry, own).await
    }

    /// Deletes this host's lease, such as when the host leaves the network
    /// for good. Reservations are kept. Returns whether the lease was
    /// deleted; it was not if it had changed since `lease` was read.
    pub async fn release(&self, lease: &Lease) -> Result<bool, DeleteLeaseError> {
        if lease.is_reservation() {
            tracing::info!(lease = %lease.key, "keeping reservation on release");
            return Ok(false);
        }
        let deleted = self.shared.registry.delete_lease(lease).await?;
        tracing::info!(lease = %lease.key, deleted, "lease released");
        Ok(deleted)
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(
            Duration::from_millis(200),
            self.shared.config.max_retry_delay,
        )
    }

    fn random_below(&self, bound: u128) -> u128 {
        use rand::Rng;
        let mut rng = self
            .shared
            .rng
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        rng.random_range(0..bound)
    }
}
