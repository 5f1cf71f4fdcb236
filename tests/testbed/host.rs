//! A flannel host: a namespace wired to the switch, its flanneld, its
//! files (subnet.env, Docker options, logs) and its `docker0` bridge.

use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use super::command::run;
use super::daemon::Daemon;
use super::netns::Namespace;
use super::subnet_env::{Ipv4Cidr, SubnetEnv};
use super::{ETCD_ENDPOINT, ETCD_PREFIX, GATEWAY, HOST_PREFIX_LEN, START_TIMEOUT};

/// See the module docs.
#[derive(Debug)]
pub struct Host {
    // Dropped first, so flanneld stops before its namespace goes.
    flanneld: Option<Daemon>,
    flanneld_starts: u32,
    addr: Ipv4Addr,
    namespace: Namespace,
    dir: PathBuf,
    bridge: Option<Ipv4Cidr>,
}

impl Host {
    pub(super) fn new(addr: Ipv4Addr, namespace: Namespace, dir: PathBuf) -> Host {
        Host {
            flanneld: None,
            flanneld_starts: 0,
            addr,
            namespace,
            dir,
            bridge: None,
        }
    }

    /// Returns the host's address on the shared segment (flanneld's PublicIP).
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// Returns the host's network namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// Returns the host's folder for subnet.env, Docker options and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Returns the path given to flanneld as `-subnet-file`.
    pub fn subnet_env_path(&self) -> PathBuf {
        self.dir.join("subnet.env")
    }

    /// Returns the path given to mk-docker-opts as `-d`.
    pub fn docker_opts_path(&self) -> PathBuf {
        self.dir.join("docker_opts.env")
    }

    /// Returns the address of `docker0`. Panics if `docker0` does not exist yet.
    pub fn bridge_addr(&self) -> Ipv4Addr {
        self.bridge
            .unwrap_or_else(|| panic!("docker0 on {} has not been created yet", self.addr))
            .addr
    }

    /// Returns the process id of the running flanneld. Panics if none was
    /// started.
    pub fn flanneld_pid(&self) -> u32 {
        self.flanneld
            .as_ref()
            .unwrap_or_else(|| panic!("flanneld on {} was not started", self.addr))
            .pid()
    }

    /// Returns the walkthrough's flags plus `-subnet-file` in the host's
    /// folder.
    pub fn walkthrough_flags(&self) -> Vec<String> {
        vec![
            format!("-etcd-endpoints={ETCD_ENDPOINT}"),
            format!("-etcd-prefix={ETCD_PREFIX}"),
            format!("-subnet-file={}", self.subnet_env_path().display()),
        ]
    }

    pub(super) fn start_flanneld(&mut self, binary: &Path, args: &[String], env: &[(&str, &str)]) {
        assert!(
            self.flanneld.is_none(),
            "flanneld on {} is already running",
            self.addr
        );
        self.flanneld_starts += 1;
        let mut command = self.namespace.command(binary);
        command.args(args);
        for (name, value) in env {
            command.env(name, value);
        }

        // Each start gets a log of its own so that a restart's log is
        // readable on its own.
        let log = self
            .dir
            .join(format!("flanneld.{}.log", self.flanneld_starts));
        self.flanneld = Some(Daemon::spawn(
            format!("flanneld on {}", self.addr),
            command,
            &log,
        ));
    }

    pub(super) fn stop_flanneld(&mut self) -> ExitStatus {
        let mut daemon = self
            .flanneld
            .take()
            .unwrap_or_else(|| panic!("flanneld on {} was not started", self.addr));
        let (status, killed) = daemon.terminate();
        assert!(
            !killed,
            "flanneld on {} did not exit within 5 s of SIGTERM\nlast log lines:\n{}",
            self.addr,
            daemon.log_tail(30)
        );
        status
    }

    pub(super) fn assert_flanneld_running(&mut self, context: &str) {
        let addr = self.addr;
        self.flanneld
            .as_mut()
            .unwrap_or_else(|| panic!("flanneld on {addr} was not started"))
            .assert_running(context);
    }

    /// Returns the whole log of the latest flanneld start and its exit
    /// status if it has exited. Panics if none was started.
    pub(super) fn flanneld_log(&mut self) -> (String, Option<ExitStatus>) {
        let addr = self.addr;
        let daemon = self
            .flanneld
            .as_mut()
            .unwrap_or_else(|| panic!("flanneld on {addr} was not started"));
        let exit = daemon.exit_status();
        let log = self
            .dir
            .join(format!("flanneld.{}.log", self.flanneld_starts));
        (std::fs::read_to_string(log).unwrap_or_default(), exit)
    }

    /// Returns the inode of the current subnet.env file, if there is one.
    pub(super) fn subnet_env_stamp(&self) -> Option<u64> {
        std::fs::metadata(self.subnet_env_path())
            .ok()
            .map(|metadata| metadata.ino())
    }

    /// Waits for a subnet.env other than the file identified by
    /// `previous`. flanneld replaces the file by renaming a new one over
    /// it, so a new inode means a new write.
    pub(super) fn wait_for_subnet_env(&mut self, previous: Option<u64>) -> SubnetEnv {
        let path = self.subnet_env_path();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.assert_flanneld_running("before writing subnet.env");
            let stamp = self.subnet_env_stamp();
            if stamp.is_some() && stamp != previous {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                return SubnetEnv::parse(&text).unwrap_or_else(|error| {
                    panic!("{} is invalid: {error}\ncontents:\n{text}", path.display())
                });
            }
            assert!(
                Instant::now() < deadline,
                "flanneld on {} wrote no new {} within {START_TIMEOUT:?}\nlast log lines:\n{}",
                self.addr,
                path.display(),
                self.flanneld
                    .as_ref()
                    .map(|d| d.log_tail(30))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(super) fn mk_docker_opts(&self, binary: &Path, args: &[&str]) -> String {
        let docker_opts = self.docker_opts_path();
        run(self
            .namespace
            .command(binary)
            .arg("-f")
            .arg(self.subnet_env_path())
            .arg("-d")
            .arg(&docker_opts)
            .args(args));
        std::fs::read_to_string(&docker_opts).unwrap_or_else(|error| {
            panic!(
                "mk-docker-opts on {} wrote no {}: {error}",
                self.addr,
                docker_opts.display()
            )
        })
    }

    pub(super) fn create_docker0(&mut self, subnet: Ipv4Cidr) {
        let address = subnet.to_string();
        self.namespace
            .ip(&["link", "add", "docker0", "type", "bridge"]);
        self.namespace
            .ip(&["addr", "add", &address, "dev", "docker0"]);
        self.namespace.ip(&["link", "set", "dev", "docker0", "up"]);
        self.bridge = Some(subnet);
    }

    pub(super) fn wait_for_tcp_listener(&self, port: u16, server: &mut Daemon) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let filter = format!("sport = :{port}");
            let listening = run(self.namespace.command("ss").args(["-Hltn", &filter]));
            if !listening.trim().is_empty() {
                return;
            }
            server.assert_running("before listening");
            assert!(
                Instant::now() < deadline,
                "{} does not listen on port {port} after 10 s",
                server.label()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Formats the last lines of each flanneld log, for a failing test's
    /// output.
    pub(super) fn log_report(&self) -> String {
        let mut report = String::new();
        for start in 1..=self.flanneld_starts {
            let log = self.dir.join(format!("flanneld.{start}.log"));
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = if lines.is_empty() {
                "(empty log)".to_string()
            } else {
                lines[lines.len().saturating_sub(20)..].join("\n")
            };
            report.push_str(&format!(
                "flanneld on {} (start {start}):\n{tail}\n",
                self.addr
            ));
        }
        report
    }
}

/// Wires `namespace` to the switch's bridge with a veth pair (`eth0` in
/// the host, `p<last octet>` on the switch) and addresses it.
///
/// It also adds a default route via [`GATEWAY`], so that flanneld finds its
/// interface the way it does on a real host. No namespace has that
/// address, so overlay traffic that misses the overlay device fails
/// instead of reaching the other host directly over the switch.
pub(super) fn wire_to_switch(namespace: &Namespace, switch: &Namespace, addr: Ipv4Addr) {
    let port = format!("p{}", addr.octets()[3]);
    switch.ip(&[
        "link",
        "add",
        &port,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        namespace.name(),
    ]);
    switch.ip(&["link", "set", "dev", &port, "master", "br0", "up"]);

    let address = format!("{addr}/{HOST_PREFIX_LEN}");
    namespace.ip(&["addr", "add", &address, "dev", "eth0"]);
    namespace.ip(&["link", "set", "dev", "eth0", "up"]);
    let gateway = GATEWAY.to_string();
    namespace.ip(&["route", "add", "default", "via", &gateway, "dev", "eth0"]);
}
