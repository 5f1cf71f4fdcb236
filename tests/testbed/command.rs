//! Running the tools the testbed drives (`ip`, `etcdctl`, `ping`, `kill`)
//! and finding them on the machine.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Tools the testbed runs, with the Debian package that ships each.
const TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("etcd", "etcd-server"),
    ("etcdctl", "etcd-client"),
    ("iperf3", "iperf3"),
    ("ping", "iputils-ping"),
    ("iptables", "iptables"),
    ("ss", "iproute2"),
];

/// Panics unless the tests run as root and every tool in [`TOOLS`] is on
/// `PATH`, naming the command that installs what is missing.
pub fn require_root_and_tools() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .unwrap_or("unknown");
    assert_eq!(
        uid, "0",
        "the walkthrough tests create network namespaces and TUN devices, so they need root \
         (effective uid is {uid}): run `sudo scripts/test.sh`"
    );

    let mut missing = Vec::new();
    for (tool, package) in TOOLS {
        if find_on_path(tool).is_none() {
            missing.push((*tool, *package));
        }
    }
    if !missing.is_empty() {
        let tools: Vec<&str> = missing.iter().map(|(tool, _)| *tool).collect();
        let mut packages: Vec<&str> = missing.iter().map(|(_, package)| *package).collect();
        packages.sort_unstable();
        packages.dedup();
        panic!(
            "{} not found on PATH: run `sudo scripts/install-deps.sh` \
             (apt-get install {})",
            tools.join(", "),
            packages.join(" ")
        );
    }
}

/// Returns the full path of `program` if a folder on `PATH` has it.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|folder| folder.join(program))
        .find(|candidate| candidate.is_file())
}

/// Environment variable naming a folder with the `flanneld` and
/// `mk-docker-opts` to test, such as a release build.
pub const BIN_DIR_VARIABLE: &str = "WALKTHROUGH_BIN_DIR";

/// The flannel-rs binaries under test.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The `flanneld` daemon.
    pub flanneld: PathBuf,
    /// The `mk-docker-opts` tool.
    pub mk_docker_opts: PathBuf,
}

impl Binaries {
    /// Finds `flanneld` and `mk-docker-opts` in the folder named by
    /// [`BIN_DIR_VARIABLE`] if it is set, else in the Cargo profile folder
    /// that contains this test executable (`target/<profile>/deps/..`).
    ///
    /// Cargo builds a workspace's binaries there only when asked, so a
    /// missing binary panics with the build command.
    pub fn locate() -> Binaries {
        let profile_dir = match std::env::var_os(BIN_DIR_VARIABLE) {
            Some(dir) => PathBuf::from(dir),
            None => {
                let exe =
                    std::env::current_exe().expect("the path of the test executable is readable");
                exe.parent()
                    .and_then(Path::parent)
                    .expect("the test executable lies in target/<profile>/deps")
                    .to_path_buf()
            }
        };
        let profile_dir = profile_dir.as_path();
        Binaries {
            flanneld: Self::binary(profile_dir, "flanneld"),
            mk_docker_opts: Self::binary(profile_dir, "mk-docker-opts"),
        }
    }

    fn binary(profile_dir: &Path, name: &str) -> PathBuf {
        let path = profile_dir.join(name);
        assert!(
            path.is_file(),
            "{name} not found at {}: build the binaries first with \
             `cargo build --workspace --bins` (same CARGO_TARGET_DIR and profile as the tests)",
            path.display()
        );
        path
    }
}

/// Renders a command as a shell line for error messages.
pub fn describe(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        let _ = write!(line, " {}", arg.to_string_lossy());
    }
    line
}

/// Runs `command` to completion and returns its output, whatever its
/// exit status. Panics only when the program cannot be started.
pub fn output(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|error| panic!("cannot run `{}`: {error}", describe(command)))
}

/// Runs `command` and returns its standard output. Panics with the
/// command line, the exit status and the standard error if it fails.
pub fn run(command: &mut Command) -> String {
    let result = output(command);
    assert!(
        result.status.success(),
        "`{}` failed ({}): {}",
        describe(command),
        result.status,
        String::from_utf8_lossy(&result.stderr).trim()
    );
    String::from_utf8_lossy(&result.stdout).into_owned()
}

/// Sends `signal` (a name such as `TERM` or `KILL`) to process `pid`.
/// Returns false if the process no longer exists.
pub fn send_signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}
