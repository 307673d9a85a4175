//! `vtepd run` in L2 mode (the default): one TAP device per network, bridged over VXLAN. This
//! module opens the devices and sockets for the runner ([`L2Vxlan`]) and is the per-worker
//! dataplane the event loop drives ([`L2Worker`]): its own underlay UDP socket (one of a
//! SO_REUSEPORT group), its own raw send socket and its own queue of every TAP device.
//!
//! The worker hands every frame or datagram to the shared [`Core`] and carries out what the
//! core decided:
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
//! `sys::recv_batch`/`sys::send_batch` (arrays on the stack). The event loop publishes the
//! counters into the worker's own cache-padded slot of the stats board once per round, with
//! relaxed stores. Logging happens only on errors and is rate-limited. `tests/multicore_alloc.rs` checks the no-allocation part with a counting
//! allocator.
//!
//! Workers share nothing but the core: with `--threads N` the daemon runs N of them, and the kernel keeps each flow on one worker (TAP queue selection
//! and SO_REUSEPORT both hash the flow), so a flow is never reordered.

use super::batch::HEADROOM;
use super::batch_gro::{self, Framing, TcpRun, VNET_HDR_LEN};
use super::batch_tso;
use super::dev_port::{DevPort, deliver, flush_run};
use super::device::{self, Tap, Underlay};
use super::event_loop::Dataplane;
use super::handler::NetInfo;
use super::io::{DatagramSocket, DeviceQueue};
use super::pmtu::IcmpListener;
use super::receive::{OnDatagrams, Receiver, drain_socket};
use super::runner::{ControlParts, Held, Mode, Opened};
use super::stats::{Clock, Traffic};
use super::tunnel_tx::TunnelTx;
use super::{housekeeping, socket, tunnel_tx};
use crate::config::{DaemonConfig, stable_mac};
use crate::core::l2::L2;
use crate::core::pmtu::{OurSends, PathMtus};
use crate::core::too_big::{self, TooBig};
use crate::core::{
    Core, CoreConfig, Counters, DropReason, FromDevice, FromTunnel, NetId, Out, Outer, Timestamp,
};
use crate::error::Failure;
use encap::vxlan::HEADER_LEN;
use encap::{MacAddr, Vni};
use socket2::Socket;
use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;
use std::sync::Arc;
use tracing::{debug, info};
use tun_rs::SyncDevice;

/// The L2 VXLAN mode: the device MTU of every network and the underlay's, from the read-only
/// checks.
#[derive(Debug)]
pub struct L2Vxlan {
    mtus: Vec<u16>,
    underlay_mtu: u32,
}

impl Mode for L2Vxlan {
    type Worker = L2Worker;

    fn check(cfg: &DaemonConfig, underlay: &Underlay) -> Result<L2Vxlan, Failure> {
        let mtus = cfg
            .networks
            .iter()
            .map(|n| device::overlay_mtu(&n.dev, n.mtu, underlay, device::VXLAN_MTU_OVERHEAD))
            .collect::<Result<Vec<_>, _>>()?;
        for (n, mtu) in cfg.networks.iter().zip(&mtus) {
            device::warn_if_above_underlay(
                &n.dev,
                *mtu,
                underlay,
                "VXLAN",
                device::VXLAN_MTU_OVERHEAD,
                "larger IPv4 packets with DF and IPv6 packets from it are answered with an ICMP \
                 error carrying the MTU that fits, larger IPv4 packets without DF are cut into \
                 fragments, other frames are dropped",
            );
        }
        Ok(L2Vxlan {
            mtus,
            underlay_mtu: underlay.mtu,
        })
    }

    fn open(self, cfg: &DaemonConfig, clock: Clock) -> Result<Opened<L2Worker>, Failure> {
        let workers = cfg.threads.max(1);
        let udp = socket::bind_udp_group(cfg.local, cfg.port, workers)?;
        let mut taps: Vec<Tap> = Vec::with_capacity(cfg.networks.len());
        for (n, mtu) in cfg.networks.iter().zip(&self.mtus) {
            let tap = device::open_tap(n, *mtu, stable_mac(&n.dev, n.vni, cfg.local), workers)?;
            taps.push(tap);
        }
        let core = Arc::new(
            Core::new(CoreConfig {
                local: cfg.local,
                allow_any_peer: cfg.allow_any_peer,
                networks: cfg
                    .networks
                    .iter()
                    .zip(&taps)
                    .map(|(n, t)| n.to_core(t.mac))
                    .collect(),
            })
            .map_err(|e| Failure::Usage(e.to_string()))?,
        );
        super::install_static(&core, cfg, clock)?;
        for (n, t) in cfg.networks.iter().zip(&taps) {
            info!(
                vni = %n.vni,
                dev = %t.name,
                mtu = t.mtu,
                mac = %t.mac,
                peers = ?n.peers,
                learning = n.learning,
                arp_suppress = n.arp_suppress,
                static_entries = n.fdb.len(),
                created = t.created,
                "network ready"
            );
        }
        let engine = Arc::new(L2::new(
            Arc::clone(&core),
            cfg.networks.iter().map(|n| n.arp_suppress).collect(),
        ));
        let pmtu = Arc::new(PathMtus::new(self.underlay_mtu));
        let mut dataplanes = Vec::with_capacity(workers);
        for (id, sock) in udp.into_iter().enumerate() {
            let listener = (id == 0)
                .then(|| IcmpListener::open(OurSends::Vxlan { port: cfg.port }))
                .flatten();
            let tx = tunnel_tx(cfg, Arc::clone(&pmtu), listener)?;
            let ports = taps.iter().map(|t| port_of(t, id)).collect();
            dataplanes.push(L2Worker::new(Arc::clone(&engine), sock.into(), tx, ports));
        }
        let nets = cfg
            .networks
            .iter()
            .zip(&taps)
            .map(|(n, t)| NetInfo {
                vni: n.vni,
                dev: n.dev.clone(),
                mac: Some(t.mac),
            })
            .collect();
        Ok(Opened {
            workers: dataplanes,
            control: ControlParts {
                core,
                nets,
                routes: None,
                path_mtus: pmtu,
            },
            held: Held {
                routes: None,
                devices: taps.into_iter().map(Into::into).collect(),
            },
            summary: format!("VXLAN on {}:{}", cfg.local, cfg.port),
        })
    }
}

/// Worker `id`'s port on `tap`: its own queue, or (a device with fewer queues than workers)
/// a shared one it only writes to.
fn port_of(tap: &Tap, id: usize) -> DevPort<SyncDevice> {
    let n = tap.queues.len().max(1);
    DevPort::new(
        Arc::clone(&tap.queues[id % n]),
        &tap.name,
        tap.vnet_hdr,
        id < n,
    )
}

/// One L2 worker's dataplane: on TAP queues `D` and sockets `S` (in-memory ones in tests).
pub struct L2Worker<D = SyncDevice, S = Socket> {
    engine: Arc<L2>,
    /// The non-blocking UDP socket VXLAN arrives on, and its receive batch.
    rx: Receiver<S>,
    /// The send side: raw socket, outer header settings, frame slots, GSO socket pool.
    tx: TunnelTx<S>,
    /// The devices, indexed by [`NetId`].
    taps: Vec<DevPort<D>>,
    /// The taps this worker reads: source `1 + k` is `taps[readable[k]]`.
    readable: Vec<usize>,
    ctr: Counters,
    /// The engine's remotes and generated frames for the packet at hand.
    out: Out,
    /// TCP segments of the receive batch waiting to be written to a device as one.
    run: TcpRun,
    /// Traffic per network and per remote.
    traffic: Arc<Traffic>,
}

/// Source 0 is the UDP socket; source `1 + k` the `k`-th TAP queue this worker reads.
const SOCKET: usize = 0;

impl<D, S> std::fmt::Debug for L2Worker<D, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L2Worker")
            .field("taps", &self.taps)
            .field("ctr", &self.ctr)
            .finish_non_exhaustive()
    }
}

impl<D: DeviceQueue, S: DatagramSocket> L2Worker<D, S> {
    /// A worker over `socket` (non-blocking), sending through `tx`, with a port on every TAP.
    pub fn new(
        engine: Arc<L2>,
        socket: S,
        tx: TunnelTx<S>,
        taps: Vec<DevPort<D>>,
    ) -> L2Worker<D, S> {
        let readable = (0..taps.len()).filter(|&i| taps[i].read).collect();
        L2Worker {
            engine,
            rx: Receiver::new(socket),
            tx,
            taps,
            readable,
            ctr: Counters::default(),
            out: Out::with_capacity(1024),
            run: TcpRun::new(Framing::Ethernet),
            traffic: Traffic::detached(),
        }
    }

    /// The network datagram `i`'s VXLAN header names, if this daemon has it.
    fn net_of(&self, i: usize) -> Option<NetId> {
        let v = self.rx.batch.get(i)?.0.get(4..7)?;
        let vni = Vni::new(u32::from_be_bytes([0, v[0], v[1], v[2]])).ok()?;
        self.engine.core().net_by_vni(vni)
    }

    /// Fails the worker once a write found a device gone.
    fn check_devices(&self) -> Result<(), String> {
        self.taps.iter().try_for_each(|t| t.check())
    }

    /// Datagram `i` of the receive batch: to the engine, then to the device.
    fn datagram(&mut self, now: Timestamp, i: usize) {
        let Some((d, m)) = self.rx.batch.get_mut(i) else {
            return;
        };
        let (Some(src), false) = (m.src, m.truncated) else {
            self.ctr.rx_tunnel += 1;
            return self.ctr.drop(DropReason::Truncated);
        };
        let outer = Outer { src, tos: m.tos };
        let (learned, moves) = (self.ctr.learned, self.ctr.mac_moves);
        let v = self.engine.on_remote(now, outer, d, &mut self.ctr);
        if (self.ctr.learned != learned || self.ctr.mac_moves != moves)
            && let Some((d, _)) = self.rx.batch.get(i)
        {
            log_learning(d, src, self.ctr.mac_moves != moves);
        }
        // Drops are counted by the engine (and here in their network when the VNI names one
        // of ours) and summarised by the drop report.
        if let FromTunnel::Drop(r) = v
            && let Some(net) = self.net_of(i)
        {
            self.traffic.dropped(net, r);
        }
        if let FromTunnel::Deliver { net, range } = v {
            self.traffic.tunnel_rx(net, src, 1, range.len() as u64);
            let part = (i, range.start);
            let (batch, ctr) = (&self.rx.batch, &mut self.ctr);
            let framing = Framing::Ethernet;
            deliver(
                &mut self.run,
                &mut self.taps,
                batch,
                net.0,
                part,
                framing,
                now,
                ctr,
            );
        }
    }

    /// Reads frames from TAP `t` until it would block (false) or `budget` frames were taken
    /// (true), queueing their encapsulated copies and sending them in batches; a read error
    /// other than would-block means the device is gone.
    fn drain_tap(&mut self, t: usize, now: Timestamp, budget: usize) -> Result<bool, String> {
        let Some(net) = u16::try_from(t).ok().map(NetId) else {
            return Ok(false);
        };
        let mut more = true;
        let mut taken = 0;
        while taken < budget {
            if !self.tx.txb.has_free_slot() {
                self.tx.flush(now, &mut self.ctr);
            }
            let (slot, buf) = self.tx.txb.next_slot();
            let tap = &self.taps[t];
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
                        let bytes = n.saturating_sub(VNET_HDR_LEN) as u64;
                        self.ctr.rx_device += 1;
                        self.ctr.rx_device_bytes += bytes;
                        self.ctr.drop(DropReason::DeviceOffload);
                        self.traffic.device_rx(net, 1, bytes);
                        self.traffic.dropped(net, DropReason::DeviceOffload);
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
                    self.tx.flush(now, &mut self.ctr);
                    return Err(self.taps[t].read_failed(&e));
                }
            };
            self.tx.txb.commit_slot();
            let frame = &self.tx.txb.slot_mut(slot)[HEADROOM..HEADROOM + n];
            let tso = match tso.map(|v| batch_tso::tso_frame(&v, frame)) {
                None => None,
                Some(Some(t)) => Some(t),
                Some(None) => {
                    self.ctr.rx_device += 1;
                    self.ctr.rx_device_bytes += n as u64;
                    self.ctr.drop(DropReason::DeviceOffload);
                    self.traffic.device_rx(net, 1, n as u64);
                    self.traffic.dropped(net, DropReason::DeviceOffload);
                    taken += 1;
                    continue;
                }
            };
            // A super-frame counts as the frames the kernel would have handed over without
            // TSO (the engine counts one), and as many packets of the budget.
            let more_segs = tso.map_or(0, |t| t.segments() - 1);
            let hdr_len = tso.map_or(0, |t| t.hdr_len);
            let bytes = (n + more_segs * hdr_len) as u64;
            self.ctr.rx_device += more_segs as u64;
            self.ctr.rx_device_bytes += bytes;
            self.traffic.device_rx(net, 1 + more_segs as u64, bytes);
            taken += 1 + more_segs;
            let floods = self.ctr.flood_copies;
            match self
                .engine
                .on_local(now, net, frame, &mut self.out, &mut self.ctr)
            {
                FromDevice::Tunnel => {}
                FromDevice::Answered => {
                    self.taps[t].write_answers(now, &mut self.out.generated, &mut self.ctr);
                    continue;
                }
                FromDevice::Drop(r) => {
                    self.traffic.dropped(net, r);
                    continue;
                }
                FromDevice::Held => continue,
            }
            // Every segment is flooded as the super-frame is.
            self.ctr.flood_copies += (self.ctr.flood_copies - floods) * more_segs as u64;
            if let Some((dst, fit)) = self.tx.send_copies(
                now,
                net,
                &self.out.remotes,
                slot,
                n,
                tso.as_ref(),
                &mut self.ctr,
            ) {
                self.too_big(now, t, slot, n, dst, fit);
            }
        }
        self.tx.flush(now, &mut self.ctr);
        Ok(more)
    }
}

impl<D: DeviceQueue, S: DatagramSocket> L2Worker<D, S> {
    /// The frame in send slot `slot` (`len` bytes) from TAP `t` did not fit the path toward
    /// `dst` (at most `fit` bytes do): the core answers it (an ICMP error back into the TAP,
    /// from the original destination) or cuts it into fragments, sent here.
    fn too_big(
        &mut self,
        now: Timestamp,
        t: usize,
        slot: usize,
        len: usize,
        dst: Ipv4Addr,
        fit: usize,
    ) {
        let frame = &self.tx.txb.slot_mut(slot)[HEADROOM..HEADROOM + len];
        let drops = self.ctr.drops;
        let d = too_big::on_too_big(
            now,
            Framing::Ethernet,
            frame,
            fit,
            true,
            &mut self.out,
            &mut self.ctr,
        );
        self.traffic
            .dropped_since(net_id(t), &drops, &self.ctr.drops);
        match d {
            TooBig::Answered => {
                self.taps[t].write_answers(now, &mut self.out.generated, &mut self.ctr);
            }
            TooBig::Fragment(f) => {
                let vni = self.out.remotes.vni();
                self.tx
                    .send_fragments(now, net_id(t), vni, dst, slot, len, &f, &mut self.ctr);
            }
            TooBig::Drop => {}
        }
    }
}

impl<D: DeviceQueue, S: DatagramSocket> OnDatagrams for L2Worker<D, S> {
    type Sock = S;
    fn receiver(&mut self) -> (&mut Receiver<S>, &mut Counters) {
        (&mut self.rx, &mut self.ctr)
    }
    fn on_datagram(&mut self, now: Timestamp, i: usize) {
        self.datagram(now, i);
    }
    fn end_batch(&mut self, now: Timestamp) {
        // The arena is reused by the next receive: nothing may wait past the batch.
        let batch = &self.rx.batch;
        flush_run(
            &mut self.run,
            &mut self.taps,
            |p| batch.at(p),
            now,
            &mut self.ctr,
        );
    }
}

impl<D: DeviceQueue, S: DatagramSocket> Dataplane for L2Worker<D, S> {
    fn sources(&self) -> Vec<RawFd> {
        std::iter::once(self.rx.sock.fd())
            .chain(self.readable.iter().map(|&t| self.taps[t].dev.fd()))
            .collect()
    }

    fn drain(&mut self, i: usize, now: Timestamp, budget: usize) -> Result<bool, String> {
        let more = match i {
            SOCKET => drain_socket(self, now, budget),
            _ => match self.readable.get(i - 1) {
                Some(&t) => self.drain_tap(t, now, budget)?,
                None => false,
            },
        };
        self.check_devices()?;
        Ok(more)
    }

    fn tick(&mut self, now: Timestamp, leader: bool) {
        self.rx.tick(&mut self.ctr, &mut |_| {});
        self.tx.tick(now, leader, &mut self.ctr);
        if leader {
            housekeeping::tick(self.engine.core(), now);
        }
    }

    fn counters(&self) -> &Counters {
        &self.ctr
    }

    fn attach(&mut self, traffic: Arc<Traffic>) {
        self.tx.attach(Arc::clone(&traffic));
        for (t, port) in self.taps.iter_mut().enumerate() {
            port.attach(Arc::clone(&traffic), net_id(t));
        }
        self.traffic = traffic;
    }
}

/// The network of TAP `t` (the TAPs are in [`NetId`] order; a NetId is a u16, so are they).
fn net_id(t: usize) -> NetId {
    NetId(t as u16)
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
