//! Where the hosts of a flannel network agree on who owns which subnet.
//!
//! - [`Registry`]: the store of the network config and the subnet leases,
//!   with two implementations: [`EtcdRegistry`] on etcd v3, with the keys
//!   and values that flannel uses, [`EtcdV2Registry`] on the etcd v2 keys
//!   API that flannel 0.5 used, and [`MemoryRegistry`] in process memory
//!   with a clock the caller controls.
//! - [`LeaseManager`]: waits for the network config, acquires a subnet
//!   lease for this host, keeps it renewed, and streams the other hosts'
//!   leases to the backend.
//! - [`testing`]: starts a throwaway etcd server for tests.
//!
//! This crate never configures interfaces, routes or packets, and never
//! deletes or rewrites leases other than its own.

#![warn(missing_docs)]

mod backoff;
pub mod clock;
pub mod error;
pub mod etcd;
pub mod etcd_v2;
pub mod manager;
pub mod memory;
pub mod registry;
pub mod testing;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{CreateLeaseError, DeleteLeaseError, RegistryError, RenewLeaseError};
pub use etcd::{ConnectError, EtcdConfig, EtcdRegistry};
pub use etcd_v2::{ConnectError as EtcdV2ConnectError, EtcdV2Registry};
pub use manager::{
    AcquireError, LeaseEvent, LeaseKeeper, LeaseManager, ManagerConfig, PeerEvent, PeerWatch,
};
pub use memory::MemoryRegistry;
pub use registry::{
    ConfigValue, Expiry, InvalidLease, Lease, LeaseReadError, LeaseSnapshot, LeaseWatch, Registry,
    RegistryEvent, Revision,
};

/// The key prefix flannel uses when none is configured.
pub const DEFAULT_PREFIX: &str = "/coreos.com/network";
