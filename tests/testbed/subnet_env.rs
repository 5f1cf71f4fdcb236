//! A reader for subnet.env written independently of flannel-rs's own, so
//! that the tests check the file as an operator's shell would read it.

use std::fmt;
use std::net::Ipv4Addr;

/// An IPv4 address with a prefix length, e.g. `172.16.37.1/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    /// The address as written.
    pub addr: Ipv4Addr,
    /// The prefix length.
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    /// Parses `a.b.c.d/len`.
    pub fn parse(text: &str) -> Result<Ipv4Cidr, String> {
        let (addr, len) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} has no /prefix length"))?;
        let addr = addr
            .parse()
            .map_err(|_| format!("{text:?} has an invalid IPv4 address"))?;
        let prefix_len = len
            .parse()
            .ok()
            .filter(|len| *len <= 32)
            .ok_or_else(|| format!("{text:?} has an invalid prefix length"))?;
        Ok(Ipv4Cidr { addr, prefix_len })
    }

    /// Returns the network address: the address with the host bits cleared.
    pub fn network(&self) -> Ipv4Addr {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0);
        Ipv4Addr::from(u32::from(self.addr) & mask)
    }

    /// Reports whether `other` lies entirely inside this network.
    pub fn contains(&self, other: &Ipv4Cidr) -> bool {
        other.prefix_len >= self.prefix_len
            && Ipv4Cidr {
                addr: other.addr,
                prefix_len: self.prefix_len,
            }
            .network()
                == self.network()
    }

    /// Returns the lease key etcd stores this subnet under, e.g.
    /// `172.16.37.0-24`.
    pub fn lease_key(&self) -> String {
        format!("{}-{}", self.network(), self.prefix_len)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// The variables of a subnet.env file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetEnv {
    /// FLANNEL_NETWORK.
    pub network: Ipv4Cidr,
    /// FLANNEL_SUBNET: the first address of the lease with its prefix.
    pub subnet: Ipv4Cidr,
    /// FLANNEL_MTU.
    pub mtu: u32,
    /// FLANNEL_IPMASQ, as written.
    pub ipmasq: String,
}

impl SubnetEnv {
    /// Parses `NAME=value` lines. All four IPv4 variables are required.
    pub fn parse(text: &str) -> Result<SubnetEnv, String> {
        let value = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
                .map(str::trim)
                .ok_or_else(|| format!("{name} is missing"))
        };
        Ok(SubnetEnv {
            network: Ipv4Cidr::parse(value("FLANNEL_NETWORK")?)?,
            subnet: Ipv4Cidr::parse(value("FLANNEL_SUBNET")?)?,
            mtu: value("FLANNEL_MTU")?
                .parse()
                .map_err(|_| "FLANNEL_MTU is not a number".to_string())?,
            ipmasq: value("FLANNEL_IPMASQ")?.to_string(),
        })
    }
}
