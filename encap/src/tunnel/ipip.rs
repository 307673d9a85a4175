//! IP in IPv4: IPv4-in-IPv4 (RFC 2003, protocol 4) and IPv6-in-IPv4 (RFC 4213, protocol 41, what
//! Linux's `sit` device sends): an outer IPv4 header in front of an IP packet. The inner
//! packet's version says which protocol the outer header carries.
//!
//! On send: the outer DF copies the inner DF by default (§3.1; set for IPv6, which routers never
//! fragment), or is always set or unset; TTL fixed or inherited (the inner TTL or hop limit);
//! DSCP inherited (from the inner TOS or traffic class) or fixed; ECN per RFC 6040; IP ID from
//! the caller. A packet with an inner TTL or hop limit of 0, or whose inner IPv4 source is the
//! tunnel's own underlay address (a loop), is refused. The inner header must be well formed
//! (IPv4: version, IHL, total length within the given bytes, its checksum not checked on send:
//! it comes from the local stack; IPv6: version and payload length within the given bytes). The
//! TTL and hop limit are not decremented here: that is the forwarding layer's job.
//!
//! On receive: the outer header must be version 4 with a valid checksum and total length,
//! protocol 4 or 41 and not a fragment (reassembly needs state; a raw socket sees reassembled
//! datagrams); options are skipped. Protocol 4's inner header must be version 4 with a valid
//! IHL, checksum and a total length that fits in the outer payload; protocol 41's must be
//! version 6 with a payload length that fits (bytes past either are trimmed).

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

/// Bytes of an IPv6 header (RFC 8200), the inner header of protocol 41.
pub const IPV6_HEADER_LEN: usize = 40;

/// An IPIP encapsulator for one remote endpoint: precomputed outer header templates, one for
/// IPv4 inner packets (protocol 4), one for IPv6 (protocol 41).
#[derive(Debug, Clone)]
pub struct IpipEncap {
    outer: OuterIpv4,
    outer6: OuterIpv4,
    local: Ipv4Addr,
    df: Df,
}

impl IpipEncap {
    /// Builds the template for packets from `cfg.local` to `remote`. Fails on a fixed TTL of 0.
    pub fn new(cfg: &IpipConfig, remote: Ipv4Addr) -> Result<Self> {
        Ok(IpipEncap {
            outer: OuterIpv4::new(cfg.local, remote, protocol::IPIP, cfg.ttl, cfg.dscp)?,
            outer6: OuterIpv4::new(cfg.local, remote, protocol::IPV6, cfg.ttl, cfg.dscp)?,
            local: cfg.local,
            df: cfg.df,
        })
    }

    /// The remote endpoint of this template.
    pub fn remote(&self) -> Ipv4Addr {
        self.outer.remote()
    }

    /// Writes the outer header in front of the inner IPv4 or IPv6 packet at `buf[off..off + len]`
    /// (protocol 4 or 41, by its version) and returns the range of the finished packet
    /// (`off - 20 .. off + inner length`; bytes past the inner packet's length are left out).
    ///
    /// Errors: `off < 20` or the packet past the buffer (`Layer::Buffer`); a malformed inner header,
    /// an inner TTL or hop limit of 0 or an inner IPv4 source equal to the local address
    /// (`Layer::InnerIpv4`, `Layer::InnerIpv6`); a packet over 65535 bytes (`TooLong`).
    #[inline]
    pub fn encapsulate(
        &self,
        buf: &mut [u8],
        off: usize,
        len: usize,
        ip_id: u16,
    ) -> Result<Range<usize>> {
        let span = super::in_place_span(buf, off, len, OVERHEAD)?;
        let start = span.start;
        let (head, rest) = buf[span].split_at_mut(OVERHEAD);
        // IPv6 is told apart where the IPv4 view refuses the packet, so the IPv4 path pays
        // nothing for it.
        let inner = match Ipv4Packet::new_checked(&*rest) {
            Ok(inner) => inner,
            Err(e) => {
                return self
                    .not_ipv4(head, rest, ip_id, e)
                    .map(|n| start..start + n);
            }
        };
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

    /// An inner packet the IPv4 view refused (`e`): protocol 41 when it is IPv6, else the
    /// error. Cold and out of line: the IPv4 path stays the code it was.
    #[cold]
    #[inline(never)]
    fn not_ipv4(&self, head: &mut [u8], rest: &[u8], ip_id: u16, e: Error) -> Result<usize> {
        if rest.first().is_some_and(|b| b >> 4 == 6) {
            return self.encapsulate6(head, rest, ip_id);
        }
        Err(Error::in_inner(e))
    }

    /// Protocol 41: the outer header for the IPv6 packet `rest`, written into `head`; returns
    /// the outer packet's length. Out of line: the IPv4 path stays the code it was.
    #[inline(never)]
    fn encapsulate6(&self, head: &mut [u8], rest: &[u8], ip_id: u16) -> Result<usize> {
        let inner = inner_ipv6(rest)?;
        if inner.hop_limit == 0 {
            return Err(Error::invalid(Layer::InnerIpv6, Invalid::TtlZero));
        }
        let total = OVERHEAD + inner.len;
        if total > ipv4::MAX_TOTAL_LEN {
            return Err(Error::invalid(Layer::Ipv4, Invalid::TooLong));
        }
        self.outer6.write(
            head,
            total as u16,
            ip_id,
            self.df.outer(Some(true)),
            Some(inner.traffic_class),
            Some(inner.hop_limit),
        );
        Ok(total)
    }
}

/// What the tunnel reads of an inner IPv6 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InnerIpv6 {
    /// The traffic class (DSCP and ECN, as IPv4's TOS byte).
    pub traffic_class: u8,
    /// The hop limit.
    pub hop_limit: u8,
    /// The packet's length: the header and its payload length.
    pub len: usize,
}

/// Reads the IPv6 header at the start of `p` (hand-written: the three fields the tunnel needs
/// are at fixed offsets, and encap has no IPv6 view to share). Errors: shorter than a header,
/// version not 6, or a payload length past `p` (a jumbogram's 0 with its option cannot fit an
/// IPv4 packet, so 0 means an empty payload).
pub fn inner_ipv6(p: &[u8]) -> Result<InnerIpv6> {
    let Some(h) = p.get(..IPV6_HEADER_LEN) else {
        return Err(Error::truncated(Layer::InnerIpv6, IPV6_HEADER_LEN, p.len()));
    };
    if h[0] >> 4 != 6 {
        return Err(Error::invalid(Layer::InnerIpv6, Invalid::IpVersion));
    }
    let len = IPV6_HEADER_LEN + usize::from(u16::from_be_bytes([h[4], h[5]]));
    if len > p.len() {
        return Err(Error::invalid(Layer::InnerIpv6, Invalid::IpTotalLen));
    }
    Ok(InnerIpv6 {
        traffic_class: (h[0] << 4) | (h[1] >> 4),
        hop_limit: h[7],
        len,
    })
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
    /// The inner packet's range in the input buffer (up to its length); an IPv4 packet for
    /// protocol 4, IPv6 for protocol 41.
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
    let (inner_len, inner_tos) = match ip.protocol() {
        protocol::IPIP => {
            let inner = Ipv4Packet::new_checked(ip.payload()).map_err(Error::in_inner)?;
            if !inner.verify_checksum() {
                return Err(Error::invalid(Layer::InnerIpv4, Invalid::IpChecksum));
            }
            (usize::from(inner.total_len()), inner.tos())
        }
        protocol::IPV6 => {
            let inner = inner_ipv6(ip.payload())?;
            (inner.len, inner.traffic_class)
        }
        _ => return Err(Error::invalid(Layer::Ipv4, Invalid::IpProtocol)),
    };
    let at = ip.header_len();
    let ecn = ecn::decide(ip.tos(), inner_tos)?;
    Ok(IpipRx {
        src: ip.src(),
        dst: ip.dst(),
        tos: ip.tos(),
        ttl: ip.ttl(),
        ip_id: ip.ident(),
        dont_frag: ip.dont_frag(),
        inner: at..at + inner_len,
        ecn,
    })
}

/// [`decapsulate`], then applies the RFC 6040 result to the inner header in place (an IPv4
/// checksum updated incrementally).
pub fn decapsulate_mut(packet: &mut [u8]) -> Result<IpipRx> {
    let rx = decapsulate(packet)?;
    if let EcnUpdate::Set(e) = rx.ecn {
        let inner = &mut packet[rx.inner.clone()];
        let is_ipv4 = inner.first().is_some_and(|b| b >> 4 == 4);
        ecn::write_ip_ecn(inner, is_ipv4, e);
    }
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    /// An IPv6 header with `payload` bytes after it, behind 20 bytes of headroom.
    fn v6(payload: usize, hop_limit: u8) -> [u8; 20 + 40 + 8] {
        let mut b = [0u8; 68];
        b[20] = 0x6b; // version 6, traffic class 0xb9
        b[21] = 0x90;
        b[24..26].copy_from_slice(&(payload as u16).to_be_bytes());
        b[26] = 59; // no next header
        b[27] = hop_limit;
        b
    }

    #[test]
    fn ipv6_refusals_name_the_inner_ipv6_layer() {
        let enc = IpipEncap::new(&IpipConfig::new(A), B).unwrap();
        let mut ok = v6(8, 1);
        assert_eq!(enc.encapsulate(&mut ok, 20, 48, 1), Ok(0..68));
        assert_eq!(ok[9], protocol::IPV6);
        assert_eq!(ok[6] & 0x40, 0x40, "DF inherited from IPv6: set");
        let rx = decapsulate(&ok).unwrap();
        assert_eq!((rx.src, rx.dst, rx.inner), (A, B, 20..68));
        let cases: [(usize, u8, usize, Error); 3] = [
            (8, 0, 48, Error::invalid(Layer::InnerIpv6, Invalid::TtlZero)),
            (
                9,
                1,
                48,
                Error::invalid(Layer::InnerIpv6, Invalid::IpTotalLen),
            ),
            (0, 1, 39, Error::truncated(Layer::InnerIpv6, 40, 39)),
        ];
        for (payload, hop, len, want) in cases {
            let mut b = v6(payload, hop);
            assert_eq!(enc.encapsulate(&mut b, 20, len, 1), Err(want));
        }
        // Received: a payload length past the outer packet, and a version that is not 6.
        let mut bad = ok;
        bad[25] = 9;
        assert_eq!(
            decapsulate(&bad),
            Err(Error::invalid(Layer::InnerIpv6, Invalid::IpTotalLen))
        );
        let mut bad = ok;
        bad[20] = 0x4b;
        assert_eq!(
            decapsulate(&bad),
            Err(Error::invalid(Layer::InnerIpv6, Invalid::IpVersion))
        );
    }
}
