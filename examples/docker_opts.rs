//! Prints the Docker options, daemon.json settings and CNI configuration for
//! a subnet.env.
//!
//! ```text
//! cargo run --example docker_opts                            # a built-in dual-stack sample
//! cargo run --example docker_opts -- /run/flannel/subnet.env
//! ```

use std::error::Error;
use std::path::Path;

use flannel_rs::docker_opts::{daemon_json, CniNetwork, DockerOptions, EnvFile, Selection};
use flannel_rs::subnet_core::subnet_env::SubnetEnv;

const SAMPLE: &str = "FLANNEL_NETWORK=10.5.0.0/16
FLANNEL_SUBNET=10.5.1.1/24
FLANNEL_MTU=1450
FLANNEL_IPMASQ=true
FLANNEL_IPV6_NETWORK=fc00::/48
FLANNEL_IPV6_SUBNET=fc00:0:0:1::1/64
";

fn main() -> Result<(), Box<dyn Error>> {
    let env = match std::env::args_os().nth(1) {
        Some(path) => SubnetEnv::read(Path::new(&path))?,
        None => SubnetEnv::parse(SAMPLE)?,
    };

    // Docker's IPv6 options only make sense for a dual-stack subnet.env.
    let selection = Selection {
        omit_ip_masq: false,
        ipv6: env.ipv6_subnet.is_some(),
    };
    let options = DockerOptions::from_subnet_env(&env, selection)?;

    println!("# env file, as mk-docker-opts.sh writes it");
    print!("{}", EnvFile::default().render(&options)?);

    println!("\n# daemon.json merged into an existing one");
    print!(
        "{}",
        daemon_json::merge(Some(r#"{"log-driver": "journald"}"#), &options)?
    );

    println!("\n# CNI network configuration");
    print!("{}", CniNetwork::default().render(&options)?);
    Ok(())
}
