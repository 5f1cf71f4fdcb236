//! Watches on etcd that survive disconnects: they reconnect with backoff,
//! resume after the last revision seen, and re-list after a compaction.

use std::collections::VecDeque;
use std::time::Duration;

use etcd_client::{EventType, WatchOptions, WatchStream};
use futures::StreamExt;

use super::EtcdRegistry;
use crate::backoff::Backoff;
use crate::error::RegistryError;
use crate::registry::{Expiry, LeaseWatch, Registry, RegistryEvent, Revision};

/// Waits until `key` changes after revision `after`. Also returns when the
/// history was compacted or the stream ended, so the caller must re-read.
pub(super) async fn wait_key_change(
    registry: &EtcdRegistry,
    key: String,
    after: Revision,
) -> Result<(), RegistryError> {
    let options = WatchOptions::new().with_start_revision(after + 1);
    let mut stream = registry
        .connection
        .call("watch", &key, |client| {
            let (key, options) = (key.clone(), options.clone());
            async move { client.watch_client().watch(key, Some(options)).await }
        })
        .await?;
    loop {
        match stream.message().await {
            Ok(Some(response)) if response.canceled() || !response.events().is_empty() => {
                return Ok(())
            }
            Ok(Some(_)) => {}
            Ok(None) => return Ok(()),
            Err(source) => {
                return Err(RegistryError::Etcd {
                    operation: "watch",
                    key,
                    source,
                })
            }
        }
    }
}

struct WatchState {
    registry: EtcdRegistry,
    prefix: String,
    /// The last revision whose events were all delivered.
    after: Revision,
    stream: Option<WatchStream>,
    pending: VecDeque<RegistryEvent>,
    backoff: Backoff,
}

/// Streams lease events after revision `after`, forever.
pub(super) fn lease_watch(registry: EtcdRegistry, after: Revision) -> LeaseWatch {
    let state = WatchState {
        prefix: registry.subnets_prefix(),
        registry,
        after,
        stream: None,
        pending: VecDeque::new(),
        backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
    };
    futures::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(event) = state.pending.pop_front() {
                return Some((event, state));
            }
            state.step().await;
        }
    })
    .boxed()
}

impl WatchState {
    /// Opens the watch if needed and handles one response, queueing its
    /// events. Failures are logged and retried after a backoff delay.
    async fn step(&mut self) {
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => match self.open().await {
                Ok(stream) => self.stream.insert(stream),
                Err(error) => {
                    let delay = self.backoff.next_delay();
                    tracing::warn!(%error, retry_in = ?delay, "lease watch failed to open");
                    tokio::time::sleep(delay).await;
                    return;
                }
            },
        };

        let response = match stream.message().await {
            Ok(Some(response)) => response,
            outcome => {
                self.stream = None;
                let delay = self.backoff.next_delay();
                match outcome {
                    Err(error) => tracing::warn!(
                        %error, prefix = %self.prefix, resume_after = self.after, retry_in = ?delay,
                        "lease watch broke; reconnecting"
                    ),
                    _ => tracing::warn!(
                        prefix = %self.prefix, resume_after = self.after, retry_in = ?delay,
                        "lease watch closed by etcd; reconnecting"
                    ),
                }
                tokio::time::sleep(delay).await;
                return;
            }
        };
        self.backoff.reset();

        if response.canceled() {
            self.stream = None;
            if response.compact_revision() > 0 {
                tracing::info!(
                    prefix = %self.prefix,
                    resume_after = self.after,
                    compacted_at = response.compact_revision(),
                    "lease history compacted; listing leases again"
                );
                self.resync().await;
            } else {
                tracing::warn!(
                    reason = response.cancel_reason(),
                    prefix = %self.prefix,
                    "lease watch cancelled by etcd; reconnecting"
                );
            }
            return;
        }

        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let revision = kv.mod_revision();
            match event.event_type() {
                EventType::Put => {
                    let expiry = if kv.lease() == 0 {
                        Expiry::Never
                    } else {
                        Expiry::Unknown
                    };
                    self.pending
                        .push_back(match self.registry.decode(kv, expiry) {
                            Ok(lease) => RegistryEvent::Added(lease),
                            Err(invalid) => RegistryEvent::Invalid(invalid),
                        });
                }
                EventType::Delete => {
                    let name = &kv.key()[self.prefix.len().min(kv.key().len())..];
                    let Some(key) = std::str::from_utf8(name).ok().and_then(|n| n.parse().ok())
                    else {
                        continue;
                    };
                    let expired = match event.prev_kv().map(|prev| prev.lease()) {
                        Some(id) if id != 0 => self.lease_gone(id).await,
                        _ => false,
                    };
                    self.pending.push_back(if expired {
                        RegistryEvent::Expired { key, revision }
                    } else {
                        RegistryEvent::Removed { key, revision }
                    });
                }
            }
            self.after = self.after.max(revision);
        }
    }

    async fn open(&self) -> Result<WatchStream, RegistryError> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_start_revision(self.after + 1);
        self.registry
            .connection
            .call("watch", &self.prefix, |client| {
                let (prefix, options) = (self.prefix.clone(), options.clone());
                async move { client.watch_client().watch(prefix, Some(options)).await }
            })
            .await
    }

    /// Lists the leases again and queues them as a resync. On failure the
    /// next step reopens the watch at the same revision, which reports the
    /// compaction again.
    async fn resync(&mut self) {
        match self.registry.leases().await {
            Ok(snapshot) => {
                self.after = snapshot.revision;
                self.pending.push_back(RegistryEvent::Resync(snapshot));
            }
            Err(error) => {
                let delay = self.backoff.next_delay();
                tracing::warn!(%error, retry_in = ?delay, "listing leases for a resync failed");
                tokio::time::sleep(delay).await;
            }
        }
    }

    /// Returns whether etcd lease `id` no longer exists, which separates an
    /// expiry from a deletion. When the lookup fails, the deletion is
    /// reported as a removal.
    async fn lease_gone(&self, id: i64) -> bool {
        match self.registry.time_to_live(&self.prefix, id).await {
            Ok(left) => left.is_none(),
            Err(error) => {
                tracing::debug!(%error, lease_id = id, "could not tell expiry from deletion");
                false
            }
        }
    }
}
