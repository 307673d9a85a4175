//! `--metrics ADDR:PORT`: the daemon's counters and table sizes for Prometheus, in the
//! OpenMetrics text format, encoded by the `prometheus-client` crate.
//!
//! Off the packet path: every scrape takes one fresh [`StatsReport`] from the same
//! [`super::handler::Handler::stats_now`] that answers `vtepd stats --json` (the workers' published
//! counters, summed when read, and the core's table counts), so a scrape and `stats --json`
//! can never disagree; nothing here is updated by a worker. [`StatsCollector`] turns the report
//! into metric families on each scrape; [`http`] serves them.
//!
//! Families (every counter of [`Counters`] is `vtepd_<name>_total`, with its doc as HELP):
//!
//! | family | type | labels |
//! | --- | --- | --- |
//! | `vtepd_<counter>_total` (`vtepd_rx_tunnel_total`, ...) | counter | |
//! | `vtepd_drops_total` | counter | `reason`, `vni`, `dev` (empty: no known network) |
//! | `vtepd_{rx,tx}_packets_total`, `vtepd_{rx,tx}_bytes_total` | counter | `vni`, `dev`, `side` (`tunnel`, `device`) |
//! | `vtepd_peer_{rx,tx}_packets_total`, `vtepd_peer_{rx,tx}_bytes_total` | counter | `vni`, `dev`, `remote` (empty: remotes beyond the bounded rows) |
//! | `vtepd_worker_<counter>_total` ([`WORKER_COUNTERS`]), `vtepd_worker_drops_total` | counter | `worker` |
//! | `vtepd_fdb_entries` | gauge | `vni`, `dev`, `kind` (`learned`, `static`) |
//! | `vtepd_neigh_entries` | gauge | `vni`, `dev` |
//! | `vtepd_peers` | gauge | `vni`, `dev` |
//! | `vtepd_path_mtu_bytes` | gauge | `remote` (learned path MTUs only) |
//! | `vtepd_path_mtu_configured_bytes` | gauge | |
//! | `vtepd_store_<counter>_total` ([`StoreCounters`]), `vtepd_store_members` | counter, gauge | |
//! | `vtepd_store_state` | gauge | `state` (`connecting`, `connected`, `unreachable`) |
//! | `vtepd_build_info` | info | `version`, `mode` |
//! | `vtepd_up` | gauge | |
//! | `vtepd_start_time_seconds` | gauge | |
//! | `vtepd_uptime_seconds` | gauge | |

pub mod http;

use super::store::status::{StoreCounters, StoreState};
use crate::control::protocol::StatsReport;
use crate::core::Counters;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use std::fmt;

/// The `Content-Type` of a scrape.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The counters also shown per worker (`vtepd_worker_<name>_total{worker}`), to see how the
/// kernel spreads the flows over the workers; every counter's total is in the unlabelled
/// family.
pub const WORKER_COUNTERS: &[&str] = &[
    "rx_tunnel",
    "tx_tunnel",
    "rx_device",
    "tx_device",
    "rx_device_bytes",
    "tx_device_bytes",
    "rx_tunnel_bytes",
    "tx_tunnel_bytes",
];

/// What a scrape shows besides the report: fixed when the daemon starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    /// `vtepd_start_time_seconds`: when the daemon started, in seconds since the Unix epoch.
    pub start_time: f64,
}

impl Meta {
    /// The meta of a daemon that has been up for `uptime`.
    pub fn new(uptime: std::time::Duration) -> Meta {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Meta {
            start_time: now.saturating_sub(uptime).as_secs_f64(),
        }
    }
}

/// Where a scrape takes its report from: the daemon's handler, or a fixed report in tests.
type Source = Box<dyn Fn() -> StatsReport + Send + Sync>;

/// The collector: encodes one fresh [`StatsReport`] per scrape.
pub struct StatsCollector {
    source: Source,
    meta: Meta,
}

impl fmt::Debug for StatsCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatsCollector")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl StatsCollector {
    /// A collector that calls `source` once per scrape.
    pub fn new(source: impl Fn() -> StatsReport + Send + Sync + 'static, meta: Meta) -> Self {
        StatsCollector {
            source: Box::new(source),
            meta,
        }
    }

    /// A registry holding only this collector.
    pub fn into_registry(self) -> Registry {
        let mut r = Registry::default();
        r.register_collector(Box::new(self));
        r
    }
}

impl Collector for StatsCollector {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        encode_report(encoder, &(self.source)(), &self.meta)
    }
}

/// One scrape of `registry`: the whole exposition, `# EOF` included.
pub fn render(registry: &Registry) -> Result<String, fmt::Error> {
    let mut out = String::with_capacity(16 * 1024);
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

/// Escapes a label value or HELP text as the text format wants it (the crate writes both as
/// given): backslash, double quote and line break escaped. Device names may hold quotes and
/// backslashes.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A doc comment as one line of HELP text.
fn help(doc: &str) -> String {
    escape(&doc.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// A counter's family name without `vtepd_` and `_total`, and its unit: a name ending in
/// `_bytes` is a count of bytes (`rx_device_bytes` -> `vtepd_rx_device_bytes_total`).
fn name_and_unit(name: &str) -> (&str, Option<Unit>) {
    match name.strip_suffix("_bytes") {
        Some(stem) => (stem, Some(Unit::Bytes)),
        None => (name, None),
    }
}

/// Writes one family: its descriptor (even with no samples, so that every family is always
/// named in a scrape), then one sample per `(labels, metric)`.
fn family<L, M>(
    enc: &mut DescriptorEncoder<'_>,
    (name, help, unit): (&str, &str, Option<&Unit>),
    kind: MetricType,
    samples: impl IntoIterator<Item = (L, M)>,
) -> Result<(), fmt::Error>
where
    L: prometheus_client::encoding::EncodeLabelSet,
    M: EncodeMetric,
{
    let mut m = enc.encode_descriptor(name, help, unit, kind)?;
    for (labels, metric) in samples {
        metric.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A sample's labels: names and (escaped) values.
type Labels<const N: usize> = [(&'static str, String); N];

/// Writes a family of one sample without labels.
fn single(
    enc: &mut DescriptorEncoder<'_>,
    (name, help, unit): (&str, &str, Option<&Unit>),
    metric: impl EncodeMetric,
) -> Result<(), fmt::Error> {
    metric.encode(enc.encode_descriptor(name, help, unit, metric.metric_type())?)
}

fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

fn gauge<T>(v: T) -> ConstGauge<T> {
    ConstGauge::new(v)
}

/// Encodes `r` (and `meta`) as the metric families listed in the module docs.
pub fn encode_report(
    mut enc: DescriptorEncoder<'_>,
    r: &StatsReport,
    meta: &Meta,
) -> Result<(), fmt::Error> {
    use MetricType::{Counter, Gauge};
    let e = &mut enc;
    // The mode as `stats --json` names it (`l2-vxlan`, `l3-vxlan`, `l3-ipip`).
    let labels = [
        ("version", env!("CARGO_PKG_VERSION")),
        ("mode", r.mode.name()),
    ];
    e.encode_descriptor(
        "vtepd_build",
        "The running vtepd's version and mode.",
        None,
        MetricType::Info,
    )?
    .encode_info(&labels)?;
    let up = ("vtepd_up", "1 while the daemon answers.", None);
    single(e, up, gauge(1i64))?;
    let start = (
        "vtepd_start_time",
        "When the daemon started, in seconds since the Unix epoch.",
        Some(&Unit::Seconds),
    );
    single(e, start, gauge(meta.start_time))?;
    let uptime = (
        "vtepd_uptime",
        "Seconds since the daemon started.",
        Some(&Unit::Seconds),
    );
    single(e, uptime, gauge(r.uptime_secs as f64))?;
    for ((name, v), doc) in r.counters.scalars().iter().zip(Counters::DOCS) {
        let (stem, unit) = name_and_unit(name);
        let desc = (&*format!("vtepd_{stem}"), &*help(doc), unit.as_ref());
        single(e, desc, counter(*v))?;
    }
    let drops = (
        "vtepd_drops",
        "Packets or frames not forwarded, by reason and network (vni and dev empty: no network \
         took the packet, or its network is not known); the rows of a reason sum to its total.",
        None,
    );
    family(e, drops, Counter, drop_rows(r))?;
    let worker = |w: &crate::control::protocol::WorkerStats| [("worker", w.worker.to_string())];
    for (i, name) in Counters::NAMES.iter().enumerate() {
        if !WORKER_COUNTERS.contains(name) {
            continue;
        }
        let (stem, unit) = name_and_unit(name);
        let desc = (
            &*format!("vtepd_worker_{stem}"),
            &*format!("{} Per dataplane worker.", help(Counters::DOCS[i])),
            unit.as_ref(),
        );
        let rows = r
            .workers
            .iter()
            .map(|w| (worker(w), counter(w.counters.scalars()[i].1)));
        family(e, desc, Counter, rows)?;
    }
    let desc = (
        "vtepd_worker_drops",
        "Drops (all reasons) per dataplane worker.",
        None,
    );
    let rows = r
        .workers
        .iter()
        .map(|w| (worker(w), counter(w.drops_total)));
    family(e, desc, Counter, rows)?;
    let net = |n: &crate::control::protocol::NetStats| {
        [("vni", n.vni.to_string()), ("dev", escape(&n.dev))]
    };
    let desc = (
        "vtepd_fdb_entries",
        "FDB entries per network and kind (learned: not past their ageing time).",
        None,
    );
    let rows = r.networks.iter().flat_map(|n| {
        let [vni, dev] = net(n);
        let learned = [vni.clone(), dev.clone(), ("kind", "learned".to_owned())];
        let statics = [vni, dev, ("kind", "static".to_owned())];
        [
            (learned, gauge(n.fdb_learned_entries as i64)),
            (statics, gauge(n.fdb_static_entries as i64)),
        ]
    });
    family(e, desc, Gauge, rows)?;
    let desc = (
        "vtepd_neigh_entries",
        "Neighbour bindings (IP -> MAC) per network.",
        None,
    );
    let rows = r
        .networks
        .iter()
        .map(|n| (net(n), gauge(n.neigh_entries as i64)));
    family(e, desc, Gauge, rows)?;
    let desc = (
        "vtepd_peers",
        "Remote VTEPs in each network's flood list.",
        None,
    );
    let rows = r.networks.iter().map(|n| (net(n), gauge(n.peers as i64)));
    family(e, desc, Gauge, rows)?;
    let desc = (
        "vtepd_path_mtu_configured",
        "The configured underlay MTU: every remote's path MTU unless a lower one was learned.",
        Some(&Unit::Bytes),
    );
    let configured = gauge(i64::from(r.path_mtu.configured));
    single(e, desc, configured)?;
    let desc = (
        "vtepd_path_mtu",
        "The path MTU learned toward a remote (only remotes with a learned value).",
        Some(&Unit::Bytes),
    );
    let rows = r
        .path_mtu
        .learned
        .iter()
        .map(|p| ([("remote", p.remote.to_string())], gauge(i64::from(p.mtu))));
    family(e, desc, Gauge, rows)?;
    store_families(e, r)?;
    traffic_families(e, r)
}

/// The store client's families (`--store` only): its counters, members and state.
fn store_families(e: &mut DescriptorEncoder<'_>, r: &StatsReport) -> Result<(), fmt::Error> {
    let Some(s) = &r.store else {
        return Ok(());
    };
    for (name, doc) in StoreCounters::NAMES.iter().zip(StoreCounters::HELP) {
        let v = s.counters.get(*name).copied().unwrap_or(0);
        single(e, (&*format!("vtepd_store_{name}"), doc, None), counter(v))?;
    }
    let desc = (
        "vtepd_store_members",
        "Registrations the store holds (this host's included).",
        None,
    );
    single(e, desc, gauge(s.members as i64))?;
    let desc = (
        "vtepd_store_state",
        "The store client's state: 1 for the one it is in.",
        None,
    );
    let rows = StoreState::ALL.iter().map(|st| {
        let on = i64::from(st.name() == s.state);
        ([("state", st.name().to_owned())], gauge(on))
    });
    family(e, desc, MetricType::Gauge, rows)
}

/// `vtepd_drops_total` rows: each network's drops by reason (reasons with drops only, so that
/// 10k networks do not make 360k rows), then every reason's drops no network accounts for
/// (`vni=""`, `dev=""`: the total less the networks'), so the rows of a reason always sum to
/// its total in `stats --json`.
fn drop_rows(r: &StatsReport) -> Vec<(Labels<3>, ConstCounter<u64>)> {
    let mut rows = Vec::new();
    let mut accounted: std::collections::BTreeMap<&str, u64> = Default::default();
    for n in &r.networks {
        for (reason, v) in n.drops.iter().filter(|(_, v)| **v > 0) {
            *accounted.entry(reason.as_str()).or_default() += v;
            let labels = [
                ("reason", escape(reason)),
                ("vni", n.vni.to_string()),
                ("dev", escape(&n.dev)),
            ];
            rows.push((labels, counter(*v)));
        }
    }
    for (reason, total) in &r.drops {
        let rest = total.saturating_sub(accounted.get(reason.as_str()).copied().unwrap_or(0));
        let labels = [
            ("reason", escape(reason)),
            ("vni", String::new()),
            ("dev", String::new()),
        ];
        rows.push((labels, counter(rest)));
    }
    rows
}

/// Per network (`vtepd_{rx,tx}_{packets,bytes}_total{vni,dev,side}`) and per peer
/// (`vtepd_peer_{rx,tx}_{packets,bytes}_total{vni,dev,remote}`; the rows of remotes that found
/// no row of their own, `peers_overflow`, with empty labels).
fn traffic_families(e: &mut DescriptorEncoder<'_>, r: &StatsReport) -> Result<(), fmt::Error> {
    use MetricType::Counter;
    type Pick = fn(&crate::core::NetTraffic) -> u64;
    let net_families: [(&str, &str, Option<&Unit>, Pick, Pick); 4] = [
        (
            "vtepd_rx_packets",
            "Packets per network: side=tunnel delivered into it by the tunnel, side=device \
             read from its device.",
            None,
            |t| t.rx_tunnel,
            |t| t.rx_device,
        ),
        (
            "vtepd_rx",
            "Bytes of those packets per network (tunnel: inner bytes).",
            Some(&Unit::Bytes),
            |t| t.rx_tunnel_bytes,
            |t| t.rx_device_bytes,
        ),
        (
            "vtepd_tx_packets",
            "Packets per network: side=tunnel sent into the tunnel (each flooded copy), \
             side=device written to its device.",
            None,
            |t| t.tx_tunnel,
            |t| t.tx_device,
        ),
        (
            "vtepd_tx",
            "Bytes of those packets per network (tunnel: inner bytes).",
            Some(&Unit::Bytes),
            |t| t.tx_tunnel_bytes,
            |t| t.tx_device_bytes,
        ),
    ];
    for (name, help, unit, tunnel, device) in net_families {
        let rows = r.networks.iter().flat_map(|n| {
            let label = |side: &str| {
                [
                    ("vni", n.vni.to_string()),
                    ("dev", escape(&n.dev)),
                    ("side", side.to_owned()),
                ]
            };
            [
                (label("tunnel"), counter(tunnel(&n.traffic))),
                (label("device"), counter(device(&n.traffic))),
            ]
        });
        family(e, (name, help, unit), Counter, rows)?;
    }
    type PeerPick = fn(&crate::core::PeerTraffic) -> u64;
    let peer_families: [(&str, &str, Option<&Unit>, PeerPick); 4] = [
        (
            "vtepd_peer_rx_packets",
            "Packets received from a remote and accepted into a network (empty labels: remotes \
             beyond the bounded per-peer rows).",
            None,
            |t| t.rx_tunnel,
        ),
        (
            "vtepd_peer_rx",
            "Inner bytes received from a remote (empty labels: remotes beyond the rows).",
            Some(&Unit::Bytes),
            |t| t.rx_tunnel_bytes,
        ),
        (
            "vtepd_peer_tx_packets",
            "Packets sent to a remote (a flooded copy counts for the remote it went to; empty \
             labels: remotes beyond the rows).",
            None,
            |t| t.tx_tunnel,
        ),
        (
            "vtepd_peer_tx",
            "Inner bytes sent to a remote (empty labels: remotes beyond the rows).",
            Some(&Unit::Bytes),
            |t| t.tx_tunnel_bytes,
        ),
    ];
    for (name, help, unit, pick) in peer_families {
        let rows = r
            .peers
            .iter()
            .map(|p| {
                let labels = [
                    ("vni", p.vni.to_string()),
                    ("dev", escape(&p.dev)),
                    ("remote", p.remote.to_string()),
                ];
                (labels, counter(pick(&p.traffic)))
            })
            .chain(std::iter::once((
                [
                    ("vni", String::new()),
                    ("dev", String::new()),
                    ("remote", String::new()),
                ],
                counter(pick(&r.peers_overflow)),
            )));
        family(e, (name, help, unit), Counter, rows)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
