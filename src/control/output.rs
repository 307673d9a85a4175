//! Human-readable renderings of control answers (the `--json` forms are the serde types).

use super::protocol::{FdbRow, Kind, NeighRow, PeersRow, RouteRow, StatsReport};
use std::fmt::Write;

/// FDB entries, one per line, in the style of `bridge fdb show`:
/// `02:00:00:00:00:01 dev vtep0 vni 42 dst 192.0.2.2 learned age 3s`, with
/// ` frozen 170s` after an entry MAC-move dampening froze.
pub fn fdb_table(rows: &[FdbRow]) -> String {
    let mut s = String::new();
    for r in rows {
        let _ = write!(s, "{} dev {} vni {} dst {}", r.mac, r.dev, r.vni, r.remote);
        let _ = match r.kind {
            Kind::Learned => write!(s, " learned age {}s", r.age_secs),
            Kind::Static => write!(s, " static"),
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
/// `10.244.1.0 lladdr 02:00:00:00:00:01 dev vtep0 vni 1 static` or `... learned age 3s`.
pub fn neigh_table(rows: &[NeighRow]) -> String {
    let mut s = String::new();
    for r in rows {
        let _ = write!(s, "{} lladdr {} dev {} vni {}", r.ip, r.mac, r.dev, r.vni);
        let _ = match r.kind {
            Kind::Learned => writeln!(s, " learned age {}s", r.age_secs),
            Kind::Static => writeln!(s, " static"),
        };
    }
    s
}

/// Flood lists as a table: one row per (network, peer), with the path MTU toward the peer
/// (`1400 learned, 540s left` when a lower one was learned).
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
            let line = format!("{:<8}  {:<w$}  {:<15}  {pmtu}", r.vni, r.dev, p.to_string());
            let _ = writeln!(s, "{}", line.trim_end());
        }
    }
    s
}

/// Counters as `name value` lines, then drops by reason, then one line per network.
pub fn stats_table(st: &StatsReport) -> String {
    let mut s = String::new();
    let rows = st.counters.scalars().into_iter().chain([
        ("fdb_entries", st.fdb_entries as u64),
        ("uptime_secs", st.uptime_secs),
    ]);
    for (k, v) in rows {
        let _ = writeln!(s, "{k:<24}{v}");
    }
    let _ = writeln!(s, "drops{:<19}{}", "", st.drops_total);
    for (k, v) in &st.drops {
        let _ = writeln!(s, "  {k:<22}{v}");
    }
    for n in &st.networks {
        let _ = writeln!(
            s,
            "network vni {} dev {} mac {}: {} peers, {} fdb entries, {} neighbours",
            n.vni,
            n.dev,
            n.mac.as_deref().unwrap_or("-"),
            n.peers,
            n.fdb_entries,
            n.neigh_entries
        );
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
    for w in &st.workers {
        let _ = writeln!(
            s,
            "worker {}: rx_tunnel {} tx_tunnel {} rx_device {} tx_device {} drops {}",
            w.worker,
            w.counters.rx_tunnel,
            w.counters.tx_tunnel,
            w.counters.rx_device,
            w.counters.tx_device,
            w.drops_total
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
    use std::net::Ipv4Addr;

    #[test]
    fn fdb_lines_look_like_bridge() {
        let rows = [
            FdbRow {
                vni: 42,
                dev: "vtep0".into(),
                mac: "02:00:00:00:00:01".into(),
                remote: Ipv4Addr::new(192, 0, 2, 2),
                kind: Kind::Learned,
                age_secs: 3,
                frozen_secs: None,
            },
            FdbRow {
                vni: 42,
                dev: "vtep0".into(),
                mac: "02:00:00:00:00:02".into(),
                remote: Ipv4Addr::new(192, 0, 2, 3),
                kind: Kind::Static,
                age_secs: 9,
                frozen_secs: None,
            },
            FdbRow {
                vni: 42,
                dev: "vtep0".into(),
                mac: "02:00:00:00:00:03".into(),
                remote: Ipv4Addr::new(192, 0, 2, 4),
                kind: Kind::Learned,
                age_secs: 0,
                frozen_secs: Some(170),
            },
        ];
        assert_eq!(
            fdb_table(&rows),
            "02:00:00:00:00:01 dev vtep0 vni 42 dst 192.0.2.2 learned age 3s\n\
             02:00:00:00:00:02 dev vtep0 vni 42 dst 192.0.2.3 static\n\
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
                ip: Ipv4Addr::new(10, 244, 1, 0),
                mac: "02:00:00:00:00:01".into(),
                kind: Kind::Static,
                age_secs: 9,
            },
            NeighRow {
                vni: 1,
                dev: "vtep0".into(),
                ip: Ipv4Addr::new(10, 244, 2, 1),
                mac: "02:00:00:00:00:02".into(),
                kind: Kind::Learned,
                age_secs: 3,
            },
        ];
        assert_eq!(
            neigh_table(&rows),
            "10.244.1.0 lladdr 02:00:00:00:00:01 dev vtep0 vni 1 static\n\
             10.244.2.1 lladdr 02:00:00:00:00:02 dev vtep0 vni 1 learned age 3s\n"
        );
    }

    #[test]
    fn peers_table_lists_each_peer_and_empty_lists() {
        let rows = [
            PeersRow {
                vni: 42,
                dev: "vtep0".into(),
                peers: vec![Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(192, 0, 2, 3)],
                path_mtu: vec![PathMtuRow {
                    remote: Ipv4Addr::new(192, 0, 2, 3),
                    mtu: 1400,
                    learned: true,
                    expires_secs: Some(540),
                }],
            },
            PeersRow {
                vni: 7,
                dev: "v7".into(),
                peers: vec![],
                path_mtu: vec![],
            },
        ];
        let t = peers_table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[0].starts_with("VNI"));
        assert!(lines[1].contains("42") && lines[1].ends_with("192.0.2.2"));
        assert!(lines[2].contains("192.0.2.3") && lines[2].ends_with("1400 learned, 540s left"));
        assert!(lines[3].starts_with("7 ") && lines[3].ends_with('-'));
    }

    #[test]
    fn stats_table_lists_counters_and_every_drop() {
        let mut drops = BTreeMap::new();
        drops.insert("unknown_peer".to_owned(), 4);
        drops.insert("truncated".to_owned(), 0);
        let st = StatsReport {
            counters: Counters {
                rx_tunnel: 10,
                tx_tunnel: 11,
                rx_device: 12,
                tx_device: 13,
                flood_copies: 14,
                learned: 3,
                arp_suppressed: 6,
                ..Counters::default()
            },
            fdb_entries: 2,
            drops,
            drops_total: 4,
            uptime_secs: 5,
            networks: vec![NetStats {
                vni: 42,
                dev: "vtep0".into(),
                peers: 2,
                fdb_entries: 2,
                fdb_static_entries: 1,
                fdb_learned_entries: 1,
                mac: Some("02:00:00:00:00:0a".into()),
                neigh_entries: 1,
            }],
            workers: vec![crate::control::protocol::WorkerStats {
                worker: 1,
                counters: Counters {
                    rx_tunnel: 6,
                    tx_tunnel: 7,
                    rx_device: 8,
                    tx_device: 9,
                    ..Counters::default()
                },
                drops_total: 4,
            }],
            path_mtu: Default::default(),
        };
        let t = stats_table(&st);
        assert!(t.contains("rx_tunnel               10\n"), "{t}");
        assert!(t.contains("flood_copies            14\n"));
        assert!(t.contains("drops                   4\n"));
        assert!(t.contains("  unknown_peer          4\n"));
        assert!(t.contains("  truncated             0\n"));
        assert!(t.contains("arp_suppressed          6\n"));
        assert!(t.contains(
            "network vni 42 dev vtep0 mac 02:00:00:00:00:0a: 2 peers, 2 fdb entries, 1 neighbours"
        ));
        assert!(t.contains("worker 1: rx_tunnel 6 tx_tunnel 7 rx_device 8 tx_device 9 drops 4"));
    }
}
