//! Rejected configs and devices that cannot be created.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};

use common::{unique_suffix, Netns};
use ipnet::Ipv4Net;
use overlay_udp::{StartError, UdpBackend, UdpConfig};

fn config() -> UdpConfig {
    UdpConfig::new(
        "10.244.1.0/24".parse().unwrap(),
        "10.244.0.0/16".parse().unwrap(),
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8285),
    )
}

fn start_error(config: UdpConfig) -> String {
    match UdpBackend::start(config) {
        Ok(_) => panic!("start succeeded with an invalid config"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn mtu_out_of_range() {
    let mut config = config();
    config.tun_mtu = 40;

    assert_eq!(
        start_error(config),
        "starting the udp backend failed: invalid TUN MTU 40: expected 68 to 65507 bytes"
    );
}

#[test]
fn tun_name_too_long() {
    let mut config = config();
    config.tun_name = "flannel-is-too-long".to_owned();

    assert_eq!(
        start_error(config),
        "starting the udp backend failed: invalid TUN device name \"flannel-is-too-long\": expected 1 to 15 bytes without '/', whitespace or NUL"
    );
}

#[test]
fn port_zero() {
    let mut config = config();
    config.bind = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);

    assert_eq!(
        start_error(config),
        "starting the udp backend failed: invalid bind address 127.0.0.1:0: the port must not be 0 (the udp backend's default is 8285)"
    );
}

#[test]
fn lease_outside_network() {
    let mut config = config();
    config.local_lease = "10.245.1.0/24".parse::<Ipv4Net>().unwrap();

    assert_eq!(
        start_error(config),
        "starting the udp backend failed: invalid local lease 10.245.1.0/24: it must lie inside the network 10.244.0.0/16 with a prefix length of at least /16"
    );
}

#[test]
fn device_name_in_use() {
    let ns = Netns::new(format!("ovu-e-{}", unique_suffix()));
    let name = format!("ote{}", unique_suffix());
    let mut first = config();
    first.tun_name = name.clone();
    let mut second = first.clone();
    second.bind = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8286);

    let (first, second) = ns.enter(move || {
        let first = UdpBackend::start(first);
        let second = UdpBackend::start(second);
        (first, second)
    });

    assert!(first.is_ok(), "{first:?}");
    let error = second.expect_err("a second device with the same name started");
    assert!(matches!(error, StartError::CreateTun { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("creating TUN device {name} failed: ")),
        "{error}"
    );
}

#[test]
fn port_in_use() {
    let ns = Netns::new(format!("ovu-e-{}", unique_suffix()));
    let mut first = config();
    first.tun_name = format!("ote{}", unique_suffix());
    let mut second = config();
    second.tun_name = format!("ote{}", unique_suffix());

    let (first, second) = ns.enter(move || {
        let first = UdpBackend::start(first);
        let second = UdpBackend::start(second);
        (first, second)
    });

    assert!(first.is_ok(), "{first:?}");
    let error = second.expect_err("a second socket on the same port started");
    assert_eq!(
        error.to_string(),
        "binding the udp backend's socket to 127.0.0.1:8285 failed: Address already in use (os error 98)"
    );
}

#[test]
fn handles_are_send_and_sync() {
    // A tokio program moves the backend and the peer table between tasks.
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<UdpBackend>();
    assert_send_sync::<overlay_udp::PeerTable>();
    assert_send_sync::<StartError>();
}
