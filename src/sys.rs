//! The only module allowed `unsafe`: the system calls no well-kept crate exposes safely
//! (socket2 has no IP_MTU_DISCOVER, and nothing offers SIOCGIFMTU for an arbitrary interface).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// Sets IP_MTU_DISCOVER = IP_PMTUDISC_DO: every datagram leaves with DF set and is never
/// fragmented locally; an oversize send fails with EMSGSIZE (RFC 7348 §4.3).
pub fn set_dont_fragment(sock: &impl AsFd) -> io::Result<()> {
    let val: libc::c_int = libc::IP_PMTUDISC_DO;
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
    fn dont_fragment_on_udp_socket() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        set_dont_fragment(&s).unwrap();
    }
}
