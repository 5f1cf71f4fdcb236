//! The backend types a network config can name, and the MTU each leaves for
//! the overlay.

use std::fmt;
use std::str::FromStr;

/// A data-path backend, as named by the config's `Backend.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendType {
    /// Userspace encapsulation: one IPv4 packet per UDP datagram.
    Udp,
    /// Kernel VXLAN device.
    Vxlan,
    /// Plain routes via the peers' PublicIP on a shared layer-2 segment.
    HostGw,
    /// Leases only, no data path.
    Alloc,
}

/// Every backend type, in the order error messages list them.
pub const ALL_BACKENDS: [BackendType; 4] = [
    BackendType::Udp,
    BackendType::Vxlan,
    BackendType::HostGw,
    BackendType::Alloc,
];

/// Error for a `Backend.Type` that names no known backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend type {name:?}: valid types are udp, vxlan, host-gw and alloc")]
pub struct UnknownBackend {
    /// The type as written in the config.
    pub name: String,
}

impl BackendType {
    /// Looks a backend up by its config name, ignoring ASCII case as the
    /// original daemon does.
    pub fn from_name(name: &str) -> Result<Self, UnknownBackend> {
        ALL_BACKENDS
            .into_iter()
            .find(|backend| backend.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| UnknownBackend {
                name: name.to_owned(),
            })
    }

    /// The name used in configs and in lease values' `BackendType`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Vxlan => "vxlan",
            Self::HostGw => "host-gw",
            Self::Alloc => "alloc",
        }
    }

    /// Bytes of encapsulation each packet carries on the underlay: udp adds
    /// an IPv4 and a UDP header (20 + 8), vxlan an outer IPv4, UDP, VXLAN
    /// and Ethernet header (20 + 8 + 8 + 14).
    pub fn overhead(self) -> u32 {
        match self {
            Self::Udp => 28,
            Self::Vxlan => 50,
            Self::HostGw | Self::Alloc => 0,
        }
    }

    /// The overlay MTU for an underlay interface MTU (`FLANNEL_MTU`);
    /// zero when the underlay MTU is smaller than the overhead.
    pub fn mtu(self, underlay_mtu: u32) -> u32 {
        underlay_mtu.saturating_sub(self.overhead())
    }
}

impl fmt::Display for BackendType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendType {
    type Err = UnknownBackend;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::from_name(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtu_per_backend() {
        assert_eq!(BackendType::Udp.mtu(1500), 1472);
        assert_eq!(BackendType::Vxlan.mtu(1500), 1450);
        assert_eq!(BackendType::HostGw.mtu(1500), 1500);
        assert_eq!(BackendType::Udp.mtu(20), 0);
    }

    #[test]
    fn from_name_ignores_case() {
        assert_eq!(BackendType::from_name("VXLAN"), Ok(BackendType::Vxlan));
        assert_eq!(BackendType::from_name("host-gw"), Ok(BackendType::HostGw));
        for backend in ALL_BACKENDS {
            assert_eq!(backend.name().parse(), Ok(backend));
        }
    }

    #[test]
    fn from_name_unknown() {
        let error = BackendType::from_name("ipip").unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown backend type \"ipip\": valid types are udp, vxlan, host-gw and alloc"
        );
    }
}
