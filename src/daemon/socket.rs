//! The underlay UDP socket: bound to `--local`:`--port`, DF set, non-blocking.

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
    sys::set_dont_fragment(&sock).map_err(|e| fail("set DF (IP_MTU_DISCOVER)", e))?;
    // Bigger buffers absorb bursts of flood copies; the default still works, so a refusal is
    // only worth a log line.
    if let Err(e) = sock.set_send_buffer_size(SOCKET_BUFFER) {
        tracing::warn!("UDP socket {addr}: cannot enlarge the send buffer: {e}");
    }
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
