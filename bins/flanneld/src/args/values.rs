//! Parsers for single flag values. Each returns the typed value or a
//! [`Problem`] saying what is wrong and what is valid; the caller adds the
//! flag name and the value.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;

/// The problem with one flag value, and what would be valid.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// An etcd endpoint is not of the form `scheme://host[:port]`.
    #[error("endpoint {0:?} is not a URL; expected http://HOST:PORT or https://HOST:PORT")]
    NotUrl(String),
    /// An etcd endpoint uses a scheme other than http or https.
    #[error("endpoint {endpoint:?} uses scheme {scheme:?}; expected http or https")]
    UnsupportedScheme {
        /// The endpoint as given.
        endpoint: String,
        /// Its scheme.
        scheme: String,
    },
    /// An etcd endpoint names a port outside 1..=65535.
    #[error("endpoint {0:?} has a port out of range; expected 1 to 65535")]
    EndpointPort(String),
    /// The endpoint list contains no endpoint.
    #[error("no endpoint given; expected a comma-separated list such as http://127.0.0.1:2379")]
    NoEndpoints,
    /// The etcd prefix does not start with `/`.
    #[error("not an absolute key prefix; expected a path starting with '/', such as /coreos.com/network")]
    RelativePrefix,
    /// A file flag names a path that does not exist.
    #[error("file not found")]
    FileNotFound,
    /// A file flag names a directory.
    #[error("is a directory; expected a file")]
    IsDirectory,
    /// A file flag names a path that cannot be inspected.
    #[error("cannot read the file: {0}")]
    Unreadable(std::io::Error),
    /// The value is not an IPv4 address.
    #[error("not an IPv4 address; expected dotted decimal such as 10.25.31.61")]
    NotIpv4,
    /// The value is not an IPv6 address.
    #[error("not an IPv6 address; expected an address such as fd00::1")]
    NotIpv6,
    /// The value is not an IPv4 or IPv6 address.
    #[error("not an IP address; expected an address such as 0.0.0.0 or ::")]
    NotIp,
    /// The value is neither an interface name nor an IP address.
    #[error("not an interface name or IP address; names have 1 to 15 characters without '/' or white space")]
    NotInterface,
    /// The value is not a valid regular expression.
    #[error("not a valid regular expression: {0}")]
    Regex(#[from] regex::Error),
    /// The value is a number, but not a port.
    #[error("port out of range; expected 0 (disabled) to 65535")]
    PortOutOfRange,
    /// The value is not a number.
    #[error("not a port number; expected 0 (disabled) to 65535")]
    NotPort,
    /// The lease renewal margin is not within the lease's 24 hours.
    #[error("out of range; expected whole minutes from 1 to 1439 (the lease lasts 24 hours)")]
    RenewMargin,
    /// The value is not a duration.
    #[error("not a duration; expected whole seconds such as 5, or a number with a unit such as 30s, 2m or 1h")]
    BadDuration,
    /// The duration is shorter than one second.
    #[error("too short; expected at least 1 second")]
    DurationTooShort,
    /// A TLS file holds no PEM block.
    #[error("not a PEM file; expected text with a line such as -----BEGIN CERTIFICATE-----")]
    NotPem,
    /// The value is not a boolean.
    #[error("not a boolean; expected true or false (also 1, 0, t, f)")]
    NotBool,
    /// The renewal margin is not a whole number of minutes.
    #[error(
        "not a number of minutes; expected whole minutes from 1 to 1439 (the lease lasts 24 hours)"
    )]
    NotMinutes,
    /// The etcd API version is neither v2 nor v3.
    #[error("unknown etcd API; expected v3, or v2 for networks that flannel 0.5.x daemons share")]
    EtcdApi,
    /// The value is not a verbosity level.
    #[error("not a verbosity level; expected a whole number from 0 to 255")]
    NotLevel,
}

/// An `-iface` value: an interface name or one of its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfaceSpec {
    /// An interface name such as `eth0`.
    Name(String),
    /// An address that one interface carries.
    Address(IpAddr),
}

/// Parses a boolean the way Go's flag package does.
pub fn parse_bool(value: &str) -> Result<bool, Problem> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(Problem::NotBool),
    }
}

/// Parses a comma-separated list of etcd endpoint URLs.
pub fn parse_endpoints(value: &str) -> Result<Vec<String>, Problem> {
    let endpoints: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect();
    if endpoints.is_empty() {
        return Err(Problem::NoEndpoints);
    }
    for endpoint in &endpoints {
        check_endpoint(endpoint)?;
    }
    Ok(endpoints)
}

/// Checks one endpoint: `http` or `https`, a host, an optional port, and
/// no path beyond `/`.
fn check_endpoint(endpoint: &str) -> Result<(), Problem> {
    let not_url = || Problem::NotUrl(endpoint.to_owned());
    let (scheme, rest) = endpoint.split_once("://").ok_or_else(not_url)?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return Err(not_url());
    }
    if scheme != "http" && scheme != "https" {
        return Err(Problem::UnsupportedScheme {
            endpoint: endpoint.to_owned(),
            scheme: scheme.to_owned(),
        });
    }

    let authority = match rest.split_once('/') {
        Some((authority, "")) => authority,
        Some(_) => return Err(not_url()),
        None => rest,
    };
    let (host, port) = split_host_port(authority).ok_or_else(not_url)?;
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|addr| addr.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    };
    if !host_ok {
        return Err(not_url());
    }
    if let Some(port) = port {
        if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) {
            return Err(not_url());
        }
        match port.parse::<u32>() {
            Ok(1..=65535) => {}
            _ => return Err(Problem::EndpointPort(endpoint.to_owned())),
        }
    }
    Ok(())
}

/// Splits `host:port`, `host`, `[v6]:port` or `[v6]`.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        return match rest {
            "" => Some((host, None)),
            _ => rest.strip_prefix(':').map(|port| (host, Some(port))),
        };
    }
    match authority.split_once(':') {
        Some((host, port)) => Some((host, Some(port))),
        None => Some((authority, None)),
    }
}

/// Checks an etcd key prefix.
pub fn parse_prefix(value: &str) -> Result<String, Problem> {
    if !value.starts_with('/') {
        return Err(Problem::RelativePrefix);
    }
    Ok(value.trim_end_matches('/').to_owned())
}

/// Checks that a file exists and is not a directory.
pub fn parse_existing_file(value: &str) -> Result<PathBuf, Problem> {
    match std::fs::metadata(value) {
        Ok(meta) if meta.is_dir() => Err(Problem::IsDirectory),
        Ok(_) => Ok(PathBuf::from(value)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Err(Problem::FileNotFound),
        Err(err) => Err(Problem::Unreadable(err)),
    }
}

/// Checks a TLS file: it must exist and hold PEM text, such as a
/// certificate or a private key. The contents are checked in full when
/// the etcd client loads them.
pub fn parse_pem_file(value: &str) -> Result<PathBuf, Problem> {
    let path = parse_existing_file(value)?;
    let contents = std::fs::read(&path).map_err(Problem::Unreadable)?;
    if !contents
        .windows(PEM_MARKER.len())
        .any(|window| window == PEM_MARKER)
    {
        return Err(Problem::NotPem);
    }
    Ok(path)
}

/// The start of every PEM block's first line.
const PEM_MARKER: &[u8] = b"-----BEGIN ";

/// Checks a file that flanneld writes: it may not exist yet, but it must
/// not be a directory.
pub fn parse_output_file(value: &str) -> Result<PathBuf, Problem> {
    if value.is_empty() || Path::new(value).is_dir() {
        return Err(Problem::IsDirectory);
    }
    Ok(PathBuf::from(value))
}

/// Parses an IPv4 address.
pub fn parse_ipv4(value: &str) -> Result<Ipv4Addr, Problem> {
    value.parse().map_err(|_| Problem::NotIpv4)
}

/// Parses an IPv6 address.
pub fn parse_ipv6(value: &str) -> Result<Ipv6Addr, Problem> {
    value.parse().map_err(|_| Problem::NotIpv6)
}

/// Parses an IPv4 or IPv6 address.
pub fn parse_ip(value: &str) -> Result<IpAddr, Problem> {
    value.parse().map_err(|_| Problem::NotIp)
}

/// Parses an `-iface` value.
pub fn parse_iface(value: &str) -> Result<IfaceSpec, Problem> {
    if let Ok(address) = value.parse::<IpAddr>() {
        return Ok(IfaceSpec::Address(address));
    }
    // Linux limits interface names to IFNAMSIZ - 1 = 15 bytes.
    let valid = !value.is_empty()
        && value.len() <= 15
        && !value.chars().any(|c| c == '/' || c.is_whitespace());
    if !valid {
        return Err(Problem::NotInterface);
    }
    Ok(IfaceSpec::Name(value.to_owned()))
}

/// Compiles an `-iface-regex` value.
pub fn parse_regex(value: &str) -> Result<Regex, Problem> {
    Ok(Regex::new(value)?)
}

/// Parses a port; 0 turns the listener off.
pub fn parse_port(value: &str) -> Result<u16, Problem> {
    if value.is_empty() || !value.chars().all(|c| c.is_ascii_digit()) {
        return Err(Problem::NotPort);
    }
    value.parse().map_err(|_| Problem::PortOutOfRange)
}

/// Parses the renewal margin in whole minutes, 1 to 1439.
pub fn parse_renew_margin(value: &str) -> Result<Duration, Problem> {
    let minutes: i64 = value.parse().map_err(|_| Problem::NotMinutes)?;
    match minutes {
        1..=1439 => Ok(Duration::from_secs(minutes.unsigned_abs() * 60)),
        _ => Err(Problem::RenewMargin),
    }
}

/// The etcd API that holds the network's config and leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdApi {
    /// The v3 API (gRPC), used by current flannel daemons.
    V3,
    /// The v2 API (HTTP and JSON), used by flannel 0.5.x daemons; etcd
    /// 3.4 serves it only when started with `--enable-v2=true`.
    V2,
}

/// Parses `-etcd-api`: `v3` or `v2`, with or without the `v`.
pub fn parse_etcd_api(value: &str) -> Result<EtcdApi, Problem> {
    match value.to_ascii_lowercase().as_str() {
        "v3" | "3" => Ok(EtcdApi::V3),
        "v2" | "2" => Ok(EtcdApi::V2),
        _ => Err(Problem::EtcdApi),
    }
}

/// Parses a duration of at least one second: whole seconds (`5`), or a
/// sequence of numbers with the units `h`, `m` and `s` (`30s`, `1m30s`).
pub fn parse_duration(value: &str) -> Result<Duration, Problem> {
    let duration = if let Ok(seconds) = value.parse::<u64>() {
        Duration::from_secs(seconds)
    } else {
        parse_unit_duration(value).ok_or(Problem::BadDuration)?
    };
    if duration < Duration::from_secs(1) {
        return Err(Problem::DurationTooShort);
    }
    Ok(duration)
}

fn parse_unit_duration(value: &str) -> Option<Duration> {
    let mut total: u64 = 0;
    let mut rest = value;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "h" => 3600,
            "m" => 60,
            "s" => 1,
            _ => return None,
        };
        total = total.checked_add(number.checked_mul(factor)?)?;
        rest = &rest[unit_len..];
    }
    Some(Duration::from_secs(total))
}

/// Parses a `-v` level.
pub fn parse_level(value: &str) -> Result<u8, Problem> {
    value.parse().map_err(|_| Problem::NotLevel)
}
