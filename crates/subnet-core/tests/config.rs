//! Network config parsing: defaults, case-insensitive keys, and the exact
//! error for each kind of bad input.

use ipnet::{Ipv4Net, Ipv6Net};
use subnet_core::NetworkConfig;

fn net4(text: &str) -> Ipv4Net {
    text.parse().unwrap()
}

fn error_of(json: &str) -> String {
    NetworkConfig::parse(json).unwrap_err().to_string()
}

#[test]
fn walkthrough_config_defaults() {
    let config = NetworkConfig::parse(r#"{"Network":"172.16.0.0/16"}"#).unwrap();
    let range = config.ipv4.unwrap();
    assert_eq!(range.network(), net4("172.16.0.0/16"));
    assert_eq!(range.subnet_len(), 24);
    assert_eq!(range.min(), net4("172.16.1.0/24"));
    assert_eq!(range.max(), net4("172.16.255.0/24"));
    assert_eq!(range.len(), 255);
    assert!(config.ipv6.is_none());
    assert_eq!(config.backend.backend_type, "udp");
    assert!(config.backend.options.is_empty());
}

#[test]
fn small_network_gets_prefix_plus_two() {
    let range = NetworkConfig::parse(r#"{"Network":"10.5.0.0/26"}"#)
        .unwrap()
        .ipv4
        .unwrap();
    assert_eq!(range.subnet_len(), 28);
    assert_eq!(range.min(), net4("10.5.0.16/28"));
    assert_eq!(range.max(), net4("10.5.0.48/28"));

    let range = NetworkConfig::parse(r#"{"Network":"10.5.0.0/28"}"#)
        .unwrap()
        .ipv4
        .unwrap();
    assert_eq!(range.subnet_len(), 30);
    assert_eq!(range.len(), 3);
}

#[test]
fn keys_ignore_case_and_unknown_keys() {
    let config = NetworkConfig::parse(
        r#"{"network":"10.5.0.0/16","SUBNETLEN":20,"subnetMin":"10.5.16.0",
            "Comment":"ignored","backend":{"type":"vxlan","vni":4,"Port":4789}}"#,
    )
    .unwrap();
    let range = config.ipv4.unwrap();
    assert_eq!(range.subnet_len(), 20);
    assert_eq!(range.min(), net4("10.5.16.0/20"));
    assert_eq!(config.backend.backend_type, "vxlan");
    assert_eq!(config.backend.option("VNI"), Some(&serde_json::json!(4)));
    assert_eq!(config.backend.port(), Ok(Some(4789)));
}

#[test]
fn last_duplicate_key_wins() {
    let config =
        NetworkConfig::parse(r#"{"Network":"10.5.0.0/16","network":"10.6.0.0/16"}"#).unwrap();
    assert_eq!(config.ipv4.unwrap().network(), net4("10.6.0.0/16"));
}

#[test]
fn host_bits_in_network_are_dropped() {
    let config = NetworkConfig::parse(r#"{"Network":"10.5.3.7/16"}"#).unwrap();
    assert_eq!(config.ipv4.unwrap().network(), net4("10.5.0.0/16"));
}

#[test]
fn null_and_zero_count_as_absent() {
    let config = NetworkConfig::parse(
        r#"{"Network":"10.5.0.0/16","SubnetLen":0,"SubnetMin":"0.0.0.0","SubnetMax":null,"Backend":null}"#,
    )
    .unwrap();
    let range = config.ipv4.unwrap();
    assert_eq!(range.subnet_len(), 24);
    assert_eq!(range.min(), net4("10.5.1.0/24"));
    assert_eq!(range.max(), net4("10.5.255.0/24"));
    assert_eq!(config.backend.backend_type, "udp");
}

#[test]
fn explicit_range_bounds() {
    let range = NetworkConfig::parse(
        r#"{"Network":"10.5.0.0/16","SubnetMin":"10.5.10.0","SubnetMax":"10.5.19.0"}"#,
    )
    .unwrap()
    .ipv4
    .unwrap();
    assert_eq!(range.len(), 10);
    assert_eq!(range.min(), net4("10.5.10.0/24"));
    assert_eq!(range.max(), net4("10.5.19.0/24"));
}

#[test]
fn dual_stack_defaults() {
    let config = NetworkConfig::parse(
        r#"{"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48"}"#,
    )
    .unwrap();
    let range = config.ipv6.unwrap();
    assert_eq!(range.subnet_len(), 64);
    assert_eq!(range.min(), "fc00:0:0:1::/64".parse::<Ipv6Net>().unwrap());
    assert_eq!(
        range.max(),
        "fc00:0:0:ffff::/64".parse::<Ipv6Net>().unwrap()
    );
    assert!(config.ipv4.is_some());
}

#[test]
fn ipv6_only() {
    let config = NetworkConfig::parse(
        r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fc00::/120"}"#,
    )
    .unwrap();
    assert!(config.ipv4.is_none());
    assert_eq!(config.ipv6.unwrap().subnet_len(), 122);
}

#[test]
fn backend_udp_port() {
    let config =
        NetworkConfig::parse(r#"{"Network":"10.5.0.0/16","Backend":{"Type":"udp","Port":8286}}"#)
            .unwrap();
    assert_eq!(config.backend.port(), Ok(Some(8286)));
    let config = NetworkConfig::parse(r#"{"Network":"10.5.0.0/16","Backend":{"Port":0}}"#).unwrap();
    assert_eq!(config.backend.backend_type, "udp");
    assert_eq!(config.backend.port(), Ok(None));
}

#[test]
fn rejects_syntax_error_with_position() {
    assert_eq!(
        error_of("{\n  \"Network\": \"10.5.0.0/16\",\n}"),
        "network config is not valid JSON: trailing comma at line 3, column 1"
    );
    assert_eq!(
        error_of(""),
        "network config is not valid JSON: EOF while parsing a value at line 1, column 0"
    );
}

#[test]
fn rejects_json_that_is_not_an_object() {
    assert_eq!(
        error_of(r#"["10.5.0.0/16"]"#),
        r#"network config must be a JSON object such as {"Network": "10.5.0.0/16"}, found ["10.5.0.0/16"]"#
    );
    assert_eq!(
        error_of(r#""10.5.0.0/16""#),
        r#"network config must be a JSON object such as {"Network": "10.5.0.0/16"}, found "10.5.0.0/16""#
    );
}

#[test]
fn rejects_empty_object() {
    assert_eq!(
        error_of("{}"),
        r#"Network is missing: it is required while EnableIPv4 is true; set it to a CIDR such as "10.5.0.0/16""#
    );
}

#[test]
fn rejects_missing_network() {
    assert_eq!(
        error_of(r#"{"SubnetLen":24,"Backend":{"Type":"vxlan"}}"#),
        r#"Network is missing: it is required while EnableIPv4 is true; set it to a CIDR such as "10.5.0.0/16""#
    );
    assert_eq!(
        error_of(r#"{"Network":"10.5.0.0/16","EnableIPv6":true}"#),
        r#"IPv6Network is missing: it is required while EnableIPv6 is true; set it to a CIDR such as "fc00::/48""#
    );
}

#[test]
fn rejects_both_families_disabled() {
    assert_eq!(
        error_of(r#"{"Network":"10.5.0.0/16","EnableIPv4":false}"#),
        "EnableIPv4 and EnableIPv6 are both false: enable at least one address family"
    );
}

#[test]
fn rejects_network_that_does_not_parse() {
    assert_eq!(
        error_of(r#"{"Network":"10.5.0.0"}"#),
        r#"Network "10.5.0.0" is not an IPv4 CIDR such as "10.5.0.0/16""#
    );
    assert_eq!(
        error_of(r#"{"Network":"fc00::/48"}"#),
        r#"Network "fc00::/48" is not an IPv4 CIDR such as "10.5.0.0/16""#
    );
    assert_eq!(
        error_of(r#"{"Network":16}"#),
        "Network must be a string, found 16"
    );
}

#[test]
fn rejects_network_too_small() {
    assert_eq!(
        error_of(r#"{"Network":"10.5.0.0/29"}"#),
        "Network 10.5.0.0/29 is too small: it must hold at least four subnets, so its prefix must be /28 or shorter"
    );
    assert_eq!(
        error_of(r#"{"Network":"10.5.0.0/30","SubnetLen":30}"#),
        "Network 10.5.0.0/30 is too small: it must hold at least four subnets, so its prefix must be /28 or shorter"
    );
    assert_eq!(
        error_of(r#"{"EnableIPv6":true,"IPv6Network":"fc00::/125","EnableIPv4":false}"#),
        "IPv6Network fc00::/125 is too small: it must hold at least four subnets, so its prefix must be /124 or shorter"
    );
}

#[test]
fn rejects_subnet_len_out_of_range() {
    assert_eq!(
        error_of(r#"{"Network":"10.5.0.0/16","SubnetLen":31}"#),
        "SubnetLen 31 is out of range: with Network 10.5.0.0/16 it must be from 18 to 30"
    );
    assert_eq!(
        error_of(r#"{"Network":"10.5.0.0/16","SubnetLen":17}"#),
        "SubnetLen 17 is out of range: with Network 10.5.0.0/16 it must be from 18 to 30"
    );
    assert_eq!(
        error_of(r#"{"Network":"10.5.0.0/16","SubnetLen":300}"#),
        "SubnetLen 300 is out of range: with Network 10.5.0.0/16 it must be from 18 to 30"
    );
    assert_eq!(
        error_of(r#"{"Network":"10.5.0.0/16","SubnetLen":"24"}"#),
        r#"SubnetLen must be a non-negative integer, found "24""#
    );
    assert_eq!(
        error_of(r#"{"Network":"10.5.0.0/16","SubnetLen":-1}"#),
        "SubnetLen must be a non-negative integer, found -1"
    );
    assert_eq!(
        error_of(
            r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fc00::/48","IPv6SubnetLen":127}"#
        ),
        "IPv6SubnetLen 127 is out of range: with IPv6Network fc00::/48 it must be from 50 to 126"
    );
}

#[test]
fn rejects_bounds_outside_network() {
    assert_eq!(
        error_of(r#"{"Network":"10.5.0.0/16","SubnetMin":"10.6.0.0"}"#),
        "SubnetMin 10.6.0.0 is outside the network 10.5.0.0/16"
    );
    assert_eq!(
        error_of(r#"{"Network":"10.5.0.0/16","SubnetMax":"10.4.255.0"}"#),
        "SubnetMax 10.4.255.0 is outside the network 10.5.0.0/16"
    );
}

#[test]
fn rejects_bounds_off_boundary() {
    assert_eq!(
        error_of(r#"{"Network":"10.5.0.0/16","SubnetMin":"10.5.0.7"}"#),
        "SubnetMin 10.5.0.7 is not on a /24 boundary"
    );
    assert_eq!(
        error_of(r#"{"Network":"10.5.0.0/16","SubnetLen":20,"SubnetMax":"10.5.17.0"}"#),
        "SubnetMax 10.5.17.0 is not on a /20 boundary"
    );
    assert_eq!(
        error_of(r#"{"Network":"10.5.0.0/16","SubnetMin":"10.5.1"}"#),
        r#"SubnetMin "10.5.1" is not an IPv4 address such as "10.5.1.0""#
    );
}

#[test]
fn rejects_min_above_max() {
    assert_eq!(
        error_of(r#"{"Network":"10.5.0.0/16","SubnetMin":"10.5.9.0","SubnetMax":"10.5.3.0"}"#),
        "SubnetMin 10.5.9.0 is above SubnetMax 10.5.3.0"
    );
}

#[test]
fn rejects_backend_not_an_object() {
    assert_eq!(
        error_of(r#"{"Network":"10.5.0.0/16","Backend":"vxlan"}"#),
        r#"Backend must be a JSON object such as {"Type": "vxlan"}, found "vxlan""#
    );
    assert_eq!(
        error_of(r#"{"Network":"10.5.0.0/16","Backend":{"Type":1}}"#),
        r#"Backend.Type must be a string such as "udp" or "vxlan", found 1"#
    );
    assert_eq!(
        error_of(r#"{"Network":"10.5.0.0/16","Backend":{"Type":"udp","Port":70000}}"#),
        "Backend.Port must be an integer from 1 to 65535, or 0 for the backend's default, found 70000"
    );
}

#[test]
fn rejects_enable_flag_of_wrong_type() {
    assert_eq!(
        error_of(r#"{"Network":"10.5.0.0/16","EnableIPv4":"yes"}"#),
        r#"EnableIPv4 must be true or false, found "yes""#
    );
}
