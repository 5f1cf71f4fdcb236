//! `mk-docker-opts`: writes Docker daemon options from flannel's
//! `subnet.env`, with the flags, defaults and output bytes of
//! `mk-docker-opts.sh`, plus `daemon.json` and CNI output formats.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use docker_opts::daemon_json::{self, DEFAULT_DAEMON_JSON_PATH};
use docker_opts::env_file::DEFAULT_COMBINED_KEY;
use docker_opts::{
    CniError, CniNetwork, DaemonJsonError, DaemonJsonFileError, DockerOptions, EnvFile,
    EnvFileError, ReadOptionsError, Selection,
};
use subnet_core::subnet_env::{write_file_atomic, WriteError};

/// Default path of the subnet.env that flanneld writes.
const DEFAULT_FLANNEL_ENV: &str = "/run/flannel/subnet.env";
/// Default output path of the env format, as in `mk-docker-opts.sh`.
const DEFAULT_DOCKER_ENV: &str = "/run/docker_opts.env";
/// Output path that means standard output.
const STDOUT_PATH: &str = "-";

/// Generate Docker daemon options from flannel's subnet.env.
#[derive(Debug, Parser)]
#[command(name = "mk-docker-opts", version, args_override_self = true)]
struct Args {
    /// Path of flannel's subnet.env
    #[arg(short = 'f', long = "flannel-env", value_name = "FLANNEL-ENV", default_value = DEFAULT_FLANNEL_ENV)]
    flannel_env: PathBuf,

    /// Path of the file to write, or - for standard output [default: /run/docker_opts.env for env,
    /// /etc/docker/daemon.json for daemon-json, standard output for cni]
    #[arg(short = 'd', long = "docker-env", value_name = "DOCKER-ENV")]
    docker_env: Option<PathBuf>,

    /// Write each option as its own variable, e.g. DOCKER_OPT_MTU="--mtu=1472" (env format)
    #[arg(short = 'i', long = "individual")]
    individual: bool,

    /// Write all options as one variable, DOCKER_OPTS unless -k is given (env format)
    #[arg(short = 'c', long = "combined")]
    combined: bool,

    /// Leave out --ip-masq (for Docker versions without it)
    #[arg(short = 'm', long = "no-ip-masq")]
    no_ip_masq: bool,

    /// Name of the combined variable, whose value in the environment starts the line [default: DOCKER_OPTS]
    #[arg(short = 'k', long = "combined-key", value_name = "KEY")]
    combined_key: Option<String>,

    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Env)]
    format: Format,

    /// Add Docker's --ipv6 and --fixed-cidr-v6 from FLANNEL_IPV6_SUBNET (needs a dual-stack subnet.env)
    #[arg(long)]
    ipv6: bool,

    /// Network name in the CNI configuration (cni format)
    #[arg(long, value_name = "NAME", default_value = docker_opts::cni::DEFAULT_NETWORK_NAME)]
    cni_name: String,

    /// Bridge device in the CNI configuration (cni format)
    #[arg(long, value_name = "DEVICE", default_value = docker_opts::cni::DEFAULT_BRIDGE)]
    cni_bridge: String,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Shell variables for a systemd EnvironmentFile, as mk-docker-opts.sh writes them
    Env,
    /// Docker's daemon.json, merged into an existing file
    DaemonJson,
    /// CNI network configuration for the bridge plugin with host-local IPAM
    Cni,
}

/// Everything that can make a run fail after the arguments parsed.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("-i, -c and -k apply only to --format env, not to --format {format}")]
    EnvOnlyFlags { format: &'static str },
    #[error("value of {key} in the environment is not valid UTF-8")]
    PrefixNotUtf8 { key: String },
    #[error(transparent)]
    Read(#[from] ReadOptionsError),
    #[error(transparent)]
    EnvFile(#[from] EnvFileError),
    #[error(transparent)]
    DaemonJson(#[from] DaemonJsonFileError),
    #[error(transparent)]
    DaemonJsonText(#[from] DaemonJsonError),
    #[error(transparent)]
    Cni(#[from] CniError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("failed to write to standard output: {0}")]
    Stdout(io::Error),
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(error) => {
            // Help and version go to standard output with status 0; usage
            // errors exit with 1, as the script's usage message does.
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };

    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), RunError> {
    check_env_only_flags(&args)?;

    let selection = Selection {
        omit_ip_masq: args.no_ip_masq,
        ipv6: args.ipv6,
    };
    let options = DockerOptions::read(&args.flannel_env, selection)?;
    let to_stdout = args.docker_env.as_deref() == Some(Path::new(STDOUT_PATH));

    match args.format {
        Format::Env => {
            let env_file = env_file_layout(&args)?;
            let text = env_file.render(&options)?;
            let path = args
                .docker_env
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DOCKER_ENV));
            write_output(&path, &text)
        }
        Format::DaemonJson if to_stdout => print(&daemon_json::merge(None, &options)?),
        Format::DaemonJson => {
            let path = args
                .docker_env
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DAEMON_JSON_PATH));
            daemon_json::merge_file(&path, &options)?;
            Ok(())
        }
        Format::Cni => {
            let network = CniNetwork {
                name: args.cni_name,
                bridge: args.cni_bridge,
            };
            let text = network.render(&options)?;
            let path = args
                .docker_env
                .unwrap_or_else(|| PathBuf::from(STDOUT_PATH));
            write_output(&path, &text)
        }
    }
}

fn check_env_only_flags(args: &Args) -> Result<(), RunError> {
    let env_flags_given = args.individual || args.combined || args.combined_key.is_some();
    match args.format {
        Format::Env => Ok(()),
        _ if !env_flags_given => Ok(()),
        Format::DaemonJson => Err(RunError::EnvOnlyFlags {
            format: "daemon-json",
        }),
        Format::Cni => Err(RunError::EnvOnlyFlags { format: "cni" }),
    }
}

/// Builds the env file layout from -i, -c and -k. With neither -i nor -c both
/// kinds of line are written, as the script does.
fn env_file_layout(args: &Args) -> Result<EnvFile, RunError> {
    let both = !args.individual && !args.combined;
    let combined_key = args
        .combined_key
        .clone()
        .unwrap_or_else(|| DEFAULT_COMBINED_KEY.to_owned());

    // The script reads the combined variable's current value by name, so an
    // unset variable and an empty one both give an empty prefix.
    let combined_prefix = match std::env::var_os(&combined_key) {
        None => String::new(),
        Some(value) => value.into_string().map_err(|_| RunError::PrefixNotUtf8 {
            key: combined_key.clone(),
        })?,
    };

    Ok(EnvFile {
        individual: args.individual || both,
        combined: args.combined || both,
        combined_key,
        combined_prefix,
    })
}

fn write_output(path: &Path, text: &str) -> Result<(), RunError> {
    if path == Path::new(STDOUT_PATH) {
        return print(text);
    }
    write_file_atomic(path, text.as_bytes())?;
    Ok(())
}

fn print(text: &str) -> Result<(), RunError> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(RunError::Stdout)
}
