//! Packet and drop counters shared by the packet loops and the daemon.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::packet::DropReason;

/// Packets dropped, by reason, since the backend started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DropCounters {
    /// Not a well-formed IPv4 packet, or a datagram cut short by the buffer.
    pub malformed: u64,
    /// No peer lease contains the destination (ICMP replies included).
    pub no_route: u64,
    /// TTL would have reached zero.
    pub ttl_expired: u64,
    /// From the network, addressed outside this host's subnet.
    pub not_for_this_subnet: u64,
    /// From the network, sent by an address that is not the PublicIP of the
    /// lease owning the packet's source.
    pub unknown_sender: u64,
    /// The send to the socket or the write to the TUN device failed.
    pub send_failed: u64,
}

impl DropCounters {
    /// Returns the counter for one reason.
    pub fn get(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::Malformed => self.malformed,
            DropReason::NoRoute => self.no_route,
            DropReason::TtlExpired => self.ttl_expired,
            DropReason::NotForThisSubnet => self.not_for_this_subnet,
            DropReason::UnknownSender => self.unknown_sender,
            DropReason::SendFailed => self.send_failed,
        }
    }

    /// Sum over every reason.
    pub fn total(&self) -> u64 {
        self.malformed
            + self.no_route
            + self.ttl_expired
            + self.not_for_this_subnet
            + self.unknown_sender
            + self.send_failed
    }
}

/// Packets and bytes carried in one direction. Bytes count IPv4 packets,
/// without UDP or vnet headers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    /// Packets delivered.
    pub packets: u64,
    /// Bytes delivered.
    pub bytes: u64,
}

/// A snapshot of the backend's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Packets read from the TUN device and sent to peers.
    pub tun_to_udp: Traffic,
    /// Packets received from peers and written to the TUN device.
    pub udp_to_tun: Traffic,
    /// Drops by reason, both directions together.
    pub drops: DropCounters,
}

/// The live counters; the loops add to them once per batch.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    tun_to_udp_packets: AtomicU64,
    tun_to_udp_bytes: AtomicU64,
    udp_to_tun_packets: AtomicU64,
    udp_to_tun_bytes: AtomicU64,
    drops: [AtomicU64; 6],
}

fn drop_index(reason: DropReason) -> usize {
    match reason {
        DropReason::Malformed => 0,
        DropReason::NoRoute => 1,
        DropReason::TtlExpired => 2,
        DropReason::NotForThisSubnet => 3,
        DropReason::UnknownSender => 4,
        DropReason::SendFailed => 5,
    }
}

/// Counters of one loop iteration, added to [`Counters`] in one go.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct BatchCounts {
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
    pub(crate) drops: [u64; 6],
}

impl BatchCounts {
    pub(crate) fn drop(&mut self, reason: DropReason) {
        self.drops[drop_index(reason)] += 1;
    }

    pub(crate) fn drop_many(&mut self, reason: DropReason, count: u64) {
        self.drops[drop_index(reason)] += count;
    }
}

/// Direction of a batch, for [`Counters::add`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Direction {
    TunToUdp,
    UdpToTun,
}

impl Counters {
    pub(crate) fn add(&self, direction: Direction, batch: &BatchCounts) {
        let (packets, bytes) = match direction {
            Direction::TunToUdp => (&self.tun_to_udp_packets, &self.tun_to_udp_bytes),
            Direction::UdpToTun => (&self.udp_to_tun_packets, &self.udp_to_tun_bytes),
        };
        if batch.packets != 0 {
            packets.fetch_add(batch.packets, Ordering::Relaxed);
            bytes.fetch_add(batch.bytes, Ordering::Relaxed);
        }
        for (counter, count) in self.drops.iter().zip(batch.drops) {
            if count != 0 {
                counter.fetch_add(count, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let drop = |reason| self.drops[drop_index(reason)].load(Ordering::Relaxed);
        Stats {
            tun_to_udp: Traffic {
                packets: self.tun_to_udp_packets.load(Ordering::Relaxed),
                bytes: self.tun_to_udp_bytes.load(Ordering::Relaxed),
            },
            udp_to_tun: Traffic {
                packets: self.udp_to_tun_packets.load(Ordering::Relaxed),
                bytes: self.udp_to_tun_bytes.load(Ordering::Relaxed),
            },
            drops: DropCounters {
                malformed: drop(DropReason::Malformed),
                no_route: drop(DropReason::NoRoute),
                ttl_expired: drop(DropReason::TtlExpired),
                not_for_this_subnet: drop(DropReason::NotForThisSubnet),
                unknown_sender: drop(DropReason::UnknownSender),
                send_failed: drop(DropReason::SendFailed),
            },
        }
    }
}
