//! Human-readable renderings of control answers (the `--json` forms are the serde types).

use super::protocol::{FdbRow, Kind, NeighRow, PeersRow, RouteRow, StatsReport, TunnelMode};
use crate::core::{Counters, NetTraffic};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The mark of what the store installed (`--store`), after the rest of its line.
fn from_store(store: bool) -> &'static str {
    if store { " (store)" } else { "" }
}

/// FDB entries, one per line, in the style of `bridge fdb show`:
/// `02:00:00:00:00:01 dev vtep0 vni 42 dst 192.0.2.2 learned age 3s`, with
/// ` frozen 170s` after an entry MAC-move dampening froze and ` (store)` after a static entry
/// the store installed.
pub fn fdb_table(rows: &[FdbRow]) -> String {
    let mut s = String::new();
    for r in rows {
        let _ = write!(s, "{} dev {} vni {} dst {}", r.mac, r.dev, r.vni, r.remote);
        let _ = match r.kind {
            Kind::Learned => write!(s, " learned age {}s", r.age_secs),
            Kind::Static => write!(s, " static{}", from_store(r.store)),
        };
        let _ = match r.frozen_secs {
            Some(f) => writeln!(s, " frozen {f}s"),
            None => writeln!(s),
        };
    }
    s
}

/// Routes, one per line, in the style of `ip route`: `10.0.1.0/26 via 192.0.2.2 dev tunl0`.
pub fn routes_table(rows: &[RouteRow]) -> String {
    let mut s = String::new();
    for r in rows {
        let _ = writeln!(s, "{} via {} dev {}", r.prefix, r.via, r.dev);
    }
    s
}

/// Neighbour bindings, one per line, in the style of `ip neigh show`:
/// `10.244.1.0 lladdr 02:00:00:00:00:01 dev vtep0 vni 1 static` (` (store)` after it when the
/// store installed it) or `... learned age 3s`.
pub fn neigh_table(rows: &[NeighRow]) -> String {
    let mut s = String::new();
    for r in rows {
        let _ = write!(s, "{} lladdr {} dev {} vni {}", r.ip, r.mac, r.dev, r.vni);
        let _ = match r.kind {
            Kind::Learned => writeln!(s, " learned age {}s", r.age_secs),
            Kind::Static => writeln!(s, " static{}", from_store(r.store)),
        };
    }
    s
}

/// Flood lists as a table: one row per (network, peer), with the path MTU toward the peer
/// (`1400 learned, 540s left` when a lower one was learned) and marks: `store` (the store put
/// it there), `remcsum-rx` (it registered taking remote checksum offload).
pub fn peers_table(rows: &[PeersRow]) -> String {
    let w = rows.iter().map(|r| r.dev.len()).max().unwrap_or(0).max(3);
    let mut s = format!("{:<8}  {:<w$}  {:<15}  PMTU\n", "VNI", "DEV", "PEER");
    for r in rows {
        if r.peers.is_empty() {
            let _ = writeln!(s, "{:<8}  {:<w$}  -", r.vni, r.dev);
        }
        for p in &r.peers {
            let pmtu = match r.path_mtu.iter().find(|m| m.remote == *p) {
                Some(m) if m.learned => {
                    format!("{} learned, {}s left", m.mtu, m.expires_secs.unwrap_or(0))
                }
                Some(m) => m.mtu.to_string(),
                None => String::new(),
            };
            let marks: Vec<&str> = [(&r.store, "store"), (&r.remcsum_rx, "remcsum-rx")]
                .into_iter()
                .filter(|(list, _)| list.contains(p))
                .map(|(_, mark)| mark)
                .collect();
            let from = if marks.is_empty() {
                String::new()
            } else {
                format!("  ({})", marks.join(", "))
            };
            let line = format!("{:<8}  {:<w$}  {:<15}  {pmtu}", r.vni, r.dev, p.to_string());
            let _ = writeln!(s, "{}{from}", line.trim_end());
        }
    }
    s
}

/// A byte count with IEC binary units (powers of 1024, as `ip -h -s link` prints them):
/// `512 B`, `1.5 KiB`, `3.0 MiB`, `2.2 GiB`, `1.1 TiB`; one decimal above bytes.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// Seconds as `1d 2h 3m 4s` (leading zero units left out).
fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (v, u) in [(d, "d"), (h, "h"), (m, "m")] {
        if v > 0 || !out.is_empty() {
            let _ = write!(out, "{v}{u} ");
        }
    }
    let _ = write!(out, "{s}s");
    out
}

/// The four traffic rows (`rx_tunnel`, `tx_tunnel`, `rx_device`, `tx_device`) of a block
/// under a `packets bytes` heading, as `ip -s link` does; zero rows left out unless `all`.
fn traffic_rows(s: &mut String, t: &NetTraffic, all: bool) {
    let rows = [
        ("rx_tunnel", t.rx_tunnel, t.rx_tunnel_bytes),
        ("tx_tunnel", t.tx_tunnel, t.tx_tunnel_bytes),
        ("rx_device", t.rx_device, t.rx_device_bytes),
        ("tx_device", t.tx_device, t.tx_device_bytes),
    ];
    let shown: Vec<_> = rows
        .iter()
        .filter(|(_, p, b)| all || *p != 0 || *b != 0)
        .collect();
    if shown.is_empty() {
        return;
    }
    let _ = writeln!(s, "  {:<12}{:>12}{:>14}", "", "packets", "bytes");
    for (name, p, b) in shown {
        let _ = writeln!(s, "  {name:<12}{p:>12}{:>14}", bytes(*b));
    }
}

/// The `drops` of a block: `  drops 4: unknown_peer 3, no_peers 1` (non-zero reasons only
/// unless `all`; nothing when there are none and not `all`).
fn drop_line(s: &mut String, total: u64, drops: &BTreeMap<String, u64>, all: bool) {
    if total == 0 && !all {
        return;
    }
    let reasons: Vec<String> = drops
        .iter()
        .filter(|(_, v)| all || **v != 0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(s, "  drops {total}: {}", reasons.join(", "));
}

/// The mode bit of `mode` ([`crate::core::counters::modes`]).
fn mode_bit(mode: TunnelMode) -> u8 {
    use crate::core::counters::modes;
    match mode {
        TunnelMode::L2Vxlan => modes::L2,
        TunnelMode::L3Vxlan => modes::L3VX,
        TunnelMode::L3Ipip => modes::IPIP,
    }
}

/// `stats` as text, in the style of `ip -s link` and `wg show`: the daemon's totals (packets
/// and bytes in and out of the tunnel and the devices, then the other counters that apply to
/// its mode), one block per network, one line per peer, one line per worker, the drops by
/// reason and the path MTUs. Counters that are zero are left out unless `all`.
pub fn stats_table(st: &StatsReport, all: bool) -> String {
    let mut s = String::new();
    let c = &st.counters;
    let _ = write!(
        s,
        "vtepd {}: up {}",
        st.mode.name(),
        duration(st.uptime_secs)
    );
    let _ = match st.mode {
        TunnelMode::L3Ipip => writeln!(s),
        _ => writeln!(s, ", {} fdb entries", st.fdb_entries),
    };
    traffic_rows(&mut s, &c.traffic(), all);
    let bit = mode_bit(st.mode);
    for ((k, v), m) in c.scalars().into_iter().zip(Counters::MODES) {
        // The traffic counters are in the rows above.
        if m & bit != 0 && !NetTraffic::NAMES.contains(&k) && (all || v != 0) {
            let _ = writeln!(s, "  {k:<24}{v}");
        }
    }
    if let Some(store) = &st.store {
        let _ = writeln!(s, "store {}, {} members", store.state, store.members);
        for (k, v) in &store.counters {
            if all || *v != 0 {
                let _ = writeln!(s, "  {k:<24}{v}");
            }
        }
    }
    for n in &st.networks {
        let _ = write!(s, "network vni {} dev {}", n.vni, n.dev);
        if let Some(mac) = &n.mac {
            let _ = write!(s, " mac {mac}");
        }
        // IPIP has no flood list, FDB or neighbours.
        let _ = match st.mode {
            TunnelMode::L3Ipip => writeln!(s),
            _ => writeln!(
                s,
                ": {} peers, {} fdb entries, {} neighbours",
                n.peers, n.fdb_entries, n.neigh_entries
            ),
        };
        traffic_rows(&mut s, &n.traffic, all);
        drop_line(&mut s, n.drops_total, &n.drops, all);
    }
    for p in &st.peers {
        if !all && p.traffic.is_zero() {
            continue;
        }
        let t = &p.traffic;
        let _ = write!(
            s,
            "peer {} vni {} dev {}: rx {} ({}) tx {} ({})",
            p.remote,
            p.vni,
            p.dev,
            t.rx_tunnel,
            bytes(t.rx_tunnel_bytes),
            t.tx_tunnel,
            bytes(t.tx_tunnel_bytes)
        );
        let _ = match p.path_mtu {
            Some(m) => writeln!(s, ", path MTU {m}"),
            None => writeln!(s),
        };
    }
    let o = &st.peers_overflow;
    if all || !o.is_zero() {
        let _ = writeln!(
            s,
            "peers beyond the row limit: rx {} ({}) tx {} ({})",
            o.rx_tunnel,
            bytes(o.rx_tunnel_bytes),
            o.tx_tunnel,
            bytes(o.tx_tunnel_bytes)
        );
    }
    for w in &st.workers {
        let c = &w.counters;
        let _ = write!(s, "worker {}:", w.worker);
        for (k, v) in [
            ("rx_tunnel", c.rx_tunnel),
            ("tx_tunnel", c.tx_tunnel),
            ("rx_device", c.rx_device),
            ("tx_device", c.tx_device),
            ("drops", w.drops_total),
        ] {
            if all || v != 0 {
                let _ = write!(s, " {k} {v}");
            }
        }
        let _ = writeln!(s);
    }
    if all || st.drops_total != 0 {
        let _ = writeln!(s, "drops {}", st.drops_total);
        for (k, v) in &st.drops {
            if all || *v != 0 {
                let _ = writeln!(s, "  {k:<24}{v}");
            }
        }
    }
    let _ = writeln!(s, "path_mtu configured {}", st.path_mtu.configured);
    for m in &st.path_mtu.learned {
        let _ = writeln!(
            s,
            "  {} {} learned, {}s left",
            m.remote,
            m.mtu,
            m.expires_secs.unwrap_or(0)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::{NetStats, PathMtuRow};
    use crate::core::Counters;
    use std::collections::BTreeMap;
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn fdb_lines_look_like_bridge() {
        let rows = [
            FdbRow {
                vni: 42,
                dev: "vtep0".into(),
                mac: "02:00:00:00:00:01".into(),
                remote: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
                kind: Kind::Learned,
                store: false,
                age_secs: 3,
                frozen_secs: None,
            },
            FdbRow {
                vni: 42,
                dev: "vtep0".into(),
                mac: "02:00:00:00:00:02".into(),
                remote: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3)),
                kind: Kind::Static,
                store: true,
                age_secs: 9,
                frozen_secs: None,
            },
            FdbRow {
                vni: 42,
                dev: "vtep0".into(),
                mac: "02:00:00:00:00:03".into(),
                remote: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 4)),
                kind: Kind::Learned,
                store: false,
                age_secs: 0,
                frozen_secs: Some(170),
            },
        ];
        assert_eq!(
            fdb_table(&rows),
            "02:00:00:00:00:01 dev vtep0 vni 42 dst 192.0.2.2 learned age 3s\n\
             02:00:00:00:00:02 dev vtep0 vni 42 dst 192.0.2.3 static (store)\n\
             02:00:00:00:00:03 dev vtep0 vni 42 dst 192.0.2.4 learned age 0s frozen 170s\n"
        );
        assert_eq!(fdb_table(&[]), "");
    }

    #[test]
    fn neigh_lines_look_like_ip_neigh() {
        let rows = [
            NeighRow {
                vni: 1,
                dev: "vtep0".into(),
                ip: Ipv4Addr::new(10, 244, 1, 0).into(),
                mac: "02:00:00:00:00:01".into(),
                kind: Kind::Static,
                store: true,
                age_secs: 9,
            },
            NeighRow {
                vni: 1,
                dev: "vtep0".into(),
                ip: Ipv4Addr::new(10, 244, 2, 1).into(),
                mac: "02:00:00:00:00:02".into(),
                kind: Kind::Learned,
                store: false,
                age_secs: 3,
            },
        ];
        assert_eq!(
            neigh_table(&rows),
            "10.244.1.0 lladdr 02:00:00:00:00:01 dev vtep0 vni 1 static (store)\n\
             10.244.2.1 lladdr 02:00:00:00:00:02 dev vtep0 vni 1 learned age 3s\n"
        );
    }

    #[test]
    fn peers_table_lists_each_peer_and_empty_lists() {
        let rows = [
            PeersRow {
                vni: 42,
                dev: "vtep0".into(),
                peers: vec![
                    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
                    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3)),
                ],
                store: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2))],
                remcsum_rx: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2))],
                path_mtu: vec![PathMtuRow {
                    remote: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3)),
                    mtu: 1400,
                    learned: true,
                    expires_secs: Some(540),
                }],
            },
            PeersRow {
                vni: 7,
                dev: "v7".into(),
                peers: vec![],
                store: vec![],
                remcsum_rx: vec![],
                path_mtu: vec![],
            },
        ];
        let t = peers_table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[0].starts_with("VNI"));
        assert!(lines[1].contains("42") && lines[1].ends_with("192.0.2.2  (store, remcsum-rx)"));
        assert!(lines[2].contains("192.0.2.3") && lines[2].ends_with("1400 learned, 540s left"));
        assert!(lines[3].starts_with("7 ") && lines[3].ends_with('-'));
    }

    /// A report in `mode` with traffic in the totals, one network and one peer.
    fn report(mode: TunnelMode) -> StatsReport {
        let mut drops = BTreeMap::new();
        drops.insert("unknown_peer".to_owned(), 4);
        drops.insert("truncated".to_owned(), 0);
        let mut net_drops = BTreeMap::new();
        net_drops.insert("no_peers".to_owned(), 2);
        net_drops.insert("storm_broadcast".to_owned(), 0);
        StatsReport {
            version: 1,
            mode,
            counters: Counters {
                rx_tunnel: 10,
                rx_tunnel_bytes: 1536,
                tx_tunnel: 11,
                tx_tunnel_bytes: 3 * 1024 * 1024,
                rx_device: 12,
                rx_device_bytes: 500,
                flood_copies: 14,
                learned: 3,
                arp_suppressed: 6,
                arp_requests: 7,
                rx_merged: 8,
                ..Counters::default()
            },
            fdb_entries: 2,
            drops,
            drops_total: 4,
            uptime_secs: 3725,
            networks: vec![NetStats {
                vni: 42,
                dev: "vtep0".into(),
                peers: 2,
                fdb_entries: 2,
                fdb_static_entries: 1,
                fdb_learned_entries: 1,
                mac: Some("02:00:00:00:00:0a".into()),
                neigh_entries: 1,
                traffic: crate::core::NetTraffic {
                    rx_tunnel: 9,
                    rx_tunnel_bytes: 900,
                    ..Default::default()
                },
                drops: net_drops,
                drops_total: 2,
            }],
            workers: vec![
                crate::control::protocol::WorkerStats {
                    worker: 1,
                    counters: Counters {
                        rx_tunnel: 6,
                        tx_tunnel: 7,
                        rx_device: 8,
                        tx_device: 9,
                        ..Counters::default()
                    },
                    drops_total: 4,
                },
                crate::control::protocol::WorkerStats {
                    worker: 2,
                    counters: Counters {
                        tx_tunnel: 1,
                        ..Counters::default()
                    },
                    drops_total: 0,
                },
            ],
            path_mtu: crate::control::protocol::PathMtuReport {
                configured: 1500,
                learned: vec![],
            },
            peers: vec![
                crate::control::protocol::PeerStats {
                    vni: 42,
                    dev: "vtep0".into(),
                    remote: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
                    traffic: crate::core::PeerTraffic {
                        rx_tunnel: 9,
                        rx_tunnel_bytes: 900,
                        tx_tunnel: 1,
                        tx_tunnel_bytes: 2048,
                    },
                    path_mtu: Some(1500),
                },
                crate::control::protocol::PeerStats {
                    vni: 42,
                    dev: "vtep0".into(),
                    remote: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3)),
                    traffic: Default::default(),
                    path_mtu: None,
                },
            ],
            peers_overflow: Default::default(),
            store: None,
        }
    }

    #[test]
    fn bytes_have_binary_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(bytes(5 << 30), "5.0 GiB");
        assert_eq!(bytes(u64::MAX), "16384.0 PiB");
        assert_eq!(duration(3725), "1h 2m 5s");
        assert_eq!(duration(86400), "1d 0h 0m 0s");
        assert_eq!(duration(7), "7s");
    }

    #[test]
    fn stats_text_shows_the_store_with_its_counters() {
        let mut r = report(TunnelMode::L2Vxlan);
        let t = stats_table(&r, false);
        assert!(!t.contains("store"), "no store, no line: {t}");
        r.store = Some(super::super::protocol::StoreReport {
            state: "unreachable".into(),
            members: 3,
            counters: [("bad_values".to_owned(), 2), ("resyncs".to_owned(), 0)].into(),
        });
        let t = stats_table(&r, false);
        assert!(
            t.contains("store unreachable, 3 members\n  bad_values              2\n"),
            "{t}"
        );
        assert!(!t.contains("resyncs"), "{t}");
        assert!(stats_table(&r, true).contains("  resyncs                 0\n"));
    }

    #[test]
    fn stats_text_hides_zeros_and_shows_units() {
        let t = stats_table(&report(TunnelMode::L2Vxlan), false);
        assert!(
            t.starts_with("vtepd l2-vxlan: up 1h 2m 5s, 2 fdb entries\n"),
            "{t}"
        );
        assert!(
            t.contains("  rx_tunnel             10       1.5 KiB\n"),
            "{t}"
        );
        assert!(
            t.contains("  tx_tunnel             11       3.0 MiB\n"),
            "{t}"
        );
        assert!(
            t.contains("  rx_device             12         500 B\n"),
            "{t}"
        );
        // tx_device is zero in the totals: left out, as is the zero drop reason.
        assert!(!t.contains("  tx_device      "), "{t}");
        assert!(!t.contains("truncated"), "{t}");
        assert!(t.contains("  flood_copies            14\n"), "{t}");
        assert!(t.contains("drops 4\n  unknown_peer            4\n"), "{t}");
        assert!(t.contains(
            "network vni 42 dev vtep0 mac 02:00:00:00:00:0a: 2 peers, 2 fdb entries, 1 neighbours\n"
        ));
        assert!(t.contains("  drops 2: no_peers 2\n"), "{t}");
        assert!(t.contains(
            "peer 192.0.2.2 vni 42 dev vtep0: rx 9 (900 B) tx 1 (2.0 KiB), path MTU 1500\n"
        ));
        // A peer row without traffic and an empty overflow are left out.
        assert!(!t.contains("192.0.2.3"), "{t}");
        assert!(!t.contains("beyond the row limit"), "{t}");
        assert!(t.contains("worker 1: rx_tunnel 6 tx_tunnel 7 rx_device 8 tx_device 9 drops 4"));
        assert!(t.contains("worker 2: tx_tunnel 1\n"), "{t}");
        // Never a zero counter line.
        for line in t
            .lines()
            .filter(|l| l.starts_with("  ") && !l.contains("drops"))
        {
            assert!(
                !line.trim_end().ends_with(" 0"),
                "zero shown: {line:?}\n{t}"
            );
        }

        let all = stats_table(&report(TunnelMode::L2Vxlan), true);
        assert!(
            all.contains("  tx_device              0           0 B\n"),
            "{all}"
        );
        assert!(all.contains("  truncated               0\n"), "{all}");
        assert!(all.contains("  mac_moves               0\n"), "{all}");
        assert!(
            all.contains("  drops 2: no_peers 2, storm_broadcast 0\n"),
            "{all}"
        );
        assert!(all.contains("peer 192.0.2.3 vni 42 dev vtep0: rx 0 (0 B) tx 0 (0 B)\n"));
        assert!(all.contains("peers beyond the row limit: rx 0 (0 B) tx 0 (0 B)\n"));
        assert!(
            all.contains("worker 2: rx_tunnel 0 tx_tunnel 1 rx_device 0 tx_device 0 drops 0\n")
        );
    }

    #[test]
    fn stats_text_shows_only_the_counters_of_the_mode() {
        let has = |t: &str, k: &str| t.lines().any(|l| l.trim_start().starts_with(k));
        // L2: ARP suppression and learning, no L3 ARP or IPIP counters, even with --all.
        for all in [false, true] {
            let t = stats_table(&report(TunnelMode::L2Vxlan), all);
            assert!(has(&t, "arp_suppressed") && has(&t, "learned"), "{t}");
            assert!(!has(&t, "arp_requests") && !has(&t, "rx_merged"), "{t}");
            let t = stats_table(&report(TunnelMode::L3Vxlan), all);
            assert!(has(&t, "arp_requests") && has(&t, "learned"), "{t}");
            assert!(!has(&t, "arp_suppressed") && !has(&t, "rx_merged"), "{t}");
            let t = stats_table(&report(TunnelMode::L3Ipip), all);
            assert!(has(&t, "rx_merged"), "{t}");
            for k in [
                "arp_",
                "learned",
                "flood_copies",
                "neigh_",
                "mac_",
                "fragmented",
            ] {
                assert!(!has(&t, k), "{k} in IPIP: {t}");
            }
            assert!(!t.contains("fdb entries"), "{t}");
        }
        // Every counter is in some mode.
        assert_eq!(Counters::MODES.len(), Counters::SCALARS);
        assert!(Counters::MODES.iter().all(|m| *m != 0));
    }
}
