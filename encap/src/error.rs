//! One error type for every layer: which layer was short or invalid, and by how much.

use core::fmt;

/// The protocol layer an error refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Layer {
    /// Ethernet II header.
    Ethernet,
    /// 802.1Q VLAN tag.
    Vlan,
    /// ARP packet.
    Arp,
    /// IPv4 header (outer or inner).
    Ipv4,
    /// IPv6 header (outer).
    Ipv6,
    /// UDP header.
    Udp,
    /// VXLAN header.
    Vxlan,
    /// The inner frame or packet carried by a tunnel.
    Inner,
    /// The Ethernet header of the frame inside a VXLAN tunnel.
    InnerEthernet,
    /// The IPv4 header of the packet inside an IPIP tunnel.
    InnerIpv4,
    /// The IPv6 header of the packet inside an IPIP tunnel (protocol 41).
    InnerIpv6,
    /// A caller-provided output buffer.
    Buffer,
}

/// Why a well-sized header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Invalid {
    /// VXLAN flags without the I (valid VNI) bit.
    VxlanIFlagClear,
    /// A VNI over 24 bits.
    VniOutOfRange,
    /// IPv4 version field is not 4.
    IpVersion,
    /// IPv4 IHL below 5 or past the packet.
    IpHeaderLen,
    /// IPv4 total length smaller than the header or larger than the buffer.
    IpTotalLen,
    /// IPv4 header checksum mismatch.
    IpChecksum,
    /// A fragment where none is allowed.
    Fragment,
    /// Unexpected IP protocol number.
    IpProtocol,
    /// UDP length field disagrees with the packet.
    UdpLength,
    /// Non-zero UDP checksum that does not verify.
    UdpChecksum,
    /// UDP destination port is not the configured VXLAN port.
    UdpPort,
    /// Inner TTL of zero (RFC 2003 §3.1).
    TtlZero,
    /// Outer CE over an inner Not-ECT packet (RFC 6040 §4.2: drop).
    EcnCeOverNotEct,
    /// The inner packet's source is the tunnel's own underlay address (RFC 2003 §3.1).
    OwnSource,
    /// A VLAN id over 12 bits.
    VlanIdOutOfRange,
    /// The result would exceed the 65535-byte IPv4/UDP length limit.
    TooLong,
    /// An empty UDP source port range, or one starting at 0.
    PortRange,
    /// ARP for something other than Ethernet/IPv4 (hardware/protocol type or address lengths).
    ArpFormat,
}

/// A codec error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// `layer` needed `needed` bytes but only `got` were there.
    Truncated {
        /// Layer that was short.
        layer: Layer,
        /// Bytes required.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
    /// `layer` had the right size but a bad value.
    Invalid {
        /// Layer that was invalid.
        layer: Layer,
        /// What was wrong.
        reason: Invalid,
    },
}

/// Result alias for this crate.
pub type Result<T> = core::result::Result<T, Error>;

impl Error {
    /// Shorthand for a truncation error.
    pub const fn truncated(layer: Layer, needed: usize, got: usize) -> Self {
        Error::Truncated { layer, needed, got }
    }
    /// The same error about the inner side of a tunnel: `Ipv4` becomes `InnerIpv4`, `Ethernet` and
    /// `Vlan` become `InnerEthernet`.
    pub const fn in_inner(self) -> Self {
        const fn map(l: Layer) -> Layer {
            match l {
                Layer::Ipv4 => Layer::InnerIpv4,
                Layer::Ethernet | Layer::Vlan => Layer::InnerEthernet,
                other => other,
            }
        }
        match self {
            Error::Truncated { layer, needed, got } => Error::Truncated {
                layer: map(layer),
                needed,
                got,
            },
            Error::Invalid { layer, reason } => Error::Invalid {
                layer: map(layer),
                reason,
            },
        }
    }
    /// The layer this error is about.
    pub const fn layer(&self) -> Layer {
        match self {
            Error::Truncated { layer, .. } | Error::Invalid { layer, .. } => *layer,
        }
    }
    /// Shorthand for an invalid-value error.
    pub const fn invalid(layer: Layer, reason: Invalid) -> Self {
        Error::Invalid { layer, reason }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { layer, needed, got } => write!(
                f,
                "{layer:?}: truncated, need {needed} bytes, have {got} ({} short)",
                needed.saturating_sub(*got)
            ),
            Error::Invalid { layer, reason } => write!(f, "{layer:?}: invalid ({reason:?})"),
        }
    }
}

impl core::error::Error for Error {}
