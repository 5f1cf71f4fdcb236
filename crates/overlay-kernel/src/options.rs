//! The vxlan backend's options, read from the network config's `Backend`
//! object.

use serde_json::Value;
use subnet_core::config::describe;
use subnet_core::BackendConfig;

/// VNI used when `Backend.VNI` is absent or 0.
pub const DEFAULT_VNI: u32 = 1;

/// Largest VNI: the VXLAN header carries 24 bits (RFC 7348).
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// Smallest device MTU: the minimum every IPv4 link carries (RFC 791).
const MIN_MTU: u64 = 68;

/// Largest device MTU the kernel accepts for a VXLAN device.
const MAX_MTU: u64 = 65_535;

/// The options of `{"Type": "vxlan", ...}`, with their defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanOptions {
    /// VXLAN network identifier (`Backend.VNI`, default 1); the device is
    /// named `flannel.<VNI>`.
    pub vni: u32,
    /// UDP destination port (`Backend.Port`); `None` leaves the kernel's
    /// default, 8472.
    pub port: Option<u16>,
    /// Group Based Policy extension (`Backend.GBP`).
    pub gbp: bool,
    /// Route to peers on the same subnet of the underlay via their PublicIP
    /// instead of through the VXLAN device (`Backend.DirectRouting`).
    pub direct_routing: bool,
    /// Let the device learn remote MAC addresses (`Backend.Learning`).
    pub learning: bool,
    /// Device MTU (`Backend.MTU`); `None` gives the underlay MTU minus 50.
    pub mtu: Option<u32>,
}

impl Default for VxlanOptions {
    fn default() -> Self {
        Self {
            vni: DEFAULT_VNI,
            port: None,
            gbp: false,
            direct_routing: false,
            learning: false,
            mtu: None,
        }
    }
}

/// A vxlan option with an invalid value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid vxlan backend option: Backend.{key} must be {expected}, found {found}")]
pub struct OptionsError {
    /// The option's name, such as `VNI`.
    pub key: &'static str,
    /// The values the option takes.
    pub expected: &'static str,
    /// The JSON that was found.
    pub found: String,
}

impl VxlanOptions {
    /// Reads the options from `backend`, matching names without regard to
    /// ASCII case. A 0 for `VNI`, `Port` or `MTU` means the default, as it
    /// does for the original daemon; unknown options are ignored.
    pub fn from_config(backend: &BackendConfig) -> Result<Self, OptionsError> {
        let vni = match integer(backend, "VNI", 0, u64::from(MAX_VNI), VNI_EXPECTED)? {
            None | Some(0) => DEFAULT_VNI,
            Some(vni) => vni as u32,
        };
        let port = integer(backend, "Port", 0, 65_535, PORT_EXPECTED)?
            .filter(|port| *port != 0)
            .map(|port| port as u16);
        let mtu = match backend.option("MTU") {
            Some(Value::Number(number)) if number.as_u64() == Some(0) => None,
            _ => integer(backend, "MTU", MIN_MTU, MAX_MTU, MTU_EXPECTED)?.map(|mtu| mtu as u32),
        };

        Ok(Self {
            vni,
            port,
            gbp: flag(backend, "GBP")?,
            direct_routing: flag(backend, "DirectRouting")?,
            learning: flag(backend, "Learning")?,
            mtu,
        })
    }

    /// Returns the device name, `flannel.<VNI>`.
    pub fn device_name(&self) -> String {
        format!("flannel.{}", self.vni)
    }
}

const VNI_EXPECTED: &str = "an integer from 1 to 16777215, or 0 for the default 1";
const PORT_EXPECTED: &str = "an integer from 1 to 65535, or 0 for the kernel's default 8472";
const MTU_EXPECTED: &str =
    "an integer from 68 to 65535, or 0 for the underlay interface's MTU minus 50";

/// Reads an integer option in `min..=max`; `None` when absent or null.
fn integer(
    backend: &BackendConfig,
    key: &'static str,
    min: u64,
    max: u64,
    expected: &'static str,
) -> Result<Option<u64>, OptionsError> {
    let Some(value) = backend.option(key) else {
        return Ok(None);
    };
    match value.as_u64() {
        Some(number) if (min..=max).contains(&number) => Ok(Some(number)),
        _ => Err(OptionsError {
            key,
            expected,
            found: describe(value),
        }),
    }
}

/// Reads a boolean option; false when absent or null.
fn flag(backend: &BackendConfig, key: &'static str) -> Result<bool, OptionsError> {
    match backend.option(key) {
        None => Ok(false),
        Some(Value::Bool(value)) => Ok(*value),
        Some(other) => Err(OptionsError {
            key,
            expected: "true or false",
            found: describe(other),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use subnet_core::NetworkConfig;

    fn options(backend: &str) -> Result<VxlanOptions, OptionsError> {
        let json = format!(r#"{{"Network":"10.5.0.0/16","Backend":{backend}}}"#);
        let config = NetworkConfig::parse(&json).unwrap();
        VxlanOptions::from_config(&config.backend)
    }

    #[test]
    fn defaults() {
        let parsed = options(r#"{"Type":"vxlan"}"#).unwrap();
        assert_eq!(parsed, VxlanOptions::default());
        assert_eq!(parsed.vni, 1);
        assert_eq!(parsed.device_name(), "flannel.1");
    }

    #[test]
    fn every_option_set() {
        let parsed = options(
            r#"{"Type":"vxlan","VNI":4096,"Port":4789,"GBP":true,"DirectRouting":true,"Learning":true,"MTU":1400}"#,
        )
        .unwrap();
        assert_eq!(
            parsed,
            VxlanOptions {
                vni: 4096,
                port: Some(4789),
                gbp: true,
                direct_routing: true,
                learning: true,
                mtu: Some(1400),
            }
        );
        assert_eq!(parsed.device_name(), "flannel.4096");
    }

    #[test]
    fn names_ignore_case_and_zero_means_default() {
        let parsed = options(r#"{"type":"vxlan","vni":0,"port":0,"mtu":0,"gbp":false}"#).unwrap();
        assert_eq!(parsed, VxlanOptions::default());
        let parsed = options(r#"{"Type":"vxlan","vni":7}"#).unwrap();
        assert_eq!(parsed.vni, 7);
    }

    #[test]
    fn invalid_vni() {
        for (value, found) in [("16777216", "16777216"), ("-1", "-1"), (r#""1""#, r#""1""#)] {
            let error = options(&format!(r#"{{"Type":"vxlan","VNI":{value}}}"#)).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("invalid vxlan backend option: Backend.VNI must be an integer from 1 to 16777215, or 0 for the default 1, found {found}")
            );
        }
    }

    #[test]
    fn invalid_mtu() {
        let error = options(r#"{"Type":"vxlan","MTU":67}"#).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid vxlan backend option: Backend.MTU must be an integer from 68 to 65535, or 0 for the underlay interface's MTU minus 50, found 67"
        );
    }

    #[test]
    fn invalid_flags() {
        for key in ["GBP", "DirectRouting", "Learning"] {
            let error = options(&format!(r#"{{"Type":"vxlan","{key}":"yes"}}"#)).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("invalid vxlan backend option: Backend.{key} must be true or false, found \"yes\"")
            );
        }
    }
}
