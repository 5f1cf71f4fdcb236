//! The free-subnet search: merged intervals of taken indices against a
//! plain scan.

use ipnet::Ipv4Net;
use proptest::prelude::*;
use subnet_core::SubnetRange;
use subnet_registry::manager::free::TakenIndices;

fn net(text: &str) -> Ipv4Net {
    text.parse().unwrap()
}

/// 10.0.0.0/16 in /24s, leasable 10.0.1.0 to 10.0.255.0: 255 subnets.
fn range() -> SubnetRange<Ipv4Net> {
    SubnetRange::new(
        net("10.0.0.0/16"),
        24,
        "10.0.1.0".parse().unwrap(),
        "10.0.255.0".parse().unwrap(),
    )
    .unwrap()
}

fn taken(subnets: &[&str]) -> TakenIndices<Ipv4Net> {
    TakenIndices::new(range(), subnets.iter().map(|text| net(text)))
}

#[test]
fn empty_set_returns_start() {
    let taken = taken(&[]);

    assert_eq!(taken.first_free_from(7), Some(7));
    assert_eq!(taken.taken(), 0);
}

#[test]
fn taken_run_skips_to_its_end() {
    // Indices 4, 5 and 6.
    let taken = taken(&["10.0.5.0/24", "10.0.6.0/24", "10.0.7.0/24"]);

    assert_eq!(taken.first_free_from(4), Some(7));
    assert_eq!(taken.first_free_from(5), Some(7));
    assert_eq!(taken.first_free_from(3), Some(3));
    assert_eq!(taken.taken(), 3);
}

#[test]
fn search_wraps_to_start() {
    let taken = taken(&["10.0.254.0/24", "10.0.255.0/24", "10.0.1.0/24"]);

    assert_eq!(taken.first_free_from(253), Some(1));
    assert_eq!(taken.first_free_from(1000), Some(1));
}

#[test]
fn wider_subnet_takes_every_index_inside() {
    // 10.0.0.0/20 covers 10.0.0.0 to 10.0.15.0; 10.0.0.0/24 is outside the
    // range, so indices 0 to 14 are taken.
    let taken = taken(&["10.0.0.0/20"]);

    assert_eq!(taken.taken(), 15);
    assert_eq!(taken.first_free_from(0), Some(15));
}

#[test]
fn narrower_subnet_takes_its_parent() {
    let taken = taken(&["10.0.9.64/26"]);

    assert!(taken.is_taken(8));
    assert_eq!(taken.taken(), 1);
}

#[test]
fn subnets_outside_range_ignored() {
    let taken = taken(&["10.0.0.0/24", "10.1.0.0/24", "192.168.0.0/16"]);

    assert_eq!(taken.taken(), 0);
}

#[test]
fn full_range_has_no_free_index() {
    let taken = taken(&["10.0.0.0/16"]);

    assert_eq!(taken.taken(), 255);
    assert_eq!(taken.first_free_from(0), None);
    assert_eq!(taken.first_free_from(100), None);
}

#[test]
fn last_free_index_found_from_anywhere() {
    let mut subnets: Vec<String> = (1..=255).map(|i| format!("10.0.{i}.0/24")).collect();
    subnets.retain(|subnet| subnet != "10.0.77.0/24");
    let taken = TakenIndices::new(range(), subnets.iter().map(|text| net(text)));

    for start in [0, 75, 76, 77, 200, 254] {
        assert_eq!(taken.first_free_from(start), Some(76), "from {start}");
    }
}

proptest! {
    #[test]
    fn matches_linear_scan(
        taken_indices in proptest::collection::vec(0u32..255, 0..255),
        start in 0u128..255,
    ) {
        let range = range();
        let subnets: Vec<Ipv4Net> = taken_indices
            .iter()
            .map(|index| range.subnet(u128::from(*index)).unwrap())
            .collect();
        let taken = TakenIndices::new(range, subnets.iter().copied());

        let is_taken = |index: u128| subnets.contains(&range.subnet(index).unwrap());
        let expected = (start..255).chain(0..start).find(|index| !is_taken(*index));
        prop_assert_eq!(taken.first_free_from(start), expected);

        let distinct: std::collections::HashSet<u32> = taken_indices.iter().copied().collect();
        prop_assert_eq!(taken.taken(), distinct.len() as u128);
    }
}
