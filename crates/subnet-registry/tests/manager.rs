//! The lease manager on the in-memory registry, with a manual clock and a
//! seeded random number generator, so nothing here sleeps or depends on
//! chance.

mod common;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::SeedableRng;
use subnet_core::lease::{LeaseAttrs, LeaseKey};
use subnet_core::NetworkConfig;
use subnet_registry::{
    Clock, Expiry, LeaseEvent, LeaseManager, ManagerConfig, ManualClock, MemoryRegistry, PeerEvent,
    Registry,
};

use common::{next_within, MemoryHarness, WALKTHROUGH_CONFIG};

const HOUR: Duration = Duration::from_secs(60 * 60);

type Manager = LeaseManager<MemoryRegistry<ManualClock>, ManualClock>;

fn key(text: &str) -> LeaseKey {
    text.parse().unwrap()
}

fn config(text: &str) -> NetworkConfig {
    NetworkConfig::parse(text).unwrap()
}

fn manager(h: &MemoryHarness, ip: &str, seed: u64) -> Manager {
    manager_with(h, ManagerConfig::new(ip.parse().unwrap()), seed)
}

fn manager_with(h: &MemoryHarness, settings: ManagerConfig, seed: u64) -> Manager {
    LeaseManager::with_clock_and_rng(
        h.registry.clone(),
        settings,
        h.clock.clone(),
        StdRng::seed_from_u64(seed),
    )
}

#[tokio::test]
async fn config_wait_ends_when_written() {
    common::init_logs();
    let h = MemoryHarness::new();
    let manager = manager(&h, "192.0.2.1", 1);
    let waiting = tokio::spawn({
        let manager = manager.clone();
        async move { manager.wait_for_config().await }
    });
    tokio::task::yield_now().await;

    h.registry.put_config("{\"Network\": ");
    tokio::task::yield_now().await;
    h.registry.put_config(WALKTHROUGH_CONFIG);

    let config = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("config read")
        .unwrap();
    assert_eq!(config.ipv4.unwrap().network().to_string(), "172.16.0.0/16");
}

/// Collects the crate's log lines while a test runs on one thread.
#[derive(Clone, Default)]
struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[tokio::test]
async fn config_wait_logs_key_and_errors() {
    let capture = LogCapture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let h = MemoryHarness::new();
    let manager = manager(&h, "192.0.2.1", 1);
    let waiting = tokio::spawn({
        let manager = manager.clone();
        async move { manager.wait_for_config().await }
    });
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }

    // Unrelated changes do not repeat the message; a bad config is
    // reported once per distinct error.
    h.registry
        .put_raw("172.16.5.0-24", br#"{"PublicIP":"192.0.2.5"}"#, None);
    h.registry.put_config("{\"Network\": ");
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    h.registry.put_config("{\"Network\": ");
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    h.registry.put_config(WALKTHROUGH_CONFIG);
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("config read")
        .unwrap();

    let logs = capture.text();
    assert_eq!(
        logs.matches("waiting for the network config to be written key=/coreos.com/network/config")
            .count(),
        1,
        "{logs}"
    );
    let error = NetworkConfig::parse("{\"Network\": ")
        .unwrap_err()
        .to_string();
    assert_eq!(logs.matches(&error).count(), 1, "{logs}");
    assert!(
        logs.contains("invalid network config; waiting for a valid one"),
        "{logs}"
    );
    assert!(
        logs.contains("network config read key=/coreos.com/network/config"),
        "{logs}"
    );
}

#[tokio::test]
async fn acquire_picks_free_subnet_in_range() {
    let h = MemoryHarness::new();
    let config = config(WALKTHROUGH_CONFIG);

    let lease = manager(&h, "192.0.2.1", 7).acquire(&config).await.unwrap();

    let subnet = lease.key.ipv4.unwrap();
    assert!(config.ipv4.unwrap().contains(&subnet), "{subnet}");
    assert_eq!(lease.key.ipv6, None);
    assert_eq!(
        lease.attrs,
        LeaseAttrs {
            public_ip: "192.0.2.1".parse().unwrap(),
            public_ipv6: None,
            backend_type: "udp".into(),
            backend_data: None,
        }
    );
    assert_eq!(lease.expiry, Expiry::At(h.clock.now() + 24 * HOUR));
    assert_eq!(h.registry.leases().await.unwrap().leases, vec![lease]);
}

#[tokio::test]
async fn acquire_choice_follows_rng() {
    let config = config(WALKTHROUGH_CONFIG);
    let mut chosen = HashSet::new();
    for seed in 0..20 {
        let h = MemoryHarness::new();
        chosen.insert(
            manager(&h, "192.0.2.1", seed)
                .acquire(&config)
                .await
                .unwrap()
                .key,
        );
    }
    // Random starting points: twenty seeds must not land on one or two subnets.
    assert!(chosen.len() > 10, "only {} distinct subnets", chosen.len());
}

#[tokio::test]
async fn acquire_many_hosts_distinct() {
    let h = MemoryHarness::new();
    let config = config(r#"{"Network": "10.0.0.0/16"}"#);
    let mut keys = HashSet::new();

    for host in 0..255u32 {
        let ip = Ipv4Addr::from(0xc000_0200 + host).to_string();
        let lease = manager(&h, &ip, 3).acquire(&config).await.unwrap();
        assert!(keys.insert(lease.key), "{} given twice", lease.key);
    }

    // Every subnet but the first (10.0.0.0/24 is never leased) is now used.
    let error = manager(&h, "198.51.100.1", 3)
        .acquire(&config)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "no free IPv4 subnet: all 255 subnets from 10.0.1.0/24 to 10.0.255.0/24 of 10.0.0.0/16 \
         are taken (255 in use); free a lease or widen SubnetMin/SubnetMax"
    );
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn acquire_reuses_own_lease() {
    let h = MemoryHarness::new();
    let config = config(WALKTHROUGH_CONFIG);
    let first = manager(&h, "192.0.2.1", 1).acquire(&config).await.unwrap();
    h.clock.advance(HOUR);

    let mut settings = ManagerConfig::new("192.0.2.1".parse().unwrap());
    settings.backend_type = "vxlan".into();
    settings.backend_data = Some(serde_json::json!({"VNI": 1, "VtepMAC": "c6:d2:32:6f:8f:44"}));
    let again = manager_with(&h, settings, 99)
        .acquire(&config)
        .await
        .unwrap();

    assert_eq!(again.key, first.key);
    assert_eq!(again.attrs.backend_type, "vxlan");
    assert_eq!(again.expiry, Expiry::At(h.clock.now() + 24 * HOUR));
    assert_eq!(h.registry.leases().await.unwrap().leases.len(), 1);
}

#[tokio::test]
async fn acquire_prefers_reservation() {
    let h = MemoryHarness::new();
    let config = config(WALKTHROUGH_CONFIG);
    h.registry
        .put_raw("172.16.5.0-24", br#"{"PublicIP":"192.0.2.1"}"#, Some(HOUR));
    h.registry
        .put_raw("172.16.9.0-24", br#"{"PublicIP":"192.0.2.1"}"#, None);

    let lease = manager(&h, "192.0.2.1", 1).acquire(&config).await.unwrap();

    assert_eq!(lease.key, key("172.16.9.0-24"));
    assert_eq!(lease.expiry, Expiry::Never);
    assert_eq!(lease.attrs.backend_type, "udp");
}

#[tokio::test]
async fn acquire_ignores_own_lease_outside_config() {
    let h = MemoryHarness::new();
    h.registry
        .put_raw("10.9.5.0-24", br#"{"PublicIP":"192.0.2.1"}"#, Some(HOUR));

    let lease = manager(&h, "192.0.2.1", 1)
        .acquire(&config(WALKTHROUGH_CONFIG))
        .await
        .unwrap();

    assert_ne!(lease.key, key("10.9.5.0-24"));
    assert!(lease.key.ipv4.unwrap().to_string().starts_with("172.16."));
}

#[tokio::test]
async fn acquire_reuses_previous_subnet() {
    let h = MemoryHarness::new();
    let mut settings = ManagerConfig::new("192.0.2.1".parse().unwrap());
    settings.previous_subnet = Some(key("172.16.37.0-24"));

    let lease = manager_with(&h, settings, 1)
        .acquire(&config(WALKTHROUGH_CONFIG))
        .await
        .unwrap();

    assert_eq!(lease.key, key("172.16.37.0-24"));
}

#[tokio::test]
async fn acquire_skips_taken_previous_subnet() {
    let h = MemoryHarness::new();
    h.registry
        .put_raw("172.16.37.0-24", br#"{"PublicIP":"192.0.2.2"}"#, Some(HOUR));
    let mut settings = ManagerConfig::new("192.0.2.1".parse().unwrap());
    settings.previous_subnet = Some(key("172.16.37.0-24"));

    let lease = manager_with(&h, settings, 1)
        .acquire(&config(WALKTHROUGH_CONFIG))
        .await
        .unwrap();

    assert_ne!(lease.key, key("172.16.37.0-24"));
}

#[tokio::test]
async fn acquire_skips_previous_subnet_outside_range() {
    let h = MemoryHarness::new();
    let mut settings = ManagerConfig::new("192.0.2.1".parse().unwrap());
    settings.previous_subnet = Some(key("172.16.0.0-24"));

    let lease = manager_with(&h, settings, 1)
        .acquire(&config(WALKTHROUGH_CONFIG))
        .await
        .unwrap();

    // 172.16.0.0/24 is below the default SubnetMin.
    assert_ne!(lease.key, key("172.16.0.0-24"));
}

#[tokio::test]
async fn acquire_avoids_invalid_and_overlapping_entries() {
    let h = MemoryHarness::new();
    // Network /28 in /30s: subnets 10.0.0.4, .8 and .12 are leasable.
    let config = config(r#"{"Network": "10.0.0.0/28", "SubnetLen": 30}"#);
    h.registry.put_raw("10.0.0.8-30", b"{broken", None);
    h.registry
        .put_raw("10.0.0.0-29", br#"{"PublicIP":"192.0.2.9"}"#, None);
    h.registry.put_raw("garbage", b"{}", None);

    // The /29 covers .0 and .4 and the broken entry occupies .8, whatever the
    // random starting point.
    for seed in 0..10 {
        let lease = manager(&h, "192.0.2.1", seed)
            .acquire(&config)
            .await
            .unwrap();
        assert_eq!(lease.key, key("10.0.0.12-30"), "seed {seed}");
        h.registry.delete_lease(&lease).await.unwrap();
    }
}

#[tokio::test]
async fn acquire_exhaustion_counts_invalid_entries() {
    let h = MemoryHarness::new();
    let config = config(r#"{"Network": "10.0.0.0/28", "SubnetLen": 30}"#);
    h.registry.put_raw("10.0.0.4-30", b"{broken", None);
    h.registry
        .put_raw("10.0.0.8-29", br#"{"PublicIP":"192.0.2.9"}"#, None);
    h.registry.put_raw("garbage", b"{}", None);

    let error = manager(&h, "192.0.2.1", 5)
        .acquire(&config)
        .await
        .unwrap_err();

    assert_eq!(
        error.to_string(),
        "no free IPv4 subnet: all 3 subnets from 10.0.0.4/30 to 10.0.0.12/30 of 10.0.0.0/28 \
         are taken (3 in use); free a lease or widen SubnetMin/SubnetMax"
    );
    // Nothing in the store was changed.
    let snapshot = h.registry.leases().await.unwrap();
    assert_eq!(snapshot.leases.len(), 1);
    assert_eq!(snapshot.invalid.len(), 2);
}

#[tokio::test]
async fn acquire_dual_stack() {
    let h = MemoryHarness::new();
    let config =
        config(r#"{"Network": "10.5.0.0/16", "EnableIPv6": true, "IPv6Network": "fc00::/48"}"#);
    let mut settings = ManagerConfig::new("192.0.2.1".parse().unwrap());

    let error = manager_with(&h, settings.clone(), 1)
        .acquire(&config)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "the network config enables IPv6 (fc00::/48) but no public IPv6 address is set"
    );

    settings.public_ipv6 = Some("2001:db8::1".parse().unwrap());
    let lease = manager_with(&h, settings, 1)
        .acquire(&config)
        .await
        .unwrap();
    let ipv6 = lease.key.ipv6.expect("IPv6 subnet");
    assert_eq!(ipv6.prefix_len(), 64);
    assert!(config.ipv6.unwrap().contains(&ipv6));
    assert!(lease.key.to_string().contains('&'));
    assert_eq!(
        lease.attrs.public_ipv6,
        Some("2001:db8::1".parse().unwrap())
    );
}

#[tokio::test]
async fn keeper_renews_before_expiry() {
    let h = MemoryHarness::new();
    let config = config(WALKTHROUGH_CONFIG);
    let manager = manager(&h, "192.0.2.1", 1);
    let lease = manager.acquire(&config).await.unwrap();
    let mut keeper = manager.keep_renewed(config, lease.clone());

    // 22 hours in, more than the 60-minute margin is left: no renewal.
    h.clock.advance(22 * HOUR);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), keeper.next())
            .await
            .is_err()
    );

    h.clock.advance(HOUR + Duration::from_secs(1));
    let LeaseEvent::Renewed(renewed) = next_within(&mut keeper, 5).await else {
        panic!("expected a renewal");
    };
    assert_eq!(renewed.key, lease.key);
    assert_eq!(renewed.expiry, Expiry::At(h.clock.now() + 24 * HOUR));

    // The next renewal comes a day later, and the lease never expires.
    h.clock.advance(23 * HOUR + Duration::from_secs(1));
    assert!(matches!(
        next_within(&mut keeper, 5).await,
        LeaseEvent::Renewed(_)
    ));
    assert_eq!(h.registry.leases().await.unwrap().leases.len(), 1);
}

#[tokio::test]
async fn keeper_never_renews_reservation() {
    let h = MemoryHarness::new();
    h.registry
        .put_raw("172.16.9.0-24", br#"{"PublicIP":"192.0.2.1"}"#, None);
    let config = config(WALKTHROUGH_CONFIG);
    let manager = manager(&h, "192.0.2.1", 1);
    let lease = manager.acquire(&config).await.unwrap();
    let mut keeper = manager.keep_renewed(config, lease);

    h.clock.advance(100 * 24 * HOUR);

    assert!(
        tokio::time::timeout(Duration::from_millis(200), keeper.next())
            .await
            .is_err()
    );
    assert_eq!(
        h.registry.leases().await.unwrap().leases[0].expiry,
        Expiry::Never
    );
}

#[tokio::test]
async fn keeper_recreates_deleted_lease() {
    let h = MemoryHarness::new();
    let config = config(WALKTHROUGH_CONFIG);
    let manager = manager(&h, "192.0.2.1", 1);
    let lease = manager.acquire(&config).await.unwrap();
    let mut keeper = manager.keep_renewed(config, lease.clone());
    tokio::task::yield_now().await;

    h.registry.delete_raw(&lease.key.to_string());

    let LeaseEvent::Recreated(recreated) = next_within(&mut keeper, 5).await else {
        panic!("expected the lease to be created again");
    };
    assert_eq!(recreated.key, lease.key);
    assert_eq!(
        h.registry.lease(&lease.key).await.unwrap().unwrap().attrs,
        lease.attrs
    );
}

#[tokio::test]
async fn keeper_replaces_taken_subnet() {
    let h = MemoryHarness::new();
    let config = config(WALKTHROUGH_CONFIG);
    let manager = manager(&h, "192.0.2.1", 1);
    let lease = manager.acquire(&config).await.unwrap();
    let mut keeper = manager.keep_renewed(config, lease.clone());
    tokio::task::yield_now().await;

    // An operator hands the subnet to another host.
    h.registry.put_raw(
        &lease.key.to_string(),
        br#"{"PublicIP":"192.0.2.200"}"#,
        None,
    );

    let LeaseEvent::Changed {
        previous,
        lease: new,
    } = next_within(&mut keeper, 5).await
    else {
        panic!("expected a new subnet");
    };
    assert_eq!(previous, lease.key);
    assert_ne!(new.key, lease.key);
    assert_eq!(
        new.attrs.public_ip,
        "192.0.2.1".parse::<Ipv4Addr>().unwrap()
    );
}

#[tokio::test]
async fn keeper_recreates_expired_lease() {
    let h = MemoryHarness::new();
    let config = config(WALKTHROUGH_CONFIG);
    let mut settings = ManagerConfig::new("192.0.2.1".parse().unwrap());
    // A margin of zero renews only at the expiry itself, which the store
    // applies first.
    settings.renew_margin = Duration::ZERO;
    let manager = manager_with(&h, settings, 1);
    let lease = manager.acquire(&config).await.unwrap();
    let mut keeper = manager.keep_renewed(config, lease.clone());
    tokio::task::yield_now().await;

    h.clock.advance(25 * HOUR);

    let event = next_within(&mut keeper, 5).await;
    assert!(
        matches!(&event, LeaseEvent::Recreated(new) if new.key == lease.key),
        "{event:?}"
    );
}

#[tokio::test]
async fn peers_snapshot_then_changes() {
    let h = MemoryHarness::new();
    let config = config(WALKTHROUGH_CONFIG);
    h.registry
        .put_raw("172.16.5.0-24", br#"{"PublicIP":"192.0.2.5"}"#, Some(HOUR));
    h.registry.put_raw("172.16.6.0-24", b"not json", Some(HOUR));
    let manager = manager(&h, "192.0.2.1", 1);
    let own = manager.acquire(&config).await.unwrap();
    let mut peers = manager.watch_peers(Some(own.key)).await.unwrap();

    let PeerEvent::Added(first) = next_within(&mut peers, 5).await else {
        panic!("expected the existing peer");
    };
    assert_eq!(first.key, key("172.16.5.0-24"));

    // A renewal that changes only the expiry is not reported.
    let snapshot = h.registry.leases().await.unwrap();
    let peer = snapshot
        .leases
        .iter()
        .find(|l| l.key == first.key)
        .unwrap()
        .clone();
    h.registry
        .renew_lease(&peer, &peer.attrs, HOUR)
        .await
        .unwrap();
    h.registry
        .put_raw("172.16.7.0-24", br#"{"PublicIP":"192.0.2.7"}"#, Some(HOUR));
    let PeerEvent::Added(second) = next_within(&mut peers, 5).await else {
        panic!("expected the new peer");
    };
    assert_eq!(second.key, key("172.16.7.0-24"));

    h.registry.delete_raw("172.16.7.0-24");
    assert_eq!(next_within(&mut peers, 5).await, PeerEvent::Removed(second));

    // Expiry removes the first peer; the own lease is never reported.
    h.clock.advance(2 * HOUR);
    let PeerEvent::Removed(expired) = next_within(&mut peers, 5).await else {
        panic!("expected the expiry");
    };
    assert_eq!(expired.key, key("172.16.5.0-24"));
    assert_eq!(peers.peers().len(), 0);
}

#[tokio::test]
async fn peers_resync_reports_differences() {
    let h = MemoryHarness::new();
    h.registry
        .put_raw("172.16.5.0-24", br#"{"PublicIP":"192.0.2.5"}"#, None);
    h.registry
        .put_raw("172.16.6.0-24", br#"{"PublicIP":"192.0.2.6"}"#, None);
    h.registry.set_history_limit(2);
    let manager = manager(&h, "192.0.2.1", 1);
    let mut peers = manager.watch_peers(None).await.unwrap();
    assert!(matches!(
        next_within(&mut peers, 5).await,
        PeerEvent::Added(_)
    ));
    assert!(matches!(
        next_within(&mut peers, 5).await,
        PeerEvent::Added(_)
    ));

    // More changes than the history keeps, before the watch looks again.
    h.registry.delete_raw("172.16.5.0-24");
    h.registry
        .put_raw("172.16.6.0-24", br#"{"PublicIP":"192.0.2.66"}"#, None);
    h.registry
        .put_raw("172.16.8.0-24", br#"{"PublicIP":"192.0.2.8"}"#, None);
    h.registry
        .put_raw("172.16.8.0-24", br#"{"PublicIP":"192.0.2.8"}"#, None);

    let mut events = Vec::new();
    for _ in 0..3 {
        events.push(next_within(&mut peers, 5).await);
    }
    assert!(
        matches!(&events[0], PeerEvent::Removed(l) if l.key == key("172.16.5.0-24")),
        "{events:?}"
    );
    assert!(
        matches!(&events[1], PeerEvent::Added(l) if l.attrs.public_ip.to_string() == "192.0.2.66"),
        "{events:?}"
    );
    assert!(
        matches!(&events[2], PeerEvent::Added(l) if l.key == key("172.16.8.0-24")),
        "{events:?}"
    );
}
