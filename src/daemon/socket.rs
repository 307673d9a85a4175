//! The underlay sockets: a UDP socket bound to `--local`:`--port` that receives VXLAN, and a
//! send-only raw IPv4 socket (IPPROTO_RAW, header included) that sends it, so that the daemon
//! writes the whole outer header itself: the UDP source port from the inner flow hash
//! (RFC 7348 §5, for underlay ECMP), DF, DSCP and ECN (RFC 6040) inherited from the inner packet.

use crate::error::Failure;
use crate::sys;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{IpAddr, SocketAddr, UdpSocket};

/// Socket buffer size asked for: room for a burst of several thousand full-size datagrams
/// while a worker is busy elsewhere. Set with SO_RCVBUFFORCE/SO_SNDBUFFORCE (we run with
/// CAP_NET_ADMIN), falling back to the plain option, which the kernel caps at
/// net.core.[rw]mem_max.
const SOCKET_BUFFER: usize = 8 << 20;

/// Sizes one of a socket's buffers: forced if allowed, else as large as the kernel lets us.
/// The default still works, so a refusal is only logged.
pub(super) fn size_buffer(sock: &Socket, receive: bool, what: &str) {
    if sys::force_buffer_size(sock, receive, SOCKET_BUFFER).is_ok() {
        return;
    }
    let r = if receive {
        sock.set_recv_buffer_size(SOCKET_BUFFER)
    } else {
        sock.set_send_buffer_size(SOCKET_BUFFER)
    };
    if let Err(e) = r {
        let dir = if receive { "receive" } else { "send" };
        tracing::warn!("{what}: cannot enlarge the {dir} buffer: {e}");
    }
}

/// Opens the VXLAN socket (a group of one).
pub fn bind_udp(local: IpAddr, port: u16) -> Result<UdpSocket, Failure> {
    let mut v = bind_udp_group(local, port, 1, false)?;
    Ok(v.remove(0))
}

/// Opens `n` VXLAN sockets on the same address and port (SO_REUSEPORT): the kernel spreads
/// datagrams over them by a hash of the 4-tuple, so each flow (the sender picks the UDP source
/// port from the inner flow) always lands on the same socket, i.e. the same worker.
///
/// SO_REUSEPORT would also let a second daemon join the group and silently take part of the
/// traffic, so a probe bind without it comes first: it fails if anyone holds the port.
///
/// Each socket has UDP_GRO on where the kernel has it: runs of equal-size datagrams from one
/// sender (a remote vtepd's UDP GSO send over a local or GRO-capable underlay) may then arrive
/// as one read, which `RecvBatch` splits; without it everything works a datagram at a time.
///
/// `zero_csum6`: over IPv6, datagrams with a zero UDP checksum are accepted (UDP_NO_CHECK6_RX,
/// RFC 6936); otherwise the kernel drops them.
pub fn bind_udp_group(
    local: IpAddr,
    port: u16,
    n: usize,
    zero_csum6: bool,
) -> Result<Vec<UdpSocket>, Failure> {
    let addr = SocketAddr::new(local, port);
    let fail = |what: &str, e: std::io::Error| {
        Failure::Runtime(format!("UDP socket {addr}: cannot {what}: {e}"))
    };
    let in_use = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            Failure::Runtime(format!(
                "UDP {addr} is already in use (another VTEP on this port and address?)"
            ))
        } else {
            fail("bind", e)
        }
    };
    let new = || {
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
            .map_err(|e| fail("create it", e))?;
        if addr.is_ipv6() {
            // IPv6 only: an IPv4 datagram never reaches an IPv6 network's socket.
            s.set_only_v6(true)
                .map_err(|e| fail("set IPV6_V6ONLY", e))?;
            if zero_csum6 {
                sys::accept_zero_udp6_checksum(&s).map_err(|e| fail("set UDP_NO_CHECK6_RX", e))?;
            }
        }
        Ok::<_, Failure>(s)
    };
    let probe = new()?;
    probe.bind(&addr.into()).map_err(in_use)?;
    // Port 0 asks the kernel for a port: the group then binds to the one it gave the probe.
    let addr = match probe.local_addr().ok().and_then(|a| a.as_socket()) {
        Some(a) => a,
        None => addr,
    };
    drop(probe);
    let mut socks = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let sock = new()?;
        if n > 1 {
            sock.set_reuse_port(true)
                .map_err(|e| fail("set SO_REUSEPORT", e))?;
        }
        size_buffer(&sock, true, &format!("UDP socket {addr}"));
        if let Err(e) = sys::enable_rxq_overflow_count(&sock) {
            tracing::warn!("UDP socket {addr}: cannot count receive-queue drops: {e}");
        }
        // The outer TOS of every datagram, for RFC 6040 decapsulation of its ECN bits.
        match local {
            IpAddr::V4(_) => sock.set_recv_tos_v4(true),
            IpAddr::V6(_) => sock.set_recv_tclass_v6(true),
        }
        .map_err(|e| fail("ask for the outer TOS (IP_RECVTOS / IPV6_RECVTCLASS)", e))?;
        sock.bind(&addr.into()).map_err(in_use)?;
        sock.set_nonblocking(true)
            .map_err(|e| fail("make it non-blocking", e))?;
        if let Err(e) = sys::enable_udp_gro(&sock) {
            tracing::debug!(error = %e, "UDP_GRO not available on the VXLAN socket");
        }
        socks.push(sock.into());
    }
    Ok(socks)
}

/// Opens the send-only raw socket for encapsulated packets (their IPv4 header included).
/// IPPROTO_RAW sockets never receive, so they cost nothing on the receive path.
pub fn open_raw_sender(local: IpAddr) -> Result<Socket, Failure> {
    let v6 = local.is_ipv6();
    let fail = |what: &str, e: std::io::Error| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            " (vtepd run needs CAP_NET_RAW)"
        } else {
            ""
        };
        let family = if v6 { "IPv6" } else { "IPv4" };
        Failure::Runtime(format!("raw {family} socket: cannot {what}: {e}{hint}"))
    };
    // IPPROTO_RAW: we write the whole IP header (IP_HDRINCL, which an IPv6 raw socket of
    // this protocol has too).
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let sock = Socket::new(domain, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW)))
        .map_err(|e| fail("create it", e))?;
    if v6 {
        // IPv6 is never fragmented on the way; an oversize packet fails with EMSGSIZE.
        sys::set_dont_fragment6(&sock).map_err(|e| fail("set IPV6_MTU_DISCOVER", e))?;
        sys::enable_recv_err6(&sock).map_err(|e| fail("set IPV6_RECVERR", e))?;
        size_buffer(&sock, false, "raw socket");
        sock.set_nonblocking(true)
            .map_err(|e| fail("make it non-blocking", e))?;
        return Ok(sock);
    }
    // The DF bit is in the header we write (the network's `df` policy); this also forbids
    // local fragmentation, so an oversize packet fails with EMSGSIZE instead of leaving in
    // pieces (RFC 7348 §4.3).
    sys::set_dont_fragment(&sock, true).map_err(|e| fail("set IP_MTU_DISCOVER", e))?;
    // Without it the kernel reports a packet its queues dropped on the way out as sent.
    sys::enable_recv_err(&sock).map_err(|e| fail("set IP_RECVERR", e))?;
    size_buffer(&sock, false, "raw socket");
    sock.set_nonblocking(true)
        .map_err(|e| fail("make it non-blocking", e))?;
    Ok(sock)
}

/// Opens a send-only UDP socket bound to `local`:`port` for UDP GSO sends (one `sendmsg` cut
/// into datagrams by the kernel): not part of the receive group (no SO_REUSEPORT), DF set so
/// an oversize datagram fails instead of leaving in fragments. `None` when the port is taken
/// or the socket cannot be made (the caller then sends another way).
pub fn open_gso_sender(local: IpAddr, port: u16) -> Option<Socket> {
    let addr = SocketAddr::new(local, port);
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).ok()?;
    if local.is_ipv6() {
        sys::set_dont_fragment6(&sock).ok()?;
        sys::enable_recv_err6(&sock).ok()?;
        // Each send carries the flow label vtepd writes on the raw path for the same flow.
        sys::enable_flowinfo_send(&sock).ok()?;
    } else {
        sys::set_dont_fragment(&sock, true).ok()?;
        sys::enable_recv_err(&sock).ok()?;
    }
    sock.bind(&addr.into()).ok()?;
    sock.set_nonblocking(true).ok()?;
    size_buffer(&sock, false, "UDP GSO socket");
    Some(sock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn binds_loopback_and_refuses_a_second_bind() {
        let a = bind_udp(IpAddr::V4(Ipv4Addr::LOCALHOST), 0).unwrap();
        let port = a.local_addr().unwrap().port();
        let e = bind_udp(IpAddr::V4(Ipv4Addr::LOCALHOST), port).unwrap_err();
        assert!(e.message().contains("already in use"), "{e:?}");
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn a_group_shares_one_port_and_refuses_outsiders() {
        let g = bind_udp_group(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, 3, false).unwrap();
        assert_eq!(g.len(), 3);
        let port = g[0].local_addr().unwrap().port();
        assert!(g.iter().all(|s| s.local_addr().unwrap().port() == port));
        // Neither a plain socket nor another group may join.
        for n in [1, 2] {
            let e = bind_udp_group(IpAddr::V4(Ipv4Addr::LOCALHOST), port, n, false).unwrap_err();
            assert!(e.message().contains("already in use"), "{e:?}");
        }
    }
}
