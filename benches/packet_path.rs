//! Per-packet cost of the udp backend's data path, without I/O: the checks,
//! the forwarding-table lookup and the TTL update on MTU-sized packets, and
//! the lookup alone with 1, 256 and 65,536 peers.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use flannel_rs::overlay_udp::packet::{
    check_inbound, internet_checksum, route_outbound, Outbound, ICMP_REPLY_MAX_LEN,
};
use flannel_rs::overlay_udp::{Ipv4Net, PeerTable};

/// Packet size of a full TCP segment on a TUN device with MTU 1472.
const PACKET_LEN: usize = 1472;

fn net(text: &str) -> Ipv4Net {
    text.parse().expect("valid CIDR")
}

/// 10.0.0.0/8 with /24 leases; the local lease is 10.0.0.0/24 and peers get
/// 10.0.1.0/24, 10.0.2.0/24, ... at 192.168.x.y.
fn table_with(peers: u32) -> PeerTable {
    let table = PeerTable::new(net("10.0.0.0/8"), net("10.0.0.0/24")).expect("valid table");
    let entries = (1..=peers).map(|i| {
        let subnet = Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 | (i << 8)), 24).expect("/24");
        (subnet, Ipv4Addr::from(0xc0a8_0000 | i))
    });
    table.replace_all(entries).expect("valid peers");
    table
}

/// Builds a TCP packet of `PACKET_LEN` bytes from 10.0.0.2 to `destination`.
fn tcp_packet(destination: Ipv4Addr) -> Vec<u8> {
    let mut packet = vec![0u8; PACKET_LEN];
    packet[0] = 0x45;
    packet[2..4].copy_from_slice(&(PACKET_LEN as u16).to_be_bytes());
    packet[6] = 0x40;
    packet[8] = 64;
    packet[9] = 6;
    packet[12..16].copy_from_slice(&[10, 0, 0, 2]);
    packet[16..20].copy_from_slice(&destination.octets());
    let checksum = internet_checksum(&packet[..20]);
    packet[10..12].copy_from_slice(&checksum.to_be_bytes());
    packet
}

fn outbound(c: &mut Criterion) {
    let table = table_with(256);
    let template = tcp_packet(Ipv4Addr::new(10, 0, 7, 9));
    let mut reply = [0u8; ICMP_REPLY_MAX_LEN];

    let mut group = c.benchmark_group("outbound");
    group.throughput(Throughput::Bytes(PACKET_LEN as u64));
    group.bench_function("check_lookup_ttl", |b| {
        let mut packet = template.clone();
        b.iter(|| {
            // Restore TTL and checksum so every iteration forwards.
            packet[..20].copy_from_slice(&template[..20]);
            let decision = route_outbound(black_box(&mut packet[..]), &table, &mut reply);
            assert!(matches!(decision, Outbound::Forward { .. }));
        });
    });

    let templates: Vec<Vec<u8>> = (0..64u32)
        .map(|i| tcp_packet(Ipv4Addr::from(0x0a00_0000 | ((i % 200 + 1) << 8) | 9)))
        .collect();
    let mut batch = templates.clone();
    group.throughput(Throughput::Elements(64));
    group.bench_function("batch_64", |b| {
        b.iter(|| {
            for (packet, template) in batch.iter_mut().zip(&templates) {
                packet[..20].copy_from_slice(&template[..20]);
                let decision = route_outbound(black_box(&mut packet[..]), &table, &mut reply);
                black_box(decision);
            }
        });
    });
    group.finish();
}

fn inbound(c: &mut Criterion) {
    let table = table_with(256);
    let mut packet = tcp_packet(Ipv4Addr::new(10, 0, 0, 7));
    packet[12..16].copy_from_slice(&[10, 0, 7, 9]);
    packet[10..12].fill(0);
    let checksum = internet_checksum(&packet[..20]);
    packet[10..12].copy_from_slice(&checksum.to_be_bytes());
    let sender = Ipv4Addr::from(0xc0a8_0007);
    let local = net("10.0.0.0/24");

    let mut group = c.benchmark_group("inbound");
    group.throughput(Throughput::Bytes(PACKET_LEN as u64));
    group.bench_function("check_with_sender", |b| {
        b.iter(|| {
            let result = check_inbound(black_box(&packet[..]), sender, local, Some(&table));
            assert!(result.is_ok());
        });
    });
    group.finish();
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("table_lookup");
    for peers in [1u32, 256, 65_535] {
        let table = table_with(peers);
        // 1,024 destinations spread over the peers' subnets.
        let addresses: Vec<Ipv4Addr> = (0..1024u32)
            .map(|i| Ipv4Addr::from(0x0a00_0000 | (((i * 7919) % peers + 1) << 8) | (i & 0xff)))
            .collect();
        group.throughput(Throughput::Elements(addresses.len() as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(peers),
            &addresses,
            |b, addresses| {
                b.iter(|| {
                    for address in addresses {
                        black_box(table.lookup(black_box(*address)));
                    }
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, outbound, inbound, lookup);
criterion_main!(benches);
