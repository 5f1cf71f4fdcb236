//! Choosing and claiming this host's subnet.

use subnet_core::lease::{LeaseAttrs, LeaseKey};
use subnet_core::{Cidr, NetworkConfig, SubnetRange};

use super::free::TakenIndices;
use super::{LeaseManager, ManagerConfig};
use crate::clock::Clock;
use crate::error::{CreateLeaseError, RegistryError, RenewLeaseError};
use crate::registry::{Lease, LeaseSnapshot, Registry};

/// How many times a chosen subnet may be lost to another host before
/// acquisition gives up. Each loss means a host created a lease between our
/// listing and our creation, so reaching this takes heavy, sustained
/// contention.
const MAX_ATTEMPTS: u32 = 100;

/// Acquiring a lease failed.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    /// Every leasable subnet of one family is taken.
    #[error(
        "no free {family} subnet: all {total} subnets from {min} to {max} of {network} are taken \
         ({taken} in use); free a lease or widen SubnetMin/SubnetMax"
    )]
    Exhausted {
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// The overlay network.
        network: String,
        /// The first leasable subnet.
        min: String,
        /// The last leasable subnet.
        max: String,
        /// How many subnets the range holds.
        total: u128,
        /// How many of them are taken.
        taken: u128,
    },
    /// The config enables IPv6 but this host has no public IPv6 address.
    #[error("the network config enables IPv6 ({network}) but no public IPv6 address is set")]
    MissingPublicIpv6 {
        /// The IPv6 overlay network.
        network: String,
    },
    /// Other hosts kept taking the chosen subnets first.
    #[error(
        "gave up after {attempts} attempts: each chosen subnet was taken by another host first"
    )]
    Contended {
        /// How many subnets were tried.
        attempts: u32,
    },
    /// The store failed.
    #[error("acquiring a lease: {0}")]
    Registry(#[from] RegistryError),
}

impl AcquireError {
    /// Returns whether trying again later may succeed: true for store
    /// failures and contention, false for a full range or a missing address.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Registry(_) | Self::Contended { .. })
    }
}

/// The claim one attempt decided on.
enum Claim {
    /// Rewrite this host's existing lease or reservation.
    Own(Lease),
    /// Create a lease for a free key.
    Create(LeaseKey),
}

pub(super) async fn acquire<R: Registry, C: Clock>(
    manager: &LeaseManager<R, C>,
    config: &NetworkConfig,
    previous: Option<LeaseKey>,
) -> Result<Lease, AcquireError> {
    let settings = &manager.shared.config;
    if let (Some(range), None) = (&config.ipv6, settings.public_ipv6) {
        return Err(AcquireError::MissingPublicIpv6 {
            network: range.network().to_string(),
        });
    }
    let registry = &manager.shared.registry;
    let attrs = settings.attrs();
    let mut previous = previous.filter(|key| fits(config, key));

    for _ in 0..MAX_ATTEMPTS {
        let snapshot = registry.leases().await?;
        for invalid in &snapshot.invalid {
            tracing::warn!(error = %invalid, "invalid entry in the lease store");
        }

        let claim = match own_lease(manager, config, &snapshot) {
            Some(lease) => Claim::Own(lease),
            None => match previous.filter(|key| !is_taken(&snapshot, key)) {
                Some(key) => Claim::Create(key),
                None => Claim::Create(random_free_key(manager, config, &snapshot)?),
            },
        };

        match claim {
            Claim::Own(lease) => match registry
                .renew_lease(&lease, &attrs, settings.lease_ttl)
                .await
            {
                Ok(lease) => {
                    tracing::info!(lease = %lease.key, reservation = lease.is_reservation(), "reusing this host's lease");
                    return Ok(lease);
                }
                Err(RenewLeaseError::Changed { key, .. }) => {
                    tracing::debug!(lease = %key, "own lease changed while reusing it; listing again");
                }
                Err(RenewLeaseError::Registry { source, .. }) => return Err(source.into()),
            },
            Claim::Create(key) => match registry
                .create_lease(&key, &attrs, settings.lease_ttl)
                .await
            {
                Ok(lease) => {
                    tracing::info!(lease = %lease.key, "lease acquired");
                    return Ok(lease);
                }
                Err(CreateLeaseError::Taken { key }) => {
                    tracing::debug!(lease = %key, "subnet taken by another host first; choosing again");
                    if previous == Some(key) {
                        previous = None;
                    }
                }
                Err(CreateLeaseError::Registry { source, .. }) => return Err(source.into()),
            },
        }
    }
    Err(AcquireError::Contended {
        attempts: MAX_ATTEMPTS,
    })
}

/// Returns whether `key` leases exactly the families `config` enables, each
/// from its range.
fn fits(config: &NetworkConfig, key: &LeaseKey) -> bool {
    fn family_fits<N: Cidr>(range: &Option<SubnetRange<N>>, subnet: &Option<N>) -> bool {
        match (range, subnet) {
            (Some(range), Some(subnet)) => range.contains(subnet),
            (None, None) => true,
            _ => false,
        }
    }
    family_fits(&config.ipv4, &key.ipv4) && family_fits(&config.ipv6, &key.ipv6)
}

/// Finds this host's lease or reservation that fits the config, preferring
/// a reservation.
fn own_lease<R: Registry, C: Clock>(
    manager: &LeaseManager<R, C>,
    config: &NetworkConfig,
    snapshot: &LeaseSnapshot,
) -> Option<Lease> {
    let settings = &manager.shared.config;
    let is_own =
        |lease: &&Lease| is_same_host(settings, config, &lease.attrs) && fits(config, &lease.key);
    let mut own = snapshot.leases.iter().filter(is_own);
    let first = own.clone().next()?;
    Some(
        own.find(|lease| lease.is_reservation())
            .unwrap_or(first)
            .clone(),
    )
}

/// Returns whether `attrs` name this host: by `PublicIP`, or by
/// `PublicIPv6` on an IPv6-only network.
pub(super) fn is_same_host(
    settings: &ManagerConfig,
    config: &NetworkConfig,
    attrs: &LeaseAttrs,
) -> bool {
    if config.ipv4.is_some() {
        attrs.public_ip == settings.public_ip
    } else {
        attrs.public_ipv6.is_some() && attrs.public_ipv6 == settings.public_ipv6
    }
}

/// Returns whether a lease or an invalid entry overlaps a subnet of `key`.
fn is_taken(snapshot: &LeaseSnapshot, key: &LeaseKey) -> bool {
    let overlaps = |other: &LeaseKey| {
        let ipv4 = matches!((key.ipv4, other.ipv4), (Some(a), Some(b)) if a.overlaps(&b));
        let ipv6 = matches!((key.ipv6, other.ipv6), (Some(a), Some(b)) if a.overlaps(&b));
        ipv4 || ipv6
    };
    all_keys(snapshot).any(|other| overlaps(&other))
}

/// Iterates over every key in the snapshot that occupies subnets.
fn all_keys(snapshot: &LeaseSnapshot) -> impl Iterator<Item = LeaseKey> + '_ {
    let leases = snapshot.leases.iter().map(|lease| lease.key);
    leases.chain(snapshot.invalid.iter().filter_map(|invalid| invalid.key()))
}

/// Picks a free subnet of each enabled family, starting the search at a
/// random index so that hosts starting together rarely collide.
fn random_free_key<R: Registry, C: Clock>(
    manager: &LeaseManager<R, C>,
    config: &NetworkConfig,
    snapshot: &LeaseSnapshot,
) -> Result<LeaseKey, AcquireError> {
    let ipv4 = match config.ipv4 {
        Some(range) => Some(pick(manager, range, snapshot, |key| key.ipv4, "IPv4")?),
        None => None,
    };
    let ipv6 = match config.ipv6 {
        Some(range) => Some(pick(manager, range, snapshot, |key| key.ipv6, "IPv6")?),
        None => None,
    };
    Ok(LeaseKey { ipv4, ipv6 })
}

/// Picks a free subnet of one family, whose subnet `subnet_of` takes from
/// each key.
fn pick<R: Registry, C: Clock, N: Cidr>(
    manager: &LeaseManager<R, C>,
    range: SubnetRange<N>,
    snapshot: &LeaseSnapshot,
    subnet_of: impl Fn(LeaseKey) -> Option<N>,
    family: &'static str,
) -> Result<N, AcquireError> {
    let taken = TakenIndices::new(range, all_keys(snapshot).filter_map(subnet_of));
    let start = manager.random_below(range.len());
    let exhausted = || AcquireError::Exhausted {
        family,
        network: range.network().to_string(),
        min: range.min().to_string(),
        max: range.max().to_string(),
        total: range.len(),
        taken: taken.taken(),
    };
    let index = taken.first_free_from(start).ok_or_else(exhausted)?;
    range.subnet(index).ok_or_else(exhausted)
}
