//! The control protocol: one JSON request line from the client, one JSON response line back.
//!
//! ```text
//! > {"cmd":"fdb_add","vni":42,"mac":"02:00:00:00:00:01","remote":"192.0.2.2"}
//! < {"ok":true,"data":null}
//! > {"cmd":"peers_del","ip":"192.0.2.9"}
//! < {"ok":false,"usage":true,"error":"the daemon has 2 networks (VNI 42, 43): give --vni"}
//! ```

use crate::core::capture::{Captured, Spec};
use crate::core::synth::Synth;
use crate::core::trace::{Filter, Record};
use crate::core::{Counters, NetTraffic, PeerTraffic};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Longest request line the server reads.
pub const MAX_REQUEST: u64 = 64 * 1024;
/// Longest response line the client reads.
pub const MAX_RESPONSE: u64 = 256 * 1024 * 1024;

/// A request. `vni: None` means "the only network" for changes and "all networks" for
/// `fdb_show` and `fdb_flush`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// List FDB entries.
    FdbShow {
        /// Only this network.
        #[serde(default)]
        vni: Option<u32>,
    },
    /// Add or replace a static entry.
    FdbAdd {
        /// Network.
        #[serde(default)]
        vni: Option<u32>,
        /// MAC address (text).
        mac: String,
        /// Remote VTEP.
        remote: IpAddr,
    },
    /// Delete an entry.
    FdbDel {
        /// Network.
        #[serde(default)]
        vni: Option<u32>,
        /// MAC address (text).
        mac: String,
    },
    /// Delete entries.
    FdbFlush {
        /// Only this network.
        #[serde(default)]
        vni: Option<u32>,
        /// Keep static entries.
        #[serde(default)]
        learned_only: bool,
    },
    /// List flood lists.
    PeersShow,
    /// Add a flood-list peer.
    PeersAdd {
        /// Network.
        #[serde(default)]
        vni: Option<u32>,
        /// Remote VTEP.
        ip: IpAddr,
    },
    /// Remove a flood-list peer.
    PeersDel {
        /// Network.
        #[serde(default)]
        vni: Option<u32>,
        /// Remote VTEP.
        ip: IpAddr,
    },
    /// Counters.
    Stats,
    /// List L3 routes.
    RoutesShow,
    /// Add or replace an L3 route.
    RoutesAdd {
        /// Overlay prefix (text, like `10.0.1.0/26` or `fd00:2::/64`).
        prefix: String,
        /// Next hop.
        via: IpAddr,
    },
    /// Remove an L3 route.
    RoutesDel {
        /// Overlay prefix (text).
        prefix: String,
    },
    /// List neighbour bindings (IP -> MAC).
    NeighShow {
        /// Only this network.
        #[serde(default)]
        vni: Option<u32>,
    },
    /// Add or replace a static neighbour binding.
    NeighAdd {
        /// Network.
        #[serde(default)]
        vni: Option<u32>,
        /// Overlay address (IPv6 only in L2, for ND suppression).
        ip: IpAddr,
        /// MAC address (text).
        mac: String,
    },
    /// Delete a neighbour binding.
    NeighDel {
        /// Network.
        #[serde(default)]
        vni: Option<u32>,
        /// Overlay address.
        ip: IpAddr,
    },
    /// Read the configuration file again and apply the difference ([`ReloadReport`]).
    Reload,
    /// The running configuration as a TOML file ([`ConfigShowReport`]).
    ConfigShow,
    /// Arms tracing of the next `count` packets `filter` takes on every worker; answers a
    /// [`TraceStarted`]. The session ends when stopped or when not polled for 5 s.
    TraceStart {
        /// Which packets.
        #[serde(default)]
        filter: Filter,
        /// How many.
        count: u64,
    },
    /// The records of a trace session so far ([`TracePolled`]).
    TracePoll {
        /// The session.
        session: u64,
    },
    /// Stops a trace session.
    TraceStop {
        /// The session.
        session: u64,
    },
    /// Runs a synthetic packet through the engine without sending it or changing any state;
    /// answers its [`TraceRow`].
    TraceInject(Inject),
    /// Arms a packet capture on every worker; answers a [`TraceStarted`] (its session). The
    /// session ends when stopped, when its budget is spent or when not polled for 5 s.
    CaptureStart(CaptureStart),
    /// The packets of a capture session so far ([`CapturePolled`]).
    CapturePoll {
        /// The session.
        session: u64,
    },
    /// Stops a capture session.
    CaptureStop {
        /// The session.
        session: u64,
    },
}

/// What `capture_start` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureStart {
    /// Which packets (the trace's filter terms).
    #[serde(default)]
    pub filter: Filter,
    /// Packets at most.
    pub count: u64,
    /// Bytes at most (of the packets as kept, after the snap length).
    pub bytes: u64,
    /// The sides and the snap length.
    #[serde(flatten)]
    pub spec: Spec,
}

/// The answer to `capture_poll`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturePolled {
    /// The packets since the last poll.
    pub records: Vec<Captured>,
    /// Records lost so far because the client polled too slowly.
    pub overflow: u64,
    /// The capture has every packet it asked for (or its bytes), and all were taken.
    pub done: bool,
}

/// The answer to `trace_start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStarted {
    /// The session to poll and stop.
    pub session: u64,
}

/// One traced packet, with the device of its network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceRow {
    /// The record.
    #[serde(flatten)]
    pub record: Record,
    /// The device of the network it came from or went to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
}

/// The answer to `trace_poll`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TracePolled {
    /// The records since the last poll.
    pub records: Vec<TraceRow>,
    /// Records lost so far because the client polled too slowly.
    pub overflow: u64,
    /// Every record asked for was taken: stop now.
    pub done: bool,
}

/// Which side a synthetic packet comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InjectFrom {
    /// Read from the device (a frame in L2, an IP packet in L3).
    #[default]
    Device,
    /// Received from the underlay (a VXLAN datagram, an IPIP packet).
    Tunnel,
}

/// A synthetic packet for `trace_inject`: its bytes (`hex`), or fields the daemon builds it
/// from for its mode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inject {
    /// Which side it comes from.
    #[serde(default)]
    pub from: InjectFrom,
    /// The network (may be omitted when the daemon has one).
    #[serde(default)]
    pub vni: Option<u32>,
    /// The outer source (tunnel side).
    #[serde(default)]
    pub outer_src: Option<IpAddr>,
    /// The outer TOS byte (tunnel side).
    #[serde(default)]
    pub tos: u8,
    /// The bytes as the engine takes them, in hex: the frame (L2) or IP packet (L3) from the
    /// device; the VXLAN datagram (UDP payload) or the IPIP packet (outer header on) from the
    /// tunnel.
    #[serde(default)]
    pub hex: Option<String>,
    /// Or the fields to build it from.
    #[serde(default)]
    pub fields: Synth,
}

/// The answer to `reload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// What changed, one line each (empty: no change).
    pub changes: Vec<String>,
}

/// The answer to `config_show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigShowReport {
    /// The running configuration, a TOML file `vtepd run --config` accepts.
    pub config: String,
}

/// One neighbour binding (`neigh show --json` prints an array of these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighRow {
    /// Network.
    pub vni: u32,
    /// The network's device.
    pub dev: String,
    /// Overlay address (IPv4, or IPv6 in L2 networks).
    pub ip: IpAddr,
    /// Its MAC.
    pub mac: String,
    /// Learned (from ARP, or ND in L2) or static.
    pub kind: Kind,
    /// Whether the store installed it (`--store`: an announced address, an L3 VXLAN member's
    /// next hop), not the operator.
    #[serde(default)]
    pub store: bool,
    /// Seconds since last confirmed (since added, for static bindings).
    pub age_secs: u64,
}

/// A response: `ok` with `data`, or an `error` (`usage` tells the client to exit with 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Success.
    pub ok: bool,
    /// The error was the request's fault (bad VNI, ...).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub usage: bool,
    /// One-line error message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The answer.
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Response {
    /// A success carrying `data`.
    pub fn ok(data: serde_json::Value) -> Response {
        Response {
            ok: true,
            usage: false,
            error: None,
            data,
        }
    }
    /// A failure.
    pub fn err(usage: bool, msg: impl Into<String>) -> Response {
        Response {
            ok: false,
            usage,
            error: Some(msg.into()),
            data: serde_json::Value::Null,
        }
    }
}

/// Kind of an FDB entry, as printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Learned from traffic.
    Learned,
    /// Added by the operator or the configuration.
    Static,
}

/// One FDB entry (`fdb show --json` prints an array of these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbRow {
    /// Network.
    pub vni: u32,
    /// The network's device.
    pub dev: String,
    /// MAC address.
    pub mac: String,
    /// Remote VTEP.
    pub remote: IpAddr,
    /// Learned or static.
    pub kind: Kind,
    /// Whether the store installed it (`--store`: an announced MAC, an operator's key, an L3
    /// VXLAN member's MAC), not the operator.
    #[serde(default)]
    pub store: bool,
    /// Seconds since last seen (since added, for static entries).
    pub age_secs: u64,
    /// Seconds left frozen by MAC-move dampening (absent: not frozen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen_secs: Option<u64>,
}

/// One network's flood list (`peers show --json` prints an array of these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeersRow {
    /// Network.
    pub vni: u32,
    /// The network's device.
    pub dev: String,
    /// Remote VTEPs receiving BUM traffic (the operator's flood list, then the store's).
    pub peers: Vec<IpAddr>,
    /// Those of `peers` the store put there (`--store`) and the operator did not.
    #[serde(default)]
    pub store: Vec<IpAddr>,
    /// Those of `peers` that registered in the store taking VXLAN remote checksum offload
    /// (`remcsum_rx`: with `--remcsum-tx auto`, TCP segments to them leave with the option).
    #[serde(default)]
    pub remcsum_rx: Vec<IpAddr>,
    /// The path MTU toward each of them, in the same order.
    #[serde(default)]
    pub path_mtu: Vec<PathMtuRow>,
}

/// The path MTU toward one remote (in `peers show` and `stats --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathMtuRow {
    /// The remote VTEP or node.
    pub remote: IpAddr,
    /// The largest outer packet toward it.
    pub mtu: u16,
    /// Learned from the underlay (else the configured underlay MTU).
    pub learned: bool,
    /// Seconds before a learned value goes back to the configured MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_secs: Option<u64>,
}

/// The path MTUs in [`StatsReport`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathMtuReport {
    /// The configured underlay MTU: every remote's path MTU unless a lower one was learned.
    pub configured: u16,
    /// The remotes a lower path MTU was learned toward.
    pub learned: Vec<PathMtuRow>,
}

/// One L3 route (`routes show --json` prints an array of these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRow {
    /// Overlay prefix, like `10.0.1.0/26` or `fd00:2::/64`.
    pub prefix: String,
    /// Next hop: the remote node's underlay address (IPIP) or an overlay next hop (L3 VXLAN).
    pub via: IpAddr,
    /// The device the kernel route points to.
    pub dev: String,
}

/// The version of the `stats --json` layout: raised when a field changes meaning or goes
/// away (new fields do not raise it).
pub const STATS_VERSION: u32 = 1;

fn stats_version() -> u32 {
    STATS_VERSION
}

/// The daemon's tunnel mode, as `stats` reports it: it decides which counters apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TunnelMode {
    /// Ethernet frames on TAP devices over VXLAN.
    #[default]
    L2Vxlan,
    /// IP packets on a TUN device over VXLAN (vtepd the Ethernet endpoint).
    L3Vxlan,
    /// IP packets on a TUN device over IPIP.
    L3Ipip,
}

impl TunnelMode {
    /// The name in `stats --json` (`l2-vxlan`, `l3-vxlan`, `l3-ipip`).
    pub fn name(self) -> &'static str {
        match self {
            TunnelMode::L2Vxlan => "l2-vxlan",
            TunnelMode::L3Vxlan => "l3-vxlan",
            TunnelMode::L3Ipip => "l3-ipip",
        }
    }
}

/// Per-network summary in [`StatsReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetStats {
    /// Network.
    pub vni: u32,
    /// Device.
    pub dev: String,
    /// Flood-list length.
    pub peers: usize,
    /// FDB entries in this network (static and learned).
    pub fdb_entries: usize,
    /// Of which static.
    #[serde(default)]
    pub fdb_static_entries: usize,
    /// Of which learned (and not past their ageing time).
    #[serde(default)]
    pub fdb_learned_entries: usize,
    /// vtepd's own MAC on this network (the TAP's, or the L3 endpoint's): a peer configured
    /// flannel-style needs it for its static neighbour and FDB entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Neighbour bindings (IP -> MAC) in this network.
    #[serde(default)]
    pub neigh_entries: usize,
    /// The network's traffic (`rx_tunnel`, `rx_tunnel_bytes`, ... `tx_device_bytes`).
    #[serde(flatten)]
    pub traffic: NetTraffic,
    /// Drops in this network by reason (those whose network is known); every reason listed.
    #[serde(default)]
    pub drops: BTreeMap<String, u64>,
    /// Sum of `drops`.
    #[serde(default)]
    pub drops_total: u64,
}

/// Tunnel traffic with one remote in one network, in [`StatsReport::peers`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStats {
    /// Network (0 in IPIP mode).
    pub vni: u32,
    /// The network's device.
    pub dev: String,
    /// The remote VTEP or node.
    pub remote: IpAddr,
    /// Packets and inner bytes to and from it.
    #[serde(flatten)]
    pub traffic: PeerTraffic,
    /// The path MTU toward it now (the configured underlay MTU unless a lower one was learned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_mtu: Option<u16>,
}

/// One dataplane worker's own counters in [`StatsReport`] (they sum to the totals).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStats {
    /// Worker index (0..threads).
    pub worker: usize,
    /// Its counters, one key each (the same names as the totals).
    #[serde(flatten)]
    pub counters: Counters,
    /// Its drops, all reasons.
    pub drops_total: u64,
}

/// `stats --json`: counters summed over workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsReport {
    /// The layout's version ([`STATS_VERSION`]).
    #[serde(default = "stats_version")]
    pub version: u32,
    /// The daemon's tunnel mode.
    #[serde(default)]
    pub mode: TunnelMode,
    /// Every counter, one key each (`rx_tunnel`, `tx_tunnel`, ...: see [`Counters`]).
    #[serde(flatten)]
    pub counters: Counters,
    /// FDB entries now (all networks, both kinds).
    pub fdb_entries: usize,
    /// Drops by reason; every reason is listed.
    pub drops: BTreeMap<String, u64>,
    /// Sum of `drops`.
    pub drops_total: u64,
    /// Seconds since the daemon started.
    pub uptime_secs: u64,
    /// Per network.
    pub networks: Vec<NetStats>,
    /// Per dataplane worker.
    #[serde(default)]
    pub workers: Vec<WorkerStats>,
    /// Path MTUs toward the remotes.
    #[serde(default)]
    pub path_mtu: PathMtuReport,
    /// Tunnel traffic per (network, remote), ordered by network then remote.
    #[serde(default)]
    pub peers: Vec<PeerStats>,
    /// Tunnel traffic of remotes that found no row (each worker keeps a bounded number of
    /// rows, so a flood of spoofed sources cannot grow them): counted here instead.
    #[serde(default)]
    pub peers_overflow: PeerTraffic,
    /// The store client (`--store`; `None`: no store).
    #[serde(default)]
    pub store: Option<StoreReport>,
}

/// The store client's state and counters (`stats --json` `store`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreReport {
    /// `connecting`, `connected` or `unreachable`.
    pub state: String,
    /// Registrations the store holds (this host's included).
    pub members: usize,
    /// The client's counters by name.
    pub counters: BTreeMap<String, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn request_wire_format() {
        let r = Request::FdbAdd {
            vni: Some(42),
            mac: "02:00:00:00:00:01".into(),
            remote: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
        };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(
            s,
            r#"{"cmd":"fdb_add","vni":42,"mac":"02:00:00:00:00:01","remote":"192.0.2.2"}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&s).unwrap(), r);
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"stats"}"#).unwrap(),
            Request::Stats
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"fdb_show"}"#).unwrap(),
            Request::FdbShow { vni: None }
        );
        assert_eq!(
            serde_json::from_str::<Request>(
                r#"{"cmd":"neigh_add","ip":"10.244.1.0","mac":"02:00:00:00:00:01"}"#
            )
            .unwrap(),
            Request::NeighAdd {
                vni: None,
                ip: Ipv4Addr::new(10, 244, 1, 0).into(),
                mac: "02:00:00:00:00:01".into()
            }
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"reload"}"#).unwrap(),
            Request::Reload
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"config_show"}"#).unwrap(),
            Request::ConfigShow
        );
        for bad in [
            r#"{"cmd":"reboot"}"#,
            r#"{"cmd":"fdb_show","x":1}"#,
            r#"{"cmd":"peers_add","ip":"1.2.3"}"#,
            r#"{"cmd":"fdb_del"}"#,
            "not json",
        ] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn response_wire_format() {
        let ok = serde_json::to_string(&Response::ok(serde_json::json!([1]))).unwrap();
        assert_eq!(ok, r#"{"ok":true,"data":[1]}"#);
        let e = serde_json::to_string(&Response::err(true, "give --vni")).unwrap();
        assert_eq!(
            e,
            r#"{"ok":false,"usage":true,"error":"give --vni","data":null}"#
        );
        let back: Response = serde_json::from_str(&e).unwrap();
        assert!(back.usage && !back.ok);
    }

    /// Every key `stats --json` prints (drop reasons aside) is in the README's list of its
    /// fields, so the list cannot fall behind the code.
    #[test]
    fn the_readme_lists_every_stats_json_field() {
        let readme = include_str!("../../README.md");
        let start = readme.find("### `stats --json`").expect("README section");
        let section = &readme[start..];
        let section = &section[..section[4..].find("\n## ").map_or(section.len(), |e| e + 4)];
        let report = StatsReport {
            version: STATS_VERSION,
            mode: TunnelMode::L3Ipip,
            counters: Counters::default(),
            fdb_entries: 0,
            drops: BTreeMap::new(),
            drops_total: 0,
            uptime_secs: 0,
            networks: vec![NetStats {
                vni: 0,
                dev: String::new(),
                peers: 0,
                fdb_entries: 0,
                fdb_static_entries: 0,
                fdb_learned_entries: 0,
                mac: Some(String::new()),
                neigh_entries: 0,
                traffic: NetTraffic::default(),
                drops: BTreeMap::new(),
                drops_total: 0,
            }],
            workers: vec![WorkerStats {
                worker: 0,
                counters: Counters::default(),
                drops_total: 0,
            }],
            path_mtu: PathMtuReport {
                configured: 0,
                learned: vec![PathMtuRow {
                    remote: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    mtu: 0,
                    learned: true,
                    expires_secs: Some(0),
                }],
            },
            peers: vec![PeerStats {
                vni: 0,
                dev: String::new(),
                remote: IpAddr::V4(Ipv4Addr::LOCALHOST),
                traffic: PeerTraffic::default(),
                path_mtu: Some(0),
            }],
            peers_overflow: PeerTraffic::default(),
            store: None,
        };
        fn keys(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, v) in m {
                        out.push(k.clone());
                        keys(v, out);
                    }
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| keys(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        keys(&serde_json::to_value(&report).unwrap(), &mut all);
        assert!(all.len() > 60, "{all:?}");
        for k in all {
            assert!(
                section.contains(&format!("`{k}`")),
                "README's stats --json section does not list `{k}`"
            );
        }
    }

    #[test]
    fn fdb_row_has_the_contract_keys() {
        let row = FdbRow {
            vni: 42,
            dev: "vtep0".into(),
            mac: "02:00:00:00:00:01".into(),
            remote: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
            kind: Kind::Learned,
            store: false,
            age_secs: 3,
            frozen_secs: None,
        };
        let v = serde_json::to_value(&row).unwrap();
        for k in ["vni", "mac", "remote", "kind", "store", "age_secs"] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert_eq!(v["kind"], "learned");
        assert_eq!(v["remote"], "192.0.2.2");
        // Only a frozen entry has `frozen_secs`.
        assert!(v.get("frozen_secs").is_none());
        let frozen = FdbRow {
            frozen_secs: Some(7),
            ..row
        };
        assert_eq!(serde_json::to_value(&frozen).unwrap()["frozen_secs"], 7);
    }
}
