//! VXLAN over IPv4 (RFC 7348): outer IPv4 + UDP + VXLAN header in front of an Ethernet frame.
//!
//! ```text
//! | IPv4 (20) | UDP (8) | VXLAN (8) | inner Ethernet frame ...
//!  <----------- OVERHEAD = 36 ----->
//! ```
//! Outer fields on send: DF set, unset or inherited ([`Df`]; set by default: VXLAN must not be
//! fragmented, RFC 7348 §4.3), TTL fixed or inherited (an inner TTL of 0 is treated like a
//! non-IP frame: 64), DSCP inherited or fixed, ECN per RFC 6040, IP ID supplied by the caller
//! (RFC 6864 lets an atomic datagram carry any ID; Linux fills in a zero ID on a raw socket, from
//! a per-destination counter when DF is clear), UDP source port from the inner flow hash, UDP
//! checksum computed or zero.
//!
//! On receive: the outer IPv4 header must be version 4 with a valid checksum and total length and
//! not be a fragment (reassembly needs state; the kernel reassembles before a raw socket sees a
//! datagram); options are skipped; protocol 17; UDP length within the datagram (trailing bytes past
//! it are trimmed, as Linux does), destination port as configured, checksum zero or correct; VXLAN
//! I flag set (reserved bits ignored); and a whole inner Ethernet header.

use super::{Df, Dscp, OuterIpv4, Ttl};
use crate::checksum;
use crate::ecn::{self, EcnUpdate};
use crate::error::{Error, Invalid, Layer, Result};
use crate::ethernet;
use crate::flow::{self, PortRange};
use crate::ipv4::{self, Ipv4Packet, protocol};
use crate::udp::{self, UdpPacket};
use crate::vxlan::{self as vxlan_hdr, DEFAULT_PORT, FLAG_I, Vni, VxlanPacket, VxlanRepr};

use core::net::Ipv4Addr;
use core::ops::Range;

/// Bytes of outer headers in front of the inner frame: IPv4 (20) + UDP (8) + VXLAN (8).
pub const OVERHEAD: usize = ipv4::HEADER_LEN + udp::HEADER_LEN + vxlan_hdr::HEADER_LEN;
/// Overhead including the inner Ethernet header: what the tunnel MTU loses (50).
pub const MTU_OVERHEAD: usize = OVERHEAD + ethernet::HEADER_LEN;

const UDP_AT: usize = ipv4::HEADER_LEN;
const VXLAN_AT: usize = UDP_AT + udp::HEADER_LEN;

/// Tunnel-wide settings for VXLAN encapsulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VxlanConfig {
    /// Outer source address (the local VTEP).
    pub local: Ipv4Addr,
    /// UDP destination port (4789 by default; Linux's own default is 8472).
    pub dst_port: u16,
    /// Range the UDP source port is picked from by the inner flow hash.
    pub src_ports: PortRange,
    /// Outer TTL.
    pub ttl: Ttl,
    /// Outer DSCP.
    pub dscp: Dscp,
    /// Outer DF bit.
    pub df: Df,
    /// Compute the UDP checksum (true) or send zero (like Linux without `udpcsum`).
    pub udp_checksum: bool,
}

impl VxlanConfig {
    /// Defaults for a local address: port 4789, source ports 49152-65535, TTL 64, DSCP inherited,
    /// DF set, UDP checksum computed.
    pub const fn new(local: Ipv4Addr) -> Self {
        VxlanConfig {
            local,
            dst_port: DEFAULT_PORT,
            src_ports: PortRange::DEFAULT,
            ttl: Ttl::Fixed(super::DEFAULT_TTL),
            dscp: Dscp::Inherit,
            df: Df::Set,
            udp_checksum: true,
        }
    }
}

/// Per-packet outer fields that are not derived from the inner frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VxlanTx {
    /// VXLAN network identifier.
    pub vni: Vni,
    /// Outer IPv4 identification.
    pub ip_id: u16,
    /// UDP source port; `None` picks it from the inner flow hash (the normal case).
    pub src_port: Option<u16>,
}

impl VxlanTx {
    /// Fields for `vni` with IP ID 0 and the hashed source port.
    pub const fn new(vni: Vni) -> Self {
        VxlanTx {
            vni,
            ip_id: 0,
            src_port: None,
        }
    }
}

/// A VXLAN encapsulator for one destination VTEP: a precomputed outer header template.
#[derive(Debug, Clone)]
pub struct VxlanEncap {
    outer: OuterIpv4,
    /// UDP and VXLAN headers with their constant fields (destination port, I flag).
    template: [u8; OVERHEAD - ipv4::HEADER_LEN],
    /// Pseudo-header sum without the length (addresses and protocol).
    pseudo_sum: u64,
    src_ports: PortRange,
    df: Df,
    udp_checksum: bool,
}

impl VxlanEncap {
    /// Builds the template for packets from `cfg.local` to `remote`. Fails on a fixed TTL of 0.
    pub fn new(cfg: &VxlanConfig, remote: Ipv4Addr) -> Result<Self> {
        let outer = OuterIpv4::new(cfg.local, remote, protocol::UDP, cfg.ttl, cfg.dscp)?;
        let mut t = [0u8; OVERHEAD - ipv4::HEADER_LEN];
        UdpPacket::new_unchecked(&mut t[..udp::HEADER_LEN]).set_dst_port(cfg.dst_port);
        t[VXLAN_AT - UDP_AT] = FLAG_I;
        Ok(VxlanEncap {
            outer,
            template: t,
            pseudo_sum: checksum::pseudo_header(cfg.local, remote, protocol::UDP, 0),
            src_ports: cfg.src_ports,
            df: cfg.df,
            udp_checksum: cfg.udp_checksum,
        })
    }

    /// The destination VTEP of this template.
    pub fn remote(&self) -> Ipv4Addr {
        self.outer.remote()
    }

    /// The UDP source port this encapsulator picks for an inner frame.
    pub fn src_port_for(&self, frame: &[u8]) -> u16 {
        self.src_ports.pick(flow::inspect_frame(frame).hash)
    }

    /// Writes the outer headers in front of the inner Ethernet frame at `buf[off..off + len]` and
    /// returns the range of the finished packet (`off - 36 .. off + len`).
    ///
    /// Errors: `off < 36` or the frame past the buffer (`Layer::Buffer`), an inner frame shorter
    /// than an Ethernet header (`Layer::InnerEthernet`), a packet over 65535 bytes (`TooLong`).
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
        let total = OVERHEAD + len;
        if total > ipv4::MAX_TOTAL_LEN {
            return Err(Error::invalid(Layer::Ipv4, Invalid::TooLong));
        }
        let (head, rest) = buf[span.clone()].split_at_mut(OVERHEAD);
        let info = flow::inspect_frame(rest);
        let src_port = tx
            .src_port
            .unwrap_or_else(|| self.src_ports.pick(info.hash));

        // IPv4 from its template; an inner TTL of 0 is not inherited.
        self.outer.write(
            head,
            total as u16,
            tx.ip_id,
            self.df.outer(info.ip.map(|i| i.dont_frag)),
            info.ip.map(|i| i.tos),
            info.ip.map(|i| i.ttl).filter(|&t| t != 0),
        );
        head[UDP_AT..].copy_from_slice(&self.template);
        // UDP: source port, length; VXLAN: VNI.
        let udp_len = (total - ipv4::HEADER_LEN) as u16;
        head[UDP_AT..UDP_AT + 2].copy_from_slice(&src_port.to_be_bytes());
        head[UDP_AT + 4..UDP_AT + 6].copy_from_slice(&udp_len.to_be_bytes());
        let v = tx.vni.get().to_be_bytes();
        head[VXLAN_AT + 4..VXLAN_AT + 7].copy_from_slice(&v[1..]);
        if self.udp_checksum {
            let acc = checksum::add(
                checksum::add(
                    self.pseudo_sum + u64::from(udp_len),
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

/// What a received VXLAN packet's outer headers said, and where its inner frame is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanRx {
    /// Outer source address (the remote VTEP).
    pub src: Ipv4Addr,
    /// Outer destination address.
    pub dst: Ipv4Addr,
    /// Outer TOS byte (DSCP and ECN).
    pub tos: u8,
    /// Outer TTL.
    pub ttl: u8,
    /// Outer IP identification.
    pub ip_id: u16,
    /// Outer DF flag.
    pub dont_frag: bool,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// UDP checksum field (0: none was sent).
    pub udp_checksum: u16,
    /// VXLAN network identifier.
    pub vni: Vni,
    /// The inner Ethernet frame's range in the input buffer.
    pub inner: Range<usize>,
    /// What RFC 6040 decapsulation does to the inner IP header's ECN field.
    pub ecn: EcnUpdate,
}

/// Validates a VXLAN-over-IPv4 packet (from the outer IPv4 header on) and locates its inner frame.
/// `port` is the expected UDP destination port. The inner frame is not modified: when `ecn` is
/// [`EcnUpdate::Set`], the caller must apply it (or use [`decapsulate_mut`]).
pub fn decapsulate(packet: &[u8], port: u16) -> Result<VxlanRx> {
    let ip = Ipv4Packet::new_checked(packet)?;
    if !ip.verify_checksum() {
        return Err(Error::invalid(Layer::Ipv4, Invalid::IpChecksum));
    }
    if ip.is_fragment() {
        return Err(Error::invalid(Layer::Ipv4, Invalid::Fragment));
    }
    if ip.protocol() != protocol::UDP {
        return Err(Error::invalid(Layer::Ipv4, Invalid::IpProtocol));
    }
    let (src, dst) = (ip.src(), ip.dst());
    let udp_at = ip.header_len();
    let udp = UdpPacket::new_checked(ip.payload())?;
    if udp.dst_port() != port {
        return Err(Error::invalid(Layer::Udp, Invalid::UdpPort));
    }
    if !udp.verify_checksum(src, dst) {
        return Err(Error::invalid(Layer::Udp, Invalid::UdpChecksum));
    }
    let vx = VxlanPacket::new_checked(udp.payload())?;
    let repr = VxlanRepr::parse(&vx)?;
    let inner_len = vx.payload().len();
    if inner_len < ethernet::HEADER_LEN {
        return Err(Error::truncated(
            Layer::InnerEthernet,
            ethernet::HEADER_LEN,
            inner_len,
        ));
    }
    let inner_at = udp_at + udp::HEADER_LEN + vxlan_hdr::HEADER_LEN;
    let inner = inner_at..inner_at + inner_len;
    let ecn = match flow::frame_ip(&packet[inner.clone()]) {
        Some(i) => ecn::decide(ip.tos(), i.tos)?,
        None => EcnUpdate::NotIp,
    };
    Ok(VxlanRx {
        src,
        dst,
        tos: ip.tos(),
        ttl: ip.ttl(),
        ip_id: ip.ident(),
        dont_frag: ip.dont_frag(),
        src_port: udp.src_port(),
        dst_port: udp.dst_port(),
        udp_checksum: udp.checksum(),
        vni: repr.vni,
        inner,
        ecn,
    })
}

/// [`decapsulate`], then applies the RFC 6040 result to the inner IP header in place (IPv4 with its
/// checksum updated incrementally, or IPv6). The outer UDP checksum is left as it was: it covered
/// the packet as received, and the outer headers are being stripped.
pub fn decapsulate_mut(packet: &mut [u8], port: u16) -> Result<VxlanRx> {
    let rx = decapsulate(packet, port)?;
    if let EcnUpdate::Set(e) = rx.ecn {
        let frame = &mut packet[rx.inner.clone()];
        if let Some(i) = flow::frame_ip(frame) {
            ecn::write_ip_ecn(&mut frame[i.offset..], i.is_ipv4, e);
        }
    }
    Ok(rx)
}

/// Reads the 8-byte VXLAN header of a UDP payload (when the kernel has already stripped IPv4 and
/// UDP): the VNI and the inner frame's range in `payload`.
pub fn decapsulate_udp_payload(payload: &[u8]) -> Result<(Vni, Range<usize>)> {
    let vx = VxlanPacket::new_checked(payload)?;
    let repr = VxlanRepr::parse(&vx)?;
    let n = payload.len() - vxlan_hdr::HEADER_LEN;
    if n < ethernet::HEADER_LEN {
        return Err(Error::truncated(
            Layer::InnerEthernet,
            ethernet::HEADER_LEN,
            n,
        ));
    }
    Ok((repr.vni, vxlan_hdr::HEADER_LEN..payload.len()))
}

const _: () = assert!(OVERHEAD == 36 && MTU_OVERHEAD == 50);
