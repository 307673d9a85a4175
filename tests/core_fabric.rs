//! A simulated VXLAN fabric in memory, in the style of the Linux kernel's vxlan selftests:
//! several `Core`s, each with its own underlay address and a "device" log, a virtual clock,
//! and a wire that turns `ToTunnel` actions into real VXLAN datagrams delivered to the target
//! core's `on_remote`. Every test asserts exact copy counts. The core's decisions
//! (`FromDevice` with the remotes listed in `Remotes`, `FromTunnel`) are turned into the
//! local `Action` records the tests compare against (`device_actions`, `tunnel_actions`).
//!
//! The wire forwards whatever the cores ask for, including any `ToTunnel` a core would emit
//! for a decapsulated frame, so a split-horizon violation shows up as extra copies.

mod decision_support;

use decision_support::{Action, device_actions, tunnel_actions};
use encap::vxlan::{HEADER_LEN, VxlanPacket};
use encap::{MacAddr, Vni};
use proptest::prelude::*;
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use vtepd::core::{
    Core, CoreConfig, Counters, DEFAULT_AGEING, DEFAULT_MAX_LEARNED, DropReason, NetId,
    NetworkConfig, Remotes, Timestamp,
};

const VNI: u32 = 100;
const NET: NetId = NetId(0);

fn vni(v: u32) -> Vni {
    Vni::new(v).unwrap()
}

fn underlay(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1 + i as u8))
}

/// A host MAC (locally administered unicast).
fn host(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0xa0, n])
}

/// The device MAC of VTEP `i`.
fn dev_mac(i: usize) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0xd0, i as u8])
}

/// A minimal Ethernet frame (IPv4 ethertype, padded to 60 bytes) carrying `tag`.
fn frame(dst: MacAddr, src: MacAddr, tag: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.resize(60, tag);
    f
}

/// Per-network settings used to build a fabric.
#[derive(Clone)]
struct NetSpec {
    learning: bool,
    ageing: Duration,
    max_learned: usize,
}

impl Default for NetSpec {
    fn default() -> Self {
        NetSpec {
            learning: true,
            ageing: DEFAULT_AGEING,
            max_learned: DEFAULT_MAX_LEARNED,
        }
    }
}

struct Vtep {
    ip: IpAddr,
    core: Core,
    ctr: Counters,
    /// Frames written to the local device: (network, frame).
    device: Vec<(NetId, Vec<u8>)>,
}

/// One datagram on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    from: IpAddr,
    to: IpAddr,
    vni: Vni,
}

struct Fabric {
    now: Timestamp,
    vteps: Vec<Vtep>,
    /// Every datagram any VTEP sent, in order.
    wire: Vec<Sent>,
    remotes: Remotes,
}

impl Fabric {
    /// `n` VTEPs on one VNI, each with every other VTEP in its flood list.
    fn mesh(n: usize, spec: NetSpec) -> Fabric {
        Fabric::with(
            n,
            |_| spec.clone(),
            |i| (0..n).filter(|&j| j != i).map(underlay).collect(),
        )
    }

    fn with(
        n: usize,
        spec: impl Fn(usize) -> NetSpec,
        peers: impl Fn(usize) -> Vec<IpAddr>,
    ) -> Fabric {
        let vteps = (0..n)
            .map(|i| {
                let s = spec(i);
                let cfg = CoreConfig {
                    local: underlay(i),
                    allow_any_peer: false,
                    networks: vec![NetworkConfig {
                        vni: vni(VNI),
                        peers: peers(i),
                        own_mac: dev_mac(i),
                        learning: s.learning,
                        ageing: s.ageing,
                        max_learned: s.max_learned,
                        ..Default::default()
                    }],
                };
                Vtep {
                    ip: underlay(i),
                    core: Core::new(cfg).unwrap(),
                    ctr: Counters::default(),
                    device: Vec::new(),
                }
            })
            .collect();
        Fabric {
            now: Timestamp(1_000),
            vteps,
            wire: Vec::new(),
            remotes: Remotes::with_capacity(64),
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
    }

    fn idx(&self, ip: IpAddr) -> Option<usize> {
        self.vteps.iter().position(|v| v.ip == ip)
    }

    /// VTEP `i`'s local device emits `frame` on `net`; runs the fabric until quiet.
    fn local(&mut self, i: usize, frame: &[u8]) -> Vec<Action> {
        let v = &mut self.vteps[i];
        let decision = v
            .core
            .on_local(self.now, NET, frame, &mut self.remotes, &mut v.ctr);
        let acts = device_actions(decision, &self.remotes);
        let mut queue = VecDeque::new();
        self.dispatch(i, frame, false, &acts, &mut queue);
        self.run(queue);
        acts
    }

    /// Delivers a raw datagram to VTEP `to` as if from `src`; runs the fabric until quiet.
    fn inject(&mut self, to: usize, src: IpAddr, datagram: &[u8]) -> Vec<Action> {
        // The core rewrites the datagram in place (ECN): it works on the wire's copy.
        let mut datagram = datagram.to_vec();
        let v = &mut self.vteps[to];
        let decision = v
            .core
            .on_remote(self.now, src.into(), &mut datagram, &mut v.ctr);
        let acts = tunnel_actions(decision, datagram.len());
        let mut queue = VecDeque::new();
        self.dispatch(to, &datagram, true, &acts, &mut queue);
        self.run(queue);
        acts
    }

    /// Carries out `acts` of VTEP `i` for the buffer `buf` they refer to (a datagram when
    /// `from_tunnel`, else a local frame).
    fn dispatch(
        &mut self,
        i: usize,
        buf: &[u8],
        from_tunnel: bool,
        acts: &[Action],
        queue: &mut VecDeque<(usize, IpAddr, Vec<u8>)>,
    ) {
        for a in acts {
            match *a {
                Action::ToTunnel { vni, dst } => {
                    // What a dataplane would do: encapsulate the frame it was given. For a
                    // decapsulated datagram that is the inner frame (split-horizon violation).
                    let inner = if from_tunnel { &buf[HEADER_LEN..] } else { buf };
                    let d = encapsulate(vni, inner);
                    let from = self.vteps[i].ip;
                    self.wire.push(Sent { from, to: dst, vni });
                    if let Some(t) = self.idx(dst) {
                        queue.push_back((t, from, d));
                    }
                }
                Action::ToDevice { net, offset } => {
                    self.vteps[i].device.push((net, buf[offset..].to_vec()));
                }
                Action::Drop(_) => {}
            }
        }
    }

    fn run(&mut self, mut queue: VecDeque<(usize, IpAddr, Vec<u8>)>) {
        let mut steps = 0;
        while let Some((t, src, mut d)) = queue.pop_front() {
            steps += 1;
            assert!(steps < 10_000, "fabric does not settle: a forwarding loop");
            let v = &mut self.vteps[t];
            let decision = v.core.on_remote(self.now, src.into(), &mut d, &mut v.ctr);
            let acts = tunnel_actions(decision, d.len());
            self.dispatch(t, &d, true, &acts, &mut queue);
        }
    }

    /// Datagrams on the wire from `from` to `to` (indices).
    fn copies(&self, from: usize, to: usize) -> usize {
        let (f, t) = (underlay(from), underlay(to));
        self.wire
            .iter()
            .filter(|s| s.from == f && s.to == t)
            .count()
    }

    /// Frames delivered to VTEP `i`'s device carrying `tag` (the padding byte).
    fn delivered(&self, i: usize, tag: u8) -> usize {
        self.vteps[i]
            .device
            .iter()
            .filter(|(_, f)| f[59] == tag)
            .count()
    }

    fn clear_logs(&mut self) {
        self.wire.clear();
        for v in &mut self.vteps {
            v.device.clear();
        }
    }

    fn ctr(&self, i: usize) -> &Counters {
        &self.vteps[i].ctr
    }

    fn core(&self, i: usize) -> &Core {
        &self.vteps[i].core
    }
}

fn encapsulate(v: Vni, inner: &[u8]) -> Vec<u8> {
    let mut d = vec![0u8; HEADER_LEN + inner.len()];
    VxlanPacket::new_unchecked(&mut d[..]).set_header(v);
    d[HEADER_LEN..].copy_from_slice(inner);
    d
}

// --- flooding and unicast ------------------------------------------------------------------

#[test]
fn unknown_unicast_reaches_every_peer_exactly_once() {
    let mut f = Fabric::mesh(4, NetSpec::default());
    let acts = f.local(0, &frame(host(99), host(1), 7));
    assert_eq!(acts.len(), 3);
    for j in 1..4 {
        assert_eq!(f.copies(0, j), 1, "copies to VTEP {j}");
        assert_eq!(f.delivered(j, 7), 1, "deliveries at VTEP {j}");
    }
    assert_eq!(f.wire.len(), 3, "nothing else on the wire");
    assert_eq!(f.delivered(0, 7), 0);
    assert_eq!(f.ctr(0).flood_copies, 3);
    assert_eq!(f.ctr(0).rx_device, 1);
}

#[test]
fn broadcast_and_multicast_are_flooded() {
    let mut f = Fabric::mesh(3, NetSpec::default());
    f.local(0, &frame(MacAddr::BROADCAST, host(1), 1));
    f.local(0, &frame(MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]), host(1), 2));
    for j in 1..3 {
        assert_eq!(f.delivered(j, 1), 1);
        assert_eq!(f.delivered(j, 2), 1);
    }
    assert_eq!(f.wire.len(), 4);
}

#[test]
fn after_learning_unicast_reaches_only_the_target() {
    let mut f = Fabric::mesh(4, NetSpec::default());
    let (a, b) = (host(1), host(2)); // a behind VTEP 0, b behind VTEP 1
    f.local(0, &frame(b, a, 1)); // flooded; everyone learns a -> VTEP 0
    for j in 1..4 {
        assert_eq!(f.core(j).fdb_lookup(f.now, vni(VNI), a), Some(underlay(0)));
        assert_eq!(f.ctr(j).learned, 1);
    }
    f.clear_logs();
    f.local(1, &frame(a, b, 2)); // known: unicast to VTEP 0 only; VTEP 0 learns b
    assert_eq!(
        f.wire,
        vec![Sent {
            from: underlay(1),
            to: underlay(0),
            vni: vni(VNI)
        }]
    );
    assert_eq!(f.delivered(0, 2), 1);
    assert_eq!(f.ctr(1).flood_copies, 0);
    f.clear_logs();
    f.local(0, &frame(b, a, 3));
    assert_eq!(f.copies(0, 1), 1);
    assert_eq!(f.copies(0, 2), 0);
    assert_eq!(f.copies(0, 3), 0);
    assert_eq!(f.wire.len(), 1);
    assert_eq!(
        (f.delivered(1, 3), f.delivered(2, 3), f.delivered(3, 3)),
        (1, 0, 0)
    );
}

#[test]
fn deleting_the_entry_brings_flooding_back() {
    let mut f = Fabric::mesh(3, NetSpec::default());
    let (a, b) = (host(1), host(2));
    f.local(1, &frame(a, b, 1)); // VTEP 0 learns b -> VTEP 1
    f.clear_logs();
    f.local(0, &frame(b, a, 2));
    assert_eq!(f.wire.len(), 1);
    assert_eq!(f.core(0).fdb_del(vni(VNI), b), Ok(true));
    assert_eq!(f.core(0).fdb_del(vni(VNI), b), Ok(false));
    f.clear_logs();
    f.local(0, &frame(b, a, 3));
    assert_eq!((f.copies(0, 1), f.copies(0, 2)), (1, 1));
    assert_eq!(f.wire.len(), 2);
}

#[test]
fn static_entry_steers_unicast_and_flush_restores_flooding() {
    let mut f = Fabric::mesh(3, NetSpec::default());
    let b = host(2);
    f.core(0).fdb_add(f.now, vni(VNI), b, underlay(2)).unwrap();
    f.local(0, &frame(b, host(1), 1));
    assert_eq!(
        f.wire,
        vec![Sent {
            from: underlay(0),
            to: underlay(2),
            vni: vni(VNI)
        }]
    );
    assert_eq!(
        f.core(0).fdb_flush(Some(vni(VNI)), true),
        Ok(0),
        "learned-only keeps static"
    );
    assert_eq!(f.core(0).fdb_flush(None, false), Ok(1));
    f.clear_logs();
    f.local(0, &frame(b, host(1), 2));
    assert_eq!(f.wire.len(), 2);
}

// --- ageing and refresh --------------------------------------------------------------------

#[test]
fn ageing_removes_entries_only_ever_used_as_destinations() {
    let ageing = Duration::from_secs(300);
    let mut f = Fabric::mesh(
        3,
        NetSpec {
            ageing,
            ..NetSpec::default()
        },
    );
    let (a, b) = (host(1), host(2));
    f.local(1, &frame(a, b, 1)); // VTEP 0 learns b
    // b is only ever a destination from now on: sending to it must not refresh it.
    for _ in 0..10 {
        f.advance(Duration::from_secs(30));
        f.local(0, &frame(b, a, 2));
    }
    // 300 s since learned: still exactly at the limit, so still known (unicast).
    assert_eq!(f.core(0).fdb_lookup(f.now, vni(VNI), b), Some(underlay(1)));
    f.advance(Duration::from_millis(1));
    assert_eq!(
        f.core(0).fdb_lookup(f.now, vni(VNI), b),
        None,
        "idle past ageing: absent"
    );
    assert!(
        f.core(0).fdb_entries(f.now, None).is_empty(),
        "listing omits expired entries"
    );
    f.clear_logs();
    f.local(0, &frame(b, a, 3));
    assert_eq!(f.wire.len(), 2, "expired entry means flooding");
    // expire() removes it (and only it: VTEP 0's own view of a is not in VTEP 0's FDB).
    let before = f.core(0).fdb_len();
    assert_eq!(f.core(0).expire(f.now), 1);
    assert_eq!(f.core(0).fdb_len(), before - 1);
    assert_eq!(f.core(0).expire(f.now), 0);
}

#[test]
fn seen_as_source_refreshes_and_keeps_the_entry() {
    let mut f = Fabric::mesh(
        2,
        NetSpec {
            ageing: Duration::from_secs(60),
            ..NetSpec::default()
        },
    );
    let (a, b) = (host(1), host(2));
    f.local(1, &frame(a, b, 1));
    for _ in 0..10 {
        f.advance(Duration::from_secs(50));
        f.local(1, &frame(MacAddr::BROADCAST, b, 2)); // b seen as a source at VTEP 0
        assert_eq!(f.core(0).expire(f.now), 0);
    }
    assert_eq!(f.core(0).fdb_lookup(f.now, vni(VNI), b), Some(underlay(1)));
    let e = f.core(0).fdb_entries(f.now, Some(vni(VNI)));
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].age, Duration::ZERO);
    assert_eq!(f.ctr(0).learned, 1, "refreshes are not new learns");
}

#[test]
fn static_entries_never_age() {
    let mut f = Fabric::mesh(
        2,
        NetSpec {
            ageing: Duration::from_secs(1),
            ..NetSpec::default()
        },
    );
    f.core(0)
        .fdb_add(f.now, vni(VNI), host(5), underlay(1))
        .unwrap();
    f.advance(Duration::from_secs(3600));
    assert_eq!(f.core(0).expire(f.now), 0);
    assert_eq!(
        f.core(0).fdb_lookup(f.now, vni(VNI), host(5)),
        Some(underlay(1))
    );
    let e = f.core(0).fdb_entries(f.now, None);
    assert_eq!(e[0].age, Duration::from_secs(3600));
}

// --- learning policy -----------------------------------------------------------------------

#[test]
fn learning_off_learns_nothing() {
    let mut f = Fabric::with(
        2,
        |i| NetSpec {
            learning: i != 1,
            ..NetSpec::default()
        },
        |i| vec![underlay(1 - i)],
    );
    f.local(0, &frame(host(2), host(1), 1));
    assert_eq!(f.delivered(1, 1), 1, "still delivered");
    assert_eq!(f.core(1).fdb_len(), 0);
    assert_eq!(f.ctr(1).learned, 0);
    f.clear_logs();
    f.local(1, &frame(host(1), host(2), 2));
    assert_eq!(f.ctr(1).flood_copies, 1, "host(1) stays unknown");
}

#[test]
fn cap_holds_and_static_entries_are_still_addable() {
    let mut f = Fabric::mesh(
        2,
        NetSpec {
            max_learned: 2,
            ..NetSpec::default()
        },
    );
    for n in 1..=3 {
        f.local(0, &frame(MacAddr::BROADCAST, host(n), n));
    }
    assert_eq!(f.delivered(1, 3), 1, "refused MACs are still delivered");
    assert_eq!(f.ctr(1).learned, 2);
    assert_eq!(f.ctr(1).learn_refused, 1);
    assert_eq!(f.core(1).fdb_len(), 2);
    assert_eq!(f.core(1).fdb_lookup(f.now, vni(VNI), host(3)), None);
    // Seen again: refused again, still counted.
    f.local(0, &frame(MacAddr::BROADCAST, host(3), 9));
    assert_eq!(f.ctr(1).learn_refused, 2);
    // Static entries do not count against the cap.
    f.core(1)
        .fdb_add(f.now, vni(VNI), host(3), underlay(0))
        .unwrap();
    f.core(1)
        .fdb_add(f.now, vni(VNI), host(4), underlay(0))
        .unwrap();
    assert_eq!(f.core(1).fdb_len(), 4);
    // Deleting a learned entry makes room for a new one.
    assert_eq!(f.core(1).fdb_del(vni(VNI), host(1)), Ok(true));
    f.local(0, &frame(MacAddr::BROADCAST, host(6), 10));
    assert_eq!(f.ctr(1).learned, 3);
    assert_eq!(f.core(1).learned_count(vni(VNI)), Some(2));
}

#[test]
fn static_entry_replacing_learned_frees_cap() {
    let mut f = Fabric::mesh(
        2,
        NetSpec {
            max_learned: 1,
            ..NetSpec::default()
        },
    );
    f.local(0, &frame(MacAddr::BROADCAST, host(1), 1));
    assert_eq!(f.core(1).learned_count(vni(VNI)), Some(1));
    f.core(1)
        .fdb_add(f.now, vni(VNI), host(1), underlay(0))
        .unwrap();
    assert_eq!(f.core(1).learned_count(vni(VNI)), Some(0));
    f.local(0, &frame(MacAddr::BROADCAST, host(2), 2));
    assert_eq!(f.ctr(1).learned, 2);
    assert_eq!(f.ctr(1).learn_refused, 0);
}

#[test]
fn spoofed_source_cannot_move_a_static_entry() {
    let mut f = Fabric::mesh(3, NetSpec::default());
    let victim = host(1);
    f.core(1)
        .fdb_add(f.now, vni(VNI), victim, underlay(0))
        .unwrap();
    // VTEP 2 sends a frame claiming to come from the victim's MAC: not delivered (a spoof).
    f.local(2, &frame(MacAddr::BROADCAST, victim, 1));
    assert_eq!(f.delivered(1, 1), 0);
    assert_eq!(f.ctr(1).drops_of(DropReason::StaticConflict), 1);
    assert_eq!(f.ctr(1).learn_static_conflict, 1);
    assert_eq!(f.ctr(1).mac_moves, 0);
    assert_eq!(
        f.core(1).fdb_lookup(f.now, vni(VNI), victim),
        Some(underlay(0))
    );
    f.clear_logs();
    f.local(1, &frame(victim, host(2), 2));
    assert_eq!(
        f.wire,
        vec![Sent {
            from: underlay(1),
            to: underlay(0),
            vni: vni(VNI)
        }]
    );
}

#[test]
fn a_static_entry_pins_its_mac_with_learning_off_too() {
    let mut f = Fabric::mesh(
        3,
        NetSpec {
            learning: false,
            ..NetSpec::default()
        },
    );
    let victim = host(1);
    f.core(1)
        .fdb_add(f.now, vni(VNI), victim, underlay(0))
        .unwrap();
    // From the VTEP the entry names: delivered; from another: dropped as a spoof.
    f.local(0, &frame(MacAddr::BROADCAST, victim, 1));
    f.local(2, &frame(MacAddr::BROADCAST, victim, 2));
    assert_eq!(f.delivered(1, 1), 1);
    assert_eq!(f.delivered(1, 2), 0);
    assert_eq!(f.ctr(1).drops_of(DropReason::StaticConflict), 1);
    assert_eq!(f.ctr(1).learned, 0);
}

#[test]
fn mac_moves_are_followed_and_counted() {
    let mut f = Fabric::mesh(3, NetSpec::default());
    let m = host(1);
    f.local(0, &frame(MacAddr::BROADCAST, m, 1));
    assert_eq!(f.core(1).fdb_lookup(f.now, vni(VNI), m), Some(underlay(0)));
    f.local(2, &frame(MacAddr::BROADCAST, m, 2)); // m moved behind VTEP 2
    assert_eq!(f.core(1).fdb_lookup(f.now, vni(VNI), m), Some(underlay(2)));
    assert_eq!(f.ctr(1).mac_moves, 1);
    assert_eq!(f.ctr(1).learned, 1);
    f.clear_logs();
    f.local(1, &frame(m, host(2), 3));
    assert_eq!(
        f.wire,
        vec![Sent {
            from: underlay(1),
            to: underlay(2),
            vni: vni(VNI)
        }]
    );
}

#[test]
fn relearning_an_expired_entry_is_a_learn_not_a_move() {
    let mut f = Fabric::mesh(
        3,
        NetSpec {
            ageing: Duration::from_secs(10),
            ..NetSpec::default()
        },
    );
    let m = host(1);
    f.local(0, &frame(MacAddr::BROADCAST, m, 1));
    f.advance(Duration::from_secs(11));
    f.local(2, &frame(MacAddr::BROADCAST, m, 2));
    assert_eq!(f.ctr(1).mac_moves, 0);
    assert_eq!(f.ctr(1).learned, 2);
    assert_eq!(f.core(1).learned_count(vni(VNI)), Some(1));
    assert_eq!(f.core(1).fdb_lookup(f.now, vni(VNI), m), Some(underlay(2)));
}

// --- split horizon -------------------------------------------------------------------------

#[test]
fn split_horizon_in_a_three_vtep_fabric() {
    let mut f = Fabric::mesh(3, NetSpec::default());
    f.local(0, &frame(MacAddr::BROADCAST, host(1), 1));
    f.local(0, &frame(host(42), host(1), 2)); // unknown unicast
    assert_eq!(f.wire.len(), 4, "two floods of two copies, nothing re-sent");
    for j in 1..3 {
        assert_eq!(
            f.copies(j, 0) + f.copies(j, 3 - j),
            0,
            "VTEP {j} re-sent a frame"
        );
        assert_eq!(f.delivered(j, 1), 1);
        assert_eq!(f.delivered(j, 2), 1);
    }
    assert_eq!(f.ctr(1).flood_copies + f.ctr(2).flood_copies, 0);
    assert_eq!(f.ctr(1).rx_tunnel, 2);
}

#[test]
fn on_remote_never_emits_tunnel_actions() {
    let mut f = Fabric::mesh(3, NetSpec::default());
    // Even when the inner destination is known to be behind another VTEP.
    f.core(1)
        .fdb_add(f.now, vni(VNI), host(9), underlay(2))
        .unwrap();
    let acts = f.inject(
        1,
        underlay(0),
        &encapsulate(vni(VNI), &frame(host(9), host(1), 1)),
    );
    assert_eq!(
        acts,
        vec![Action::ToDevice {
            net: NET,
            offset: HEADER_LEN
        }]
    );
    assert!(f.wire.is_empty());
}

// --- drops ---------------------------------------------------------------------------------

/// Injects `datagram` from `src` into VTEP 1 of a fresh 3-mesh and checks it is dropped for
/// `reason`, counted exactly once, and nothing is delivered or learned.
fn assert_remote_drop(src: IpAddr, datagram: &[u8], reason: DropReason) {
    let mut f = Fabric::mesh(3, NetSpec::default());
    let acts = f.inject(1, src, datagram);
    assert_eq!(acts, vec![Action::Drop(reason)]);
    assert_eq!(f.ctr(1).drops_of(reason), 1);
    assert_eq!(f.ctr(1).total_drops(), 1);
    assert_eq!(f.ctr(1).rx_tunnel, 1);
    assert!(f.vteps[1].device.is_empty());
    assert_eq!(f.core(1).fdb_len(), 0);
}

#[test]
fn drop_unknown_peer() {
    let d = encapsulate(vni(VNI), &frame(host(2), host(1), 1));
    assert_remote_drop(
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)),
        &d,
        DropReason::UnknownPeer,
    );
    assert_remote_drop(underlay(1), &d, DropReason::UnknownPeer); // our own address
}

#[test]
fn drop_unknown_vni() {
    let d = encapsulate(vni(VNI + 1), &frame(host(2), host(1), 1));
    assert_remote_drop(underlay(0), &d, DropReason::UnknownVni);
}

#[test]
fn drop_i_flag_clear() {
    let mut d = encapsulate(vni(VNI), &frame(host(2), host(1), 1));
    d[0] = 0x00;
    assert_remote_drop(underlay(0), &d, DropReason::VxlanFlags);
    d[0] = 0xf7; // every bit but I
    assert_remote_drop(underlay(0), &d, DropReason::VxlanFlags);
}

/// RFC 7348's reserved bits are ignored, but for the one remote checksum offload took (0x20 of
/// the second byte): a network without `remcsum_rx` drops such a datagram (`remote_csum`), as
/// the kernel's device without `remcsumrx` does.
#[test]
fn reserved_bits_are_ignored_on_receive() {
    let mut f = Fabric::mesh(2, NetSpec::default());
    let mut d = encapsulate(vni(VNI), &frame(host(2), host(1), 1));
    d[0] = 0xff;
    d[1..4].copy_from_slice(&[0xdf, 0xff, 0xff]);
    d[7] = 0xff;
    let acts = f.inject(1, underlay(0), &d);
    assert_eq!(
        acts,
        vec![Action::ToDevice {
            net: NET,
            offset: HEADER_LEN
        }]
    );
    d[1] = 0xff;
    assert_remote_drop(underlay(0), &d, DropReason::RemoteCsum);
}

#[test]
fn drop_truncated_and_runts() {
    let d = encapsulate(vni(VNI), &frame(host(2), host(1), 1));
    for len in 0..HEADER_LEN {
        assert_remote_drop(underlay(0), &d[..len], DropReason::Truncated);
    }
    for len in HEADER_LEN..HEADER_LEN + 14 {
        assert_remote_drop(underlay(0), &d[..len], DropReason::InnerRunt);
    }
    let mut f = Fabric::mesh(2, NetSpec::default());
    for len in 0..14 {
        let acts = f.local(0, &frame(host(2), host(1), 1)[..len]);
        assert_eq!(acts, vec![Action::Drop(DropReason::LocalRunt)]);
    }
    assert_eq!(f.ctr(0).drops_of(DropReason::LocalRunt), 14);
    assert_eq!(f.ctr(0).rx_device, 14);
    assert!(f.wire.is_empty());
}

#[test]
fn drop_bad_and_own_source_mac() {
    let own = dev_mac(1);
    let d = encapsulate(vni(VNI), &frame(host(2), own, 1));
    assert_remote_drop(underlay(0), &d, DropReason::OwnSourceMac);
    for bad in [
        MacAddr::ZERO,
        MacAddr::BROADCAST,
        MacAddr([0x01, 0, 0x5e, 0, 0, 1]),
    ] {
        let d = encapsulate(vni(VNI), &frame(host(2), bad, 1));
        assert_remote_drop(underlay(0), &d, DropReason::BadSourceMac);
    }
}

#[test]
fn drop_no_peers_and_unknown_network() {
    let mut f = Fabric::with(1, |_| NetSpec::default(), |_| vec![]);
    let acts = f.local(0, &frame(MacAddr::BROADCAST, host(1), 1));
    assert_eq!(acts, vec![Action::Drop(DropReason::NoPeers)]);
    let v = &mut f.vteps[0];
    let mut to = Remotes::default();
    let decision = v.core.on_local(
        f.now,
        NetId(1),
        &frame(host(2), host(1), 1),
        &mut to,
        &mut v.ctr,
    );
    let out = device_actions(decision, &to);
    assert_eq!(out.as_slice(), &[Action::Drop(DropReason::UnknownNetwork)]);
    assert_eq!(v.ctr.total_drops(), 2);
}

// --- known remotes -------------------------------------------------------------------------

#[test]
fn static_entry_remote_and_new_peer_become_known() {
    let mut f = Fabric::with(3, |_| NetSpec::default(), |_| vec![]);
    let d = encapsulate(vni(VNI), &frame(host(2), host(1), 1));
    assert_eq!(
        f.inject(1, underlay(0), &d),
        vec![Action::Drop(DropReason::UnknownPeer)]
    );
    f.core(1)
        .fdb_add(f.now, vni(VNI), host(7), underlay(0))
        .unwrap();
    assert!(f.core(1).known_remote(vni(VNI), underlay(0)));
    assert!(matches!(
        f.inject(1, underlay(0), &d)[..],
        [Action::ToDevice { .. }]
    ));
    f.core(1).fdb_del(vni(VNI), host(7)).unwrap();
    assert_eq!(
        f.inject(1, underlay(0), &d),
        vec![Action::Drop(DropReason::UnknownPeer)]
    );
    // Two static entries on one remote: it stays known until the last goes.
    f.core(1)
        .fdb_add(f.now, vni(VNI), host(7), underlay(2))
        .unwrap();
    f.core(1)
        .fdb_add(f.now, vni(VNI), host(8), underlay(2))
        .unwrap();
    f.core(1).fdb_del(vni(VNI), host(7)).unwrap();
    assert!(f.core(1).known_remote(vni(VNI), underlay(2)));
    f.core(1).fdb_flush(None, false).unwrap();
    assert!(!f.core(1).known_remote(vni(VNI), underlay(2)));
    // A flood-list peer is known, and gets floods.
    assert_eq!(f.core(1).peer_add(vni(VNI), underlay(0)), Ok(true));
    assert_eq!(f.core(1).peer_add(vni(VNI), underlay(0)), Ok(false));
    assert!(matches!(
        f.inject(1, underlay(0), &d)[..],
        [Action::ToDevice { .. }]
    ));
    f.clear_logs();
    f.local(1, &frame(MacAddr::BROADCAST, host(3), 2));
    assert_eq!(f.copies(1, 0), 1);
    assert_eq!(f.core(1).peer_del(vni(VNI), underlay(0)), Ok(true));
    assert_eq!(f.core(1).peer_del(vni(VNI), underlay(0)), Ok(false));
    assert_eq!(
        f.inject(1, underlay(0), &d),
        vec![Action::Drop(DropReason::UnknownPeer)]
    );
}

#[test]
fn allow_any_peer_accepts_and_learns_unknown_sources() {
    let mut f = Fabric::with(2, |_| NetSpec::default(), |_| vec![]);
    f.core(1).set_allow_any_peer(true);
    let stranger = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
    let d = encapsulate(vni(VNI), &frame(host(2), host(1), 1));
    assert!(matches!(
        f.inject(1, stranger, &d)[..],
        [Action::ToDevice { .. }]
    ));
    assert_eq!(
        f.core(1).fdb_lookup(f.now, vni(VNI), host(1)),
        Some(stranger)
    );
    // Never from an address that cannot be a VTEP, even then.
    for bad in [
        underlay(1),
        IpAddr::V4(Ipv4Addr::BROADCAST),
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V4(Ipv4Addr::new(224, 0, 0, 1)),
    ] {
        assert_eq!(
            f.inject(1, bad, &d),
            vec![Action::Drop(DropReason::UnknownPeer)]
        );
    }
}

#[test]
fn networks_are_isolated_by_vni() {
    let mk = |i: usize| CoreConfig {
        local: underlay(i),
        allow_any_peer: false,
        networks: [10, 20]
            .into_iter()
            .map(|v| NetworkConfig {
                vni: vni(v),
                peers: vec![underlay(1 - i)],
                own_mac: dev_mac(i),
                ..Default::default()
            })
            .collect(),
    };
    let b = Core::new(mk(1)).unwrap();
    let (mut to, mut ctr) = (Remotes::default(), Counters::default());
    let m = host(1);
    let mut d = encapsulate(vni(20), &frame(host(2), m, 1));
    let decision = b.on_remote(Timestamp(0), underlay(0).into(), &mut d, &mut ctr);
    let out = tunnel_actions(decision, d.len());
    assert_eq!(
        out.as_slice(),
        &[Action::ToDevice {
            net: NetId(1),
            offset: HEADER_LEN
        }]
    );
    assert_eq!(b.fdb_lookup(Timestamp(0), vni(20), m), Some(underlay(0)));
    assert_eq!(b.fdb_lookup(Timestamp(0), vni(10), m), None);
    b.on_local(
        Timestamp(0),
        NetId(0),
        &frame(m, host(2), 2),
        &mut to,
        &mut ctr,
    );
    assert_eq!(ctr.flood_copies, 1, "VNI 10 does not know m");
    let decision = b.on_local(
        Timestamp(0),
        NetId(1),
        &frame(m, host(2), 3),
        &mut to,
        &mut ctr,
    );
    let out = device_actions(decision, &to);
    assert_eq!(
        out.as_slice(),
        &[Action::ToTunnel {
            vni: vni(20),
            dst: underlay(0)
        }]
    );
    assert_eq!(ctr.flood_copies, 1);
}

#[test]
fn actions_are_cleared_by_every_call() {
    let f = Fabric::mesh(3, NetSpec::default());
    let (mut to, mut ctr) = (Remotes::default(), Counters::default());
    // A stale remote (and VNI) left in the buffer from an earlier packet.
    to.reset(vni(VNI + 1));
    to.push(Ipv4Addr::new(203, 0, 113, 99).into());
    let decision = f.core(0).on_local(
        f.now,
        NET,
        &frame(MacAddr::BROADCAST, host(1), 1),
        &mut to,
        &mut ctr,
    );
    let out = device_actions(decision, &to);
    assert_eq!(out.len(), 2);
    // The flood's remotes are still in the buffer: a later drop must not list any of them.
    let decision = f.core(0).on_local(
        f.now,
        NET,
        &frame(MacAddr::BROADCAST, host(1), 1)[..13],
        &mut to,
        &mut ctr,
    );
    let out = device_actions(decision, &to);
    assert_eq!(out.as_slice(), &[Action::Drop(DropReason::LocalRunt)]);
    let decision = f
        .core(0)
        .on_remote(f.now, underlay(1).into(), &mut [], &mut ctr);
    let out = tunnel_actions(decision, 0);
    assert_eq!(out.as_slice(), &[Action::Drop(DropReason::Truncated)]);
}

// --- robustness ----------------------------------------------------------------------------

/// Checks the invariant of every call: either exactly one `Drop` (counted once) or only
/// forwarding actions, at least one.
fn check_outcome(out: &[Action], before: &Counters, after: &Counters, from_tunnel: bool) {
    let drops = out.iter().filter(|a| matches!(a, Action::Drop(_))).count();
    assert!(!out.is_empty(), "no decision");
    if drops > 0 {
        assert_eq!(out.len(), 1, "a drop comes alone: {:?}", out);
        let Action::Drop(r) = out[0] else {
            unreachable!()
        };
        assert_eq!(after.drops_of(r), before.drops_of(r) + 1);
        assert_eq!(after.total_drops(), before.total_drops() + 1);
    } else {
        assert_eq!(after.total_drops(), before.total_drops());
        if from_tunnel {
            assert!(matches!(
                out,
                [Action::ToDevice {
                    offset: HEADER_LEN,
                    ..
                }]
            ));
        } else {
            assert!(out.iter().all(|a| matches!(a, Action::ToTunnel { .. })));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_input_never_panics_and_always_decides(
        datagrams in proptest::collection::vec(
            (0usize..4, proptest::collection::vec(any::<u8>(), 0..80), any::<bool>(), 0u32..4),
            1..20,
        ),
    ) {
        let f = Fabric::mesh(3, NetSpec { max_learned: 4, ..NetSpec::default() });
        let core = f.core(1);
        let (mut to, mut ctr) = (Remotes::default(), Counters::default());
        for (i, (src, mut bytes, as_vxlan, v)) in datagrams.into_iter().enumerate() {
            let now = Timestamp(i as u64 * 1000);
            let before = ctr.clone();
            if as_vxlan && bytes.len() >= HEADER_LEN {
                // Make it likely to get past the header checks.
                VxlanPacket::new_unchecked(&mut bytes[..]).set_header(vni(VNI + v / 3 * (v % 3)));
            }
            let src_ip = if src == 3 { IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)) } else { underlay(src) };
            let mut d = bytes.clone();
            let decision = core.on_remote(now, src_ip.into(), &mut d, &mut ctr);
            check_outcome(&tunnel_actions(decision, d.len()), &before, &ctr, true);
            let before = ctr.clone();
            let decision = core.on_local(now, NetId(v as u16 % 2), &bytes, &mut to, &mut ctr);
            check_outcome(&device_actions(decision, &to), &before, &ctr, false);
        }
        prop_assert!(core.learned_count(vni(VNI)).unwrap() <= 4);
        prop_assert_eq!(ctr.rx_tunnel, ctr.rx_device);
    }
}
