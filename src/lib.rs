//! flannel-rs: one crate that re-exports the workspace's libraries, so that
//! the examples and benchmarks at the top of the repository can use them all.

pub use docker_opts;
pub use overlay_udp;
pub use subnet_core;
pub use subnet_registry;
