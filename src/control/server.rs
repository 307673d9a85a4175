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
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

const LISTENER: Token = Token(0);
const WAKE: Token = Token(1);
/// How long one client may take to send its request and read the answer, in all.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// Clients served at the same time; one more is told the daemon is busy.
const MAX_CLIENTS: usize = 16;

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
        let networks: Vec<NetStats> = self
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
        // What `fdb show` lists: entries past their ageing time but not yet reaped are not counted.
        let fdb_entries = networks.iter().map(|n| n.fdb_entries).sum();
        StatsReport {
            rx_tunnel: c.rx_tunnel,
            tx_tunnel: c.tx_tunnel,
            rx_device: c.rx_device,
            tx_device: c.tx_device,
            flood_copies: c.flood_copies,
            fdb_entries,
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
            rx_merged: c.rx_merged,
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
    handler: Arc<Handler>,
    active: Arc<AtomicUsize>,
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
                handler: Arc::new(handler),
                active: Arc::new(AtomicUsize::new(0)),
                poll,
                stop,
            },
            waker,
        ))
    }

    /// Serves clients, each on its own short-lived thread (at most [`MAX_CLIENTS`] at once, so
    /// one slow or silent client never holds up the others), until `stop` is set.
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
                self.wait_for_clients();
                return Ok(());
            }
            loop {
                match self.listener.accept() {
                    Ok((stream, _)) => self.dispatch(stream),
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

    /// Waits (at most a little longer than one client's deadline) until no client thread holds
    /// the shared state, so that what it owns (kernel routes, in L3 mode) is released when the
    /// daemon drops it on the way out.
    fn wait_for_clients(&self) {
        let deadline = Instant::now() + CLIENT_TIMEOUT + Duration::from_secs(1);
        while self.active.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Hands one client to a thread of its own, or tells it the daemon is busy.
    fn dispatch(&self, stream: UnixStream) {
        if self.active.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
            self.active.fetch_sub(1, Ordering::AcqRel);
            // The accepted socket is non-blocking: a client that does not read just misses this.
            let mut out = serde_json::to_vec(&Response::err(
                false,
                format!("vtepd is busy ({MAX_CLIENTS} control clients already connected)"),
            ))
            .unwrap_or_default();
            out.push(b'\n');
            if let Err(e) = (&stream).write_all(&out) {
                debug!("control client (busy): {e}");
            }
            return;
        }
        let (handler, active) = (Arc::clone(&self.handler), Arc::clone(&self.active));
        let spawned = std::thread::Builder::new()
            .name("vtepd-control-client".into())
            .spawn(move || {
                // Frees the slot however the thread ends (a panic included), and only after
                // this thread's handle on the shared state (declared later, dropped first).
                let _slot = Slot(active);
                let handler = handler;
                if let Err(e) = try_serve(&handler, stream) {
                    debug!("control client: {e}");
                }
            });
        if let Err(e) = spawned {
            // The closure (and the stream in it) is gone: the client sees the connection close.
            warn!("control socket: cannot start a client thread: {e}");
            self.active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// A taken client slot, given back on drop.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Reads one request, answers it; the whole exchange within [`CLIENT_TIMEOUT`].
fn try_serve(handler: &Handler, stream: UnixStream) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    // One deadline for the whole exchange: a per-read timeout alone would let a client that
    // drips a byte every second hold its thread (and a client slot) for hours.
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let resp = match read_request(&stream, deadline)? {
        RequestLine::TooLong => Response::err(true, "request too long"),
        RequestLine::Line(line) => match serde_json::from_slice::<Request>(line.trim_ascii()) {
            Ok(req) => {
                debug!(?req, "control request");
                handler.handle(req)
            }
            Err(e) => Response::err(true, format!("bad request: {e}")),
        },
    };
    let mut out = serde_json::to_vec(&resp).map_err(std::io::Error::other)?;
    out.push(b'\n');
    write_response(&stream, &out, deadline)
}

/// What a client sent.
#[derive(Debug, PartialEq, Eq)]
enum RequestLine {
    /// The bytes before the first newline (or before end of stream).
    Line(Vec<u8>),
    /// More than [`MAX_REQUEST`] bytes without a newline.
    TooLong,
}

/// The time left until `deadline`, or a `TimedOut` error once it has passed.
fn remaining(deadline: Instant) -> std::io::Result<Duration> {
    match deadline.checked_duration_since(Instant::now()) {
        Some(left) if !left.is_zero() => Ok(left),
        _ => Err(std::io::Error::new(
            ErrorKind::TimedOut,
            "client too slow: deadline passed",
        )),
    }
}

/// A socket timeout (`EAGAIN` on a blocking socket) reported as what it is.
fn timed_out(e: std::io::Error) -> std::io::Error {
    if e.kind() == ErrorKind::WouldBlock {
        std::io::Error::new(ErrorKind::TimedOut, "client too slow: deadline passed")
    } else {
        e
    }
}

/// Reads one request line from a blocking stream, giving up at `deadline`. Bytes are kept as
/// bytes, so invalid UTF-8 gets a "bad request" answer from the JSON parser.
fn read_request(stream: &UnixStream, deadline: Instant) -> std::io::Result<RequestLine> {
    let mut line = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        stream.set_read_timeout(Some(remaining(deadline)?))?;
        let n = match (&*stream).read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(timed_out(e)),
        };
        if n == 0 {
            return Ok(RequestLine::Line(line));
        }
        if let Some(end) = buf[..n].iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&buf[..end]);
            return Ok(if line.len() as u64 > MAX_REQUEST {
                RequestLine::TooLong
            } else {
                RequestLine::Line(line)
            });
        }
        line.extend_from_slice(&buf[..n]);
        if line.len() as u64 > MAX_REQUEST {
            return Ok(RequestLine::TooLong);
        }
    }
}

/// Writes the whole answer to a blocking stream, giving up at `deadline`.
fn write_response(stream: &UnixStream, mut out: &[u8], deadline: Instant) -> std::io::Result<()> {
    while !out.is_empty() {
        stream.set_write_timeout(Some(remaining(deadline)?))?;
        match (&*stream).write(out) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => out = &out[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(timed_out(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn a_client_dripping_bytes_is_cut_off_at_the_deadline() {
        let (server, client) = UnixStream::pair().unwrap();
        // One byte every 50 ms: each read finishes well inside any per-read timeout, but the
        // whole line takes about 2 s, far past the 300 ms deadline.
        let writer = thread::spawn(move || {
            for b in b"{\"cmd\":\"stats\"}\n"
                .iter()
                .chain(b"                    ")
            {
                if (&client).write_all(&[*b]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
        });
        let got = read_request(&server, Instant::now() + Duration::from_millis(300));
        let err = got.expect_err("a drip-fed request must not be served");
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        drop(server);
        writer.join().unwrap();
    }

    fn handler() -> Handler {
        handler_with(Duration::from_secs(300))
    }

    fn handler_with(ageing: Duration) -> Handler {
        let vni = Vni::new(42).unwrap();
        let core = Core::new(crate::core::CoreConfig {
            local: "192.0.2.1".parse().unwrap(),
            allow_any_peer: false,
            networks: vec![crate::core::NetworkConfig {
                vni,
                peers: vec![PEER],
                own_mac: MacAddr([2, 0, 0, 0, 0, 1]),
                learning: true,
                ageing,
                max_learned: 16,
            }],
        })
        .unwrap();
        Handler {
            core: Arc::new(core),
            nets: vec![NetInfo {
                vni,
                dev: "vt0".into(),
                mac: None,
            }],
            board: Arc::new(StatsBoard::new(1)),
            clock: Clock::new(),
            routes: None,
        }
    }

    const PEER: std::net::Ipv4Addr = std::net::Ipv4Addr::new(192, 0, 2, 2);

    #[test]
    fn stats_fdb_entries_agree_with_fdb_show() {
        let h = handler_with(Duration::from_millis(1));
        // A VXLAN datagram (I flag, VNI 42) from the peer: its inner source MAC gets learned at
        // time 0, and has aged out by the time the control plane looks.
        let mut d = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
        d.extend_from_slice(&[2, 0, 0, 0, 0, 9, 2, 0, 0, 0, 0, 7, 0x88, 0xb5]);
        let mut out = crate::core::Actions::with_capacity(4);
        let mut ctr = crate::core::Counters::default();
        h.core
            .on_remote(crate::core::Timestamp(0), PEER, &d, &mut out, &mut ctr);
        assert_eq!(ctr.learned, 1, "{ctr:?}");
        thread::sleep(Duration::from_millis(20));
        let shown = h.handle(Request::FdbShow { vni: None });
        assert_eq!(
            shown.data,
            serde_json::json!([]),
            "fdb show lists an aged-out entry"
        );
        let stats = h.handle(Request::Stats);
        assert_eq!(stats.data["fdb_entries"], 0, "{:?}", stats.data);
    }

    #[test]
    fn silent_clients_do_not_hold_up_the_next_one() {
        let dir = std::env::temp_dir().join(format!("vtepd-ctl-test-{}", std::process::id()));
        let path = dir.join("c.sock");
        let (listener, file) = bind(&path).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (srv, waker) = Server::new(listener, handler(), Arc::clone(&stop)).unwrap();
        let thread = thread::spawn(move || srv.run());
        // Three clients that connect and never send: served one at a time, they would hold the
        // control plane for 3 x CLIENT_TIMEOUT (6 s) before the request below got an answer.
        let silent: Vec<_> = (0..3)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        thread::sleep(Duration::from_millis(100));
        let c = UnixStream::connect(&path).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
        (&c).write_all(b"{\"cmd\":\"peers_show\"}\n").unwrap();
        let mut answer = String::new();
        (&c).read_to_string(&mut answer)
            .expect("an answer while others stay silent");
        let resp: Response = serde_json::from_str(answer.trim()).unwrap();
        assert!(resp.ok, "{answer}");
        drop(silent);
        stop.store(true, Ordering::Release);
        waker.wake().unwrap();
        thread.join().unwrap().unwrap();
        drop(file);
        assert!(!path.exists(), "socket file left behind");
        let _ = std::fs::remove_dir(&dir);
    }

    #[test]
    fn stopping_waits_for_client_threads_to_let_go_of_the_state() {
        let dir = std::env::temp_dir().join(format!("vtepd-ctl-stop-{}", std::process::id()));
        let path = dir.join("c.sock");
        let (listener, file) = bind(&path).unwrap();
        let h = handler();
        let core = Arc::clone(&h.core);
        let stop = Arc::new(AtomicBool::new(false));
        let (srv, waker) = Server::new(listener, h, Arc::clone(&stop)).unwrap();
        let thread = thread::spawn(move || srv.run());
        // A client whose thread is still running (it never sends) when the server is stopped.
        let silent = UnixStream::connect(&path).unwrap();
        thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Release);
        waker.wake().unwrap();
        thread.join().unwrap().unwrap();
        assert_eq!(
            Arc::strong_count(&core),
            1,
            "a client thread still holds the shared state after the server stopped"
        );
        drop(silent);
        drop(file);
        let _ = std::fs::remove_dir(&dir);
    }

    #[test]
    fn a_silent_client_times_out() {
        let (server, _client) = UnixStream::pair().unwrap();
        let err = read_request(&server, Instant::now() + Duration::from_millis(100)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut);
    }

    #[test]
    fn reads_one_line_and_refuses_an_endless_one() {
        let (server, client) = UnixStream::pair().unwrap();
        (&client).write_all(b"{\"cmd\":\"stats\"}\nrest").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(
            read_request(&server, deadline).unwrap(),
            RequestLine::Line(b"{\"cmd\":\"stats\"}".to_vec())
        );

        let (server, client) = UnixStream::pair().unwrap();
        let writer = thread::spawn(move || {
            let chunk = [b'x'; 4096];
            while (&client).write_all(&chunk).is_ok() {}
        });
        assert_eq!(
            read_request(&server, deadline).unwrap(),
            RequestLine::TooLong
        );
        drop(server);
        writer.join().unwrap();
    }

    #[test]
    fn invalid_utf8_is_a_bad_request_not_a_silent_hang_up() {
        let (server, client) = UnixStream::pair().unwrap();
        (&client).write_all(b"{\"cmd\":\"st\xffats\"}\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let RequestLine::Line(line) = read_request(&server, deadline).unwrap() else {
            panic!("a short line")
        };
        assert!(serde_json::from_slice::<Request>(&line).is_err());
    }
}
