//! The network configuration stored as JSON at `<prefix>/config`.
//!
//! Parsing follows the original daemon, which used Go's JSON decoder: key
//! names match regardless of ASCII case (when a key appears twice, the last
//! one wins), unknown keys are ignored, and `null` counts as absent. The
//! defaults and limits are applied here, so a [`NetworkConfig`] always
//! describes a usable network.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::{Map, Value};

use crate::cidr::Cidr;
use crate::range::{key, SubnetRange};

/// Backend type used when the config has no `Backend`.
pub const DEFAULT_BACKEND: &str = "udp";

/// A validated network configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The IPv4 overlay and its leasable subnets; `None` when `EnableIPv4`
    /// is false.
    pub ipv4: Option<SubnetRange<Ipv4Net>>,
    /// The IPv6 overlay and its leasable subnets; `Some` only when
    /// `EnableIPv6` is true.
    pub ipv6: Option<SubnetRange<Ipv6Net>>,
    /// The `Backend` object.
    pub backend: BackendConfig,
}

/// The config's `Backend` object: its type plus the backend's own options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// `Backend.Type` as written, or `"udp"` when there is no `Backend` or it
    /// has no `Type`.
    pub backend_type: String,
    /// Every other key of `Backend`, in the order written.
    pub options: Map<String, Value>,
}

/// Error for a rejected network config. Each message names the key, the
/// value and what would be valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The text is not JSON.
    #[error("network config is not valid JSON: {message} at line {line}, column {column}")]
    Syntax {
        /// One-based line of the error.
        line: usize,
        /// One-based column of the error.
        column: usize,
        /// The decoder's description.
        message: String,
    },
    /// The JSON is not an object.
    #[error(
        "network config must be a JSON object such as {{\"Network\": \"10.5.0.0/16\"}}, found {found}"
    )]
    NotAnObject {
        /// The JSON that was found.
        found: String,
    },
    /// Both address families are disabled.
    #[error("EnableIPv4 and EnableIPv6 are both false: enable at least one address family")]
    NoFamilyEnabled,
    /// A required network is missing.
    #[error("{key} is missing: it is required while {enable_key} is true; set it to a CIDR such as {example}")]
    MissingNetwork {
        /// `Network` or `IPv6Network`.
        key: String,
        /// `EnableIPv4` or `EnableIPv6`.
        enable_key: &'static str,
        /// A valid value to show.
        example: &'static str,
    },
    /// A key has a JSON value of the wrong type.
    #[error("{key} must be {expected}, found {found}")]
    WrongType {
        /// The key, such as `SubnetLen` or `Backend.Port`.
        key: String,
        /// What the key takes.
        expected: &'static str,
        /// The JSON that was found.
        found: String,
    },
    /// A string that should be an address or a CIDR does not parse.
    #[error("{key} {value:?} is not {expected}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value as written.
        value: String,
        /// What the key takes.
        expected: &'static str,
    },
    /// A network too small to hold four subnets.
    #[error(
        "{key} {network} is too small: it must hold at least four subnets, so its prefix must be /{max_prefix} or shorter"
    )]
    NetworkTooSmall {
        /// `Network` or `IPv6Network`.
        key: String,
        /// The network as given.
        network: String,
        /// The longest prefix that works.
        max_prefix: u8,
    },
    /// A subnet length outside what the network allows.
    #[error("{key} {value} is out of range: with {network} it must be from {min} to {max}")]
    SubnetLenOutOfRange {
        /// `SubnetLen` or `IPv6SubnetLen`.
        key: String,
        /// The value as given.
        value: u64,
        /// The network it was checked against.
        network: String,
        /// Smallest valid value.
        min: u8,
        /// Largest valid value.
        max: u8,
    },
    /// A subnet bound outside the network.
    #[error("{key} {value} is outside the network {network}")]
    OutsideNetwork {
        /// `SubnetMin`, `SubnetMax` or their IPv6 counterparts.
        key: String,
        /// The address as given.
        value: String,
        /// The network.
        network: String,
    },
    /// A subnet bound that does not start a subnet.
    #[error("{key} {value} is not on a /{subnet_len} boundary")]
    OffBoundary {
        /// `SubnetMin`, `SubnetMax` or their IPv6 counterparts.
        key: String,
        /// The address as given.
        value: String,
        /// The subnet length it must align to.
        subnet_len: u8,
    },
    /// The first leasable subnet comes after the last.
    #[error("{min_key} {min} is above {max_key} {max}")]
    MinAboveMax {
        /// `SubnetMin` or `IPv6SubnetMin`.
        min_key: String,
        /// Its value.
        min: String,
        /// `SubnetMax` or `IPv6SubnetMax`.
        max_key: String,
        /// Its value.
        max: String,
    },
}

impl NetworkConfig {
    /// Parses and validates the JSON stored at `<prefix>/config`, applying
    /// every default.
    pub fn parse(json: &str) -> Result<Self, ConfigError> {
        let value: Value = serde_json::from_str(json).map_err(|error| ConfigError::Syntax {
            line: error.line(),
            column: error.column(),
            message: syntax_message(&error),
        })?;
        let Value::Object(object) = value else {
            return Err(ConfigError::NotAnObject {
                found: describe(&value),
            });
        };
        let fields = Fields::new(&object);

        let enable_ipv4 = fields.boolean("EnableIPv4")?.unwrap_or(true);
        let enable_ipv6 = fields.boolean("EnableIPv6")?.unwrap_or(false);
        if !enable_ipv4 && !enable_ipv6 {
            return Err(ConfigError::NoFamilyEnabled);
        }

        let ipv4 = if enable_ipv4 {
            Some(family_range::<Ipv4Net>(&fields, &IPV4_RULES)?)
        } else {
            None
        };
        let ipv6 = if enable_ipv6 {
            Some(family_range::<Ipv6Net>(&fields, &IPV6_RULES)?)
        } else {
            None
        };
        let backend = BackendConfig::from_json(fields.get("Backend"))?;

        Ok(Self {
            ipv4,
            ipv6,
            backend,
        })
    }
}

impl BackendConfig {
    fn from_json(value: Option<&Value>) -> Result<Self, ConfigError> {
        let object = match value {
            None => {
                return Ok(Self {
                    backend_type: DEFAULT_BACKEND.to_owned(),
                    options: Map::new(),
                })
            }
            Some(Value::Object(object)) => object,
            Some(other) => {
                return Err(ConfigError::WrongType {
                    key: "Backend".to_owned(),
                    expected: "a JSON object such as {\"Type\": \"vxlan\"}",
                    found: describe(other),
                })
            }
        };

        let mut backend_type = None;
        let mut options = Map::new();
        for (name, value) in object {
            if !name.eq_ignore_ascii_case("Type") {
                options.insert(name.clone(), value.clone());
                continue;
            }
            match value {
                Value::Null => {}
                Value::String(text) => backend_type = Some(text.clone()),
                other => {
                    return Err(ConfigError::WrongType {
                        key: "Backend.Type".to_owned(),
                        expected: "a string such as \"udp\" or \"vxlan\"",
                        found: describe(other),
                    })
                }
            }
        }

        let backend = Self {
            backend_type: backend_type.unwrap_or_else(|| DEFAULT_BACKEND.to_owned()),
            options,
        };
        backend.port()?;
        Ok(backend)
    }

    /// Looks up a backend option by name, ignoring ASCII case; the last
    /// match wins, as with the config's own keys.
    pub fn option(&self, name: &str) -> Option<&Value> {
        self.options
            .iter()
            .rev()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
            .filter(|value| !value.is_null())
    }

    /// `Backend.Port`: `None` when absent or 0 (the backend's default).
    /// [`NetworkConfig::parse`] has already checked it, so this errs only
    /// on a `BackendConfig` built by hand.
    pub fn port(&self) -> Result<Option<u16>, ConfigError> {
        let Some(value) = self.option("Port") else {
            return Ok(None);
        };
        match value.as_u64().map(u16::try_from) {
            Some(Ok(0)) => Ok(None),
            Some(Ok(port)) => Ok(Some(port)),
            _ => Err(ConfigError::WrongType {
                key: "Backend.Port".to_owned(),
                expected: "an integer from 1 to 65535, or 0 for the backend's default",
                found: describe(value),
            }),
        }
    }
}

/// The limits that differ between the two address families.
struct FamilyRules {
    enable_key: &'static str,
    example: &'static str,
    /// The longest network prefix that still contains four default subnets.
    max_network_prefix: u8,
    /// Network prefixes up to this get `default_subnet_len`.
    wide_network_prefix: u8,
    default_subnet_len: u8,
    max_subnet_len: u8,
    addr_expected: &'static str,
    cidr_expected: &'static str,
}

const IPV4_RULES: FamilyRules = FamilyRules {
    enable_key: "EnableIPv4",
    example: "\"10.5.0.0/16\"",
    max_network_prefix: 28,
    wide_network_prefix: 22,
    default_subnet_len: 24,
    max_subnet_len: 30,
    addr_expected: "an IPv4 address such as \"10.5.1.0\"",
    cidr_expected: "an IPv4 CIDR such as \"10.5.0.0/16\"",
};

const IPV6_RULES: FamilyRules = FamilyRules {
    enable_key: "EnableIPv6",
    example: "\"fc00::/48\"",
    max_network_prefix: 124,
    wide_network_prefix: 62,
    default_subnet_len: 64,
    max_subnet_len: 126,
    addr_expected: "an IPv6 address such as \"fc00:0:0:1::\"",
    cidr_expected: "an IPv6 CIDR such as \"fc00::/48\"",
};

/// Address types that parse from config strings.
trait ConfigAddr: Sized + FromStr {
    fn is_unspecified_addr(&self) -> bool;
}

impl ConfigAddr for Ipv4Addr {
    fn is_unspecified_addr(&self) -> bool {
        self.is_unspecified()
    }
}

impl ConfigAddr for Ipv6Addr {
    fn is_unspecified_addr(&self) -> bool {
        self.is_unspecified()
    }
}

/// Builds the leasable range of one address family from the config keys.
fn family_range<N>(fields: &Fields<'_>, rules: &FamilyRules) -> Result<SubnetRange<N>, ConfigError>
where
    N: Cidr,
    N::Addr: ConfigAddr,
{
    let network_key = key::<N>("Network");
    let Some(text) = fields.string(&network_key)? else {
        return Err(ConfigError::MissingNetwork {
            key: network_key,
            enable_key: rules.enable_key,
            example: rules.example,
        });
    };
    // Host bits are dropped, as the original daemon did.
    let network = text
        .parse::<N>()
        .map_err(|_| ConfigError::InvalidValue {
            key: network_key.clone(),
            value: text.to_owned(),
            expected: rules.cidr_expected,
        })?
        .truncated();

    let subnet_len = subnet_len::<N>(fields, rules, network, &network_key)?;
    let min = bound::<N>(fields, rules, "SubnetMin")?
        .unwrap_or_else(|| subnet_start::<N>(network, subnet_len, 1));
    let max = bound::<N>(fields, rules, "SubnetMax")?.unwrap_or_else(|| {
        let last = N::addr_to_bits(network.last_addr());
        N::addr_from_bits(last & !(subnet_size::<N>(subnet_len) - 1))
    });
    SubnetRange::new(network, subnet_len, min, max)
}

/// Returns the subnet length: the config's value checked against the network, or
/// the default for the network's size. Zero counts as absent.
fn subnet_len<N: Cidr>(
    fields: &Fields<'_>,
    rules: &FamilyRules,
    network: N,
    network_key: &str,
) -> Result<u8, ConfigError> {
    let len_key = key::<N>("SubnetLen");
    let prefix = network.prefix_len();
    let too_small = || ConfigError::NetworkTooSmall {
        key: network_key.to_owned(),
        network: network.to_string(),
        max_prefix: rules.max_network_prefix,
    };

    match fields.unsigned(&len_key)? {
        None | Some(0) => {
            if prefix > rules.max_network_prefix {
                Err(too_small())
            } else if prefix <= rules.wide_network_prefix {
                Ok(rules.default_subnet_len)
            } else {
                Ok(prefix + 2)
            }
        }
        Some(value) => {
            let min = prefix + 2;
            if min > rules.max_subnet_len {
                return Err(too_small());
            }
            if value < u64::from(min) || value > u64::from(rules.max_subnet_len) {
                return Err(ConfigError::SubnetLenOutOfRange {
                    key: len_key,
                    value,
                    network: format!("{network_key} {network}"),
                    min,
                    max: rules.max_subnet_len,
                });
            }
            Ok(value as u8)
        }
    }
}

/// `SubnetMin` or `SubnetMax` (or the IPv6 keys) when given; an unspecified
/// address (`0.0.0.0`, `::`) counts as absent, as it did in the original.
fn bound<N>(
    fields: &Fields<'_>,
    rules: &FamilyRules,
    name: &str,
) -> Result<Option<N::Addr>, ConfigError>
where
    N: Cidr,
    N::Addr: ConfigAddr,
{
    let bound_key = key::<N>(name);
    let Some(text) = fields.string(&bound_key)? else {
        return Ok(None);
    };
    let addr = text
        .parse::<N::Addr>()
        .map_err(|_| ConfigError::InvalidValue {
            key: bound_key,
            value: text.to_owned(),
            expected: rules.addr_expected,
        })?;
    Ok((!addr.is_unspecified_addr()).then_some(addr))
}

/// Returns the number of addresses in one subnet of length `subnet_len`; at least
/// 2 since subnet lengths stop short of a full address.
fn subnet_size<N: Cidr>(subnet_len: u8) -> u128 {
    1u128 << (N::BITS - subnet_len)
}

/// Returns the network address of the `index`-th subnet of `network`.
fn subnet_start<N: Cidr>(network: N, subnet_len: u8, index: u128) -> N::Addr {
    let subnet = network
        .nth_subnet(subnet_len, index)
        .expect("a validated network contains at least four subnets");
    subnet.network_addr()
}

/// The config object's keys, looked up regardless of ASCII case.
struct Fields<'a> {
    by_lower_name: HashMap<String, &'a Value>,
}

impl<'a> Fields<'a> {
    fn new(object: &'a Map<String, Value>) -> Self {
        let mut by_lower_name = HashMap::new();
        for (name, value) in object {
            // Later keys replace earlier ones, as in Go's decoder.
            by_lower_name.insert(name.to_ascii_lowercase(), value);
        }
        Self { by_lower_name }
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.by_lower_name
            .get(&name.to_ascii_lowercase())
            .copied()
            .filter(|value| !value.is_null())
    }

    fn string(&self, name: &str) -> Result<Option<&'a str>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(other) => Err(wrong_type(name, "a string", other)),
        }
    }

    fn unsigned(&self, name: &str) -> Result<Option<u64>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(value) => value
                .as_u64()
                .map(Some)
                .ok_or_else(|| wrong_type(name, "a non-negative integer", value)),
        }
    }

    fn boolean(&self, name: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(*flag)),
            Some(other) => Err(wrong_type(name, "true or false", other)),
        }
    }
}

fn wrong_type(name: &str, expected: &'static str, found: &Value) -> ConfigError {
    ConfigError::WrongType {
        key: name.to_owned(),
        expected,
        found: describe(found),
    }
}

/// Formats a JSON value compactly for an error message, cut to 60
/// characters followed by `...` when longer. Backends use it for the
/// values of their own options.
pub fn describe(value: &Value) -> String {
    const MAX_CHARS: usize = 60;
    let text = value.to_string();
    if text.chars().count() <= MAX_CHARS {
        return text;
    }
    let cut: String = text.chars().take(MAX_CHARS).collect();
    format!("{cut}...")
}

/// Returns the decoder's message without its own " at line L column C" suffix,
/// which [`ConfigError::Syntax`] states itself.
fn syntax_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(position) => text[..position].to_owned(),
        None => text,
    }
}
