//! `vtepd run --mode l3 --encap vxlan` (flannel-style): one TUN device whose IP packets travel
//! as Ethernet frames over VXLAN. vtepd is the Ethernet endpoint itself: it frames each packet
//! toward its next hop's MAC (core::l3vx resolves it: ARP, static `--neigh`), forwards the frame
//! through the shared core (FDB, or head-end replication), and unwraps frames addressed to it into
//! the TUN. The thin I/O part lives here; every decision is the core's.
//!
//! Kernel routes for every `--route` are installed on the TUN (netlink, removed on exit), so the
//! host needs no `ip route` commands.
//!
//! # Dataplane
//! `--threads N` workers, each with its own TUN queue (multi-queue TUN), its own SO_REUSEPORT
//! UDP socket, raw send socket, mio loop, buffers and counters; they share the core and the
//! L3 engine (lock-free neighbour reads; only an unresolved next hop takes the pending queue's
//! lock). The kernel keeps a flow on one queue and one socket, so no flow is reordered.
//! Exactly one worker runs the housekeeping (FDB and neighbour ageing, ARP retries).
//! - TUN -> tunnel: the TUN has offloads (virtio-net header, TCP/IPv4 TSO and checksum
//!   offload only; the kernel segments anything else first). Each read lands in a send slot
//!   behind room for the outer headers and an Ethernet header, which is written in front of
//!   the packet; a TSO super-packet stays whole, becomes an Ethernet super-frame and goes
//!   through the same send side as the L2 worker ([`TunnelTx`]: the core's copies, split by
//!   `batch_tso`, runs to one remote as one UDP GSO send, the rest in one `sendmmsg`). A
//!   super-packet whose next hop is unresolved is cut into segments that the engine queues
//!   one by one (the pending queue holds whole packets).
//! - tunnel -> TUN: `recvmmsg` with UDP GRO ([`RecvBatch`]), the core, the engine, then runs
//!   of TCP segments of one flow are written as one GSO packet ([`TcpRun`]: headers, then each
//!   segment's payload where it was received, one `writev`); anything else is written as it is
//!   (one device packet per datagram).

use super::batch::{HEADROOM, MAX_PACKET, RecvBatch};
use super::batch_gro::{self, Framing, MAX_HEADER, Part, TcpRun, VNET_HDR_LEN, VNET_HDR_NONE};
use super::batch_tso::{self, TsoFrame};
use super::device;
use super::handler::{Handler, NetInfo};
use super::netlink::{KernelRoutes, RouteService};
use super::ratelimit::{DropReport, RateLimit};
use super::stats::{Clock, StatsBoard};
use super::tun;
use super::tunnel_tx::TunnelTx;
use super::{SIGNALS, Task, WAKE, init_logging, socket, spawn, supervise, vxlan_config};
use crate::config::{DaemonConfig, VXLAN_OVERHEAD, stable_mac};
use crate::control::server::{self, Server};
use crate::core::arp::{FrameTo, Generated, write_ipv4_header};
use crate::core::l3vx::{FrameVerdict, L3Vx, L3VxConfig, TunVerdict};
use crate::core::route::Routes;
use crate::core::{
    Action, Actions, Core, CoreConfig, Counters, DropReason, NetId, NetworkConfig, Timestamp,
};
use crate::error::Failure;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use std::io::{self, ErrorKind, IoSlice};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;
use tracing::{debug, error, info, warn};
use tun_rs::SyncDevice;

/// Our single network.
const NET: NetId = NetId(0);
/// Ethernet header vtepd puts in front of each IP packet.
const ETH: usize = encap::ethernet::HEADER_LEN;
/// Reads from one source before looking at the other (a read may be a 64 KiB super-packet).
const BUDGET: usize = 256;
/// Timer period: ARP retries, FDB and neighbour ageing.
const TICK: Duration = Duration::from_secs(1);

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
    // One queue per worker (an existing single-queue device gives one: one worker then).
    let tun = tun::open_tun(&n.dev, mtu, Some(address), true, cfg.threads.max(1))?;
    // tun-rs turns on TSO for both IP versions (and USO) with the header; the workers segment
    // TCP/IPv4 super-packets and complete partial checksums, so keep exactly those: the kernel
    // segments everything else before handing it over. The flags are device-wide.
    crate::sys::tun_set_offload(&*tun.dev, libc::TUN_F_CSUM | libc::TUN_F_TSO4)
        .map_err(|e| rt(&format!("cannot set the offloads of {}", tun.name), e))?;
    let queues = tun.queues.clone();
    let threads = queues.len();
    let udp = socket::bind_udp_group(cfg.local, cfg.port, threads)?;
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
    let board = Arc::new(StatsBoard::new(threads));
    let (tx, rx) = mpsc::channel();
    let mut tasks = Vec::new();
    for (id, (sock, queue)) in udp.into_iter().zip(queues).enumerate() {
        let (w, waker) = L3Worker::new(L3Setup {
            id,
            core: Arc::clone(&core),
            engine: Arc::clone(&engine),
            routes: Arc::clone(&routes),
            socket: mio::net::UdpSocket::from_std(sock),
            tx: TunnelTx::new(socket::open_raw_sender()?, vxlan_config(cfg)),
            tun: queue,
            tun_name: tun.name.clone(),
            clock,
            board: Arc::clone(&board),
            stop: Arc::clone(&stop),
            // Ageing and ARP retries run in exactly one place.
            housekeeping: id == 0,
        })
        .map_err(|e| rt("cannot set up a worker", e))?;
        tasks.push(Task {
            waker,
            handle: spawn(
                &format!("vtepd-l3vx-worker-{id}"),
                move || w.run(),
                &tx,
                &main_waker,
            )?,
        });
    }
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

/// What one L3 worker needs.
struct L3Setup {
    id: usize,
    core: Arc<Core>,
    engine: Arc<L3Vx>,
    routes: Arc<Routes>,
    socket: mio::net::UdpSocket,
    tx: TunnelTx,
    /// This worker's queue of the TUN device (opened with offloads).
    tun: Arc<SyncDevice>,
    tun_name: String,
    clock: Clock,
    board: Arc<StatsBoard>,
    stop: Arc<AtomicBool>,
    /// Whether this worker runs ageing and ARP retries (exactly one does).
    housekeeping: bool,
}

/// One L3 VXLAN dataplane loop: its UDP socket and its TUN queue.
struct L3Worker {
    s: L3Setup,
    poll: Poll,
    ctr: Counters,
    actions: Actions,
    generated: Generated,
    /// Datagrams from the socket.
    rxb: RecvBatch,
    /// Decapsulated TCP segments waiting for the TUN, to be coalesced into one GSO write.
    run: TcpRun,
    /// One segment of a super-packet whose next hop is unresolved (Ethernet header, then the
    /// IP packet), on its way into the pending queue.
    seg: Box<[u8]>,
    /// Sources that may still have data (0: socket, 1: TUN).
    pending: [bool; 2],
    /// The socket's receive-queue overflow count when last seen.
    rxq_overflow: u32,
    next_tick: Timestamp,
    drop_report: DropReport,
    device_err_log: RateLimit,
    socket_err_log: RateLimit,
}

impl L3Worker {
    fn new(mut s: L3Setup) -> io::Result<(L3Worker, Arc<Waker>)> {
        // Runs of equal-size datagrams (a peer's UDP GSO send, or kernel GRO) may then arrive
        // as one read, which `RecvBatch` splits; without it, a datagram at a time.
        if let Err(e) = crate::sys::enable_udp_gro(&s.socket) {
            debug!(error = %e, "UDP_GRO not available on the VXLAN socket");
        }
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WORKER_WAKE)?);
        poll.registry()
            .register(&mut s.socket, SOCKET, Interest::READABLE)?;
        let fd = s.tun.as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), TUN_TOKEN, Interest::READABLE)?;
        let now = s.clock.now();
        let w = L3Worker {
            poll,
            ctr: Counters::default(),
            actions: Actions::with_capacity(256),
            generated: Generated::new(),
            rxb: RecvBatch::new(),
            run: TcpRun::new(Framing::Ip),
            seg: vec![0u8; ETH + MAX_PACKET].into_boxed_slice(),
            pending: [true, true],
            rxq_overflow: 0,
            next_tick: now.add(TICK),
            drop_report: DropReport::new(now),
            device_err_log: RateLimit::default(),
            socket_err_log: RateLimit::default(),
            s,
        };
        Ok((w, waker))
    }

    fn run(mut self) -> Result<(), String> {
        let mut events = Events::with_capacity(16);
        loop {
            let now = self.s.clock.now();
            let timeout = if self.pending.contains(&true) {
                Duration::ZERO
            } else {
                self.next_tick.since(now)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("L3 worker {}: poll failed: {e}", self.s.id));
            }
            if self.s.stop.load(Ordering::Acquire) {
                self.s.board.publish(self.s.id, &self.ctr);
                return Ok(());
            }
            for ev in events.iter() {
                if let Some(p) = self.pending.get_mut(ev.token().0) {
                    *p = true;
                }
            }
            let now = self.s.clock.now();
            if self.pending[SOCKET.0] {
                self.pending[SOCKET.0] = self.drain_socket(now);
            }
            if self.pending[TUN_TOKEN.0] {
                self.pending[TUN_TOKEN.0] = self.drain_tun(now)?;
            }
            if now >= self.next_tick {
                self.next_tick = now.add(TICK);
                if self.s.housekeeping {
                    self.s.core.expire(now);
                    self.s.engine.poll(now, &mut self.generated, &mut self.ctr);
                    self.send_generated(now);
                    self.s.tx.flush(now, &mut self.ctr);
                }
                self.drop_report.tick(now, self.s.id, &self.ctr);
            }
            self.s.board.publish(self.s.id, &self.ctr);
        }
    }

    /// Reads datagrams in batches until the socket would block (false) or the budget is spent
    /// (true); the packets for the TUN leave coalesced after each batch.
    fn drain_socket(&mut self, now: Timestamp) -> bool {
        let mut taken = 0;
        while taken < BUDGET {
            let got = self
                .rxb
                .recv_counted(&self.s.socket, &mut self.rxq_overflow, &mut self.ctr);
            let n = match got {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // A pending socket error is reported once and cleared: keep reading.
                    if let Some(held) = self.socket_err_log.check(now) {
                        warn!(error = %e, suppressed = held, "UDP receive error");
                    }
                    taken += 1;
                    continue;
                }
            };
            for i in 0..n {
                self.on_datagram(now, i);
            }
            self.flush_device(now);
            // Replies and released packets the batch generated.
            self.s.tx.flush(now, &mut self.ctr);
            taken += n;
            if self.rxb.reads() < crate::sys::MAX_BATCH {
                return false;
            }
        }
        true
    }

    /// Datagram `i` of the receive batch: to the core, then (a frame for us) to the engine,
    /// then (an IP packet) to the TUN: a TCP segment that continues the pending run joins it,
    /// anything else is written as it is (after the run).
    fn on_datagram(&mut self, now: Timestamp, i: usize) {
        let Some((d, m)) = self.rxb.get(i) else {
            return;
        };
        let (Some(src), false) = (m.src, m.truncated) else {
            self.ctr.rx_tunnel += 1;
            return self.ctr.drop(DropReason::Truncated);
        };
        let tos = m.tos;
        self.s
            .core
            .on_remote(now, src, d, &mut self.actions, &mut self.ctr);
        let Some(at) = self.actions.iter().find_map(|a| match *a {
            Action::ToDevice { offset, .. } => Some(offset),
            _ => None,
        }) else {
            return;
        };
        // RFC 6040: the outer ECN bits onto the inner packet, or the frame is dropped.
        let Some(frame) = self.rxb.get_mut(i).and_then(|(d, _)| d.get_mut(at..)) else {
            return;
        };
        if !Core::decapsulate_ecn(frame, tos, &mut self.ctr) {
            return;
        }
        let Some(frame) = self.rxb.at((i, at)) else {
            return;
        };
        let verdict = self
            .s
            .engine
            .on_frame(now, frame, &mut self.generated, &mut self.ctr);
        if let FrameVerdict::ToDevice { offset } = verdict
            && let Some(packet) = frame.get(offset..)
        {
            let part = (i, at + offset);
            match batch_gro::tcp_segment(packet, Framing::Ip) {
                Some(seg) => {
                    let rxb = &self.rxb;
                    let bytes = |p: Part| rxb.at(p);
                    if !self.run.offer(0, part, &seg, bytes) {
                        self.flush_device(now);
                        self.run.start(0, part, &seg);
                    }
                }
                None => {
                    self.flush_device(now);
                    self.write_one(now, part);
                }
            }
        }
        if !self.generated.is_empty() {
            self.send_generated(now);
        }
    }

    /// Writes the packet at `part` of the receive batch to the TUN as it is.
    fn write_one(&mut self, now: Timestamp, part: Part) {
        let Some(packet) = self.rxb.at(part) else {
            return self.ctr.drop(DropReason::DeviceTxError);
        };
        let vnet = IoSlice::new(&VNET_HDR_NONE);
        match self.s.tun.send_vectored(&[vnet, IoSlice::new(packet)]) {
            Ok(_) => self.ctr.tx_device += 1,
            Err(e) => self.device_error(now, &e),
        }
    }

    /// Writes the pending run of TCP segments to the TUN: several as one GSO packet (one by
    /// one if the kernel refuses it), a single one as it is.
    fn flush_device(&mut self, now: Timestamp) {
        let rxb = &self.rxb;
        let bytes = |p: Part| rxb.at(p);
        let tun = &*self.s.tun;
        let flushed = self.run.flush(|_| Some(tun), bytes);
        let (_, singles) = self.run.settle(flushed, &mut self.ctr);
        for k in 0..singles {
            let part = self.run.flushed(singles)[k];
            self.write_one(now, part);
        }
    }

    /// Counts and logs (rate-limited) a failed device write. EBADFD (the device was deleted)
    /// is seen by the next read, which stops the worker; anything else loses this packet only.
    fn device_error(&mut self, now: Timestamp, e: &io::Error) {
        self.ctr.drop(DropReason::DeviceTxError);
        if let Some(held) = self.device_err_log.check(now) {
            warn!(dev = %self.s.tun_name, error = %e, suppressed = held, "write to device failed");
        }
    }

    /// Reads packets and TSO super-packets from the TUN until it would block (false) or the
    /// budget is spent (true), each into a send slot behind room for the outer headers and its
    /// Ethernet header, and sends their encapsulated copies in batches; a read error other
    /// than would-block means the device is gone.
    fn drain_tun(&mut self, now: Timestamp) -> Result<bool, String> {
        let mut more = true;
        let mut taken = 0;
        while taken < BUDGET {
            if !self.s.tx.txb.has_free_slot() {
                self.s.tx.flush(now, &mut self.ctr);
            }
            let (slot, buf) = self.s.tx.txb.next_slot();
            // The virtio-net header lands where the Ethernet header goes, the packet behind it.
            let at = HEADROOM + ETH - VNET_HDR_LEN;
            let n = match self.s.tun.recv(&mut buf[at..]) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    more = false;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.s.tx.flush(now, &mut self.ctr);
                    return Err(format!(
                        "device {} failed (read from it: {e})",
                        self.s.tun_name
                    ));
                }
            };
            taken += 1;
            let mut vnet = [0u8; VNET_HDR_LEN];
            let len = n.saturating_sub(VNET_HDR_LEN);
            vnet.copy_from_slice(&buf[at..at + VNET_HDR_LEN]);
            let packet = &mut buf[HEADROOM + ETH..HEADROOM + ETH + len];
            let tso = batch_tso::is_tso(&vnet);
            if n < VNET_HDR_LEN || (!tso && !batch_gro::complete_read(&vnet, packet)) {
                self.ctr.rx_device += 1;
                self.ctr.drop(DropReason::DeviceOffload);
                continue;
            }
            self.s.tx.txb.commit_slot();
            self.on_packet(now, slot, len, tso.then_some(vnet));
        }
        self.s.tx.flush(now, &mut self.ctr);
        Ok(more)
    }

    /// The packet (or, with the virtio-net header `tso`, the TCP super-packet) of `len` bytes
    /// in send slot `slot` at `HEADROOM + ETH`: framed toward its next hop and forwarded, or
    /// held until the next hop resolves.
    fn on_packet(
        &mut self,
        now: Timestamp,
        slot: usize,
        len: usize,
        tso: Option<[u8; VNET_HDR_LEN]>,
    ) {
        let frame_len = ETH + len;
        let own = self.s.engine.own_mac();
        let buf = self.s.tx.txb.slot_mut(slot);
        let frame = &mut buf[HEADROOM..HEADROOM + frame_len];
        // A placeholder destination until the verdict; the super-frame parser wants the type.
        if !write_ipv4_header(frame, own, own) {
            self.ctr.rx_device += 1;
            return self.ctr.drop(DropReason::NotIpv4);
        }
        let route = frame
            .get(ETH + 16..ETH + 20)
            .map(|d| Ipv4Addr::new(d[0], d[1], d[2], d[3]))
            .and_then(|dst| self.s.routes.load().lookup(dst));
        let (verdict, tso) = match tso {
            None => {
                self.ctr.rx_device += 1;
                let v = self.s.engine.on_tun(
                    now,
                    &frame[ETH..],
                    route,
                    &mut self.generated,
                    &mut self.ctr,
                );
                (v, None)
            }
            Some(vnet) => {
                let Some(t) = batch_tso::tso_frame(&vnet, frame) else {
                    self.ctr.rx_device += 1;
                    return self.ctr.drop(DropReason::DeviceOffload);
                };
                // Counted as the packets the kernel would have handed over without TSO.
                self.ctr.rx_device += t.segments() as u64;
                let v = self
                    .s
                    .engine
                    .on_tun_resolved(now, &frame[ETH..], route, &mut self.ctr);
                match v {
                    Some(v) => (v, Some(t)),
                    None => return self.hold_segments(now, slot, frame_len, &t, route),
                }
            }
        };
        if let TunVerdict::Send(mac) = verdict {
            write_ipv4_header(frame, mac, own);
            self.forward_slot(now, slot, frame_len, tso.as_ref());
        }
        if !self.generated.is_empty() {
            self.send_generated(now);
        }
    }

    /// Hands the segments of the super-frame in send slot `slot` one by one to the engine
    /// (the pending queue holds whole packets only); a segment whose next hop resolved in the
    /// meantime is sent as a generated frame.
    fn hold_segments(
        &mut self,
        now: Timestamp,
        slot: usize,
        frame_len: usize,
        t: &TsoFrame,
        route: Option<Ipv4Addr>,
    ) {
        let own = self.s.engine.own_mac();
        let mut head = [0u8; MAX_HEADER];
        for k in 0..t.segments() {
            let frame = &self.s.tx.txb.slot_mut(slot)[HEADROOM..HEADROOM + frame_len];
            let Some(payload) = batch_tso::segment(frame, t, k, &mut head) else {
                self.ctr.drop(DropReason::DeviceOffload);
                continue;
            };
            let (h, end) = (t.hdr_len, t.hdr_len + payload.len());
            self.seg[..h].copy_from_slice(&head[..h]);
            self.seg[h..end].copy_from_slice(&frame[payload]);
            let seg = &self.seg[..end];
            let v =
                self.s
                    .engine
                    .on_tun(now, &seg[ETH..], route, &mut self.generated, &mut self.ctr);
            if let TunVerdict::Send(mac) = v {
                self.generated.push(FrameTo::Tunnel, end, |b| {
                    b.copy_from_slice(seg);
                    write_ipv4_header(b, mac, own)
                });
            }
        }
        self.send_generated(now);
    }

    /// Forwards the frame in send slot `slot` (`len` bytes at `HEADROOM`; a TCP super-frame
    /// when `tso`) through the core and queues every copy it decides.
    fn forward_slot(&mut self, now: Timestamp, slot: usize, len: usize, tso: Option<&TsoFrame>) {
        let floods = self.ctr.flood_copies;
        let frame = &self.s.tx.txb.slot_mut(slot)[HEADROOM..HEADROOM + len];
        self.s
            .core
            .forward_frame(now, NET, frame, &mut self.actions, &mut self.ctr);
        if let Some(t) = tso {
            let more_segs = t.segments() as u64 - 1;
            self.ctr.flood_copies += (self.ctr.flood_copies - floods) * more_segs;
        }
        self.s
            .tx
            .send_copies(now, self.actions.as_slice(), slot, len, tso, &mut self.ctr);
    }

    /// Sends the frames the engine generated (ARP, echo replies, released packets), each
    /// copied into a send slot, and empties the buffer.
    fn send_generated(&mut self, now: Timestamp) {
        for i in 0..self.generated.len() {
            if !self.s.tx.txb.has_free_slot() {
                self.s.tx.flush(now, &mut self.ctr);
            }
            let Some((to, frame)) = self.generated.iter().nth(i) else {
                break;
            };
            let (slot, buf) = self.s.tx.txb.next_slot();
            let len = frame.len();
            if to != FrameTo::Tunnel || HEADROOM + len > buf.len() {
                continue;
            }
            buf[HEADROOM..HEADROOM + len].copy_from_slice(frame);
            self.s.tx.txb.commit_slot();
            self.forward_slot(now, slot, len, None);
        }
        self.generated.clear();
    }
}
