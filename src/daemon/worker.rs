//! A dataplane worker: one mio loop over its own underlay UDP socket (one of a SO_REUSEPORT
//! group), its own raw send socket and its own queue of every TAP device.
//!
//! It drains each readable source in batches until it would block (with a per-source budget so
//! one busy source cannot starve the others), hands every frame or datagram to the shared
//! [`Core`] and carries out what the core decided:
//! - underlay -> device: one `recvmmsg` takes up to 64 datagrams; runs of TCP segments of one
//!   flow are written to the device as one GSO super-frame (`batch_gro`, when the TAP has
//!   virtio-net headers), anything else frame by frame.
//! - device -> underlay: frames are read from the TAP queue into the slots of the
//!   [`TunnelTx`]'s send batch (with TSO, a read may be a 64 KiB TCP super-frame, cut into
//!   segments by `batch_tso`); every copy the core asks for (one, or one per peer for head-end
//!   replication) gets its outer header from a per-remote template and the batch leaves in one
//!   `sendmmsg` on the raw socket, so each inner flow keeps its own UDP source port; the
//!   segments of a super-frame to one remote leave as one UDP GSO send (see [`TunnelTx`],
//!   shared with the L3 VXLAN worker). Payloads are never copied in user space.
//! - On receive the socket has UDP_GRO on: a run of equal-size datagrams may arrive as one
//!   read, which [`RecvBatch`] splits (a GSO send from a vtepd peer crosses a veth or loopback
//!   underlay whole and is never cut into datagrams in between).
//!
//! # No locks, no allocation per packet
//! Per path, what the loop touches for each packet: the [`Core`] (lock-free FDB reads and
//! learning through papaya, peer lists through arc-swap snapshots, counters in the worker's own
//! [`Counters`]); the worker's own arenas ([`RecvBatch`], the [`TunnelTx`] send batch,
//! [`Actions`], all sized once in `new`); the template cache (a HashMap that only allocates
//! when a new remote is first seen; it is cleared, not freed, at its cap);
//! `sys::recv_batch`/`sys::send_batch` (arrays on the stack). Counters are published into the worker's own cache-padded slot of the
//! [`StatsBoard`] once per round, with relaxed stores. Logging happens only on errors and is
//! rate-limited. `tests/multicore_alloc.rs` checks the no-allocation part with a counting
//! allocator.
//!
//! Workers share nothing but the core, the stats board and the stop flag: with `--threads N`
//! the daemon runs N of them, and the kernel keeps each flow on one worker (TAP queue selection
//! and SO_REUSEPORT both hash the flow), so a flow is never reordered.

use super::batch::{HEADROOM, RecvBatch};
use super::batch_gro::{self, Framing, Part, TcpRun, VNET_HDR_LEN, VNET_HDR_NONE};
use super::batch_tso;
use super::ratelimit::{DropReport, RateLimit};
use super::stats::{Clock, StatsBoard};
use super::tunnel_tx::TunnelTx;
use crate::core::arp_suppress::ArpSuppress;
use crate::core::{Action, Actions, Core, Counters, DropReason, NetId, Timestamp};
use encap::MacAddr;
use encap::vxlan::HEADER_LEN;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use std::io::IoSlice;
use std::io::{self, ErrorKind};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing::{debug, warn};
use tun_rs::SyncDevice;

/// Token of the UDP socket; TAP `i` is `Token(1 + i)`.
const SOCKET: usize = 0;
/// Token of the waker used to stop the worker.
const WAKE: Token = Token(usize::MAX);
/// Packets taken from one source before looking at the others.
const BUDGET: usize = 256;
/// Housekeeping period (FDB ageing).
const TICK: Duration = Duration::from_secs(1);

/// Everything a worker needs; built by the daemon, run on its own thread.
#[derive(Debug)]
pub struct WorkerSetup {
    /// Index of the worker (its counter slot).
    pub id: usize,
    /// The shared core.
    pub core: Arc<Core>,
    /// The non-blocking UDP socket VXLAN arrives on.
    pub socket: mio::net::UdpSocket,
    /// The send side: raw socket, outer header settings, frame slots, GSO socket pool.
    pub tx: TunnelTx,
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
    /// The device queue this worker writes to (and reads from, if `read`).
    pub dev: Arc<SyncDevice>,
    /// Its name, for messages.
    pub name: String,
    /// Whether this worker reads the queue (a queue is read by exactly one worker; when a
    /// device has fewer queues than workers, the others only write to a shared one).
    pub read: bool,
    /// Frames carry a virtio-net header (merged TCP segments may be written).
    pub vnet_hdr: bool,
}

impl std::fmt::Debug for TapPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapPort")
            .field("name", &self.name)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

/// A running worker.
#[derive(Debug)]
pub struct Worker {
    s: WorkerSetup,
    poll: Poll,
    ctr: Counters,
    actions: Actions,
    /// Datagrams from the socket.
    rxb: RecvBatch,
    /// Sources that may still have data (0: socket, 1 + i: TAP i).
    pending: Vec<bool>,
    /// The socket's receive-queue overflow count when last seen.
    rxq_overflow: u32,
    /// TCP segments of the receive batch waiting to be written to a device as one.
    run: TcpRun,
    next_tick: Timestamp,
    drop_report: DropReport,
    device_err_log: RateLimit,
    socket_err_log: RateLimit,
}

impl Worker {
    /// Registers the sources with a new poller; returns the worker and the waker that
    /// interrupts its poll (set `stop` first, then wake).
    pub fn new(mut s: WorkerSetup) -> io::Result<(Worker, Arc<Waker>)> {
        // Runs of equal-size datagrams from one sender may then arrive as one read (a remote
        // vtepd sending with UDP GSO over a local or GRO-capable underlay); `RecvBatch` splits
        // them. Without it everything still works, a datagram at a time.
        if let Err(e) = crate::sys::enable_udp_gro(&s.socket) {
            debug!(error = %e, "UDP_GRO not available on the VXLAN socket");
        }
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        poll.registry()
            .register(&mut s.socket, Token(SOCKET), Interest::READABLE)?;
        for (i, t) in s.taps.iter().enumerate().filter(|(_, t)| t.read) {
            let fd = t.dev.as_raw_fd();
            poll.registry()
                .register(&mut SourceFd(&fd), Token(1 + i), Interest::READABLE)?;
        }
        let now = s.clock.now();
        let mut pending = vec![true; 1 + s.taps.len()];
        for (i, t) in s.taps.iter().enumerate() {
            pending[1 + i] = t.read;
        }
        let w = Worker {
            poll,
            ctr: Counters::default(),
            actions: Actions::with_capacity(1024),
            rxb: RecvBatch::new(),
            pending,
            rxq_overflow: 0,
            run: TcpRun::new(Framing::Ethernet),
            next_tick: now.add(TICK),
            drop_report: DropReport::new(now),
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

    /// Reads datagrams in batches until the socket would block (false) or the budget is spent
    /// (true).
    fn drain_socket(&mut self, now: Timestamp) -> bool {
        let mut taken = 0;
        while taken < BUDGET {
            let n =
                match self
                    .rxb
                    .recv_counted(&self.s.socket, &mut self.rxq_overflow, &mut self.ctr)
                {
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
            // The arena is reused by the next receive: nothing may wait past the batch.
            self.flush_run(now);
            taken += n;
            if self.rxb.reads() < crate::sys::MAX_BATCH {
                // The queue was emptied; a later arrival raises a new readiness event.
                return false;
            }
        }
        true
    }

    /// Datagram `i` of the receive batch: to the core, then to the device.
    fn on_datagram(&mut self, now: Timestamp, i: usize) {
        let Some((d, m)) = self.rxb.get(i) else {
            return;
        };
        let (Some(src), false) = (m.src, m.truncated) else {
            self.ctr.rx_tunnel += 1;
            return self.ctr.drop(DropReason::Truncated);
        };
        let (learned, moves) = (self.ctr.learned, self.ctr.mac_moves);
        self.s
            .core
            .on_remote(now, src, d, &mut self.actions, &mut self.ctr);
        if self.ctr.learned != learned || self.ctr.mac_moves != moves {
            log_learning(d, src, self.ctr.mac_moves != moves);
        }
        for k in 0..self.actions.len() {
            match self.actions.as_slice()[k] {
                Action::ToDevice { net, offset } => {
                    // RFC 6040: the outer ECN bits onto the inner packet (one TOS per read),
                    // or the frame is dropped.
                    if let Some((d, m)) = self.rxb.get_mut(i) {
                        let tos = m.tos;
                        let frame = d.get_mut(offset..).unwrap_or_default();
                        if !Core::decapsulate_ecn(frame, tos, &mut self.ctr) {
                            continue;
                        }
                    }
                    // --- ARP suppression: learn bindings from ARP crossing the tunnel.
                    if let Some(frame) = self.rxb.at((i, offset)) {
                        self.s.arp.snoop_remote(now, net, frame, &mut self.ctr);
                    }
                    // --- end ARP suppression.
                    self.deliver(now, net, i, offset)
                }
                // Already counted by the core; summarised by the drop report.
                Action::Drop(_) => {}
                // The core never sends a decapsulated frame back into a tunnel.
                Action::ToTunnel { .. } => {}
            }
        }
    }

    /// Reads frames from TAP `t` until it would block (false) or the budget is spent (true),
    /// queueing their encapsulated copies and sending them in batches; a read error other than
    /// would-block means the device is gone.
    fn drain_tap(&mut self, t: usize, now: Timestamp) -> Result<bool, String> {
        let Some(net) = u16::try_from(t).ok().map(NetId) else {
            return Ok(false);
        };
        let mut more = true;
        let mut taken = 0;
        while taken < BUDGET {
            if !self.s.tx.txb.has_free_slot() {
                self.s.tx.flush(now, &mut self.ctr);
            }
            let (slot, buf) = self.s.tx.txb.next_slot();
            let tap = &self.s.taps[t];
            // With a virtio-net header, it lands in the headroom and the frame at HEADROOM.
            let at = if tap.vnet_hdr {
                HEADROOM - VNET_HDR_LEN
            } else {
                HEADROOM
            };
            let mut tso = None;
            let n = match tap.dev.recv(&mut buf[at..]) {
                Ok(n) if tap.vnet_hdr => {
                    let ok = n >= VNET_HDR_LEN && {
                        let (vnet, frame) = buf[at..at + n].split_at_mut(VNET_HDR_LEN);
                        if batch_tso::is_tso(vnet) {
                            let mut v = [0u8; VNET_HDR_LEN];
                            v.copy_from_slice(vnet);
                            tso = Some(v);
                            true
                        } else {
                            batch_gro::complete_read(vnet, frame)
                        }
                    };
                    if !ok {
                        self.ctr.rx_device += 1;
                        self.ctr.drop(DropReason::DeviceOffload);
                        taken += 1;
                        continue;
                    }
                    n - VNET_HDR_LEN
                }
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    more = false;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.s.tx.flush(now, &mut self.ctr);
                    return Err(self.device_failed(t, "read from", &e));
                }
            };
            self.s.tx.txb.commit_slot();
            taken += 1;
            let frame = &self.s.tx.txb.slot_mut(slot)[HEADROOM..HEADROOM + n];
            let tso = match tso.map(|v| batch_tso::tso_frame(&v, frame)) {
                None => None,
                Some(Some(t)) => Some(t),
                Some(None) => {
                    self.ctr.rx_device += 1;
                    self.ctr.drop(DropReason::DeviceOffload);
                    continue;
                }
            };
            // --- ARP suppression: a request for a known remote address is answered here.
            if tso.is_none()
                && let Some(reply) = self.s.arp.answer_local(now, net, frame, &mut self.ctr)
            {
                self.ctr.rx_device += 1;
                let dev = &self.s.taps[t];
                let r = if dev.vnet_hdr {
                    dev.dev
                        .send_vectored(&[IoSlice::new(&VNET_HDR_NONE), IoSlice::new(reply)])
                } else {
                    dev.dev.send(reply)
                };
                match r {
                    Ok(_) => self.ctr.tx_device += 1,
                    Err(_) => self.ctr.drop(DropReason::DeviceTxError),
                }
                continue;
            }
            // --- end ARP suppression.
            let floods = self.ctr.flood_copies;
            self.s
                .core
                .on_local(now, net, frame, &mut self.actions, &mut self.ctr);
            if let Some(tf) = &tso {
                // Counted as the frames the kernel would have handed over without TSO.
                let more_segs = tf.segments() as u64 - 1;
                self.ctr.rx_device += more_segs;
                self.ctr.flood_copies += (self.ctr.flood_copies - floods) * more_segs;
            }
            self.s.tx.send_copies(
                now,
                self.actions.as_slice(),
                slot,
                n,
                tso.as_ref(),
                &mut self.ctr,
            );
        }
        self.s.tx.flush(now, &mut self.ctr);
        Ok(more)
    }

    /// Hands the inner frame of received datagram `i` (from `offset`) to network `net`'s
    /// device: appended to the pending run of TCP segments when it continues it, else written
    /// (after the run).
    fn deliver(&mut self, now: Timestamp, net: NetId, i: usize, offset: usize) {
        let Some(tap) = self.s.taps.get(usize::from(net.0)) else {
            return self.ctr.drop(DropReason::UnknownNetwork);
        };
        let seg = if tap.vnet_hdr {
            self.rxb
                .at((i, offset))
                .and_then(|f| batch_gro::tcp_segment(f, Framing::Ethernet))
        } else {
            None
        };
        let Some(seg) = seg else {
            self.flush_run(now);
            return self.write_one(now, net, i, offset);
        };
        let rxb = &self.rxb;
        let bytes = |p: Part| rxb.at(p);
        if !self.run.offer(net.0, (i, offset), &seg, bytes) {
            self.flush_run(now);
            self.run.start(net.0, (i, offset), &seg);
        }
    }

    /// Writes the pending run: one segment as it is, several as one super-frame (or one by one
    /// if the kernel refuses it).
    fn flush_run(&mut self, now: Timestamp) {
        let rxb = &self.rxb;
        let bytes = |p: Part| rxb.at(p);
        let taps = &self.s.taps;
        let dev = |k: u16| taps.get(usize::from(k)).map(|t| &*t.dev);
        let flushed = self.run.flush(dev, bytes);
        let (key, singles) = self.run.settle(flushed, &mut self.ctr);
        for k in 0..singles {
            let (i, off) = self.run.flushed(singles)[k];
            self.write_one(now, NetId(key), i, off);
        }
    }

    /// Writes the inner frame of received datagram `i` (from `offset`) to network `net`'s
    /// device on its own.
    fn write_one(&mut self, now: Timestamp, net: NetId, i: usize, offset: usize) {
        let (Some(tap), Some(frame)) = (
            self.s.taps.get(usize::from(net.0)),
            self.rxb.at((i, offset)),
        ) else {
            self.ctr.drop(DropReason::UnknownNetwork);
            return;
        };
        let r = if tap.vnet_hdr {
            tap.dev
                .send_vectored(&[IoSlice::new(&VNET_HDR_NONE), IoSlice::new(frame)])
        } else {
            tap.dev.send(frame)
        };
        match r {
            Ok(_) => self.ctr.tx_device += 1,
            Err(e) => {
                // EBADFD means the device was deleted: the next read reports it and stops us.
                // Anything else (EIO while the device is down, ...) loses this frame only.
                self.ctr.drop(DropReason::DeviceTxError);
                if let Some(held) = self.device_err_log.check(now) {
                    warn!(dev = %tap.name, error = %e, suppressed = held, "write to device failed");
                }
                if e.raw_os_error() == Some(libc::EBADFD) && tap.read {
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
    fn tick(&mut self, now: Timestamp) {
        self.next_tick = now.add(TICK);
        if self.s.housekeeping {
            let aged = self.s.core.expire(now);
            if aged > 0 {
                debug!(entries = aged, "FDB entries aged out");
            }
        }
        self.drop_report.tick(now, self.s.id, &self.ctr);
    }
}

/// Logs (at debug level) a MAC learned or moved from a datagram.
fn log_learning(d: &[u8], src: Ipv4Addr, moved: bool) {
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
