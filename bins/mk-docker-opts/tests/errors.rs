//! Bad input: each case exits with status 1, prints one exact message and
//! leaves an existing output file untouched.

mod common;

use std::fs;

use common::{assert_failure, path_arg, run, Host, FULL};

const OLD_OUTPUT: &str = "DOCKER_OPTS=\" --bip=172.16.99.1/24 \"\n";

/// Runs with an existing output file and checks that it is unchanged.
fn fail_env(subnet_env: &str, args: &[&str], vars: &[(&str, &str)], message: &str) {
    let host = Host::with_subnet_env(subnet_env);
    fs::write(host.path("docker_opts.env"), OLD_OUTPUT).unwrap();
    let (output, written) = host.run_env(args, vars);
    let message = message.replace("{subnet_env}", &path_arg(&host.subnet_env()));
    assert_failure(&output, &message);
    assert_eq!(
        written.as_deref(),
        Some(OLD_OUTPUT),
        "the existing output file is untouched"
    );
}

#[test]
fn missing_subnet_env() {
    let host = Host::with_subnet_env(FULL);
    fs::remove_file(host.subnet_env()).unwrap();
    fs::write(host.path("docker_opts.env"), OLD_OUTPUT).unwrap();
    let (output, written) = host.run_env(&[], &[]);
    assert_failure(
        &output,
        &format!(
            "error: subnet.env {} not found; flanneld writes it once it holds a lease\n",
            path_arg(&host.subnet_env())
        ),
    );
    assert_eq!(written.as_deref(), Some(OLD_OUTPUT));
}

#[test]
fn missing_subnet_env_writes_nothing() {
    let host = Host::with_subnet_env(FULL);
    fs::remove_file(host.subnet_env()).unwrap();
    let (output, written) = host.run_env(&[], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(written, None, "no empty output file is created");
}

#[test]
fn unreadable_subnet_env() {
    // A folder in place of the file cannot be read, even by root.
    let host = Host::with_subnet_env(FULL);
    fs::remove_file(host.subnet_env()).unwrap();
    fs::create_dir(host.subnet_env()).unwrap();
    fs::write(host.path("docker_opts.env"), OLD_OUTPUT).unwrap();
    let (output, written) = host.run_env(&[], &[]);
    assert_failure(
        &output,
        &format!(
            "error: failed to read subnet.env {}: Is a directory (os error 21)\n",
            path_arg(&host.subnet_env())
        ),
    );
    assert_eq!(written.as_deref(), Some(OLD_OUTPUT));
}

#[test]
fn invalid_ipmasq() {
    fail_env(
        "FLANNEL_NETWORK=172.16.0.0/16\nFLANNEL_SUBNET=172.16.37.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=yes\n",
        &[],
        &[],
        "error: invalid subnet.env {subnet_env}: line 4: invalid FLANNEL_IPMASQ value \"yes\": expected true or false\n",
    );
}

#[test]
fn invalid_ipmasq_with_m() {
    // The value is rejected even when -m leaves the option out, because the
    // file itself is broken.
    fail_env(
        "FLANNEL_SUBNET=172.16.37.1/24\nFLANNEL_IPMASQ=1\n",
        &["-m"],
        &[],
        "error: invalid subnet.env {subnet_env}: line 2: invalid FLANNEL_IPMASQ value \"1\": expected true or false\n",
    );
}

#[test]
fn invalid_subnet() {
    fail_env(
        "FLANNEL_NETWORK=172.16.0.0/16\nFLANNEL_SUBNET=172.16.37.1\nFLANNEL_MTU=1472\n",
        &[],
        &[],
        "error: invalid subnet.env {subnet_env}: line 2: invalid FLANNEL_SUBNET value \"172.16.37.1\": \
         expected an IPv4 address with a prefix length, such as 172.16.37.1/24\n",
    );
}

#[test]
fn invalid_mtu() {
    fail_env(
        "FLANNEL_NETWORK=172.16.0.0/16\nFLANNEL_SUBNET=172.16.37.1/24\nFLANNEL_MTU=1472b\n",
        &[],
        &[],
        "error: invalid subnet.env {subnet_env}: line 3: invalid FLANNEL_MTU value \"1472b\": \
         expected a whole number of bytes from 68 to 4294967295\n",
    );
}

#[test]
fn missing_subnet_variable() {
    fail_env(
        "FLANNEL_NETWORK=172.16.0.0/16\nFLANNEL_MTU=1472\n",
        &[],
        &[],
        "error: subnet.env {subnet_env}: FLANNEL_SUBNET is not set; flanneld writes it once it holds a lease\n",
    );
}

#[test]
fn ipv6_without_ipv6_subnet() {
    fail_env(
        FULL,
        &["--ipv6"],
        &[],
        "error: subnet.env {subnet_env}: IPv6 options were requested but FLANNEL_IPV6_SUBNET is not set; \
         it is set only when the network config enables IPv6\n",
    );
}

#[test]
fn invalid_combined_key() {
    fail_env(
        FULL,
        &["-k", "DOCKER-OPTS"],
        &[],
        "error: invalid combined key \"DOCKER-OPTS\": expected a shell variable name (a letter or _, then letters, digits or _)\n",
    );
}

#[test]
fn prefix_with_quote() {
    fail_env(
        FULL,
        &["-c"],
        &[("DOCKER_OPTS", "--label a\"b")],
        "error: invalid value \"--label a\\\"b\" of DOCKER_OPTS: it must not contain a double quote, a backslash or a line break\n",
    );
}

#[test]
fn unknown_flag() {
    fail_env(
        FULL,
        &["-x"],
        &[],
        "error: unexpected argument '-x' found\n\nUsage: mk-docker-opts [OPTIONS]\n\nFor more information, try '--help'.\n",
    );
}

#[test]
fn unknown_long_flag() {
    fail_env(
        FULL,
        &["--ip-masq"],
        &[],
        "error: unexpected argument '--ip-masq' found\n\n  tip: a similar argument exists: '--no-ip-masq'\n\n\
         Usage: mk-docker-opts --flannel-env <FLANNEL-ENV> --docker-env <DOCKER-ENV> --no-ip-masq\n\n\
         For more information, try '--help'.\n",
    );
}

#[test]
fn positional_argument() {
    fail_env(
        FULL,
        &["extra"],
        &[],
        "error: unexpected argument 'extra' found\n\nUsage: mk-docker-opts [OPTIONS]\n\nFor more information, try '--help'.\n",
    );
}

#[test]
fn flag_without_value() {
    fail_env(
        FULL,
        &["-k"],
        &[],
        "error: a value is required for '--combined-key <KEY>' but none was supplied\n\n\
         For more information, try '--help'.\n",
    );
}

#[test]
fn unknown_format() {
    fail_env(
        FULL,
        &["--format", "yaml"],
        &[],
        "error: invalid value 'yaml' for '--format <FORMAT>'\n  [possible values: env, daemon-json, cni]\n\n\
         For more information, try '--help'.\n",
    );
}

#[test]
fn env_flags_with_other_format() {
    let host = Host::with_subnet_env(FULL);
    let output = run(
        &["-f", &path_arg(&host.subnet_env()), "--format", "cni", "-i"],
        &[],
    );
    assert_failure(
        &output,
        "error: -i, -c and -k apply only to --format env, not to --format cni\n",
    );

    let json = host.path("daemon.json");
    let output = run(
        &[
            "-f",
            &path_arg(&host.subnet_env()),
            "-d",
            &path_arg(&json),
            "--format",
            "daemon-json",
            "-k",
            "X",
        ],
        &[],
    );
    assert_failure(
        &output,
        "error: -i, -c and -k apply only to --format env, not to --format daemon-json\n",
    );
    assert!(!json.exists());
}

#[test]
fn failed_write_keeps_target() {
    // A non-empty folder at the output path cannot be replaced: the write
    // fails after the temporary file is written, and both are cleaned up.
    let host = Host::with_subnet_env(FULL);
    let target = host.path("docker_opts.env");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("kept"), OLD_OUTPUT).unwrap();

    let (output, _) = host.run_env(&[], &[]);

    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let prefix = format!(
        "error: failed to rename {}/.docker_opts.env.",
        path_arg(host.dir.path())
    );
    assert!(stderr.starts_with(&prefix), "{stderr}");
    assert!(
        stderr.ends_with(&format!(
            ".tmp to {}: Is a directory (os error 21)\n",
            path_arg(&target)
        )),
        "{stderr}"
    );
    assert_eq!(fs::read_to_string(target.join("kept")).unwrap(), OLD_OUTPUT);
    let mut names: Vec<_> = fs::read_dir(host.dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["docker_opts.env", "subnet.env"],
        "no temporary file is left behind"
    );
}

#[test]
fn help_and_version() {
    let output = run(&["--help"], &[]);
    assert_eq!(output.status.code(), Some(0));
    let help = common::stdout(&output);
    assert!(help.starts_with("Generate Docker daemon options from flannel's subnet.env\n\nUsage: mk-docker-opts [OPTIONS]\n"), "{help}");
    for flag in [
        "-f, --flannel-env",
        "-d, --docker-env",
        "-i, --individual",
        "-c, --combined",
        "-m, --no-ip-masq",
        "-k, --combined-key",
        "--format",
        "--ipv6",
    ] {
        assert!(help.contains(flag), "help lists {flag}");
    }

    let output = run(&["--version"], &[]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        common::stdout(&output),
        format!("mk-docker-opts {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn prefix_not_utf8() {
    use std::os::unix::ffi::OsStrExt;

    let host = Host::with_subnet_env(FULL);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mk-docker-opts"))
        .args([
            "-f",
            &path_arg(&host.subnet_env()),
            "-d",
            &path_arg(&host.path("out.env")),
            "-c",
        ])
        .env("DOCKER_OPTS", std::ffi::OsStr::from_bytes(b"--label=\xff"))
        .output()
        .unwrap();
    assert_failure(
        &output,
        "error: value of DOCKER_OPTS in the environment is not valid UTF-8\n",
    );
    assert!(!host.path("out.env").exists());
}
