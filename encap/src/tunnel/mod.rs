//! Whole tunnel encapsulations over IPv4: VXLAN (outer IPv4 + UDP + VXLAN in front of an Ethernet
//! frame) and IPIP (outer IPv4 in front of an IPv4 packet), each with a fast encapsulator and a
//! validating decapsulator.
//!
//! # Buffers
//! Encapsulation works in place: the inner frame already sits at `buf[off..off + len]` and the outer
//! headers are written into the bytes just before it (the headroom). The result is the range of the
//! finished packet in `buf`. Decapsulation takes the packet from its outer IPv4 header on and returns
//! the inner frame's range plus the outer fields.
//!
//! # Why the outer header writer is hand-written
//! It is the per-packet hot path. Each encapsulator holds a precomputed header template for one
//! destination together with the one's complement sum of its constant words, so a packet costs one
//! 20/36-byte copy, a few stores and a checksum fold over the handful of words that vary (TOS, length,
//! ID, and TTL when inherited). General-purpose builders (etherparse, smoltcp) recompute every field
//! and the whole checksum from an owned header struct each time.

pub mod ipip;
pub mod vxlan;
pub mod vxlan6;

use crate::checksum;
use crate::error::{Error, Invalid, Layer, Result};
use crate::ipv4::{self, Ipv4Packet};
use core::net::Ipv4Addr;
use core::ops::Range;

/// Outer TTL when fixed by default, and when inheriting from a non-IP inner frame (Linux's default).
pub const DEFAULT_TTL: u8 = 64;

/// How the outer TTL is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ttl {
    /// Always this value.
    Fixed(u8),
    /// Copy the inner IP packet's TTL / hop limit ([`DEFAULT_TTL`] when the inner frame is not IP).
    Inherit,
}

impl Default for Ttl {
    fn default() -> Self {
        Ttl::Fixed(DEFAULT_TTL)
    }
}

/// How the outer DSCP is chosen. The outer ECN field always follows RFC 6040 (see [`crate::ecn`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Dscp {
    /// Copy the inner IP packet's DSCP (0 when the inner frame is not IP).
    #[default]
    Inherit,
    /// Always this 6-bit value (higher bits are ignored).
    Fixed(u8),
}

/// How the outer DF bit is chosen (ip-link(8)'s `df set|unset|inherit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Df {
    /// Always set.
    Set,
    /// Never set: routers on the path may fragment the outer packet.
    Unset,
    /// Set when the inner packet may not be fragmented: IPv4 with DF, and IPv6 (as Linux's
    /// vxlan); unset for a non-IP inner frame.
    Inherit,
}

impl Df {
    /// The outer DF bit for an inner packet whose own "do not fragment" is given (`None`: not
    /// IP).
    #[inline]
    pub const fn outer(self, inner_dont_frag: Option<bool>) -> bool {
        match self {
            Df::Set => true,
            Df::Unset => false,
            Df::Inherit => matches!(inner_dont_frag, Some(true)),
        }
    }
}

/// The range an in-place encapsulation's finished packet takes in `buf`
/// (`off - overhead .. off + len`): `overhead` bytes of headroom for the outer headers, then the
/// inner bytes at `buf[off..off + len]`. The caller splits it at `overhead` itself, where it needs
/// the two halves (returning the split here measured slower: it moved the split before the
/// encapsulators' own length checks).
///
/// Errors (`Layer::Buffer`): `off < overhead`, `off + len` overflowing (`TooLong`), or the inner
/// bytes past the buffer.
#[inline]
pub(crate) fn in_place_span(
    buf: &[u8],
    off: usize,
    len: usize,
    overhead: usize,
) -> Result<Range<usize>> {
    if off < overhead {
        return Err(Error::truncated(Layer::Buffer, overhead, off));
    }
    let end = off
        .checked_add(len)
        .ok_or(Error::invalid(Layer::Buffer, Invalid::TooLong))?;
    if end > buf.len() {
        return Err(Error::truncated(Layer::Buffer, end, buf.len()));
    }
    Ok(off - overhead..end)
}

/// The outer TOS byte for an inner TOS byte (`None`: inner is not IP).
#[inline]
pub(crate) fn outer_tos(dscp: Dscp, inner_tos: Option<u8>) -> u8 {
    let inner = inner_tos.unwrap_or(0);
    let d = match dscp {
        Dscp::Inherit => inner & 0xfc,
        Dscp::Fixed(v) => (v & 0x3f) << 2,
    };
    d | crate::ecn::encapsulate(crate::ecn::Ecn::from_tos(inner)).bits()
}

/// The outer TTL for an inner TTL (`None`: inner is not IP).
#[inline]
pub(crate) fn outer_ttl(ttl: Ttl, inner_ttl: Option<u8>) -> u8 {
    match ttl {
        Ttl::Fixed(v) => v,
        Ttl::Inherit => inner_ttl.unwrap_or(DEFAULT_TTL),
    }
}

/// The constant part of an outer IPv4 header for one (source, destination, protocol), with the
/// folded one's complement sum of its words, shared by the VXLAN and IPIP encapsulators. Per packet
/// only TOS, total length, ID, DF and (when inherited) TTL vary, and the checksum is finished from
/// the template sum plus those words.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OuterIpv4 {
    header: [u8; ipv4::HEADER_LEN],
    /// Folded sum of the constant words, so per-packet words can be added with plain additions.
    sum: u64,
    ttl: Ttl,
    dscp: Dscp,
}

impl OuterIpv4 {
    /// The template for `local` -> `remote` carrying `protocol`. Fails on a fixed TTL of 0.
    pub(crate) fn new(
        local: Ipv4Addr,
        remote: Ipv4Addr,
        protocol: u8,
        ttl: Ttl,
        dscp: Dscp,
    ) -> Result<Self> {
        if ttl == Ttl::Fixed(0) {
            return Err(Error::invalid(Layer::Ipv4, Invalid::TtlZero));
        }
        let mut header = [0u8; ipv4::HEADER_LEN];
        let mut ip = Ipv4Packet::new_unchecked(&mut header[..]);
        ip.set_version_and_header_len(ipv4::HEADER_LEN);
        ip.set_unfragmented(false);
        // 0 when inheriting: the per-packet TTL is then added to the sum.
        ip.set_ttl(match ttl {
            Ttl::Fixed(v) => v,
            Ttl::Inherit => 0,
        });
        ip.set_protocol(protocol);
        ip.set_src(local);
        ip.set_dst(remote);
        let sum = u64::from(checksum::fold(checksum::sum(&header)));
        Ok(OuterIpv4 {
            header,
            sum,
            ttl,
            dscp,
        })
    }

    /// The destination address.
    pub(crate) fn remote(&self) -> Ipv4Addr {
        Ipv4Packet::new_unchecked(&self.header[..]).dst()
    }

    /// Writes the header into `head[..20]` for a packet of `total` bytes (at most 65535, checked by
    /// the caller), whose inner IP TOS and TTL are given (`None`: not IP, or TTL not usable).
    #[inline]
    pub(crate) fn write(
        &self,
        head: &mut [u8],
        total: u16,
        ip_id: u16,
        dont_frag: bool,
        inner_tos: Option<u8>,
        inner_ttl: Option<u8>,
    ) {
        let tos = outer_tos(self.dscp, inner_tos);
        // Non-zero only when inherited (the template holds a fixed TTL, or 0 when inheriting).
        let ttl_var = match self.ttl {
            Ttl::Fixed(_) => 0,
            Ttl::Inherit => outer_ttl(Ttl::Inherit, inner_ttl),
        };
        let flags: u16 = if dont_frag { 0x4000 } else { 0 };
        let head = &mut head[..ipv4::HEADER_LEN];
        head.copy_from_slice(&self.header);
        head[1] = tos;
        head[2..4].copy_from_slice(&total.to_be_bytes());
        head[4..6].copy_from_slice(&ip_id.to_be_bytes());
        head[6..8].copy_from_slice(&flags.to_be_bytes());
        if ttl_var != 0 {
            head[8] = ttl_var;
        }
        let acc = self.sum
            + u64::from(tos)
            + u64::from(total)
            + u64::from(ip_id)
            + u64::from(flags)
            + (u64::from(ttl_var) << 8);
        head[10..12].copy_from_slice(&checksum::finish(acc).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `df inherit` as Linux's vxlan: an IPv4 packet's DF, always for IPv6, never for non-IP.
    #[test]
    fn df_policy() {
        for inner in [None, Some(false), Some(true)] {
            assert!(Df::Set.outer(inner));
            assert!(!Df::Unset.outer(inner));
        }
        assert!(!Df::Inherit.outer(None));
        assert!(!Df::Inherit.outer(Some(false)));
        assert!(Df::Inherit.outer(Some(true)));
        let mut v6 = [0u8; 14 + 40];
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        v6[14] = 0x60;
        assert_eq!(
            crate::flow::frame_ip(&v6).map(|i| i.dont_frag),
            Some(true),
            "IPv6 is never fragmented on the way"
        );
    }
}
