//! Frames vtepd makes itself (ARP requests and replies, ICMP echo replies, queued packets
//! released after resolution) and the reusable scratch buffer they are written into.
//!
//! ARP uses encap's views (one fixed 28-byte layout). The ICMP echo responder parses and emits
//! with smoltcp's wire types (`Ipv4Repr`, `Icmpv4Repr`: checksums, lengths and the echo body are
//! theirs); it only runs for packets addressed to our own overlay address, never on the
//! forwarding path.

use encap::MacAddr;
use encap::arp::{self, ArpOperation, ArpRepr};
use encap::ethernet::{self, EthernetRepr, ethertype};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr};
use std::net::Ipv4Addr;
use std::ops::Range;

/// Length of an Ethernet frame carrying an ARP packet (no padding: the tunnel does not need it).
pub const ARP_FRAME_LEN: usize = ethernet::HEADER_LEN + arp::PACKET_LEN;
/// TTL of the packets vtepd originates.
pub const OWN_TTL: u8 = 64;

/// Where a generated frame must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameTo {
    /// Out through the tunnel, as if read from the local side: the caller passes it to
    /// [`crate::core::Core::forward_frame`] (FDB lookup, or head-end replication).
    Tunnel,
    /// Into the network's local device (an ARP reply on behalf of a remote host, L2).
    Device,
}

/// Generated frames in one reusable buffer; cleared by whoever fills it, so steady state does
/// not allocate.
#[derive(Debug, Default)]
pub struct Generated {
    buf: Vec<u8>,
    frames: Vec<(FrameTo, Range<usize>)>,
}

impl Generated {
    /// An empty buffer.
    pub fn new() -> Generated {
        Generated::default()
    }
    /// Forgets all frames, keeping capacity.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.frames.clear();
    }
    /// Appends a frame of `len` bytes written by `fill`; a `fill` that returns false discards it.
    pub fn push(&mut self, to: FrameTo, len: usize, fill: impl FnOnce(&mut [u8]) -> bool) {
        let start = self.buf.len();
        self.buf.resize(start + len, 0);
        if fill(&mut self.buf[start..]) {
            self.frames.push((to, start..start + len));
        } else {
            self.buf.truncate(start);
        }
    }
    /// Forgets the frames from the `len`-th on, keeping the first `len`.
    pub fn truncate(&mut self, len: usize) {
        if let Some((_, r)) = self.frames.get(len) {
            self.buf.truncate(r.start);
            self.frames.truncate(len);
        }
    }
    /// The frames, in order.
    pub fn iter(&self) -> impl Iterator<Item = (FrameTo, &[u8])> + '_ {
        self.frames
            .iter()
            .map(|(to, r)| (*to, &self.buf[r.clone()]))
    }
    /// Number of frames.
    pub fn len(&self) -> usize {
        self.frames.len()
    }
    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// Writes an Ethernet + ARP frame (42 bytes) into `buf`; false if `buf` is too short.
pub fn write_arp_frame(buf: &mut [u8], eth_dst: MacAddr, eth_src: MacAddr, a: &ArpRepr) -> bool {
    let eth = EthernetRepr {
        dst: eth_dst,
        src: eth_src,
        vlan: None,
        ethertype: ethertype::ARP,
    };
    match eth.emit(buf) {
        Ok(h) => buf.get_mut(h..).is_some_and(|rest| a.emit(rest).is_ok()),
        Err(_) => false,
    }
}

/// Writes an Ethernet header (no VLAN tag) for an IPv4 payload into the first 14 bytes of
/// `buf`; false if `buf` is too short.
pub fn write_ipv4_header(buf: &mut [u8], eth_dst: MacAddr, eth_src: MacAddr) -> bool {
    EthernetRepr {
        dst: eth_dst,
        src: eth_src,
        vlan: None,
        ethertype: ethertype::IPV4,
    }
    .emit(buf)
    .is_ok()
}

/// Writes an Ethernet header (no VLAN tag) into the first 14 bytes of `buf` for the IP packet
/// behind it, of the type its version says (IPv6, else IPv4); false if `buf` is too short.
pub fn write_ip_header(buf: &mut [u8], eth_dst: MacAddr, eth_src: MacAddr) -> bool {
    let v6 = buf.get(ethernet::HEADER_LEN).is_some_and(|b| b >> 4 == 6);
    EthernetRepr {
        dst: eth_dst,
        src: eth_src,
        vlan: None,
        ethertype: if v6 { ethertype::IPV6 } else { ethertype::IPV4 },
    }
    .emit(buf)
    .is_ok()
}

/// A who-has request for `target` from (`own_mac`, `own_ip`), broadcast.
pub fn arp_request(own_mac: MacAddr, own_ip: Ipv4Addr, target: Ipv4Addr) -> ArpRepr {
    ArpRepr {
        operation: ArpOperation::Request,
        sender_mac: own_mac,
        sender_ip: own_ip,
        target_mac: MacAddr::ZERO,
        target_ip: target,
    }
}

/// The is-at reply to `req` saying `req.target_ip` is at `mac`.
pub fn arp_reply(req: &ArpRepr, mac: MacAddr) -> ArpRepr {
    ArpRepr {
        operation: ArpOperation::Reply,
        sender_mac: mac,
        sender_ip: req.target_ip,
        target_mac: req.sender_mac,
        target_ip: req.sender_ip,
    }
}

/// If `ip_packet` is a valid ICMP echo request to `own_ip`, the length of the Ethernet frame
/// carrying its reply; `None` for anything else (bad checksums included).
pub fn echo_reply_len(ip_packet: &[u8], own_ip: Ipv4Addr) -> Option<usize> {
    let (ip, icmp) = parse_echo_request(ip_packet, own_ip)?;
    let _ = ip;
    Some(ethernet::HEADER_LEN + smoltcp::wire::IPV4_HEADER_LEN + icmp.buffer_len())
}

fn parse_echo_request(ip_packet: &[u8], own_ip: Ipv4Addr) -> Option<(Ipv4Repr, Icmpv4Repr<'_>)> {
    let caps = ChecksumCapabilities::default();
    let pkt = Ipv4Packet::new_checked(ip_packet).ok()?;
    let ip = Ipv4Repr::parse(&pkt, &caps).ok()?;
    if ip.dst_addr != own_ip || ip.next_header != IpProtocol::Icmp {
        return None;
    }
    let payload = pkt.payload();
    let icmp_pkt = Icmpv4Packet::new_checked(payload).ok()?;
    let icmp = Icmpv4Repr::parse(&icmp_pkt, &caps).ok()?;
    matches!(icmp, Icmpv4Repr::EchoRequest { .. }).then_some((ip, icmp))
}

/// Writes the Ethernet frame answering the echo request `ip_packet` (from `eth_dst`) into
/// `buf`, whose length must be [`echo_reply_len`]; false if it is not an echo request to us.
pub fn write_echo_reply(
    buf: &mut [u8],
    ip_packet: &[u8],
    own_ip: Ipv4Addr,
    own_mac: MacAddr,
    eth_dst: MacAddr,
) -> bool {
    let Some((
        req_ip,
        Icmpv4Repr::EchoRequest {
            ident,
            seq_no,
            data,
        },
    )) = parse_echo_request(ip_packet, own_ip)
    else {
        return false;
    };
    let icmp = Icmpv4Repr::EchoReply {
        ident,
        seq_no,
        data,
    };
    let ip = Ipv4Repr {
        src_addr: own_ip,
        dst_addr: req_ip.src_addr,
        next_header: IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        hop_limit: OWN_TTL,
    };
    let want = ethernet::HEADER_LEN + ip.buffer_len() + icmp.buffer_len();
    if buf.len() != want || !write_ipv4_header(buf, eth_dst, own_mac) {
        return false;
    }
    let caps = ChecksumCapabilities::default();
    let ip_buf = &mut buf[ethernet::HEADER_LEN..];
    let mut ip_pkt = Ipv4Packet::new_unchecked(&mut *ip_buf);
    ip.emit(&mut ip_pkt, &caps);
    let mut icmp_pkt = Icmpv4Packet::new_unchecked(&mut ip_buf[smoltcp::wire::IPV4_HEADER_LEN..]);
    icmp.emit(&mut icmp_pkt, &caps);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    const OWN_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 0);

    #[test]
    fn generated_keeps_frames_in_order_and_discards_failed_fills() {
        let mut g = Generated::new();
        g.push(FrameTo::Tunnel, 3, |b| {
            b.copy_from_slice(&[1, 2, 3]);
            true
        });
        g.push(FrameTo::Device, 4, |_| false);
        g.push(FrameTo::Device, 1, |b| {
            b[0] = 9;
            true
        });
        let v: Vec<_> = g.iter().collect();
        assert_eq!(
            v,
            vec![
                (FrameTo::Tunnel, &[1u8, 2, 3][..]),
                (FrameTo::Device, &[9u8][..])
            ]
        );
        g.truncate(5);
        assert_eq!(g.len(), 2, "nothing past the end");
        g.truncate(1);
        assert_eq!(
            g.iter().collect::<Vec<_>>(),
            vec![(FrameTo::Tunnel, &[1u8, 2, 3][..])]
        );
        g.push(FrameTo::Device, 1, |b| {
            b[0] = 7;
            true
        });
        assert_eq!(g.iter().nth(1), Some((FrameTo::Device, &[7u8][..])));
        g.clear();
        assert!(g.is_empty());
    }

    #[test]
    fn short_buffers_are_refused() {
        let a = arp_request(OWN_MAC, OWN_IP, Ipv4Addr::new(10, 244, 1, 0));
        assert!(!write_arp_frame(
            &mut [0u8; ARP_FRAME_LEN - 1],
            MacAddr::BROADCAST,
            OWN_MAC,
            &a
        ));
        assert!(!write_ipv4_header(&mut [0u8; 13], OWN_MAC, OWN_MAC));
    }

    #[test]
    fn echo_reply_refuses_what_is_not_an_echo_request_to_us() {
        assert_eq!(echo_reply_len(&[], OWN_IP), None);
        assert_eq!(echo_reply_len(&[0x45; 40], OWN_IP), None);
    }
}
