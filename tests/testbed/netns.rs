//! Network namespaces that delete themselves, and the removal of those
//! left behind by a test process that was killed.

use std::path::Path;
use std::process::Command;

use super::command::{output, run, send_signal};

/// Start of every namespace name the testbed creates. The process id of
/// the test that created a namespace follows it, so that a later run can
/// tell which ones were orphaned.
pub const NAME_PREFIX: &str = "flwt";

/// A network namespace that is deleted, with every process still in it,
/// when this value is dropped.
#[derive(Debug)]
pub struct Namespace {
    name: String,
}

impl Namespace {
    /// Creates namespace `name` and brings its loopback device up.
    pub fn create(name: String) -> Namespace {
        run(Command::new("ip").args(["netns", "add", &name]));
        let namespace = Namespace { name };
        namespace.ip(&["link", "set", "dev", "lo", "up"]);
        namespace
    }

    /// Returns the namespace's name as `ip netns` lists it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <name> <args>`, panicking if it fails.
    pub fn ip(&self, args: &[&str]) -> String {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Returns a command that runs `program` inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        delete_namespace(&self.name);
    }
}

/// Kills every process inside namespace `name` and deletes it.
fn delete_namespace(name: &str) {
    let pids = output(Command::new("ip").args(["netns", "pids", name]));
    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
        if let Ok(pid) = pid.parse() {
            send_signal(pid, "KILL");
        }
    }

    let deleted = output(Command::new("ip").args(["netns", "del", name]));
    if !deleted.status.success() {
        // A Drop cannot fail the test, and panicking here during a panic
        // would abort the run, so the leftover is reported instead.
        eprintln!(
            "testbed: could not delete network namespace {name}: {}",
            String::from_utf8_lossy(&deleted.stderr).trim()
        );
    }
}

/// Deletes the namespaces and temporary folders of testbeds whose test
/// process no longer runs (killed before its guards could clean up).
pub fn remove_orphans(temp_dir_prefix: &str) {
    let listed = output(Command::new("ip").args(["netns", "list"]));
    for line in String::from_utf8_lossy(&listed.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if owner_is_gone(name, NAME_PREFIX) {
            delete_namespace(name);
        }
    }

    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if owner_is_gone(&name, temp_dir_prefix) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Reports whether `name` is `<prefix><pid>-...` for a process that has
/// exited.
fn owner_is_gone(name: &str, prefix: &str) -> bool {
    let Some(rest) = name.strip_prefix(prefix) else {
        return false;
    };
    let pid = rest.split('-').next().unwrap_or_default();
    match pid.parse::<u32>() {
        Ok(pid) => !Path::new(&format!("/proc/{pid}")).exists(),
        Err(_) => false,
    }
}
