//! Keeping this host's lease alive: renewal before expiry, and a new lease
//! when the old one vanishes.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use futures::{Stream, StreamExt};
use subnet_core::lease::LeaseKey;
use subnet_core::NetworkConfig;

use super::acquire::{acquire, is_same_host};
use super::LeaseManager;
use crate::backoff::Backoff;
use crate::clock::Clock;
use crate::error::RenewLeaseError;
use crate::registry::{Expiry, Lease, LeaseWatch, Registry, RegistryEvent};

/// A change to this host's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEvent {
    /// The lease was renewed; it keeps its subnet.
    Renewed(Lease),
    /// The lease vanished (deleted or expired) and was created again with
    /// the same subnet.
    Recreated(Lease),
    /// The lease vanished and its subnet was taken, so this host now has
    /// another subnet: reconfigure everything that used the old one.
    Changed {
        /// The key of the lost lease.
        previous: LeaseKey,
        /// The new lease.
        lease: Lease,
    },
}

/// A stream of [`LeaseEvent`]s that keeps one lease alive while polled.
/// It never ends; store failures are logged and retried with backoff.
pub struct LeaseKeeper {
    inner: Pin<Box<dyn Stream<Item = LeaseEvent> + Send>>,
}

impl std::fmt::Debug for LeaseKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseKeeper").finish_non_exhaustive()
    }
}

impl Stream for LeaseKeeper {
    type Item = LeaseEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LeaseEvent>> {
        self.inner.as_mut().poll_next(cx)
    }
}

struct Keeper<R, C> {
    manager: LeaseManager<R, C>,
    config: NetworkConfig,
    lease: Lease,
    watch: Option<LeaseWatch>,
    /// Set when the lease is gone and a replacement is still to be made.
    lost: Option<Lost>,
    backoff: Backoff,
}

/// When the lease is due for renewal.
enum RenewAt {
    Time(SystemTime),
    /// A reservation, which is never renewed.
    Never,
    /// Not known yet: the step starts over.
    Unknown,
}

/// The reason the lease needs replacing.
#[derive(Debug, Clone, Copy)]
enum Lost {
    /// Deleted or expired: its subnet may still be free.
    Vanished,
    /// Rewritten by another host: its subnet is not ours any more.
    Taken,
}

pub(super) fn keep_renewed<R: Registry, C: Clock>(
    manager: LeaseManager<R, C>,
    config: NetworkConfig,
    lease: Lease,
) -> LeaseKeeper {
    let backoff = manager.backoff();
    let keeper = Keeper {
        manager,
        config,
        lease,
        watch: None,
        lost: None,
        backoff,
    };
    let stream = futures::stream::unfold(keeper, |mut keeper| async move {
        let event = keeper.next_event().await;
        Some((event, keeper))
    });
    LeaseKeeper {
        inner: stream.boxed(),
    }
}

impl<R: Registry, C: Clock> Keeper<R, C> {
    async fn next_event(&mut self) -> LeaseEvent {
        loop {
            if let Some(lost) = self.lost.take() {
                match self.replace(lost).await {
                    Some(event) => return event,
                    None => {
                        self.lost = Some(lost);
                        continue;
                    }
                }
            }
            match self.step().await {
                Ok(Some(event)) => {
                    self.backoff.reset();
                    return event;
                }
                Ok(None) => {}
                Err(lost) => self.lost = Some(lost),
            }
        }
    }

    /// Waits for the renewal time or a change to the lease, whichever comes
    /// first, and handles it.
    async fn step(&mut self) -> Result<Option<LeaseEvent>, Lost> {
        if self.watch.is_none() {
            match self
                .manager
                .registry()
                .watch_leases(self.lease.mod_revision)
                .await
            {
                Ok(watch) => self.watch = Some(watch),
                Err(error) => {
                    self.pause(&error, "watching this host's lease failed")
                        .await;
                    return Ok(None);
                }
            }
        }

        let deadline = match self.renew_deadline().await? {
            RenewAt::Time(time) => Some(time),
            RenewAt::Never => None,
            RenewAt::Unknown => return Ok(None),
        };
        let clock = self.manager.shared.clock.clone();
        let renewal_due = async {
            match deadline {
                Some(time) => clock.sleep_until(time).await,
                None => std::future::pending().await,
            }
        };
        let watch = self.watch.as_mut().expect("watch opened above");

        tokio::select! {
            () = renewal_due => self.renew().await,
            event = watch.next() => match event {
                Some(event) => self.on_event(event).map(|()| None),
                None => {
                    self.watch = None;
                    Ok(None)
                }
            },
        }
    }

    /// Computes when to renew. An unknown expiry, as on a lease adopted
    /// from a watch event, is read from the store first.
    async fn renew_deadline(&mut self) -> Result<RenewAt, Lost> {
        let margin = self.manager.shared.config.renew_margin;
        match self.lease.expiry {
            Expiry::Never => Ok(RenewAt::Never),
            Expiry::At(time) => Ok(RenewAt::Time(
                time.checked_sub(margin).unwrap_or(SystemTime::UNIX_EPOCH),
            )),
            Expiry::Unknown => match self.manager.registry().lease(&self.lease.key).await {
                Ok(Some(current)) if current.mod_revision == self.lease.mod_revision => {
                    self.lease.expiry = current.expiry;
                    Ok(RenewAt::Unknown)
                }
                Ok(_) => Err(Lost::Vanished),
                Err(error) => {
                    self.pause(&error, "reading this host's lease failed").await;
                    Ok(RenewAt::Unknown)
                }
            },
        }
    }

    async fn renew(&mut self) -> Result<Option<LeaseEvent>, Lost> {
        let settings = &self.manager.shared.config;
        let result = self
            .manager
            .registry()
            .renew_lease(&self.lease, &settings.attrs(), settings.lease_ttl)
            .await;
        match result {
            Ok(lease) => {
                tracing::info!(lease = %lease.key, expiry = ?lease.expiry, "lease renewed");
                self.lease = lease.clone();
                Ok(Some(LeaseEvent::Renewed(lease)))
            }
            Err(RenewLeaseError::Changed { .. }) => Err(Lost::Vanished),
            Err(error) => {
                self.pause(&error, "renewing the lease failed").await;
                Ok(None)
            }
        }
    }

    /// Checks a store change for one that takes this host's lease away.
    fn on_event(&mut self, event: RegistryEvent) -> Result<(), Lost> {
        let own = self.lease.key;
        match event {
            RegistryEvent::Removed { key, revision } | RegistryEvent::Expired { key, revision }
                if key == own && revision > self.lease.mod_revision =>
            {
                tracing::warn!(lease = %own, "this host's lease vanished from the store");
                Err(Lost::Vanished)
            }
            RegistryEvent::Added(lease)
                if lease.key == own && lease.mod_revision > self.lease.mod_revision =>
            {
                self.on_rewrite(lease)
            }
            RegistryEvent::Invalid(invalid) if invalid.key() == Some(own) => {
                tracing::warn!(error = %invalid, "this host's lease was overwritten with invalid data");
                Err(Lost::Taken)
            }
            RegistryEvent::Resync(snapshot) => {
                match snapshot.leases.into_iter().find(|lease| lease.key == own) {
                    Some(lease) if lease.mod_revision == self.lease.mod_revision => Ok(()),
                    Some(lease) => self.on_rewrite(lease),
                    None => {
                        tracing::warn!(lease = %own, "this host's lease is missing after a resync");
                        Err(Lost::Vanished)
                    }
                }
            }
            _ => Ok(()),
        }
    }

    /// Someone else wrote this host's key: keep it if it still names this
    /// host, else give it up.
    fn on_rewrite(&mut self, lease: Lease) -> Result<(), Lost> {
        if is_same_host(&self.manager.shared.config, &self.config, &lease.attrs) {
            tracing::info!(lease = %lease.key, "this host's lease was rewritten; adopting it");
            self.lease = lease;
            Ok(())
        } else {
            tracing::warn!(
                lease = %lease.key,
                public_ip = %lease.attrs.public_ip,
                "this host's subnet now belongs to another host"
            );
            Err(Lost::Taken)
        }
    }

    /// Acquires a lease to replace the lost one, preferring the same subnet
    /// when it vanished. Returns `None` after a failure, which is logged and
    /// waited out.
    async fn replace(&mut self, lost: Lost) -> Option<LeaseEvent> {
        let previous = self.lease.key;
        let preferred = match lost {
            Lost::Vanished => Some(previous),
            Lost::Taken => None,
        };
        self.watch = None;
        match acquire(&self.manager, &self.config, preferred).await {
            Ok(lease) => {
                self.lease = lease.clone();
                if lease.key == previous {
                    tracing::info!(lease = %lease.key, "lease created again");
                    Some(LeaseEvent::Recreated(lease))
                } else {
                    tracing::warn!(previous = %previous, lease = %lease.key, "this host's subnet changed");
                    Some(LeaseEvent::Changed { previous, lease })
                }
            }
            Err(error) => {
                self.pause(&error, "acquiring a new lease failed").await;
                None
            }
        }
    }

    async fn pause(&mut self, error: &(dyn std::error::Error + Send + Sync), what: &'static str) {
        let delay = self.backoff.next_delay();
        tracing::warn!(%error, lease = %self.lease.key, retry_in = ?delay, "{what}; retrying");
        tokio::time::sleep(delay).await;
    }
}
