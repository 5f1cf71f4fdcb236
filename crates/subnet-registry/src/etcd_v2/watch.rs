//! Watches on the etcd v2 keys API: long-poll GETs with `wait=true`, each
//! returning one event at or after `waitIndex`. They reconnect with backoff,
//! resume after the last index seen, and re-list when etcd has dropped that
//! part of its history.

use std::collections::VecDeque;
use std::time::Duration;

use futures::StreamExt;

use super::client::Polled;
use super::node::{key_url, unexpected, ActionReply, Outcome};
use super::EtcdV2Registry;
use crate::backoff::Backoff;
use crate::error::RegistryError;
use crate::registry::{LeaseWatch, Registry, RegistryEvent, Revision};

/// Waits until `key` changes after index `after`. Also returns when etcd has
/// dropped that part of its history or ended the watch, so the caller must
/// re-read.
pub(super) async fn wait_key_change(
    registry: &EtcdV2Registry,
    key: String,
    mut after: Revision,
) -> Result<(), RegistryError> {
    loop {
        let url = format!("{}?wait=true&waitIndex={}", key_url(&key), after + 1);
        let reply = match registry
            .client
            .long_poll("watch", &key, &url, registry.poll_timeout)
            .await?
        {
            Polled::Response(reply) => reply,
            Polled::Quiet { index } => {
                after = after.max(index.unwrap_or(after));
                continue;
            }
        };
        if reply.body.is_empty() {
            return Ok(());
        }
        return match Outcome::parse(&reply, "watch", &key)? {
            Outcome::Done(_) => Ok(()),
            Outcome::Failed(status, error) if error.is_index_cleared(status) => Ok(()),
            Outcome::Failed(status, error) => Err(unexpected("watch", &key, status, &error)),
        };
    }
}

struct WatchState {
    registry: EtcdV2Registry,
    /// `<prefix>/subnets`.
    dir: String,
    /// The last index whose events were all delivered.
    after: Revision,
    pending: VecDeque<RegistryEvent>,
    backoff: Backoff,
}

/// Streams lease events after index `after`, forever.
pub(super) fn lease_watch(registry: EtcdV2Registry, after: Revision) -> LeaseWatch {
    let state = WatchState {
        dir: registry.subnets_dir(),
        registry,
        after,
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
    /// Sends one long poll and queues the event it returns. Failures are
    /// logged and retried after a backoff delay.
    async fn step(&mut self) {
        let url = format!(
            "{}?wait=true&recursive=true&waitIndex={}",
            key_url(&self.dir),
            self.after + 1
        );
        let polled = self
            .registry
            .client
            .long_poll("watch", &self.dir, &url, self.registry.poll_timeout)
            .await;
        let reply = match polled {
            Ok(Polled::Response(reply)) => reply,
            Ok(Polled::Quiet { index }) => {
                // Nothing changed under the directory up to `index`, so the
                // next poll can start there and stay inside etcd's history.
                self.after = self.after.max(index.unwrap_or(self.after));
                return;
            }
            Err(error) => {
                self.pause(&error, "lease watch failed; reconnecting").await;
                return;
            }
        };

        if reply.body.is_empty() {
            let error = RegistryError::UnexpectedResponse {
                operation: "watch",
                key: self.dir.clone(),
                detail: "etcd ended the watch without an event".to_owned(),
            };
            self.pause(&error, "lease watch closed by etcd; reconnecting")
                .await;
            return;
        }
        self.backoff.reset();

        match Outcome::parse(&reply, "watch", &self.dir) {
            Ok(Outcome::Done(done)) => self.on_event(done).await,
            Ok(Outcome::Failed(status, error)) if error.is_index_cleared(status) => {
                tracing::info!(
                    prefix = %self.dir,
                    resume_after = self.after,
                    current = reply.index,
                    "lease history cleared by etcd; listing leases again"
                );
                self.resync().await;
            }
            Ok(Outcome::Failed(status, error)) => {
                let error = unexpected("watch", &self.dir, status, &error);
                self.pause(&error, "lease watch rejected; retrying").await;
            }
            // The event cannot be read, so where to resume is unknown.
            Err(error) => {
                tracing::warn!(%error, "unreadable lease event; listing leases again");
                self.resync().await;
            }
        }
    }

    /// Queues the event of one watch response.
    async fn on_event(&mut self, done: ActionReply) {
        let node = done.node;
        let revision = node.modified_index;

        // A change to a directory (such as removing the whole subnets
        // directory) may affect any number of leases.
        if node.dir || node.key == self.dir {
            tracing::info!(key = %node.key, action = %done.action, "subnets directory changed; listing leases again");
            self.resync().await;
            return;
        }

        let event = match done.action.as_str() {
            "set" | "create" | "update" | "compareAndSwap" => {
                Some(match self.registry.decode(&node) {
                    Ok(lease) => RegistryEvent::Added(lease),
                    Err(invalid) => RegistryEvent::Invalid(invalid),
                })
            }
            "delete" | "compareAndDelete" => self
                .registry
                .lease_key_of(&node.key)
                .map(|key| RegistryEvent::Removed { key, revision }),
            "expire" => self
                .registry
                .lease_key_of(&node.key)
                .map(|key| RegistryEvent::Expired { key, revision }),
            other => {
                tracing::debug!(action = other, key = %node.key, "skipping etcd event");
                None
            }
        };
        self.pending.extend(event);
        self.after = self.after.max(revision);
    }

    /// Lists the leases again and queues them as a resync. On failure the
    /// next step polls the same index again, which reports the cleared
    /// history again.
    async fn resync(&mut self) {
        match self.registry.leases().await {
            Ok(snapshot) => {
                self.after = snapshot.revision;
                self.pending.push_back(RegistryEvent::Resync(snapshot));
            }
            Err(error) => {
                self.pause(&error, "listing leases for a resync failed")
                    .await;
            }
        }
    }

    async fn pause(&mut self, error: &RegistryError, message: &'static str) {
        let delay = self.backoff.next_delay();
        tracing::warn!(
            %error, prefix = %self.dir, resume_after = self.after, retry_in = ?delay,
            "{message}"
        );
        tokio::time::sleep(delay).await;
    }
}
