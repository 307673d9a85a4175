//! A dataplane worker: one mio loop over the underlay UDP socket and the TAP device(s).
//!
//! It drains each readable source until it would block (with a per-source budget so one busy
//! source cannot starve the others), hands every frame or datagram to the shared [`Core`] and
//! carries out what the core decided. Buffers are allocated once; the whole outer header
//! (IPv4 + UDP + VXLAN, by `encap`'s per-remote [`VxlanEncap`] template) is written into
//! headroom in front of the frame read from the TAP and sent on a raw socket, so a frame is
//! never copied.
//! Nothing is shared with other threads except the lock-free core, the published counters and
//! the stop flag, so the same loop can later run once per device queue.

use super::device::Tap;
use super::stats::{Clock, StatsBoard};
use crate::core::arp_suppress::ArpSuppress;
use crate::core::{Action, Actions, Core, Counters, DropReason, NetId, Timestamp};
use encap::tunnel::vxlan::OVERHEAD;
use encap::vxlan::HEADER_LEN;
use encap::{Invalid, MacAddr, Vni, VxlanConfig, VxlanEncap, VxlanTx};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use socket2::{SockAddr, Socket};
use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing::{debug, info, warn};
use tun_rs::SyncDevice;

/// Token of the UDP socket; TAP `i` is `Token(1 + i)`.
const SOCKET: usize = 0;
/// Token of the waker used to stop the worker.
const WAKE: Token = Token(usize::MAX);
/// Room in front of a frame read from a TAP for the outer IPv4, UDP and VXLAN headers.
const HEADROOM: usize = OVERHEAD;
/// Remotes whose header template is cached; the cache is emptied (not freed) when full.
const MAX_TEMPLATES: usize = 4096;
/// Size of each packet buffer: the largest UDP datagram or frame, plus headroom.
const BUF_LEN: usize = 65_536 + HEADROOM;
/// Packets taken from one source before looking at the others.
const BUDGET: usize = 64;
/// Housekeeping period (FDB ageing).
const TICK: Duration = Duration::from_secs(1);
/// Period of the drop summary and of rate-limited error logs.
const REPORT: Duration = Duration::from_secs(10);

/// Everything a worker needs; built by the daemon, run on its own thread.
#[derive(Debug)]
pub struct WorkerSetup {
    /// Index of the worker (its counter slot).
    pub id: usize,
    /// The shared core.
    pub core: Arc<Core>,
    /// The non-blocking UDP socket VXLAN arrives on.
    pub socket: mio::net::UdpSocket,
    /// The non-blocking raw socket encapsulated frames leave on.
    pub raw: Socket,
    /// Outer header settings (local address, ports, TTL, DSCP, UDP checksum).
    pub vxlan: VxlanConfig,
    /// The devices, indexed by [`NetId`].
    pub taps: Vec<TapPort>,
    /// The daemon clock.
    pub clock: Clock,
    /// Where counters are published.
    pub board: Arc<StatsBoard>,
    /// Set to ask the worker to return.
    pub stop: Arc<AtomicBool>,
    /// Whether this worker runs the FDB ageing timer (exactly one should).
    pub housekeeping: bool,
    /// ARP suppression (`--arp-suppress`), per network; a no-op where it is off.
    pub arp: ArpSuppress,
}

/// A worker's handle on one network's device.
#[derive(Clone)]
pub struct TapPort {
    /// The device (a queue of it).
    pub dev: Arc<SyncDevice>,
    /// Its name, for messages.
    pub name: String,
}

impl std::fmt::Debug for TapPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapPort")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TapPort {
    /// A port on `tap`.
    pub fn of(tap: &Tap) -> TapPort {
        TapPort {
            dev: Arc::clone(&tap.dev),
            name: tap.name.clone(),
        }
    }
}

/// Allows one log line per period and counts the ones it held back.
#[derive(Debug, Default)]
struct RateLimit {
    next: Timestamp,
    suppressed: u64,
}

impl RateLimit {
    /// `Some(suppressed since the last line)` when a line may be logged now.
    fn check(&mut self, now: Timestamp) -> Option<u64> {
        if now >= self.next {
            self.next = now.add(REPORT);
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

/// A running worker.
#[derive(Debug)]
pub struct Worker {
    s: WorkerSetup,
    poll: Poll,
    ctr: Counters,
    actions: Actions,
    /// Outer header templates by remote VTEP.
    encaps: HashMap<Ipv4Addr, VxlanEncap, ahash::RandomState>,
    /// Frames from the TAPs, read at `HEADROOM`.
    tx: Box<[u8]>,
    /// Datagrams from the socket.
    rx: Box<[u8]>,
    /// Sources that may still have data (0: socket, 1 + i: TAP i).
    pending: Vec<bool>,
    next_tick: Timestamp,
    next_report: Timestamp,
    drops_reported: [u64; DropReason::COUNT],
    tunnel_err_log: RateLimit,
    device_err_log: RateLimit,
    socket_err_log: RateLimit,
}

impl Worker {
    /// Registers the sources with a new poller; returns the worker and the waker that
    /// interrupts its poll (set `stop` first, then wake).
    pub fn new(mut s: WorkerSetup) -> io::Result<(Worker, Arc<Waker>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        poll.registry()
            .register(&mut s.socket, Token(SOCKET), Interest::READABLE)?;
        for (i, t) in s.taps.iter().enumerate() {
            let fd = t.dev.as_raw_fd();
            poll.registry()
                .register(&mut SourceFd(&fd), Token(1 + i), Interest::READABLE)?;
        }
        let now = s.clock.now();
        let pending = vec![true; 1 + s.taps.len()];
        let w = Worker {
            poll,
            ctr: Counters::default(),
            actions: Actions::with_capacity(1024),
            encaps: HashMap::with_capacity_and_hasher(64, ahash::RandomState::new()),
            tx: vec![0u8; BUF_LEN].into_boxed_slice(),
            rx: vec![0u8; BUF_LEN].into_boxed_slice(),
            pending,
            next_tick: now.add(TICK),
            next_report: now.add(REPORT),
            drops_reported: [0; DropReason::COUNT],
            tunnel_err_log: RateLimit::default(),
            device_err_log: RateLimit::default(),
            socket_err_log: RateLimit::default(),
            s,
        };
        Ok((w, waker))
    }

    /// Runs until `stop` is set (`Ok`) or a device fails (`Err` with a one-line reason).
    pub fn run(mut self) -> Result<(), String> {
        let mut events = Events::with_capacity(64);
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
                return Err(format!("worker {}: poll failed: {e}", self.s.id));
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
            for i in 0..self.pending.len() {
                if self.pending[i] {
                    self.pending[i] = if i == SOCKET {
                        self.drain_socket(now)
                    } else {
                        self.drain_tap(i - 1, now)?
                    };
                }
            }
            self.s.board.publish(self.s.id, &self.ctr);
            if now >= self.next_tick {
                self.tick(now);
            }
        }
    }

    /// Reads datagrams until the socket would block or the budget is spent (returns true then).
    fn drain_socket(&mut self, now: Timestamp) -> bool {
        for _ in 0..BUDGET {
            let (n, src) = match self.s.socket.recv_from(&mut self.rx) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // A pending socket error is reported once and cleared: keep reading.
                    if let Some(held) = self.socket_err_log.check(now) {
                        warn!(error = %e, suppressed = held, "UDP receive error");
                    }
                    continue;
                }
            };
            let SocketAddr::V4(src) = src else { continue };
            let (learned, moves) = (self.ctr.learned, self.ctr.mac_moves);
            self.s.core.on_remote(
                now,
                *src.ip(),
                &self.rx[..n],
                &mut self.actions,
                &mut self.ctr,
            );
            if self.ctr.learned != learned || self.ctr.mac_moves != moves {
                self.log_learning(*src.ip(), n, self.ctr.mac_moves != moves);
            }
            for i in 0..self.actions.len() {
                match self.actions.as_slice()[i] {
                    Action::ToDevice { net, offset } => {
                        // --- ARP suppression: learn bindings from ARP crossing the tunnel.
                        if let Some(frame) = self.rx.get(offset..n) {
                            self.s.arp.snoop_remote(now, net, frame, &mut self.ctr);
                        }
                        // --- end ARP suppression.
                        self.write_device(now, net, offset, n)
                    }
                    // Already counted by the core; summarised by `report_drops`.
                    Action::Drop(_) => {}
                    // The core never sends a decapsulated frame back into a tunnel.
                    Action::ToTunnel { .. } => {}
                }
            }
        }
        true
    }

    /// Reads frames from TAP `t` until it would block or the budget is spent (returns true
    /// then); a read error other than would-block means the device is gone.
    fn drain_tap(&mut self, t: usize, now: Timestamp) -> Result<bool, String> {
        let Some(net) = u16::try_from(t).ok().map(NetId) else {
            return Ok(false);
        };
        for _ in 0..BUDGET {
            let n = match self.s.taps[t].dev.recv(&mut self.tx[HEADROOM..]) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.device_failed(t, "read from", &e)),
            };
            let frame = &self.tx[HEADROOM..HEADROOM + n];
            // --- ARP suppression: a request for a known remote address is answered here.
            if let Some(reply) = self.s.arp.answer_local(now, net, frame, &mut self.ctr) {
                self.ctr.rx_device += 1;
                match self.s.taps[t].dev.send(reply) {
                    Ok(_) => self.ctr.tx_device += 1,
                    Err(_) => self.ctr.drop(DropReason::DeviceTxError),
                }
                continue;
            }
            // --- end ARP suppression.
            self.s
                .core
                .on_local(now, net, frame, &mut self.actions, &mut self.ctr);
            for i in 0..self.actions.len() {
                if let Action::ToTunnel { vni, dst } = self.actions.as_slice()[i] {
                    self.send_tunnel(now, vni, dst, n);
                }
            }
        }
        Ok(true)
    }

    /// Encapsulates the frame at `tx[HEADROOM..HEADROOM + len]` for `dst` and sends it.
    fn send_tunnel(&mut self, now: Timestamp, vni: Vni, dst: Ipv4Addr, len: usize) {
        if self.encaps.len() >= MAX_TEMPLATES && !self.encaps.contains_key(&dst) {
            self.encaps.clear();
        }
        let enc = match self.encaps.entry(dst) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                match VxlanEncap::new(&self.s.vxlan, dst) {
                    Ok(enc) => v.insert(enc),
                    Err(_) => return self.ctr.drop(DropReason::TunnelTxError),
                }
            }
        };
        let range = match enc.encapsulate(&mut self.tx, HEADROOM, len, &VxlanTx::new(vni)) {
            Ok(r) => r,
            Err(encap::Error::Invalid {
                reason: Invalid::TooLong,
                ..
            }) => {
                return self.ctr.drop(DropReason::TooBig);
            }
            Err(_) => return self.ctr.drop(DropReason::LocalRunt),
        };
        let to = SockAddr::from(SocketAddrV4::new(dst, 0));
        let pkt = &self.tx[range];
        let mut res = self.s.raw.send_to(pkt, &to);
        if matches!(&res, Err(e) if e.kind() == ErrorKind::Interrupted) {
            res = self.s.raw.send_to(pkt, &to);
        }
        match res {
            Ok(_) => self.ctr.tx_tunnel += 1,
            Err(e) => {
                // Unreachable, ENOBUFS, EMSGSIZE, a full buffer: this copy is lost, the loop goes on.
                self.ctr.drop(DropReason::TunnelTxError);
                if let Some(held) = self.tunnel_err_log.check(now) {
                    warn!(remote = %dst, error = %e, suppressed = held, "send to remote VTEP failed");
                }
            }
        }
    }

    /// Writes `rx[offset..len]` (a decapsulated frame) to network `net`'s device.
    fn write_device(&mut self, now: Timestamp, net: NetId, offset: usize, len: usize) {
        let (Some(tap), Some(frame)) = (
            self.s.taps.get(usize::from(net.0)),
            self.rx.get(offset..len),
        ) else {
            self.ctr.drop(DropReason::UnknownNetwork);
            return;
        };
        match tap.dev.send(frame) {
            Ok(_) => self.ctr.tx_device += 1,
            Err(e) => {
                // EBADFD means the device was deleted: the next read reports it and stops us.
                // Anything else (EIO while the device is down, ...) loses this frame only.
                self.ctr.drop(DropReason::DeviceTxError);
                if let Some(held) = self.device_err_log.check(now) {
                    warn!(dev = %tap.name, error = %e, suppressed = held, "write to device failed");
                }
                if e.raw_os_error() == Some(libc::EBADFD) {
                    self.pending[1 + usize::from(net.0)] = true;
                }
            }
        }
    }

    fn device_failed(&self, t: usize, op: &str, e: &io::Error) -> String {
        let name = &self.s.taps[t].name;
        if e.raw_os_error() == Some(libc::EBADFD) {
            format!("device {name} was removed ({op} it: {e})")
        } else {
            format!("device {name} failed ({op} it: {e})")
        }
    }

    fn log_learning(&self, src: Ipv4Addr, n: usize, moved: bool) {
        let d = &self.rx[..n];
        let (Some(mac), Some(vni)) = (
            d.get(HEADER_LEN + 6..HEADER_LEN + 12)
                .and_then(MacAddr::from_bytes),
            d.get(4..7)
                .map(|v| u32::from_be_bytes([0, v[0], v[1], v[2]])),
        ) else {
            return;
        };
        if moved {
            debug!(%mac, vni, remote = %src, "MAC moved");
        } else {
            debug!(%mac, vni, remote = %src, "MAC learned");
        }
    }

    fn tick(&mut self, now: Timestamp) {
        self.next_tick = now.add(TICK);
        if self.s.housekeeping {
            let aged = self.s.core.expire(now);
            if aged > 0 {
                debug!(entries = aged, "FDB entries aged out");
            }
        }
        if now >= self.next_report {
            self.next_report = now.add(REPORT);
            self.report_drops();
        }
    }

    /// Logs, at most once per period, how many packets were dropped since the last report.
    fn report_drops(&mut self) {
        let mut parts = Vec::new();
        for r in DropReason::ALL {
            let (now, before) = (self.ctr.drops_of(*r), self.drops_reported[*r as usize]);
            if now > before {
                parts.push(format!("{}={}", r.name(), now - before));
            }
            self.drops_reported[*r as usize] = now;
        }
        if !parts.is_empty() {
            info!(
                worker = self.s.id,
                "dropped in the last {}s: {}",
                REPORT.as_secs(),
                parts.join(" ")
            );
        }
    }
}
