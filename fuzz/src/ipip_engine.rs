//! `ipip_engine`: the IPIP engine ([`Ipip::on_local`], [`Ipip::on_remote`]) over a route table
//! the input edits, and the worker's encapsulation step ([`Encapsulator`]) on every packet
//! `on_local` sends to the tunnel, driven by a sequence of operations decoded from the input.
//!
//! Checked after every step:
//! - ranges stay inside the buffer; a Deliver's inner packet parses as IPv4 (header checksum
//!   valid, TTL not 0, not from our own address) and only comes from a route next hop unless
//!   `allow_any_peer`;
//! - a packet sent to the tunnel has one remote, its route's next hop, and fits the tunnel
//!   MTU; encapsulated, it decapsulates again (when its header is valid) into the same packet
//!   between our address and that next hop;
//! - an Answered decision made one ICMP "fragmentation needed" in `Out::generated` that parses
//!   (IPv4 and ICMP checksums, type 3 code 4, the tunnel MTU, the quoted packet) and goes back
//!   to the sender;
//! - counters: every packet read is counted, every drop is counted (the drops in `Counters`,
//!   reason by reason, are the Drop decisions, the too-big packets answered, and the
//!   encapsulator's refusals);
//! - IPv6 (protocol 41, when the configuration byte turns it on): a tunnelled IPv6 packet has a
//!   hop limit, its route's next hop and fits; encapsulated it is protocol 41 and decapsulates
//!   into itself; an answered one made one ICMPv6 "packet too big" (checksum, the tunnel MTU,
//!   at most 1280 bytes, back to the sender); a delivered one came from a next hop, has a hop
//!   limit and only its ECN bits changed; without IPv6 none is tunnelled or delivered.

use crate::frames;
use crate::input::{Input, Writer};
use encap::ipv4::Ipv4Packet;
use encap::tunnel::ipip::{OVERHEAD, decapsulate};
use encap::{IpipConfig, Vni};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;
use vtepd::core::arp::FrameTo;
use vtepd::core::encapsulator::{Encapsulator, TunnelConfig};
use vtepd::core::ipip::{ICMP_MAX, Ipip, IpipSettings, NET};
use vtepd::core::route::{Route, Routes};
use vtepd::core::{Counters, DropReason, FromDevice, FromTunnel, Out, Outer, Timestamp};

/// Our underlay address.
pub const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Remote nodes: B and C are next hops at the start, D is not.
pub const NODES: [Ipv4Addr; 3] = [
    Ipv4Addr::new(192, 0, 2, 2),
    Ipv4Addr::new(192, 0, 2, 3),
    Ipv4Addr::new(192, 0, 2, 4),
];
/// Prefixes routes are made of.
pub const PREFIXES: [&str; 4] = ["10.0.2.0/26", "10.0.3.0/24", "10.0.0.0/16", "10.0.2.32/27"];
/// Addresses packets carry: pods behind the routes and ours, and the unusable ones.
pub const IPS: [Ipv4Addr; 12] = [
    Ipv4Addr::new(10, 0, 1, 5),
    Ipv4Addr::new(10, 0, 2, 7),
    Ipv4Addr::new(10, 0, 2, 40),
    Ipv4Addr::new(10, 0, 3, 9),
    Ipv4Addr::new(10, 1, 0, 1),
    LOCAL,
    NODES[0],
    NODES[1],
    NODES[2],
    Ipv4Addr::UNSPECIFIED,
    Ipv4Addr::BROADCAST,
    Ipv4Addr::new(224, 0, 0, 5),
];
/// Tunnel MTUs a run picks from (small ones so short inputs reach "fragmentation needed").
pub const MTUS: [u16; 4] = [1480, 68, 100, 576];
/// IPv6 addresses packets carry: a pod behind the IPv6 route, one behind none, multicast.
pub const IPS6: [&str; 4] = ["fd00:2::7", "fd00:1::5", "fd00:9::1", "ff02::16"];
/// The IPv6 route (to the first node).
pub const PREFIX6: &str = "fd00:2::/64";

/// The operations (the first byte of each, modulo their number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A packet from the device: an IPv4 packet (see [`frames::ipv4`]), an IPv6 one or raw
    /// bytes.
    Local = 0,
    /// A packet from the underlay: an outer header (source from the pool) around an inner
    /// packet, or raw bytes; then the socket's source.
    Remote = 1,
    /// `routes add`: prefix, next hop.
    RouteAdd = 2,
    /// `routes del`: prefix.
    RouteDel = 3,
    /// Time passes.
    Step = 4,
    /// `--allow-any-peer` on or off.
    AllowAny = 5,
}
const OPS: u8 = 6;

fn packet(inp: &mut Input<'_>) -> Vec<u8> {
    match inp.u8() % 3 {
        0 => frames::ipv4(inp, &IPS),
        1 => ipv6(inp),
        _ => inp.bytes().to_vec(),
    }
}

/// An IPv6 packet: traffic class, hop limit, addresses from [`IPS6`], payload; with a wrong
/// payload length when the flags say so.
fn ipv6(inp: &mut Input<'_>) -> Vec<u8> {
    let (flags, tc, hop) = (inp.u8(), inp.u8(), inp.u8());
    let addr = |inp: &mut Input<'_>| {
        let a: std::net::Ipv6Addr = IPS6[usize::from(inp.u8()) % IPS6.len()].parse().unwrap();
        a.octets()
    };
    let (src, dst) = (addr(inp), addr(inp));
    let payload = inp.bytes();
    let mut p = vec![0u8; 40];
    p[0] = 0x60 | (tc >> 4);
    p[1] = tc << 4;
    let len = if flags & 1 != 0 {
        u16::from(flags)
    } else {
        payload.len().min(usize::from(u16::MAX) - 40) as u16
    };
    p[4..6].copy_from_slice(&len.to_be_bytes());
    (p[6], p[7]) = (17, hop);
    p[8..24].copy_from_slice(&src);
    p[24..40].copy_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

/// Encodes a valid IPv4 packet for a Local op.
pub fn write_local(w: &mut Writer, tos: u8, ttl: u8, src: Ipv4Addr, dst: Ipv4Addr, pl: &[u8]) {
    w.u8(Op::Local as u8).u8(0);
    frames::write_ipv4_packet(w, tos, ttl, 17, src, dst, pl);
}

/// Encodes an IPv6 packet for a Local op: traffic class, hop limit, the addresses' indexes in
/// [`IPS6`], payload (the header's payload length right).
pub fn write_local6(w: &mut Writer, tc: u8, hop: u8, src: u8, dst: u8, pl: &[u8]) {
    w.u8(Op::Local as u8).u8(1).u8(0).u8(tc).u8(hop);
    w.u8(src).u8(dst).bytes(pl);
}

/// Encodes a raw packet (from `src`) for a Remote op.
pub fn write_remote_raw(w: &mut Writer, src: Ipv4Addr, p: &[u8]) {
    w.u8(Op::Remote as u8).u8(2).bytes(p).ip(src);
}

/// The target's body.
pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let cfg = inp.u8();
    let mtu = MTUS[usize::from(cfg >> 1) % MTUS.len()];
    let mut allow_any = cfg & 1 != 0;
    // Without IPv6 an IPv6 packet is a `no_ipv6` drop, which the counters check.
    let with_ipv6 = cfg & 8 != 0;
    let route6 = Route {
        prefix: PREFIX6.parse().unwrap(),
        via: NODES[0].into(),
    };
    let mut routes = vec![
        Route {
            prefix: PREFIXES[0].parse().unwrap(),
            via: NODES[0].into(),
        },
        Route {
            prefix: PREFIXES[1].parse().unwrap(),
            via: NODES[1].into(),
        },
    ];
    routes.extend(with_ipv6.then_some(route6));
    let routes = Routes::with_routes(LOCAL, with_ipv6, &routes).expect("valid routes");
    let t = Ipip::new(
        &IpipSettings {
            local: LOCAL,
            allow_any_peer: allow_any,
            tunnel_mtu: mtu,
            ipv6: with_ipv6,
        },
        Arc::new(routes),
    );
    // The underlay carries the tunnel MTU plus the outer header.
    let underlay_mtu = u32::from(mtu) + 20;
    let mut enc = Encapsulator::new(TunnelConfig::Ipip(IpipConfig::new(LOCAL)), 7, underlay_mtu);
    let mut out = Out::default();
    let mut ctr = Counters::default();
    let mut drops = vec![0u64; DropReason::COUNT];
    let (mut rx_device, mut rx_tunnel) = (0u64, 0u64);
    let mut now = Timestamp(1_000_000);
    let mut steps = 0;
    while !inp.is_empty() && steps < 128 {
        steps += 1;
        match inp.u8() % OPS {
            0 => {
                let p = packet(&mut inp);
                rx_device += 1;
                local(&t, &mut enc, now, &p, &mut out, &mut ctr, &mut drops);
            }
            1 => {
                let kind = inp.u8() % 3;
                let mut p = if kind < 2 {
                    let src = inp.ip(&IPS);
                    let inner = if kind == 0 {
                        frames::ipv4(&mut inp, &IPS)
                    } else {
                        ipv6(&mut inp)
                    };
                    let mut b = vec![0u8; OVERHEAD];
                    b.extend_from_slice(&inner);
                    encap::ipv4::Ipv4Repr {
                        src,
                        dst: LOCAL,
                        protocol: if kind == 0 { 4 } else { 41 },
                        tos: inp.u8(),
                        ident: 0,
                        dont_frag: true,
                        ttl: 64,
                        payload_len: inner.len(),
                    }
                    .emit(&mut b[..])
                    .ok();
                    b
                } else {
                    inp.bytes().to_vec()
                };
                let from = inp.ip(&IPS);
                rx_tunnel += 1;
                remote(&t, allow_any, now, from, &mut p, &mut ctr, &mut drops);
            }
            2 => {
                let prefix = PREFIXES[usize::from(inp.u8()) % PREFIXES.len()];
                let via = inp.ip(&IPS);
                let _ = t.routes().add(Route {
                    prefix: prefix.parse().unwrap(),
                    via: via.into(),
                });
            }
            3 => {
                let prefix = PREFIXES[usize::from(inp.u8()) % PREFIXES.len()];
                t.routes().del(prefix.parse().unwrap());
            }
            4 => now = now + Duration::from_millis(u64::from(inp.u16())),
            _ => {
                allow_any = inp.bool();
                t.set_allow_any_peer(allow_any);
            }
        }
        assert_eq!(ctr.rx_device, rx_device, "every packet read is counted");
        assert_eq!(ctr.rx_tunnel, rx_tunnel, "every packet received is counted");
        for r in DropReason::ALL {
            assert_eq!(ctr.drops_of(*r), drops[*r as usize], "drops counted as {r}");
        }
    }
}

fn local(
    t: &Ipip,
    enc: &mut Encapsulator,
    now: Timestamp,
    p: &[u8],
    out: &mut Out,
    ctr: &mut Counters,
    drops: &mut [u64],
) {
    out.generated.clear();
    let v = t.on_local(now, p, out, ctr);
    crate::trace!("local {p:02x?}: {v:?} {:?}", out.remotes.as_slice());
    let v6 = p.first().is_some_and(|b| b >> 4 == 6);
    match v {
        FromDevice::Tunnel => {
            let sent = if v6 {
                tunnelled6(t, p)
            } else {
                tunnelled4(t, p)
            };
            assert_eq!(
                out.remotes.as_slice(),
                sent.via.as_slice(),
                "one remote, the route's"
            );
            assert!(out.generated.is_empty());
            check_encapsulation(enc, p, &sent, ctr, drops);
        }
        FromDevice::Answered => {
            drops[DropReason::TooBig as usize] += 1;
            assert!(out.remotes.is_empty());
            if v6 {
                check_packet_too_big(t, p, out);
            } else {
                check_frag_needed(t, p, out);
            }
        }
        FromDevice::Drop(r) => {
            drops[r as usize] += 1;
            assert!(out.remotes.is_empty(), "no remote for a dropped packet");
            assert!(out.generated.is_empty());
        }
        FromDevice::Held => panic!("IPIP never holds a packet"),
    }
}

/// What a packet `on_local` sent to the tunnel must become, whichever its family.
struct Tunnelled {
    /// Its route's next hop.
    via: Option<IpAddr>,
    /// The outer protocol: 4 (IPv4) or 41 (IPv6).
    protocol: u8,
    /// The inner packet's length by its header (bytes past it are left out).
    len: usize,
    /// Whether its header is valid, so that it must decapsulate again.
    valid: bool,
}

/// An IPv4 packet `on_local` sent to the tunnel: parsable, TTL not 0, not from our own address,
/// within the tunnel MTU.
fn tunnelled4(t: &Ipip, p: &[u8]) -> Tunnelled {
    let ip = Ipv4Packet::new_checked(p).expect("tunnelled: a parsable IPv4 packet");
    assert_ne!(ip.ttl(), 0, "TTL 0 tunnelled");
    assert_ne!(ip.src(), LOCAL, "our own source tunnelled");
    let len = usize::from(ip.total_len());
    assert!(len <= usize::from(t.tunnel_mtu()));
    Tunnelled {
        via: t.routes().load().lookup(ip.dst()).map(IpAddr::from),
        protocol: 4,
        len,
        valid: ip.verify_checksum() && ip.header_len() <= len,
    }
}

/// An IPv6 packet `on_local` sent to the tunnel: with IPv6 on, parsable, a hop limit, within
/// the tunnel MTU.
fn tunnelled6(t: &Ipip, p: &[u8]) -> Tunnelled {
    assert!(t.ipv6(), "IPv6 tunnelled without IPv6");
    let ip = encap::tunnel::ipip::inner_ipv6(p).expect("tunnelled: a parsable IPv6 packet");
    assert_ne!(ip.hop_limit, 0, "hop limit 0 tunnelled");
    assert!(ip.len <= usize::from(t.tunnel_mtu()));
    let dst: [u8; 16] = p[24..40].try_into().unwrap();
    Tunnelled {
        via: t.routes().load().lookup6(dst.into()),
        protocol: 41,
        len: ip.len,
        // Parsed, it is all the tunnel reads of it.
        valid: true,
    }
}

/// The worker's encapsulation step on a tunnelled packet `p` (see [`Tunnelled`]): the outer
/// header plus the packet, with the protocol of its family, which decapsulates again (when its
/// header is valid) into the same packet between our address and the next hop; a refusal is
/// counted, as the worker counts it.
fn check_encapsulation(
    enc: &mut Encapsulator,
    p: &[u8],
    sent: &Tunnelled,
    ctr: &mut Counters,
    drops: &mut [u64],
) {
    let dst = sent.via.expect("a tunnelled packet has a route");
    let mut buf = vec![0u8; OVERHEAD];
    buf.extend_from_slice(p);
    match enc.encapsulate(&mut buf, OVERHEAD, p.len(), Vni::ZERO, dst.into()) {
        Ok(range) => {
            crate::trace!("encapsulated: {:02x?}", &buf[range.clone()]);
            assert!(range.start <= range.end && range.end <= buf.len());
            assert_eq!(
                range,
                0..OVERHEAD + sent.len,
                "outer header plus the packet"
            );
            assert_eq!(buf[9], sent.protocol, "the protocol of the inner family");
            match decapsulate(&buf[range]) {
                Ok(rx) => {
                    assert_eq!(
                        (IpAddr::V4(rx.src), IpAddr::V4(rx.dst)),
                        (LOCAL.into(), dst)
                    );
                    assert_eq!(&buf[rx.inner], &p[..sent.len], "the packet, unchanged");
                }
                Err(e) => assert!(!sent.valid, "a valid packet encapsulated badly: {e:?}"),
            }
        }
        Err(r) => {
            crate::trace!("encapsulation refused: {r:?}");
            // The worker counts what the encapsulator refuses.
            ctr.drop(r);
            drops[r as usize] += 1;
        }
    }
}

/// The ICMPv6 "packet too big" for `p`: one, at most 1280 bytes, from its destination to its
/// source, type 2 code 0 with the tunnel MTU, checksum right, quoting it.
fn check_packet_too_big(t: &Ipip, p: &[u8], out: &Out) {
    let g: Vec<_> = out.generated.iter().collect();
    assert_eq!(g.len(), 1, "one ICMPv6 error");
    let (to, e) = g[0];
    assert_eq!(to, FrameTo::Device);
    assert!(e.len() <= 1280 && e.len() >= 48);
    assert!(encap::tunnel::ipip::inner_ipv6(p).unwrap().len > usize::from(t.tunnel_mtu()));
    assert_eq!((e[0] >> 4, e[6]), (6, 58));
    assert_eq!((&e[8..24], &e[24..40]), (&p[24..40], &p[8..24]));
    let icmp = &e[40..];
    assert_eq!((icmp[0], icmp[1]), (2, 0));
    assert_eq!(
        u32::from_be_bytes(icmp[4..8].try_into().unwrap()),
        u32::from(t.tunnel_mtu())
    );
    assert_eq!(&icmp[8..], &p[..icmp.len() - 8], "quotes the packet");
    let mut pseudo = e[8..40].to_vec();
    pseudo.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    let sum = encap::checksum::add(encap::checksum::sum(&pseudo), encap::checksum::sum(icmp));
    assert_eq!(encap::checksum::fold(sum), 0xffff, "ICMPv6 checksum");
}

/// The ICMP error for `p`: parses, checksums right, type 3 code 4 with the tunnel MTU, from
/// the packet's destination to its source, quoting it.
fn check_frag_needed(t: &Ipip, p: &[u8], out: &Out) {
    let g: Vec<_> = out.generated.iter().collect();
    assert_eq!(g.len(), 1, "one ICMP error");
    let (to, e) = g[0];
    assert_eq!(to, FrameTo::Device);
    assert!(e.len() <= ICMP_MAX);
    let orig = Ipv4Packet::new_checked(p).unwrap();
    assert!(usize::from(orig.total_len()) > usize::from(t.tunnel_mtu()));
    assert!(orig.dont_frag());
    let ip = Ipv4Packet::new_checked(e).expect("the error parses as IPv4");
    assert!(ip.verify_checksum(), "IPv4 checksum");
    assert_eq!(usize::from(ip.total_len()), e.len());
    assert_eq!(ip.protocol(), 1);
    assert_eq!((ip.src(), ip.dst()), (orig.dst(), orig.src()));
    let icmp = &e[ip.header_len()..];
    assert!(encap::checksum::verify(icmp), "ICMP checksum");
    assert_eq!((icmp[0], icmp[1]), (3, 4));
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), t.tunnel_mtu());
    assert_eq!(&icmp[8..], &p[..icmp.len() - 8], "quotes the packet");
}

fn remote(
    t: &Ipip,
    allow_any: bool,
    now: Timestamp,
    from: Ipv4Addr,
    p: &mut [u8],
    ctr: &mut Counters,
    drops: &mut [u64],
) {
    let len = p.len();
    let orig = p.to_vec();
    let v = t.on_remote(now, Outer::from(from), p, ctr);
    crate::trace!("remote {orig:02x?}: {v:?}");
    match v {
        FromTunnel::Deliver { net, range } => {
            assert_eq!(net, NET);
            assert!(range.start >= 20 && range.start <= range.end && range.end <= len);
            let src = Ipv4Addr::new(orig[12], orig[13], orig[14], orig[15]);
            assert!(
                allow_any || t.routes().load().is_next_hop(src),
                "decapsulated from {src}, no next hop"
            );
            assert_ne!(src, LOCAL);
            if orig[9] == 41 {
                assert!(t.ipv6(), "IPv6 delivered without IPv6");
                let inner = encap::tunnel::ipip::inner_ipv6(&p[range.clone()]).unwrap();
                assert_eq!(inner.len, range.len());
                assert_ne!(inner.hop_limit, 0);
                // Only the inner ECN bits may have changed.
                for (i, (a, b)) in orig.iter().zip(p.iter()).enumerate() {
                    let ecn = i == range.start + 1;
                    assert!(a == b || (ecn && (a ^ b) & !0x30 == 0), "byte {i} changed");
                }
                return;
            }
            let inner = Ipv4Packet::new_checked(&p[range.clone()]).expect("inner parses as IPv4");
            assert!(
                inner.verify_checksum(),
                "inner checksum after the ECN update"
            );
            assert_eq!(usize::from(inner.total_len()), range.len());
            assert_ne!(inner.ttl(), 0);
            assert_ne!(inner.src(), LOCAL);
            // Only the inner ECN bits and checksum may have changed.
            for (i, (a, b)) in orig.iter().zip(p.iter()).enumerate() {
                let off = i.wrapping_sub(range.start);
                assert!(
                    a == b || off == 1 || off == 10 || off == 11,
                    "byte {i} changed"
                );
            }
        }
        FromTunnel::Drop(r) => drops[r as usize] += 1,
        FromTunnel::Consumed => panic!("IPIP consumes nothing"),
    }
}
