//! Byte-exact env file output, compared with what mk-docker-opts.sh writes
//! for the same subnet.env and flags.

mod common;

use common::{assert_success, Host, DUAL_STACK, FULL};

fn env_output(subnet_env: &str, args: &[&str], vars: &[(&str, &str)]) -> String {
    let host = Host::with_subnet_env(subnet_env);
    let (output, written) = host.run_env(args, vars);
    assert_success(&output);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "",
        "the env format writes only the file"
    );
    written.expect("output file written")
}

#[test]
fn full_subnet_env() {
    assert_eq!(
        env_output(FULL, &[], &[]),
        "DOCKER_OPT_BIP=\"--bip=172.16.37.1/24\"\n\
         DOCKER_OPT_IPMASQ=\"--ip-masq=true\"\n\
         DOCKER_OPT_MTU=\"--mtu=1472\"\n\
         DOCKER_OPTS=\" --bip=172.16.37.1/24 --ip-masq=true --mtu=1472 \"\n"
    );
}

#[test]
fn without_mtu() {
    let subnet_env =
        "FLANNEL_NETWORK=172.16.0.0/16\nFLANNEL_SUBNET=172.16.37.1/24\nFLANNEL_IPMASQ=false\n";
    assert_eq!(
        env_output(subnet_env, &[], &[]),
        "DOCKER_OPT_BIP=\"--bip=172.16.37.1/24\"\n\
         DOCKER_OPT_IPMASQ=\"--ip-masq=true\"\n\
         DOCKER_OPTS=\" --bip=172.16.37.1/24 --ip-masq=true \"\n"
    );
}

#[test]
fn without_ipmasq() {
    let subnet_env =
        "FLANNEL_NETWORK=172.16.0.0/16\nFLANNEL_SUBNET=172.16.37.1/24\nFLANNEL_MTU=1472\n";
    assert_eq!(
        env_output(subnet_env, &[], &[]),
        "DOCKER_OPT_BIP=\"--bip=172.16.37.1/24\"\n\
         DOCKER_OPT_MTU=\"--mtu=1472\"\n\
         DOCKER_OPTS=\" --bip=172.16.37.1/24 --mtu=1472 \"\n"
    );
}

#[test]
fn ipmasq_true_disables_docker_masquerade() {
    let subnet_env = "FLANNEL_NETWORK=172.16.0.0/16\nFLANNEL_SUBNET=172.16.37.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n";
    assert_eq!(
        env_output(subnet_env, &[], &[]),
        "DOCKER_OPT_BIP=\"--bip=172.16.37.1/24\"\n\
         DOCKER_OPT_IPMASQ=\"--ip-masq=false\"\n\
         DOCKER_OPT_MTU=\"--mtu=1472\"\n\
         DOCKER_OPTS=\" --bip=172.16.37.1/24 --ip-masq=false --mtu=1472 \"\n"
    );
}

#[test]
fn ipmasq_false_enables_docker_masquerade() {
    let output = env_output(FULL, &[], &[]);
    assert!(
        output.contains("DOCKER_OPT_IPMASQ=\"--ip-masq=true\"\n"),
        "{output}"
    );
}

#[test]
fn flag_m_omits_ip_masq() {
    assert_eq!(
        env_output(FULL, &["-m"], &[]),
        "DOCKER_OPT_BIP=\"--bip=172.16.37.1/24\"\n\
         DOCKER_OPT_MTU=\"--mtu=1472\"\n\
         DOCKER_OPTS=\" --bip=172.16.37.1/24 --mtu=1472 \"\n"
    );
}

#[test]
fn flag_k_custom_key() {
    assert_eq!(
        env_output(FULL, &["-k", "CUSTOM"], &[]),
        "DOCKER_OPT_BIP=\"--bip=172.16.37.1/24\"\n\
         DOCKER_OPT_IPMASQ=\"--ip-masq=true\"\n\
         DOCKER_OPT_MTU=\"--mtu=1472\"\n\
         CUSTOM=\" --bip=172.16.37.1/24 --ip-masq=true --mtu=1472 \"\n"
    );
}

#[test]
fn flag_k_custom_key_prefix() {
    assert_eq!(
        env_output(
            FULL,
            &["-c", "-k", "CUSTOM"],
            &[("CUSTOM", "--bridge=cbr0"), ("DOCKER_OPTS", "--ignored")]
        ),
        "CUSTOM=\"--bridge=cbr0 --bip=172.16.37.1/24 --ip-masq=true --mtu=1472 \"\n"
    );
}

#[test]
fn docker_opts_prefix() {
    assert_eq!(
        env_output(FULL, &["-c"], &[("DOCKER_OPTS", "--bridge=cbr0")]),
        "DOCKER_OPTS=\"--bridge=cbr0 --bip=172.16.37.1/24 --ip-masq=true --mtu=1472 \"\n"
    );
}

#[test]
fn empty_prefix_is_unset() {
    assert_eq!(
        env_output(FULL, &["-c"], &[("DOCKER_OPTS", "")]),
        "DOCKER_OPTS=\" --bip=172.16.37.1/24 --ip-masq=true --mtu=1472 \"\n"
    );
}

#[test]
fn flag_i_only() {
    assert_eq!(
        env_output(FULL, &["-i"], &[]),
        "DOCKER_OPT_BIP=\"--bip=172.16.37.1/24\"\n\
         DOCKER_OPT_IPMASQ=\"--ip-masq=true\"\n\
         DOCKER_OPT_MTU=\"--mtu=1472\"\n"
    );
}

#[test]
fn flag_c_only() {
    assert_eq!(
        env_output(FULL, &["-c"], &[]),
        "DOCKER_OPTS=\" --bip=172.16.37.1/24 --ip-masq=true --mtu=1472 \"\n"
    );
}

#[test]
fn flags_i_and_c_write_both() {
    assert_eq!(
        env_output(FULL, &["-i", "-c"], &[]),
        env_output(FULL, &[], &[])
    );
    assert_eq!(env_output(FULL, &["-ic"], &[]), env_output(FULL, &[], &[]));
}

#[test]
fn long_flags_match_short() {
    assert_eq!(
        env_output(FULL, &["--individual", "--no-ip-masq"], &[]),
        env_output(FULL, &["-i", "-m"], &[])
    );
    assert_eq!(
        env_output(FULL, &["--combined", "--combined-key", "CUSTOM"], &[]),
        env_output(FULL, &["-c", "-kCUSTOM"], &[])
    );
}

#[test]
fn dual_stack_default_ignores_ipv6() {
    assert_eq!(
        env_output(DUAL_STACK, &[], &[]),
        "DOCKER_OPT_BIP=\"--bip=10.5.1.1/24\"\n\
         DOCKER_OPT_IPMASQ=\"--ip-masq=false\"\n\
         DOCKER_OPT_MTU=\"--mtu=1450\"\n\
         DOCKER_OPTS=\" --bip=10.5.1.1/24 --ip-masq=false --mtu=1450 \"\n"
    );
}

#[test]
fn dual_stack_with_ipv6_flag() {
    assert_eq!(
        env_output(DUAL_STACK, &["--ipv6"], &[]),
        "DOCKER_OPT_BIP=\"--bip=10.5.1.1/24\"\n\
         DOCKER_OPT_IPMASQ=\"--ip-masq=false\"\n\
         DOCKER_OPT_MTU=\"--mtu=1450\"\n\
         DOCKER_OPT_IPV6=\"--ipv6\"\n\
         DOCKER_OPT_FIXED_CIDR_V6=\"--fixed-cidr-v6=fc00:0:0:1::/64\"\n\
         DOCKER_OPTS=\" --bip=10.5.1.1/24 --ip-masq=false --mtu=1450 --ipv6 --fixed-cidr-v6=fc00:0:0:1::/64 \"\n"
    );
}

#[test]
fn existing_output_is_replaced() {
    let host = Host::with_subnet_env(FULL);
    std::fs::write(
        host.path("docker_opts.env"),
        "DOCKER_OPTS=\"stale and much longer than the new contents\"\n".repeat(20),
    )
    .unwrap();
    let (output, written) = host.run_env(&["-c"], &[]);
    assert_success(&output);
    assert_eq!(
        written.unwrap(),
        "DOCKER_OPTS=\" --bip=172.16.37.1/24 --ip-masq=true --mtu=1472 \"\n"
    );
}

#[test]
fn output_folder_is_created() {
    let host = Host::with_subnet_env(FULL);
    let out = host.path("run/docker/opts.env");
    let output = common::run(
        &[
            "-f",
            &common::path_arg(&host.subnet_env()),
            "-d",
            &common::path_arg(&out),
            "-c",
        ],
        &[],
    );
    assert_success(&output);
    assert_eq!(
        std::fs::read_to_string(out).unwrap(),
        "DOCKER_OPTS=\" --bip=172.16.37.1/24 --ip-masq=true --mtu=1472 \"\n"
    );
}

#[test]
fn dash_writes_stdout() {
    let host = Host::with_subnet_env(FULL);
    let output = common::run(
        &["-f", &common::path_arg(&host.subnet_env()), "-d", "-", "-i"],
        &[],
    );
    assert_success(&output);
    assert_eq!(
        common::stdout(&output),
        "DOCKER_OPT_BIP=\"--bip=172.16.37.1/24\"\n\
         DOCKER_OPT_IPMASQ=\"--ip-masq=true\"\n\
         DOCKER_OPT_MTU=\"--mtu=1472\"\n"
    );
}

#[test]
fn repeated_flag_last_wins() {
    assert_eq!(
        env_output(FULL, &["-k", "FIRST", "-c", "-c", "-k", "CUSTOM"], &[]),
        "CUSTOM=\" --bip=172.16.37.1/24 --ip-masq=true --mtu=1472 \"\n"
    );
}
