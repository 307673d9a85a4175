//! Synthetic packets for `vtepd trace --inject`: built from a few fields (addresses and a
//! protocol) with `encap`'s emitters, in the shape each engine takes (an Ethernet frame, an IP
//! packet, a VXLAN datagram, an IPIP packet). Slow path only: these allocate.

use super::arp::{ARP_FRAME_LEN, arp_request, write_arp_frame, write_ipv4_header};
use super::trace::{Mac, Proto};
use encap::MacAddr;
use encap::ethernet::HEADER_LEN as ETH;
use encap::ipv4::{HEADER_LEN as IP, Ipv4Repr, protocol};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// Payload bytes after the ICMP, UDP or TCP header of a synthetic packet.
const PAYLOAD: usize = 32;

/// The fields a synthetic packet is built from; what is not given takes a default (the
/// caller's, or a documentation address).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Synth {
    /// Ethernet source.
    #[serde(default)]
    pub src_mac: Option<Mac>,
    /// Ethernet destination (default broadcast for ARP).
    #[serde(default)]
    pub dst_mac: Option<Mac>,
    /// IPv4 source (or ARP sender).
    #[serde(default)]
    pub src_ip: Option<Ipv4Addr>,
    /// IPv4 destination (or ARP target).
    #[serde(default)]
    pub dst_ip: Option<Ipv4Addr>,
    /// `arp`, or the IPv4 protocol (default ICMP: an echo request).
    #[serde(default)]
    pub proto: Option<Proto>,
}

/// Addresses used when none is given.
const SRC_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const SRC_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);

impl Synth {
    fn src_ip(&self) -> Ipv4Addr {
        self.src_ip.unwrap_or(SRC_IP)
    }
    fn dst_ip(&self) -> Ipv4Addr {
        self.dst_ip.unwrap_or(DST_IP)
    }

    /// An IPv4 packet: an ICMP echo request, or a UDP or TCP segment with a small payload.
    pub fn ip_packet(&self) -> Vec<u8> {
        let proto = match self.proto {
            Some(Proto::Ip(p)) => p,
            _ => protocol::ICMP,
        };
        let l4 = match proto {
            protocol::TCP => 20,
            protocol::UDP | protocol::ICMP => 8,
            _ => 0,
        };
        let mut p = vec![0u8; IP + l4 + PAYLOAD];
        let repr = Ipv4Repr {
            src: self.src_ip(),
            dst: self.dst_ip(),
            protocol: proto,
            tos: 0,
            ident: 1,
            dont_frag: true,
            ttl: 64,
            payload_len: l4 + PAYLOAD,
        };
        // Cannot fail: the buffer holds the header and the payload length is small.
        let _ = repr.emit(&mut p);
        let body = &mut p[IP..];
        match proto {
            protocol::ICMP => {
                body[0] = 8; // echo request
                let sum = encap::checksum::checksum(body);
                body[2..4].copy_from_slice(&sum.to_be_bytes());
            }
            protocol::UDP => {
                body[0..2].copy_from_slice(&40000u16.to_be_bytes());
                body[2..4].copy_from_slice(&7u16.to_be_bytes());
                body[4..6].copy_from_slice(&((8 + PAYLOAD) as u16).to_be_bytes());
            }
            protocol::TCP => {
                body[0..2].copy_from_slice(&40000u16.to_be_bytes());
                body[2..4].copy_from_slice(&7u16.to_be_bytes());
                body[12] = 5 << 4;
                body[13] = 0x02; // SYN
            }
            _ => {}
        }
        p
    }

    /// An Ethernet frame: an ARP request (`proto` arp), or [`Synth::ip_packet`] behind an
    /// Ethernet header; `dst_mac` defaults to `default_dst` (broadcast for ARP).
    pub fn frame(&self, default_dst: MacAddr) -> Vec<u8> {
        let src = self.src_mac.map_or(SRC_MAC, |m| m.0);
        if self.proto == Some(Proto::Arp) {
            let dst = self.dst_mac.map_or(MacAddr::BROADCAST, |m| m.0);
            let mut f = vec![0u8; ARP_FRAME_LEN];
            let req = arp_request(src, self.src_ip(), self.dst_ip());
            write_arp_frame(&mut f, dst, src, &req);
            return f;
        }
        let dst = self.dst_mac.map_or(default_dst, |m| m.0);
        let mut f = vec![0u8; ETH];
        f.extend_from_slice(&self.ip_packet());
        write_ipv4_header(&mut f, dst, src);
        f
    }
}

/// A VXLAN datagram (UDP payload) carrying `frame` in `vni`.
pub fn vxlan(vni: u32, frame: &[u8]) -> Vec<u8> {
    let mut d = vec![0u8; encap::vxlan::HEADER_LEN];
    d[0] = encap::vxlan::FLAG_I;
    d[4..7].copy_from_slice(&vni.to_be_bytes()[1..]);
    d.extend_from_slice(frame);
    d
}

/// An IPIP packet from `src` to `dst` carrying `inner`.
pub fn ipip(src: Ipv4Addr, dst: Ipv4Addr, inner: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; IP];
    let repr = Ipv4Repr {
        src,
        dst,
        protocol: protocol::IPIP,
        tos: 0,
        ident: 1,
        dont_frag: true,
        ttl: 64,
        payload_len: inner.len(),
    };
    p.extend_from_slice(inner);
    // Fails only for an inner packet too long for IPv4: the engine then drops it as bad.
    let _ = repr.emit(&mut p);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_packets_parse_as_what_they_say() {
        let s = Synth {
            proto: Some(Proto::Ip(protocol::UDP)),
            ..Synth::default()
        };
        let f = s.frame(MacAddr([2, 0, 0, 0, 0, 2]));
        let h = super::super::trace::Headers::of_frame(&f);
        assert_eq!(
            (h.src_ip, h.dst_ip, h.proto),
            (Some(SRC_IP.into()), Some(DST_IP.into()), Some(17))
        );
        assert!(
            encap::checksum::verify(&f[ETH..ETH + IP]),
            "IPv4 header checksum"
        );
        let arp = Synth {
            proto: Some(Proto::Arp),
            ..Synth::default()
        }
        .frame(MacAddr::BROADCAST);
        assert_eq!(super::super::trace::Headers::of_frame(&arp).arp_op, Some(1));
        let outer = ipip(
            Ipv4Addr::new(192, 0, 2, 2),
            Ipv4Addr::new(192, 0, 2, 1),
            &s.ip_packet(),
        );
        assert!(encap::tunnel::ipip::decapsulate(&outer).is_ok());
    }
}
