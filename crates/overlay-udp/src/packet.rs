//! I/O-free packet logic of the data path: IPv4 header checks, the TTL
//! update, the ICMP "destination net unreachable" reply and the checks on
//! packets that arrive from the network.
//!
//! Every function here works on caller-owned buffers and returns a decision,
//! so the loops in [`crate::engine`] only move bytes between file
//! descriptors. Nothing here allocates, blocks or logs, and no input makes a
//! function panic (see [`fuzz_entry`]).

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Length of an IPv4 header without options.
pub const IPV4_MIN_HEADER_LEN: usize = 20;

/// Largest ICMP reply that [`route_outbound`] writes: a 20-byte IPv4 header,
/// an 8-byte ICMP header, then the offending packet's header (at most 60
/// bytes) and the first 8 bytes of its payload (RFC 792).
pub const ICMP_REPLY_MAX_LEN: usize = IPV4_MIN_HEADER_LEN + 8 + 60 + 8;

/// TTL of the ICMP replies that the data path generates.
const ICMP_REPLY_TTL: u8 = 64;

const PROTOCOL_ICMP: u8 = 1;

/// Reason for dropping a packet. Each reason has its own counter in
/// [`crate::Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not a well-formed IPv4 packet (see [`Malformed`]).
    Malformed,
    /// No peer lease contains the destination address.
    NoRoute,
    /// The TTL would reach zero when forwarded.
    TtlExpired,
    /// A packet from the network whose destination lies outside this host's
    /// subnet: the data path does not relay between peers.
    NotForThisSubnet,
    /// A datagram whose source address is not the PublicIP of the lease
    /// that owns the packet's source address.
    UnknownSender,
    /// The system call that should have sent or written the packet failed.
    SendFailed,
}

impl DropReason {
    /// Returns the reason as a short snake_case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::NoRoute => "no_route",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::NotForThisSubnet => "not_for_this_subnet",
            DropReason::UnknownSender => "unknown_sender",
            DropReason::SendFailed => "send_failed",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The way in which a buffer fails to be a well-formed IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// Fewer bytes than the 20-byte minimum IPv4 header.
    #[error("invalid IPv4 packet: {len} bytes is shorter than the 20-byte minimum header")]
    TooShort {
        /// Number of bytes received.
        len: usize,
    },
    /// The version field is not 4.
    #[error("invalid IPv4 packet: version field is {version}, expected 4")]
    NotIpv4 {
        /// Value of the version field.
        version: u8,
    },
    /// The header length field is below 5 words or runs past the buffer.
    #[error("invalid IPv4 packet: header length {header_len} bytes is outside 20..={available}")]
    BadHeaderLength {
        /// Header length in bytes (IHL * 4).
        header_len: usize,
        /// Bytes available, capped at the 60-byte maximum header.
        available: usize,
    },
    /// The total length field differs from the number of bytes received.
    #[error(
        "invalid IPv4 packet: total length field is {total_len} but {received} bytes were received"
    )]
    LengthMismatch {
        /// Value of the total length field.
        total_len: usize,
        /// Number of bytes received.
        received: usize,
    },
    /// The header checksum does not verify.
    #[error("invalid IPv4 packet: header checksum does not verify")]
    BadChecksum,
}

/// The fields of a checked IPv4 header that the data path uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Summary {
    /// Source address.
    pub source: Ipv4Addr,
    /// Destination address.
    pub destination: Ipv4Addr,
    /// Header length in bytes, 20 to 60.
    pub header_len: usize,
    /// Total length in bytes, equal to the buffer's length.
    pub total_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// Protocol number of the payload.
    pub protocol: u8,
    /// Fragment offset in 8-byte units; non-zero for all but the first fragment.
    pub fragment_offset: u16,
}

/// Lookup of a peer lease's PublicIP by an address inside the overlay.
pub trait PeerLookup {
    /// Returns the PublicIP of the peer whose subnet contains `addr`.
    fn peer_for(&self, addr: Ipv4Addr) -> Option<Ipv4Addr>;
}

impl<F: Fn(Ipv4Addr) -> Option<Ipv4Addr>> PeerLookup for F {
    fn peer_for(&self, addr: Ipv4Addr) -> Option<Ipv4Addr> {
        self(addr)
    }
}

/// The decision for one packet read from the TUN device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound {
    /// Send the packet, whose TTL and checksum are already updated, to this
    /// peer PublicIP.
    Forward {
        /// PublicIP of the peer.
        peer: Ipv4Addr,
    },
    /// No peer owns the destination: the first `len` bytes of the reply
    /// buffer hold an ICMP "destination net unreachable" to write back into
    /// the TUN device. The packet counts as dropped for [`DropReason::NoRoute`].
    Reply {
        /// Length of the ICMP packet in the reply buffer.
        len: usize,
    },
    /// Drop the packet.
    Drop(DropReason),
}

/// Computes the Internet checksum (RFC 1071) of `data`: the ones' complement
/// of the ones' complement sum of its 16-bit big-endian words. A header whose
/// checksum field is correct sums to 0.
pub fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut words = data.chunks_exact(2);
    for word in &mut words {
        sum += u32::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    !fold_sum(sum)
}

fn fold_sum(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Updates a checksum for one 16-bit word that changed from `old` to `new`,
/// with equation 3 of RFC 1624: `HC' = ~(~HC + ~m + m')`.
pub fn checksum_update(checksum: u16, old: u16, new: u16) -> u16 {
    let sum = u32::from(!checksum) + u32::from(!old) + u32::from(new);
    !fold_sum(sum)
}

/// Checks that `packet` is one well-formed IPv4 packet: version 4, a header
/// length of 20 to 60 bytes inside the buffer, a total length equal to the
/// buffer's length and a header checksum that verifies.
pub fn parse_ipv4(packet: &[u8]) -> Result<Ipv4Summary, Malformed> {
    if packet.len() < IPV4_MIN_HEADER_LEN {
        return Err(Malformed::TooShort { len: packet.len() });
    }

    let version = packet[0] >> 4;
    if version != 4 {
        return Err(Malformed::NotIpv4 { version });
    }

    let header_len = usize::from(packet[0] & 0x0f) * 4;
    if header_len < IPV4_MIN_HEADER_LEN || header_len > packet.len() {
        return Err(Malformed::BadHeaderLength {
            header_len,
            available: packet.len().min(60),
        });
    }

    let total_len = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if total_len != packet.len() {
        return Err(Malformed::LengthMismatch {
            total_len,
            received: packet.len(),
        });
    }

    if internet_checksum(&packet[..header_len]) != 0 {
        return Err(Malformed::BadChecksum);
    }

    Ok(Ipv4Summary {
        source: Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]),
        destination: Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]),
        header_len,
        total_len,
        ttl: packet[8],
        protocol: packet[9],
        fragment_offset: u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff,
    })
}

/// Decides what happens to one packet read from the TUN device.
///
/// A packet that passes [`parse_ipv4`] and has a TTL above 1 and a peer gets
/// its TTL decremented and its checksum patched in place, then
/// [`Outbound::Forward`]. With no peer, an ICMP "destination net unreachable"
/// is written into `reply` when RFC 1812 allows one (not for ICMP errors,
/// non-first fragments, or multicast and broadcast addresses) and `reply`
/// holds at least [`ICMP_REPLY_MAX_LEN`] bytes.
///
/// The reply's source is the unreachable destination itself. The TUN
/// device's own address would not do: the kernel drops a packet that arrives
/// with one of its local addresses as source.
pub fn route_outbound<R: PeerLookup + ?Sized>(
    packet: &mut [u8],
    peers: &R,
    reply: &mut [u8],
) -> Outbound {
    let Ok(header) = parse_ipv4(packet) else {
        return Outbound::Drop(DropReason::Malformed);
    };

    // The original backend drops at zero without an ICMP time exceeded.
    if header.ttl <= 1 {
        return Outbound::Drop(DropReason::TtlExpired);
    }

    let Some(peer) = peers.peer_for(header.destination) else {
        return match write_net_unreachable(packet, &header, reply) {
            Some(len) => Outbound::Reply { len },
            None => Outbound::Drop(DropReason::NoRoute),
        };
    };

    decrement_ttl(packet);
    Outbound::Forward { peer }
}

/// Decrements the TTL of a packet that [`parse_ipv4`] accepted and patches
/// the header checksum incrementally (RFC 1624).
///
/// Does nothing to a buffer shorter than 20 bytes or whose TTL is already 0.
pub fn decrement_ttl(packet: &mut [u8]) {
    if packet.len() < IPV4_MIN_HEADER_LEN || packet[8] == 0 {
        return;
    }

    // The TTL shares its 16-bit word with the protocol byte.
    let old_word = u16::from_be_bytes([packet[8], packet[9]]);
    packet[8] -= 1;
    let new_word = u16::from_be_bytes([packet[8], packet[9]]);

    let checksum = u16::from_be_bytes([packet[10], packet[11]]);
    let checksum = checksum_update(checksum, old_word, new_word);
    packet[10..12].copy_from_slice(&checksum.to_be_bytes());
}

/// Checks whether RFC 1812 (section 4.3.2.7) allows an ICMP error about this packet.
fn icmp_error_allowed(packet: &[u8], header: &Ipv4Summary) -> bool {
    if header.fragment_offset != 0 {
        return false;
    }

    let source = header.source;
    if source.is_unspecified()
        || source.is_broadcast()
        || source.is_multicast()
        || source.is_loopback()
    {
        return false;
    }

    let destination = header.destination;
    if destination.is_broadcast() || destination.is_multicast() {
        return false;
    }

    if header.protocol == PROTOCOL_ICMP {
        // Never reply to an ICMP error, nor to an ICMP packet too short to tell.
        // Errors: destination unreachable, source quench, redirect, time
        // exceeded, parameter problem.
        let Some(&icmp_type) = packet.get(header.header_len) else {
            return false;
        };
        if matches!(icmp_type, 3 | 4 | 5 | 11 | 12) {
            return false;
        }
    }

    true
}

/// Writes an ICMP destination net unreachable (type 3, code 0) about `packet`
/// into `reply` and returns its length, or `None` when none may be sent or
/// `reply` is too short.
fn write_net_unreachable(packet: &[u8], header: &Ipv4Summary, reply: &mut [u8]) -> Option<usize> {
    if !icmp_error_allowed(packet, header) {
        return None;
    }

    let quoted_len = header.total_len.min(header.header_len + 8);
    let icmp_len = 8 + quoted_len;
    let total_len = IPV4_MIN_HEADER_LEN + icmp_len;
    let reply = reply.get_mut(..total_len)?;

    // IPv4 header: no options, DF clear, identification 0.
    let (ip, icmp) = reply.split_at_mut(IPV4_MIN_HEADER_LEN);
    ip[0] = 0x45;
    ip[1] = 0;
    ip[2..4].copy_from_slice(&(total_len as u16).to_be_bytes());
    ip[4..8].fill(0);
    ip[8] = ICMP_REPLY_TTL;
    ip[9] = PROTOCOL_ICMP;
    ip[10..12].fill(0);
    ip[12..16].copy_from_slice(&header.destination.octets());
    ip[16..20].copy_from_slice(&header.source.octets());
    let ip_checksum = internet_checksum(ip);
    ip[10..12].copy_from_slice(&ip_checksum.to_be_bytes());

    // ICMP header (type, code, checksum, 4 unused bytes), then the quote.
    icmp[0] = 3;
    icmp[1] = 0;
    icmp[2..8].fill(0);
    icmp[8..].copy_from_slice(&packet[..quoted_len]);
    let icmp_checksum = internet_checksum(icmp);
    icmp[2..4].copy_from_slice(&icmp_checksum.to_be_bytes());

    Some(total_len)
}

/// Checks one packet that arrived from the network in a datagram from
/// `sender`.
///
/// The packet must pass [`parse_ipv4`] and be addressed inside
/// `local_subnet`. With `sender_check`, the PublicIP of the lease that owns
/// the packet's source address must be `sender`.
pub fn check_inbound<R: PeerLookup + ?Sized>(
    packet: &[u8],
    sender: Ipv4Addr,
    local_subnet: Ipv4Net,
    sender_check: Option<&R>,
) -> Result<Ipv4Summary, DropReason> {
    let header = parse_ipv4(packet).map_err(|_| DropReason::Malformed)?;

    if !local_subnet.contains(&header.destination) {
        return Err(DropReason::NotForThisSubnet);
    }

    if let Some(peers) = sender_check {
        if peers.peer_for(header.source) != Some(sender) {
            return Err(DropReason::UnknownSender);
        }
    }

    Ok(header)
}

/// The decisions that [`fuzz_entry`] reached for one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FuzzOutcome {
    /// Decision for the bytes as a packet read from the TUN device.
    pub outbound: Outbound,
    /// Decision for the bytes as a datagram from 192.0.2.1.
    pub inbound: Result<Ipv4Summary, DropReason>,
}

/// Runs the outbound and the inbound checks on arbitrary bytes: a target for
/// fuzzers and property tests. It never panics, which a property test checks.
///
/// The peer table is fixed: 10.1.0.0/16 is split into /24 subnets, every
/// subnet but 10.1.1.0/24 (the local one) and 10.1.9.0/24 belongs to a peer
/// at 192.0.2.(third octet).
pub fn fuzz_entry(data: &[u8]) -> FuzzOutcome {
    let local = Ipv4Net::new(Ipv4Addr::new(10, 1, 1, 0), 24).expect("valid prefix length");
    let peers = |addr: Ipv4Addr| {
        let [a, b, c, _] = addr.octets();
        (a == 10 && b == 1 && c != 1 && c != 9).then(|| Ipv4Addr::new(192, 0, 2, c))
    };

    let mut packet = [0u8; 65_535];
    let len = data.len().min(packet.len());
    packet[..len].copy_from_slice(&data[..len]);
    let mut reply = [0u8; ICMP_REPLY_MAX_LEN];

    let inbound = check_inbound(
        &packet[..len],
        Ipv4Addr::new(192, 0, 2, 1),
        local,
        Some(&peers),
    );
    let outbound = route_outbound(&mut packet[..len], &peers, &mut reply);
    FuzzOutcome { outbound, inbound }
}
