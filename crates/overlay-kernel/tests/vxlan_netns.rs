//! The vxlan backend against the kernel, inside network namespaces the
//! tests create: the device, its address, and each peer's route,
//! neighbour and FDB entries as `ip` and `bridge` show them.

mod common;

use std::net::Ipv4Addr;

use common::Netns;
use ipnet::Ipv4Net;
use overlay_kernel::{VtepMac, VxlanBackend, VxlanConfig, VxlanOptions};

const MAC_A: VtepMac = VtepMac([0x02, 0x42, 0x0a, 0x00, 0x00, 0x02]);
const MAC_B: VtepMac = VtepMac([0x02, 0x42, 0x0a, 0x00, 0x00, 0x03]);

fn net(text: &str) -> Ipv4Net {
    text.parse().unwrap()
}

/// Creates a namespace with `veth0` at 10.30.0.1/24 and returns it with
/// the config that builds the device on it.
fn underlay(tag: &str, options: VxlanOptions) -> (Netns, VxlanConfig) {
    let netns = Netns::new(tag);
    netns.veth_underlay("10.30.0.1/24");
    let config = VxlanConfig {
        options,
        underlay_name: "veth0".to_owned(),
        underlay_index: netns.index("veth0"),
        underlay_address: Ipv4Addr::new(10, 30, 0, 1),
        underlay_mtu: 1500,
    };
    (netns, config)
}

#[test]
fn device_created_with_defaults() {
    let (netns, config) = underlay("vxdev", VxlanOptions::default());
    let (mac, mtu, data) = netns.run(|| async move {
        let backend = VxlanBackend::create(config).await.unwrap();
        assert_eq!(backend.device_name(), "flannel.1");
        (backend.vtep_mac(), backend.mtu(), backend.backend_data())
    });

    let link = netns.ip(&["-d", "link", "show", "dev", "flannel.1"]);
    for expected in [
        "mtu 1450",
        "vxlan id 1 ",
        "local 10.30.0.1 ",
        "dev veth0 ",
        "dstport 8472 ",
        "nolearning",
        &format!("link/ether {mac} "),
    ] {
        assert!(link.contains(expected), "expected {expected:?} in:\n{link}");
    }
    assert!(
        link.contains(",UP,") || link.contains("<UP,") || link.contains(",UP>"),
        "flannel.1 should be up:\n{link}"
    );
    assert_eq!(mtu, 1450);
    assert_eq!(
        data.to_json().to_string(),
        format!(r#"{{"VNI":1,"VtepMAC":"{mac}"}}"#)
    );
}

#[test]
fn device_created_with_options() {
    let options = VxlanOptions {
        vni: 42,
        port: Some(4789),
        gbp: true,
        learning: true,
        mtu: Some(1400),
        ..VxlanOptions::default()
    };
    let (netns, config) = underlay("vxopt", options);
    netns.run(|| async move {
        VxlanBackend::create(config).await.unwrap();
    });

    let link = netns.ip(&["-d", "link", "show", "dev", "flannel.42"]);
    for expected in ["mtu 1400", "vxlan id 42 ", "dstport 4789 ", "gbp"] {
        assert!(link.contains(expected), "expected {expected:?} in:\n{link}");
    }
    assert!(
        !link.contains("nolearning"),
        "learning should be on:\n{link}"
    );
}

#[test]
fn existing_device_is_replaced() {
    let (netns, config) = underlay("vxold", VxlanOptions::default());
    netns.ip(&[
        "link",
        "add",
        "flannel.1",
        "type",
        "vxlan",
        "id",
        "1",
        "dstport",
        "4789",
        "dev",
        "veth0",
    ]);
    netns.run(|| async move {
        VxlanBackend::create(config).await.unwrap();
    });

    let link = netns.ip(&["-d", "link", "show", "dev", "flannel.1"]);
    assert!(
        link.contains("dstport 8472 "),
        "the old device should be gone:\n{link}"
    );
    assert!(link.contains("local 10.30.0.1 "), "{link}");
}

#[test]
fn small_underlay_mtu_rejected() {
    let (netns, mut config) = underlay("vxmtu", VxlanOptions::default());
    config.underlay_mtu = 100;
    let error = netns.run(|| async move { VxlanBackend::create(config).await.unwrap_err() });
    assert_eq!(
        error.to_string(),
        "interface veth0 has MTU 100, which leaves no valid MTU for flannel.1 (at least 68 after 50 bytes of VXLAN headers); set Backend.MTU or use an interface with a larger MTU"
    );
}

#[test]
fn lease_address_is_network_slash_32() {
    let (netns, config) = underlay("vxaddr", VxlanOptions::default());
    let ns = netns.name.clone();
    netns.run(move || async move {
        let mut backend = VxlanBackend::create(config).await.unwrap();
        backend.set_lease(net("10.5.1.0/24")).await.unwrap();
        let shown = common::run(std::process::Command::new("ip").args([
            "-n",
            &ns,
            "-4",
            "-o",
            "addr",
            "show",
            "dev",
            "flannel.1",
        ]));
        assert!(shown.contains("inet 10.5.1.0/32 "), "{shown}");

        // A new lease replaces the old address.
        backend.set_lease(net("10.5.7.0/24")).await.unwrap();
    });
    let shown = netns.ip(&["-4", "-o", "addr", "show", "dev", "flannel.1"]);
    assert!(shown.contains("inet 10.5.7.0/32 "), "{shown}");
    assert!(
        !shown.contains("10.5.1.0"),
        "the old lease's address should be gone:\n{shown}"
    );
}

#[test]
fn peer_route_neighbour_and_fdb() {
    let (netns, config) = underlay("vxpeer", VxlanOptions::default());
    let ns = netns.name.clone();
    netns.run(move || async move {
        let ip = |args: &[&str]| {
            common::run(
                std::process::Command::new("ip")
                    .arg("-n")
                    .arg(&ns)
                    .args(args),
            )
        };
        let fdb = || {
            common::run(std::process::Command::new("bridge").args([
                "-n",
                &ns,
                "fdb",
                "show",
                "dev",
                "flannel.1",
            ]))
        };

        let mut backend = VxlanBackend::create(config).await.unwrap();
        backend.set_lease(net("10.5.1.0/24")).await.unwrap();
        let subnet = net("10.5.2.0/24");
        backend
            .upsert_peer(subnet, Ipv4Addr::new(10, 30, 0, 2), MAC_A)
            .await
            .unwrap();

        let route = ip(&["route", "show", "10.5.2.0/24"]);
        assert_eq!(
            route.trim(),
            "10.5.2.0/24 via 10.5.2.0 dev flannel.1 proto static onlink"
        );
        let neighbour = ip(&["neigh", "show", "dev", "flannel.1"]);
        assert!(
            neighbour.contains(&format!("10.5.2.0 lladdr {MAC_A} PERMANENT")),
            "{neighbour}"
        );
        let entries = fdb();
        assert!(
            entries.contains(&format!("{MAC_A} dst 10.30.0.2 self permanent")),
            "{entries}"
        );

        // The peer restarted with a new device: the old MAC must go.
        backend
            .upsert_peer(subnet, Ipv4Addr::new(10, 30, 0, 3), MAC_B)
            .await
            .unwrap();
        let entries = fdb();
        assert!(
            entries.contains(&format!("{MAC_B} dst 10.30.0.3 self permanent")),
            "{entries}"
        );
        assert!(!entries.contains(&MAC_A.to_string()), "{entries}");
        let neighbour = ip(&["neigh", "show", "dev", "flannel.1"]);
        assert!(
            neighbour.contains(&format!("10.5.2.0 lladdr {MAC_B} PERMANENT")),
            "{neighbour}"
        );

        assert!(backend.remove_peer(subnet).await.unwrap());
        assert!(!backend.remove_peer(subnet).await.unwrap());
        assert_eq!(ip(&["route", "show", "10.5.2.0/24"]).trim(), "");
        let neighbour = ip(&["neigh", "show", "dev", "flannel.1"]);
        assert!(!neighbour.contains("10.5.2.0"), "{neighbour}");
        let entries = fdb();
        assert!(!entries.contains(&MAC_B.to_string()), "{entries}");

        backend.shutdown().await.unwrap();
    });
    let links = netns.ip(&["-o", "link", "show"]);
    assert!(
        !links.contains("flannel.1"),
        "shutdown should remove the device:\n{links}"
    );
}

#[test]
fn direct_routing_on_shared_network() {
    let options = VxlanOptions {
        direct_routing: true,
        ..VxlanOptions::default()
    };
    let (netns, config) = underlay("vxdirect", options);
    netns.run(|| async move {
        let mut backend = VxlanBackend::create(config).await.unwrap();
        backend.set_lease(net("10.5.1.0/24")).await.unwrap();
        backend
            .upsert_peer(net("10.5.2.0/24"), Ipv4Addr::new(10, 30, 0, 2), MAC_A)
            .await
            .unwrap();
        // A peer outside the underlay's network still goes through VXLAN.
        backend
            .upsert_peer(net("10.5.3.0/24"), Ipv4Addr::new(192, 0, 2, 3), MAC_B)
            .await
            .unwrap();
        // Dropping the backend leaves its kernel state in place.
        drop(backend);
    });

    let direct = netns.ip(&["route", "show", "10.5.2.0/24"]);
    assert_eq!(
        direct.trim(),
        "10.5.2.0/24 via 10.30.0.2 dev veth0 proto static"
    );
    let tunnelled = netns.ip(&["route", "show", "10.5.3.0/24"]);
    assert_eq!(
        tunnelled.trim(),
        "10.5.3.0/24 via 10.5.3.0 dev flannel.1 proto static onlink"
    );
    let neighbour = netns.ip(&["neigh", "show", "dev", "flannel.1"]);
    assert!(!neighbour.contains("10.5.2.0"), "{neighbour}");
}
