//! Typed Docker daemon options derived from a `subnet.env` file.

use std::fmt;
use std::path::{Path, PathBuf};

use ipnet::{Ipv4Net, Ipv6Net};
use subnet_core::subnet_env::{ReadError, SubnetEnv};

/// The choice of optional settings in [`DockerOptions`].
///
/// The default matches `mk-docker-opts.sh`: `--ip-masq` included when
/// `FLANNEL_IPMASQ` is set, IPv6 left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Selection {
    /// Leave out the IP-masquerade setting, for Docker versions that lack
    /// `--ip-masq` (the script's `-m`).
    pub omit_ip_masq: bool,
    /// Add Docker's IPv6 settings from `FLANNEL_IPV6_SUBNET`. The subnet.env
    /// must then be dual-stack.
    pub ipv6: bool,
}

/// The Docker daemon settings that put Docker's bridge on this host's
/// flannel subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DockerOptions {
    /// `--bip`: the bridge's address and prefix, from `FLANNEL_SUBNET`.
    pub bip: Ipv4Net,
    /// `--ip-masq`: whether Docker masquerades. The opposite of
    /// `FLANNEL_IPMASQ`, because only one of flanneld and Docker should.
    /// `None` when `FLANNEL_IPMASQ` is not set or the setting was omitted.
    pub ip_masq: Option<bool>,
    /// `--mtu`: the bridge MTU in bytes, from `FLANNEL_MTU`.
    pub mtu: Option<u32>,
    /// `FLANNEL_IPV6_SUBNET` as written (this host's first IPv6 address with
    /// the lease's prefix), present only when IPv6 was selected. Docker gets
    /// `--ipv6` and `--fixed-cidr-v6` with the network of this subnet.
    pub ipv6_subnet: Option<Ipv6Net>,
}

/// One Docker daemon command-line option, as `mk-docker-opts` writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DockerFlag {
    /// `--bip=ADDRESS/PREFIX`.
    Bip(Ipv4Net),
    /// `--ip-masq=true|false`.
    IpMasq(bool),
    /// `--mtu=BYTES`.
    Mtu(u32),
    /// `--ipv6`.
    Ipv6,
    /// `--fixed-cidr-v6=NETWORK/PREFIX`.
    FixedCidrV6(Ipv6Net),
}

impl DockerFlag {
    /// Returns the variable name of this option in the env file, such as
    /// `DOCKER_OPT_BIP`.
    pub fn variable(&self) -> &'static str {
        match self {
            DockerFlag::Bip(_) => "DOCKER_OPT_BIP",
            DockerFlag::IpMasq(_) => "DOCKER_OPT_IPMASQ",
            DockerFlag::Mtu(_) => "DOCKER_OPT_MTU",
            DockerFlag::Ipv6 => "DOCKER_OPT_IPV6",
            DockerFlag::FixedCidrV6(_) => "DOCKER_OPT_FIXED_CIDR_V6",
        }
    }
}

impl fmt::Display for DockerFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerFlag::Bip(bip) => write!(f, "--bip={bip}"),
            DockerFlag::IpMasq(ip_masq) => write!(f, "--ip-masq={ip_masq}"),
            DockerFlag::Mtu(mtu) => write!(f, "--mtu={mtu}"),
            DockerFlag::Ipv6 => f.write_str("--ipv6"),
            DockerFlag::FixedCidrV6(cidr) => write!(f, "--fixed-cidr-v6={cidr}"),
        }
    }
}

/// Error from [`DockerOptions::from_subnet_env`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// `FLANNEL_SUBNET` is not set, so there is no bridge address. The
    /// script wrote options without `--bip` here, which leaves Docker on its
    /// default bridge outside the overlay.
    #[error("FLANNEL_SUBNET is not set; flanneld writes it once it holds a lease")]
    MissingSubnet,
    /// IPv6 was selected but `FLANNEL_IPV6_SUBNET` is not set.
    #[error("IPv6 options were requested but FLANNEL_IPV6_SUBNET is not set; it is set only when the network config enables IPv6")]
    MissingIpv6Subnet,
}

/// Error from [`DockerOptions::read`]: the subnet.env could not be read or
/// does not give the options.
#[derive(Debug, thiserror::Error)]
pub enum ReadOptionsError {
    /// The file could not be read or parsed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The file parsed but lacks a variable the options need.
    #[error("subnet.env {path}: {source}")]
    Options {
        /// The file that was read.
        path: PathBuf,
        /// The missing variable.
        source: OptionsError,
    },
}

impl DockerOptions {
    /// Derives the options from parsed subnet.env variables.
    pub fn from_subnet_env(env: &SubnetEnv, selection: Selection) -> Result<Self, OptionsError> {
        let bip = env.subnet.ok_or(OptionsError::MissingSubnet)?;

        let ip_masq = if selection.omit_ip_masq {
            None
        } else {
            env.ipmasq.map(|flannel_masquerades| !flannel_masquerades)
        };

        let ipv6_subnet = if selection.ipv6 {
            Some(env.ipv6_subnet.ok_or(OptionsError::MissingIpv6Subnet)?)
        } else {
            None
        };

        Ok(DockerOptions {
            bip,
            ip_masq,
            mtu: env.mtu,
            ipv6_subnet,
        })
    }

    /// Reads the subnet.env at `path` and derives the options from it.
    pub fn read(path: &Path, selection: Selection) -> Result<Self, ReadOptionsError> {
        let env = SubnetEnv::read(path)?;
        DockerOptions::from_subnet_env(&env, selection).map_err(|source| {
            ReadOptionsError::Options {
                path: path.to_owned(),
                source,
            }
        })
    }

    /// Lists the options as Docker command-line flags, in the order
    /// `mk-docker-opts.sh` writes them (`--bip`, `--ip-masq`, `--mtu`), then
    /// `--ipv6` and `--fixed-cidr-v6` when IPv6 was selected.
    pub fn flags(&self) -> Vec<DockerFlag> {
        let mut flags = vec![DockerFlag::Bip(self.bip)];
        if let Some(ip_masq) = self.ip_masq {
            flags.push(DockerFlag::IpMasq(ip_masq));
        }
        if let Some(mtu) = self.mtu {
            flags.push(DockerFlag::Mtu(mtu));
        }
        if let Some(subnet) = self.ipv6_subnet {
            flags.push(DockerFlag::Ipv6);
            flags.push(DockerFlag::FixedCidrV6(subnet.trunc()));
        }
        flags
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dual_stack_env() -> SubnetEnv {
        SubnetEnv::parse(
            "FLANNEL_NETWORK=172.16.0.0/16\nFLANNEL_SUBNET=172.16.37.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n\
             FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:25::1/64\n",
        )
        .unwrap()
    }

    #[test]
    fn ip_masq_is_inverted() {
        let options =
            DockerOptions::from_subnet_env(&dual_stack_env(), Selection::default()).unwrap();
        assert_eq!(options.ip_masq, Some(false));
    }

    #[test]
    fn omit_ip_masq_drops_setting() {
        let selection = Selection {
            omit_ip_masq: true,
            ipv6: false,
        };
        let options = DockerOptions::from_subnet_env(&dual_stack_env(), selection).unwrap();
        assert_eq!(options.ip_masq, None);
    }

    #[test]
    fn ipv6_uses_subnet_network() {
        let selection = Selection {
            omit_ip_masq: false,
            ipv6: true,
        };
        let options = DockerOptions::from_subnet_env(&dual_stack_env(), selection).unwrap();
        assert_eq!(
            options.ipv6_subnet,
            Some("fc00:0:0:25::1/64".parse().unwrap())
        );
        let rendered: Vec<String> = options.flags().iter().map(ToString::to_string).collect();
        assert_eq!(
            rendered,
            [
                "--bip=172.16.37.1/24",
                "--ip-masq=false",
                "--mtu=1472",
                "--ipv6",
                "--fixed-cidr-v6=fc00:0:0:25::/64"
            ]
        );
    }

    #[test]
    fn missing_subnet_is_error() {
        let env = SubnetEnv {
            mtu: Some(1472),
            ..SubnetEnv::default()
        };
        assert_eq!(
            DockerOptions::from_subnet_env(&env, Selection::default()),
            Err(OptionsError::MissingSubnet)
        );
    }

    #[test]
    fn ipv6_without_ipv6_subnet_is_error() {
        let env = SubnetEnv {
            subnet: Some("10.5.1.1/24".parse().unwrap()),
            ..SubnetEnv::default()
        };
        let selection = Selection {
            omit_ip_masq: false,
            ipv6: true,
        };
        assert_eq!(
            DockerOptions::from_subnet_env(&env, selection),
            Err(OptionsError::MissingIpv6Subnet)
        );
    }
}
