//! The host-gw backend: a route to each peer's subnet via its PublicIP.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::netlink::{is_gone, route_via, ConnectError, Netlink, PeerError, PeerStep};

/// The underlay interface the routes leave by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostGwConfig {
    /// Name of the underlay interface, for messages.
    pub underlay_name: String,
    /// Index of the underlay interface.
    pub underlay_index: u32,
}

/// Routes to the peers' subnets via their PublicIP, which must be on the
/// underlay's own layer-2 segment. Only routes this value installed are
/// ever removed: [`HostGwBackend::shutdown`] removes them all, dropping
/// the value leaves them in place.
#[derive(Debug)]
pub struct HostGwBackend {
    netlink: Netlink,
    config: HostGwConfig,
    routes: HashMap<Ipv4Net, Ipv4Addr>,
}

impl HostGwBackend {
    /// Opens the netlink socket. Must run inside a tokio runtime, in the
    /// network namespace of the underlay interface.
    pub fn new(config: HostGwConfig) -> Result<Self, ConnectError> {
        Ok(Self {
            netlink: Netlink::connect()?,
            config,
            routes: HashMap::new(),
        })
    }

    /// Installs or replaces the route to `subnet` via `public_ip` on the
    /// underlay. The kernel rejects a PublicIP that is not directly
    /// reachable on the underlay (ENETUNREACH).
    pub async fn upsert_peer(
        &mut self,
        subnet: Ipv4Net,
        public_ip: Ipv4Addr,
    ) -> Result<(), PeerError> {
        let previous = self.routes.get(&subnet).copied();
        if previous == Some(public_ip) {
            return Ok(());
        }
        let route = route_via(subnet, public_ip, self.config.underlay_index, false);
        self.netlink
            .replace_route(route)
            .await
            .map_err(|source| self.peer_error("installing", subnet, public_ip, source))?;
        self.routes.insert(subnet, public_ip);
        tracing::debug!(underlay = %self.config.underlay_name, %subnet, %public_ip, "route installed");
        Ok(())
    }

    /// Removes the route to `subnet` if this value installed it. Returns
    /// false when it did not.
    pub async fn remove_peer(&mut self, subnet: Ipv4Net) -> Result<bool, PeerError> {
        let Some(public_ip) = self.routes.get(&subnet).copied() else {
            return Ok(false);
        };
        let route = route_via(subnet, public_ip, self.config.underlay_index, false);
        match self.netlink.handle.route().del(route).execute().await {
            Ok(()) => {}
            Err(error) if is_gone(&error) => {}
            Err(source) => return Err(self.peer_error("removing", subnet, public_ip, source)),
        }
        self.routes.remove(&subnet);
        tracing::debug!(underlay = %self.config.underlay_name, %subnet, %public_ip, "route removed");
        Ok(true)
    }

    /// Returns the installed routes: each peer's subnet with its PublicIP.
    pub fn peers(&self) -> impl Iterator<Item = (Ipv4Net, Ipv4Addr)> + '_ {
        self.routes
            .iter()
            .map(|(subnet, public_ip)| (*subnet, *public_ip))
    }

    /// Removes every route this value installed. Tries them all and
    /// returns the first failure.
    pub async fn shutdown(mut self) -> Result<(), PeerError> {
        let subnets: Vec<Ipv4Net> = self.routes.keys().copied().collect();
        let mut first_error = None;
        for subnet in subnets {
            if let Err(error) = self.remove_peer(subnet).await {
                tracing::warn!(%error, "leaving a route behind");
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn peer_error(
        &self,
        action: &'static str,
        subnet: Ipv4Net,
        public_ip: Ipv4Addr,
        source: rtnetlink::Error,
    ) -> PeerError {
        PeerError {
            action,
            step: PeerStep::Route,
            device: self.config.underlay_name.clone(),
            subnet,
            public_ip,
            source: Box::new(source),
        }
    }
}
