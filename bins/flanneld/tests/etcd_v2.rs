//! flanneld with `-etcd-api=v2` against a real etcd serving the v2 API, with
//! the config and a peer lease written by `etcdctl` the way flannel 0.5
//! operators and daemons write them. The alloc backend keeps the test in
//! the root namespace without devices or iptables changes.

mod common;

use common::*;
use nix::sys::signal::Signal;
use subnet_registry::testing::EtcdServer;

const PREFIX: &str = "/coreos.com/network";

fn start_etcd_v2() -> EtcdServer {
    EtcdServer::start_v2().unwrap_or_else(|err| panic!("{err}"))
}

fn spawn(etcd: &EtcdServer, dir: &std::path::Path, notify: &NotifySocket, name: &str) -> Daemon {
    spawn_with_api(etcd, dir, notify, name, "v2")
}

fn spawn_with_api(
    etcd: &EtcdServer,
    dir: &std::path::Path,
    notify: &NotifySocket,
    name: &str,
    api: &str,
) -> Daemon {
    let args = vec![
        format!("-etcd-api={api}"),
        format!("-etcd-endpoints={}", etcd.endpoint()),
        format!("-etcd-prefix={PREFIX}"),
        format!("-subnet-file={}", dir.join("subnet.env").display()),
        "-iface=127.0.0.1".to_owned(),
        "-iptables-forward-rules=false".to_owned(),
    ];
    let socket = notify.path.to_str().unwrap().to_owned();
    Daemon::spawn(
        None,
        &args,
        &[("NOTIFY_SOCKET", socket.as_str())],
        dir.join(format!("{name}.log")),
    )
}

#[test]
fn v2_keyspace_shared_with_old_daemons() {
    let etcd = start_etcd_v2();
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifySocket::bind(dir.path());

    // An old daemon's lease, in the 0.5 form, and the config as the
    // walkthrough writes it (with alloc, so that no device is created).
    etcd.etcdctl_v2(&[
        "set",
        "--ttl",
        "600",
        &format!("{PREFIX}/subnets/172.16.37.0-24"),
        r#"{"PublicIP":"10.25.31.37"}"#,
    ])
    .unwrap();
    let mut daemon = spawn(&etcd, dir.path(), &notify, "first");
    daemon.wait_log("waiting for the network config");
    etcd.etcdctl_v2(&[
        "set",
        &format!("{PREFIX}/config"),
        r#"{"Network":"172.16.0.0/16","Backend":{"Type":"alloc"}}"#,
    ])
    .unwrap();
    notify.wait_for("READY=1", &daemon);
    daemon.wait_log("peer added");
    assert!(
        daemon.log().contains("172.16.37.0-24"),
        "the old daemon's lease is a peer:\n{}",
        daemon.log()
    );

    let env = read_env_file(&dir.path().join("subnet.env"));
    assert_eq!(env["FLANNEL_NETWORK"], "172.16.0.0/16");
    let subnet: ipnet::Ipv4Net = env["FLANNEL_SUBNET"].parse().unwrap();
    let key = format!("{}-24", subnet.network());
    assert_ne!(key, "172.16.37.0-24", "the old daemon's subnet is taken");

    // The lease is in the v2 keyspace, where `etcdctl ls` of the
    // walkthrough finds it, with a 24-hour TTL.
    let listing = etcd
        .etcdctl_v2(&["ls", &format!("{PREFIX}/subnets")])
        .unwrap();
    assert!(
        listing.contains(&format!("{PREFIX}/subnets/{key}")),
        "{listing}"
    );
    let value = etcd
        .etcdctl_v2(&["get", &format!("{PREFIX}/subnets/{key}")])
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(value.trim()).unwrap();
    assert_eq!(value["PublicIP"], "127.0.0.1");
    assert_eq!(value["BackendType"], "alloc");
    let v3 = etcd
        .etcdctl(&["get", "--prefix", "--keys-only", PREFIX])
        .unwrap();
    assert!(v3.trim().is_empty(), "nothing in the v3 keyspace: {v3}");

    // A restart keeps the subnet.
    let status = daemon.stop(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    let mut daemon = spawn(&etcd, dir.path(), &notify, "second");
    notify.wait_for("READY=1", &daemon);
    let env = read_env_file(&dir.path().join("subnet.env"));
    assert_eq!(env["FLANNEL_SUBNET"], subnet.to_string());
    let status = daemon.stop(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
}

#[test]
fn v2_api_not_served_is_reported() {
    // A v3-only etcd returns 404 for the v2 API, and the daemon logs the fix.
    let etcd = start_etcd();
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let mut daemon = spawn(&etcd, dir.path(), &notify, "v3-only");
    daemon.wait_log("--enable-v2=true");
    let status = daemon.stop(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
}

#[test]
fn v3_daemon_points_at_v2_config() {
    // The config exists only where flannel 0.5 writes it.
    let etcd = start_etcd_v2();
    etcd.etcdctl_v2(&[
        "set",
        &format!("{PREFIX}/config"),
        r#"{"Network":"172.16.0.0/16","Backend":{"Type":"alloc"}}"#,
    ])
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let mut daemon = spawn_with_api(&etcd, dir.path(), &notify, "v3", "v3");
    daemon.wait_log("start flanneld with -etcd-api=v2 to join that network");
    assert!(!dir.path().join("subnet.env").exists());
    let status = daemon.stop(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
}
