//! The operator's walkthrough, end to end, on real parts: etcd on
//! 10.25.31.105, flanneld and a `docker0` bridge on 10.25.31.61 and
//! 10.25.31.37, each host a network namespace (see `testbed`).
//!
//! Needs root, Linux with TUN and network namespaces, the tools that
//! `scripts/install-deps.sh` installs, and the workspace's binaries built
//! into the same target folder (`cargo build --workspace --bins`).

mod testbed;

use std::net::Ipv4Addr;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use testbed::{
    namespace_exists, Ipv4Cidr, SubnetEnv, Testbed, ETCD_PREFIX, HOST_37, HOST_38, HOST_61,
    START_TIMEOUT, WALKTHROUGH_CONFIG,
};

/// Returns the walkthrough's network, 172.16.0.0/16.
fn walkthrough_network() -> Ipv4Cidr {
    Ipv4Cidr::parse("172.16.0.0/16").unwrap()
}

/// MTU of the testbed's veth links (1500) minus the udp backend's 28
/// bytes of IPv4 and UDP headers.
const UDP_MTU: u32 = 1472;

fn lease_key(env: &SubnetEnv) -> String {
    format!("{ETCD_PREFIX}/subnets/{}", env.subnet.lease_key())
}

/// Removes whitespace so that a JSON value compares the same however its
/// writer spaced it.
fn compact(json: &str) -> String {
    json.chars().filter(|c| !c.is_whitespace()).collect()
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn testbed_wires_hosts_to_etcd() {
    let mut testbed = Testbed::start();
    let host_61 = testbed.add_host(HOST_61);
    testbed.add_host(HOST_37);

    for target in ["10.25.31.37", "10.25.31.105"] {
        testbed.run_on(host_61, "ping", &["-n", "-c", "1", "-W", "2", target]);
    }

    testbed.put_config(WALKTHROUGH_CONFIG);
    let from_etcd_host = testbed.etcdctl(&["get", "/coreos.com/network/config"]);
    assert_eq!(
        from_etcd_host,
        "/coreos.com/network/config\n{\"Network\":\"172.16.0.0/16\"}\n"
    );
    let from_flannel_host = testbed.run_on(
        host_61,
        "etcdctl",
        &[
            "--endpoints=http://10.25.31.105:2379",
            "get",
            "--print-value-only",
            "/coreos.com/network/config",
        ],
    );
    assert_eq!(from_flannel_host.trim(), WALKTHROUGH_CONFIG);
    testbed::assert_root_namespace_untouched();

    let namespaces = testbed.namespace_names();
    let dir = testbed.dir().to_path_buf();
    drop(testbed);
    for name in &namespaces {
        assert!(!namespace_exists(name), "namespace {name} left behind");
    }
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn hosts_get_distinct_subnets_in_etcd() {
    let mut testbed = Testbed::with_config();
    let host_61 = testbed.bring_up(HOST_61);
    let host_37 = testbed.bring_up(HOST_37);
    let env_61 = testbed.wait_for_subnet_env(host_61);
    let env_37 = testbed.wait_for_subnet_env(host_37);

    for (host, env) in [(host_61, &env_61), (host_37, &env_37)] {
        let addr = testbed.host(host).addr();
        assert_eq!(
            env.network,
            walkthrough_network(),
            "FLANNEL_NETWORK on {addr}"
        );
        assert_eq!(
            env.subnet.prefix_len, 24,
            "FLANNEL_SUBNET on {addr}: default SubnetLen"
        );
        assert!(
            walkthrough_network().contains(&env.subnet),
            "FLANNEL_SUBNET {} on {addr} lies outside 172.16.0.0/16",
            env.subnet
        );
        assert_eq!(
            u32::from(env.subnet.addr),
            u32::from(env.subnet.network()) + 1,
            "FLANNEL_SUBNET {} on {addr} is not the lease's first address",
            env.subnet
        );
        assert_ne!(
            env.subnet.network().octets()[2],
            0,
            "{addr} leased 172.16.0.0/24, below the default SubnetMin"
        );
        assert_eq!(env.mtu, UDP_MTU, "FLANNEL_MTU on {addr}");
        assert_eq!(env.ipmasq, "false", "FLANNEL_IPMASQ on {addr}");

        let docker_opts = std::fs::read_to_string(testbed.host(host).docker_opts_path()).unwrap();
        let expected = [
            format!("DOCKER_OPT_BIP=\"--bip={}\"", env.subnet),
            "DOCKER_OPT_IPMASQ=\"--ip-masq=true\"".to_string(),
            format!("DOCKER_OPT_MTU=\"--mtu={UDP_MTU}\""),
        ];
        let lines: Vec<&str> = docker_opts.lines().collect();
        assert_eq!(lines, expected, "mk-docker-opts -i output on {addr}");

        let tun = testbed.run_on(host, "ip", &["-o", "-4", "addr", "show", "dev", "flannel0"]);
        let tun_addr = format!("{}/16", env.subnet.network());
        assert!(
            tun.contains(&tun_addr),
            "flannel0 on {addr} should have {tun_addr}, has: {tun}"
        );
    }
    assert_ne!(
        env_61.subnet, env_37.subnet,
        "both hosts leased the same subnet"
    );
    testbed::assert_root_namespace_untouched();

    let leases = testbed.leases();
    let mut keys: Vec<&str> = leases.iter().map(|(key, _)| key.as_str()).collect();
    keys.sort_unstable();
    let mut expected_keys = vec![lease_key(&env_61), lease_key(&env_37)];
    expected_keys.sort_unstable();
    assert_eq!(
        keys, expected_keys,
        "lease keys under {ETCD_PREFIX}/subnets"
    );
    for (env, public_ip) in [(&env_61, "10.25.31.61"), (&env_37, "10.25.31.37")] {
        let (_, value) = leases
            .iter()
            .find(|(key, _)| *key == lease_key(env))
            .unwrap();
        assert!(
            compact(value).contains(&format!("\"PublicIP\":\"{public_ip}\"")),
            "lease {} should name PublicIP {public_ip}: {value}",
            lease_key(env)
        );
    }
    assert_eq!(
        testbed
            .etcdctl(&["get", "--print-value-only", "/coreos.com/network/config"])
            .trim(),
        WALKTHROUGH_CONFIG,
        "flanneld must leave the network configuration as the operator wrote it"
    );

    let namespaces = testbed.namespace_names();
    let pids = [testbed.flanneld_pid(host_61), testbed.flanneld_pid(host_37)];
    drop(testbed);
    for name in &namespaces {
        assert!(!namespace_exists(name), "namespace {name} left behind");
    }
    for pid in pids {
        assert!(
            !process_exists(pid),
            "flanneld {pid} still runs after teardown"
        );
    }
}

#[test]
fn traffic_flows_both_ways() {
    let mut testbed = Testbed::with_config();
    let host_61 = testbed.bring_up(HOST_61);
    let host_37 = testbed.bring_up(HOST_37);

    testbed.wait_until_reachable(host_61, host_37);
    testbed.wait_until_reachable(host_37, host_61);
    for (from, to) in [(host_61, host_37), (host_37, host_61)] {
        let target = testbed.host(to).bridge_addr().to_string();
        let route = testbed.run_on(from, "ip", &["-o", "route", "get", &target]);
        assert!(
            route.contains("dev flannel0"),
            "traffic to {target} should leave by flannel0: {route}"
        );

        let (replied, output) = testbed.ping(from, to);
        assert!(
            replied,
            "ping across the overlay failed after a first reply:\n{output}"
        );
    }

    let report = testbed.iperf3(host_61, host_37, 2);
    assert!(
        report.lines().any(|line| line.contains("receiver")),
        "iperf3 from 10.25.31.61 to 10.25.31.37 reported no received data:\n{report}"
    );
}

#[test]
fn host_joining_later_is_reachable() {
    let mut testbed = Testbed::with_config();
    let host_61 = testbed.bring_up(HOST_61);
    let host_37 = testbed.bring_up(HOST_37);
    testbed.wait_until_reachable(host_61, host_37);
    let pids_before = [testbed.flanneld_pid(host_61), testbed.flanneld_pid(host_37)];

    let host_38 = testbed.bring_up(HOST_38);
    for (from, to) in [
        (host_61, host_38),
        (host_37, host_38),
        (host_38, host_61),
        (host_38, host_37),
    ] {
        testbed.wait_until_reachable(from, to);
    }

    testbed.assert_flanneld_running(host_61, "after a third host joined");
    testbed.assert_flanneld_running(host_37, "after a third host joined");
    let pids_after = [testbed.flanneld_pid(host_61), testbed.flanneld_pid(host_37)];
    assert_eq!(
        pids_before, pids_after,
        "the first two daemons were restarted"
    );
    assert_eq!(testbed.leases().len(), 3, "leases: {:?}", testbed.leases());
}

#[test]
fn restarted_flanneld_keeps_its_subnet() {
    let mut testbed = Testbed::with_config();
    let host_61 = testbed.bring_up(HOST_61);
    let host_37 = testbed.bring_up(HOST_37);
    testbed.wait_until_reachable(host_61, host_37);
    let env_before = testbed.wait_for_subnet_env(host_61);
    let leases_before = testbed.leases();

    let status = testbed.stop_flanneld(host_61);
    assert!(
        status.success(),
        "flanneld should exit with status 0 on SIGTERM, exited with {status}"
    );
    assert_eq!(
        testbed.leases(),
        leases_before,
        "stopping flanneld must keep its lease in etcd"
    );
    let (replied, output) = testbed.ping(host_37, host_61);
    assert!(
        !replied,
        "10.25.31.61 answered across the overlay while its flanneld was stopped:
{output}"
    );

    testbed.start_flanneld(host_61);
    let env_after = testbed.wait_for_rewritten_subnet_env(host_61);
    assert_eq!(env_after, env_before, "subnet.env changed across a restart");
    assert_eq!(testbed.leases().len(), 2, "leases: {:?}", testbed.leases());
    assert!(
        testbed
            .leases()
            .iter()
            .any(|(key, _)| *key == lease_key(&env_before)),
        "lease {} is gone after the restart: {:?}",
        lease_key(&env_before),
        testbed.leases()
    );

    testbed.wait_until_reachable(host_61, host_37);
    testbed.wait_until_reachable(host_37, host_61);
}

#[test]
fn removed_host_leaves_forwarding() {
    let mut testbed = Testbed::with_config();
    let host_61 = testbed.bring_up(HOST_61);
    let host_37 = testbed.bring_up(HOST_37);
    let host_38 = testbed.bring_up(HOST_38);
    testbed.wait_until_reachable(host_61, host_38);
    testbed.wait_until_reachable(host_37, host_38);

    // Decommission 10.25.31.38 as an operator would: stop its daemon,
    // then delete its lease.
    let env_38 = testbed.wait_for_subnet_env(host_38);
    testbed.stop_flanneld(host_38);
    let deleted = testbed.etcdctl(&["del", &lease_key(&env_38)]);
    assert_eq!(deleted.trim(), "1", "etcdctl del {}", lease_key(&env_38));

    for from in [host_61, host_37] {
        let output = testbed.wait_until_unreachable(from, host_38);
        assert!(
            output.contains("Destination Net Unreachable"),
            "the sender's flanneld should answer with ICMP net unreachable:\n{output}"
        );
    }
    testbed.wait_until_reachable(host_61, host_37);
    testbed.wait_until_reachable(host_37, host_61);

    std::thread::sleep(Duration::from_secs(2));
    let keys: Vec<String> = testbed.leases().into_iter().map(|(key, _)| key).collect();
    assert!(
        !keys.contains(&lease_key(&env_38)),
        "the deleted lease came back: {keys:?}"
    );
    assert_eq!(keys.len(), 2, "leases: {keys:?}");
}

#[test]
fn flanneld_waits_for_config() {
    let mut testbed = Testbed::start();
    let host_61 = testbed.add_host(HOST_61);
    testbed.start_flanneld(host_61);

    std::thread::sleep(Duration::from_secs(3));
    testbed.assert_flanneld_running(host_61, "while the network configuration was missing");
    let subnet_env = testbed.host(host_61).subnet_env_path();
    assert!(
        !subnet_env.exists(),
        "flanneld wrote {} before any network configuration existed",
        subnet_env.display()
    );
    assert!(
        testbed.leases().is_empty(),
        "leases: {:?}",
        testbed.leases()
    );

    testbed.put_config(WALKTHROUGH_CONFIG);
    let env = testbed.wait_for_subnet_env(host_61);
    assert!(
        walkthrough_network().contains(&env.subnet),
        "FLANNEL_SUBNET {} lies outside 172.16.0.0/16",
        env.subnet
    );
    let keys: Vec<String> = testbed.leases().into_iter().map(|(key, _)| key).collect();
    assert_eq!(keys, vec![lease_key(&env)]);
}

#[test]
fn flanneld_notifies_systemd_when_ready() {
    let mut testbed = Testbed::with_config();
    let host_61 = testbed.add_host(HOST_61);
    let socket_path = testbed.dir().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(START_TIMEOUT)).unwrap();

    let flags = testbed.host(host_61).walkthrough_flags();
    let socket_name = socket_path.to_str().unwrap();
    testbed.start_flanneld_with(host_61, &flags, &[("NOTIFY_SOCKET", socket_name)]);

    // systemd's notify protocol: newline-separated assignments, one
    // datagram each, READY=1 once the service is up.
    let mut buffer = [0u8; 4096];
    loop {
        let received = socket.recv(&mut buffer).unwrap_or_else(|error| {
            panic!("flanneld sent no READY=1 to NOTIFY_SOCKET within {START_TIMEOUT:?}: {error}")
        });
        let message = String::from_utf8_lossy(&buffer[..received]).into_owned();
        if message.lines().any(|line| line == "READY=1") {
            break;
        }
    }
    let subnet_env = testbed.host(host_61).subnet_env_path();
    assert!(
        subnet_env.exists(),
        "flanneld sent READY=1 before writing {}",
        subnet_env.display()
    );
    testbed.assert_flanneld_running(host_61, "after it reported ready");
}

#[test]
fn flanneld_reads_flags_from_environment() {
    let mut testbed = Testbed::with_config();
    let host_61 = testbed.add_host(HOST_61);
    let subnet_env = testbed.host(host_61).subnet_env_path();
    let subnet_env = subnet_env.to_str().unwrap();

    // As /etc/default/flanneld sets them for the shipped unit, which runs
    // flanneld without flags.
    testbed.start_flanneld_with(
        host_61,
        &[],
        &[
            ("FLANNELD_ETCD_ENDPOINTS", "http://10.25.31.105:2379"),
            ("FLANNELD_ETCD_PREFIX", ETCD_PREFIX),
            ("FLANNELD_SUBNET_FILE", subnet_env),
        ],
    );
    let env = testbed.wait_for_subnet_env(host_61);
    let keys: Vec<String> = testbed.leases().into_iter().map(|(key, _)| key).collect();
    assert_eq!(keys, vec![lease_key(&env)]);
}

/// Brings up two hosts with the kernel backend `backend_type`, pings from
/// bridge to bridge both ways, and returns the testbed and both hosts.
fn two_hosts_with_backend(backend_type: &str) -> (Testbed, testbed::HostId, testbed::HostId) {
    let mut testbed = Testbed::start();
    testbed.put_config(&format!(
        r#"{{"Network":"172.16.0.0/16","Backend":{{"Type":"{backend_type}"}}}}"#
    ));
    let host_61 = testbed.bring_up(HOST_61);
    let host_37 = testbed.bring_up(HOST_37);

    testbed.wait_until_reachable(host_61, host_37);
    testbed.wait_until_reachable(host_37, host_61);
    (testbed, host_61, host_37)
}

#[test]
fn vxlan_traffic_flows_both_ways() {
    let (mut testbed, host_61, host_37) = two_hosts_with_backend("vxlan");

    for (from, to) in [(host_61, host_37), (host_37, host_61)] {
        let target = testbed.host(to).bridge_addr().to_string();
        let route = testbed.run_on(from, "ip", &["-o", "route", "get", &target]);
        assert!(
            route.contains("dev flannel.1"),
            "traffic to {target} should leave by flannel.1: {route}"
        );
        let (replied, output) = testbed.ping(from, to);
        assert!(
            replied,
            "ping over VXLAN failed after a first reply:\n{output}"
        );
    }

    // Each lease publishes the VTEP MAC that the other host's FDB points
    // at the lease's PublicIP.
    let link = testbed.run_on(host_37, "ip", &["-o", "link", "show", "dev", "flannel.1"]);
    let mac = link
        .split("link/ether ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no MAC for flannel.1 in {link}"))
        .to_owned();
    let lease = testbed
        .leases()
        .into_iter()
        .find(|(_, value)| value.contains("10.25.31.37"))
        .map(|(_, value)| compact(&value))
        .expect("no lease for 10.25.31.37");
    assert!(
        lease.contains(&format!(
            r#""BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"{mac}"}}"#
        )),
        "lease of 10.25.31.37: {lease}"
    );
    let fdb = testbed.run_on(host_61, "bridge", &["fdb", "show", "dev", "flannel.1"]);
    assert!(
        fdb.contains(&format!("{mac} dst 10.25.31.37 self permanent")),
        "10.25.31.61's FDB: {fdb}"
    );

    let env = testbed.wait_for_subnet_env(host_61);
    assert_eq!(
        env.mtu, 1450,
        "veth MTU 1500 minus 50 bytes of VXLAN headers"
    );

    testbed.stop_flanneld(host_61);
    let links = testbed.run_on(host_61, "ip", &["-o", "link", "show"]);
    assert!(
        !links.contains("flannel.1"),
        "a stopped flanneld should remove flannel.1: {links}"
    );

    // The restarted daemon's device has a new MAC, which reaches the other
    // host through the rewritten lease.
    testbed.start_flanneld(host_61);
    let restarted = testbed.wait_for_rewritten_subnet_env(host_61);
    assert_eq!(restarted.subnet, env.subnet, "a restart keeps the subnet");
    testbed.wait_until_reachable(host_37, host_61);
    testbed.wait_until_reachable(host_61, host_37);
}

#[test]
fn host_gw_traffic_flows_both_ways() {
    let (mut testbed, host_61, host_37) = two_hosts_with_backend("host-gw");

    for (from, to) in [(host_61, host_37), (host_37, host_61)] {
        let target = testbed.host(to).bridge_addr().to_string();
        let gateway = testbed.host(to).addr().to_string();
        let route = testbed.run_on(from, "ip", &["-o", "route", "get", &target]);
        assert!(
            route.contains(&format!("via {gateway} ")),
            "traffic to {target} should go via {gateway}: {route}"
        );
        let (replied, output) = testbed.ping(from, to);
        assert!(
            replied,
            "ping over host-gw failed after a first reply:\n{output}"
        );
    }

    let env = testbed.wait_for_subnet_env(host_61);
    assert_eq!(env.mtu, 1500, "host-gw adds no headers");

    let subnet_37 = testbed.wait_for_subnet_env(host_37).subnet;
    testbed.stop_flanneld(host_61);
    let routes = testbed.run_on(host_61, "ip", &["route", "show"]);
    let network = subnet_37.lease_key().replace('-', "/");
    assert!(
        !routes.contains(&network),
        "a stopped flanneld should remove its route to {network}: {routes}"
    );
}

#[test]
fn etcd_v2_walkthrough_as_written() {
    let mut testbed = Testbed::start_v2();

    // The walkthrough's step 1 on 10.25.31.105. etcdctl 3.4 needs
    // ETCDCTL_API=2 to use the v2 API, which flannel 0.5 stores its data in.
    let config_key = format!("{ETCD_PREFIX}/config");
    let written = testbed.etcdctl_v2(&["set", &config_key, WALKTHROUGH_CONFIG]);
    assert_eq!(written.trim(), WALKTHROUGH_CONFIG, "etcdctl set output");
    let read = testbed.etcdctl_v2(&["get", &config_key]);
    assert_eq!(read.trim(), WALKTHROUGH_CONFIG, "etcdctl get output");

    let host_61 = testbed.bring_up(HOST_61);
    let host_37 = testbed.bring_up(HOST_37);
    let env_61 = testbed.wait_for_subnet_env(host_61);
    let env_37 = testbed.wait_for_subnet_env(host_37);
    for env in [&env_61, &env_37] {
        assert_eq!(env.network, walkthrough_network(), "FLANNEL_NETWORK");
        assert!(
            walkthrough_network().contains(&env.subnet),
            "FLANNEL_SUBNET {} lies outside 172.16.0.0/16",
            env.subnet
        );
        assert_eq!(env.mtu, UDP_MTU, "FLANNEL_MTU");
    }
    assert_ne!(
        env_61.subnet, env_37.subnet,
        "both hosts leased the same subnet"
    );

    // The walkthrough's check: etcdctl ls, then etcdctl get of a lease.
    let listed = testbed.etcdctl_v2(&["ls", &format!("{ETCD_PREFIX}/subnets")]);
    let mut keys: Vec<&str> = listed.lines().filter(|line| !line.is_empty()).collect();
    keys.sort_unstable();
    let mut expected_keys = vec![lease_key(&env_61), lease_key(&env_37)];
    expected_keys.sort_unstable();
    assert_eq!(keys, expected_keys, "etcdctl ls {ETCD_PREFIX}/subnets");
    for (env, public_ip) in [(&env_61, "10.25.31.61"), (&env_37, "10.25.31.37")] {
        let key = lease_key(env);
        let value = testbed.etcdctl_v2(&["get", &key]);
        assert!(
            compact(&value).contains(&format!("\"PublicIP\":\"{public_ip}\"")),
            "lease {key} should name PublicIP {public_ip}: {value}"
        );
        let ttl = testbed.ttl_v2(&key);
        assert!(
            ttl.is_some_and(|seconds| seconds <= 86_400 && seconds > 86_400 - 600),
            "lease {key} should expire in about 24 hours, TTL is {ttl:?} seconds"
        );
    }
    assert!(
        testbed.leases().is_empty(),
        "flanneld -etcd-api=v2 wrote keys into the v3 keyspace: {:?}",
        testbed.leases()
    );
    assert_eq!(
        testbed.etcdctl_v2(&["get", &config_key]).trim(),
        WALKTHROUGH_CONFIG,
        "flanneld must leave the network configuration as the operator wrote it"
    );

    testbed.wait_until_reachable(host_61, host_37);
    testbed.wait_until_reachable(host_37, host_61);
    for (from, to) in [(host_61, host_37), (host_37, host_61)] {
        let (replied, output) = testbed.ping(from, to);
        assert!(
            replied,
            "ping across the overlay failed after a first reply:\n{output}"
        );
    }
    testbed::assert_root_namespace_untouched();
}

/// Returns how many packets have matched rule `number` (counted from 1)
/// of the INPUT chain on host `id`.
fn input_rule_packets(testbed: &Testbed, id: testbed::HostId, number: u32) -> u64 {
    let rule = testbed.run_on(
        id,
        "iptables",
        &["-w", "-n", "-v", "-x", "-L", "INPUT", &number.to_string()],
    );
    rule.split_whitespace()
        .next()
        .and_then(|packets| packets.parse().ok())
        .unwrap_or_else(|| panic!("no packet count in iptables rule INPUT {number}: {rule}"))
}

#[test]
fn etcd_v2_lease_of_flannel_05_host() {
    const OLD_LEASE_KEY: &str = "/coreos.com/network/subnets/172.16.99.0-24";
    const OLD_LEASE: &str = r#"{"PublicIP":"10.25.31.38"}"#;
    const OLD_SUBNET_ADDR: Ipv4Addr = Ipv4Addr::new(172, 16, 99, 1);

    let mut testbed = Testbed::start_v2();
    // SubnetMin and SubnetMax leave three subnets, so the two flanneld
    // hosts must take 172.16.98.0/24 and 172.16.100.0/24 if they respect
    // the lease of the flannel 0.5 host on 172.16.99.0/24.
    testbed.etcdctl_v2(&[
        "set",
        &format!("{ETCD_PREFIX}/config"),
        r#"{"Network":"172.16.0.0/16","SubnetMin":"172.16.98.0","SubnetMax":"172.16.100.0"}"#,
    ]);

    // 10.25.31.38 plays a host that still runs flannel 0.5. Its lease is
    // written in flannel 0.5's form, and its firewall counts the udp
    // backend's datagrams that reach it.
    let old_host = testbed.add_host(HOST_38);
    testbed.etcdctl_v2(&["set", "--ttl", "86400", OLD_LEASE_KEY, OLD_LEASE]);
    let from_61 = ["-p", "udp", "-s", "10.25.31.61", "--sport", "8285"];
    // Rules without a target only count, so both rules see every datagram.
    let to_old_host = ["-d", "10.25.31.38", "--dport", "8285"];
    testbed.run_on(
        old_host,
        "iptables",
        &[&["-w", "-A", "INPUT"], &from_61[..], &to_old_host[..]].concat(),
    );
    // The ping below as one datagram: its IPv4 packet (84 bytes) plus 28
    // bytes of IPv4 and UDP headers, with 172.16.99.1 at byte 44, which is
    // the inner packet's destination address.
    testbed.run_on(
        old_host,
        "iptables",
        &[
            &["-w", "-A", "INPUT"],
            &from_61[..],
            &["-m", "length", "--length", "112"],
            &["-m", "u32", "--u32", "44=0xac106301"],
            &to_old_host[..],
        ]
        .concat(),
    );

    let host_61 = testbed.bring_up(HOST_61);
    let host_37 = testbed.bring_up(HOST_37);
    let mut subnets = [
        testbed.wait_for_subnet_env(host_61).subnet.to_string(),
        testbed.wait_for_subnet_env(host_37).subnet.to_string(),
    ];
    subnets.sort_unstable();
    assert_eq!(
        subnets,
        ["172.16.100.1/24", "172.16.98.1/24"],
        "FLANNEL_SUBNET of 10.25.31.61 and 10.25.31.37"
    );
    let leases = testbed.leases_v2();
    let keys: Vec<&str> = leases.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "/coreos.com/network/subnets/172.16.100.0-24",
            "/coreos.com/network/subnets/172.16.98.0-24",
            OLD_LEASE_KEY,
        ],
        "etcdctl ls {ETCD_PREFIX}/subnets"
    );
    assert_eq!(
        testbed.etcdctl_v2(&["get", OLD_LEASE_KEY]).trim(),
        OLD_LEASE,
        "flanneld changed the flannel 0.5 host's lease"
    );
    testbed.wait_until_reachable(host_61, host_37);
    testbed.wait_until_reachable(host_37, host_61);

    // No process listens on 10.25.31.38:8285, so the pings get no reply.
    // The firewall counters show whether 10.25.31.61 sent them there.
    let deadline = Instant::now() + START_TIMEOUT;
    while input_rule_packets(&testbed, old_host, 1) == 0 {
        testbed.assert_flanneld_running(host_61, "while forwarding to the flannel 0.5 host");
        let (_, output) = testbed.ping_addr(host_61, OLD_SUBNET_ADDR);
        assert!(
            Instant::now() < deadline,
            "no udp datagram from 10.25.31.61:8285 reached 10.25.31.38:8285 within \
             {START_TIMEOUT:?} of pinging {OLD_SUBNET_ADDR}; last ping:\n{output}"
        );
    }
    let exact = input_rule_packets(&testbed, old_host, 2);
    let counters = testbed.run_on(old_host, "iptables", &["-w", "-nvx", "-L", "INPUT"]);
    assert!(
        exact > 0,
        "datagrams from 10.25.31.61 reached 10.25.31.38:8285, but none was exactly the \
         112-byte ping to {OLD_SUBNET_ADDR}:\n{counters}"
    );
    testbed.assert_flanneld_running(host_61, "after forwarding to the flannel 0.5 host");
}

#[test]
fn etcd_v2_api_not_served() {
    const EXPECTED: &str = "etcd get of /coreos.com/network/config returned an unexpected \
        response: HTTP 404 Not Found: this etcd does not serve the v2 API; start etcd with \
        --enable-v2=true";

    // etcd 3.4 started without --enable-v2=true, as by default.
    let mut testbed = Testbed::with_config();
    let host_61 = testbed.add_host(HOST_61);
    let mut flags = testbed.host(host_61).walkthrough_flags();
    flags.push("-etcd-api=v2".to_string());
    testbed.start_flanneld_with(host_61, &flags, &[]);

    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let (log, exit) = testbed.flanneld_log(host_61);
        assert!(
            exit.is_none(),
            "flanneld exited ({exit:?}) instead of retrying until etcd serves the v2 API:\n{log}"
        );
        if log.contains(EXPECTED) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "flanneld logged no `{EXPECTED}` within {START_TIMEOUT:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let subnet_env = testbed.host(host_61).subnet_env_path();
    assert!(
        !subnet_env.exists(),
        "flanneld wrote {} without reading a network configuration",
        subnet_env.display()
    );
}
