//! The underlay sockets: a UDP socket bound to `--local`:`--port` that receives VXLAN, and a
//! send-only raw IPv4 socket (IPPROTO_RAW, header included) that sends it, so that the daemon
//! writes the whole outer header itself: the UDP source port from the inner flow hash
//! (RFC 7348 §5, for underlay ECMP), DF, DSCP and ECN (RFC 6040) inherited from the inner packet.

use crate::cli::Failure;
use crate::sys;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

/// Socket buffer size asked for (the kernel caps it at net.core.[rw]mem_max).
const SOCKET_BUFFER: usize = 4 << 20;

/// Opens the VXLAN socket.
pub fn bind_udp(local: Ipv4Addr, port: u16) -> Result<UdpSocket, Failure> {
    let addr = SocketAddrV4::new(local, port);
    let fail = |what: &str, e: std::io::Error| {
        Failure::Runtime(format!("UDP socket {addr}: cannot {what}: {e}"))
    };
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| fail("create it", e))?;
    // A bigger buffer absorbs bursts; the default still works, so a refusal is only logged.
    if let Err(e) = sock.set_recv_buffer_size(SOCKET_BUFFER) {
        tracing::warn!("UDP socket {addr}: cannot enlarge the receive buffer: {e}");
    }
    sock.bind(&addr.into()).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            Failure::Runtime(format!(
                "UDP {addr} is already in use (another VTEP on this port and address?)"
            ))
        } else {
            fail("bind", e)
        }
    })?;
    sock.set_nonblocking(true)
        .map_err(|e| fail("make it non-blocking", e))?;
    Ok(sock.into())
}

/// Opens the send-only raw socket for encapsulated packets (their IPv4 header included).
/// IPPROTO_RAW sockets never receive, so they cost nothing on the receive path.
pub fn open_raw_sender() -> Result<Socket, Failure> {
    let fail = |what: &str, e: std::io::Error| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            " (vtepd run needs CAP_NET_RAW)"
        } else {
            ""
        };
        Failure::Runtime(format!("raw IPv4 socket: cannot {what}: {e}{hint}"))
    };
    let sock = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(libc::IPPROTO_RAW)),
    )
    .map_err(|e| fail("create it", e))?;
    // The DF bit is in the header we write; this also forbids local fragmentation, so an
    // oversize packet fails with EMSGSIZE instead of leaving in pieces (RFC 7348 §4.3).
    sys::set_dont_fragment(&sock).map_err(|e| fail("set IP_MTU_DISCOVER", e))?;
    if let Err(e) = sock.set_send_buffer_size(SOCKET_BUFFER) {
        tracing::warn!("raw socket: cannot enlarge the send buffer: {e}");
    }
    sock.set_nonblocking(true)
        .map_err(|e| fail("make it non-blocking", e))?;
    Ok(sock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_loopback_and_refuses_a_second_bind() {
        let a = bind_udp(Ipv4Addr::LOCALHOST, 0).unwrap();
        let port = a.local_addr().unwrap().port();
        let e = bind_udp(Ipv4Addr::LOCALHOST, port).unwrap_err();
        assert!(e.message().contains("already in use"), "{e:?}");
        assert_eq!(e.exit_code(), 1);
    }
}
