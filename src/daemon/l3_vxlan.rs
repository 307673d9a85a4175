//! `vtepd run --mode l3 --encap vxlan` (flannel-style): one TUN device whose IP packets travel
//! as Ethernet frames over VXLAN. This module opens the device and sockets for the runner
//! ([`L3Vxlan`]) and is the per-worker dataplane the event loop drives ([`L3VxWorker`]). vtepd is the Ethernet endpoint itself: it frames each packet
//! toward its next hop's MAC (core::l3vx resolves it: ARP, IPv6 Neighbor Discovery with
//! `--address6`, static `--neigh`), forwards the frame
//! through the shared core (FDB, or head-end replication), and unwraps frames addressed to it into
//! the TUN. The thin I/O part lives here; every decision is the core's.
//!
//! Kernel routes for every `--route` are installed on the TUN (netlink, removed on exit), so the
//! host needs no `ip route` commands. The device's IPv6 is `--address6` alone (no link-local
//! address, so no router solicitations), or off without it.
//!
//! # Dataplane
//! `--threads N` workers, each with its own TUN queue (multi-queue TUN), its own SO_REUSEPORT
//! UDP socket, raw send socket, buffers and counters; they share the core and the
//! L3 engine (lock-free neighbour reads; only an unresolved next hop takes the pending queue's
//! lock). The kernel keeps a flow on one queue and one socket, so no flow is reordered.
//! Exactly one worker runs the housekeeping (FDB and neighbour ageing, ARP retries).
//! - TUN -> tunnel: the TUN has offloads (virtio-net header, TCP TSO over IPv4 and IPv6 and
//!   checksum offload only; the kernel segments anything else first). Each read lands in a send slot
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

use super::batch::{HEADROOM, MAX_PACKET};
use super::batch_gro::{self, Framing, MAX_HEADER, TcpRun, VNET_HDR_LEN};
use super::batch_tso::{self, TsoFrame};
use super::capture::{Received, Seen, WorkerCapture, capture_tunnel};
use super::dev_port::{DevPort, deliver, flush_run, vxlan_partial};
use super::device::{Underlay, overlay_mtu, vxlan_mtu_overhead, warn_if_above_underlay};
use super::event_loop::Dataplane;
use super::handler::NetInfo;
use super::inject::Injector;
use super::io::{DatagramSocket, DeviceQueue};
use super::netlink::{KernelRoutes, RouteService};
use super::pmtu::IcmpListener;
use super::receive::{OnDatagrams, Receiver, drain_socket};
use super::runner::{ControlParts, Held, Mode, Opened};
use super::stats::{Clock, Traffic};
use super::trace::WorkerTrace;
use super::tun;
use super::tun_ipv6::Ipv6Setup;
use super::tunnel_tx::TunnelTx;
use super::{housekeeping, socket, tunnel_tx};
use crate::config::{DaemonConfig, Ipv4Cidr, stable_mac};
use crate::core::arp::{FrameTo, write_ip_header};
use crate::core::capture::Link;
use crate::core::l3vx::{L3Vx, L3VxConfig};
use crate::core::pmtu::{OurSends, PathMtus};
use crate::core::route::Routes;
use crate::core::too_big::{self, TooBig};
use crate::core::trace::{Headers, Origin, Outcome};
use crate::core::{
    Core, CoreConfig, Counters, DropReason, FromDevice, FromTunnel, NetId, Out, Outer, Timestamp,
};
use crate::error::Failure;
use socket2::Socket;
use std::io::{self, ErrorKind};
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use tracing::info;
use tun_rs::SyncDevice;

/// Our single network.
const NET: NetId = NetId(0);
/// Ethernet header vtepd puts in front of each IP packet.
const ETH: usize = encap::ethernet::HEADER_LEN;
/// Source 0 is the UDP socket, source 1 the TUN queue.
const SOCKET: usize = 0;
const TUN: usize = 1;

/// The L3 VXLAN mode: the settings its read-only checks derive.
#[derive(Debug)]
pub struct L3Vxlan {
    mtu: u16,
    underlay_mtu: u32,
    address: Ipv4Cidr,
    routes: Arc<Routes>,
}

impl Mode for L3Vxlan {
    type Worker = L3VxWorker;

    fn check(cfg: &DaemonConfig, underlay: &Underlay) -> Result<L3Vxlan, Failure> {
        let [n] = cfg.networks.as_slice() else {
            return Err(Failure::Usage(
                "--mode l3 runs one TUN device: configure exactly one network".into(),
            ));
        };
        let address = n
            .address
            .ok_or_else(|| Failure::Usage("--address is required".into()))?;
        let mtu = overlay_mtu(&n.dev, n.mtu, underlay, vxlan_mtu_overhead(cfg.local))?;
        warn_if_above_underlay(
            &n.dev,
            mtu,
            underlay,
            "VXLAN",
            vxlan_mtu_overhead(cfg.local),
            "larger packets from it with DF are answered with an ICMP \"fragmentation needed\" \
             carrying the MTU that fits, those without DF are cut into fragments",
        );
        let routes = Arc::new(
            Routes::with_overlay_routes(cfg.local_v4(), n.address6.is_some(), &n.routes)
                .map_err(|e| Failure::Usage(format!("route: {e}")))?,
        );
        Ok(L3Vxlan {
            mtu,
            underlay_mtu: underlay.mtu,
            address,
            routes,
        })
    }

    fn open(self, cfg: &DaemonConfig, clock: Clock) -> Result<Opened<L3VxWorker>, Failure> {
        let n = &cfg.networks[0];
        let rt = |what: &str, e: io::Error| Failure::Runtime(format!("{what}: {e}"));
        // One queue per worker (an existing single-queue device gives one: one worker then).
        // IPv6 is off on the device without an address of vtepd's, and has only that one
        // with it: the kernel's own link-local chatter never reaches the engine.
        let ipv6 = n.address6.map_or(Ipv6Setup::Off, Ipv6Setup::Only);
        let tun = tun::open_tun(
            &n.dev,
            self.mtu,
            Some(self.address),
            ipv6,
            true,
            cfg.threads.max(1),
        )?;
        // tun-rs turns on TSO for both IP versions (and USO) with the header; the workers
        // segment TCP super-packets of either IP version and complete partial checksums, so
        // keep exactly those: the kernel segments UDP before handing it over. The flags are
        // device-wide.
        let offloads = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
        crate::sys::tun_set_offload(&*tun.dev, offloads)
            .map_err(|e| rt(&format!("cannot set the offloads of {}", tun.name), e))?;
        let udp_port = cfg.port_of(n);
        let zero6 = cfg.zero_csum6_rx(udp_port);
        let udp = socket::bind_udp_group(cfg.local, udp_port, tun.queues.len(), zero6)?;
        let kernel = KernelRoutes::new(&tun.name, false)
            .map_err(|e| Failure::Runtime(format!("device {}: {e}", tun.name)))?;
        let service = Arc::new(
            RouteService::new(Arc::clone(&self.routes), kernel)
                .map_err(|e| Failure::Runtime(e.to_string()))?,
        );
        let own_mac = stable_mac(&n.dev, n.vni, cfg.local);
        let core = Arc::new(
            Core::new(CoreConfig {
                local: cfg.local,
                allow_any_peer: cfg.allow_any_peer,
                networks: vec![n.to_core(own_mac, udp_port)],
            })
            .map_err(|e| Failure::Usage(e.to_string()))?,
        );
        super::install_static(&core, cfg, clock)?;
        let address = self.address;
        let mut l3 = L3VxConfig::new(own_mac, address.addr, address.prefix);
        if let Some(a6) = n.address6 {
            l3 = l3.with_address6(a6.addr, a6.prefix);
        }
        let engine = Arc::new(L3Vx::new(
            Arc::clone(&core),
            NET,
            l3,
            Arc::clone(&self.routes),
        ));
        info!(
            vni = %n.vni,
            dev = %tun.name,
            mtu = tun.mtu,
            mac = %own_mac,
            address = %address,
            address6 = ?n.address6,
            peers = ?n.peers,
            routes = self.routes.list().len(),
            static_neighbours = n.neigh.len(),
            created = tun.created,
            "network ready (peers reach {} at MAC {own_mac})",
            address.addr
        );
        let pmtu = Arc::new(PathMtus::new(self.underlay_mtu));
        let mut workers = Vec::with_capacity(tun.queues.len());
        for (id, (sock, queue)) in udp.into_iter().zip(&tun.queues).enumerate() {
            let listener = (id == 0)
                .then(|| {
                    IcmpListener::open_for(
                        OurSends::Vxlan {
                            ports: vec![udp_port],
                        },
                        cfg.local.is_ipv6(),
                    )
                })
                .flatten();
            let tx = tunnel_tx(cfg, &core, Arc::clone(&pmtu), listener)?;
            let port = DevPort::new(Arc::clone(queue), &tun.name, true, true);
            let sock = (udp_port, sock.into());
            workers.push(L3VxWorker::new(Arc::clone(&engine), sock, tx, port));
        }
        Ok(Opened {
            workers,
            control: ControlParts {
                core,
                nets: vec![NetInfo {
                    vni: n.vni,
                    dev: n.dev.clone(),
                    mac: Some(own_mac),
                }],
                routes: Some(Arc::clone(&service)),
                path_mtus: pmtu,
                networks: None,
                injector: Injector::L3Vx(Arc::clone(&engine)),
            },
            held: Held {
                routes: Some(service),
                devices: vec![tun.into()],
                networks: None,
            },
            summary: format!("L3 over VXLAN on {}:{udp_port}", cfg.local),
        })
    }
}

/// One L3 VXLAN worker's dataplane: its UDP socket and its TUN queue (`S` and `D`: in-memory
/// ones in tests).
pub struct L3VxWorker<D = SyncDevice, S = Socket> {
    engine: Arc<L3Vx>,
    /// The UDP socket VXLAN arrives on, and its receive batch.
    rx: Receiver<S>,
    tx: TunnelTx<S>,
    /// This worker's queue of the TUN device (opened with offloads), as a one-port slice.
    tun: [DevPort<D>; 1],
    ctr: Counters,
    /// The engine's remotes and generated frames for the packet at hand.
    out: Out,
    /// Decapsulated TCP segments waiting for the TUN, to be coalesced into one GSO write.
    run: TcpRun,
    /// One segment of a super-packet whose next hop is unresolved (Ethernet header, then the
    /// IP packet), on its way into the pending queue.
    seg: Box<[u8]>,
    /// `vtepd trace`: whether a session is armed, read once per batch.
    trace: WorkerTrace,
}

impl<D, S> std::fmt::Debug for L3VxWorker<D, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L3VxWorker")
            .field("tun", &self.tun)
            .field("ctr", &self.ctr)
            .finish_non_exhaustive()
    }
}

impl<D: DeviceQueue, S: DatagramSocket> L3VxWorker<D, S> {
    /// A worker over `socket` (non-blocking, bound to UDP port `socket.0`), sending through
    /// `tx`, with its TUN queue `tun`.
    pub fn new(
        engine: Arc<L3Vx>,
        socket: (u16, S),
        tx: TunnelTx<S>,
        tun: DevPort<D>,
    ) -> L3VxWorker<D, S> {
        L3VxWorker {
            engine,
            rx: Receiver::on_port(socket.0, socket.1),
            tx,
            tun: [tun],
            ctr: Counters::default(),
            out: Out::with_capacity(256),
            run: TcpRun::new(Framing::Ip),
            seg: vec![0u8; ETH + MAX_PACKET].into_boxed_slice(),
            trace: WorkerTrace::default(),
        }
    }

    /// Datagram `i` of the receive batch: to the engine (the core, then the L3 endpoint), then
    /// (an IP packet) to the TUN: a TCP segment that continues the pending run joins it,
    /// anything else is written as it is (after the run).
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
        let inner = d.len().saturating_sub(encap::vxlan::HEADER_LEN) as u64;
        let origin = Origin::Tunnel {
            src,
            src_port: Some(m.src_port),
            dst_port: Some(port),
            tos: m.tos,
        };
        let received = Received::of(src, m.src_port, self.tx.local(), port, m.tos);
        // A capture keeps it as received (the engine may rewrite its inner ECN).
        let captured = self.trace.armed() && self.tx.capture.keep(&origin, d, Headers::of_vxlan);
        let v = if self.trace.armed() && self.trace.begin(origin, || Headers::of_vxlan(d)) {
            let (out, ctr) = (&mut self.out, &mut self.ctr);
            let t = self.trace.recorder();
            let v = self.engine.on_remote_traced(now, outer, d, out, ctr, t);
            self.trace.finish_tunnel(now, &v);
            v
        } else {
            self.engine
                .on_remote(now, outer, d, &mut self.out, &mut self.ctr)
        };
        if self.trace.armed() {
            let d = self.rx.batch.get(i).map_or(&[][..], |(d, _)| d);
            let kept = received
                .filter(|_| captured)
                .map(|r| (Some(r), self.tx.capture.kept()));
            capture_tunnel(&self.tx.capture, origin, &v, kept, d, Link::Ip, false);
        }
        // What the tunnel carried: the Ethernet frame (delivered as the IP packet in it).
        if matches!(v, FromTunnel::Consumed | FromTunnel::Deliver { .. }) {
            self.rx
                .accepted
                .add(self.tun[0].traffic(), NET, outer.src, 1, inner);
        }
        if let FromTunnel::Deliver { range, .. } = v {
            let part = (i, range.start);
            let (batch, ctr) = (&self.rx.batch, &mut self.ctr);
            let partial = vxlan_partial(batch, part);
            deliver(
                &mut self.run,
                &mut self.tun,
                batch,
                (0, part),
                partial,
                Framing::Ip,
                now,
                ctr,
            );
        }
        if !self.out.generated.is_empty() {
            self.send_generated(now);
        }
    }

    /// Reads packets and TSO super-packets from the TUN until it would block (false) or
    /// `budget` packets were taken (true), each into a send slot behind room for the outer
    /// headers and its Ethernet header, and sends their encapsulated copies in batches; a read
    /// error other than would-block means the device is gone.
    fn drain_tun(&mut self, now: Timestamp, budget: usize) -> Result<bool, String> {
        let mut more = true;
        let mut taken = 0;
        while taken < budget {
            if !self.tx.txb.has_free_slot() {
                self.tx.flush(now, &mut self.ctr);
            }
            let (slot, buf) = self.tx.txb.next_slot();
            // The virtio-net header lands where the Ethernet header goes, the packet behind it.
            let at = HEADROOM + ETH - VNET_HDR_LEN;
            let n = match self.tun[0].dev.recv(&mut buf[at..]) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    more = false;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.tx.flush(now, &mut self.ctr);
                    return Err(self.tun[0].read_failed(&e));
                }
            };
            taken += 1;
            let mut vnet = [0u8; VNET_HDR_LEN];
            let len = n.saturating_sub(VNET_HDR_LEN);
            self.ctr.rx_device_bytes += len as u64;
            vnet.copy_from_slice(&buf[at..at + VNET_HDR_LEN]);
            let packet = &mut buf[HEADROOM + ETH..HEADROOM + ETH + len];
            let tso = batch_tso::is_tso(&vnet);
            if n < VNET_HDR_LEN || (!tso && !batch_gro::complete_read(&vnet, packet)) {
                self.ctr.rx_device += 1;
                self.ctr.drop(DropReason::DeviceOffload);
                if self.trace.armed() {
                    let vni = net_vni(&self.engine);
                    self.trace.device_lost(now, vni, || Headers::of_ip(packet));
                }
                continue;
            }
            self.tx.txb.commit_slot();
            // A super-packet counts as its segments.
            taken += self.on_packet(now, slot, len, tso.then_some(vnet)) - 1;
        }
        self.tx.flush(now, &mut self.ctr);
        Ok(more)
    }

    /// The packet (or, with the virtio-net header `tso`, the TCP super-packet) of `len` bytes
    /// in send slot `slot` at `HEADROOM + ETH`: framed toward its next hop and forwarded, or
    /// held until the next hop resolves. Returns how many packets it held (its segments).
    fn on_packet(
        &mut self,
        now: Timestamp,
        slot: usize,
        len: usize,
        tso: Option<[u8; VNET_HDR_LEN]>,
    ) -> usize {
        let frame_len = ETH + len;
        let frame = &mut self.tx.txb.slot_mut(slot)[HEADROOM..HEADROOM + frame_len];
        let Some(vnet) = tso else {
            let v = if self.trace.armed() && {
                let vni = net_vni(&self.engine);
                let packet = &frame[ETH..];
                self.trace
                    .begin(Origin::Device { vni }, || Headers::of_ip(packet))
            } {
                let (out, ctr) = (&mut self.out, &mut self.ctr);
                let t = self.trace.recorder();
                let v = self.engine.on_local_traced(now, frame, out, ctr, t);
                self.trace.finish_device(now, v, &self.out.remotes);
                v
            } else {
                self.engine
                    .on_local(now, frame, &mut self.out, &mut self.ctr)
            };
            if self.trace.armed() {
                let vni = net_vni(&self.engine);
                let outcome = Outcome::from_device(v, &self.out.remotes);
                let seen = Seen::device_in(Link::Ip, vni, &outcome, None);
                self.tx.capture.device_read(seen, frame, ETH, None);
            }
            if v == FromDevice::Tunnel
                && let Some((dst, fit)) = self.tx.send_copies(
                    now,
                    NET,
                    &self.out.remotes,
                    slot,
                    frame_len,
                    None,
                    &mut self.ctr,
                )
            {
                self.too_big(now, slot, frame_len, dst, fit);
            }
            if !self.out.generated.is_empty() {
                self.send_generated(now);
            }
            return 1;
        };
        // A placeholder header until the decision: the super-frame parser wants the type.
        let own = self.engine.own_mac();
        let Some(t) = write_ip_header(frame, own, own)
            .then(|| batch_tso::tso_frame(&vnet, frame))
            .flatten()
        else {
            self.ctr.rx_device += 1;
            self.ctr.drop(DropReason::DeviceOffload);
            if self.trace.armed() {
                let vni = net_vni(&self.engine);
                let packet = &frame[ETH..];
                self.trace.device_lost(now, vni, || Headers::of_ip(packet));
            }
            return 1;
        };
        // Each segment's own IP and TCP headers, as if read without TSO.
        self.ctr.rx_device_bytes += ((t.segments() - 1) * (t.hdr_len - ETH)) as u64;
        let floods = self.ctr.flood_copies;
        let traced = self.trace.armed() && {
            let origin = Origin::Device {
                vni: net_vni(&self.engine),
            };
            self.trace.begin(origin, || Headers::of_ip(&frame[ETH..]))
        };
        let (out, ctr) = (&mut self.out, &mut self.ctr);
        let e = &self.engine;
        let v = match traced {
            true => e.on_local_resolved_traced(now, frame, out, ctr, self.trace.recorder()),
            false => e.on_local_resolved(now, frame, out, ctr),
        };
        if self.trace.armed() {
            // Unresolved: held (its segments wait for the next hop one by one).
            let outcome = v.map_or(Outcome::Held, |v| {
                Outcome::from_device(v, &self.out.remotes)
            });
            if traced {
                self.trace.finish(now, outcome.clone());
            }
            let seen = Seen::device_in(Link::Ip, net_vni(&self.engine), &outcome, None);
            self.tx.capture.device_read(seen, frame, ETH, Some(&t));
        }
        let Some(v) = v else {
            self.hold_segments(now, slot, frame_len, &t);
            return t.segments();
        };
        // Counted as the packets the kernel would have handed over without TSO.
        self.ctr.rx_device += t.segments() as u64;
        if v == FromDevice::Tunnel {
            let more_segs = t.segments() as u64 - 1;
            self.ctr.flood_copies += (self.ctr.flood_copies - floods) * more_segs;
            // Segments are cut to fit the path: nothing comes back.
            let _ = self.tx.send_copies(
                now,
                NET,
                &self.out.remotes,
                slot,
                frame_len,
                Some(&t),
                &mut self.ctr,
            );
        }
        t.segments()
    }

    /// The packet framed in send slot `slot` (`frame_len` bytes, Ethernet header included) did
    /// not fit the path toward `dst` (at most `fit` bytes of frame do): the core answers it (an
    /// ICMP error back into the TUN) or cuts it into fragments, sent here.
    fn too_big(&mut self, now: Timestamp, slot: usize, frame_len: usize, dst: IpAddr, fit: usize) {
        let frame = &self.tx.txb.slot_mut(slot)[HEADROOM..HEADROOM + frame_len];
        let (Some(packet), Some(mtu)) = (frame.get(ETH..), fit.checked_sub(ETH)) else {
            return self.ctr.drop(DropReason::TooBig);
        };
        // Frames the decision generated for the tunnel stay for `send_generated`.
        let waiting = self.out.generated.len();
        match too_big::on_too_big(
            now,
            Framing::Ip,
            packet,
            mtu,
            true,
            &mut self.out,
            &mut self.ctr,
        ) {
            TooBig::Answered => {
                let vni = net_vni(&self.engine);
                let out = &self.out.generated;
                self.tx.capture.answers(out, waiting, Link::Ip, vni);
                let out = &mut self.out.generated;
                self.tun[0].write_answers_from(now, out, waiting, &mut self.ctr);
            }
            TooBig::Fragment(f) => {
                let (vni, f) = (self.out.remotes.vni(), f.behind_link(ETH));
                self.tx.send_fragments(
                    now,
                    NET,
                    vni,
                    dst.into(),
                    slot,
                    frame_len,
                    &f,
                    &mut self.ctr,
                );
            }
            TooBig::Drop => {}
        }
    }

    /// Hands the segments of the super-frame in send slot `slot` one by one to the engine
    /// (the pending queue holds whole packets only); a segment whose next hop resolved in the
    /// meantime is sent at once.
    fn hold_segments(&mut self, now: Timestamp, slot: usize, frame_len: usize, t: &TsoFrame) {
        let mut head = [0u8; MAX_HEADER];
        for k in 0..t.segments() {
            let frame = &self.tx.txb.slot_mut(slot)[HEADROOM..HEADROOM + frame_len];
            let Some(payload) = batch_tso::segment(frame, t, k, &mut head) else {
                self.ctr.rx_device += 1;
                self.ctr.drop(DropReason::DeviceOffload);
                continue;
            };
            let (h, end) = (t.hdr_len, t.hdr_len + payload.len());
            self.seg[..h].copy_from_slice(&head[..h]);
            self.seg[h..end].copy_from_slice(&frame[payload]);
            let v = self
                .engine
                .on_local(now, &mut self.seg[..end], &mut self.out, &mut self.ctr);
            if v == FromDevice::Tunnel {
                self.send_segment(now, end);
            }
        }
        self.send_generated(now);
    }

    /// Sends the segment in `self.seg[..len]` (the engine framed it; its remotes are in
    /// `out.remotes`) from a send slot of its own.
    fn send_segment(&mut self, now: Timestamp, len: usize) {
        if !self.tx.txb.has_free_slot() {
            self.tx.flush(now, &mut self.ctr);
        }
        let (slot, buf) = self.tx.txb.next_slot();
        let Some(dst) = buf.get_mut(HEADROOM..HEADROOM + len) else {
            return self.ctr.drop(DropReason::EncapError);
        };
        dst.copy_from_slice(&self.seg[..len]);
        self.tx.txb.commit_slot();
        self.send_whole(now, slot, len);
    }

    /// Sends the frame in send slot `slot` (`len` bytes) to `out.remotes` (segments and
    /// packets released after their next hop resolved); one too big for the path is answered
    /// or fragmented like a packet read from the device.
    fn send_whole(&mut self, now: Timestamp, slot: usize, len: usize) {
        let to = &self.out.remotes;
        if let Some((dst, fit)) = self
            .tx
            .send_copies(now, NET, to, slot, len, None, &mut self.ctr)
        {
            self.too_big(now, slot, len, dst, fit);
        }
    }

    /// Sends the frames the engine generated (ARP, echo replies, released packets), each
    /// copied into a send slot and forwarded by the core, and empties the buffer.
    fn send_generated(&mut self, now: Timestamp) {
        for i in 0..self.out.generated.len() {
            if !self.tx.txb.has_free_slot() {
                self.tx.flush(now, &mut self.ctr);
            }
            let Some((to, frame)) = self.out.generated.iter().nth(i) else {
                break;
            };
            let (slot, buf) = self.tx.txb.next_slot();
            let len = frame.len();
            if to != FrameTo::Tunnel || HEADROOM + len > buf.len() {
                continue;
            }
            buf[HEADROOM..HEADROOM + len].copy_from_slice(frame);
            self.tx.txb.commit_slot();
            let frame = &self.tx.txb.slot_mut(slot)[HEADROOM..HEADROOM + len];
            let v = self.engine.core().forward_frame(
                now,
                NET,
                frame,
                &mut self.out.remotes,
                &mut self.ctr,
            );
            if v == FromDevice::Tunnel {
                // Captures note what vtepd made itself: its ARP and what leaves from its own
                // address (echo replies), not the packets it held for resolution.
                let own = match frame.get(12..14) {
                    Some([0x08, 0x06]) => true,
                    Some([0x08, 0x00]) => {
                        frame.get(26..30) == Some(&self.engine.address().octets())
                    }
                    Some([0x86, 0xdd]) => self
                        .engine
                        .address6()
                        .is_some_and(|a| frame.get(22..38) == Some(&a.octets())),
                    _ => false,
                };
                self.tx.txb.set_own(own);
                self.send_whole(now, slot, len);
                self.tx.txb.set_own(false);
            }
        }
        self.out.generated.clear();
    }
}

/// The VNI of the one network (0 if it has none), for traces and captures.
fn net_vni(engine: &L3Vx) -> u32 {
    engine.core().vni_of(NET).map_or(0, encap::Vni::get)
}

impl<D: DeviceQueue, S: DatagramSocket> OnDatagrams for L3VxWorker<D, S> {
    type Sock = S;
    fn receiver(&mut self) -> (&mut Receiver<S>, &mut Counters) {
        (&mut self.rx, &mut self.ctr)
    }
    fn on_datagram(&mut self, now: Timestamp, i: usize) {
        self.datagram(now, i);
    }
    fn end_batch(&mut self, now: Timestamp) {
        self.rx.accepted.flush(self.tun[0].traffic());
        let batch = &self.rx.batch;
        flush_run(
            &mut self.run,
            &mut self.tun,
            |p| batch.at(p),
            now,
            &mut self.ctr,
        );
        // Replies and released packets the batch generated.
        self.tx.flush(now, &mut self.ctr);
    }
}

impl<D: DeviceQueue, S: DatagramSocket> Dataplane for L3VxWorker<D, S> {
    fn sources(&self) -> Vec<RawFd> {
        vec![self.rx.sock().fd(), self.tun[0].dev.fd()]
    }

    fn attach_trace(&mut self, trace: WorkerTrace, capture: WorkerCapture) {
        self.trace = trace;
        self.tx.capture = capture;
    }

    fn drain(&mut self, i: usize, now: Timestamp, budget: usize) -> Result<bool, String> {
        self.trace.refresh();
        self.tx.capture.refresh(&self.trace, now);
        let more = match i {
            SOCKET => drain_socket(self, 0, now, budget),
            TUN => self.drain_tun(now, budget)?,
            _ => false,
        };
        self.tun[0].check()?;
        Ok(more)
    }

    fn tick(&mut self, now: Timestamp, leader: bool) {
        self.rx.tick(&mut self.ctr, &mut |_| {});
        self.tx.tick(now, leader, &mut self.ctr);
        if leader {
            housekeeping::tick(self.engine.core(), now);
            self.engine
                .poll(now, &mut self.out.generated, &mut self.ctr);
            self.send_generated(now);
            self.tx.flush(now, &mut self.ctr);
        }
    }

    fn counters(&self) -> &Counters {
        &self.ctr
    }

    fn attach(&mut self, traffic: Arc<Traffic>) {
        self.tx.attach(Arc::clone(&traffic));
        self.tun[0].attach(traffic, NET);
    }
}
