//! The etcd server on the etcd host, serving the API that holds the
//! network.

use std::path::Path;

use super::daemon::Daemon;
use super::netns::Namespace;
use super::ETCD_ENDPOINT;

/// The etcd API that holds the network configuration and the leases.
///
/// etcd keeps the two keyspaces apart: a key written with one API is
/// invisible to the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdApi {
    /// The v3 API (`etcdctl put`), as current flannel releases use it.
    V3,
    /// The v2 keys API (`etcdctl set`, `etcdctl ls`), as flannel 0.5 uses
    /// it. etcd 3.4 serves it only when started with `--enable-v2=true`.
    V2,
}

/// Starts etcd on the etcd host, listening on the host's address (for the
/// flannel hosts) and on its loopback (for etcdctl's default endpoint).
/// With [`EtcdApi::V2`], etcd also serves the v2 API.
pub fn start_etcd(namespace: &Namespace, dir: &Path, api: EtcdApi) -> Daemon {
    let mut command = namespace.command("etcd");
    command
        .args(["--name", "walkthrough", "--data-dir"])
        .arg(dir.join("etcd-data"))
        .args([
            "--listen-client-urls",
            "http://10.25.31.105:2379,http://127.0.0.1:2379",
            "--advertise-client-urls",
            ETCD_ENDPOINT,
            "--listen-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-cluster",
            "walkthrough=http://127.0.0.1:2380",
            "--logger",
            "zap",
            "--log-level",
            "warn",
        ]);
    if api == EtcdApi::V2 {
        command.arg("--enable-v2=true");
    }
    Daemon::spawn("etcd on 10.25.31.105", command, &dir.join("etcd.log"))
}
