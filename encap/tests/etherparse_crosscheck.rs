//! Checks that etherparse decodes every header encap emits (Ethernet/VLAN, ARP, IPv4, UDP, VXLAN,
//! IPIP) field for field, since a second, independent decoder catches bugs encap's roundtrips hide.

use encap::arp::{ArpOperation, ArpRepr};
use encap::ethernet::{EthernetRepr, VlanId, VlanTag};
use encap::ipv4::Ipv4Repr;
use encap::tunnel::{ipip, vxlan, vxlan6};
use encap::udp::UdpRepr;
use encap::{
    Df, Dscp, IpipConfig, IpipEncap, MacAddr, PortRange, Ttl, Vni, Vxlan6Encap, VxlanConfig,
    VxlanEncap, VxlanTx,
};
use etherparse as ep;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::net::{Ipv4Addr, Ipv6Addr};

type TestResult = Result<(), TestCaseError>;

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(MacAddr)
}
fn ip4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}
fn vlan_tag() -> impl Strategy<Value = VlanTag> {
    (0u8..8, any::<bool>(), 0u16..=VlanId::MAX).prop_map(|(pcp, dei, vid)| VlanTag {
        pcp,
        dei,
        vid: VlanId::new(vid).unwrap(),
    })
}
fn ttl_mode() -> impl Strategy<Value = Ttl> {
    prop_oneof![Just(Ttl::Inherit), (1u8..=255).prop_map(Ttl::Fixed)]
}
fn dscp_mode() -> impl Strategy<Value = Dscp> {
    prop_oneof![Just(Dscp::Inherit), (0u8..64).prop_map(Dscp::Fixed)]
}
fn df_mode() -> impl Strategy<Value = Df> {
    prop_oneof![Just(Df::Set), Just(Df::Unset), Just(Df::Inherit)]
}
fn port_range() -> impl Strategy<Value = PortRange> {
    (1u16..=65535, 1u16..=65535).prop_map(|(a, b)| PortRange::new(a.min(b), a.max(b)).unwrap())
}
fn arp_repr() -> impl Strategy<Value = ArpRepr> {
    let op = prop_oneof![
        Just(ArpOperation::Request),
        Just(ArpOperation::Reply),
        any::<u16>().prop_map(ArpOperation::from_code),
    ];
    (op, mac(), ip4(), mac(), ip4()).prop_map(|(operation, sm, si, tm, ti)| ArpRepr {
        operation,
        sender_mac: sm,
        sender_ip: si,
        target_mac: tm,
        target_ip: ti,
    })
}

/// Ethertypes etherparse looks behind (VLAN/QinQ/MACsec tags, IPv4, IPv6, ARP): a payload of
/// random bytes behind one of these would be parsed as that protocol.
const PARSED_ETHERTYPES: [u16; 7] = [0x8100, 0x88a8, 0x9100, 0x88e5, 0x0800, 0x86dd, 0x0806];

/// An ethertype neither encap nor etherparse looks behind.
fn opaque_ethertype() -> impl Strategy<Value = u16> {
    any::<u16>().prop_filter("parsed ethertype", |t| !PARSED_ETHERTYPES.contains(t))
}

/// What the inner Ethernet frame of a VXLAN packet carries.
#[derive(Debug, Clone)]
enum Body {
    /// IPv4 + UDP, both emitted by encap.
    Udp {
        ip: Ipv4Repr,
        udp: UdpRepr,
        udp_checksum: bool,
        payload: Vec<u8>,
    },
    /// An ARP packet emitted by encap.
    Arp(ArpRepr),
    /// Opaque bytes behind an ethertype nobody parses.
    Opaque(Vec<u8>),
}

#[derive(Debug, Clone)]
struct InnerFrame {
    eth: EthernetRepr,
    body: Body,
}

impl InnerFrame {
    /// The frame's bytes, every header emitted by encap.
    fn to_bytes(&self) -> Vec<u8> {
        let mut f = vec![0u8; self.eth.header_len()];
        self.eth.emit(&mut f).unwrap();
        match &self.body {
            Body::Udp {
                ip,
                udp,
                udp_checksum,
                payload,
            } => {
                let at = f.len();
                f.resize(at + 28, 0);
                f.extend_from_slice(payload);
                ip.emit(&mut f[at..]).unwrap();
                udp.emit(
                    &mut f[at + 20..],
                    payload.len(),
                    ip.src,
                    ip.dst,
                    *udp_checksum,
                )
                .unwrap();
            }
            Body::Arp(arp) => {
                let at = f.len();
                f.resize(at + 28, 0);
                arp.emit(&mut f[at..]).unwrap();
            }
            Body::Opaque(b) => f.extend_from_slice(b),
        }
        f
    }
    /// The inner IP TOS and TTL, when the frame carries IP.
    fn ip_tos_ttl(&self) -> Option<(u8, u8)> {
        match &self.body {
            Body::Udp { ip, .. } => Some((ip.tos, ip.ttl)),
            _ => None,
        }
    }
    /// The inner IPv4 DF bit (`None`: not IP).
    fn ip_df(&self) -> Option<bool> {
        match &self.body {
            Body::Udp { ip, .. } => Some(ip.dont_frag),
            _ => None,
        }
    }
}

fn inner_frame() -> impl Strategy<Value = InnerFrame> {
    let udp = (
        (
            ip4(),
            ip4(),
            any::<u8>(),
            any::<u16>(),
            any::<bool>(),
            // TTL 0 is a special case (an outer TTL inherited from it is 64): draw it often.
            prop_oneof![1 => Just(0u8), 7 => any::<u8>()],
        ),
        (any::<u16>(), any::<u16>(), any::<bool>()),
        proptest::collection::vec(any::<u8>(), 0..1400),
    )
        .prop_map(
            |((src, dst, tos, ident, dont_frag, ttl), (sp, dp, udp_checksum), payload)| {
                (
                    0x0800,
                    Body::Udp {
                        ip: Ipv4Repr {
                            src,
                            dst,
                            protocol: 17,
                            tos,
                            ident,
                            dont_frag,
                            ttl,
                            payload_len: 8 + payload.len(),
                        },
                        udp: UdpRepr {
                            src_port: sp,
                            dst_port: dp,
                        },
                        udp_checksum,
                        payload,
                    },
                )
            },
        );
    let arp = arp_repr().prop_map(|a| (0x0806, Body::Arp(a)));
    let opaque = (
        opaque_ethertype(),
        proptest::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(t, b)| (t, Body::Opaque(b)));
    (
        mac(),
        mac(),
        proptest::option::of(vlan_tag()),
        prop_oneof![3 => udp, 1 => arp, 1 => opaque],
    )
        .prop_map(|(dst, src, vlan, (ethertype, body))| InnerFrame {
            eth: EthernetRepr {
                dst,
                src,
                vlan,
                ethertype,
            },
            body,
        })
}

// ---------------------------------------------------------------------------------------------
// Comparisons against etherparse's view
// ---------------------------------------------------------------------------------------------

/// etherparse's header for the same fields as `repr`, checksum computed by etherparse.
fn ep_ipv4_header(repr: &Ipv4Repr) -> ep::Ipv4Header {
    let mut h = ep::Ipv4Header {
        dscp: ep::IpDscp::try_new(repr.tos >> 2).unwrap(),
        ecn: ep::IpEcn::try_new(repr.tos & 3).unwrap(),
        total_len: u16::try_from(20 + repr.payload_len).unwrap(),
        identification: repr.ident,
        dont_fragment: repr.dont_frag,
        more_fragments: false,
        fragment_offset: ep::IpFragOffset::ZERO,
        time_to_live: repr.ttl,
        protocol: ep::IpNumber(repr.protocol),
        header_checksum: 0,
        source: repr.src.octets(),
        destination: repr.dst.octets(),
        options: ep::Ipv4Options::new(),
    };
    h.header_checksum = h.calc_header_checksum();
    h
}

/// An IPv4 header as etherparse reads it has exactly `repr`'s fields, no options, and a checksum
/// equal to the one etherparse computes for it.
fn check_ipv4_header(h: &ep::Ipv4HeaderSlice<'_>, repr: &Ipv4Repr) -> TestResult {
    prop_assert_eq!(h.version(), 4);
    prop_assert_eq!(h.ihl(), 5);
    prop_assert_eq!(h.dcp().value(), repr.tos >> 2);
    prop_assert_eq!(h.ecn().value(), repr.tos & 3);
    prop_assert_eq!(usize::from(h.total_len()), 20 + repr.payload_len);
    prop_assert_eq!(h.payload_len().unwrap(), repr.payload_len as u16);
    prop_assert_eq!(h.identification(), repr.ident);
    prop_assert_eq!(h.dont_fragment(), repr.dont_frag);
    prop_assert!(!h.more_fragments());
    prop_assert_eq!(h.fragments_offset().value(), 0);
    prop_assert!(!h.is_fragmenting_payload());
    prop_assert_eq!(h.ttl(), repr.ttl);
    prop_assert_eq!(h.protocol().0, repr.protocol);
    prop_assert_eq!(h.source_addr(), repr.src);
    prop_assert_eq!(h.destination_addr(), repr.dst);
    prop_assert!(h.options().is_empty());
    prop_assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
    // And etherparse writes the same 20 bytes for the same fields.
    prop_assert_eq!(h.slice(), &ep_ipv4_header(repr).to_bytes()[..]);
    Ok(())
}

/// A UDP datagram as etherparse reads it (`d` = header + payload) has these ports, a length
/// covering `payload`, and either no checksum or one equal to etherparse's for the pseudo-header.
fn check_udp(
    d: &ep::UdpSlice<'_>,
    repr: &UdpRepr,
    payload: &[u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    checksum: bool,
) -> TestResult {
    prop_assert_eq!(d.source_port(), repr.src_port);
    prop_assert_eq!(d.destination_port(), repr.dst_port);
    prop_assert_eq!(usize::from(d.length()), 8 + payload.len());
    prop_assert_eq!(d.payload(), payload);
    let want = if checksum {
        d.to_header()
            .calc_checksum_ipv4_raw(src.octets(), dst.octets(), payload)
            .unwrap()
    } else {
        0
    };
    prop_assert_eq!(d.checksum(), want);
    Ok(())
}

/// etherparse's ARP view of an encap-emitted packet has the same fields, and etherparse writes
/// the same 28 bytes for them.
fn check_arp(a: &ep::ArpPacketSlice<'_>, repr: &ArpRepr) -> TestResult {
    prop_assert_eq!(a.hw_addr_type(), ep::ArpHardwareId::ETHERNET);
    prop_assert_eq!(a.proto_addr_type(), ep::EtherType::IPV4);
    prop_assert_eq!(a.hw_addr_size(), 6);
    prop_assert_eq!(a.proto_addr_size(), 4);
    let want = ep::ArpEthIpv4Packet {
        operation: match repr.operation {
            ArpOperation::Request => ep::ArpOperation::REQUEST,
            ArpOperation::Reply => ep::ArpOperation::REPLY,
            ArpOperation::Other(c) => ep::ArpOperation(c),
        },
        sender_mac: repr.sender_mac.0,
        sender_ipv4: repr.sender_ip.octets(),
        target_mac: repr.target_mac.0,
        target_ipv4: repr.target_ip.octets(),
    };
    prop_assert_eq!(a.to_packet().try_eth_ipv4().unwrap(), want.clone());
    prop_assert_eq!(a.slice(), &want.to_bytes()[..]);
    Ok(())
}

/// etherparse's whole-packet view of an Ethernet frame equals the frame that was built.
fn check_frame(bytes: &[u8], frame: &InnerFrame) -> TestResult {
    let p = ep::SlicedPacket::from_ethernet(bytes)
        .map_err(|e| TestCaseError::fail(format!("etherparse rejected the frame: {e:?}")))?;
    let Some(ep::LinkSlice::Ethernet2(eth)) = &p.link else {
        return Err(TestCaseError::fail("no Ethernet II link layer"));
    };
    prop_assert_eq!(eth.destination(), frame.eth.dst.0);
    prop_assert_eq!(eth.source(), frame.eth.src.0);
    match frame.eth.vlan {
        Some(tag) => {
            prop_assert_eq!(eth.ether_type(), ep::EtherType::VLAN_TAGGED_FRAME);
            prop_assert_eq!(p.link_exts.len(), 1);
            let Some(ep::LinkExtSlice::Vlan(v)) = p.link_exts.first() else {
                return Err(TestCaseError::fail("no VLAN tag"));
            };
            prop_assert_eq!(v.priority_code_point().value(), tag.pcp);
            prop_assert_eq!(v.drop_eligible_indicator(), tag.dei);
            prop_assert_eq!(v.vlan_identifier().value(), tag.vid.get());
            prop_assert_eq!(v.ether_type().0, frame.eth.ethertype);
        }
        None => {
            prop_assert_eq!(eth.ether_type().0, frame.eth.ethertype);
            prop_assert!(p.link_exts.is_empty());
        }
    }
    match &frame.body {
        Body::Udp {
            ip,
            udp,
            udp_checksum,
            payload,
        } => {
            let Some(ep::NetSlice::Ipv4(v4)) = &p.net else {
                return Err(TestCaseError::fail("no IPv4 layer"));
            };
            check_ipv4_header(&v4.header(), ip)?;
            let Some(ep::TransportSlice::Udp(d)) = &p.transport else {
                return Err(TestCaseError::fail("no UDP layer"));
            };
            check_udp(d, udp, payload, ip.src, ip.dst, *udp_checksum)?;
        }
        Body::Arp(arp) => {
            let Some(ep::NetSlice::Arp(a)) = &p.net else {
                return Err(TestCaseError::fail("no ARP layer"));
            };
            check_arp(a, arp)?;
        }
        Body::Opaque(b) => {
            prop_assert!(p.net.is_none());
            prop_assert_eq!(
                p.payload_ether_type(),
                Some(ep::EtherType(frame.eth.ethertype))
            );
            prop_assert_eq!(p.ether_payload().unwrap().payload, &b[..]);
        }
    }
    Ok(())
}

/// The outer ECN field RFC 6040 prescribes for an inner TOS (CE is sent as ECT(0)).
fn outer_ecn(inner_tos: Option<u8>) -> u8 {
    match inner_tos.map_or(0, |t| t & 3) {
        3 => 2,
        e => e,
    }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Ethernet II with and without an 802.1Q tag: same addresses, tag fields and ethertype, and
    /// etherparse's own encoding of those fields is byte-identical.
    #[test]
    fn ethernet_matches_etherparse(
        dst in mac(), src in mac(), vlan in proptest::option::of(vlan_tag()),
        ethertype in any::<u16>(), tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let repr = EthernetRepr { dst, src, vlan, ethertype };
        let n = repr.header_len();
        let mut buf = vec![0u8; n];
        buf.extend_from_slice(&tail);
        prop_assert_eq!(repr.emit(&mut buf).unwrap(), n);

        let eth = ep::Ethernet2Slice::from_slice_without_fcs(&buf).unwrap();
        prop_assert_eq!(eth.destination(), dst.0);
        prop_assert_eq!(eth.source(), src.0);
        let mut want = ep::Ethernet2Header {
            source: src.0,
            destination: dst.0,
            ether_type: ep::EtherType(ethertype),
        };
        match vlan {
            Some(tag) => {
                prop_assert_eq!(eth.ether_type(), ep::EtherType::VLAN_TAGGED_FRAME);
                let v = ep::SingleVlanSlice::from_slice(eth.payload_slice()).unwrap();
                prop_assert_eq!(v.priority_code_point().value(), tag.pcp);
                prop_assert_eq!(v.drop_eligible_indicator(), tag.dei);
                prop_assert_eq!(v.vlan_identifier().value(), tag.vid.get());
                prop_assert_eq!(v.ether_type(), ep::EtherType(ethertype));
                prop_assert_eq!(v.payload_slice(), &tail[..]);
                want.ether_type = ep::EtherType::VLAN_TAGGED_FRAME;
                let tag_bytes = ep::SingleVlanHeader {
                    pcp: ep::VlanPcp::try_new(tag.pcp).unwrap(),
                    drop_eligible_indicator: tag.dei,
                    vlan_id: ep::VlanId::try_new(tag.vid.get()).unwrap(),
                    ether_type: ep::EtherType(ethertype),
                }
                .to_bytes();
                prop_assert_eq!(&buf[14..18], &tag_bytes[..]);
            }
            None => {
                prop_assert_eq!(eth.ether_type(), ep::EtherType(ethertype));
                prop_assert_eq!(eth.payload_slice(), &tail[..]);
            }
        }
        prop_assert_eq!(&buf[..14], &want.to_bytes()[..]);

        // The whole-packet slicer agrees on the layering whenever it would not look behind the
        // ethertype (an untagged 0x8100 frame would read as tagged in both decoders).
        if !PARSED_ETHERTYPES.contains(&ethertype) {
            let p = ep::SlicedPacket::from_ethernet(&buf).unwrap();
            prop_assert_eq!(p.link_exts.len(), usize::from(vlan.is_some()));
            let want_ids: Vec<u16> = vlan.iter().map(|t| t.vid.get()).collect();
            let got_ids: Vec<u16> = p.vlan_ids().iter().map(|v| v.value()).collect();
            prop_assert_eq!(got_ids, want_ids);
            prop_assert_eq!(p.payload_ether_type(), Some(ep::EtherType(ethertype)));
            prop_assert_eq!(p.ether_payload().unwrap().payload, &tail[..]);
        }
    }

    /// ARP (Ethernet/IPv4), inside a possibly tagged Ethernet frame: etherparse finds the ARP
    /// layer with the same operation and addresses and encodes them to the same bytes.
    #[test]
    fn arp_matches_etherparse(arp in arp_repr(), dst in mac(), src in mac(), vlan in proptest::option::of(vlan_tag())) {
        let frame = InnerFrame {
            eth: EthernetRepr { dst, src, vlan, ethertype: 0x0806 },
            body: Body::Arp(arp),
        };
        let bytes = frame.to_bytes();
        check_arp(&ep::ArpPacketSlice::from_slice(&bytes[frame.eth.header_len()..]).unwrap(), &arp)?;
        check_frame(&bytes, &frame)?;
    }

    /// IPv4 header: every field (addresses, DSCP, ECN, total length, ID, DF, TTL, protocol) reads
    /// back the same in etherparse, whose own checksum for the header equals encap's and whose
    /// encoding of the same fields is byte-identical.
    #[test]
    fn ipv4_matches_etherparse(
        src in ip4(), dst in ip4(), protocol in any::<u8>(), tos in any::<u8>(), ident in any::<u16>(),
        dont_frag in any::<bool>(), ttl in any::<u8>(),
        payload_len in prop_oneof![0usize..1500, 1500usize..=65515],
    ) {
        let repr = Ipv4Repr { src, dst, protocol, tos, ident, dont_frag, ttl, payload_len };
        let mut buf = vec![0u8; 20 + payload_len];
        repr.emit(&mut buf).unwrap();
        check_ipv4_header(&ep::Ipv4HeaderSlice::from_slice(&buf).unwrap(), &repr)?;
        // The packet slicer agrees on the payload (protocol 51 would make it read an AH header).
        if protocol != ep::ip_number::AUTH.0 {
            let s = ep::Ipv4Slice::from_slice(&buf).unwrap();
            prop_assert_eq!(s.payload().payload.len(), payload_len);
            prop_assert_eq!(s.payload_ip_number().0, protocol);
            prop_assert!(!s.is_payload_fragmented());
        }
    }

    /// UDP header: same ports and length, and the checksum (when asked for) equals etherparse's
    /// over the IPv4 pseudo-header; `force_zero` appends the word that makes the computed sum zero,
    /// which both must send as 0xffff (RFC 768).
    #[test]
    fn udp_matches_etherparse(
        sp in any::<u16>(), dp in any::<u16>(), src in ip4(), dst in ip4(), checksum in any::<bool>(),
        payload in proptest::collection::vec(any::<u8>(), 0..1500), force_zero in any::<bool>(),
    ) {
        let repr = UdpRepr { src_port: sp, dst_port: dp };
        let mut payload = payload;
        if force_zero {
            // An even length keeps the appended word aligned; with it zero the checksum is C, and
            // with C in its place the one's complement sum becomes 0xffff: computed checksum 0.
            if payload.len() % 2 == 1 {
                payload.pop();
            }
            payload.extend_from_slice(&[0, 0]);
            let mut b = vec![0u8; 8];
            b.extend_from_slice(&payload);
            repr.emit(&mut b, payload.len(), src, dst, true).unwrap();
            let n = payload.len();
            payload[n - 2..].copy_from_slice(&b[6..8]);
        }
        let mut buf = vec![0u8; 8];
        buf.extend_from_slice(&payload);
        repr.emit(&mut buf, payload.len(), src, dst, checksum).unwrap();
        if force_zero && checksum {
            prop_assert_eq!(&buf[6..8], &[0xff, 0xff]);
        }
        check_udp(&ep::UdpSlice::from_slice(&buf).unwrap(), &repr, &payload, src, dst, checksum)?;
        let h = ep::UdpHeaderSlice::from_slice(&buf).unwrap().to_header();
        let mut want = ep::UdpHeader { source_port: sp, destination_port: dp, length: h.length, checksum: 0 };
        if checksum {
            want.checksum = want.calc_checksum_ipv4_raw(src.octets(), dst.octets(), &payload).unwrap();
        }
        prop_assert_eq!(&buf[..8], &want.to_bytes()[..]);
    }

    /// A whole VXLAN encapsulation: etherparse reads the outer IPv4 (addresses, DF, TTL and DSCP
    /// per the configuration, RFC 6040 ECN, ID, length, checksum) and UDP (configured port, source
    /// port in range, length, checksum when enabled), the VXLAN header is I flag + VNI with every
    /// reserved bit zero, and the inner frame parses exactly as it was built.
    #[test]
    fn vxlan_encap_matches_etherparse(
        frame in inner_frame(), local in ip4(), remote in ip4(),
        dst_port in prop_oneof![Just(4789u16), Just(8472u16), 1u16..],
        src_ports in port_range(), ttl in ttl_mode(), dscp in dscp_mode(), df in df_mode(),
        udp_checksum in any::<bool>(),
        vni in 0u32..=Vni::MAX, ip_id in any::<u16>(), fixed_src_port in proptest::option::of(any::<u16>()),
        headroom in 36usize..80,
    ) {
        let bytes = frame.to_bytes();
        check_frame(&bytes, &frame)?;
        let cfg = VxlanConfig {
            local,
            dst_port,
            src_ports,
            ttl,
            dscp,
            df,
            udp_checksum,
        };
        let enc = VxlanEncap::new(&cfg, remote).unwrap();
        let mut buf = vec![0u8; headroom + bytes.len()];
        buf[headroom..].copy_from_slice(&bytes);
        let tx = VxlanTx { vni: Vni::new(vni).unwrap(), ip_id, src_port: fixed_src_port };
        let r = enc.encapsulate(&mut buf, headroom, bytes.len(), &tx).unwrap();
        prop_assert_eq!(r.clone(), headroom - vxlan::OVERHEAD..buf.len());
        let pkt = &buf[r];

        let p = ep::SlicedPacket::from_ip(pkt)
            .map_err(|e| TestCaseError::fail(format!("etherparse rejected the packet: {e:?}")))?;
        let Some(ep::NetSlice::Ipv4(v4)) = &p.net else {
            return Err(TestCaseError::fail("no outer IPv4"));
        };
        let inner_ip = frame.ip_tos_ttl();
        let want_ttl = match ttl {
            Ttl::Fixed(t) => t,
            Ttl::Inherit => inner_ip.map(|(_, t)| t).filter(|&t| t != 0).unwrap_or(64),
        };
        let want_dscp = match dscp {
            Dscp::Fixed(d) => d,
            Dscp::Inherit => inner_ip.map_or(0, |(tos, _)| tos >> 2),
        };
        let outer = Ipv4Repr {
            src: local,
            dst: remote,
            protocol: 17,
            tos: (want_dscp << 2) | outer_ecn(inner_ip.map(|(tos, _)| tos)),
            ident: ip_id,
            // Written out rather than with `Df::outer`: set, unset, or the inner IPv4 DF.
            dont_frag: match df {
                Df::Set => true,
                Df::Unset => false,
                Df::Inherit => frame.ip_df() == Some(true),
            },
            ttl: want_ttl,
            payload_len: 16 + bytes.len(),
        };
        check_ipv4_header(&v4.header(), &outer)?;

        let Some(ep::TransportSlice::Udp(d)) = &p.transport else {
            return Err(TestCaseError::fail("no outer UDP"));
        };
        let want_src_port = fixed_src_port.unwrap_or_else(|| enc.src_port_for(&bytes));
        if fixed_src_port.is_none() {
            prop_assert!((src_ports.lo()..=src_ports.hi()).contains(&d.source_port()));
        }
        let mut vxlan_and_frame = vec![0x08, 0, 0, 0];
        vxlan_and_frame.extend_from_slice(&vni.to_be_bytes()[1..]);
        vxlan_and_frame.push(0);
        vxlan_and_frame.extend_from_slice(&bytes);
        let udp = UdpRepr { src_port: want_src_port, dst_port };
        check_udp(d, &udp, &vxlan_and_frame, local, remote, udp_checksum)?;

        check_frame(&d.payload()[8..], &frame)?;
    }

    /// A whole VXLAN-over-IPv6 encapsulation: etherparse reads the outer IPv6 (addresses, next
    /// header UDP, payload length, hop limit and traffic class per the configuration with RFC
    /// 6040 ECN, a flow label from the inner flow), the UDP header (configured port, source port
    /// in range, length, and a checksum over the IPv6 pseudo-header equal to etherparse's, or
    /// zero when turned off), the VXLAN header is I flag + VNI, and the inner frame parses exactly
    /// as it was built.
    #[test]
    fn vxlan6_encap_matches_etherparse(
        frame in inner_frame(), local in any::<[u8; 16]>(), remote in any::<[u8; 16]>(),
        dst_port in prop_oneof![Just(4789u16), Just(8472u16), 1u16..],
        src_ports in port_range(), ttl in ttl_mode(), dscp in dscp_mode(),
        udp_checksum in any::<bool>(),
        vni in 0u32..=Vni::MAX, fixed_src_port in proptest::option::of(any::<u16>()),
        headroom in 56usize..80,
    ) {
        let (local, remote) = (Ipv6Addr::from(local), Ipv6Addr::from(remote));
        let bytes = frame.to_bytes();
        check_frame(&bytes, &frame)?;
        let mut cfg = VxlanConfig::new(Ipv4Addr::UNSPECIFIED);
        (cfg.dst_port, cfg.src_ports, cfg.ttl, cfg.dscp, cfg.udp_checksum) =
            (dst_port, src_ports, ttl, dscp, udp_checksum);
        let enc = Vxlan6Encap::new(&cfg, local, remote).unwrap();
        prop_assert_eq!(enc.remote(), remote);
        let mut buf = vec![0u8; headroom + bytes.len()];
        buf[headroom..].copy_from_slice(&bytes);
        let tx = VxlanTx { vni: Vni::new(vni).unwrap(), ip_id: 0, src_port: fixed_src_port };
        let r = enc.encapsulate(&mut buf, headroom, bytes.len(), &tx).unwrap();
        prop_assert_eq!(r.clone(), headroom - vxlan6::OVERHEAD..buf.len());
        let pkt = &buf[r];

        let p = ep::SlicedPacket::from_ip(pkt)
            .map_err(|e| TestCaseError::fail(format!("etherparse rejected the packet: {e:?}")))?;
        let Some(ep::NetSlice::Ipv6(v6)) = &p.net else {
            return Err(TestCaseError::fail("no outer IPv6"));
        };
        let h = v6.header();
        let inner_ip = frame.ip_tos_ttl();
        let want_hops = match ttl {
            Ttl::Fixed(t) => t,
            Ttl::Inherit => inner_ip.map(|(_, t)| t).filter(|&t| t != 0).unwrap_or(64),
        };
        let want_dscp = match dscp {
            Dscp::Fixed(d) => d,
            Dscp::Inherit => inner_ip.map_or(0, |(tos, _)| tos >> 2),
        };
        prop_assert_eq!(h.source_addr(), local);
        prop_assert_eq!(h.destination_addr(), remote);
        prop_assert_eq!(h.next_header(), ep::IpNumber::UDP);
        prop_assert_eq!(h.hop_limit(), want_hops);
        prop_assert_eq!(h.traffic_class(), (want_dscp << 2) | outer_ecn(inner_ip.map(|(tos, _)| tos)));
        prop_assert_eq!(usize::from(h.payload_length()), 16 + bytes.len());
        // The same inner flow always gets the same label.
        let mut again = vec![0u8; headroom + bytes.len()];
        again[headroom..].copy_from_slice(&bytes);
        enc.encapsulate(&mut again, headroom, bytes.len(), &tx).unwrap();
        prop_assert_eq!(&again[headroom - 56..headroom - 52], &pkt[..4]);

        let Some(ep::TransportSlice::Udp(d)) = &p.transport else {
            return Err(TestCaseError::fail("no outer UDP"));
        };
        let want_src_port = fixed_src_port.unwrap_or_else(|| src_ports.pick(encap::flow::inspect_frame(&bytes).hash));
        prop_assert_eq!(d.source_port(), want_src_port);
        prop_assert_eq!(d.destination_port(), dst_port);
        let mut vxlan_and_frame = vec![0x08, 0, 0, 0];
        vxlan_and_frame.extend_from_slice(&vni.to_be_bytes()[1..]);
        vxlan_and_frame.push(0);
        vxlan_and_frame.extend_from_slice(&bytes);
        prop_assert_eq!(usize::from(d.length()), 8 + vxlan_and_frame.len());
        prop_assert_eq!(d.payload(), &vxlan_and_frame[..]);
        let want = if udp_checksum {
            d.to_header()
                .calc_checksum_ipv6_raw(local.octets(), remote.octets(), &vxlan_and_frame)
                .unwrap()
        } else {
            0
        };
        prop_assert_eq!(d.checksum(), want);
        check_frame(&d.payload()[8..], &frame)?;
    }

    /// A whole IPIP encapsulation of an inner packet built by etherparse (with random options,
    /// fragment fields and trailing bytes): etherparse reads the outer IPv4 with protocol 4, DF
    /// copied from the inner packet, TTL and DSCP per the configuration, RFC 6040 ECN and a
    /// correct checksum, and the payload is the inner packet unchanged, trailing bytes left out.
    #[test]
    fn ipip_encap_matches_etherparse(
        inner_src in ip4(), inner_dst in ip4(), tos in any::<u8>(), ident in any::<u16>(),
        dont_frag in any::<bool>(), more_frags in any::<bool>(), frag_off in 0u16..=0x1fff,
        inner_ttl in 1u8.., protocol in any::<u8>().prop_filter("AH", |p| *p != 51),
        options in (0usize..=10).prop_flat_map(|w| proptest::collection::vec(any::<u8>(), w * 4)),
        payload in proptest::collection::vec(any::<u8>(), 0..1500),
        trailer in proptest::collection::vec(any::<u8>(), 0..8),
        local in ip4(), remote in ip4(), ttl in ttl_mode(), dscp in dscp_mode(), df in df_mode(),
        ip_id in any::<u16>(), headroom in 20usize..60,
    ) {
        prop_assume!(inner_src != local);
        let mut h = ep::Ipv4Header {
            dscp: ep::IpDscp::try_new(tos >> 2).unwrap(),
            ecn: ep::IpEcn::try_new(tos & 3).unwrap(),
            total_len: 0,
            identification: ident,
            dont_fragment: dont_frag,
            more_fragments: more_frags,
            fragment_offset: ep::IpFragOffset::try_new(frag_off).unwrap(),
            time_to_live: inner_ttl,
            protocol: ep::IpNumber(protocol),
            header_checksum: 0,
            source: inner_src.octets(),
            destination: inner_dst.octets(),
            options: ep::Ipv4Options::try_from(&options[..]).unwrap(),
        };
        h.set_payload_len(payload.len()).unwrap();
        h.header_checksum = h.calc_header_checksum();
        let mut inner = h.to_bytes().to_vec();
        inner.extend_from_slice(&payload);

        let mut buf = vec![0u8; headroom];
        buf.extend_from_slice(&inner);
        buf.extend_from_slice(&trailer);
        let enc = IpipEncap::new(&IpipConfig { local, ttl, dscp, df }, remote).unwrap();
        let r = enc.encapsulate(&mut buf, headroom, inner.len() + trailer.len(), ip_id).unwrap();
        prop_assert_eq!(r.clone(), headroom - ipip::OVERHEAD..headroom + inner.len());
        let pkt = &buf[r];

        let p = ep::SlicedPacket::from_ip(pkt)
            .map_err(|e| TestCaseError::fail(format!("etherparse rejected the packet: {e:?}")))?;
        let Some(ep::NetSlice::Ipv4(v4)) = &p.net else {
            return Err(TestCaseError::fail("no outer IPv4"));
        };
        let outer = Ipv4Repr {
            src: local,
            dst: remote,
            protocol: 4,
            tos: (match dscp { Dscp::Fixed(d) => d, Dscp::Inherit => tos >> 2 } << 2) | outer_ecn(Some(tos)),
            ident: ip_id,
            dont_frag: match df { Df::Set => true, Df::Unset => false, Df::Inherit => dont_frag },
            ttl: match ttl { Ttl::Fixed(t) => t, Ttl::Inherit => inner_ttl },
            payload_len: inner.len(),
        };
        check_ipv4_header(&v4.header(), &outer)?;
        prop_assert_eq!(v4.payload_ip_number(), ep::ip_number::IPV4);
        prop_assert!(p.transport.is_none());
        prop_assert_eq!(v4.payload().payload, &inner[..]);

        let back = ep::Ipv4Slice::from_slice(v4.payload().payload).unwrap();
        prop_assert_eq!(back.header().to_header(), h);
        prop_assert_eq!(back.payload().payload, &payload[..]);
    }

    /// The VXLAN UDP checksum's one special case: a computed zero goes out as 0xffff (RFC 768),
    /// as etherparse computes it. The inner frame (non-IP, so its payload is not hashed into the
    /// source port) ends in the word that makes the computed checksum zero.
    #[test]
    fn vxlan_zero_udp_checksum_matches_etherparse(
        dst in mac(), src in mac(), vlan in proptest::option::of(vlan_tag()), ethertype in opaque_ethertype(),
        body in proptest::collection::vec(any::<u8>(), 0..200), local in ip4(), remote in ip4(),
        vni in 0u32..=Vni::MAX, ip_id in any::<u16>(),
    ) {
        let mut body = body;
        // Keep the frame length even, so that the last word is aligned, and end it with a zero word.
        let eth = EthernetRepr { dst, src, vlan, ethertype };
        body.truncate(body.len() & !1);
        body.extend_from_slice(&[0, 0]);
        let mut frame = InnerFrame { eth, body: Body::Opaque(body.clone()) };
        let enc = VxlanEncap::new(&VxlanConfig::new(local), remote).unwrap();
        let tx = VxlanTx { vni: Vni::new(vni).unwrap(), ip_id, src_port: None };
        let encap_once = |f: &InnerFrame| {
            let bytes = f.to_bytes();
            let mut buf = vec![0u8; vxlan::OVERHEAD];
            buf.extend_from_slice(&bytes);
            enc.encapsulate(&mut buf, vxlan::OVERHEAD, bytes.len(), &tx).unwrap();
            (bytes, buf)
        };
        let (_, first) = encap_once(&frame);
        let n = body.len();
        body[n - 2..].copy_from_slice(&first[26..28]);
        frame.body = Body::Opaque(body);
        let (bytes, pkt) = encap_once(&frame);
        prop_assert_eq!(&pkt[26..28], &[0xff, 0xff]);

        let p = ep::SlicedPacket::from_ip(&pkt).unwrap();
        let Some(ep::TransportSlice::Udp(d)) = &p.transport else {
            return Err(TestCaseError::fail("no outer UDP"));
        };
        prop_assert_eq!(
            d.to_header().calc_checksum_ipv4_raw(local.octets(), remote.octets(), d.payload()).unwrap(),
            0xffff
        );
        check_frame(&d.payload()[8..], &frame)?;
        prop_assert_eq!(&d.payload()[8..], &bytes[..]);
    }
}
