//! The only module allowed `unsafe`: the system calls no well-kept crate exposes safely
//! (socket2 has no IP_MTU_DISCOVER, SO_RCVBUFFORCE or SO_RXQ_OVFL, nothing offers SIOCGIFMTU for
//! an arbitrary interface), and the batched `recvmmsg`/`sendmmsg` of the data path.
//!
//! Why not quinn-udp for the batches: it drives UDP sockets only (its send path sets the source
//! port from the socket and wants GSO-style equal segments), while vtepd sends through a raw
//! IP_HDRINCL socket so that each inner flow gets its own UDP source port; and its receive path
//! does not report the socket's overflow counter (SO_RXQ_OVFL) we count drops with. The two
//! wrappers below are small, allocate nothing and keep every pointer on the caller's stack.
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd};

/// A socket address of either family, as the kernel reads and writes it (the `msg_name` of a
/// message): big enough for a `sockaddr_in6`, read by its family field.
#[repr(C)]
#[derive(Clone, Copy)]
union SockAddr {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

impl SockAddr {
    /// All zeroes (family AF_UNSPEC).
    fn zeroed() -> SockAddr {
        // SAFETY: both members are plain C structs for which all-zero bytes are valid values.
        unsafe { std::mem::zeroed() }
    }

    /// The address `ip`, port `port` (IPv6: flow label `flowinfo`, in host order), and the
    /// length the kernel is to read.
    fn new(ip: IpAddr, port: u16, flowinfo: u32) -> (SockAddr, libc::socklen_t) {
        let mut a = SockAddr::zeroed();
        match ip {
            IpAddr::V4(ip) => {
                a.v4 = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: port.to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(ip).to_be(),
                    },
                    sin_zero: [0; 8],
                };
                (
                    a,
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
            IpAddr::V6(ip) => {
                a.v6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: port.to_be(),
                    sin6_flowinfo: flowinfo.to_be(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: ip.octets(),
                    },
                    sin6_scope_id: 0,
                };
                (
                    a,
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    }

    /// The room the kernel may write into.
    const LEN: libc::socklen_t = std::mem::size_of::<SockAddr>() as libc::socklen_t;

    /// The address and port the kernel wrote (`len` bytes of it), if IPv4 or IPv6.
    fn read(&self, len: libc::socklen_t) -> Option<(IpAddr, u16)> {
        let len = len as usize;
        // SAFETY: every bit pattern is a valid value of both members (plain C structs of
        // integers), and the family field is at the same place in both.
        unsafe {
            match i32::from(self.v4.sin_family) {
                libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => Some((
                    IpAddr::V4(Ipv4Addr::from(u32::from_be(self.v4.sin_addr.s_addr))),
                    u16::from_be(self.v4.sin_port),
                )),
                libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => Some((
                    IpAddr::V6(Ipv6Addr::from(self.v6.sin6_addr.s6_addr)),
                    u16::from_be(self.v6.sin6_port),
                )),
                _ => None,
            }
        }
    }
}

/// Sets IP_MTU_DISCOVER: with `df`, IP_PMTUDISC_DO (every datagram leaves with DF set and is
/// never fragmented locally; an oversize send fails with EMSGSIZE, RFC 7348 §4.3); without,
/// IP_PMTUDISC_DONT (DF clear).
pub fn set_dont_fragment(sock: &impl AsFd, df: bool) -> io::Result<()> {
    let val: libc::c_int = if df {
        libc::IP_PMTUDISC_DO
    } else {
        libc::IP_PMTUDISC_DONT
    };
    // SAFETY: the descriptor is borrowed from a live socket for the duration of the call; the
    // option value points to a c_int on our stack and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_fd().as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&val as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn setsockopt_int(
    sock: &impl AsFd,
    level: libc::c_int,
    name: libc::c_int,
    val: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the descriptor is borrowed from a live socket for the duration of the call; the
    // option value points to a c_int on our stack and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_fd().as_raw_fd(),
            level,
            name,
            (&val as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets SO_RCVBUFFORCE (receive = true) or SO_SNDBUFFORCE: a socket buffer size above
/// net.core.[rw]mem_max, allowed with CAP_NET_ADMIN.
pub fn force_buffer_size(sock: &impl AsFd, receive: bool, bytes: usize) -> io::Result<()> {
    let name = if receive {
        libc::SO_RCVBUFFORCE
    } else {
        libc::SO_SNDBUFFORCE
    };
    let val = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    setsockopt_int(sock, libc::SOL_SOCKET, name, val)
}

/// Sets SO_RXQ_OVFL: every received datagram then carries the socket's count of datagrams
/// dropped because its receive queue was full (read by [`recv_batch`]).
pub fn enable_rxq_overflow_count(sock: &impl AsFd) -> io::Result<()> {
    setsockopt_int(sock, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1)
}

/// Sets IP_RECVERR: the kernel then reports every error of a send to the sender, the drops of a
/// full queue on the way out included (without it a raw or UDP socket's ENOBUFS is silently
/// turned into success), and queues the ICMP errors that come back about what the socket sent
/// on its error queue (read with [`drain_error_queue`]).
pub fn enable_recv_err(sock: &impl AsFd) -> io::Result<()> {
    setsockopt_int(sock, libc::IPPROTO_IP, libc::IP_RECVERR, 1)
}

/// IPV6_RECVERR: [`enable_recv_err`] for an IPv6 socket (ICMPv6 errors, "packet too big"
/// among them, and local send errors queued for [`drain_error_queue`]).
pub fn enable_recv_err6(sock: &impl AsFd) -> io::Result<()> {
    setsockopt_int(sock, libc::IPPROTO_IPV6, libc::IPV6_RECVERR, 1)
}

/// IPV6_FLOWINFO_SEND: the flow label given with each send (`sin6_flowinfo`) is the one the
/// datagrams leave with (the kernel's automatic label otherwise). Without exclusive flow
/// label leases in the namespace the kernel takes any label.
pub fn enable_flowinfo_send(sock: &impl AsFd) -> io::Result<()> {
    setsockopt_int(sock, libc::IPPROTO_IPV6, libc::IPV6_FLOWINFO_SEND, 1)
}

/// UDP_NO_CHECK6_RX: the IPv6 UDP socket takes datagrams with a zero checksum (RFC 6936; the
/// kernel drops them otherwise, as RFC 8200 asks).
pub fn accept_zero_udp6_checksum(sock: &impl AsFd) -> io::Result<()> {
    setsockopt_int(sock, libc::SOL_UDP, libc::UDP_NO_CHECK6_RX, 1)
}

/// IPV6_MTU_DISCOVER = IPV6_PMTUDISC_DO: never fragment locally; an oversize send fails with
/// EMSGSIZE (IPv6 has no DF bit: routers never fragment).
pub fn set_dont_fragment6(sock: &impl AsFd) -> io::Result<()> {
    setsockopt_int(
        sock,
        libc::IPPROTO_IPV6,
        libc::IPV6_MTU_DISCOVER,
        libc::IPV6_PMTUDISC_DO,
    )
}

/// One error read from a socket's error queue: what it says about an earlier send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedError {
    /// The destination of the send it is about (the error's `msg_name`).
    pub dst: Option<IpAddr>,
    /// The largest packet the path toward `dst` carries, when the error says so: an ICMP
    /// "fragmentation needed" (`ee_origin` ICMP, type 3 code 4: `ee_info`), an ICMPv6 "packet
    /// too big" (`ee_origin` ICMP6, type 2) or a local EMSGSIZE (`ee_origin` local: `ee_info`).
    pub mtu: Option<u32>,
}

/// `SO_EE_ORIGIN_LOCAL` and `SO_EE_ORIGIN_ICMP` of linux/errqueue.h.
const SO_EE_ORIGIN_LOCAL: u8 = 1;
const SO_EE_ORIGIN_ICMP: u8 = 2;
const SO_EE_ORIGIN_ICMP6: u8 = 3;

/// Reads everything on a socket's error queue (MSG_ERRQUEUE, without blocking), handing each
/// error to `on`; returns how many there were. What the queue holds (ICMP errors about earlier
/// sends) costs socket memory until read.
pub fn drain_error_queue(sock: &impl AsFd, mut on: impl FnMut(QueuedError)) -> io::Result<usize> {
    let mut n = 0;
    loop {
        let mut data = [0u8; 64];
        let mut ctrl = CmsgBuf([0; 64]);
        let mut name = SockAddr::zeroed();
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: a plain C struct for which all-zero bytes are a valid value.
        let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
        h.msg_name = (&mut name as *mut SockAddr).cast();
        h.msg_namelen = SockAddr::LEN;
        h.msg_iov = &mut iov;
        h.msg_iovlen = 1;
        h.msg_control = ctrl.0.as_mut_ptr().cast();
        h.msg_controllen = std::mem::size_of::<CmsgBuf>() as _;
        // SAFETY: the header points at `name`, `iov` (into `data`) and `ctrl` on this stack
        // frame with their true lengths, alive for the call; the kernel writes at most those
        // lengths.
        let rc = unsafe {
            libc::recvmsg(
                sock.as_fd().as_raw_fd(),
                &mut h,
                libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(n),
                io::ErrorKind::Interrupted => continue,
                _ => Err(e),
            };
        }
        n += 1;
        let dst = name.read(h.msg_namelen).map(|(ip, _)| ip);
        let mut mtu = None;
        // SAFETY: the header's control fields describe `ctrl`, which the kernel filled
        // (msg_controllen was updated to the bytes written); CMSG_FIRSTHDR/CMSG_NXTHDR stay
        // inside that length, and the data of an IP_RECVERR message starts with a
        // sock_extended_err, read unaligned only when the message is long enough to hold one.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&h);
            while !c.is_null() {
                let len = (*c).cmsg_len as usize;
                let need = libc::CMSG_LEN(std::mem::size_of::<libc::sock_extended_err>() as u32);
                let recverr = ((*c).cmsg_level == libc::IPPROTO_IP
                    && (*c).cmsg_type == libc::IP_RECVERR)
                    || ((*c).cmsg_level == libc::IPPROTO_IPV6
                        && (*c).cmsg_type == libc::IPV6_RECVERR);
                if recverr && len >= need as usize {
                    let e = std::ptr::read_unaligned(
                        libc::CMSG_DATA(c).cast::<libc::sock_extended_err>(),
                    );
                    let frag_needed =
                        (e.ee_origin == SO_EE_ORIGIN_ICMP && e.ee_type == 3 && e.ee_code == 4)
                            || (e.ee_origin == SO_EE_ORIGIN_ICMP6 && e.ee_type == 2);
                    let local =
                        e.ee_origin == SO_EE_ORIGIN_LOCAL && e.ee_errno == libc::EMSGSIZE as u32;
                    if (frag_needed || local) && e.ee_info > 0 {
                        mtu = Some(e.ee_info);
                    }
                }
                c = libc::CMSG_NXTHDR(&h, c);
            }
        }
        on(QueuedError { dst, mtu });
    }
}

/// The MTU of the kernel's route from `local` toward `dst` (IP_MTU of a UDP socket connected
/// there: the route's `mtu`, a learned path MTU, or the device's), for a send that failed with
/// EMSGSIZE. Sends nothing.
pub fn route_mtu(local: IpAddr, dst: IpAddr) -> io::Result<u32> {
    let (domain, level, opt) = match dst {
        IpAddr::V4(_) => (socket2::Domain::IPV4, libc::IPPROTO_IP, libc::IP_MTU),
        IpAddr::V6(_) => (socket2::Domain::IPV6, libc::IPPROTO_IPV6, libc::IPV6_MTU),
    };
    let sock = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    sock.bind(&std::net::SocketAddr::new(local, 0).into())?;
    sock.connect(&std::net::SocketAddr::new(dst, 9).into())?;
    let mut val: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the descriptor is borrowed from a live socket for the call; the option value
    // points to a c_int on our stack and `len` holds its exact size.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            level,
            opt,
            (&mut val as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    u32::try_from(val).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

/// `ICMP_FILTER` (linux/icmp.h, level SOL_RAW): a mask of the ICMP types a raw ICMP socket
/// does not receive.
const ICMP_FILTER: libc::c_int = 1;

/// Lets the raw ICMP socket `sock` receive only ICMP types `types` (ICMP_FILTER).
pub fn icmp_filter(sock: &impl AsFd, types: &[u8]) -> io::Result<()> {
    let allowed = types
        .iter()
        .filter(|t| **t < 32)
        .fold(0u32, |m, t| m | 1 << t);
    setsockopt_int(sock, libc::SOL_RAW, ICMP_FILTER, !allowed as libc::c_int)
}

/// `ICMP6_FILTER` (netinet/icmp6.h, level IPPROTO_ICMPV6): a 256-bit mask of the ICMPv6 types a
/// raw ICMPv6 socket does not receive.
const ICMP6_FILTER: libc::c_int = 1;

/// Lets the raw ICMPv6 socket `sock` receive only ICMPv6 types `types` (ICMP6_FILTER).
pub fn icmp6_filter(sock: &impl AsFd, types: &[u8]) -> io::Result<()> {
    let mut blocked = [u32::MAX; 8];
    for t in types {
        blocked[usize::from(t >> 5)] &= !(1u32 << (t & 31));
    }
    // SAFETY: the descriptor is borrowed from a live socket for the call; the option value
    // points to the 32-byte mask on our stack and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_fd().as_raw_fd(),
            libc::IPPROTO_ICMPV6,
            ICMP6_FILTER,
            blocked.as_ptr().cast(),
            std::mem::size_of_val(&blocked) as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The count of packets a socket dropped because its receive queue was full (SO_MEMINFO's
/// SK_MEMINFO_DROPS: the count SO_RXQ_OVFL reports with each datagram), read at any time.
pub fn socket_drops(sock: &impl AsFd) -> io::Result<u32> {
    /// SK_MEMINFO_VARS in linux/sock_diag.h; SK_MEMINFO_DROPS is the last of them.
    const VARS: usize = 9;
    let mut info = [0u32; VARS];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: the descriptor is borrowed from a live socket for the call; the option value
    // points to an array on our stack and `len` holds its exact size, which the kernel does not
    // write past.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info[VARS - 1])
}

/// `UDP_GRO` (linux/udp.h; not in the libc crate for glibc targets).
const UDP_GRO: libc::c_int = 104;

/// Sets UDP_GRO: the kernel may hand over a run of equal-size datagrams from one sender as one
/// read, with their size in a control message ([`RecvMeta::gso_size`], read by [`recv_batch`]).
pub fn enable_udp_gro(sock: &impl AsFd) -> io::Result<()> {
    setsockopt_int(sock, libc::SOL_UDP, UDP_GRO, 1)
}

/// Attaches classic BPF program `prog` to a socket (SO_ATTACH_FILTER): the kernel runs it on
/// every packet the socket would receive and queues the packet only when it returns non-zero.
/// The kernel copies (and verifies) the program: `prog` need not outlive the call.
pub fn attach_socket_filter(sock: &impl AsFd, prog: &[libc::sock_filter]) -> io::Result<()> {
    let len =
        u16::try_from(prog.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let fprog = libc::sock_fprog {
        len,
        // The kernel only reads the program; the pointer is mut only by type.
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: the descriptor is borrowed from a live socket for the duration of the call; the
    // option value is a sock_fprog on our stack (its exact size passed) pointing to `len`
    // instructions that `prog` keeps alive and unchanged until the call returns.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets a TUN/TAP device's offload flags (TUNSETOFFLOAD; 0: the kernel hands over complete
/// frames, checksummed and segmented). The flags are device-wide.
pub fn tun_set_offload(dev: &impl AsRawFd, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value (no pointer); the descriptor is a live
    // TUN/TAP file borrowed for the call.
    let rc = unsafe { libc::ioctl(dev.as_raw_fd(), libc::TUNSETOFFLOAD, flags as libc::c_ulong) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The TUN/TAP flags a device keeps from the last file attached to it (the kernel's
/// `TUN_FEATURES`: no packet information, one queue, virtio-net header, multi-queue, NAPI),
/// with its kind (`IFF_TUN`, `IFF_TAP`).
pub const TUN_ATTACH_FLAGS: u32 = (libc::IFF_TUN
    | libc::IFF_TAP
    | libc::IFF_NO_PI
    | libc::IFF_ONE_QUEUE
    | libc::IFF_VNET_HDR
    | libc::IFF_MULTI_QUEUE
    | libc::IFF_NAPI
    | libc::IFF_NAPI_FRAGS) as u32;

/// Attaches once to the existing TUN/TAP device `name` with `flags` (TUNSETIFF: the device
/// then keeps those of [`TUN_ATTACH_FLAGS`], as after any attach), turns its device-wide offload
/// flags off (TUNSETOFFLOAD 0) and detaches. Used to hand a device back as vtepd found it.
pub fn tun_reattach(name: &str, flags: u32) -> io::Result<()> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad interface name",
        ));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    // SAFETY: ifreq is a plain C struct for which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (flags & TUN_ATTACH_FLAGS) as libc::c_short;
    // SAFETY: TUNSETIFF reads the NUL-terminated name and the flags from `req` (zeroed, name
    // shorter than IFNAMSIZ) and may write the name back, inside `req`, which lives on our
    // stack for the whole call; the descriptor is the live /dev/net/tun file opened above.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF as _, &mut req) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    tun_set_offload(&file, 0)
}

/// Most messages moved by one [`recv_batch`] or [`send_batch`] call.
pub const MAX_BATCH: usize = 64;

/// One datagram received by [`recv_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecvMeta {
    /// Bytes received into the slot (the datagram's length unless `truncated`).
    pub len: usize,
    /// True when the datagram was larger than the slot (MSG_TRUNC).
    pub truncated: bool,
    /// Sender address (`None` if it was neither IPv4 nor IPv6).
    pub src: Option<IpAddr>,
    /// Sender port (0 for a raw socket, or when the sender was neither IPv4 nor IPv6).
    pub src_port: u16,
    /// With UDP_GRO on: the size of each of the equal-size datagrams coalesced into this read
    /// (the last may be shorter); 0 when the read is one datagram.
    pub gso_size: u16,
    /// With IP_RECVTOS (IPv6: IPV6_RECVTCLASS) on: the outer IPv4 TOS byte or IPv6 traffic
    /// class (DSCP and ECN), the same for every datagram of a coalesced read; 0 when not
    /// reported.
    pub tos: u8,
}

/// Control buffer room for an SO_RXQ_OVFL, a UDP_GRO and an IP_TOS message (CMSG_SPACE of 4,
/// 4 and 1 bytes: 16 each), u64-aligned.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct CmsgBuf([u8; 64]);

/// Receives up to `min(arena.len() / slot, meta.len(), MAX_BATCH)` datagrams with one
/// `recvmmsg(MSG_DONTWAIT)`: datagram `i` goes to `arena[i * slot..(i + 1) * slot]` and is
/// described by `meta[i]`. Returns how many arrived (an error, e.g. WouldBlock, when none did)
/// and, when the socket has SO_RXQ_OVFL on, its latest overflow drop count.
pub fn recv_batch(
    sock: &impl AsFd,
    arena: &mut [u8],
    slot: usize,
    meta: &mut [RecvMeta],
) -> io::Result<(usize, Option<u32>)> {
    let n = arena
        .len()
        .checked_div(slot)
        .unwrap_or(0)
        .min(meta.len())
        .min(MAX_BATCH);
    if n == 0 {
        return Ok((0, None));
    }
    // SAFETY: these are plain C structs for which all-zero bytes are valid values.
    let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut iovs: [libc::iovec; MAX_BATCH] = unsafe { std::mem::zeroed() };
    let mut addrs = [SockAddr::zeroed(); MAX_BATCH];
    let mut cmsgs = [CmsgBuf([0; 64]); MAX_BATCH];
    for (i, chunk) in arena.chunks_exact_mut(slot).take(n).enumerate() {
        iovs[i] = libc::iovec {
            iov_base: chunk.as_mut_ptr().cast(),
            iov_len: slot,
        };
        let h = &mut hdrs[i].msg_hdr;
        h.msg_name = (&mut addrs[i] as *mut SockAddr).cast();
        h.msg_namelen = SockAddr::LEN;
        h.msg_iov = &mut iovs[i];
        h.msg_iovlen = 1;
        h.msg_control = cmsgs[i].0.as_mut_ptr().cast();
        h.msg_controllen = std::mem::size_of::<CmsgBuf>() as _;
    }
    // SAFETY: every header points into arrays on this stack frame (addresses, iovecs, control
    // buffers) or into `arena`, each with its true length, all alive and exclusively borrowed
    // for the duration of the call; the kernel writes at most those lengths and `n` headers.
    let rc = unsafe {
        libc::recvmmsg(
            sock.as_fd().as_raw_fd(),
            hdrs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let got = rc as usize;
    let mut overflow = None;
    for i in 0..got {
        let h = &hdrs[i];
        let from = addrs[i].read(h.msg_hdr.msg_namelen);
        meta[i] = RecvMeta {
            len: (h.msg_len as usize).min(slot),
            truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            src: from.map(|(ip, _)| ip),
            src_port: from.map_or(0, |(_, port)| port),
            gso_size: 0,
            tos: 0,
        };
        // SAFETY: the header's control fields describe `cmsgs[i]`, which the kernel filled
        // (msg_controllen was updated to the bytes written); CMSG_FIRSTHDR/CMSG_NXTHDR stay
        // inside that length, CMSG_DATA of an SO_RXQ_OVFL message holds a u32, that of a
        // UDP_GRO message an int, that of an IP_TOS message one byte and that of an
        // IPV6_TCLASS message an int.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_RXQ_OVFL {
                    overflow = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<u32>()));
                }
                if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                    let g = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                    meta[i].gso_size = u16::try_from(g).unwrap_or(0);
                }
                if (*c).cmsg_level == libc::IPPROTO_IP && (*c).cmsg_type == libc::IP_TOS {
                    meta[i].tos = *libc::CMSG_DATA(c);
                }
                if (*c).cmsg_level == libc::IPPROTO_IPV6 && (*c).cmsg_type == libc::IPV6_TCLASS {
                    let t = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                    meta[i].tos = t as u8;
                }
                c = libc::CMSG_NXTHDR(&h.msg_hdr, c);
            }
        }
    }
    Ok((got, overflow))
}

/// One datagram for [`send_batch`]: `head` then `body`, to `dst`.
#[derive(Debug, Clone, Copy)]
pub struct SendMsg<'a> {
    /// First part (e.g. the outer headers).
    pub head: &'a [u8],
    /// Second part (e.g. the inner frame).
    pub body: &'a [u8],
    /// Destination address (the port is 0: raw sockets ignore it).
    pub dst: IpAddr,
}

/// Sends `msgs[..min(len, MAX_BATCH)]` with one `sendmmsg(MSG_DONTWAIT)`. Returns how many were
/// sent, in order; an error only when the first one failed (its errno), so that the caller can
/// count it and carry on with the next.
pub fn send_batch(sock: &impl AsFd, msgs: &[SendMsg<'_>]) -> io::Result<usize> {
    send_batch_to_port(sock, msgs, 0)
}

/// [`send_batch`] with destination port `port` on every message (for a UDP socket).
pub fn send_batch_to_port(sock: &impl AsFd, msgs: &[SendMsg<'_>], port: u16) -> io::Result<usize> {
    let n = msgs.len().min(MAX_BATCH);
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: plain C structs for which all-zero bytes are valid values.
    let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut iovs: [[libc::iovec; 2]; MAX_BATCH] = unsafe { std::mem::zeroed() };
    let mut addrs = [SockAddr::zeroed(); MAX_BATCH];
    for (i, m) in msgs.iter().take(n).enumerate() {
        // The kernel only reads through iov_base on send; the pointer is mut only by type.
        iovs[i] = [
            libc::iovec {
                iov_base: m.head.as_ptr().cast_mut().cast(),
                iov_len: m.head.len(),
            },
            libc::iovec {
                iov_base: m.body.as_ptr().cast_mut().cast(),
                iov_len: m.body.len(),
            },
        ];
        let (a, len) = SockAddr::new(m.dst, port, 0);
        addrs[i] = a;
        let h = &mut hdrs[i].msg_hdr;
        h.msg_name = (&mut addrs[i] as *mut SockAddr).cast();
        h.msg_namelen = len;
        h.msg_iov = iovs[i].as_mut_ptr();
        h.msg_iovlen = 2;
    }
    // SAFETY: every header points into arrays on this stack frame or into the borrowed
    // `msgs` slices, with their true lengths, alive for the duration of the call; the kernel
    // only reads the data and writes `msg_len` into the `n` headers.
    let rc = unsafe {
        libc::sendmmsg(
            sock.as_fd().as_raw_fd(),
            hdrs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// `UDP_SEGMENT` (linux/udp.h; not in the libc crate for glibc targets).
const UDP_SEGMENT: libc::c_int = 17 + 86;

/// Sends `parts` (concatenated) to `dst` with one `sendmsg(MSG_DONTWAIT)` on a UDP socket,
/// asking the kernel (UDP_SEGMENT) to cut the payload into datagrams of `gso_size` bytes (the
/// last may be shorter). Returns the bytes taken.
pub fn send_segmented(
    sock: &impl AsFd,
    parts: &[io::IoSlice<'_>],
    dst: std::net::SocketAddr,
    flow_label: u32,
    gso_size: u16,
) -> io::Result<usize> {
    let (mut addr, addr_len) = SockAddr::new(dst.ip(), dst.port(), flow_label);
    let mut cmsg = CmsgBuf([0; 64]);
    // SAFETY: as above.
    let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
    h.msg_name = (&mut addr as *mut SockAddr).cast();
    h.msg_namelen = addr_len;
    // std documents IoSlice as ABI-compatible with iovec on Unix; the kernel only reads it.
    h.msg_iov = parts.as_ptr().cast_mut().cast();
    h.msg_iovlen = parts.len() as _;
    h.msg_control = cmsg.0.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a size.
    h.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as _;
    // SAFETY: the control buffer is 64 bytes, u64-aligned, and msg_controllen (CMSG_SPACE of a
    // u16, 24 bytes) fits in it, so CMSG_FIRSTHDR is non-null and CMSG_DATA has room for the
    // u16 written; the message header points at `addr`, `parts` and `cmsg`, all alive and
    // borrowed for the call, with their true lengths.
    let rc = unsafe {
        let c = libc::CMSG_FIRSTHDR(&h);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), gso_size);
        libc::sendmsg(sock.as_fd().as_raw_fd(), &h, libc::MSG_DONTWAIT)
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// The MTU of the interface called `name` in our network namespace.
pub fn interface_mtu(name: &str) -> io::Result<u32> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad interface name",
        ));
    }
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    // SAFETY: ifreq is a plain C struct for which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU reads the NUL-terminated name (the struct was zeroed and the name is
    // shorter than IFNAMSIZ) and writes only `ifr_ifru.ifru_mtu` inside `req`, which lives on our
    // stack for the whole call; the socket descriptor is live.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU as _, &mut req) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled the `ifru_mtu` member of the union on success.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    u32::try_from(mtu).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative MTU"))
}

/// Runs `f` with the process umask set to `mask`, then restores it. Used to create the control
/// socket with mode 0600 from the start; call it only while no other thread creates files.
pub fn with_umask<T>(mask: u32, f: impl FnOnce() -> T) -> T {
    // SAFETY: umask only swaps the process file-creation mask; it cannot fail or touch memory.
    let old = unsafe { libc::umask(mask as libc::mode_t) };
    let out = f();
    // SAFETY: as above; restores the previous mask.
    unsafe { libc::umask(old) };
    out
}

/// Moves the calling thread into a new, empty network namespace (only loopback, down). Used by
/// tests that need a private namespace for devices and routes without touching the host's.
pub fn unshare_network_namespace() -> io::Result<()> {
    // SAFETY: unshare only changes the calling thread's namespace membership; no memory is
    // passed.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_mtu_is_known() {
        assert!(interface_mtu("lo").unwrap() >= 1500);
        assert!(interface_mtu("no-such-dev-x").is_err());
        assert!(interface_mtu("").is_err());
        assert!(interface_mtu("a-name-longer-than-ifnamsiz").is_err());
    }

    #[test]
    fn batches_round_trip_over_loopback() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        enable_rxq_overflow_count(&rx).unwrap();
        let tx = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .unwrap();
        tx.connect(&rx.local_addr().unwrap().into()).unwrap();
        let bodies: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 10 + usize::from(i)]).collect();
        let msgs: Vec<SendMsg<'_>> = bodies
            .iter()
            .map(|b| SendMsg {
                head: b"hd",
                body: b,
                dst: IpAddr::V4(Ipv4Addr::LOCALHOST),
            })
            .collect();
        // send_batch names port 0, which UDP refuses (EINVAL): the first message's error.
        assert!(send_batch(&tx, &msgs).is_err());
        for b in &bodies {
            let mut d = b"hd".to_vec();
            d.extend_from_slice(b);
            tx.send(&d).unwrap();
        }
        let mut arena = vec![0u8; 4 * 64];
        let mut meta = [RecvMeta::default(); 8];
        let (n, ovfl) = recv_batch(&rx, &mut arena, 64, &mut meta).unwrap();
        assert_eq!(n, 4, "four slots");
        // The count comes only once the socket has dropped something.
        assert_eq!(ovfl.unwrap_or(0), 0);
        for i in 0..n {
            assert_eq!(meta[i].len, 12 + i);
            assert_eq!(meta[i].src, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
            assert!(!meta[i].truncated);
            assert_eq!(&arena[i * 64 + 2..i * 64 + 12 + i], &bodies[i][..]);
        }
        let (n, _) = recv_batch(&rx, &mut arena, 8, &mut meta).unwrap();
        assert_eq!((n, meta[0].len, meta[0].truncated), (1, 8, true));
        let e = recv_batch(&rx, &mut arena, 64, &mut meta).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn send_batch_sends_in_order_through_a_raw_socket() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let port = rx.local_addr().unwrap().port();
        let raw = match socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(libc::IPPROTO_RAW)),
        ) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return, // needs CAP_NET_RAW
            Err(e) => panic!("raw socket: {e}"),
        };
        let bodies: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 5 + usize::from(i)]).collect();
        let heads: Vec<[u8; 28]> = bodies
            .iter()
            .map(|b| {
                let total = (28 + b.len()) as u16;
                let mut h = [0u8; 28];
                h[0] = 0x45;
                h[2..4].copy_from_slice(&total.to_be_bytes());
                h[8] = 64;
                h[9] = 17;
                h[12..16].copy_from_slice(&[127, 0, 0, 1]);
                h[16..20].copy_from_slice(&[127, 0, 0, 1]);
                h[20..22].copy_from_slice(&4242u16.to_be_bytes());
                h[22..24].copy_from_slice(&port.to_be_bytes());
                h[24..26].copy_from_slice(&(total - 20).to_be_bytes());
                h
            })
            .collect();
        let msgs: Vec<SendMsg<'_>> = heads
            .iter()
            .zip(&bodies)
            .map(|(h, b)| SendMsg {
                head: h,
                body: b,
                dst: IpAddr::V4(Ipv4Addr::LOCALHOST),
            })
            .collect();
        assert_eq!(send_batch(&raw, &msgs).unwrap(), 3);
        assert_eq!(send_batch(&raw, &[]).unwrap(), 0);
        let mut buf = [0u8; 64];
        for b in &bodies {
            let (n, from) = rx.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &b[..]);
            assert_eq!(from.port(), 4242);
        }
    }

    /// Both settings take, as IP_MTU_DISCOVER reads back.
    #[test]
    fn dont_fragment_on_udp_socket() {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        for (df, want) in [
            (false, libc::IP_PMTUDISC_DONT),
            (true, libc::IP_PMTUDISC_DO),
        ] {
            set_dont_fragment(&s, df).unwrap();
            let mut v: libc::c_int = -1;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: a live descriptor; `v` and `len` are on our stack with their sizes.
            let rc = unsafe {
                libc::getsockopt(
                    s.as_fd().as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_MTU_DISCOVER,
                    (&mut v as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            assert_eq!((rc, v), (0, want));
        }
    }
}
