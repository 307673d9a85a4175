//! IPv4-in-IPv4 (RFC 2003): an outer IPv4 header with protocol 4 in front of an IPv4 packet.
//!
//! On send: the outer DF copies the inner DF by default (§3.1), or is always set or unset; TTL fixed or inherited; DSCP inherited or
//! fixed; ECN per RFC 6040; IP ID from the caller. A packet with an inner TTL of 0, or whose inner
//! source is the tunnel's own underlay address (a loop), is refused. The inner header must be a
//! well-formed IPv4 header (version, IHL, total length within the given bytes); its checksum is not
//! checked on send (it comes from the local stack). The TTL is not decremented here: that is the
//! forwarding layer's job.
//!
//! On receive: the outer header must be version 4 with a valid checksum and total length, protocol
//! 4 and not a fragment (reassembly needs state; a raw socket sees reassembled datagrams); options
//! are skipped. The inner header must be version 4 with a valid IHL, checksum and a total length
//! that fits in the outer payload (bytes past it are trimmed).

use super::{Df, Dscp, OuterIpv4, Ttl};
use crate::ecn::{self, EcnUpdate};
use crate::error::{Error, Invalid, Layer, Result};
use crate::ipv4::{self, Ipv4Packet, protocol};
use core::net::Ipv4Addr;
use core::ops::Range;

/// Bytes of outer header in front of the inner packet.
pub const OVERHEAD: usize = ipv4::HEADER_LEN;

/// Tunnel-wide settings for IPIP encapsulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpipConfig {
    /// Outer source address (the local tunnel endpoint).
    pub local: Ipv4Addr,
    /// Outer TTL.
    pub ttl: Ttl,
    /// Outer DSCP.
    pub dscp: Dscp,
    /// Outer DF bit.
    pub df: Df,
}

impl IpipConfig {
    /// Defaults for a local address: TTL 64, DSCP inherited, DF inherited (RFC 2003 §3.1).
    pub const fn new(local: Ipv4Addr) -> Self {
        IpipConfig {
            local,
            ttl: Ttl::Fixed(super::DEFAULT_TTL),
            dscp: Dscp::Inherit,
            df: Df::Inherit,
        }
    }
}

/// An IPIP encapsulator for one remote endpoint: a precomputed outer header template.
#[derive(Debug, Clone)]
pub struct IpipEncap {
    outer: OuterIpv4,
    local: Ipv4Addr,
    df: Df,
}

impl IpipEncap {
    /// Builds the template for packets from `cfg.local` to `remote`. Fails on a fixed TTL of 0.
    pub fn new(cfg: &IpipConfig, remote: Ipv4Addr) -> Result<Self> {
        Ok(IpipEncap {
            outer: OuterIpv4::new(cfg.local, remote, protocol::IPIP, cfg.ttl, cfg.dscp)?,
            local: cfg.local,
            df: cfg.df,
        })
    }

    /// The remote endpoint of this template.
    pub fn remote(&self) -> Ipv4Addr {
        self.outer.remote()
    }

    /// Writes the outer header in front of the inner IPv4 packet at `buf[off..off + len]` and returns
    /// the range of the finished packet (`off - 20 .. off + inner total length`; bytes past the inner
    /// total length are left out).
    ///
    /// Errors: `off < 20` or the packet past the buffer (`Layer::Buffer`); a malformed inner header,
    /// an inner TTL of 0 or an inner source equal to the local address (`Layer::InnerIpv4`); a
    /// packet over 65535 bytes (`TooLong`).
    #[inline]
    pub fn encapsulate(
        &self,
        buf: &mut [u8],
        off: usize,
        len: usize,
        ip_id: u16,
    ) -> Result<Range<usize>> {
        if off < OVERHEAD {
            return Err(Error::truncated(Layer::Buffer, OVERHEAD, off));
        }
        let end = off
            .checked_add(len)
            .ok_or(Error::invalid(Layer::Buffer, Invalid::TooLong))?;
        if end > buf.len() {
            return Err(Error::truncated(Layer::Buffer, end, buf.len()));
        }
        let start = off - OVERHEAD;
        let (head, rest) = buf[start..end].split_at_mut(OVERHEAD);
        let inner = Ipv4Packet::new_checked(&*rest).map_err(Error::in_inner)?;
        if inner.ttl() == 0 {
            return Err(Error::invalid(Layer::InnerIpv4, Invalid::TtlZero));
        }
        if inner.src() == self.local {
            return Err(Error::invalid(Layer::InnerIpv4, Invalid::OwnSource));
        }
        let inner_len = usize::from(inner.total_len());
        let total = OVERHEAD + inner_len;
        if total > ipv4::MAX_TOTAL_LEN {
            return Err(Error::invalid(Layer::Ipv4, Invalid::TooLong));
        }
        self.outer.write(
            head,
            total as u16,
            ip_id,
            self.df.outer(Some(inner.dont_frag())),
            Some(inner.tos()),
            Some(inner.ttl()),
        );
        Ok(start..start + total)
    }
}

/// What a received IPIP packet's outer header said, and where its inner packet is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpipRx {
    /// Outer source address (the remote endpoint).
    pub src: Ipv4Addr,
    /// Outer destination address.
    pub dst: Ipv4Addr,
    /// Outer TOS byte.
    pub tos: u8,
    /// Outer TTL.
    pub ttl: u8,
    /// Outer IP identification.
    pub ip_id: u16,
    /// Outer DF flag.
    pub dont_frag: bool,
    /// The inner IPv4 packet's range in the input buffer (up to its total length).
    pub inner: Range<usize>,
    /// What RFC 6040 decapsulation does to the inner ECN field.
    pub ecn: EcnUpdate,
}

/// Validates an IPIP packet (from the outer IPv4 header on) and locates the inner packet. The inner
/// packet is not modified: when `ecn` is [`EcnUpdate::Set`], the caller must apply it (or use
/// [`decapsulate_mut`]).
pub fn decapsulate(packet: &[u8]) -> Result<IpipRx> {
    let ip = Ipv4Packet::new_checked(packet)?;
    if !ip.verify_checksum() {
        return Err(Error::invalid(Layer::Ipv4, Invalid::IpChecksum));
    }
    if ip.is_fragment() {
        return Err(Error::invalid(Layer::Ipv4, Invalid::Fragment));
    }
    if ip.protocol() != protocol::IPIP {
        return Err(Error::invalid(Layer::Ipv4, Invalid::IpProtocol));
    }
    let inner = Ipv4Packet::new_checked(ip.payload()).map_err(Error::in_inner)?;
    if !inner.verify_checksum() {
        return Err(Error::invalid(Layer::InnerIpv4, Invalid::IpChecksum));
    }
    let at = ip.header_len();
    let ecn = ecn::decide(ip.tos(), inner.tos())?;
    Ok(IpipRx {
        src: ip.src(),
        dst: ip.dst(),
        tos: ip.tos(),
        ttl: ip.ttl(),
        ip_id: ip.ident(),
        dont_frag: ip.dont_frag(),
        inner: at..at + usize::from(inner.total_len()),
        ecn,
    })
}

/// [`decapsulate`], then applies the RFC 6040 result to the inner header in place (its checksum
/// updated incrementally).
pub fn decapsulate_mut(packet: &mut [u8]) -> Result<IpipRx> {
    let rx = decapsulate(packet)?;
    if let EcnUpdate::Set(e) = rx.ecn {
        ecn::write_ip_ecn(&mut packet[rx.inner.clone()], true, e);
    }
    Ok(rx)
}
