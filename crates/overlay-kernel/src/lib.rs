//! The kernel data paths of flannel's `vxlan` and `host-gw` backends.
//!
//! Both backends leave packet forwarding to the Linux kernel and only
//! program it over rtnetlink:
//!
//! - [`VxlanBackend`] owns a VXLAN device `flannel.<VNI>` and, for each
//!   peer, a route to its subnet through the device, a permanent neighbour
//!   entry and a forwarding-database entry pointing at its PublicIP.
//! - [`HostGwBackend`] installs, for each peer, a route to its subnet via
//!   its PublicIP on the underlay interface (hosts share a layer-2 segment).
//!
//! The option parsing ([`VxlanOptions`]) and the lease's `BackendData`
//! ([`VxlanData`]) are pure and do no I/O. This crate never talks to etcd,
//! never chooses the underlay interface and never writes subnet.env: the
//! daemon does that and feeds the peers' leases in.

mod data;
mod host_gw;
mod netlink;
mod options;
mod vxlan;

pub use data::{BackendDataError, MacParseError, VtepMac, VxlanData};
pub use host_gw::{HostGwBackend, HostGwConfig};
pub use netlink::{ConnectError, PeerError, PeerStep};
pub use options::{OptionsError, VxlanOptions, DEFAULT_VNI, MAX_VNI};
pub use vxlan::{AddressError, CreateError, ShutdownError, VxlanBackend, VxlanConfig};

/// Bytes of encapsulation a VXLAN packet carries on an IPv4 underlay: outer
/// IPv4 (20), UDP (8), VXLAN (8) and inner Ethernet (14) headers.
pub const VXLAN_OVERHEAD: u32 = 50;
