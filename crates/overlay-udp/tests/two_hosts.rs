//! Two hosts in network namespaces joined by a veth pair, one data path in
//! each, with static peers: traffic across, drops and ICMP replies.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::{run_in, NsPair, UNDERLAY_A, UNDERLAY_B};
use ipnet::Ipv4Net;
use overlay_udp::packet::internet_checksum;
use overlay_udp::{Stats, UdpBackend, UdpConfig};

const PORT: u16 = 8285;

fn net(text: &str) -> Ipv4Net {
    text.parse().unwrap()
}

/// Two running data paths. Fields drop in order: backends before namespaces.
struct Hosts {
    a: UdpBackend,
    b: UdpBackend,
    pair: NsPair,
}

impl Hosts {
    /// Host a leases 10.244.1.0/24, host b 10.244.2.0/24, in 10.244.0.0/16.
    fn start(check_sender: bool, offload: bool) -> Hosts {
        Hosts::start_mixed(check_sender, offload, offload)
    }

    fn start_mixed(check_sender: bool, offload_a: bool, offload_b: bool) -> Hosts {
        let pair = NsPair::new();
        let a = start_backend(&pair, true, check_sender, offload_a);
        let b = start_backend(&pair, false, check_sender, offload_b);
        a.peers().upsert(net("10.244.2.0/24"), UNDERLAY_B).unwrap();
        b.peers().upsert(net("10.244.1.0/24"), UNDERLAY_A).unwrap();
        Hosts { a, b, pair }
    }

    fn ping_from_a(&self, args: &[&str]) -> (bool, String) {
        run_in(&self.pair.a.name, "ping", args)
    }
}

fn start_backend(pair: &NsPair, is_a: bool, check_sender: bool, offload: bool) -> UdpBackend {
    let (ns, lease, underlay, tag) = if is_a {
        (&pair.a, "10.244.1.0/24", UNDERLAY_A, "ota")
    } else {
        (&pair.b, "10.244.2.0/24", UNDERLAY_B, "otb")
    };
    let mut config = UdpConfig::new(
        net(lease),
        net("10.244.0.0/16"),
        SocketAddrV4::new(underlay, PORT),
    );
    config.tun_name = format!("{tag}{}", pair.suffix);
    config.check_sender = check_sender;
    config.offload = offload;
    ns.enter(move || UdpBackend::start(config))
        .unwrap_or_else(|error| panic!("starting the data path failed: {error}"))
}

/// Polls `stats` until `done` holds, for at most five seconds.
fn wait_for(backend: &UdpBackend, what: &str, done: impl Fn(&Stats) -> bool) -> Stats {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = backend.stats();
        if done(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Builds an ICMP echo request from `source` to `destination` with valid checksums.
fn echo_packet(source: Ipv4Addr, destination: Ipv4Addr) -> Vec<u8> {
    let mut packet = vec![
        0x45, 0x00, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00, 0x40, 0x01, 0x00, 0x00, 0, 0, 0, 0, 0, 0,
        0, 0, 0x08, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x01,
    ];
    packet[12..16].copy_from_slice(&source.octets());
    packet[16..20].copy_from_slice(&destination.octets());
    let ip_checksum = internet_checksum(&packet[..20]);
    packet[10..12].copy_from_slice(&ip_checksum.to_be_bytes());
    let icmp_checksum = internet_checksum(&packet[20..]);
    packet[22..24].copy_from_slice(&icmp_checksum.to_be_bytes());
    packet
}

fn ping_across(offload: bool) {
    let hosts = Hosts::start(true, offload);

    let (ok, output) = hosts.ping_from_a(&["-c", "3", "-i", "0.2", "-W", "2", "10.244.2.0"]);

    assert!(ok, "ping across the overlay failed: {output}");
    let a = hosts.a.stats();
    let b = hosts.b.stats();
    assert!(a.tun_to_udp.packets >= 3, "{a:?}");
    assert!(a.udp_to_tun.packets >= 3, "{a:?}");
    assert!(b.udp_to_tun.packets >= 3, "{b:?}");
    assert_eq!(a.drops.total(), 0, "{a:?}");
    assert_eq!(b.drops.total(), 0, "{b:?}");
}

#[test]
fn ping_across_with_offload() {
    ping_across(true);
}

#[test]
fn ping_across_without_offload() {
    ping_across(false);
}

const TOTAL: usize = 32 << 20;

/// Sends 32 MiB from a to b over TCP and compares a checksum of the bytes.
fn tcp_transfer(offload: bool) {
    let hosts = Hosts::start(true, offload);
    send_tcp(&hosts);
}

fn send_tcp(hosts: &Hosts) {
    let listener = hosts
        .pair
        .b
        .enter(|| TcpListener::bind("10.244.2.0:5201"))
        .expect("binding the TCP listener in b failed");
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accepting in b failed");
        let mut buffer = vec![0u8; 1 << 16];
        let (mut received, mut sum) = (0usize, 0u64);
        loop {
            let n = stream.read(&mut buffer).expect("reading in b failed");
            if n == 0 {
                break;
            }
            for (i, byte) in buffer[..n].iter().enumerate() {
                sum = sum.wrapping_add(u64::from(*byte) * ((received + i) as u64 % 251 + 1));
            }
            received += n;
        }
        (received, sum)
    });

    let sent_sum = hosts.pair.a.enter(move || {
        let address = "10.244.2.0:5201".parse().unwrap();
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
            .expect("connecting from a failed");
        let block: Vec<u8> = (0..1 << 16).map(|i: usize| (i * 7 % 256) as u8).collect();
        let mut sum = 0u64;
        let mut sent = 0usize;
        while sent < TOTAL {
            stream.write_all(&block).expect("writing from a failed");
            for (i, byte) in block.iter().enumerate() {
                sum = sum.wrapping_add(u64::from(*byte) * ((sent + i) as u64 % 251 + 1));
            }
            sent += block.len();
        }
        sum
    });

    let (received, received_sum) = server.join().expect("server thread panicked");
    assert_eq!(received, TOTAL);
    assert_eq!(received_sum, sent_sum);
    let a = hosts.a.stats();
    assert_eq!(a.drops.malformed, 0, "{a:?}");
    assert_eq!(hosts.b.stats().drops.unknown_sender, 0);
}

#[test]
fn tcp_transfer_with_offload() {
    tcp_transfer(true);
}

#[test]
fn tcp_transfer_without_offload() {
    tcp_transfer(false);
}

/// With offloads, a sends runs of packets as UDP GSO messages. Host b reads
/// without UDP GRO, so it receives the datagrams as they are on the wire: each
/// must hold exactly one IPv4 packet, as the original backend expects.
#[test]
fn gso_sends_one_packet_per_datagram() {
    let hosts = Hosts::start_mixed(true, true, false);
    assert!(hosts.a.offloads().udp_gso, "{:?}", hosts.a.offloads());
    assert!(!hosts.b.offloads().udp_gro, "{:?}", hosts.b.offloads());

    send_tcp(&hosts);

    let b = hosts.b.stats();
    assert_eq!(b.drops.total(), 0, "{b:?}");
    assert!(b.udp_to_tun.packets as usize > TOTAL / 1472, "{b:?}");
}

#[test]
fn receive_checks_drop_by_reason() {
    let hosts = Hosts::start(true, true);
    let veth_a = hosts.pair.veth_a();
    hosts
        .pair
        .a
        .ip(&["addr", "add", "10.200.0.3/24", "dev", &veth_a]);
    let target = SocketAddrV4::new(UNDERLAY_B, PORT);
    let good = echo_packet(Ipv4Addr::new(10, 244, 1, 5), Ipv4Addr::new(10, 244, 2, 0));
    let other_subnet = echo_packet(Ipv4Addr::new(10, 244, 1, 5), Ipv4Addr::new(10, 244, 3, 1));

    let forged = good.clone();
    hosts.pair.a.enter(move || {
        let socket = UdpSocket::bind("10.200.0.3:0").unwrap();
        socket.send_to(&forged, target).unwrap();
    });
    wait_for(&hosts.b, "a drop for the forged sender", |s| {
        s.drops.unknown_sender == 1
    });

    hosts.pair.a.enter(move || {
        let socket = UdpSocket::bind(SocketAddrV4::new(UNDERLAY_A, 0)).unwrap();
        socket.send_to(b"not an IPv4 packet", target).unwrap();
        socket.send_to(&other_subnet, target).unwrap();
        socket.send_to(&good, target).unwrap();
    });
    wait_for(&hosts.b, "the genuine packet", |s| {
        s.udp_to_tun.packets == 1
    });
    let stats = wait_for(&hosts.b, "the other drops", |s| {
        s.drops.malformed == 1 && s.drops.not_for_this_subnet == 1
    });

    assert_eq!(stats.drops.unknown_sender, 1, "{stats:?}");
    assert_eq!(stats.udp_to_tun.bytes, 28, "{stats:?}");
}

#[test]
fn sender_check_off_accepts_any_sender() {
    let hosts = Hosts::start(false, true);
    let veth_a = hosts.pair.veth_a();
    hosts
        .pair
        .a
        .ip(&["addr", "add", "10.200.0.3/24", "dev", &veth_a]);
    let packet = echo_packet(Ipv4Addr::new(10, 244, 1, 5), Ipv4Addr::new(10, 244, 2, 0));

    hosts.pair.a.enter(move || {
        let socket = UdpSocket::bind("10.200.0.3:0").unwrap();
        socket
            .send_to(&packet, SocketAddrV4::new(UNDERLAY_B, PORT))
            .unwrap();
    });

    let stats = wait_for(&hosts.b, "the packet from any sender", |s| {
        s.udp_to_tun.packets == 1
    });
    assert_eq!(stats.drops.unknown_sender, 0);
}

#[test]
fn unknown_subnet_gets_net_unreachable() {
    let hosts = Hosts::start(true, true);

    let (ok, output) = hosts.ping_from_a(&["-c", "1", "-W", "2", "10.244.9.1"]);

    assert!(!ok, "ping to an unknown subnet succeeded: {output}");
    assert!(
        output.contains("Destination Net Unreachable"),
        "expected an ICMP net unreachable, ping printed: {output}"
    );
    let stats = hosts.a.stats();
    assert_eq!(stats.drops.no_route, 1, "{stats:?}");
    assert_eq!(stats.tun_to_udp.packets, 0, "{stats:?}");
}

#[test]
fn ttl_one_is_dropped() {
    let hosts = Hosts::start(true, true);

    let (ok, output) = hosts.ping_from_a(&["-c", "1", "-W", "1", "-t", "1", "10.244.2.0"]);

    assert!(!ok, "ping with TTL 1 crossed the overlay: {output}");
    let stats = wait_for(&hosts.a, "the TTL drop", |s| s.drops.ttl_expired == 1);
    assert_eq!(stats.tun_to_udp.packets, 0, "{stats:?}");
}

#[test]
fn peer_updates_apply_while_running() {
    let hosts = Hosts::start(true, true);
    let peers = hosts.a.peers();

    assert!(peers.remove(net("10.244.2.0/24")));
    let (ok, output) = hosts.ping_from_a(&["-c", "1", "-W", "2", "10.244.2.0"]);
    assert!(!ok, "ping succeeded without a peer: {output}");
    assert!(output.contains("Destination Net Unreachable"), "{output}");

    peers.upsert(net("10.244.2.0/24"), UNDERLAY_B).unwrap();
    let (ok, output) = hosts.ping_from_a(&["-c", "1", "-W", "2", "10.244.2.0"]);
    assert!(ok, "ping failed after the peer came back: {output}");
}

#[test]
fn shutdown_removes_tun_device() {
    let hosts = Hosts::start(true, true);
    let name = hosts.a.tun_name().to_owned();
    let (exists, output) = run_in(&hosts.pair.a.name, "ip", &["link", "show", &name]);
    assert!(exists, "{output}");
    assert!(output.contains("mtu 1472"), "{output}");
    let (_, addresses) = run_in(&hosts.pair.a.name, "ip", &["-4", "addr", "show", &name]);
    assert!(addresses.contains("inet 10.244.1.0/16"), "{addresses}");
    assert!(hosts.a.is_running(), "packet threads of a running backend");

    let Hosts { a, b, pair } = hosts;
    a.shutdown().expect("shutdown reported an error");

    let (exists, output) = run_in(&pair.a.name, "ip", &["link", "show", &name]);
    assert!(
        !exists,
        "TUN device {name} still exists after shutdown: {output}"
    );
    drop(b);
}

/// Peer updates for other subnets while a transfer runs must not disturb it.
#[test]
fn peer_churn_during_transfer() {
    let hosts = Hosts::start(true, true);
    let peers = hosts.a.peers();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn_stop = std::sync::Arc::clone(&stop);
    let churn = std::thread::spawn(move || {
        let mut updates = 0u32;
        while !churn_stop.load(std::sync::atomic::Ordering::Relaxed) {
            let third = 10 + (updates % 200) as u8;
            let subnet = Ipv4Net::new(Ipv4Addr::new(10, 244, third, 0), 24).unwrap();
            peers.upsert(subnet, Ipv4Addr::new(10, 200, 0, 9)).unwrap();
            peers.remove(subnet);
            updates += 1;
        }
        updates
    });

    send_tcp(&hosts);

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let updates = churn.join().expect("churn thread panicked");
    assert!(updates > 0);
    assert_eq!(hosts.a.peers().len(), 1);
    assert_eq!(hosts.a.stats().drops.total(), 0, "{:?}", hosts.a.stats());
}
