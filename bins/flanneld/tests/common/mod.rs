//! Helpers for running the flanneld binary against a real etcd.

#![allow(dead_code)]

#[path = "../../src/testing.rs"]
mod testing;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub use subnet_registry::testing::EtcdServer;
pub use testing::TestNetns;

/// How long a daemon may take to become ready or to exit.
pub const DAEMON_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts an etcd test server, failing with the install command if etcd is
/// missing.
pub fn start_etcd() -> EtcdServer {
    EtcdServer::start().unwrap_or_else(|err| panic!("{err}"))
}

/// Returns a free loopback TCP port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A unix datagram socket standing in for systemd's notify socket.
pub struct NotifySocket {
    pub path: PathBuf,
    socket: UnixDatagram,
}

impl NotifySocket {
    pub fn bind(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        Self { path, socket }
    }

    /// Waits for `message`, skipping other messages; panics with the
    /// daemon's log on timeout.
    pub fn wait_for(&self, message: &str, daemon: &Daemon) {
        loop {
            match self.receive(DAEMON_TIMEOUT) {
                Some(received) if received == message => return,
                Some(_) => continue,
                None => panic!(
                    "no {message} within {DAEMON_TIMEOUT:?}; log:\n{}",
                    daemon.log()
                ),
            }
        }
    }

    /// Waits for one datagram and returns it.
    pub fn receive(&self, timeout: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(timeout)).unwrap();
        let mut buffer = [0u8; 1024];
        let len = self.socket.recv(&mut buffer).ok()?;
        Some(String::from_utf8_lossy(&buffer[..len]).into_owned())
    }
}

/// A flanneld process, killed on drop. Its stderr goes to a file that is
/// printed when a wait fails.
pub struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    /// Runs flanneld with `args`, optionally inside `netns`, with the given
    /// extra environment.
    pub fn spawn(
        netns: Option<&TestNetns>,
        args: &[String],
        env: &[(&str, &str)],
        log: PathBuf,
    ) -> Self {
        let binary = env!("CARGO_BIN_EXE_flanneld");
        let mut command = match netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", &netns.name, binary]);
                command
            }
            None => Command::new(binary),
        };
        let log_file = std::fs::File::create(&log).unwrap();
        command
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .env("RUST_LOG", "debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        let child = command.spawn().expect("starting flanneld failed");
        Self {
            child: Some(child),
            log,
        }
    }

    /// Returns the daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` and waits for the exit.
    pub fn stop(&mut self, signal: Signal) -> ExitStatus {
        let child = self.child.as_mut().expect("daemon still running");
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        let status = self.wait_exit(DAEMON_TIMEOUT);
        status
            .unwrap_or_else(|| panic!("flanneld did not exit after {signal}; log:\n{}", self.log()))
    }

    /// Waits until the process exits; `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Waits until the log contains `text`.
    pub fn wait_log(&self, text: &str) {
        let started = Instant::now();
        while started.elapsed() < DAEMON_TIMEOUT {
            if self.log().contains(text) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("flanneld never logged {text:?}; log:\n{}", self.log());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends `GET path` and returns the status code.
pub fn http_status(address: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// Retries `probe` until it returns `Some`, or panics with `what`.
pub fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            started.elapsed() < DAEMON_TIMEOUT,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An etcd server inside a network namespace, listening on the
/// namespace's own addresses. Killed and deleted on drop.
pub struct NetnsEtcd {
    child: Child,
    _data: tempfile::TempDir,
    pub endpoint: String,
}

impl NetnsEtcd {
    /// Starts etcd in `netns` with client URL `http://{address}:2379`.
    pub fn start(netns: &TestNetns, address: &str) -> Self {
        let data = tempfile::Builder::new()
            .prefix("etcd-netns-")
            .tempdir()
            .unwrap();
        let client = format!("http://{address}:2379");
        let peer = format!("http://{address}:2380");
        let log = std::fs::File::create(data.path().join("etcd.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &netns.name, "etcd", "--name=test"])
            .arg(format!("--data-dir={}", data.path().join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("running etcd in a namespace failed: apt-get install etcd-server iproute2");
        let etcd = Self {
            child,
            _data: data,
            endpoint: client,
        };
        wait_for("etcd in the namespace to answer", || {
            etcd.etcdctl(netns, &["endpoint", "health"]).ok()
        });
        etcd
    }

    /// Runs etcdctl (API v3) in `netns` against this server.
    pub fn etcdctl(&self, netns: &TestNetns, args: &[&str]) -> Result<String, String> {
        let output = Command::new("ip")
            .args(["netns", "exec", &netns.name, "etcdctl"])
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint))
            .args(args)
            .output()
            .map_err(|err| {
                format!("running etcdctl failed: {err} (apt-get install etcd-client)")
            })?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

impl Drop for NetnsEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `KEY=value` lines.
pub fn read_env_file(path: &Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("reading {} failed: {err}", path.display()))
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}
