//! `l3vx_engine`: the L3 VXLAN engine ([`L3Vx::on_remote`], [`L3Vx::on_local`],
//! [`L3Vx::on_frame`], [`L3Vx::on_tun`], [`L3Vx::poll`]) with a virtual clock, static
//! neighbours and routes changed by the input, driven by a sequence of operations.
//!
//! A model of the pending queue (packets held per unresolved next hop, ARP tries, retry
//! times) is kept beside the engine. Checked after every step:
//! - no panic; the pending queue is what the model says ([`L3Vx::pending`]), so it stays within
//!   its byte bound and, hop by hop, its per-hop bound (a packet past either is dropped as
//!   `neigh_queue_full`, never held);
//! - a packet from the TUN is held exactly when its next hop is unresolved and there is room,
//!   sent when it is resolved (framed for the bound MAC, to its FDB remote or the flood list),
//!   dropped for the reasons the engine documents otherwise;
//! - `poll` re-asks, gives up after the last try (the packets counted as `neigh_unresolved`)
//!   or releases, as the model says;
//! - every generated frame parses as Ethernet from our MAC: ARP requests and replies that
//!   parse as ARP from our address, released packets as they were held, echo replies whose
//!   IPv4 and ICMP checksums verify;
//! - every drop is counted (drops in `Counters` = Drop decisions + packets given up).

use crate::core_ops::datagram;
use crate::frames;
use crate::input::{Input, Writer};
use encap::arp::{ArpOperation, ArpPacket, ArpRepr};
use encap::ethernet::EthernetFrame;
use encap::ipv4::Ipv4Packet;
use encap::{MacAddr, Vni};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use vtepd::core::arp::FrameTo;
use vtepd::core::l3vx::{L3Vx, L3VxConfig, TunVerdict};
use vtepd::core::route::{Route, Routes};
use vtepd::core::{
    Core, CoreConfig, Counters, DropReason, FromDevice, FromTunnel, NetId, NetworkConfig, Out,
    Outer, Timestamp,
};

/// Our underlay address.
pub const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Flood-list peers (and R3, unknown).
pub const PEERS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(192, 0, 2, 2),
    Ipv4Addr::new(192, 0, 2, 3),
    Ipv4Addr::new(192, 0, 2, 4),
];
/// Our MAC on the overlay.
pub const OWN_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
/// Our overlay address (10.244.0.0/24, as in the scapy vectors of tests/l3_vxlan_core.rs).
pub const OWN_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 0);
/// An on-link peer.
pub const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 7);
/// A remote node's overlay address: the next hop of 10.244.1.0/24.
pub const NODE_B: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 0);
/// MACs frames and bindings use.
pub const MACS: [MacAddr; 7] = [
    OWN_MAC,
    MacAddr([2, 0, 0, 0, 0, 2]),
    MacAddr([2, 0, 0, 0, 0, 3]),
    MacAddr([2, 0, 0, 0, 0, 4]),
    MacAddr::BROADCAST,
    MacAddr([1, 0, 0x5e, 0, 0, 5]),
    MacAddr::ZERO,
];
/// Overlay addresses packets and ARP carry.
pub const IPS: [Ipv4Addr; 12] = [
    OWN_IP,
    PEER_IP,
    Ipv4Addr::new(10, 244, 0, 9),
    NODE_B,
    Ipv4Addr::new(10, 244, 1, 5),
    Ipv4Addr::new(10, 244, 2, 5),
    Ipv4Addr::new(10, 244, 0, 255),
    Ipv4Addr::new(10, 9, 9, 9),
    Ipv4Addr::BROADCAST,
    Ipv4Addr::new(224, 0, 0, 5),
    Ipv4Addr::UNSPECIFIED,
    LOCAL,
];
/// Underlay sources.
pub const SOURCES: [Ipv4Addr; 4] = [PEERS[0], PEERS[1], PEERS[2], LOCAL];
/// Prefixes routes are made of.
pub const PREFIXES: [&str; 3] = ["10.244.1.0/24", "10.244.2.0/24", "10.245.0.0/16"];
/// Bounds of the pending queue.
pub const QUEUE_PER_NEIGH: usize = 3;
/// Bytes held for all next hops.
pub const QUEUE_BYTES: usize = 600;
/// ARP tries.
pub const ARP_TRIES: u32 = 3;
/// Between them.
pub const ARP_INTERVAL: Duration = Duration::from_secs(1);
/// Neighbour ageing.
pub const AGEING: Duration = Duration::from_secs(30);

/// The operations (the first byte of each, modulo their number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A VXLAN datagram from the underlay: source, outer TOS, datagram.
    Remote = 0,
    /// A decapsulated frame: [`L3Vx::on_frame`].
    Frame = 1,
    /// A packet from the TUN in a frame with room for the Ethernet header: [`L3Vx::on_local`].
    Local = 2,
    /// A packet from the TUN with the caller's route: [`L3Vx::on_tun`].
    Tun = 3,
    /// Timer work: [`L3Vx::poll`].
    Poll = 4,
    /// Time passes.
    Step = 5,
    /// `neigh add`: address, MAC.
    NeighAdd = 6,
    /// `neigh del`: address.
    NeighDel = 7,
    /// The ageing pass ([`Core::expire`]).
    Expire = 8,
    /// `routes add` or `routes del`.
    Route = 9,
}
const OPS: u8 = 10;

/// One next hop's waiting packets, as the model sees them.
#[derive(Debug, Default)]
struct Waiting {
    packets: Vec<Vec<u8>>,
    tries: u32,
    next_try: Timestamp,
}

#[derive(Debug)]
struct Model {
    pending: BTreeMap<Ipv4Addr, Waiting>,
    bytes: usize,
    drops: Vec<u64>,
    rx_device: u64,
    rx_tunnel: u64,
    arp_requests: u64,
    neigh_failed: u64,
}

impl Model {
    fn packets(&self) -> usize {
        self.pending.values().map(|w| w.packets.len()).sum()
    }
}

struct World {
    core: Arc<Core>,
    e: L3Vx,
    /// The engine's route table (the fuzz edits it as the control plane does).
    routes: Arc<Routes>,
    m: Model,
    out: Out,
    ctr: Counters,
    now: Timestamp,
}

fn packet(inp: &mut Input<'_>) -> Vec<u8> {
    if inp.u8() & 1 == 0 {
        frames::ipv4(inp, &IPS)
    } else {
        inp.bytes().to_vec()
    }
}

/// Encodes a valid IPv4 packet (to `dst`) for a Local op.
pub fn write_local(w: &mut Writer, dst: Ipv4Addr, payload: &[u8]) {
    w.u8(Op::Local as u8).u8(0);
    frames::write_ipv4_packet(w, 0, 64, 17, OWN_IP, dst, payload);
}

/// Encodes a frame for a Frame op.
pub fn write_frame(w: &mut Writer, frame: impl FnOnce(&mut Writer)) {
    w.u8(Op::Frame as u8);
    frame(w);
}

/// Encodes a Poll op after `ms` milliseconds.
pub fn write_poll_after(w: &mut Writer, ms: u16) {
    w.u8(Op::Step as u8).u8(2).u16(ms).u8(Op::Poll as u8);
}

/// The target's body.
pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let cfg = inp.u8();
    let core = Arc::new(
        Core::new(CoreConfig {
            local: LOCAL.into(),
            allow_any_peer: cfg & 1 != 0,
            networks: vec![NetworkConfig {
                vni: Vni::new(1).unwrap(),
                peers: PEERS[..2].iter().map(|&p| p.into()).collect(),
                own_mac: OWN_MAC,
                learning: true,
                ageing: AGEING,
                max_learned: 4,
                ..Default::default()
            }],
        })
        .expect("a valid core"),
    );
    let routes = Routes::with_overlay_routes(
        LOCAL,
        false,
        &[
            Route {
                prefix: PREFIXES[0].parse().unwrap(),
                via: NODE_B.into(),
            },
            Route {
                prefix: PREFIXES[1].parse().unwrap(),
                via: PEER_IP.into(),
            },
        ],
    )
    .expect("valid routes");
    let mut lcfg = L3VxConfig::new(OWN_MAC, OWN_IP, 24);
    lcfg.queue_per_neigh = QUEUE_PER_NEIGH;
    lcfg.queue_bytes = QUEUE_BYTES;
    lcfg.arp_tries = ARP_TRIES;
    lcfg.arp_interval = ARP_INTERVAL;
    let routes = Arc::new(routes);
    let e = L3Vx::new(Arc::clone(&core), NetId(0), lcfg, Arc::clone(&routes));
    let mut w = World {
        core,
        e,
        routes,
        m: Model {
            pending: BTreeMap::new(),
            bytes: 0,
            drops: vec![0; DropReason::COUNT],
            rx_device: 0,
            rx_tunnel: 0,
            arp_requests: 0,
            neigh_failed: 0,
        },
        out: Out::default(),
        ctr: Counters::default(),
        now: Timestamp(1_000_000),
    };
    let mut steps = 0;
    while !inp.is_empty() && steps < 128 {
        steps += 1;
        w.out.generated.clear();
        match inp.u8() % OPS {
            0 => {
                let src = inp.ip(&SOURCES);
                let tos = inp.u8();
                let mut d = datagram(&mut inp, &MACS, &IPS);
                w.remote(src, tos, &mut d);
            }
            1 => {
                let f = frames::frame(&mut inp, &MACS, &IPS);
                let v = w.e.on_frame(w.now, &f, &mut w.out.generated, &mut w.ctr);
                w.frame_decided(&f, 0, &v);
            }
            2 => {
                let p = packet(&mut inp);
                w.local(&p);
            }
            3 => {
                let p = packet(&mut inp);
                let route = inp.bool().then(|| inp.ip(&IPS));
                w.tun(&p, route);
            }
            4 => w.poll(),
            5 => {
                let d = match inp.u8() % 3 {
                    0 => Duration::from_millis(u64::from(inp.u8())),
                    1 => Duration::from_secs(u64::from(inp.u8() % 8)),
                    _ => Duration::from_millis(u64::from(inp.u16())),
                };
                w.now = w.now + d;
            }
            6 => {
                let (ip, mac) = (inp.ip(&IPS), inp.mac(&MACS));
                let _ = w.core.neigh_add(w.now, Vni::new(1).unwrap(), ip, mac);
            }
            7 => {
                let ip = inp.ip(&IPS);
                let _ = w.core.neigh_del(Vni::new(1).unwrap(), ip);
            }
            8 => {
                w.core.expire(w.now);
            }
            _ => {
                let s = inp.u8();
                let prefix = PREFIXES[usize::from(s >> 1) % PREFIXES.len()]
                    .parse()
                    .unwrap();
                if s & 1 == 0 {
                    let via = inp.ip(&IPS);
                    let _ = w.routes.add(Route {
                        prefix,
                        via: via.into(),
                    });
                } else {
                    w.routes.del(prefix);
                }
            }
        }
        crate::trace!(
            "pending {:?} generated {}",
            w.e.pending(),
            w.out.generated.len()
        );
        w.check();
    }
    crate::trace!("{:?}", w.ctr);
}

/// What `on_tun` must decide for `packet` (with the caller's `route`): a verdict, or the next
/// hop to hold it for.
enum Expect {
    Verdict(TunVerdict),
    Hold(Ipv4Addr),
}

impl World {
    fn vni(&self) -> Vni {
        Vni::new(1).unwrap()
    }

    fn lookup(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        self.core
            .neigh(NetId(0))
            .unwrap()
            .lookup(ip, self.now.millis())
    }

    fn dropped(&mut self, r: DropReason) {
        self.m.drops[r as usize] += 1;
    }

    /// The engine's decision, as documented: IPv6 (no address for it), not IPv4, to ourselves, broadcast, multicast,
    /// no route, resolved, or unresolved.
    fn expect(&self, packet: &[u8], route: Option<Ipv4Addr>) -> Expect {
        // This world's network has no IPv6 address.
        if packet.first().is_some_and(|b| b >> 4 == 6) {
            return Expect::Verdict(TunVerdict::Drop(DropReason::NoIpv6));
        }
        if packet.len() < 20 || packet[0] >> 4 != 4 {
            return Expect::Verdict(TunVerdict::Drop(DropReason::NotIpv4));
        }
        let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
        let on_link = u32::from(dst) >> 8 == u32::from(OWN_IP) >> 8;
        if dst == OWN_IP {
            return Expect::Verdict(TunVerdict::Drop(DropReason::ToSelf));
        }
        if dst.is_broadcast() || (on_link && dst.octets()[3] == 255) {
            return Expect::Verdict(TunVerdict::Send(MacAddr::BROADCAST));
        }
        if dst.is_multicast() {
            let o = dst.octets();
            return Expect::Verdict(TunVerdict::Send(MacAddr([
                1,
                0,
                0x5e,
                o[1] & 0x7f,
                o[2],
                o[3],
            ])));
        }
        let Some(hop) = (if on_link { Some(dst) } else { route }) else {
            return Expect::Verdict(TunVerdict::Drop(DropReason::NoRoute));
        };
        match self.lookup(hop) {
            Some(mac) => Expect::Verdict(TunVerdict::Send(mac)),
            None => Expect::Hold(hop),
        }
    }

    /// What holding `packet` for `hop` must do: hold it (and ask, the first time) or drop it.
    fn hold(&mut self, hop: Ipv4Addr, packet: &[u8], v: TunVerdict) {
        let w = self.m.pending.get(&hop);
        let full = self.m.bytes + packet.len() > QUEUE_BYTES
            || w.is_some_and(|w| w.packets.len() >= QUEUE_PER_NEIGH);
        if full {
            assert_eq!(
                v,
                TunVerdict::Drop(DropReason::NeighQueueFull),
                "past the bounds"
            );
            self.dropped(DropReason::NeighQueueFull);
            assert!(self.out.generated.is_empty());
            return;
        }
        assert_eq!(v, TunVerdict::Held, "unresolved with room: held");
        let first = w.is_none();
        let now = self.now;
        let w = self.m.pending.entry(hop).or_insert_with(|| Waiting {
            packets: Vec::new(),
            tries: 1,
            next_try: now + ARP_INTERVAL,
        });
        w.packets.push(packet.to_vec());
        self.m.bytes += packet.len();
        let g: Vec<_> = self
            .out
            .generated
            .iter()
            .map(|(t, f)| (t, f.to_vec()))
            .collect();
        if first {
            self.m.arp_requests += 1;
            assert_eq!(g.len(), 1, "the first packet for {hop} asks for it");
            assert_eq!(g[0].0, FrameTo::Tunnel);
            check_request(&g[0].1, hop);
        } else {
            assert!(g.is_empty(), "asked once per next hop");
        }
    }

    fn tun(&mut self, packet: &[u8], route: Option<Ipv4Addr>) {
        let expect = self.expect(packet, route);
        let v = self.e.on_tun(
            self.now,
            packet,
            route,
            &mut self.out.generated,
            &mut self.ctr,
        );
        crate::trace!("tun {packet:02x?} via {route:?}: {v:?}");
        match expect {
            Expect::Verdict(want) => {
                assert_eq!(v, want, "on_tun");
                if let TunVerdict::Drop(r) = v {
                    self.dropped(r);
                }
                assert!(self.out.generated.is_empty());
            }
            Expect::Hold(hop) => self.hold(hop, packet, v),
        }
    }

    fn local(&mut self, packet: &[u8]) {
        self.m.rx_device += 1;
        let mut frame = vec![0u8; 14];
        frame.extend_from_slice(packet);
        let route = packet.get(16..20).and_then(|d| {
            self.routes
                .load()
                .lookup(Ipv4Addr::new(d[0], d[1], d[2], d[3]))
        });
        let expect = self.expect(packet, route);
        let v = self
            .e
            .on_local(self.now, &mut frame, &mut self.out, &mut self.ctr);
        crate::trace!(
            "local {packet:02x?}: {v:?} {:?}",
            self.out.remotes.as_slice()
        );
        match (expect, v) {
            (Expect::Hold(hop), FromDevice::Held) => self.hold(hop, packet, TunVerdict::Held),
            (Expect::Hold(hop), FromDevice::Drop(r)) => self.hold(hop, packet, TunVerdict::Drop(r)),
            (Expect::Verdict(TunVerdict::Drop(want)), v) => {
                assert_eq!(v, FromDevice::Drop(want), "on_local");
                self.dropped(want);
            }
            (Expect::Verdict(TunVerdict::Send(mac)), FromDevice::Tunnel) => {
                assert_eq!(&frame[..6], &mac.0, "framed for the next hop");
                assert_eq!(&frame[6..12], &OWN_MAC.0);
                assert_eq!(&frame[12..14], &[8, 0]);
                assert_eq!(&frame[14..], packet, "the packet unchanged");
                let want = match self.core.fdb_lookup(self.now, self.vni(), mac) {
                    Some(r) if !mac.is_multicast() => vec![r],
                    _ => PEERS[..2].iter().map(|&p| p.into()).collect(),
                };
                assert_eq!(
                    out_remotes(&self.out),
                    want,
                    "to its FDB remote or the flood list"
                );
                assert!(self.out.generated.is_empty());
            }
            (e, v) => panic!("on_local: {v:?}, expected {}", describe(&e)),
        }
    }

    fn remote(&mut self, src: Ipv4Addr, tos: u8, d: &mut [u8]) {
        self.m.rx_tunnel += 1;
        let v = self.e.on_remote(
            self.now,
            Outer {
                tos,
                ..Outer::from(src)
            },
            d,
            &mut self.out,
            &mut self.ctr,
        );
        // The frame as on_frame saw it (after the core's ECN rewrite).
        let frame = d.get(8..).unwrap_or_default().to_vec();
        self.frame_decided(&frame, 8, &v);
    }

    /// Checks an `on_frame` decision (of a frame at `at` in the caller's buffer) and what it
    /// generated, and follows the releases into the model.
    fn frame_decided(&mut self, frame: &[u8], at: usize, v: &FromTunnel) {
        crate::trace!("frame {frame:02x?}: {v:?}");
        match v {
            FromTunnel::Deliver { net, range } => {
                assert_eq!(*net, NetId(0));
                assert!(range.start >= at + 14 && range.end == at + frame.len());
                let p = &frame[range.start - at..];
                assert!(p.len() >= 20 && p[0] >> 4 == 4, "delivers IPv4 only");
                assert!(frame[..6] == OWN_MAC.0 || frame[..6] == [0xff; 6], "for us");
            }
            FromTunnel::Drop(r) => self.dropped(*r),
            FromTunnel::Consumed => {
                assert!(
                    !self.out.generated.is_empty() || is_arp(frame),
                    "consumed: ARP or echo"
                );
            }
        }
        let before = self.m.packets();
        let (pk, _) = self.e.pending();
        let mut released = Vec::new();
        if pk < before {
            // Released: all of one next hop's packets, the ARP sender's.
            let a = ArpRepr::parse(&ArpPacket::new_unchecked(&frame[14..])).expect("ARP");
            let w = self
                .m
                .pending
                .remove(&a.sender_ip)
                .expect("released a pending hop");
            assert_eq!(before - pk, w.packets.len(), "released the whole queue");
            self.m.bytes -= w.packets.iter().map(Vec::len).sum::<usize>();
            let mac = self.lookup(a.sender_ip).expect("released to a binding");
            released = w.packets.into_iter().map(|p| framed(mac, &p)).collect();
        }
        self.check_generated(released);
    }

    fn poll(&mut self) {
        let now = self.now;
        let due: Vec<Ipv4Addr> = self
            .m
            .pending
            .iter()
            .filter(|(_, w)| w.next_try <= now)
            .map(|(h, _)| *h)
            .collect();
        let mut released = Vec::new();
        let mut asked = Vec::new();
        for hop in due {
            if let Some(mac) = self.lookup(hop) {
                let w = self.m.pending.remove(&hop).unwrap();
                self.m.bytes -= w.packets.iter().map(Vec::len).sum::<usize>();
                released.extend(w.packets.iter().map(|p| framed(mac, p)));
                continue;
            }
            let w = self.m.pending.get_mut(&hop).unwrap();
            if w.tries >= ARP_TRIES {
                let w = self.m.pending.remove(&hop).unwrap();
                self.m.bytes -= w.packets.iter().map(Vec::len).sum::<usize>();
                self.m.drops[DropReason::NeighUnresolved as usize] += w.packets.len() as u64;
                self.m.neigh_failed += 1;
                continue;
            }
            w.tries += 1;
            w.next_try = now + ARP_INTERVAL;
            self.m.arp_requests += 1;
            asked.push(hop);
        }
        self.e.poll(now, &mut self.out.generated, &mut self.ctr);
        crate::trace!("poll at {now:?}: due {asked:?} released {}", released.len());
        let mut requests = Vec::new();
        let mut others = Vec::new();
        for (to, f) in self.out.generated.iter() {
            assert_eq!(to, FrameTo::Tunnel);
            if is_arp(f) {
                let a = ArpRepr::parse(&ArpPacket::new_unchecked(&f[14..])).unwrap();
                check_request(f, a.target_ip);
                requests.push(a.target_ip);
            } else {
                others.push(f.to_vec());
            }
        }
        requests.sort();
        asked.sort();
        assert_eq!(requests, asked, "poll asks again for the due next hops");
        others.sort();
        released.sort();
        assert_eq!(
            others, released,
            "poll releases the resolved next hops' packets"
        );
    }

    /// Every generated frame parses as Ethernet from our MAC; ARP parses as ARP from our
    /// address; IPv4 is an echo reply whose checksums verify, or one of `released`.
    fn check_generated(&self, mut released: Vec<Vec<u8>>) {
        let mut got_released = Vec::new();
        for (to, f) in self.out.generated.iter() {
            assert_eq!(to, FrameTo::Tunnel, "L3 VXLAN frames go to the tunnel");
            let eth = EthernetFrame::new_checked(f).expect("a generated frame parses");
            assert_eq!(eth.src(), OWN_MAC);
            match eth.ethertype() {
                0x0806 => {
                    let a = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap())
                        .expect("generated ARP parses");
                    assert_eq!((a.sender_mac, a.sender_ip), (OWN_MAC, OWN_IP));
                    match a.operation {
                        ArpOperation::Reply => assert_eq!(eth.dst(), a.target_mac),
                        ArpOperation::Request => assert!(eth.dst().is_broadcast()),
                        o => panic!("generated ARP operation {o:?}"),
                    }
                }
                0x0800 => {
                    let p = eth.payload();
                    let ip = Ipv4Packet::new_checked(p);
                    let echo = ip.as_ref().is_ok_and(|ip| {
                        ip.src() == OWN_IP && ip.protocol() == 1 && p.get(20) == Some(&0)
                    });
                    if echo && !released.iter().any(|r| r == f) {
                        let ip = ip.unwrap();
                        assert!(ip.verify_checksum(), "echo reply IPv4 checksum");
                        assert!(
                            encap::checksum::verify(&p[20..]),
                            "echo reply ICMP checksum"
                        );
                    } else {
                        got_released.push(f.to_vec());
                    }
                }
                t => panic!("generated ethertype {t:#x}"),
            }
        }
        got_released.sort();
        released.sort();
        assert_eq!(got_released, released, "released packets as they were held");
    }

    fn check(&self) {
        let (pk, by) = self.e.pending();
        assert_eq!(
            (pk, by),
            (self.m.packets(), self.m.bytes),
            "the pending queue"
        );
        assert!(by <= QUEUE_BYTES, "the byte bound");
        for (hop, w) in &self.m.pending {
            assert!(
                w.packets.len() <= QUEUE_PER_NEIGH,
                "the per-hop bound of {hop}"
            );
        }
        for r in DropReason::ALL {
            assert_eq!(
                self.ctr.drops_of(*r),
                self.m.drops[*r as usize],
                "drops counted as {r}"
            );
        }
        assert_eq!(self.ctr.rx_device, self.m.rx_device);
        assert_eq!(self.ctr.rx_tunnel, self.m.rx_tunnel);
        assert_eq!(self.ctr.arp_requests, self.m.arp_requests);
        assert_eq!(self.ctr.neigh_failed, self.m.neigh_failed);
    }
}

fn describe(e: &Expect) -> String {
    match e {
        Expect::Verdict(v) => format!("{v:?}"),
        Expect::Hold(h) => format!("held for {h}"),
    }
}

fn out_remotes(out: &Out) -> Vec<std::net::IpAddr> {
    out.remotes.as_slice().iter().map(|r| r.ip()).collect()
}

fn is_arp(f: &[u8]) -> bool {
    f.get(12..14) == Some(&[8, 6])
}

/// A packet released to `mac`: framed for it, from us.
fn framed(mac: MacAddr, p: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + p.len());
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&OWN_MAC.0);
    f.extend_from_slice(&[8, 0]);
    f.extend_from_slice(p);
    f
}

/// A broadcast who-has `hop` from us.
fn check_request(f: &[u8], hop: Ipv4Addr) {
    let eth = EthernetFrame::new_checked(f).expect("the request parses");
    assert!(eth.dst().is_broadcast());
    assert_eq!(eth.src(), OWN_MAC);
    let a = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
    assert_eq!(a.operation, ArpOperation::Request);
    assert_eq!(
        (a.sender_mac, a.sender_ip, a.target_ip),
        (OWN_MAC, OWN_IP, hop)
    );
}
