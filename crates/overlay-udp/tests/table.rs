//! Forwarding table: lookups, updates and rejected peers.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use overlay_udp::{PeerError, PeerTable, TableError};

fn net(text: &str) -> Ipv4Net {
    text.parse().unwrap()
}

fn table() -> PeerTable {
    PeerTable::new(net("10.5.0.0/16"), net("10.5.1.0/24")).unwrap()
}

const PEER_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const PEER_B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);

#[test]
fn lookup_finds_whole_subnet() {
    let table = table();
    table.upsert(net("10.5.7.0/24"), PEER_A).unwrap();

    assert_eq!(table.lookup(Ipv4Addr::new(10, 5, 7, 0)), Some(PEER_A));
    assert_eq!(table.lookup(Ipv4Addr::new(10, 5, 7, 255)), Some(PEER_A));
    assert_eq!(table.lookup(Ipv4Addr::new(10, 5, 8, 1)), None);
    assert_eq!(table.lookup(Ipv4Addr::new(10, 6, 7, 1)), None);
    assert_eq!(table.lookup(Ipv4Addr::new(10, 5, 1, 1)), None);
}

#[test]
fn upsert_replaces_and_remove_clears() {
    let table = table();
    table.upsert(net("10.5.7.0/24"), PEER_A).unwrap();
    table.upsert(net("10.5.7.0/24"), PEER_B).unwrap();

    assert_eq!(table.lookup(Ipv4Addr::new(10, 5, 7, 9)), Some(PEER_B));
    assert_eq!(table.len(), 1);

    assert!(table.remove(net("10.5.7.0/24")));
    assert!(!table.remove(net("10.5.7.0/24")));
    assert_eq!(table.lookup(Ipv4Addr::new(10, 5, 7, 9)), None);
    assert!(table.is_empty());
}

#[test]
fn odd_prefix_lengths_and_outside_subnets() {
    let table = table();
    // A reservation with a longer prefix, one with a shorter prefix, and a
    // subnet from before a change of Network.
    table.upsert(net("10.5.9.128/25"), PEER_A).unwrap();
    table.upsert(net("10.5.12.0/22"), PEER_B).unwrap();
    table.upsert(net("10.9.3.0/24"), PEER_A).unwrap();

    assert_eq!(table.lookup(Ipv4Addr::new(10, 5, 9, 200)), Some(PEER_A));
    assert_eq!(table.lookup(Ipv4Addr::new(10, 5, 9, 100)), None);
    assert_eq!(table.lookup(Ipv4Addr::new(10, 5, 15, 1)), Some(PEER_B));
    assert_eq!(table.lookup(Ipv4Addr::new(10, 5, 16, 1)), None);
    assert_eq!(table.lookup(Ipv4Addr::new(10, 9, 3, 3)), Some(PEER_A));

    assert!(table.remove(net("10.5.12.0/22")));
    assert_eq!(table.lookup(Ipv4Addr::new(10, 5, 15, 1)), None);
    assert_eq!(table.lookup(Ipv4Addr::new(10, 5, 9, 200)), Some(PEER_A));
}

#[test]
fn replace_all_swaps_peer_set() {
    let table = table();
    table.upsert(net("10.5.7.0/24"), PEER_A).unwrap();
    table.upsert(net("10.5.9.128/25"), PEER_A).unwrap();

    table
        .replace_all([(net("10.5.8.0/24"), PEER_B), (net("10.5.200.0/24"), PEER_A)])
        .unwrap();

    assert_eq!(table.lookup(Ipv4Addr::new(10, 5, 7, 1)), None);
    assert_eq!(table.lookup(Ipv4Addr::new(10, 5, 9, 200)), None);
    assert_eq!(table.lookup(Ipv4Addr::new(10, 5, 8, 1)), Some(PEER_B));
    assert_eq!(table.lookup(Ipv4Addr::new(10, 5, 200, 1)), Some(PEER_A));
    assert_eq!(
        table.snapshot(),
        vec![(net("10.5.8.0/24"), PEER_B), (net("10.5.200.0/24"), PEER_A)]
    );
}

#[test]
fn replace_all_rejects_whole_set() {
    let table = table();
    table.upsert(net("10.5.7.0/24"), PEER_A).unwrap();

    let result = table.replace_all([
        (net("10.5.8.0/24"), PEER_B),
        (net("10.5.9.0/24"), Ipv4Addr::UNSPECIFIED),
    ]);

    assert!(result.is_err());
    assert_eq!(table.snapshot(), vec![(net("10.5.7.0/24"), PEER_A)]);
}

#[test]
fn rejected_peers_name_the_value() {
    let table = table();

    let error = table
        .upsert(net("10.5.7.0/24"), Ipv4Addr::UNSPECIFIED)
        .unwrap_err();
    assert_eq!(
        error,
        PeerError::InvalidPublicIp {
            subnet: net("10.5.7.0/24"),
            public_ip: Ipv4Addr::UNSPECIFIED
        }
    );
    assert_eq!(
        error.to_string(),
        "invalid PublicIP 0.0.0.0 for peer subnet 10.5.7.0/24: expected a unicast address, not 0.0.0.0, broadcast or multicast"
    );

    let error = table.upsert(net("10.5.7.1/24"), PEER_A).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid peer subnet 10.5.7.1/24: host bits are set, expected 10.5.7.0/24"
    );

    let error = table.upsert(net("10.5.0.0/20"), PEER_A).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid peer subnet 10.5.0.0/20: it overlaps the local lease 10.5.1.0/24"
    );
}

#[test]
fn lease_outside_network_rejected() {
    let error = PeerTable::new(net("10.5.0.0/16"), net("10.6.1.0/24")).unwrap_err();

    assert_eq!(
        error,
        TableError::LeaseOutsideNetwork {
            lease: net("10.6.1.0/24"),
            network: net("10.5.0.0/16")
        }
    );
    assert_eq!(
        error.to_string(),
        "invalid local lease 10.6.1.0/24: it must lie inside the network 10.5.0.0/16 with a prefix length of at least /16"
    );
}

#[test]
fn every_slot_of_large_network() {
    // 10.0.0.0/8 with /30 leases: 2^22 slots in lazily allocated pages.
    let table = PeerTable::new(net("10.0.0.0/8"), net("10.0.0.0/30")).unwrap();
    let last = net("10.255.255.252/30");
    table.upsert(last, PEER_A).unwrap();
    table.upsert(net("10.0.0.4/30"), PEER_B).unwrap();

    assert_eq!(table.lookup(Ipv4Addr::new(10, 255, 255, 255)), Some(PEER_A));
    assert_eq!(table.lookup(Ipv4Addr::new(10, 0, 0, 7)), Some(PEER_B));
    assert_eq!(table.lookup(Ipv4Addr::new(10, 0, 0, 8)), None);
    assert_eq!(table.lookup(Ipv4Addr::new(10, 128, 0, 1)), None);
}

#[test]
fn lease_equal_to_network() {
    // A single-lease network: the slot index has no bits.
    let table = PeerTable::new(net("10.5.0.0/16"), net("10.5.0.0/16")).unwrap();

    assert_eq!(table.lookup(Ipv4Addr::new(10, 5, 1, 1)), None);
}

#[test]
fn all_65536_peers() {
    let table = PeerTable::new(net("10.0.0.0/8"), net("10.0.0.0/24")).unwrap();
    let peers = (1u32..65_536).map(|i| {
        let subnet = Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 | (i << 8)), 24).unwrap();
        (subnet, Ipv4Addr::from(0xc000_0000 | i))
    });
    table.replace_all(peers).unwrap();

    assert_eq!(table.len(), 65_535);
    for i in [1u32, 255, 256, 40_000, 65_535] {
        let addr = Ipv4Addr::from(0x0a00_0000 | (i << 8) | 17);
        assert_eq!(table.lookup(addr), Some(Ipv4Addr::from(0xc000_0000 | i)));
    }
}
