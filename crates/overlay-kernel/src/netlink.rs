//! The rtnetlink connection both backends share, and the messages and
//! errors for their per-peer kernel state.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use rtnetlink::packet_route::route::RouteMessage;
use rtnetlink::{Handle, RouteMessageBuilder};
use tokio::task::JoinHandle;

/// Opening the netlink socket failed.
#[derive(Debug, thiserror::Error)]
#[error("opening a netlink route socket failed: {0}")]
pub struct ConnectError(#[source] pub std::io::Error);

/// An rtnetlink connection whose background task ends when it is dropped.
#[derive(Debug)]
pub(crate) struct Netlink {
    pub(crate) handle: Handle,
    task: JoinHandle<()>,
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace and runs
    /// its connection on the current tokio runtime.
    pub(crate) fn connect() -> Result<Self, ConnectError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(ConnectError)?;
        let task = tokio::spawn(connection);
        Ok(Self { handle, task })
    }

    /// Adds `route`, replacing a route to the same destination.
    pub(crate) async fn replace_route(&self, route: RouteMessage) -> Result<(), rtnetlink::Error> {
        self.handle.route().add(route).replace().execute().await
    }
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The part of a peer's kernel state that an operation touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerStep {
    /// The route to the peer's subnet.
    Route,
    /// The permanent neighbour entry for the peer's network address.
    Neighbour,
    /// The forwarding-database entry for the peer's VTEP MAC.
    Fdb,
}

impl fmt::Display for PeerStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Route => "route",
            Self::Neighbour => "neighbour entry",
            Self::Fdb => "forwarding-database entry",
        })
    }
}

/// Installing or removing a peer's route, neighbour or FDB entry failed.
#[derive(Debug, thiserror::Error)]
#[error("{action} the {step} for peer {public_ip} (subnet {subnet}) on {device} failed: {source}")]
pub struct PeerError {
    /// `installing` or `removing`.
    pub action: &'static str,
    /// The part that failed.
    pub step: PeerStep,
    /// The device the entry belongs to.
    pub device: String,
    /// The peer's subnet.
    pub subnet: Ipv4Net,
    /// The peer's PublicIP.
    pub public_ip: Ipv4Addr,
    /// The kernel's error, boxed because netlink errors carry the whole
    /// rejected message.
    #[source]
    pub source: Box<rtnetlink::Error>,
}

/// Returns whether the kernel rejected a deletion because the object is
/// already gone (ENOENT, ESRCH, ENODEV or EADDRNOTAVAIL).
pub(crate) fn is_gone(error: &rtnetlink::Error) -> bool {
    const GONE: [i32; 4] = [libc::ENOENT, libc::ESRCH, libc::ENODEV, libc::EADDRNOTAVAIL];
    match error {
        rtnetlink::Error::NetlinkError(message) => {
            message.code.is_some_and(|code| GONE.contains(&-code.get()))
        }
        _ => false,
    }
}

/// Builds a route to `subnet` via `gateway` out of interface `index`,
/// marked on-link when the gateway is not inside any of the interface's
/// own networks (the vxlan device's /32).
pub(crate) fn route_via(
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    index: u32,
    onlink: bool,
) -> RouteMessage {
    let builder = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(subnet.network(), subnet.prefix_len())
        .gateway(gateway)
        .output_interface(index);
    if onlink {
        builder.onlink().build()
    } else {
        builder.build()
    }
}
