//! Test helpers: network namespaces created and removed by the test.

use std::ffi::OsString;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A network namespace that exists while this value lives.
#[derive(Debug)]
pub struct TestNetns {
    /// The namespace name.
    pub name: String,
}

impl TestNetns {
    /// Creates a namespace named after `tag`, the process id and a counter.
    pub fn new(tag: &str) -> Self {
        let name = format!(
            "fl-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let output = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("running `ip` failed: apt-get install iproute2");
        assert!(
            output.status.success(),
            "ip netns add {name} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self { name }
    }

    /// Returns the command words that run `program` inside the namespace.
    pub fn prefix(&self, program: &str) -> Vec<OsString> {
        ["ip", "netns", "exec", &self.name, program]
            .into_iter()
            .map(OsString::from)
            .collect()
    }

    /// Runs a program inside the namespace and returns its output.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .output()
            .unwrap_or_else(|err| panic!("running {program} in {} failed: {err}", self.name))
    }

    /// Runs a program inside the namespace, asserts success and returns its
    /// standard output.
    pub fn run_ok(&self, program: &str, args: &[&str]) -> String {
        let output = self.run(program, args);
        assert!(
            output.status.success(),
            "{program} {args:?} in {} failed: {}",
            self.name,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
