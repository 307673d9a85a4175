//! `vtepd run --mode l3 --encap vxlan` (flannel-style): one TUN device whose IP packets travel
//! as Ethernet frames over VXLAN. vtepd is the Ethernet endpoint itself: it frames each packet
//! toward its next hop's MAC (core::l3vx resolves it: ARP, static `--neigh`), forwards the frame
//! through the shared core (FDB, or head-end replication), and unwraps frames addressed to it into
//! the TUN. The thin I/O part lives here; every decision is the core's.
//!
//! Kernel routes for every `--route` are installed on the TUN (netlink, removed on exit), so the
//! host needs no `ip route` commands.

use super::device;
use super::netlink::{KernelRoutes, RouteService};
use super::stats::{Clock, StatsBoard};
use super::tun::{self, Tun};
use super::{SIGNALS, Task, WAKE, init_logging, socket, spawn, supervise, vxlan_config};
use crate::cli::Failure;
use crate::config::{DaemonConfig, VXLAN_OVERHEAD, stable_mac};
use crate::control::server::{self, Handler, NetInfo, Server};
use crate::core::arp::{FrameTo, Generated, write_ipv4_header};
use crate::core::l3vx::{FrameVerdict, L3Vx, L3VxConfig, TunVerdict};
use crate::core::route::Routes;
use crate::core::{
    Action, Actions, Core, CoreConfig, Counters, DropReason, NetId, NetworkConfig, Timestamp,
};
use encap::tunnel::vxlan::OVERHEAD;
use encap::{Invalid, Vni, VxlanConfig, VxlanEncap, VxlanTx};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use socket2::{SockAddr, Socket};
use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;
use tracing::{error, info, warn};
use tun_rs::SyncDevice;

/// Our single network.
const NET: NetId = NetId(0);
/// Ethernet header vtepd puts in front of each IP packet.
const ETH: usize = encap::ethernet::HEADER_LEN;
/// Room in front of a packet read from the TUN: outer headers, then the Ethernet header.
const HEADROOM: usize = OVERHEAD + ETH;
/// Size of each packet buffer.
const BUF_LEN: usize = 65_536 + HEADROOM;
/// Packets taken from one source before looking at the other.
const BUDGET: usize = 64;
/// Timer period: ARP retries, FDB and neighbour ageing.
const TICK: Duration = Duration::from_secs(1);
/// Remotes whose outer header template is cached (emptied when full).
const MAX_TEMPLATES: usize = 4096;
/// Period of rate-limited error logs.
const LOG_EVERY: Duration = Duration::from_secs(10);

const SOCKET: Token = Token(0);
const TUN_TOKEN: Token = Token(1);
const WORKER_WAKE: Token = Token(usize::MAX);

/// Runs the L3 VXLAN daemon until a signal (Ok) or a fatal error.
pub fn run(cfg: &DaemonConfig) -> Result<(), Failure> {
    init_logging();
    let [n] = cfg.networks.as_slice() else {
        return Err(Failure::Usage(
            "--mode l3 runs one TUN device: configure exactly one network".into(),
        ));
    };
    let address = n
        .address
        .ok_or_else(|| Failure::Usage("--address is required".into()))?;
    // Read-only checks: a failure here leaves the system untouched.
    let underlay = device::find_underlay(cfg.local)?;
    let mtu = tun::l3_mtu(&n.dev, n.mtu, &underlay, VXLAN_OVERHEAD)?;
    device::check_privilege()?;
    let routes = Arc::new(
        Routes::with_overlay_routes(cfg.local, &n.routes)
            .map_err(|e| Failure::Usage(format!("route: {e}")))?,
    );

    let rt = |what: &str, e: io::Error| Failure::Runtime(format!("{what}: {e}"));
    let mut poll = Poll::new().map_err(|e| rt("cannot create poller", e))?;
    let main_waker = Arc::new(Waker::new(poll.registry(), WAKE).map_err(|e| rt("waker", e))?);
    let mut signals =
        Signals::new([SIGINT, SIGTERM]).map_err(|e| rt("cannot install signal handlers", e))?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)
        .map_err(|e| rt("cannot watch signals", e))?;

    // From here on every resource undoes itself when dropped.
    let (listener, socket_file) = server::bind(&cfg.control)?;
    let udp = socket::bind_udp(cfg.local, cfg.port)?;
    let raw = socket::open_raw_sender()?;
    let tun = tun::open_tun(&n.dev, mtu, Some(address), false, 1)?;
    let kernel = KernelRoutes::new(&tun.name, false)
        .map_err(|e| Failure::Runtime(format!("device {}: {e}", tun.name)))?;
    let service = Arc::new(
        RouteService::new(Arc::clone(&routes), kernel)
            .map_err(|e| Failure::Runtime(e.to_string()))?,
    );
    let own_mac = stable_mac(&n.dev, n.vni, cfg.local);
    let clock = Clock::new();
    let core = Arc::new(
        Core::new(CoreConfig {
            local: cfg.local,
            allow_any_peer: cfg.allow_any_peer,
            networks: vec![NetworkConfig {
                vni: n.vni,
                peers: n.peers.clone(),
                own_mac,
                learning: n.learning,
                ageing: n.ageing,
                max_learned: n.max_fdb,
            }],
        })
        .map_err(|e| Failure::Usage(e.to_string()))?,
    );
    for e in &n.fdb {
        core.fdb_add(clock.now(), n.vni, e.mac, e.remote)
            .map_err(|err| Failure::Usage(format!("static entry {}: {err}", e.mac)))?;
    }
    for e in &n.neigh {
        core.neigh_add(clock.now(), n.vni, e.ip, e.mac)
            .map_err(|err| Failure::Usage(format!("neighbour {}: {err}", e.ip)))?;
    }
    let engine = Arc::new(L3Vx::new(
        Arc::clone(&core),
        NET,
        L3VxConfig::new(own_mac, address.addr, address.prefix),
    ));

    info!(
        "vtepd {} up: L3 over VXLAN on {}:{} (underlay {} MTU {}), control socket {}",
        env!("CARGO_PKG_VERSION"),
        cfg.local,
        cfg.port,
        underlay.ifname,
        underlay.mtu,
        cfg.control.display()
    );
    info!(
        vni = %n.vni,
        dev = %tun.name,
        mtu = tun.mtu,
        mac = %own_mac,
        address = %address,
        peers = ?n.peers,
        routes = routes.list().len(),
        static_neighbours = n.neigh.len(),
        created = tun.created,
        "network ready (peers reach {} at MAC {own_mac})",
        address.addr
    );

    let stop = Arc::new(AtomicBool::new(false));
    let board = Arc::new(StatsBoard::new(1));
    let (tx, rx) = mpsc::channel();
    let mut tasks = Vec::new();
    let (w, waker) = L3Worker::new(L3Setup {
        core: Arc::clone(&core),
        engine,
        routes: Arc::clone(&routes),
        socket: mio::net::UdpSocket::from_std(udp),
        raw,
        vxlan: vxlan_config(cfg),
        tun: &tun,
        clock,
        board: Arc::clone(&board),
        stop: Arc::clone(&stop),
    })
    .map_err(|e| rt("cannot set up the worker", e))?;
    tasks.push(Task {
        waker,
        handle: spawn("vtepd-l3vx-worker", move || w.run(), &tx, &main_waker)?,
    });
    let handler = Handler {
        core: Arc::clone(&core),
        nets: vec![NetInfo {
            vni: n.vni,
            dev: n.dev.clone(),
            mac: Some(own_mac),
        }],
        board,
        clock,
        routes: Some(Arc::clone(&service)),
    };
    let (srv, waker) = Server::new(listener, handler, Arc::clone(&stop))
        .map_err(|e| rt("cannot set up the control server", e))?;
    tasks.push(Task {
        waker,
        handle: spawn("vtepd-control", move || srv.run(), &tx, &main_waker)?,
    });

    let outcome = supervise(&mut poll, &mut signals, &rx);
    stop.store(true, Ordering::Release);
    for t in &tasks {
        if let Err(e) = t.waker.wake() {
            error!("cannot wake a thread to stop it: {e}");
        }
    }
    for t in tasks {
        if t.handle.join().is_err() {
            error!("a thread panicked while stopping");
        }
    }
    // Kernel routes first (they point at the device), then the device, then the socket file.
    match Arc::try_unwrap(service) {
        Ok(s) => drop(s),
        Err(_) => error!("route service still shared at exit; kernel routes left to the device"),
    }
    drop(core);
    let (name, ours) = (tun.name.clone(), tun.created);
    drop(tun);
    if ours {
        info!(dev = %name, "device removed");
    }
    drop(socket_file);
    if outcome.is_ok() {
        info!("vtepd stopped");
    }
    outcome
}

/// What the L3 worker needs.
struct L3Setup<'a> {
    core: Arc<Core>,
    engine: Arc<L3Vx>,
    routes: Arc<Routes>,
    socket: mio::net::UdpSocket,
    raw: Socket,
    vxlan: VxlanConfig,
    tun: &'a Tun,
    clock: Clock,
    board: Arc<StatsBoard>,
    stop: Arc<AtomicBool>,
}

/// Encapsulates and sends frames; caches one outer header template per remote.
struct Sender {
    raw: Socket,
    vxlan: VxlanConfig,
    encaps: HashMap<Ipv4Addr, VxlanEncap, ahash::RandomState>,
    next_log: Timestamp,
}

impl Sender {
    /// Sends `buf[start..start + len]` (an Ethernet frame with `OVERHEAD` bytes free in front)
    /// to `dst` with `vni`.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        now: Timestamp,
        buf: &mut [u8],
        start: usize,
        len: usize,
        vni: Vni,
        dst: Ipv4Addr,
        ctr: &mut Counters,
    ) {
        if self.encaps.len() >= MAX_TEMPLATES && !self.encaps.contains_key(&dst) {
            self.encaps.clear();
        }
        let enc = match self.encaps.entry(dst) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                match VxlanEncap::new(&self.vxlan, dst) {
                    Ok(enc) => v.insert(enc),
                    Err(_) => return ctr.drop(DropReason::TunnelTxError),
                }
            }
        };
        let range = match enc.encapsulate(buf, start, len, &VxlanTx::new(vni)) {
            Ok(r) => r,
            Err(encap::Error::Invalid {
                reason: Invalid::TooLong,
                ..
            }) => return ctr.drop(DropReason::TooBig),
            Err(_) => return ctr.drop(DropReason::LocalRunt),
        };
        let to = SockAddr::from(SocketAddrV4::new(dst, 0));
        let mut res = self.raw.send_to(&buf[range.clone()], &to);
        if matches!(&res, Err(e) if e.kind() == ErrorKind::Interrupted) {
            res = self.raw.send_to(&buf[range], &to);
        }
        match res {
            Ok(_) => ctr.tx_tunnel += 1,
            Err(e) => {
                ctr.drop(DropReason::TunnelTxError);
                if now >= self.next_log {
                    self.next_log = now.add(LOG_EVERY);
                    warn!(remote = %dst, error = %e, "send to remote VTEP failed");
                }
            }
        }
    }
}

/// The L3 VXLAN dataplane loop: the UDP socket and the TUN device.
struct L3Worker {
    core: Arc<Core>,
    engine: Arc<L3Vx>,
    routes: Arc<Routes>,
    socket: mio::net::UdpSocket,
    tun: Arc<SyncDevice>,
    tun_name: String,
    clock: Clock,
    board: Arc<StatsBoard>,
    stop: Arc<AtomicBool>,
    poll: Poll,
    sender: Sender,
    ctr: Counters,
    actions: Actions,
    generated: Generated,
    /// Packets from the TUN, read at `HEADROOM`.
    tx: Box<[u8]>,
    /// Datagrams from the socket.
    rx: Box<[u8]>,
    /// Generated frames being sent, copied at `HEADROOM - ETH`.
    gtx: Box<[u8]>,
    pending: [bool; 2],
    next_tick: Timestamp,
    next_dev_log: Timestamp,
}

impl L3Worker {
    fn new(s: L3Setup<'_>) -> io::Result<(L3Worker, Arc<Waker>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WORKER_WAKE)?);
        let mut socket = s.socket;
        poll.registry()
            .register(&mut socket, SOCKET, Interest::READABLE)?;
        let fd = s.tun.dev.as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), TUN_TOKEN, Interest::READABLE)?;
        let now = s.clock.now();
        let w = L3Worker {
            core: s.core,
            engine: s.engine,
            routes: s.routes,
            socket,
            tun: Arc::clone(&s.tun.dev),
            tun_name: s.tun.name.clone(),
            clock: s.clock,
            board: s.board,
            stop: s.stop,
            poll,
            sender: Sender {
                raw: s.raw,
                vxlan: s.vxlan,
                encaps: HashMap::with_capacity_and_hasher(64, ahash::RandomState::new()),
                next_log: now,
            },
            ctr: Counters::default(),
            actions: Actions::with_capacity(256),
            generated: Generated::new(),
            tx: vec![0u8; BUF_LEN].into_boxed_slice(),
            rx: vec![0u8; BUF_LEN].into_boxed_slice(),
            gtx: vec![0u8; BUF_LEN].into_boxed_slice(),
            pending: [true, true],
            next_tick: now.add(TICK),
            next_dev_log: now,
        };
        Ok((w, waker))
    }

    fn run(mut self) -> Result<(), String> {
        let mut events = Events::with_capacity(16);
        loop {
            let now = self.clock.now();
            let timeout = if self.pending.contains(&true) {
                Duration::ZERO
            } else {
                self.next_tick.since(now)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("L3 worker: poll failed: {e}"));
            }
            if self.stop.load(Ordering::Acquire) {
                self.board.publish(0, &self.ctr);
                return Ok(());
            }
            for ev in events.iter() {
                if let Some(p) = self.pending.get_mut(ev.token().0) {
                    *p = true;
                }
            }
            let now = self.clock.now();
            if self.pending[0] {
                self.pending[0] = self.drain_socket(now);
            }
            if self.pending[1] {
                self.pending[1] = self.drain_tun(now)?;
            }
            if now >= self.next_tick {
                self.next_tick = now.add(TICK);
                self.core.expire(now);
                self.generated.clear();
                self.engine.poll(now, &mut self.generated, &mut self.ctr);
                self.send_generated(now);
            }
            self.board.publish(0, &self.ctr);
        }
    }

    /// Datagrams until the socket would block or the budget is spent (true then).
    fn drain_socket(&mut self, now: Timestamp) -> bool {
        for _ in 0..BUDGET {
            let (n, src) = match self.socket.recv_from(&mut self.rx) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(_) => continue,
            };
            let SocketAddr::V4(src) = src else { continue };
            self.core.on_remote(
                now,
                *src.ip(),
                &self.rx[..n],
                &mut self.actions,
                &mut self.ctr,
            );
            let Some(&Action::ToDevice { offset, .. }) = self
                .actions
                .iter()
                .find(|a| matches!(a, Action::ToDevice { .. }))
            else {
                continue;
            };
            let Some(frame) = self.rx.get(offset..n) else {
                continue;
            };
            self.generated.clear();
            if let FrameVerdict::ToDevice { offset: ip } =
                self.engine
                    .on_frame(now, frame, &mut self.generated, &mut self.ctr)
                && let Some(packet) = frame.get(ip..)
            {
                match self.tun.send(packet) {
                    Ok(_) => self.ctr.tx_device += 1,
                    Err(e) => {
                        self.ctr.drop(DropReason::DeviceTxError);
                        if now >= self.next_dev_log {
                            self.next_dev_log = now.add(LOG_EVERY);
                            warn!(dev = %self.tun_name, error = %e, "write to device failed");
                        }
                    }
                }
            }
            self.send_generated(now);
        }
        true
    }

    /// Packets until the TUN would block or the budget is spent (true then); a read error
    /// other than would-block means the device is gone.
    fn drain_tun(&mut self, now: Timestamp) -> Result<bool, String> {
        for _ in 0..BUDGET {
            let n = match self.tun.recv(&mut self.tx[HEADROOM..]) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(format!(
                        "device {} failed (read from it: {e})",
                        self.tun_name
                    ));
                }
            };
            self.ctr.rx_device += 1;
            let packet = &self.tx[HEADROOM..HEADROOM + n];
            let route = packet
                .get(16..20)
                .map(|d| Ipv4Addr::new(d[0], d[1], d[2], d[3]))
                .and_then(|dst| self.routes.load().lookup(dst));
            self.generated.clear();
            let verdict =
                self.engine
                    .on_tun(now, packet, route, &mut self.generated, &mut self.ctr);
            if let TunVerdict::Send(mac) = verdict {
                let start = HEADROOM - ETH;
                if write_ipv4_header(&mut self.tx[start..], mac, self.engine.own_mac()) {
                    self.forward(now, start, ETH + n, false);
                }
            }
            self.send_generated(now);
        }
        Ok(true)
    }

    /// Forwards the frame at `tx[start..start + len]` (or `gtx` with `generated`) through the
    /// core and sends every copy it decides.
    fn forward(&mut self, now: Timestamp, start: usize, len: usize, generated: bool) {
        let buf = if generated {
            &mut self.gtx
        } else {
            &mut self.tx
        };
        self.core.forward_frame(
            now,
            NET,
            &buf[start..start + len],
            &mut self.actions,
            &mut self.ctr,
        );
        for a in self.actions.iter() {
            if let Action::ToTunnel { vni, dst } = *a {
                self.sender
                    .send(now, buf, start, len, vni, dst, &mut self.ctr);
            }
        }
    }

    /// Sends the frames the engine generated (ARP, echo replies, released packets).
    fn send_generated(&mut self, now: Timestamp) {
        let count = self.generated.len();
        for i in 0..count {
            let Some((to, frame)) = self.generated.iter().nth(i) else {
                break;
            };
            let len = frame.len();
            let start = HEADROOM - ETH;
            if to != FrameTo::Tunnel || start + len > self.gtx.len() {
                continue;
            }
            self.gtx[start..start + len].copy_from_slice(frame);
            self.forward(now, start, len, true);
        }
    }
}
