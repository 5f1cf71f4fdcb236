//! Lease acquisition on the in-memory registry with 1, 1,000 and 65,000
//! existing leases in 10.0.0.0/8 split into /24 subnets (65,535 leasable).
//!
//! - `acquire`: one full acquisition (list the leases, look for this host's
//!   own, build the taken-index set, pick, create); the lease is deleted
//!   again outside the timed part.
//! - `pick`: only the free-subnet search on a built taken-index set, the
//!   step that the original daemon did by scanning every lease.
//! - `taken_index`: building that set from the listing.

use std::collections::HashSet;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use flannel_rs::subnet_core::lease::{LeaseAttrs, LeaseKey};
use flannel_rs::subnet_core::NetworkConfig;
use flannel_rs::subnet_registry::manager::free::TakenIndices;
use flannel_rs::subnet_registry::{
    LeaseManager, ManagerConfig, MemoryRegistry, Registry, SystemClock,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CONFIG: &str = r#"{"Network": "10.0.0.0/8", "SubnetLen": 24}"#;
const SIZES: [usize; 3] = [1, 1_000, 65_000];
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// A registry holding `count` leases on distinct random subnets of the
/// range, each from its own host.
fn populated(config: &NetworkConfig, count: usize) -> MemoryRegistry {
    let range = config.ipv4.expect("IPv4 network");
    let mut rng = StdRng::seed_from_u64(count as u64);
    let mut indices = HashSet::new();
    while indices.len() < count {
        indices.insert(rng.random_range(0..range.len()));
    }

    let registry = MemoryRegistry::new();
    let runtime = runtime();
    for (host, index) in indices.into_iter().enumerate() {
        let key = LeaseKey::ipv4(range.subnet(index).expect("index inside the range"));
        let attrs = LeaseAttrs::new(Ipv4Addr::from(0xc612_0000 + host as u32));
        runtime
            .block_on(registry.create_lease(&key, &attrs, DAY))
            .expect("free key");
    }
    registry
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime")
}

fn acquire(c: &mut Criterion) {
    let config = NetworkConfig::parse(CONFIG).expect("valid config");
    let runtime = runtime();
    let mut group = c.benchmark_group("acquire");
    for count in SIZES {
        let registry = populated(&config, count);
        let manager = LeaseManager::<_, SystemClock>::with_clock_and_rng(
            registry.clone(),
            ManagerConfig::new(Ipv4Addr::new(203, 0, 113, 1)),
            SystemClock,
            StdRng::seed_from_u64(1),
        );
        group.bench_with_input(BenchmarkId::from_parameter(count), &count, |b, _| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let started = Instant::now();
                    let lease = runtime
                        .block_on(manager.acquire(&config))
                        .expect("free subnet");
                    total += started.elapsed();
                    runtime
                        .block_on(registry.delete_lease(&lease))
                        .expect("delete");
                }
                total
            });
        });
    }
    group.finish();
}

fn pick(c: &mut Criterion) {
    let config = NetworkConfig::parse(CONFIG).expect("valid config");
    let range = config.ipv4.expect("IPv4 network");
    let runtime = runtime();
    let mut pick_group = c.benchmark_group("pick");
    for count in SIZES {
        let snapshot = runtime
            .block_on(populated(&config, count).leases())
            .expect("listing");
        let subnets: Vec<_> = snapshot
            .leases
            .iter()
            .filter_map(|lease| lease.key.ipv4)
            .collect();
        let taken = TakenIndices::new(range, subnets.iter().copied());
        let mut rng = StdRng::seed_from_u64(2);
        pick_group.bench_with_input(BenchmarkId::from_parameter(count), &count, |b, _| {
            b.iter(|| black_box(taken.first_free_from(rng.random_range(0..range.len()))));
        });
    }
    pick_group.finish();

    let mut build_group = c.benchmark_group("taken_index");
    for count in SIZES {
        let snapshot = runtime
            .block_on(populated(&config, count).leases())
            .expect("listing");
        let subnets: Vec<_> = snapshot
            .leases
            .iter()
            .filter_map(|lease| lease.key.ipv4)
            .collect();
        build_group.bench_with_input(BenchmarkId::from_parameter(count), &count, |b, _| {
            b.iter(|| black_box(TakenIndices::new(range, subnets.iter().copied()).taken()));
        });
    }
    build_group.finish();
}

criterion_group!(benches, acquire, pick);
criterion_main!(benches);
