//! The binary's command line: invalid values stop it before it opens any
//! socket, and -help and -version behave as users expect.

use std::process::{Command, Output};

fn flanneld(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flanneld"))
        .args(args)
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap()
}

#[test]
fn invalid_endpoint_exits_with_message() {
    let output = flanneld(&["-etcd-endpoints=10.25.31.105:2379"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "flanneld: invalid value \"10.25.31.105:2379\" for flag -etcd-endpoints: endpoint \"10.25.31.105:2379\" \
         is not a URL; expected http://HOST:PORT or https://HOST:PORT\n"
    );
}

#[test]
fn invalid_port_from_environment_exits() {
    let output = Command::new(env!("CARGO_BIN_EXE_flanneld"))
        .env("FLANNELD_HEALTHZ_PORT", "70000")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "flanneld: invalid value \"70000\" for flag -healthz-port (from environment variable FLANNELD_HEALTHZ_PORT): \
         port out of range; expected 0 (disabled) to 65535\n"
    );
}

#[test]
fn missing_ca_file_exits() {
    let output = flanneld(&["-etcd-cafile", "/nonexistent/ca.pem"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "flanneld: invalid value \"/nonexistent/ca.pem\" for flag -etcd-cafile: file not found\n"
    );
}

#[test]
fn unknown_flag_exits_with_usage_error() {
    let output = flanneld(&["-kube-subnet-mgr"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("unexpected argument '--kube-subnet-mgr'"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn version_flag() {
    for flag in ["-version", "--version"] {
        let output = flanneld(&[flag]);
        assert_eq!(output.status.code(), Some(0));
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            format!("flanneld {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn help_lists_flags_and_environment() {
    let output = flanneld(&["-help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for text in [
        "--etcd-endpoints <URLS>",
        "FLANNELD_ETCD_ENDPOINTS",
        "--ip-masq",
        "--iptables-resync",
        "one dash",
    ] {
        assert!(help.contains(text), "help lacks {text:?}:\n{help}");
    }
}

#[test]
fn unknown_interface_exits() {
    let output = flanneld(&["-iface=nosuchif0", "-etcd-endpoints=http://127.0.0.1:9"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "no interface matches -iface nosuchif0 (no such interface); interfaces present: lo"
        ),
        "{stderr}"
    );
}

#[test]
fn glog_flag_ignored_with_warning() {
    let output = flanneld(&["-logtostderr", "-iface=nosuchif0"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ignoring glog flag -logtostderr"),
        "{stderr}"
    );
}
