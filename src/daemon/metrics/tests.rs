use super::*;
use crate::control::protocol::{
    NetStats, PathMtuReport, PathMtuRow, PeerStats, STATS_VERSION, TunnelMode, WorkerStats,
};
use crate::core::{DropReason, NetTraffic, PeerTraffic};
use std::collections::BTreeMap;

/// Every reason, with `n` drops of `with` and none of the others.
fn drops_of(with: DropReason, n: u64) -> BTreeMap<String, u64> {
    DropReason::ALL
        .iter()
        .map(|r| (r.name().to_owned(), if *r == with { n } else { 0 }))
        .collect()
}

/// Counters whose every value (drops included) is distinct: `base + index`.
fn sample(base: u64) -> Counters {
    Counters::from_array(&std::array::from_fn(|i| base + i as u64))
}

fn report() -> StatsReport {
    let (w0, w1) = (sample(1000), sample(2000));
    let mut c = w0.clone();
    c.add(&w1);
    StatsReport {
        version: STATS_VERSION,
        mode: TunnelMode::L2Vxlan,
        fdb_entries: 5,
        drops: c.drops_by_name().map(|(n, v)| (n.to_owned(), v)).collect(),
        drops_total: c.total_drops(),
        counters: c,
        uptime_secs: 77,
        networks: vec![
            NetStats {
                vni: 42,
                dev: "vtep0".into(),
                peers: 2,
                fdb_entries: 5,
                fdb_static_entries: 1,
                fdb_learned_entries: 4,
                mac: None,
                neigh_entries: 3,
                traffic: NetTraffic::from_array(&std::array::from_fn(|i| 10 + i as u64)),
                // Part of the daemon's no_peers drops (1000 + its index, and 2000 + it).
                drops: drops_of(DropReason::NoPeers, 7),
                drops_total: 7,
            },
            NetStats {
                vni: 7,
                dev: "we\"ird\\".into(),
                peers: 0,
                fdb_entries: 0,
                fdb_static_entries: 0,
                fdb_learned_entries: 0,
                mac: None,
                neigh_entries: 0,
                traffic: NetTraffic::default(),
                drops: drops_of(DropReason::NoPeers, 0),
                drops_total: 0,
            },
        ],
        workers: [w0, w1]
            .into_iter()
            .enumerate()
            .map(|(worker, counters)| WorkerStats {
                worker,
                drops_total: counters.total_drops(),
                counters,
            })
            .collect(),
        path_mtu: PathMtuReport {
            configured: 1500,
            learned: vec![PathMtuRow {
                remote: "192.0.2.9".parse().unwrap(),
                mtu: 1400,
                learned: true,
                expires_secs: Some(60),
            }],
        },
        peers: vec![PeerStats {
            vni: 42,
            dev: "vtep0".into(),
            remote: "192.0.2.2".parse().unwrap(),
            traffic: PeerTraffic::from_array(&[1, 2, 3, 4]),
            path_mtu: Some(1500),
        }],
        peers_overflow: PeerTraffic::from_array(&[5, 6, 7, 8]),
        store: None,
    }
}

fn scrape(r: StatsReport) -> String {
    let meta = Meta {
        start_time: 1_700_000_000.5,
    };
    let registry = StatsCollector::new(move || r.clone(), meta).into_registry();
    render(&registry).unwrap()
}

/// The sample lines: `name{labels} value`.
fn samples(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn value(text: &str, key: &str) -> String {
    samples(text)
        .into_iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no sample {key} in\n{text}"))
        .1
}

#[test]
fn every_counter_is_a_total_with_its_doc() {
    let r = report();
    let text = scrape(r.clone());
    assert!(text.ends_with("# EOF\n"), "{text}");
    for ((name, v), doc) in r.counters.scalars().iter().zip(Counters::DOCS) {
        assert_eq!(value(&text, &format!("vtepd_{name}_total")), v.to_string());
        let family = format!("vtepd_{name}");
        let help = format!("# HELP {family} {}", doc.split_whitespace().next().unwrap());
        assert!(text.contains(&help), "{help} missing");
    }
    assert!(
        text.contains("# TYPE vtepd_rx_device_bytes counter\n# UNIT vtepd_rx_device_bytes bytes\n")
    );
    // Every HELP is one line, quotes escaped.
    assert!(text.contains(r#"ICMP \"fragmentation needed\""#), "{text}");
}

#[test]
fn drops_by_reason_and_network_sum_to_the_total() {
    let r = report();
    let text = scrape(r.clone());
    let mut sum = 0u64;
    for reason in DropReason::ALL {
        let name = reason.name();
        let rest: u64 = value(
            &text,
            &format!("vtepd_drops_total{{reason=\"{name}\",vni=\"\",dev=\"\"}}"),
        )
        .parse()
        .unwrap();
        let in_net: u64 = samples(&text)
            .iter()
            .filter(|(k, _)| {
                k.starts_with(&format!("vtepd_drops_total{{reason=\"{name}\",vni=\""))
                    && !k.contains("vni=\"\"")
            })
            .map(|(_, v)| v.parse::<u64>().unwrap())
            .sum();
        assert_eq!(rest + in_net, r.counters.drops_of(*reason), "{name}");
        sum += rest + in_net;
    }
    assert_eq!(sum, r.drops_total);
    // A network's drops: only the reasons it has.
    assert_eq!(
        value(
            &text,
            r#"vtepd_drops_total{reason="no_peers",vni="42",dev="vtep0"}"#
        ),
        "7"
    );
    let vni7 = r#"vni="7",dev="we\"ird\\""#;
    assert_eq!(
        text.matches(vni7).count(),
        2 * 4 + 2 + 1 + 1,
        "VNI 7 has traffic rows (4 families, 2 sides), FDB (2), neigh and peers"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("vtepd_drops_total") && l.contains(vni7)),
        "a network without drops has no drop rows"
    );
}

#[test]
fn traffic_per_network_and_per_peer() {
    let r = report();
    let text = scrape(r.clone());
    let t = r.networks[0].traffic;
    let net = |side: &str| format!("{{vni=\"42\",dev=\"vtep0\",side=\"{side}\"}}");
    for (family, side, want) in [
        ("vtepd_rx_packets_total", "tunnel", t.rx_tunnel),
        ("vtepd_rx_bytes_total", "tunnel", t.rx_tunnel_bytes),
        ("vtepd_tx_packets_total", "tunnel", t.tx_tunnel),
        ("vtepd_tx_bytes_total", "tunnel", t.tx_tunnel_bytes),
        ("vtepd_rx_packets_total", "device", t.rx_device),
        ("vtepd_rx_bytes_total", "device", t.rx_device_bytes),
        ("vtepd_tx_packets_total", "device", t.tx_device),
        ("vtepd_tx_bytes_total", "device", t.tx_device_bytes),
    ] {
        assert_eq!(
            value(&text, &format!("{family}{}", net(side))),
            want.to_string()
        );
    }
    let peer = r#"{vni="42",dev="vtep0",remote="192.0.2.2"}"#;
    let overflow = r#"{vni="",dev="",remote=""}"#;
    for (family, want, spill) in [
        ("vtepd_peer_rx_packets_total", "1", "5"),
        ("vtepd_peer_rx_bytes_total", "2", "6"),
        ("vtepd_peer_tx_packets_total", "3", "7"),
        ("vtepd_peer_tx_bytes_total", "4", "8"),
    ] {
        assert_eq!(value(&text, &format!("{family}{peer}")), want);
        assert_eq!(value(&text, &format!("{family}{overflow}")), spill);
    }
}

#[test]
fn workers_networks_and_meta() {
    let r = report();
    let text = scrape(r.clone());
    for name in WORKER_COUNTERS {
        assert!(Counters::NAMES.contains(name), "{name} is not a counter");
        let i = Counters::NAMES.iter().position(|n| n == name).unwrap();
        for w in &r.workers {
            let key = format!("vtepd_worker_{name}_total{{worker=\"{}\"}}", w.worker);
            assert_eq!(value(&text, &key), w.counters.scalars()[i].1.to_string());
        }
    }
    assert_eq!(
        value(&text, "vtepd_worker_drops_total{worker=\"1\"}"),
        r.workers[1].drops_total.to_string()
    );
    assert_eq!(
        value(
            &text,
            r#"vtepd_fdb_entries{vni="42",dev="vtep0",kind="learned"}"#
        ),
        "4"
    );
    assert_eq!(
        value(
            &text,
            r#"vtepd_fdb_entries{vni="42",dev="vtep0",kind="static"}"#
        ),
        "1"
    );
    assert_eq!(
        value(&text, r#"vtepd_neigh_entries{vni="42",dev="vtep0"}"#),
        "3"
    );
    assert_eq!(value(&text, r#"vtepd_peers{vni="42",dev="vtep0"}"#), "2");
    // A device name with a quote and a backslash is escaped.
    assert_eq!(value(&text, r#"vtepd_peers{vni="7",dev="we\"ird\\"}"#), "0");
    assert_eq!(
        value(&text, r#"vtepd_path_mtu_bytes{remote="192.0.2.9"}"#),
        "1400"
    );
    assert_eq!(value(&text, "vtepd_path_mtu_configured_bytes"), "1500");
    assert_eq!(
        value(
            &text,
            &format!(
                "vtepd_build_info{{version=\"{}\",mode=\"l2-vxlan\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        "1"
    );
    assert_eq!(value(&text, "vtepd_up"), "1");
    assert_eq!(value(&text, "vtepd_start_time_seconds"), "1700000000.5");
    assert_eq!(value(&text, "vtepd_uptime_seconds"), "77.0");
}

#[test]
fn families_are_named_even_without_samples() {
    let mut r = report();
    r.networks.clear();
    r.workers.clear();
    r.path_mtu.learned.clear();
    let text = scrape(r);
    for family in [
        "vtepd_fdb_entries gauge",
        "vtepd_neigh_entries gauge",
        "vtepd_peers gauge",
        "vtepd_path_mtu_bytes gauge",
        "vtepd_worker_rx_tunnel counter",
        "vtepd_worker_drops counter",
    ] {
        assert!(text.contains(&format!("# TYPE {family}\n")), "{family}");
    }
    assert!(!text.contains("{}"), "empty label sets:\n{text}");
}

#[test]
fn the_start_time_is_now_less_the_uptime() {
    let m = Meta::new(std::time::Duration::from_secs(10));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        m.start_time <= now - 10.0 && m.start_time > now - 3600.0,
        "{m:?}"
    );
}

#[test]
fn ten_thousand_networks_are_one_sample_each_per_family() {
    let mut r = report();
    let one = r.networks[0].clone();
    r.networks = (0..10_000)
        .map(|i| NetStats {
            vni: i,
            dev: format!("vx{i}"),
            ..one.clone()
        })
        .collect();
    let t = std::time::Instant::now();
    let text = scrape(r);
    eprintln!("10k networks: {} bytes in {:?}", text.len(), t.elapsed());
    let count = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(count("vtepd_fdb_entries{"), 20_000);
    assert_eq!(count("vtepd_neigh_entries{"), 10_000);
    assert_eq!(count("vtepd_peers{"), 10_000);
}

/// With a store: every store counter is a total with its HELP, the members a gauge, and the
/// state one row per state, 1 for the current one; without one, no store family.
#[test]
fn the_store_client_is_reported_with_a_store_only() {
    let mut r = report();
    assert!(!scrape(r.clone()).contains("vtepd_store"));
    r.store = Some(crate::control::protocol::StoreReport {
        state: "unreachable".into(),
        members: 7,
        counters: [("bad_values".to_owned(), 3)].into(),
    });
    let text = scrape(r);
    use crate::daemon::store::status::StoreCounters;
    for name in StoreCounters::NAMES {
        let want = if *name == "bad_values" { "3" } else { "0" };
        assert_eq!(value(&text, &format!("vtepd_store_{name}_total")), want);
    }
    assert!(
        text.contains("# HELP vtepd_store_bad_values Values skipped as bad"),
        "{text}"
    );
    assert_eq!(value(&text, "vtepd_store_members"), "7");
    assert_eq!(
        value(&text, "vtepd_store_state{state=\"unreachable\"}"),
        "1"
    );
    assert_eq!(value(&text, "vtepd_store_state{state=\"connected\"}"), "0");
}
