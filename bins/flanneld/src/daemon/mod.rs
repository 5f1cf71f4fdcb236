//! The daemon's life. It chooses the interface, connects to etcd, waits for
//! the network config, acquires the lease, starts the backend, writes
//! subnet.env and signals readiness. Then it keeps the lease renewed and
//! follows the peers until SIGTERM or SIGINT. On a signal the backend stops and removes its
//! device, and the lease stays in etcd so a restart gets the same subnet.

mod backend;
mod subnet_file;

use std::time::Duration;

use futures::StreamExt;
use subnet_core::lease::LeaseKey;
use subnet_core::{BackendType, NetworkConfig};
use subnet_registry::{
    AcquireError, ConnectError, EtcdConfig, EtcdRegistry, EtcdV2ConnectError, EtcdV2Registry,
    Lease, LeaseEvent, LeaseKeeper, LeaseManager, ManagerConfig, PeerWatch, Registry,
};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{oneshot, watch};
use tracing::{debug, error, info, warn};

use crate::args::{EtcdApi, Options};
use crate::health::{self, Readiness};
use crate::iface::{self, ExternalInterface};
use crate::iptables::{self, ChainSpec, Iptables};
use crate::notify;

pub use backend::BackendError;
use backend::{ActiveBackend, Prepared};

/// Maximum wait for the first iptables installation before readiness.
const IPTABLES_FIRST_PASS_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the daemon checks that the backend's packet loops still run.
const BACKEND_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Maximum wait between retries of etcd operations.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// A failure that stops the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Installing the SIGTERM/SIGINT handlers failed.
    #[error("installing the signal handlers failed: {0}")]
    Signals(#[source] std::io::Error),
    /// No interface could be chosen.
    #[error(transparent)]
    Interface(#[from] iface::IfaceError),
    /// The health listener could not start.
    #[error(transparent)]
    Health(#[from] health::HealthError),
    /// The etcd settings are unusable.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The etcd v2 settings are unusable.
    #[error(transparent)]
    ConnectV2(#[from] EtcdV2ConnectError),
    /// The backend could not start.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// No lease can be acquired under the current config.
    #[error(transparent)]
    Acquire(Box<AcquireError>),
    /// subnet.env could not be written.
    #[error("writing subnet.env failed: {0}")]
    SubnetFile(#[from] subnet_core::subnet_env::WriteError),
    /// A packet loop of the backend ended on an I/O error.
    #[error("the {backend} backend's packet loop stopped after an error (logged above); exiting so that the service manager restarts flanneld")]
    BackendStopped {
        /// The backend type.
        backend: BackendType,
    },
}

impl From<AcquireError> for DaemonError {
    fn from(error: AcquireError) -> Self {
        Self::Acquire(Box::new(error))
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(options: Options) -> Result<(), DaemonError> {
    let mut signals = Signals::install().map_err(DaemonError::Signals)?;
    let readiness = Readiness::default();

    let snapshot = iface::snapshot().await?;
    let external = iface::choose(
        &snapshot,
        &options.ifaces,
        &options.iface_regexes,
        options.public_ip,
        options.public_ipv6,
    )?;
    info!(
        interface = %external.name,
        address = %external.address,
        public_ip = %external.public_ip,
        public_ipv6 = ?external.public_ipv6,
        mtu = external.mtu,
        "using interface"
    );
    if snapshot
        .links
        .iter()
        .any(|link| link.index == external.index && !link.up)
    {
        warn!(interface = %external.name, "the chosen interface is down");
    }

    let _health = match options.healthz {
        Some(address) => {
            let listener = health::bind(address).await?;
            info!(%address, "serving /healthz and /readyz");
            Some(AbortOnDrop(tokio::spawn(health::serve(
                listener,
                readiness.clone(),
            ))))
        }
        None => None,
    };

    match options.etcd.api {
        EtcdApi::V3 => {
            let registry = tokio::select! {
                registry = connect(&options) => registry?,
                name = signals.recv() => {
                    info!(signal = name, "stopping during start-up");
                    return Ok(());
                }
            };
            run_with(registry, &options, external, &readiness, &mut signals).await
        }
        EtcdApi::V2 => {
            let registry = EtcdV2Registry::connect(&etcd_config(&options))?;
            info!(endpoints = %options.etcd.endpoints.join(","), prefix = %options.etcd.prefix, "using the etcd v2 API");
            run_with(registry, &options, external, &readiness, &mut signals).await
        }
    }
}

/// Runs the daemon on `registry` from the wait for the config until a
/// signal or a fatal error.
async fn run_with<R: Registry + Clone>(
    registry: R,
    options: &Options,
    external: ExternalInterface,
    readiness: &Readiness,
    signals: &mut Signals,
) -> Result<(), DaemonError> {
    let Some(mut running) = start(registry, options, external, readiness, signals).await? else {
        return Ok(());
    };

    // A failure is logged by the caller, after the backend is stopped.
    let outcome = running.serve(signals).await;
    if let Ok(name) = outcome {
        info!(signal = name, "stopping");
    }
    readiness.set(false);
    if let Err(error) = notify::notify("STOPPING=1") {
        warn!(%error, "notifying systemd of the stop failed");
    }
    running.backend.stop().await;
    info!(lease = %running.lease.key, "stopped; the lease stays in etcd for the next start");
    outcome.map(|_| ())
}

/// Everything the running daemon holds.
struct Running<R: Registry> {
    options: Options,
    external: ExternalInterface,
    kind: BackendType,
    config: NetworkConfig,
    manager: LeaseManager<R>,
    lease: Lease,
    backend: ActiveBackend,
    keeper: LeaseKeeper,
    peers: PeerWatch,
    iptables_specs: watch::Sender<Vec<ChainSpec>>,
    random_fully: bool,
    _iptables: Option<AbortOnDrop>,
    _config_watch: AbortOnDrop,
}

/// Takes the daemon from the wait for the config to readiness. Returns
/// `None` when SIGTERM or SIGINT arrives while it waits for the config or a
/// lease, after removing any device it created.
async fn start<R: Registry + Clone>(
    registry: R,
    options: &Options,
    external: ExternalInterface,
    readiness: &Readiness,
    signals: &mut Signals,
) -> Result<Option<Running<R>>, DaemonError> {
    let previous = subnet_file::previous_lease_key(&options.subnet_file);

    let waiter = LeaseManager::new(registry.clone(), ManagerConfig::new(external.public_ip));
    // Aborted when the config arrives, so the hint appears only while the
    // daemon waits.
    let _v2_hint = (options.etcd.api == EtcdApi::V3)
        .then(|| AbortOnDrop(tokio::spawn(hint_if_config_in_v2(etcd_config(options)))));
    let config = tokio::select! {
        config = waiter.wait_for_config() => config,
        name = signals.recv() => {
            info!(signal = name, "stopping during start-up");
            return Ok(None);
        }
    };
    let kind = backend::backend_type(&config)?;
    let prepared = Prepared::new(kind, &config, &external).await?;

    let manager_config = ManagerConfig {
        public_ipv6: config.ipv6.as_ref().and(external.public_ipv6),
        backend_type: kind.name().to_owned(),
        backend_data: prepared.backend_data(),
        previous_subnet: previous,
        renew_margin: options.renew_margin,
        max_retry_delay: MAX_RETRY_DELAY,
        ..ManagerConfig::new(external.public_ip)
    };
    let manager = LeaseManager::new(registry, manager_config);
    let acquired = tokio::select! {
        acquired = acquire(&manager, &config) => acquired,
        name = signals.recv() => {
            info!(signal = name, "stopping during start-up");
            prepared.discard().await;
            return Ok(None);
        }
    };
    let lease = match acquired {
        Ok(lease) => lease,
        Err(error) => {
            prepared.discard().await;
            return Err(error.into());
        }
    };

    let backend = ActiveBackend::start(
        kind,
        prepared,
        &config,
        &lease.key,
        &external,
        options.udp_check_sender,
    )
    .await?;
    info!(backend = kind.name(), lease = %lease.key, public_ip = %lease.attrs.public_ip, "backend started");
    write_subnet_file(
        options,
        &config,
        &lease.key,
        backend.mtu(kind, external.mtu),
    )?;

    let iptables = Iptables::new();
    let random_fully = options.ip_masq && iptables.supports_random_fully().await;
    let (iptables_specs, specs) =
        watch::channel(iptables_specs(options, &config, &lease.key, random_fully));
    let iptables_task = if iptables_specs.borrow().is_empty() {
        None
    } else {
        let (first_pass, installed) = oneshot::channel();
        let task = tokio::spawn(iptables::keep(
            iptables,
            specs,
            options.iptables_resync,
            Some(first_pass),
        ));
        // Readiness waits for the first installation, so that Docker starts
        // with the rules in place; a hung iptables delays it by at most this.
        if tokio::time::timeout(IPTABLES_FIRST_PASS_TIMEOUT, installed)
            .await
            .is_err()
        {
            warn!(timeout = ?IPTABLES_FIRST_PASS_TIMEOUT, "iptables rules not installed yet; signalling readiness anyway");
        }
        Some(AbortOnDrop(task))
    };

    let peers = watch_peers(&manager, lease.key).await;
    let keeper = manager.keep_renewed(config.clone(), lease.clone());
    let config_watch = AbortOnDrop(tokio::spawn(warn_on_config_change(
        manager.registry().clone(),
        config.clone(),
    )));

    readiness.set(true);
    match notify::notify("READY=1") {
        Ok(true) => info!("ready; notified systemd"),
        Ok(false) => info!("ready"),
        Err(error) => error!(%error, "notifying systemd of readiness failed"),
    }

    Ok(Some(Running {
        options: options.clone(),
        external,
        kind,
        config,
        manager,
        lease,
        backend,
        keeper,
        peers,
        iptables_specs,
        random_fully,
        _iptables: iptables_task,
        _config_watch: config_watch,
    }))
}

impl<R: Registry> Running<R> {
    /// Follows lease and peer changes until a signal arrives, and returns
    /// the signal's name. Fails when the backend or subnet.env cannot follow
    /// a change of subnet.
    async fn serve(&mut self, signals: &mut Signals) -> Result<&'static str, DaemonError> {
        let mut liveness = tokio::time::interval(BACKEND_CHECK_INTERVAL);
        loop {
            tokio::select! {
                name = signals.recv() => return Ok(name),
                _ = liveness.tick() => {
                    if !self.backend.is_running() {
                        return Err(DaemonError::BackendStopped { backend: self.kind });
                    }
                }
                Some(event) = self.keeper.next() => self.on_lease_event(event).await?,
                event = self.peers.next() => match event {
                    Some(event) => self.backend.apply(&event).await,
                    None => {
                        warn!("the peer watch ended; opening it again");
                        self.peers = watch_peers(&self.manager, self.lease.key).await;
                    }
                },
            }
        }
    }

    async fn on_lease_event(&mut self, event: LeaseEvent) -> Result<(), DaemonError> {
        match event {
            LeaseEvent::Renewed(lease) => self.lease = lease,
            LeaseEvent::Recreated(lease) => {
                warn!(lease = %lease.key, "this host's lease vanished from etcd and was created again with the same subnet");
                self.lease = lease;
            }
            LeaseEvent::Changed { previous, lease } => {
                error!(
                    previous = %previous,
                    lease = %lease.key,
                    "this host's subnet CHANGED: its lease was lost to another host; rewriting subnet.env. \
                     Restart Docker and its containers so that they use the new subnet"
                );
                self.lease = lease;
                self.apply_new_lease().await?;
            }
        }
        Ok(())
    }

    /// Moves the backend, subnet.env and the masquerade rules to the new
    /// lease. A failure stops the daemon, so that systemd restarts it.
    async fn apply_new_lease(&mut self) -> Result<(), DaemonError> {
        let key = self.lease.key;
        self.backend.change_lease(&key).await?;
        self.peers.set_own(Some(key));
        let mtu = self.backend.mtu(self.kind, self.external.mtu);
        write_subnet_file(&self.options, &self.config, &key, mtu)?;
        self.iptables_specs.send_replace(iptables_specs(
            &self.options,
            &self.config,
            &key,
            self.random_fully,
        ));
        Ok(())
    }
}

fn write_subnet_file(
    options: &Options,
    config: &NetworkConfig,
    lease: &LeaseKey,
    mtu: u32,
) -> Result<(), subnet_core::subnet_env::WriteError> {
    let env = subnet_file::subnet_env(config, lease, mtu, options.ip_masq);
    env.write_atomic(&options.subnet_file)?;
    info!(path = %options.subnet_file.display(), lease = %lease, mtu, "subnet.env written");
    Ok(())
}

/// Builds the rule sets the flags request; none without an IPv4 network.
fn iptables_specs(
    options: &Options,
    config: &NetworkConfig,
    lease: &LeaseKey,
    random_fully: bool,
) -> Vec<ChainSpec> {
    let Some(network) = config.ipv4.as_ref().map(|range| range.network()) else {
        return Vec::new();
    };
    let mut specs = Vec::new();
    if let (true, Some(subnet)) = (options.ip_masq, lease.ipv4) {
        specs.push(iptables::rules::masq(network, subnet, random_fully));
    }
    if options.iptables_forward_rules {
        specs.push(iptables::rules::forward(network));
    }
    specs
}

/// Builds the etcd client settings from the flags.
fn etcd_config(options: &Options) -> EtcdConfig {
    let etcd = &options.etcd;
    EtcdConfig {
        endpoints: etcd.endpoints.clone(),
        prefix: etcd.prefix.clone(),
        ca_file: etcd.ca_file.clone(),
        cert_file: etcd.cert_file.clone(),
        key_file: etcd.key_file.clone(),
        username: etcd.username.clone(),
        password: etcd.password.clone(),
        ..EtcdConfig::default()
    }
}

/// Sets up the etcd v3 client, retrying while authentication cannot reach
/// the cluster; bad settings fail at once. Without credentials no request
/// is made here, so an unreachable etcd shows up in the first read.
async fn connect(options: &Options) -> Result<EtcdRegistry, ConnectError> {
    let etcd = &options.etcd;
    let config = etcd_config(options);
    let mut delay = Retry::new();
    loop {
        match EtcdRegistry::connect(&config).await {
            Ok(registry) => {
                info!(endpoints = %etcd.endpoints.join(","), prefix = %etcd.prefix, "etcd v3 client configured");
                return Ok(registry);
            }
            Err(error @ ConnectError::Client { .. }) => {
                let wait = delay.next();
                warn!(%error, retry_in = ?wait, "connecting to etcd failed");
                tokio::time::sleep(wait).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Acquires a lease, retrying store failures and contention.
async fn acquire<R: Registry>(
    manager: &LeaseManager<R>,
    config: &NetworkConfig,
) -> Result<Lease, AcquireError> {
    let mut delay = Retry::new();
    loop {
        match manager.acquire(config).await {
            Ok(lease) => return Ok(lease),
            Err(error) if error.is_retryable() => {
                let wait = delay.next();
                warn!(%error, retry_in = ?wait, "acquiring a lease failed");
                tokio::time::sleep(wait).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Opens the peer watch, retrying store failures.
async fn watch_peers<R: Registry>(manager: &LeaseManager<R>, own: LeaseKey) -> PeerWatch {
    let mut delay = Retry::new();
    loop {
        match manager.watch_peers(Some(own)).await {
            Ok(peers) => return peers,
            Err(error) => {
                let wait = delay.next();
                warn!(%error, retry_in = ?wait, "listing the peers' leases failed");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Logs each time the stored network config comes to differ from the one
/// the daemon runs with, or to match it again. The daemon reads the config
/// only at start, as the original did, so each warning states what a
/// restart would do.
async fn warn_on_config_change<R: Registry>(registry: R, applied: NetworkConfig) {
    let key = registry.config_path();
    let mut delay = Retry::new();
    let mut last_seen = None;
    let mut was_same = true;
    loop {
        let value = match registry.config().await {
            Ok(value) => value,
            Err(error) => {
                let wait = delay.next();
                debug!(%error, retry_in = ?wait, "reading the network config for change detection failed");
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        delay = Retry::new();
        if value.text != last_seen {
            let parsed = value.text.as_deref().map(NetworkConfig::parse);
            let is_same = matches!(&parsed, Some(Ok(config)) if *config == applied);
            match parsed {
                _ if is_same && was_same => {}
                _ if is_same => {
                    info!(%key, "the network config in etcd matches the running config again")
                }
                None => warn!(
                    %key,
                    "the network config was deleted from etcd; flanneld keeps running with the config it started with, but a restarted flanneld waits until a config is written"
                ),
                Some(Err(error)) => warn!(
                    %key,
                    %error,
                    "the network config in etcd is now invalid; flanneld keeps running with the config it started with, but a restarted flanneld waits for a valid one"
                ),
                Some(Ok(_)) => warn!(
                    %key,
                    "the network config changed in etcd; flanneld reads it only at start, so restart flanneld on every host to apply it"
                ),
            }
            was_same = is_same;
            last_seen = value.text.clone();
        }
        if let Err(error) = registry.wait_config_change(value.revision).await {
            let wait = delay.next();
            debug!(%error, retry_in = ?wait, "watching the network config failed");
            tokio::time::sleep(wait).await;
        }
    }
}

/// How long the daemon waits for a config in the v3 keyspace before it
/// looks for one in the v2 keyspace.
const V2_HINT_DELAY: Duration = Duration::from_secs(3);

/// Looks for the network config in etcd's v2 keyspace, where flannel 0.5
/// keeps it, and logs how to use it if it is there. Runs once, while the
/// daemon waits for a config in the v3 keyspace.
async fn hint_if_config_in_v2(config: EtcdConfig) {
    tokio::time::sleep(V2_HINT_DELAY).await;
    let registry = match EtcdV2Registry::connect(&config) {
        Ok(registry) => registry,
        Err(error) => {
            debug!(%error, "looking for the config in the v2 keyspace failed");
            return;
        }
    };
    match registry.config().await {
        Ok(value) if value.text.is_some() => warn!(
            key = %registry.config_path(),
            "the network config is missing from etcd's v3 keyspace but present in its v2 keyspace, where flannel 0.5 keeps it (etcdctl set); start flanneld with -etcd-api=v2 to join that network"
        ),
        Ok(_) => {}
        Err(error) => debug!(%error, "looking for the config in the v2 keyspace failed"),
    }
}

/// Doubling delays from 200 ms up to [`MAX_RETRY_DELAY`].
struct Retry {
    next: Duration,
}

impl Retry {
    fn new() -> Self {
        Self {
            next: Duration::from_millis(200),
        }
    }

    fn next(&mut self) -> Duration {
        let current = self.next;
        self.next = (current * 2).min(MAX_RETRY_DELAY);
        current
    }
}

/// SIGTERM and SIGINT.
struct Signals {
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for either signal and returns its name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
