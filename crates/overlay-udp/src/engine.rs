//! The two packet loops, each on its own OS thread: TUN to UDP and UDP to
//! TUN. They move bytes between the descriptors in batches and leave every
//! decision to [`crate::packet`].

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Arc;

use ipnet::Ipv4Net;
use tracing::{debug, trace, warn};
use tun_rs::{GROTable, SyncDevice, VIRTIO_NET_HDR_LEN};

use crate::packet::{self, check_inbound, route_outbound, DropReason, Outbound};
use crate::stats::{BatchCounts, Counters, Direction};
use crate::sys::{self, EventFd, RecvBatch, SendStorage, MAX_UDP_PAYLOAD};
use crate::table::PeerTable;

/// Packets read from the TUN device per wake-up before they are sent.
pub(crate) const TUN_BATCH: usize = 256;
/// Packets written to the TUN device per call (tun-rs's IDEAL_BATCH_SIZE).
const TUN_WRITE_BATCH: usize = tun_rs::IDEAL_BATCH_SIZE;
/// Smallest TCP payload per segment that a read batch is sized for: a
/// 64 KiB super-packet then splits into at most 129 packets.
const MIN_SEGMENT_PAYLOAD: usize = 512;
/// Most datagrams one UDP GSO send may carry (UDP_MAX_SEGMENTS in Linux).
const MAX_GSO_SEGMENTS: usize = 64;
/// Size of a TUN read buffer when the kernel hands over TSO super-packets.
const SUPER_PACKET_LEN: usize = 65_535;

/// Everything the loops share.
pub(crate) struct Shared {
    pub(crate) tun: SyncDevice,
    pub(crate) socket: UdpSocket,
    pub(crate) peers: PeerTable,
    pub(crate) counters: Counters,
    pub(crate) stop: EventFd,
    pub(crate) local_lease: Ipv4Net,
    pub(crate) port: u16,
    pub(crate) check_sender: bool,
    pub(crate) tun_mtu: usize,
    /// The TUN device exchanges virtio-net headers (IFF_VNET_HDR).
    pub(crate) vnet_hdr: bool,
    pub(crate) udp_gso: bool,
    pub(crate) udp_gro: bool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("socket", &self.socket)
            .field("local_lease", &self.local_lease)
            .field("port", &self.port)
            .field("check_sender", &self.check_sender)
            .field("tun_mtu", &self.tun_mtu)
            .field("vnet_hdr", &self.vnet_hdr)
            .field("udp_gso", &self.udp_gso)
            .field("udp_gro", &self.udp_gro)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Offset of the IPv4 packet in a TUN write buffer.
    fn tun_write_offset(&self) -> usize {
        if self.vnet_hdr {
            VIRTIO_NET_HDR_LEN
        } else {
            0
        }
    }

    /// Most packets one TUN read can produce.
    fn max_segments_per_read(&self) -> usize {
        if self.vnet_hdr {
            // NOTE: a super-packet with smaller segments (an MSS below 512)
            // may not fit the remaining buffers; tun-rs then rejects it and
            // it counts as malformed. Up to 256 segments fit an empty batch.
            SUPER_PACKET_LEN.div_ceil(MIN_SEGMENT_PAYLOAD) + 1
        } else {
            1
        }
    }
}

/// Reads from the TUN device until stopped; returns the error that ended it.
pub(crate) fn run_tun_to_udp(shared: Arc<Shared>) -> io::Result<()> {
    let stride = shared.tun_mtu;
    let mut segments = vec![0u8; TUN_BATCH * stride];
    let mut sizes = [0usize; TUN_BATCH];
    let mut destinations: [Option<Ipv4Addr>; TUN_BATCH] = [None; TUN_BATCH];
    let mut super_packet = vec![0u8; VIRTIO_NET_HDR_LEN + SUPER_PACKET_LEN];
    let mut reply = [0u8; VIRTIO_NET_HDR_LEN + packet::ICMP_REPLY_MAX_LEN];
    let mut storage = SendStorage::new(TUN_BATCH);

    let reply_offset = shared.tun_write_offset();
    let per_read = shared.max_segments_per_read();
    let max_run = MAX_GSO_SEGMENTS.min(MAX_UDP_PAYLOAD / stride).max(1);
    let mut use_gso = shared.udp_gso;

    loop {
        if sys::wait_readable(shared.tun.as_fd(), shared.stop.as_fd())? {
            return Ok(());
        }

        let mut drained = false;
        while !drained {
            let mut counts = BatchCounts::default();

            // Read until the TUN device is empty or a full read may not fit.
            let mut filled = 0;
            {
                let mut chunks = segments.chunks_exact_mut(stride);
                let mut bufs: [&mut [u8]; TUN_BATCH] =
                    std::array::from_fn(|_| chunks.next().unwrap_or_default());
                while TUN_BATCH - filled >= per_read {
                    match shared.tun.recv_multiple(
                        &mut super_packet,
                        &mut bufs[filled..],
                        &mut sizes[filled..],
                        0,
                    ) {
                        Ok(n) => filled += n,
                        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                            drained = true;
                            break;
                        }
                        Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                        Err(error) if error.raw_os_error().is_some() => return Err(error),
                        Err(error) => {
                            // tun-rs could not split a super-packet.
                            debug!(%error, "dropping malformed packet from the TUN device");
                            counts.drop(DropReason::Malformed);
                        }
                    }
                }

                for i in 0..filled {
                    let packet = &mut bufs[i][..sizes[i]];
                    destinations[i] = None;
                    match route_outbound(packet, &shared.peers, &mut reply[reply_offset..]) {
                        Outbound::Forward { peer } => destinations[i] = Some(peer),
                        Outbound::Reply { len } => {
                            counts.drop(DropReason::NoRoute);
                            write_reply(&shared, &mut reply[..reply_offset + len], reply_offset);
                        }
                        Outbound::Drop(reason) => {
                            trace!(%reason, "dropping packet from the TUN device");
                            counts.drop(reason);
                        }
                    }
                }
            }

            // Send: runs of full-size packets to one peer share one UDP GSO
            // message, which the kernel splits into one datagram per packet.
            let mut batch = storage.batch();
            let mut i = 0;
            while i < filled {
                let Some(peer) = destinations[i] else {
                    i += 1;
                    continue;
                };
                let mut end = i + 1;
                if use_gso && sizes[i] == stride {
                    while end < filled
                        && end - i < max_run
                        && sizes[end - 1] == stride
                        && destinations[end] == Some(peer)
                    {
                        end += 1;
                    }
                }

                let start_byte = i * stride;
                let end_byte = (end - 1) * stride + sizes[end - 1];
                let segment_size = (end - i > 1).then_some(stride as u16);
                batch.push(
                    &segments[start_byte..end_byte],
                    SocketAddrV4::new(peer, shared.port),
                    segment_size,
                    end - i,
                );
                i = end;
            }

            if !batch.is_empty() {
                let outcome = batch.send(shared.socket.as_fd());
                counts.packets += outcome.packets_sent as u64;
                counts.bytes += outcome.bytes_sent as u64;
                if use_gso && outcome.last_error == Some(libc::EINVAL) {
                    // The kernel rejects a GSO size above the path MTU, which
                    // happens when the TUN MTU exceeds the underlay's.
                    warn!(
                        mtu = stride,
                        "UDP GSO rejected by the kernel, sending one datagram per call"
                    );
                    use_gso = false;
                }
                if outcome.packets_failed > 0 {
                    counts.drop_many(DropReason::SendFailed, outcome.packets_failed as u64);
                    debug!(
                        error = ?outcome.last_error.map(io::Error::from_raw_os_error),
                        packets = outcome.packets_failed,
                        "sending to peers failed"
                    );
                }
            }
            shared.counters.add(Direction::TunToUdp, &counts);
        }
    }
}

fn write_reply(shared: &Shared, reply: &mut [u8], offset: usize) {
    // A zeroed virtio-net header means: no offload, checksum complete.
    reply[..offset].fill(0);
    if let Err(error) = shared.tun.send(reply) {
        debug!(%error, "writing an ICMP reply into the TUN device failed");
    }
}

/// Receives from the UDP socket until stopped; returns the error that ended it.
pub(crate) fn run_udp_to_tun(shared: Arc<Shared>) -> io::Result<()> {
    let (datagrams, buffer_size) = if shared.udp_gro {
        (32, SUPER_PACKET_LEN)
    } else {
        (64, shared.tun_mtu.max(2048))
    };
    let mut receive = RecvBatch::new(datagrams, buffer_size);
    let offset = shared.tun_write_offset();
    // Capacity for a whole super-packet, because tun-rs's GRO coalesces
    // segments into the first buffer of each flow.
    let mut writes: Vec<Vec<u8>> = (0..TUN_WRITE_BATCH)
        .map(|_| Vec::with_capacity(VIRTIO_NET_HDR_LEN + SUPER_PACKET_LEN))
        .collect();
    let mut gro_table = GROTable::new();
    let sender_check = shared.check_sender.then_some(&shared.peers);

    loop {
        if sys::wait_readable(shared.socket.as_fd(), shared.stop.as_fd())? {
            return Ok(());
        }

        loop {
            let received = match receive.recv(shared.socket.as_fd()) {
                Ok(0) => break,
                Ok(n) => n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };

            let mut counts = BatchCounts::default();
            let mut queued = 0;
            for index in 0..received {
                let datagram = receive.datagram(index);
                if datagram.truncated {
                    counts.drop(DropReason::Malformed);
                    continue;
                }

                let segment_size = datagram
                    .segment_size
                    .unwrap_or(datagram.payload.len())
                    .max(1);
                for packet in datagram.payload.chunks(segment_size) {
                    if let Err(reason) = check_inbound(
                        packet,
                        *datagram.source.ip(),
                        shared.local_lease,
                        sender_check,
                    ) {
                        trace!(%reason, source = %datagram.source, "dropping datagram");
                        counts.drop(reason);
                        continue;
                    }

                    let buffer = &mut writes[queued];
                    buffer.clear();
                    buffer.resize(offset, 0);
                    buffer.extend_from_slice(packet);
                    queued += 1;
                    if queued == TUN_WRITE_BATCH {
                        flush_to_tun(&shared, &mut gro_table, &mut writes[..queued], &mut counts);
                        queued = 0;
                    }
                }
            }
            flush_to_tun(&shared, &mut gro_table, &mut writes[..queued], &mut counts);
            shared.counters.add(Direction::UdpToTun, &counts);
        }
    }
}

fn flush_to_tun(
    shared: &Shared,
    gro_table: &mut GROTable,
    writes: &mut [Vec<u8>],
    counts: &mut BatchCounts,
) {
    if writes.is_empty() {
        return;
    }
    let offset = shared.tun_write_offset();
    let packets = writes.len() as u64;
    let bytes: u64 = writes.iter().map(|w| (w.len() - offset) as u64).sum();

    match shared.tun.send_multiple(gro_table, writes, offset) {
        Ok(_) => {
            counts.packets += packets;
            counts.bytes += bytes;
        }
        Err(error) => {
            // NOTE: tun-rs reports one error for the whole batch, so the
            // packets written before the failure are counted as failed too.
            debug!(%error, packets, "writing into the TUN device failed");
            counts.drop_many(DropReason::SendFailed, packets);
        }
    }
}

/// Logs how a packet loop ended.
pub(crate) fn log_exit(direction: &str, result: &io::Result<()>) {
    match result {
        Ok(()) => debug!(direction, "packet loop stopped"),
        Err(error) => warn!(direction, %error, "packet loop failed"),
    }
}
