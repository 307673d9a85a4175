//! Property tests: emit-then-parse gives back the same repr, encapsulate-then-decapsulate gives
//! back the same inner frame and outer fields, and the source-port hash stays in range.

use encap::arp::{ArpOperation, ArpPacket, ArpRepr};
use encap::ethernet::{EthernetFrame, EthernetRepr, VlanId, VlanTag};
use encap::ipv4::{Ipv4Packet, Ipv4Repr};
use encap::tunnel::{ipip, vxlan};
use encap::udp::{UdpPacket, UdpRepr};
use encap::vxlan::{VxlanPacket, VxlanRepr};
use encap::{
    Dscp, EcnUpdate, IpipConfig, IpipEncap, MacAddr, PortRange, Ttl, Vni, VxlanConfig, VxlanEncap,
    VxlanTx, flow,
};
use proptest::prelude::*;
use std::net::Ipv4Addr;

fn mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(MacAddr)
}
fn ip4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}
fn ttl_mode() -> impl Strategy<Value = Ttl> {
    prop_oneof![Just(Ttl::Inherit), (1u8..=255).prop_map(Ttl::Fixed)]
}
fn dscp_mode() -> impl Strategy<Value = Dscp> {
    prop_oneof![Just(Dscp::Inherit), (0u8..64).prop_map(Dscp::Fixed)]
}
fn port_range() -> impl Strategy<Value = PortRange> {
    (1u16..=65535, 0u16..=65535).prop_map(|(a, b)| {
        let (lo, hi) = if a <= b.max(1) {
            (a, b.max(a))
        } else {
            (b.max(1), a)
        };
        PortRange::new(lo, hi).unwrap()
    })
}

/// An inner Ethernet frame: untagged or tagged, carrying IPv4 (with random TOS/TTL/ports), IPv6,
/// or arbitrary bytes.
fn inner_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        mac(),
        mac(),
        proptest::option::of(0u16..4096),
        0u8..3,
        any::<u8>(),
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..1500),
    )
        .prop_map(|(dst, src, vlan, kind, tos, ttl, payload)| {
            let ethertype = [0x0800, 0x86dd, 0x0806][usize::from(kind)];
            let eth = EthernetRepr {
                dst,
                src,
                vlan: vlan.map(|v| VlanTag {
                    pcp: 3,
                    dei: false,
                    vid: VlanId::new(v).unwrap(),
                }),
                ethertype,
            };
            let mut f = vec![0u8; eth.header_len()];
            eth.emit(&mut f).unwrap();
            match kind {
                0 => {
                    let ip = Ipv4Repr {
                        src: Ipv4Addr::new(10, 0, 0, 1),
                        dst: Ipv4Addr::new(10, 0, 0, 2),
                        protocol: 17,
                        tos,
                        ident: 1,
                        dont_frag: true,
                        ttl,
                        payload_len: payload.len(),
                    };
                    let mut h = [0u8; 20];
                    ip.emit(&mut h).unwrap();
                    f.extend_from_slice(&h);
                }
                1 => {
                    let mut h = [0u8; 40];
                    h[0] = 0x60 | (tos >> 4);
                    h[1] = tos << 4;
                    h[6] = 17;
                    h[7] = ttl;
                    f.extend_from_slice(&h);
                }
                _ => {}
            }
            f.extend_from_slice(&payload);
            f
        })
}

proptest! {
    #[test]
    fn ethernet_roundtrip(dst in mac(), src in mac(), vlan in proptest::option::of((0u8..8, any::<bool>(), 0u16..4096)),
                          ethertype in any::<u16>(), tail in proptest::collection::vec(any::<u8>(), 0..20)) {
        // A tag is only recognisable when the inner ethertype is written after TPID 0x8100; an
        // untagged frame whose ethertype is 0x8100 would read as tagged, so skip that one.
        prop_assume!(vlan.is_some() || ethertype != 0x8100);
        let repr = EthernetRepr {
            dst, src, ethertype,
            vlan: vlan.map(|(pcp, dei, v)| VlanTag { pcp, dei, vid: VlanId::new(v).unwrap() }),
        };
        let mut buf = vec![0u8; repr.header_len()];
        buf.extend_from_slice(&tail);
        prop_assert_eq!(repr.emit(&mut buf).unwrap(), repr.header_len());
        let f = EthernetFrame::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(EthernetRepr::parse(&f).unwrap(), repr);
        prop_assert_eq!(f.payload(), &tail[..]);
    }

    #[test]
    fn arp_roundtrip(op in any::<u16>(), sm in mac(), si in ip4(), tm in mac(), ti in ip4()) {
        let repr = ArpRepr { operation: ArpOperation::from_code(op), sender_mac: sm, sender_ip: si, target_mac: tm, target_ip: ti };
        let mut buf = [0u8; 28];
        repr.emit(&mut buf).unwrap();
        prop_assert_eq!(ArpRepr::parse(&ArpPacket::new_checked(&buf[..]).unwrap()).unwrap(), repr);
    }

    #[test]
    fn ipv4_roundtrip(src in ip4(), dst in ip4(), protocol in any::<u8>(), tos in any::<u8>(), ident in any::<u16>(),
                      dont_frag in any::<bool>(), ttl in any::<u8>(), payload_len in 0usize..200) {
        let repr = Ipv4Repr { src, dst, protocol, tos, ident, dont_frag, ttl, payload_len };
        let mut buf = vec![0u8; 20 + payload_len];
        repr.emit(&mut buf).unwrap();
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        prop_assert!(p.verify_checksum());
        prop_assert_eq!(Ipv4Repr::parse(&p).unwrap(), repr);
    }

    #[test]
    fn udp_roundtrip(sp in any::<u16>(), dp in any::<u16>(), src in ip4(), dst in ip4(), csum in any::<bool>(),
                     payload in proptest::collection::vec(any::<u8>(), 0..300)) {
        let repr = UdpRepr { src_port: sp, dst_port: dp };
        let mut buf = vec![0u8; 8];
        buf.extend_from_slice(&payload);
        repr.emit(&mut buf, payload.len(), src, dst, csum).unwrap();
        let p = UdpPacket::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(p.checksum() != 0, csum);
        prop_assert_eq!(UdpRepr::parse(&p, src, dst).unwrap(), repr);
        prop_assert_eq!(p.payload(), &payload[..]);
    }

    #[test]
    fn vxlan_header_roundtrip(v in 0u32..=Vni::MAX, junk in any::<[u8; 8]>()) {
        let repr = VxlanRepr { vni: Vni::new(v).unwrap() };
        let mut buf = junk;
        repr.emit(&mut VxlanPacket::new_unchecked(&mut buf[..]));
        // Reserved bits are zero on send.
        prop_assert_eq!(buf[0], 0x08);
        prop_assert_eq!(&buf[1..4], &[0, 0, 0]);
        prop_assert_eq!(buf[7], 0);
        prop_assert_eq!(VxlanRepr::parse(&VxlanPacket::new_checked(&buf[..]).unwrap()).unwrap(), repr);
    }

    #[test]
    fn vni_rejects_over_24_bits(v in (Vni::MAX + 1)..=u32::MAX) {
        prop_assert!(Vni::new(v).is_err());
    }

    #[test]
    fn vxlan_encap_decap_roundtrip(
        frame in inner_frame(), local in ip4(), remote in ip4(), dst_port in 1u16..,
        src_ports in port_range(), ttl in ttl_mode(), dscp in dscp_mode(), udp_checksum in any::<bool>(),
        vni in 0u32..=Vni::MAX, ip_id in any::<u16>(), headroom in 36usize..80,
    ) {
        let cfg = VxlanConfig { local, dst_port, src_ports, ttl, dscp, udp_checksum, ..VxlanConfig::new(local) };
        let enc = VxlanEncap::new(&cfg, remote).unwrap();
        let mut buf = vec![0u8; headroom + frame.len()];
        buf[headroom..].copy_from_slice(&frame);
        let tx = VxlanTx { vni: Vni::new(vni).unwrap(), ip_id, src_port: None };
        let r = enc.encapsulate(&mut buf, headroom, frame.len(), &tx).unwrap();
        prop_assert_eq!(r.clone(), headroom - 36..buf.len());
        let pkt = &buf[r];
        let rx = vxlan::decapsulate(pkt, dst_port).unwrap();
        prop_assert_eq!(&pkt[rx.inner.clone()], &frame[..]);
        prop_assert_eq!((rx.src, rx.dst, rx.dst_port, rx.ip_id, rx.vni.get()), (local, remote, dst_port, ip_id, vni));
        prop_assert!(rx.dont_frag);
        prop_assert!(rx.src_port >= src_ports.lo() && rx.src_port <= src_ports.hi());
        prop_assert_eq!(rx.src_port, enc.src_port_for(&frame));
        prop_assert_eq!(rx.udp_checksum != 0, udp_checksum);
        // Our own encapsulation never asks decapsulation to change the inner ECN field.
        prop_assert!(!matches!(rx.ecn, EcnUpdate::Set(_)));
        let ip = flow::frame_ip(&frame);
        if let Ttl::Fixed(t) = ttl { prop_assert_eq!(rx.ttl, t); }
        if let (Ttl::Inherit, Some(i)) = (ttl, ip) { prop_assert_eq!(rx.ttl, if i.ttl == 0 { 64 } else { i.ttl }); }
        let want_dscp = match dscp { Dscp::Fixed(d) => d, Dscp::Inherit => ip.map_or(0, |i| i.tos >> 2) };
        prop_assert_eq!(rx.tos >> 2, want_dscp);
    }

    #[test]
    fn ipip_encap_decap_roundtrip(
        tos in any::<u8>(), inner_ttl in 1u8.., dont_frag in any::<bool>(), ttl in ttl_mode(), dscp in dscp_mode(),
        payload in proptest::collection::vec(any::<u8>(), 0..1500), ip_id in any::<u16>(), remote in ip4(),
    ) {
        let local = Ipv4Addr::new(192, 0, 2, 1);
        let inner = Ipv4Repr { src: Ipv4Addr::new(10, 0, 0, 1), dst: Ipv4Addr::new(10, 0, 1, 1), protocol: 6,
                               tos, ident: 9, dont_frag, ttl: inner_ttl, payload_len: payload.len() };
        let mut buf = vec![0u8; 20 + 20 + payload.len()];
        inner.emit(&mut buf[20..]).unwrap();
        buf[40..].copy_from_slice(&payload);
        let original = buf[20..].to_vec();
        let enc = IpipEncap::new(&IpipConfig { local, ttl, dscp, ..IpipConfig::new(local) }, remote).unwrap();
        let r = enc.encapsulate(&mut buf, 20, original.len(), ip_id).unwrap();
        prop_assert_eq!(r.clone(), 0..buf.len());
        let rx = ipip::decapsulate(&buf[r]).unwrap();
        prop_assert_eq!(&buf[rx.inner.clone()], &original[..]);
        prop_assert_eq!((rx.src, rx.dst, rx.ip_id, rx.dont_frag), (local, remote, ip_id, dont_frag));
        prop_assert_eq!(rx.ttl, match ttl { Ttl::Fixed(t) => t, Ttl::Inherit => inner_ttl });
        prop_assert_eq!(rx.tos >> 2, match dscp { Dscp::Fixed(d) => d, Dscp::Inherit => tos >> 2 });
        prop_assert!(!matches!(rx.ecn, EcnUpdate::Set(_)));
    }

    #[test]
    fn source_port_hash_in_range_and_deterministic(frame in inner_frame(), range in port_range()) {
        let cfg = VxlanConfig { src_ports: range, ..VxlanConfig::new(Ipv4Addr::new(192, 0, 2, 1)) };
        let enc = VxlanEncap::new(&cfg, Ipv4Addr::new(192, 0, 2, 2)).unwrap();
        let p = enc.src_port_for(&frame);
        prop_assert!(p >= range.lo() && p <= range.hi());
        prop_assert_eq!(p, enc.src_port_for(&frame.clone()));
        prop_assert_eq!(flow::inspect_frame(&frame), flow::inspect_frame(&frame));
    }
}

#[test]
fn source_ports_spread_over_the_default_range() {
    // 4096 flows differing only in the inner UDP source port land in many different buckets.
    let enc = VxlanEncap::new(
        &VxlanConfig::new(Ipv4Addr::new(192, 0, 2, 1)),
        Ipv4Addr::new(192, 0, 2, 2),
    )
    .unwrap();
    let mut buckets = [0u32; 16];
    let mut frame = vec![0u8; 14 + 20 + 8];
    frame[12] = 0x08;
    frame[14] = 0x45;
    frame[14 + 9] = 17;
    for sport in 0..4096u16 {
        frame[34..36].copy_from_slice(&sport.to_be_bytes());
        let p = enc.src_port_for(&frame);
        assert!(p >= 49152);
        buckets[usize::from((p - 49152) / 1024)] += 1;
    }
    // Expected 256 per bucket; a broken hash would pile them up.
    assert!(
        buckets.iter().all(|&b| (128..=384).contains(&b)),
        "{buckets:?}"
    );
}

#[test]
fn ipip_refuses_ttl_zero_and_own_source() {
    let local = Ipv4Addr::new(192, 0, 2, 1);
    let enc = IpipEncap::new(&IpipConfig::new(local), Ipv4Addr::new(192, 0, 2, 2)).unwrap();
    for (src, ttl, reason) in [
        (Ipv4Addr::new(10, 0, 0, 1), 0, encap::Invalid::TtlZero),
        (local, 64, encap::Invalid::OwnSource),
    ] {
        let inner = Ipv4Repr {
            src,
            dst: Ipv4Addr::new(10, 0, 1, 1),
            protocol: 1,
            tos: 0,
            ident: 0,
            dont_frag: false,
            ttl,
            payload_len: 8,
        };
        let mut buf = vec![0u8; 48];
        inner.emit(&mut buf[20..]).unwrap();
        let before = buf.clone();
        assert_eq!(
            enc.encapsulate(&mut buf, 20, 28, 0),
            Err(encap::Error::invalid(encap::Layer::InnerIpv4, reason))
        );
        assert_eq!(buf, before, "nothing written on refusal");
    }
    assert!(
        IpipEncap::new(
            &IpipConfig {
                ttl: Ttl::Fixed(0),
                ..IpipConfig::new(local)
            },
            local
        )
        .is_err()
    );
    assert!(
        VxlanEncap::new(
            &VxlanConfig {
                ttl: Ttl::Fixed(0),
                ..VxlanConfig::new(local)
            },
            local
        )
        .is_err()
    );
}
