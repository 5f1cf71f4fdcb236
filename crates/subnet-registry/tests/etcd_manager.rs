//! The lease manager against a real etcd server: races, restarts,
//! compaction, and leases written by operators with etcdctl.

mod common;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use futures::future::join_all;
use futures::StreamExt;
use subnet_core::lease::LeaseKey;
use subnet_core::NetworkConfig;
use subnet_registry::{
    AcquireError, EtcdConfig, EtcdRegistry, LeaseEvent, LeaseManager, ManagerConfig, PeerEvent,
    Registry, RegistryEvent,
};

use common::{connect, next_within, EtcdHarness, WALKTHROUGH_CONFIG};

const PREFIX: &str = "/coreos.com/network";

fn key(text: &str) -> LeaseKey {
    text.parse().unwrap()
}

fn manager(registry: &EtcdRegistry, ip: Ipv4Addr) -> LeaseManager<EtcdRegistry> {
    LeaseManager::new(registry.clone(), ManagerConfig::new(ip))
}

fn subnet_path(name: &str) -> String {
    format!("{PREFIX}/subnets/{name}")
}

#[tokio::test]
async fn race_for_last_subnet_has_one_winner() {
    common::init_logs();
    let h = EtcdHarness::start().await;
    // 10.0.0.0/28 in /30s leases 10.0.0.4, .8 and .12; two are taken.
    let config_text = r#"{"Network": "10.0.0.0/28", "SubnetLen": 30}"#;
    h.etcdctl(&["put", &format!("{PREFIX}/config"), config_text]);
    h.etcdctl(&[
        "put",
        &subnet_path("10.0.0.4-30"),
        r#"{"PublicIP":"192.0.2.4"}"#,
    ]);
    h.etcdctl(&[
        "put",
        &subnet_path("10.0.0.8-30"),
        r#"{"PublicIP":"192.0.2.8"}"#,
    ]);
    let config = NetworkConfig::parse(config_text).unwrap();

    for round in 0..5 {
        let first = manager(&h.registry, Ipv4Addr::new(198, 51, 100, 1));
        let second = manager(&connect(&h.server).await, Ipv4Addr::new(198, 51, 100, 2));

        let (a, b) = tokio::join!(first.acquire(&config), second.acquire(&config));

        let (winner, loser) = match (a, b) {
            (Ok(lease), Err(error)) | (Err(error), Ok(lease)) => (lease, error),
            other => panic!("round {round}: expected one winner, got {other:?}"),
        };
        assert_eq!(winner.key, key("10.0.0.12-30"));
        assert!(matches!(loser, AcquireError::Exhausted { .. }), "{loser:?}");
        assert_eq!(
            loser.to_string(),
            "no free IPv4 subnet: all 3 subnets from 10.0.0.4/30 to 10.0.0.12/30 of 10.0.0.0/28 \
             are taken (3 in use); free a lease or widen SubnetMin/SubnetMax"
        );
        h.etcdctl(&["del", &subnet_path("10.0.0.12-30")]);
    }
}

#[tokio::test]
async fn race_for_two_subnets_both_win() {
    let h = EtcdHarness::start().await;
    let config_text = r#"{"Network": "10.0.0.0/28", "SubnetLen": 30}"#;
    h.etcdctl(&[
        "put",
        &subnet_path("10.0.0.4-30"),
        r#"{"PublicIP":"192.0.2.4"}"#,
    ]);
    let config = NetworkConfig::parse(config_text).unwrap();
    let first = manager(&h.registry, Ipv4Addr::new(198, 51, 100, 1));
    let second = manager(&connect(&h.server).await, Ipv4Addr::new(198, 51, 100, 2));

    let (a, b) = tokio::join!(first.acquire(&config), second.acquire(&config));

    let keys: HashSet<LeaseKey> = [a.unwrap().key, b.unwrap().key].into();
    assert_eq!(keys, [key("10.0.0.8-30"), key("10.0.0.12-30")].into());
}

#[tokio::test]
async fn fifty_managers_get_distinct_subnets() {
    common::init_logs();
    let h = EtcdHarness::start().await;
    h.etcdctl(&["put", &format!("{PREFIX}/config"), WALKTHROUGH_CONFIG]);

    let mut managers = Vec::new();
    for host in 1..=50u8 {
        let registry = connect(&h.server).await;
        managers.push(manager(&registry, Ipv4Addr::new(198, 51, 100, host)));
    }
    let leases = join_all(managers.iter().map(|manager| async move {
        let config = manager.wait_for_config().await;
        manager.acquire(&config).await
    }))
    .await;

    let keys: HashSet<LeaseKey> = leases
        .into_iter()
        .map(|lease| lease.expect("every manager gets a lease").key)
        .collect();
    assert_eq!(keys.len(), 50);
    let stored = h.etcdctl(&["get", "--prefix", "--keys-only", &subnet_path("")]);
    assert_eq!(
        stored.lines().filter(|line| !line.is_empty()).count(),
        50,
        "{stored}"
    );
}

#[tokio::test]
async fn etcdctl_leases_are_peers() {
    let h = EtcdHarness::start().await;
    let grant = h.etcdctl(&["lease", "grant", "600"]);
    let lease_id = grant.split_whitespace().nth(1).unwrap().to_owned();
    h.etcdctl(&[
        "put",
        &format!("--lease={lease_id}"),
        &subnet_path("172.16.37.0-24"),
        r#"{"PublicIP":"10.25.31.61","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}"#,
    ]);
    h.etcdctl(&[
        "put",
        &subnet_path("172.16.38.0-24"),
        r#"{"PublicIP":"10.25.31.62"}"#,
    ]);
    h.etcdctl(&["put", &subnet_path("172.16.39.0-24"), "not a lease"]);
    let manager = manager(&h.registry, Ipv4Addr::new(10, 25, 31, 60));
    let mut peers = manager.watch_peers(None).await.unwrap();

    let PeerEvent::Added(current) = next_within(&mut peers, 10).await else {
        panic!("expected the current-form lease");
    };
    assert_eq!(current.key, key("172.16.37.0-24"));
    assert_eq!(current.attrs.backend_type, "vxlan");
    assert_eq!(
        current.attrs.backend_data.as_ref().unwrap()["VtepMAC"],
        "c6:d2:32:6f:8f:44"
    );
    let PeerEvent::Added(old) = next_within(&mut peers, 10).await else {
        panic!("expected the old-form reservation");
    };
    assert_eq!(old.key, key("172.16.38.0-24"));
    assert_eq!(old.attrs.public_ip, Ipv4Addr::new(10, 25, 31, 62));
    assert!(old.is_reservation());

    // Written after the watch started, in the old form.
    h.etcdctl(&[
        "put",
        &subnet_path("172.16.40.0-24"),
        r#"{"PublicIP":"10.25.31.64"}"#,
    ]);
    let PeerEvent::Added(later) = next_within(&mut peers, 10).await else {
        panic!("expected the later lease");
    };
    assert_eq!(later.key, key("172.16.40.0-24"));
    assert_eq!(later.attrs.backend_type, "");

    h.etcdctl(&["del", &subnet_path("172.16.38.0-24")]);
    assert_eq!(next_within(&mut peers, 10).await, PeerEvent::Removed(old));
    // The invalid entry is still there, untouched.
    assert_eq!(
        h.etcdctl(&["get", "--print-value-only", &subnet_path("172.16.39.0-24")])
            .trim(),
        "not a lease"
    );
}

#[tokio::test]
async fn watch_loses_nothing_across_restart() {
    common::init_logs();
    let mut h = EtcdHarness::start().await;
    h.etcdctl(&[
        "put",
        &subnet_path("172.16.5.0-24"),
        r#"{"PublicIP":"192.0.2.5"}"#,
    ]);
    let manager = manager(&h.registry, Ipv4Addr::new(192, 0, 2, 1));
    let mut peers = manager.watch_peers(None).await.unwrap();
    let PeerEvent::Added(first) = next_within(&mut peers, 10).await else {
        panic!("expected the first peer");
    };

    h.server.kill();
    let pending = tokio::spawn(async move {
        let next = next_within(&mut peers, 60).await;
        (next, peers)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    h.server.restart().unwrap();
    h.etcdctl(&[
        "put",
        &subnet_path("172.16.6.0-24"),
        r#"{"PublicIP":"192.0.2.6"}"#,
    ]);
    h.etcdctl(&["del", &subnet_path("172.16.5.0-24")]);
    h.etcdctl(&[
        "put",
        &subnet_path("172.16.7.0-24"),
        r#"{"PublicIP":"192.0.2.7"}"#,
    ]);

    let (event, mut peers) = pending.await.unwrap();
    let PeerEvent::Added(second) = event else {
        panic!("expected the peer added after the restart, got {event:?}");
    };
    assert_eq!(second.key, key("172.16.6.0-24"));
    assert_eq!(next_within(&mut peers, 30).await, PeerEvent::Removed(first));
    let PeerEvent::Added(third) = next_within(&mut peers, 30).await else {
        panic!("expected the last peer");
    };
    assert_eq!(third.key, key("172.16.7.0-24"));
}

#[tokio::test]
async fn compaction_while_disconnected_resyncs() {
    common::init_logs();
    let mut h = EtcdHarness::start().await;
    h.etcdctl(&[
        "put",
        &subnet_path("172.16.5.0-24"),
        r#"{"PublicIP":"192.0.2.5"}"#,
    ]);
    let start = h.registry.leases().await.unwrap().revision;
    let mut watch = h.registry.watch_leases(start).await.unwrap();
    h.etcdctl(&[
        "put",
        &subnet_path("172.16.6.0-24"),
        r#"{"PublicIP":"192.0.2.6"}"#,
    ]);
    assert!(matches!(
        next_within(&mut watch, 10).await,
        RegistryEvent::Added(_)
    ));

    // The watch is not polled while etcd restarts, changes and compacts, so
    // it resumes from a revision that is gone.
    h.server.kill();
    h.server.restart().unwrap();
    h.etcdctl(&["del", &subnet_path("172.16.5.0-24")]);
    h.etcdctl(&[
        "put",
        &subnet_path("172.16.7.0-24"),
        r#"{"PublicIP":"192.0.2.7"}"#,
    ]);
    let revision = h.registry.leases().await.unwrap().revision;
    h.etcdctl(&["compact", &revision.to_string()]);

    let RegistryEvent::Resync(snapshot) = next_within(&mut watch, 60).await else {
        panic!("expected a resync");
    };
    let keys: Vec<LeaseKey> = snapshot.leases.iter().map(|lease| lease.key).collect();
    assert_eq!(keys, vec![key("172.16.6.0-24"), key("172.16.7.0-24")]);
    assert!(snapshot.revision >= revision);

    h.etcdctl(&[
        "put",
        &subnet_path("172.16.8.0-24"),
        r#"{"PublicIP":"192.0.2.8"}"#,
    ]);
    let RegistryEvent::Added(lease) = next_within(&mut watch, 10).await else {
        panic!("expected events to go on after the resync");
    };
    assert_eq!(lease.key, key("172.16.8.0-24"));
}

#[tokio::test]
async fn compaction_resync_reaches_peers() {
    let mut h = EtcdHarness::start().await;
    h.etcdctl(&[
        "put",
        &subnet_path("172.16.5.0-24"),
        r#"{"PublicIP":"192.0.2.5"}"#,
    ]);
    let manager = manager(&h.registry, Ipv4Addr::new(192, 0, 2, 1));
    let mut peers = manager.watch_peers(None).await.unwrap();
    let PeerEvent::Added(first) = next_within(&mut peers, 10).await else {
        panic!("expected the first peer");
    };

    h.server.kill();
    h.server.restart().unwrap();
    h.etcdctl(&["del", &subnet_path("172.16.5.0-24")]);
    h.etcdctl(&[
        "put",
        &subnet_path("172.16.7.0-24"),
        r#"{"PublicIP":"192.0.2.7"}"#,
    ]);
    let revision = h.registry.leases().await.unwrap().revision;
    h.etcdctl(&["compact", &revision.to_string()]);

    assert_eq!(next_within(&mut peers, 60).await, PeerEvent::Removed(first));
    let PeerEvent::Added(added) = next_within(&mut peers, 10).await else {
        panic!("expected the new peer");
    };
    assert_eq!(added.key, key("172.16.7.0-24"));
}

#[tokio::test]
async fn deleted_lease_is_recreated() {
    common::init_logs();
    let h = EtcdHarness::start().await;
    let config = NetworkConfig::parse(WALKTHROUGH_CONFIG).unwrap();
    let manager = manager(&h.registry, Ipv4Addr::new(192, 0, 2, 1));
    let lease = manager.acquire(&config).await.unwrap();
    let mut keeper = manager.keep_renewed(config, lease.clone());
    // Let the keeper open its watch before the deletion.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), keeper.next())
            .await
            .is_err()
    );

    h.etcdctl(&["del", &subnet_path(&lease.key.to_string())]);

    let LeaseEvent::Recreated(recreated) = next_within(&mut keeper, 10).await else {
        panic!("expected the lease to be created again");
    };
    assert_eq!(recreated.key, lease.key);
    let value = h.etcdctl(&[
        "get",
        "--print-value-only",
        &subnet_path(&lease.key.to_string()),
    ]);
    assert_eq!(
        value.trim(),
        r#"{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"udp","BackendData":null}"#
    );
    // It is held by an etcd lease again, not turned into a reservation.
    let read = h.registry.lease(&lease.key).await.unwrap().unwrap();
    assert!(!read.is_reservation());
}

#[tokio::test]
async fn short_leases_are_renewed() {
    let h = EtcdHarness::start().await;
    let config = NetworkConfig::parse(WALKTHROUGH_CONFIG).unwrap();
    let mut settings = ManagerConfig::new(Ipv4Addr::new(192, 0, 2, 1));
    settings.lease_ttl = Duration::from_secs(4);
    settings.renew_margin = Duration::from_secs(3);
    let manager = LeaseManager::new(h.registry.clone(), settings);
    let lease = manager.acquire(&config).await.unwrap();
    let mut keeper = manager.keep_renewed(config, lease.clone());

    for _ in 0..3 {
        let LeaseEvent::Renewed(renewed) = next_within(&mut keeper, 10).await else {
            panic!("expected a renewal");
        };
        assert_eq!(renewed.key, lease.key);
    }
    // Three renewals span more than one 4-second lifetime.
    assert!(h.registry.lease(&lease.key).await.unwrap().is_some());
}

#[tokio::test]
async fn dead_endpoint_fails_over() {
    let h = EtcdHarness::start().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_endpoint = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let mut config = EtcdConfig::new([dead_endpoint, h.server.endpoint()]);
    config.request_timeout = Duration::from_secs(5);
    let registry = EtcdRegistry::connect(&config).await.unwrap();

    for _ in 0..20 {
        registry
            .leases()
            .await
            .expect("requests reach the live member");
    }
}

#[tokio::test]
async fn user_and_password_are_used() {
    let h = EtcdHarness::start().await;
    h.etcdctl(&["user", "add", "root:rootpw"]);
    h.etcdctl(&["auth", "enable"]);

    let mut config = EtcdConfig::new([h.server.endpoint()]);
    config.username = Some("root".into());
    config.password = Some("rootpw".into());
    let registry = EtcdRegistry::connect(&config).await.unwrap();
    registry.put_config(WALKTHROUGH_CONFIG).await.unwrap();
    assert_eq!(
        registry.config().await.unwrap().text.as_deref(),
        Some(WALKTHROUGH_CONFIG)
    );

    config.password = Some("wrong".into());
    let error = EtcdRegistry::connect(&config).await.unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with(&format!("connecting to etcd at {}: ", h.server.endpoint())),
        "{error}"
    );

    config.password = None;
    let error = EtcdRegistry::connect(&config).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "etcd username is set but password is not; set both or neither"
    );
}

#[tokio::test]
async fn tls_with_client_certificate() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki =
        subnet_registry::testing::TestPki::create(pki_dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let server = subnet_registry::testing::EtcdServer::start_tls(pki.clone())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut config = EtcdConfig::new([server.endpoint()]);
    config.ca_file = Some(pki.ca_file.clone());
    config.cert_file = Some(pki.client_cert_file.clone());
    config.key_file = Some(pki.client_key_file.clone());

    let registry = EtcdRegistry::connect(&config).await.unwrap();
    registry.put_config(WALKTHROUGH_CONFIG).await.unwrap();
    assert_eq!(
        registry.config().await.unwrap().text.as_deref(),
        Some(WALKTHROUGH_CONFIG)
    );
    assert_eq!(
        server
            .etcdctl(&["get", "--print-value-only", &format!("{PREFIX}/config")])
            .unwrap()
            .trim(),
        WALKTHROUGH_CONFIG
    );

    // Without a client certificate the server refuses the connection.
    config.cert_file = None;
    config.key_file = None;
    config.request_timeout = Duration::from_secs(3);
    let refused = match EtcdRegistry::connect(&config).await {
        Err(_) => true,
        Ok(registry) => registry.config().await.is_err(),
    };
    assert!(refused, "a client without a certificate must be refused");

    config.key_file = Some(pki_dir.path().join("missing.pem"));
    config.cert_file = Some(pki.client_cert_file.clone());
    let error = EtcdRegistry::connect(&config).await.unwrap_err();
    assert!(
        error.to_string().starts_with(&format!(
            "reading the etcd client key from {}: ",
            pki_dir.path().join("missing.pem").display()
        )),
        "{error}"
    );
}

#[tokio::test]
async fn renewal_retried_after_outage() {
    common::init_logs();
    let mut h = EtcdHarness::start().await;
    let config = NetworkConfig::parse(WALKTHROUGH_CONFIG).unwrap();
    let mut settings = ManagerConfig::new(Ipv4Addr::new(192, 0, 2, 1));
    settings.lease_ttl = Duration::from_secs(6);
    settings.renew_margin = Duration::from_secs(4);
    settings.max_retry_delay = Duration::from_millis(500);
    let manager = LeaseManager::new(h.registry.clone(), settings);
    let lease = manager.acquire(&config).await.unwrap();
    let mut keeper = manager.keep_renewed(config, lease.clone());

    // The renewal falls due while etcd is down; the keeper retries until it
    // is back. etcd extends its leases when it restarts, so the key stays.
    h.server.kill();
    let renewal = tokio::spawn(async move { next_within(&mut keeper, 30).await });
    tokio::time::sleep(Duration::from_secs(4)).await;
    h.server.restart().unwrap();

    let LeaseEvent::Renewed(renewed) = renewal.await.unwrap() else {
        panic!("expected a renewal after the outage");
    };
    assert_eq!(renewed.key, lease.key);
    assert!(h.registry.lease(&lease.key).await.unwrap().is_some());
}

#[tokio::test]
async fn config_wait_skips_invalid_value() {
    let h = EtcdHarness::start().await;
    let manager = manager(&h.registry, Ipv4Addr::new(192, 0, 2, 1));
    let waiting = tokio::spawn(async move { manager.wait_for_config().await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    h.etcdctl(&[
        "put",
        &format!("{PREFIX}/config"),
        r#"{"Network": "10.0.0.0/30"}"#,
    ]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "an invalid config must not end the wait"
    );
    h.etcdctl(&["put", &format!("{PREFIX}/config"), WALKTHROUGH_CONFIG]);

    let config = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("valid config read")
        .unwrap();
    assert_eq!(config, NetworkConfig::parse(WALKTHROUGH_CONFIG).unwrap());
}
