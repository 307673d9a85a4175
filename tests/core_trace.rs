//! The engines' traced variants, in memory: each records the steps it took and the same
//! decision the untraced entry point makes; a simulation (`Recorder<true>`, `trace --inject`)
//! says what would happen and changes no state (no FDB entry, no neighbour binding, no held
//! packet, no neighbour solicitation), for IPv4 and IPv6 (Neighbor Discovery in L3 VXLAN, ND
//! suppression in L2, protocol 41 in IPIP) alike.

mod engine_support;

use encap::MacAddr;
use engine_support::{LOCAL, ipip, ipip6, l3vx, l3vx6, vni};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use vtepd::core::l2::L2;
use vtepd::core::l3vx::L3Vx;
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
    .unwrap()
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
                dst_ip: Some(Ipv4Addr::from(dst).into()),
                ..Synth::default()
            }
            .ip_packet()
            .unwrap(),
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
        dst_ip: Some(Ipv4Addr::new(10, 2, 0, 5).into()),
        ..Synth::default()
    }
    .ip_packet()
    .unwrap();
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
            dst_ip: Some(target.into()),
            proto: Some(Proto::Arp),
            ..Synth::default()
        }
        .frame(MacAddr::BROADCAST)
        .unwrap()
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
        src_ip: Some(other.into()),
        proto: Some(Proto::Arp),
        ..Synth::default()
    }
    .frame(MacAddr::BROADCAST)
    .unwrap();
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
        src_ip: Some(asker.into()),
        dst_ip: Some(own_ip.into()),
        proto: Some(Proto::Arp),
        ..Synth::default()
    }
    .frame(MacAddr::BROADCAST)
    .unwrap();
    let steps = asked_about_us_simulated(&e, &who_has_us, asker.into(), ReplyKind::Arp);
    let (mut out, mut ctr) = (Out::with_capacity(4), Counters::default());
    let mut live = Recorder::<false>::default();
    let mut d = synth::vxlan(42, &who_has_us);
    e.on_remote_traced(NOW, Outer::from(B), &mut d, &mut out, &mut ctr, &mut live);
    assert_eq!(live.steps()[3..], steps);
    let table = e.core().neigh(NET).unwrap();
    assert_eq!(table.lookup(asker, NOW.millis()), Some(M1));
}

/// `frame`, from B, asks `e` about its own address, simulated: its asker `asker` (at M1) would
/// be taught and answered with a `kind` reply, and nothing is bound. Those two steps.
fn asked_about_us_simulated(e: &L3Vx, frame: &[u8], asker: IpAddr, kind: ReplyKind) -> [Step; 2] {
    let (mut out, mut ctr) = (Out::with_capacity(4), Counters::default());
    let mut sim = Recorder::<true>::default();
    let mut d = synth::vxlan(42, frame);
    let v = e.on_remote_traced(NOW, Outer::from(B), &mut d, &mut out, &mut ctr, &mut sim);
    assert_eq!(v, FromTunnel::Consumed);
    let steps = [
        Step::NeighLearn {
            ip: asker,
            mac: Mac(M1),
            result: NeighResult::New,
        },
        Step::Reply { kind },
    ];
    assert_eq!(sim.steps()[3..], steps, "{:?}", sim.steps());
    let table = e.core().neigh(NET).unwrap();
    assert_eq!(
        table.lookup(asker, NOW.millis()),
        None,
        "a simulation binds nothing"
    );
    steps
}

/// An IPv6 address in a test.
fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// A neighbour solicitation for `target` from `asker` at `mac`, as `trace --inject --proto nd`
/// builds it.
fn solicit(mac: MacAddr, asker: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    Synth {
        src_mac: Some(Mac(mac)),
        src_ip: Some(asker.into()),
        dst_ip: Some(target.into()),
        proto: Some(Proto::Nd),
        ..Synth::default()
    }
    .frame(MacAddr::BROADCAST)
    .unwrap()
}

/// L3 VXLAN with an IPv6 address, simulated: a packet to an unresolved next hop would be held
/// and a solicitation made (nothing is held or asked); to a resolved one it goes to the remote;
/// a solicitation for our address would teach its asker and be answered with an advertisement
/// (nothing is bound); ND that fails RFC 4861's checks is `bad_nd`, and IPv6 on a network
/// without an IPv6 address `no_ipv6`.
#[test]
fn l3_vxlan_simulates_ipv6_next_hops_and_neighbour_discovery() {
    let core = core(vec![B]);
    let (own4, own6) = (Ipv4Addr::new(10, 0, 0, 1), v6("fd00:1::1"));
    let route = parse_route("fd00:2::/64=fd00:1::7").unwrap();
    let e = l3vx6(&core, OWN, own4, own6, &[route]);
    let to = |dst: &str| {
        let mut f = vec![0u8; 14];
        let p = Synth {
            src_ip: Some(own6.into()),
            dst_ip: Some(v6(dst).into()),
            ..Synth::default()
        };
        f.extend_from_slice(&p.ip_packet().unwrap());
        f
    };
    let (mut out, mut ctr) = (Out::with_capacity(4), Counters::default());
    let mut sim = Recorder::<true>::default();
    let v = e.on_local_traced(NOW, &mut to("fd00:2::5"), &mut out, &mut ctr, &mut sim);
    assert_eq!(v, FromDevice::Held);
    let hop = IpAddr::V6(v6("fd00:1::7"));
    let (route, unresolved) = (
        Step::Route {
            dst: v6("fd00:2::5").into(),
            via: Some(hop),
        },
        Step::Neigh { hop, mac: None },
    );
    let ask = Step::Hold {
        hop,
        arp_request: true,
    };
    assert_eq!(sim.steps(), [route, unresolved, ask]);
    assert_eq!(e.pending(), (0, 0), "a simulation holds nothing");
    assert!(out.generated.is_empty(), "and solicits nobody");
    assert_eq!(ctr.nd_solicits, 0);
    // Resolved (a static neighbour): to the remote.
    core.neigh_add(NOW, vni(), hop, M9).unwrap();
    sim.clear();
    let v = e.on_local_traced(NOW, &mut to("fd00:2::5"), &mut out, &mut ctr, &mut sim);
    assert_eq!(v, FromDevice::Tunnel);
    assert_eq!(out.remotes.as_slice(), [B]);
    assert_eq!(
        sim.steps()[1],
        Step::Neigh {
            hop,
            mac: Some(Mac(M9))
        }
    );

    // Who has our address? Simulated: the asker would be learned and answered.
    let asker = v6("fd00:1::5");
    let ns = solicit(M1, asker, own6);
    asked_about_us_simulated(&e, &ns, asker.into(), ReplyKind::Nd);
    // The same solicitation through a router (hop limit 64): not ND to believe.
    let mut routed = ns.clone();
    routed[14 + 7] = 64;
    let mut d = synth::vxlan(42, &routed);
    let v = e.on_remote_traced(NOW, Outer::from(B), &mut d, &mut out, &mut ctr, &mut sim);
    assert_eq!(v, FromTunnel::Drop(DropReason::BadNd));
    // An IPv4-only network: IPv6 is no_ipv6 both ways.
    let v4_only = l3vx(&core, OWN, own4, &[]);
    let v = v4_only.on_local_traced(NOW, &mut to("fd00:1::7"), &mut out, &mut ctr, &mut sim);
    assert_eq!(v, FromDevice::Drop(DropReason::NoIpv6));
    let echo = Synth {
        src_ip: Some(asker.into()),
        dst_ip: Some(own6.into()),
        ..Synth::default()
    };
    let mut d = synth::vxlan(42, &echo.frame(OWN).unwrap());
    let v = v4_only.on_remote_traced(NOW, Outer::from(B), &mut d, &mut out, &mut ctr, &mut sim);
    assert_eq!(v, FromTunnel::Drop(DropReason::NoIpv6));
}

/// ND suppression in L2, simulated: a solicitation for a known remote address is answered
/// with its MAC, an unknown one is flooded; the answer is the step's either way.
#[test]
fn nd_suppression_records_its_answer_in_a_simulation() {
    let e = l2_with(true);
    let (known, other, asker) = (v6("fd00::9"), v6("fd00::10"), v6("fd00::1"));
    e.core().neigh_add(NOW, vni(), known, M9).unwrap();
    let (mut out, mut ctr) = (Out::with_capacity(4), Counters::default());
    let mut sim = Recorder::<true>::default();
    let ns = solicit(M1, asker, known);
    let v = e.on_local_traced(NOW, NET, &ns, &mut out, &mut ctr, &mut sim);
    assert_eq!(v, FromDevice::Answered);
    assert_eq!(
        sim.steps(),
        [Step::NdSuppress {
            target: known,
            answer: Some(Mac(M9))
        }]
    );
    sim.clear();
    let ns = solicit(M1, asker, other);
    let v = e.on_local_traced(NOW, NET, &ns, &mut out, &mut ctr, &mut sim);
    assert_eq!(v, FromDevice::Tunnel, "not known: flooded");
    assert_eq!(
        sim.steps()[0],
        Step::NdSuppress {
            target: other,
            answer: None
        }
    );
}

/// IPIP with IPv6: a simulated IPv6 packet routes to its node (protocol 41), and protocol 41
/// from that node is delivered; without IPv6 on the device both are `no_ipv6`.
#[test]
fn ipip_simulates_ipv6_as_protocol_41() {
    let e = ipip6(&[parse_route("fd00:2::/64=192.0.2.2").unwrap()]);
    let inner = Synth {
        dst_ip: Some(v6("fd00:2::5").into()),
        ..Synth::default()
    }
    .ip_packet()
    .unwrap();
    let (mut out, mut ctr) = (Out::with_capacity(4), Counters::default());
    let mut sim = Recorder::<true>::default();
    assert_eq!(
        e.on_local_traced(NOW, &inner, &mut out, &mut ctr, &mut sim),
        FromDevice::Tunnel
    );
    assert_eq!(out.remotes.as_slice(), [B]);
    assert_eq!(
        sim.steps(),
        [Step::Route {
            dst: v6("fd00:2::5").into(),
            via: Some(B.into())
        }]
    );
    let p41 = synth::ipip(B, LOCAL, &inner);
    let mut p = p41.clone();
    sim.clear();
    let v = e.on_remote_traced(NOW, Outer::from(B), &mut p, &mut ctr, &mut sim);
    assert!(matches!(v, FromTunnel::Deliver { .. }), "{v:?}");
    let v4_only = ipip(&[parse_route("10.2.0.0/16=192.0.2.2").unwrap()]);
    assert_eq!(
        v4_only.on_local_traced(NOW, &inner, &mut out, &mut ctr, &mut sim),
        FromDevice::Drop(DropReason::NoIpv6)
    );
    let mut p = p41;
    let v = v4_only.on_remote_traced(NOW, Outer::from(B), &mut p, &mut ctr, &mut sim);
    assert_eq!(v, FromTunnel::Drop(DropReason::NoIpv6));
}
