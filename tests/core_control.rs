//! Control-plane input validation and bookkeeping of the forwarding core.

use encap::{MacAddr, Vni};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use vtepd::core::{
    Core, CoreConfig, CoreError, EntryKind, NetId, NetworkConfig, Timestamp, UnusableRemote,
};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const R1: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
const R2: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3));
const MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 1]);

fn vni(v: u32) -> Vni {
    Vni::new(v).unwrap()
}

fn net(v: u32, peers: Vec<IpAddr>) -> NetworkConfig {
    NetworkConfig {
        vni: vni(v),
        peers,
        own_mac: MacAddr([0x02, 0, 0, 0, 0xff, 0xff]),
        ..Default::default()
    }
}

fn core(nets: Vec<NetworkConfig>) -> Result<Core, CoreError> {
    Core::new(CoreConfig {
        local: LOCAL,
        allow_any_peer: false,
        networks: nets,
    })
}

const BAD_REMOTES: [IpAddr; 6] = [
    IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V4(Ipv4Addr::new(127, 9, 9, 9)),
    IpAddr::V4(Ipv4Addr::BROADCAST),
    IpAddr::V4(Ipv4Addr::new(239, 1, 1, 1)),
    LOCAL,
];
const BAD_MACS: [MacAddr; 3] = [
    MacAddr::ZERO,
    MacAddr::BROADCAST,
    MacAddr([0x33, 0x33, 0, 0, 0, 1]),
];

/// The refusal of `bad` as a remote VTEP, with its reason.
fn bad_remote(bad: IpAddr) -> CoreError {
    CoreError::BadRemote(UnusableRemote::check(LOCAL, bad).unwrap_err())
}

#[test]
fn remote_refusals_say_why() {
    assert_eq!(
        bad_remote(IpAddr::V4(Ipv4Addr::LOCALHOST)).to_string(),
        "127.0.0.1 is a loopback address: a remote VTEP must be reachable over the underlay"
    );
    for (bad, why) in [
        (Ipv4Addr::UNSPECIFIED.into(), "unspecified"),
        (Ipv4Addr::new(127, 9, 9, 9).into(), "loopback"),
        (Ipv4Addr::BROADCAST.into(), "broadcast"),
        (Ipv4Addr::new(239, 1, 1, 1).into(), "multicast"),
        (LOCAL, "our own --local address"),
        (
            "2001:db8::2".parse().unwrap(),
            "one address family per network",
        ),
    ] {
        let e = bad_remote(bad);
        assert!(e.to_string().starts_with(&format!("{bad} is ")), "{e}");
        assert!(e.to_string().contains(why), "{e}");
    }
    // Link-local addresses sit on the underlay link itself: usable.
    assert_eq!(
        UnusableRemote::check(LOCAL, Ipv4Addr::new(169, 254, 0, 2).into()),
        Ok(())
    );
}

#[test]
fn new_rejects_duplicate_vni_and_bad_peers() {
    assert_eq!(
        core(vec![net(1, vec![]), net(1, vec![])]).unwrap_err(),
        CoreError::DuplicateVni(vni(1))
    );
    for bad in BAD_REMOTES {
        assert_eq!(
            core(vec![net(1, vec![R1, bad])]).unwrap_err(),
            bad_remote(bad)
        );
    }
}

#[test]
fn new_indexes_networks_in_order_and_dedups_peers() {
    let c = core(vec![net(30, vec![R1, R1, R2]), net(10, vec![])]).unwrap();
    assert_eq!(
        c.networks().collect::<Vec<_>>(),
        vec![(NetId(0), vni(30)), (NetId(1), vni(10))]
    );
    assert_eq!(c.net_by_vni(vni(10)), Some(NetId(1)));
    assert_eq!(c.net_by_vni(vni(20)), None);
    assert_eq!(c.peers(), vec![(vni(30), vec![R1, R2]), (vni(10), vec![])]);
}

#[test]
fn fdb_add_validates() {
    let c = core(vec![net(1, vec![])]).unwrap();
    let now = Timestamp(0);
    assert_eq!(
        c.fdb_add(now, vni(2), MAC, R1),
        Err(CoreError::UnknownVni(vni(2)))
    );
    for bad in BAD_MACS {
        assert_eq!(c.fdb_add(now, vni(1), bad, R1), Err(CoreError::BadMac(bad)));
    }
    for bad in BAD_REMOTES {
        assert_eq!(c.fdb_add(now, vni(1), MAC, bad), Err(bad_remote(bad)));
    }
    assert_eq!(c.fdb_len(), 0);
    assert_eq!(c.fdb_add(now, vni(1), MAC, R1), Ok(()));
    assert_eq!(c.fdb_add(now, vni(1), MAC, R2), Ok(()), "replaces");
    assert_eq!(c.fdb_len(), 1);
    assert!(
        !c.known_remote(vni(1), R1),
        "the replaced remote is forgotten"
    );
    assert!(c.known_remote(vni(1), R2));
}

#[test]
fn fdb_del_and_flush_validate_vni() {
    let c = core(vec![net(1, vec![])]).unwrap();
    assert_eq!(c.fdb_del(vni(2), MAC), Err(CoreError::UnknownVni(vni(2))));
    assert_eq!(
        c.fdb_flush(Some(vni(2)), false),
        Err(CoreError::UnknownVni(vni(2)))
    );
    assert_eq!(c.fdb_flush(None, false), Ok(0));
}

#[test]
fn peer_add_validates() {
    let c = core(vec![net(1, vec![])]).unwrap();
    assert_eq!(c.peer_add(vni(2), R1), Err(CoreError::UnknownVni(vni(2))));
    assert_eq!(c.peer_del(vni(2), R1), Err(CoreError::UnknownVni(vni(2))));
    for bad in BAD_REMOTES {
        assert_eq!(c.peer_add(vni(1), bad), Err(bad_remote(bad)));
    }
    assert_eq!(c.peer_add(vni(1), R2), Ok(true));
    assert_eq!(c.peer_add(vni(1), R1), Ok(true));
    assert_eq!(c.peers(), vec![(vni(1), vec![R2, R1])], "insertion order");
}

#[test]
fn fdb_entries_are_sorted_and_filtered() {
    let c = core(vec![net(2, vec![]), net(1, vec![])]).unwrap();
    let now = Timestamp(5_000);
    let m = |n: u8| MacAddr([0x02, 0, 0, 0, 0, n]);
    c.fdb_add(Timestamp(1_000), vni(2), m(1), R1).unwrap();
    c.fdb_add(Timestamp(2_000), vni(1), m(3), R2).unwrap();
    c.fdb_add(Timestamp(3_000), vni(1), m(2), R1).unwrap();
    let all = c.fdb_entries(now, None);
    let keys: Vec<_> = all.iter().map(|e| (e.vni.get(), e.mac)).collect();
    assert_eq!(keys, vec![(1, m(2)), (1, m(3)), (2, m(1))]);
    assert_eq!(all[0].age, Duration::from_secs(2));
    assert_eq!(all[0].kind, EntryKind::Static);
    assert_eq!(all[0].remote, R1);
    assert_eq!(c.fdb_entries(now, Some(vni(2))).len(), 1);
    assert!(c.fdb_entries(now, Some(vni(7))).is_empty());
}

/// Learns `mac` in network `v` as behind `from`, at `now` (a VXLAN datagram from a peer).
fn learn(c: &Core, now: Timestamp, v: u32, mac: MacAddr, from: IpAddr) {
    let b = v.to_be_bytes();
    let mut d = vec![0x08, 0, 0, 0, b[1], b[2], b[3], 0];
    d.extend_from_slice(&[0x02, 0, 0, 0, 0xee, 0xee]);
    d.extend_from_slice(&mac.0);
    d.extend_from_slice(&[0x88, 0xb5]);
    let mut ctr = vtepd::core::Counters::default();
    c.on_remote(now, from.into(), &mut d, &mut ctr);
    assert_eq!(ctr.learned + ctr.mac_moves, 1, "{ctr:?}");
}

#[test]
fn fdb_counts_follow_every_change_and_skip_aged_entries() {
    let mut fast = net(1, vec![R1]);
    fast.ageing = Duration::from_secs(1);
    let c = core(vec![fast, net(2, vec![R1])]).unwrap();
    let m = |n: u8| MacAddr([0x02, 0, 0, 0, 0, n]);
    // The counts are exactly what a listing of each network shows.
    let check = |now: u64, want: [usize; 2]| {
        let now = Timestamp(now);
        let listed: Vec<usize> = [1, 2]
            .map(|v| c.fdb_entries(now, Some(vni(v))).len())
            .to_vec();
        assert_eq!(listed, want, "listing at {now:?}");
        assert_eq!(c.fdb_counts(now), want, "counts at {now:?}");
        // By kind: what the listing shows of each kind.
        let by_kind: Vec<(usize, usize)> = [1, 2]
            .map(|v| {
                let l = c.fdb_entries(now, Some(vni(v)));
                let statics = l.iter().filter(|e| e.kind == EntryKind::Static).count();
                (statics, l.len() - statics)
            })
            .to_vec();
        let counted: Vec<(usize, usize)> = c
            .fdb_counts_by_kind(now)
            .iter()
            .map(|k| (k.statics, k.learned))
            .collect();
        assert_eq!(counted, by_kind, "counts by kind at {now:?}");
    };
    check(0, [0, 0]);
    for v in [1, 2] {
        c.fdb_add(Timestamp(0), vni(v), m(1), R2).unwrap();
        learn(&c, Timestamp(0), v, m(2), R1);
        learn(&c, Timestamp(0), v, m(3), R1);
    }
    check(500, [3, 3]);
    // Past network 1's ageing time, not yet reaped: neither listed nor counted.
    check(2_000, [1, 3]);
    learn(&c, Timestamp(2_000), 1, m(3), R1);
    check(2_500, [2, 3]);
    // A static entry replacing a learned one, or another static one.
    c.fdb_add(Timestamp(0), vni(2), m(2), R2).unwrap();
    c.fdb_add(Timestamp(0), vni(2), m(1), R1).unwrap();
    check(2_500, [2, 3]);
    assert_eq!(c.fdb_del(vni(2), m(1)), Ok(true));
    assert_eq!(c.fdb_del(vni(2), m(3)), Ok(true));
    assert_eq!(c.fdb_del(vni(2), m(3)), Ok(false));
    check(2_500, [2, 1]);
    // Reaping what was past its time changes no count.
    assert_eq!(c.expire(Timestamp(2_500)), 1);
    check(2_500, [2, 1]);
    assert_eq!(c.fdb_flush(Some(vni(1)), true), Ok(1));
    check(2_500, [1, 1]);
    assert_eq!(c.fdb_flush(None, false), Ok(2));
    check(2_500, [0, 0]);
}

#[test]
fn too_many_networks_is_refused() {
    let nets: Vec<_> = (0..=u32::from(u16::MAX) + 1)
        .map(|v| net(v, vec![]))
        .collect();
    assert_eq!(core(nets).unwrap_err(), CoreError::TooManyNetworks);
}

#[test]
fn core_is_send_and_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<Core>();
}
