//! In-memory tests of the L3 VXLAN engine (next-hop resolution by ARP and Neighbor Discovery,
//! the pending queue, retries, the own-address ARP, ND and ICMP echo responders) and of L2 ARP
//! suppression, with a virtual clock.
//!
//! The byte vectors are built by scapy, an implementation independent of ours:
//! `/usr/bin/python3 lab/scapy/l3vx_vectors.py` prints them.

use encap::{MacAddr, Vni};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;
use vtepd::core::arp::{FrameTo, Generated};
use vtepd::core::arp_suppress::ArpSuppress;
use vtepd::core::l3vx::{L3Vx, L3VxConfig, TunVerdict};
use vtepd::core::route::{Routes, parse_route};
use vtepd::core::{
    Core, CoreConfig, Counters, DropReason, EntryKind, FromDevice, FromTunnel, NetId,
    NetworkConfig, Out, Outer, Timestamp,
};

const NET: NetId = NetId(0);
const OWN_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const PEER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
const ROUTER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 3]);
const OWN_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 0);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 7);
/// A remote node's overlay address: the next hop of its pod subnet (flannel's `via X onlink`).
const NODE_B: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 0);
const POD_B: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);

// scapy-built (lab/scapy/l3vx_vectors.py).
const ARP_REQUEST: &str =
    "ffffffffffff020000000002080600010800060400010200000000020af400070000000000000af40000";
const ARP_REPLY: &str =
    "020000000002020000000001080600010800060400020200000000010af400000200000000020af40007";
const ARP_WHO_HAS_PEER: &str =
    "ffffffffffff020000000001080600010800060400010200000000010af400000000000000000af40007";
const ARP_PEER_IS_AT: &str =
    "020000000001020000000002080600010800060400020200000000020af400070200000000010af40000";
const ECHO_REQUEST: &str = "02000000000102000000000308004500004c123440003f0112910af401050af400000800c8e404d20007000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f";
const NS_FOR_OWN: &str = "3333ff00000102000000000286dd6000000000203afffd000001000000000000000000000007ff0200000000000000000001ff00000187007d9000000000fd0000010000000000000000000000010101020000000002";
const NA_FROM_OWN: &str = "02000000000202000000000186dd6000000000203afffd000001000000000000000000000001fd00000100000000000000000000000788001c9460000000fd0000010000000000000000000000010201020000000001";
const NS_FOR_PEER: &str = "3333ff00000702000000000186dd6000000000203afffd000001000000000000000000000001ff0200000000000000000001ff00000787007d8b00000000fd0000010000000000000000000000070101020000000001";
const NA_FROM_PEER: &str = "02000000000102000000000286dd6000000000203afffd000001000000000000000000000007fd00000100000000000000000000000188001c8d60000000fd0000010000000000000000000000070201020000000002";
const ROUTER_ADVERT: &str = "02000000000102000000000286dd6000000000183afffe800000000000000000000000000002fd000001000000000000000000000001860074140008070800000000000000000101020000000002";
const OWN_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1);
const PEER_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 7);
/// A remote node's IPv6 overlay address (off our prefix: flannel's `via X onlink`) and a pod
/// behind it.
const NODE_B6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 0);
const POD_B6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 5);
const ECHO_REPLY: &str = "02000000000302000000000108004500004c00004000400123c50af400000af401050000d0e404d20007000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn core(max_learned: usize) -> Arc<Core> {
    Arc::new(
        Core::new(CoreConfig {
            local: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            allow_any_peer: false,
            networks: vec![NetworkConfig {
                vni: Vni::new(1).unwrap(),
                peers: vec![
                    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
                    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3)),
                ],
                own_mac: OWN_MAC,
                ageing: Duration::from_secs(300),
                max_learned,
                ..Default::default()
            }],
        })
        .unwrap(),
    )
}

/// An engine on 10.244.0.0/24 (so PEER_IP is on-link) with small queues.
fn engine(c: &Arc<Core>) -> L3Vx {
    let mut cfg = L3VxConfig::new(OWN_MAC, OWN_IP, 24);
    cfg.queue_per_neigh = 3;
    cfg.queue_bytes = 1000;
    // An empty overlay route table: the tests pass each packet's route next hop to `on_tun`.
    let routes = Routes::with_overlay_routes(Ipv4Addr::new(192, 0, 2, 1), false, &[]).unwrap();
    L3Vx::new(Arc::clone(c), NET, cfg, Arc::new(routes))
}

/// A minimal IPv4 packet from POD-ish `src` to `dst` of `len` bytes, tagged in its last byte.
fn ip_packet(src: Ipv4Addr, dst: Ipv4Addr, len: usize, tag: u8) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[len - 1] = tag;
    p
}

fn frames(g: &Generated) -> Vec<(FrameTo, Vec<u8>)> {
    g.iter().map(|(t, f)| (t, f.to_vec())).collect()
}

/// What `on_frame` decides to deliver into the TUN: the IP packet at `frame[offset..]`.
fn deliver(offset: usize, frame: &[u8]) -> FromTunnel {
    FromTunnel::Deliver {
        net: NET,
        range: offset..frame.len(),
    }
}

/// [`ArpSuppress::answer_local`] with a fresh buffer: the reply written into the device, or
/// `None` (nothing pushed) when the request is left to flood.
fn suppressed(
    s: &ArpSuppress,
    now: Timestamp,
    net: NetId,
    frame: &[u8],
    ctr: &mut Counters,
) -> Option<Vec<u8>> {
    let mut g = Generated::new();
    if !s.answer_local(now, net, frame, &mut g, ctr) {
        assert!(g.is_empty(), "nothing generated when not answered");
        return None;
    }
    let out = frames(&g);
    assert_eq!(out.len(), 1, "one reply per answered request");
    let (to, reply) = out.into_iter().next().unwrap();
    assert_eq!(to, FrameTo::Device, "the reply goes back into the device");
    Some(reply)
}

fn at(secs: u64) -> Timestamp {
    Timestamp::ZERO.add(Duration::from_secs(secs))
}

#[test]
fn own_address_arp_reply_matches_scapy() {
    let c = core(100);
    let e = engine(&c);
    let (mut g, mut ctr) = (Generated::new(), Counters::default());
    let v = e.on_frame(at(0), &hex(ARP_REQUEST), &mut g, &mut ctr);
    assert_eq!(v, FromTunnel::Consumed);
    assert_eq!(frames(&g), vec![(FrameTo::Tunnel, hex(ARP_REPLY))]);
    assert_eq!(ctr.arp_replies, 1);
    // The asker's binding is learned from a request for our own address.
    assert_eq!(c.neigh(NET).unwrap().lookup(PEER_IP, 0), Some(PEER_MAC));
    assert_eq!(ctr.neigh_learned, 1);
}

#[test]
fn icmp_echo_reply_matches_scapy() {
    let c = core(100);
    let e = engine(&c);
    let (mut g, mut ctr) = (Generated::new(), Counters::default());
    let v = e.on_frame(at(0), &hex(ECHO_REQUEST), &mut g, &mut ctr);
    assert_eq!(v, FromTunnel::Consumed);
    assert_eq!(frames(&g), vec![(FrameTo::Tunnel, hex(ECHO_REPLY))]);
    assert_eq!(ctr.icmp_echo_replies, 1);
}

#[test]
fn echo_with_bad_checksum_is_not_answered_but_delivered() {
    let c = core(100);
    let e = engine(&c);
    let mut req = hex(ECHO_REQUEST);
    let n = req.len();
    req[n - 1] ^= 0xff; // breaks the ICMP checksum
    let (mut g, mut ctr) = (Generated::new(), Counters::default());
    let v = e.on_frame(at(0), &req, &mut g, &mut ctr);
    assert_eq!(v, deliver(14, &req));
    assert!(g.is_empty());
    assert_eq!(ctr.icmp_echo_replies, 0);
}

#[test]
fn frames_for_other_macs_are_dropped_and_ip_to_us_is_unwrapped() {
    let c = core(100);
    let e = engine(&c);
    let (mut g, mut ctr) = (Generated::new(), Counters::default());
    let pkt = ip_packet(POD_B, Ipv4Addr::new(10, 244, 0, 9), 40, 1);
    let mut f = Vec::new();
    f.extend_from_slice(&PEER_MAC.0); // not us
    f.extend_from_slice(&ROUTER_MAC.0);
    f.extend_from_slice(&[8, 0]);
    f.extend_from_slice(&pkt);
    assert_eq!(
        e.on_frame(at(0), &f, &mut g, &mut ctr),
        FromTunnel::Drop(DropReason::NotForUs)
    );
    assert_eq!(ctr.drops_of(DropReason::NotForUs), 1);
    f[..6].copy_from_slice(&OWN_MAC.0);
    assert_eq!(e.on_frame(at(0), &f, &mut g, &mut ctr), deliver(14, &f));
    // IPv6 on a network without an IPv6 address; anything else is not IP.
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    assert_eq!(
        e.on_frame(at(0), &f, &mut g, &mut ctr),
        FromTunnel::Drop(DropReason::NoIpv6)
    );
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    assert_eq!(
        e.on_frame(at(0), &f, &mut g, &mut ctr),
        FromTunnel::Drop(DropReason::NotIpv4)
    );
    assert_eq!(ctr.drops_of(DropReason::NotIpv4), 1);
    assert!(g.is_empty());
    // An IP packet from a routed source teaches nothing.
    assert!(c.neigh(NET).unwrap().is_empty());
}

#[test]
fn resolution_queues_then_flushes_in_order() {
    let c = core(100);
    let e = engine(&c);
    let (mut g, mut ctr) = (Generated::new(), Counters::default());
    let p1 = ip_packet(OWN_IP, PEER_IP, 100, 1);
    let p2 = ip_packet(OWN_IP, PEER_IP, 100, 2);
    assert_eq!(
        e.on_tun(at(0), &p1, None, &mut g, &mut ctr),
        TunVerdict::Held
    );
    // One ARP request (scapy's bytes), not one per packet.
    assert_eq!(frames(&g), vec![(FrameTo::Tunnel, hex(ARP_WHO_HAS_PEER))]);
    g.clear();
    assert_eq!(
        e.on_tun(at(0), &p2, None, &mut g, &mut ctr),
        TunVerdict::Held
    );
    assert!(g.is_empty());
    assert_eq!(ctr.arp_requests, 1);
    assert_eq!(e.pending(), (2, 200));

    assert_eq!(
        e.on_frame(at(0), &hex(ARP_PEER_IS_AT), &mut g, &mut ctr),
        FromTunnel::Consumed
    );
    let out = frames(&g);
    assert_eq!(out.len(), 2);
    for ((to, f), p) in out.iter().zip([&p1, &p2]) {
        assert_eq!(*to, FrameTo::Tunnel);
        assert_eq!(&f[..6], &PEER_MAC.0);
        assert_eq!(&f[6..12], &OWN_MAC.0);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(&f[14..], &p[..]);
    }
    assert_eq!(e.pending(), (0, 0));
    // Now the fast path answers.
    g.clear();
    assert_eq!(
        e.on_tun(at(1), &p1, None, &mut g, &mut ctr),
        TunVerdict::Send(PEER_MAC)
    );
    assert!(g.is_empty());
}

#[test]
fn routed_destinations_resolve_their_next_hop() {
    let c = core(100);
    let e = engine(&c);
    let (mut g, mut ctr) = (Generated::new(), Counters::default());
    let p = ip_packet(OWN_IP, POD_B, 60, 1);
    assert_eq!(
        e.on_tun(at(0), &p, None, &mut g, &mut ctr),
        TunVerdict::Drop(DropReason::NoRoute)
    );
    c.neigh_add(at(0), Vni::new(1).unwrap(), NODE_B, ROUTER_MAC)
        .unwrap();
    assert_eq!(
        e.on_tun(at(0), &p, Some(NODE_B), &mut g, &mut ctr),
        TunVerdict::Send(ROUTER_MAC)
    );
    // Broadcast and multicast need no resolution.
    let b = ip_packet(OWN_IP, Ipv4Addr::new(10, 244, 0, 255), 40, 0);
    assert_eq!(
        e.on_tun(at(0), &b, None, &mut g, &mut ctr),
        TunVerdict::Send(MacAddr::BROADCAST)
    );
    let m = ip_packet(OWN_IP, Ipv4Addr::new(239, 129, 2, 3), 40, 0);
    assert_eq!(
        e.on_tun(at(0), &m, None, &mut g, &mut ctr),
        TunVerdict::Send(MacAddr([1, 0, 0x5e, 1, 2, 3]))
    );
    let to_self = ip_packet(PEER_IP, OWN_IP, 40, 0);
    assert_eq!(
        e.on_tun(at(0), &to_self, None, &mut g, &mut ctr),
        TunVerdict::Drop(DropReason::ToSelf)
    );
    assert_eq!(
        e.on_tun(at(0), &[0x60; 40], None, &mut g, &mut ctr),
        TunVerdict::Drop(DropReason::NoIpv6)
    );
    assert_eq!(
        e.on_tun(at(0), &[0x50; 40], None, &mut g, &mut ctr),
        TunVerdict::Drop(DropReason::NotIpv4)
    );
    assert!(g.is_empty());
}

#[test]
fn pending_queue_is_bounded_per_neighbour_and_in_bytes() {
    let c = core(100);
    let e = engine(&c);
    let (mut g, mut ctr) = (Generated::new(), Counters::default());
    for i in 0..5 {
        let p = ip_packet(OWN_IP, PEER_IP, 100, i);
        let want = if i < 3 {
            TunVerdict::Held
        } else {
            TunVerdict::Drop(DropReason::NeighQueueFull)
        };
        assert_eq!(e.on_tun(at(0), &p, None, &mut g, &mut ctr), want, "{i}");
    }
    // 300 bytes held for PEER_IP; the 1000-byte total allows two 300-byte packets more.
    let other = |n: u8| Ipv4Addr::new(10, 244, 0, 100 + n);
    for n in 0..3 {
        let p = ip_packet(OWN_IP, other(n), 300, n);
        let want = if n < 2 {
            TunVerdict::Held
        } else {
            TunVerdict::Drop(DropReason::NeighQueueFull)
        };
        assert_eq!(e.on_tun(at(0), &p, None, &mut g, &mut ctr), want, "{n}");
    }
    assert_eq!(ctr.drops_of(DropReason::NeighQueueFull), 3);
    assert_eq!(e.pending(), (5, 900));
    assert_eq!(ctr.arp_requests, 3);
}

#[test]
fn arp_is_retried_then_given_up_with_the_queue_counted() {
    let c = core(100);
    let e = engine(&c);
    let (mut g, mut ctr) = (Generated::new(), Counters::default());
    for i in 0..2 {
        e.on_tun(
            at(0),
            &ip_packet(OWN_IP, PEER_IP, 50, i),
            None,
            &mut g,
            &mut ctr,
        );
    }
    assert_eq!(ctr.arp_requests, 1);
    g.clear();
    e.poll(Timestamp(500), &mut g, &mut ctr);
    assert!(g.is_empty(), "not due yet");
    e.poll(at(1), &mut g, &mut ctr);
    assert_eq!(frames(&g), vec![(FrameTo::Tunnel, hex(ARP_WHO_HAS_PEER))]);
    e.poll(at(2), &mut g, &mut ctr);
    assert_eq!(ctr.arp_requests, 3);
    g.clear();
    e.poll(at(3), &mut g, &mut ctr);
    assert!(g.is_empty());
    assert_eq!(ctr.neigh_failed, 1);
    assert_eq!(ctr.drops_of(DropReason::NeighUnresolved), 2);
    assert_eq!(e.pending(), (0, 0));
    // A new packet starts over.
    e.on_tun(
        at(4),
        &ip_packet(OWN_IP, PEER_IP, 50, 9),
        None,
        &mut g,
        &mut ctr,
    );
    assert_eq!(ctr.arp_requests, 4);
}

#[test]
fn a_static_binding_added_while_waiting_releases_the_queue_on_poll() {
    let c = core(100);
    let e = engine(&c);
    let (mut g, mut ctr) = (Generated::new(), Counters::default());
    let p = ip_packet(OWN_IP, PEER_IP, 50, 1);
    e.on_tun(at(0), &p, None, &mut g, &mut ctr);
    g.clear();
    c.neigh_add(at(0), Vni::new(1).unwrap(), PEER_IP, PEER_MAC)
        .unwrap();
    e.poll(at(1), &mut g, &mut ctr);
    let out = frames(&g);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].1[..6], &PEER_MAC.0);
    assert_eq!(&out[0].1[14..], &p[..]);
    assert_eq!(ctr.arp_requests, 1, "no retry once resolved");
}

#[test]
fn unsolicited_replies_do_not_create_bindings() {
    let c = core(100);
    let e = engine(&c);
    let (mut g, mut ctr) = (Generated::new(), Counters::default());
    e.on_frame(at(0), &hex(ARP_PEER_IS_AT), &mut g, &mut ctr);
    assert!(c.neigh(NET).unwrap().is_empty());
    assert!(g.is_empty());
    // But they update an existing learned binding (and the change is counted).
    c.neigh(NET).unwrap().learn(
        PEER_IP,
        ROUTER_MAC,
        0,
        vtepd::core::neigh::Evidence::Authoritative,
    );
    e.on_frame(at(0), &hex(ARP_PEER_IS_AT), &mut g, &mut ctr);
    assert_eq!(c.neigh(NET).unwrap().lookup(PEER_IP, 0), Some(PEER_MAC));
    assert_eq!(ctr.neigh_mac_changes, 1);
}

#[test]
fn static_neighbours_survive_arp() {
    let c = core(100);
    let e = engine(&c);
    let v = Vni::new(1).unwrap();
    c.neigh_add(at(0), v, PEER_IP, ROUTER_MAC).unwrap();
    let (mut g, mut ctr) = (Generated::new(), Counters::default());
    e.on_frame(at(0), &hex(ARP_REQUEST), &mut g, &mut ctr);
    let entries = c.neigh_entries(at(0), None);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].1.mac, ROUTER_MAC);
    assert_eq!(entries[0].1.kind, EntryKind::Static);
    assert!(c.neigh_del(v, PEER_IP).unwrap());
    assert!(!c.neigh_del(v, PEER_IP).unwrap());
    assert!(
        c.neigh_add(at(0), v, Ipv4Addr::BROADCAST, PEER_MAC)
            .is_err()
    );
    assert!(c.neigh_add(at(0), v, PEER_IP, MacAddr::BROADCAST).is_err());
    assert!(
        c.neigh_add(at(0), Vni::new(2).unwrap(), PEER_IP, PEER_MAC)
            .is_err()
    );
}

/// A frame from the tunnel whose sender address a static neighbour binds to another MAC is a
/// spoof: neither believed, nor answered, nor delivered; one with the bound MAC passes.
#[test]
fn static_neighbours_drop_frames_that_contradict_them() {
    let c = core(100);
    let e = engine(&c);
    c.neigh_add(at(0), Vni::new(1).unwrap(), PEER_IP, ROUTER_MAC)
        .unwrap();
    let (mut g, mut ctr) = (Generated::new(), Counters::default());
    // PEER_IP asks for our address from PEER_MAC: no reply, dropped.
    let v = e.on_frame(at(0), &hex(ARP_REQUEST), &mut g, &mut ctr);
    assert_eq!(v, FromTunnel::Drop(DropReason::StaticConflict));
    assert!(g.is_empty(), "a spoofed request is not answered");
    // An IPv4 packet from PEER_IP behind PEER_MAC: dropped; behind ROUTER_MAC: delivered.
    let mut f = Vec::new();
    f.extend_from_slice(&OWN_MAC.0);
    f.extend_from_slice(&PEER_MAC.0);
    f.extend_from_slice(&[8, 0]);
    f.extend_from_slice(&ip_packet(PEER_IP, OWN_IP, 40, 1));
    let v = e.on_frame(at(0), &f, &mut g, &mut ctr);
    assert_eq!(v, FromTunnel::Drop(DropReason::StaticConflict));
    f[6..12].copy_from_slice(&ROUTER_MAC.0);
    assert_eq!(e.on_frame(at(0), &f, &mut g, &mut ctr), deliver(14, &f));
    assert_eq!(ctr.drops_of(DropReason::StaticConflict), 2);
    assert_eq!(c.neigh(NET).unwrap().lookup(PEER_IP, 0), Some(ROUTER_MAC));
}

#[test]
fn neighbour_cap_is_counted() {
    let c = core(1);
    let e = engine(&c);
    let (mut g, mut ctr) = (Generated::new(), Counters::default());
    e.on_frame(at(0), &hex(ARP_REQUEST), &mut g, &mut ctr);
    let mut other = hex(ARP_REQUEST);
    other[6..12].copy_from_slice(&ROUTER_MAC.0);
    other[22..28].copy_from_slice(&ROUTER_MAC.0);
    other[31] = 8; // sender 10.244.0.8
    e.on_frame(at(0), &other, &mut g, &mut ctr);
    assert_eq!(ctr.neigh_learned, 1);
    assert_eq!(ctr.neigh_refused, 1);
    assert_eq!(ctr.arp_replies, 2, "both are still answered");
}

/// A VXLAN datagram (UDP payload) carrying `frame` in VNI 1.
fn vxlan(frame: &[u8]) -> Vec<u8> {
    let mut d = vec![0u8; encap::vxlan::HEADER_LEN];
    encap::vxlan::VxlanPacket::new_unchecked(&mut d[..]).set_header(Vni::new(1).unwrap());
    d.extend_from_slice(frame);
    d
}

#[test]
fn engine_wrappers_route_resolve_and_decapsulate() {
    let c = core(100);
    let routes = Routes::with_overlay_routes(
        Ipv4Addr::new(192, 0, 2, 1),
        false,
        &[parse_route(&format!("10.244.1.0/24={NODE_B}")).unwrap()],
    )
    .unwrap();
    let e = L3Vx::new(
        Arc::clone(&c),
        NET,
        L3VxConfig::new(OWN_MAC, OWN_IP, 24),
        Arc::new(routes),
    );
    let (mut out, mut ctr) = (Out::default(), Counters::default());
    let (peer_a, peer_b) = (
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3)),
    );

    // From the TUN, routed via NODE_B: unresolved, so held and NODE_B asked for.
    let p = ip_packet(OWN_IP, POD_B, 60, 1);
    let mut frame = [vec![0u8; 14], p.clone()].concat();
    assert_eq!(
        e.on_local_resolved(at(0), &mut frame, &mut out, &mut ctr),
        None
    );
    assert_eq!(
        ctr.rx_device, 0,
        "on_local_resolved does not count the packet"
    );
    assert_eq!(
        e.on_local(at(0), &mut frame, &mut out, &mut ctr),
        FromDevice::Held
    );
    assert_eq!(ctr.rx_device, 1);
    let g = frames(&out.generated);
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].0, FrameTo::Tunnel);
    assert_eq!(&g[0].1[38..42], &NODE_B.octets(), "who-has NODE_B");
    assert_eq!(e.pending(), (1, 60));
    out.generated.clear();

    // Resolved: framed for NODE_B's MAC and flooded (ROUTER_MAC is not in the FDB yet).
    c.neigh_add(at(0), Vni::new(1).unwrap(), NODE_B, ROUTER_MAC)
        .unwrap();
    for resolved_only in [false, true] {
        let mut frame = [vec![0u8; 14], p.clone()].concat();
        let v = if resolved_only {
            e.on_local_resolved(at(0), &mut frame, &mut out, &mut ctr)
        } else {
            Some(e.on_local(at(0), &mut frame, &mut out, &mut ctr))
        };
        assert_eq!(v, Some(FromDevice::Tunnel));
        assert_eq!(out.remotes.as_slice(), &[peer_a, peer_b]);
        assert_eq!(out.remotes.vni(), Vni::new(1).unwrap());
        assert_eq!(&frame[..6], &ROUTER_MAC.0);
        assert_eq!(&frame[6..12], &OWN_MAC.0);
        assert_eq!(&frame[12..14], &[0x08, 0x00]);
        assert_eq!(&frame[14..], &p[..]);
    }
    assert_eq!(ctr.rx_device, 2);

    // From the tunnel: an echo request to us is answered, not delivered.
    let mut d = vxlan(&hex(ECHO_REQUEST));
    assert_eq!(
        e.on_remote(at(0), Outer::from(peer_a), &mut d, &mut out, &mut ctr),
        FromTunnel::Consumed
    );
    assert_eq!(
        frames(&out.generated),
        vec![(FrameTo::Tunnel, hex(ECHO_REPLY))]
    );
    out.generated.clear();
    // An IP packet to us: delivered, its range in the datagram (VXLAN and Ethernet headers off).
    let mut req = hex(ECHO_REQUEST);
    let n = req.len();
    req[n - 1] ^= 0xff;
    let mut d = vxlan(&req);
    assert_eq!(
        e.on_remote(at(0), Outer::from(peer_a), &mut d, &mut out, &mut ctr),
        FromTunnel::Deliver {
            net: NET,
            range: 8 + 14..d.len()
        }
    );
    assert!(out.generated.is_empty());
    // The core's checks still apply: a source that is not a peer is dropped.
    let mut d = vxlan(&req);
    assert_eq!(
        e.on_remote(
            at(0),
            Outer::from(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9))),
            &mut d,
            &mut out,
            &mut ctr
        ),
        FromTunnel::Drop(DropReason::UnknownPeer)
    );
    assert_eq!(ctr.rx_tunnel, 3);
}

// ---------------------------------------------------------------------------------------------
// L2 ARP suppression

/// A broadcast who-has `target` from a local host (`mac`, `ip`).
fn local_request(mac: MacAddr, ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = hex(ARP_REQUEST);
    f[6..12].copy_from_slice(&mac.0);
    f[22..28].copy_from_slice(&mac.0);
    f[28..32].copy_from_slice(&ip.octets());
    f[38..42].copy_from_slice(&target.octets());
    f
}

#[test]
fn suppression_answers_known_remote_addresses_only() {
    let c = core(100);
    let s = ArpSuppress::new(Arc::clone(&c), vec![true]);
    let mut ctr = Counters::default();
    let local = (
        MacAddr([2, 0, 0, 0, 0xaa, 1]),
        Ipv4Addr::new(10, 244, 0, 50),
    );
    // Unknown target: flood as usual.
    let req = local_request(local.0, local.1, PEER_IP);
    assert!(suppressed(&s, at(0), NET, &req, &mut ctr).is_none());
    // A reply from the remote host crosses the tunnel (PEER is at PEER_MAC): snooped.
    let mut reply = hex(ARP_PEER_IS_AT);
    reply[..6].copy_from_slice(&local.0.0);
    s.snoop_remote(at(0), NET, &reply, &mut ctr);
    assert_eq!(ctr.neigh_learned, 1);
    let answer = suppressed(&s, at(1), NET, &req, &mut ctr).unwrap();
    // Reply on behalf of PEER: from PEER_MAC to the asker, PEER_IP is at PEER_MAC.
    let mut want = hex(ARP_REPLY);
    want[..6].copy_from_slice(&local.0.0);
    want[6..12].copy_from_slice(&PEER_MAC.0);
    want[22..28].copy_from_slice(&PEER_MAC.0);
    want[28..32].copy_from_slice(&PEER_IP.octets());
    want[32..38].copy_from_slice(&local.0.0);
    want[38..42].copy_from_slice(&local.1.octets());
    assert_eq!(answer, want);
    assert_eq!(ctr.arp_suppressed, 1);

    // Not answered: probes, gratuitous ARP, unicast requests, the asker's own address.
    let probe = local_request(local.0, Ipv4Addr::UNSPECIFIED, PEER_IP);
    let garp = local_request(PEER_MAC, PEER_IP, PEER_IP);
    let mut unicast = req.clone();
    unicast[..6].copy_from_slice(&PEER_MAC.0);
    let own = local_request(PEER_MAC, Ipv4Addr::new(10, 244, 0, 51), PEER_IP);
    for f in [&probe, &garp, &unicast, &own] {
        assert!(suppressed(&s, at(1), NET, f, &mut ctr).is_none());
    }
    assert_eq!(ctr.arp_suppressed, 1);
}

#[test]
fn suppression_bindings_age_change_and_respect_static() {
    let c = core(100);
    let s = ArpSuppress::new(Arc::clone(&c), vec![true]);
    let mut ctr = Counters::default();
    let garp = |mac: MacAddr| local_request(mac, PEER_IP, PEER_IP);
    s.snoop_remote(at(0), NET, &garp(PEER_MAC), &mut ctr);
    s.snoop_remote(at(1), NET, &garp(ROUTER_MAC), &mut ctr);
    assert_eq!(ctr.neigh_mac_changes, 1);
    let asker = (
        MacAddr([2, 0, 0, 0, 0xaa, 1]),
        Ipv4Addr::new(10, 244, 0, 50),
    );
    let req = local_request(asker.0, asker.1, PEER_IP);
    assert_eq!(
        &suppressed(&s, at(2), NET, &req, &mut ctr).unwrap()[6..12],
        &ROUTER_MAC.0
    );
    // Aged out after 300 s: flooded again.
    assert!(suppressed(&s, at(302), NET, &req, &mut ctr).is_none());
    // A static binding wins over what is snooped.
    c.neigh_add(at(302), Vni::new(1).unwrap(), PEER_IP, PEER_MAC)
        .unwrap();
    s.snoop_remote(at(303), NET, &garp(ROUTER_MAC), &mut ctr);
    assert_eq!(
        &suppressed(&s, at(304), NET, &req, &mut ctr).unwrap()[6..12],
        &PEER_MAC.0
    );
    // A sender MAC that is not the frame's source teaches nothing.
    let mut forged = local_request(ROUTER_MAC, Ipv4Addr::new(10, 244, 0, 60), PEER_IP);
    forged[6..12].copy_from_slice(&PEER_MAC.0);
    s.snoop_remote(at(304), NET, &forged, &mut ctr);
    assert_eq!(
        c.neigh(NET)
            .unwrap()
            .lookup(Ipv4Addr::new(10, 244, 0, 60), 304_000),
        None
    );
}

#[test]
fn suppression_off_does_nothing() {
    let c = core(100);
    let s = ArpSuppress::new(Arc::clone(&c), vec![false]);
    let mut ctr = Counters::default();
    s.snoop_remote(at(0), NET, &hex(ARP_PEER_IS_AT), &mut ctr);
    c.neigh_add(at(0), Vni::new(1).unwrap(), PEER_IP, PEER_MAC)
        .unwrap();
    let req = local_request(MacAddr([2, 0, 0, 0, 0xaa, 1]), OWN_IP, PEER_IP);
    assert!(suppressed(&s, at(0), NET, &req, &mut ctr).is_none());
    assert!(suppressed(&s, at(0), NetId(7), &req, &mut ctr).is_none());
    assert_eq!(ctr.neigh_learned, 0);
}

#[test]
fn garbage_never_panics() {
    let c = core(100);
    let (e, e6) = (engine(&c), engine6(&c));
    let s = ArpSuppress::new(Arc::clone(&c), vec![true]);
    let (mut g, mut ctr) = (Generated::new(), Counters::default());
    let mut seed = 0x1234_5678_u32;
    for len in 0..200 {
        let mut f: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            })
            .collect();
        for variant in 0..5 {
            if f.len() >= 14 {
                match variant {
                    1 => f[12..14].copy_from_slice(&[8, 6]),
                    2 => f[12..14].copy_from_slice(&[8, 0]),
                    3 => f[..6].copy_from_slice(&OWN_MAC.0),
                    // IPv6 carrying what claims to be ND (into the RFC 4861 parser).
                    4 => {
                        f[12..14].copy_from_slice(&[0x86, 0xdd]);
                        for (at, b) in [(14, 0x60), (20, 58), (21, 255), (54, 135)] {
                            if let Some(x) = f.get_mut(at) {
                                *x = b;
                            }
                        }
                    }
                    _ => {}
                }
            }
            for e in [&e, &e6] {
                e.on_frame(at(0), &f, &mut g, &mut ctr);
                e.on_tun(at(0), &f, Some(NODE_B), &mut g, &mut ctr);
                e.on_tun(
                    at(0),
                    f.get(14..).unwrap_or_default(),
                    None,
                    &mut g,
                    &mut ctr,
                );
            }
            s.snoop_remote(at(0), NET, &f, &mut ctr);
            let _ = s.answer_local(at(0), NET, &f, &mut g, &mut ctr);
        }
    }
}

/// A dual-stack engine: [`engine`]'s IPv4 side plus fd00:1::1/64 and a route for fd00:2::/64
/// via NODE_B6.
fn engine6(c: &Arc<Core>) -> L3Vx {
    let mut cfg = L3VxConfig::new(OWN_MAC, OWN_IP, 24).with_address6(OWN_IP6, 64);
    cfg.queue_per_neigh = 3;
    cfg.queue_bytes = 1000;
    let route = parse_route(&format!("fd00:2::/64={NODE_B6}")).unwrap();
    let routes = Routes::with_overlay_routes(Ipv4Addr::new(192, 0, 2, 1), true, &[route]);
    L3Vx::new(Arc::clone(c), NET, cfg, Arc::new(routes.unwrap()))
}

/// A minimal IPv6 packet (UDP, hop limit 64) from `src` to `dst` of `len` bytes, tagged in its
/// last byte.
fn ip6_packet(src: Ipv6Addr, dst: Ipv6Addr, len: usize, tag: u8) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
    p[6] = 17;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p[len - 1] = tag;
    p
}

/// `packet` framed as it leaves toward `mac`: Ethernet, type IPv6.
fn framed6(mac: MacAddr, packet: &[u8]) -> Vec<u8> {
    let mut f = [mac.0, OWN_MAC.0].concat();
    f.extend_from_slice(&[0x86, 0xdd]);
    f.extend_from_slice(packet);
    f
}

/// An IPv6 next hop is resolved by a neighbour solicitation to its solicited-node group
/// (scapy's bytes, once for two packets); the solicited advertisement creates the binding and
/// releases the packets in order, framed as IPv6; then the fast path answers. A routed
/// destination resolves its route's next hop.
#[test]
fn ipv6_next_hop_resolves_by_neighbor_discovery() {
    let c = core(100);
    let e = engine6(&c);
    let (mut g, mut ctr) = (Generated::new(), Counters::default());
    let p1 = ip6_packet(OWN_IP6, PEER_IP6, 100, 1);
    let p2 = ip6_packet(OWN_IP6, PEER_IP6, 100, 2);
    for p in [&p1, &p2] {
        assert_eq!(e.on_tun(at(0), p, None, &mut g, &mut ctr), TunVerdict::Held);
    }
    assert_eq!(frames(&g), vec![(FrameTo::Tunnel, hex(NS_FOR_PEER))]);
    assert_eq!((ctr.nd_solicits, ctr.arp_requests), (1, 0));
    assert_eq!(e.pending(), (2, 200));
    g.clear();
    assert_eq!(
        e.on_frame(at(0), &hex(NA_FROM_PEER), &mut g, &mut ctr),
        FromTunnel::Consumed
    );
    let want: Vec<_> = [&p1, &p2]
        .iter()
        .map(|p| (FrameTo::Tunnel, framed6(PEER_MAC, p)))
        .collect();
    assert_eq!(frames(&g), want);
    assert_eq!((e.pending(), ctr.neigh_learned), ((0, 0), 1));
    g.clear();
    assert_eq!(
        e.on_tun(at(1), &p1, None, &mut g, &mut ctr),
        TunVerdict::Send(PEER_MAC)
    );
    // Routed: the route's next hop, here a static binding.
    let routed = ip6_packet(OWN_IP6, POD_B6, 60, 3);
    c.neigh_add(at(1), Vni::new(1).unwrap(), NODE_B6, ROUTER_MAC)
        .unwrap();
    assert_eq!(
        e.on_tun(at(1), &routed, None, &mut g, &mut ctr),
        TunVerdict::Send(ROUTER_MAC)
    );
    let off = ip6_packet(OWN_IP6, "fd00:3::1".parse().unwrap(), 60, 4);
    assert_eq!(
        e.on_tun(at(1), &off, None, &mut g, &mut ctr),
        TunVerdict::Drop(DropReason::NoRoute)
    );
    assert!(g.is_empty());
}

/// A solicitation for our IPv6 address is answered with scapy's advertisement and teaches its
/// sender; the advertisement for a hop nobody asked about teaches nothing; solicitations are
/// retried, then the queued packets are dropped as unresolved.
#[test]
fn own_ipv6_address_is_advertised_and_resolution_gives_up() {
    let c = core(100);
    let e = engine6(&c);
    let (mut g, mut ctr) = (Generated::new(), Counters::default());
    assert_eq!(
        e.on_frame(at(0), &hex(NA_FROM_PEER), &mut g, &mut ctr),
        FromTunnel::Consumed
    );
    assert_eq!(
        c.neigh(NET).unwrap().lookup(PEER_IP6, 0),
        None,
        "unsolicited"
    );
    assert_eq!(
        e.on_frame(at(0), &hex(NS_FOR_OWN), &mut g, &mut ctr),
        FromTunnel::Consumed
    );
    assert_eq!(frames(&g), vec![(FrameTo::Tunnel, hex(NA_FROM_OWN))]);
    assert_eq!((ctr.nd_adverts, ctr.neigh_learned), (1, 1));
    assert_eq!(c.neigh(NET).unwrap().lookup(PEER_IP6, 0), Some(PEER_MAC));

    g.clear();
    let p = ip6_packet(OWN_IP6, "fd00:1::9".parse().unwrap(), 80, 1);
    assert_eq!(
        e.on_tun(at(0), &p, None, &mut g, &mut ctr),
        TunVerdict::Held
    );
    for s in 1..=3 {
        e.poll(at(s), &mut g, &mut ctr);
    }
    assert_eq!(ctr.nd_solicits, 3, "the first and two retries");
    assert_eq!(ctr.neigh_failed, 1);
    assert_eq!(ctr.drops_of(DropReason::NeighUnresolved), 1);
    assert_eq!(e.pending(), (0, 0));
}

/// The IPv6 drops: a router advertisement from the tunnel (`bad_nd`), the host's link-scoped
/// multicast (`ipv6_multicast`), a packet to our own address from the TUN (`to_self`); data to
/// us goes into the TUN. Without an IPv6 address every IPv6 packet is `no_ipv6`.
#[test]
fn ipv6_drops_and_delivery() {
    let c = core(100);
    let e = engine6(&c);
    let (mut g, mut ctr) = (Generated::new(), Counters::default());
    assert_eq!(
        e.on_frame(at(0), &hex(ROUTER_ADVERT), &mut g, &mut ctr),
        FromTunnel::Drop(DropReason::BadNd)
    );
    let mld = ip6_packet(Ipv6Addr::UNSPECIFIED, "ff02::16".parse().unwrap(), 60, 0);
    assert_eq!(
        e.on_tun(at(0), &mld, None, &mut g, &mut ctr),
        TunVerdict::Drop(DropReason::Ipv6Multicast)
    );
    let own = ip6_packet(PEER_IP6, OWN_IP6, 60, 0);
    assert_eq!(
        e.on_tun(at(0), &own, None, &mut g, &mut ctr),
        TunVerdict::Drop(DropReason::ToSelf)
    );
    let site = ip6_packet(OWN_IP6, "ff05::2".parse().unwrap(), 60, 0);
    assert_eq!(
        e.on_tun(at(0), &site, None, &mut g, &mut ctr),
        TunVerdict::Send(MacAddr([0x33, 0x33, 0, 0, 0, 2]))
    );
    let mut to_us = [OWN_MAC.0, PEER_MAC.0].concat();
    to_us.extend_from_slice(&[0x86, 0xdd]);
    to_us.extend_from_slice(&own);
    assert_eq!(
        e.on_frame(at(0), &to_us, &mut g, &mut ctr),
        deliver(14, &to_us)
    );
    assert!(g.is_empty());

    let v4 = engine(&c);
    assert_eq!(
        v4.on_tun(at(0), &own, None, &mut g, &mut ctr),
        TunVerdict::Drop(DropReason::NoIpv6)
    );
    assert_eq!(
        v4.on_frame(at(0), &to_us, &mut g, &mut ctr),
        FromTunnel::Drop(DropReason::NoIpv6)
    );
}
