//! The lease manager on the etcd v2 keys API of a real etcd server, next to
//! data written the way flannel 0.5 hosts and their operators write it:
//! `ETCDCTL_API=2 etcdctl set`, TTLs on leases, none on reservations.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::time::Duration;

use futures::future::join_all;
use futures::StreamExt;
use subnet_core::lease::LeaseKey;
use subnet_core::NetworkConfig;
use subnet_registry::testing::{EtcdServer, TestPki};
use subnet_registry::{
    AcquireError, EtcdConfig, EtcdV2ConnectError, EtcdV2Registry, Expiry, LeaseEvent, LeaseManager,
    ManagerConfig, PeerEvent, Registry, RegistryEvent,
};

use common::{
    connect_v2, next_within, push_out_v2_history, write_elsewhere_v2, EtcdV2Harness,
    WALKTHROUGH_CONFIG,
};

const PREFIX: &str = "/coreos.com/network";

fn key(text: &str) -> LeaseKey {
    text.parse().unwrap()
}

fn manager(registry: &EtcdV2Registry, ip: Ipv4Addr) -> LeaseManager<EtcdV2Registry> {
    LeaseManager::new(registry.clone(), ManagerConfig::new(ip))
}

fn subnet_path(name: &str) -> String {
    format!("{PREFIX}/subnets/{name}")
}

#[tokio::test]
async fn etcdctl_v2_leases_are_peers() {
    common::init_logs();
    let h = EtcdV2Harness::start().await;
    // A flannel 0.5 host's lease: the old value form, with a TTL.
    h.etcdctl(&[
        "set",
        "--ttl",
        "600",
        &subnet_path("172.16.37.0-24"),
        r#"{"PublicIP":"10.25.31.61"}"#,
    ]);
    // An operator's reservation: no TTL.
    h.etcdctl(&[
        "set",
        &subnet_path("172.16.38.0-24"),
        r#"{"PublicIP":"10.25.31.62","BackendType":"udp"}"#,
    ]);
    h.etcdctl(&["set", &subnet_path("172.16.39.0-24"), "not a lease"]);
    let manager = manager(&h.registry, Ipv4Addr::new(10, 25, 31, 60));
    let mut peers = manager.watch_peers(None).await.unwrap();

    let PeerEvent::Added(lease) = next_within(&mut peers, 10).await else {
        panic!("expected the leased peer");
    };
    assert_eq!(lease.key, key("172.16.37.0-24"));
    assert_eq!(lease.attrs.public_ip, Ipv4Addr::new(10, 25, 31, 61));
    assert_eq!(lease.attrs.backend_type, "");
    let Expiry::At(expiry) = lease.expiry else {
        panic!("expected an expiry, got {:?}", lease.expiry);
    };
    let left = expiry
        .duration_since(std::time::SystemTime::now())
        .expect("expiry in the future");
    assert!(left <= Duration::from_secs(600), "{left:?}");
    assert!(left > Duration::from_secs(590), "{left:?}");

    let PeerEvent::Added(reservation) = next_within(&mut peers, 10).await else {
        panic!("expected the reserved peer");
    };
    assert_eq!(reservation.key, key("172.16.38.0-24"));
    assert!(reservation.is_reservation());

    // Written after the watch started.
    h.etcdctl(&[
        "set",
        "--ttl",
        "600",
        &subnet_path("172.16.40.0-24"),
        r#"{"PublicIP":"10.25.31.64"}"#,
    ]);
    let PeerEvent::Added(later) = next_within(&mut peers, 10).await else {
        panic!("expected the later peer");
    };
    assert_eq!(later.key, key("172.16.40.0-24"));

    h.etcdctl(&["rm", &subnet_path("172.16.37.0-24")]);
    assert_eq!(next_within(&mut peers, 10).await, PeerEvent::Removed(lease));
    assert_eq!(
        h.etcdctl(&["get", &subnet_path("172.16.39.0-24")]).trim(),
        "not a lease"
    );
}

#[tokio::test]
async fn walkthrough_config_is_read() {
    let h = EtcdV2Harness::start().await;
    let manager = manager(&h.registry, Ipv4Addr::new(10, 25, 31, 61));
    let waiting = tokio::spawn(async move { manager.wait_for_config().await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The walkthrough's command, word for word.
    h.etcdctl(&[
        "set",
        "/coreos.com/network/config",
        r#"{"Network":"172.16.0.0/16"}"#,
    ]);

    let config = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("config read")
        .unwrap();
    assert_eq!(
        config,
        NetworkConfig::parse(r#"{"Network":"172.16.0.0/16"}"#).unwrap()
    );
    assert_eq!(config.ipv4.as_ref().unwrap().subnet_len(), 24);
}

#[tokio::test]
async fn config_wait_skips_invalid_value() {
    let h = EtcdV2Harness::start().await;
    let manager = manager(&h.registry, Ipv4Addr::new(192, 0, 2, 1));
    let waiting = tokio::spawn(async move { manager.wait_for_config().await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    h.etcdctl(&[
        "set",
        &format!("{PREFIX}/config"),
        r#"{"Network": "10.0.0.0/30"}"#,
    ]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "an invalid config must not end the wait"
    );
    h.etcdctl(&["set", &format!("{PREFIX}/config"), WALKTHROUGH_CONFIG]);

    let config = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("valid config read")
        .unwrap();
    assert_eq!(config, NetworkConfig::parse(WALKTHROUGH_CONFIG).unwrap());
}

#[tokio::test]
async fn acquired_lease_is_seen_by_etcdctl_v2() {
    let h = EtcdV2Harness::start().await;
    let config = NetworkConfig::parse(WALKTHROUGH_CONFIG).unwrap();
    let lease = manager(&h.registry, Ipv4Addr::new(192, 0, 2, 1))
        .acquire(&config)
        .await
        .unwrap();
    let path = subnet_path(&lease.key.to_string());

    let listed = h.etcdctl(&["ls", &format!("{PREFIX}/subnets")]);
    assert_eq!(listed.trim(), path);
    assert_eq!(
        h.etcdctl(&["get", &path]).trim(),
        r#"{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"udp","BackendData":null}"#
    );
    // A 24-hour TTL, as flannel 0.5 sets it.
    let extended = h.etcdctl(&["-o", "extended", "get", &path]);
    let ttl: u64 = extended
        .lines()
        .find_map(|line| line.strip_prefix("TTL: "))
        .unwrap_or_else(|| panic!("no TTL in {extended}"))
        .parse()
        .unwrap();
    assert!(ttl <= 86_400, "{extended}");
    assert!(ttl > 86_000, "{extended}");
    // The v3 keyspace is separate and stays empty.
    let v3 = h
        .server
        .etcdctl(&["get", "--prefix", "--keys-only", PREFIX])
        .unwrap();
    assert_eq!(v3.trim(), "");
}

#[tokio::test]
async fn race_for_last_subnet_has_one_winner() {
    common::init_logs();
    let h = EtcdV2Harness::start().await;
    // 10.0.0.0/28 in /30s leases 10.0.0.4, .8 and .12; two are taken.
    let config_text = r#"{"Network": "10.0.0.0/28", "SubnetLen": 30}"#;
    h.etcdctl(&["set", &format!("{PREFIX}/config"), config_text]);
    h.etcdctl(&[
        "set",
        &subnet_path("10.0.0.4-30"),
        r#"{"PublicIP":"192.0.2.4"}"#,
    ]);
    h.etcdctl(&[
        "set",
        "--ttl",
        "600",
        &subnet_path("10.0.0.8-30"),
        r#"{"PublicIP":"192.0.2.8"}"#,
    ]);
    let config = NetworkConfig::parse(config_text).unwrap();

    for round in 0..5 {
        let first = manager(&h.registry, Ipv4Addr::new(198, 51, 100, 1));
        let second = manager(&connect_v2(&h.server), Ipv4Addr::new(198, 51, 100, 2));

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
        h.etcdctl(&["rm", &subnet_path("10.0.0.12-30")]);
    }
}

#[tokio::test]
async fn twenty_managers_get_distinct_subnets() {
    let h = EtcdV2Harness::start().await;
    h.etcdctl(&["set", &format!("{PREFIX}/config"), WALKTHROUGH_CONFIG]);

    let managers: Vec<_> = (1..=20u8)
        .map(|host| manager(&connect_v2(&h.server), Ipv4Addr::new(198, 51, 100, host)))
        .collect();
    let leases = join_all(managers.iter().map(|manager| async move {
        let config = manager.wait_for_config().await;
        manager.acquire(&config).await
    }))
    .await;

    let keys: HashSet<LeaseKey> = leases
        .into_iter()
        .map(|lease| lease.expect("every manager gets a lease").key)
        .collect();
    assert_eq!(keys.len(), 20);
    let listed = h.etcdctl(&["ls", &format!("{PREFIX}/subnets")]);
    assert_eq!(listed.lines().count(), 20, "{listed}");
}

#[tokio::test]
async fn cleared_history_resync_reaches_peers() {
    common::init_logs();
    let h = EtcdV2Harness::start().await;
    h.etcdctl(&[
        "set",
        &subnet_path("172.16.5.0-24"),
        r#"{"PublicIP":"192.0.2.5"}"#,
    ]);
    let manager = manager(&h.registry, Ipv4Addr::new(192, 0, 2, 1));
    let mut peers = manager.watch_peers(None).await.unwrap();
    let PeerEvent::Added(first) = next_within(&mut peers, 10).await else {
        panic!("expected the first peer");
    };

    // The watch is not polled while the lease changes and more than the
    // 1000 changes etcd v2 remembers are written elsewhere.
    h.etcdctl(&["rm", &subnet_path("172.16.5.0-24")]);
    h.etcdctl(&[
        "set",
        &subnet_path("172.16.7.0-24"),
        r#"{"PublicIP":"192.0.2.7"}"#,
    ]);
    let revision = h.registry.leases().await.unwrap().revision;
    push_out_v2_history(&h.server, revision).await;

    assert_eq!(next_within(&mut peers, 30).await, PeerEvent::Removed(first));
    let PeerEvent::Added(added) = next_within(&mut peers, 10).await else {
        panic!("expected the new peer");
    };
    assert_eq!(added.key, key("172.16.7.0-24"));

    // Events go on after the resync.
    h.etcdctl(&[
        "set",
        &subnet_path("172.16.8.0-24"),
        r#"{"PublicIP":"192.0.2.8"}"#,
    ]);
    let PeerEvent::Added(later) = next_within(&mut peers, 10).await else {
        panic!("expected the peer added after the resync");
    };
    assert_eq!(later.key, key("172.16.8.0-24"));
}

#[tokio::test]
async fn quiet_watch_outlasts_unrelated_writes() {
    let h = EtcdV2Harness::start().await;
    let start = h.registry.leases().await.unwrap().revision;
    let mut watch = h.registry.watch_leases(start).await.unwrap();
    // Let the long poll reach etcd before the unrelated writes.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), watch.next())
            .await
            .is_err()
    );
    push_out_v2_history(&h.server, start).await;

    h.etcdctl(&[
        "set",
        &subnet_path("172.16.9.0-24"),
        r#"{"PublicIP":"192.0.2.9"}"#,
    ]);

    // The poll was waiting in etcd the whole time, so it gets the event and
    // no resync.
    let RegistryEvent::Added(lease) = next_within(&mut watch, 10).await else {
        panic!("expected the lease");
    };
    assert_eq!(lease.key, key("172.16.9.0-24"));
}

#[tokio::test]
async fn watch_loses_nothing_across_restart() {
    common::init_logs();
    let mut h = EtcdV2Harness::start().await;
    h.etcdctl(&[
        "set",
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
        "set",
        &subnet_path("172.16.6.0-24"),
        r#"{"PublicIP":"192.0.2.6"}"#,
    ]);
    h.etcdctl(&["rm", &subnet_path("172.16.5.0-24")]);

    let (event, mut peers) = pending.await.unwrap();
    let PeerEvent::Added(second) = event else {
        panic!("expected the peer added after the restart, got {event:?}");
    };
    assert_eq!(second.key, key("172.16.6.0-24"));
    assert_eq!(next_within(&mut peers, 30).await, PeerEvent::Removed(first));
}

#[tokio::test]
async fn deleted_lease_is_recreated() {
    let h = EtcdV2Harness::start().await;
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

    h.etcdctl(&["rm", &subnet_path(&lease.key.to_string())]);

    let LeaseEvent::Recreated(recreated) = next_within(&mut keeper, 10).await else {
        panic!("expected the lease to be created again");
    };
    assert_eq!(recreated.key, lease.key);
    let read = h.registry.lease(&lease.key).await.unwrap().unwrap();
    assert!(!read.is_reservation());
}

#[tokio::test]
async fn short_leases_are_renewed() {
    let h = EtcdV2Harness::start().await;
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
    let h = EtcdV2Harness::start().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_endpoint = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let mut config = EtcdConfig::new([dead_endpoint, h.server.endpoint()]);
    config.request_timeout = Duration::from_secs(5);
    let registry = EtcdV2Registry::connect(&config).unwrap();

    for _ in 0..20 {
        registry
            .leases()
            .await
            .expect("requests reach the live member");
    }
}

#[tokio::test]
async fn unreachable_endpoint_error_names_key() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_endpoint = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let registry = EtcdV2Registry::connect(&EtcdConfig::new([dead_endpoint.clone()])).unwrap();

    let error = registry.config().await.unwrap_err();

    let message = error.to_string();
    let expected = format!("etcd v2 get of /coreos.com/network/config at {dead_endpoint} failed: ");
    assert!(message.starts_with(&expected), "{message}");
    assert!(message.contains("Connection refused"), "{message}");
}

/// Sends one request with a JSON body to the etcd v2 HTTP API, as user
/// root with password rootpw when `as_root` is set, and returns the status
/// line, headers and body.
fn v2_http(server: &EtcdServer, method: &str, path: &str, json: &str, as_root: bool) -> String {
    let address = server.endpoint().trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    // "root:rootpw" in base64.
    let authorization = if as_root {
        "Authorization: Basic cm9vdDpyb290cHc=\r\n"
    } else {
        ""
    };
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {address}\r\n{authorization}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
        json.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[tokio::test]
async fn user_and_password_are_used() {
    let h = EtcdV2Harness::start().await;
    let created = v2_http(
        &h.server,
        "PUT",
        "/v2/auth/users/root",
        r#"{"user":"root","password":"rootpw"}"#,
        false,
    );
    assert!(created.starts_with("HTTP/1.0 201"), "{created}");
    let enabled = v2_http(&h.server, "PUT", "/v2/auth/enable", "", false);
    assert!(enabled.starts_with("HTTP/1.0 200"), "{enabled}");
    // Without this, requests without credentials act as the guest role,
    // which may read and write everything.
    let mut root = EtcdConfig::new([h.server.endpoint()]);
    root.username = Some("root".into());
    root.password = Some("rootpw".into());
    let revoke = r#"{"role":"guest","revoke":{"kv":{"read":["/*"],"write":["/*"]}}}"#;
    let revoked = v2_http(&h.server, "PUT", "/v2/auth/roles/guest", revoke, true);
    assert!(revoked.starts_with("HTTP/1.0 200"), "{revoked}");

    let registry = EtcdV2Registry::connect(&root).unwrap();
    registry.put_config(WALKTHROUGH_CONFIG).await.unwrap();
    assert_eq!(
        registry.config().await.unwrap().text.as_deref(),
        Some(WALKTHROUGH_CONFIG)
    );

    let mut wrong = root.clone();
    wrong.password = Some("wrong".into());
    let error = EtcdV2Registry::connect(&wrong)
        .unwrap()
        .config()
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "etcd get of /coreos.com/network/config returned an unexpected response: \
         HTTP 401 Unauthorized, etcd error 110: The request requires user authentication \
         (Insufficient credentials)"
    );

    let anonymous = connect_v2(&h.server);
    assert!(anonymous.config().await.is_err());

    let mut half = root.clone();
    half.password = None;
    let error = EtcdV2Registry::connect(&half).unwrap_err();
    assert_eq!(
        error.to_string(),
        "etcd username is set but password is not; set both or neither"
    );
}

#[tokio::test]
async fn tls_with_client_certificate() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = TestPki::create(pki_dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let server = EtcdServer::start_tls_v2(pki.clone()).unwrap_or_else(|e| panic!("{e}"));
    let mut config = EtcdConfig::new([server.endpoint()]);
    config.ca_file = Some(pki.ca_file.clone());
    config.cert_file = Some(pki.client_cert_file.clone());
    config.key_file = Some(pki.client_key_file.clone());

    let registry = EtcdV2Registry::connect(&config).unwrap();
    registry.put_config(WALKTHROUGH_CONFIG).await.unwrap();
    assert_eq!(
        registry.config().await.unwrap().text.as_deref(),
        Some(WALKTHROUGH_CONFIG)
    );
    assert_eq!(
        server
            .etcdctl_v2(&["get", &format!("{PREFIX}/config")])
            .unwrap()
            .trim(),
        WALKTHROUGH_CONFIG
    );

    // Without a client certificate the server refuses the connection.
    config.cert_file = None;
    config.key_file = None;
    config.request_timeout = Duration::from_secs(3);
    let registry = EtcdV2Registry::connect(&config).unwrap();
    assert!(
        registry.config().await.is_err(),
        "a client without a certificate must be refused"
    );

    config.key_file = Some(pki_dir.path().join("missing.pem"));
    config.cert_file = Some(pki.client_cert_file.clone());
    let error = EtcdV2Registry::connect(&config).unwrap_err();
    assert!(
        error.to_string().starts_with(&format!(
            "reading the etcd client key from {}: ",
            pki_dir.path().join("missing.pem").display()
        )),
        "{error}"
    );

    config.key_file = Some(pki.client_cert_file.clone());
    let error = EtcdV2Registry::connect(&config).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "the etcd client key file {} is invalid: expected a PEM private key",
            pki.client_cert_file.display()
        )
    );
}

#[test]
fn bad_settings_are_rejected() {
    let cases: [(EtcdConfig, &str); 5] = [
        (
            EtcdConfig::new(Vec::<String>::new()),
            "no etcd endpoint given; expected at least one URL such as http://127.0.0.1:2379",
        ),
        (
            EtcdConfig::new(["127.0.0.1:2379"]),
            "invalid etcd endpoint \"127.0.0.1:2379\": the scheme must be http or https; \
             expected a URL such as http://127.0.0.1:2379",
        ),
        (
            EtcdConfig::new(["http://127.0.0.1:2379/v2"]),
            "invalid etcd endpoint \"http://127.0.0.1:2379/v2\": it must not have a path or a \
             query; expected a URL such as http://127.0.0.1:2379",
        ),
        (
            EtcdConfig::new(["https://127.0.0.1:2379"]),
            "etcd endpoint https://127.0.0.1:2379 uses https but no CA file is set; set the etcd \
             CA file",
        ),
        (
            EtcdConfig {
                ca_file: Some("/etc/ssl/etcd-ca.pem".into()),
                ..EtcdConfig::new(["http://127.0.0.1:2379"])
            },
            "etcd TLS files are set but no endpoint uses https: http://127.0.0.1:2379",
        ),
    ];
    for (config, expected) in cases {
        let error: EtcdV2ConnectError = EtcdV2Registry::connect(&config).unwrap_err();
        assert_eq!(error.to_string(), expected, "{:?}", config.endpoints);
    }
}

#[tokio::test]
async fn repeated_poll_keeps_watch_in_history() {
    let h = EtcdV2Harness::start().await;
    let registry = connect_v2(&h.server).with_poll_timeout(Duration::from_millis(500));
    let start = registry.leases().await.unwrap().revision;
    let mut watch = registry.watch_leases(start).await.unwrap();

    // 1200 changes elsewhere in two rounds, each shorter than etcd's
    // history, with the watch sending its request again between them.
    for _ in 0..2 {
        assert!(
            tokio::time::timeout(Duration::from_millis(1500), watch.next())
                .await
                .is_err()
        );
        write_elsewhere_v2(&h.server, 600).await;
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), watch.next())
            .await
            .is_err()
    );
    h.etcdctl(&[
        "set",
        &subnet_path("172.16.9.0-24"),
        r#"{"PublicIP":"192.0.2.9"}"#,
    ]);

    let event = next_within(&mut watch, 10).await;
    let RegistryEvent::Added(lease) = event else {
        panic!("expected the lease without a resync, got {event:?}");
    };
    assert_eq!(lease.key, key("172.16.9.0-24"));
}

#[tokio::test]
async fn server_without_v2_is_reported() {
    let server = EtcdServer::start().unwrap_or_else(|error| panic!("{error}"));
    let registry = connect_v2(&server);

    let error = registry.leases().await.unwrap_err();

    assert_eq!(
        error.to_string(),
        "etcd get of /coreos.com/network/subnets returned an unexpected response: \
         HTTP 404 Not Found: this etcd does not serve the v2 API; start etcd with \
         --enable-v2=true"
    );
}
