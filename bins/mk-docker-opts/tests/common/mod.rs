//! Runs the built `mk-docker-opts` binary in a temporary folder.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

pub const FULL: &str = "FLANNEL_NETWORK=172.16.0.0/16\n\
                        FLANNEL_SUBNET=172.16.37.1/24\n\
                        FLANNEL_MTU=1472\n\
                        FLANNEL_IPMASQ=false\n";

pub const DUAL_STACK: &str = "FLANNEL_NETWORK=10.5.0.0/16\n\
                              FLANNEL_SUBNET=10.5.1.1/24\n\
                              FLANNEL_MTU=1450\n\
                              FLANNEL_IPMASQ=true\n\
                              FLANNEL_IPV6_NETWORK=fc00::/48\n\
                              FLANNEL_IPV6_SUBNET=fc00:0:0:1::1/64\n";

/// A temporary folder with a subnet.env in it.
pub struct Host {
    pub dir: TempDir,
}

impl Host {
    pub fn with_subnet_env(text: &str) -> Host {
        let host = Host {
            dir: tempfile::tempdir().expect("create temporary folder"),
        };
        fs::write(host.subnet_env(), text).expect("write subnet.env");
        host
    }

    pub fn subnet_env(&self) -> PathBuf {
        self.dir.path().join("subnet.env")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs the binary with `-f subnet.env -d docker_opts.env` and `args`.
    /// Returns the output and the written file (`None` if there is none).
    pub fn run_env(&self, args: &[&str], vars: &[(&str, &str)]) -> (Output, Option<String>) {
        let out = self.path("docker_opts.env");
        let mut full_args = vec![
            "-f".to_owned(),
            path_arg(&self.subnet_env()),
            "-d".to_owned(),
            path_arg(&out),
        ];
        full_args.extend(args.iter().map(|arg| (*arg).to_owned()));
        let output = run(&full_args, vars);
        (output, fs::read_to_string(&out).ok())
    }
}

pub fn path_arg(path: &Path) -> String {
    path.to_str().expect("temporary paths are UTF-8").to_owned()
}

/// Runs the binary with `args`, with the combined-line variables that tests
/// use removed from its environment and `vars` added.
pub fn run<S: AsRef<str>>(args: &[S], vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mk-docker-opts"));
    command.args(args.iter().map(AsRef::as_ref));
    for name in ["DOCKER_OPTS", "CUSTOM"] {
        command.env_remove(name);
    }
    for (name, value) in vars {
        command.env(name, value);
    }
    command.output().expect("run mk-docker-opts")
}

/// Asserts a successful run with nothing on standard error.
pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}, stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
}

/// Asserts exit status 1, nothing on standard output and exactly `message`
/// on standard error.
pub fn assert_failure(output: &Output, message: &str) {
    assert_eq!(
        output.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "");
    assert_eq!(String::from_utf8_lossy(&output.stderr), message);
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("standard output is UTF-8")
}
