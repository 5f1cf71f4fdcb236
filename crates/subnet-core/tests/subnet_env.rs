//! subnet.env rendering, parsing, reading and atomic writing.

use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use ipnet::{Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use subnet_core::subnet_env::{write_file_atomic, ParseError, ReadError, SubnetEnv, WriteError};

const FULL: &str = "FLANNEL_NETWORK=172.16.0.0/16\n\
                    FLANNEL_SUBNET=172.16.37.1/24\n\
                    FLANNEL_MTU=1472\n\
                    FLANNEL_IPMASQ=false\n";

const DUAL_STACK: &str = "FLANNEL_NETWORK=10.5.0.0/16\n\
                          FLANNEL_SUBNET=10.5.1.1/24\n\
                          FLANNEL_MTU=1450\n\
                          FLANNEL_IPMASQ=true\n\
                          FLANNEL_IPV6_NETWORK=fc00::/48\n\
                          FLANNEL_IPV6_SUBNET=fc00:0:0:1::1/64\n";

fn full_env() -> SubnetEnv {
    SubnetEnv {
        network: Some("172.16.0.0/16".parse().unwrap()),
        subnet: Some("172.16.37.1/24".parse().unwrap()),
        mtu: Some(1472),
        ipmasq: Some(false),
        ipv6_network: None,
        ipv6_subnet: None,
    }
}

#[test]
fn render_ipv4_bytes() {
    assert_eq!(full_env().render(), FULL);
}

#[test]
fn render_dual_stack_bytes() {
    let env = SubnetEnv {
        network: Some("10.5.0.0/16".parse().unwrap()),
        subnet: Some("10.5.1.1/24".parse().unwrap()),
        mtu: Some(1450),
        ipmasq: Some(true),
        ipv6_network: Some("fc00::/48".parse().unwrap()),
        ipv6_subnet: Some("fc00:0:0:1::1/64".parse().unwrap()),
    };
    assert_eq!(env.render(), DUAL_STACK);
}

#[test]
fn render_skips_unset() {
    let env = SubnetEnv {
        subnet: Some("10.5.1.1/24".parse().unwrap()),
        ..SubnetEnv::default()
    };
    assert_eq!(env.render(), "FLANNEL_SUBNET=10.5.1.1/24\n");
    assert_eq!(SubnetEnv::default().render(), "");
}

#[test]
fn parse_full_file() {
    assert_eq!(SubnetEnv::parse(FULL).unwrap(), full_env());
}

#[test]
fn parse_tolerates_comments_quotes_crlf() {
    let text = "# written by hand\n\nFLANNEL_NETWORK=\"172.16.0.0/16\"\r\n  FLANNEL_SUBNET='172.16.37.1/24'\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\nOTHER_VARIABLE=anything at all\n";
    assert_eq!(SubnetEnv::parse(text).unwrap(), full_env());
}

#[test]
fn parse_keeps_host_bits() {
    let env = SubnetEnv::parse("FLANNEL_SUBNET=172.16.37.1/24\n").unwrap();
    assert_eq!(env.subnet.unwrap().addr(), Ipv4Addr::new(172, 16, 37, 1));
}

#[test]
fn parse_syntax_error() {
    let error = SubnetEnv::parse("FLANNEL_MTU=1472\nthis is not an assignment\n").unwrap_err();
    assert_eq!(
        error,
        ParseError::Syntax {
            line: 2,
            text: "this is not an assignment".to_owned()
        }
    );
    assert_eq!(
        error.to_string(),
        "line 2: expected NAME=value, a # comment or a blank line, found \"this is not an assignment\""
    );
}

#[test]
fn parse_unbalanced_quote() {
    let error = SubnetEnv::parse("FLANNEL_MTU=\"1472\n").unwrap_err();
    assert_eq!(
        error,
        ParseError::Syntax {
            line: 1,
            text: "FLANNEL_MTU=\"1472".to_owned()
        }
    );
}

#[test]
fn parse_bad_variable_name() {
    let error = SubnetEnv::parse("1FLANNEL=x\n").unwrap_err();
    assert_eq!(
        error,
        ParseError::Syntax {
            line: 1,
            text: "1FLANNEL=x".to_owned()
        }
    );
}

#[test]
fn parse_invalid_values() {
    let cases = [
        (
            "FLANNEL_NETWORK=172.16.0.0",
            "line 1: invalid FLANNEL_NETWORK value \"172.16.0.0\": expected an IPv4 network with a prefix length, such as 172.16.0.0/16",
        ),
        (
            "FLANNEL_SUBNET=172.16.37.1/33",
            "line 1: invalid FLANNEL_SUBNET value \"172.16.37.1/33\": expected an IPv4 address with a prefix length, such as 172.16.37.1/24",
        ),
        (
            "FLANNEL_MTU=abc",
            "line 1: invalid FLANNEL_MTU value \"abc\": expected a whole number of bytes from 68 to 4294967295",
        ),
        (
            "FLANNEL_MTU=67",
            "line 1: invalid FLANNEL_MTU value \"67\": expected a whole number of bytes from 68 to 4294967295",
        ),
        (
            "FLANNEL_MTU=",
            "line 1: invalid FLANNEL_MTU value \"\": expected a whole number of bytes from 68 to 4294967295",
        ),
        ("FLANNEL_IPMASQ=yes", "line 1: invalid FLANNEL_IPMASQ value \"yes\": expected true or false"),
        ("FLANNEL_IPMASQ=True", "line 1: invalid FLANNEL_IPMASQ value \"True\": expected true or false"),
        (
            "FLANNEL_IPV6_NETWORK=10.0.0.0/8",
            "line 1: invalid FLANNEL_IPV6_NETWORK value \"10.0.0.0/8\": expected an IPv6 network with a prefix length, such as fc00::/48",
        ),
        (
            "FLANNEL_IPV6_SUBNET=fc00::1",
            "line 1: invalid FLANNEL_IPV6_SUBNET value \"fc00::1\": expected an IPv6 address with a prefix length, such as fc00:0:0:1::1/64",
        ),
    ];
    for (text, message) in cases {
        let error = SubnetEnv::parse(text).unwrap_err();
        assert_eq!(error.to_string(), message, "input {text:?}");
    }
}

#[test]
fn parse_invalid_value_fields() {
    let error = SubnetEnv::parse("FLANNEL_NETWORK=10.5.0.0/16\n\nFLANNEL_IPMASQ=1\n").unwrap_err();
    assert_eq!(
        error,
        ParseError::InvalidValue {
            line: 3,
            name: "FLANNEL_IPMASQ",
            value: "1".to_owned(),
            expected: "true or false",
        }
    );
}

#[test]
fn parse_duplicate_variable() {
    let error =
        SubnetEnv::parse("FLANNEL_MTU=1472\nFLANNEL_SUBNET=10.5.1.1/24\nFLANNEL_MTU=1450\n")
            .unwrap_err();
    assert_eq!(
        error,
        ParseError::Duplicate {
            line: 3,
            name: "FLANNEL_MTU",
            first_line: 1
        }
    );
    assert_eq!(
        error.to_string(),
        "line 3: FLANNEL_MTU is set again; it was first set on line 1"
    );
}

#[test]
fn from_str_matches_parse() {
    let env: SubnetEnv = DUAL_STACK.parse().unwrap();
    assert_eq!(
        env.ipv6_subnet.unwrap().addr(),
        "fc00:0:0:1::1".parse::<Ipv6Addr>().unwrap()
    );
}

#[test]
fn read_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("subnet.env");
    let error = SubnetEnv::read(&path).unwrap_err();
    assert!(matches!(error, ReadError::NotFound { .. }), "{error:?}");
    assert_eq!(error.path(), path);
    assert_eq!(
        error.to_string(),
        format!(
            "subnet.env {} not found; flanneld writes it once it holds a lease",
            path.display()
        )
    );
}

#[test]
fn read_directory_is_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let error = SubnetEnv::read(dir.path()).unwrap_err();
    assert!(matches!(error, ReadError::Io { .. }), "{error:?}");
    let prefix = format!("failed to read subnet.env {}: ", dir.path().display());
    assert!(error.to_string().starts_with(&prefix), "{error}");
}

#[test]
fn read_invalid_file_names_path_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("subnet.env");
    fs::write(&path, "FLANNEL_SUBNET=10.5.1.1/24\nFLANNEL_IPMASQ=maybe\n").unwrap();
    let error = SubnetEnv::read(&path).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "invalid subnet.env {}: line 2: invalid FLANNEL_IPMASQ value \"maybe\": expected true or false",
            path.display()
        )
    );
}

#[test]
fn write_then_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/flannel/subnet.env");
    full_env().write_atomic(&path).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), FULL);
    assert_eq!(SubnetEnv::read(&path).unwrap(), full_env());
}

#[test]
fn write_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("subnet.env");
    for _ in 0..3 {
        full_env().write_atomic(&path).unwrap();
    }
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, ["subnet.env"]);
}

#[test]
fn write_replaces_file_not_contents() {
    // A reader that opened the old file keeps reading the old bytes: the new
    // file is a different inode renamed into place, never a rewrite.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("subnet.env");
    let old_link = dir.path().join("old.env");
    fs::write(&path, "FLANNEL_MTU=1400\n").unwrap();
    fs::hard_link(&path, &old_link).unwrap();
    let old_inode = fs::metadata(&path).unwrap().ino();

    full_env().write_atomic(&path).unwrap();

    assert_ne!(fs::metadata(&path).unwrap().ino(), old_inode);
    assert_eq!(fs::read_to_string(&old_link).unwrap(), "FLANNEL_MTU=1400\n");
    assert_eq!(fs::read_to_string(&path).unwrap(), FULL);
}

#[test]
fn write_keeps_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("subnet.env");
    fs::write(&path, "").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();

    full_env().write_atomic(&path).unwrap();

    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn write_failed_rename_keeps_target() {
    // A non-empty folder at the target path cannot be replaced by a file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("subnet.env");
    fs::create_dir(&path).unwrap();
    fs::write(path.join("kept"), "old").unwrap();

    let error = write_file_atomic(&path, b"new").unwrap_err();

    assert!(matches!(error, WriteError::Rename { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "failed to rename {}/.subnet.env.",
            dir.path().display()
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!(".tmp to {}: ", path.display())),
        "{message}"
    );
    assert_eq!(fs::read_to_string(path.join("kept")).unwrap(), "old");
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, ["subnet.env"], "the temporary file is removed");
}

#[test]
fn write_folder_blocked_by_file() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("flannel");
    fs::write(&blocker, "a file where the folder should be").unwrap();
    let path = blocker.join("subnet.env");

    let error = write_file_atomic(&path, b"x").unwrap_err();

    assert!(matches!(error, WriteError::CreateDir { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("failed to create folder {}: ", blocker.display())),
        "{error}"
    );
}

#[test]
fn write_rejects_path_without_file_name() {
    let error = write_file_atomic(std::path::Path::new("/"), b"x").unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot write /: the path does not name a file"
    );
}

fn ipv4_net() -> impl Strategy<Value = Ipv4Net> {
    (any::<u32>(), 0u8..=32)
        .prop_map(|(bits, len)| Ipv4Net::new(Ipv4Addr::from(bits), len).unwrap())
}

fn ipv6_net() -> impl Strategy<Value = Ipv6Net> {
    (any::<u128>(), 0u8..=128)
        .prop_map(|(bits, len)| Ipv6Net::new(Ipv6Addr::from(bits), len).unwrap())
}

fn subnet_env() -> impl Strategy<Value = SubnetEnv> {
    (
        proptest::option::of(ipv4_net()),
        proptest::option::of(ipv4_net()),
        proptest::option::of(68u32..),
        proptest::option::of(any::<bool>()),
        proptest::option::of(ipv6_net()),
        proptest::option::of(ipv6_net()),
    )
        .prop_map(
            |(network, subnet, mtu, ipmasq, ipv6_network, ipv6_subnet)| SubnetEnv {
                network,
                subnet,
                mtu,
                ipmasq,
                ipv6_network,
                ipv6_subnet,
            },
        )
}

proptest! {
    #[test]
    fn render_parse_round_trip(env in subnet_env()) {
        prop_assert_eq!(SubnetEnv::parse(&env.render()).unwrap(), env);
    }

    #[test]
    fn render_has_one_line_per_variable(env in subnet_env()) {
        let set = [
            env.network.is_some(),
            env.subnet.is_some(),
            env.mtu.is_some(),
            env.ipmasq.is_some(),
            env.ipv6_network.is_some(),
            env.ipv6_subnet.is_some(),
        ];
        let expected = set.iter().filter(|is_set| **is_set).count();
        prop_assert_eq!(env.render().lines().count(), expected);
    }

    #[test]
    fn parse_never_panics(text in "[A-Z_=./:0-9a-f\"' #\n]{0,200}") {
        let _ = SubnetEnv::parse(&text);
    }
}
