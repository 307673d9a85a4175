//! The core's MAC-move dampening and storm control, driven through its public API with a
//! virtual clock: one VTEP (192.0.2.1) with two peers (.2 and .3), datagrams built here.

use encap::vxlan::{HEADER_LEN, VxlanPacket};
use encap::{MacAddr, Vni};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use vtepd::core::dampening::MoveLimit;
use vtepd::core::storm::StormLimits;
use vtepd::core::{
    Core, CoreConfig, Counters, DropReason, FromDevice, FromTunnel, NetId, NetworkConfig, Remotes,
    Timestamp,
};

const NET: NetId = NetId(0);
const PEER_A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
const PEER_B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3));
const M: MacAddr = MacAddr([0x02, 0x99, 0, 0, 0, 7]);

fn vni() -> Vni {
    Vni::new(42).unwrap()
}

fn core(mac_move: MoveLimit, storm: StormLimits) -> Core {
    Core::new(CoreConfig {
        local: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        allow_any_peer: false,
        networks: vec![NetworkConfig {
            vni: vni(),
            peers: vec![PEER_A, PEER_B],
            own_mac: MacAddr([0x02, 0, 0, 0, 0, 1]),
            mac_move,
            storm,
            ..Default::default()
        }],
    })
    .unwrap()
}

fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.resize(60, 0);
    f
}

/// A broadcast frame from `M` arriving from `from`: whether it was delivered.
fn from_peer(c: &Core, now: Timestamp, from: IpAddr, ctr: &mut Counters) -> bool {
    let inner = frame(MacAddr::BROADCAST, M);
    let mut d = vec![0u8; HEADER_LEN + inner.len()];
    VxlanPacket::new_unchecked(&mut d[..]).set_header(vni());
    d[HEADER_LEN..].copy_from_slice(&inner);
    matches!(
        c.on_remote(now, from.into(), &mut d, ctr),
        FromTunnel::Deliver { .. }
    )
}

fn remote_of(c: &Core, now: Timestamp) -> Option<IpAddr> {
    c.fdb_lookup(now, vni(), M)
}

fn frozen(c: &Core, now: Timestamp) -> Vec<(MacAddr, IpAddr, Option<Duration>)> {
    c.fdb_entries(now, None)
        .into_iter()
        .filter(|e| e.frozen.is_some())
        .map(|e| (e.mac, e.remote, e.frozen))
        .collect()
}

#[test]
fn the_sixth_move_in_180_s_freezes_the_mac_until_the_hold_ends() {
    let c = core(MoveLimit::default(), StormLimits::default());
    let mut ctr = Counters::default();
    let mut now = Timestamp(1_000);
    let peers = [PEER_A, PEER_B];
    // Learned, then moved 5 times, 10 s apart: all allowed.
    for i in 0..6 {
        assert!(from_peer(&c, now, peers[i % 2], &mut ctr));
        assert_eq!(remote_of(&c, now), Some(peers[i % 2]));
        now = now + Duration::from_secs(10);
    }
    assert_eq!((ctr.mac_moves, ctr.mac_frozen), (5, 0));
    // The 6th move within the window freezes M on PEER_B; the frame is still delivered.
    assert!(from_peer(&c, now, PEER_A, &mut ctr));
    assert_eq!(remote_of(&c, now), Some(PEER_B));
    assert_eq!(
        (ctr.mac_moves, ctr.mac_frozen, ctr.mac_moves_held),
        (5, 1, 1)
    );
    assert_eq!(
        frozen(&c, now),
        vec![(M, PEER_B, Some(Duration::from_secs(180)))]
    );
    // Reported once.
    let mut reports = Vec::new();
    c.take_frozen(|f| reports.push(f));
    c.take_frozen(|f| reports.push(f));
    assert_eq!(reports.len(), 1);
    assert_eq!(
        (reports[0].mac, reports[0].remote, reports[0].moving_to),
        (M, PEER_B, PEER_A)
    );
    // Held for the whole hold, while PEER_B's frames keep the entry alive.
    for _ in 0..17 {
        now = now + Duration::from_secs(10);
        assert!(from_peer(&c, now, PEER_B, &mut ctr));
        assert!(from_peer(&c, now, PEER_A, &mut ctr));
        assert_eq!(remote_of(&c, now), Some(PEER_B));
    }
    assert_eq!((ctr.mac_frozen, ctr.mac_moves_held), (1, 18));
    // The hold ends: the next move is made and counting starts afresh.
    now = now + Duration::from_secs(10);
    assert!(frozen(&c, now).is_empty());
    assert!(from_peer(&c, now, PEER_A, &mut ctr));
    assert_eq!(remote_of(&c, now), Some(PEER_A));
    assert_eq!(ctr.mac_moves, 6);
}

#[test]
fn moves_slower_than_the_window_never_freeze() {
    let c = core(MoveLimit::default(), StormLimits::default());
    let mut ctr = Counters::default();
    let mut now = Timestamp(1_000);
    for i in 0..40 {
        from_peer(&c, now, [PEER_A, PEER_B][i % 2], &mut ctr);
        now = now + Duration::from_secs(40);
    }
    assert_eq!((ctr.mac_moves, ctr.mac_frozen), (39, 0));
}

#[test]
fn deleting_a_frozen_entry_ends_the_freeze() {
    let limit = MoveLimit {
        moves: 1,
        window: 60,
        hold: 600,
    };
    let c = core(limit, StormLimits::default());
    let mut ctr = Counters::default();
    let now = Timestamp(1_000);
    for p in [PEER_A, PEER_B, PEER_A] {
        from_peer(&c, now, p, &mut ctr);
    }
    assert_eq!(frozen(&c, now).len(), 1);
    assert!(c.fdb_del(vni(), M).unwrap());
    assert!(from_peer(&c, now, PEER_A, &mut ctr));
    assert_eq!(remote_of(&c, now), Some(PEER_A));
    assert!(frozen(&c, now).is_empty());
}

#[test]
fn dampening_never_touches_static_entries() {
    let c = core(MoveLimit::default(), StormLimits::default());
    let mut ctr = Counters::default();
    let now = Timestamp(1_000);
    c.fdb_add(now, vni(), M, PEER_A).unwrap();
    for i in 0..20 {
        from_peer(&c, now, [PEER_A, PEER_B][i % 2], &mut ctr);
    }
    assert_eq!(remote_of(&c, now), Some(PEER_A));
    assert_eq!(ctr.mac_frozen, 0);
    assert_eq!(ctr.drops_of(DropReason::StaticConflict), 10);
}

/// Sends `n` frames to `dst` from the device at `now`: how many were flooded.
fn flood(c: &Core, now: Timestamp, dst: MacAddr, n: usize, ctr: &mut Counters) -> usize {
    let f = frame(dst, MacAddr([0x02, 0xaa, 0, 0, 0, 1]));
    let mut to = Remotes::with_capacity(4);
    (0..n)
        .filter(|_| matches!(c.on_local(now, NET, &f, &mut to, ctr), FromDevice::Tunnel))
        .count()
}

#[test]
fn storm_control_limits_each_kind_to_its_rate() {
    let limits = StormLimits {
        broadcast: Some(100),
        unknown_unicast: Some(50),
        multicast: Some(20),
    };
    let c = core(MoveLimit::default(), limits);
    let mut ctr = Counters::default();
    let bcast = MacAddr::BROADCAST;
    let unknown = MacAddr([0x02, 0xbb, 0, 0, 0, 9]);
    let mcast = MacAddr([0x01, 0x00, 0x5e, 1, 2, 3]);
    // A burst at one instant: a tenth of a second's worth of each passes.
    let t0 = Timestamp(5_000);
    assert_eq!(flood(&c, t0, bcast, 1000, &mut ctr), 10);
    assert_eq!(flood(&c, t0, unknown, 1000, &mut ctr), 5);
    assert_eq!(flood(&c, t0, mcast, 1000, &mut ctr), 2);
    assert_eq!(ctr.drops_of(DropReason::StormBroadcast), 990);
    assert_eq!(ctr.drops_of(DropReason::StormUnknownUnicast), 995);
    assert_eq!(ctr.drops_of(DropReason::StormMulticast), 998);
    // A second later, a second's worth has been earned back, capped at the bucket's depth.
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(flood(&c, t1, bcast, 1000, &mut ctr), 10);
    // Sustained: one frame per ms for 10 s passes at 100/s.
    let mut passed = 0;
    for ms in 1..=10_000 {
        passed += flood(&c, t1 + Duration::from_millis(ms), bcast, 1, &mut ctr);
    }
    assert_eq!(passed, 1000);
}

#[test]
fn storm_control_spares_known_unicast_and_frames_vtepd_made() {
    let limits = StormLimits {
        broadcast: Some(1),
        unknown_unicast: Some(1),
        multicast: Some(1),
    };
    let c = core(MoveLimit::default(), limits);
    let mut ctr = Counters::default();
    let now = Timestamp(1_000);
    c.fdb_add(now, vni(), M, PEER_A).unwrap();
    assert_eq!(flood(&c, now, M, 500, &mut ctr), 500);
    let f = frame(MacAddr::BROADCAST, MacAddr([0x02, 0, 0, 0, 0, 1]));
    let mut to = Remotes::with_capacity(4);
    for _ in 0..100 {
        let d = c.forward_frame(now, NET, &f, &mut to, &mut ctr);
        assert!(matches!(d, FromDevice::Tunnel));
    }
    assert_eq!(ctr.total_drops(), 0);
}
