//! Model-based test: random sequences of data-path learning and control-plane operations,
//! checked after every step against a plain single-threaded reference model of the FDB rules
//! (RFC 7348 §4.1, as ARCHITECTURE.md states them): learn only unicast non-own MACs, never over
//! static, moves counted, refresh only as a source, ageing, per-VNI cap.

mod decision_support;

use decision_support::{Action, device_actions, tunnel_actions};
use encap::vxlan::{HEADER_LEN, VxlanPacket};
use encap::{MacAddr, Vni};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use vtepd::core::{
    Core, CoreConfig, Counters, DropReason, EntryKind, NetId, NetworkConfig, Remotes, Timestamp,
};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const AGEING_MS: u64 = 100_000;
const CAP: usize = 3;
const VNIS: [u32; 2] = [10, 20];

fn peer(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10 + i))
}

fn mac(i: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, i])
}

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    /// A datagram on network `net` from peer `from` with inner source `mac`.
    Remote {
        net: usize,
        from: u8,
        mac: u8,
    },
    /// A local frame on `net` to `mac`.
    Local {
        net: usize,
        mac: u8,
    },
    Add {
        net: usize,
        mac: u8,
        remote: u8,
    },
    Del {
        net: usize,
        mac: u8,
    },
    Flush {
        net: Option<usize>,
        learned_only: bool,
    },
    Expire,
}

fn op() -> impl Strategy<Value = Op> {
    let net = 0usize..2;
    prop_oneof![
        2 => (0u64..60_000).prop_map(Op::Advance),
        6 => (net.clone(), 0u8..3, 0u8..6).prop_map(|(net, from, mac)| Op::Remote { net, from, mac }),
        3 => (net.clone(), 0u8..6).prop_map(|(net, mac)| Op::Local { net, mac }),
        2 => (net.clone(), 0u8..6, 0u8..3).prop_map(|(net, mac, remote)| Op::Add { net, mac, remote }),
        1 => (net.clone(), 0u8..6).prop_map(|(net, mac)| Op::Del { net, mac }),
        1 => (proptest::option::of(net), any::<bool>()).prop_map(|(net, learned_only)| Op::Flush { net, learned_only }),
        1 => Just(Op::Expire),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ModelEntry {
    remote: IpAddr,
    kind: EntryKind,
    seen: u64,
}

/// The reference model: one map per network, plus the counters the core keeps.
#[derive(Default)]
struct Model {
    fdb: [BTreeMap<u8, ModelEntry>; 2],
    ctr: Counters,
}

impl Model {
    fn expired(e: &ModelEntry, now: u64) -> bool {
        e.kind == EntryKind::Learned && now.saturating_sub(e.seen) > AGEING_MS
    }
    fn learned(&self, net: usize) -> usize {
        self.fdb[net]
            .values()
            .filter(|e| e.kind == EntryKind::Learned)
            .count()
    }
    /// Learns `m` from `from`; true when a static entry pins it elsewhere (the frame is then
    /// dropped as a spoof).
    fn learn(&mut self, now: u64, net: usize, m: u8, from: IpAddr) -> bool {
        let learned = self.learned(net);
        match self.fdb[net].get_mut(&m) {
            Some(e) if e.kind == EntryKind::Static => {
                if e.remote != from {
                    self.ctr.learn_static_conflict += 1;
                    self.ctr.drop(DropReason::StaticConflict);
                    return true;
                }
            }
            Some(e) if Model::expired(e, now) => {
                *e = ModelEntry {
                    remote: from,
                    kind: EntryKind::Learned,
                    seen: now,
                };
                self.ctr.learned += 1;
            }
            Some(e) if e.remote != from => {
                *e = ModelEntry {
                    remote: from,
                    kind: EntryKind::Learned,
                    seen: now,
                };
                self.ctr.mac_moves += 1;
            }
            Some(e) => e.seen = e.seen.max(now),
            None if learned >= CAP => self.ctr.learn_refused += 1,
            None => {
                self.fdb[net].insert(
                    m,
                    ModelEntry {
                        remote: from,
                        kind: EntryKind::Learned,
                        seen: now,
                    },
                );
                self.ctr.learned += 1;
            }
        }
        false
    }
    fn lookup(&self, now: u64, net: usize, m: u8) -> Option<IpAddr> {
        self.fdb[net]
            .get(&m)
            .filter(|e| !Model::expired(e, now))
            .map(|e| e.remote)
    }
    fn listing(&self, now: u64) -> Vec<(u32, MacAddr, IpAddr, EntryKind, Duration)> {
        let mut v = Vec::new();
        for (net, map) in self.fdb.iter().enumerate() {
            for (m, e) in map {
                if !Model::expired(e, now) {
                    let age = Duration::from_millis(now.saturating_sub(e.seen));
                    v.push((VNIS[net], mac(*m), e.remote, e.kind, age));
                }
            }
        }
        v.sort_by_key(|x| (x.0, x.1));
        v
    }
}

fn datagram(v: u32, src: MacAddr) -> Vec<u8> {
    let mut d = vec![0u8; HEADER_LEN];
    VxlanPacket::new_unchecked(&mut d[..]).set_header(Vni::new(v).unwrap());
    d.extend_from_slice(&[0x02, 0xaa, 0, 0, 0, 1]);
    d.extend_from_slice(&src.0);
    d.extend_from_slice(&[0x08, 0x00]);
    d.resize(HEADER_LEN + 60, 0);
    d
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn core_matches_the_reference_model(ops in proptest::collection::vec(op(), 1..120)) {
        let core = Core::new(CoreConfig {
            local: LOCAL,
            allow_any_peer: false,
            networks: VNIS
                .iter()
                .map(|&v| NetworkConfig {
                    vni: Vni::new(v).unwrap(),
                    peers: (0..3).map(peer).collect(),
                    own_mac: MacAddr([0x02, 0xee, 0, 0, 0, 1]),
                    ageing: Duration::from_millis(AGEING_MS),
                    max_learned: CAP,
                    // The model learns without dampening (tests/core_dampening.rs covers it).
                    mac_move: vtepd::core::dampening::MoveLimit::OFF,
                    ..Default::default()
                })
                .collect(),
        })
        .unwrap();
        let vni = |n: usize| Vni::new(VNIS[n]).unwrap();
        let mut model = Model::default();
        let (mut to, mut ctr) = (Remotes::default(), Counters::default());
        let mut now = 0u64;
        for op in ops {
            match op {
                Op::Advance(ms) => now += ms,
                Op::Remote { net, from, mac: m } => {
                    let mut d = datagram(VNIS[net], mac(m));
                    let decision = core.on_remote(Timestamp(now), peer(from).into(), &mut d, &mut ctr);
                    let out = tunnel_actions(decision, d.len());
                    let want = if model.learn(now, net, m, peer(from)) {
                        Action::Drop(DropReason::StaticConflict)
                    } else {
                        Action::ToDevice { net: NetId(net as u16), offset: HEADER_LEN }
                    };
                    prop_assert_eq!(out.as_slice(), &[want]);
                }
                Op::Local { net, mac: m } => {
                    let mut f = mac(m).0.to_vec();
                    f.extend_from_slice(&[0x02, 0xaa, 0, 0, 0, 1, 0x08, 0x00]);
                    f.resize(60, 0);
                    let decision = core.on_local(Timestamp(now), NetId(net as u16), &f, &mut to, &mut ctr);
                    let out = device_actions(decision, &to);
                    let expected: Vec<Action> = match model.lookup(now, net, m) {
                        Some(dst) => vec![Action::ToTunnel { vni: vni(net), dst }],
                        None => (0..3).map(|p| Action::ToTunnel { vni: vni(net), dst: peer(p) }).collect(),
                    };
                    prop_assert_eq!(out.as_slice(), &expected[..]);
                }
                Op::Add { net, mac: m, remote } => {
                    core.fdb_add(Timestamp(now), vni(net), mac(m), peer(remote)).unwrap();
                    model.fdb[net].insert(m, ModelEntry { remote: peer(remote), kind: EntryKind::Static, seen: now });
                }
                Op::Del { net, mac: m } => {
                    let had = core.fdb_del(vni(net), mac(m)).unwrap();
                    prop_assert_eq!(had, model.fdb[net].remove(&m).is_some());
                }
                Op::Flush { net, learned_only } => {
                    let n = core.fdb_flush(net.map(vni), learned_only).unwrap();
                    let mut expected = 0;
                    for (i, map) in model.fdb.iter_mut().enumerate() {
                        if net.is_none_or(|x| x == i) {
                            let before = map.len();
                            map.retain(|_, e| learned_only && e.kind == EntryKind::Static);
                            expected += before - map.len();
                        }
                    }
                    prop_assert_eq!(n, expected);
                }
                Op::Expire => {
                    let n = core.expire(Timestamp(now));
                    let mut expected = 0;
                    for map in model.fdb.iter_mut() {
                        let before = map.len();
                        map.retain(|_, e| !Model::expired(e, now));
                        expected += before - map.len();
                    }
                    prop_assert_eq!(n, expected);
                }
            }
            let listing: Vec<_> = core
                .fdb_entries(Timestamp(now), None)
                .into_iter()
                .map(|e| (e.vni.get(), e.mac, e.remote, e.kind, e.age))
                .collect();
            prop_assert_eq!(listing, model.listing(now));
            for n in 0..2 {
                prop_assert_eq!(core.learned_count(vni(n)), Some(model.learned(n)));
                for p in 0..3 {
                    prop_assert!(core.known_remote(vni(n), peer(p)));
                }
            }
            prop_assert_eq!(core.fdb_len(), model.fdb[0].len() + model.fdb[1].len());
            prop_assert_eq!(ctr.learned, model.ctr.learned);
            prop_assert_eq!(ctr.mac_moves, model.ctr.mac_moves);
            prop_assert_eq!(ctr.learn_refused, model.ctr.learn_refused);
            prop_assert_eq!(ctr.learn_static_conflict, model.ctr.learn_static_conflict);
            // The only drops: frames whose source MAC a static entry pins elsewhere.
            prop_assert_eq!(ctr.drops_of(DropReason::StaticConflict), model.ctr.drops_of(DropReason::StaticConflict));
            prop_assert_eq!(ctr.total_drops(), model.ctr.total_drops());
        }
    }
}
