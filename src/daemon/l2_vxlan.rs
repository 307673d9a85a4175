//! `vtepd run` in L2 mode (the default): one TAP device per network, bridged over VXLAN. This
//! module opens the devices and sockets for the runner ([`L2Vxlan`]) and is the per-worker
//! dataplane the event loop drives ([`L2Worker`]): its own underlay UDP socket of each port the
//! networks use (each one of a SO_REUSEPORT group; a network takes datagrams from its own port
//! only), its own raw send socket and its own queue of every TAP device.
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
use super::capture::{Received, Seen, WorkerCapture, capture_tunnel};
use super::dev_port::{DevPort, deliver, flush_run, vxlan_partial};
use super::device::OwnedDevice;
use super::device::{self, Tap, Underlay};
use super::event_loop::Dataplane;
use super::handler::NetInfo;
use super::inject::Injector;
use super::io::{DatagramSocket, DeviceQueue};
use super::pmtu::IcmpListener;
use super::receive::{OnDatagrams, Receiver, drain_socket};
use super::reload::NetworkSet;
use super::runner::{ControlParts, Held, Mode, Opened};
use super::stats::{Clock, StatsBoard, Traffic};
use super::trace::WorkerTrace;
use super::tunnel_tx::TunnelTx;
use super::{housekeeping, socket, tunnel_tx};
use crate::config::{DaemonConfig, NetConfig, stable_mac};
use crate::core::capture::Link;
use crate::core::l2::L2;
use crate::core::pmtu::{OurSends, PathMtus};
use crate::core::too_big::{self, TooBig};
use crate::core::trace::{Headers, Origin, Outcome};
use crate::core::{
    Core, CoreConfig, Counters, DropReason, FromDevice, FromTunnel, NetId, Out, Outer, Timestamp,
};
use crate::error::Failure;
use crossbeam_queue::SegQueue;
use encap::VxlanConfig;
use encap::vxlan::HEADER_LEN;
use encap::{MacAddr, Vni};
use socket2::Socket;
use std::io::ErrorKind;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::mpsc;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tracing::{debug, info};
use tun_rs::SyncDevice;

/// The L2 VXLAN mode: the device MTU of every network and the underlay, from the read-only
/// checks.
#[derive(Debug)]
pub struct L2Vxlan {
    mtus: Vec<u16>,
    underlay: Underlay,
}

/// Networks a reload may add over the daemon's life, beyond those it starts with (each takes
/// a new [`NetId`]; a removed network's id is not reused).
pub const ROOM: usize = 1024;

impl Mode for L2Vxlan {
    type Worker = L2Worker;

    fn check(cfg: &DaemonConfig, underlay: &Underlay) -> Result<L2Vxlan, Failure> {
        let mtus = cfg
            .networks
            .iter()
            .map(|n| {
                device::overlay_mtu(
                    &n.dev,
                    n.mtu,
                    underlay,
                    device::vxlan_mtu_overhead(cfg.local),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (n, mtu) in cfg.networks.iter().zip(&mtus) {
            device::warn_if_above_underlay(
                &n.dev,
                *mtu,
                underlay,
                "VXLAN",
                device::vxlan_mtu_overhead(cfg.local),
                "larger IPv4 packets with DF and IPv6 packets from it are answered with an ICMP \
                 error carrying the MTU that fits, larger IPv4 packets without DF are cut into \
                 fragments, other frames are dropped",
            );
        }
        Ok(L2Vxlan {
            mtus,
            underlay: underlay.clone(),
        })
    }

    fn open(self, cfg: &DaemonConfig, clock: Clock) -> Result<Opened<L2Worker>, Failure> {
        let workers = cfg.threads.max(1);
        // One SO_REUSEPORT group per port the networks use; each worker gets one of each.
        let ports = cfg.ports();
        let mut groups = Vec::with_capacity(ports.len());
        for &port in &ports {
            let zero6 = cfg.zero_csum6_rx(port);
            groups.push((
                port,
                socket::bind_udp_group(cfg.local, port, workers, zero6)?,
            ));
        }
        let mut taps: Vec<Tap> = Vec::with_capacity(cfg.networks.len());
        for (n, mtu) in cfg.networks.iter().zip(&self.mtus) {
            let tap = device::open_tap(n, *mtu, stable_mac(&n.dev, n.vni, cfg.local), workers)?;
            taps.push(tap);
        }
        let core = Arc::new(
            Core::with_room(
                CoreConfig {
                    local: cfg.local,
                    allow_any_peer: cfg.allow_any_peer,
                    networks: cfg
                        .networks
                        .iter()
                        .zip(&taps)
                        .map(|(n, t)| n.to_core(t.mac, cfg.port_of(n)))
                        .collect(),
                },
                ROOM,
            )
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
        let pmtu = Arc::new(PathMtus::new(self.underlay.mtu));
        let mut dataplanes = Vec::with_capacity(workers);
        let mut queues = Vec::with_capacity(workers);
        let mut per_worker: Vec<_> = groups
            .into_iter()
            .map(|(port, g)| g.into_iter().map(move |s| (port, Socket::from(s))))
            .collect();
        for id in 0..workers {
            let mut socks = per_worker.iter_mut().filter_map(Iterator::next);
            let Some(first) = socks.next() else {
                return Err(Failure::Runtime("no UDP socket for a worker".into()));
            };
            let listener = (id == 0)
                .then(|| {
                    IcmpListener::open_for(
                        OurSends::Vxlan {
                            ports: ports.clone(),
                        },
                        cfg.local.is_ipv6(),
                    )
                })
                .flatten();
            let tx = tunnel_tx(cfg, &core, Arc::clone(&pmtu), listener)?;
            let devs = taps.iter().map(|t| port_of(t, id)).collect();
            let changes = Arc::new(SegQueue::new());
            queues.push(Arc::clone(&changes));
            let w = socks.fold(
                L2Worker::new(Arc::clone(&engine), first, tx, devs),
                |w, (port, sock)| w.with_socket(port, sock),
            );
            dataplanes.push(w.with_changes(changes));
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
        let set = Arc::new(L2Networks {
            core: Arc::clone(&core),
            underlay: self.underlay,
            queues,
            board: std::sync::OnceLock::new(),
            devices: Mutex::new(
                cfg.networks
                    .iter()
                    .map(|n| n.vni)
                    .zip(taps.into_iter().map(Into::into))
                    .collect(),
            ),
        });
        let set: Arc<dyn NetworkSet> = set;
        Ok(Opened {
            workers: dataplanes,
            control: ControlParts {
                core,
                nets,
                routes: None,
                path_mtus: pmtu,
                networks: Some(Arc::clone(&set)),
                injector: Injector::L2(Arc::clone(&engine)),
            },
            held: Held {
                routes: None,
                devices: Vec::new(),
                networks: Some(set),
            },
            summary: format!("VXLAN on {}:{}", cfg.local, join_ports(&ports)),
        })
    }
}

/// The ports listened on, as the start-up line shows them (`4789` or `{4789,8472}`).
fn join_ports(ports: &[u16]) -> String {
    match ports {
        [p] => p.to_string(),
        ps => {
            let all: Vec<String> = ps.iter().map(u16::to_string).collect();
            format!("{{{}}}", all.join(","))
        }
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

/// A change to a running worker's networks.
#[derive(Debug)]
pub enum NetChange<D> {
    /// A network added: its id (the next one), its port on the new device and its VXLAN
    /// settings.
    Add {
        /// The network.
        id: NetId,
        /// Its VNI.
        vni: Vni,
        /// This worker's port on its device.
        port: DevPort<D>,
        /// Its outer-header settings.
        vxlan: VxlanConfig,
    },
    /// A network removed: the worker stops reading its device and says so on `done`.
    Remove {
        /// The network.
        id: NetId,
        /// Told once the worker no longer reads or writes the device.
        done: mpsc::Sender<()>,
    },
}

/// How long a removal waits for every worker to let go of the device.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// The networks of a running L2 daemon (see [`NetworkSet`]): every TAP device, those it
/// started with and those added since, created and removed by the code that does so at start
/// and exit ([`device::open_tap`], [`device::release`]); changes reach each worker through its
/// queue, taken between two rounds of its loop.
#[derive(Debug)]
pub struct L2Networks {
    core: Arc<Core>,
    underlay: Underlay,
    /// Each worker's queue of changes, by worker index.
    queues: Vec<Arc<SegQueue<NetChange<SyncDevice>>>>,
    /// The devices by VNI.
    devices: Mutex<Vec<(Vni, OwnedDevice)>>,
    /// Where the workers count per network: a network added gets its cells first.
    board: std::sync::OnceLock<Arc<StatsBoard>>,
}

impl L2Networks {
    fn devices(&self) -> std::sync::MutexGuard<'_, Vec<(Vni, OwnedDevice)>> {
        self.devices.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl NetworkSet for L2Networks {
    fn add(&self, cfg: &DaemonConfig, n: &NetConfig) -> Result<NetInfo, String> {
        let mtu = device::overlay_mtu(
            &n.dev,
            n.mtu,
            &self.underlay,
            device::vxlan_mtu_overhead(cfg.local),
        )
        .map_err(|e| e.message().to_owned())?;
        let mac = stable_mac(&n.dev, n.vni, cfg.local);
        let tap = device::open_tap(n, mtu, mac, self.queues.len().max(1))
            .map_err(|e| e.message().to_owned())?;
        let id = match self.core.add_network(&n.to_core(tap.mac, cfg.port_of(n))) {
            Ok(id) => id,
            Err(e) => {
                device::release(vec![tap.into()]);
                return Err(e.to_string());
            }
        };
        // ARP suppression and the rest of the settings, as at start.
        let _ = self.core.set_net_settings(n.vni, &n.settings());
        if let Some(b) = self.board.get() {
            b.ensure_networks(usize::from(id.0) + 1);
        }
        let vxlan = n.outer.vxlan(cfg.local, cfg.port_of(n));
        for (w, q) in self.queues.iter().enumerate() {
            q.push(NetChange::Add {
                id,
                vni: n.vni,
                port: port_of(&tap, w),
                vxlan,
            });
        }
        info!(
            vni = %n.vni, dev = %tap.name, mtu = tap.mtu, mac = %tap.mac, peers = ?n.peers,
            net_id = id.0, created = tap.created, "network added"
        );
        let info = NetInfo {
            vni: n.vni,
            dev: n.dev.clone(),
            mac: Some(tap.mac),
        };
        self.devices().push((n.vni, tap.into()));
        Ok(info)
    }

    fn remove(&self, vni: Vni) -> Result<(), String> {
        let id = self.core.remove_network(vni).map_err(|e| e.to_string())?;
        let (tx, rx) = mpsc::channel();
        for q in &self.queues {
            q.push(NetChange::Remove {
                id,
                done: tx.clone(),
            });
        }
        drop(tx);
        let end = std::time::Instant::now() + RELEASE_WAIT;
        for _ in &self.queues {
            let left = end.saturating_duration_since(std::time::Instant::now());
            if rx.recv_timeout(left).is_err() {
                return Err(format!(
                    "network VNI {vni} is out of the forwarding tables, but a worker did not \
                     let go of its device within {}s: the device is left in place until vtepd \
                     stops",
                    RELEASE_WAIT.as_secs()
                ));
            }
        }
        // A worker may have learned from a packet of it before it was told.
        self.core.forget_vni(vni);
        let dev = {
            let mut devs = self.devices();
            let at = devs.iter().position(|(v, _)| *v == vni);
            at.map(|i| devs.remove(i).1)
        };
        if let Some(d) = dev {
            info!(%vni, dev = %d.name, net_id = id.0, "network removed");
            device::release(vec![d]);
        }
        Ok(())
    }

    fn count_into(&self, board: Arc<StatsBoard>) {
        let _ = self.board.set(board);
    }

    fn release(&self) {
        let all = std::mem::take(&mut *self.devices());
        device::release(all.into_iter().map(|(_, d)| d).collect());
    }
}

/// One L2 worker's dataplane: on TAP queues `D` and sockets `S` (in-memory ones in tests).
pub struct L2Worker<D = SyncDevice, S = Socket> {
    engine: Arc<L2>,
    /// The non-blocking UDP sockets VXLAN arrives on (one per port the networks use), and
    /// their receive batch.
    rx: Receiver<S>,
    /// The send side: raw socket, outer header settings, frame slots, GSO socket pool.
    tx: TunnelTx<S>,
    /// The devices, indexed by [`NetId`] (a network removed at run time leaves its slot
    /// empty: ids keep their places).
    taps: Vec<Option<DevPort<D>>>,
    /// The taps this worker reads. Its sources are its UDP sockets (`0..sockets`, one per port),
    /// then these: source `sockets + k` is `taps[readable[k]]`.
    readable: Vec<usize>,
    /// Networks added and removed at run time, taken between two rounds.
    changes: Option<Arc<SegQueue<NetChange<D>>>>,
    ctr: Counters,
    /// The engine's remotes and generated frames for the packet at hand.
    out: Out,
    /// TCP segments of the receive batch waiting to be written to a device as one.
    run: TcpRun,
    /// Traffic per network and per remote.
    traffic: Arc<Traffic>,
    /// `vtepd trace`: whether a session is armed, read once per batch.
    trace: WorkerTrace,
}

impl<D, S> std::fmt::Debug for L2Worker<D, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L2Worker")
            .field("taps", &self.taps)
            .field("ctr", &self.ctr)
            .finish_non_exhaustive()
    }
}

impl<D: DeviceQueue, S: DatagramSocket> L2Worker<D, S> {
    /// A worker over `socket` (non-blocking, bound to UDP port `socket.0`), sending through
    /// `tx`, with a port on every TAP.
    pub fn new(
        engine: Arc<L2>,
        socket: (u16, S),
        tx: TunnelTx<S>,
        taps: Vec<DevPort<D>>,
    ) -> L2Worker<D, S> {
        let readable = (0..taps.len()).filter(|&i| taps[i].read).collect();
        L2Worker {
            engine,
            rx: Receiver::on_port(socket.0, socket.1),
            tx,
            taps: taps.into_iter().map(Some).collect(),
            readable,
            changes: None,
            ctr: Counters::default(),
            out: Out::with_capacity(1024),
            run: TcpRun::new(Framing::Ethernet),
            traffic: Traffic::detached(),
            trace: WorkerTrace::default(),
        }
    }

    /// Also receives on `sock`, bound to UDP port `port` (the networks of that port).
    pub fn with_socket(mut self, port: u16, sock: S) -> L2Worker<D, S> {
        self.rx = self.rx.with_socket(port, sock);
        self
    }

    /// Takes networks added and removed at run time from `changes`.
    pub fn with_changes(mut self, changes: Arc<SegQueue<NetChange<D>>>) -> L2Worker<D, S> {
        self.changes = Some(changes);
        self
    }

    /// The network datagram `i`'s VXLAN header names, if this daemon has it.
    fn net_of(&self, i: usize) -> Option<NetId> {
        let v = self.rx.batch.get(i)?.0.get(4..7)?;
        let vni = Vni::new(u32::from_be_bytes([0, v[0], v[1], v[2]])).ok()?;
        self.engine.core().net_by_vni(vni)
    }

    /// Fails the worker once a write found a device gone.
    fn check_devices(&self) -> Result<(), String> {
        self.taps.iter().flatten().try_for_each(|t| t.check())
    }

    /// Datagram `i` of the receive batch: to the engine, then to the device.
    fn datagram(&mut self, now: Timestamp, i: usize) {
        let port = self.rx.port();
        let Some((d, m)) = self.rx.batch.get_mut(i) else {
            return;
        };
        let (Some(src), false) = (m.src, m.truncated) else {
            self.ctr.rx_tunnel += 1;
            self.ctr.drop(DropReason::Truncated);
            let h = || Headers::of_vxlan(d);
            return self
                .trace
                .receive_lost(now, m, Some(port), h, DropReason::Truncated);
        };
        let outer = Outer {
            src: src.into(),
            tos: m.tos,
            port,
        };
        let (learned, moves) = (self.ctr.learned, self.ctr.mac_moves);
        let origin = Origin::Tunnel {
            src,
            src_port: Some(m.src_port),
            dst_port: Some(port),
            tos: m.tos,
        };
        let (m_src_port, m_tos) = (m.src_port, m.tos);
        // A capture keeps it as received (the engine may rewrite its inner ECN).
        let captured = self.trace.armed() && self.tx.capture.keep(&origin, d, Headers::of_vxlan);
        let v = if self.trace.armed() && self.trace.begin(origin, || Headers::of_vxlan(d)) {
            let t = self.trace.recorder();
            let v = self
                .engine
                .on_remote_traced(now, outer, d, &mut self.ctr, t);
            self.trace.finish_tunnel(now, &v);
            v
        } else {
            self.engine.on_remote(now, outer, d, &mut self.ctr)
        };
        if (self.ctr.learned != learned || self.ctr.mac_moves != moves)
            && let Some((d, _)) = self.rx.batch.get(i)
        {
            log_learning(d, src, self.ctr.mac_moves != moves);
        }
        if self.trace.armed() {
            let local = self.tx.local();
            let d = self.rx.batch.get(i).map_or(&[][..], |(d, _)| d);
            let kept = Received::of(src, m_src_port, local, port, m_tos)
                .filter(|_| captured)
                .map(|r| (Some(r), self.tx.capture.kept()));
            capture_tunnel(&self.tx.capture, origin, &v, kept, d, Link::Ethernet, false);
        }
        // Drops are counted by the engine (and here in their network when the VNI names one
        // of ours) and summarised by the drop report.
        if let FromTunnel::Drop(r) = v
            && let Some(net) = self.net_of(i)
        {
            self.traffic.dropped(net, r);
        }
        if let FromTunnel::Deliver { net, range } = v {
            let len = range.len() as u64;
            self.rx.accepted.add(&self.traffic, net, outer.src, 1, len);
            let part = (i, range.start);
            let (batch, ctr) = (&self.rx.batch, &mut self.ctr);
            let partial = vxlan_partial(batch, part);
            let framing = Framing::Ethernet;
            deliver(
                &mut self.run,
                &mut self.taps,
                batch,
                (net.0, part),
                partial,
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
            let Some(tap) = self.taps.get(t).and_then(Option::as_ref) else {
                return Ok(false);
            };
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
                        if self.trace.armed() {
                            let vni = self.engine.core().vni_of(net).map_or(0, Vni::get);
                            let frame = buf.get(HEADROOM..at + n).unwrap_or_default();
                            self.trace
                                .device_lost(now, vni, || Headers::of_frame(frame));
                        }
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
                    return Err(self.taps[t]
                        .as_ref()
                        .map_or_else(|| e.to_string(), |p| p.read_failed(&e)));
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
                    if self.trace.armed() {
                        let vni = self.engine.core().vni_of(net).map_or(0, Vni::get);
                        self.trace
                            .device_lost(now, vni, || Headers::of_frame(frame));
                    }
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
            let v = if self.trace.armed() && {
                let vni = self.engine.core().vni_of(net).map_or(0, Vni::get);
                self.trace
                    .begin(Origin::Device { vni }, || Headers::of_frame(frame))
            } {
                let (out, ctr) = (&mut self.out, &mut self.ctr);
                let t = self.trace.recorder();
                let v = self.engine.on_local_traced(now, net, frame, out, ctr, t);
                self.trace.finish_device(now, v, &self.out.remotes);
                v
            } else {
                self.engine
                    .on_local(now, net, frame, &mut self.out, &mut self.ctr)
            };
            if self.trace.armed() {
                let vni = self.engine.core().vni_of(net).map_or(0, Vni::get);
                let outcome = Outcome::from_device(v, &self.out.remotes);
                let seen = Seen::device_in(Link::Ethernet, vni, &outcome, None);
                self.tx.capture.device_read(seen, frame, 0, tso.as_ref());
            }
            match v {
                FromDevice::Tunnel => {}
                FromDevice::Answered => {
                    let vni = self.engine.core().vni_of(net).map_or(0, Vni::get);
                    let out = &self.out.generated;
                    self.tx.capture.answers(out, 0, Link::Ethernet, vni);
                    if let Some(p) = self.taps[t].as_mut() {
                        p.write_answers(now, &mut self.out.generated, &mut self.ctr);
                    }
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
        dst: IpAddr,
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
                let vni = self.engine.core().vni_of(net_id(t)).map_or(0, Vni::get);
                let out = &self.out.generated;
                self.tx.capture.answers(out, 0, Link::Ethernet, vni);
                if let Some(p) = self.taps[t].as_mut() {
                    p.write_answers(now, &mut self.out.generated, &mut self.ctr);
                }
            }
            TooBig::Fragment(f) => {
                let vni = self.out.remotes.vni();
                self.tx.send_fragments(
                    now,
                    net_id(t),
                    vni,
                    dst.into(),
                    slot,
                    len,
                    &f,
                    &mut self.ctr,
                );
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
        self.rx.accepted.flush(&self.traffic);
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
        self.rx
            .fds()
            .chain(
                self.readable
                    .iter()
                    .filter_map(|&t| self.taps[t].as_ref())
                    .map(|p| p.dev.fd()),
            )
            .collect()
    }

    fn drain(&mut self, i: usize, now: Timestamp, budget: usize) -> Result<bool, String> {
        self.trace.refresh();
        self.tx.capture.refresh(&self.trace, now);
        let sockets = self.rx.sockets();
        let more = if i < sockets {
            drain_socket(self, i, now, budget)
        } else {
            match self.readable.get(i - sockets) {
                Some(&t) => self.drain_tap(t, now, budget)?,
                None => false,
            }
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

    fn changes_waiting(&self) -> bool {
        self.changes.as_ref().is_some_and(|q| !q.is_empty())
    }

    fn apply_changes(&mut self) {
        let Some(q) = self.changes.clone() else {
            return;
        };
        while let Some(c) = q.pop() {
            match c {
                NetChange::Add {
                    id,
                    vni,
                    port,
                    vxlan,
                } => {
                    // Ids are given in order; one the core gave and took back is an empty slot.
                    let i = usize::from(id.0);
                    if self.taps.len() <= i {
                        self.taps.resize_with(i + 1, || None);
                    }
                    let mut port = port;
                    port.attach(Arc::clone(&self.traffic), id);
                    self.taps[i] = Some(port);
                    self.tx.set_network(vni, vxlan);
                }
                NetChange::Remove { id, done } => {
                    // The loop has unregistered the queue: closing our handle on it is safe.
                    if let Some(slot) = self.taps.get_mut(usize::from(id.0)) {
                        *slot = None;
                    }
                    let _ = done.send(());
                }
            }
        }
        self.readable = (0..self.taps.len())
            .filter(|&i| self.taps[i].as_ref().is_some_and(|p| p.read))
            .collect();
    }

    fn attach_trace(&mut self, trace: WorkerTrace, capture: WorkerCapture) {
        self.trace = trace;
        self.tx.capture = capture;
    }

    fn attach(&mut self, traffic: Arc<Traffic>) {
        self.tx.attach(Arc::clone(&traffic));
        for (t, port) in self.taps.iter_mut().enumerate() {
            if let Some(port) = port {
                port.attach(Arc::clone(&traffic), net_id(t));
            }
        }
        self.traffic = traffic;
    }
}

/// The network of TAP `t` (the TAPs are in [`NetId`] order; a NetId is a u16, so are they).
fn net_id(t: usize) -> NetId {
    NetId(t as u16)
}

/// Logs (at debug level) a MAC learned or moved from a datagram.
fn log_learning(d: &[u8], src: IpAddr, moved: bool) {
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
