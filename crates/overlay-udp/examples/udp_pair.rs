//! Runs one udp backend data path with static peers, for benchmarks and
//! manual tests between network namespaces.
//!
//! ```text
//! udp_pair --tun NAME --lease CIDR --network CIDR --bind IP:PORT \
//!          [--peer CIDR=IP]... [--no-offload] [--no-sender-check] [--seconds N]
//! ```
//!
//! It prints the counters to stdout when it stops: after `--seconds`, or
//! when its standard input closes.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;
use std::time::Duration;

use ipnet::Ipv4Net;
use overlay_udp::{UdpBackend, UdpConfig};

#[derive(Debug)]
struct Args {
    config: UdpConfig,
    peers: Vec<(Ipv4Net, Ipv4Addr)>,
    seconds: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut tun = None;
    let mut lease = None;
    let mut network = None;
    let mut bind = None;
    let mut peers = Vec::new();
    let mut offload = true;
    let mut check_sender = true;
    let mut seconds = None;

    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("missing value for {name}"));
        match flag.as_str() {
            "--tun" => tun = Some(value("--tun")?),
            "--lease" => lease = Some(parse(&value("--lease")?, "--lease")?),
            "--network" => network = Some(parse(&value("--network")?, "--network")?),
            "--bind" => bind = Some(parse::<SocketAddrV4>(&value("--bind")?, "--bind")?),
            "--peer" => {
                let text = value("--peer")?;
                let (subnet, ip) = text
                    .split_once('=')
                    .ok_or(format!("invalid --peer {text:?}: expected CIDR=IP"))?;
                peers.push((parse(subnet, "--peer")?, parse(ip, "--peer")?));
            }
            "--no-offload" => offload = false,
            "--no-sender-check" => check_sender = false,
            "--seconds" => seconds = Some(parse(&value("--seconds")?, "--seconds")?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }

    let lease = lease.ok_or("missing --lease")?;
    let network = network.ok_or("missing --network")?;
    let bind = bind.ok_or("missing --bind")?;
    let mut config = UdpConfig::new(lease, network, bind);
    if let Some(tun) = tun {
        config.tun_name = tun;
    }
    config.offload = offload;
    config.check_sender = check_sender;
    Ok(Args {
        config,
        peers,
        seconds,
    })
}

fn parse<T: std::str::FromStr>(text: &str, flag: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|error| format!("invalid {flag} {text:?}: {error}"))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();

    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("udp_pair: {message}");
            return ExitCode::from(2);
        }
    };

    let backend = match UdpBackend::start(args.config) {
        Ok(backend) => backend,
        Err(error) => {
            eprintln!("udp_pair: {error}");
            return ExitCode::FAILURE;
        }
    };
    for (subnet, ip) in args.peers {
        if let Err(error) = backend.peers().upsert(subnet, ip) {
            eprintln!("udp_pair: {error}");
            return ExitCode::FAILURE;
        }
    }
    eprintln!("udp_pair: running, offloads {:?}", backend.offloads());

    match args.seconds {
        Some(seconds) => std::thread::sleep(Duration::from_secs(seconds)),
        None => {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        }
    }

    let stats = backend.stats();
    println!("{stats:?}");
    match backend.shutdown() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("udp_pair: {error}");
            ExitCode::FAILURE
        }
    }
}
