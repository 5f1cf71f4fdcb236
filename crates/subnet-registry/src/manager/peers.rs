//! The other hosts' leases, as a stream of changes for the backend.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use subnet_core::lease::LeaseKey;

use crate::error::RegistryError;
use crate::registry::{Lease, LeaseSnapshot, LeaseWatch, Registry, RegistryEvent};

/// A change to the set of peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// A peer appeared, or its attributes (such as `PublicIP` or the VTEP
    /// MAC) changed: install or replace its routes.
    Added(Lease),
    /// A peer's lease was deleted or expired: remove its routes.
    Removed(Lease),
}

/// A stream of [`PeerEvent`]s: first one `Added` per current peer, then
/// every change. Renewals that change only the expiry are left out. It
/// never ends.
pub struct PeerWatch {
    watch: LeaseWatch,
    own: Option<LeaseKey>,
    peers: HashMap<LeaseKey, Lease>,
    pending: VecDeque<PeerEvent>,
}

impl std::fmt::Debug for PeerWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerWatch")
            .field("own", &self.own)
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

pub(super) async fn watch_peers<R: Registry>(
    registry: &R,
    own: Option<LeaseKey>,
) -> Result<PeerWatch, RegistryError> {
    let snapshot = registry.leases().await?;
    let watch = registry.watch_leases(snapshot.revision).await?;
    let mut peers = PeerWatch {
        watch,
        own,
        peers: HashMap::new(),
        pending: VecDeque::new(),
    };
    peers.apply_snapshot(snapshot);
    Ok(peers)
}

impl PeerWatch {
    /// Returns the peers known now, by key.
    pub fn peers(&self) -> &HashMap<LeaseKey, Lease> {
        &self.peers
    }

    /// Changes this host's own key, such as after its subnet changed. A
    /// peer entry with that key is reported removed.
    pub fn set_own(&mut self, own: Option<LeaseKey>) {
        self.own = own;
        if let Some(lease) = own.and_then(|key| self.peers.remove(&key)) {
            self.pending.push_back(PeerEvent::Removed(lease));
        }
    }

    fn apply(&mut self, event: RegistryEvent) {
        match event {
            RegistryEvent::Added(lease) => self.upsert(lease),
            RegistryEvent::Removed { key, .. } | RegistryEvent::Expired { key, .. } => {
                if let Some(lease) = self.peers.remove(&key) {
                    tracing::info!(peer = %key, public_ip = %lease.attrs.public_ip, "peer removed");
                    self.pending.push_back(PeerEvent::Removed(lease));
                }
            }
            RegistryEvent::Invalid(invalid) => {
                tracing::warn!(error = %invalid, "invalid entry in the lease store");
            }
            RegistryEvent::Resync(snapshot) => self.apply_snapshot(snapshot),
        }
    }

    /// Replaces the known peers with the snapshot's, reporting the
    /// differences.
    fn apply_snapshot(&mut self, snapshot: LeaseSnapshot) {
        for invalid in &snapshot.invalid {
            tracing::warn!(error = %invalid, "invalid entry in the lease store");
        }
        let current: HashMap<LeaseKey, Lease> = snapshot
            .leases
            .into_iter()
            .map(|lease| (lease.key, lease))
            .collect();

        let mut gone: Vec<LeaseKey> = self
            .peers
            .keys()
            .filter(|key| !current.contains_key(key))
            .copied()
            .collect();
        gone.sort_unstable();
        for key in gone {
            if let Some(lease) = self.peers.remove(&key) {
                tracing::info!(peer = %key, "peer removed");
                self.pending.push_back(PeerEvent::Removed(lease));
            }
        }

        let mut leases: Vec<Lease> = current.into_values().collect();
        leases.sort_unstable_by_key(|lease| lease.key);
        for lease in leases {
            self.upsert(lease);
        }
    }

    fn upsert(&mut self, lease: Lease) {
        if Some(lease.key) == self.own {
            return;
        }
        let unchanged = self
            .peers
            .get(&lease.key)
            .is_some_and(|known| known.attrs == lease.attrs);
        let key = lease.key;
        if !unchanged {
            tracing::info!(peer = %key, public_ip = %lease.attrs.public_ip, "peer added");
            self.pending.push_back(PeerEvent::Added(lease.clone()));
        }
        self.peers.insert(key, lease);
    }
}

impl Stream for PeerWatch {
    type Item = PeerEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PeerEvent>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Poll::Ready(Some(event));
            }
            match self.watch.as_mut().poll_next(cx) {
                Poll::Ready(Some(event)) => self.apply(event),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
