//! Lease keys and lease attributes, both ways, against the forms flannel
//! writes into etcd.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use serde_json::json;
use subnet_core::lease::{LeaseAttrs, LeaseAttrsError, LeaseKey, LeaseKeyError, LeaseKeyProblem};

fn v4(text: &str) -> Ipv4Net {
    text.parse().unwrap()
}

fn v6(text: &str) -> Ipv6Net {
    text.parse().unwrap()
}

fn key_error(key: &str) -> LeaseKeyError {
    key.parse::<LeaseKey>().unwrap_err()
}

#[test]
fn key_ipv4_parses_and_formats() {
    let key: LeaseKey = "172.16.37.0-24".parse().unwrap();

    assert_eq!(key, LeaseKey::ipv4(v4("172.16.37.0/24")));
    assert_eq!(key.ipv6, None);
    assert_eq!(key.to_string(), "172.16.37.0-24");
}

#[test]
fn key_dual_stack_parses_and_formats() {
    let key: LeaseKey = "10.5.1.0-24&fc00:0:0:1::-64".parse().unwrap();

    assert_eq!(key.ipv4, Some(v4("10.5.1.0/24")));
    assert_eq!(key.ipv6, Some(v6("fc00:0:0:1::/64")));
    assert_eq!(key.to_string(), "10.5.1.0-24&fc00:0:0:1::-64");
}

#[test]
fn key_ipv6_only_uses_zero_ipv4_part() {
    let key = LeaseKey::ipv6(v6("fc00:0:0:1::/64"));

    assert_eq!(key.to_string(), "0.0.0.0-0&fc00:0:0:1::-64");
    assert_eq!(
        "0.0.0.0-0&fc00:0:0:1::-64".parse::<LeaseKey>().unwrap(),
        key
    );
}

#[test]
fn key_constructors_drop_host_bits() {
    let key = LeaseKey::dual_stack(v4("10.5.1.9/24"), v6("fc00:0:0:1::7/64"));

    assert_eq!(key.to_string(), "10.5.1.0-24&fc00:0:0:1::-64");
}

#[test]
fn key_whole_prefix_lengths_parse() {
    assert_eq!(
        "10.0.0.1-32".parse::<LeaseKey>().unwrap().to_string(),
        "10.0.0.1-32"
    );
    assert_eq!(
        "0.0.0.0-1".parse::<LeaseKey>().unwrap().to_string(),
        "0.0.0.0-1"
    );
    assert_eq!(
        "10.0.0.0-8&::1-128"
            .parse::<LeaseKey>()
            .unwrap()
            .to_string(),
        "10.0.0.0-8&::1-128"
    );
}

#[test]
fn key_error_message_names_key_and_forms() {
    let error = key_error("172.16.37.0/24");

    assert_eq!(
        error.to_string(),
        "invalid lease key \"172.16.37.0/24\": \"172.16.37.0/24\" has no dash before a prefix \
         length; expected <IPv4 subnet>-<prefix length>, optionally followed by \
         &<IPv6 subnet>-<prefix length>, such as 10.5.1.0-24&fc00:0:0:1::-64"
    );
    assert_eq!(error.key, "172.16.37.0/24");
}

#[test]
fn key_malformed_cases_report_problem() {
    let cases: Vec<(&str, LeaseKeyProblem)> = vec![
        (
            "",
            LeaseKeyProblem::MissingPrefixLen {
                part: String::new(),
            },
        ),
        (
            "172.16.37.0",
            LeaseKeyProblem::MissingPrefixLen {
                part: "172.16.37.0".into(),
            },
        ),
        (
            "172.16.37-24",
            LeaseKeyProblem::InvalidAddress {
                address: "172.16.37".into(),
                family: "IPv4",
            },
        ),
        (
            "fc00::-64",
            LeaseKeyProblem::InvalidAddress {
                address: "fc00::".into(),
                family: "IPv4",
            },
        ),
        (
            "172.16.37.0-33",
            LeaseKeyProblem::InvalidPrefixLen {
                prefix_len: "33".into(),
                max: 32,
            },
        ),
        (
            "172.16.37.0-+24",
            LeaseKeyProblem::InvalidPrefixLen {
                prefix_len: "+24".into(),
                max: 32,
            },
        ),
        (
            "172.16.37.0-",
            LeaseKeyProblem::InvalidPrefixLen {
                prefix_len: String::new(),
                max: 32,
            },
        ),
        (
            "172.16.37.0-0024",
            LeaseKeyProblem::InvalidPrefixLen {
                prefix_len: "0024".into(),
                max: 32,
            },
        ),
        (
            "172.16.37.5-24",
            LeaseKeyProblem::HostBitsSet {
                part: "172.16.37.5-24".into(),
                expected: "172.16.37.0-24".into(),
            },
        ),
        (
            "10.5.1.0-24&fc00:0:0:1::-129",
            LeaseKeyProblem::InvalidPrefixLen {
                prefix_len: "129".into(),
                max: 128,
            },
        ),
        (
            "10.5.1.0-24&10.6.0.0-16",
            LeaseKeyProblem::InvalidAddress {
                address: "10.6.0.0".into(),
                family: "IPv6",
            },
        ),
        (
            "10.5.1.0-24&fc00:0:0:1::1-64",
            LeaseKeyProblem::HostBitsSet {
                part: "fc00:0:0:1::1-64".into(),
                expected: "fc00:0:0:1::-64".into(),
            },
        ),
        (
            "10.5.1.0-24&fc00::-64&fc01::-64",
            LeaseKeyProblem::InvalidAddress {
                address: "fc00::-64&fc01::".into(),
                family: "IPv6",
            },
        ),
        ("0.0.0.0-0", LeaseKeyProblem::NoSubnet),
        (
            " 172.16.37.0-24",
            LeaseKeyProblem::InvalidAddress {
                address: " 172.16.37.0".into(),
                family: "IPv4",
            },
        ),
    ];

    for (key, problem) in cases {
        let error = key_error(key);
        assert_eq!(error.key, key, "key of the error for {key:?}");
        assert_eq!(error.problem, problem, "problem with {key:?}");
    }
}

#[test]
fn key_problem_messages_are_specific() {
    assert!(key_error("172.16.37.5-24")
        .to_string()
        .contains("\"172.16.37.5-24\" has host bits set; the subnet is written 172.16.37.0-24"));
    assert!(key_error("172.16.37.0-33")
        .to_string()
        .contains("prefix length \"33\" is not a number from 0 to 32"));
    assert!(key_error("172.16.37-24")
        .to_string()
        .contains("\"172.16.37\" is not an IPv4 address"));
    assert!(key_error("0.0.0.0-0")
        .to_string()
        .contains("invalid lease key \"0.0.0.0-0\": it names no subnet"));
}

#[test]
fn attrs_current_form_parses() {
    let text = r#"{"PublicIP":"10.25.31.61","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}"#;

    let attrs = LeaseAttrs::from_json(text).unwrap();

    assert_eq!(attrs.public_ip, Ipv4Addr::new(10, 25, 31, 61));
    assert_eq!(attrs.public_ipv6, None);
    assert_eq!(attrs.backend_type, "vxlan");
    assert_eq!(
        attrs.backend_data,
        Some(json!({"VNI": 1, "VtepMAC": "c6:d2:32:6f:8f:44"}))
    );
}

#[test]
fn attrs_current_form_writes_same_bytes() {
    let text = r#"{"PublicIP":"10.25.31.61","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}"#;

    assert_eq!(LeaseAttrs::from_json(text).unwrap().to_json(), text);
}

#[test]
fn attrs_old_form_parses() {
    let attrs = LeaseAttrs::from_json(r#"{"PublicIP":"10.25.31.61"}"#).unwrap();

    assert_eq!(attrs, LeaseAttrs::new(Ipv4Addr::new(10, 25, 31, 61)));
    assert_eq!(attrs.backend_type, "");
    assert_eq!(attrs.backend_data, None);
}

#[test]
fn attrs_old_form_writes_current_form() {
    let attrs = LeaseAttrs::from_json(r#"{"PublicIP":"10.25.31.61"}"#).unwrap();

    assert_eq!(
        attrs.to_json(),
        r#"{"PublicIP":"10.25.31.61","PublicIPv6":null,"BackendType":"","BackendData":null}"#
    );
}

#[test]
fn attrs_ipv6_written_as_string() {
    let attrs = LeaseAttrs {
        public_ip: Ipv4Addr::new(10, 25, 31, 61),
        public_ipv6: Some("fd00::61".parse().unwrap()),
        backend_type: "udp".into(),
        backend_data: None,
    };

    assert_eq!(
        attrs.to_json(),
        r#"{"PublicIP":"10.25.31.61","PublicIPv6":"fd00::61","BackendType":"udp","BackendData":null}"#
    );
    assert_eq!(LeaseAttrs::from_json(&attrs.to_json()).unwrap(), attrs);
}

#[test]
fn attrs_field_names_match_case_insensitively() {
    let attrs = LeaseAttrs::from_json(
        r#"{"publicip":"10.0.0.1","PUBLICIPV6":"fd00::1","backendtype":"udp","backenddata":{"Port":8285}}"#,
    )
    .unwrap();

    assert_eq!(attrs.public_ip, Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(
        attrs.public_ipv6,
        Some(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1))
    );
    assert_eq!(attrs.backend_type, "udp");
    assert_eq!(attrs.backend_data, Some(json!({"Port": 8285})));
}

#[test]
fn attrs_exact_field_name_wins() {
    let attrs = LeaseAttrs::from_json(r#"{"publicip":"10.0.0.9","PublicIP":"10.0.0.1"}"#).unwrap();

    assert_eq!(attrs.public_ip, Ipv4Addr::new(10, 0, 0, 1));
}

#[test]
fn attrs_unknown_fields_ignored() {
    let attrs =
        LeaseAttrs::from_json(r#"{"PublicIP":"10.0.0.1","BackendV6Data":{"VNI":1},"Extra":[1,2]}"#)
            .unwrap();

    assert_eq!(attrs, LeaseAttrs::new(Ipv4Addr::new(10, 0, 0, 1)));
}

#[test]
fn attrs_bad_values_report_exact_errors() {
    let cases: Vec<(&str, LeaseAttrsError, &str)> = vec![
        (
            r#"{"PublicIP":"10.0.0.1""#,
            LeaseAttrsError::Syntax {
                line: 1,
                column: 22,
                message: "EOF while parsing an object".into(),
            },
            "invalid lease attributes: JSON syntax error at line 1 column 22: EOF while parsing an object",
        ),
        (
            r#"["10.0.0.1"]"#,
            LeaseAttrsError::NotAnObject { found: "an array" },
            "invalid lease attributes: expected a JSON object such as {\"PublicIP\":\"10.25.31.61\"}, found an array",
        ),
        (
            r#"{}"#,
            LeaseAttrsError::MissingPublicIp,
            "invalid lease attributes: PublicIP is missing; expected an IPv4 address such as \"10.25.31.61\"",
        ),
        (
            r#"{"PublicIP":null}"#,
            LeaseAttrsError::MissingPublicIp,
            "invalid lease attributes: PublicIP is missing; expected an IPv4 address such as \"10.25.31.61\"",
        ),
        (
            r#"{"PublicIP":"10.0.0.300"}"#,
            LeaseAttrsError::InvalidAddress {
                field: "PublicIP",
                value: "\"10.0.0.300\"".into(),
                family: "IPv4",
            },
            "invalid lease attributes: PublicIP \"10.0.0.300\" is not an IPv4 address string",
        ),
        (
            r#"{"PublicIP":167772161}"#,
            LeaseAttrsError::InvalidAddress {
                field: "PublicIP",
                value: "167772161".into(),
                family: "IPv4",
            },
            "invalid lease attributes: PublicIP 167772161 is not an IPv4 address string",
        ),
        (
            r#"{"PublicIP":"10.0.0.1","PublicIPv6":"10.0.0.1"}"#,
            LeaseAttrsError::InvalidAddress {
                field: "PublicIPv6",
                value: "\"10.0.0.1\"".into(),
                family: "IPv6",
            },
            "invalid lease attributes: PublicIPv6 \"10.0.0.1\" is not an IPv6 address string",
        ),
        (
            r#"{"PublicIP":"10.0.0.1","BackendType":3}"#,
            LeaseAttrsError::InvalidBackendType { value: "3".into() },
            "invalid lease attributes: BackendType 3 is not a string such as \"vxlan\"",
        ),
    ];

    for (text, expected, message) in cases {
        let error = LeaseAttrs::from_json(text).unwrap_err();
        assert_eq!(error, expected, "error for {text}");
        assert_eq!(error.to_string(), message, "message for {text}");
    }
}

#[test]
fn attrs_syntax_error_on_second_line() {
    let error = LeaseAttrs::from_json("{\n  \"PublicIP\": 10.0.0.1\n}").unwrap_err();

    let LeaseAttrsError::Syntax { line, column, .. } = error else {
        panic!("expected a syntax error, got {error:?}");
    };
    assert_eq!(line, 2);
    assert_eq!(column, 19);
}

fn ipv4_net() -> impl Strategy<Value = Ipv4Net> {
    (any::<u32>(), 0u8..=32).prop_map(|(bits, len)| Ipv4Net::new(bits.into(), len).unwrap().trunc())
}

fn ipv6_net() -> impl Strategy<Value = Ipv6Net> {
    (any::<u128>(), 0u8..=128)
        .prop_map(|(bits, len)| Ipv6Net::new(bits.into(), len).unwrap().trunc())
}

/// Keys that name at least one subnet. The IPv4 subnet `0.0.0.0/0` is left
/// out of dual-stack keys because its text form means "no IPv4 subnet".
fn lease_key() -> impl Strategy<Value = LeaseKey> {
    prop_oneof![
        ipv4_net()
            .prop_filter("0.0.0.0/0 alone names no subnet", |net| net.prefix_len()
                > 0)
            .prop_map(LeaseKey::ipv4),
        ipv6_net().prop_map(LeaseKey::ipv6),
        (ipv4_net(), ipv6_net())
            .prop_filter("0.0.0.0/0 is written as no IPv4 subnet", |(ipv4, _)| {
                ipv4.prefix_len() > 0
            })
            .prop_map(|(ipv4, ipv6)| LeaseKey::dual_stack(ipv4, ipv6)),
    ]
}

fn backend_data() -> impl Strategy<Value = Option<serde_json::Value>> {
    prop_oneof![
        Just(None),
        (any::<u32>(), "[0-9a-f]{2}(:[0-9a-f]{2}){5}")
            .prop_map(|(vni, mac)| Some(json!({"VNI": vni, "VtepMAC": mac}))),
        any::<u16>().prop_map(|port| Some(json!({"Port": port}))),
        Just(Some(json!([]))),
    ]
}

fn lease_attrs() -> impl Strategy<Value = LeaseAttrs> {
    (
        any::<u32>(),
        proptest::option::of(any::<u128>()),
        "[a-z-]{0,8}",
        backend_data(),
    )
        .prop_map(|(ip, ipv6, backend_type, backend_data)| LeaseAttrs {
            public_ip: ip.into(),
            public_ipv6: ipv6.map(Ipv6Addr::from),
            backend_type,
            backend_data,
        })
}

proptest! {
    #[test]
    fn key_round_trips(key in lease_key()) {
        let text = key.to_string();
        prop_assert_eq!(text.parse::<LeaseKey>().unwrap(), key);
    }

    #[test]
    fn key_text_round_trips(key in lease_key()) {
        let text = key.to_string();
        prop_assert_eq!(text.parse::<LeaseKey>().unwrap().to_string(), text);
    }

    #[test]
    fn key_parser_never_panics(text in "[0-9a-f.:&-]{0,40}") {
        let _ = text.parse::<LeaseKey>();
    }

    #[test]
    fn key_errors_name_the_key(text in "[0-9a-f.:&/ -]{0,40}") {
        if let Err(error) = text.parse::<LeaseKey>() {
            prop_assert_eq!(&error.key, &text);
            let quoted = format!("{text:?}");
            prop_assert!(error.to_string().contains(&quoted));
        }
    }

    #[test]
    fn attrs_round_trip(attrs in lease_attrs()) {
        prop_assert_eq!(LeaseAttrs::from_json(&attrs.to_json()).unwrap(), attrs);
    }

    #[test]
    fn attrs_json_has_flannel_fields(attrs in lease_attrs()) {
        let value: serde_json::Value = serde_json::from_str(&attrs.to_json()).unwrap();
        let object = value.as_object().unwrap();
        let mut names: Vec<&str> = object.keys().map(String::as_str).collect();
        names.sort_unstable();
        prop_assert_eq!(names, vec!["BackendData", "BackendType", "PublicIP", "PublicIPv6"]);
    }

    #[test]
    fn attrs_parser_never_panics(text in ".{0,60}") {
        let _ = LeaseAttrs::from_json(&text);
    }
}
