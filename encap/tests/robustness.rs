//! Bad input: every truncated length of every header returns an error naming the right layer and
//! the exact length, and random bytes never panic any entry point.

use encap::arp::{ArpPacket, ArpRepr};
use encap::ethernet::{EthernetFrame, EthernetRepr};
use encap::ipv4::{Ipv4Packet, Ipv4Repr};
use encap::tunnel::{ipip, vxlan, vxlan6};
use encap::udp::{UdpPacket, UdpRepr};
use encap::vxlan::{VxlanPacket, VxlanRepr};
use encap::{
    Error, IpipConfig, IpipEncap, Layer, Vni, Vxlan6Encap, VxlanConfig, VxlanEncap, VxlanTx, ecn,
    flow,
};
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;

const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

/// A 64-byte untagged inner frame carrying IPv4/UDP.
fn frame64() -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[0..12].copy_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
    f[12] = 0x08;
    let ip = Ipv4Repr {
        src: Ipv4Addr::new(10, 0, 0, 1),
        dst: Ipv4Addr::new(10, 0, 0, 2),
        protocol: 17,
        tos: 0,
        ident: 0,
        dont_frag: true,
        ttl: 64,
        payload_len: 30,
    };
    ip.emit(&mut f[14..]).unwrap();
    f
}

fn vxlan_packet(udp_checksum: bool) -> Vec<u8> {
    let cfg = VxlanConfig {
        udp_checksum,
        ..VxlanConfig::new(A)
    };
    let f = frame64();
    let mut buf = vec![0u8; 36 + f.len()];
    buf[36..].copy_from_slice(&f);
    let n = buf.len();
    VxlanEncap::new(&cfg, B)
        .unwrap()
        .encapsulate(&mut buf, 36, n - 36, &VxlanTx::new(Vni::new(7).unwrap()))
        .unwrap();
    buf
}

fn ipip_packet() -> Vec<u8> {
    let inner = Ipv4Repr {
        src: Ipv4Addr::new(10, 0, 0, 1),
        dst: Ipv4Addr::new(10, 0, 1, 1),
        protocol: 1,
        tos: 0,
        ident: 0,
        dont_frag: true,
        ttl: 64,
        payload_len: 24,
    };
    let mut buf = vec![0u8; 20 + 44];
    inner.emit(&mut buf[20..]).unwrap();
    IpipEncap::new(&IpipConfig::new(A), B)
        .unwrap()
        .encapsulate(&mut buf, 20, 44, 1)
        .unwrap();
    buf
}

/// Rewrites the outer IPv4 total length to the buffer's length (fixing the checksum), and the UDP
/// length too when there is room for it, so that the truncation shows at the next layer in.
fn shrink_lengths(p: &mut [u8], udp: bool) {
    let n = p.len();
    // (An unchecked view: only touch a header that is all there.)
    if n >= 20 && usize::from(p[0] & 0x0f) * 4 <= n {
        let mut ip = Ipv4Packet::new_unchecked(&mut *p);
        ip.set_total_len(n as u16);
        ip.fill_checksum();
    }
    if udp && n >= 28 {
        UdpPacket::new_unchecked(&mut p[20..]).set_len((n - 20) as u16);
    }
}

#[test]
fn vxlan_every_truncation_names_its_layer() {
    let full = vxlan_packet(false);
    for n in 0..full.len() {
        // As cut: the outer IPv4 total length no longer fits.
        let cut = &full[..n];
        let want = if n < 20 {
            Error::truncated(Layer::Ipv4, 20, n)
        } else {
            Error::truncated(Layer::Ipv4, full.len(), n)
        };
        assert_eq!(vxlan::decapsulate(cut, 4789), Err(want), "cut at {n}");
        let mut m = cut.to_vec();
        assert_eq!(vxlan::decapsulate_mut(&mut m, 4789), Err(want));
        // With the lengths rewritten to match: the innermost incomplete header is reported.
        let mut p = full[..n].to_vec();
        shrink_lengths(&mut p, true);
        let want = match n {
            0..20 => Error::truncated(Layer::Ipv4, 20, n),
            20..28 => Error::truncated(Layer::Udp, 8, n - 20),
            28..36 => Error::truncated(Layer::Vxlan, 8, n - 28),
            36..50 => Error::truncated(Layer::InnerEthernet, 14, n - 36),
            _ => {
                assert!(
                    vxlan::decapsulate(&p, 4789).is_ok(),
                    "a whole inner header at {n}"
                );
                continue;
            }
        };
        assert_eq!(vxlan::decapsulate(&p, 4789), Err(want), "shrunk to {n}");
    }
    // A UDP length past the IPv4 payload.
    let mut p = full.clone();
    UdpPacket::new_unchecked(&mut p[20..]).set_len(200);
    assert_eq!(
        vxlan::decapsulate(&p, 4789),
        Err(Error::truncated(Layer::Udp, 200, full.len() - 20))
    );
    // The UDP-payload-only path.
    let payload = &full[28..];
    for n in 0..22 {
        let want = if n < 8 {
            Error::truncated(Layer::Vxlan, 8, n)
        } else {
            Error::truncated(Layer::InnerEthernet, 14, n - 8)
        };
        assert_eq!(vxlan::decapsulate_udp_payload(&payload[..n]), Err(want));
    }
    assert_eq!(
        vxlan::decapsulate_udp_payload(payload).unwrap().1,
        8..payload.len()
    );
}

#[test]
fn ipip_every_truncation_names_its_layer() {
    let full = ipip_packet();
    for n in 0..full.len() {
        let want = if n < 20 {
            Error::truncated(Layer::Ipv4, 20, n)
        } else {
            Error::truncated(Layer::Ipv4, full.len(), n)
        };
        assert_eq!(ipip::decapsulate(&full[..n]), Err(want), "cut at {n}");
        let mut p = full[..n].to_vec();
        shrink_lengths(&mut p, false);
        let want = match n {
            0..20 => Error::truncated(Layer::Ipv4, 20, n),
            20..40 => Error::truncated(Layer::InnerIpv4, 20, n - 20),
            _ => Error::truncated(Layer::InnerIpv4, full.len() - 20, n - 20),
        };
        assert_eq!(ipip::decapsulate(&p), Err(want), "shrunk to {n}");
        assert_eq!(ipip::decapsulate_mut(&mut p.clone()), Err(want));
    }
}

#[test]
fn view_truncations() {
    let f = frame64();
    for n in 0..14 {
        assert_eq!(
            EthernetFrame::new_checked(&f[..n]).err(),
            Some(Error::truncated(Layer::Ethernet, 14, n))
        );
    }
    let mut tagged = f.clone();
    tagged[12..18].copy_from_slice(&[0x81, 0x00, 0x00, 0x07, 0x08, 0x00]);
    for n in 14..18 {
        assert_eq!(
            EthernetFrame::new_checked(&tagged[..n]).err(),
            Some(Error::truncated(Layer::Vlan, 18, n))
        );
    }
    assert_eq!(
        EthernetFrame::new_checked(&tagged[..18])
            .unwrap()
            .vlan_id()
            .unwrap()
            .get(),
        7
    );
    for n in 0..28 {
        assert_eq!(
            ArpPacket::new_checked(&f[..n]).err(),
            Some(Error::truncated(Layer::Arp, 28, n))
        );
    }
    let ip = &f[14..];
    for n in 0..20 {
        assert_eq!(
            Ipv4Packet::new_checked(&ip[..n]).err(),
            Some(Error::truncated(Layer::Ipv4, 20, n))
        );
    }
    for n in 20..50 {
        assert_eq!(
            Ipv4Packet::new_checked(&ip[..n]).err(),
            Some(Error::truncated(Layer::Ipv4, 50, n))
        );
    }
    let mut opt = ip.to_vec();
    opt.resize(60, 0);
    opt[0] = 0x4f; // IHL 15: a 60-byte header
    opt[2..4].copy_from_slice(&60u16.to_be_bytes());
    for n in 20..60 {
        assert_eq!(
            Ipv4Packet::new_checked(&opt[..n]).err(),
            Some(Error::truncated(Layer::Ipv4, 60, n))
        );
    }
    let udp = vxlan_packet(true);
    let udp = &udp[20..];
    for n in 0..8 {
        assert_eq!(
            UdpPacket::new_checked(&udp[..n]).err(),
            Some(Error::truncated(Layer::Udp, 8, n))
        );
        assert_eq!(
            VxlanPacket::new_checked(&udp[8..8 + n]).err(),
            Some(Error::truncated(Layer::Vxlan, 8, n))
        );
    }
    for n in 8..udp.len() {
        assert_eq!(
            UdpPacket::new_checked(&udp[..n]).err(),
            Some(Error::truncated(Layer::Udp, udp.len(), n))
        );
    }
}

#[test]
fn encapsulate_buffer_errors() {
    let enc = VxlanEncap::new(&VxlanConfig::new(A), B).unwrap();
    let l6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    let v6 = Vxlan6Encap::new(&VxlanConfig::new(A), l6, Ipv6Addr::LOCALHOST).unwrap();
    let ipip = IpipEncap::new(&IpipConfig::new(A), B).unwrap();
    let tx = VxlanTx::new(Vni::new(1).unwrap());
    let mut buf = vec![0u8; 200];
    // The bounds every encapsulator checks first, with its own headroom: too little of it, the
    // inner bytes past the buffer, `off + len` overflowing.
    type Encapsulate<'a> = &'a dyn Fn(&mut [u8], usize, usize) -> encap::Result<Range<usize>>;
    let encapsulators: [(usize, Encapsulate); 3] = [
        (vxlan::OVERHEAD, &|b, off, len| {
            enc.encapsulate(b, off, len, &tx)
        }),
        (vxlan6::OVERHEAD, &|b, off, len| {
            v6.encapsulate(b, off, len, &tx)
        }),
        (ipip::OVERHEAD, &|b, off, len| {
            ipip.encapsulate(b, off, len, 0)
        }),
    ];
    for (head, encapsulate) in encapsulators {
        assert_eq!(
            encapsulate(&mut buf, head - 1, 64),
            Err(Error::truncated(Layer::Buffer, head, head - 1))
        );
        assert_eq!(
            encapsulate(&mut buf, head, 201 - head),
            Err(Error::truncated(Layer::Buffer, 201, 200))
        );
        assert_eq!(
            encapsulate(&mut buf, usize::MAX, 2),
            Err(Error::invalid(Layer::Buffer, encap::Invalid::TooLong))
        );
    }
    // Then each its inner header and outer length.
    for inner_too_short in [
        enc.encapsulate(&mut buf, 36, 13, &tx),
        v6.encapsulate(&mut buf, 56, 13, &tx),
    ] {
        assert_eq!(
            inner_too_short,
            Err(Error::truncated(Layer::InnerEthernet, 14, 13))
        );
    }
    let mut big = vec![0u8; 36 + 65500];
    assert_eq!(
        enc.encapsulate(&mut big, 36, 65500, &tx),
        Err(Error::invalid(Layer::Ipv4, encap::Invalid::TooLong))
    );
    assert_eq!(
        ipip.encapsulate(&mut buf, 20, 10, 0),
        Err(Error::truncated(Layer::InnerIpv4, 20, 10))
    );
}

#[test]
fn rejects_bad_outer_headers() {
    use encap::Invalid::*;
    let good = vxlan_packet(true);
    type Edit = fn(&mut Vec<u8>);
    let cases: [(&str, Edit, Error); 7] = [
        (
            "version",
            |p| p[0] = 0x65,
            Error::invalid(Layer::Ipv4, IpVersion),
        ),
        (
            "ihl",
            |p| p[0] = 0x44,
            Error::invalid(Layer::Ipv4, IpHeaderLen),
        ),
        (
            "checksum",
            |p| p[10] ^= 1,
            Error::invalid(Layer::Ipv4, IpChecksum),
        ),
        (
            "total below header",
            |p| {
                p[2] = 0;
                p[3] = 10;
            },
            Error::invalid(Layer::Ipv4, IpTotalLen),
        ),
        (
            "fragment",
            |p| p[6] |= 0x20,
            Error::invalid(Layer::Ipv4, Fragment),
        ),
        (
            "protocol",
            |p| p[9] = 6,
            Error::invalid(Layer::Ipv4, IpProtocol),
        ),
        (
            "udp length",
            |p| {
                p[24] = 0;
                p[25] = 4;
            },
            Error::invalid(Layer::Udp, UdpLength),
        ),
    ];
    for (what, edit, want) in cases {
        let mut p = good.clone();
        edit(&mut p);
        if what != "checksum" && what != "version" && what != "ihl" {
            let mut ip = Ipv4Packet::new_unchecked(&mut p[..]);
            ip.fill_checksum();
        }
        assert_eq!(vxlan::decapsulate(&p, 4789), Err(want), "{what}");
    }
    // A corrupted payload byte breaks the UDP checksum; the same packet with checksum 0 passes.
    let mut p = good.clone();
    p[60] ^= 0x40;
    assert_eq!(
        vxlan::decapsulate(&p, 4789),
        Err(Error::invalid(Layer::Udp, UdpChecksum))
    );
    p[26] = 0;
    p[27] = 0;
    assert!(vxlan::decapsulate(&p, 4789).is_ok());
    // IPIP: outer protocol must be 4, inner checksum must verify.
    let mut p = ipip_packet();
    p[20 + 10] ^= 1;
    assert_eq!(
        ipip::decapsulate(&p),
        Err(Error::invalid(Layer::InnerIpv4, IpChecksum))
    );
}

fn all_entry_points(data: &[u8], off: usize, len: usize) {
    let _ = EthernetFrame::new_checked(data).map(|f| {
        let _ = (
            f.dst(),
            f.src(),
            f.vlan(),
            f.ethertype(),
            f.header_len(),
            f.payload().len(),
        );
        EthernetRepr::parse(&f)
    });
    let _ = ArpPacket::new_checked(data).map(|p| ArpRepr::parse(&p));
    let _ = Ipv4Packet::new_checked(data).map(|p| {
        let _ = (
            p.ecn(),
            p.dscp(),
            p.frag_offset(),
            p.payload().len(),
            p.verify_checksum(),
        );
        Ipv4Repr::parse(&p)
    });
    let _ = UdpPacket::new_checked(data).map(|p| {
        let _ = p.payload().len();
        UdpRepr::parse(&p, A, B)
    });
    let _ = VxlanPacket::new_checked(data).map(|p| VxlanRepr::parse(&p));
    let _ = vxlan::decapsulate(data, 4789);
    let _ = vxlan::decapsulate_udp_payload(data);
    let _ = ipip::decapsulate(data);
    let _ = flow::inspect_frame(data);
    let mut m = data.to_vec();
    let _ = vxlan::decapsulate_mut(&mut m, 4789);
    let _ = ipip::decapsulate_mut(&mut m);
    let _ = ecn::decapsulate_frame(&mut m, 3);
    let enc = VxlanEncap::new(&VxlanConfig::new(A), B).unwrap();
    let _ = enc.encapsulate(&mut m, off, len, &VxlanTx::new(Vni::new(1).unwrap()));
    let ipip_enc = IpipEncap::new(&IpipConfig::new(A), B).unwrap();
    let _ = ipip_enc.encapsulate(&mut m, off, len, 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300), off in 0usize..400, len in 0usize..400) {
        all_entry_points(&data, off, len);
    }

    /// Random bytes behind a plausible outer header reach the inner layers.
    #[test]
    fn mutated_packets_never_panic(flips in proptest::collection::vec((0usize..110, any::<u8>()), 1..6),
                                   cut in 0usize..110, which in 0u8..3) {
        let mut p = match which { 0 => vxlan_packet(true), 1 => vxlan_packet(false), _ => ipip_packet() };
        for (i, b) in flips {
            if let Some(x) = p.get_mut(i) { *x = b; }
        }
        p.truncate(cut.max(1));
        let n = p.len();
        all_entry_points(&p, 36.min(n), n.saturating_sub(36));
        shrink_lengths(&mut p, which < 2);
        all_entry_points(&p, 20.min(n), n.saturating_sub(20));
    }
}
