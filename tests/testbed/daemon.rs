//! Long-running processes (etcd, flanneld, iperf3 servers) with their
//! output in a log file, stopped when dropped.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::command::{describe, send_signal};

/// How long a process may take to exit after SIGTERM before it gets
/// SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A child process whose standard output and error go to a log file.
#[derive(Debug)]
pub struct Daemon {
    label: String,
    command_line: String,
    child: Child,
    log: PathBuf,
    exit: Option<ExitStatus>,
}

impl Daemon {
    /// Starts `command` with its output appended to `log`.
    pub fn spawn(label: impl Into<String>, mut command: Command, log: &Path) -> Daemon {
        let label = label.into();
        let command_line = describe(&command);
        let file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|error| panic!("cannot open log file {}: {error}", log.display()));
        let stderr = file
            .try_clone()
            .expect("a log file handle can be duplicated");
        let child = command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {label} (`{command_line}`): {error}"));
        Daemon {
            label,
            command_line,
            child,
            log: log.to_path_buf(),
            exit: None,
        }
    }

    /// Returns the process id. `ip netns exec` replaces itself with the
    /// program, so this is the program's own id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Returns the exit status if the process has exited, without waiting.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self
                .child
                .try_wait()
                .unwrap_or_else(|error| panic!("cannot poll {}: {error}", self.label));
        }
        self.exit
    }

    /// Panics with the log's last lines if the process has exited.
    pub fn assert_running(&mut self, context: &str) {
        if let Some(status) = self.exit_status() {
            panic!(
                "{} exited ({status}) {context}\ncommand: {}\nlast lines of {}:\n{}",
                self.label,
                self.command_line,
                self.log.display(),
                self.log_tail(30)
            );
        }
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for the exit, escalating to SIGKILL after
    /// a grace period. Returns the exit status and whether SIGKILL was
    /// needed.
    pub fn terminate(&mut self) -> (ExitStatus, bool) {
        if let Some(status) = self.exit_status() {
            return (status, false);
        }
        send_signal(self.pid(), "TERM");
        if let Some(status) = self.wait_timeout(STOP_GRACE) {
            return (status, false);
        }
        let _ = self.child.kill();
        let status = self
            .child
            .wait()
            .unwrap_or_else(|error| panic!("cannot wait for {}: {error}", self.label));
        self.exit = Some(status);
        (status, true)
    }

    /// Returns the last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Returns the name used in messages, e.g. `flanneld on 10.25.31.61`.
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.exit.is_none() {
            self.terminate();
        }
    }
}
