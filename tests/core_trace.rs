//! The engines' traced variants, in memory: each records the steps it took and the same
//! decision the untraced entry point makes; a simulation (`Recorder<true>`, `trace --inject`)
//! says what would happen and changes no state (no FDB entry, no neighbour binding, no held
//! packet).

mod engine_support;

use encap::MacAddr;
use engine_support::{LOCAL, ipip, l3vx, vni};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use vtepd::core::l2::L2;
use vtepd::core::route::parse_route;
use vtepd::core::synth::{self, Synth};
use vtepd::core::trace::{
    Flood, LearnResult, Mac, NeighResult, Outcome, Proto, Recorder, ReplyKind, Step,
};
use vtepd::core::{
    Core, Counters, DropReason, FromDevice, FromTunnel, NetId, Out, Outer, Timestamp,
};

const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const C: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
const OWN: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xee]);
const M1: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const M9: MacAddr = MacAddr([2, 0, 0, 0, 0, 9]);
const NET: NetId = NetId(0);
const NOW: Timestamp = Timestamp(10_000);

fn l2() -> L2 {
    l2_with(false)
}

/// The L2 engine, with ARP suppression on or off.
fn l2_with(arp_suppress: bool) -> L2 {
    L2::new(core(vec![B, C]), vec![arp_suppress])
}

/// A core with one network, VNI 42, flooding to `peers`.
fn core(peers: Vec<Ipv4Addr>) -> Arc<Core> {
    engine_support::core(OWN, peers)
}

fn frame(src: MacAddr, dst: MacAddr) -> Vec<u8> {
    Synth {
        src_mac: Some(Mac(src)),
        dst_mac: Some(Mac(dst)),
        ..Synth::default()
    }
    .frame(dst)
}

#[test]
fn l2_records_vni_peer_learning_and_lookups_and_decides_as_untraced() {
    let e = l2();
    let mut ctr = Counters::default();
    let mut rec = Recorder::<false>::default();
    let mut d = synth::vxlan(42, &frame(M1, OWN));
    let v = e.on_remote_traced(NOW, Outer::from(B), &mut d, &mut ctr, &mut rec);
    assert!(matches!(v, FromTunnel::Deliver { net: NET, .. }), "{v:?}");
    assert_eq!(
        rec.steps(),
        [
            Step::Vni {
                vni: 42,
                found: true
            },
            Step::Peer {
                src: B.into(),
                accepted: true,
                any_peer: false
            },
            Step::Learn {
                mac: Mac(M1),
                remote: B.into(),
                result: LearnResult::Learned,
                simulated: false
            },
        ]
    );
    assert_eq!(
        e.core().fdb_lookup(NOW, vni(), M1),
        Some(B.into()),
        "learned"
    );

    // Known unicast: the FDB's answer; unknown: every flood peer.
    let mut out = Out::with_capacity(4);
    rec.clear();
    let v = e.on_local_traced(NOW, NET, &frame(OWN, M1), &mut out, &mut ctr, &mut rec);
    assert_eq!(v, FromDevice::Tunnel);
    assert_eq!(out.remotes.as_slice(), [B]);
    assert_eq!(
        rec.steps(),
        [Step::Fdb {
            vni: 42,
            mac: Mac(M1),
            remote: Some(B.into())
        }]
    );
    rec.clear();
    let v = e.on_local_traced(NOW, NET, &frame(OWN, M9), &mut out, &mut ctr, &mut rec);
    let o = Outcome::from_device(v, &out.remotes);
    assert!(
        matches!(&o, Outcome::Tunnel { remotes, copies: 2, .. } if remotes.as_slice() == [B, C]),
        "{o:?}"
    );
    assert!(rec.steps().contains(&Step::Flood {
        kind: Flood::UnknownUnicast,
        peers: 2
    }));

    // A stranger's datagram: the peer check says why.
    rec.clear();
    let mut d = synth::vxlan(42, &frame(M9, OWN));
    let stranger = Outer::from(Ipv4Addr::new(192, 0, 2, 99));
    let v = e.on_remote_traced(NOW, stranger, &mut d, &mut ctr, &mut rec);
    assert_eq!(v, FromTunnel::Drop(DropReason::UnknownPeer));
    assert!(matches!(
        rec.steps().last(),
        Some(Step::Peer {
            accepted: false,
            ..
        })
    ));
}

#[test]
fn a_simulation_learns_nothing_and_names_a_static_conflict() {
    let e = l2();
    e.core().fdb_add(NOW, vni(), M9, C).unwrap();
    let before = e.core().fdb_entries(NOW, None);
    let mut ctr = Counters::default();
    let mut sim = Recorder::<true>::default();
    // A new MAC: learning would learn it, and nothing is learned.
    let mut d = synth::vxlan(42, &frame(M1, OWN));
    let v = e.on_remote_traced(NOW, Outer::from(B), &mut d, &mut ctr, &mut sim);
    assert!(matches!(v, FromTunnel::Deliver { .. }));
    assert!(sim.steps().contains(&Step::Learn {
        mac: Mac(M1),
        remote: B.into(),
        result: LearnResult::Learned,
        simulated: true
    }));
    assert_eq!(
        e.core().fdb_entries(NOW, None),
        before,
        "the FDB is unchanged"
    );
    assert_eq!(e.core().learned_count(vni()), Some(0));
    // The static MAC from another VTEP: refused, and the entry stays where it is.
    sim.clear();
    let mut d = synth::vxlan(42, &frame(M9, OWN));
    let v = e.on_remote_traced(NOW, Outer::from(B), &mut d, &mut ctr, &mut sim);
    assert_eq!(v, FromTunnel::Drop(DropReason::StaticConflict));
    assert!(sim.steps().contains(&Step::Learn {
        mac: Mac(M9),
        remote: B.into(),
        result: LearnResult::StaticConflict { pinned: C.into() },
        simulated: true
    }));
    assert_eq!(e.core().fdb_lookup(NOW, vni(), M9), Some(C.into()));
    // The same datagram for real: learned this time.
    let mut live = Recorder::<false>::default();
    let mut d = synth::vxlan(42, &frame(M1, OWN));
    e.on_remote_traced(NOW, Outer::from(B), &mut d, &mut ctr, &mut live);
    assert_eq!(e.core().fdb_lookup(NOW, vni(), M1), Some(B.into()));
}

#[test]
fn l3_vxlan_records_route_and_neighbour_and_a_simulation_holds_nothing() {
    let core = core(vec![B]);
    let route = parse_route("10.1.0.0/16=10.0.0.7").unwrap();
    let e = l3vx(&core, OWN, Ipv4Addr::new(10, 0, 0, 1), &[route]);
    let packet = |dst: [u8; 4]| {
        let mut f = vec![0u8; 14];
        f.extend_from_slice(
            &Synth {
                dst_ip: Some(dst.into()),
                ..Synth::default()
            }
            .ip_packet(),
        );
        f
    };
    let (mut out, mut ctr) = (Out::with_capacity(4), Counters::default());
    let mut sim = Recorder::<true>::default();
    let v = e.on_local_traced(
        NOW,
        &mut packet([10, 1, 2, 3]),
        &mut out,
        &mut ctr,
        &mut sim,
    );
    assert_eq!(v, FromDevice::Held);
    let hop = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7));
    assert_eq!(
        sim.steps(),
        [
            Step::Route {
                dst: Ipv4Addr::new(10, 1, 2, 3).into(),
                via: Some(hop)
            },
            Step::Neigh { hop, mac: None },
            Step::Hold {
                hop,
                arp_request: true
            },
        ]
    );
    assert_eq!(e.pending(), (0, 0), "a simulation holds nothing");
    assert!(out.generated.is_empty(), "and asks nobody");
    // For real: held, an ARP request made.
    let mut live = Recorder::<false>::default();
    let v = e.on_local_traced(
        NOW,
        &mut packet([10, 1, 2, 3]),
        &mut out,
        &mut ctr,
        &mut live,
    );
    assert_eq!(v, FromDevice::Held);
    assert_eq!(e.pending().0, 1);
    assert!(live.steps().contains(&Step::Hold {
        hop,
        arp_request: true
    }));
    // No route.
    live.clear();
    let v = e.on_local_traced(
        NOW,
        &mut packet([10, 9, 0, 1]),
        &mut out,
        &mut ctr,
        &mut live,
    );
    assert_eq!(v, FromDevice::Drop(DropReason::NoRoute));
    assert_eq!(
        live.steps(),
        [Step::Route {
            dst: Ipv4Addr::new(10, 9, 0, 1).into(),
            via: None
        }]
    );
}

#[test]
fn ipip_records_the_route_and_the_peer_check() {
    let e = ipip(&[parse_route("10.2.0.0/16=192.0.2.2").unwrap()]);
    let inner = Synth {
        dst_ip: Some(Ipv4Addr::new(10, 2, 0, 5)),
        ..Synth::default()
    }
    .ip_packet();
    let (mut out, mut ctr) = (Out::with_capacity(4), Counters::default());
    let mut rec = Recorder::<false>::default();
    assert_eq!(
        e.on_local_traced(NOW, &inner, &mut out, &mut ctr, &mut rec),
        FromDevice::Tunnel
    );
    assert_eq!(
        rec.steps(),
        [Step::Route {
            dst: Ipv4Addr::new(10, 2, 0, 5).into(),
            via: Some(B.into())
        }]
    );
    for (src, accepted) in [(B, true), (C, false)] {
        rec.clear();
        let mut p = synth::ipip(src, LOCAL, &inner);
        let v = e.on_remote_traced(NOW, Outer::from(src), &mut p, &mut ctr, &mut rec);
        assert_eq!(matches!(v, FromTunnel::Deliver { .. }), accepted);
        assert_eq!(
            rec.steps(),
            [Step::Peer {
                src: src.into(),
                accepted,
                any_peer: false
            }]
        );
    }
}

#[test]
fn arp_suppression_records_its_answer_and_a_simulation_binds_nothing() {
    let e = l2_with(true);
    let (known, other) = (Ipv4Addr::new(10, 0, 0, 9), Ipv4Addr::new(10, 0, 0, 10));
    e.core().neigh_add(NOW, vni(), known, M9).unwrap();
    let ask = |target: Ipv4Addr| {
        Synth {
            src_mac: Some(Mac(M1)),
            dst_ip: Some(target),
            proto: Some(Proto::Arp),
            ..Synth::default()
        }
        .frame(MacAddr::BROADCAST)
    };
    let (mut out, mut ctr) = (Out::with_capacity(4), Counters::default());
    let mut rec = Recorder::<false>::default();
    let v = e.on_local_traced(NOW, NET, &ask(known), &mut out, &mut ctr, &mut rec);
    assert_eq!(v, FromDevice::Answered);
    assert_eq!(
        rec.steps(),
        [Step::ArpSuppress {
            target: known,
            answer: Some(Mac(M9))
        }]
    );
    rec.clear();
    let v = e.on_local_traced(NOW, NET, &ask(other), &mut out, &mut ctr, &mut rec);
    assert_eq!(v, FromDevice::Tunnel, "not known: flooded");
    assert_eq!(
        rec.steps()[0],
        Step::ArpSuppress {
            target: other,
            answer: None
        }
    );
    // ARP from the tunnel teaches a binding; simulated, it does not.
    let reply_from_b = Synth {
        src_mac: Some(Mac(M1)),
        src_ip: Some(other),
        proto: Some(Proto::Arp),
        ..Synth::default()
    }
    .frame(MacAddr::BROADCAST);
    let mut sim = Recorder::<true>::default();
    let mut d = synth::vxlan(42, &reply_from_b);
    e.on_remote_traced(NOW, Outer::from(B), &mut d, &mut ctr, &mut sim);
    assert!(sim.steps().contains(&Step::NeighLearn {
        ip: other.into(),
        mac: Mac(M1),
        result: NeighResult::New
    }));
    let table = e.core().neigh(NET).unwrap();
    assert_eq!(table.lookup(other, NOW.millis()), None, "nothing bound");
    let mut d = synth::vxlan(42, &reply_from_b);
    e.on_remote_traced(NOW, Outer::from(B), &mut d, &mut ctr, &mut rec);
    assert_eq!(
        table.lookup(other, NOW.millis()),
        Some(M1),
        "bound for real"
    );
}

#[test]
fn l3_vxlan_records_what_an_arp_request_to_us_teaches_and_answers() {
    let core = core(vec![B]);
    let own_ip = Ipv4Addr::new(10, 0, 0, 1);
    let e = l3vx(&core, OWN, own_ip, &[]);
    let asker = Ipv4Addr::new(10, 0, 0, 5);
    let who_has_us = Synth {
        src_mac: Some(Mac(M1)),
        src_ip: Some(asker),
        dst_ip: Some(own_ip),
        proto: Some(Proto::Arp),
        ..Synth::default()
    }
    .frame(MacAddr::BROADCAST);
    let (mut out, mut ctr) = (Out::with_capacity(4), Counters::default());
    let table = e.core().neigh(NET).unwrap();
    let mut sim = Recorder::<true>::default();
    let mut d = synth::vxlan(42, &who_has_us);
    let v = e.on_remote_traced(NOW, Outer::from(B), &mut d, &mut out, &mut ctr, &mut sim);
    assert_eq!(v, FromTunnel::Consumed);
    let taught = Step::NeighLearn {
        ip: asker.into(),
        mac: Mac(M1),
        result: NeighResult::New,
    };
    let answered = Step::Reply {
        kind: ReplyKind::Arp,
    };
    assert_eq!(sim.steps()[3..], [taught, answered], "{:?}", sim.steps());
    assert_eq!(
        table.lookup(asker, NOW.millis()),
        None,
        "a simulation binds nothing"
    );
    let mut live = Recorder::<false>::default();
    let mut d = synth::vxlan(42, &who_has_us);
    e.on_remote_traced(NOW, Outer::from(B), &mut d, &mut out, &mut ctr, &mut live);
    assert_eq!(live.steps()[3..], [taught, answered]);
    assert_eq!(table.lookup(asker, NOW.millis()), Some(M1));
}
