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
