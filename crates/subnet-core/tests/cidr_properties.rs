//! Properties of the CIDR arithmetic and of the default config ranges.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use subnet_core::{Cidr, NetworkConfig};

fn ipv4_net() -> impl Strategy<Value = Ipv4Net> {
    (any::<u32>(), 0u8..=32)
        .prop_map(|(bits, len)| Ipv4Net::new(Ipv4Addr::from(bits), len).unwrap())
}

fn ipv6_net() -> impl Strategy<Value = Ipv6Net> {
    (any::<u128>(), 0u8..=128)
        .prop_map(|(bits, len)| Ipv6Net::new(Ipv6Addr::from(bits), len).unwrap())
}

proptest! {
    #[test]
    fn first_usable_not_after_last(net in ipv4_net()) {
        prop_assert!(net.first_usable() <= net.last_usable());
        prop_assert!(net.network_addr() <= net.first_usable());
        prop_assert!(net.last_usable() <= net.last_addr());
        prop_assert!(net.contains_addr(net.first_usable()));
        prop_assert!(net.contains_addr(net.last_usable()));
    }

    #[test]
    fn host_count_matches_formula(net in ipv4_net()) {
        let host_bits = 32 - u32::from(net.prefix_len());
        let expected = match host_bits {
            0 => 1,
            1 => 2,
            bits => (1u128 << bits) - 2,
        };
        prop_assert_eq!(net.usable_hosts(), expected);
        let span = u128::from(u32::from(net.last_usable())) - u128::from(u32::from(net.first_usable())) + 1;
        prop_assert_eq!(span, expected);
    }

    #[test]
    fn ipv4_subnet_index_round_trip(net in ipv4_net(), extra in 0u8..=32, seed in any::<u128>()) {
        let subnet_len = (net.prefix_len() + extra).min(32);
        let count = 1u128 << (subnet_len - net.prefix_len());
        let index = seed % count;
        let subnet = net.nth_subnet(subnet_len, index).unwrap();
        prop_assert!(net.contains_net(&subnet));
        prop_assert!(net.overlaps(&subnet));
        prop_assert_eq!(net.subnet_index(&subnet), Some(index));
        prop_assert_eq!(net.nth_subnet(subnet_len, count), None);
    }

    #[test]
    fn ipv6_subnet_index_round_trip(net in ipv6_net(), extra in 0u8..=128, seed in any::<u128>()) {
        let subnet_len = net.prefix_len().saturating_add(extra).min(128);
        let shift = u32::from(subnet_len - net.prefix_len());
        let index = if shift >= 128 { seed } else { seed % (1u128 << shift) };
        let subnet = net.nth_subnet(subnet_len, index).unwrap();
        prop_assert!(net.contains_net(&subnet));
        prop_assert_eq!(net.subnet_index(&subnet), Some(index));
    }

    #[test]
    fn default_ipv4_config_always_validates(net in ipv4_net().prop_filter("room for four subnets", |n| n.prefix_len() <= 28)) {
        let json = format!(r#"{{"Network":"{net}"}}"#);
        let range = NetworkConfig::parse(&json).unwrap().ipv4.unwrap();
        let expected_len = if net.prefix_len() <= 22 { 24 } else { net.prefix_len() + 2 };
        prop_assert_eq!(range.subnet_len(), expected_len);
        prop_assert_eq!(range.len(), (1u128 << (expected_len - net.prefix_len())) - 1);
        prop_assert_eq!(range.min(), range.network().nth_subnet(expected_len, 1).unwrap());
        prop_assert_eq!(range.index_of(&range.max()), Some(range.len() - 1));
    }

    #[test]
    fn default_ipv6_config_always_validates(net in ipv6_net().prop_filter("room for four subnets", |n| n.prefix_len() <= 124)) {
        let json = format!(r#"{{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"{net}"}}"#);
        let range = NetworkConfig::parse(&json).unwrap().ipv6.unwrap();
        prop_assert!(range.network().contains_net(&range.min()));
        prop_assert!(range.network().contains_net(&range.max()));
        prop_assert_eq!(range.index_of(&range.min()), Some(0));
    }

    #[test]
    fn explicit_subnet_len_range_round_trip(prefix in 8u8..=20, extra in 2u8..=10, seed in any::<u128>()) {
        let subnet_len = prefix + extra;
        let json = format!(r#"{{"Network":"10.0.0.0/{prefix}","SubnetLen":{subnet_len}}}"#);
        let range = NetworkConfig::parse(&json).unwrap().ipv4.unwrap();
        let index = seed % range.len();
        let subnet = range.subnet(index).unwrap();
        prop_assert_eq!(range.index_of(&subnet), Some(index));
        prop_assert!(range.contains(&subnet));
    }
}
