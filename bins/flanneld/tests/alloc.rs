//! flanneld with the alloc backend against a real etcd, in the root
//! namespace: leases and subnet.env only, no devices and no iptables.

mod common;

use std::net::SocketAddr;

use common::*;
use nix::sys::signal::Signal;

const PREFIX: &str = "/coreos.com/network";

struct Host {
    dir: tempfile::TempDir,
    notify: NotifySocket,
    healthz: SocketAddr,
    endpoint: String,
}

impl Host {
    fn new(etcd: &EtcdServer) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let notify = NotifySocket::bind(dir.path());
        Self {
            notify,
            healthz: SocketAddr::from(([127, 0, 0, 1], free_port())),
            endpoint: etcd.endpoint(),
            dir,
        }
    }

    fn subnet_file(&self) -> std::path::PathBuf {
        self.dir.path().join("run/flannel/subnet.env")
    }

    /// The walkthrough's flags plus what a test in the root namespace
    /// needs: a temporary subnet.env, loopback as the interface, and no
    /// iptables changes.
    fn args(&self) -> Vec<String> {
        vec![
            format!("-etcd-endpoints={}", self.endpoint),
            format!("-etcd-prefix={PREFIX}"),
            format!("-subnet-file={}", self.subnet_file().display()),
            "-iface=127.0.0.1".to_owned(),
            "-iptables-forward-rules=false".to_owned(),
            "-healthz-ip=127.0.0.1".to_owned(),
            format!("-healthz-port={}", self.healthz.port()),
        ]
    }

    fn spawn(&self, name: &str) -> Daemon {
        let socket = self.notify.path.to_str().unwrap().to_owned();
        Daemon::spawn(
            None,
            &self.args(),
            &[("NOTIFY_SOCKET", socket.as_str())],
            self.dir.path().join(format!("{name}.log")),
        )
    }

    fn wait_notify(&self, daemon: &Daemon, message: &str) {
        self.notify.wait_for(message, daemon);
    }

    fn wait_ready(&self, daemon: &Daemon) {
        self.notify.wait_for("READY=1", daemon);
    }
}

fn put_config(etcd: &EtcdServer, json: &str) {
    etcd.etcdctl(&["put", &format!("{PREFIX}/config"), json])
        .unwrap();
}

fn lease_keys(etcd: &EtcdServer) -> Vec<String> {
    etcd.etcdctl(&[
        "get",
        "--prefix",
        "--keys-only",
        &format!("{PREFIX}/subnets/"),
    ])
    .unwrap()
    .lines()
    .filter(|line| !line.is_empty())
    .map(str::to_owned)
    .collect()
}

#[test]
fn alloc_lease_subnet_env_ready_and_restart() {
    let etcd = start_etcd();
    let host = Host::new(&etcd);
    let mut daemon = host.spawn("first");

    // Without a config the daemon waits: alive, not ready.
    daemon.wait_log("waiting for the network config");
    assert_eq!(
        wait_for("/healthz", || http_status(host.healthz, "/healthz")),
        200
    );
    assert_eq!(http_status(host.healthz, "/readyz"), Some(503));
    assert!(!host.subnet_file().exists());

    put_config(
        &etcd,
        r#"{"Network":"172.16.0.0/16","Backend":{"Type":"alloc"}}"#,
    );
    host.wait_ready(&daemon);
    assert_eq!(http_status(host.healthz, "/readyz"), Some(200));

    let env = read_env_file(&host.subnet_file());
    assert_eq!(env["FLANNEL_NETWORK"], "172.16.0.0/16");
    assert_eq!(env["FLANNEL_IPMASQ"], "false");
    let lo_mtu = std::fs::read_to_string("/sys/class/net/lo/mtu").unwrap();
    assert_eq!(env["FLANNEL_MTU"], lo_mtu.trim(), "alloc adds no overhead");
    let subnet: ipnet::Ipv4Net = env["FLANNEL_SUBNET"].parse().unwrap();
    assert_eq!(subnet.prefix_len(), 24);
    assert_eq!(subnet.addr().octets()[3], 1, "first address of the lease");
    assert_ne!(
        subnet.trunc().to_string(),
        "172.16.0.0/24",
        "the first subnet is never leased"
    );

    let key = format!("{}-24", subnet.network());
    assert_eq!(lease_keys(&etcd), vec![format!("{PREFIX}/subnets/{key}")]);
    let value = etcd
        .etcdctl(&[
            "get",
            "--print-value-only",
            &format!("{PREFIX}/subnets/{key}"),
        ])
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(value.trim()).unwrap();
    assert_eq!(value["PublicIP"], "127.0.0.1");
    assert_eq!(value["BackendType"], "alloc");

    let status = daemon.stop(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    host.wait_notify(&daemon, "STOPPING=1");
    assert!(daemon.log().contains("stopped; the lease stays in etcd"));
    assert_eq!(
        lease_keys(&etcd),
        vec![format!("{PREFIX}/subnets/{key}")],
        "lease kept after SIGTERM"
    );

    // A restart keeps the subnet.
    let mut daemon = host.spawn("second");
    host.wait_ready(&daemon);
    assert_eq!(
        read_env_file(&host.subnet_file())["FLANNEL_SUBNET"],
        subnet.to_string()
    );
    assert_eq!(lease_keys(&etcd).len(), 1);

    let status = daemon.stop(Signal::SIGINT);
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
}

#[test]
fn previous_subnet_env_reused() {
    let etcd = start_etcd();
    put_config(
        &etcd,
        r#"{"Network":"10.7.0.0/16","Backend":{"Type":"alloc"}}"#,
    );
    let host = Host::new(&etcd);
    std::fs::create_dir_all(host.subnet_file().parent().unwrap()).unwrap();
    std::fs::write(
        host.subnet_file(),
        "FLANNEL_NETWORK=10.7.0.0/16\nFLANNEL_SUBNET=10.7.42.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n",
    )
    .unwrap();

    let mut daemon = host.spawn("daemon");
    host.wait_ready(&daemon);
    assert_eq!(
        read_env_file(&host.subnet_file())["FLANNEL_SUBNET"],
        "10.7.42.1/24"
    );
    assert_eq!(
        lease_keys(&etcd),
        vec![format!("{PREFIX}/subnets/10.7.42.0-24")]
    );
    assert_eq!(daemon.stop(Signal::SIGTERM).code(), Some(0));
}

#[test]
fn sigterm_while_waiting_for_config() {
    let etcd = start_etcd();
    let host = Host::new(&etcd);
    let mut daemon = host.spawn("daemon");
    daemon.wait_log("waiting for the network config");
    assert_eq!(
        daemon.stop(Signal::SIGTERM).code(),
        Some(0),
        "log:\n{}",
        daemon.log()
    );
    assert!(lease_keys(&etcd).is_empty());
}

#[test]
fn unsupported_backend_stops_daemon() {
    let etcd = start_etcd();
    put_config(
        &etcd,
        r#"{"Network":"172.16.0.0/16","Backend":{"Type":"aws-vpc"}}"#,
    );
    let host = Host::new(&etcd);
    let mut daemon = host.spawn("daemon");
    let status = daemon
        .wait_exit(DAEMON_TIMEOUT)
        .unwrap_or_else(|| panic!("flanneld kept running; log:\n{}", daemon.log()));
    assert_eq!(status.code(), Some(1));
    assert!(
        daemon
            .log()
            .contains(r#"backend type "aws-vpc" in the network config is not supported; supported types: udp, vxlan, host-gw, alloc"#),
        "log:\n{}",
        daemon.log()
    );
    assert!(
        lease_keys(&etcd).is_empty(),
        "no lease for an unsupported backend"
    );
}

#[test]
fn environment_configures_daemon() {
    let etcd = start_etcd();
    put_config(
        &etcd,
        r#"{"Network":"10.9.0.0/16","Backend":{"Type":"alloc"}}"#,
    );
    let host = Host::new(&etcd);
    let socket = host.notify.path.to_str().unwrap().to_owned();
    let subnet_file = host.subnet_file().display().to_string();
    let mut daemon = Daemon::spawn(
        None,
        &["-iface=127.0.0.1".to_owned()],
        &[
            ("NOTIFY_SOCKET", socket.as_str()),
            ("FLANNELD_ETCD_ENDPOINTS", host.endpoint.as_str()),
            ("FLANNELD_SUBNET_FILE", subnet_file.as_str()),
            ("FLANNELD_IPTABLES_FORWARD_RULES", "false"),
            ("FLANNELD_PUBLIC_IP", "192.0.2.10"),
        ],
        host.dir.path().join("daemon.log"),
    );
    host.wait_ready(&daemon);
    assert_eq!(
        read_env_file(&host.subnet_file())["FLANNEL_NETWORK"],
        "10.9.0.0/16"
    );
    let value = etcd
        .etcdctl(&[
            "get",
            "--prefix",
            "--print-value-only",
            &format!("{PREFIX}/subnets/"),
        ])
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(value.trim()).unwrap();
    assert_eq!(
        value["PublicIP"], "192.0.2.10",
        "-public-ip from the environment"
    );
    assert_eq!(daemon.stop(Signal::SIGTERM).code(), Some(0));
}

#[test]
fn subnet_change_rewrites_subnet_env() {
    let etcd = start_etcd();
    put_config(
        &etcd,
        r#"{"Network":"10.8.0.0/16","Backend":{"Type":"alloc"}}"#,
    );
    let host = Host::new(&etcd);
    let mut daemon = host.spawn("daemon");
    host.wait_ready(&daemon);
    let first = read_env_file(&host.subnet_file())["FLANNEL_SUBNET"].clone();
    let first_net: ipnet::Ipv4Net = first.parse().unwrap();

    // Another host takes the subnet: its lease replaces ours under the key.
    let key = format!("{PREFIX}/subnets/{}-24", first_net.network());
    etcd.etcdctl(&[
        "put",
        &key,
        r#"{"PublicIP":"192.0.2.99","BackendType":"alloc"}"#,
    ])
    .unwrap();

    let second = wait_for("subnet.env with a new subnet", || {
        let subnet = read_env_file(&host.subnet_file())["FLANNEL_SUBNET"].clone();
        (subnet != first).then_some(subnet)
    });
    daemon.wait_log("this host's subnet CHANGED");
    let second_net: ipnet::Ipv4Net = second.parse().unwrap();
    assert_eq!(second_net.prefix_len(), 24);
    assert_eq!(
        lease_keys(&etcd).len(),
        2,
        "the other host's lease and the new one"
    );
    assert_eq!(
        daemon.stop(Signal::SIGTERM).code(),
        Some(0),
        "log:\n{}",
        daemon.log()
    );
}

#[test]
fn waits_for_unreachable_etcd() {
    let mut etcd = start_etcd();
    put_config(
        &etcd,
        r#"{"Network":"10.6.0.0/16","Backend":{"Type":"alloc"}}"#,
    );
    etcd.kill();

    let host = Host::new(&etcd);
    let mut daemon = host.spawn("daemon");
    daemon.wait_log("reading the network config failed");
    assert_eq!(
        wait_for("/healthz", || http_status(host.healthz, "/healthz")),
        200
    );
    assert_eq!(http_status(host.healthz, "/readyz"), Some(503));

    etcd.restart().unwrap();
    host.wait_ready(&daemon);
    assert_eq!(http_status(host.healthz, "/readyz"), Some(200));
    assert_eq!(
        read_env_file(&host.subnet_file())["FLANNEL_NETWORK"],
        "10.6.0.0/16"
    );
    assert_eq!(daemon.stop(Signal::SIGTERM).code(), Some(0));
}

#[test]
fn config_change_while_running_is_logged() {
    let etcd = start_etcd();
    let host = Host::new(&etcd);
    put_config(
        &etcd,
        r#"{"Network":"172.16.0.0/16","Backend":{"Type":"alloc"}}"#,
    );
    let mut daemon = host.spawn("running");
    host.wait_ready(&daemon);

    // Writing the same config again is no change.
    put_config(
        &etcd,
        r#"{"Network":"172.16.0.0/16","Backend":{"Type":"alloc"}}"#,
    );
    put_config(
        &etcd,
        r#"{"Network":"172.17.0.0/16","Backend":{"Type":"alloc"}}"#,
    );
    daemon.wait_log("the network config changed in etcd");
    assert_eq!(
        daemon.log().matches("the network config changed").count(),
        1,
        "one warning per change:\n{}",
        daemon.log()
    );

    put_config(&etcd, "not json");
    daemon.wait_log("the network config in etcd is now invalid");
    etcd.etcdctl(&["del", &format!("{PREFIX}/config")]).unwrap();
    daemon.wait_log("the network config was deleted from etcd");
    put_config(
        &etcd,
        r#"{"Network":"172.16.0.0/16","Backend":{"Type":"alloc"}}"#,
    );
    daemon.wait_log("the network config in etcd matches the running config again");
    assert_eq!(
        http_status_ready(&host),
        Some(200),
        "still ready throughout"
    );

    let status = daemon.stop(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
}

fn http_status_ready(host: &Host) -> Option<u16> {
    http_status(host.healthz, "/readyz")
}
