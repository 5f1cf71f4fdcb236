//! The vxlan lease's `BackendData`: `{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}`.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

use subnet_core::config::describe;

/// The MAC address of a VXLAN device (a VTEP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VtepMac(pub [u8; 6]);

/// A MAC address that is not six colon-separated hex bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a MAC address such as \"c6:d2:32:6f:8f:44\"")]
pub struct MacParseError {
    /// The text as written.
    pub text: String,
}

impl FromStr for VtepMac {
    type Err = MacParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || MacParseError {
            text: text.to_owned(),
        };
        let mut bytes = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut bytes {
            let part = parts.next().ok_or_else(invalid)?;
            if part.len() != 2 {
                return Err(invalid());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| invalid())?;
        }
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for VtepMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// The VNI and VTEP MAC a vxlan host publishes in its lease, so that peers
/// can reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanData {
    /// The VNI of the host's device; `None` in leases that do not record it.
    pub vni: Option<u32>,
    /// The MAC address of the host's VXLAN device.
    pub vtep_mac: VtepMac,
}

/// A peer lease's `BackendData` that is not usable vxlan data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendDataError {
    /// The lease has no BackendData.
    #[error("the lease has no BackendData; a vxlan lease needs {{\"VNI\":1,\"VtepMAC\":\"c6:d2:32:6f:8f:44\"}}")]
    Missing,
    /// BackendData is not a JSON object.
    #[error("BackendData must be a JSON object with VNI and VtepMAC, found {found}")]
    NotAnObject {
        /// The JSON that was found.
        found: String,
    },
    /// `VtepMAC` is missing.
    #[error("BackendData has no VtepMAC")]
    MissingVtepMac,
    /// `VtepMAC` is not a MAC address.
    #[error("BackendData.VtepMAC is invalid: {0}")]
    VtepMac(#[source] MacParseError),
    /// `VtepMAC` is not a string.
    #[error("BackendData.VtepMAC must be a string such as \"c6:d2:32:6f:8f:44\", found {found}")]
    VtepMacType {
        /// The JSON that was found.
        found: String,
    },
    /// `VNI` is not a valid VNI.
    #[error("BackendData.VNI must be an integer from 0 to 16777215, found {found}")]
    Vni {
        /// The JSON that was found.
        found: String,
    },
}

impl VxlanData {
    /// Builds the JSON this host writes into its lease, keys in the
    /// original daemon's order.
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        if let Some(vni) = self.vni {
            object.insert("VNI".to_owned(), Value::from(vni));
        }
        object.insert(
            "VtepMAC".to_owned(),
            Value::String(self.vtep_mac.to_string()),
        );
        Value::Object(object)
    }

    /// Reads a peer lease's BackendData. Key names match without regard to
    /// ASCII case, as Go's JSON decoder matched them; other keys are
    /// ignored.
    pub fn from_json(value: Option<&Value>) -> Result<Self, BackendDataError> {
        let object = match value {
            None | Some(Value::Null) => return Err(BackendDataError::Missing),
            Some(Value::Object(object)) => object,
            Some(other) => {
                return Err(BackendDataError::NotAnObject {
                    found: describe(other),
                })
            }
        };
        let field = |name: &str| {
            object
                .iter()
                .rev()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value)
                .filter(|value| !value.is_null())
        };

        let vtep_mac = match field("VtepMAC") {
            None => return Err(BackendDataError::MissingVtepMac),
            Some(Value::String(text)) => text.parse().map_err(BackendDataError::VtepMac)?,
            Some(other) => {
                return Err(BackendDataError::VtepMacType {
                    found: describe(other),
                })
            }
        };
        let vni = match field("VNI") {
            None => None,
            Some(value) => Some(
                value
                    .as_u64()
                    .and_then(|vni| u32::try_from(vni).ok())
                    .filter(|vni| *vni <= crate::MAX_VNI)
                    .ok_or_else(|| BackendDataError::Vni {
                        found: describe(value),
                    })?,
            ),
        };
        Ok(Self { vni, vtep_mac })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: VtepMac = VtepMac([0xc6, 0xd2, 0x32, 0x6f, 0x8f, 0x44]);

    #[test]
    fn mac_round_trip() {
        assert_eq!("c6:d2:32:6f:8f:44".parse(), Ok(MAC));
        assert_eq!("C6:D2:32:6F:8F:44".parse(), Ok(MAC));
        assert_eq!(MAC.to_string(), "c6:d2:32:6f:8f:44");
    }

    #[test]
    fn mac_invalid() {
        for text in [
            "",
            "c6:d2:32:6f:8f",
            "c6:d2:32:6f:8f:44:00",
            "c6-d2-32-6f-8f-44",
            "c6:d2:32:6f:8f:4",
            "zz:d2:32:6f:8f:44",
        ] {
            let error = text.parse::<VtepMac>().unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("{text:?} is not a MAC address such as \"c6:d2:32:6f:8f:44\"")
            );
        }
    }

    #[test]
    fn to_json_matches_the_original() {
        let data = VxlanData {
            vni: Some(1),
            vtep_mac: MAC,
        };
        assert_eq!(
            data.to_json().to_string(),
            r#"{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}"#
        );
    }

    #[test]
    fn from_json_reads_written_data() {
        let value: Value =
            serde_json::from_str(r#"{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}"#).unwrap();
        assert_eq!(
            VxlanData::from_json(Some(&value)),
            Ok(VxlanData {
                vni: Some(1),
                vtep_mac: MAC
            })
        );
        let value: Value = serde_json::from_str(r#"{"vtepmac":"c6:d2:32:6f:8f:44"}"#).unwrap();
        assert_eq!(
            VxlanData::from_json(Some(&value)),
            Ok(VxlanData {
                vni: None,
                vtep_mac: MAC
            })
        );
    }

    #[test]
    fn from_json_errors() {
        let cases = [
            ("null", "the lease has no BackendData; a vxlan lease needs {\"VNI\":1,\"VtepMAC\":\"c6:d2:32:6f:8f:44\"}"),
            ("[1]", "BackendData must be a JSON object with VNI and VtepMAC, found [1]"),
            (r#"{"VNI":1}"#, "BackendData has no VtepMAC"),
            (r#"{"VtepMAC":"nope"}"#, "BackendData.VtepMAC is invalid: \"nope\" is not a MAC address such as \"c6:d2:32:6f:8f:44\""),
            (r#"{"VtepMAC":7}"#, "BackendData.VtepMAC must be a string such as \"c6:d2:32:6f:8f:44\", found 7"),
            (r#"{"VNI":"1","VtepMAC":"c6:d2:32:6f:8f:44"}"#, "BackendData.VNI must be an integer from 0 to 16777215, found \"1\""),
        ];
        for (json, message) in cases {
            let value: Value = serde_json::from_str(json).unwrap();
            let error = VxlanData::from_json(Some(&value)).unwrap_err();
            assert_eq!(error.to_string(), message, "for {json}");
        }
        assert_eq!(VxlanData::from_json(None), Err(BackendDataError::Missing));
    }
}
