//! A registry kept in process memory, with the same semantics as the etcd
//! one: revisions, compare-and-set creation, expiry by the given clock,
//! watches with a bounded history and resynchronisation after compaction.
//!
//! It serves single-process tools, simulations and fast tests. Nothing is
//! persisted.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use subnet_core::lease::{LeaseAttrs, LeaseKey};
use tokio::sync::watch;

use crate::clock::{Clock, SystemClock};
use crate::error::{CreateLeaseError, DeleteLeaseError, RegistryError, RenewLeaseError};
use crate::registry::{
    decode_lease, ConfigValue, Expiry, InvalidLease, Lease, LeaseReadError, LeaseSnapshot,
    LeaseWatch, Registry, RegistryEvent, Revision,
};
use crate::DEFAULT_PREFIX;

/// How many changes a watch can fall behind by before it has to resync.
pub const DEFAULT_HISTORY: usize = 10_000;

/// An in-memory registry. Clones share the same store.
#[derive(Debug, Clone)]
pub struct MemoryRegistry<C: Clock = SystemClock> {
    shared: Arc<Shared<C>>,
}

#[derive(Debug)]
struct Shared<C> {
    clock: C,
    prefix: String,
    state: Mutex<State>,
    /// Carries the latest revision; every change sends on it.
    changes: watch::Sender<Revision>,
}

#[derive(Debug)]
struct Entry {
    /// The value decoded when written, so that listings copy and never
    /// parse.
    decoded: Result<Lease, InvalidLease>,
    /// `None` for a reservation.
    expiry: Option<SystemTime>,
    mod_revision: Revision,
}

#[derive(Debug)]
struct State {
    /// Subnet keys are written below `<prefix>/subnets/`.
    prefix: String,
    revision: Revision,
    config: Option<String>,
    config_revision: Revision,
    entries: BTreeMap<String, Entry>,
    /// Entries with an expiry, ordered by it.
    expiries: BTreeSet<(SystemTime, String)>,
    /// Recent changes, oldest first, for watches to catch up from. Deletions
    /// of keys that are not lease keys have no event.
    history: VecDeque<(Revision, Option<RegistryEvent>)>,
    /// Changes at or below this revision are no longer in `history`.
    compacted: Revision,
    history_limit: usize,
}

impl MemoryRegistry<SystemClock> {
    /// Creates an empty registry on the system clock.
    pub fn new() -> Self {
        Self::with_clock(SystemClock)
    }
}

impl Default for MemoryRegistry<SystemClock> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Clock> MemoryRegistry<C> {
    /// Creates an empty registry whose leases expire by `clock`.
    pub fn with_clock(clock: C) -> Self {
        Self {
            shared: Arc::new(Shared {
                clock,
                prefix: DEFAULT_PREFIX.to_owned(),
                state: Mutex::new(State {
                    prefix: DEFAULT_PREFIX.to_owned(),
                    revision: 1,
                    config: None,
                    config_revision: 0,
                    entries: BTreeMap::new(),
                    expiries: BTreeSet::new(),
                    history: VecDeque::new(),
                    compacted: 0,
                    history_limit: DEFAULT_HISTORY,
                }),
                changes: watch::Sender::new(1),
            }),
        }
    }

    /// Sets how many changes are kept for watches; older ones are compacted.
    pub fn set_history_limit(&self, limit: usize) {
        let mut state = self.lock();
        state.history_limit = limit;
        state.trim_history();
    }

    /// Stores `text` as the network config, as an operator does with
    /// `etcdctl put <prefix>/config`.
    pub fn put_config(&self, text: &str) {
        let mut state = self.lock();
        state.revision += 1;
        state.config = Some(text.to_owned());
        state.config_revision = state.revision;
        self.publish(state);
    }

    /// Deletes the network config.
    pub fn delete_config(&self) {
        let mut state = self.lock();
        state.revision += 1;
        state.config = None;
        state.config_revision = state.revision;
        self.publish(state);
    }

    /// Writes any value under `<prefix>/subnets/<name>`, as an operator does
    /// with `etcdctl put`: `ttl` `None` makes a reservation. It overwrites
    /// an existing entry.
    pub fn put_raw(&self, name: &str, value: &[u8], ttl: Option<Duration>) {
        let now = self.shared.clock.now();
        let mut state = self.lock();
        state.expire(now);
        state.put(name, value.to_vec(), ttl.map(|ttl| now + ttl));
        self.publish(state);
    }

    /// Deletes `<prefix>/subnets/<name>` whatever it holds. Returns whether
    /// it existed.
    pub fn delete_raw(&self, name: &str) -> bool {
        let mut state = self.lock();
        let existed = state.remove(name, false);
        self.publish(state);
        existed
    }

    /// Drops the change history up to and including `revision`: watches
    /// that have not seen those changes resync.
    pub fn compact(&self, revision: Revision) {
        let mut state = self.lock();
        while state
            .history
            .front()
            .is_some_and(|(change_revision, _)| *change_revision <= revision)
        {
            state.history.pop_front();
        }
        state.compacted = state.compacted.max(revision.min(state.revision));
    }

    /// Returns the current store revision.
    pub fn revision(&self) -> Revision {
        self.lock().revision
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves no half-made change behind:
        // every mutation finishes before it can panic.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish(&self, state: MutexGuard<'_, State>) {
        let revision = state.revision;
        drop(state);
        self.shared.changes.send_replace(revision);
    }

    fn snapshot(state: &State) -> LeaseSnapshot {
        let mut snapshot = LeaseSnapshot {
            revision: state.revision,
            ..LeaseSnapshot::default()
        };
        for entry in state.entries.values() {
            match &entry.decoded {
                Ok(lease) => snapshot.leases.push(lease.clone()),
                Err(invalid) => snapshot.invalid.push(invalid.clone()),
            }
        }
        snapshot
    }

    /// Applies expiries that are due, so that every read reflects the store as of now.
    fn lock_current(&self) -> MutexGuard<'_, State> {
        let now = self.shared.clock.now();
        let mut state = self.lock();
        if state.expire(now) {
            let revision = state.revision;
            self.shared.changes.send_replace(revision);
        }
        state
    }

    /// Collects the events after `after`, or a resync when they are gone.
    /// Returns the events, the revision they reach, and the next expiry.
    fn events_after(&self, after: Revision) -> (Vec<RegistryEvent>, Revision, Option<SystemTime>) {
        let state = self.lock_current();
        let next_expiry = state.expiries.first().map(|(time, _)| *time);
        if after < state.compacted {
            let snapshot = Self::snapshot(&state);
            let revision = snapshot.revision;
            return (vec![RegistryEvent::Resync(snapshot)], revision, next_expiry);
        }
        let events = state
            .history
            .iter()
            .filter(|(revision, _)| *revision > after)
            .filter_map(|(_, event)| event.clone())
            .collect();
        (events, state.revision, next_expiry)
    }
}

impl State {
    fn put(&mut self, name: &str, value: Vec<u8>, expiry: Option<SystemTime>) {
        self.revision += 1;
        if let Some(old) = self.entries.get(name) {
            if let Some(time) = old.expiry {
                self.expiries.remove(&(time, name.to_owned()));
            }
        }
        if let Some(time) = expiry {
            self.expiries.insert((time, name.to_owned()));
        }
        let path = format!("{}/subnets/{name}", self.prefix);
        let decoded = decode_lease(
            &path,
            name.as_bytes(),
            &value,
            expiry.map_or(Expiry::Never, Expiry::At),
            self.revision,
        );
        let event = match &decoded {
            Ok(lease) => RegistryEvent::Added(lease.clone()),
            Err(invalid) => RegistryEvent::Invalid(invalid.clone()),
        };
        self.entries.insert(
            name.to_owned(),
            Entry {
                decoded,
                expiry,
                mod_revision: self.revision,
            },
        );
        self.record(Some(event));
    }

    fn remove(&mut self, name: &str, expired: bool) -> bool {
        let Some(old) = self.entries.remove(name) else {
            return false;
        };
        if let Some(time) = old.expiry {
            self.expiries.remove(&(time, name.to_owned()));
        }
        self.revision += 1;
        let revision = self.revision;
        let event = name.parse::<LeaseKey>().ok().map(|key| {
            if expired {
                RegistryEvent::Expired { key, revision }
            } else {
                RegistryEvent::Removed { key, revision }
            }
        });
        self.record(event);
        true
    }

    /// Deletes every entry whose expiry is at or before `now`. Returns
    /// whether any was.
    fn expire(&mut self, now: SystemTime) -> bool {
        let mut any = false;
        while let Some((time, name)) = self.expiries.first().cloned() {
            if time > now {
                break;
            }
            self.remove(&name, true);
            any = true;
        }
        any
    }

    fn record(&mut self, event: Option<RegistryEvent>) {
        self.history.push_back((self.revision, event));
        self.trim_history();
    }

    fn trim_history(&mut self) {
        while self.history.len() > self.history_limit {
            if let Some((revision, _)) = self.history.pop_front() {
                self.compacted = self.compacted.max(revision);
            }
        }
    }

    fn mod_revision(&self, name: &str) -> Option<Revision> {
        self.entries.get(name).map(|entry| entry.mod_revision)
    }
}

impl<C: Clock> Registry for MemoryRegistry<C> {
    fn config_path(&self) -> String {
        format!("{}/config", self.shared.prefix)
    }

    async fn config(&self) -> Result<ConfigValue, RegistryError> {
        let state = self.lock();
        Ok(ConfigValue {
            text: state.config.clone(),
            revision: state.revision,
        })
    }

    async fn wait_config_change(&self, after: Revision) -> Result<(), RegistryError> {
        let mut changes = self.shared.changes.subscribe();
        loop {
            changes.borrow_and_update();
            if self.lock().config_revision > after {
                return Ok(());
            }
            // The sender lives in `self.shared`, so it cannot close here.
            let _ = changes.changed().await;
        }
    }

    async fn leases(&self) -> Result<LeaseSnapshot, RegistryError> {
        let state = self.lock_current();
        Ok(Self::snapshot(&state))
    }

    async fn lease(&self, key: &LeaseKey) -> Result<Option<Lease>, LeaseReadError> {
        let name = key.to_string();
        let state = self.lock_current();
        match state.entries.get(&name) {
            None => Ok(None),
            Some(entry) => Ok(Some(entry.decoded.clone()?)),
        }
    }

    async fn create_lease(
        &self,
        key: &LeaseKey,
        attrs: &LeaseAttrs,
        ttl: Duration,
    ) -> Result<Lease, CreateLeaseError> {
        let name = key.to_string();
        let now = self.shared.clock.now();
        let mut state = self.lock_current();
        if state.entries.contains_key(&name) {
            return Err(CreateLeaseError::Taken { key: *key });
        }
        state.put(&name, attrs.to_json().into_bytes(), Some(now + ttl));
        let lease = Lease {
            key: *key,
            attrs: attrs.clone(),
            expiry: Expiry::At(now + ttl),
            mod_revision: state.revision,
        };
        self.publish(state);
        Ok(lease)
    }

    async fn renew_lease(
        &self,
        lease: &Lease,
        attrs: &LeaseAttrs,
        ttl: Duration,
    ) -> Result<Lease, RenewLeaseError> {
        let name = lease.key.to_string();
        let now = self.shared.clock.now();
        let mut state = self.lock_current();
        let Some(entry) = state
            .entries
            .get(&name)
            .filter(|entry| entry.mod_revision == lease.mod_revision)
        else {
            return Err(RenewLeaseError::Changed {
                key: lease.key,
                revision: lease.mod_revision,
            });
        };
        let expiry = entry.expiry.map(|_| now + ttl);
        state.put(&name, attrs.to_json().into_bytes(), expiry);
        let renewed = Lease {
            key: lease.key,
            attrs: attrs.clone(),
            expiry: expiry.map_or(Expiry::Never, Expiry::At),
            mod_revision: state.revision,
        };
        self.publish(state);
        Ok(renewed)
    }

    async fn delete_lease(&self, lease: &Lease) -> Result<bool, DeleteLeaseError> {
        let name = lease.key.to_string();
        let mut state = self.lock_current();
        if state
            .entries
            .get(&name)
            .is_some_and(|entry| entry.expiry.is_none())
        {
            return Err(DeleteLeaseError::Reservation { key: lease.key });
        }
        if state.mod_revision(&name) != Some(lease.mod_revision) {
            return Ok(false);
        }
        state.remove(&name, false);
        self.publish(state);
        Ok(true)
    }

    async fn watch_leases(&self, after: Revision) -> Result<LeaseWatch, RegistryError> {
        struct WatchState<C: Clock> {
            registry: MemoryRegistry<C>,
            changes: watch::Receiver<Revision>,
            after: Revision,
            pending: VecDeque<RegistryEvent>,
        }

        let state = WatchState {
            registry: self.clone(),
            changes: self.shared.changes.subscribe(),
            after,
            pending: VecDeque::new(),
        };
        let stream = futures::stream::unfold(state, |mut state| async move {
            loop {
                if let Some(event) = state.pending.pop_front() {
                    return Some((event, state));
                }
                state.changes.borrow_and_update();
                let (events, reached, next_expiry) = state.registry.events_after(state.after);
                state.after = reached;
                state.pending.extend(events);
                if !state.pending.is_empty() {
                    continue;
                }

                let clock = state.registry.shared.clock.clone();
                let expiry = async {
                    match next_expiry {
                        Some(time) => clock.sleep_until(time).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = state.changes.changed() => {}
                    () = expiry => {}
                }
            }
        });
        Ok(stream.boxed())
    }
}
