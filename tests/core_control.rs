//! Control-plane input validation and bookkeeping of the forwarding core.

use encap::{MacAddr, Vni};
use std::net::Ipv4Addr;
use std::time::Duration;
use vtepd::core::{
    Core, CoreConfig, CoreError, DEFAULT_AGEING, DEFAULT_MAX_LEARNED, EntryKind, NetId,
    NetworkConfig, Timestamp, UnusableRemote,
};

const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const R1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const R2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
const MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 1]);

fn vni(v: u32) -> Vni {
    Vni::new(v).unwrap()
}

fn net(v: u32, peers: Vec<Ipv4Addr>) -> NetworkConfig {
    NetworkConfig {
        vni: vni(v),
        peers,
        own_mac: MacAddr([0x02, 0, 0, 0, 0xff, 0xff]),
        learning: true,
        ageing: DEFAULT_AGEING,
        max_learned: DEFAULT_MAX_LEARNED,
    }
}

fn core(nets: Vec<NetworkConfig>) -> Result<Core, CoreError> {
    Core::new(CoreConfig {
        local: LOCAL,
        allow_any_peer: false,
        networks: nets,
    })
}

const BAD_REMOTES: [Ipv4Addr; 6] = [
    Ipv4Addr::UNSPECIFIED,
    Ipv4Addr::LOCALHOST,
    Ipv4Addr::new(127, 9, 9, 9),
    Ipv4Addr::BROADCAST,
    Ipv4Addr::new(239, 1, 1, 1),
    LOCAL,
];
const BAD_MACS: [MacAddr; 3] = [
    MacAddr::ZERO,
    MacAddr::BROADCAST,
    MacAddr([0x33, 0x33, 0, 0, 0, 1]),
];

/// The refusal of `bad` as a remote VTEP, with its reason.
fn bad_remote(bad: Ipv4Addr) -> CoreError {
    CoreError::BadRemote(UnusableRemote::check(LOCAL, bad).unwrap_err())
}

#[test]
fn remote_refusals_say_why() {
    assert_eq!(
        bad_remote(Ipv4Addr::LOCALHOST).to_string(),
        "127.0.0.1 is a loopback address: a remote VTEP must be reachable over the underlay"
    );
    for (bad, why) in [
        (Ipv4Addr::UNSPECIFIED, "unspecified"),
        (Ipv4Addr::new(127, 9, 9, 9), "loopback"),
        (Ipv4Addr::BROADCAST, "broadcast"),
        (Ipv4Addr::new(239, 1, 1, 1), "multicast"),
        (LOCAL, "our own --local address"),
    ] {
        let e = bad_remote(bad);
        assert!(e.to_string().starts_with(&format!("{bad} is ")), "{e}");
        assert!(e.to_string().contains(why), "{e}");
    }
    // Link-local addresses sit on the underlay link itself: usable.
    assert_eq!(
        UnusableRemote::check(LOCAL, Ipv4Addr::new(169, 254, 0, 2)),
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
