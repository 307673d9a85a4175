//! IPv6 Neighbor Discovery (RFC 4861) on the wire, for L2 ND suppression and the L3 VXLAN
//! engine: the neighbour solicitations and advertisements of an untagged Ethernet frame,
//! validated as RFC 4861 §7.1 asks of a receiver, and the two vtepd writes: the advertisement
//! (on a remote host's behalf in L2, for its own address in L3) and the solicitation (L3, to
//! resolve a next hop).
//!
//! Parsed and emitted with smoltcp's wire types (`Ipv6Packet`, `Icmpv6Repr`, `NdiscRepr`: the
//! checksum, the code and the options are theirs); only the Ethernet header is encap's. A frame
//! with IPv6 extension headers before the ICMPv6 header is not taken: Neighbor Discovery never
//! needs them, and hosts send none.

use encap::MacAddr;
use encap::ethernet::{self, EthernetFrame, EthernetRepr, ethertype};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv6Packet, Ipv6Repr, NdiscNeighborFlags, NdiscRepr,
    RawHardwareAddress,
};
use std::net::Ipv6Addr;

/// The hop limit every ND message has (RFC 4861 §7.1: anything else came through a router).
pub const ND_HOP_LIMIT: u8 = 255;

/// What a valid neighbour solicitation or advertisement says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdMessage {
    /// A neighbour solicitation: who has `target`?
    Solicit {
        /// The address asked for.
        target: Ipv6Addr,
        /// The source link-layer address option, if any.
        source_mac: Option<MacAddr>,
    },
    /// A neighbour advertisement: `target` is at `target_mac`.
    Advert {
        /// The address advertised.
        target: Ipv6Addr,
        /// The target link-layer address option, if any.
        target_mac: Option<MacAddr>,
        /// The solicited flag.
        solicited: bool,
        /// The override flag (clear: the advertisement must not change a known binding).
        overrides: bool,
    },
}

/// A valid ND message with the headers around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdFrame {
    /// Ethernet destination.
    pub eth_dst: MacAddr,
    /// Ethernet source.
    pub eth_src: MacAddr,
    /// IPv6 source.
    pub src: Ipv6Addr,
    /// IPv6 destination.
    pub dst: Ipv6Addr,
    /// The message.
    pub msg: NdMessage,
}

fn mac_of(hw: Option<RawHardwareAddress>) -> Option<MacAddr> {
    hw.and_then(|a| MacAddr::from_bytes(a.as_bytes()))
}

/// The ICMPv6 type byte of a neighbour solicitation and advertisement.
const NS: u8 = 135;
const NA: u8 = 136;
/// Where the next-header byte and the ICMPv6 type sit in an untagged frame.
const NEXT_HEADER_AT: usize = ethernet::HEADER_LEN + 6;
const ICMP_TYPE_AT: usize = ethernet::HEADER_LEN + smoltcp::wire::IPV6_HEADER_LEN;

/// The neighbour solicitation or advertisement an untagged Ethernet frame carries, if it is a
/// valid one: IPv6 with the ICMPv6 header right after it, hop limit 255, a correct ICMPv6
/// checksum, code 0, well-formed options, and (an advertisement sent to a multicast group) no
/// solicited flag. `None` for anything else; never panics.
pub fn parse(frame: &[u8]) -> Option<NdFrame> {
    // The cheap test first: most frames are not ND, and this is on every frame's path.
    if frame.get(ICMP_TYPE_AT).is_none_or(|t| *t != NS && *t != NA)
        || frame.get(NEXT_HEADER_AT) != Some(&u8::from(IpProtocol::Icmpv6))
    {
        return None;
    }
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.is_tagged() || eth.ethertype() != ethertype::IPV6 {
        return None;
    }
    let ip_packet = Ipv6Packet::new_checked(eth.payload()).ok()?;
    let ip = Ipv6Repr::parse(&ip_packet).ok()?;
    if ip.next_header != IpProtocol::Icmpv6 || ip.hop_limit != ND_HOP_LIMIT {
        return None;
    }
    let icmp_packet = Icmpv6Packet::new_checked(ip_packet.payload()).ok()?;
    let caps = ChecksumCapabilities::default();
    let icmp = Icmpv6Repr::parse(&ip.src_addr, &ip.dst_addr, &icmp_packet, &caps).ok()?;
    let msg = match icmp {
        Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
            target_addr,
            lladdr,
        }) => NdMessage::Solicit {
            target: target_addr,
            source_mac: mac_of(lladdr),
        },
        Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
            flags,
            target_addr,
            lladdr,
        }) => {
            let solicited = flags.contains(NdiscNeighborFlags::SOLICITED);
            if solicited && ip.dst_addr.is_multicast() {
                return None;
            }
            NdMessage::Advert {
                target: target_addr,
                target_mac: mac_of(lladdr),
                solicited,
                overrides: flags.contains(NdiscNeighborFlags::OVERRIDE),
            }
        }
        _ => return None,
    };
    Some(NdFrame {
        eth_dst: eth.dst(),
        eth_src: eth.src(),
        src: ip.src_addr,
        dst: ip.dst_addr,
        msg,
    })
}

/// The solicited-node multicast address of `target` (RFC 4291 §2.7.1: ff02::1:ffXX:XXXX).
pub fn solicited_node(target: Ipv6Addr) -> Ipv6Addr {
    let o = target.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// The Ethernet address an IPv6 multicast group is sent to (RFC 2464 §7: 33:33 and the
/// group's last four bytes).
pub fn multicast_mac(group: Ipv6Addr) -> MacAddr {
    let o = group.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// The advertisement answering a solicitation for `target` from (`asker_mac`, `asker_ip`):
/// `target` is at `mac`, solicited and override flags set (not router: vtepd does not know),
/// the target link-layer address option, hop limit 255, sent from `target` to the asker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advert {
    /// The asker's MAC (the Ethernet destination).
    pub asker_mac: MacAddr,
    /// The asker's address (the IPv6 destination).
    pub asker_ip: Ipv6Addr,
    /// The address asked for (the IPv6 source and the target).
    pub target: Ipv6Addr,
    /// The MAC it is at (the Ethernet source and the option).
    pub mac: MacAddr,
}

/// A neighbour solicitation for `target` from (`mac`, `src`), sent to the target's
/// solicited-node group (RFC 4861 §7.2.2) with the source link-layer address option: how L3
/// VXLAN resolves an IPv6 next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Solicit {
    /// Our MAC (the Ethernet source and the option).
    pub mac: MacAddr,
    /// Our address (the IPv6 source).
    pub src: Ipv6Addr,
    /// The address asked for.
    pub target: Ipv6Addr,
}

impl Solicit {
    fn icmp(&self) -> NdiscRepr<'static> {
        NdiscRepr::NeighborSolicit {
            target_addr: self.target,
            lladdr: Some(RawHardwareAddress::from_bytes(&self.mac.octets())),
        }
    }

    /// The length of the Ethernet frame carrying it (86 bytes).
    pub fn frame_len(&self) -> usize {
        ethernet::HEADER_LEN + smoltcp::wire::IPV6_HEADER_LEN + self.icmp().buffer_len()
    }

    /// Writes the frame into `buf`; false if it is too short.
    pub fn write(&self, buf: &mut [u8]) -> bool {
        let group = solicited_node(self.target);
        let to = (multicast_mac(group), group);
        write_nd(buf, to, (self.mac, self.src), self.icmp())
    }
}

/// Writes an untagged Ethernet frame from `from` (MAC, IPv6) to `to` carrying the ND message
/// `nd` with hop limit 255; false if `buf` is too short.
fn write_nd(
    buf: &mut [u8],
    to: (MacAddr, Ipv6Addr),
    from: (MacAddr, Ipv6Addr),
    nd: NdiscRepr<'_>,
) -> bool {
    let icmp = Icmpv6Repr::Ndisc(nd);
    let len = ethernet::HEADER_LEN + smoltcp::wire::IPV6_HEADER_LEN + icmp.buffer_len();
    if buf.len() < len {
        return false;
    }
    let eth = EthernetRepr {
        dst: to.0,
        src: from.0,
        vlan: None,
        ethertype: ethertype::IPV6,
    };
    let Ok(h) = eth.emit(buf) else {
        return false;
    };
    let ip = Ipv6Repr {
        src_addr: from.1,
        dst_addr: to.1,
        next_header: IpProtocol::Icmpv6,
        payload_len: icmp.buffer_len(),
        hop_limit: ND_HOP_LIMIT,
    };
    let ip_buf = &mut buf[h..len];
    ip.emit(&mut Ipv6Packet::new_unchecked(&mut *ip_buf));
    let icmp_buf = &mut ip_buf[smoltcp::wire::IPV6_HEADER_LEN..];
    icmp.emit(
        &from.1,
        &to.1,
        &mut Icmpv6Packet::new_unchecked(icmp_buf),
        &ChecksumCapabilities::default(),
    );
    true
}

impl Advert {
    fn icmp(&self) -> NdiscRepr<'static> {
        NdiscRepr::NeighborAdvert {
            flags: NdiscNeighborFlags::SOLICITED | NdiscNeighborFlags::OVERRIDE,
            target_addr: self.target,
            lladdr: Some(RawHardwareAddress::from_bytes(&self.mac.octets())),
        }
    }

    /// The length of the Ethernet frame carrying it (86 bytes).
    pub fn frame_len(&self) -> usize {
        ethernet::HEADER_LEN + smoltcp::wire::IPV6_HEADER_LEN + self.icmp().buffer_len()
    }

    /// Writes the frame into `buf` (of [`Advert::frame_len`] bytes or more); false if it is
    /// too short.
    pub fn write(&self, buf: &mut [u8]) -> bool {
        let to = (self.asker_mac, self.asker_ip);
        write_nd(buf, to, (self.mac, self.target), self.icmp())
    }
}
