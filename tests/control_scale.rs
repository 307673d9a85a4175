//! The control plane's answers at scale, in process and through a real control socket: 10,000
//! networks and a million FDB entries (static, learned, and learned but past their ageing time
//! and not yet reaped), and neighbour bindings in every network. `stats`, `fdb show` and
//! `neigh show` must come back whole and agree with each other and with what was put in. The
//! times are printed (`--nocapture`), never asserted.

use encap::{MacAddr, Vni};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use vtepd::control::client::call_typed;
use vtepd::control::protocol::{FdbRow, Kind, NeighRow, Request, StatsReport};
use vtepd::control::server::{Server, bind};
use vtepd::core::neigh::Evidence;
use vtepd::core::{Core, CoreConfig, Counters, NetId, NetworkConfig, Timestamp};
use vtepd::daemon::handler::{Handler, NetInfo};
use vtepd::daemon::stats::{Clock, StatsBoard};

const NETS: u32 = 10_000;
const STATIC_PER_NET: u32 = 50;
const LEARNED_PER_NET: u32 = 50;
const NEIGH_STATIC_PER_NET: u32 = 2;
const PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

fn vni(i: u32) -> Vni {
    Vni::new(i + 1).unwrap()
}

/// Networks with an even index age learned state after 1 ms: once the test has slept, their
/// learned entries and bindings are past their ageing time but still in the tables.
fn ages_fast(i: u32) -> bool {
    i % 2 == 0
}

fn mac(kind: u8, j: u32) -> MacAddr {
    MacAddr([2, kind, 0, 0, (j >> 8) as u8, j as u8])
}

/// A core with every network, its static entries and bindings, and its learned entries and
/// bindings (learned at time 0, as from VXLAN datagrams sent by the peer).
fn build() -> Arc<Core> {
    let core = Core::new(CoreConfig {
        local: "192.0.2.1".parse().unwrap(),
        allow_any_peer: false,
        networks: (0..NETS)
            .map(|i| NetworkConfig {
                vni: vni(i),
                peers: vec![PEER.into()],
                own_mac: MacAddr([2, 0xff, 0, 0, 0, 1]),
                ageing: if ages_fast(i) {
                    Duration::from_millis(1)
                } else {
                    Duration::from_secs(3600)
                },
                max_learned: 1000,
                ..Default::default()
            })
            .collect(),
    })
    .unwrap();
    let mut ctr = Counters::default();
    for i in 0..NETS {
        for j in 0..STATIC_PER_NET {
            let remote = Ipv4Addr::new(192, 0, 2, 10 + (j % 20) as u8);
            core.fdb_add(Timestamp(0), vni(i), mac(0, j), remote)
                .unwrap();
        }
        let v = vni(i).get().to_be_bytes();
        for j in 0..LEARNED_PER_NET {
            let mut d = vec![0x08, 0, 0, 0, v[1], v[2], v[3], 0];
            d.extend_from_slice(&[2, 0xff, 0, 0, 0, 9]);
            d.extend_from_slice(&mac(1, j).0);
            d.extend_from_slice(&[0x88, 0xb5]);
            core.on_remote(Timestamp(0), PEER.into(), &mut d, &mut ctr);
        }
        for j in 0..NEIGH_STATIC_PER_NET {
            core.neigh_add(
                Timestamp(0),
                vni(i),
                Ipv4Addr::new(10, 0, 0, 1 + j as u8),
                mac(2, j),
            )
            .unwrap();
        }
        let table = core.neigh(NetId(i as u16)).unwrap();
        table.learn(
            Ipv4Addr::new(10, 0, 1, 1),
            mac(3, 0),
            0,
            Evidence::Authoritative,
        );
    }
    assert_eq!(ctr.learned, u64::from(NETS * LEARNED_PER_NET), "{ctr:?}");
    assert_eq!(
        core.fdb_len(),
        (NETS * (STATIC_PER_NET + LEARNED_PER_NET)) as usize
    );
    Arc::new(core)
}

fn dev(i: u32) -> String {
    format!("s{}", i + 1)
}

/// What each network must show: (FDB entries, neighbour bindings).
fn expected(i: u32) -> (usize, usize) {
    let fdb = STATIC_PER_NET + if ages_fast(i) { 0 } else { LEARNED_PER_NET };
    let neigh = NEIGH_STATIC_PER_NET + u32::from(!ages_fast(i));
    (fdb as usize, neigh as usize)
}

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let v = f();
    eprintln!("{what}: {:?}", t.elapsed());
    v
}

#[test]
fn stats_fdb_show_and_neigh_show_at_10k_networks_and_1m_entries() {
    let core = timed("building the core", build);
    let nets = (0..NETS)
        .map(|i| NetInfo {
            vni: vni(i),
            dev: dev(i),
            mac: None,
        })
        .collect();
    let handler = Handler::new(core, nets, Arc::new(StatsBoard::new(2)), Clock::new(), None);
    // Past the 1 ms ageing time of half the networks (nothing reaps them: no worker runs).
    std::thread::sleep(Duration::from_millis(20));

    let dir = std::env::temp_dir().join(format!("vtepd-scale-{}", std::process::id()));
    let path = dir.join("c.sock");
    let (listener, file): (UnixListener, _) = bind(&path).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (srv, waker) = Server::new(listener, handler, Arc::clone(&stop)).unwrap();
    let server = std::thread::spawn(move || srv.run());

    let rows: Vec<FdbRow> = timed("fdb show (all)", || {
        call_typed(&path, &Request::FdbShow { vni: None })
    })
    .unwrap();
    let total_fdb: usize = (0..NETS).map(|i| expected(i).0).sum();
    assert_eq!(rows.len(), total_fdb);
    let mut per_net: BTreeMap<u32, usize> = BTreeMap::new();
    for w in rows.windows(2) {
        assert!(
            (w[0].vni, &w[0].mac) < (w[1].vni, &w[1].mac),
            "not sorted by VNI then MAC: {:?} {:?}",
            w[0],
            w[1]
        );
    }
    for r in &rows {
        *per_net.entry(r.vni).or_default() += 1;
        let i = r.vni - 1;
        assert_eq!(r.dev, dev(i));
        let learned = r.mac.starts_with("02:01:");
        assert_eq!(r.kind, if learned { Kind::Learned } else { Kind::Static });
        assert!(
            !(learned && ages_fast(i)),
            "an aged-out entry is listed: {r:?}"
        );
    }
    for i in 0..NETS {
        assert_eq!(
            per_net.get(&(i + 1)).copied().unwrap_or(0),
            expected(i).0,
            "VNI {}",
            i + 1
        );
    }
    drop(rows);

    let one: Vec<FdbRow> = timed("fdb show --vni 2", || {
        call_typed(&path, &Request::FdbShow { vni: Some(2) })
    })
    .unwrap();
    assert_eq!(one.len(), expected(1).0);
    assert!(one.iter().all(|r| r.vni == 2 && r.dev == dev(1)));

    let st: StatsReport = timed("stats", || call_typed(&path, &Request::Stats)).unwrap();
    assert_eq!(st.fdb_entries, total_fdb, "stats and fdb show disagree");
    assert_eq!(st.networks.len(), NETS as usize);
    for (i, n) in (0..NETS).zip(&st.networks) {
        assert_eq!((n.vni, n.dev.as_str()), (i + 1, dev(i).as_str()));
        assert_eq!(
            (n.fdb_entries, n.neigh_entries),
            expected(i),
            "VNI {}",
            n.vni
        );
        assert_eq!(n.peers, 1);
    }

    let neigh: Vec<NeighRow> = timed("neigh show (all)", || {
        call_typed(&path, &Request::NeighShow { vni: None })
    })
    .unwrap();
    let total_neigh: usize = (0..NETS).map(|i| expected(i).1).sum();
    assert_eq!(neigh.len(), total_neigh);
    for w in neigh.windows(2) {
        assert!(
            (w[0].vni, w[0].ip) < (w[1].vni, w[1].ip),
            "{:?} {:?}",
            w[0],
            w[1]
        );
    }
    let one: Vec<NeighRow> = timed("neigh show --vni 2", || {
        call_typed(&path, &Request::NeighShow { vni: Some(2) })
    })
    .unwrap();
    assert_eq!(one.len(), expected(1).1);

    stop.store(true, Ordering::Release);
    waker.wake().unwrap();
    server.join().unwrap().unwrap();
    drop(file);
    let _ = std::fs::remove_dir(&dir);
}
