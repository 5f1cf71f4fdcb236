use std::collections::HashMap;
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;

use super::*;

fn argv(args: &[&str]) -> Vec<OsString> {
    std::iter::once("flanneld")
        .chain(args.iter().copied())
        .map(OsString::from)
        .collect()
}

fn parse_with_env(args: &[&str], env: &[(&str, &str)]) -> Result<Options, ParseError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    parse(argv(args), |name| env.get(name).cloned())
}

fn parse_ok(args: &[&str]) -> Options {
    parse_with_env(args, &[]).unwrap_or_else(|err| panic!("{args:?} rejected: {err}"))
}

fn invalid_message(args: &[&str], env: &[(&str, &str)]) -> String {
    match parse_with_env(args, env) {
        Err(ParseError::Invalid(err)) => err.to_string(),
        Err(ParseError::Syntax(err)) => {
            panic!("{args:?}: syntax error instead of invalid value: {err}")
        }
        Ok(options) => panic!("{args:?} accepted: {options:?}"),
    }
}

fn syntax_kind(args: &[&str]) -> ErrorKind {
    match parse_with_env(args, &[]) {
        Err(ParseError::Syntax(err)) => err.kind(),
        Err(ParseError::Invalid(err)) => {
            panic!("{args:?}: invalid value instead of syntax error: {err}")
        }
        Ok(options) => panic!("{args:?} accepted: {options:?}"),
    }
}

#[test]
fn defaults_match_flannel() {
    let options = parse_ok(&[]);
    assert_eq!(
        options.etcd.endpoints,
        vec!["http://127.0.0.1:4001", "http://127.0.0.1:2379"]
    );
    assert_eq!(options.etcd.prefix, "/coreos.com/network");
    assert_eq!(options.etcd.api, EtcdApi::V3);
    assert_eq!(options.etcd.ca_file, None);
    assert_eq!(options.etcd.username, None);
    assert!(options.ifaces.is_empty());
    assert!(options.iface_regexes.is_empty());
    assert_eq!(options.public_ip, None);
    assert_eq!(options.public_ipv6, None);
    assert_eq!(
        options.subnet_file,
        PathBuf::from("/run/flannel/subnet.env")
    );
    assert!(!options.ip_masq);
    assert_eq!(options.renew_margin, Duration::from_secs(60 * 60));
    assert_eq!(options.healthz, None);
    assert_eq!(options.iptables_resync, Duration::from_secs(5));
    assert!(options.iptables_forward_rules);
    assert!(options.udp_check_sender);
    assert_eq!(options.verbosity, 0);
    assert!(options.ignored.is_empty());
}

#[test]
fn walkthrough_unit_command_line() {
    let options = parse_ok(&[
        "-etcd-endpoints=http://10.25.31.105:2379",
        "-etcd-prefix=/coreos.com/network",
    ]);
    assert_eq!(options.etcd.endpoints, vec!["http://10.25.31.105:2379"]);
    assert_eq!(options.etcd.prefix, "/coreos.com/network");
}

#[test]
fn value_flag_in_all_four_dash_styles() {
    let styles: [&[&str]; 4] = [
        &["-etcd-prefix=/a/b"],
        &["-etcd-prefix", "/a/b"],
        &["--etcd-prefix=/a/b"],
        &["--etcd-prefix", "/a/b"],
    ];
    for args in styles {
        assert_eq!(parse_ok(args).etcd.prefix, "/a/b", "{args:?}");
    }
}

#[test]
fn every_value_flag_in_both_dash_styles() {
    let cases: &[(&str, &str)] = &[
        ("etcd-endpoints", "https://etcd.example:2379"),
        ("etcd-prefix", "/x"),
        ("etcd-api", "v2"),
        ("iface", "eth0"),
        ("iface-regex", "^en"),
        ("public-ip", "10.0.0.1"),
        ("public-ipv6", "fd00::1"),
        ("subnet-file", "/tmp/x.env"),
        ("subnet-lease-renew-margin", "30"),
        ("healthz-ip", "127.0.0.1"),
        ("healthz-port", "8471"),
        ("iptables-resync", "7"),
    ];
    for (name, value) in cases {
        for prefix in ["-", "--"] {
            let joined = format!("{prefix}{name}={value}");
            let flag = format!("{prefix}{name}");
            parse_ok(&[joined.as_str()]);
            parse_ok(&[flag.as_str(), value]);
        }
    }
}

#[test]
fn bool_flags_follow_go_rules() {
    assert!(parse_ok(&["-ip-masq"]).ip_masq);
    assert!(parse_ok(&["--ip-masq"]).ip_masq);
    assert!(parse_ok(&["-ip-masq=true"]).ip_masq);
    assert!(parse_ok(&["-ip-masq=1"]).ip_masq);
    assert!(!parse_ok(&["-ip-masq=false"]).ip_masq);
    assert!(!parse_ok(&["--iptables-forward-rules=false"]).iptables_forward_rules);
    assert!(!parse_ok(&["-iptables-forward-rules=f"]).iptables_forward_rules);
    assert!(!parse_ok(&["-udp-check-sender=false"]).udp_check_sender);
}

#[test]
fn bool_flag_never_takes_next_argument() {
    assert_eq!(
        syntax_kind(&["-ip-masq", "false"]),
        ErrorKind::UnknownArgument
    );
}

#[test]
fn iface_repeats_in_order() {
    let options = parse_ok(&["-iface", "eth0", "--iface=10.0.0.1", "-iface=eth1"]);
    assert_eq!(
        options.ifaces,
        vec![
            IfaceSpec::Name("eth0".into()),
            IfaceSpec::Address(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
            IfaceSpec::Name("eth1".into()),
        ]
    );
}

#[test]
fn iface_regex_repeats() {
    let options = parse_ok(&["-iface-regex=^eth[0-9]{1,2}$", "-iface-regex", "^en"]);
    let patterns: Vec<&str> = options.iface_regexes.iter().map(|re| re.as_str()).collect();
    assert_eq!(patterns, vec!["^eth[0-9]{1,2}$", "^en"]);
}

#[test]
fn value_starting_with_dash_is_kept() {
    let options = parse_ok(&["-etcd-username", "root", "-etcd-password", "-secret-"]);
    assert_eq!(options.etcd.password.as_deref(), Some("-secret-"));
}

#[test]
fn password_hidden_in_debug() {
    let options = parse_ok(&["-etcd-username=root", "-etcd-password=hunter2"]);
    let debug = format!("{options:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("<hidden>"), "{debug}");
}

#[test]
fn last_value_wins() {
    assert_eq!(
        parse_ok(&["-etcd-prefix=/a", "-etcd-prefix=/b"])
            .etcd
            .prefix,
        "/b"
    );
}

#[test]
fn healthz_listener_address() {
    let options = parse_ok(&["-healthz-ip=127.0.0.1", "-healthz-port=8471"]);
    assert_eq!(
        options.healthz,
        Some(SocketAddr::from(([127, 0, 0, 1], 8471)))
    );
    assert_eq!(parse_ok(&["-healthz-port=0"]).healthz, None);
}

#[test]
fn iptables_resync_durations() {
    assert_eq!(
        parse_ok(&["-iptables-resync=30"]).iptables_resync,
        Duration::from_secs(30)
    );
    assert_eq!(
        parse_ok(&["-iptables-resync=30s"]).iptables_resync,
        Duration::from_secs(30)
    );
    assert_eq!(
        parse_ok(&["-iptables-resync=1m30s"]).iptables_resync,
        Duration::from_secs(90)
    );
    assert_eq!(
        parse_ok(&["-iptables-resync=1h"]).iptables_resync,
        Duration::from_secs(3600)
    );
}

#[test]
fn verbosity_flag() {
    assert_eq!(parse_ok(&["-v"]).verbosity, 1);
    assert_eq!(parse_ok(&["-v=3"]).verbosity, 3);
    assert_eq!(parse_ok(&["-v", "2"]).verbosity, 2);
    assert_eq!(parse_ok(&["--v=0"]).verbosity, 0);
}

#[test]
fn environment_sets_flags() {
    let options = parse_with_env(
        &[],
        &[
            ("FLANNELD_ETCD_ENDPOINTS", "http://127.0.0.1:12379"),
            ("FLANNELD_ETCD_PREFIX", "/env/network"),
            ("FLANNELD_IFACE", "eth0,10.1.2.3"),
            ("FLANNELD_IP_MASQ", "true"),
            ("FLANNELD_IPTABLES_FORWARD_RULES", "false"),
            ("FLANNELD_HEALTHZ_PORT", "9000"),
            ("FLANNELD_SUBNET_LEASE_RENEW_MARGIN", "15"),
        ],
    )
    .unwrap();
    assert_eq!(options.etcd.endpoints, vec!["http://127.0.0.1:12379"]);
    assert_eq!(options.etcd.prefix, "/env/network");
    assert_eq!(
        options.ifaces,
        vec![
            IfaceSpec::Name("eth0".into()),
            IfaceSpec::Address(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))),
        ]
    );
    assert!(options.ip_masq);
    assert!(!options.iptables_forward_rules);
    assert_eq!(
        options.healthz,
        Some(SocketAddr::from(([0, 0, 0, 0], 9000)))
    );
    assert_eq!(options.renew_margin, Duration::from_secs(15 * 60));
}

#[test]
fn command_line_wins_over_environment() {
    let env = [
        ("FLANNELD_ETCD_PREFIX", "/from/env"),
        ("FLANNELD_IP_MASQ", "true"),
        ("FLANNELD_IFACE", "eth9"),
    ];
    let options = parse_with_env(
        &["-etcd-prefix=/from/cli", "-ip-masq=false", "-iface=eth0"],
        &env,
    )
    .unwrap();
    assert_eq!(options.etcd.prefix, "/from/cli");
    assert!(!options.ip_masq);
    assert_eq!(options.ifaces, vec![IfaceSpec::Name("eth0".into())]);
}

#[test]
fn environment_names_follow_rule() {
    for flag in FLAGS {
        let expected = format!("FLANNELD_{}", flag.name.to_uppercase().replace('-', "_"));
        assert_eq!(flag.env, expected);
    }
}

#[test]
fn help_and_version() {
    for args in [&["-help"][..], &["--help"], &["-h"]] {
        assert_eq!(syntax_kind(args), ErrorKind::DisplayHelp, "{args:?}");
    }
    for args in [&["-version"][..], &["--version"], &["-V"]] {
        assert_eq!(syntax_kind(args), ErrorKind::DisplayVersion, "{args:?}");
    }
}

#[test]
fn unknown_flag_rejected() {
    assert_eq!(
        syntax_kind(&["-no-such-flag=1"]),
        ErrorKind::UnknownArgument
    );
}

#[test]
fn invalid_values_name_flag_and_value() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["-etcd-endpoints=10.25.31.105:2379"],
            r#"invalid value "10.25.31.105:2379" for flag -etcd-endpoints: endpoint "10.25.31.105:2379" is not a URL; expected http://HOST:PORT or https://HOST:PORT"#,
        ),
        (
            &["-etcd-endpoints=http://127.0.0.1:2379,ftp://x:1"],
            r#"invalid value "http://127.0.0.1:2379,ftp://x:1" for flag -etcd-endpoints: endpoint "ftp://x:1" uses scheme "ftp"; expected http or https"#,
        ),
        (
            &["-etcd-endpoints=http://127.0.0.1:70000"],
            r#"invalid value "http://127.0.0.1:70000" for flag -etcd-endpoints: endpoint "http://127.0.0.1:70000" has a port out of range; expected 1 to 65535"#,
        ),
        (
            &["-etcd-endpoints=http://127.0.0.1:2379/v2/keys"],
            r#"invalid value "http://127.0.0.1:2379/v2/keys" for flag -etcd-endpoints: endpoint "http://127.0.0.1:2379/v2/keys" is not a URL; expected http://HOST:PORT or https://HOST:PORT"#,
        ),
        (
            &["-etcd-endpoints=,"],
            r#"invalid value "," for flag -etcd-endpoints: no endpoint given; expected a comma-separated list such as http://127.0.0.1:2379"#,
        ),
        (
            &["-etcd-prefix=coreos.com/network"],
            r#"invalid value "coreos.com/network" for flag -etcd-prefix: not an absolute key prefix; expected a path starting with '/', such as /coreos.com/network"#,
        ),
        (
            &["-etcd-cafile=/nonexistent/ca.pem"],
            r#"invalid value "/nonexistent/ca.pem" for flag -etcd-cafile: file not found"#,
        ),
        (
            &["-etcd-certfile=/nonexistent/cert.pem", "-etcd-keyfile=/nonexistent/key.pem"],
            r#"invalid value "/nonexistent/cert.pem" for flag -etcd-certfile: file not found"#,
        ),
        (
            &["-etcd-keyfile=/"],
            r#"invalid value "/" for flag -etcd-keyfile: is a directory; expected a file"#,
        ),
        (
            &["-iface=this-name-is-too-long"],
            r#"invalid value "this-name-is-too-long" for flag -iface: not an interface name or IP address; names have 1 to 15 characters without '/' or white space"#,
        ),
        (
            &["-public-ip=10.0.0"],
            r#"invalid value "10.0.0" for flag -public-ip: not an IPv4 address; expected dotted decimal such as 10.25.31.61"#,
        ),
        (
            &["-public-ip=fe80::1"],
            r#"invalid value "fe80::1" for flag -public-ip: not an IPv4 address; expected dotted decimal such as 10.25.31.61"#,
        ),
        (
            &["-public-ipv6=10.0.0.1"],
            r#"invalid value "10.0.0.1" for flag -public-ipv6: not an IPv6 address; expected an address such as fd00::1"#,
        ),
        (
            &["-subnet-file=/tmp"],
            r#"invalid value "/tmp" for flag -subnet-file: is a directory; expected a file"#,
        ),
        (
            &["-ip-masq=yes"],
            r#"invalid value "yes" for flag -ip-masq: not a boolean; expected true or false (also 1, 0, t, f)"#,
        ),
        (
            &["-subnet-lease-renew-margin=1440"],
            r#"invalid value "1440" for flag -subnet-lease-renew-margin: out of range; expected whole minutes from 1 to 1439 (the lease lasts 24 hours)"#,
        ),
        (
            &["-subnet-lease-renew-margin=abc"],
            r#"invalid value "abc" for flag -subnet-lease-renew-margin: not a number of minutes; expected whole minutes from 1 to 1439 (the lease lasts 24 hours)"#,
        ),
        (
            &["-subnet-lease-renew-margin=-5"],
            r#"invalid value "-5" for flag -subnet-lease-renew-margin: out of range; expected whole minutes from 1 to 1439 (the lease lasts 24 hours)"#,
        ),
        (
            &["-etcd-api=v4"],
            r#"invalid value "v4" for flag -etcd-api: unknown etcd API; expected v3, or v2 for networks that flannel 0.5.x daemons share"#,
        ),
        (
            &["-subnet-lease-renew-margin=0"],
            r#"invalid value "0" for flag -subnet-lease-renew-margin: out of range; expected whole minutes from 1 to 1439 (the lease lasts 24 hours)"#,
        ),
        (
            &["-healthz-ip=localhost"],
            r#"invalid value "localhost" for flag -healthz-ip: not an IP address; expected an address such as 0.0.0.0 or ::"#,
        ),
        (
            &["-healthz-port=65536"],
            r#"invalid value "65536" for flag -healthz-port: port out of range; expected 0 (disabled) to 65535"#,
        ),
        (
            &["-healthz-port=-1"],
            r#"invalid value "-1" for flag -healthz-port: not a port number; expected 0 (disabled) to 65535"#,
        ),
        (
            &["-iptables-resync=5x"],
            r#"invalid value "5x" for flag -iptables-resync: not a duration; expected whole seconds such as 5, or a number with a unit such as 30s, 2m or 1h"#,
        ),
        (
            &["-iptables-resync=0"],
            r#"invalid value "0" for flag -iptables-resync: too short; expected at least 1 second"#,
        ),
        (
            &["-iface-regex=eth["],
            "invalid value \"eth[\" for flag -iface-regex: not a valid regular expression: regex parse error:\n    eth[\n       ^\nerror: unclosed character class",
        ),
        (
            &["-v=loud"],
            r#"invalid value "loud" for flag -v: not a verbosity level; expected a whole number from 0 to 255"#,
        ),
    ];
    for (args, expected) in cases {
        assert_eq!(invalid_message(args, &[]), *expected, "{args:?}");
    }
}

#[test]
fn invalid_environment_value_names_variable() {
    assert_eq!(
        invalid_message(&[], &[("FLANNELD_HEALTHZ_PORT", "99999")]),
        r#"invalid value "99999" for flag -healthz-port (from environment variable FLANNELD_HEALTHZ_PORT): port out of range; expected 0 (disabled) to 65535"#
    );
    assert_eq!(
        invalid_message(&[], &[("FLANNELD_IP_MASQ", "on")]),
        r#"invalid value "on" for flag -ip-masq (from environment variable FLANNELD_IP_MASQ): not a boolean; expected true or false (also 1, 0, t, f)"#
    );
}

#[test]
fn partner_flags_required() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let cert_flag = format!("-etcd-certfile={}", cert.display());
    assert_eq!(
        invalid_message(&[cert_flag.as_str()], &[]),
        "flag -etcd-certfile is set but -etcd-keyfile is not; set both or neither"
    );
    assert_eq!(
        invalid_message(&["-etcd-password=x"], &[]),
        "flag -etcd-password is set but -etcd-username is not; set both or neither"
    );
}

#[test]
fn normalizer_leaves_values_and_rest_alone() {
    let out = normalize_args(argv(&[
        "-etcd-prefix",
        "-x",
        "-h",
        "-ip-masq",
        "--",
        "-iface",
    ]));
    let out: Vec<&str> = out.iter().map(|arg| arg.to_str().unwrap()).collect();
    assert_eq!(
        out,
        vec![
            "flanneld",
            "--etcd-prefix",
            "-x",
            "-h",
            "--ip-masq",
            "--",
            "-iface"
        ]
    );
}

#[test]
fn glog_flags_accepted_and_ignored() {
    let options = parse_ok(&[
        "-logtostderr",
        "-alsologtostderr=false",
        "-log_dir",
        "/var/log/flannel",
        "--stderrthreshold=INFO",
        "-v=2",
        "-etcd-prefix=/x",
    ]);
    assert_eq!(
        options.ignored,
        vec![
            "logtostderr",
            "alsologtostderr",
            "stderrthreshold",
            "log_dir"
        ]
    );
    assert_eq!(options.verbosity, 2);
    assert_eq!(options.etcd.prefix, "/x");
}

#[test]
fn etcd_api_from_flag_and_environment() {
    assert_eq!(parse_ok(&["-etcd-api=v2"]).etcd.api, EtcdApi::V2);
    assert_eq!(parse_ok(&["--etcd-api", "V3"]).etcd.api, EtcdApi::V3);
    let from_env = parse([OsString::from("flanneld")], |name| {
        (name == "FLANNELD_ETCD_API").then(|| "v2".to_owned())
    })
    .unwrap();
    assert_eq!(from_env.etcd.api, EtcdApi::V2);
}

#[test]
fn tls_files_need_https_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let ca = ca.to_str().unwrap();

    let cafile = format!("-etcd-cafile={ca}");
    let options = parse_ok(&["-etcd-endpoints=https://127.0.0.1:2379", &cafile]);
    assert_eq!(
        options.etcd.ca_file.as_deref(),
        Some(std::path::Path::new(ca))
    );
    let options = parse_ok(&[
        "--etcd-endpoints",
        "https://127.0.0.1:2379",
        "--etcd-cafile",
        ca,
    ]);
    assert_eq!(
        options.etcd.ca_file.as_deref(),
        Some(std::path::Path::new(ca))
    );

    assert_eq!(
        invalid_message(&["-etcd-endpoints=http://127.0.0.1:1", &cafile], &[]),
        r#"flag -etcd-cafile turns TLS on, but endpoint "http://127.0.0.1:1" in -etcd-endpoints uses http; use https:// endpoints with TLS, or drop the TLS flags"#
    );
    assert_eq!(
        invalid_message(&[&cafile], &[]),
        r#"flag -etcd-cafile turns TLS on, but endpoint "http://127.0.0.1:4001" in -etcd-endpoints uses http; use https:// endpoints with TLS, or drop the TLS flags"#
    );
}

#[test]
fn verbosity_from_environment() {
    let options = parse_with_env(&[], &[("FLANNELD_V", "2")]).unwrap();
    assert_eq!(options.verbosity, 2);
    let options = parse_with_env(&["-v=0"], &[("FLANNELD_V", "3")]).unwrap();
    assert_eq!(options.verbosity, 0, "the command line wins");
    assert_eq!(
        invalid_message(&[], &[("FLANNELD_V", "loud")]),
        r#"invalid value "loud" for flag -v (from environment variable FLANNELD_V): not a verbosity level; expected a whole number from 0 to 255"#
    );
}

#[test]
fn tls_file_must_be_pem() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let junk = junk.to_str().unwrap();
    let endpoints = "-etcd-endpoints=https://127.0.0.1:2379";
    for flag in ["etcd-cafile", "etcd-certfile", "etcd-keyfile"] {
        let arg = format!("-{flag}={junk}");
        assert_eq!(
            invalid_message(&[endpoints, &arg], &[]),
            format!(
                "invalid value {junk:?} for flag -{flag}: not a PEM file; expected text with a line such as -----BEGIN CERTIFICATE-----"
            )
        );
    }
}
