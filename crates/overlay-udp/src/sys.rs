//! System calls that neither std, socket2 nor tun-rs offer: eventfd, poll,
//! recvmmsg and sendmmsg with UDP GRO and GSO control messages. Every
//! `unsafe` block of the crate lives here.
#![allow(unsafe_code)]

use std::io;
use std::marker::PhantomData;
use std::mem;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// `UDP_SEGMENT` from linux/udp.h (Linux 4.18): the GSO segment size.
const UDP_SEGMENT: libc::c_int = 103;
/// `UDP_GRO` from linux/udp.h (Linux 5.0): receive coalesced datagrams.
const UDP_GRO: libc::c_int = 104;

/// Bytes of control-message space for one `c_int` (UDP_GRO) or `u16`
/// (UDP_SEGMENT) value; both fit in the space of an int.
const CMSG_INT_SPACE: usize = 32;

/// Largest UDP payload over IPv4.
pub(crate) const MAX_UDP_PAYLOAD: usize = 65_507;

/// An eventfd that wakes the packet loops for shutdown.
#[derive(Debug)]
pub(crate) struct EventFd(OwnedFd);

impl EventFd {
    pub(crate) fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes no pointers; a non-negative return value is a
        // new descriptor that nothing else owns.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd and has no other owner.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Makes the eventfd readable for good (its counter is never drained).
    pub(crate) fn signal(&self) -> io::Result<()> {
        let increment: u64 = 1;
        // SAFETY: the buffer is a live u64 of exactly the 8 bytes written.
        let n = unsafe {
            libc::write(
                self.0.as_raw_fd(),
                (&increment as *const u64).cast(),
                mem::size_of::<u64>(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.0.as_fd()
    }
}

/// Waits until `data` or `stop` is readable; returns true when `stop` is.
pub(crate) fn wait_readable(data: BorrowedFd<'_>, stop: BorrowedFd<'_>) -> io::Result<bool> {
    let mut fds = [
        libc::pollfd {
            fd: data.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: stop.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: `fds` is a live array of two pollfd, matching the count.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n >= 0 {
            return Ok(fds[1].revents != 0);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

fn set_int_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a live c_int and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets a socket buffer size above `net.core.[rw]mem_max` when the process
/// has CAP_NET_ADMIN (SO_*BUFFORCE), else as far as the limit allows.
pub(crate) fn force_buffer_size(fd: BorrowedFd<'_>, receive: bool, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let (forced, plain) = if receive {
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF)
    } else {
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)
    };
    set_int_option(fd.as_raw_fd(), libc::SOL_SOCKET, forced, value)
        .or_else(|_| set_int_option(fd.as_raw_fd(), libc::SOL_SOCKET, plain, value))
}

/// Asks the kernel to hand over coalesced datagrams (UDP GRO); returns
/// whether the kernel accepted.
pub(crate) fn enable_udp_gro(fd: BorrowedFd<'_>) -> bool {
    set_int_option(fd.as_raw_fd(), libc::SOL_UDP, UDP_GRO, 1).is_ok()
}

/// Checks whether the kernel supports UDP_SEGMENT, so sends may carry a GSO size.
pub(crate) fn udp_gso_supported(fd: BorrowedFd<'_>) -> bool {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are live, and len is the size of value.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_UDP,
            UDP_SEGMENT,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc == 0
}

fn sockaddr_from(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn sockaddr_to(addr: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
        u16::from_be(addr.sin_port),
    )
}

// SAFETY (for the zeroed structs below): mmsghdr, iovec and sockaddr_in are
// plain C structs for which all-zero bytes are a valid value.
fn zeroed_mmsghdr() -> libc::mmsghdr {
    // SAFETY: see above.
    unsafe { mem::zeroed() }
}

/// Empty per-message arrays for recvmmsg and sendmmsg.
struct MessageArrays {
    headers: Box<[libc::mmsghdr]>,
    iovecs: Box<[libc::iovec]>,
    addrs: Box<[libc::sockaddr_in]>,
    controls: Box<[[u8; CMSG_INT_SPACE]]>,
}

impl MessageArrays {
    fn new(count: usize) -> MessageArrays {
        let empty_iovec = || libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let unspecified = sockaddr_from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        MessageArrays {
            headers: (0..count).map(|_| zeroed_mmsghdr()).collect(),
            iovecs: (0..count).map(|_| empty_iovec()).collect(),
            addrs: vec![unspecified; count].into_boxed_slice(),
            controls: vec![[0u8; CMSG_INT_SPACE]; count].into_boxed_slice(),
        }
    }
}

/// One datagram received by [`RecvBatch::recv`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Datagram<'a> {
    pub(crate) payload: &'a [u8],
    pub(crate) source: SocketAddrV4,
    /// With UDP GRO, the size of every coalesced datagram but the last.
    pub(crate) segment_size: Option<usize>,
    /// The payload did not fit the buffer and was cut.
    pub(crate) truncated: bool,
}

/// Buffers for recvmmsg, allocated once.
#[derive(Debug)]
pub(crate) struct RecvBatch {
    buffer_size: usize,
    data: Box<[u8]>,
    headers: Box<[libc::mmsghdr]>,
    iovecs: Box<[libc::iovec]>,
    addrs: Box<[libc::sockaddr_in]>,
    controls: Box<[[u8; CMSG_INT_SPACE]]>,
    received: usize,
}

// SAFETY: the raw pointers inside the headers point only into this struct's
// own boxed buffers, and they are rewritten before every use.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    pub(crate) fn new(count: usize, buffer_size: usize) -> RecvBatch {
        let MessageArrays {
            headers,
            iovecs,
            addrs,
            controls,
        } = MessageArrays::new(count);
        RecvBatch {
            buffer_size,
            data: vec![0u8; count * buffer_size].into_boxed_slice(),
            headers,
            iovecs,
            addrs,
            controls,
            received: 0,
        }
    }

    /// Receives up to the batch size of datagrams without blocking; returns
    /// how many arrived (0 when none was waiting).
    pub(crate) fn recv(&mut self, socket: BorrowedFd<'_>) -> io::Result<usize> {
        self.received = 0;
        let count = self.headers.len();
        for i in 0..count {
            self.iovecs[i] = libc::iovec {
                iov_base: self.data[i * self.buffer_size..].as_mut_ptr().cast(),
                iov_len: self.buffer_size,
            };
            let header = &mut self.headers[i].msg_hdr;
            header.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_in).cast();
            header.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            header.msg_iov = &mut self.iovecs[i];
            header.msg_iovlen = 1;
            header.msg_control = self.controls[i].as_mut_ptr().cast();
            header.msg_controllen = CMSG_INT_SPACE as _;
            header.msg_flags = 0;
            self.headers[i].msg_len = 0;
        }

        // SAFETY: every header points at live buffers of this struct whose
        // lengths are set above, and `count` is the length of `headers`.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.headers.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::WouldBlock {
                return Ok(0);
            }
            return Err(error);
        }
        self.received = n as usize;
        Ok(self.received)
    }

    /// Returns the `index`th datagram of the last [`RecvBatch::recv`].
    pub(crate) fn datagram(&self, index: usize) -> Datagram<'_> {
        assert!(index < self.received, "datagram index out of range");
        let header = &self.headers[index];
        let len = (header.msg_len as usize).min(self.buffer_size);
        let start = index * self.buffer_size;
        Datagram {
            payload: &self.data[start..start + len],
            source: sockaddr_to(&self.addrs[index]),
            segment_size: self.gro_segment_size(&header.msg_hdr),
            truncated: header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        }
    }

    fn gro_segment_size(&self, header: &libc::msghdr) -> Option<usize> {
        // SAFETY: the header's control buffer was filled by the kernel and
        // msg_controllen bounds it; the CMSG macros stay inside it.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(header);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == UDP_GRO {
                    let value =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                    return usize::try_from(value).ok().filter(|size| *size > 0);
                }
                cmsg = libc::CMSG_NXTHDR(header, cmsg);
            }
        }
        None
    }
}

/// Storage for sendmmsg, allocated once; a [`SendBatch`] fills it.
#[derive(Debug)]
pub(crate) struct SendStorage {
    headers: Box<[libc::mmsghdr]>,
    iovecs: Box<[libc::iovec]>,
    addrs: Box<[libc::sockaddr_in]>,
    controls: Box<[[u8; CMSG_INT_SPACE]]>,
    /// Packets carried by each message, for counting failures.
    packets: Box<[usize]>,
}

// SAFETY: the raw pointers inside are only set and used by a SendBatch that
// borrows this storage, on one thread at a time.
unsafe impl Send for SendStorage {}

impl SendStorage {
    pub(crate) fn new(count: usize) -> SendStorage {
        let MessageArrays {
            headers,
            iovecs,
            addrs,
            controls,
        } = MessageArrays::new(count);
        SendStorage {
            headers,
            iovecs,
            addrs,
            controls,
            packets: vec![0; count].into_boxed_slice(),
        }
    }

    /// Starts an empty batch of messages whose payloads live for `'d`.
    pub(crate) fn batch<'d>(&mut self) -> SendBatch<'_, 'd> {
        SendBatch {
            storage: self,
            len: 0,
            _data: PhantomData,
        }
    }
}

/// Outcome of [`SendBatch::send`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SendOutcome {
    pub(crate) packets_sent: usize,
    pub(crate) bytes_sent: usize,
    pub(crate) packets_failed: usize,
    pub(crate) last_error: Option<i32>,
}

/// Messages queued for one sendmmsg call.
#[derive(Debug)]
pub(crate) struct SendBatch<'s, 'd> {
    storage: &'s mut SendStorage,
    len: usize,
    _data: PhantomData<&'d [u8]>,
}

impl<'d> SendBatch<'_, 'd> {
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues `payload` for `destination`. With `segment_size`, the kernel
    /// splits the payload into datagrams of that size (UDP GSO), the last
    /// one possibly shorter, so `packets` datagrams go out.
    ///
    /// Panics when the batch is full.
    pub(crate) fn push(
        &mut self,
        payload: &'d [u8],
        destination: SocketAddrV4,
        segment_size: Option<u16>,
        packets: usize,
    ) {
        let i = self.len;
        assert!(i < self.storage.headers.len(), "send batch is full");
        let storage = &mut *self.storage;

        storage.iovecs[i] = libc::iovec {
            // sendmmsg only reads through this pointer.
            iov_base: payload.as_ptr().cast_mut().cast(),
            iov_len: payload.len(),
        };
        storage.addrs[i] = sockaddr_from(destination);
        storage.packets[i] = packets;

        let header = &mut storage.headers[i].msg_hdr;
        header.msg_name = (&mut storage.addrs[i] as *mut libc::sockaddr_in).cast();
        header.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        header.msg_iov = &mut storage.iovecs[i];
        header.msg_iovlen = 1;
        header.msg_flags = 0;
        match segment_size {
            Some(size) => {
                header.msg_control = storage.controls[i].as_mut_ptr().cast();
                // SAFETY: CMSG_SPACE is a pure size computation.
                header.msg_controllen =
                    unsafe { libc::CMSG_SPACE(mem::size_of::<u16>() as u32) } as _;
                // SAFETY: the control buffer is CMSG_INT_SPACE bytes, more
                // than CMSG_SPACE(2), so the first header and its data fit.
                unsafe {
                    let cmsg = libc::CMSG_FIRSTHDR(header);
                    (*cmsg).cmsg_level = libc::SOL_UDP;
                    (*cmsg).cmsg_type = UDP_SEGMENT;
                    (*cmsg).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), size);
                }
            }
            None => {
                header.msg_control = std::ptr::null_mut();
                header.msg_controllen = 0;
            }
        }
        self.len += 1;
    }

    /// Sends every queued message, retrying after a partial send and
    /// skipping a message the kernel rejects. The batch is empty afterwards.
    pub(crate) fn send(&mut self, socket: BorrowedFd<'_>) -> SendOutcome {
        let mut outcome = SendOutcome::default();
        let mut next = 0;
        while next < self.len {
            let remaining = self.len - next;
            // SAFETY: headers[next..len] were filled by `push` and point at
            // payloads borrowed for 'd and at this storage's own buffers.
            let n = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    self.storage.headers[next..].as_mut_ptr(),
                    remaining as libc::c_uint,
                    0,
                )
            };
            if n < 0 {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The first message of the rest failed: count it and go on.
                outcome.packets_failed += self.storage.packets[next];
                outcome.last_error = error.raw_os_error();
                next += 1;
                continue;
            }
            for i in next..next + n as usize {
                outcome.packets_sent += self.storage.packets[i];
                outcome.bytes_sent += self.storage.iovecs[i].iov_len;
            }
            next += n as usize;
        }
        self.len = 0;
        outcome
    }
}
