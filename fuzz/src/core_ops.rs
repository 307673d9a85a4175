//! `core_ops`: the L2 core (the [`L2`] engine over a [`Core`] of two networks) driven by a
//! sequence of operations decoded from the input: frames from the local devices, VXLAN
//! datagrams from several remote sources, control-plane changes (static FDB entries, flushes,
//! flood-list peers, neighbour bindings, `--allow-any-peer`), ageing and time steps.
//!
//! A small model (the static entries, the flood lists, the decisions taken) is kept beside the
//! core, and after every step the invariants are checked:
//! - the learned-entry cap of each network holds, and the FDB holds exactly the static entries
//!   plus the learned ones counted against the caps;
//! - static entries never move or disappear but by the control plane;
//! - a datagram from the tunnel is delivered or dropped, never anything else (split horizon),
//!   and only from a known remote (flood-list peer or static remote) unless `allow_any_peer`;
//! - every drop is counted: the drops in `Counters`, reason by reason, are the Drop decisions;
//! - a device frame goes to exactly its FDB remote (known unicast) or to exactly the flood list;
//! - a simulation (`trace --inject`: the traced variant with a `Recorder<true>`) of each frame and
//!   datagram, run first, decides what the real call then decides and changes no FDB entry and
//!   no neighbour binding.

use crate::frames;
use crate::input::{Input, Writer};
use encap::{MacAddr, Vni};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;
use vtepd::core::arp::FrameTo;
use vtepd::core::dampening::MoveLimit;
use vtepd::core::l2::L2;
use vtepd::core::trace::Recorder;
use vtepd::core::{
    Core, CoreConfig, Counters, DropReason, EntryKind, FromDevice, FromTunnel, NetId,
    NetworkConfig, Out, Outer, Timestamp,
};

/// Our underlay address.
pub const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
/// Remote VTEPs: R1-R3 start as flood-list peers, R4 is unknown.
pub const R: [IpAddr; 4] = [
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3)),
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 4)),
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 5)),
];
/// Underlay addresses a datagram may come from or a control change may name.
pub const IPS: [IpAddr; 10] = [
    R[0],
    R[1],
    R[2],
    R[3],
    LOCAL,
    IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    IpAddr::V4(Ipv4Addr::BROADCAST),
    IpAddr::V4(Ipv4Addr::new(224, 0, 0, 1)),
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
    // Of the other family than LOCAL: never a remote of these networks.
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
];
/// The networks' VNIs; a third VNI is not configured.
pub const VNIS: [u32; 3] = [1, 2, 3];
/// The networks' UDP ports (each network takes datagrams from its own only).
pub const PORTS: [u16; 2] = [4789, 8472];
/// The devices' own MACs.
pub const OWN: [MacAddr; 2] = [MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2])];
/// Inner MACs: hosts, our own, broadcast, multicast, zero.
pub const MACS: [MacAddr; 11] = [
    MacAddr([2, 0, 0, 0, 1, 1]),
    MacAddr([2, 0, 0, 0, 1, 2]),
    MacAddr([2, 0, 0, 0, 1, 3]),
    MacAddr([2, 0, 0, 0, 1, 4]),
    MacAddr([2, 0, 0, 0, 1, 5]),
    MacAddr([2, 0, 0, 0, 1, 6]),
    OWN[0],
    OWN[1],
    MacAddr::BROADCAST,
    MacAddr([1, 0, 0x5e, 0, 0, 1]),
    MacAddr::ZERO,
];
/// Overlay addresses inside ARP packets.
pub const OVERLAY: [Ipv4Addr; 6] = [
    Ipv4Addr::new(10, 42, 0, 1),
    Ipv4Addr::new(10, 42, 0, 2),
    Ipv4Addr::new(10, 42, 0, 3),
    Ipv4Addr::new(10, 42, 0, 4),
    Ipv4Addr::UNSPECIFIED,
    Ipv4Addr::BROADCAST,
];
/// Learned entries allowed per network.
pub const MAX_LEARNED: [usize; 2] = [3, 2];
/// Ageing per network.
pub const AGEING: [Duration; 2] = [Duration::from_secs(10), Duration::from_secs(3)];
/// The initial flood lists.
fn initial_peers(net: usize) -> Vec<IpAddr> {
    if net == 0 {
        vec![R[0], R[1]]
    } else {
        vec![R[1], R[2]]
    }
}

/// The operations (the first byte of each, modulo their number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A frame from a device: network (0, 1, or 2: no such network), frame.
    Local = 0,
    /// A datagram from the underlay: source, outer TOS, datagram.
    Remote = 1,
    /// `fdb add`: VNI, MAC, remote.
    FdbAdd = 2,
    /// `fdb del`: VNI, MAC.
    FdbDel = 3,
    /// `fdb flush`: VNI or all, learned only.
    FdbFlush = 4,
    /// `peers add`: VNI, address.
    PeerAdd = 5,
    /// `peers del`: VNI, address.
    PeerDel = 6,
    /// The ageing pass.
    Expire = 7,
    /// Time passes.
    Step = 8,
    /// `--allow-any-peer` on or off.
    AllowAny = 9,
    /// `neigh add`: VNI, address, MAC.
    NeighAdd = 10,
    /// `neigh del`: VNI, address.
    NeighDel = 11,
}
const OPS: u8 = 12;

fn vni(inp: &mut Input<'_>) -> Vni {
    let s = inp.u8();
    let v = if s == 0xff {
        u32::from_be_bytes([0, inp.u8(), inp.u8(), inp.u8()])
    } else {
        VNIS[usize::from(s) % VNIS.len()]
    };
    Vni::new(v & Vni::MAX).unwrap_or(Vni::ZERO)
}

/// A VXLAN datagram: raw, or a header (the I flag set, or raw flags) with a VNI from the
/// pool and a frame.
pub fn datagram(inp: &mut Input<'_>, macs: &[MacAddr], ips: &[Ipv4Addr]) -> Vec<u8> {
    let mode = inp.u8();
    if mode & 0x80 != 0 {
        return inp.bytes().to_vec();
    }
    let mut d = vec![0u8; 8];
    if mode & 0x40 != 0 {
        d[0] = inp.u8();
        d[1..4].copy_from_slice(&inp.array::<3>());
        d[7] = inp.u8();
    } else {
        d[0] = 0x08;
    }
    let v = vni(inp);
    d[4..7].copy_from_slice(&v.get().to_be_bytes()[1..]);
    d.extend_from_slice(&frames::frame(inp, macs, ips));
    d
}

/// Encodes a structured datagram for [`datagram`]: VNI (raw) and an encoded frame.
pub fn write_datagram(w: &mut Writer, vni: u32, frame: impl FnOnce(&mut Writer)) {
    let b = vni.to_be_bytes();
    w.u8(0).u8(0xff).raw(&b[1..]);
    frame(w);
}

/// What the model expects of the core.
#[derive(Debug, Default)]
struct Model {
    /// Static entries: (VNI, MAC) -> remote.
    statics: BTreeMap<(u32, [u8; 6]), IpAddr>,
    /// Flood lists by network.
    flood: [Vec<IpAddr>; 2],
    allow_any: bool,
    learning: [bool; 2],
    suppress: [bool; 2],
    /// Drop decisions by reason.
    drops: Vec<u64>,
    rx_tunnel: u64,
    rx_device: u64,
    flood_copies: u64,
    arp_suppressed: u64,
}

impl Model {
    fn known(&self, net: usize, ip: IpAddr) -> bool {
        let v = VNIS[net];
        self.flood[net].contains(&ip) || self.statics.iter().any(|(k, r)| k.0 == v && *r == ip)
    }
    fn dropped(&mut self, r: DropReason) {
        self.drops[r as usize] += 1;
    }
}

fn net_of(v: Vni) -> Option<usize> {
    VNIS[..2].iter().position(|x| *x == v.get())
}

fn usable_remote(ip: IpAddr) -> bool {
    !ip.is_unspecified()
        && !ip.is_loopback()
        && !ip.is_multicast()
        && ip != IpAddr::V4(Ipv4Addr::BROADCAST)
        && ip != LOCAL
        && ip.is_ipv4() == LOCAL.is_ipv4()
}

/// The target's body.
pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let cfg = inp.u8();
    let mut m = Model {
        allow_any: cfg & 1 != 0,
        learning: [cfg & 2 == 0, cfg & 4 == 0],
        suppress: [cfg & 8 != 0, cfg & 16 != 0],
        flood: [initial_peers(0), initial_peers(1)],
        drops: vec![0; DropReason::COUNT],
        ..Model::default()
    };
    let networks = (0..2)
        .map(|i| NetworkConfig {
            vni: Vni::new(VNIS[i]).unwrap(),
            peers: initial_peers(i),
            own_mac: OWN[i],
            learning: m.learning[i],
            ageing: AGEING[i],
            max_learned: MAX_LEARNED[i],
            mac_move: MoveLimit::OFF, // the model does not freeze MACs
            port: PORTS[i],
            ..Default::default()
        })
        .collect();
    let core = Arc::new(
        Core::new(CoreConfig {
            local: LOCAL,
            allow_any_peer: m.allow_any,
            networks,
        })
        .expect("a valid core"),
    );
    let l2 = L2::new(Arc::clone(&core), m.suppress.to_vec());
    let mut now = Timestamp(1_000_000);
    let mut out = Out::with_capacity(8);
    let mut ctr = Counters::default();
    let mut steps = 0;
    while !inp.is_empty() && steps < 256 {
        steps += 1;
        let op = inp.u8() % OPS;
        match op {
            0 => {
                let net = inp.u8() % 3;
                let frame = frames::frame(&mut inp, &MACS, &OVERLAY);
                local(&core, &l2, &mut m, now, net, &frame, &mut out, &mut ctr);
            }
            1 => {
                let src = inp.underlay(&IPS);
                let tos = inp.u8();
                let mut d = datagram(&mut inp, &MACS, &OVERLAY);
                remote(&core, &l2, &mut m, now, src, tos, &mut d, &mut ctr);
            }
            2 => {
                let (v, mac, remote) = (vni(&mut inp), inp.mac(&MACS), inp.underlay(&IPS));
                let r = core.fdb_add(now, v, mac, remote);
                let ok = net_of(v).is_some() && mac.is_unicast() && usable_remote(remote);
                assert_eq!(r.is_ok(), ok, "fdb add {v} {mac} {remote}: {r:?}");
                if ok {
                    m.statics.insert((v.get(), mac.0), remote);
                }
            }
            3 => {
                let (v, mac) = (vni(&mut inp), inp.mac(&MACS));
                let r = core.fdb_del(v, mac);
                assert_eq!(r.is_ok(), net_of(v).is_some(), "fdb del {v}: {r:?}");
                let was_static = m.statics.remove(&(v.get(), mac.0)).is_some();
                if was_static {
                    assert_eq!(r, Ok(true), "a static entry was there to delete");
                }
            }
            4 => {
                let s = inp.u8();
                let v = (s & 1 == 1).then(|| vni(&mut inp));
                let learned_only = inp.bool();
                let before = core.fdb_len();
                let r = core.fdb_flush(v, learned_only);
                match v {
                    Some(v) if net_of(v).is_none() => assert!(r.is_err(), "{r:?}"),
                    _ => {
                        let n = r.expect("flush of a known network");
                        assert_eq!(core.fdb_len(), before - n, "flush removed what it said");
                        if !learned_only {
                            m.statics.retain(|k, _| v.is_some_and(|v| v.get() != k.0));
                        }
                        for (net, vv) in VNIS[..2].iter().enumerate() {
                            if v.is_none_or(|v| v.get() == *vv) {
                                let c = core.learned_count(Vni::new(*vv).unwrap());
                                assert_eq!(c, Some(0), "net {net}: no learned entry left");
                            }
                        }
                    }
                }
            }
            5 => {
                let (v, ip) = (vni(&mut inp), inp.underlay(&IPS));
                let r = core.peer_add(v, ip);
                match net_of(v) {
                    Some(n) if usable_remote(ip) => {
                        let new = !m.flood[n].contains(&ip);
                        assert_eq!(r, Ok(new), "peers add {v} {ip}");
                        if new {
                            m.flood[n].push(ip);
                        }
                    }
                    _ => assert!(r.is_err(), "peers add {v} {ip}: {r:?}"),
                }
            }
            6 => {
                let (v, ip) = (vni(&mut inp), inp.underlay(&IPS));
                let r = core.peer_del(v, ip);
                match net_of(v) {
                    Some(n) => {
                        let pos = m.flood[n].iter().position(|p| *p == ip);
                        assert_eq!(r, Ok(pos.is_some()), "peers del {v} {ip}");
                        if let Some(p) = pos {
                            m.flood[n].remove(p);
                        }
                    }
                    None => assert!(r.is_err(), "peers del {v} {ip}: {r:?}"),
                }
            }
            7 => {
                let before: usize = VNIS[..2]
                    .iter()
                    .filter_map(|v| core.learned_count(Vni::new(*v).unwrap()))
                    .sum();
                let n = core.expire(now);
                let after: usize = VNIS[..2]
                    .iter()
                    .filter_map(|v| core.learned_count(Vni::new(*v).unwrap()))
                    .sum();
                assert_eq!(before - after, n, "expire released what it removed");
            }
            8 => now = step(&mut inp, now),
            9 => {
                m.allow_any = inp.bool();
                core.set_allow_any_peer(m.allow_any);
            }
            10 => {
                let (v, ip, mac) = (vni(&mut inp), inp.ip(&OVERLAY), inp.mac(&MACS));
                let r = core.neigh_add(now, v, ip, mac);
                if r.is_ok() {
                    assert!(net_of(v).is_some() && mac.is_unicast());
                }
            }
            _ => {
                let (v, ip) = (vni(&mut inp), inp.ip(&OVERLAY));
                let r = core.neigh_del(v, ip);
                assert_eq!(r.is_ok(), net_of(v).is_some());
            }
        }
        // Every entry is scanned after control-plane changes and at the end only (the scan
        // walks the whole map: after every packet it would slow the target down a lot).
        let full = op >= 2 || inp.is_empty() || steps == 256;
        check(&core, &m, now, &ctr, full);
    }
    crate::trace!("{ctr:?}\n{:?}", core.fdb_entries(now, None));
}

/// Runs the simulation `sim` and checks that it changed no FDB entry and no neighbour binding;
/// its decision.
fn simulated<V>(core: &Core, now: Timestamp, sim: impl FnOnce(&mut Recorder<true>) -> V) -> V {
    let (fdb, neigh) = (core.fdb_entries(now, None), core.neigh_entries(now, None));
    let v = sim(&mut Recorder::default());
    assert_eq!(
        core.fdb_entries(now, None),
        fdb,
        "a simulation changed the FDB"
    );
    assert_eq!(
        core.neigh_entries(now, None),
        neigh,
        "a simulation changed a neighbour binding"
    );
    v
}

#[allow(clippy::too_many_arguments)]
fn local(
    core: &Core,
    l2: &L2,
    m: &mut Model,
    now: Timestamp,
    net: u8,
    frame: &[u8],
    out: &mut Out,
    ctr: &mut Counters,
) {
    out.generated.clear();
    m.rx_device += 1;
    let n = usize::from(net);
    // What forwarding must decide (unless ARP suppression answers first).
    // (remotes, flooded) or the drop.
    let expect = if n >= 2 {
        Err(DropReason::UnknownNetwork)
    } else if frame.len() < 14 {
        Err(DropReason::LocalRunt)
    } else {
        let dst = MacAddr::from_bytes(frame).unwrap();
        let vni = Vni::new(VNIS[n]).unwrap();
        match core
            .fdb_lookup(now, vni, dst)
            .filter(|_| !dst.is_multicast())
        {
            Some(r) => Ok((vec![r], false)),
            None if m.flood[n].is_empty() => Err(DropReason::NoPeers),
            None => Ok((m.flood[n].clone(), true)),
        }
    };
    let sim = simulated(core, now, |t| {
        let (mut out, mut ctr) = (Out::with_capacity(8), Counters::default());
        l2.on_local_traced(now, NetId(u16::from(net)), frame, &mut out, &mut ctr, t)
    });
    let v = l2.on_local(now, NetId(u16::from(net)), frame, out, ctr);
    assert_eq!(v, sim, "the simulation decided otherwise");
    crate::trace!(
        "local net {net} {frame:02x?}: {v:?} {:?}",
        out.remotes.as_slice()
    );
    match v {
        FromDevice::Tunnel => {
            let (want, flooded) = expect.expect("tunnelled where the model drops");
            assert_eq!(
                out.remotes.as_slice(),
                &want[..],
                "the remotes of a device frame"
            );
            assert_eq!(out.remotes.vni().get(), VNIS[n]);
            assert!(!want.contains(&LOCAL), "never to ourselves");
            if flooded {
                m.flood_copies += want.len() as u64;
            }
            assert!(out.generated.is_empty());
        }
        FromDevice::Drop(r) => {
            assert_eq!(
                Err(r),
                expect.map(|_| ()),
                "the drop reason of a device frame"
            );
            m.dropped(r);
        }
        FromDevice::Answered => {
            assert!(m.suppress[n], "answered without ARP suppression");
            m.arp_suppressed += 1;
            check_suppressed_reply(core, n, now, frame, out);
        }
        FromDevice::Held => panic!("L2 never holds a frame"),
    }
}

/// An answered ARP request: one reply into the device, from the bound MAC to the asker.
fn check_suppressed_reply(core: &Core, n: usize, now: Timestamp, req: &[u8], out: &Out) {
    use encap::arp::{ArpOperation, ArpPacket, ArpRepr};
    let frames: Vec<_> = out.generated.iter().collect();
    assert_eq!(frames.len(), 1, "one reply");
    let (to, reply) = frames[0];
    assert_eq!(to, FrameTo::Device);
    let q = ArpRepr::parse(&ArpPacket::new_unchecked(&req[14..])).expect("a request");
    let a = ArpRepr::parse(&ArpPacket::new_checked(&reply[14..]).expect("28 bytes"))
        .expect("a valid ARP reply");
    let bound = core
        .neigh(NetId(n as u16))
        .and_then(|t| t.lookup(q.target_ip, now.millis()))
        .expect("answered from a binding");
    assert_eq!(q.operation, ArpOperation::Request);
    assert_eq!(a.operation, ArpOperation::Reply);
    assert_eq!((a.sender_mac, a.sender_ip), (bound, q.target_ip));
    assert_eq!((a.target_mac, a.target_ip), (q.sender_mac, q.sender_ip));
    assert_eq!(&reply[..6], &req[6..12], "to the asker");
    assert_eq!(&reply[6..12], &bound.0);
}

#[allow(clippy::too_many_arguments)]
fn remote(
    core: &Core,
    l2: &L2,
    m: &mut Model,
    now: Timestamp,
    src: IpAddr,
    tos: u8,
    d: &mut [u8],
    ctr: &mut Counters,
) {
    m.rx_tunnel += 1;
    let refused_before = ctr.learn_refused;
    let len = d.len();
    // The checks the core must make, in order, up to learning.
    let vni = (len >= 8).then(|| u32::from_be_bytes([0, d[4], d[5], d[6]]));
    let net = vni.and_then(|v| VNIS[..2].iter().position(|x| *x == v));
    let src_mac = d.get(14..20).and_then(MacAddr::from_bytes);
    // Bit 2 of `tos` (a DSCP bit: decapsulation reads only the ECN bits) has it arrive on the
    // other network's port.
    let elsewhere = tos & 0x04 != 0;
    let port = PORTS[net.unwrap_or(0) ^ usize::from(elsewhere)];
    let expect_drop = match net {
        _ if len < 8 => Some(DropReason::Truncated),
        _ if d[0] & 0x08 == 0 => Some(DropReason::VxlanFlags),
        None => Some(DropReason::UnknownVni),
        Some(_) if elsewhere => Some(DropReason::WrongPort),
        Some(n) if !usable_remote(src) || (!m.allow_any && !m.known(n, src)) => {
            Some(DropReason::UnknownPeer)
        }
        _ if len < 8 + 14 => Some(DropReason::InnerRunt),
        _ if !src_mac.is_some_and(|s| s.is_unicast()) => Some(DropReason::BadSourceMac),
        Some(n) if src_mac == Some(OWN[n]) => Some(DropReason::OwnSourceMac),
        // A static entry pins its MAC: from another remote the frame is a spoof.
        Some(n)
            if src_mac
                .and_then(|s| m.statics.get(&(VNIS[n], s.0)))
                .is_some_and(|r| *r != src) =>
        {
            Some(DropReason::StaticConflict)
        }
        _ => None,
    };
    let outer = Outer {
        src: src.into(),
        tos,
        port,
    };
    let sim = simulated(core, now, |t| {
        let mut copy = d.to_vec();
        l2.on_remote_traced(now, outer, &mut copy, &mut Counters::default(), t)
    });
    let v = l2.on_remote(now, outer, d, ctr);
    assert_eq!(v, sim, "the simulation decided otherwise");
    crate::trace!("remote from {src} tos {tos:#x} {d:02x?}: {v:?}");
    let learned_here = match &v {
        FromTunnel::Deliver { net: id, range } => {
            assert_eq!(expect_drop, None, "delivered what the core must drop");
            assert_eq!(
                Some(usize::from(id.0)),
                net,
                "delivered to the VNI's network"
            );
            assert_eq!(range.clone(), 8..len, "the inner frame");
            true
        }
        FromTunnel::Drop(r) => {
            m.dropped(*r);
            match expect_drop {
                Some(e) => {
                    assert_eq!(*r, e, "the drop reason of a datagram");
                    false
                }
                None => {
                    // Only RFC 6040 may drop past the checks: outer CE over inner Not-ECT.
                    assert_eq!(*r, DropReason::EcnDrop, "dropped past the checks");
                    assert_eq!(tos & 3, 3, "only outer CE drops");
                    true
                }
            }
        }
        FromTunnel::Consumed => panic!("split horizon: the L2 core delivers or drops"),
    };
    if learned_here && let Some(n) = net {
        let mac = src_mac.unwrap();
        let vni = Vni::new(VNIS[n]).unwrap();
        if m.learning[n] && !m.statics.contains_key(&(VNIS[n], mac.0)) {
            let got = core.fdb_lookup(now, vni, mac);
            assert!(
                got == Some(src) || ctr.learn_refused == refused_before + 1,
                "{mac} from {src} neither learned nor refused: {got:?}"
            );
        }
    }
}

fn step(inp: &mut Input<'_>, now: Timestamp) -> Timestamp {
    let d = match inp.u8() % 4 {
        0 => Duration::from_millis(u64::from(inp.u8())),
        1 => Duration::from_secs(u64::from(inp.u8() % 16)),
        2 => AGEING[0] + Duration::from_millis(1),
        _ => Duration::from_millis(u64::from(inp.u16())),
    };
    now + d
}

/// The invariants that hold between any two steps.
fn check(core: &Core, m: &Model, now: Timestamp, ctr: &Counters, full: bool) {
    let mut learned_total = 0;
    for (n, v) in VNIS[..2].iter().enumerate() {
        let vni = Vni::new(*v).unwrap();
        let c = core.learned_count(vni).unwrap();
        assert!(
            c <= MAX_LEARNED[n],
            "net {n}: {c} learned, cap {}",
            MAX_LEARNED[n]
        );
        learned_total += c;
        let t = core.neigh(NetId(n as u16)).unwrap();
        assert!(
            t.learned_count() <= MAX_LEARNED[n],
            "net {n}: neighbour cap"
        );
    }
    assert_eq!(
        core.fdb_len(),
        m.statics.len() + learned_total,
        "the FDB is the static entries plus the learned ones counted against the caps"
    );
    for ((v, mac), r) in &m.statics {
        let got = core.fdb_lookup(now, Vni::new(*v).unwrap(), MacAddr(*mac));
        assert_eq!(got, Some(*r), "static {v} {mac:?}");
    }
    for r in DropReason::ALL {
        assert_eq!(
            ctr.drops_of(*r),
            m.drops[*r as usize],
            "drops counted as {r}"
        );
    }
    assert_eq!(ctr.rx_tunnel, m.rx_tunnel);
    assert_eq!(ctr.rx_device, m.rx_device);
    assert_eq!(ctr.flood_copies, m.flood_copies);
    assert_eq!(ctr.arp_suppressed, m.arp_suppressed);
    if !full {
        return;
    }
    let entries = core.fdb_entries(now, None);
    let statics: BTreeMap<(u32, [u8; 6]), IpAddr> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::Static)
        .map(|e| ((e.vni.get(), e.mac.0), e.remote))
        .collect();
    assert_eq!(
        statics, m.statics,
        "static entries move only by the control plane"
    );
    let mut seen = BTreeSet::new();
    for e in &entries {
        assert!(seen.insert((e.vni, e.mac)), "one entry per key");
        let n = net_of(e.vni).expect("entries only in configured networks");
        assert!(e.mac.is_unicast(), "{e:?}");
        assert!(usable_remote(e.remote), "{e:?}");
        if e.kind == EntryKind::Learned {
            assert!(m.learning[n], "learned with learning off: {e:?}");
            assert_ne!(e.mac, OWN[n], "our own MAC learned");
            assert!(e.age <= AGEING[n], "an expired entry listed: {e:?}");
        }
    }
    let peers: Vec<Vec<IpAddr>> = core.peers().into_iter().map(|(_, p)| p).collect();
    assert_eq!(peers, m.flood.to_vec(), "flood lists");
}
