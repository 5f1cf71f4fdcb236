//! flanneld: leases this host's overlay subnet in etcd, runs the overlay
//! backend and writes subnet.env for Docker.

mod args;
mod daemon;
mod health;
mod iface;
mod iptables;
mod notify;
#[cfg(test)]
mod testing;

use std::io::IsTerminal;
use std::process::ExitCode;

use tracing_subscriber::filter::{EnvFilter, LevelFilter};

fn main() -> ExitCode {
    let options = match args::parse(std::env::args_os(), |name| std::env::var(name).ok()) {
        Ok(options) => options,
        Err(args::ParseError::Syntax(err)) => err.exit(),
        Err(args::ParseError::Invalid(err)) => {
            eprintln!("flanneld: {err}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(options.verbosity);
    for flag in &options.ignored {
        tracing::warn!(flag, "ignoring glog flag -{flag}; logs always go to stderr");
    }

    // One thread runs the control plane; the udp backend moves packets on
    // threads of its own.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "starting the async runtime failed");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(daemon::run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "flanneld failed");
            ExitCode::FAILURE
        }
    }
}

/// Log levels of the libraries whose trace output is not about flanneld
/// itself.
const NOISY_LIBRARIES: [&str; 7] = [
    "netlink_proto=info",
    "netlink_sys=info",
    "h2=info",
    "hyper=info",
    "hyper_util=info",
    "tonic=info",
    "tower=info",
];

/// Logs to stderr: `-v` sets the level (0 info, 1-2 debug, 3+ trace), and
/// `RUST_LOG`, when set, replaces it.
fn init_logging(verbosity: u8) {
    let level = match verbosity {
        0 => LevelFilter::INFO,
        1 | 2 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    // netlink-packet-route warns about every kernel attribute newer than
    // itself while interfaces are listed; those warnings are not about
    // flanneld.
    let mut filter = EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env_lossy()
        .add_directive(
            "netlink_packet_route=error"
                .parse()
                .expect("valid directive"),
        );
    // At -v 3 the network libraries trace every message they exchange,
    // hundreds of lines that drown flanneld's own; RUST_LOG can still
    // turn them on.
    if std::env::var_os("RUST_LOG").is_none() {
        for directive in NOISY_LIBRARIES {
            filter = filter.add_directive(directive.parse().expect("valid directive"));
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
