//! flanneld's command line and environment.
//!
//! Flags follow Go's flag package, as the daemon this one replaces did:
//! `-name=value`, `-name value`, `--name=value` and `--name value` all work,
//! and boolean flags take `-name` or `-name=false`. Every flag can also be
//! set from the environment as `FLANNELD_<NAME>` (upper case, dashes as
//! underscores); a flag given on the command line wins. Values are checked
//! here, before the daemon opens any socket.

mod values;

use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};
use regex::Regex;

pub use values::{EtcdApi, IfaceSpec, Problem};

#[cfg(test)]
mod tests;

/// The environment variable that sets `-v`.
const VERBOSITY_ENV: &str = "FLANNELD_V";

/// Default `-etcd-endpoints`.
pub const DEFAULT_ETCD_ENDPOINTS: &str = "http://127.0.0.1:4001,http://127.0.0.1:2379";

/// The way a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `-name value` or `-name=value`; the last one given wins.
    Value,
    /// Like `Value`, but every occurrence adds to a list.
    List,
    /// `-name` means true; `-name=false` sets false. Never takes the next
    /// argument, as in Go.
    Bool,
}

/// One flag: its name, the environment variable that can set it, how it
/// takes a value, its default and its help text.
#[derive(Debug)]
struct Flag {
    name: &'static str,
    env: &'static str,
    kind: Kind,
    value_name: &'static str,
    default: Option<&'static str>,
    help: &'static str,
}

const fn flag(
    name: &'static str,
    env: &'static str,
    kind: Kind,
    value_name: &'static str,
    default: Option<&'static str>,
    help: &'static str,
) -> Flag {
    Flag {
        name,
        env,
        kind,
        value_name,
        default,
        help,
    }
}

use Kind::{Bool, List, Value};

/// Every flag flanneld accepts besides `-help`, `-version` and `-v`.
const FLAGS: &[Flag] = &[
    flag("etcd-endpoints", "FLANNELD_ETCD_ENDPOINTS", Value, "URLS", Some(DEFAULT_ETCD_ENDPOINTS),
        "Comma-separated etcd endpoints (http:// or https://)"),
    flag("etcd-prefix", "FLANNELD_ETCD_PREFIX", Value, "PATH", Some("/coreos.com/network"),
        "etcd key prefix holding config and subnets/"),
    flag("etcd-api", "FLANNELD_ETCD_API", Value, "v3|v2", Some("v3"),
        "etcd API that holds the network: v3, or v2 to share a network with flannel 0.5.x daemons (etcd needs --enable-v2=true)"),
    flag("etcd-cafile", "FLANNELD_ETCD_CAFILE", Value, "FILE", None,
        "CA certificate (PEM) to verify the etcd servers"),
    flag("etcd-certfile", "FLANNELD_ETCD_CERTFILE", Value, "FILE", None,
        "Client certificate (PEM) for etcd; needs -etcd-keyfile"),
    flag("etcd-keyfile", "FLANNELD_ETCD_KEYFILE", Value, "FILE", None,
        "Client private key (PEM) for etcd; needs -etcd-certfile"),
    flag("etcd-username", "FLANNELD_ETCD_USERNAME", Value, "NAME", None,
        "User name for etcd authentication"),
    flag("etcd-password", "FLANNELD_ETCD_PASSWORD", Value, "PASSWORD", None,
        "Password for etcd authentication; needs -etcd-username"),
    flag("iface", "FLANNELD_IFACE", List, "NAME|ADDRESS", None,
        "Interface (name or address) for overlay traffic; repeat to give fallbacks, the first match wins"),
    flag("iface-regex", "FLANNELD_IFACE_REGEX", List, "REGEX", None,
        "Regular expression matched against interface names and addresses; tried after -iface; repeatable"),
    flag("public-ip", "FLANNELD_PUBLIC_IP", Value, "ADDRESS", None,
        "IPv4 address other hosts send overlay traffic to (default: the interface's address)"),
    flag("public-ipv6", "FLANNELD_PUBLIC_IPV6", Value, "ADDRESS", None,
        "IPv6 address other hosts send overlay traffic to when the config enables IPv6 (default: the interface's global IPv6 address)"),
    flag("subnet-file", "FLANNELD_SUBNET_FILE", Value, "FILE", Some("/run/flannel/subnet.env"),
        "File to write the subnet environment to"),
    flag("ip-masq", "FLANNELD_IP_MASQ", Bool, "BOOL", Some("false"),
        "Masquerade traffic leaving the overlay (iptables nat rules)"),
    flag("subnet-lease-renew-margin", "FLANNELD_SUBNET_LEASE_RENEW_MARGIN", Value, "MINUTES", Some("60"),
        "Renew the lease when less than this many minutes of it are left"),
    flag("healthz-ip", "FLANNELD_HEALTHZ_IP", Value, "ADDRESS", Some("0.0.0.0"),
        "Address for the /healthz and /readyz endpoints"),
    flag("healthz-port", "FLANNELD_HEALTHZ_PORT", Value, "PORT", Some("0"),
        "Port for the /healthz and /readyz endpoints; 0 turns them off"),
    flag("iptables-resync", "FLANNELD_IPTABLES_RESYNC", Value, "SECONDS", Some("5"),
        "Re-check the iptables rules this often (seconds, or a duration such as 30s)"),
    flag("iptables-forward-rules", "FLANNELD_IPTABLES_FORWARD_RULES", Bool, "BOOL", Some("true"),
        "Accept overlay traffic in the filter table's FORWARD chain"),
    flag("udp-check-sender", "FLANNELD_UDP_CHECK_SENDER", Bool, "BOOL", Some("true"),
        "udp backend: drop datagrams whose source is not a known peer's PublicIP; false for peers behind NAT"),
];

/// glog's flags, which the Go daemon accepted because it logged through
/// glog. They are accepted and ignored, so that unit files passing them
/// keep working; logs always go to stderr.
const IGNORED_FLAGS: &[(&str, Kind)] = &[
    ("logtostderr", Bool),
    ("alsologtostderr", Bool),
    ("stderrthreshold", Value),
    ("log_dir", Value),
    ("log_backtrace_at", Value),
    ("vmodule", Value),
];

/// Options of the etcd connection.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// The etcd API version to speak.
    pub api: EtcdApi,
    /// Endpoint URLs, tried in order.
    pub endpoints: Vec<String>,
    /// Key prefix without a trailing `/`, e.g. `/coreos.com/network`.
    pub prefix: String,
    /// CA certificate to verify the servers.
    pub ca_file: Option<PathBuf>,
    /// Client certificate.
    pub cert_file: Option<PathBuf>,
    /// Client private key.
    pub key_file: Option<PathBuf>,
    /// User name for authentication.
    pub username: Option<String>,
    /// Password for authentication.
    pub password: Option<String>,
}

impl fmt::Debug for EtcdOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("api", &self.api)
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// The checked settings from the command line and the environment.
#[derive(Debug, Clone)]
pub struct Options {
    /// etcd connection.
    pub etcd: EtcdOptions,
    /// `-iface` values in the order given.
    pub ifaces: Vec<IfaceSpec>,
    /// `-iface-regex` values in the order given.
    pub iface_regexes: Vec<Regex>,
    /// Address to advertise instead of the interface's.
    pub public_ip: Option<Ipv4Addr>,
    /// IPv6 address to advertise instead of the interface's.
    pub public_ipv6: Option<Ipv6Addr>,
    /// Path of subnet.env.
    pub subnet_file: PathBuf,
    /// Install the masquerade rules.
    pub ip_masq: bool,
    /// Renew the lease when less than this is left.
    pub renew_margin: Duration,
    /// Listener for `/healthz` and `/readyz`; `None` when the port is 0.
    pub healthz: Option<SocketAddr>,
    /// Interval between iptables checks.
    pub iptables_resync: Duration,
    /// Install the FORWARD accept rules.
    pub iptables_forward_rules: bool,
    /// udp backend: drop datagrams from unknown senders.
    pub udp_check_sender: bool,
    /// `-v` level: 0 info, 1 and 2 debug, 3 and above trace.
    pub verbosity: u8,
    /// glog flags that were given and are ignored.
    pub ignored: Vec<&'static str>,
}

/// The source of a value, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The command line.
    CommandLine,
    /// The named environment variable.
    Environment(&'static str),
    /// The built-in default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::CommandLine => Ok(()),
            Origin::Environment(name) => write!(f, " (from environment variable {name})"),
            Origin::Default => f.write_str(" (the default)"),
        }
    }
}

/// A rejected flag value or combination of flags.
#[derive(Debug, thiserror::Error)]
pub enum ArgError {
    /// A flag's value is invalid.
    #[error("invalid value {value:?} for flag -{flag}{origin}: {problem}")]
    Invalid {
        /// The flag, without dashes.
        flag: &'static str,
        /// The value as given.
        value: String,
        /// The source of the value.
        origin: Origin,
        /// The problem with the value.
        problem: Problem,
    },
    /// TLS files are given, but an endpoint is plain HTTP.
    #[error("flag -{flag} turns TLS on, but endpoint {endpoint:?} in -etcd-endpoints uses http; use https:// endpoints with TLS, or drop the TLS flags")]
    TlsWithHttp {
        /// The TLS flag that is set.
        flag: &'static str,
        /// The first plain-HTTP endpoint.
        endpoint: String,
    },
    /// A flag is set whose partner flag is missing.
    #[error("flag -{given} is set but -{missing} is not; set both or neither")]
    MissingPartner {
        /// The flag that is set.
        given: &'static str,
        /// The flag that is missing.
        missing: &'static str,
    },
}

/// A failure to parse the command line.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The command line is malformed, or `-help`/`-version` was given:
    /// clap prints the message and picks the exit code.
    #[error(transparent)]
    Syntax(#[from] clap::Error),
    /// A value is invalid.
    #[error(transparent)]
    Invalid(#[from] ArgError),
}

/// Builds the clap command.
pub fn command() -> Command {
    let mut command = Command::new("flanneld")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Leases this host's overlay subnet in etcd, runs the overlay backend and writes subnet.env")
        .after_help(
            "Flags also work with one dash (-etcd-endpoints=URL), and each can be set from the \
             environment variable shown; the command line wins.",
        )
        .args_override_self(true);
    for flag in FLAGS {
        let mut arg = Arg::new(flag.name)
            .long(flag.name)
            .value_name(flag.value_name)
            .help(flag.help)
            .env(flag.env);
        if let Some(default) = flag.default {
            arg = arg.default_value(default);
        }
        arg = match flag.kind {
            Value => arg.action(ArgAction::Set).allow_hyphen_values(true),
            List => arg.action(ArgAction::Append).allow_hyphen_values(true),
            Bool => arg
                .action(ArgAction::Set)
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("true"),
        };
        if flag.name == "etcd-password" {
            arg = arg.hide_env_values(true);
        }
        command = command.arg(arg);
    }
    for &(name, kind) in IGNORED_FLAGS {
        let arg = Arg::new(name).long(name).hide(true);
        command = command.arg(match kind {
            Bool => arg
                .action(ArgAction::Set)
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("true"),
            Value | List => arg.action(ArgAction::Set).allow_hyphen_values(true),
        });
    }
    command.arg(
        Arg::new("v")
            .long("v")
            .value_name("LEVEL")
            .num_args(0..=1)
            .default_missing_value("1")
            .action(ArgAction::Set)
            .help("Log verbosity: 0 info, 1-2 debug, 3 and above trace (RUST_LOG overrides) [env: FLANNELD_V]"),
    )
}

/// Rewrites Go-style arguments into clap's: `-name` becomes `--name` for
/// every long flag, and the value after a flag that takes one is passed
/// through untouched even when it starts with a dash. `-h` and `-V` stay
/// short flags; arguments after `--` are left alone.
pub fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args = args.into_iter();
    let mut out: Vec<OsString> = args.next().into_iter().collect();
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            out.push(arg);
            out.extend(args);
            break;
        }
        let body = match text.strip_prefix("--").or_else(|| text.strip_prefix('-')) {
            Some(body) if !body.is_empty() => body,
            _ => {
                out.push(arg);
                continue;
            }
        };
        let (name, has_inline_value) = match body.split_once('=') {
            Some((name, _)) => (name, true),
            None => (body, false),
        };
        if !text.starts_with("--") && (name == "h" || name == "V") {
            out.push(arg);
            continue;
        }

        out.push(OsString::from(format!("--{body}")));
        let takes_next = FLAGS
            .iter()
            .map(|flag| (flag.name, flag.kind))
            .chain(IGNORED_FLAGS.iter().copied())
            .any(|(flag, kind)| flag == name && kind != Bool);
        if takes_next && !has_inline_value {
            if let Some(value) = args.next() {
                out.push(value);
            }
        }
    }
    out
}

/// Parses and checks the arguments; `env` looks up environment variables.
pub fn parse<I>(args: I, env: impl Fn(&str) -> Option<String>) -> Result<Options, ParseError>
where
    I: IntoIterator<Item = OsString>,
{
    let matches = command().try_get_matches_from(normalize_args(args))?;
    let lookup = Lookup {
        matches: &matches,
        env: &env,
    };
    Ok(lookup.options()?)
}

/// Resolves each flag from the command line, then the environment, then
/// the default.
struct Lookup<'a, E> {
    matches: &'a ArgMatches,
    env: &'a E,
}

impl<E: Fn(&str) -> Option<String>> Lookup<'_, E> {
    fn flag(name: &str) -> &'static Flag {
        FLAGS
            .iter()
            .find(|flag| flag.name == name)
            .expect("flag names used in lookups are in FLAGS")
    }

    /// Returns the values of a flag and their source; empty when unset.
    fn raw(&self, name: &'static str) -> (Vec<String>, Origin) {
        let flag = Self::flag(name);
        if self.matches.value_source(name) == Some(ValueSource::CommandLine) {
            let values = self
                .matches
                .get_many::<String>(name)
                .map(|values| values.cloned().collect())
                .unwrap_or_default();
            return (values, Origin::CommandLine);
        }
        if let Some(value) = (self.env)(flag.env) {
            let values = match flag.kind {
                // Interface names never contain commas, so a list is natural here.
                List if name == "iface" => value
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect(),
                _ => vec![value],
            };
            return (values, Origin::Environment(flag.env));
        }
        let values = flag.default.map(str::to_owned).into_iter().collect();
        (values, Origin::Default)
    }

    /// Parses the last value of a flag, if it has one.
    fn optional<T>(
        &self,
        name: &'static str,
        parse: impl Fn(&str) -> Result<T, Problem>,
    ) -> Result<Option<T>, ArgError> {
        let (values, origin) = self.raw(name);
        let Some(value) = values.last() else {
            return Ok(None);
        };
        parse(value).map(Some).map_err(|problem| ArgError::Invalid {
            flag: name,
            value: value.clone(),
            origin,
            problem,
        })
    }

    /// Parses the last value of a flag that has a default.
    fn required<T>(
        &self,
        name: &'static str,
        parse: impl Fn(&str) -> Result<T, Problem>,
    ) -> Result<T, ArgError> {
        Ok(self
            .optional(name, parse)?
            .expect("flags read with `required` have a default"))
    }

    /// Parses every value of a list flag.
    fn list<T>(
        &self,
        name: &'static str,
        parse: impl Fn(&str) -> Result<T, Problem>,
    ) -> Result<Vec<T>, ArgError> {
        let (values, origin) = self.raw(name);
        values
            .iter()
            .map(|value| {
                parse(value).map_err(|problem| ArgError::Invalid {
                    flag: name,
                    value: value.clone(),
                    origin: origin.clone(),
                    problem,
                })
            })
            .collect()
    }

    fn options(&self) -> Result<Options, ArgError> {
        let etcd = EtcdOptions {
            api: self.required("etcd-api", values::parse_etcd_api)?,
            endpoints: self.required("etcd-endpoints", values::parse_endpoints)?,
            prefix: self.required("etcd-prefix", values::parse_prefix)?,
            ca_file: self.optional("etcd-cafile", values::parse_pem_file)?,
            cert_file: self.optional("etcd-certfile", values::parse_pem_file)?,
            key_file: self.optional("etcd-keyfile", values::parse_pem_file)?,
            username: self.optional("etcd-username", |value| Ok(value.to_owned()))?,
            password: self.optional("etcd-password", |value| Ok(value.to_owned()))?,
        };
        check_partner(
            etcd.cert_file.is_some(),
            etcd.key_file.is_some(),
            "etcd-certfile",
            "etcd-keyfile",
        )?;
        let tls_flag = [
            ("etcd-cafile", etcd.ca_file.is_some()),
            ("etcd-certfile", etcd.cert_file.is_some()),
        ]
        .into_iter()
        .find_map(|(flag, set)| set.then_some(flag));
        let http_endpoint = etcd.endpoints.iter().find(|e| e.starts_with("http://"));
        if let (Some(flag), Some(endpoint)) = (tls_flag, http_endpoint) {
            return Err(ArgError::TlsWithHttp {
                flag,
                endpoint: endpoint.clone(),
            });
        }
        if etcd.password.is_some() && etcd.username.is_none() {
            return Err(ArgError::MissingPartner {
                given: "etcd-password",
                missing: "etcd-username",
            });
        }

        let healthz_ip: IpAddr = self.required("healthz-ip", values::parse_ip)?;
        let healthz_port = self.required("healthz-port", values::parse_port)?;

        Ok(Options {
            etcd,
            ifaces: self.list("iface", values::parse_iface)?,
            iface_regexes: self.list("iface-regex", values::parse_regex)?,
            public_ip: self.optional("public-ip", values::parse_ipv4)?,
            public_ipv6: self.optional("public-ipv6", values::parse_ipv6)?,
            subnet_file: self.required("subnet-file", values::parse_output_file)?,
            ip_masq: self.required("ip-masq", values::parse_bool)?,
            renew_margin: self.required("subnet-lease-renew-margin", values::parse_renew_margin)?,
            healthz: (healthz_port != 0).then(|| SocketAddr::new(healthz_ip, healthz_port)),
            iptables_resync: self.required("iptables-resync", values::parse_duration)?,
            iptables_forward_rules: self.required("iptables-forward-rules", values::parse_bool)?,
            udp_check_sender: self.required("udp-check-sender", values::parse_bool)?,
            verbosity: self.verbosity()?,
            ignored: IGNORED_FLAGS
                .iter()
                .map(|&(name, _)| name)
                .filter(|name| self.matches.value_source(name) == Some(ValueSource::CommandLine))
                .collect(),
        })
    }

    /// Reads `-v`, else `FLANNELD_V`; 0 when neither is set.
    fn verbosity(&self) -> Result<u8, ArgError> {
        let (value, origin) = match self.matches.get_one::<String>("v") {
            Some(value) => (value.clone(), Origin::CommandLine),
            None => match (self.env)(VERBOSITY_ENV) {
                Some(value) => (value, Origin::Environment(VERBOSITY_ENV)),
                None => return Ok(0),
            },
        };
        values::parse_level(&value).map_err(|problem| ArgError::Invalid {
            flag: "v",
            value,
            origin,
            problem,
        })
    }
}

fn check_partner(
    first: bool,
    second: bool,
    first_name: &'static str,
    second_name: &'static str,
) -> Result<(), ArgError> {
    match (first, second) {
        (true, false) => Err(ArgError::MissingPartner {
            given: first_name,
            missing: second_name,
        }),
        (false, true) => Err(ArgError::MissingPartner {
            given: second_name,
            missing: first_name,
        }),
        _ => Ok(()),
    }
}
