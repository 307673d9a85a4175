//! VXLAN over an IPv6 underlay (RFC 7348 §5, carried by IPv6): outer IPv6 + UDP + VXLAN header in
//! front of an Ethernet frame.
//!
//! ```text
//! | IPv6 (40) | UDP (8) | VXLAN (8) | inner Ethernet frame ...
//!  <----------- OVERHEAD = 56 ----->
//! ```
//! Outer fields on send: traffic class as the IPv4 TOS ([`Dscp`] inherited or fixed, ECN per
//! RFC 6040), hop limit fixed or inherited (an inner TTL or hop limit of 0 is treated like a
//! non-IP frame: 64), flow label from the inner flow hash (RFC 6438, what Linux's vxlan device
//! sends with its default automatic flow labels), UDP source port from the same hash, and the
//! UDP checksum computed (RFC 8200 §8.1: mandatory over IPv6) unless the configuration asks for
//! a zero one (`udp_checksum` off: RFC 6935/6936, ip-link's `udp6zerocsumtx`). IPv6 has no DF
//! bit: routers never fragment, and the sender keeps every packet within the path MTU.
//!
//! Receiving needs no codec here: an IPv6 UDP socket hands over the datagram from its VXLAN
//! header on, its checksum already verified by the kernel.

use super::{Dscp, Ttl, outer_tos, outer_ttl};
use crate::checksum;
use crate::error::{Error, Invalid, Layer, Result};
use crate::ethernet;
use crate::flow::{self, PortRange};
use crate::tunnel::vxlan::{VxlanConfig, VxlanTx};
use crate::udp;
use crate::vxlan::{self as vxlan_hdr, FLAG_I};

use core::net::Ipv6Addr;
use core::ops::Range;

/// Bytes of the fixed IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;
/// Bytes of outer headers in front of the inner frame: IPv6 (40) + UDP (8) + VXLAN (8).
pub const OVERHEAD: usize = IPV6_HEADER_LEN + udp::HEADER_LEN + vxlan_hdr::HEADER_LEN;
/// Overhead including the inner Ethernet header: what the tunnel MTU loses (70).
pub const MTU_OVERHEAD: usize = OVERHEAD + ethernet::HEADER_LEN;
/// IPv6 next header: UDP.
const NEXT_UDP: u8 = 17;
/// The largest IPv6 payload without a jumbogram option.
const MAX_PAYLOAD: usize = 65_535;

const UDP_AT: usize = IPV6_HEADER_LEN;
const VXLAN_AT: usize = UDP_AT + udp::HEADER_LEN;

/// A VXLAN-over-IPv6 encapsulator for one destination VTEP: a precomputed header template.
#[derive(Debug, Clone)]
pub struct Vxlan6Encap {
    /// IPv6 (version, next header, fixed hop limit, addresses), UDP destination port and the
    /// VXLAN I flag; per packet the rest is written over it.
    template: [u8; OVERHEAD],
    /// Pseudo-header sum without the length: the addresses and the next header.
    pseudo_sum: u64,
    ttl: Ttl,
    dscp: Dscp,
    src_ports: PortRange,
    udp_checksum: bool,
}

impl Vxlan6Encap {
    /// Builds the template for packets from `local` to `remote` with `cfg`'s outer settings
    /// (its IPv4 `local` and `df` do not apply). Fails on a fixed hop limit of 0.
    pub fn new(cfg: &VxlanConfig, local: Ipv6Addr, remote: Ipv6Addr) -> Result<Self> {
        if cfg.ttl == Ttl::Fixed(0) {
            return Err(Error::invalid(Layer::Ipv6, Invalid::TtlZero));
        }
        let mut t = [0u8; OVERHEAD];
        t[0] = 0x60;
        t[6] = NEXT_UDP;
        if let Ttl::Fixed(v) = cfg.ttl {
            t[7] = v;
        }
        t[8..24].copy_from_slice(&local.octets());
        t[24..40].copy_from_slice(&remote.octets());
        t[UDP_AT + 2..UDP_AT + 4].copy_from_slice(&cfg.dst_port.to_be_bytes());
        t[VXLAN_AT] = FLAG_I;
        Ok(Vxlan6Encap {
            template: t,
            pseudo_sum: checksum::add(checksum::sum(&t[8..40]), u64::from(NEXT_UDP)),
            ttl: cfg.ttl,
            dscp: cfg.dscp,
            src_ports: cfg.src_ports,
            udp_checksum: cfg.udp_checksum,
        })
    }

    /// The destination VTEP of this template.
    pub fn remote(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.template[24..40]);
        Ipv6Addr::from(a)
    }

    /// Writes the outer headers in front of the inner Ethernet frame at `buf[off..off + len]`
    /// and returns the range of the finished packet (`off - 56 .. off + len`).
    ///
    /// Errors: `off < 56` or the frame past the buffer (`Layer::Buffer`), an inner frame shorter
    /// than an Ethernet header (`Layer::InnerEthernet`), an IPv6 payload over 65535 bytes
    /// (`TooLong`).
    #[inline]
    pub fn encapsulate(
        &self,
        buf: &mut [u8],
        off: usize,
        len: usize,
        tx: &VxlanTx,
    ) -> Result<Range<usize>> {
        let span = super::in_place_span(buf, off, len, OVERHEAD)?;
        if len < ethernet::HEADER_LEN {
            return Err(Error::truncated(
                Layer::InnerEthernet,
                ethernet::HEADER_LEN,
                len,
            ));
        }
        let payload = udp::HEADER_LEN + vxlan_hdr::HEADER_LEN + len;
        if payload > MAX_PAYLOAD {
            return Err(Error::invalid(Layer::Ipv6, Invalid::TooLong));
        }
        let (head, rest) = buf[span.clone()].split_at_mut(OVERHEAD);
        let info = flow::inspect_frame(rest);
        let src_port = tx
            .src_port
            .unwrap_or_else(|| self.src_ports.pick(info.hash));
        head.copy_from_slice(&self.template);
        // Version 6, traffic class, a 20-bit flow label from the inner flow hash.
        let tclass = outer_tos(self.dscp, info.ip.map(|i| i.tos));
        let label = (info.hash ^ (info.hash >> 20)) & 0x000f_ffff;
        let word = 6 << 28 | u32::from(tclass) << 20 | label;
        head[0..4].copy_from_slice(&word.to_be_bytes());
        head[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
        if self.ttl == Ttl::Inherit {
            head[7] = outer_ttl(Ttl::Inherit, info.ip.map(|i| i.ttl).filter(|&t| t != 0));
        }
        head[UDP_AT..UDP_AT + 2].copy_from_slice(&src_port.to_be_bytes());
        head[UDP_AT + 4..UDP_AT + 6].copy_from_slice(&(payload as u16).to_be_bytes());
        let v = tx.vni.get().to_be_bytes();
        head[VXLAN_AT + 4..VXLAN_AT + 7].copy_from_slice(&v[1..]);
        if self.udp_checksum {
            let acc = checksum::add(
                checksum::add(
                    self.pseudo_sum + payload as u64,
                    checksum::sum(&head[UDP_AT..]),
                ),
                checksum::sum(rest),
            );
            let c = checksum::finish(acc);
            head[UDP_AT + 6..UDP_AT + 8].copy_from_slice(&checksum::udp_field(c).to_be_bytes());
        }
        Ok(span)
    }
}
