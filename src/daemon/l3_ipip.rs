//! `vtepd run --mode l3 --encap ipip`: a TUN device, raw IPv4 sockets for protocol 4 and the
//! route table with its kernel routes. This module opens them for the runner ([`L3Ipip`]) and
//! is the per-worker dataplane the event loop drives ([`IpipWorker`]).
//!
//! `--threads N` workers, each with its own queue of the (multi-queue) TUN device, its own raw
//! socket (`AF_INET`, `SOCK_RAW`, `IPPROTO_IPIP`, bound to `--local`), buffers and
//! counters; nothing is shared on the packet path but the
//! lock-free route table. The kernel steers each flow from the device to one queue; the raw
//! sockets form a group whose filters hand each arriving IPIP packet (outer header included) to
//! exactly one of them, by a hash of the inner flow (see `ipip_group`). Each sends with
//! `IP_HDRINCL`: the
//! outer header is written by `encap`'s IPIP encapsulator, which copies DF from the inner packet
//! per packet (the kernel fills in only the checksum and, when zero, the ID). The kernel here
//! needs no `ipip` module.
//!
//! Packets move in batches: the TUN device has offloads on (TSO/USO super-packets are split
//! into segments, each encapsulated in place, see `l3_offload`), encapsulated packets leave
//! with `sendmmsg`, IPIP packets arrive with `recvmmsg`, and decapsulated TCP segments are
//! coalesced into GSO writes to the device.

use super::batch_gro::{self, Framing, TcpRun};
use super::capture::{Seen, WorkerCapture, capture_tunnel};
use super::dev_port::{DevPort, deliver, flush_run};
use super::device::{IPIP_MTU_OVERHEAD, Underlay, overlay_mtu, warn_if_above_underlay};
use super::event_loop::Dataplane;
use super::inject::Injector;
use super::io::{DatagramSocket, DeviceQueue};
use super::ipip_group::{Carried, open_ipip_group};
use super::l3_offload::{TunReader, TunnelQueue};
use super::netlink::{KernelRoutes, RouteService};
use super::pmtu::{IcmpListener, PmtuLearner};
use super::ratelimit::RateLimit;
use super::receive::{OnDatagrams, Receiver, drain_socket};
use super::runner::{ControlParts, Held, Mode, Opened};
use super::stats::{Clock, Traffic};
use super::trace::WorkerTrace;
use super::tun;
use super::tun_ipv6::Ipv6Setup;
use crate::config::DaemonConfig;
use crate::core::capture::Link;
use crate::core::encapsulator::{Encapsulator, TunnelConfig};
use crate::core::ipip::{Ipip, IpipSettings, OVERHEAD};
use crate::core::pmtu::{OurSends, PathMtus};
use crate::core::route::Routes;
use crate::core::too_big::{self, TooBig};
use crate::core::trace::{Headers, Origin, Outcome};
use crate::core::{
    Core, CoreConfig, Counters, DropReason, FromDevice, FromTunnel, NetId, Out, Outer, Remote,
    Timestamp,
};
use crate::error::Failure;
use encap::{IpipConfig, Vni};
use socket2::Socket;
use std::io::{ErrorKind, IoSlice};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::RawFd;
use std::sync::Arc;
use tracing::{info, warn};
use tun_rs::SyncDevice;

/// Source 0 is the raw protocol-4 socket, source 1 the TUN queue, source 2 the raw
/// protocol-41 socket (on a device with IPv6).
const SOCKET: usize = 0;
const DEVICE: usize = 1;
const SOCKET6: usize = 2;

/// The L3 IPIP mode: the settings its read-only checks derive.
#[derive(Debug)]
pub struct L3Ipip {
    /// The tunnel MTU: what fits in one underlay packet after the outer header.
    tunnel_mtu: u16,
    /// The device's MTU.
    mtu: u16,
    routes: Arc<Routes>,
}

impl Mode for L3Ipip {
    type Worker = IpipWorker;

    fn check(cfg: &DaemonConfig, underlay: &Underlay) -> Result<L3Ipip, Failure> {
        let [net] = cfg.networks.as_slice() else {
            return Err(Failure::Usage(
                "--encap ipip runs one TUN device: configure exactly one network".into(),
            ));
        };
        let tunnel_mtu = overlay_mtu(&net.dev, None, underlay, IPIP_MTU_OVERHEAD)?;
        let mtu = overlay_mtu(&net.dev, net.mtu, underlay, IPIP_MTU_OVERHEAD)?;
        warn_if_above_underlay(
            &net.dev,
            mtu,
            underlay,
            "IPIP",
            IPIP_MTU_OVERHEAD,
            "larger packets from it are answered with an ICMP \"fragmentation needed\" (DF set) \
             or dropped",
        );
        let routes = Arc::new(
            Routes::with_routes(cfg.local_v4(), net.address6.is_some(), &net.routes)
                .map_err(|e| Failure::Usage(e.to_string()))?,
        );
        Ok(L3Ipip {
            tunnel_mtu,
            mtu,
            routes,
        })
    }

    fn open(self, cfg: &DaemonConfig, clock: Clock) -> Result<Opened<IpipWorker>, Failure> {
        let net = &cfg.networks[0];
        let ipv6 = net.address6.map_or(Ipv6Setup::Off, Ipv6Setup::Only);
        let tun = tun::open_tun(&net.dev, self.mtu, net.address, ipv6, true, cfg.threads)?;
        // One worker per device queue (fewer than asked when an existing device has one queue).
        let n = tun.queues.len();
        let raws = open_ipip_group(cfg.local_v4(), Carried::Ipv4, n)?;
        // Protocol 41 only for a device that carries IPv6: without one, the host answers it
        // with "protocol unreachable", as one without IPv6-in-IPv4 does.
        let mut raws6 = match net.address6 {
            Some(_) => open_ipip_group(cfg.local_v4(), Carried::Ipv6, n)?,
            None => Vec::new(),
        }
        .into_iter();
        let kernel = KernelRoutes::new(&tun.name, false)
            .map_err(|e| Failure::Runtime(format!("device {}: {e}", tun.name)))?;
        let service = Arc::new(
            RouteService::new(Arc::clone(&self.routes), kernel)
                .map_err(|e| Failure::Runtime(e.to_string()))?,
        );
        let ipip = Arc::new(Ipip::new(
            &IpipSettings {
                local: cfg.local_v4(),
                allow_any_peer: cfg.allow_any_peer,
                tunnel_mtu: self.tunnel_mtu,
                ipv6: net.address6.is_some(),
            },
            Arc::clone(&self.routes),
        ));
        info!(
            dev = %tun.name,
            mtu = tun.mtu,
            tunnel_mtu = self.tunnel_mtu,
            address = ?net.address,
            address6 = ?net.address6,
            routes = service.list().len(),
            created = tun.created,
            "network ready"
        );
        let pmtu = Arc::new(PathMtus::new(u32::from(self.tunnel_mtu) + OVERHEAD as u32));
        let workers = tun
            .queues
            .iter()
            .zip(raws)
            .enumerate()
            .map(|(index, (queue, raw))| {
                let vnet_hdr = queue.tcp_gso();
                let port = DevPort::new(Arc::clone(queue), &tun.name, vnet_hdr, true);
                let enc = net.outer.ipip(cfg.local_v4());
                // IP IDs: each worker starts elsewhere in the space.
                let seed = (clock.now().millis() as u16 ^ (index as u16).wrapping_mul(0x3c6f))
                    .wrapping_mul(0x9e37);
                let listener = (index == 0)
                    .then(|| IcmpListener::open(OurSends::Ipip))
                    .flatten();
                IpipWorker::new(Arc::clone(&ipip), enc, seed, tun.mtu, port, raw)
                    .with_path_mtus(Arc::clone(&pmtu), listener)
                    .with_ipv6_socket(raws6.next())
            })
            .collect();
        // IPIP has no FDB or flood lists: the control plane's core has no network.
        let core = Arc::new(
            Core::new(CoreConfig {
                local: cfg.local,
                allow_any_peer: cfg.allow_any_peer,
                networks: Vec::new(),
            })
            .map_err(|e| Failure::Usage(e.to_string()))?,
        );
        Ok(Opened {
            workers,
            control: ControlParts {
                core,
                nets: Vec::new(),
                routes: Some(Arc::clone(&service)),
                path_mtus: pmtu,
                networks: None,
                injector: Injector::Ipip(Arc::clone(&ipip)),
            },
            held: Held {
                routes: Some(service),
                devices: vec![tun.into()],
                networks: None,
            },
            summary: format!(
                "IPIP on {} (tunnel MTU {})",
                cfg.local_v4(),
                self.tunnel_mtu
            ),
        })
    }
}

/// An IPIP worker's dataplane: its TUN queue and its raw socket (`D` and `S`: in-memory ones
/// in tests).
pub struct IpipWorker<D = SyncDevice, S = Socket> {
    ipip: Arc<Ipip>,
    /// This worker's queue of the TUN device, as a one-port slice.
    dev: [DevPort<D>; 1],
    /// The raw IPIP socket (it sends too), and its receive batch.
    rx: Receiver<S>,
    /// Writes the outer headers.
    enc: Encapsulator,
    /// The engine's remotes and generated frames (ICMP errors) for the packet at hand.
    out: Out,
    ctr: Counters,
    /// Packets (segments) from the device, each read at `OVERHEAD` in its own slot.
    reader: TunReader,
    /// Encapsulated packets in `reader`'s slots, waiting for `sendmmsg`.
    queue: TunnelQueue,
    /// Decapsulated TCP segments waiting for the device, to be coalesced into one GSO write.
    run: TcpRun,
    /// The device's MTU (largest packet it sends).
    mtu: usize,
    tunnel_err_log: RateLimit,
    /// What the underlay says about the path MTUs, for the shared table.
    learner: PmtuLearner,
    /// `vtepd trace`: whether a session is armed, read once per batch.
    trace: WorkerTrace,
    /// `vtepd capture`: the worker's side.
    capture: WorkerCapture,
}

impl<D, S> std::fmt::Debug for IpipWorker<D, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpipWorker")
            .field("dev", &self.dev)
            .field("ctr", &self.ctr)
            .finish_non_exhaustive()
    }
}

impl<D: DeviceQueue, S: DatagramSocket> IpipWorker<D, S> {
    /// A worker on its TUN queue `dev` (of MTU `mtu`) and its raw IPIP socket `sock`, writing
    /// outer headers as `enc` says with IP IDs from `id_seed` on.
    pub fn new(
        ipip: Arc<Ipip>,
        enc: IpipConfig,
        id_seed: u16,
        mtu: u16,
        dev: DevPort<D>,
        sock: S,
    ) -> IpipWorker<D, S> {
        // The engine's tunnel MTU is what the underlay carries after the outer header.
        let underlay_mtu = u32::from(ipip.tunnel_mtu()) + OVERHEAD as u32;
        let learner = PmtuLearner::new(Arc::new(PathMtus::new(underlay_mtu)), ipip.local().into());
        IpipWorker {
            learner,
            ipip,
            dev: [dev],
            rx: Receiver::new(sock),
            enc: Encapsulator::new(TunnelConfig::Ipip(enc), id_seed, underlay_mtu),
            out: Out::default(),
            ctr: Counters::default(),
            reader: TunReader::new(mtu, OVERHEAD),
            queue: TunnelQueue::new(),
            run: TcpRun::new(Framing::Ip),
            mtu: usize::from(mtu),
            tunnel_err_log: RateLimit::default(),
            trace: WorkerTrace::default(),
            capture: WorkerCapture::default(),
        }
    }

    /// The same worker also receiving protocol 41 (IPv6 inside) on `sock`, when given. It
    /// sends on the protocol-4 socket, whose header vtepd writes (`IP_HDRINCL`).
    pub fn with_ipv6_socket(mut self, sock: Option<S>) -> Self {
        if let Some(s) = sock {
            self.rx = self.rx.with_socket(41, s);
        }
        self
    }

    /// The same worker following and feeding the shared path MTUs `pmtu` (their configured
    /// MTU is the underlay's), reading the ICMP listener `icmp` on the tick.
    pub fn with_path_mtus(mut self, pmtu: Arc<PathMtus>, icmp: Option<IcmpListener>) -> Self {
        let cfg = self.enc.config(Vni::ZERO).clone();
        let seed = self.enc.next_id();
        self.enc = Encapsulator::with_path_mtus(cfg, seed, Arc::clone(&pmtu));
        self.learner = PmtuLearner::new(pmtu, self.ipip.local().into()).with_listener(icmp);
        self
    }

    /// The IPIP packet received `i`-th (outer header included, as a raw socket hands it over):
    /// to the engine, then its inner packet to the device.
    fn datagram(&mut self, now: Timestamp, i: usize) {
        let Some((packet, meta)) = self.rx.batch.get_mut(i) else {
            return;
        };
        if meta.truncated {
            self.ctr.rx_tunnel += 1;
            self.ctr.drop(DropReason::BadIpip);
            let h = || Headers::of_ipip(packet);
            return self
                .trace
                .receive_lost(now, meta, None, h, DropReason::BadIpip);
        }
        let outer = Outer {
            src: meta.src.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)).into(),
            tos: meta.tos,
            port: 0,
        };
        let origin = Origin::Tunnel {
            src: outer.src.ip(),
            src_port: None,
            dst_port: None,
            tos: outer.tos,
        };
        // A capture keeps it as received (the engine may rewrite its inner ECN).
        let captured = self.trace.armed() && self.capture.keep(&origin, packet, Headers::of_ipip);
        let v = if self.trace.armed() && self.trace.begin(origin, || Headers::of_ipip(packet)) {
            let t = self.trace.recorder();
            let v = self
                .ipip
                .on_remote_traced(now, outer, packet, &mut self.ctr, t);
            self.trace.finish_tunnel(now, &v);
            v
        } else {
            self.ipip.on_remote(now, outer, packet, &mut self.ctr)
        };
        if self.trace.armed() {
            let kept = captured.then_some((None, self.capture.kept()));
            // Longer than the device's MTU and its outer header: the underlay's GRO merged it.
            let merged = packet.len() > self.mtu + 20;
            let c = &self.capture;
            capture_tunnel(c, origin, &v, kept, packet, Link::Ip, merged);
        }
        if let FromTunnel::Deliver { range, .. } = v {
            // The source checked is the outer header's (the socket's address is the same).
            let src = packet.get(12..16).map_or(outer.src, |b| {
                Remote::v4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
            });
            let len = range.len() as u64;
            self.rx
                .accepted
                .add(self.dev[0].traffic(), NetId(0), src, 1, len);
            self.deliver(now, i, range);
        }
    }

    /// Hands the inner packet `range` of the packet received `i`-th to the device: a TCP
    /// segment that continues the pending run joins it; a super-packet the underlay's GRO
    /// merged is written as GSO; anything else is written as it is (after the run).
    fn deliver(&mut self, now: Timestamp, i: usize, range: std::ops::Range<usize>) {
        let part = (i, range.start);
        let Some(inner) = self.rx.batch.get(i).and_then(|(d, _)| d.get(range.clone())) else {
            return self.ctr.drop(DropReason::BadIpip);
        };
        // Checked first: it reads the payload only for a packet that is merged.
        if let Some(vnet) = batch_gro::kernel_merged(inner, Framing::Ip, self.mtu) {
            self.ctr.rx_merged += 1;
            self.flush_device(now);
            let Some(inner) = self
                .rx
                .batch
                .get_mut(i)
                .and_then(|(d, _)| d.get_mut(range.clone()))
            else {
                return self.ctr.drop(DropReason::BadIpip);
            };
            if !self.dev[0].vnet_hdr {
                // No offloads to hand it over with: complete its checksum, write it whole.
                if !batch_gro::complete_merged(inner, Framing::Ip) {
                    // Not reached: kernel_merged read the same headers.
                    return self.ctr.drop(DropReason::BadIpip);
                }
                let packet = self.rx.batch.at(part);
                return self.dev[0].write(now, packet, &mut self.ctr);
            }
            let iov = [IoSlice::new(&vnet), IoSlice::new(inner)];
            return self.dev[0].write_vnet(now, &iov, &mut self.ctr);
        }
        let (batch, ctr) = (&self.rx.batch, &mut self.ctr);
        deliver(
            &mut self.run,
            &mut self.dev,
            batch,
            (0, part),
            None,
            Framing::Ip,
            now,
            ctr,
        );
    }

    /// Writes the pending run of TCP segments: several as one GSO packet (one by one if the
    /// kernel refuses it), a single one as it is.
    fn flush_device(&mut self, now: Timestamp) {
        let batch = &self.rx.batch;
        flush_run(
            &mut self.run,
            &mut self.dev,
            |p| batch.at(p),
            now,
            &mut self.ctr,
        );
    }

    /// Reads packets and super-packets from the device until it would block or `budget`
    /// packets were taken (true then), encapsulating every segment into the `sendmmsg` queue;
    /// a read error other than would-block means the device is gone.
    fn drain_device(&mut self, now: Timestamp, budget: usize) -> Result<bool, String> {
        let mut more = true;
        let mut taken = 0;
        while taken < budget {
            if self.reader.needs_flush() {
                self.flush_tunnel(now);
            }
            let segs = match self.reader.read(&*self.dev[0].dev) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    more = false;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error().is_none() => {
                    // A super-packet tun-rs could not split (bad virtio header, too many
                    // segments): this one is lost.
                    self.ctr.drop(DropReason::DeviceOffload);
                    self.trace.device_lost(now, 0, Headers::default);
                    self.dev[0].read_lost(now, &e);
                    taken += 1;
                    continue;
                }
                Err(e) => {
                    self.flush_tunnel(now);
                    return Err(self.dev[0].read_failed(&e));
                }
            };
            taken += segs.len().max(1);
            for i in segs {
                let (slot, n) = self.reader.slot_mut(i);
                self.ctr.rx_device_bytes += n as u64;
                let Some(packet) = slot.get(OVERHEAD..OVERHEAD + n) else {
                    self.ctr.rx_device += 1;
                    self.ctr.drop(DropReason::BadIpHeader);
                    continue;
                };
                let v = if self.trace.armed()
                    && self
                        .trace
                        .begin(Origin::Device { vni: 0 }, || Headers::of_ip(packet))
                {
                    let (out, ctr) = (&mut self.out, &mut self.ctr);
                    let t = self.trace.recorder();
                    let v = self.ipip.on_local_traced(now, packet, out, ctr, t);
                    self.trace.finish_device(now, v, &self.out.remotes);
                    v
                } else {
                    self.ipip
                        .on_local(now, packet, &mut self.out, &mut self.ctr)
                };
                if self.trace.armed() {
                    let outcome = Outcome::from_device(v, &self.out.remotes);
                    let seen = Seen::device_in(Link::Ip, 0, &outcome, None);
                    self.capture
                        .offer(seen, &[packet], || Headers::of_ip(packet));
                }
                match v {
                    FromDevice::Tunnel => {
                        let dst = self.out.remotes.as_slice()[0];
                        match self.enc.encapsulate(slot, OVERHEAD, n, Vni::ZERO, dst) {
                            Ok(range) => self.queue.push(i, range, dst),
                            Err(DropReason::TooBig) => {
                                // Below the tunnel MTU, above the path's: answered with DF,
                                // else dropped (the kernel cuts IPIP's inner packets only
                                // to the device MTU).
                                let fit = self.enc.max_inner(Vni::ZERO, dst);
                                let (out, ctr) = (&mut self.out, &mut self.ctr);
                                let packet = &slot[OVERHEAD..OVERHEAD + n];
                                let d = too_big::on_too_big(
                                    now,
                                    Framing::Ip,
                                    packet,
                                    fit,
                                    false,
                                    out,
                                    ctr,
                                );
                                if d == TooBig::Answered {
                                    let out = &self.out.generated;
                                    self.capture.answers(out, 0, Link::Ip, 0);
                                    self.dev[0].write_answers(
                                        now,
                                        &mut self.out.generated,
                                        &mut self.ctr,
                                    );
                                }
                            }
                            Err(r) => self.ctr.drop(r),
                        }
                    }
                    FromDevice::Answered => {
                        self.capture.answers(&self.out.generated, 0, Link::Ip, 0);
                        let out = &mut self.out.generated;
                        self.dev[0].write_answers(now, out, &mut self.ctr);
                    }
                    FromDevice::Held | FromDevice::Drop(_) => {}
                }
            }
        }
        self.flush_tunnel(now);
        Ok(more)
    }

    /// Sends the queued encapsulated packets and frees the device slots.
    fn flush_tunnel(&mut self, now: Timestamp) {
        let (log, learner) = (&mut self.tunnel_err_log, &mut self.learner);
        let traffic = self.dev[0].traffic();
        self.queue
            .flush(&self.reader, self.rx.sock(), &self.capture, &mut self.ctr, traffic, |dst, e| {
                learner.on_send_error(dst.ip(), e);
                // Unreachable, ENOBUFS, EMSGSIZE (a path MTU below ours), a full buffer: this
                // packet is lost, the loop goes on.
                if let Some(held) = log.check(now) {
                    warn!(remote = %dst, error = %e, suppressed = held, "send to remote node failed");
                }
            });
        self.reader.clear();
    }
}

impl<D: DeviceQueue, S: DatagramSocket> OnDatagrams for IpipWorker<D, S> {
    type Sock = S;
    fn receiver(&mut self) -> (&mut Receiver<S>, &mut Counters) {
        (&mut self.rx, &mut self.ctr)
    }
    fn on_datagram(&mut self, now: Timestamp, i: usize) {
        self.datagram(now, i);
    }
    fn end_batch(&mut self, now: Timestamp) {
        self.rx.accepted.flush(self.dev[0].traffic());
        self.flush_device(now);
    }
}

impl<D: DeviceQueue, S: DatagramSocket> Dataplane for IpipWorker<D, S> {
    fn sources(&self) -> Vec<RawFd> {
        let mut fds = vec![self.rx.sock().fd(), self.dev[0].dev.fd()];
        fds.extend(self.rx.fds().skip(1));
        fds
    }

    fn attach_trace(&mut self, trace: WorkerTrace, capture: WorkerCapture) {
        self.trace = trace;
        self.capture = capture;
    }

    fn drain(&mut self, i: usize, now: Timestamp, budget: usize) -> Result<bool, String> {
        self.trace.refresh();
        self.capture.refresh(&self.trace, now);
        let more = match i {
            SOCKET => drain_socket(self, 0, now, budget),
            DEVICE => self.drain_device(now, budget)?,
            SOCKET6 => drain_socket(self, 1, now, budget),
            _ => false,
        };
        self.dev[0].check()?;
        Ok(more)
    }

    fn tick(&mut self, now: Timestamp, leader: bool) {
        let learner = &mut self.learner;
        self.rx.tick(&mut self.ctr, &mut |e| learner.on_queued(e));
        self.learner.tick(now, leader, &mut self.ctr);
    }

    fn counters(&self) -> &Counters {
        &self.ctr
    }

    fn attach(&mut self, traffic: Arc<Traffic>) {
        self.dev[0].attach(traffic, NetId(0));
    }
}
