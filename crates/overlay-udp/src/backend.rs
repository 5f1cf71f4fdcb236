//! The public face of the data path: configuration, start, peer updates,
//! counters and shutdown.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::thread::JoinHandle;

use ipnet::Ipv4Net;
use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, info, warn};
use tun_rs::DeviceBuilder;

use crate::engine::{self, Shared};
use crate::stats::{Counters, Stats};
use crate::sys::{self, EventFd};
use crate::table::{PeerTable, TableError};

/// Default TUN device name, as in the original flannel.
pub const DEFAULT_TUN_NAME: &str = "flannel0";
/// Default UDP port of the udp backend.
pub const DEFAULT_PORT: u16 = 8285;
/// Bytes that the udp backend adds to each packet: IPv4 and UDP headers.
pub const ENCAPSULATION_OVERHEAD: u16 = 28;

/// Smallest MTU that IPv4 allows (RFC 791).
const MIN_MTU: u16 = 68;
/// Largest TUN MTU: a packet must fit one UDP datagram.
const MAX_MTU: u16 = 65_507;
/// Below this MTU a TSO super-packet could split into more packets than a
/// read batch holds, so TUN offloads stay off.
const MIN_OFFLOAD_MTU: u16 = 1280;
/// Linux limits interface names to 15 bytes (IFNAMSIZ - 1).
const MAX_TUN_NAME_LEN: usize = 15;
/// Send and receive buffer size of the UDP socket.
const SOCKET_BUFFER_BYTES: usize = 8 << 20;

/// How to start the udp backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpConfig {
    /// Name of the TUN device to create (default `flannel0`).
    pub tun_name: String,
    /// MTU of the TUN device: the underlay's MTU minus
    /// [`ENCAPSULATION_OVERHEAD`] (default 1472).
    pub tun_mtu: u16,
    /// This host's lease. The TUN device gets its network address with the
    /// overlay's prefix length, and only packets addressed inside it are
    /// accepted from the network.
    pub local_lease: Ipv4Net,
    /// The whole overlay network (the `Network` of the config).
    pub network: Ipv4Net,
    /// Address and port of the UDP socket. Binding to this host's PublicIP
    /// makes outgoing datagrams carry it as source, which peers check.
    pub bind: SocketAddrV4,
    /// Accept a datagram only when its source address is the PublicIP of
    /// the lease that owns the packet's source address (default true). Turn
    /// off when peers reach this host through NAT.
    pub check_sender: bool,
    /// Let the TUN device exchange TSO/GSO super-packets and the socket use
    /// UDP GSO and GRO where the kernel supports them (default true). Every
    /// datagram on the wire still carries exactly one IPv4 packet.
    pub offload: bool,
}

impl UdpConfig {
    /// Creates a config with the defaults: device `flannel0`, MTU 1472,
    /// sender check and offloads on.
    pub fn new(local_lease: Ipv4Net, network: Ipv4Net, bind: SocketAddrV4) -> UdpConfig {
        UdpConfig {
            tun_name: DEFAULT_TUN_NAME.to_owned(),
            tun_mtu: 1500 - ENCAPSULATION_OVERHEAD,
            local_lease,
            network,
            bind,
            check_sender: true,
            offload: true,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.tun_name.is_empty()
            || self.tun_name.len() > MAX_TUN_NAME_LEN
            || self
                .tun_name
                .bytes()
                .any(|b| b == b'/' || b.is_ascii_whitespace() || b == 0)
        {
            return Err(ConfigError::TunName {
                name: self.tun_name.clone(),
            });
        }
        if !(MIN_MTU..=MAX_MTU).contains(&self.tun_mtu) {
            return Err(ConfigError::Mtu { mtu: self.tun_mtu });
        }
        if self.bind.port() == 0 {
            return Err(ConfigError::Port { bind: self.bind });
        }
        Ok(())
    }
}

/// An invalid [`UdpConfig`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TUN device name is not a valid Linux interface name.
    #[error(
        "invalid TUN device name {name:?}: expected 1 to 15 bytes without '/', whitespace or NUL"
    )]
    TunName {
        /// The rejected name.
        name: String,
    },
    /// The MTU is outside what IPv4 over UDP can carry.
    #[error("invalid TUN MTU {mtu}: expected {MIN_MTU} to {MAX_MTU} bytes")]
    Mtu {
        /// The rejected MTU.
        mtu: u16,
    },
    /// Port 0 cannot be the backend's port, because peers send to the same
    /// port number.
    #[error(
        "invalid bind address {bind}: the port must not be 0 (the udp backend's default is 8285)"
    )]
    Port {
        /// The rejected address.
        bind: SocketAddrV4,
    },
    /// The local lease does not lie inside the network.
    #[error(transparent)]
    Lease(#[from] TableError),
}

/// Error from [`UdpBackend::start`]. Nothing is left behind: a device
/// created before the failure is removed when its descriptor closes.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config is invalid; fix the value that the message names.
    #[error("starting the udp backend failed: {0}")]
    Config(#[from] ConfigError),
    /// The TUN device could not be created or configured (missing
    /// CAP_NET_ADMIN, missing /dev/net/tun or a name already in use).
    #[error("creating TUN device {name} failed: {source}")]
    CreateTun {
        /// Requested device name.
        name: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The UDP socket could not be opened or bound (address not on this
    /// host, or port in use).
    #[error("binding the udp backend's socket to {bind} failed: {source}")]
    Bind {
        /// Requested address.
        bind: SocketAddrV4,
        /// The underlying error.
        source: io::Error,
    },
    /// The shutdown eventfd or a packet thread could not be created.
    #[error("starting the udp backend's packet threads failed: {source}")]
    Threads {
        /// The underlying error.
        source: io::Error,
    },
}

/// A packet loop that ended with an error before shutdown.
#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    /// The loop stopped on an I/O error; the backend carried no traffic in
    /// that direction afterwards.
    #[error("the udp backend's {direction} loop failed: {source}")]
    LoopFailed {
        /// `tun-to-udp` or `udp-to-tun`.
        direction: &'static str,
        /// The error that ended the loop.
        source: io::Error,
    },
    /// The loop panicked.
    #[error("the udp backend's {direction} loop panicked")]
    LoopPanicked {
        /// `tun-to-udp` or `udp-to-tun`.
        direction: &'static str,
    },
}

/// Offloads that the kernel granted at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offloads {
    /// The TUN device exchanges TSO/GSO super-packets with virtio-net headers.
    pub tun_vnet_hdr: bool,
    /// Sends carry a UDP GSO segment size (UDP_SEGMENT).
    pub udp_gso: bool,
    /// Receives return coalesced datagrams (UDP_GRO).
    pub udp_gro: bool,
}

const DIRECTIONS: [&str; 2] = ["tun-to-udp", "udp-to-tun"];

/// A running udp backend: a TUN device, a UDP socket and two OS threads that
/// carry packets between them.
///
/// The packet loops need no async runtime; every method returns quickly, so
/// a tokio program may call them from a task. Dropping the backend stops it
/// like [`UdpBackend::shutdown`] but discards the loops' errors.
#[derive(Debug)]
pub struct UdpBackend {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    tun_name: String,
}

impl UdpBackend {
    /// Creates and configures the TUN device, binds the UDP socket and starts
    /// the packet threads.
    ///
    /// The device and socket belong to the network namespace of the calling
    /// thread. The forwarding table starts empty: add peers through
    /// [`UdpBackend::peers`].
    pub fn start(config: UdpConfig) -> Result<UdpBackend, StartError> {
        config.validate()?;
        let peers =
            PeerTable::new(config.network, config.local_lease).map_err(ConfigError::from)?;
        let network = peers.network();
        let local_lease = peers.local_lease();

        let use_tun_offload = config.offload && config.tun_mtu >= MIN_OFFLOAD_MTU;
        let tun = DeviceBuilder::new()
            .name(config.tun_name.clone())
            .ipv4(local_lease.network(), network.prefix_len(), None)
            .mtu(config.tun_mtu)
            .offload(use_tun_offload)
            .enable(false)
            .build_sync()
            .and_then(|tun| {
                // Before the link goes up, so that no IPv6 packet reaches the loop.
                disable_ipv6(&config.tun_name);
                tun.enabled(true)?;
                tun.set_nonblocking(true)?;
                Ok(tun)
            })
            .map_err(|source| StartError::CreateTun {
                name: config.tun_name.clone(),
                source,
            })?;
        let tun_vnet_hdr = tun.tcp_gso();

        let socket = bind_socket(config.bind).map_err(|source| StartError::Bind {
            bind: config.bind,
            source,
        })?;
        let udp_gso = config.offload && sys::udp_gso_supported(socket.as_fd());
        let udp_gro = config.offload && sys::enable_udp_gro(socket.as_fd());

        let stop = EventFd::new().map_err(|source| StartError::Threads { source })?;
        let shared = Arc::new(Shared {
            tun,
            socket,
            peers,
            counters: Counters::default(),
            stop,
            local_lease,
            port: config.bind.port(),
            check_sender: config.check_sender,
            tun_mtu: usize::from(config.tun_mtu),
            vnet_hdr: tun_vnet_hdr,
            udp_gso,
            udp_gro,
        });

        let mut backend = UdpBackend {
            shared: Arc::clone(&shared),
            threads: Vec::with_capacity(2),
            tun_name: config.tun_name.clone(),
        };
        let loops: [fn(Arc<Shared>) -> io::Result<()>; 2] =
            [engine::run_tun_to_udp, engine::run_udp_to_tun];
        for (direction, run) in DIRECTIONS.into_iter().zip(loops) {
            let shared = Arc::clone(&shared);
            let thread = std::thread::Builder::new()
                .name(format!("udp-backend-{direction}"))
                .spawn(move || {
                    let result = run(shared);
                    engine::log_exit(direction, &result);
                    result
                })
                .map_err(|source| StartError::Threads { source })?;
            backend.threads.push(thread);
        }

        info!(
            tun = %config.tun_name,
            mtu = config.tun_mtu,
            address = %format_args!("{}/{}", local_lease.network(), network.prefix_len()),
            bind = %config.bind,
            check_sender = config.check_sender,
            tun_vnet_hdr,
            udp_gso,
            udp_gro,
            "udp backend started"
        );
        Ok(backend)
    }

    /// Checks that both packet threads still run. A loop ends on its own
    /// only after an I/O error it cannot recover from, which it logs; the
    /// backend then carries no traffic in that direction, so a daemon
    /// should stop and let its supervisor restart it.
    pub fn is_running(&self) -> bool {
        !self.threads.is_empty() && self.threads.iter().all(|thread| !thread.is_finished())
    }

    /// Returns a handle on the forwarding table. Updates apply while traffic flows.
    pub fn peers(&self) -> PeerTable {
        self.shared.peers.clone()
    }

    /// Returns a snapshot of the packet and drop counters.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Returns the name of the TUN device.
    pub fn tun_name(&self) -> &str {
        &self.tun_name
    }

    /// Returns the offloads in use.
    pub fn offloads(&self) -> Offloads {
        Offloads {
            tun_vnet_hdr: self.shared.vnet_hdr,
            udp_gso: self.shared.udp_gso,
            udp_gro: self.shared.udp_gro,
        }
    }

    /// Returns the local address of the UDP socket.
    pub fn local_addr(&self) -> SocketAddrV4 {
        match self.shared.socket.local_addr() {
            Ok(std::net::SocketAddr::V4(addr)) => addr,
            _ => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, self.shared.port),
        }
    }

    /// Stops the packet threads, waits for them and removes the TUN device.
    /// Returns the first error that ended a loop early.
    pub fn shutdown(mut self) -> Result<(), ShutdownError> {
        let result = self.stop();
        info!(tun = %self.tun_name, "udp backend stopped");
        result
    }

    fn stop(&mut self) -> Result<(), ShutdownError> {
        if let Err(error) = self.shared.stop.signal() {
            warn!(%error, "signalling the packet threads to stop failed");
        }
        let mut first_error = None;
        for (direction, thread) in DIRECTIONS.into_iter().zip(self.threads.drain(..)) {
            let error = match thread.join() {
                Ok(Ok(())) => continue,
                Ok(Err(source)) => ShutdownError::LoopFailed { direction, source },
                Err(_) => ShutdownError::LoopPanicked { direction },
            };
            first_error.get_or_insert(error);
        }
        // The TUN device disappears when the last handle on `shared`, which
        // owns its descriptor, drops with `self`.
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for UdpBackend {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            let _ = self.stop();
        }
    }
}

/// Stops the kernel from sending IPv6 packets (router solicitations, MLD)
/// into the device, where each would count as a malformed drop. The sysctl
/// belongs to the calling thread's network namespace.
fn disable_ipv6(tun_name: &str) {
    let path = format!("/proc/sys/net/ipv6/conf/{tun_name}/disable_ipv6");
    if let Err(error) = std::fs::write(&path, "1") {
        // Kernels without IPv6 have no such file; nothing to disable then.
        debug!(%error, path, "disabling IPv6 on the TUN device failed");
    }
}

fn bind_socket(bind: SocketAddrV4) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM.cloexec(), Some(Protocol::UDP))?;
    socket.bind(&bind.into())?;
    sys::force_buffer_size(socket.as_fd(), true, SOCKET_BUFFER_BYTES)?;
    sys::force_buffer_size(socket.as_fd(), false, SOCKET_BUFFER_BYTES)?;
    Ok(socket.into())
}
