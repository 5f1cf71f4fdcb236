//! Prints an address worksheet for an IPv4 CIDR: the lowest and highest
//! address in binary, with the network and host parts split, and the number
//! of usable host addresses.
//!
//! ```text
//! cargo run --example cidr -- 128.14.32.0/20
//! ```

use std::process::ExitCode;

use flannel_rs::subnet_core::cidr::ipv4_worksheet;
use ipnet::Ipv4Net;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(text), None) = (args.next(), args.next()) else {
        eprintln!("usage: cidr NETWORK   (an IPv4 CIDR such as 128.14.32.0/20)");
        return ExitCode::from(2);
    };
    match text.parse::<Ipv4Net>() {
        Ok(network) => {
            print!("{}", ipv4_worksheet(network));
            ExitCode::SUCCESS
        }
        Err(_) => {
            eprintln!("invalid network {text:?}: expected an IPv4 CIDR such as 128.14.32.0/20");
            ExitCode::from(2)
        }
    }
}
