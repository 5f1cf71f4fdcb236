//! The backend the network config names, started for this host's lease and
//! fed with the peers' leases.

use std::net::SocketAddrV4;

use ipnet::Ipv4Net;
use overlay_kernel::{
    HostGwBackend, HostGwConfig, VxlanBackend, VxlanConfig, VxlanData, VxlanOptions,
};
use overlay_udp::{UdpBackend, UdpConfig};
use subnet_core::lease::LeaseKey;
use subnet_core::{BackendType, NetworkConfig};
use subnet_registry::{Lease, PeerEvent};

use crate::iface::ExternalInterface;

/// The backend types this daemon runs.
pub const SUPPORTED: [BackendType; 4] = [
    BackendType::Udp,
    BackendType::Vxlan,
    BackendType::HostGw,
    BackendType::Alloc,
];

/// Smallest TUN MTU: the minimum every IPv4 link carries (RFC 791).
const MIN_TUN_MTU: u16 = 68;

/// Largest TUN MTU: one IPv4 packet must fit a UDP datagram's payload.
const MAX_TUN_MTU: u16 = 65_507;

/// A failure to start a backend or to move it to a new lease.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The config names a backend this daemon does not run.
    #[error(
        "backend type {name:?} in the network config is not supported; supported types: udp, vxlan, host-gw, alloc"
    )]
    Unsupported {
        /// `Backend.Type` as written.
        name: String,
    },
    /// The backend needs an IPv4 network.
    #[error(
        "the {backend} backend needs an IPv4 Network in the network config (EnableIPv4 is false)"
    )]
    NoIpv4Network {
        /// The backend type.
        backend: BackendType,
    },
    /// The lease has no IPv4 subnet.
    #[error("the {backend} backend needs an IPv4 subnet, but lease {key} has none")]
    NoIpv4Lease {
        /// The backend type.
        backend: BackendType,
        /// The lease key.
        key: LeaseKey,
    },
    /// `Backend.Port` is invalid.
    #[error("invalid udp backend options: {0}")]
    Options(#[from] subnet_core::ConfigError),
    /// A vxlan option is invalid.
    #[error(transparent)]
    VxlanOptions(#[from] overlay_kernel::OptionsError),
    /// The underlay MTU leaves no valid TUN MTU.
    #[error("interface {interface} has MTU {mtu}, which leaves no valid udp TUN MTU (68 to 65507 after 28 bytes of headers)")]
    Mtu {
        /// The underlay interface.
        interface: String,
        /// Its MTU.
        mtu: u32,
    },
    /// The udp data path could not start.
    #[error(transparent)]
    Udp(#[from] overlay_udp::StartError),
    /// The VXLAN device could not be created.
    #[error(transparent)]
    VxlanCreate(#[from] overlay_kernel::CreateError),
    /// The VXLAN device could not take the lease's address.
    #[error(transparent)]
    VxlanAddress(#[from] overlay_kernel::AddressError),
    /// No netlink socket for the host-gw routes.
    #[error(transparent)]
    Netlink(#[from] overlay_kernel::ConnectError),
}

/// Picks the backend the config names, if this daemon runs it.
pub fn backend_type(config: &NetworkConfig) -> Result<BackendType, BackendError> {
    let name = &config.backend.backend_type;
    let unsupported = || BackendError::Unsupported { name: name.clone() };
    let kind = BackendType::from_name(name).map_err(|_| unsupported())?;
    if !SUPPORTED.contains(&kind) {
        return Err(unsupported());
    }
    Ok(kind)
}

/// The part of a backend that exists before the lease: the vxlan backend
/// creates its device first, because the lease carries the device's MAC.
#[derive(Debug)]
pub enum Prepared {
    /// The VXLAN device, up but not yet addressed.
    Vxlan(VxlanBackend),
    /// Nothing to prepare.
    Other,
}

impl Prepared {
    /// Checks the backend's options and creates what the lease must
    /// describe.
    pub async fn new(
        kind: BackendType,
        config: &NetworkConfig,
        external: &ExternalInterface,
    ) -> Result<Self, BackendError> {
        if kind != BackendType::Vxlan {
            return Ok(Self::Other);
        }
        if config.ipv4.is_none() {
            return Err(BackendError::NoIpv4Network { backend: kind });
        }
        let options = VxlanOptions::from_config(&config.backend)?;
        // The device sends from the interface's own address: with
        // -public-ip behind NAT, the public address is not local.
        let vxlan = VxlanBackend::create(VxlanConfig {
            options,
            underlay_name: external.name.clone(),
            underlay_index: external.index,
            underlay_address: external.address,
            underlay_mtu: external.mtu,
        })
        .await?;
        Ok(Self::Vxlan(vxlan))
    }

    /// The BackendData this host writes into its lease.
    pub fn backend_data(&self) -> Option<serde_json::Value> {
        match self {
            Self::Vxlan(vxlan) => Some(vxlan.backend_data().to_json()),
            Self::Other => None,
        }
    }

    /// Removes what [`Prepared::new`] created, when no lease follows.
    pub async fn discard(self) {
        if let Self::Vxlan(vxlan) = self {
            if let Err(error) = vxlan.shutdown().await {
                tracing::warn!(%error, "removing the VXLAN device failed");
            }
        }
    }
}

/// A running backend.
#[derive(Debug)]
pub enum ActiveBackend {
    /// The udp data path and the settings it was started with.
    Udp {
        /// The running data path.
        backend: UdpBackend,
        /// Its settings, reused when the lease changes.
        config: UdpConfig,
    },
    /// The VXLAN device and the peers programmed through it.
    Vxlan(VxlanBackend),
    /// Routes via the peers' PublicIP.
    HostGw(HostGwBackend),
    /// Leases only, no data path.
    Alloc,
}

impl ActiveBackend {
    /// Starts the backend `kind` for `lease`.
    pub async fn start(
        kind: BackendType,
        prepared: Prepared,
        config: &NetworkConfig,
        lease: &LeaseKey,
        external: &ExternalInterface,
        check_sender: bool,
    ) -> Result<Self, BackendError> {
        if let Prepared::Vxlan(mut vxlan) = prepared {
            let subnet = lease.ipv4.ok_or(BackendError::NoIpv4Lease {
                backend: kind,
                key: *lease,
            })?;
            vxlan.set_lease(subnet).await?;
            return Ok(Self::Vxlan(vxlan));
        }
        match kind {
            BackendType::Udp => {
                let network = config
                    .ipv4
                    .as_ref()
                    .ok_or(BackendError::NoIpv4Network { backend: kind })?
                    .network();
                let local_lease = lease.ipv4.ok_or(BackendError::NoIpv4Lease {
                    backend: kind,
                    key: *lease,
                })?;
                let port = config.backend.port()?.unwrap_or(overlay_udp::DEFAULT_PORT);
                let tun_mtu = u16::try_from(kind.mtu(external.mtu))
                    .ok()
                    .filter(|mtu| (MIN_TUN_MTU..=MAX_TUN_MTU).contains(mtu))
                    .ok_or_else(|| BackendError::Mtu {
                        interface: external.name.clone(),
                        mtu: external.mtu,
                    })?;
                // The socket binds to the interface's own address: with
                // -public-ip behind NAT, the public address is not local.
                let mut udp = UdpConfig::new(
                    local_lease,
                    network,
                    SocketAddrV4::new(external.address, port),
                );
                udp.tun_mtu = tun_mtu;
                udp.check_sender = check_sender;
                let backend = UdpBackend::start(udp.clone())?;
                Ok(Self::Udp {
                    backend,
                    config: udp,
                })
            }
            BackendType::HostGw => {
                if config.ipv4.is_none() {
                    return Err(BackendError::NoIpv4Network { backend: kind });
                }
                let backend = HostGwBackend::new(HostGwConfig {
                    underlay_name: external.name.clone(),
                    underlay_index: external.index,
                })?;
                Ok(Self::HostGw(backend))
            }
            _ => Ok(Self::Alloc),
        }
    }

    /// The overlay MTU for subnet.env: the VXLAN device's own MTU (which
    /// `Backend.MTU` may set), else the underlay's minus the backend's
    /// headers.
    pub fn mtu(&self, kind: BackendType, underlay_mtu: u32) -> u32 {
        match self {
            Self::Vxlan(vxlan) => vxlan.mtu(),
            _ => kind.mtu(underlay_mtu),
        }
    }

    /// Checks that the data path still carries packets; always true for
    /// the kernel backends and alloc, which run no packet loop.
    pub fn is_running(&self) -> bool {
        match self {
            Self::Udp { backend, .. } => backend.is_running(),
            Self::Vxlan(_) | Self::HostGw(_) | Self::Alloc => true,
        }
    }

    /// Applies one peer change to the data path. A peer that cannot be
    /// programmed is logged and skipped.
    pub async fn apply(&mut self, event: &PeerEvent) {
        match self {
            Self::Udp { backend, .. } => apply_udp(backend, event),
            Self::Vxlan(vxlan) => apply_vxlan(vxlan, event).await,
            Self::HostGw(host_gw) => apply_host_gw(host_gw, event).await,
            Self::Alloc => {}
        }
    }

    /// Moves the data path to a new lease, keeping the known peers.
    pub async fn change_lease(&mut self, lease: &LeaseKey) -> Result<(), BackendError> {
        match self {
            Self::Udp { .. } => self.change_udp_lease(lease),
            Self::Vxlan(vxlan) => {
                let subnet = lease.ipv4.ok_or(BackendError::NoIpv4Lease {
                    backend: BackendType::Vxlan,
                    key: *lease,
                })?;
                vxlan.set_lease(subnet).await?;
                let stale: Vec<Ipv4Net> = vxlan
                    .peers()
                    .map(|(peer, _)| peer)
                    .filter(|peer| peer.contains(&subnet.network()))
                    .collect();
                for peer in stale {
                    if let Err(error) = vxlan.remove_peer(peer).await {
                        tracing::warn!(%error, "removing the peer that held this host's new subnet failed");
                    }
                }
                Ok(())
            }
            Self::HostGw(host_gw) => {
                let stale: Vec<Ipv4Net> = host_gw
                    .peers()
                    .map(|(peer, _)| peer)
                    .filter(|peer| lease.ipv4.is_some_and(|own| peer.contains(&own.network())))
                    .collect();
                for peer in stale {
                    if let Err(error) = host_gw.remove_peer(peer).await {
                        tracing::warn!(%error, "removing the route to this host's new subnet failed");
                    }
                }
                Ok(())
            }
            Self::Alloc => Ok(()),
        }
    }

    /// Restarts the udp data path for a new lease, keeping the known peers.
    fn change_udp_lease(&mut self, lease: &LeaseKey) -> Result<(), BackendError> {
        let Self::Udp { backend, config } = self else {
            return Ok(());
        };
        let local_lease = lease.ipv4.ok_or(BackendError::NoIpv4Lease {
            backend: BackendType::Udp,
            key: *lease,
        })?;
        let peers = backend.peers().snapshot();
        let mut config = config.clone();
        config.local_lease = local_lease;

        let old = std::mem::replace(self, Self::Alloc);
        if let Self::Udp { backend, .. } = old {
            stop_udp(backend);
        }
        let backend = UdpBackend::start(config.clone())?;
        let kept = peers
            .into_iter()
            .filter(|(subnet, _)| !subnet.contains(&local_lease.network()));
        if let Err(error) = backend.peers().replace_all(kept) {
            tracing::warn!(%error, "restoring peers after the lease change failed; they return as their leases change");
        }
        *self = Self::Udp { backend, config };
        Ok(())
    }

    /// Stops the data path and removes its device or routes.
    pub async fn stop(self) {
        match self {
            Self::Udp { backend, .. } => stop_udp(backend),
            Self::Vxlan(vxlan) => {
                if let Err(error) = vxlan.shutdown().await {
                    tracing::warn!(%error, "the vxlan backend stopped with an error");
                }
            }
            Self::HostGw(host_gw) => {
                if let Err(error) = host_gw.shutdown().await {
                    tracing::warn!(%error, "the host-gw backend left a route behind");
                }
            }
            Self::Alloc => {}
        }
    }
}

fn stop_udp(backend: UdpBackend) {
    let tun = backend.tun_name().to_owned();
    if let Err(error) = backend.shutdown() {
        tracing::warn!(%tun, %error, "the udp backend stopped with an error");
    }
}

fn apply_udp(backend: &UdpBackend, event: &PeerEvent) {
    match event {
        PeerEvent::Added(lease) => {
            let Some(subnet) = udp_peer_subnet(lease) else {
                return;
            };
            match backend.peers().upsert(subnet, lease.attrs.public_ip) {
                Ok(()) => {
                    tracing::debug!(peer = %lease.key, public_ip = %lease.attrs.public_ip, "peer route installed")
                }
                Err(error) => tracing::warn!(peer = %lease.key, %error, "ignoring peer lease"),
            }
        }
        PeerEvent::Removed(lease) => {
            if let Some(subnet) = lease.key.ipv4 {
                if backend.peers().remove(subnet) {
                    tracing::debug!(peer = %lease.key, "peer route removed");
                }
            }
        }
    }
}

async fn apply_vxlan(vxlan: &mut VxlanBackend, event: &PeerEvent) {
    let lease = match event {
        PeerEvent::Added(lease) => lease,
        PeerEvent::Removed(lease) => {
            remove_vxlan_peer(vxlan, lease).await;
            return;
        }
    };
    let Some((subnet, data)) = vxlan_peer(vxlan, lease) else {
        // A peer that switched to another backend or lost its data keeps
        // no stale entries.
        remove_vxlan_peer(vxlan, lease).await;
        return;
    };
    match vxlan
        .upsert_peer(subnet, lease.attrs.public_ip, data.vtep_mac)
        .await
    {
        Ok(()) => {
            tracing::debug!(peer = %lease.key, public_ip = %lease.attrs.public_ip, vtep_mac = %data.vtep_mac, "peer route installed")
        }
        Err(error) => tracing::warn!(peer = %lease.key, %error, "ignoring peer lease"),
    }
}

async fn remove_vxlan_peer(vxlan: &mut VxlanBackend, lease: &Lease) {
    let Some(subnet) = lease.key.ipv4 else {
        return;
    };
    match vxlan.remove_peer(subnet).await {
        Ok(true) => tracing::debug!(peer = %lease.key, "peer route removed"),
        Ok(false) => {}
        Err(error) => tracing::warn!(peer = %lease.key, %error, "removing a peer failed"),
    }
}

/// Returns the subnet and VTEP of a peer lease that the vxlan backend can
/// reach: BackendType `vxlan`, valid BackendData and the same VNI.
fn vxlan_peer(vxlan: &VxlanBackend, lease: &Lease) -> Option<(Ipv4Net, VxlanData)> {
    if !peer_type_matches(lease, BackendType::Vxlan) {
        return None;
    }
    let subnet = lease.key.ipv4?;
    let data = match VxlanData::from_json(lease.attrs.backend_data.as_ref()) {
        Ok(data) => data,
        Err(error) => {
            tracing::warn!(peer = %lease.key, %error, "ignoring vxlan peer lease with unusable BackendData");
            return None;
        }
    };
    let own_vni = vxlan.backend_data().vni;
    // Leases that record no VNI come from daemons that only ran VNI 1.
    if data.vni.is_some() && data.vni != own_vni {
        tracing::warn!(peer = %lease.key, peer_vni = ?data.vni, vni = ?own_vni, "ignoring vxlan peer lease with another VNI");
        return None;
    }
    Some((subnet, data))
}

async fn apply_host_gw(host_gw: &mut HostGwBackend, event: &PeerEvent) {
    let lease = match event {
        PeerEvent::Added(lease) => lease,
        PeerEvent::Removed(lease) => {
            remove_host_gw_peer(host_gw, lease).await;
            return;
        }
    };
    let subnet = match lease.key.ipv4 {
        Some(subnet) if peer_type_matches(lease, BackendType::HostGw) => subnet,
        _ => {
            remove_host_gw_peer(host_gw, lease).await;
            return;
        }
    };
    match host_gw.upsert_peer(subnet, lease.attrs.public_ip).await {
        Ok(()) => {
            tracing::debug!(peer = %lease.key, public_ip = %lease.attrs.public_ip, "peer route installed")
        }
        Err(error) => tracing::warn!(peer = %lease.key, %error, "ignoring peer lease"),
    }
}

async fn remove_host_gw_peer(host_gw: &mut HostGwBackend, lease: &Lease) {
    let Some(subnet) = lease.key.ipv4 else {
        return;
    };
    match host_gw.remove_peer(subnet).await {
        Ok(true) => tracing::debug!(peer = %lease.key, "peer route removed"),
        Ok(false) => {}
        Err(error) => tracing::warn!(peer = %lease.key, %error, "removing a peer failed"),
    }
}

/// Returns whether a peer lease was written by a `kind` backend, warning
/// when it was not.
fn peer_type_matches(lease: &Lease, kind: BackendType) -> bool {
    let backend_type = lease.attrs.backend_type.as_str();
    if backend_type.eq_ignore_ascii_case(kind.name()) {
        return true;
    }
    tracing::warn!(peer = %lease.key, backend_type, expected = kind.name(), "ignoring peer lease of another backend type");
    false
}

/// Returns the IPv4 subnet of a peer lease that the udp backend can reach.
/// Its BackendType must be `udp`, or empty as old daemons wrote it.
fn udp_peer_subnet(lease: &Lease) -> Option<Ipv4Net> {
    let backend_type = lease.attrs.backend_type.as_str();
    if !backend_type.is_empty() && backend_type != "udp" {
        tracing::warn!(peer = %lease.key, backend_type, "ignoring peer lease of another backend type");
        return None;
    }
    lease.key.ipv4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> NetworkConfig {
        NetworkConfig::parse(json).unwrap()
    }

    #[test]
    fn supported_backend_types() {
        assert_eq!(
            backend_type(&config(r#"{"Network":"10.0.0.0/16"}"#)).unwrap(),
            BackendType::Udp
        );
        assert_eq!(
            backend_type(&config(
                r#"{"Network":"10.0.0.0/16","Backend":{"Type":"alloc"}}"#
            ))
            .unwrap(),
            BackendType::Alloc
        );
        assert_eq!(
            backend_type(&config(
                r#"{"Network":"10.0.0.0/16","Backend":{"Type":"vxlan"}}"#
            ))
            .unwrap(),
            BackendType::Vxlan
        );
        assert_eq!(
            backend_type(&config(
                r#"{"Network":"10.0.0.0/16","Backend":{"Type":"host-gw"}}"#
            ))
            .unwrap(),
            BackendType::HostGw
        );
    }

    #[tokio::test]
    async fn invalid_vxlan_option_rejected_before_device() {
        let config =
            config(r#"{"Network":"10.0.0.0/16","Backend":{"Type":"vxlan","VNI":16777216}}"#);
        let external = ExternalInterface {
            name: "eth0".to_owned(),
            index: 2,
            mtu: 1500,
            address: "192.0.2.10".parse().unwrap(),
            public_ip: "192.0.2.10".parse().unwrap(),
            public_ipv6: None,
        };
        let error = Prepared::new(BackendType::Vxlan, &config, &external)
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid vxlan backend option: Backend.VNI must be an integer from 1 to 16777215, or 0 for the default 1, found 16777216"
        );
    }

    #[test]
    fn unsupported_backend_types() {
        for name in ["aws-vpc", "ipip"] {
            let json = format!(r#"{{"Network":"10.0.0.0/16","Backend":{{"Type":"{name}"}}}}"#);
            let err = backend_type(&config(&json)).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("backend type \"{name}\" in the network config is not supported; supported types: udp, vxlan, host-gw, alloc")
            );
        }
    }
}
