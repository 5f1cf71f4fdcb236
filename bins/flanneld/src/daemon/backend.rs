//! The backend the network config names, started for this host's lease and
//! fed with the peers' leases.

use std::net::SocketAddrV4;

use ipnet::Ipv4Net;
use overlay_udp::{UdpBackend, UdpConfig};
use subnet_core::lease::LeaseKey;
use subnet_core::{BackendType, NetworkConfig};
use subnet_registry::{Lease, PeerEvent};

use crate::iface::ExternalInterface;

/// The backend types this daemon runs.
pub const SUPPORTED: [BackendType; 2] = [BackendType::Udp, BackendType::Alloc];

/// Smallest TUN MTU: the minimum every IPv4 link carries (RFC 791).
const MIN_TUN_MTU: u16 = 68;

/// Largest TUN MTU: one IPv4 packet must fit a UDP datagram's payload.
const MAX_TUN_MTU: u16 = 65_507;

/// A failure to start a backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The config names a backend this daemon does not run.
    #[error(
        "backend type {name:?} in the network config is not supported; supported types: udp, alloc"
    )]
    Unsupported {
        /// `Backend.Type` as written.
        name: String,
    },
    /// The udp backend needs an IPv4 network.
    #[error("the udp backend needs an IPv4 Network in the network config (EnableIPv4 is false)")]
    NoIpv4Network,
    /// The lease has no IPv4 subnet.
    #[error("the udp backend needs an IPv4 subnet, but lease {key} has none")]
    NoIpv4Lease {
        /// The lease key.
        key: LeaseKey,
    },
    /// `Backend.Port` is invalid.
    #[error("invalid udp backend options: {0}")]
    Options(#[from] subnet_core::ConfigError),
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
    /// Leases only, no data path.
    Alloc,
}

impl ActiveBackend {
    /// Starts the backend `kind` for `lease`.
    pub fn start(
        kind: BackendType,
        config: &NetworkConfig,
        lease: &LeaseKey,
        external: &ExternalInterface,
        check_sender: bool,
    ) -> Result<Self, BackendError> {
        match kind {
            BackendType::Udp => {
                let network = config
                    .ipv4
                    .as_ref()
                    .ok_or(BackendError::NoIpv4Network)?
                    .network();
                let local_lease = lease
                    .ipv4
                    .ok_or(BackendError::NoIpv4Lease { key: *lease })?;
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
            _ => Ok(Self::Alloc),
        }
    }

    /// Checks that the data path still carries packets; always true for
    /// alloc, which has none.
    pub fn is_running(&self) -> bool {
        match self {
            Self::Udp { backend, .. } => backend.is_running(),
            Self::Alloc => true,
        }
    }

    /// Applies one peer change to the data path.
    pub fn apply(&self, event: &PeerEvent) {
        let Self::Udp { backend, .. } = self else {
            return;
        };
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

    /// Restarts the data path for a new lease, keeping the known peers.
    pub fn change_lease(&mut self, lease: &LeaseKey) -> Result<(), BackendError> {
        let Self::Udp { backend, config } = self else {
            return Ok(());
        };
        let local_lease = lease
            .ipv4
            .ok_or(BackendError::NoIpv4Lease { key: *lease })?;
        let peers = backend.peers().snapshot();
        let mut config = config.clone();
        config.local_lease = local_lease;

        let old = std::mem::replace(self, Self::Alloc);
        old.stop();
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

    /// Stops the data path and removes its device.
    pub fn stop(self) {
        if let Self::Udp { backend, .. } = self {
            let tun = backend.tun_name().to_owned();
            if let Err(error) = backend.shutdown() {
                tracing::warn!(%tun, %error, "the udp backend stopped with an error");
            }
        }
    }
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
    }

    #[test]
    fn unsupported_backend_types() {
        for name in ["vxlan", "host-gw", "aws-vpc"] {
            let json = format!(r#"{{"Network":"10.0.0.0/16","Backend":{{"Type":"{name}"}}}}"#);
            let err = backend_type(&config(&json)).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("backend type \"{name}\" in the network config is not supported; supported types: udp, alloc")
            );
        }
    }
}
