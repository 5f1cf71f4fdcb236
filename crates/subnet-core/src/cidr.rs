//! CIDR arithmetic for IPv4 and IPv6 networks on top of `ipnet`.
//!
//! Addresses are handled as unsigned integers (`u128` for both families), so
//! every operation here is a handful of shifts and masks: constant time,
//! whatever the size of the network.

use std::fmt::{Debug, Display};
use std::hash::Hash;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{Ipv4Net, Ipv6Net};

/// A CIDR network of one address family: implemented for [`Ipv4Net`] and
/// [`Ipv6Net`].
///
/// The provided methods look at the network part only, so `10.5.1.7/24`
/// behaves like `10.5.1.0/24`.
pub trait Cidr: Copy + Eq + Ord + Hash + Debug + Display + FromStr + Send + Sync + 'static {
    /// The address type of this family.
    type Addr: Copy + Eq + Ord + Hash + Debug + Display + Send + Sync + 'static;

    /// Number of bits in an address: 32 or 128.
    const BITS: u8;

    /// Prefix of the configuration keys of this family: `""` for IPv4
    /// (`Network`, `SubnetLen`) and `"IPv6"` for IPv6 (`IPv6Network`).
    const KEY_PREFIX: &'static str;

    /// Returns the prefix length.
    fn prefix_len(&self) -> u8;

    /// Returns the address as written, host bits included, as an integer.
    fn addr_bits(&self) -> u128;

    /// Builds a network from an address integer and a prefix length. Host
    /// bits are kept as given; `prefix_len` must be at most [`Cidr::BITS`].
    fn from_bits(bits: u128, prefix_len: u8) -> Self;

    /// Converts an address to its integer.
    fn addr_to_bits(addr: Self::Addr) -> u128;

    /// Converts an integer back to an address; bits above [`Cidr::BITS`] are
    /// ignored.
    fn addr_from_bits(bits: u128) -> Self::Addr;

    /// Returns the network address (all host bits zero) as an integer.
    fn network_bits(&self) -> u128 {
        self.addr_bits() & !host_mask(Self::BITS, self.prefix_len())
    }

    /// Returns the network address: the lowest address, all host bits zero.
    fn network_addr(&self) -> Self::Addr {
        Self::addr_from_bits(self.network_bits())
    }

    /// Returns the highest address, all host bits one. For IPv4 this is the
    /// broadcast address.
    fn last_addr(&self) -> Self::Addr {
        Self::addr_from_bits(self.network_bits() | host_mask(Self::BITS, self.prefix_len()))
    }

    /// Returns the same network with the host bits cleared.
    fn truncated(&self) -> Self {
        Self::from_bits(self.network_bits(), self.prefix_len())
    }

    /// Checks that the address written has no host bits set.
    fn is_network_aligned(&self) -> bool {
        self.addr_bits() == self.network_bits()
    }

    /// Counts the addresses in the network, saturating at `u128::MAX` for an
    /// IPv6 `/0`, which has 2^128 of them.
    fn address_count(&self) -> u128 {
        pow2(Self::BITS - self.prefix_len())
    }

    /// Counts the usable host addresses: all but the network and broadcast
    /// addresses, except that a /31 (IPv6 /127) has two usable addresses
    /// (RFC 3021) and a /32 (IPv6 /128) one.
    fn usable_hosts(&self) -> u128 {
        let host_bits = Self::BITS - self.prefix_len();
        match host_bits {
            0 => 1,
            1 => 2,
            _ => self.address_count() - 2,
        }
    }

    /// Returns the first usable host address (see [`Cidr::usable_hosts`]).
    fn first_usable(&self) -> Self::Addr {
        if Self::BITS - self.prefix_len() <= 1 {
            self.network_addr()
        } else {
            Self::addr_from_bits(self.network_bits() + 1)
        }
    }

    /// Returns the last usable host address (see [`Cidr::usable_hosts`]).
    fn last_usable(&self) -> Self::Addr {
        let last = Self::addr_to_bits(self.last_addr());
        if Self::BITS - self.prefix_len() <= 1 {
            Self::addr_from_bits(last)
        } else {
            Self::addr_from_bits(last - 1)
        }
    }

    /// Checks whether `addr` lies inside this network.
    fn contains_addr(&self, addr: Self::Addr) -> bool {
        Self::addr_to_bits(addr) & !host_mask(Self::BITS, self.prefix_len()) == self.network_bits()
    }

    /// Checks whether `other` lies entirely inside this network.
    fn contains_net(&self, other: &Self) -> bool {
        other.prefix_len() >= self.prefix_len()
            && self.contains_addr(Self::addr_from_bits(other.network_bits()))
    }

    /// Checks whether the two networks share at least one address.
    fn overlaps(&self, other: &Self) -> bool {
        self.contains_net(other) || other.contains_net(self)
    }

    /// Returns the `index`-th subnet of length `subnet_len` inside this network,
    /// counting from zero at the network address. `None` when `subnet_len`
    /// is shorter than this network's prefix or longer than an address, or
    /// when `index` is past the last subnet.
    fn nth_subnet(&self, subnet_len: u8, index: u128) -> Option<Self> {
        if subnet_len < self.prefix_len() || subnet_len > Self::BITS {
            return None;
        }
        let count = pow2(subnet_len - self.prefix_len());
        if index >= count && !(count == u128::MAX && index == u128::MAX) {
            return None;
        }
        let offset = index
            .checked_shl(u32::from(Self::BITS - subnet_len))
            .unwrap_or(0);
        Some(Self::from_bits(self.network_bits() + offset, subnet_len))
    }

    /// Returns the index of `subnet` among the subnets of its length inside this
    /// network, the inverse of [`Cidr::nth_subnet`]. `None` when `subnet`
    /// is not inside this network or has host bits set.
    fn subnet_index(&self, subnet: &Self) -> Option<u128> {
        if !self.contains_net(subnet) || !subnet.is_network_aligned() {
            return None;
        }
        let offset = subnet.network_bits() - self.network_bits();
        Some(
            offset
                .checked_shr(u32::from(Self::BITS - subnet.prefix_len()))
                .unwrap_or(0),
        )
    }
}

/// Returns the mask of the host bits of a `prefix_len` network in a `bits`-bit
/// address family.
fn host_mask(bits: u8, prefix_len: u8) -> u128 {
    let host_bits = bits - prefix_len;
    if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    }
}

/// Computes 2^exponent, saturating at `u128::MAX` for 2^128.
fn pow2(exponent: u8) -> u128 {
    1u128.checked_shl(u32::from(exponent)).unwrap_or(u128::MAX)
}

impl Cidr for Ipv4Net {
    type Addr = Ipv4Addr;
    const BITS: u8 = 32;
    const KEY_PREFIX: &'static str = "";

    fn prefix_len(&self) -> u8 {
        Ipv4Net::prefix_len(self)
    }

    fn addr_bits(&self) -> u128 {
        u128::from(u32::from(self.addr()))
    }

    fn from_bits(bits: u128, prefix_len: u8) -> Self {
        Ipv4Net::new(Self::addr_from_bits(bits), prefix_len)
            .expect("from_bits requires prefix_len <= 32")
    }

    fn addr_to_bits(addr: Ipv4Addr) -> u128 {
        u128::from(u32::from(addr))
    }

    fn addr_from_bits(bits: u128) -> Ipv4Addr {
        // Truncation to the low 32 bits is the documented behaviour.
        Ipv4Addr::from(bits as u32)
    }
}

impl Cidr for Ipv6Net {
    type Addr = Ipv6Addr;
    const BITS: u8 = 128;
    const KEY_PREFIX: &'static str = "IPv6";

    fn prefix_len(&self) -> u8 {
        Ipv6Net::prefix_len(self)
    }

    fn addr_bits(&self) -> u128 {
        u128::from(self.addr())
    }

    fn from_bits(bits: u128, prefix_len: u8) -> Self {
        Ipv6Net::new(Ipv6Addr::from(bits), prefix_len)
            .expect("from_bits requires prefix_len <= 128")
    }

    fn addr_to_bits(addr: Ipv6Addr) -> u128 {
        u128::from(addr)
    }

    fn addr_from_bits(bits: u128) -> Ipv6Addr {
        Ipv6Addr::from(bits)
    }
}

/// Writes an IPv4 address in binary, octets separated by dots, with a space
/// where the network part of a `prefix_len` network ends and the host part
/// begins: `10000000.00001110.0010 0000.00000000` for 128.14.32.0/20.
/// No space is written for /0 and /32, which have no split.
pub fn binary_split(addr: Ipv4Addr, prefix_len: u8) -> String {
    let mut out = String::with_capacity(36);
    for (i, octet) in addr.octets().iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        for bit in 0..8 {
            let position = i * 8 + bit;
            if position == usize::from(prefix_len) && position > 0 && bit > 0 {
                out.push(' ');
            }
            out.push(if octet & (0x80 >> bit) != 0 { '1' } else { '0' });
        }
    }
    out
}

/// Describes an IPv4 network as an operator's address worksheet: the lowest
/// and highest address in binary with the network and host parts split, in
/// dotted form, and the usable host count. The `cidr` example prints it.
pub fn ipv4_worksheet(net: Ipv4Net) -> String {
    let prefix_len = net.prefix_len();
    let host_bits = 32 - prefix_len;
    let lowest = net.network_addr();
    let highest = net.last_addr();
    format!(
        "network:      {network}/{prefix_len} ({prefix_len} network bits, {host_bits} host bits)\n\
         lowest:       {low_bin}   {lowest}\n\
         highest:      {high_bin}   {highest}\n\
         usable hosts: {hosts}\n",
        network = lowest,
        low_bin = binary_split(lowest, prefix_len),
        high_bin = binary_split(highest, prefix_len),
        hosts = net.usable_hosts(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn v6(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    #[test]
    fn worksheet_network_128_14_32_0_20() {
        let net = v4("128.14.32.0/20");
        assert_eq!(net.network_addr(), Ipv4Addr::new(128, 14, 32, 0));
        assert_eq!(net.last_addr(), Ipv4Addr::new(128, 14, 47, 255));
        assert_eq!(net.usable_hosts(), 4094);
        assert_eq!(
            binary_split(net.network_addr(), 20),
            "10000000.00001110.0010 0000.00000000"
        );
        assert_eq!(
            binary_split(net.last_addr(), 20),
            "10000000.00001110.0010 1111.11111111"
        );
    }

    #[test]
    fn worksheet_text_exact() {
        let expected = "\
network:      128.14.32.0/20 (20 network bits, 12 host bits)
lowest:       10000000.00001110.0010 0000.00000000   128.14.32.0
highest:      10000000.00001110.0010 1111.11111111   128.14.47.255
usable hosts: 4094
";
        assert_eq!(ipv4_worksheet(v4("128.14.32.0/20")), expected);
    }

    #[test]
    fn binary_split_on_octet_boundary() {
        assert_eq!(
            binary_split(Ipv4Addr::new(10, 0, 0, 0), 8),
            "00001010.00000000.00000000.00000000"
        );
        assert_eq!(
            binary_split(Ipv4Addr::new(10, 0, 0, 1), 32),
            "00001010.00000000.00000000.00000001"
        );
    }

    #[test]
    fn usable_hosts_edge_lengths() {
        assert_eq!(v4("10.0.0.0/30").usable_hosts(), 2);
        assert_eq!(v4("10.0.0.0/31").usable_hosts(), 2);
        assert_eq!(v4("10.0.0.0/32").usable_hosts(), 1);
        assert_eq!(v4("0.0.0.0/0").usable_hosts(), (1u128 << 32) - 2);
        assert_eq!(v6("::/0").address_count(), u128::MAX);
        assert_eq!(v6("fc00::/64").usable_hosts(), (1u128 << 64) - 2);
    }

    #[test]
    fn first_and_last_usable() {
        let net = v4("10.0.0.0/24");
        assert_eq!(net.first_usable(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(net.last_usable(), Ipv4Addr::new(10, 0, 0, 254));
        let p2p = v4("10.0.0.4/31");
        assert_eq!(p2p.first_usable(), Ipv4Addr::new(10, 0, 0, 4));
        assert_eq!(p2p.last_usable(), Ipv4Addr::new(10, 0, 0, 5));
        let host = v4("10.0.0.9/32");
        assert_eq!(host.first_usable(), host.last_usable());
    }

    #[test]
    fn containment_and_overlap() {
        let net = v4("172.16.0.0/16");
        assert!(net.contains_net(&v4("172.16.37.0/24")));
        assert!(!net.contains_net(&v4("172.17.0.0/24")));
        assert!(!v4("172.16.37.0/24").contains_net(&net));
        assert!(net.overlaps(&v4("172.16.37.0/24")));
        assert!(v4("172.16.37.0/24").overlaps(&net));
        assert!(!v4("172.16.37.0/24").overlaps(&v4("172.16.38.0/24")));
        assert!(net.contains_addr(Ipv4Addr::new(172, 16, 255, 255)));
        assert!(!net.contains_addr(Ipv4Addr::new(172, 15, 255, 255)));
    }

    #[test]
    fn nth_subnet_and_index() {
        let net = v4("172.16.0.0/16");
        assert_eq!(net.nth_subnet(24, 37), Some(v4("172.16.37.0/24")));
        assert_eq!(net.nth_subnet(24, 255), Some(v4("172.16.255.0/24")));
        assert_eq!(net.nth_subnet(24, 256), None);
        assert_eq!(net.nth_subnet(15, 0), None);
        assert_eq!(net.nth_subnet(33, 0), None);
        assert_eq!(net.subnet_index(&v4("172.16.37.0/24")), Some(37));
        assert_eq!(net.subnet_index(&v4("172.16.37.1/24")), None);
        assert_eq!(net.subnet_index(&v4("172.17.37.0/24")), None);

        let all = v6("::/0");
        assert_eq!(all.nth_subnet(0, 0), Some(all));
        assert_eq!(all.nth_subnet(0, 1), None);
        assert_eq!(all.subnet_index(&all), Some(0));
        let last = all.nth_subnet(128, u128::MAX).unwrap();
        assert_eq!(last.addr(), Ipv6Addr::from(u128::MAX));
    }
}
