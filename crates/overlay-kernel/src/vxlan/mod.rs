//! The vxlan backend: a kernel VXLAN device and, per peer, a route, a
//! neighbour entry and a forwarding-database entry.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoVxlan, LinkAttribute};
use rtnetlink::packet_route::neighbour::{NeighbourFlags, NeighbourMessage};
use rtnetlink::LinkVxlan;

use crate::data::{VtepMac, VxlanData};
use crate::netlink::{is_gone, route_via, Netlink, PeerError, PeerStep};
use crate::options::VxlanOptions;
use crate::VXLAN_OVERHEAD;

mod error;

pub use error::{AddressError, CreateError, ShutdownError};

/// Smallest device MTU: the minimum every IPv4 link carries (RFC 791).
const MIN_MTU: u32 = 68;

/// The settings the VXLAN device is created with, and the underlay it sends from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanConfig {
    /// The backend options from the network config.
    pub options: VxlanOptions,
    /// Name of the underlay interface, for messages.
    pub underlay_name: String,
    /// Index of the underlay interface (the device's `dev`).
    pub underlay_index: u32,
    /// The underlay interface's own IPv4 address (the device's `local`).
    /// Behind NAT this differs from the PublicIP peers send to.
    pub underlay_address: Ipv4Addr,
    /// The underlay interface's MTU.
    pub underlay_mtu: u32,
}

/// The path to one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerPath {
    /// Through the VXLAN device to the peer's VTEP.
    Vxlan { public_ip: Ipv4Addr, mac: VtepMac },
    /// `DirectRouting`: via the PublicIP on the shared underlay network.
    Direct { public_ip: Ipv4Addr },
}

impl PeerPath {
    fn public_ip(&self) -> Ipv4Addr {
        match *self {
            Self::Vxlan { public_ip, .. } | Self::Direct { public_ip } => public_ip,
        }
    }
}

/// A VXLAN device `flannel.<VNI>` and the peers programmed through it.
/// [`VxlanBackend::shutdown`] removes the device; dropping the value
/// leaves it in place.
#[derive(Debug)]
pub struct VxlanBackend {
    netlink: Netlink,
    config: VxlanConfig,
    name: String,
    index: u32,
    mtu: u32,
    vtep_mac: VtepMac,
    underlay_networks: Vec<Ipv4Net>,
    address: Option<Ipv4Net>,
    peers: HashMap<Ipv4Net, PeerPath>,
}

impl VxlanBackend {
    /// Creates the device, replacing one of the same name, and brings it up
    /// unaddressed. Must run inside a tokio runtime, in the network
    /// namespace the device belongs to.
    pub async fn create(config: VxlanConfig) -> Result<Self, CreateError> {
        let name = config.options.device_name();
        let mtu = device_mtu(&config).ok_or_else(|| CreateError::Mtu {
            device: name.clone(),
            underlay: config.underlay_name.clone(),
            underlay_mtu: config.underlay_mtu,
        })?;
        let netlink = Netlink::connect()?;
        let handle = &netlink.handle;

        // A device left by an earlier run may have other settings, and the
        // kernel cannot change a VXLAN device's VNI or port in place.
        if let Some((index, _)) =
            read_link(&netlink, &name)
                .await
                .map_err(|source| CreateError::Read {
                    device: name.clone(),
                    source: Box::new(source),
                })?
        {
            match handle.link().del(index).execute().await {
                Ok(()) => {
                    tracing::info!(device = %name, "removed the device left by an earlier run")
                }
                Err(error) if is_gone(&error) => {}
                Err(source) => {
                    return Err(CreateError::RemoveOld {
                        device: name,
                        source: Box::new(source),
                    })
                }
            }
        }

        let options = &config.options;
        let mut builder = LinkVxlan::new(&name, options.vni)
            .dev(config.underlay_index)
            .local(config.underlay_address)
            .learning(options.learning)
            .mtu(mtu)
            .up();
        if let Some(port) = options.port {
            builder = builder.port(port);
        }
        if options.gbp {
            builder = builder.append_info_data(InfoVxlan::Gbp(true));
        }
        handle
            .link()
            .add(builder.build())
            .execute()
            .await
            .map_err(|source| CreateError::Add {
                device: name.clone(),
                vni: options.vni,
                local: config.underlay_address,
                underlay: config.underlay_name.clone(),
                source: Box::new(source),
            })?;

        let (index, mac) = read_link(&netlink, &name)
            .await
            .map_err(|source| CreateError::Read {
                device: name.clone(),
                source: Box::new(source),
            })?
            .unwrap_or((0, None));
        let vtep_mac = mac.ok_or_else(|| CreateError::NoMac {
            device: name.clone(),
        })?;

        let underlay_networks = if options.direct_routing {
            ipv4_networks(&netlink, config.underlay_index)
                .await
                .map_err(|source| CreateError::UnderlayAddresses {
                    underlay: config.underlay_name.clone(),
                    source: Box::new(source),
                })?
        } else {
            Vec::new()
        };

        tracing::info!(device = %name, vni = options.vni, %vtep_mac, mtu, underlay = %config.underlay_name, "VXLAN device created");
        Ok(Self {
            netlink,
            config,
            name,
            index,
            mtu,
            vtep_mac,
            underlay_networks,
            address: None,
            peers: HashMap::new(),
        })
    }

    /// Returns the device name, `flannel.<VNI>`.
    pub fn device_name(&self) -> &str {
        &self.name
    }

    /// Returns the device MTU, which is also the overlay MTU for subnet.env.
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// Returns the device MAC address, which peers put in their FDB.
    pub fn vtep_mac(&self) -> VtepMac {
        self.vtep_mac
    }

    /// Returns the BackendData this host writes into its lease.
    pub fn backend_data(&self) -> VxlanData {
        VxlanData {
            vni: Some(self.config.options.vni),
            vtep_mac: self.vtep_mac,
        }
    }

    /// Addresses the device with the lease's network address as a /32 and
    /// removes any other IPv4 address it had, such as a previous lease's.
    pub async fn set_lease(&mut self, lease: Ipv4Net) -> Result<(), AddressError> {
        let address = Ipv4Net::new(lease.network(), 32).expect("32 is a valid IPv4 prefix");
        let failed = |source| AddressError {
            device: self.name.clone(),
            address,
            source: Box::new(source),
        };
        let handle = &self.netlink.handle;
        handle
            .address()
            .add(self.index, IpAddr::V4(address.addr()), 32)
            .replace()
            .execute()
            .await
            .map_err(failed)?;

        let mut addresses = handle
            .address()
            .get()
            .set_link_index_filter(self.index)
            .execute();
        let mut stale = Vec::new();
        while let Some(message) = addresses.try_next().await.map_err(failed)? {
            if message_ipv4(&message) != Some(address.addr()) {
                stale.push(message);
            }
        }
        for message in stale {
            match handle.address().del(message).execute().await {
                Ok(()) => {}
                Err(error) if is_gone(&error) => {}
                Err(source) => return Err(failed(source)),
            }
        }
        self.address = Some(address);
        tracing::info!(device = %self.name, %address, "VXLAN device addressed");
        Ok(())
    }

    /// Installs or updates the kernel state that reaches the peer leasing
    /// `subnet`: a neighbour entry (subnet's network address -> `vtep_mac`),
    /// an FDB entry (`vtep_mac` -> `public_ip`) and an on-link route to
    /// `subnet` via its network address through the device. With
    /// `DirectRouting` and a PublicIP on the underlay's own network, a
    /// route via the PublicIP on the underlay replaces all three.
    pub async fn upsert_peer(
        &mut self,
        subnet: Ipv4Net,
        public_ip: Ipv4Addr,
        vtep_mac: VtepMac,
    ) -> Result<(), PeerError> {
        let direct = self.config.options.direct_routing
            && self
                .underlay_networks
                .iter()
                .any(|network| network.contains(&public_ip));
        let path = if direct {
            PeerPath::Direct { public_ip }
        } else {
            PeerPath::Vxlan {
                public_ip,
                mac: vtep_mac,
            }
        };
        let previous = self.peers.get(&subnet).copied();
        if previous == Some(path) {
            return Ok(());
        }
        // The old entries would keep pointing at a VTEP that is gone.
        if let Some(previous) = previous {
            self.remove_path(subnet, previous).await?;
            self.peers.remove(&subnet);
        }

        match path {
            PeerPath::Direct { public_ip } => {
                let route = route_via(subnet, public_ip, self.config.underlay_index, false);
                self.netlink.replace_route(route).await.map_err(|source| {
                    self.peer_error("installing", PeerStep::Route, subnet, public_ip, source)
                })?;
            }
            PeerPath::Vxlan { public_ip, mac } => {
                let handle = &self.netlink.handle;
                handle
                    .neighbours()
                    .add(self.index, IpAddr::V4(subnet.network()))
                    .link_local_address(&mac.0)
                    .replace()
                    .execute()
                    .await
                    .map_err(|source| {
                        self.peer_error(
                            "installing",
                            PeerStep::Neighbour,
                            subnet,
                            public_ip,
                            source,
                        )
                    })?;
                handle
                    .neighbours()
                    .add_bridge(self.index, &mac.0)
                    .destination(IpAddr::V4(public_ip))
                    .flags(NeighbourFlags::Own)
                    .replace()
                    .execute()
                    .await
                    .map_err(|source| {
                        self.peer_error("installing", PeerStep::Fdb, subnet, public_ip, source)
                    })?;
                let route = route_via(subnet, subnet.network(), self.index, true);
                self.netlink.replace_route(route).await.map_err(|source| {
                    self.peer_error("installing", PeerStep::Route, subnet, public_ip, source)
                })?;
            }
        }
        self.peers.insert(subnet, path);
        tracing::debug!(device = %self.name, %subnet, %public_ip, %vtep_mac, direct, "peer installed");
        Ok(())
    }

    /// Removes what [`VxlanBackend::upsert_peer`] installed for `subnet`.
    /// Returns false when no peer with that subnet was installed.
    pub async fn remove_peer(&mut self, subnet: Ipv4Net) -> Result<bool, PeerError> {
        let Some(path) = self.peers.get(&subnet).copied() else {
            return Ok(false);
        };
        self.remove_path(subnet, path).await?;
        self.peers.remove(&subnet);
        tracing::debug!(device = %self.name, %subnet, public_ip = %path.public_ip(), "peer removed");
        Ok(true)
    }

    /// Returns the subnets of the installed peers, with their PublicIP.
    pub fn peers(&self) -> impl Iterator<Item = (Ipv4Net, Ipv4Addr)> + '_ {
        self.peers
            .iter()
            .map(|(subnet, path)| (*subnet, path.public_ip()))
    }

    /// Removes the device, and with it its address, routes, neighbour and
    /// FDB entries. A `DirectRouting` route on the underlay is removed
    /// first.
    pub async fn shutdown(mut self) -> Result<(), ShutdownError> {
        let direct: Vec<(Ipv4Net, PeerPath)> = self
            .peers
            .iter()
            .filter(|(_, path)| matches!(path, PeerPath::Direct { .. }))
            .map(|(subnet, path)| (*subnet, *path))
            .collect();
        for (subnet, path) in direct {
            if let Err(error) = self.remove_path(subnet, path).await {
                tracing::warn!(%error, "leaving a direct route behind");
            }
        }
        self.peers.clear();

        match self.netlink.handle.link().del(self.index).execute().await {
            Ok(()) => {}
            Err(error) if is_gone(&error) => {}
            Err(source) => {
                return Err(ShutdownError {
                    device: self.name,
                    source: Box::new(source),
                })
            }
        }
        tracing::info!(device = %self.name, "VXLAN device removed");
        Ok(())
    }

    async fn remove_path(&self, subnet: Ipv4Net, path: PeerPath) -> Result<(), PeerError> {
        let handle = &self.netlink.handle;
        let public_ip = path.public_ip();
        let ignore_gone = |step: PeerStep, result: Result<(), rtnetlink::Error>| match result {
            Err(error) if !is_gone(&error) => {
                Err(self.peer_error("removing", step, subnet, public_ip, error))
            }
            _ => Ok(()),
        };
        match path {
            PeerPath::Direct { public_ip } => {
                let route = route_via(subnet, public_ip, self.config.underlay_index, false);
                ignore_gone(PeerStep::Route, handle.route().del(route).execute().await)
            }
            PeerPath::Vxlan { public_ip, mac } => {
                let route = route_via(subnet, subnet.network(), self.index, true);
                ignore_gone(PeerStep::Route, handle.route().del(route).execute().await)?;

                let mut neighbour = handle
                    .neighbours()
                    .add(self.index, IpAddr::V4(subnet.network()));
                let message: NeighbourMessage = neighbour.message_mut().clone();
                ignore_gone(
                    PeerStep::Neighbour,
                    handle.neighbours().del(message).execute().await,
                )?;

                let mut fdb = handle
                    .neighbours()
                    .add_bridge(self.index, &mac.0)
                    .destination(IpAddr::V4(public_ip))
                    .flags(NeighbourFlags::Own);
                let message: NeighbourMessage = fdb.message_mut().clone();
                ignore_gone(
                    PeerStep::Fdb,
                    handle.neighbours().del(message).execute().await,
                )
            }
        }
    }

    fn peer_error(
        &self,
        action: &'static str,
        step: PeerStep,
        subnet: Ipv4Net,
        public_ip: Ipv4Addr,
        source: rtnetlink::Error,
    ) -> PeerError {
        let device = match (step, self.peers.get(&subnet)) {
            (PeerStep::Route, Some(PeerPath::Direct { .. })) => self.config.underlay_name.clone(),
            _ => self.name.clone(),
        };
        PeerError {
            action,
            step,
            device,
            subnet,
            public_ip,
            source: Box::new(source),
        }
    }
}

/// Computes the device MTU: `Backend.MTU`, else the underlay's minus the VXLAN
/// headers; `None` when that is below the IPv4 minimum.
fn device_mtu(config: &VxlanConfig) -> Option<u32> {
    let mtu = config
        .options
        .mtu
        .unwrap_or_else(|| config.underlay_mtu.saturating_sub(VXLAN_OVERHEAD));
    (mtu >= MIN_MTU).then_some(mtu)
}

/// Looks a link up by name and returns its index and 6-byte MAC; `None`
/// when no link has that name.
async fn read_link(
    netlink: &Netlink,
    name: &str,
) -> Result<Option<(u32, Option<VtepMac>)>, rtnetlink::Error> {
    let mut links = netlink
        .handle
        .link()
        .get()
        .match_name(name.to_owned())
        .execute();
    match links.try_next().await {
        Ok(Some(message)) => {
            let mac = message
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    LinkAttribute::Address(bytes) => {
                        <[u8; 6]>::try_from(bytes.as_slice()).ok().map(VtepMac)
                    }
                    _ => None,
                });
            Ok(Some((message.header.index, mac)))
        }
        Ok(None) => Ok(None),
        Err(error) if is_gone(&error) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Lists the IPv4 networks of interface `index`.
async fn ipv4_networks(netlink: &Netlink, index: u32) -> Result<Vec<Ipv4Net>, rtnetlink::Error> {
    let mut addresses = netlink
        .handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    let mut networks = Vec::new();
    while let Some(message) = addresses.try_next().await? {
        if let Some(address) = message_ipv4(&message) {
            if let Ok(net) = Ipv4Net::new(address, message.header.prefix_len) {
                networks.push(net.trunc());
            }
        }
    }
    Ok(networks)
}

/// Returns the IPv4 address an address message carries, if any.
fn message_ipv4(message: &rtnetlink::packet_route::address::AddressMessage) -> Option<Ipv4Addr> {
    message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            AddressAttribute::Address(IpAddr::V4(address)) => Some(*address),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(underlay_mtu: u32, mtu: Option<u32>) -> VxlanConfig {
        VxlanConfig {
            options: VxlanOptions {
                mtu,
                ..VxlanOptions::default()
            },
            underlay_name: "eth0".to_owned(),
            underlay_index: 2,
            underlay_address: Ipv4Addr::new(10, 0, 0, 1),
            underlay_mtu,
        }
    }

    #[test]
    fn mtu_from_underlay_or_option() {
        assert_eq!(device_mtu(&config(1500, None)), Some(1450));
        assert_eq!(device_mtu(&config(9000, None)), Some(8950));
        assert_eq!(device_mtu(&config(1500, Some(1400))), Some(1400));
        assert_eq!(device_mtu(&config(100, None)), None);
    }
}
