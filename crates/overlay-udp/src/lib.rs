//! The data path of flannel's `udp` backend: a TUN device, one UDP socket
//! and a forwarding table from peer subnets to peer PublicIPs.
//!
//! It is wire-compatible with the original flannel udp backend: each UDP
//! datagram (port 8285 by default) carries exactly one IPv4 packet with no
//! header of its own, so hosts running either implementation exchange
//! traffic during a migration.
//!
//! - [`packet`]: I/O-free checks and rewrites of single packets.
//! - [`PeerTable`]: the forwarding table, updated while traffic flows.
//! - [`UdpBackend`]: creates the device and socket and runs the packet loops
//!   on two OS threads.
//!
//! This crate never talks to etcd, never chooses leases and never changes
//! routes or firewall rules. The only route is the connected one that the
//! kernel adds for the TUN device's address. Besides the device's address,
//! MTU and link state it sets one sysctl: IPv6 off on that device. The
//! daemon feeds it peers.
//!
//! ```no_run
//! use std::net::{Ipv4Addr, SocketAddrV4};
//! use overlay_udp::{UdpBackend, UdpConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = UdpConfig::new(
//!     "172.16.37.0/24".parse()?,
//!     "172.16.0.0/16".parse()?,
//!     SocketAddrV4::new(Ipv4Addr::new(10, 25, 31, 61), 8285),
//! );
//! let backend = UdpBackend::start(config)?;
//! backend.peers().upsert("172.16.48.0/24".parse()?, Ipv4Addr::new(10, 25, 31, 62))?;
//! let stats = backend.stats();
//! assert_eq!(stats.drops.total(), 0);
//! backend.shutdown()?;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod backend;
mod engine;
pub mod packet;
mod stats;
mod sys;
mod table;

/// The IPv4 CIDR type of the public API, re-exported so that callers need
/// no direct `ipnet` dependency.
pub use ipnet::Ipv4Net;

pub use backend::{
    ConfigError, Offloads, ShutdownError, StartError, UdpBackend, UdpConfig, DEFAULT_PORT,
    DEFAULT_TUN_NAME, ENCAPSULATION_OVERHEAD,
};
pub use packet::DropReason;
pub use stats::{DropCounters, Stats, Traffic};
pub use table::{PeerError, PeerTable, TableError};
