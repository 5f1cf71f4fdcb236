//! The walkthrough's setup rebuilt on one machine: hosts are network
//! namespaces joined by a private bridge, one host runs etcd, the others
//! run `flanneld`, `mk-docker-opts` and a `docker0` bridge.
//!
//! The bridge sits in a "switch" namespace of its own and every host is
//! wired to it with a veth pair, so the root namespace gets no address,
//! route, bridge or firewall rule. Every testbed has its own namespace
//! names (process id plus a counter) and temporary folder. Dropping it
//! stops every process and deletes both, also when the test panics.

mod command;
mod daemon;
mod etcd;
mod host;
mod netns;
mod subnet_env;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use command::Binaries;
use command::{output, run};
pub use daemon::Daemon;
pub use etcd::EtcdApi;
pub use host::Host;
use netns::Namespace;
pub use subnet_env::{Ipv4Cidr, SubnetEnv};

/// Address of the etcd host.
pub const ETCD_HOST: Ipv4Addr = Ipv4Addr::new(10, 25, 31, 105);
/// Address of the first flannel host.
pub const HOST_61: Ipv4Addr = Ipv4Addr::new(10, 25, 31, 61);
/// Address of the second flannel host.
pub const HOST_37: Ipv4Addr = Ipv4Addr::new(10, 25, 31, 37);
/// Address of a third flannel host that joins later.
pub const HOST_38: Ipv4Addr = Ipv4Addr::new(10, 25, 31, 38);
/// Default gateway of every host. No namespace has this address.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 25, 31, 1);
/// Prefix length of the hosts' shared segment.
pub const HOST_PREFIX_LEN: u8 = 24;

/// The etcd endpoint given to flanneld, as in the walkthrough's unit file.
pub const ETCD_ENDPOINT: &str = "http://10.25.31.105:2379";
/// The etcd key prefix given to flanneld.
pub const ETCD_PREFIX: &str = "/coreos.com/network";
/// The network configuration the walkthrough writes (udp backend).
pub const WALKTHROUGH_CONFIG: &str = r#"{"Network":"172.16.0.0/16"}"#;

/// How long etcd and flanneld may take to come up, and peers to learn of
/// each other. Generous because tests build several testbeds in parallel
/// on a small machine.
pub const START_TIMEOUT: Duration = Duration::from_secs(45);

/// Start of the testbeds' temporary folder names, followed by the pid.
const TEMP_DIR_PREFIX: &str = "flannel-testbed-";

static TESTBED_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Handle to a flannel host of a [`Testbed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostId(usize);

/// One run of the walkthrough's setup. See the module docs.
#[derive(Debug)]
pub struct Testbed {
    // Fields drop in this order: flannel hosts (their daemons first), then
    // etcd, then the etcd host and the switch, then the folder.
    hosts: Vec<Host>,
    etcd: Daemon,
    etcd_host: Namespace,
    switch: Namespace,
    dir: TempDir,
    name_prefix: String,
    binaries: Binaries,
    etcd_api: EtcdApi,
}

impl Testbed {
    /// Builds the switch and the etcd host and starts etcd, but writes no
    /// network configuration. flanneld uses etcd's v3 API.
    pub fn start() -> Testbed {
        Testbed::start_with_api(EtcdApi::V3)
    }

    /// Like [`Testbed::start`], but etcd also serves the v2 keys API and
    /// every flanneld gets `-etcd-api=v2`, as on a network shared with
    /// flannel 0.5 hosts.
    pub fn start_v2() -> Testbed {
        Testbed::start_with_api(EtcdApi::V2)
    }

    fn start_with_api(etcd_api: EtcdApi) -> Testbed {
        command::require_root_and_tools();
        let binaries = Binaries::locate();
        netns::remove_orphans(TEMP_DIR_PREFIX);

        let pid = std::process::id();
        let counter = TESTBED_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name_prefix = format!("{}{pid}-{counter}", netns::NAME_PREFIX);
        let dir = TempDir::create(&format!("{TEMP_DIR_PREFIX}{pid}-{counter}"));

        let switch = Namespace::create(format!("{name_prefix}-sw"));
        switch.ip(&["link", "add", "br0", "type", "bridge"]);
        switch.ip(&["link", "set", "dev", "br0", "up"]);

        let etcd_host = Namespace::create(format!("{name_prefix}-etcd"));
        host::wire_to_switch(&etcd_host, &switch, ETCD_HOST);
        let etcd = etcd::start_etcd(&etcd_host, dir.path(), etcd_api);

        let mut testbed = Testbed {
            hosts: Vec::new(),
            etcd,
            etcd_host,
            switch,
            dir,
            name_prefix,
            binaries,
            etcd_api,
        };
        testbed.wait_for_etcd();
        testbed
    }

    /// Builds the switch, the etcd host and etcd, and writes the
    /// walkthrough's network configuration.
    pub fn with_config() -> Testbed {
        let testbed = Testbed::start();
        testbed.put_config(WALKTHROUGH_CONFIG);
        testbed
    }

    /// Adds a flannel host with address `addr` but starts nothing on it.
    pub fn add_host(&mut self, addr: Ipv4Addr) -> HostId {
        let id = HostId(self.hosts.len());
        let octet = addr.octets()[3];
        let namespace = Namespace::create(format!("{}-h{octet}", self.name_prefix));
        host::wire_to_switch(&namespace, &self.switch, addr);

        let dir = self.dir.path().join(format!("host-{addr}"));
        std::fs::create_dir(&dir)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", dir.display()));
        self.hosts.push(Host::new(addr, namespace, dir));
        id
    }

    /// Adds a host and sets it up as the walkthrough does: flanneld,
    /// then mk-docker-opts, then `docker0` addressed with FLANNEL_SUBNET.
    pub fn bring_up(&mut self, addr: Ipv4Addr) -> HostId {
        let id = self.add_host(addr);
        self.start_flanneld(id);
        let env = self.wait_for_subnet_env(id);
        self.mk_docker_opts(id, &["-i"]);
        self.create_docker0(id, env.subnet);
        id
    }

    /// Returns the flannel host behind `id`.
    pub fn host(&self, id: HostId) -> &Host {
        &self.hosts[id.0]
    }

    fn host_mut(&mut self, id: HostId) -> &mut Host {
        &mut self.hosts[id.0]
    }

    /// Runs etcdctl (API v3) on the etcd host, as the walkthrough's
    /// operator does on 10.25.31.105, and returns its output.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        run(&mut self.etcdctl_command(args))
    }

    fn etcdctl_command(&self, args: &[&str]) -> Command {
        let mut command = self.etcd_host.command("etcdctl");
        command
            .env("ETCDCTL_API", "3")
            .args(["--dial-timeout=2s", "--command-timeout=5s"])
            .args(args);
        command
    }

    /// Runs etcdctl with the v2 API (`ETCDCTL_API=2`) on the etcd host, as
    /// the walkthrough's operator does for flannel 0.5, and returns its
    /// output. Needs a testbed from [`Testbed::start_v2`].
    pub fn etcdctl_v2(&self, args: &[&str]) -> String {
        let mut command = self.etcd_host.command("etcdctl");
        command
            .env("ETCDCTL_API", "2")
            .args(["--timeout=2s", "--total-timeout=5s"])
            .args(args);
        run(&mut command)
    }

    /// Lists the leases in the v2 keyspace as the walkthrough does, with
    /// `etcdctl ls <prefix>/subnets` and `etcdctl get` of each key, as
    /// (key, value) pairs sorted by key.
    pub fn leases_v2(&self) -> Vec<(String, String)> {
        let listed = self.etcdctl_v2(&["ls", &format!("{ETCD_PREFIX}/subnets")]);
        let mut leases: Vec<(String, String)> = listed
            .lines()
            .filter(|line| !line.is_empty())
            .map(|key| {
                let value = self.etcdctl_v2(&["get", key]);
                (key.to_string(), value.trim_end().to_string())
            })
            .collect();
        leases.sort_unstable();
        leases
    }

    /// Returns the time to live in seconds of v2 key `key`, or `None` if
    /// the key has no TTL (a reservation).
    pub fn ttl_v2(&self, key: &str) -> Option<u64> {
        let extended = self.etcdctl_v2(&["-o", "extended", "get", key]);
        let ttl = extended
            .lines()
            .find_map(|line| line.strip_prefix("TTL: "))
            .unwrap_or_else(|| panic!("etcdctl -o extended get {key} printed no TTL: {extended}"));
        let ttl: i64 = ttl
            .trim()
            .parse()
            .unwrap_or_else(|error| panic!("TTL {ttl:?} of {key} is not a number: {error}"));
        // etcdctl prints 0 for a key without a TTL.
        u64::try_from(ttl).ok().filter(|&seconds| seconds > 0)
    }

    /// Writes the network configuration to `<prefix>/config`.
    pub fn put_config(&self, json: &str) {
        self.etcdctl(&["put", &format!("{ETCD_PREFIX}/config"), json]);
    }

    /// Lists the leases under `<prefix>/subnets/` with etcdctl, as
    /// (key, value) pairs in etcdctl's order.
    pub fn leases(&self) -> Vec<(String, String)> {
        let listed = self.etcdctl(&["get", "--prefix", &format!("{ETCD_PREFIX}/subnets")]);
        let lines: Vec<&str> = listed.lines().filter(|line| !line.is_empty()).collect();
        lines
            .chunks(2)
            .map(|pair| (pair[0].to_string(), pair.get(1).unwrap_or(&"").to_string()))
            .collect()
    }

    /// Starts flanneld on host `id` with the walkthrough's flags and a
    /// subnet file in the host's folder, plus `-etcd-api=v2` on a testbed
    /// from [`Testbed::start_v2`].
    pub fn start_flanneld(&mut self, id: HostId) {
        let mut flags = self.host(id).walkthrough_flags();
        if self.etcd_api == EtcdApi::V2 {
            flags.push("-etcd-api=v2".to_string());
        }
        self.start_flanneld_with(id, &flags, &[]);
    }

    /// Starts flanneld on host `id` with exactly `args` and with `env`
    /// added to its environment.
    pub fn start_flanneld_with(&mut self, id: HostId, args: &[String], env: &[(&str, &str)]) {
        let flanneld = self.binaries.flanneld.clone();
        self.host_mut(id).start_flanneld(&flanneld, args, env);
    }

    /// Stops flanneld on host `id` with SIGTERM and returns its exit
    /// status; panics if it needed SIGKILL.
    pub fn stop_flanneld(&mut self, id: HostId) -> std::process::ExitStatus {
        self.host_mut(id).stop_flanneld()
    }

    /// Waits until host `id`'s flanneld has written a complete subnet.env
    /// and returns it. Panics with flanneld's log if it exits first.
    pub fn wait_for_subnet_env(&mut self, id: HostId) -> SubnetEnv {
        self.host_mut(id).wait_for_subnet_env(None)
    }

    /// Waits until host `id`'s subnet.env is replaced by a new file
    /// (after a restart), and returns it.
    pub fn wait_for_rewritten_subnet_env(&mut self, id: HostId) -> SubnetEnv {
        let previous = self.host(id).subnet_env_stamp();
        self.host_mut(id).wait_for_subnet_env(previous)
    }

    /// Runs mk-docker-opts on host `id` with `-f` and `-d` set to the
    /// host's files plus `args`, and returns the Docker options file.
    pub fn mk_docker_opts(&self, id: HostId, args: &[&str]) -> String {
        self.host(id)
            .mk_docker_opts(&self.binaries.mk_docker_opts, args)
    }

    /// Creates the `docker0` bridge on host `id` and gives it `subnet`
    /// (FLANNEL_SUBNET), as the walkthrough does with `ip addr add`.
    pub fn create_docker0(&mut self, id: HostId, subnet: Ipv4Cidr) {
        self.host_mut(id).create_docker0(subnet);
    }

    /// Pings host `to`'s `docker0` address once from host `from`'s
    /// `docker0` address. Returns whether a reply came and ping's output.
    pub fn ping(&self, from: HostId, to: HostId) -> (bool, String) {
        self.ping_addr(from, self.host(to).bridge_addr())
    }

    /// Pings `target` once from host `from`'s `docker0` address. Returns
    /// whether a reply came and ping's output.
    pub fn ping_addr(&self, from: HostId, target: Ipv4Addr) -> (bool, String) {
        let source = self.host(from).bridge_addr();
        let result = output(
            self.host(from)
                .namespace()
                .command("ping")
                .args(["-n", "-c", "1", "-W", "1", "-I"])
                .arg(source.to_string())
                .arg(target.to_string()),
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
        (result.status.success(), text)
    }

    /// Pings from bridge to bridge until a reply comes, panicking after
    /// [`START_TIMEOUT`] with the last ping output.
    pub fn wait_until_reachable(&mut self, from: HostId, to: HostId) {
        self.ping_until(from, to, "cannot reach", |replied, _| replied);
    }

    /// Pings until the sending host reports the target unreachable with
    /// an ICMP error, and returns that ping output. Panics if that does not
    /// happen within [`START_TIMEOUT`].
    pub fn wait_until_unreachable(&mut self, from: HostId, to: HostId) -> String {
        self.ping_until(from, to, "still forwards to", |replied, text| {
            !replied && text.contains("Unreachable")
        })
    }

    /// Pings every half second until `done(replied, output)` is true and
    /// returns that ping's output. Panics after [`START_TIMEOUT`] with
    /// `failure` and the last output, or as soon as the sender's flanneld
    /// exits.
    fn ping_until(
        &mut self,
        from: HostId,
        to: HostId,
        failure: &str,
        done: impl Fn(bool, &str) -> bool,
    ) -> String {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let (replied, text) = self.ping(from, to);
            if done(replied, &text) {
                return text;
            }
            self.assert_flanneld_running(from, "while pinging across the overlay");
            assert!(
                Instant::now() < deadline,
                "{} {failure} {} after {START_TIMEOUT:?}; last ping:\n{text}",
                self.describe_bridge(from),
                self.describe_bridge(to),
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Runs iperf3 from host `from`'s bridge address to host `to`'s for
    /// `seconds` and returns the client's report.
    pub fn iperf3(&self, from: HostId, to: HostId, seconds: u32) -> String {
        let source = self.host(from).bridge_addr().to_string();
        let target = self.host(to).bridge_addr().to_string();
        let log = self.host(to).dir().join("iperf3-server.log");

        let mut server_command = self.host(to).namespace().command("iperf3");
        server_command.args(["-s", "-1", "-B", &target]);
        let mut server = Daemon::spawn(format!("iperf3 server on {target}"), server_command, &log);
        self.host(to).wait_for_tcp_listener(5201, &mut server);

        let report = run(self.host(from).namespace().command("iperf3").args([
            "-c",
            &target,
            "-B",
            &source,
            "-t",
            &seconds.to_string(),
            "-f",
            "m",
        ]));
        server.wait_timeout(Duration::from_secs(5));
        report
    }

    /// Runs `program` with `args` on host `id` and returns its output;
    /// panics if it fails.
    pub fn run_on(&self, id: HostId, program: &str, args: &[&str]) -> String {
        run(self.host(id).namespace().command(program).args(args))
    }

    /// Panics with flanneld's log if it no longer runs on host `id`.
    pub fn assert_flanneld_running(&mut self, id: HostId, context: &str) {
        self.host_mut(id).assert_flanneld_running(context);
    }

    /// Returns the whole log of host `id`'s latest flanneld and its exit
    /// status if it has exited.
    pub fn flanneld_log(&mut self, id: HostId) -> (String, Option<std::process::ExitStatus>) {
        self.host_mut(id).flanneld_log()
    }

    /// Returns the process id of host `id`'s running flanneld.
    pub fn flanneld_pid(&self, id: HostId) -> u32 {
        self.host(id).flanneld_pid()
    }

    /// Returns the names of this testbed's network namespaces.
    pub fn namespace_names(&self) -> Vec<String> {
        let mut names = vec![
            self.switch.name().to_string(),
            self.etcd_host.name().to_string(),
        ];
        names.extend(
            self.hosts
                .iter()
                .map(|host| host.namespace().name().to_string()),
        );
        names
    }

    /// Returns the testbed's temporary folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn describe_bridge(&self, id: HostId) -> String {
        let host = self.host(id);
        format!("docker0 {} on {}", host.bridge_addr(), host.addr())
    }

    fn wait_for_etcd(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let health = output(&mut self.etcdctl_command(&[
                "--endpoints",
                ETCD_ENDPOINT,
                "endpoint",
                "health",
            ]));
            if health.status.success() {
                return;
            }
            self.etcd.assert_running("before it became healthy");
            assert!(
                Instant::now() < deadline,
                "etcd on {ETCD_ENDPOINT} not healthy after {START_TIMEOUT:?}: {}\netcd log:\n{}",
                String::from_utf8_lossy(&health.stderr).trim(),
                self.etcd.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        // The folder with the logs is removed with the testbed, so a
        // failing test shows them here.
        eprintln!("---- testbed {} logs ----", self.name_prefix);
        eprintln!("etcd:\n{}", self.etcd.log_tail(20));
        for host in &self.hosts {
            eprintln!("{}", host.log_report());
        }
    }
}

/// A folder removed with everything in it when dropped.
#[derive(Debug)]
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn create(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", path.display()));
        TempDir { path }
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            eprintln!("testbed: could not remove {}: {error}", self.path.display());
        }
    }
}

/// Reports whether any network namespace named `name` exists.
pub fn namespace_exists(name: &str) -> bool {
    let listed = run(Command::new("ip").args(["netns", "list"]));
    listed
        .lines()
        .any(|line| line.split_whitespace().next() == Some(name))
}

/// Panics if the root network namespace has an address or route in the
/// testbed's ranges (10.25.31.0/24 and 172.16.0.0/16), which only the
/// testbed's own namespaces may have.
pub fn assert_root_namespace_untouched() {
    let addresses = run(Command::new("ip").args(["-o", "addr", "show"]));
    let routes = run(Command::new("ip").args(["route", "show", "table", "all"]));
    for range in ["10.25.31.", "172.16."] {
        for (what, listing) in [("address", &addresses), ("route", &routes)] {
            let found: Vec<&str> = listing
                .lines()
                .filter(|line| line.contains(range))
                .collect();
            assert!(
                found.is_empty(),
                "the root network namespace has a {what} in {range}x: {found:?}"
            );
        }
    }
}
