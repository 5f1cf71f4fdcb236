//! Pure building blocks shared by every part of flannel-rs: CIDR arithmetic,
//! the network configuration stored at `<prefix>/config`, the range of
//! leasable subnets, lease keys and values, and the `subnet.env` file.
//!
//! This crate does no I/O beyond writing and reading `subnet.env`: no
//! sockets, no async runtime, no etcd. Everything here can be used from a
//! single-threaded tool or a test without setup.

pub mod backend;
pub mod cidr;
pub mod config;
pub mod lease;
pub mod range;
pub mod subnet_env;

pub use backend::BackendType;
pub use cidr::Cidr;
pub use config::{BackendConfig, ConfigError, NetworkConfig};
pub use range::SubnetRange;
