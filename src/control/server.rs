//! The control socket server: binds the Unix socket (mode 0600, stale file handled) and answers
//! requests on its own thread, working on the shared [`Core`] so that every change takes effect
//! on the data path at once. It never blocks a dataplane worker.

use super::protocol::{
    FdbRow, Kind, MAX_REQUEST, NeighRow, NetStats, PeersRow, Request, Response, RouteRow,
    StatsReport, WorkerStats,
};
use crate::cli::Failure;
use crate::core::route::parse_prefix;
use crate::core::{Core, CoreError, EntryKind};
use crate::daemon::netlink::{RouteChangeError, RouteService};
use crate::daemon::stats::{Clock, StatsBoard};
use crate::sys;
use encap::{MacAddr, Vni};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing::{debug, info, warn};

const LISTENER: Token = Token(0);
const WAKE: Token = Token(1);
/// How long one client may take to send its request or read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// The control socket's file; removed on drop if it is still the one we created.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(md) if md.ino() == self.ino => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    warn!("cannot remove control socket {}: {e}", self.path.display());
                }
            }
            _ => {}
        }
    }
}

/// Binds the control socket at `path`: creates the parent directory, removes a stale socket
/// nobody answers on, refuses when a live daemon answers, creates the socket with mode 0600.
pub fn bind(path: &Path) -> Result<(UnixListener, SocketFile), Failure> {
    let shown = path.display();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            Failure::Runtime(format!(
                "cannot create control socket directory {}: {e}",
                dir.display()
            ))
        })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => {
                return Err(Failure::Runtime(format!(
                    "another vtepd is answering on {shown} (stop it, or use another --control)"
                )));
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                info!("removing stale control socket {shown}");
                std::fs::remove_file(path).map_err(|e| {
                    Failure::Runtime(format!("cannot remove stale control socket {shown}: {e}"))
                })?;
            }
            Err(e) => return Err(Failure::Runtime(format!("control socket {shown}: {e}"))),
        },
        Ok(_) => {
            return Err(Failure::Runtime(format!(
                "{shown} exists and is not a socket"
            )));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(Failure::Runtime(format!("control socket {shown}: {e}"))),
    }
    // Only the main thread runs at this point, so the process-wide umask may be borrowed.
    let listener = sys::with_umask(0o177, || UnixListener::bind(path))
        .map_err(|e| Failure::Runtime(format!("cannot bind control socket {shown}: {e}")))?;
    let md = std::fs::metadata(path)
        .map_err(|e| Failure::Runtime(format!("control socket {shown}: {e}")))?;
    let file = SocketFile {
        path: path.to_owned(),
        ino: md.ino(),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Failure::Runtime(format!("cannot chmod control socket {shown}: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Failure::Runtime(format!("control socket {shown}: {e}")))?;
    Ok((listener, file))
}

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

/// Answers requests against the shared state.
#[derive(Debug)]
pub struct Handler {
    /// The shared core.
    pub core: Arc<Core>,
    /// The networks, in NetId order.
    pub nets: Vec<NetInfo>,
    /// Published worker counters.
    pub board: Arc<StatsBoard>,
    /// The daemon clock.
    pub clock: Clock,
    /// The L3 route table and its kernel routes (`None` in L2 mode).
    pub routes: Option<Arc<RouteService>>,
}

fn route_err(e: RouteChangeError) -> Response {
    let usage = matches!(e, RouteChangeError::Refused(_));
    Response::err(usage, e.to_string())
}

fn core_err(e: CoreError) -> Response {
    let usage = !matches!(e, CoreError::TooManyNetworks);
    Response::err(usage, e.to_string())
}

fn to_json<T: serde::Serialize>(v: &T) -> Response {
    match serde_json::to_value(v) {
        Ok(v) => Response::ok(v),
        Err(e) => Response::err(false, format!("internal error: {e}")),
    }
}

impl Handler {
    fn dev_of(&self, vni: Vni) -> String {
        self.nets
            .iter()
            .find(|n| n.vni == vni)
            .map(|n| n.dev.clone())
            .unwrap_or_default()
    }

    fn vni_list(&self) -> String {
        self.nets
            .iter()
            .map(|n| n.vni.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A VNI the daemon has.
    fn known(&self, v: u32) -> Result<Vni, Response> {
        match Vni::new(v) {
            Ok(vni) if self.nets.iter().any(|n| n.vni == vni) => Ok(vni),
            _ => Err(Response::err(
                true,
                format!(
                    "no network with VNI {v} (this daemon has VNI {})",
                    self.vni_list()
                ),
            )),
        }
    }

    /// The network a change applies to: the given one, or the only one.
    fn target(&self, vni: Option<u32>) -> Result<Vni, Response> {
        if self.nets.is_empty() {
            return Err(Response::err(
                true,
                "this daemon runs in L3 mode: it has no FDB or flood lists (see `routes`)",
            ));
        }
        match (vni, self.nets.as_slice()) {
            (Some(v), _) => self.known(v),
            (None, [only]) => Ok(only.vni),
            (None, nets) => Err(Response::err(
                true,
                format!(
                    "the daemon has {} networks (VNI {}): give --vni",
                    nets.len(),
                    self.vni_list()
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

    /// Answers one request.
    pub fn handle(&self, req: Request) -> Response {
        self.try_handle(req).unwrap_or_else(|r| r)
    }

    fn try_handle(&self, req: Request) -> Result<Response, Response> {
        let now = self.clock.now();
        Ok(match req {
            Request::FdbShow { vni } => {
                let rows: Vec<FdbRow> = self
                    .core
                    .fdb_entries(now, self.filter(vni)?)
                    .into_iter()
                    .map(|e| FdbRow {
                        vni: e.vni.get(),
                        dev: self.dev_of(e.vni),
                        mac: e.mac.to_string(),
                        remote: e.remote,
                        kind: match e.kind {
                            EntryKind::Learned => Kind::Learned,
                            EntryKind::Static => Kind::Static,
                        },
                        age_secs: e.age.as_secs(),
                    })
                    .collect();
                to_json(&rows)
            }
            Request::FdbAdd { vni, mac, remote } => {
                let (vni, mac) = (self.target(vni)?, Self::mac(&mac)?);
                self.core.fdb_add(now, vni, mac, remote).map_err(core_err)?;
                info!(%vni, %mac, %remote, "static FDB entry added");
                Response::ok(serde_json::Value::Null)
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
                Response::ok(serde_json::Value::Null)
            }
            Request::FdbFlush { vni, learned_only } => {
                let removed = self
                    .core
                    .fdb_flush(self.filter(vni)?, learned_only)
                    .map_err(core_err)?;
                info!(removed, learned_only, "FDB flushed");
                Response::ok(serde_json::json!({ "removed": removed }))
            }
            Request::PeersShow => {
                let rows: Vec<PeersRow> = self
                    .core
                    .peers()
                    .into_iter()
                    .map(|(vni, peers)| PeersRow {
                        vni: vni.get(),
                        dev: self.dev_of(vni),
                        peers,
                    })
                    .collect();
                to_json(&rows)
            }
            Request::PeersAdd { vni, ip } => {
                let vni = self.target(vni)?;
                let added = self.core.peer_add(vni, ip).map_err(core_err)?;
                if added {
                    info!(%vni, peer = %ip, "peer added");
                }
                Response::ok(serde_json::json!({ "changed": added }))
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
                Response::ok(serde_json::json!({ "changed": true }))
            }
            Request::Stats => to_json(&self.stats(now)),
            Request::RoutesShow => {
                let Some(svc) = &self.routes else {
                    return Ok(to_json(&Vec::<RouteRow>::new()));
                };
                let rows: Vec<RouteRow> = svc
                    .list()
                    .into_iter()
                    .map(|r| RouteRow {
                        prefix: r.prefix.to_string(),
                        via: r.via,
                        dev: svc.dev().to_owned(),
                    })
                    .collect();
                to_json(&rows)
            }
            Request::RoutesAdd { prefix, via } => {
                let svc = self.route_service()?;
                let prefix = parse_prefix(&prefix).map_err(|e| Response::err(true, e))?;
                let old = svc
                    .add(crate::core::route::Route { prefix, via })
                    .map_err(route_err)?;
                info!(%prefix, %via, replaced = ?old, "route added");
                Response::ok(serde_json::json!({ "changed": old != Some(via) }))
            }
            Request::RoutesDel { prefix } => {
                let svc = self.route_service()?;
                let prefix = parse_prefix(&prefix).map_err(|e| Response::err(true, e))?;
                if svc.del(prefix).map_err(route_err)?.is_none() {
                    return Err(Response::err(false, format!("no route for {prefix}")));
                }
                info!(%prefix, "route removed");
                Response::ok(serde_json::json!({ "changed": true }))
            }
            Request::NeighShow { vni } => {
                let rows: Vec<NeighRow> = self
                    .core
                    .neigh_entries(now, self.filter(vni)?)
                    .into_iter()
                    .map(|(vni, e)| NeighRow {
                        vni: vni.get(),
                        dev: self.dev_of(vni),
                        ip: e.ip,
                        mac: e.mac.to_string(),
                        kind: match e.kind {
                            EntryKind::Learned => Kind::Learned,
                            EntryKind::Static => Kind::Static,
                        },
                        age_secs: e.age.as_secs(),
                    })
                    .collect();
                to_json(&rows)
            }
            Request::NeighAdd { vni, ip, mac } => {
                let (vni, mac) = (self.target(vni)?, Self::mac(&mac)?);
                self.core.neigh_add(now, vni, ip, mac).map_err(core_err)?;
                info!(%vni, %ip, %mac, "static neighbour added");
                Response::ok(serde_json::Value::Null)
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
                Response::ok(serde_json::Value::Null)
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

    fn stats(&self, now: crate::core::Timestamp) -> StatsReport {
        // One snapshot of every worker, so the totals are exactly the sum of the rows.
        let per_worker = self.board.per_worker();
        let mut c = crate::core::Counters::default();
        for w in &per_worker {
            c.add(w);
        }
        let peers = self.core.peers();
        let networks = self
            .nets
            .iter()
            .map(|n| NetStats {
                vni: n.vni.get(),
                dev: n.dev.clone(),
                peers: peers
                    .iter()
                    .find(|(v, _)| *v == n.vni)
                    .map_or(0, |(_, p)| p.len()),
                fdb_entries: self.core.fdb_entries(now, Some(n.vni)).len(),
                mac: n.mac.map(|m| m.to_string()),
                neigh_entries: self.core.neigh_entries(now, Some(n.vni)).len(),
            })
            .collect();
        StatsReport {
            rx_tunnel: c.rx_tunnel,
            tx_tunnel: c.tx_tunnel,
            rx_device: c.rx_device,
            tx_device: c.tx_device,
            flood_copies: c.flood_copies,
            fdb_entries: self.core.fdb_len(),
            learned: c.learned,
            mac_moves: c.mac_moves,
            learn_refused: c.learn_refused,
            learn_static_conflict: c.learn_static_conflict,
            neigh_learned: c.neigh_learned,
            neigh_mac_changes: c.neigh_mac_changes,
            neigh_refused: c.neigh_refused,
            arp_suppressed: c.arp_suppressed,
            arp_requests: c.arp_requests,
            arp_replies: c.arp_replies,
            icmp_echo_replies: c.icmp_echo_replies,
            neigh_failed: c.neigh_failed,
            drops: crate::core::DropReason::ALL
                .iter()
                .map(|r| (r.name().to_owned(), c.drops_of(*r)))
                .collect(),
            drops_total: c.total_drops(),
            uptime_secs: self.clock.uptime().as_secs(),
            networks,
            workers: per_worker
                .iter()
                .enumerate()
                .map(|(worker, w)| WorkerStats {
                    worker,
                    rx_tunnel: w.rx_tunnel,
                    tx_tunnel: w.tx_tunnel,
                    rx_device: w.rx_device,
                    tx_device: w.tx_device,
                    flood_copies: w.flood_copies,
                    drops_total: w.total_drops(),
                })
                .collect(),
        }
    }
}

/// The control thread's loop.
#[derive(Debug)]
pub struct Server {
    listener: UnixListener,
    handler: Handler,
    poll: Poll,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// A server on a bound, non-blocking listener; returns its waker (set `stop`, then wake).
    pub fn new(
        listener: UnixListener,
        handler: Handler,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<(Server, Arc<Waker>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let fd = listener.as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), LISTENER, Interest::READABLE)?;
        Ok((
            Server {
                listener,
                handler,
                poll,
                stop,
            },
            waker,
        ))
    }

    /// Serves clients one at a time until `stop` is set.
    pub fn run(mut self) -> Result<(), String> {
        let mut events = Events::with_capacity(8);
        loop {
            if let Err(e) = self.poll.poll(&mut events, None) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("control socket: poll failed: {e}"));
            }
            if self.stop.load(Ordering::Acquire) {
                return Ok(());
            }
            loop {
                match self.listener.accept() {
                    Ok((stream, _)) => self.serve(stream),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // EMFILE and friends: give up on this round, try again on the next event.
                        warn!("control socket: accept failed: {e}");
                        break;
                    }
                }
            }
        }
    }

    fn serve(&self, stream: UnixStream) {
        if let Err(e) = self.try_serve(stream) {
            debug!("control client: {e}");
        }
    }

    fn try_serve(&self, stream: UnixStream) -> std::io::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
        stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
        let mut line = String::new();
        BufReader::new((&stream).take(MAX_REQUEST)).read_line(&mut line)?;
        let resp = if !line.ends_with('\n') && line.len() as u64 >= MAX_REQUEST {
            Response::err(true, "request too long")
        } else {
            match serde_json::from_str::<Request>(line.trim()) {
                Ok(req) => {
                    debug!(?req, "control request");
                    self.handler.handle(req)
                }
                Err(e) => Response::err(true, format!("bad request: {e}")),
            }
        };
        let mut out = serde_json::to_vec(&resp).map_err(std::io::Error::other)?;
        out.push(b'\n');
        (&stream).write_all(&out)
    }
}
