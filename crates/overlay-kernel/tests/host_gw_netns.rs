//! The host-gw backend against the kernel, inside network namespaces the
//! tests create: routes via the peers' PublicIP, and only its own routes
//! removed.

mod common;

use std::net::Ipv4Addr;

use common::Netns;
use ipnet::Ipv4Net;
use overlay_kernel::{HostGwBackend, HostGwConfig};

fn net(text: &str) -> Ipv4Net {
    text.parse().unwrap()
}

fn underlay(tag: &str) -> (Netns, HostGwConfig) {
    let netns = Netns::new(tag);
    netns.veth_underlay("10.30.0.1/24");
    let config = HostGwConfig {
        underlay_name: "veth0".to_owned(),
        underlay_index: netns.index("veth0"),
    };
    (netns, config)
}

#[test]
fn routes_follow_peers() {
    let (netns, config) = underlay("hgw");
    let ns = netns.name.clone();
    netns.run(move || async move {
        let route = |prefix: &str| {
            common::run(std::process::Command::new("ip").args(["-n", &ns, "route", "show", prefix]))
                .trim()
                .to_owned()
        };
        let mut backend = HostGwBackend::new(config).unwrap();
        backend
            .upsert_peer(net("10.5.2.0/24"), Ipv4Addr::new(10, 30, 0, 2))
            .await
            .unwrap();
        backend
            .upsert_peer(net("10.5.3.0/24"), Ipv4Addr::new(10, 30, 0, 3))
            .await
            .unwrap();
        assert_eq!(
            route("10.5.2.0/24"),
            "10.5.2.0/24 via 10.30.0.2 dev veth0 proto static"
        );
        assert_eq!(
            route("10.5.3.0/24"),
            "10.5.3.0/24 via 10.30.0.3 dev veth0 proto static"
        );

        // The peer moved to another address.
        backend
            .upsert_peer(net("10.5.2.0/24"), Ipv4Addr::new(10, 30, 0, 12))
            .await
            .unwrap();
        assert_eq!(
            route("10.5.2.0/24"),
            "10.5.2.0/24 via 10.30.0.12 dev veth0 proto static"
        );

        assert!(backend.remove_peer(net("10.5.2.0/24")).await.unwrap());
        assert_eq!(route("10.5.2.0/24"), "");
        assert_eq!(backend.peers().count(), 1);

        backend.shutdown().await.unwrap();
        assert_eq!(route("10.5.3.0/24"), "");
    });
}

#[test]
fn foreign_routes_left_alone() {
    let (netns, config) = underlay("hgwforeign");
    netns.ip(&["route", "add", "10.5.9.0/24", "via", "10.30.0.9"]);
    netns.run(|| async move {
        let mut backend = HostGwBackend::new(config).unwrap();
        backend
            .upsert_peer(net("10.5.2.0/24"), Ipv4Addr::new(10, 30, 0, 2))
            .await
            .unwrap();
        assert!(!backend.remove_peer(net("10.5.9.0/24")).await.unwrap());
        backend.shutdown().await.unwrap();
    });
    let routes = netns.ip(&["route", "show"]);
    assert!(
        routes.contains("10.5.9.0/24 via 10.30.0.9 dev veth0"),
        "{routes}"
    );
    assert!(!routes.contains("10.5.2.0/24"), "{routes}");
}

#[test]
fn unreachable_peer_error_names_it() {
    let (netns, config) = underlay("hgwunreach");
    let error = netns.run(|| async move {
        let mut backend = HostGwBackend::new(config).unwrap();
        backend
            .upsert_peer(net("10.5.4.0/24"), Ipv4Addr::new(192, 0, 2, 4))
            .await
            .unwrap_err()
    });
    let message = error.to_string();
    assert!(
        message.starts_with(
            "installing the route for peer 192.0.2.4 (subnet 10.5.4.0/24) on veth0 failed: "
        ),
        "{message}"
    );
}
