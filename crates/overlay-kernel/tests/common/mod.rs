//! Network namespaces created by the tests, and running async code inside
//! one.

#![allow(dead_code)]

use std::fs::File;
use std::future::Future;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::sched::CloneFlags;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A network namespace that is deleted when dropped, also after a failed
/// assertion.
#[derive(Debug)]
pub struct Netns {
    /// The name `ip netns` lists.
    pub name: String,
}

impl Netns {
    /// Creates a namespace named after `tag`, the process id and a counter,
    /// and brings its loopback up.
    pub fn new(tag: &str) -> Self {
        let name = format!(
            "okern-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        run(Command::new("ip").args(["netns", "add", &name]));
        let netns = Self { name };
        netns.ip(&["link", "set", "lo", "up"]);
        netns
    }

    /// Runs `ip -n <name> <args>`, panicking on failure, and returns its
    /// standard output.
    pub fn ip(&self, args: &[&str]) -> String {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Runs `bridge -n <name> <args>` and returns its standard output.
    pub fn bridge(&self, args: &[&str]) -> String {
        run(Command::new("bridge").arg("-n").arg(&self.name).args(args))
    }

    /// Adds a veth pair `veth0`/`veth1`, both up with MTU 1500, and gives
    /// `veth0` the address `cidr`.
    pub fn veth_underlay(&self, cidr: &str) {
        self.ip(&[
            "link", "add", "veth0", "mtu", "1500", "type", "veth", "peer", "name", "veth1",
        ]);
        self.ip(&["addr", "add", cidr, "dev", "veth0"]);
        self.ip(&["link", "set", "veth0", "up"]);
        self.ip(&["link", "set", "veth1", "up"]);
    }

    /// Returns the index of interface `name`.
    pub fn index(&self, name: &str) -> u32 {
        let line = self.ip(&["-o", "link", "show", "dev", name]);
        line.split(':')
            .next()
            .and_then(|index| index.trim().parse().ok())
            .unwrap_or_else(|| panic!("no index for {name} in {line:?}"))
    }

    /// Runs `body` on a thread that has joined this namespace, on a
    /// single-threaded tokio runtime, and returns its result. A panic in
    /// `body` fails the calling test.
    pub fn run<F, Fut, T>(&self, body: F) -> T
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        let path = format!("/run/netns/{}", self.name);
        let thread = std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|error| panic!("opening {path}: {error}"));
            nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|error| panic!("joining {path}: {error}"));
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(body())
        });
        thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let deleted = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        if !matches!(&deleted, Ok(output) if output.status.success()) {
            eprintln!(
                "could not delete network namespace {}: {deleted:?}",
                self.name
            );
        }
    }
}

/// Runs `command`, panicking with its stderr on failure or with the
/// install command when the program is missing.
pub fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|error| {
        panic!("running {command:?} failed: {error}; apt-get install iproute2")
    });
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
