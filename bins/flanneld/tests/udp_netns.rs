//! flanneld with the udp backend inside network namespaces created by the
//! test, with etcd running in a namespace too: flannel0, subnet.env,
//! iptables, a ping between two hosts, and cleanup on SIGTERM.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

const PREFIX: &str = "/coreos.com/network";

/// Runs `ip` inside `netns`, asserting success.
fn ip(netns: &TestNetns, args: &[&str]) -> String {
    netns.run_ok("ip", args)
}

/// Gives `netns` loopback and an underlay `veth0` (MTU 1500) with
/// `address` and a default route through it. The other end of the veth
/// pair stays in the namespace, unaddressed.
fn veth_underlay(netns: &TestNetns, address: &str) {
    ip(netns, &["link", "set", "lo", "up"]);
    ip(
        netns,
        &[
            "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
        ],
    );
    ip(netns, &["addr", "add", address, "dev", "veth0"]);
    ip(netns, &["link", "set", "veth1", "up"]);
    ip(netns, &["link", "set", "veth0", "up"]);
    ip(netns, &["route", "add", "default", "dev", "veth0"]);
}

struct Host {
    dir: tempfile::TempDir,
    notify: NotifySocket,
}

impl Host {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let notify = NotifySocket::bind(dir.path());
        Self { dir, notify }
    }

    fn subnet_file(&self) -> PathBuf {
        self.dir.path().join("subnet.env")
    }

    fn spawn(&self, netns: &TestNetns, endpoint: &str, extra: &[&str]) -> Daemon {
        let mut args = vec![
            format!("-etcd-endpoints={endpoint}"),
            format!("-subnet-file={}", self.subnet_file().display()),
        ];
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        let socket = self.notify.path.to_str().unwrap().to_owned();
        Daemon::spawn(
            Some(netns),
            &args,
            &[("NOTIFY_SOCKET", socket.as_str())],
            self.dir.path().join("flanneld.log"),
        )
    }

    fn wait_ready(&self, daemon: &Daemon) {
        self.notify.wait_for("READY=1", daemon);
    }

    fn subnet(&self) -> ipnet::Ipv4Net {
        read_env_file(&self.subnet_file())["FLANNEL_SUBNET"]
            .parse()
            .unwrap()
    }
}

fn chain_rules(netns: &TestNetns, table: &str, chain: &str) -> Vec<String> {
    let output = netns.run("iptables", &["-t", table, "-S", chain]);
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with("-A "))
        .map(str::to_owned)
        .collect()
}

fn link_exists(netns: &TestNetns, name: &str) -> bool {
    netns.run("ip", &["link", "show", name]).status.success()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn udp_backend_device_iptables_and_cleanup() {
    let netns = TestNetns::new("udp");
    veth_underlay(&netns, "10.99.0.1/24");
    let etcd = NetnsEtcd::start(&netns, "127.0.0.1");
    etcd.etcdctl(
        &netns,
        &[
            "put",
            &format!("{PREFIX}/config"),
            r#"{"Network":"10.5.0.0/16"}"#,
        ],
    )
    .unwrap();

    let host = Host::new();
    let mut daemon = host.spawn(&netns, &etcd.endpoint, &["-ip-masq", "-iptables-resync=1"]);
    host.wait_ready(&daemon);
    let log = daemon.log();
    assert!(log.contains("check_sender=true"), "log:\n{log}");
    assert!(
        log.contains("using interface interface=veth0 address=10.99.0.1"),
        "log:\n{log}"
    );

    let env = read_env_file(&host.subnet_file());
    assert_eq!(env["FLANNEL_NETWORK"], "10.5.0.0/16");
    assert_eq!(
        env["FLANNEL_MTU"], "1472",
        "1500 minus 28 bytes of IPv4 and UDP headers"
    );
    assert_eq!(env["FLANNEL_IPMASQ"], "true");
    let subnet = host.subnet();

    let link = ip(&netns, &["-o", "link", "show", "flannel0"]);
    assert!(link.contains("mtu 1472"), "{link}");
    let addr = ip(&netns, &["-o", "-4", "addr", "show", "dev", "flannel0"]);
    assert!(
        addr.contains(&format!("inet {}/16", subnet.network())),
        "{addr}"
    );

    let value = etcd
        .etcdctl(
            &netns,
            &[
                "get",
                "--print-value-only",
                &format!("{PREFIX}/subnets/{}-24", subnet.network()),
            ],
        )
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(value.trim()).unwrap();
    assert_eq!(value["PublicIP"], "10.99.0.1");
    assert_eq!(value["BackendType"], "udp");

    // The masquerade and forward rules are in place at READY=1, and are
    // restored after a flush.
    let lease = subnet.trunc().to_string();
    let masq = chain_rules(&netns, "nat", "FLANNEL-POSTRTG");
    assert_eq!(masq.len(), 5, "{masq:#?}");
    assert!(
        masq[0].starts_with(&format!("-A FLANNEL-POSTRTG -s {lease} -d 10.5.0.0/16")),
        "{masq:#?}"
    );
    assert_eq!(chain_rules(&netns, "filter", "FLANNEL-FWD").len(), 2);
    netns.run_ok("iptables", &["-t", "nat", "-F", "FLANNEL-POSTRTG"]);
    wait_until("restored masquerade rules", DAEMON_TIMEOUT, || {
        chain_rules(&netns, "nat", "FLANNEL-POSTRTG").len() == 5
    });
    daemon.wait_log("iptables rules were missing or changed and have been restored");

    assert_eq!(
        daemon.stop(Signal::SIGTERM).code(),
        Some(0),
        "log:\n{}",
        daemon.log()
    );
    assert!(!link_exists(&netns, "flannel0"), "flannel0 left behind");
    assert!(daemon.log().contains("udp backend stopped"));
    let keys = etcd
        .etcdctl(
            &netns,
            &[
                "get",
                "--prefix",
                "--keys-only",
                &format!("{PREFIX}/subnets/"),
            ],
        )
        .unwrap();
    assert!(
        keys.contains(&format!("{}-24", subnet.network())),
        "lease kept: {keys}"
    );

    // A restart keeps the subnet and brings flannel0 back, here with the
    // sender check off.
    let mut daemon = host.spawn(
        &netns,
        &etcd.endpoint,
        &["-ip-masq", "-iptables-resync=1", "-udp-check-sender=false"],
    );
    host.wait_ready(&daemon);
    assert_eq!(host.subnet(), subnet);
    assert!(link_exists(&netns, "flannel0"));
    assert!(
        daemon.log().contains("check_sender=false"),
        "log:\n{}",
        daemon.log()
    );
    assert_eq!(
        daemon.stop(Signal::SIGINT).code(),
        Some(0),
        "log:\n{}",
        daemon.log()
    );
    assert!(!link_exists(&netns, "flannel0"));
}

/// The walkthrough's layout: etcd at 10.25.31.105, hosts 10.25.31.61 and
/// 10.25.31.37 on one segment, Network 172.16.0.0/16, and flanneld started
/// with the systemd unit's flags (plus a temporary subnet.env).
#[test]
fn two_hosts_ping_over_udp() {
    let host_a = TestNetns::new("ua");
    let host_b = TestNetns::new("ub");
    ip(&host_a, &["link", "set", "lo", "up"]);
    ip(&host_b, &["link", "set", "lo", "up"]);
    ip(
        &host_a,
        &[
            "link",
            "add",
            "veth0",
            "type",
            "veth",
            "peer",
            "name",
            "veth0",
            "netns",
            &host_b.name,
        ],
    );
    for (netns, address) in [(&host_a, "10.25.31.61/24"), (&host_b, "10.25.31.37/24")] {
        ip(netns, &["addr", "add", address, "dev", "veth0"]);
        ip(netns, &["link", "set", "veth0", "up"]);
        ip(netns, &["route", "add", "default", "dev", "veth0"]);
    }
    // The etcd host's address, second on host A's link.
    ip(&host_a, &["addr", "add", "10.25.31.105/24", "dev", "veth0"]);

    let etcd = NetnsEtcd::start(&host_a, "10.25.31.105");
    etcd.etcdctl(
        &host_a,
        &[
            "put",
            &format!("{PREFIX}/config"),
            r#"{"Network":"172.16.0.0/16"}"#,
        ],
    )
    .unwrap();

    let a = Host::new();
    let b = Host::new();
    let unit_flags = ["-etcd-prefix=/coreos.com/network"];
    let mut daemon_a = a.spawn(&host_a, "http://10.25.31.105:2379", &unit_flags);
    let mut daemon_b = b.spawn(&host_b, "http://10.25.31.105:2379", &unit_flags);
    a.wait_ready(&daemon_a);
    b.wait_ready(&daemon_b);
    assert!(
        daemon_a.log().contains("address=10.25.31.61"),
        "log A:\n{}",
        daemon_a.log()
    );
    assert!(
        daemon_b.log().contains("address=10.25.31.37"),
        "log B:\n{}",
        daemon_b.log()
    );
    assert_ne!(a.subnet().trunc(), b.subnet().trunc());

    // Each learns the other's lease from the watch; ping until it has.
    let target = b.subnet().network().to_string();
    let started = Instant::now();
    loop {
        let output = host_a.run("ping", &["-c", "1", "-W", "1", &target]);
        if output.status.success() {
            break;
        }
        assert!(
            started.elapsed() < DAEMON_TIMEOUT,
            "ping {target} from host A never succeeded: {}\nlog A:\n{}\nlog B:\n{}",
            String::from_utf8_lossy(&output.stdout),
            daemon_a.log(),
            daemon_b.log()
        );
    }

    assert_eq!(daemon_a.stop(Signal::SIGTERM).code(), Some(0));
    assert_eq!(daemon_b.stop(Signal::SIGTERM).code(), Some(0));
    assert!(!link_exists(&host_a, "flannel0"));
    assert!(!link_exists(&host_b, "flannel0"));
}
