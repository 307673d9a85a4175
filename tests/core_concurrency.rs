//! The core shared by several threads: workers learning and forwarding while the control
//! plane edits the FDB and flood lists. Checks exact bookkeeping after the races, and that
//! every forwarding decision saw one consistent flood-list snapshot.

mod engine_support;

use encap::vxlan::{HEADER_LEN, VxlanPacket};
use encap::{MacAddr, Vni};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;
use vtepd::core::{
    Core, Counters, DEFAULT_AGEING, FromDevice, FromTunnel, NetId, NetworkConfig, Remotes,
    Timestamp,
};

const THREADS: usize = 4;

fn vni() -> Vni {
    Vni::new(7).unwrap()
}

fn peer(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1 + i as u8))
}

fn mac(i: u32) -> MacAddr {
    let b = i.to_be_bytes();
    MacAddr([0x02, 0x10, b[0], b[1], b[2], b[3]])
}

fn core(peers: usize, max_learned: usize, ageing: Duration) -> Arc<Core> {
    engine_support::core_with(NetworkConfig {
        vni: vni(),
        peers: (0..peers).map(peer).collect(),
        own_mac: MacAddr([0x02, 0xff, 0, 0, 0, 1]),
        ageing,
        max_learned,
        ..Default::default()
    })
}

fn datagram(src: MacAddr) -> Vec<u8> {
    let mut d = vec![0u8; HEADER_LEN];
    VxlanPacket::new_unchecked(&mut d[..]).set_header(vni());
    d.extend_from_slice(&MacAddr::BROADCAST.0);
    d.extend_from_slice(&src.0);
    d.extend_from_slice(&[0x08, 0x00]);
    d.resize(HEADER_LEN + 60, 0);
    d
}

#[test]
fn racing_learners_respect_the_cap_exactly() {
    const CAP: usize = 500;
    let c = core(THREADS, CAP, DEFAULT_AGEING);
    // Every thread sees every one of 2000 MACs, each from "its" peer: maximal contention.
    let totals: Vec<Counters> = (0..THREADS)
        .map(|t| {
            let c = c.clone();
            thread::spawn(move || {
                let mut ctr = Counters::default();
                for i in 0..2000 {
                    let m = (i * 7 + t as u32 * 131) % 2000;
                    let mut d = datagram(mac(m));
                    let v = c.on_remote(Timestamp(1), peer(t).into(), &mut d, &mut ctr);
                    assert_eq!(
                        v,
                        FromTunnel::Deliver {
                            net: NetId(0),
                            range: HEADER_LEN..d.len()
                        }
                    );
                }
                ctr
            })
        })
        .map(|h| h.join().unwrap())
        .collect();
    let mut sum = Counters::default();
    totals.iter().for_each(|c| sum.add(c));
    assert_eq!(c.learned_count(vni()), Some(CAP));
    assert_eq!(c.fdb_len(), CAP);
    assert_eq!(sum.learned, CAP as u64);
    assert_eq!(sum.rx_tunnel, (THREADS * 2000) as u64);
    // Every MAC not in the table was refused by each thread that saw it.
    assert!(sum.learn_refused >= (THREADS * (2000 - CAP)) as u64);
}

#[test]
fn bookkeeping_is_exact_after_learn_expire_flush_races() {
    let c = core(THREADS, 10_000, Duration::from_millis(50));
    let stop = Arc::new(AtomicBool::new(false));
    // One virtual clock, one tick per packet: MACs idle for 50 ticks expire, so entries are
    // constantly learned, expired and relearned while the control plane edits the table.
    let clock = Arc::new(AtomicU64::new(0));
    let learners: Vec<_> = (0..THREADS)
        .map(|t| {
            let (c, stop, clock) = (c.clone(), stop.clone(), clock.clone());
            thread::spawn(move || {
                let mut ctr = Counters::default();
                let mut batch = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    batch += 1;
                    for i in 0..200 {
                        let now = Timestamp(clock.fetch_add(1, Ordering::Relaxed));
                        let mut d = datagram(mac(i + 1000 * (batch % 3)));
                        c.on_remote(now, peer(t).into(), &mut d, &mut ctr);
                    }
                }
                ctr
            })
        })
        .collect();
    let control = {
        let (c, clock) = (c.clone(), clock.clone());
        thread::spawn(move || {
            let mut expired = 0;
            for round in 0..300u32 {
                let now = Timestamp(clock.load(Ordering::Relaxed));
                expired += c.expire(now);
                c.fdb_add(now, vni(), mac(round % 250), peer(0)).unwrap();
                if round % 7 == 0 {
                    c.fdb_flush(Some(vni()), round % 2 == 0).unwrap();
                }
                c.fdb_del(vni(), mac(round % 250 + 1)).unwrap();
                thread::yield_now();
            }
            expired
        })
    };
    let expired = control.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut sum = Counters::default();
    learners
        .into_iter()
        .for_each(|h| sum.add(&h.join().unwrap()));
    eprintln!(
        "learned {} moves {} expired {expired}",
        sum.learned, sum.mac_moves
    );
    assert!(
        sum.learned > 600,
        "entries were relearned after expiry or flush"
    );
    // The count the cap is enforced on matches the learned entries actually in the table.
    let learned_in_table = c
        .fdb_entries(Timestamp(0), None)
        .iter()
        .filter(|e| e.kind == vtepd::core::EntryKind::Learned)
        .count();
    assert_eq!(c.learned_count(vni()), Some(learned_in_table));
    let len = c.fdb_len();
    assert_eq!(c.fdb_flush(None, false), Ok(len));
    assert_eq!(c.fdb_len(), 0);
    assert_eq!(c.learned_count(vni()), Some(0));
    assert!(!c.known_remote(vni(), IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1))));
}

#[test]
fn floods_always_see_one_consistent_flood_list() {
    let c = core(2, 100, DEFAULT_AGEING);
    let stop = Arc::new(AtomicBool::new(false));
    let floods = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (c, stop, floods) = (c.clone(), stop.clone(), floods.clone());
            thread::spawn(move || {
                let (mut to, mut ctr) = (Remotes::with_capacity(64), Counters::default());
                let frame = &datagram(mac(1))[HEADER_LEN..];
                let mut copies = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let v = c.on_local(Timestamp(1), NetId(0), frame, &mut to, &mut ctr);
                    assert_eq!(v, FromDevice::Tunnel, "unexpected {v:?}");
                    assert_eq!(to.vni(), vni());
                    let dsts: Vec<IpAddr> = to.as_slice().iter().map(|r| r.ip()).collect();
                    // peers 0 and 1 are never removed; 2..10 come and go, in order.
                    assert_eq!(&dsts[..2], &[peer(0), peer(1)]);
                    let distinct: std::collections::HashSet<_> = dsts.iter().collect();
                    assert_eq!(distinct.len(), dsts.len(), "a peer twice in one flood");
                    copies += dsts.len() as u64;
                    floods.fetch_add(1, Ordering::Relaxed);
                }
                assert_eq!(
                    ctr.flood_copies, copies,
                    "flood_copies counts every replica"
                );
            })
        })
        .collect();
    // Keep editing until the workers have flooded plenty (bounded by a deadline).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut round = 0;
    while round < 2000
        || (floods.load(Ordering::Relaxed) < 20_000 && std::time::Instant::now() < deadline)
    {
        round += 1;
        let p = peer(2 + round % 8);
        if round % 16 < 8 {
            c.peer_add(vni(), p).unwrap();
        } else {
            c.peer_del(vni(), p).unwrap();
        }
    }
    // Leave the flood list as configured: remove whatever the last rounds added.
    for i in 2..10 {
        c.peer_del(vni(), peer(i)).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    workers.into_iter().for_each(|h| h.join().unwrap());
    assert!(floods.load(Ordering::Relaxed) > 0);
    assert_eq!(c.peers(), vec![(vni(), vec![peer(0), peer(1)])]);
}
