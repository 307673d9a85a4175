//! The running configuration and the reload (`vtepd reload`, SIGHUP, `vtepd config show`).
//!
//! [`Reloader::running`] is the configuration the daemon runs now: the one it last loaded, with
//! the flood lists, static FDB entries, static neighbours and routes read back from the live
//! state (so it includes what the control socket changed since). [`Reloader::reload`] reads the
//! file again exactly as the start did ([`ConfigSource`]: the same file, the same command-line
//! overrides), works out the whole difference first ([`reload::plan`]: anything that needs a
//! restart refuses all of it), then applies it: networks added and routes first (a device may
//! not be created, the kernel may refuse a route; those already made are then undone), then
//! networks removed ([`NetworkSet`], L2), then the core's state, which a validated plan cannot
//! fail. Learned FDB entries and neighbours, path MTUs and counters of the networks that stay
//! are not touched.
//!
//! One reload at a time, and none while a control-socket change is being made (a read-write
//! lock: changes take it shared, [`Reloader::change_guard`], a reload exclusively), so a reload
//! compares against and replaces a configuration nobody changes meanwhile.

use super::handler::{NetInfo, NetList, SharedNets};
use super::netlink::RouteService;
use super::stats::Clock;
use crate::config::reload::{self, Step};
use crate::config::{ConfigSource, DaemonConfig, NetConfig, StaticFdb, StaticNeigh};
use crate::core::route::Route;
use crate::core::{Core, EntryKind};
use encap::Vni;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};
use tracing::{info, warn};

/// The route table a reload changes: the daemon's [`RouteService`] (table and kernel routes
/// together), or a stand-in in tests.
pub trait RouteTable: std::fmt::Debug + Send + Sync {
    /// Every route.
    fn list(&self) -> Vec<Route>;
    /// Adds or replaces a route.
    fn set(&self, r: Route) -> Result<(), String>;
    /// Removes the route for `prefix`.
    fn del(&self, prefix: ipnet::IpNet) -> Result<(), String>;
}

impl RouteTable for RouteService {
    fn list(&self) -> Vec<Route> {
        RouteService::list(self)
    }
    fn set(&self, r: Route) -> Result<(), String> {
        self.add(r).map(drop).map_err(|e| e.to_string())
    }
    fn del(&self, prefix: ipnet::IpNet) -> Result<(), String> {
        RouteService::del(self, prefix)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// The networks of a daemon whose set changes at run time (L2: a TAP device each).
pub trait NetworkSet: std::fmt::Debug + Send + Sync {
    /// Creates network `n` of configuration `cfg`: its device, its place in the core (a new
    /// [`crate::core::NetId`]) and its queue in every worker. What the control plane shows.
    fn add(&self, cfg: &DaemonConfig, n: &NetConfig) -> Result<NetInfo, String>;
    /// Removes network `vni`: from the core, then from every worker, then its device.
    fn remove(&self, vni: Vni) -> Result<(), String>;
    /// At exit, once the workers stopped: removes (or gives back) every device.
    fn release(&self);
    /// The board whose per-network cells a network added later needs (made before the
    /// workers count into them).
    fn count_into(&self, board: Arc<super::stats::StatsBoard>) {
        let _ = board;
    }
}

/// Why a reload did not (wholly) happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// Nothing was changed: no file, an invalid file, or a change that needs a restart.
    #[error("{0}")]
    Refused(String),
    /// Applying failed (the kernel refused a route): the message says what state it left.
    #[error("{0}")]
    Failed(String),
}

/// The daemon's configuration, its source, and the live state it reads and changes.
#[derive(Debug)]
pub struct Reloader {
    source: Option<ConfigSource>,
    /// The configuration last loaded (its settings are the running ones; its lists are read
    /// back from the live state by [`Reloader::running`]).
    base: Mutex<DaemonConfig>,
    core: Arc<Core>,
    routes: Option<Arc<dyn RouteTable>>,
    /// The networks as the control plane shows them.
    nets: SharedNets,
    /// Networks added and removed at run time (L2).
    networks: Option<Arc<dyn NetworkSet>>,
    clock: Clock,
    /// Held exclusively for a whole reload, shared for each control-socket change.
    changes: RwLock<()>,
    /// What the store installed (`--store`): not the operator's, so not part of the running
    /// configuration; a reload only forgets what a network it removes took along.
    store: Option<super::store::Installed>,
    /// How many reloads changed the configuration (the store client registers again after one).
    generation: AtomicU64,
}

impl Reloader {
    /// A reloader of `cfg` (read from `source`, or from flags when `None`) over the live state;
    /// `nets` is what the control plane shows of the networks.
    pub fn new(
        cfg: DaemonConfig,
        source: Option<ConfigSource>,
        core: Arc<Core>,
        routes: Option<Arc<dyn RouteTable>>,
        nets: Vec<NetInfo>,
        clock: Clock,
    ) -> Reloader {
        Reloader {
            source,
            base: Mutex::new(cfg),
            core,
            routes,
            nets: Arc::new(arc_swap::ArcSwap::from_pointee(NetList::new(nets))),
            networks: None,
            clock,
            changes: RwLock::new(()),
            store: None,
            generation: AtomicU64::new(0),
        }
    }

    /// Leaves what the store installed (`installed`) out of the running configuration.
    pub fn with_store(mut self, installed: Option<super::store::Installed>) -> Reloader {
        self.store = installed;
        self
    }

    /// Adds and removes networks through `set` (L2 mode).
    pub fn with_networks(mut self, set: Option<Arc<dyn NetworkSet>>) -> Reloader {
        self.networks = set;
        self
    }

    /// The network list the control plane shows, kept up to date by reloads.
    pub fn nets(&self) -> SharedNets {
        Arc::clone(&self.nets)
    }

    /// Held while a control-socket request changes flood lists, entries, neighbours or routes:
    /// a reload waits for it (and it for a reload).
    pub fn change_guard(&self) -> RwLockReadGuard<'_, ()> {
        self.changes.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The running configuration: the last one loaded, with the live flood lists, static
    /// entries, static neighbours and routes.
    pub fn running(&self) -> DaemonConfig {
        let mut cfg = self
            .base
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let now = self.clock.now();
        let store = self.store_installed();
        let peers = self.core.peers();
        let fdb = self.core.fdb_entries(now, None);
        let neigh = self.core.neigh_entries(now, None);
        for n in &mut cfg.networks {
            // IPIP's core has no network: its configuration has no lists but the routes.
            if self.core.net_by_vni(n.vni).is_none() {
                continue;
            }
            if let Some((_, p)) = peers.iter().find(|(v, _)| *v == n.vni) {
                n.peers = p.clone();
            }
            n.fdb = fdb
                .iter()
                .filter(|e| e.vni == n.vni && e.kind == EntryKind::Static)
                .filter(|e| store.fdb.get(&(e.vni, e.mac)) != Some(&e.remote))
                .map(|e| StaticFdb {
                    mac: e.mac,
                    remote: e.remote,
                })
                .collect();
            // An L2 network keeps neighbours only for ARP suppression: without it a file could
            // not hold them (`neigh add` there has no use), so they are left out.
            let keep_neigh = n.arp_suppress || cfg.tunnel != crate::config::Tunnel::L2Vxlan;
            n.neigh = neigh
                .iter()
                .filter(|(v, e)| keep_neigh && *v == n.vni && e.kind == EntryKind::Static)
                .filter(|(v, e)| store.neigh.get(&(*v, e.ip)) != Some(&e.mac))
                .map(|(_, e)| StaticNeigh {
                    ip: e.ip,
                    mac: e.mac,
                })
                .collect();
        }
        if let (Some(svc), Some(n)) = (&self.routes, cfg.networks.first_mut()) {
            n.routes = svc
                .list()
                .into_iter()
                .filter(|r| store.routes.get(&r.prefix) != Some(&r.via))
                .collect();
        }
        cfg
    }

    /// How many reloads changed the configuration so far.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The configuration last loaded (its lists as loaded, not read back: see
    /// [`Reloader::running`]).
    pub fn loaded(&self) -> DaemonConfig {
        self.base
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Forgets what the store installed in network `vni`, which took it along when it was
    /// removed: a network added again under that VNI gets it all installed again.
    fn forget_store_net(&self, vni: Vni) {
        if let Some(s) = &self.store {
            s.lock().unwrap_or_else(PoisonError::into_inner).forget(vni);
        }
    }

    /// A copy of what the store installed (`--store`; empty without one).
    pub fn store_installed(&self) -> super::store::reconcile::Desired {
        self.store
            .as_ref()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).clone())
            .unwrap_or_default()
    }

    /// The running configuration as a TOML file `vtepd run --config` accepts.
    pub fn show(&self) -> Result<String, String> {
        self.running().to_toml().map_err(|e| e.to_string())
    }

    /// Reads the file again and applies the difference: the changes, one line each (none: no
    /// change), or why nothing was changed. Each change is logged too.
    pub fn reload(&self) -> Result<Vec<String>, ReloadError> {
        let _alone = self.changes.write().unwrap_or_else(PoisonError::into_inner);
        let Some(source) = &self.source else {
            return Err(ReloadError::Refused(
                "this daemon was started from flags, not --config: there is no file to reload \
                 (restart it with --config FILE to use reload)"
                    .into(),
            ));
        };
        let refused =
            |why: String| ReloadError::Refused(format!("reload refused, nothing changed: {why}"));
        let new = source.load().map_err(|e| refused(e.to_string()))?;
        let steps = reload::plan(&self.running(), &new).map_err(|e| refused(e.to_string()))?;
        self.apply(&new, &steps).map_err(ReloadError::Failed)?;
        *self.base.lock().unwrap_or_else(PoisonError::into_inner) = new;
        if !steps.is_empty() {
            self.generation.fetch_add(1, Ordering::Release);
        }
        let lines: Vec<String> = steps.iter().flat_map(Step::lines).collect();
        if lines.is_empty() {
            info!(
                "configuration reloaded from {}: no change",
                source.path.display()
            );
        }
        for l in &lines {
            info!("configuration reloaded: {l}");
        }
        Ok(lines)
    }

    /// Applies the steps in order. Networks added (with their entries) and route changes come
    /// first and are undone if one of them fails (a device that cannot be created, a route the
    /// kernel refuses); networks removed and the core's steps cannot be undone, and cannot fail
    /// for a validated plan short of a broken system (if one does anyway, the error says which
    /// change failed: those before it are applied, those after it are not).
    fn apply(&self, cfg: &DaemonConfig, steps: &[Step]) -> Result<(), String> {
        let added_vnis: Vec<Vni> = steps
            .iter()
            .filter_map(|s| match s {
                Step::NetAdd(n) => Some(n.vni),
                _ => None,
            })
            .collect();
        let undoable = |s: &Step| match s {
            Step::NetAdd(_) | Step::RouteDel(_) | Step::RouteSet { .. } => true,
            Step::FdbSet { vni, .. } | Step::NeighSet { vni, .. } => added_vnis.contains(vni),
            _ => false,
        };
        let mut undo: Vec<Step> = Vec::new();
        let mut added: Vec<NetInfo> = Vec::new();
        let mut removed: Vec<Vni> = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let done = match step {
                Step::NetAdd(n) => self.net_set().and_then(|s| s.add(cfg, n)).map(|info| {
                    added.push(info);
                    undo.push(Step::NetDel {
                        vni: n.vni,
                        dev: n.dev.clone(),
                    });
                }),
                Step::NetDel { vni, .. } => self.net_set().and_then(|s| s.remove(*vni)).map(|()| {
                    self.forget_store_net(*vni);
                    removed.push(*vni);
                }),
                Step::RouteDel(r) => self.route_del(r.prefix).map(|()| {
                    undo.push(Step::RouteSet {
                        route: *r,
                        was: None,
                    })
                }),
                Step::RouteSet { route, was } => self.route_set(*route).map(|()| {
                    undo.push(match was {
                        Some(via) => Step::RouteSet {
                            route: Route {
                                prefix: route.prefix,
                                via: *via,
                            },
                            was: None,
                        },
                        None => Step::RouteDel(*route),
                    })
                }),
                other => self.apply_core(other),
            };
            if let Err(e) = done {
                let line = step.lines().join(", ");
                if undoable(step) {
                    let left = self.undo(undo);
                    return Err(format!("reload failed, nothing changed: {line}: {e}{left}"));
                }
                self.update_nets(added, &removed);
                return Err(format!(
                    "reload failed at change {} of {} ({line}): {e}; the changes before it are \
                     applied (see the log), those after it are not: `vtepd config show` prints \
                     what runs",
                    i + 1,
                    steps.len()
                ));
            }
        }
        self.update_nets(added, &removed);
        Ok(())
    }

    fn net_set(&self) -> Result<&dyn NetworkSet, String> {
        self.networks
            .as_deref()
            .ok_or_else(|| "this daemon cannot add or remove networks while it runs".to_owned())
    }

    /// The control plane's network list after networks were added and removed.
    fn update_nets(&self, added: Vec<NetInfo>, removed: &[Vni]) {
        if added.is_empty() && removed.is_empty() {
            return;
        }
        let old = self.nets.load();
        let nets = old
            .nets()
            .iter()
            .filter(|n| !removed.contains(&n.vni))
            .cloned()
            .chain(added)
            .collect();
        self.nets.store(Arc::new(NetList::new(nets)));
    }

    /// Puts back the networks and routes a failed reload changed, most recent first; a note
    /// on what could not be put back (empty when all was).
    fn undo(&self, undo: Vec<Step>) -> String {
        let mut failed = Vec::new();
        for step in undo.into_iter().rev() {
            let r = match &step {
                Step::RouteDel(r) => self.route_del(r.prefix),
                Step::RouteSet { route, .. } => self.route_set(*route),
                Step::NetDel { vni, .. } => self.net_set().and_then(|s| s.remove(*vni)),
                _ => Ok(()),
            };
            if let Err(e) = r {
                warn!("reload: cannot undo a change: {e}");
                failed.push(step.lines().join(", "));
            }
        }
        if failed.is_empty() {
            String::new()
        } else {
            format!(
                " (and these changes could not be undone: {}; `vtepd config show` prints what \
                 runs)",
                failed.join(", ")
            )
        }
    }

    fn route_table(&self) -> Result<&dyn RouteTable, String> {
        self.routes
            .as_deref()
            .ok_or_else(|| "this daemon has no route table".to_owned())
    }

    fn route_set(&self, r: Route) -> Result<(), String> {
        self.route_table()?.set(r)
    }

    fn route_del(&self, prefix: ipnet::IpNet) -> Result<(), String> {
        self.route_table()?.del(prefix)
    }

    fn apply_core(&self, step: &Step) -> Result<(), String> {
        let c = &self.core;
        let now = self.clock.now();
        let r = match *step {
            Step::AllowAnyPeer(on) => {
                c.set_allow_any_peer(on);
                Ok(())
            }
            Step::Peers { vni, ref list, .. } => c.peers_set(vni, list).map(drop),
            Step::Settings { vni, ref to, .. } => c.set_net_settings(vni, to),
            Step::FdbDel { vni, mac, .. } => c.fdb_del(vni, mac).map(drop),
            Step::FdbSet {
                vni, mac, remote, ..
            } => c.fdb_add(now, vni, mac, remote),
            Step::NeighDel { vni, ip, .. } => c.neigh_del(vni, ip).map(drop),
            Step::NeighSet { vni, ip, mac, .. } => c.neigh_add(now, vni, ip, mac),
            Step::RouteDel(_) | Step::RouteSet { .. } | Step::NetAdd(_) | Step::NetDel { .. } => {
                Ok(())
            }
        };
        r.map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{CoreConfig, NetworkConfig};
    use encap::{MacAddr, Vni};
    use ipnet::IpNet;
    use std::collections::BTreeMap;

    /// A route table that refuses to add `refuse` (as a kernel might).
    #[derive(Debug)]
    struct Table {
        routes: Mutex<BTreeMap<IpNet, std::net::IpAddr>>,
        refuse: IpNet,
    }

    impl RouteTable for Table {
        fn list(&self) -> Vec<Route> {
            let t = self.routes.lock().unwrap();
            t.iter()
                .map(|(&prefix, &via)| Route { prefix, via })
                .collect()
        }
        fn set(&self, r: Route) -> Result<(), String> {
            if r.prefix == self.refuse {
                return Err(format!("cannot add route {}: refused", r.prefix));
            }
            self.routes.lock().unwrap().insert(r.prefix, r.via);
            Ok(())
        }
        fn del(&self, prefix: IpNet) -> Result<(), String> {
            self.routes.lock().unwrap().remove(&prefix);
            Ok(())
        }
    }

    fn file(path: &std::path::Path, routes: &str, extra: &str) {
        let text = format!(
            "local = \"192.0.2.1\"\nmode = \"l3\"\nthreads = 1\n{extra}[[network]]\n\
             dev = \"t\"\nvni = 7\naddress = \"10.244.0.0/32\"\npeers = [\"192.0.2.2\"]\n\
             routes = [{routes}]\n"
        );
        std::fs::write(path, text).unwrap();
    }

    /// The kernel refuses the last route of a reload: the route changes made before it are
    /// undone, nothing else was applied, and the error says so.
    #[test]
    fn a_refused_route_undoes_the_reload() {
        let path = std::env::temp_dir().join(format!("vtepd-reload-{}.toml", std::process::id()));
        file(
            &path,
            "\"10.1.0.0/24=10.244.1.1\", \"10.2.0.0/24=10.244.1.2\"",
            "",
        );
        let source = ConfigSource {
            path: path.clone(),
            control: None,
            log_format: None,
            metrics: None,
        };
        let cfg = source.load().unwrap();
        let table = Arc::new(Table {
            routes: Mutex::new(
                cfg.networks[0]
                    .routes
                    .iter()
                    .map(|r| (r.prefix, r.via))
                    .collect(),
            ),
            refuse: "10.9.0.0/24".parse().unwrap(),
        });
        let core = Arc::new(
            Core::new(CoreConfig {
                local: cfg.local,
                allow_any_peer: false,
                networks: vec![NetworkConfig {
                    vni: Vni::new(7).unwrap(),
                    peers: cfg.networks[0].peers.clone(),
                    own_mac: MacAddr([2, 0, 0, 0, 0, 1]),
                    ..NetworkConfig::default()
                }],
            })
            .unwrap(),
        );
        let routes: Arc<dyn RouteTable> = table.clone();
        let r = Reloader::new(
            cfg,
            Some(source),
            Arc::clone(&core),
            Some(routes),
            Vec::new(),
            Clock::new(),
        );
        let before = r.show().unwrap();

        // A peer change, one route removed, one changed, one added and one refused.
        file(
            &path,
            "\"10.2.0.0/24=10.244.1.3\", \"10.3.0.0/24=10.244.1.3\", \"10.9.0.0/24=10.244.1.9\"",
            "allow_any_peer = true\n",
        );
        let e = r.reload().unwrap_err();
        assert_eq!(
            e,
            ReloadError::Failed(
                "reload failed, nothing changed: route 10.9.0.0/24 via 10.244.1.9 added: \
                 cannot add route 10.9.0.0/24: refused"
                    .into()
            )
        );
        assert_eq!(r.show().unwrap(), before);
        assert!(!core.allow_any_peer(), "a later step was applied");

        // Without the refused route it applies.
        file(
            &path,
            "\"10.2.0.0/24=10.244.1.3\", \"10.3.0.0/24=10.244.1.3\"",
            "allow_any_peer = true\n",
        );
        let lines = r.reload().unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            lines,
            [
                "route 10.1.0.0/24 via 10.244.1.1 removed",
                "route 10.2.0.0/24 via 10.244.1.3 (was via 10.244.1.2)",
                "route 10.3.0.0/24 via 10.244.1.3 added",
                "allow_any_peer off -> on",
            ]
        );
        assert!(core.allow_any_peer());
        assert_eq!(table.list().len(), 2);
    }

    /// A network set that cannot create `refuse` and records what it did.
    #[derive(Debug, Default)]
    struct Nets {
        refuse: u32,
        log: Mutex<Vec<String>>,
    }

    impl NetworkSet for Nets {
        fn add(&self, _cfg: &DaemonConfig, n: &NetConfig) -> Result<NetInfo, String> {
            if n.vni.get() == self.refuse {
                return Err(format!("cannot create {}", n.dev));
            }
            self.log.lock().unwrap().push(format!("add {}", n.vni));
            Ok(NetInfo {
                vni: n.vni,
                dev: n.dev.clone(),
                mac: None,
            })
        }
        fn remove(&self, vni: Vni) -> Result<(), String> {
            self.log.lock().unwrap().push(format!("remove {vni}"));
            Ok(())
        }
        fn release(&self) {}
    }

    /// A network that cannot be created undoes the networks added before it, and nothing
    /// else is applied; the control plane's list stays as it was.
    #[test]
    fn a_network_that_cannot_be_created_undoes_the_reload() {
        let path = std::env::temp_dir().join(format!("vtepd-reload-n-{}.toml", std::process::id()));
        let write = |nets: &[u32]| {
            let mut t = "local = \"192.0.2.1\"\nthreads = 1\nallow_any_peer = true\n".to_owned();
            for v in nets {
                t += &format!("[[network]]\ndev = \"v{v}\"\nvni = {v}\n");
            }
            std::fs::write(&path, t).unwrap();
        };
        write(&[1]);
        let source = ConfigSource {
            path: path.clone(),
            control: None,
            log_format: None,
            metrics: None,
        };
        let mut cfg = source.load().unwrap();
        cfg.allow_any_peer = false;
        let core = Arc::new(
            Core::new(CoreConfig {
                local: cfg.local,
                allow_any_peer: false,
                networks: vec![NetworkConfig {
                    vni: Vni::new(1).unwrap(),
                    own_mac: MacAddr([2, 0, 0, 0, 0, 1]),
                    ..NetworkConfig::default()
                }],
            })
            .unwrap(),
        );
        let set = Arc::new(Nets {
            refuse: 3,
            ..Nets::default()
        });
        let info = |v: u32| NetInfo {
            vni: Vni::new(v).unwrap(),
            dev: format!("v{v}"),
            mac: None,
        };
        let r = Reloader::new(
            cfg,
            Some(source),
            Arc::clone(&core),
            None,
            vec![info(1)],
            Clock::new(),
        )
        .with_networks(Some(set.clone() as Arc<dyn NetworkSet>));
        write(&[2, 3]);
        let e = r.reload().unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            e,
            ReloadError::Failed(
                "reload failed, nothing changed: network VNI 3 (dev v3) added: cannot create v3"
                    .into()
            )
        );
        assert_eq!(*set.log.lock().unwrap(), ["add 2", "remove 2"]);
        assert!(!core.allow_any_peer(), "a later step was applied");
        assert_eq!(r.nets().load().nets(), [info(1)]);
    }
}
