//! The daemon's side of the control socket: answers each [`Request`] against the shared state
//! (the core, the route service, the published counters), so every change takes effect on the
//! data path at once. Runs on the control server's client threads; never blocks a worker.
//!
//! Sized for 10k networks and a million FDB entries: `stats` takes each network's counts from
//! the core (kept as entries come and go; at most one pass over the FDB), and a listing is one
//! pass over the FDB, its rows written to the client as they are made.

use super::capture_control::CaptureControl;
use super::netlink::{RouteChangeError, RouteService};
use super::reload::{ReloadError, Reloader};
use super::stats::{Clock, StatsBoard};
use super::store::status::{StoreCounters, StoreStatus};
use super::trace_control::TraceControl;
use crate::control::protocol::{
    ConfigShowReport, FdbRow, Kind, NeighRow, NetStats, PathMtuReport, PathMtuRow, PeerStats,
    PeersRow, ReloadReport, Request, Response, RouteRow, STATS_VERSION, StatsReport, StoreReport,
    TunnelMode, WorkerStats,
};
use crate::control::server::{Handle, Reply};
use crate::core::pmtu::PathMtus;
use crate::core::route::parse_prefix;
use crate::core::{Core, CoreError, EntryKind};
use encap::{MacAddr, Vni};
use std::net::IpAddr;
use std::sync::Arc;
use tracing::{info, warn};

/// A network as the control plane shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetInfo {
    /// VNI.
    pub vni: Vni,
    /// Device name.
    pub dev: String,
    /// vtepd's own MAC on this network (`None`: the network has no link layer, IPIP).
    pub mac: Option<MacAddr>,
}

/// The networks as the control plane shows them, in [`crate::core::NetId`] order; replaced as
/// a whole when a reload adds or removes one ([`SharedNets`]).
#[derive(Debug, Default)]
pub struct NetList {
    nets: Vec<NetInfo>,
    /// (VNI, index in `nets`), sorted by VNI.
    by_vni: Vec<(Vni, usize)>,
}

/// The network list the handler reads and a reload replaces.
pub type SharedNets = Arc<arc_swap::ArcSwap<NetList>>;

impl NetList {
    /// The list of `nets`.
    pub fn new(nets: Vec<NetInfo>) -> NetList {
        let mut by_vni: Vec<(Vni, usize)> =
            nets.iter().enumerate().map(|(i, n)| (n.vni, i)).collect();
        by_vni.sort_unstable();
        NetList { nets, by_vni }
    }

    /// The networks.
    pub fn nets(&self) -> &[NetInfo] {
        &self.nets
    }

    fn net_info(&self, vni: Vni) -> Option<&NetInfo> {
        let at = self.by_vni.binary_search_by_key(&vni, |(v, _)| *v).ok()?;
        self.nets.get(self.by_vni[at].1)
    }

    fn dev_of(&self, vni: Vni) -> &str {
        self.net_info(vni).map_or("", |n| n.dev.as_str())
    }

    /// Whether a network has `vni`.
    pub fn has(&self, vni: Vni) -> bool {
        self.net_info(vni).is_some()
    }

    /// The device of the network with `vni`.
    pub fn dev(&self, vni: Vni) -> Option<&str> {
        self.net_info(vni).map(|n| n.dev.as_str())
    }

    /// The daemon's VNIs for an error message: the first [`VNIS_NAMED`], then how many more
    /// (a daemon with 10k networks must not answer a typo with 60 KB).
    fn vni_list(&self) -> String {
        let mut list = self
            .nets
            .iter()
            .take(VNIS_NAMED)
            .map(|n| n.vni.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        if self.nets.len() > VNIS_NAMED {
            list += &format!(" and {} more", self.nets.len() - VNIS_NAMED);
        }
        list
    }
}

/// Answers requests against the shared state.
#[derive(Debug)]
pub struct Handler {
    core: Arc<Core>,
    nets: SharedNets,
    board: Arc<StatsBoard>,
    clock: Clock,
    routes: Option<Arc<RouteService>>,
    /// The path MTUs (none in tests without a dataplane).
    pmtu: Option<Arc<PathMtus>>,
    /// The running configuration and its reload (none in tests without a daemon).
    reloader: Option<Arc<Reloader>>,
    /// The tunnel mode (what `stats` reports and which counters apply).
    mode: TunnelMode,
    /// Trace sessions and simulations.
    trace: TraceControl,
    capture: CaptureControl,
    /// The store client's state and counters (`--store`).
    store: Option<Arc<StoreStatus>>,
}

/// An entry's kind as the protocol prints it.
fn kind(k: EntryKind) -> Kind {
    match k {
        EntryKind::Learned => Kind::Learned,
        EntryKind::Static => Kind::Static,
    }
}

fn route_err(e: RouteChangeError) -> Response {
    let usage = matches!(e, RouteChangeError::Refused(_));
    Response::err(usage, e.to_string())
}

fn core_err(e: CoreError) -> Response {
    let usage = !matches!(e, CoreError::TooManyNetworks);
    Response::err(usage, e.to_string())
}

/// How many VNIs an error message names before it counts the rest.
const VNIS_NAMED: usize = 8;

impl Handler {
    /// A handler on the shared state: the core, its networks (in [`crate::core::NetId`]
    /// order), the workers' published counters, the daemon clock, and the L3 route table and
    /// its kernel routes (`None` in L2 mode).
    pub fn new(
        core: Arc<Core>,
        nets: Vec<NetInfo>,
        board: Arc<StatsBoard>,
        clock: Clock,
        routes: Option<Arc<RouteService>>,
    ) -> Handler {
        Handler {
            core,
            nets: Arc::new(arc_swap::ArcSwap::from_pointee(NetList::new(nets))),
            board,
            clock,
            routes,
            pmtu: None,
            reloader: None,
            mode: TunnelMode::L2Vxlan,
            trace: TraceControl {
                sessions: Arc::default(),
                injector: None,
            },
            capture: CaptureControl::default(),
            store: None,
        }
    }

    /// Captures through `capture` (the workers' sessions).
    pub fn with_capture(mut self, capture: CaptureControl) -> Handler {
        self.capture = capture;
        self
    }

    /// Reports the store client's `status` in `stats` (`--store`).
    pub fn with_store(mut self, status: Option<Arc<StoreStatus>>) -> Handler {
        self.store = status;
        self
    }

    /// Traces through `trace` (the workers' sessions, the engine to simulate with).
    pub fn with_trace(mut self, trace: TraceControl) -> Handler {
        self.trace = trace;
        self
    }

    /// Reports `mode` as the daemon's tunnel mode.
    pub fn with_mode(mut self, mode: TunnelMode) -> Handler {
        self.mode = mode;
        self
    }

    /// Answers `reload` and `config show` with `reloader`, and shows the networks it keeps.
    pub fn with_reloader(mut self, reloader: Arc<Reloader>) -> Handler {
        self.nets = reloader.nets();
        self.reloader = Some(reloader);
        self
    }

    /// The networks now.
    fn nets(&self) -> Arc<NetList> {
        self.nets.load_full()
    }

    /// What the store installed (empty without a store).
    fn store_installed(&self) -> super::store::reconcile::Desired {
        self.reloader
            .as_deref()
            .map(Reloader::store_installed)
            .unwrap_or_default()
    }

    fn reloader(&self) -> Result<&Reloader, Response> {
        self.reloader.as_deref().ok_or_else(|| {
            Response::err(false, "this daemon has no configuration to show or reload")
        })
    }

    /// Reports the path MTUs `pmtu` in `peers show` and `stats`.
    pub fn with_path_mtus(mut self, pmtu: Arc<PathMtus>) -> Handler {
        self.pmtu = Some(pmtu);
        self
    }

    /// The path MTU toward `remote` as `peers show` and `stats` report it.
    fn path_mtu_row(&self, now: crate::core::Timestamp, remote: IpAddr) -> Option<PathMtuRow> {
        let p = self.pmtu.as_ref()?;
        let learned = p.learned_toward(now, remote);
        Some(PathMtuRow {
            remote,
            mtu: learned.map_or(p.configured(), |l| l.mtu),
            learned: learned.is_some(),
            expires_secs: learned.map(|l| l.expires_in.as_secs()),
        })
    }

    fn path_mtu_report(&self, now: crate::core::Timestamp) -> PathMtuReport {
        let Some(p) = &self.pmtu else {
            return PathMtuReport::default();
        };
        PathMtuReport {
            configured: p.configured(),
            learned: p
                .learned(now)
                .into_iter()
                .map(|l| PathMtuRow {
                    remote: l.remote,
                    mtu: l.mtu,
                    learned: true,
                    expires_secs: Some(l.expires_in.as_secs()),
                })
                .collect(),
        }
    }

    /// A VNI the daemon has.
    fn known(&self, v: u32) -> Result<Vni, Response> {
        let nets = self.nets();
        match Vni::new(v) {
            Ok(vni) if nets.net_info(vni).is_some() => Ok(vni),
            _ => Err(Response::err(
                true,
                format!(
                    "no network with VNI {v} (this daemon has VNI {})",
                    nets.vni_list()
                ),
            )),
        }
    }

    /// The network a change applies to: the given one, or the only one.
    fn target(&self, vni: Option<u32>) -> Result<Vni, Response> {
        let list = self.nets();
        if list.nets.is_empty() {
            return Err(Response::err(
                true,
                "this daemon runs in L3 mode: it has no FDB or flood lists (see `routes`)",
            ));
        }
        match (vni, list.nets.as_slice()) {
            (Some(v), _) => self.known(v),
            (None, [only]) => Ok(only.vni),
            (None, nets) => Err(Response::err(
                true,
                format!(
                    "the daemon has {} networks (VNI {}): give --vni",
                    nets.len(),
                    list.vni_list()
                ),
            )),
        }
    }

    fn filter(&self, vni: Option<u32>) -> Result<Option<Vni>, Response> {
        vni.map(|v| self.known(v)).transpose()
    }

    fn mac(s: &str) -> Result<MacAddr, Response> {
        crate::config::parse_unicast_mac(s).map_err(|e| Response::err(true, e))
    }

    fn try_handle(&self, req: Request) -> Result<Reply<'_>, Response> {
        let now = self.clock.now();
        // A change waits for a reload in progress, and a reload for it.
        let _change = match req {
            Request::FdbAdd { .. }
            | Request::FdbDel { .. }
            | Request::FdbFlush { .. }
            | Request::PeersAdd { .. }
            | Request::PeersDel { .. }
            | Request::RoutesAdd { .. }
            | Request::RoutesDel { .. }
            | Request::NeighAdd { .. }
            | Request::NeighDel { .. } => self.reloader.as_deref().map(Reloader::change_guard),
            _ => None,
        };
        let ipip_dev = self.routes.as_ref().map(|r| r.dev());
        Ok(match req {
            Request::TraceStart { filter, count } => {
                self.trace.start(now, filter, count, &self.nets())?.into()
            }
            Request::TracePoll { session } => {
                self.trace.poll(now, session, &self.nets(), ipip_dev)?
            }
            Request::TraceStop { session } => self.trace.stop(session)?.into(),
            Request::CaptureStart(req) => self.capture.start(now, req, &self.nets())?.into(),
            Request::CapturePoll { session } => self.capture.poll(now, session)?,
            Request::CaptureStop { session } => self.capture.stop(session)?.into(),
            Request::TraceInject(inject) => {
                let nets = self.nets();
                let target = match nets.nets.is_empty() {
                    true => None,
                    false => Some(self.target(inject.vni)?),
                };
                let (core, trace) = (&self.core, &self.trace);
                trace
                    .inject(now, &inject, core, target, &nets, ipip_dev)?
                    .into()
            }
            // One pass over the FDB for the snapshot; the rows are made as they are written.
            Request::FdbShow { vni } => {
                let entries = self.core.fdb_entries(now, self.filter(vni)?);
                let nets = self.nets();
                let store = self.store_installed();
                Reply::rows(entries.into_iter().map(move |e| FdbRow {
                    vni: e.vni.get(),
                    dev: nets.dev_of(e.vni).to_owned(),
                    mac: e.mac.to_string(),
                    remote: e.remote,
                    kind: kind(e.kind),
                    store: e.kind == EntryKind::Static
                        && store.fdb.get(&(e.vni, e.mac)) == Some(&e.remote),
                    age_secs: e.age.as_secs(),
                    // Rounded up: a frozen entry never shows 0 s left.
                    frozen_secs: e.frozen.map(|d| d.as_millis().div_ceil(1000) as u64),
                }))
            }
            Request::FdbAdd { vni, mac, remote } => {
                let (vni, mac) = (self.target(vni)?, Self::mac(&mac)?);
                self.core.fdb_add(now, vni, mac, remote).map_err(core_err)?;
                info!(%vni, %mac, %remote, "static FDB entry added");
                Response::ok(serde_json::Value::Null).into()
            }
            Request::FdbDel { vni, mac } => {
                let (vni, mac) = (self.target(vni)?, Self::mac(&mac)?);
                if !self.core.fdb_del(vni, mac).map_err(core_err)? {
                    return Err(Response::err(
                        false,
                        format!("no FDB entry for {mac} in VNI {vni}"),
                    ));
                }
                info!(%vni, %mac, "FDB entry deleted");
                Response::ok(serde_json::Value::Null).into()
            }
            Request::FdbFlush { vni, learned_only } => {
                let removed = self
                    .core
                    .fdb_flush(self.filter(vni)?, learned_only)
                    .map_err(core_err)?;
                info!(removed, learned_only, "FDB flushed");
                Response::ok(serde_json::json!({ "removed": removed })).into()
            }
            Request::PeersShow => {
                // Per VNI: the operator's peers, the store's they did not also list, and those
                // taking remote checksum offload.
                let by_vni = |lists: Vec<(Vni, Vec<IpAddr>)>| -> std::collections::HashMap<u32, Vec<IpAddr>> {
                    lists.into_iter().map(|(v, p)| (v.get(), p)).collect()
                };
                let operator = by_vni(self.core.peers());
                let mut store = by_vni(self.core.store_peers());
                for (vni, list) in &mut store {
                    let op = operator.get(vni);
                    list.retain(|ip| op.is_none_or(|o| !o.contains(ip)));
                }
                let remcsum_rx = by_vni(self.core.remote_csum_peers());
                let row = move |vni: u32, dev: String, peers: Vec<IpAddr>| PeersRow {
                    vni,
                    dev,
                    path_mtu: peers
                        .iter()
                        .filter_map(|p| self.path_mtu_row(now, *p))
                        .collect(),
                    store: store.get(&vni).cloned().unwrap_or_default(),
                    remcsum_rx: remcsum_rx.get(&vni).cloned().unwrap_or_default(),
                    peers,
                };
                let nets = self.nets();
                if let (true, Some(svc)) = (nets.nets.is_empty(), &self.routes) {
                    // IPIP: no flood lists; its remotes are the route next hops (no VNI: 0).
                    let mut hops: Vec<IpAddr> = svc.list().iter().map(|r| r.via).collect();
                    hops.sort_unstable();
                    hops.dedup();
                    return Ok(Reply::rows([row(0, svc.dev().to_owned(), hops)]));
                }
                Reply::rows(
                    self.core
                        .flood_peers()
                        .into_iter()
                        .map(move |(vni, peers)| {
                            row(vni.get(), nets.dev_of(vni).to_owned(), peers)
                        }),
                )
            }
            Request::PeersAdd { vni, ip } => {
                let vni = self.target(vni)?;
                let added = self.core.peer_add(vni, ip).map_err(core_err)?;
                if added {
                    info!(%vni, peer = %ip, "peer added");
                }
                Response::ok(serde_json::json!({ "changed": added })).into()
            }
            Request::PeersDel { vni, ip } => {
                let vni = self.target(vni)?;
                if !self.core.peer_del(vni, ip).map_err(core_err)? {
                    return Err(Response::err(
                        false,
                        format!("{ip} is not a peer of VNI {vni}"),
                    ));
                }
                info!(%vni, peer = %ip, "peer removed");
                Response::ok(serde_json::json!({ "changed": true })).into()
            }
            Request::Stats => Reply::data(self.stats(now)),
            Request::RoutesShow => {
                let Some(svc) = &self.routes else {
                    return Ok(Reply::rows(Vec::<RouteRow>::new()));
                };
                Reply::rows(svc.list().into_iter().map(|r| RouteRow {
                    prefix: r.prefix.to_string(),
                    via: r.via,
                    dev: svc.dev().to_owned(),
                }))
            }
            Request::RoutesAdd { prefix, via } => {
                let svc = self.route_service()?;
                let prefix = parse_prefix(&prefix).map_err(|e| Response::err(true, e))?;
                let old = svc
                    .add(crate::core::route::Route { prefix, via })
                    .map_err(route_err)?;
                info!(%prefix, %via, replaced = ?old, "route added");
                Response::ok(serde_json::json!({ "changed": old != Some(via) })).into()
            }
            Request::RoutesDel { prefix } => {
                let svc = self.route_service()?;
                let prefix = parse_prefix(&prefix).map_err(|e| Response::err(true, e))?;
                if svc.del(prefix).map_err(route_err)?.is_none() {
                    return Err(Response::err(false, format!("no route for {prefix}")));
                }
                info!(%prefix, "route removed");
                Response::ok(serde_json::json!({ "changed": true })).into()
            }
            Request::NeighShow { vni } => {
                let entries = self.core.neigh_entries(now, self.filter(vni)?);
                let nets = self.nets();
                let store = self.store_installed();
                Reply::rows(entries.into_iter().map(move |(vni, e)| NeighRow {
                    vni: vni.get(),
                    dev: nets.dev_of(vni).to_owned(),
                    ip: e.ip,
                    mac: e.mac.to_string(),
                    kind: kind(e.kind),
                    store: e.kind == EntryKind::Static
                        && store.neigh.get(&(vni, e.ip)) == Some(&e.mac),
                    age_secs: e.age.as_secs(),
                }))
            }
            Request::NeighAdd { vni, ip, mac } => {
                let (vni, mac) = (self.target(vni)?, Self::mac(&mac)?);
                let ipv6 = || self.routes.as_ref().is_some_and(|r| r.table().takes_ipv6());
                if ip.is_ipv6() && self.mode != TunnelMode::L2Vxlan && !ipv6() {
                    return Err(Response::err(
                        true,
                        format!(
                            "{ip}: the device has no IPv6 address (--address6): IPv6 \
                             neighbours are for L3 VXLAN with one, or L2 ND suppression"
                        ),
                    ));
                }
                self.core.neigh_add(now, vni, ip, mac).map_err(core_err)?;
                info!(%vni, %ip, %mac, "static neighbour added");
                Response::ok(serde_json::Value::Null).into()
            }
            Request::NeighDel { vni, ip } => {
                let vni = self.target(vni)?;
                if !self.core.neigh_del(vni, ip).map_err(core_err)? {
                    return Err(Response::err(
                        false,
                        format!("no neighbour {ip} in VNI {vni}"),
                    ));
                }
                info!(%vni, %ip, "neighbour deleted");
                Response::ok(serde_json::Value::Null).into()
            }
            Request::Reload => match self.reloader()?.reload() {
                Ok(changes) => Reply::data(ReloadReport { changes }),
                Err(e) => {
                    warn!("{e}");
                    let usage = matches!(e, ReloadError::Refused(_));
                    return Err(Response::err(usage, e.to_string()));
                }
            },
            Request::ConfigShow => {
                let config = self
                    .reloader()?
                    .show()
                    .map_err(|e| Response::err(false, e))?;
                Reply::data(ConfigShowReport { config })
            }
        })
    }

    fn route_service(&self) -> Result<&Arc<RouteService>, Response> {
        self.routes.as_ref().ok_or_else(|| {
            Response::err(
                true,
                "this daemon runs in L2 mode: it has no route table (routes need --mode l3)",
            )
        })
    }

    /// The counters and table sizes (`stats --json`, and every metrics scrape) now.
    pub fn stats_now(&self) -> StatsReport {
        self.stats(self.clock.now())
    }

    fn stats(&self, now: crate::core::Timestamp) -> StatsReport {
        // One snapshot of every worker, so the totals are exactly the sum of the rows.
        let per_worker = self.board.per_worker();
        let mut c = crate::core::Counters::default();
        for w in &per_worker {
            c.add(w);
        }
        // Per network, in NetId order: kept as entries come and go (at most one pass over the
        // FDB, to leave out learned entries past their ageing time and not yet reaped).
        let fdb = self.core.fdb_counts_by_kind(now);
        let neigh = self.core.neigh_counts(now);
        // IPIP has no network list: its one device is network 0 (VNI 0) here.
        let list = self.nets();
        let ipip_dev = match (&self.routes, list.nets.is_empty()) {
            (Some(svc), true) => Some(NetInfo {
                vni: encap::Vni::ZERO,
                dev: svc.dev().to_owned(),
                mac: None,
            }),
            _ => None,
        };
        // Each network with its NetId (the index of its cells); IPIP's device is network 0.
        let nets: Vec<(&NetInfo, Option<usize>)> = list
            .nets
            .iter()
            .map(|n| (n, self.core.net_by_vni(n.vni).map(|id| usize::from(id.0))))
            .chain(ipip_dev.as_ref().map(|n| (n, Some(0))))
            .collect();
        let ids = nets.iter().filter_map(|(_, id)| *id);
        let cells = self.board.networks(ids.max().map_or(0, |m| m + 1));
        let networks: Vec<NetStats> = nets
            .iter()
            .map(|&(n, id)| {
                let (mut traffic, mut drops) = id
                    .and_then(|i| cells.get(i).copied())
                    .unwrap_or((Default::default(), [0; crate::core::DropReason::COUNT]));
                let fdb = id.and_then(|i| fdb.get(i)).copied().unwrap_or_default();
                if self.mode != TunnelMode::L2Vxlan {
                    // One network, one device: its device figures and drops are the daemon's
                    // (but for the drops of datagrams no network took).
                    (traffic.rx_device, traffic.rx_device_bytes) = (c.rx_device, c.rx_device_bytes);
                    (traffic.tx_device, traffic.tx_device_bytes) = (c.tx_device, c.tx_device_bytes);
                    drops = c.drops;
                    for r in crate::core::DropReason::BEFORE_NETWORK {
                        drops[*r as usize] = 0;
                    }
                }
                NetStats {
                    vni: n.vni.get(),
                    dev: n.dev.clone(),
                    peers: id.map_or(0, |i| self.core.flood_len(crate::core::NetId(i as u16))),
                    fdb_entries: fdb.statics + fdb.learned,
                    fdb_static_entries: fdb.statics,
                    fdb_learned_entries: fdb.learned,
                    mac: n.mac.map(|m| m.to_string()),
                    neigh_entries: id.and_then(|i| neigh.get(i)).copied().unwrap_or(0),
                    traffic,
                    drops: crate::core::DropReason::ALL
                        .iter()
                        .map(|r| (r.name().to_owned(), drops[*r as usize]))
                        .collect(),
                    drops_total: drops.iter().sum(),
                }
            })
            .collect();
        let (rows, peers_overflow) = self.board.peers();
        let by_id: std::collections::HashMap<usize, &NetInfo> =
            nets.iter().filter_map(|&(n, id)| Some((id?, n))).collect();
        let peer_rows = rows
            .into_iter()
            .filter_map(|(net, remote, traffic)| {
                let n = by_id.get(&usize::from(net.0))?;
                Some(PeerStats {
                    vni: n.vni.get(),
                    dev: n.dev.clone(),
                    remote,
                    traffic,
                    path_mtu: self.path_mtu_row(now, remote).map(|m| m.mtu),
                })
            })
            .collect();
        // What `fdb show` lists: entries past their ageing time but not yet reaped are not counted.
        let fdb_entries = networks.iter().map(|n| n.fdb_entries).sum();
        StatsReport {
            version: STATS_VERSION,
            mode: self.mode,
            fdb_entries,
            drops: c
                .drops_by_name()
                .map(|(name, n)| (name.to_owned(), n))
                .collect(),
            drops_total: c.total_drops(),
            counters: c,
            uptime_secs: self.clock.uptime().as_secs(),
            networks,
            workers: per_worker
                .into_iter()
                .enumerate()
                .map(|(worker, w)| WorkerStats {
                    worker,
                    drops_total: w.total_drops(),
                    counters: w,
                })
                .collect(),
            path_mtu: self.path_mtu_report(now),
            peers: peer_rows,
            peers_overflow,
            store: self.store.as_deref().map(|s| StoreReport {
                state: s.state().name().to_owned(),
                members: s.members(),
                counters: StoreCounters::NAMES
                    .iter()
                    .map(|n| (*n).to_owned())
                    .zip(s.counters.values())
                    .collect(),
            }),
        }
    }
}

impl Handle for Handler {
    fn handle(&self, req: Request) -> Reply<'_> {
        self.try_handle(req).unwrap_or_else(Reply::from)
    }
}

/// The control server and the metrics server share one handler.
impl Handle for Arc<Handler> {
    fn handle(&self, req: Request) -> Reply<'_> {
        Handler::handle(self, req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    fn handler_with(ageing: Duration) -> Handler {
        handler_of(&[42], ageing)
    }

    /// A handler with one network per VNI given.
    fn handler_of(vnis: &[u32], ageing: Duration) -> Handler {
        let vnis: Vec<Vni> = vnis.iter().map(|&v| Vni::new(v).unwrap()).collect();
        let core = Core::new(crate::core::CoreConfig {
            local: "192.0.2.1".parse().unwrap(),
            allow_any_peer: false,
            networks: vnis
                .iter()
                .map(|&vni| crate::core::NetworkConfig {
                    vni,
                    peers: vec![PEER],
                    own_mac: MacAddr([2, 0, 0, 0, 0, 1]),
                    ageing,
                    max_learned: 16,
                    ..Default::default()
                })
                .collect(),
        })
        .unwrap();
        Handler::new(
            Arc::new(core),
            vnis.iter()
                .map(|&vni| NetInfo {
                    vni,
                    dev: format!("vt{vni}"),
                    mac: None,
                })
                .collect(),
            Arc::new(StatsBoard::new(1)),
            Clock::new(),
            None,
        )
    }

    /// The answer line a client would read.
    fn answer(h: &Handler, req: Request) -> Response {
        let mut line = Vec::new();
        h.handle(req).write_to(&mut line).unwrap();
        serde_json::from_slice(&line).unwrap()
    }

    const PEER: std::net::IpAddr = std::net::IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    /// `neigh add` takes IPv6 addresses in L2 (ND suppression), `neigh show` lists them; L3
    /// mode refuses them on a device without an IPv6 address.
    #[test]
    fn ipv6_neighbours_are_for_l2() {
        let ip: std::net::IpAddr = "fd00::7".parse().unwrap();
        let add = || Request::NeighAdd {
            vni: None,
            ip,
            mac: "02:00:00:00:00:07".into(),
        };
        let h = handler_with(Duration::from_secs(300)).with_mode(TunnelMode::L2Vxlan);
        assert!(answer(&h, add()).ok);
        let shown = answer(&h, Request::NeighShow { vni: None }).data;
        assert_eq!(shown[0]["ip"], "fd00::7", "{shown}");
        assert_eq!(shown[0]["kind"], "static", "{shown}");
        let h = handler_with(Duration::from_secs(300)).with_mode(TunnelMode::L3Vxlan);
        let refused = answer(&h, add());
        assert!(!refused.ok && refused.usage, "{refused:?}");
        assert!(refused.error.unwrap().contains("no IPv6 address"));
    }

    #[test]
    fn stats_fdb_entries_agree_with_fdb_show() {
        let h = handler_with(Duration::from_millis(1));
        // A VXLAN datagram (I flag, VNI 42) from the peer: its inner source MAC gets learned at
        // time 0, and has aged out by the time the control plane looks.
        let mut d = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
        d.extend_from_slice(&[2, 0, 0, 0, 0, 9, 2, 0, 0, 0, 0, 7, 0x88, 0xb5]);
        let mut ctr = crate::core::Counters::default();
        h.core
            .on_remote(crate::core::Timestamp(0), PEER.into(), &mut d, &mut ctr);
        assert_eq!(ctr.learned, 1, "{ctr:?}");
        std::thread::sleep(Duration::from_millis(20));
        let shown = answer(&h, Request::FdbShow { vni: None });
        assert_eq!(
            shown.data,
            serde_json::json!([]),
            "fdb show lists an aged-out entry"
        );
        let stats = answer(&h, Request::Stats);
        assert_eq!(stats.data["fdb_entries"], 0, "{:?}", stats.data);
    }

    #[test]
    fn stats_reports_traffic_per_network_and_peer_with_every_field() {
        let h = handler_of(&[42, 43], Duration::from_secs(300)).with_mode(TunnelMode::L2Vxlan);
        h.board.ensure_networks(2);
        let t = h.board.traffic(0);
        let net43 = h.core.net_by_vni(Vni::new(43).unwrap()).unwrap();
        t.tunnel_rx(net43, PEER.into(), 2, 200);
        t.tunnel_tx(net43, PEER.into(), 1, 100);
        t.device_tx(net43, 2, 200);
        t.dropped(net43, crate::core::DropReason::StormBroadcast);
        let st = answer(&h, Request::Stats).data;
        assert_eq!(st["version"], 1);
        assert_eq!(st["mode"], "l2-vxlan");
        let nets = st["networks"].as_array().unwrap();
        assert_eq!(nets.len(), 2);
        for row in nets {
            for k in crate::core::NetTraffic::NAMES {
                assert!(row[k].is_u64(), "{k} missing in {row}");
            }
            let drops = row["drops"].as_object().unwrap();
            assert_eq!(drops.len(), crate::core::DropReason::COUNT, "{row}");
        }
        let row = nets.iter().find(|r| r["vni"] == 43).unwrap();
        assert_eq!(
            (&row["rx_tunnel"], &row["rx_tunnel_bytes"]),
            (&2.into(), &200.into())
        );
        assert_eq!(
            (&row["tx_device"], &row["tx_device_bytes"]),
            (&2.into(), &200.into())
        );
        assert_eq!(row["drops"]["storm_broadcast"], 1);
        assert_eq!(row["drops_total"], 1);
        let other = nets.iter().find(|r| r["vni"] == 42).unwrap();
        assert_eq!(other["rx_tunnel"], 0);
        assert_eq!(
            st["peers"],
            serde_json::json!([{
                "vni": 43, "dev": "vt43", "remote": "192.0.2.2",
                "rx_tunnel": 2, "rx_tunnel_bytes": 200, "tx_tunnel": 1, "tx_tunnel_bytes": 100,
            }])
        );
        assert_eq!(
            st["peers_overflow"],
            serde_json::json!({"rx_tunnel": 0, "rx_tunnel_bytes": 0, "tx_tunnel": 0, "tx_tunnel_bytes": 0})
        );
        // The text and JSON forms read the same report back.
        let back: StatsReport = serde_json::from_value(st).unwrap();
        assert_eq!(back.peers[0].traffic.tx_tunnel_bytes, 100);
        assert_eq!(back.mode, TunnelMode::L2Vxlan);
    }

    #[test]
    fn an_unknown_vni_is_answered_briefly_at_scale() {
        let vnis: Vec<u32> = (1..=10_000).collect();
        let h = handler_of(&vnis, Duration::from_secs(300));
        let unknown = answer(&h, Request::FdbShow { vni: Some(20_000) });
        let msg = unknown.error.expect("an unknown VNI is an error");
        assert!(msg.starts_with("no network with VNI 20000"), "{msg}");
        assert!(
            msg.ends_with("VNI 1, 2, 3, 4, 5, 6, 7, 8 and 9992 more)"),
            "{msg}"
        );
        let ambiguous = answer(
            &h,
            Request::FdbDel {
                vni: None,
                mac: "02:00:00:00:00:09".into(),
            },
        );
        let msg = ambiguous
            .error
            .expect("no VNI with many networks is an error");
        assert!(msg.len() < 200, "{} bytes: {msg}", msg.len());
        assert!(msg.contains("10000 networks"), "{msg}");

        let few = handler_of(&[5, 6], Duration::from_secs(300));
        let msg = answer(&few, Request::FdbShow { vni: Some(7) })
            .error
            .unwrap();
        assert!(msg.ends_with("(this daemon has VNI 5, 6)"), "{msg}");
    }
}
