//! `arp`: ARP parsing and emitting (`encap::arp`, `core::arp::write_arp_frame`) round trips,
//! and L2 ARP suppression ([`ArpSuppress::answer_local`], [`ArpSuppress::snoop_remote`]) on
//! arbitrary frames, driven by a sequence of operations.
//!
//! Checked:
//! - a packet that parses emits back to the same 28 bytes (the fields parsing requires are
//!   fixed); any [`ArpRepr`] emits to a packet that parses back to it, in a frame too;
//! - `answer_local` answers only when suppression is on, for a broadcast request for an
//!   address bound in the network's table (asked by someone else), with exactly one frame into
//!   the device: a valid ARP reply from the bound MAC to the asker; otherwise it pushes nothing;
//! - `snoop_remote` teaches nothing when suppression is off, never binds unusable addresses or
//!   MACs, never changes a static binding, and keeps the network's cap;
//! - ND suppression ([`NdSuppress`]) takes the same frames: it never panics, snoops nothing
//!   with suppression off, and answers only with suppression on, one neighbour advertisement
//!   into the device that parses back as one, from a bound address's MAC to the asker.

use crate::frames;
use crate::input::{Input, Writer};
use encap::arp::{self, ArpOperation, ArpPacket, ArpRepr};
use encap::{MacAddr, Vni};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use vtepd::core::arp::{ARP_FRAME_LEN, FrameTo, Generated, write_arp_frame};
use vtepd::core::arp_suppress::ArpSuppress;
use vtepd::core::nd_suppress::NdSuppress;
use vtepd::core::ndisc::{self, NdMessage};
use vtepd::core::{Core, CoreConfig, Counters, EntryKind, NetId, NetworkConfig, Timestamp};

/// MACs frames pick from.
pub const MACS: [MacAddr; 7] = [
    MacAddr([2, 0, 0, 0, 0, 1]),
    MacAddr([2, 0, 0, 0, 0, 2]),
    MacAddr([2, 0, 0, 0, 0, 3]),
    MacAddr([2, 0, 0, 0, 0, 4]),
    MacAddr::BROADCAST,
    MacAddr([1, 0, 0x5e, 0, 0, 1]),
    MacAddr::ZERO,
];
/// Overlay addresses ARP carries.
pub const IPS: [Ipv4Addr; 6] = [
    Ipv4Addr::new(10, 42, 0, 1),
    Ipv4Addr::new(10, 42, 0, 2),
    Ipv4Addr::new(10, 42, 0, 3),
    Ipv4Addr::UNSPECIFIED,
    Ipv4Addr::BROADCAST,
    Ipv4Addr::new(224, 0, 0, 1),
];
/// Bindings allowed per network.
pub const CAP: usize = 2;

/// The operations (the first byte of each, modulo their number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Raw bytes through the codec: parse, emit, parse.
    Codec = 0,
    /// An [`ArpRepr`] from the pools through emit and parse, alone and in a frame.
    Repr = 1,
    /// A frame from the tunnel: [`ArpSuppress::snoop_remote`] (network 0: on, 1: off).
    Snoop = 2,
    /// A frame from the device: [`ArpSuppress::answer_local`].
    Answer = 3,
    /// `neigh add` (static) in network 0.
    NeighAdd = 4,
    /// Time passes (the bindings age after 5 s).
    Step = 5,
}
const OPS: u8 = 6;

/// Encodes a frame for a Snoop or Answer op (`op`) in network `net`.
pub fn write_frame_op(w: &mut Writer, op: Op, net: u8, frame: impl FnOnce(&mut Writer)) {
    w.u8(op as u8).u8(net);
    frame(w);
}

/// The target's body.
pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let core = Arc::new(
        Core::new(CoreConfig {
            local: Ipv4Addr::new(192, 0, 2, 1).into(),
            allow_any_peer: false,
            networks: (1..=2)
                .map(|v| NetworkConfig {
                    vni: Vni::new(v).unwrap(),
                    peers: vec![Ipv4Addr::new(192, 0, 2, 2).into()],
                    own_mac: MacAddr([2, 0, 0, 0, 0xee, v as u8]),
                    learning: true,
                    ageing: Duration::from_secs(5),
                    max_learned: CAP,
                    ..Default::default()
                })
                .collect(),
        })
        .expect("a valid core"),
    );
    let s = ArpSuppress::new(Arc::clone(&core), vec![true, false]);
    let nd = NdSuppress::new(Arc::clone(&core));
    let mut now = Timestamp(1_000_000);
    let mut ctr = Counters::default();
    let mut g = Generated::new();
    let mut statics: Vec<(Ipv4Addr, MacAddr)> = Vec::new();
    let mut steps = 0;
    while !inp.is_empty() && steps < 128 {
        steps += 1;
        match inp.u8() % OPS {
            0 => codec(inp.bytes()),
            1 => {
                let a = frames::arp(&mut inp, &MACS, &IPS);
                let r = ArpRepr::parse(&ArpPacket::new_checked(&a[..]).unwrap()).unwrap();
                repr(&r, inp.mac(&MACS), inp.mac(&MACS));
            }
            2 => {
                let net = inp.u8() % 3;
                let f = frames::frame(&mut inp, &MACS, &IPS);
                let t1 = core.neigh(NetId(1)).unwrap().entries(now.millis());
                s.snoop_remote(now, NetId(u16::from(net)), &f, &mut ctr);
                nd.snoop_remote(now, NetId(u16::from(net)), &f, &mut ctr);
                assert_eq!(
                    core.neigh(NetId(1)).unwrap().entries(now.millis()),
                    t1,
                    "suppression off: nothing learned"
                );
            }
            3 => {
                let net = inp.u8() % 3;
                let f = frames::frame(&mut inp, &MACS, &IPS);
                answer(&core, &s, now, net, &f, &mut g, &mut ctr);
                answer_nd(&core, &nd, now, net, &f, &mut g, &mut ctr);
            }
            4 => {
                let (ip, mac) = (inp.ip(&IPS), inp.mac(&MACS));
                if core.neigh_add(now, Vni::new(1).unwrap(), ip, mac).is_ok() {
                    statics.retain(|(i, _)| *i != ip);
                    statics.push((ip, mac));
                }
            }
            _ => now = now + Duration::from_millis(u64::from(inp.u16())),
        }
        let t = core.neigh(NetId(0)).unwrap();
        assert!(t.learned_count() <= CAP, "the binding cap");
        for e in t.entries(now.millis()) {
            assert!(e.mac.is_unicast(), "{e:?}");
            assert!(vtepd::core::neigh::usable_neigh(e.ip), "{e:?}");
        }
        for (ip, mac) in &statics {
            assert_eq!(t.lookup(*ip, now.millis()), Some(*mac), "static {ip} kept");
            let e = t.entries(now.millis());
            assert!(e.iter().any(|e| e.ip == *ip && e.kind == EntryKind::Static));
        }
    }
}

/// Raw bytes: a packet that parses emits back to its first 28 bytes.
fn codec(b: &[u8]) {
    let Ok(p) = ArpPacket::new_checked(b) else {
        assert!(b.len() < arp::PACKET_LEN, "a long enough packet is checked");
        return;
    };
    let Ok(r) = ArpRepr::parse(&p) else { return };
    let mut out = [0u8; arp::PACKET_LEN];
    r.emit(&mut out).unwrap();
    assert_eq!(&out[..], &b[..arp::PACKET_LEN], "emit(parse(p)) == p");
    assert!(r.emit(&mut [0u8; arp::PACKET_LEN - 1]).is_err());
}

/// A representation: emit then parse is the identity, alone and in a frame.
fn repr(r: &ArpRepr, dst: MacAddr, src: MacAddr) {
    let mut b = [0u8; arp::PACKET_LEN];
    r.emit(&mut b).unwrap();
    let back = ArpRepr::parse(&ArpPacket::new_checked(&b[..]).unwrap()).unwrap();
    assert_eq!(&back, r);
    assert_eq!(ArpOperation::from_code(r.operation.code()), r.operation);
    let mut f = [0u8; ARP_FRAME_LEN];
    assert!(write_arp_frame(&mut f, dst, src, r));
    assert_eq!(
        (&f[..6], &f[6..12], &f[12..14]),
        (&dst.0[..], &src.0[..], &[8u8, 6][..])
    );
    assert_eq!(&f[14..], &b[..]);
    assert!(!write_arp_frame(&mut f[..ARP_FRAME_LEN - 1], dst, src, r));
}

fn answer(
    core: &Core,
    s: &ArpSuppress,
    now: Timestamp,
    net: u8,
    f: &[u8],
    g: &mut Generated,
    ctr: &mut Counters,
) {
    g.clear();
    let before = ctr.arp_suppressed;
    let answered = s.answer_local(now, NetId(u16::from(net)), f, g, ctr);
    if !answered {
        assert!(g.is_empty(), "nothing pushed when not answered");
        assert_eq!(ctr.arp_suppressed, before);
        return;
    }
    assert_eq!(net, 0, "answered with suppression off");
    assert_eq!(ctr.arp_suppressed, before + 1);
    // The request: an untagged broadcast Ethernet/IPv4 ARP request from a usable sender.
    assert_eq!(&f[..6], &[0xff; 6], "answers broadcast requests only");
    assert_eq!(&f[12..14], &[8, 6]);
    let q = ArpRepr::parse(&ArpPacket::new_checked(&f[14..]).unwrap()).unwrap();
    assert_eq!(q.operation, ArpOperation::Request);
    assert!(q.sender_mac.is_unicast());
    assert_ne!(q.sender_ip, q.target_ip, "gratuitous ARP is not answered");
    assert!(!q.sender_ip.is_unspecified(), "probes are not answered");
    let bound = core
        .neigh(NetId(0))
        .unwrap()
        .lookup(q.target_ip, now.millis())
        .expect("answered from a binding");
    assert_ne!(
        bound, q.sender_mac,
        "the asker's own address is not answered"
    );
    // The reply: one frame into the device, a valid ARP reply from the binding to the asker.
    let frames: Vec<_> = g.iter().collect();
    assert_eq!(frames.len(), 1, "one reply");
    let (to, reply) = frames[0];
    assert_eq!(to, FrameTo::Device);
    assert_eq!(reply.len(), ARP_FRAME_LEN);
    assert_eq!(&reply[..6], &f[6..12], "to the frame's source");
    assert_eq!(&reply[6..12], &bound.0, "from the bound MAC");
    assert_eq!(&reply[12..14], &[8, 6]);
    let a = ArpRepr::parse(&ArpPacket::new_checked(&reply[14..]).unwrap()).expect("valid ARP");
    assert_eq!(a.operation, ArpOperation::Reply);
    assert_eq!((a.sender_mac, a.sender_ip), (bound, q.target_ip));
    assert_eq!((a.target_mac, a.target_ip), (q.sender_mac, q.sender_ip));
}

/// ND suppression on the same frame: an answer only with suppression on, a valid neighbour
/// advertisement of a bound address from its MAC to the asker.
fn answer_nd(
    core: &Core,
    nd: &NdSuppress,
    now: Timestamp,
    net: u8,
    f: &[u8],
    g: &mut Generated,
    ctr: &mut Counters,
) {
    g.clear();
    let before = ctr.nd_suppressed;
    if !nd.answer_local(now, NetId(u16::from(net)), f, g, ctr) {
        assert!(g.is_empty(), "nothing pushed when not answered");
        assert_eq!(ctr.nd_suppressed, before);
        return;
    }
    assert_eq!(net, 0, "answered with suppression off");
    assert_eq!(ctr.nd_suppressed, before + 1);
    let q = ndisc::parse(f).expect("answers valid ND only");
    let NdMessage::Solicit { target, .. } = q.msg else {
        panic!("answered {q:?}")
    };
    let bound = core
        .neigh(NetId(0))
        .unwrap()
        .lookup(target, now.millis())
        .expect("answered from a binding");
    let frames: Vec<_> = g.iter().collect();
    assert_eq!(frames.len(), 1, "one advertisement");
    let (to, na) = frames[0];
    assert_eq!(to, FrameTo::Device);
    let a = ndisc::parse(na).expect("a valid advertisement");
    assert_eq!((a.eth_src, a.eth_dst), (bound, q.eth_src));
    assert_eq!((a.src, a.dst), (target, q.src));
    assert_eq!(
        a.msg,
        NdMessage::Advert {
            target,
            target_mac: Some(bound),
            solicited: true,
            overrides: true
        }
    );
}
