//! Turns flannel's `subnet.env` into settings for the container runtime, so
//! that Docker's bridge (or a CNI bridge) sits on this host's flannel subnet.
//!
//! [`DockerOptions`] is the typed form: the bridge address from
//! `FLANNEL_SUBNET`, the MTU from `FLANNEL_MTU`, Docker's IP masquerading as
//! the opposite of `FLANNEL_IPMASQ`, and on request the IPv6 subnet. Three
//! renderers write it out:
//!
//! - [`EnvFile`]: the env file of `mk-docker-opts.sh`, byte for byte
//!   (`DOCKER_OPT_BIP="--bip=…"` lines and the combined `DOCKER_OPTS` line);
//! - [`daemon_json::merge`]: the `bip`, `mtu` and `ip-masq` keys of Docker's
//!   `daemon.json`, keeping the other keys of an existing file;
//! - [`CniNetwork`]: a CNI network configuration for the bridge plugin with
//!   host-local IPAM over `FLANNEL_SUBNET`.
//!
//! The renderers are pure functions of their input. The only file access is
//! reading `subnet.env` ([`DockerOptions::read`]) and reading and replacing
//! `daemon.json` ([`daemon_json::merge_file`]). This crate never talks to
//! Docker, etcd or the network, and never starts or restarts a daemon.
//!
//! ```
//! use docker_opts::{CniNetwork, DockerOptions, EnvFile, Selection};
//! use subnet_core::subnet_env::SubnetEnv;
//!
//! let env = SubnetEnv::parse(
//!     "FLANNEL_NETWORK=172.16.0.0/16\n\
//!      FLANNEL_SUBNET=172.16.37.1/24\n\
//!      FLANNEL_MTU=1472\n\
//!      FLANNEL_IPMASQ=true\n",
//! )?;
//! let options = DockerOptions::from_subnet_env(&env, Selection::default())?;
//!
//! let env_file = EnvFile::default().render(&options)?;
//! assert_eq!(
//!     env_file,
//!     "DOCKER_OPT_BIP=\"--bip=172.16.37.1/24\"\n\
//!      DOCKER_OPT_IPMASQ=\"--ip-masq=false\"\n\
//!      DOCKER_OPT_MTU=\"--mtu=1472\"\n\
//!      DOCKER_OPTS=\" --bip=172.16.37.1/24 --ip-masq=false --mtu=1472 \"\n"
//! );
//!
//! let daemon_json = docker_opts::daemon_json::merge(Some(r#"{"log-driver": "journald"}"#), &options)?;
//! assert!(daemon_json.contains("\"log-driver\": \"journald\""));
//! assert!(daemon_json.contains("\"bip\": \"172.16.37.1/24\""));
//!
//! let cni = CniNetwork::default().render(&options)?;
//! assert!(cni.contains("\"subnet\": \"172.16.37.0/24\""));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod cni;
pub mod daemon_json;
pub mod env_file;
pub mod options;

pub use cni::{CniError, CniNetwork};
pub use daemon_json::{DaemonJsonError, DaemonJsonFileError};
pub use env_file::{EnvFile, EnvFileError};
pub use options::{DockerFlag, DockerOptions, OptionsError, ReadOptionsError, Selection};
