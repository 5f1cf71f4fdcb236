//! Shared test setup: a harness per registry so that one conformance battery
//! runs on both, and network configs as operators write them.

#![allow(dead_code)]

pub mod conformance;

use std::future::Future;
use std::time::Duration;

use subnet_registry::testing::EtcdServer;
use subnet_registry::{
    EtcdConfig, EtcdRegistry, EtcdV2Registry, ManualClock, MemoryRegistry, Registry, Revision,
};

/// A registry under test plus the operator-side actions the tests need.
pub trait Harness: Send + Sync {
    type Registry: Registry + Clone;

    fn registry(&self) -> &Self::Registry;

    /// Writes a raw entry under `<prefix>/subnets/`; `ttl` `None` makes a
    /// reservation.
    fn put_raw(
        &self,
        name: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> impl Future<Output = ()> + Send;

    fn delete_raw(&self, name: &str) -> impl Future<Output = ()> + Send;

    fn put_config(&self, text: &str) -> impl Future<Output = ()> + Send;

    fn compact(&self, revision: Revision) -> impl Future<Output = ()> + Send;

    /// Lets `duration` pass for lease expiry.
    fn let_time_pass(&self, duration: Duration) -> impl Future<Output = ()> + Send;

    /// Returns the shortest lease lifetime the store honours.
    fn short_ttl(&self) -> Duration;
}

pub struct MemoryHarness {
    pub clock: ManualClock,
    pub registry: MemoryRegistry<ManualClock>,
}

impl MemoryHarness {
    pub fn new() -> Self {
        let clock = ManualClock::default();
        Self {
            registry: MemoryRegistry::with_clock(clock.clone()),
            clock,
        }
    }
}

impl Harness for MemoryHarness {
    type Registry = MemoryRegistry<ManualClock>;

    fn registry(&self) -> &Self::Registry {
        &self.registry
    }

    async fn put_raw(&self, name: &str, value: &str, ttl: Option<Duration>) {
        self.registry.put_raw(name, value.as_bytes(), ttl);
    }

    async fn delete_raw(&self, name: &str) {
        self.registry.delete_raw(name);
    }

    async fn put_config(&self, text: &str) {
        self.registry.put_config(text);
    }

    async fn compact(&self, revision: Revision) {
        self.registry.compact(revision);
    }

    async fn let_time_pass(&self, duration: Duration) {
        self.clock.advance(duration);
    }

    fn short_ttl(&self) -> Duration {
        Duration::from_secs(60)
    }
}

pub struct EtcdHarness {
    pub server: EtcdServer,
    pub registry: EtcdRegistry,
}

impl EtcdHarness {
    pub async fn start() -> Self {
        let server = start_etcd();
        let registry = connect(&server).await;
        Self { server, registry }
    }

    pub fn etcdctl(&self, args: &[&str]) -> String {
        self.server
            .etcdctl(args)
            .unwrap_or_else(|error| panic!("{error}"))
    }
}

pub fn start_etcd() -> EtcdServer {
    EtcdServer::start().unwrap_or_else(|error| panic!("{error}"))
}

pub async fn connect(server: &EtcdServer) -> EtcdRegistry {
    let mut config = EtcdConfig::new([server.endpoint()]);
    config.request_timeout = Duration::from_secs(5);
    EtcdRegistry::connect(&config)
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

const PREFIX: &str = "/coreos.com/network";

impl Harness for EtcdHarness {
    type Registry = EtcdRegistry;

    fn registry(&self) -> &Self::Registry {
        &self.registry
    }

    async fn put_raw(&self, name: &str, value: &str, ttl: Option<Duration>) {
        let key = format!("{PREFIX}/subnets/{name}");
        match ttl {
            None => {
                self.etcdctl(&["put", &key, value]);
            }
            Some(ttl) => {
                let output = self.etcdctl(&["lease", "grant", &ttl.as_secs().max(1).to_string()]);
                // "lease 694d7a2ef2bd6f05 granted with TTL(60s)"
                let id = output
                    .split_whitespace()
                    .nth(1)
                    .expect("lease id in etcdctl output");
                self.etcdctl(&["put", &format!("--lease={id}"), &key, value]);
            }
        }
    }

    async fn delete_raw(&self, name: &str) {
        self.etcdctl(&["del", &format!("{PREFIX}/subnets/{name}")]);
    }

    async fn put_config(&self, text: &str) {
        self.etcdctl(&["put", &format!("{PREFIX}/config"), text]);
    }

    async fn compact(&self, revision: Revision) {
        self.etcdctl(&["compact", &revision.to_string()]);
    }

    async fn let_time_pass(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    fn short_ttl(&self) -> Duration {
        Duration::from_secs(2)
    }
}

/// The etcd v2 registry on a real etcd server that serves the v2 API.
pub struct EtcdV2Harness {
    pub server: EtcdServer,
    pub registry: EtcdV2Registry,
}

impl EtcdV2Harness {
    pub async fn start() -> Self {
        let server = EtcdServer::start_v2().unwrap_or_else(|error| panic!("{error}"));
        let registry = connect_v2(&server);
        Self { server, registry }
    }

    /// Runs `ETCDCTL_API=2 etcdctl` with `args`.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        self.server
            .etcdctl_v2(args)
            .unwrap_or_else(|error| panic!("{error}"))
    }
}

pub fn connect_v2(server: &EtcdServer) -> EtcdV2Registry {
    connect_v2_with_prefix(server, PREFIX)
}

pub fn connect_v2_with_prefix(server: &EtcdServer, prefix: &str) -> EtcdV2Registry {
    let mut config = EtcdConfig::new([server.endpoint()]);
    config.prefix = prefix.to_owned();
    config.request_timeout = Duration::from_secs(5);
    EtcdV2Registry::connect(&config).unwrap_or_else(|error| panic!("{error}"))
}

/// The number of changes the etcd v2 store keeps for watches.
pub const V2_HISTORY: i64 = 1000;

/// Writes to a key outside the network until the etcd v2 store has dropped
/// every change up to `revision` from its history, the v2 counterpart of a
/// compaction.
pub async fn push_out_v2_history(server: &EtcdServer, revision: Revision) {
    let current = write_elsewhere_v2(server, 1).await;
    let missing = (revision + V2_HISTORY + 1 - current).max(0);
    write_elsewhere_v2(server, missing.try_into().unwrap()).await;
}

/// Makes `count` changes to a key outside the network in the etcd v2
/// store, 50 at a time, and returns the store index after them.
pub async fn write_elsewhere_v2(server: &EtcdServer, count: usize) -> Revision {
    let filler = connect_v2_with_prefix(server, "/history-filler");
    let mut current = 0;
    let mut left = count;
    while left > 0 {
        let batch = left.min(50);
        let writes = (0..batch).map(|i| {
            let filler = filler.clone();
            async move { filler.put_config(&i.to_string()).await }
        });
        for result in futures::future::join_all(writes).await {
            current = current.max(result.unwrap());
        }
        left -= batch;
    }
    current
}

impl Harness for EtcdV2Harness {
    type Registry = EtcdV2Registry;

    fn registry(&self) -> &Self::Registry {
        &self.registry
    }

    async fn put_raw(&self, name: &str, value: &str, ttl: Option<Duration>) {
        let key = format!("{PREFIX}/subnets/{name}");
        match ttl {
            None => self.etcdctl(&["set", &key, value]),
            Some(ttl) => {
                let seconds = ttl.as_secs().max(1).to_string();
                self.etcdctl(&["set", "--ttl", &seconds, &key, value])
            }
        };
    }

    async fn delete_raw(&self, name: &str) {
        self.etcdctl(&["rm", &format!("{PREFIX}/subnets/{name}")]);
    }

    async fn put_config(&self, text: &str) {
        self.etcdctl(&["set", &format!("{PREFIX}/config"), text]);
    }

    async fn compact(&self, revision: Revision) {
        push_out_v2_history(&self.server, revision).await;
    }

    async fn let_time_pass(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    fn short_ttl(&self) -> Duration {
        Duration::from_secs(2)
    }
}

/// The walkthrough's network: 172.16.0.0/16 in /24 subnets.
pub const WALKTHROUGH_CONFIG: &str =
    r#"{"Network": "172.16.0.0/16", "SubnetLen": 24, "Backend": {"Type": "udp"}}"#;

/// Waits for the next item of a stream, failing the test after `seconds`.
pub async fn next_within<S: futures::Stream + Unpin>(stream: &mut S, seconds: u64) -> S::Item {
    use futures::StreamExt;
    tokio::time::timeout(Duration::from_secs(seconds), stream.next())
        .await
        .unwrap_or_else(|_| panic!("no event within {seconds} s"))
        .expect("stream ended")
}

/// Sends the crate's logs to the test output.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "subnet_registry=debug".into()),
        )
        .with_test_writer()
        .try_init();
}
