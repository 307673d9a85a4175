//! `--store etcd=URL`: a fabric that configures itself through etcd.
//!
//! Each daemon registers itself in each of its networks under a lease ([`keys`]: the key layout
//! and its JSON values), watches every registration, works out what the others' registrations
//! mean for it ([`reconcile`]: flood lists, routes, neighbours; pure) and applies the
//! difference through the same control-plane calls `vtepd peers/routes/neigh/fdb` and a reload
//! use ([`Installer`]). What the store installed is kept apart from what the operator did: the
//! core keeps the store's flood lists beside the operator's, and the routes, neighbours and FDB
//! entries the store installed are recorded ([`Installed`]) so that the store removes only its
//! own and `config show` and a reload leave them out.
//!
//! The etcd client is async (gRPC); it runs on its own thread, `vtepd-store`, with a
//! current-thread tokio runtime ([`client`]). Nothing on the packet path waits for it: the
//! workers read the state it changed as they read any control-plane change. The client and its
//! dependencies (tonic, hyper, tokio) are the cargo feature `store`, on by default; the fuzz
//! targets build without it.

#[cfg(feature = "store")]
pub mod client;
pub mod keys;
pub mod reconcile;
pub mod status;

use super::handler::NetList;
use super::netlink::RouteService;
use super::reload::Reloader;
use super::stats::Clock;
use crate::config::{DaemonConfig, NetConfig, Tunnel};
use crate::core::Core;
use crate::core::route::Route;
use encap::Vni;
use ipnet::IpNet;
use keys::Member;
use reconcile::{Changes, Desired, Me};
use std::sync::{Arc, Mutex, PoisonError};
use tracing::{debug, info, warn};

/// Whether this build has the etcd client (the cargo feature `store`).
pub const BUILT_IN: bool = cfg!(feature = "store");

/// What the store installed, shared with the reloader (which leaves it out of the running
/// configuration).
pub type Installed = Arc<Mutex<Desired>>;

/// Applies the store's changes to the daemon's state through the control plane.
#[derive(Debug)]
pub struct Installer {
    core: Arc<Core>,
    routes: Option<Arc<RouteService>>,
    reloader: Arc<Reloader>,
    installed: Installed,
    clock: Clock,
}

impl Installer {
    /// An installer into `core` and `routes` (L3 modes), serialised with reloads and
    /// control-socket changes by `reloader`, recording what it did in `installed`.
    pub fn new(
        core: Arc<Core>,
        routes: Option<Arc<RouteService>>,
        reloader: Arc<Reloader>,
        installed: Installed,
        clock: Clock,
    ) -> Installer {
        Installer {
            core,
            routes,
            reloader,
            installed,
            clock,
        }
    }

    /// The MACs seen on our devices of announcing networks, not aged out, with the addresses
    /// seen behind them.
    pub fn local_macs(&self) -> Vec<crate::core::local_macs::LocalMac> {
        self.core.local_macs(self.clock.now())
    }

    /// How many reloads changed the configuration so far (see [`Installer::registrations`]).
    pub fn config_generation(&self) -> u64 {
        self.reloader.generation()
    }

    /// The daemon as the store concerns it now (a reload may have added or removed networks):
    /// who it is, its registrations, and whether a network of it announces its MACs.
    pub fn registrations(&self) -> (Me, Vec<Member>, bool) {
        let cfg = self.reloader.loaded();
        let regs = registrations(&cfg, &self.reloader.nets().load());
        (me(&cfg), regs, cfg.networks.iter().any(|n| n.announce))
    }

    /// Makes what the store installed equal to `want`, change by change; a change that fails
    /// is logged and left out of the record, so the next call tries it again. Returns how many
    /// failed.
    pub fn apply(&self, want: &Desired) -> usize {
        let _guard = self.reloader.change_guard();
        let mut have = self
            .installed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let c = reconcile::diff(&have, want);
        if c.is_empty() {
            return 0;
        }
        self.apply_changes(&c, &mut have)
    }

    /// Applies `c`, recording in `have` each change that took effect.
    fn apply_changes(&self, c: &Changes, have: &mut Desired) -> usize {
        let now = self.clock.now();
        let mut failed = 0;
        let mut fail = |what: String| {
            warn!("store: {what}");
            failed += 1;
        };
        for (vni, list) in &c.peers {
            match self.core.store_peers_set(*vni, list) {
                Ok(_) => {
                    debug!(%vni, peers = list.len(), "store: flood list now {}", show(list));
                    have.peers.insert(*vni, list.clone());
                }
                // A network a reload removed: nothing to keep for it.
                Err(crate::core::CoreError::UnknownVni(_)) => {
                    have.peers.remove(vni);
                }
                Err(e) => fail(format!("VNI {vni}: flood list not set: {e}")),
            }
        }
        for (vni, list) in &c.remote_csum {
            match self.core.store_remote_csum_set(*vni, list) {
                Ok(_) => {
                    debug!(%vni, "store: remote checksum offload taken by {}", show(list));
                    have.remote_csum.insert(*vni, list.clone());
                }
                Err(crate::core::CoreError::UnknownVni(_)) => {
                    have.remote_csum.remove(vni);
                }
                Err(e) => fail(format!(
                    "VNI {vni}: remote checksum offload peers not set: {e}"
                )),
            }
        }
        // A deletion in a network a reload removed is done: the network took it along.
        let gone = |e: &crate::core::CoreError| matches!(e, crate::core::CoreError::UnknownVni(_));
        for (vni, mac) in &c.fdb_del {
            match self.core.fdb_del(*vni, *mac) {
                Err(e) if gone(&e) => {
                    have.fdb.remove(&(*vni, *mac));
                }
                Ok(_) => {
                    have.fdb.remove(&(*vni, *mac));
                }
                Err(e) => fail(format!("VNI {vni}: FDB entry {mac} not removed: {e}")),
            }
        }
        for ((vni, mac), remote) in &c.fdb_set {
            match self.core.fdb_add(now, *vni, *mac, *remote) {
                Ok(()) => {
                    have.fdb.insert((*vni, *mac), *remote);
                }
                Err(e) => fail(format!("VNI {vni}: FDB entry {mac} not added: {e}")),
            }
        }
        for (vni, ip) in &c.neigh_del {
            match self.core.neigh_del(*vni, *ip) {
                Err(e) if gone(&e) => {
                    have.neigh.remove(&(*vni, *ip));
                }
                Ok(_) => {
                    have.neigh.remove(&(*vni, *ip));
                }
                Err(e) => fail(format!("VNI {vni}: neighbour {ip} not removed: {e}")),
            }
        }
        for ((vni, ip), mac) in &c.neigh_set {
            match self.core.neigh_add(now, *vni, *ip, *mac) {
                Ok(()) => {
                    have.neigh.insert((*vni, *ip), *mac);
                }
                Err(e) => fail(format!("VNI {vni}: neighbour {ip} not added: {e}")),
            }
        }
        if let Some(svc) = &self.routes {
            for prefix in &c.route_del {
                match svc.del(*prefix) {
                    Ok(_) => {
                        info!("store: route {prefix} removed");
                        have.routes.remove(prefix);
                    }
                    Err(e) => fail(format!("route {prefix} not removed: {e}")),
                }
            }
            for (prefix, via) in &c.route_set {
                let r = Route {
                    prefix: *prefix,
                    via: *via,
                };
                match svc.add(r) {
                    Ok(_) => {
                        info!("store: route {r}");
                        have.routes.insert(*prefix, *via);
                    }
                    Err(e) => fail(format!("route {r} not added: {e}")),
                }
            }
        }
        failed
    }
}

/// The VNI a network registers under: its own, or 0 in IPIP mode (no VNI).
fn store_vni(cfg: &DaemonConfig, n: &NetConfig) -> Vni {
    if cfg.tunnel.is_vxlan() {
        n.vni
    } else {
        Vni::ZERO
    }
}

/// The daemon `cfg` as the store's members concern it.
pub fn me(cfg: &DaemonConfig) -> Me {
    let mut own_prefixes = Vec::new();
    for n in &cfg.networks {
        own_prefixes.extend(n.routes.iter().map(|r| r.prefix));
        own_prefixes.extend(n.advertise.iter().copied());
    }
    Me {
        underlay: cfg.local,
        port: cfg.port,
        tunnel: cfg.tunnel,
        vnis: cfg.networks.iter().map(|n| store_vni(cfg, n)).collect(),
        own_prefixes,
        ipv6: cfg.networks.iter().any(|n| n.address6.is_some()),
    }
}

/// This daemon's registrations, one per network of `cfg` (`nets`: their MACs).
pub fn registrations(cfg: &DaemonConfig, nets: &NetList) -> Vec<Member> {
    cfg.networks
        .iter()
        .map(|n| {
            let l3vx = cfg.tunnel == Tunnel::L3Vxlan;
            let mut m = Member {
                version: keys::VERSION,
                underlay: cfg.local,
                vni: store_vni(cfg, n).get(),
                port: if cfg.tunnel.is_vxlan() { cfg.port } else { 0 },
                mac: nets
                    .nets()
                    .iter()
                    .find(|i| i.vni == n.vni && l3vx)
                    .and_then(|i| i.mac),
                address: n.address.map(|a| a.addr).filter(|_| l3vx),
                address6: n.address6.map(|a| a.addr).filter(|_| l3vx),
                prefixes: Vec::new(),
                prefixes6: Vec::new(),
                remcsum_rx: cfg.tunnel.is_vxlan() && n.outer.remote_csum_rx(),
            };
            for p in &n.advertise {
                match *p {
                    IpNet::V4(p) => m.prefixes.push(p),
                    IpNet::V6(p) => m.prefixes6.push(p),
                }
            }
            m
        })
        .collect()
}

/// A flood list for a log line: at most a few addresses, then how many more.
fn show(list: &[std::net::IpAddr]) -> String {
    const NAMED: usize = 8;
    let mut s = list
        .iter()
        .take(NAMED)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if list.len() > NAMED {
        s += &format!(" and {} more", list.len() - NAMED);
    }
    if s.is_empty() { "empty".into() } else { s }
}
