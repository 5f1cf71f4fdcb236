//! A CNI network configuration for the bridge plugin, for hosts that run
//! containers without Docker.

use std::net::IpAddr;

use serde::Serialize;

use crate::options::DockerOptions;

/// CNI specification version written into the configuration.
pub const CNI_VERSION: &str = "1.0.0";
/// Default network name.
pub const DEFAULT_NETWORK_NAME: &str = "flannel";
/// Default bridge device name.
pub const DEFAULT_BRIDGE: &str = "cni0";

/// Longest Linux network device name, in bytes (`IFNAMSIZ` less the NUL).
const MAX_DEVICE_NAME_LEN: usize = 15;

/// The names in a CNI network configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniNetwork {
    /// The network's `name`, which container runtimes refer to.
    pub name: String,
    /// The bridge device the plugin creates and attaches containers to.
    pub bridge: String,
}

impl Default for CniNetwork {
    fn default() -> Self {
        CniNetwork {
            name: DEFAULT_NETWORK_NAME.to_owned(),
            bridge: DEFAULT_BRIDGE.to_owned(),
        }
    }
}

/// Error from [`CniNetwork::render`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CniError {
    /// The network name fails the check that CNI runtimes apply
    /// (`ValidateNetworkName` in libcni).
    #[error("invalid CNI network name {name:?}: expected a letter or digit, then letters, digits, '_', '.' or '-'")]
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// The bridge name is not a valid Linux network device name.
    #[error("invalid bridge name {bridge:?}: expected 1 to 15 bytes without '/', ':' or white space, other than '.' and '..'")]
    InvalidBridge {
        /// The name as given.
        bridge: String,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BridgeConfig<'a> {
    cni_version: &'static str,
    name: &'a str,
    #[serde(rename = "type")]
    plugin: &'static str,
    bridge: &'a str,
    is_gateway: bool,
    is_default_gateway: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip_masq: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<u32>,
    ipam: HostLocalIpam,
}

#[derive(Serialize)]
struct HostLocalIpam {
    #[serde(rename = "type")]
    plugin: &'static str,
    ranges: Vec<Vec<IpRange>>,
}

#[derive(Serialize)]
struct IpRange {
    subnet: String,
    gateway: IpAddr,
}

impl CniNetwork {
    /// Renders the network configuration as pretty-printed JSON ending with
    /// a newline.
    ///
    /// The bridge plugin is the gateway and default route for its
    /// containers. host-local IPAM hands out addresses from the network of
    /// `FLANNEL_SUBNET`, with the `FLANNEL_SUBNET` address as the gateway,
    /// and from `FLANNEL_IPV6_SUBNET` the same way when IPv6 was selected.
    /// `ipMasq` follows [`DockerOptions::ip_masq`] and is left out with it.
    pub fn render(&self, options: &DockerOptions) -> Result<String, CniError> {
        self.check()?;

        let mut ranges = vec![vec![IpRange {
            subnet: options.bip.trunc().to_string(),
            gateway: IpAddr::V4(options.bip.addr()),
        }]];
        if let Some(subnet) = options.ipv6_subnet {
            ranges.push(vec![IpRange {
                subnet: subnet.trunc().to_string(),
                gateway: IpAddr::V6(subnet.addr()),
            }]);
        }

        let config = BridgeConfig {
            cni_version: CNI_VERSION,
            name: &self.name,
            plugin: "bridge",
            bridge: &self.bridge,
            is_gateway: true,
            is_default_gateway: true,
            ip_masq: options.ip_masq,
            mtu: options.mtu,
            ipam: HostLocalIpam {
                plugin: "host-local",
                ranges,
            },
        };
        let mut text = serde_json::to_string_pretty(&config)
            .expect("a config of strings, numbers and booleans always serializes");
        text.push('\n');
        Ok(text)
    }

    fn check(&self) -> Result<(), CniError> {
        if !is_cni_network_name(&self.name) {
            return Err(CniError::InvalidName {
                name: self.name.clone(),
            });
        }
        if !is_device_name(&self.bridge) {
            return Err(CniError::InvalidBridge {
                bridge: self.bridge.clone(),
            });
        }
        Ok(())
    }
}

fn is_cni_network_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Checks a device name against the kernel's rule (`dev_valid_name` in
/// net/core/dev.c).
fn is_device_name(name: &str) -> bool {
    let length_ok = !name.is_empty() && name.len() <= MAX_DEVICE_NAME_LEN;
    let reserved = name == "." || name == "..";
    // C's isspace() also counts the vertical tab, which Rust's ASCII
    // whitespace does not.
    let chars_ok = !name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == 0x0b || b.is_ascii_whitespace());
    length_ok && !reserved && chars_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names() {
        assert!(is_device_name("cni0"));
        assert!(is_device_name("a23456789012345"));
        assert!(!is_device_name("a234567890123456"));
        assert!(!is_device_name(""));
        assert!(!is_device_name(".."));
        assert!(!is_device_name("br/0"));
        assert!(!is_device_name("br 0"));
        assert!(!is_device_name("br\u{b}0"));
        assert!(!is_device_name("br:0"));
    }

    #[test]
    fn network_names() {
        assert!(is_cni_network_name("flannel"));
        assert!(is_cni_network_name("k8s-pod_net.1"));
        assert!(!is_cni_network_name("-flannel"));
        assert!(!is_cni_network_name(""));
        assert!(!is_cni_network_name("my net"));
    }
}
