//! Lease keys (`172.16.37.0-24`, `10.5.1.0-24&fc00:0:0:1::-64`) and lease
//! values (the JSON attributes stored under each key).
//!
//! Both are read as flannel wrote them and written as current flannel
//! daemons do, so that hosts running either implementation share one etcd.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::{Map, Value};

/// The key of a lease below `<prefix>/subnets/`.
///
/// The text form is the IPv4 subnet with a dash before its prefix length
/// (`172.16.37.0-24`). A dual-stack lease appends `&` and the IPv6 subnet in
/// the same form (`10.5.1.0-24&fc00:0:0:1::-64`). An IPv6-only lease writes
/// the IPv4 part as `0.0.0.0-0`, as flannel does.
///
/// A key names at least one subnet. [`FromStr`] enforces that, and the
/// constructors cannot break it, but the fields are public: a key with both
/// fields `None` is written as `0.0.0.0-0`, which does not parse back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseKey {
    /// The leased IPv4 subnet.
    pub ipv4: Option<Ipv4Net>,
    /// The leased IPv6 subnet of a dual-stack lease.
    pub ipv6: Option<Ipv6Net>,
}

/// The IPv4 part that flannel writes in the key of an IPv6-only lease.
const NO_IPV4: &str = "0.0.0.0-0";

/// What a valid key looks like, for error messages.
const KEY_FORMS: &str = "expected <IPv4 subnet>-<prefix length>, optionally followed by \
                         &<IPv6 subnet>-<prefix length>, such as 10.5.1.0-24&fc00:0:0:1::-64";

impl LeaseKey {
    /// Creates the key of an IPv4 lease.
    pub fn ipv4(subnet: Ipv4Net) -> Self {
        Self {
            ipv4: Some(subnet.trunc()),
            ipv6: None,
        }
    }

    /// Creates the key of an IPv6-only lease.
    pub fn ipv6(subnet: Ipv6Net) -> Self {
        Self {
            ipv4: None,
            ipv6: Some(subnet.trunc()),
        }
    }

    /// Creates the key of a dual-stack lease.
    pub fn dual_stack(ipv4: Ipv4Net, ipv6: Ipv6Net) -> Self {
        Self {
            ipv4: Some(ipv4.trunc()),
            ipv6: Some(ipv6.trunc()),
        }
    }
}

impl fmt::Display for LeaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ipv4 {
            Some(net) => write!(f, "{}-{}", net.network(), net.prefix_len())?,
            None => f.write_str(NO_IPV4)?,
        }
        if let Some(net) = self.ipv6 {
            write!(f, "&{}-{}", net.network(), net.prefix_len())?;
        }
        Ok(())
    }
}

impl FromStr for LeaseKey {
    type Err = LeaseKeyError;

    fn from_str(key: &str) -> Result<Self, Self::Err> {
        let malformed = |problem| LeaseKeyError {
            key: key.to_owned(),
            problem,
        };
        let (ipv4_text, ipv6_text) = match key.split_once('&') {
            Some((ipv4_text, ipv6_text)) => (ipv4_text, Some(ipv6_text)),
            None => (key, None),
        };

        let ipv6 = match ipv6_text {
            Some(text) => Some(parse_subnet::<Ipv6Addr>(text).map_err(malformed)?),
            None => None,
        };

        // `0.0.0.0-0` stands for "no IPv4 subnet", which only makes sense
        // next to an IPv6 one.
        if ipv4_text == NO_IPV4 {
            return match ipv6 {
                Some(ipv6) => Ok(Self::ipv6(to_ipv6_net(ipv6))),
                None => Err(malformed(LeaseKeyProblem::NoSubnet)),
            };
        }
        let ipv4 = parse_subnet::<Ipv4Addr>(ipv4_text).map_err(malformed)?;

        Ok(Self {
            ipv4: Some(to_ipv4_net(ipv4)),
            ipv6: ipv6.map(to_ipv6_net),
        })
    }
}

/// A lease key that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid lease key {key:?}: {problem}; {KEY_FORMS}")]
pub struct LeaseKeyError {
    /// The key as found.
    pub key: String,
    /// What is wrong with it.
    pub problem: LeaseKeyProblem,
}

/// What is wrong with a lease key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseKeyProblem {
    /// A subnet part has no `-<prefix length>`.
    #[error("{part:?} has no dash before a prefix length")]
    MissingPrefixLen {
        /// The subnet part of the key.
        part: String,
    },
    /// The address before the dash is not an address of the expected family.
    #[error("{address:?} is not an {family} address")]
    InvalidAddress {
        /// The text before the dash.
        address: String,
        /// `IPv4` or `IPv6`.
        family: &'static str,
    },
    /// The prefix length is not a decimal number within the family's range.
    #[error("prefix length {prefix_len:?} is not a number from 0 to {max}")]
    InvalidPrefixLen {
        /// The text after the dash.
        prefix_len: String,
        /// 32 or 128.
        max: u8,
    },
    /// The address has bits set after the prefix, so it names no subnet.
    #[error("{part:?} has host bits set; the subnet is written {expected}")]
    HostBitsSet {
        /// The subnet part of the key.
        part: String,
        /// The same subnet written with its network address.
        expected: String,
    },
    /// The key is `0.0.0.0-0` alone, which names no subnet at all.
    #[error("it names no subnet")]
    NoSubnet,
}

/// The address families a key's subnet can be in.
trait KeyAddr: FromStr + Copy {
    const FAMILY: &'static str;
    const BITS: u8;

    /// Returns whether the network of `prefix_len` bits at this address has
    /// host bits set, together with that network's address.
    fn network(self, prefix_len: u8) -> (Self, bool);
}

impl KeyAddr for Ipv4Addr {
    const FAMILY: &'static str = "IPv4";
    const BITS: u8 = 32;

    fn network(self, prefix_len: u8) -> (Self, bool) {
        let bits = u32::from(self);
        let mask = u32::MAX
            .checked_shl(u32::from(32 - prefix_len))
            .unwrap_or(0);
        (Ipv4Addr::from(bits & mask), bits & !mask != 0)
    }
}

impl KeyAddr for Ipv6Addr {
    const FAMILY: &'static str = "IPv6";
    const BITS: u8 = 128;

    fn network(self, prefix_len: u8) -> (Self, bool) {
        let bits = u128::from(self);
        let mask = u128::MAX
            .checked_shl(u32::from(128 - prefix_len))
            .unwrap_or(0);
        (Ipv6Addr::from(bits & mask), bits & !mask != 0)
    }
}

/// Parses `<address>-<prefix length>` into a network address and a prefix
/// length no longer than the family's.
fn parse_subnet<A: KeyAddr + fmt::Display>(part: &str) -> Result<(A, u8), LeaseKeyProblem> {
    let Some((address_text, prefix_text)) = part.rsplit_once('-') else {
        return Err(LeaseKeyProblem::MissingPrefixLen {
            part: part.to_owned(),
        });
    };

    let address: A = address_text
        .parse()
        .map_err(|_| LeaseKeyProblem::InvalidAddress {
            address: address_text.to_owned(),
            family: A::FAMILY,
        })?;

    // Only plain decimal digits: `u8::from_str` would also take "+24".
    let prefix_len = Some(prefix_text)
        .filter(|text| !text.is_empty() && text.len() <= 3)
        .filter(|text| text.bytes().all(|byte| byte.is_ascii_digit()))
        .and_then(|text| text.parse::<u8>().ok())
        .filter(|len| *len <= A::BITS)
        .ok_or_else(|| LeaseKeyProblem::InvalidPrefixLen {
            prefix_len: prefix_text.to_owned(),
            max: A::BITS,
        })?;

    let (network, host_bits_set) = address.network(prefix_len);
    if host_bits_set {
        return Err(LeaseKeyProblem::HostBitsSet {
            part: part.to_owned(),
            expected: format!("{network}-{prefix_len}"),
        });
    }
    Ok((network, prefix_len))
}

fn to_ipv4_net((address, prefix_len): (Ipv4Addr, u8)) -> Ipv4Net {
    // `parse_subnet` checked the prefix length.
    Ipv4Net::new(address, prefix_len).expect("prefix length checked by parse_subnet")
}

fn to_ipv6_net((address, prefix_len): (Ipv6Addr, u8)) -> Ipv6Net {
    Ipv6Net::new(address, prefix_len).expect("prefix length checked by parse_subnet")
}

/// The attributes stored as a lease's value.
///
/// The JSON form is
/// `{"PublicIP":"10.25.31.61","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}`.
/// Reading also takes the form of flannel 0.5 daemons, `{"PublicIP":"…"}`
/// with the other fields left out, matches field names without regard to
/// case (as Go's JSON decoder does), and ignores unknown fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseAttrs {
    /// The address other hosts send overlay traffic to.
    pub public_ip: Ipv4Addr,
    /// The IPv6 address other hosts send overlay traffic to, if any.
    pub public_ipv6: Option<Ipv6Addr>,
    /// The backend type that wrote the lease; empty for old daemons.
    pub backend_type: String,
    /// Backend-specific data, such as the VXLAN VTEP MAC.
    pub backend_data: Option<serde_json::Value>,
}

/// JSON field names of a lease value, as flannel writes them.
const PUBLIC_IP: &str = "PublicIP";
const PUBLIC_IPV6: &str = "PublicIPv6";
const BACKEND_TYPE: &str = "BackendType";
const BACKEND_DATA: &str = "BackendData";

impl LeaseAttrs {
    /// Creates attributes with only a public address, as a udp backend of
    /// flannel 0.5 wrote them.
    pub fn new(public_ip: Ipv4Addr) -> Self {
        Self {
            public_ip,
            public_ipv6: None,
            backend_type: String::new(),
            backend_data: None,
        }
    }

    /// Parses a lease value in the current or the flannel 0.5 form.
    pub fn from_json(text: &str) -> Result<Self, LeaseAttrsError> {
        let value: Value = serde_json::from_str(text).map_err(|error| LeaseAttrsError::Syntax {
            line: error.line(),
            column: error.column(),
            message: strip_position(&error),
        })?;
        let Value::Object(fields) = value else {
            return Err(LeaseAttrsError::NotAnObject {
                found: json_kind(&value),
            });
        };

        let public_ip = match field(&fields, PUBLIC_IP) {
            None | Some(Value::Null) => return Err(LeaseAttrsError::MissingPublicIp),
            Some(value) => parse_address(value).ok_or_else(|| LeaseAttrsError::InvalidAddress {
                field: PUBLIC_IP,
                value: value.to_string(),
                family: "IPv4",
            })?,
        };

        let public_ipv6 = match field(&fields, PUBLIC_IPV6) {
            None | Some(Value::Null) => None,
            Some(value) => {
                Some(
                    parse_address(value).ok_or_else(|| LeaseAttrsError::InvalidAddress {
                        field: PUBLIC_IPV6,
                        value: value.to_string(),
                        family: "IPv6",
                    })?,
                )
            }
        };

        let backend_type = match field(&fields, BACKEND_TYPE) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(name)) => name.clone(),
            Some(value) => {
                return Err(LeaseAttrsError::InvalidBackendType {
                    value: value.to_string(),
                })
            }
        };

        let backend_data = match field(&fields, BACKEND_DATA) {
            None | Some(Value::Null) => None,
            Some(value) => Some(value.clone()),
        };

        Ok(Self {
            public_ip,
            public_ipv6,
            backend_type,
            backend_data,
        })
    }

    /// Writes the current form, with all four fields: `PublicIP`,
    /// `PublicIPv6` and `BackendData` (both `null` when absent), and
    /// `BackendType`.
    pub fn to_json(&self) -> String {
        let fields = [
            (PUBLIC_IP, Value::String(self.public_ip.to_string())),
            (
                PUBLIC_IPV6,
                self.public_ipv6
                    .map_or(Value::Null, |address| Value::String(address.to_string())),
            ),
            (BACKEND_TYPE, Value::String(self.backend_type.clone())),
            (
                BACKEND_DATA,
                self.backend_data.clone().unwrap_or(Value::Null),
            ),
        ];

        // Written by hand because serde_json's `Map` sorts its keys unless
        // the `preserve_order` feature is on, and flannel's order is kept.
        let members: Vec<String> = fields
            .iter()
            .map(|(name, value)| format!("{}:{value}", Value::String((*name).into())))
            .collect();
        format!("{{{}}}", members.join(","))
    }
}

/// Looks a field up as Go's JSON decoder does: the exact name first, then
/// any name that differs only in case.
fn field<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    fields.get(name).or_else(|| {
        fields
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    })
}

fn parse_address<A: FromStr>(value: &Value) -> Option<A> {
    value.as_str().and_then(|text| text.parse().ok())
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The message of a serde_json error without its " at line L column C"
/// suffix, which [`LeaseAttrsError::Syntax`] reports in its own fields.
fn strip_position(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message,
    }
}

/// A lease value that cannot be read as lease attributes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseAttrsError {
    /// The value is not JSON.
    #[error(
        "invalid lease attributes: JSON syntax error at line {line} column {column}: {message}"
    )]
    Syntax {
        /// Line of the error, from 1.
        line: usize,
        /// Column of the error, from 1.
        column: usize,
        /// What the JSON parser expected.
        message: String,
    },
    /// The value is JSON but not an object.
    #[error("invalid lease attributes: expected a JSON object such as {{\"PublicIP\":\"10.25.31.61\"}}, found {found}")]
    NotAnObject {
        /// The kind of JSON value found.
        found: &'static str,
    },
    /// The object has no `PublicIP`, or it is `null`.
    #[error("invalid lease attributes: PublicIP is missing; expected an IPv4 address such as \"10.25.31.61\"")]
    MissingPublicIp,
    /// `PublicIP` or `PublicIPv6` is not an address string of its family.
    #[error("invalid lease attributes: {field} {value} is not an {family} address string")]
    InvalidAddress {
        /// `PublicIP` or `PublicIPv6`.
        field: &'static str,
        /// The value found, as JSON.
        value: String,
        /// `IPv4` or `IPv6`.
        family: &'static str,
    },
    /// `BackendType` is neither a string nor `null`.
    #[error("invalid lease attributes: BackendType {value} is not a string such as \"vxlan\"")]
    InvalidBackendType {
        /// The value found, as JSON.
        value: String,
    },
}
