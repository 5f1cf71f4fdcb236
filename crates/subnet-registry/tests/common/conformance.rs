//! One battery of registry behaviours, written once against the trait and
//! run on every implementation through `conformance_tests!`.

use std::time::Duration;

use futures::StreamExt;
use subnet_core::lease::{LeaseAttrs, LeaseKey};
use subnet_registry::{
    CreateLeaseError, DeleteLeaseError, Expiry, InvalidLease, LeaseReadError, Registry,
    RegistryEvent, RenewLeaseError,
};

use super::{next_within, Harness};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn key(text: &str) -> LeaseKey {
    text.parse().unwrap()
}

fn attrs(ip: &str) -> LeaseAttrs {
    LeaseAttrs {
        public_ip: ip.parse().unwrap(),
        public_ipv6: None,
        backend_type: "udp".into(),
        backend_data: None,
    }
}

pub async fn config_missing_then_written<H: Harness>(h: &H) {
    let registry = h.registry();
    let before = registry.config().await.unwrap();
    assert_eq!(before.text, None);

    let waiter = {
        let registry = registry.clone();
        tokio::spawn(async move { registry.wait_config_change(before.revision).await })
    };
    h.put_config(r#"{"Network":"10.5.0.0/16"}"#).await;
    tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("config change noticed")
        .unwrap()
        .unwrap();

    let after = registry.config().await.unwrap();
    assert_eq!(after.text.as_deref(), Some(r#"{"Network":"10.5.0.0/16"}"#));
    assert!(after.revision > before.revision);
    assert_eq!(registry.config_path(), "/coreos.com/network/config");
}

pub async fn create_then_list<H: Harness>(h: &H) {
    let registry = h.registry();
    let created = registry
        .create_lease(&key("10.5.1.0-24"), &attrs("192.0.2.1"), DAY)
        .await
        .unwrap();
    assert_eq!(created.key, key("10.5.1.0-24"));
    assert!(matches!(created.expiry, Expiry::At(_)));

    let snapshot = registry.leases().await.unwrap();
    assert_eq!(snapshot.leases.len(), 1);
    assert_eq!(snapshot.leases[0].key, created.key);
    assert_eq!(snapshot.leases[0].attrs, attrs("192.0.2.1"));
    assert_eq!(snapshot.leases[0].mod_revision, created.mod_revision);
    assert_ne!(snapshot.leases[0].expiry, Expiry::Never);
    assert!(snapshot.revision >= created.mod_revision);
    assert!(snapshot.invalid.is_empty());
}

pub async fn create_existing_key_is_taken<H: Harness>(h: &H) {
    let registry = h.registry();
    registry
        .create_lease(&key("10.5.1.0-24"), &attrs("192.0.2.1"), DAY)
        .await
        .unwrap();

    let error = registry
        .create_lease(&key("10.5.1.0-24"), &attrs("192.0.2.2"), DAY)
        .await
        .unwrap_err();

    assert!(matches!(error, CreateLeaseError::Taken { key: k } if k == key("10.5.1.0-24")));
    assert_eq!(error.to_string(), "lease 10.5.1.0-24 is already taken");
    let snapshot = registry.leases().await.unwrap();
    assert_eq!(snapshot.leases[0].attrs, attrs("192.0.2.1"));
}

pub async fn lease_read_has_exact_expiry<H: Harness>(h: &H) {
    let registry = h.registry();
    let created = registry
        .create_lease(&key("10.5.1.0-24"), &attrs("192.0.2.1"), DAY)
        .await
        .unwrap();

    let read = registry.lease(&created.key).await.unwrap().unwrap();

    let (Expiry::At(created_at), Expiry::At(read_at)) = (created.expiry, read.expiry) else {
        panic!(
            "expected expiry times, got {:?} and {:?}",
            created.expiry, read.expiry
        );
    };
    let gap = created_at
        .duration_since(read_at)
        .unwrap_or_else(|error| error.duration());
    assert!(
        gap <= Duration::from_secs(2),
        "expiries {created_at:?} and {read_at:?}"
    );
    assert_eq!(registry.lease(&key("10.5.2.0-24")).await.unwrap(), None);
}

pub async fn renew_updates_attrs_and_expiry<H: Harness>(h: &H) {
    let registry = h.registry();
    let created = registry
        .create_lease(&key("10.5.1.0-24"), &attrs("192.0.2.1"), h.short_ttl())
        .await
        .unwrap();

    let renewed = registry
        .renew_lease(&created, &attrs("192.0.2.9"), DAY)
        .await
        .unwrap();

    assert!(renewed.mod_revision > created.mod_revision);
    assert_eq!(renewed.attrs, attrs("192.0.2.9"));
    let (Expiry::At(before), Expiry::At(after)) = (created.expiry, renewed.expiry) else {
        panic!("expected expiry times");
    };
    assert!(after > before + Duration::from_secs(60 * 60));
    let read = registry.lease(&created.key).await.unwrap().unwrap();
    assert_eq!(read.attrs, attrs("192.0.2.9"));

    // The renewal must outlive the first lifetime.
    h.let_time_pass(h.short_ttl() + Duration::from_secs(2))
        .await;
    assert!(registry.lease(&created.key).await.unwrap().is_some());
}

pub async fn renew_stale_copy_fails<H: Harness>(h: &H) {
    let registry = h.registry();
    let created = registry
        .create_lease(&key("10.5.1.0-24"), &attrs("192.0.2.1"), DAY)
        .await
        .unwrap();
    registry
        .renew_lease(&created, &attrs("192.0.2.1"), DAY)
        .await
        .unwrap();

    let error = registry
        .renew_lease(&created, &attrs("192.0.2.1"), DAY)
        .await
        .unwrap_err();

    assert!(
        matches!(error, RenewLeaseError::Changed { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "lease 10.5.1.0-24 was deleted or changed since revision {}",
            created.mod_revision
        )
    );
}

pub async fn renew_deleted_lease_fails<H: Harness>(h: &H) {
    let registry = h.registry();
    let created = registry
        .create_lease(&key("10.5.1.0-24"), &attrs("192.0.2.1"), DAY)
        .await
        .unwrap();
    h.delete_raw("10.5.1.0-24").await;

    let error = registry
        .renew_lease(&created, &attrs("192.0.2.1"), DAY)
        .await
        .unwrap_err();

    assert!(
        matches!(error, RenewLeaseError::Changed { .. }),
        "{error:?}"
    );
    assert_eq!(registry.lease(&created.key).await.unwrap(), None);
}

pub async fn delete_checks_revision<H: Harness>(h: &H) {
    let registry = h.registry();
    let created = registry
        .create_lease(&key("10.5.1.0-24"), &attrs("192.0.2.1"), DAY)
        .await
        .unwrap();
    let renewed = registry
        .renew_lease(&created, &attrs("192.0.2.1"), DAY)
        .await
        .unwrap();

    assert!(!registry.delete_lease(&created).await.unwrap());
    assert!(registry.delete_lease(&renewed).await.unwrap());
    assert!(registry.leases().await.unwrap().leases.is_empty());
    assert!(!registry.delete_lease(&renewed).await.unwrap());
}

pub async fn reservation_never_expires<H: Harness>(h: &H) {
    let registry = h.registry();
    h.put_raw("10.5.7.0-24", r#"{"PublicIP":"192.0.2.7"}"#, None)
        .await;

    let snapshot = registry.leases().await.unwrap();
    let reservation = snapshot.leases[0].clone();
    assert_eq!(reservation.expiry, Expiry::Never);
    assert!(reservation.is_reservation());
    assert_eq!(
        registry
            .lease(&reservation.key)
            .await
            .unwrap()
            .unwrap()
            .expiry,
        Expiry::Never
    );

    // Renewing rewrites the attributes and keeps it a reservation.
    let renewed = registry
        .renew_lease(&reservation, &attrs("192.0.2.7"), h.short_ttl())
        .await
        .unwrap();
    assert_eq!(renewed.expiry, Expiry::Never);
    h.let_time_pass(h.short_ttl() + Duration::from_secs(2))
        .await;
    let read = registry.lease(&reservation.key).await.unwrap().unwrap();
    assert_eq!(read.expiry, Expiry::Never);
    assert_eq!(read.attrs, attrs("192.0.2.7"));

    let error = registry.delete_lease(&read).await.unwrap_err();
    assert!(
        matches!(error, DeleteLeaseError::Reservation { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "lease 10.5.7.0-24 is a reservation; remove it with etcdctl if it is no longer wanted"
    );
    assert!(matches!(
        registry
            .create_lease(&reservation.key, &attrs("192.0.2.8"), DAY)
            .await,
        Err(CreateLeaseError::Taken { .. })
    ));
}

pub async fn old_form_value_reads<H: Harness>(h: &H) {
    h.put_raw(
        "10.5.3.0-24",
        r#"{"PublicIP":"10.25.31.61"}"#,
        Some(Duration::from_secs(600)),
    )
    .await;

    let snapshot = h.registry().leases().await.unwrap();

    assert_eq!(snapshot.leases.len(), 1);
    assert_eq!(
        snapshot.leases[0].attrs,
        LeaseAttrs::new("10.25.31.61".parse().unwrap())
    );
}

pub async fn invalid_entries_reported<H: Harness>(h: &H) {
    let registry = h.registry();
    h.put_raw("not-a-subnet", r#"{"PublicIP":"192.0.2.1"}"#, None)
        .await;
    h.put_raw("10.5.4.0-24", "{not json", None).await;
    h.put_raw("10.5.5.0-24", r#"{"PublicIP":"192.0.2.5"}"#, None)
        .await;

    let snapshot = registry.leases().await.unwrap();

    assert_eq!(snapshot.leases.len(), 1);
    assert_eq!(snapshot.leases[0].key, key("10.5.5.0-24"));
    assert_eq!(snapshot.invalid.len(), 2);
    let bad_value = snapshot
        .invalid
        .iter()
        .find(|invalid| invalid.key() == Some(key("10.5.4.0-24")))
        .expect("bad value reported");
    assert_eq!(bad_value.path(), "/coreos.com/network/subnets/10.5.4.0-24");
    assert_eq!(
        bad_value.to_string(),
        "skipping lease /coreos.com/network/subnets/10.5.4.0-24: invalid lease attributes: \
         JSON syntax error at line 1 column 2: key must be a string"
    );
    let bad_key = snapshot
        .invalid
        .iter()
        .find(|invalid| invalid.key().is_none())
        .expect("bad key reported");
    assert!(matches!(bad_key, InvalidLease::Key { .. }));
    assert!(bad_key.to_string().starts_with(
        "skipping /coreos.com/network/subnets/not-a-subnet: invalid lease key \"not-a-subnet\""
    ));

    let error = registry.lease(&key("10.5.4.0-24")).await.unwrap_err();
    assert!(matches!(error, LeaseReadError::Invalid(_)), "{error:?}");
}

pub async fn watch_reports_changes_in_order<H: Harness>(h: &H) {
    let registry = h.registry();
    let start = registry.leases().await.unwrap().revision;
    let mut watch = registry.watch_leases(start).await.unwrap();

    let created = registry
        .create_lease(&key("10.5.1.0-24"), &attrs("192.0.2.1"), DAY)
        .await
        .unwrap();
    let renewed = registry
        .renew_lease(&created, &attrs("192.0.2.2"), DAY)
        .await
        .unwrap();
    h.put_raw("10.5.9.0-24", "[]", None).await;
    registry.delete_lease(&renewed).await.unwrap();

    let RegistryEvent::Added(first) = next_within(&mut watch, 10).await else {
        panic!("expected the creation first");
    };
    assert_eq!(first.attrs, attrs("192.0.2.1"));
    assert_eq!(first.mod_revision, created.mod_revision);
    let RegistryEvent::Added(second) = next_within(&mut watch, 10).await else {
        panic!("expected the renewal second");
    };
    assert_eq!(second.attrs, attrs("192.0.2.2"));
    let RegistryEvent::Invalid(invalid) = next_within(&mut watch, 10).await else {
        panic!("expected the invalid entry third");
    };
    assert_eq!(invalid.key(), Some(key("10.5.9.0-24")));
    assert_eq!(
        next_within(&mut watch, 10).await,
        RegistryEvent::Removed {
            key: key("10.5.1.0-24"),
            revision: renewed.mod_revision + 2,
        }
    );
}

/// A watch opened late replays the changes since its revision, and one
/// opened at the last change stays quiet.
pub async fn watch_from_past_revision_replays<H: Harness>(h: &H) {
    let registry = h.registry();
    let start = registry.leases().await.unwrap().revision;
    let created = registry
        .create_lease(&key("10.5.1.0-24"), &attrs("192.0.2.1"), DAY)
        .await
        .unwrap();

    let mut watch = registry.watch_leases(start).await.unwrap();

    let RegistryEvent::Added(lease) = next_within(&mut watch, 10).await else {
        panic!("expected the creation");
    };
    assert_eq!(lease.mod_revision, created.mod_revision);
    let mut after = registry.watch_leases(created.mod_revision).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), after.next())
            .await
            .is_err(),
        "a watch after the last change must be quiet"
    );
}

pub async fn watch_reports_expiry<H: Harness>(h: &H) {
    let registry = h.registry();
    let created = registry
        .create_lease(&key("10.5.1.0-24"), &attrs("192.0.2.1"), h.short_ttl())
        .await
        .unwrap();
    let mut watch = registry.watch_leases(created.mod_revision).await.unwrap();

    h.let_time_pass(h.short_ttl() + Duration::from_secs(1))
        .await;

    let event = next_within(&mut watch, 15).await;
    assert!(
        matches!(event, RegistryEvent::Expired { key: k, .. } if k == key("10.5.1.0-24")),
        "{event:?}"
    );
    assert!(registry.leases().await.unwrap().leases.is_empty());
}

pub async fn watch_resyncs_after_compaction<H: Harness>(h: &H) {
    let registry = h.registry();
    let start = registry.leases().await.unwrap().revision;
    let first = registry
        .create_lease(&key("10.5.1.0-24"), &attrs("192.0.2.1"), DAY)
        .await
        .unwrap();
    registry.delete_lease(&first).await.unwrap();
    registry
        .create_lease(&key("10.5.2.0-24"), &attrs("192.0.2.2"), DAY)
        .await
        .unwrap();
    let now = registry.leases().await.unwrap().revision;
    h.compact(now).await;

    let mut watch = registry.watch_leases(start).await.unwrap();

    let RegistryEvent::Resync(snapshot) = next_within(&mut watch, 10).await else {
        panic!("expected a resync");
    };
    assert_eq!(snapshot.leases.len(), 1);
    assert_eq!(snapshot.leases[0].key, key("10.5.2.0-24"));
    assert!(snapshot.revision >= now);

    // Events continue after the snapshot.
    registry
        .create_lease(&key("10.5.3.0-24"), &attrs("192.0.2.3"), DAY)
        .await
        .unwrap();
    let RegistryEvent::Added(lease) = next_within(&mut watch, 10).await else {
        panic!("expected the creation after the resync");
    };
    assert_eq!(lease.key, key("10.5.3.0-24"));
}

/// Declares one test per conformance case, each on a fresh harness built
/// by `$make`.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@cases $make;
            config_missing_then_written,
            create_then_list,
            create_existing_key_is_taken,
            lease_read_has_exact_expiry,
            renew_updates_attrs_and_expiry,
            renew_stale_copy_fails,
            renew_deleted_lease_fails,
            delete_checks_revision,
            reservation_never_expires,
            old_form_value_reads,
            invalid_entries_reported,
            watch_reports_changes_in_order,
            watch_from_past_revision_replays,
            watch_reports_expiry,
            watch_resyncs_after_compaction,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                common::init_logs();
                let harness = $make;
                common::conformance::$case(&harness).await;
            }
        )*
    };
}
