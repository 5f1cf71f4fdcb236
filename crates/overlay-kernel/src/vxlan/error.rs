//! Failures of the vxlan backend's device operations.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::netlink::ConnectError;

/// Creating the VXLAN device failed.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// No netlink socket.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The underlay MTU leaves too little room for the VXLAN headers.
    #[error("interface {underlay} has MTU {underlay_mtu}, which leaves no valid MTU for {device} (at least 68 after 50 bytes of VXLAN headers); set Backend.MTU or use an interface with a larger MTU")]
    Mtu {
        /// The VXLAN device.
        device: String,
        /// The underlay interface.
        underlay: String,
        /// Its MTU.
        underlay_mtu: u32,
    },
    /// A device with the same name exists and could not be removed.
    #[error("removing the existing device {device} before creating it again failed: {source}")]
    RemoveOld {
        /// The VXLAN device.
        device: String,
        /// The error the kernel returned.
        #[source]
        source: Box<rtnetlink::Error>,
    },
    /// The kernel rejected the device.
    #[error("creating VXLAN device {device} (VNI {vni}, local {local}, dev {underlay}) failed: {source}")]
    Add {
        /// The VXLAN device.
        device: String,
        /// Its VNI.
        vni: u32,
        /// Its local address.
        local: Ipv4Addr,
        /// The underlay interface.
        underlay: String,
        /// The error the kernel returned.
        #[source]
        source: Box<rtnetlink::Error>,
    },
    /// Reading the new device back failed.
    #[error("reading device {device} after creating it failed: {source}")]
    Read {
        /// The VXLAN device.
        device: String,
        /// The error the kernel returned.
        #[source]
        source: Box<rtnetlink::Error>,
    },
    /// The new device has no MAC address to publish.
    #[error("device {device} has no 6-byte MAC address after creation")]
    NoMac {
        /// The VXLAN device.
        device: String,
    },
    /// Listing the underlay's networks for `DirectRouting` failed.
    #[error("listing the IPv4 addresses of {underlay} for Backend.DirectRouting failed: {source}")]
    UnderlayAddresses {
        /// The underlay interface.
        underlay: String,
        /// The error the kernel returned.
        #[source]
        source: Box<rtnetlink::Error>,
    },
}

/// Addressing the VXLAN device with the lease failed.
#[derive(Debug, thiserror::Error)]
#[error("setting address {address} on {device} failed: {source}")]
pub struct AddressError {
    /// The VXLAN device.
    pub device: String,
    /// The address, the lease's network address as a /32.
    pub address: Ipv4Net,
    /// The error the kernel returned.
    #[source]
    pub source: Box<rtnetlink::Error>,
}

/// Removing the VXLAN device failed.
#[derive(Debug, thiserror::Error)]
#[error("removing device {device} failed: {source}")]
pub struct ShutdownError {
    /// The VXLAN device.
    pub device: String,
    /// The error the kernel returned.
    #[source]
    pub source: Box<rtnetlink::Error>,
}
