//! The range of subnets that may be leased: `SubnetMin..=SubnetMax` of one
//! address family. A subnet converts to its index and back in constant
//! time, so an allocator can keep a bitmap or an ordered set of indices
//! instead of a list of subnets.

use crate::cidr::Cidr;
use crate::config::ConfigError;

/// The leasable subnets of a network: every subnet of length
/// [`subnet_len`](SubnetRange::subnet_len) from [`min`](SubnetRange::min) to
/// [`max`](SubnetRange::max) inclusive. Index 0 is `min`.
///
/// A `SubnetRange` is always valid: the constructor checks that the bounds
/// lie inside the network, on a subnet boundary, and in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubnetRange<N: Cidr> {
    network: N,
    subnet_len: u8,
    first_index: u128,
    count: u128,
}

impl<N: Cidr> SubnetRange<N> {
    /// Builds the range of `subnet_len` subnets of `network` from `min` to
    /// `max`, both given as network addresses of a subnet.
    ///
    /// The error names the configuration key that a bad value would come
    /// from (`SubnetMin`, `IPv6SubnetMax`, ...). This does not apply the
    /// rules for how long `subnet_len` may be relative to the network; the
    /// config parser does.
    pub fn new(
        network: N,
        subnet_len: u8,
        min: N::Addr,
        max: N::Addr,
    ) -> Result<Self, ConfigError> {
        let network = network.truncated();
        if subnet_len < network.prefix_len() || subnet_len > N::BITS {
            return Err(ConfigError::SubnetLenOutOfRange {
                key: key::<N>("SubnetLen"),
                value: u64::from(subnet_len),
                network: network.to_string(),
                min: network.prefix_len(),
                max: N::BITS,
            });
        }
        let first_index = bound_index(network, subnet_len, min, "SubnetMin")?;
        let last_index = bound_index(network, subnet_len, max, "SubnetMax")?;
        if first_index > last_index {
            return Err(ConfigError::MinAboveMax {
                min_key: key::<N>("SubnetMin"),
                min: min.to_string(),
                max_key: key::<N>("SubnetMax"),
                max: max.to_string(),
            });
        }
        Ok(Self {
            network,
            subnet_len,
            first_index,
            // Saturates only for the full IPv6 space split into /128s.
            count: (last_index - first_index).saturating_add(1),
        })
    }

    /// Returns the whole overlay network, such as `172.16.0.0/16`.
    pub fn network(&self) -> N {
        self.network
    }

    /// Returns the prefix length of each leased subnet.
    pub fn subnet_len(&self) -> u8 {
        self.subnet_len
    }

    /// Returns the first leasable subnet (`SubnetMin`).
    pub fn min(&self) -> N {
        self.nth_of_network(self.first_index)
    }

    /// Returns the last leasable subnet (`SubnetMax`).
    pub fn max(&self) -> N {
        self.nth_of_network(self.first_index + (self.count - 1))
    }

    /// Returns the number of leasable subnets.
    pub fn len(&self) -> u128 {
        self.count
    }

    /// Returns false: a range contains at least one subnet.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The subnet at `index`, where index 0 is [`min`](SubnetRange::min);
    /// `None` past the end.
    pub fn subnet(&self, index: u128) -> Option<N> {
        if index >= self.count {
            return None;
        }
        Some(self.nth_of_network(self.first_index + index))
    }

    /// Returns the index of `subnet` in this range; `None` unless it has this
    /// range's prefix length, no host bits, and lies from `min` to `max`.
    pub fn index_of(&self, subnet: &N) -> Option<u128> {
        if subnet.prefix_len() != self.subnet_len {
            return None;
        }
        let index = self.network.subnet_index(subnet)?;
        if index < self.first_index {
            return None;
        }
        let index = index - self.first_index;
        (index < self.count).then_some(index)
    }

    /// Checks whether `subnet` may be leased from this range.
    pub fn contains(&self, subnet: &N) -> bool {
        self.index_of(subnet).is_some()
    }

    /// Iterates over the leasable subnets in order.
    pub fn iter(&self) -> impl Iterator<Item = N> + '_ {
        (0..self.count).map(move |index| self.nth_of_network(self.first_index + index))
    }

    fn nth_of_network(&self, index: u128) -> N {
        self.network
            .nth_subnet(self.subnet_len, index)
            .expect("indices inside a validated range map to subnets")
    }
}

/// Returns the configuration key name for this family: `SubnetMin` or
/// `IPv6SubnetMin`.
pub(crate) fn key<N: Cidr>(name: &str) -> String {
    format!("{}{}", N::KEY_PREFIX, name)
}

/// Returns the index of the subnet that starts at `bound`, checking that it lies in
/// `network` and on a `subnet_len` boundary.
fn bound_index<N: Cidr>(
    network: N,
    subnet_len: u8,
    bound: N::Addr,
    name: &str,
) -> Result<u128, ConfigError> {
    if !network.contains_addr(bound) {
        return Err(ConfigError::OutsideNetwork {
            key: key::<N>(name),
            value: bound.to_string(),
            network: network.to_string(),
        });
    }
    let subnet = N::from_bits(N::addr_to_bits(bound), subnet_len);
    if !subnet.is_network_aligned() {
        return Err(ConfigError::OffBoundary {
            key: key::<N>(name),
            value: bound.to_string(),
            subnet_len,
        });
    }
    Ok(network
        .subnet_index(&subnet)
        .expect("an aligned subnet inside the network has an index"))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use ipnet::Ipv4Net;

    use super::*;

    #[test]
    fn range_index_round_trip() {
        let network: Ipv4Net = "10.0.0.0/8".parse().unwrap();
        let range = SubnetRange::new(
            network,
            24,
            Ipv4Addr::new(10, 0, 1, 0),
            Ipv4Addr::new(10, 255, 255, 0),
        )
        .unwrap();
        assert_eq!(range.len(), 65535);
        assert_eq!(range.min(), "10.0.1.0/24".parse().unwrap());
        assert_eq!(range.max(), "10.255.255.0/24".parse().unwrap());
        assert_eq!(range.subnet(0), Some(range.min()));
        assert_eq!(range.subnet(65534), Some(range.max()));
        assert_eq!(range.subnet(65535), None);
        let subnet: Ipv4Net = "10.1.2.0/24".parse().unwrap();
        let index = range.index_of(&subnet).unwrap();
        assert_eq!(range.subnet(index), Some(subnet));
        assert_eq!(range.index_of(&"10.0.0.0/24".parse().unwrap()), None);
        assert_eq!(range.index_of(&"10.1.2.0/25".parse().unwrap()), None);
        assert_eq!(range.index_of(&"11.1.2.0/24".parse().unwrap()), None);
    }

    #[test]
    fn range_iterates_in_order() {
        let network: Ipv4Net = "10.5.0.0/22".parse().unwrap();
        let range = SubnetRange::new(
            network,
            24,
            Ipv4Addr::new(10, 5, 1, 0),
            Ipv4Addr::new(10, 5, 2, 0),
        )
        .unwrap();
        let subnets: Vec<String> = range.iter().map(|s| s.to_string()).collect();
        assert_eq!(subnets, ["10.5.1.0/24", "10.5.2.0/24"]);
    }
}
