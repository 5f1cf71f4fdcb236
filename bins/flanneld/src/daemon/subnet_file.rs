//! subnet.env as flanneld writes it, and the subnet a previous run left in
//! it.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ipnet::{Ipv4Net, Ipv6Net};
use subnet_core::lease::LeaseKey;
use subnet_core::subnet_env::{ReadError, SubnetEnv};
use subnet_core::NetworkConfig;

/// Reads the lease key that a previous run recorded in the subnet.env at
/// `path`, if the file exists and parses. An unreadable or invalid file is logged and
/// ignored: the daemon then gets its own lease or a free subnet.
pub fn previous_lease_key(path: &Path) -> Option<LeaseKey> {
    let env = match SubnetEnv::read(path) {
        Ok(env) => env,
        Err(ReadError::NotFound { .. }) => return None,
        Err(error) => {
            tracing::warn!(%error, "ignoring the previous subnet.env");
            return None;
        }
    };
    let key = match (env.subnet, env.ipv6_subnet) {
        (Some(ipv4), Some(ipv6)) => LeaseKey::dual_stack(ipv4, ipv6),
        (Some(ipv4), None) => LeaseKey::ipv4(ipv4),
        (None, Some(ipv6)) => LeaseKey::ipv6(ipv6),
        (None, None) => return None,
    };
    tracing::info!(path = %path.display(), previous = %key, "found the previous subnet in subnet.env");
    Some(key)
}

/// Builds the variables for `lease` under `config`. Each subnet is written
/// as its first address with the lease's prefix length (172.16.37.0/24
/// becomes 172.16.37.1/24).
pub fn subnet_env(config: &NetworkConfig, lease: &LeaseKey, mtu: u32, ip_masq: bool) -> SubnetEnv {
    SubnetEnv {
        network: config.ipv4.as_ref().map(|range| range.network()),
        subnet: lease.ipv4.map(first_address_v4),
        mtu: Some(mtu),
        ipmasq: Some(ip_masq),
        ipv6_network: config.ipv6.as_ref().map(|range| range.network()),
        ipv6_subnet: lease.ipv6.map(first_address_v6),
    }
}

fn first_address_v4(subnet: Ipv4Net) -> Ipv4Net {
    let first = Ipv4Addr::from(u32::from(subnet.network()).wrapping_add(1));
    Ipv4Net::new(first, subnet.prefix_len()).expect("prefix length comes from a valid network")
}

fn first_address_v6(subnet: Ipv6Net) -> Ipv6Net {
    let first = Ipv6Addr::from(u128::from(subnet.network()).wrapping_add(1));
    Ipv6Net::new(first, subnet.prefix_len()).expect("prefix length comes from a valid network")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_flannel() {
        let config = NetworkConfig::parse(r#"{"Network":"172.16.0.0/16"}"#).unwrap();
        let lease = LeaseKey::ipv4("172.16.37.0/24".parse().unwrap());
        let env = subnet_env(&config, &lease, 1472, false);
        assert_eq!(
            env.render(),
            "FLANNEL_NETWORK=172.16.0.0/16\nFLANNEL_SUBNET=172.16.37.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n"
        );
    }

    #[test]
    fn renders_dual_stack() {
        let config = NetworkConfig::parse(
            r#"{"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48"}"#,
        )
        .unwrap();
        let lease = LeaseKey::dual_stack(
            "10.5.1.0/24".parse().unwrap(),
            "fc00:0:0:1::/64".parse().unwrap(),
        );
        let env = subnet_env(&config, &lease, 1500, true);
        assert_eq!(
            env.render(),
            "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.1.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=true\n\
             FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:1::1/64\n"
        );
    }

    #[test]
    fn previous_subnet_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("subnet.env");
        assert_eq!(previous_lease_key(&path), None);

        std::fs::write(&path, "FLANNEL_NETWORK=172.16.0.0/16\nFLANNEL_SUBNET=172.16.37.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n").unwrap();
        assert_eq!(
            previous_lease_key(&path),
            Some(LeaseKey::ipv4("172.16.37.0/24".parse().unwrap()))
        );

        std::fs::write(&path, "FLANNEL_SUBNET=garbage\n").unwrap();
        assert_eq!(previous_lease_key(&path), None);
    }
}
