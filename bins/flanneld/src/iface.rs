//! Choosing the underlay interface: the one overlay traffic leaves by, whose
//! address other hosts send to and whose MTU bounds the overlay's.
//!
//! The kernel is read once through rtnetlink into a [`Snapshot`]; the choice
//! itself ([`choose`]) is a pure function of that snapshot and the flags.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use regex::Regex;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};
use rtnetlink::packet_route::route::{RouteAttribute, RouteHeader};
use rtnetlink::RouteMessageBuilder;

use crate::args::IfaceSpec;

/// One network interface as the kernel reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// MTU in bytes.
    pub mtu: u32,
    /// Whether the interface is administratively up.
    pub up: bool,
    /// IPv4 addresses, primary ones first.
    pub ipv4: Vec<Ipv4Addr>,
    /// IPv6 addresses; used only to find an interface named by address.
    pub ipv6: Vec<Ipv6Addr>,
}

/// The interfaces and the IPv4 default route at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Interfaces in index order.
    pub links: Vec<Link>,
    /// Index of the interface of the main table's IPv4 default route with
    /// the lowest metric.
    pub default_route: Option<u32>,
}

/// The chosen interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalInterface {
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub index: u32,
    /// Interface MTU in bytes.
    pub mtu: u32,
    /// The interface's IPv4 address that overlay traffic leaves from.
    pub address: Ipv4Addr,
    /// The address advertised to other hosts: `-public-ip`, else `address`.
    pub public_ip: Ipv4Addr,
    /// The IPv6 address advertised to other hosts: `-public-ipv6`, else the
    /// interface's first global IPv6 address, if any.
    pub public_ipv6: Option<Ipv6Addr>,
}

/// A failure to choose an interface.
#[derive(Debug, thiserror::Error)]
pub enum IfaceError {
    /// Opening the netlink socket failed.
    #[error("opening a netlink socket to list interfaces failed: {0}")]
    Socket(#[source] std::io::Error),
    /// A netlink dump failed.
    #[error("listing {what} over netlink failed: {source}")]
    Netlink {
        /// `interfaces`, `addresses` or `routes`.
        what: &'static str,
        /// The netlink error.
        #[source]
        source: rtnetlink::Error,
    },
    /// No `-iface` value matched an interface with an IPv4 address.
    #[error("no interface matches -iface {tried}; interfaces present: {present}")]
    NoIfaceMatch {
        /// Each value with the reason it did not match.
        tried: String,
        /// The names of all interfaces.
        present: String,
    },
    /// No `-iface-regex` matched an interface with an IPv4 address.
    #[error("no interface with an IPv4 address matches -iface-regex {patterns}; interfaces present: {present}")]
    NoRegexMatch {
        /// The patterns tried.
        patterns: String,
        /// The names of all interfaces.
        present: String,
    },
    /// No `-iface` or `-iface-regex` and no default route.
    #[error("there is no IPv4 default route to pick an interface from; choose one with -iface or -iface-regex")]
    NoDefaultRoute,
    /// The default route's interface has no IPv4 address.
    #[error("interface {name} of the default route has no IPv4 address; choose another with -iface or -iface-regex")]
    NoAddress {
        /// The interface name.
        name: String,
    },
}

/// Reads interfaces, addresses and the default route through rtnetlink.
pub async fn snapshot() -> Result<Snapshot, IfaceError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(IfaceError::Socket)?;
    let connection = tokio::spawn(connection);
    let result = read_snapshot(&handle).await;
    connection.abort();
    result
}

async fn read_snapshot(handle: &rtnetlink::Handle) -> Result<Snapshot, IfaceError> {
    let mut links = Vec::new();
    let mut dump = handle.link().get().execute();
    while let Some(message) = dump
        .try_next()
        .await
        .map_err(|source| IfaceError::Netlink {
            what: "interfaces",
            source,
        })?
    {
        let mut link = Link {
            index: message.header.index,
            name: String::new(),
            mtu: 0,
            up: message.header.flags.contains(LinkFlags::Up),
            ipv4: Vec::new(),
            ipv6: Vec::new(),
        };
        for attribute in message.attributes {
            match attribute {
                LinkAttribute::IfName(name) => link.name = name,
                LinkAttribute::Mtu(mtu) => link.mtu = mtu,
                _ => {}
            }
        }
        links.push(link);
    }
    links.sort_by_key(|link| link.index);

    let mut dump = handle.address().get().execute();
    while let Some(message) = dump
        .try_next()
        .await
        .map_err(|source| IfaceError::Netlink {
            what: "addresses",
            source,
        })?
    {
        let Some(link) = links
            .iter_mut()
            .find(|link| link.index == message.header.index)
        else {
            continue;
        };
        // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer
        // address on point-to-point links, and the same address elsewhere.
        let local = message
            .attributes
            .iter()
            .find_map(|attribute| match attribute {
                AddressAttribute::Local(address) => Some(*address),
                _ => None,
            });
        let address = local.or_else(|| {
            message
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    AddressAttribute::Address(address) => Some(*address),
                    _ => None,
                })
        });
        match address {
            Some(IpAddr::V4(address)) => link.ipv4.push(address),
            Some(IpAddr::V6(address)) => link.ipv6.push(address),
            None => {}
        }
    }

    let mut default_route: Option<(u32, u32)> = None;
    let mut dump = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    while let Some(message) = dump
        .try_next()
        .await
        .map_err(|source| IfaceError::Netlink {
            what: "routes",
            source,
        })?
    {
        if message.header.destination_prefix_length != 0 {
            continue;
        }
        let mut table = u32::from(message.header.table);
        let mut oif = None;
        let mut metric = 0;
        for attribute in &message.attributes {
            match attribute {
                RouteAttribute::Table(id) => table = *id,
                RouteAttribute::Oif(index) => oif = Some(*index),
                RouteAttribute::Priority(priority) => metric = *priority,
                _ => {}
            }
        }
        let Some(oif) = oif else { continue };
        if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
            continue;
        }
        if default_route.is_none_or(|(_, best)| metric < best) {
            default_route = Some((oif, metric));
        }
    }

    Ok(Snapshot {
        links,
        default_route: default_route.map(|(index, _)| index),
    })
}

/// Chooses the interface. The first `-iface` that names an interface with
/// an IPv4 address (by name or by one of its addresses) wins. Else the first
/// interface an `-iface-regex` matches wins, addresses tried before names.
/// Else the interface of the default route is used.
pub fn choose(
    snapshot: &Snapshot,
    specs: &[IfaceSpec],
    regexes: &[Regex],
    public_ip: Option<Ipv4Addr>,
    public_ipv6: Option<Ipv6Addr>,
) -> Result<ExternalInterface, IfaceError> {
    let (link, address) = if !specs.is_empty() || !regexes.is_empty() {
        choose_by_flags(snapshot, specs, regexes)?
    } else {
        let index = snapshot.default_route.ok_or(IfaceError::NoDefaultRoute)?;
        let link = snapshot
            .links
            .iter()
            .find(|link| link.index == index)
            .ok_or(IfaceError::NoDefaultRoute)?;
        let address = preferred_ipv4(link).ok_or_else(|| IfaceError::NoAddress {
            name: link.name.clone(),
        })?;
        (link, address)
    };

    Ok(ExternalInterface {
        name: link.name.clone(),
        index: link.index,
        mtu: link.mtu,
        address,
        public_ip: public_ip.unwrap_or(address),
        public_ipv6: public_ipv6.or_else(|| global_ipv6(link)),
    })
}

fn choose_by_flags<'a>(
    snapshot: &'a Snapshot,
    specs: &[IfaceSpec],
    regexes: &[Regex],
) -> Result<(&'a Link, Ipv4Addr), IfaceError> {
    let mut tried = Vec::new();
    for spec in specs {
        match match_spec(snapshot, spec) {
            Ok(found) => return Ok(found),
            Err(reason) => tried.push(format!("{spec} ({reason})")),
        }
    }

    for regex in regexes {
        for link in &snapshot.links {
            if let Some(address) = link.ipv4.iter().find(|a| regex.is_match(&a.to_string())) {
                return Ok((link, *address));
            }
        }
        for link in &snapshot.links {
            if regex.is_match(&link.name) {
                if let Some(address) = preferred_ipv4(link) {
                    return Ok((link, address));
                }
            }
        }
    }

    let present = names(snapshot);
    if regexes.is_empty() {
        return Err(IfaceError::NoIfaceMatch {
            tried: tried.join(", "),
            present,
        });
    }
    let patterns: Vec<&str> = regexes.iter().map(Regex::as_str).collect();
    let mut patterns = patterns.join(", ");
    if !tried.is_empty() {
        patterns = format!("{patterns} (after -iface {})", tried.join(", "));
    }
    Err(IfaceError::NoRegexMatch { patterns, present })
}

/// The reason an `-iface` value did not match.
#[derive(Debug)]
enum Mismatch {
    NoSuchInterface,
    NoSuchAddress,
    NoIpv4Address,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mismatch::NoSuchInterface => "no such interface",
            Mismatch::NoSuchAddress => "no interface has this address",
            Mismatch::NoIpv4Address => "interface has no IPv4 address",
        })
    }
}

impl fmt::Display for IfaceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IfaceSpec::Name(name) => f.write_str(name),
            IfaceSpec::Address(address) => write!(f, "{address}"),
        }
    }
}

fn match_spec<'a>(
    snapshot: &'a Snapshot,
    spec: &IfaceSpec,
) -> Result<(&'a Link, Ipv4Addr), Mismatch> {
    match spec {
        IfaceSpec::Name(name) => {
            let link = snapshot
                .links
                .iter()
                .find(|link| &link.name == name)
                .ok_or(Mismatch::NoSuchInterface)?;
            let address = preferred_ipv4(link).ok_or(Mismatch::NoIpv4Address)?;
            Ok((link, address))
        }
        IfaceSpec::Address(IpAddr::V4(address)) => snapshot
            .links
            .iter()
            .find(|link| link.ipv4.contains(address))
            .map(|link| (link, *address))
            .ok_or(Mismatch::NoSuchAddress),
        IfaceSpec::Address(IpAddr::V6(address)) => {
            let link = snapshot
                .links
                .iter()
                .find(|link| link.ipv6.contains(address))
                .ok_or(Mismatch::NoSuchAddress)?;
            let ipv4 = preferred_ipv4(link).ok_or(Mismatch::NoIpv4Address)?;
            Ok((link, ipv4))
        }
    }
}

/// Returns the first IPv4 address that is neither loopback nor link-local,
/// else the first IPv4 address.
fn preferred_ipv4(link: &Link) -> Option<Ipv4Addr> {
    link.ipv4
        .iter()
        .find(|address| !address.is_loopback() && !address.is_link_local())
        .or_else(|| link.ipv4.first())
        .copied()
}

/// Returns the first IPv6 address that is not loopback, link-local
/// (fe80::/10) or multicast. Unique local addresses (fc00::/7) count.
fn global_ipv6(link: &Link) -> Option<Ipv6Addr> {
    link.ipv6
        .iter()
        .find(|address| {
            !address.is_loopback() && !address.is_unicast_link_local() && !address.is_multicast()
        })
        .copied()
}

fn names(snapshot: &Snapshot) -> String {
    let names: Vec<&str> = snapshot
        .links
        .iter()
        .map(|link| link.name.as_str())
        .collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, mtu: u32, ipv4: &[&str]) -> Link {
        Link {
            index,
            name: name.to_owned(),
            mtu,
            up: true,
            ipv4: ipv4.iter().map(|a| a.parse().unwrap()).collect(),
            ipv6: Vec::new(),
        }
    }

    fn host() -> Snapshot {
        let mut eth1 = link(3, "eth1", 9000, &["192.168.7.2"]);
        eth1.ipv6.push("fd00::2".parse().unwrap());
        Snapshot {
            links: vec![
                link(1, "lo", 65536, &["127.0.0.1"]),
                link(2, "eth0", 1500, &["169.254.3.3", "10.25.31.61"]),
                eth1,
                link(4, "docker0", 1500, &[]),
            ],
            default_route: Some(2),
        }
    }

    fn name(value: &str) -> IfaceSpec {
        IfaceSpec::Name(value.to_owned())
    }

    fn address(value: &str) -> IfaceSpec {
        IfaceSpec::Address(value.parse().unwrap())
    }

    #[test]
    fn default_route_interface() {
        let chosen = choose(&host(), &[], &[], None, None).unwrap();
        assert_eq!(chosen.name, "eth0");
        assert_eq!(chosen.mtu, 1500);
        assert_eq!(chosen.address, Ipv4Addr::new(10, 25, 31, 61));
        assert_eq!(chosen.public_ip, chosen.address);
        assert_eq!(chosen.public_ipv6, None);
    }

    #[test]
    fn public_ip_overrides_advertised_address() {
        let public = Ipv4Addr::new(203, 0, 113, 9);
        let public_ipv6 = "2001:db8::9".parse().unwrap();
        let chosen = choose(&host(), &[], &[], Some(public), Some(public_ipv6)).unwrap();
        assert_eq!(chosen.address, Ipv4Addr::new(10, 25, 31, 61));
        assert_eq!(chosen.public_ip, public);
        assert_eq!(chosen.public_ipv6, Some(public_ipv6));
    }

    #[test]
    fn iface_by_name_and_address() {
        assert_eq!(
            choose(&host(), &[name("eth1")], &[], None, None)
                .unwrap()
                .name,
            "eth1"
        );
        let chosen = choose(&host(), &[address("169.254.3.3")], &[], None, None).unwrap();
        assert_eq!(chosen.name, "eth0");
        assert_eq!(chosen.address, Ipv4Addr::new(169, 254, 3, 3));
        let chosen = choose(&host(), &[address("fd00::2")], &[], None, None).unwrap();
        assert_eq!(chosen.name, "eth1");
        assert_eq!(chosen.address, Ipv4Addr::new(192, 168, 7, 2));
        assert_eq!(chosen.public_ipv6, Some("fd00::2".parse().unwrap()));
    }

    #[test]
    fn first_matching_iface_wins() {
        let specs = [name("eth9"), name("docker0"), name("eth1"), name("eth0")];
        assert_eq!(
            choose(&host(), &specs, &[], None, None).unwrap().name,
            "eth1"
        );
    }

    #[test]
    fn iface_without_match_lists_reasons() {
        let specs = [name("eth9"), name("docker0"), address("10.9.9.9")];
        let err = choose(&host(), &specs, &[], None, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no interface matches -iface eth9 (no such interface), docker0 (interface has no IPv4 address), \
             10.9.9.9 (no interface has this address); interfaces present: lo, eth0, eth1, docker0"
        );
    }

    #[test]
    fn regex_matches_addresses_before_names() {
        let regexes = [Regex::new("^192\\.168\\.|^eth0$").unwrap()];
        let chosen = choose(&host(), &[], &regexes, None, None).unwrap();
        assert_eq!(chosen.name, "eth1");
    }

    #[test]
    fn regex_matches_names() {
        let regexes = [Regex::new("^docker"), Regex::new("^eth")].map(Result::unwrap);
        let chosen = choose(&host(), &[], &regexes, None, None).unwrap();
        assert_eq!(chosen.name, "eth0");
        assert_eq!(chosen.address, Ipv4Addr::new(10, 25, 31, 61));
    }

    #[test]
    fn iface_tried_before_regex() {
        let regexes = [Regex::new("^eth0$").unwrap()];
        let chosen = choose(&host(), &[name("eth1")], &regexes, None, None).unwrap();
        assert_eq!(chosen.name, "eth1");
        let chosen = choose(&host(), &[name("eth9")], &regexes, None, None).unwrap();
        assert_eq!(chosen.name, "eth0");
    }

    #[test]
    fn regex_without_match() {
        let regexes = [Regex::new("^wl").unwrap()];
        let err = choose(&host(), &[name("eth9")], &regexes, None, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no interface with an IPv4 address matches -iface-regex ^wl (after -iface eth9 (no such interface)); \
             interfaces present: lo, eth0, eth1, docker0"
        );
    }

    #[test]
    fn no_default_route() {
        let mut snapshot = host();
        snapshot.default_route = None;
        let err = choose(&snapshot, &[], &[], None, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "there is no IPv4 default route to pick an interface from; choose one with -iface or -iface-regex"
        );
    }

    #[test]
    fn default_route_without_address() {
        let mut snapshot = host();
        snapshot.default_route = Some(4);
        let err = choose(&snapshot, &[], &[], None, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "interface docker0 of the default route has no IPv4 address; choose another with -iface or -iface-regex"
        );
    }

    #[tokio::test]
    async fn snapshot_reads_loopback() {
        let snapshot = snapshot().await.unwrap();
        let lo = snapshot
            .links
            .iter()
            .find(|link| link.name == "lo")
            .expect("lo listed");
        assert!(lo.ipv4.contains(&Ipv4Addr::LOCALHOST), "{lo:?}");
        assert!(lo.mtu > 0);
        let chosen = choose(&snapshot, &[address("127.0.0.1")], &[], None, None).unwrap();
        assert_eq!(chosen.name, "lo");
    }
}
