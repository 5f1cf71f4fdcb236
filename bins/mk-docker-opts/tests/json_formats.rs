//! `--format daemon-json` and `--format cni`, byte for byte.

mod common;

use std::fs;

use common::{assert_failure, assert_success, path_arg, run, stdout, Host, DUAL_STACK, FULL};

fn daemon_json(
    host: &Host,
    existing: Option<&str>,
    extra: &[&str],
) -> (std::process::Output, String) {
    let path = host.path("daemon.json");
    if let Some(text) = existing {
        fs::write(&path, text).unwrap();
    }
    let mut args = vec![
        "-f".to_owned(),
        path_arg(&host.subnet_env()),
        "-d".to_owned(),
        path_arg(&path),
    ];
    args.push("--format=daemon-json".to_owned());
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    let output = run(&args, &[]);
    (output, fs::read_to_string(&path).unwrap_or_default())
}

#[test]
fn daemon_json_new_file() {
    let host = Host::with_subnet_env(FULL);
    let (output, written) = daemon_json(&host, None, &[]);
    assert_success(&output);
    assert_eq!(
        written,
        "{\n  \"bip\": \"172.16.37.1/24\",\n  \"mtu\": 1472,\n  \"ip-masq\": true\n}\n"
    );
}

#[test]
fn daemon_json_merge_keeps_keys() {
    let host = Host::with_subnet_env(FULL);
    let existing = "{\n    \"log-driver\": \"journald\",\n    \"mtu\": 9000,\n    \"storage-driver\": \"overlay2\",\n    \"ip-masq\": false\n}\n";
    let (output, written) = daemon_json(&host, Some(existing), &[]);
    assert_success(&output);
    assert_eq!(
        written,
        "{\n  \"log-driver\": \"journald\",\n  \"mtu\": 1472,\n  \"storage-driver\": \"overlay2\",\n  \
         \"ip-masq\": true,\n  \"bip\": \"172.16.37.1/24\"\n}\n"
    );
}

#[test]
fn daemon_json_m_keeps_existing_ip_masq() {
    let host = Host::with_subnet_env(FULL);
    let (output, written) = daemon_json(&host, Some("{\"ip-masq\": false}"), &["-m"]);
    assert_success(&output);
    assert_eq!(
        written,
        "{\n  \"ip-masq\": false,\n  \"bip\": \"172.16.37.1/24\",\n  \"mtu\": 1472\n}\n"
    );
}

#[test]
fn daemon_json_ipv6() {
    let host = Host::with_subnet_env(DUAL_STACK);
    let (output, written) = daemon_json(&host, Some(""), &["--ipv6"]);
    assert_success(&output);
    assert_eq!(
        written,
        "{\n  \"bip\": \"10.5.1.1/24\",\n  \"mtu\": 1450,\n  \"ip-masq\": false,\n  \"ipv6\": true,\n  \
         \"fixed-cidr-v6\": \"fc00:0:0:1::/64\"\n}\n"
    );
}

#[test]
fn daemon_json_stdout() {
    let host = Host::with_subnet_env(FULL);
    let output = run(
        &[
            "-f",
            &path_arg(&host.subnet_env()),
            "-d",
            "-",
            "--format",
            "daemon-json",
        ],
        &[],
    );
    assert_success(&output);
    assert_eq!(
        stdout(&output),
        "{\n  \"bip\": \"172.16.37.1/24\",\n  \"mtu\": 1472,\n  \"ip-masq\": true\n}\n"
    );
}

#[test]
fn daemon_json_invalid_existing() {
    let host = Host::with_subnet_env(FULL);
    let existing = "{\n  \"log-driver\": \"journald\",\n}\n";
    let (output, written) = daemon_json(&host, Some(existing), &[]);
    assert_failure(
        &output,
        &format!(
            "error: invalid Docker daemon config {}: invalid JSON at line 3, column 1: trailing comma\n",
            path_arg(&host.path("daemon.json"))
        ),
    );
    assert_eq!(written, existing, "the existing daemon.json is untouched");
}

#[test]
fn daemon_json_not_object() {
    let host = Host::with_subnet_env(FULL);
    let (output, written) = daemon_json(&host, Some("[\"bip\"]"), &[]);
    assert_failure(
        &output,
        &format!(
            "error: invalid Docker daemon config {}: expected a JSON object at the top level, found an array\n",
            path_arg(&host.path("daemon.json"))
        ),
    );
    assert_eq!(written, "[\"bip\"]");
}

const CNI_FULL: &str = r#"{
  "cniVersion": "1.0.0",
  "name": "flannel",
  "type": "bridge",
  "bridge": "cni0",
  "isGateway": true,
  "isDefaultGateway": true,
  "ipMasq": true,
  "mtu": 1472,
  "ipam": {
    "type": "host-local",
    "ranges": [
      [
        {
          "subnet": "172.16.37.0/24",
          "gateway": "172.16.37.1"
        }
      ]
    ]
  }
}
"#;

#[test]
fn cni_stdout() {
    let host = Host::with_subnet_env(FULL);
    let output = run(
        &["-f", &path_arg(&host.subnet_env()), "--format", "cni"],
        &[],
    );
    assert_success(&output);
    assert_eq!(stdout(&output), CNI_FULL);
}

#[test]
fn cni_to_file() {
    let host = Host::with_subnet_env(FULL);
    let path = host.path("net.d/10-flannel.conf");
    let output = run(
        &[
            "-f",
            &path_arg(&host.subnet_env()),
            "--format",
            "cni",
            "-d",
            &path_arg(&path),
        ],
        &[],
    );
    assert_success(&output);
    assert_eq!(stdout(&output), "");
    assert_eq!(fs::read_to_string(path).unwrap(), CNI_FULL);
}

#[test]
fn cni_dual_stack_names_m() {
    let host = Host::with_subnet_env(DUAL_STACK);
    let args = [
        "-f",
        &path_arg(&host.subnet_env()),
        "--format",
        "cni",
        "--ipv6",
        "-m",
        "--cni-name",
        "pods",
        "--cni-bridge",
        "flbr0",
    ];
    let output = run(&args, &[]);
    assert_success(&output);
    assert_eq!(
        stdout(&output),
        r#"{
  "cniVersion": "1.0.0",
  "name": "pods",
  "type": "bridge",
  "bridge": "flbr0",
  "isGateway": true,
  "isDefaultGateway": true,
  "mtu": 1450,
  "ipam": {
    "type": "host-local",
    "ranges": [
      [
        {
          "subnet": "10.5.1.0/24",
          "gateway": "10.5.1.1"
        }
      ],
      [
        {
          "subnet": "fc00:0:0:1::/64",
          "gateway": "fc00:0:0:1::1"
        }
      ]
    ]
  }
}
"#
    );
}

#[test]
fn cni_dual_stack_default_ignores_ipv6() {
    let host = Host::with_subnet_env(DUAL_STACK);
    let output = run(
        &["-f", &path_arg(&host.subnet_env()), "--format", "cni"],
        &[],
    );
    assert_success(&output);
    assert!(!stdout(&output).contains("fc00"), "{}", stdout(&output));
}

#[test]
fn cni_invalid_names() {
    let host = Host::with_subnet_env(FULL);
    let subnet_env = path_arg(&host.subnet_env());

    let output = run(
        &["-f", &subnet_env, "--format", "cni", "--cni-name", "my net"],
        &[],
    );
    assert_failure(
        &output,
        "error: invalid CNI network name \"my net\": expected a letter or digit, then letters, digits, '_', '.' or '-'\n",
    );

    let output = run(
        &[
            "-f",
            &subnet_env,
            "--format",
            "cni",
            "--cni-bridge",
            "a-bridge-name-too-long",
        ],
        &[],
    );
    assert_failure(
        &output,
        "error: invalid bridge name \"a-bridge-name-too-long\": expected 1 to 15 bytes without '/', ':' or white space, \
         other than '.' and '..'\n",
    );
}
