//! Network namespaces for the two-host tests: created with unique names,
//! deleted on drop even when a test fails.

#![allow(dead_code)]

use std::fs::File;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::sched::{setns, CloneFlags};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Returns a short name unique to this process and call, usable in interface names
/// (at most 15 bytes with a 3-byte prefix).
pub fn unique_suffix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{n}", std::process::id() % 0x10_0000)
}

/// Runs a command and returns its stdout; panics with its stderr on failure.
pub fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap_or_else(|error| {
        panic!("running {program} failed: {error}; for `ip` install iproute2 (apt-get install iproute2), for `ping` iputils-ping")
    });
    assert!(
        output.status.success(),
        "{program} {} failed with {}: {}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs a command inside a namespace and returns (success, stdout + stderr).
pub fn run_in(ns: &str, program: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!("running ip netns exec failed: {error}; install iproute2 (apt-get install iproute2)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: String) -> Netns {
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Runs `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", &self.name, "ip"];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Runs `f` on a new thread that has entered this namespace, so that
    /// devices and sockets it creates belong here.
    pub fn enter<T, F>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file =
                File::open(&path).unwrap_or_else(|error| panic!("opening {path} failed: {error}"));
            setns(&file, CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|error| panic!("entering namespace {path} failed: {error}"));
            f()
        })
        .join()
        .expect("thread inside the namespace panicked")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Two namespaces joined by a veth pair with underlay addresses
/// 10.200.0.1/24 (a) and 10.200.0.2/24 (b).
#[derive(Debug)]
pub struct NsPair {
    pub a: Netns,
    pub b: Netns,
    pub suffix: String,
}

pub const UNDERLAY_A: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 200, 0, 1);
pub const UNDERLAY_B: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 200, 0, 2);

impl NsPair {
    pub fn new() -> NsPair {
        let suffix = unique_suffix();
        let a = Netns::new(format!("ovu-a-{suffix}"));
        let b = Netns::new(format!("ovu-b-{suffix}"));
        let veth_a = format!("vea{suffix}");
        let veth_b = format!("veb{suffix}");
        run(
            "ip",
            &[
                "link", "add", &veth_a, "netns", &a.name, "type", "veth", "peer", "name", &veth_b,
                "netns", &b.name,
            ],
        );
        a.ip(&["addr", "add", "10.200.0.1/24", "dev", &veth_a]);
        b.ip(&["addr", "add", "10.200.0.2/24", "dev", &veth_b]);
        a.ip(&["link", "set", &veth_a, "up"]);
        b.ip(&["link", "set", &veth_b, "up"]);
        NsPair { a, b, suffix }
    }

    pub fn veth_a(&self) -> String {
        format!("vea{}", self.suffix)
    }
}
