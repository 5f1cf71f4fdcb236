//! The rules flanneld keeps in iptables, as argument lists. Pure: nothing
//! here runs iptables.

use ipnet::Ipv4Net;

/// Chain for the masquerade rules, jumped to from nat POSTROUTING. The
/// daemon this one replaces used the same name, so its rules are replaced
/// rather than doubled.
pub const MASQ_CHAIN: &str = "FLANNEL-POSTRTG";

/// Chain for the forward rules, jumped to from filter FORWARD.
pub const FORWARD_CHAIN: &str = "FLANNEL-FWD";

/// Comment on every masquerade rule and on the jump to [`MASQ_CHAIN`].
pub const MASQ_COMMENT: &str = "flanneld masq";

/// Comment on every forward rule and on the jump to [`FORWARD_CHAIN`].
pub const FORWARD_COMMENT: &str = "flanneld forward";

/// Multicast, never masqueraded.
const MULTICAST: &str = "224.0.0.0/4";

/// The position of the jump to our chain in its parent chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JumpAt {
    /// Before every other rule.
    First,
    /// After every other rule.
    Last,
}

/// A chain of our own, its rules in order, and the jump into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSpec {
    /// `nat` or `filter`.
    pub table: &'static str,
    /// Our chain.
    pub chain: &'static str,
    /// The built-in chain that jumps to ours.
    pub parent: &'static str,
    /// Position of the jump.
    pub jump_at: JumpAt,
    /// Comment on the jump rule.
    pub comment: &'static str,
    /// Rule specifications without the `-A CHAIN` part.
    pub rules: Vec<Vec<String>>,
}

impl ChainSpec {
    /// Returns the jump rule's specification, without the `-A PARENT` part.
    pub fn jump(&self) -> Vec<String> {
        to_strings(&["-m", "comment", "--comment", self.comment, "-j", self.chain])
    }
}

fn to_strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|word| (*word).to_owned()).collect()
}

/// Builds the masquerade rules for `lease` inside `network`. Traffic
/// between the lease and the overlay, and from outside the overlay into the
/// lease, is left alone. Traffic from the overlay to anything but multicast,
/// and from outside into the overlay, is masqueraded.
pub fn masq(network: Ipv4Net, lease: Ipv4Net, random_fully: bool) -> ChainSpec {
    let network = network.to_string();
    let lease = lease.to_string();
    let comment = ["-m", "comment", "--comment", MASQ_COMMENT];
    let masquerade: &[&str] = if random_fully {
        &["-j", "MASQUERADE", "--random-fully"]
    } else {
        &["-j", "MASQUERADE"]
    };

    let rule = |matches: &[&str], target: &[&str]| -> Vec<String> {
        to_strings(&[matches, &comment[..], target].concat())
    };
    let rules = vec![
        rule(&["-s", &lease, "-d", &network], &["-j", "RETURN"]),
        rule(&["-s", &network, "-d", &lease], &["-j", "RETURN"]),
        rule(&["!", "-s", &network, "-d", &lease], &["-j", "RETURN"]),
        rule(&["-s", &network, "!", "-d", MULTICAST], masquerade),
        rule(&["!", "-s", &network, "-d", &network], masquerade),
    ];

    ChainSpec {
        table: "nat",
        chain: MASQ_CHAIN,
        parent: "POSTROUTING",
        jump_at: JumpAt::First,
        comment: MASQ_COMMENT,
        rules,
    }
}

/// Builds the forward rules, which accept everything from and to the overlay.
pub fn forward(network: Ipv4Net) -> ChainSpec {
    let network = network.to_string();
    let comment = ["-m", "comment", "--comment", FORWARD_COMMENT];
    let rules = vec![
        to_strings(
            &[
                &["-s", network.as_str()][..],
                &comment[..],
                &["-j", "ACCEPT"],
            ]
            .concat(),
        ),
        to_strings(
            &[
                &["-d", network.as_str()][..],
                &comment[..],
                &["-j", "ACCEPT"],
            ]
            .concat(),
        ),
    ];

    // Appended, as Docker's own chains come first in FORWARD and only its
    // policy (DROP) would otherwise decide overlay traffic.
    ChainSpec {
        table: "filter",
        chain: FORWARD_CHAIN,
        parent: "FORWARD",
        jump_at: JumpAt::Last,
        comment: FORWARD_COMMENT,
        rules,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(spec: &ChainSpec) -> Vec<String> {
        spec.rules.iter().map(|rule| rule.join(" ")).collect()
    }

    #[test]
    fn masq_rules_in_order() {
        let spec = masq(
            "10.2.0.0/16".parse().unwrap(),
            "10.2.100.0/24".parse().unwrap(),
            true,
        );
        assert_eq!(spec.table, "nat");
        assert_eq!(spec.parent, "POSTROUTING");
        assert_eq!(
            joined(&spec),
            vec![
                "-s 10.2.100.0/24 -d 10.2.0.0/16 -m comment --comment flanneld masq -j RETURN",
                "-s 10.2.0.0/16 -d 10.2.100.0/24 -m comment --comment flanneld masq -j RETURN",
                "! -s 10.2.0.0/16 -d 10.2.100.0/24 -m comment --comment flanneld masq -j RETURN",
                "-s 10.2.0.0/16 ! -d 224.0.0.0/4 -m comment --comment flanneld masq -j MASQUERADE --random-fully",
                "! -s 10.2.0.0/16 -d 10.2.0.0/16 -m comment --comment flanneld masq -j MASQUERADE --random-fully",
            ]
        );
        assert_eq!(
            spec.jump().join(" "),
            "-m comment --comment flanneld masq -j FLANNEL-POSTRTG"
        );
    }

    #[test]
    fn masq_without_random_fully() {
        let spec = masq(
            "10.2.0.0/16".parse().unwrap(),
            "10.2.100.0/24".parse().unwrap(),
            false,
        );
        assert!(spec
            .rules
            .iter()
            .all(|rule| !rule.contains(&"--random-fully".to_owned())));
        assert_eq!(spec.rules[3].last().map(String::as_str), Some("MASQUERADE"));
    }

    #[test]
    fn forward_rules() {
        let spec = forward("172.16.0.0/16".parse().unwrap());
        assert_eq!(spec.table, "filter");
        assert_eq!(spec.parent, "FORWARD");
        assert_eq!(
            joined(&spec),
            vec![
                "-s 172.16.0.0/16 -m comment --comment flanneld forward -j ACCEPT",
                "-d 172.16.0.0/16 -m comment --comment flanneld forward -j ACCEPT",
            ]
        );
    }
}
