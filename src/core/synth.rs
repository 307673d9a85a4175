//! Synthetic packets for `vtepd trace --inject`: built from a few fields (addresses and a
//! protocol), IPv4 or IPv6 by the addresses given, in the shape each engine takes (an Ethernet
//! frame, an IP packet, a VXLAN datagram, an IPIP packet). Slow path only: these allocate.

use super::arp::{ARP_FRAME_LEN, arp_request, write_arp_frame, write_ip_header};
use super::ndisc::Solicit;
use super::trace::{Mac, Proto};
use encap::MacAddr;
use encap::checksum;
use encap::ethernet::HEADER_LEN as ETH;
use encap::ipv4::{HEADER_LEN as IP, Ipv4Repr, protocol};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Payload bytes after the ICMP, UDP or TCP header of a synthetic packet.
const PAYLOAD: usize = 32;
/// ICMPv6's next-header number.
const ICMPV6: u8 = 58;
/// Bytes of an IPv6 header.
const IP6: usize = 40;

/// The fields a synthetic packet is built from; what is not given takes a default (the
/// caller's, or a documentation address).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Synth {
    /// Ethernet source.
    #[serde(default)]
    pub src_mac: Option<Mac>,
    /// Ethernet destination (default broadcast for ARP, the target's solicited-node group for
    /// ND).
    #[serde(default)]
    pub dst_mac: Option<Mac>,
    /// IPv4 or IPv6 source (or the ARP sender, the ND asker).
    #[serde(default)]
    pub src_ip: Option<IpAddr>,
    /// IPv4 or IPv6 destination (or the address ARP or ND asks for).
    #[serde(default)]
    pub dst_ip: Option<IpAddr>,
    /// `arp`, `nd` (a neighbour solicitation), or the IP protocol (default an ICMP echo
    /// request, ICMPv6 over IPv6).
    #[serde(default)]
    pub proto: Option<Proto>,
}

/// Addresses used when none is given.
const SRC_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const SRC_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const DST_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
const SRC_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);

/// The source and destination of a synthetic packet, of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Addrs {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

impl Synth {
    /// The addresses, given or defaulted: IPv6 when an address given is, or (none given) for
    /// `nd` and `icmp6`. An error says which fields do not go together.
    fn addrs(&self) -> Result<Addrs, String> {
        let v6 = match (self.src_ip, self.dst_ip) {
            (Some(s), Some(d)) if s.is_ipv6() != d.is_ipv6() => {
                return Err(format!(
                    "--src-ip {s} and --dst-ip {d} are not of one address family"
                ));
            }
            (Some(a), _) | (None, Some(a)) => a.is_ipv6(),
            (None, None) => matches!(self.proto, Some(Proto::Nd | Proto::Ip(ICMPV6))),
        };
        match (v6, self.proto) {
            (true, Some(Proto::Arp)) => {
                Err("ARP asks for IPv4 addresses (IPv6's is --proto nd)".to_owned())
            }
            (true, Some(Proto::Ip(protocol::ICMP))) => {
                Err("ICMP is IPv4's: over IPv6 it is --proto icmp6".to_owned())
            }
            (false, Some(Proto::Nd | Proto::Ip(ICMPV6))) => {
                Err("nd and icmp6 are IPv6's: give IPv6 addresses (or none)".to_owned())
            }
            (true, _) => Ok(Addrs::V6(
                v6_or(self.src_ip, SRC_IP6),
                v6_or(self.dst_ip, DST_IP6),
            )),
            (false, _) => Ok(Addrs::V4(
                v4_or(self.src_ip, SRC_IP),
                v4_or(self.dst_ip, DST_IP),
            )),
        }
    }

    /// Whether the fields go together (one address family, a protocol of that family); the
    /// error says why not.
    pub fn check(&self) -> Result<(), String> {
        self.addrs().map(|_| ())
    }

    /// The IP protocol of an IP packet (ICMP or ICMPv6 by default).
    fn ip_proto(&self, default: u8) -> u8 {
        match self.proto {
            Some(Proto::Ip(p)) => p,
            _ => default,
        }
    }

    /// An IP packet: an ICMP (ICMPv6) echo request, a UDP or TCP segment with a small payload,
    /// or (`nd`) a neighbour solicitation. `arp` is refused: it is a frame.
    pub fn ip_packet(&self) -> Result<Vec<u8>, String> {
        if self.proto == Some(Proto::Arp) {
            return Err(
                "--proto arp makes an Ethernet frame, and this side takes IP packets".to_owned(),
            );
        }
        match self.addrs()? {
            Addrs::V4(src, dst) => Ok(ipv4_packet(src, dst, self.ip_proto(protocol::ICMP))),
            Addrs::V6(src, dst) if self.proto == Some(Proto::Nd) => {
                Ok(self.solicit(src, dst)[ETH..].to_vec())
            }
            Addrs::V6(src, dst) => Ok(ipv6_packet(src, dst, self.ip_proto(ICMPV6))),
        }
    }

    /// An Ethernet frame: an ARP request (`arp`), a neighbour solicitation (`nd`), or
    /// [`Synth::ip_packet`] behind an Ethernet header; `dst_mac` defaults to `default_dst`
    /// (broadcast for ARP, the target's solicited-node group for ND).
    pub fn frame(&self, default_dst: MacAddr) -> Result<Vec<u8>, String> {
        let src = self.src_mac.map_or(SRC_MAC, |m| m.0);
        let addrs = self.addrs()?;
        match (self.proto, addrs) {
            (Some(Proto::Arp), Addrs::V4(sender, target)) => {
                let dst = self.dst_mac.map_or(MacAddr::BROADCAST, |m| m.0);
                let mut f = vec![0u8; ARP_FRAME_LEN];
                write_arp_frame(&mut f, dst, src, &arp_request(src, sender, target));
                Ok(f)
            }
            (Some(Proto::Nd), Addrs::V6(asker, target)) => Ok(self.solicit(asker, target)),
            _ => {
                let dst = self.dst_mac.map_or(default_dst, |m| m.0);
                let mut f = vec![0u8; ETH];
                f.extend_from_slice(&self.ip_packet()?);
                write_ip_header(&mut f, dst, src);
                Ok(f)
            }
        }
    }

    /// The frame of a neighbour solicitation for `target` from `asker` (its source link-layer
    /// option the Ethernet source), to the target's solicited-node group unless `dst_mac` says
    /// otherwise.
    fn solicit(&self, asker: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
        let ns = Solicit {
            mac: self.src_mac.map_or(SRC_MAC, |m| m.0),
            src: asker,
            target,
        };
        let mut f = vec![0u8; ns.frame_len()];
        ns.write(&mut f);
        if let Some(m) = self.dst_mac {
            f[..6].copy_from_slice(&m.0.octets());
        }
        f
    }
}

fn v4_or(ip: Option<IpAddr>, default: Ipv4Addr) -> Ipv4Addr {
    match ip {
        Some(IpAddr::V4(a)) => a,
        _ => default,
    }
}

fn v6_or(ip: Option<IpAddr>, default: Ipv6Addr) -> Ipv6Addr {
    match ip {
        Some(IpAddr::V6(a)) => a,
        _ => default,
    }
}

/// The transport header and payload of protocol `proto`: an echo request of type `echo`
/// (`icmp`: ICMP or ICMPv6), a UDP datagram or a TCP SYN from port 40000 to 7 (their
/// checksums left zero), or the bare payload of any other protocol.
fn transport(proto: u8, icmp: u8, echo: u8) -> Vec<u8> {
    let l4 = match proto {
        protocol::TCP => 20,
        p if p == protocol::UDP || p == icmp => 8,
        _ => 0,
    };
    let mut body = vec![0u8; l4 + PAYLOAD];
    match proto {
        p if p == icmp => body[0] = echo,
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
    body
}

/// An IPv4 packet of protocol `proto` (see [`transport`]; ICMP's checksum filled in).
fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> Vec<u8> {
    let mut body = transport(proto, protocol::ICMP, 8);
    if proto == protocol::ICMP {
        let sum = checksum::checksum(&body);
        body[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    let mut p = vec![0u8; IP];
    p.extend_from_slice(&body);
    let repr = Ipv4Repr {
        src,
        dst,
        protocol: proto,
        tos: 0,
        ident: 1,
        dont_frag: true,
        ttl: 64,
        payload_len: body.len(),
    };
    // Cannot fail: the buffer holds the header and the payload length is small.
    let _ = repr.emit(&mut p);
    p
}

/// An IPv6 packet with next header `proto` (see [`transport`]), hop limit 64; the checksum of
/// ICMPv6, UDP and TCP filled in (mandatory over IPv6).
fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, proto: u8) -> Vec<u8> {
    let mut body = transport(proto, ICMPV6, 128);
    let at = match proto {
        ICMPV6 => Some(2),
        protocol::UDP => Some(6),
        protocol::TCP => Some(16),
        _ => None,
    };
    if let Some(at) = at {
        let pseudo = checksum::pseudo_header6(src, dst, proto, body.len() as u32);
        let c = checksum::finish(checksum::add(pseudo, checksum::sum(&body)));
        // UDP sends a computed zero as all ones (zero means none, which IPv6 forbids).
        let c = if c == 0 && proto == protocol::UDP {
            0xffff
        } else {
            c
        };
        body[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    let mut p = vec![0u8; IP6];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(body.len() as u16).to_be_bytes());
    p[6] = proto;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p.extend_from_slice(&body);
    p
}

/// A VXLAN datagram (UDP payload) carrying `frame` in `vni`.
pub fn vxlan(vni: u32, frame: &[u8]) -> Vec<u8> {
    let mut d = vec![0u8; encap::vxlan::HEADER_LEN];
    d[0] = encap::vxlan::FLAG_I;
    d[4..7].copy_from_slice(&vni.to_be_bytes()[1..]);
    d.extend_from_slice(frame);
    d
}

/// An IPIP packet from `src` to `dst` carrying `inner`: protocol 4 for IPv4, 41 for IPv6.
pub fn ipip(src: Ipv4Addr, dst: Ipv4Addr, inner: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; IP];
    let v6 = inner.first().is_some_and(|b| b >> 4 == 6);
    let repr = Ipv4Repr {
        src,
        dst,
        protocol: if v6 { protocol::IPV6 } else { protocol::IPIP },
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
    use super::super::ndisc::{self, NdMessage};
    use super::super::trace::Headers;
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    fn proto(p: &str) -> Option<Proto> {
        Some(p.parse().unwrap())
    }

    #[test]
    fn synthetic_packets_parse_as_what_they_say() {
        let s = Synth {
            proto: proto("udp"),
            ..Synth::default()
        };
        let f = s.frame(MacAddr([2, 0, 0, 0, 0, 2])).unwrap();
        let h = Headers::of_frame(&f);
        assert_eq!(
            (h.src_ip, h.dst_ip, h.proto),
            (Some(SRC_IP.into()), Some(DST_IP.into()), Some(17))
        );
        assert!(checksum::verify(&f[ETH..ETH + IP]), "IPv4 header checksum");
        let arp = Synth {
            proto: Some(Proto::Arp),
            ..Synth::default()
        }
        .frame(MacAddr::BROADCAST)
        .unwrap();
        assert_eq!(Headers::of_frame(&arp).arp_op, Some(1));
        let outer = ipip(
            Ipv4Addr::new(192, 0, 2, 2),
            Ipv4Addr::new(192, 0, 2, 1),
            &s.ip_packet().unwrap(),
        );
        assert_eq!(outer[9], protocol::IPIP);
        assert!(encap::tunnel::ipip::decapsulate(&outer).is_ok());
    }

    /// IPv6 by the addresses given (or by `icmp6`/`nd`), with the transport checksum etherparse
    /// computes on its own, in an IPv6 Ethernet frame, and in IPIP as protocol 41.
    #[test]
    fn ipv6_addresses_make_ipv6_packets_with_their_checksums() {
        let (a, b): (Ipv6Addr, Ipv6Addr) =
            ("fd00:1::5".parse().unwrap(), "fd00:2::7".parse().unwrap());
        for p in ["icmp6", "udp", "tcp"] {
            let s = Synth {
                src_ip: Some(a.into()),
                dst_ip: Some(b.into()),
                proto: proto(p),
                ..Synth::default()
            };
            let f = s.frame(MacAddr([2, 0, 0, 0, 0, 2])).unwrap();
            let parsed = SlicedPacket::from_ethernet(&f).unwrap();
            let Some(NetSlice::Ipv6(ip)) = &parsed.net else {
                panic!("{p}: not IPv6: {parsed:?}");
            };
            let (src, dst) = (ip.header().source(), ip.header().destination());
            let (hdr, payload) = (ip.header(), ip.payload().payload);
            assert_eq!(
                (src, dst, hdr.hop_limit()),
                (a.octets(), b.octets(), 64),
                "{p}"
            );
            let sum_ok = match parsed.transport.unwrap() {
                TransportSlice::Icmpv6(i) => {
                    assert_eq!(i.type_u8(), 128, "an echo request");
                    i.is_checksum_valid(src, dst)
                }
                TransportSlice::Udp(u) => {
                    u.to_header()
                        .calc_checksum_ipv6_raw(src, dst, u.payload())
                        .unwrap()
                        == u.checksum()
                }
                TransportSlice::Tcp(t) => {
                    t.to_header()
                        .calc_checksum_ipv6_raw(src, dst, t.payload())
                        .unwrap()
                        == t.checksum()
                }
                other => panic!("{p}: {other:?}"),
            };
            assert!(sum_ok, "{p}: checksum of {payload:02x?}");
            let ipip = ipip(
                Ipv4Addr::new(192, 0, 2, 2),
                Ipv4Addr::new(192, 0, 2, 1),
                &s.ip_packet().unwrap(),
            );
            assert_eq!(ipip[9], protocol::IPV6, "{p}: protocol 41");
            assert!(encap::tunnel::ipip::decapsulate(&ipip).is_ok(), "{p}");
        }
        let echo = Synth {
            proto: proto("icmp6"),
            ..Synth::default()
        };
        let h = Headers::of_ip(&echo.ip_packet().unwrap());
        assert_eq!(
            (h.src_ip, h.dst_ip, h.proto),
            (Some(SRC_IP6.into()), Some(DST_IP6.into()), Some(ICMPV6)),
            "icmp6 alone: the IPv6 defaults"
        );
    }

    /// `nd`: a valid neighbour solicitation for the destination, to its solicited-node group.
    #[test]
    fn nd_makes_a_neighbour_solicitation_for_the_destination() {
        let (asker, target): (Ipv6Addr, Ipv6Addr) = (
            "fd00::5".parse().unwrap(),
            "fd00::1234:5678".parse().unwrap(),
        );
        let mac = MacAddr([2, 0, 0, 0, 0, 5]);
        let s = Synth {
            src_mac: Some(Mac(mac)),
            src_ip: Some(asker.into()),
            dst_ip: Some(target.into()),
            proto: Some(Proto::Nd),
            ..Synth::default()
        };
        let f = s.frame(MacAddr([2, 0, 0, 0, 0, 2])).unwrap();
        let nd = ndisc::parse(&f).expect("a valid solicitation");
        assert_eq!(
            (nd.eth_dst, nd.eth_src, nd.src, nd.dst),
            (
                MacAddr([0x33, 0x33, 0xff, 0x34, 0x56, 0x78]),
                mac,
                asker,
                "ff02::1:ff34:5678".parse().unwrap()
            )
        );
        assert_eq!(
            nd.msg,
            NdMessage::Solicit {
                target,
                source_mac: Some(mac)
            }
        );
        assert_eq!(
            s.ip_packet().unwrap(),
            f[ETH..],
            "the same packet without a frame"
        );
        let unicast = Synth {
            dst_mac: Some(Mac(MacAddr([2, 0, 0, 0, 0, 9]))),
            ..s
        };
        let f = unicast.frame(MacAddr::BROADCAST).unwrap();
        assert_eq!(
            ndisc::parse(&f).unwrap().eth_dst,
            MacAddr([2, 0, 0, 0, 0, 9])
        );
    }

    #[test]
    fn fields_of_two_families_say_why_they_do_not_go_together() {
        let v4: IpAddr = Ipv4Addr::new(10, 0, 0, 1).into();
        let v6: IpAddr = "fd00::1".parse::<Ipv6Addr>().unwrap().into();
        for (src_ip, dst_ip, p, says) in [
            (Some(v4), Some(v6), None, "one address family"),
            (None, Some(v6), Some("arp"), "--proto nd"),
            (None, Some(v6), Some("icmp"), "icmp6"),
            (None, Some(v4), Some("nd"), "IPv6's"),
            (Some(v4), None, Some("icmp6"), "IPv6's"),
        ] {
            let s = Synth {
                src_ip,
                dst_ip,
                proto: p.and_then(proto),
                ..Synth::default()
            };
            let e = s.frame(MacAddr::BROADCAST).unwrap_err();
            assert!(e.contains(says), "{s:?}: {e}");
            assert_eq!(s.check(), Err(e));
        }
        let arp = Synth {
            proto: proto("arp"),
            ..Synth::default()
        };
        assert!(arp.ip_packet().unwrap_err().contains("frame"));
    }
}
