//! `vtepd run --mode l3 --encap ipip`: a TUN device, raw IPv4 sockets for protocol 4, the
//! route table with its kernel routes, the dataplane workers and the control server.
//!
//! Same order of work as the L2 daemon: read-only checks first (so a bad configuration
//! changes nothing), then every resource is held by a value whose drop undoes it (control
//! socket file, kernel routes, the TUN device we created).
//!
//! `--threads N` workers, each with its own queue of the (multi-queue) TUN device, its own raw
//! socket (`AF_INET`, `SOCK_RAW`, `IPPROTO_IPIP`, bound to `--local`), mio loop, buffers and
//! counters (its own slot of the stats board); nothing is shared on the packet path but the
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

use super::batch_gro::{self, Framing, Part, TcpRun};
use super::device::{self, Underlay};
use super::handler::Handler;
use super::ipip_group::open_ipip_group;
use super::l3_offload::{TunReader, TunnelQueue};
use super::netlink::{KernelRoutes, RouteService};
use super::ratelimit::{DropReport, RateLimit};
use super::stats::{Clock, StatsBoard};
use super::tun::{self, IPIP_OVERHEAD, Tun};
use crate::config::DaemonConfig;
use crate::control::server::{self, Server};
use crate::core::ipip::{Ipip, IpipSettings, IpipTx, LocalVerdict, OVERHEAD, RemoteVerdict};
use crate::core::route::Routes;
use crate::core::{Core, CoreConfig, Counters, DropReason, Timestamp};
use crate::error::Failure;
use crate::sys::{self, MAX_BATCH, RecvMeta};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use socket2::Socket;
use std::io::{self, ErrorKind, IoSlice};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;
use tracing::{error, info, warn};

const SIGNALS: Token = Token(0);
const WAKE: Token = Token(1);
/// Worker tokens.
const SOCKET: Token = Token(0);
const DEVICE: Token = Token(1);
const WORKER_WAKE: Token = Token(2);
/// Receive slot: the largest IPv4 packet (outer header included).
const RECV_SLOT: usize = 65_536;
/// Reads (device reads or `recvmmsg` calls) from one source before looking at the other.
const BUDGET: usize = 16;

/// The tunnel MTU: what fits in one underlay packet after the outer header.
fn tunnel_mtu(underlay: &Underlay, dev: &str) -> Result<u16, Failure> {
    tun::l3_mtu(dev, None, underlay, IPIP_OVERHEAD)
}

/// Runs the L3 IPIP daemon until a signal (Ok) or a fatal error.
pub fn run(cfg: &DaemonConfig) -> Result<(), Failure> {
    super::init_logging();
    let [net] = cfg.networks.as_slice() else {
        return Err(Failure::Usage(
            "--encap ipip runs one TUN device: configure exactly one network".into(),
        ));
    };
    // Read-only checks: a failure here leaves the system untouched.
    let underlay = device::find_underlay(cfg.local)?;
    let tmtu = tunnel_mtu(&underlay, &net.dev)?;
    let mtu = tun::l3_mtu(&net.dev, net.mtu, &underlay, IPIP_OVERHEAD)?;
    let routes = Arc::new(
        Routes::with_routes(cfg.local, &net.routes).map_err(|e| Failure::Usage(e.to_string()))?,
    );
    device::check_privilege()?;

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
    let tun = tun::open_tun(&net.dev, mtu, net.address, true, cfg.threads)?;
    // One worker per device queue (fewer than asked when an existing device has one queue).
    let workers = tun.queues.len();
    let raws = open_ipip_group(cfg.local, workers)?;
    let kernel = KernelRoutes::new(&tun.name, false)
        .map_err(|e| Failure::Runtime(format!("device {}: {e}", tun.name)))?;
    let service = Arc::new(
        RouteService::new(Arc::clone(&routes), kernel)
            .map_err(|e| Failure::Runtime(e.to_string()))?,
    );
    let ipip = Arc::new(Ipip::new(
        &IpipSettings {
            local: cfg.local,
            allow_any_peer: cfg.allow_any_peer,
            tunnel_mtu: tmtu,
        },
        routes,
    ));
    let clock = Clock::new();
    info!(
        "vtepd {} up: IPIP on {} (underlay {} MTU {}, tunnel MTU {tmtu}), device {} MTU {}{}, \
         {} routes, {workers} worker(s), control socket {}",
        env!("CARGO_PKG_VERSION"),
        cfg.local,
        underlay.ifname,
        underlay.mtu,
        tun.name,
        tun.mtu,
        net.address
            .map(|a| format!(" address {a}"))
            .unwrap_or_default(),
        service.list().len(),
        cfg.control.display()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let board = Arc::new(StatsBoard::new(workers));
    let (tx, rx) = mpsc::channel::<(String, Result<(), String>)>();
    let mut threads = Vec::new();

    for (index, (queue, raw)) in tun.queues.iter().zip(raws).enumerate() {
        let (worker, waker) = IpipWorker::new(
            index,
            Arc::clone(&ipip),
            &tun,
            Arc::clone(queue),
            raw,
            clock,
            Arc::clone(&board),
            Arc::clone(&stop),
        )
        .map_err(|e| rt("cannot set up a worker", e))?;
        threads.push((
            waker,
            spawn(
                &format!("vtepd-ipip-{index}"),
                move || worker.run(),
                &tx,
                &main_waker,
            )?,
        ));
    }

    let core = Arc::new(
        Core::new(CoreConfig {
            local: cfg.local,
            allow_any_peer: cfg.allow_any_peer,
            networks: Vec::new(),
        })
        .map_err(|e| Failure::Usage(e.to_string()))?,
    );
    let handler = Handler {
        core,
        nets: Vec::new(),
        board,
        clock,
        routes: Some(Arc::clone(&service)),
    };
    let (srv, waker) = Server::new(listener, handler, Arc::clone(&stop))
        .map_err(|e| rt("cannot set up the control server", e))?;
    threads.push((
        waker,
        spawn("vtepd-control", move || srv.run(), &tx, &main_waker)?,
    ));

    let outcome = wait(&mut poll, &mut signals, &rx);

    stop.store(true, Ordering::Release);
    for (waker, _) in &threads {
        if let Err(e) = waker.wake() {
            error!("cannot wake a thread to stop it: {e}");
        }
    }
    for (_, handle) in threads {
        if handle.join().is_err() {
            error!("a thread panicked while stopping");
        }
    }
    // Kernel routes first (they point at the device), then the device, then the socket file.
    drop(ipip);
    match Arc::try_unwrap(service) {
        Ok(s) => drop(s),
        Err(_) => error!("route service still shared at exit; kernel routes left to the device"),
    }
    let (name, ours) = (tun.name.clone(), tun.created);
    drop(tun);
    if ours && !device::interface_exists(&name) {
        info!(dev = %name, "device removed");
    }
    drop(socket_file);
    if outcome.is_ok() {
        info!("vtepd stopped");
    }
    outcome
}

type Notices = mpsc::Sender<(String, Result<(), String>)>;

/// Tells the supervisor when a thread ends (or unwinds).
struct ExitNotice {
    who: String,
    result: Option<Result<(), String>>,
    tx: Notices,
    waker: Arc<Waker>,
}

impl Drop for ExitNotice {
    fn drop(&mut self) {
        let r = self
            .result
            .take()
            .unwrap_or_else(|| Err(format!("{} panicked", self.who)));
        // The supervisor may already be gone when the process is ending.
        let _ = self.tx.send((std::mem::take(&mut self.who), r));
        let _ = self.waker.wake();
    }
}

fn spawn<F>(
    name: &str,
    body: F,
    tx: &Notices,
    waker: &Arc<Waker>,
) -> Result<std::thread::JoinHandle<()>, Failure>
where
    F: FnOnce() -> Result<(), String> + Send + 'static,
{
    let notice = ExitNotice {
        who: name.to_owned(),
        result: None,
        tx: tx.clone(),
        waker: Arc::clone(waker),
    };
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let mut notice = notice;
            notice.result = Some(body());
        })
        .map_err(|e| Failure::Runtime(format!("cannot start thread {name}: {e}")))
}

/// Waits for SIGINT/SIGTERM (Ok) or for a thread to end (its error).
fn wait(
    poll: &mut Poll,
    signals: &mut Signals,
    rx: &mpsc::Receiver<(String, Result<(), String>)>,
) -> Result<(), Failure> {
    let mut events = Events::with_capacity(8);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(Failure::Runtime(format!("poll failed: {e}")));
        }
        if events.iter().any(|ev| ev.token() == SIGNALS)
            && let Some(sig) = signals.pending().next()
        {
            let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
            info!("{name} received, shutting down");
            return Ok(());
        }
        if let Ok((who, r)) = rx.try_recv() {
            return Err(Failure::Runtime(match r {
                Err(msg) => msg,
                Ok(()) => format!("{who} stopped unexpectedly"),
            }));
        }
    }
}

/// Writes one IP packet to the device; with offloads on (`vnet_hdr`), behind a zero virtio-net
/// header (no offload asked for) assembled in `scratch`.
fn write_plain(
    dev: &tun_rs::SyncDevice,
    vnet_hdr: bool,
    scratch: &mut [u8],
    packet: &[u8],
) -> io::Result<usize> {
    if !vnet_hdr {
        return dev.send(packet);
    }
    let h = tun_rs::VIRTIO_NET_HDR_LEN;
    let end = h + packet.len();
    let Some(dst) = scratch.get_mut(h..end) else {
        return Err(io::Error::from(ErrorKind::InvalidInput));
    };
    dst.copy_from_slice(packet);
    scratch[..h].fill(0);
    dev.send(&scratch[..end])
}

/// The packet received `i`-th into `inp` (slots [`RECV_SLOT`] bytes apart, their lengths in
/// `meta`), from `off` on; `None` outside what was read.
fn received<'a>(inp: &'a [u8], meta: &[RecvMeta], (i, off): Part) -> Option<&'a [u8]> {
    let len = meta.get(i)?.len;
    inp.get(i * RECV_SLOT + off..i * RECV_SLOT + len)
}

/// An IPIP dataplane worker: one mio loop over its TUN queue and its raw socket.
struct IpipWorker {
    /// Worker index: its slot on the stats board.
    index: usize,
    ipip: Arc<Ipip>,
    dev: Arc<tun_rs::SyncDevice>,
    dev_name: String,
    sock: Socket,
    poll: Poll,
    clock: Clock,
    board: Arc<StatsBoard>,
    stop: Arc<AtomicBool>,
    tx: IpipTx,
    ctr: Counters,
    /// Packets (segments) from the device, each read at `OVERHEAD` in its own slot.
    out: TunReader,
    /// Encapsulated packets in `out`'s slots, waiting for `sendmmsg`.
    queue: TunnelQueue,
    /// IPIP packets from the socket, one `recvmmsg` worth, `RECV_SLOT` bytes apart.
    inp: Box<[u8]>,
    inp_meta: [RecvMeta; MAX_BATCH],
    /// Decapsulated TCP segments waiting for the device, to be coalesced into one GSO write.
    run: TcpRun,
    /// The device's MTU (largest packet it sends).
    mtu: usize,
    /// Single writes (ICMP replies, non-TCP packets) are assembled here behind a zero
    /// virtio-net header when the device has offloads.
    scratch: Box<[u8]>,
    vnet_hdr: bool,
    pending: [bool; 2],
    drop_report: DropReport,
    tunnel_err_log: RateLimit,
    device_err_log: RateLimit,
    socket_err_log: RateLimit,
}

impl IpipWorker {
    #[allow(clippy::too_many_arguments)]
    fn new(
        index: usize,
        ipip: Arc<Ipip>,
        tun: &Tun,
        dev: Arc<tun_rs::SyncDevice>,
        sock: Socket,
        clock: Clock,
        board: Arc<StatsBoard>,
        stop: Arc<AtomicBool>,
    ) -> io::Result<(IpipWorker, Arc<Waker>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WORKER_WAKE)?);
        let sfd = sock.as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&sfd), SOCKET, Interest::READABLE)?;
        let dfd = dev.as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&dfd), DEVICE, Interest::READABLE)?;
        // IP IDs: each worker starts elsewhere in the space.
        let seed = (clock.now().millis() as u16 ^ (index as u16).wrapping_mul(0x3c6f))
            .wrapping_mul(0x9e37);
        let vnet_hdr = dev.tcp_gso();
        Ok((
            IpipWorker {
                index,
                ipip,
                dev,
                dev_name: tun.name.clone(),
                sock,
                poll,
                drop_report: DropReport::new(clock.now()),
                clock,
                board,
                stop,
                tx: IpipTx::new(seed),
                ctr: Counters::default(),
                out: TunReader::new(tun.mtu, OVERHEAD),
                queue: TunnelQueue::new(),
                inp: vec![0u8; MAX_BATCH * RECV_SLOT].into_boxed_slice(),
                inp_meta: [RecvMeta::default(); MAX_BATCH],
                run: TcpRun::new(Framing::Ip),
                mtu: usize::from(tun.mtu),
                scratch: vec![0u8; tun_rs::VIRTIO_NET_HDR_LEN + 65_536].into_boxed_slice(),
                vnet_hdr,
                pending: [true, true],
                tunnel_err_log: RateLimit::default(),
                device_err_log: RateLimit::default(),
                socket_err_log: RateLimit::default(),
            },
            waker,
        ))
    }

    fn run(mut self) -> Result<(), String> {
        let mut events = Events::with_capacity(16);
        loop {
            let timeout = if self.pending.contains(&true) {
                Duration::ZERO
            } else {
                Duration::from_secs(1)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("IPIP worker: poll failed: {e}"));
            }
            if self.stop.load(Ordering::Acquire) {
                self.board.publish(self.index, &self.ctr);
                return Ok(());
            }
            for ev in events.iter() {
                match ev.token() {
                    SOCKET => self.pending[0] = true,
                    DEVICE => self.pending[1] = true,
                    _ => {}
                }
            }
            let now = self.clock.now();
            if self.pending[0] {
                self.pending[0] = self.drain_socket(now);
            }
            if self.pending[1] {
                self.pending[1] = self.drain_device(now)?;
            }
            self.board.publish(self.index, &self.ctr);
            self.drop_report.tick(now, self.index, &self.ctr);
        }
    }

    /// Reads IPIP packets (`recvmmsg`) until the socket would block or the budget is spent
    /// (true then); writes the decapsulated ones to the device, coalesced.
    fn drain_socket(&mut self, now: Timestamp) -> bool {
        let mut more = true;
        for _ in 0..BUDGET {
            let got =
                match sys::recv_batch(&self.sock, &mut self.inp, RECV_SLOT, &mut self.inp_meta) {
                    Ok((n, _)) => n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        more = false;
                        break;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // A pending socket error (an ICMP about an earlier send) is reported once
                        // and cleared: keep reading.
                        if let Some(held) = self.socket_err_log.check(now) {
                            warn!(error = %e, suppressed = held, "raw IPIP socket receive error");
                        }
                        continue;
                    }
                };
            for i in 0..got {
                let meta = self.inp_meta[i];
                let slot = &mut self.inp[i * RECV_SLOT..(i + 1) * RECV_SLOT];
                if meta.truncated {
                    self.ctr.rx_tunnel += 1;
                    self.ctr.drop(DropReason::BadIpip);
                    continue;
                }
                let verdict = self
                    .ipip
                    .on_remote_ipip(now, &mut slot[..meta.len], &mut self.ctr);
                if let RemoteVerdict::ToDevice { range } = verdict {
                    self.deliver(now, i, range);
                }
            }
            self.flush_device(now);
            if got < MAX_BATCH {
                // The queue was emptied; a later arrival raises a new readiness event.
                more = false;
                break;
            }
        }
        more
    }

    /// Hands the inner packet `range` of the packet received `i`-th to the device: a TCP
    /// segment that continues the pending run joins it; a super-packet the underlay's GRO
    /// merged is written as GSO; anything else is written as it is (after the run).
    fn deliver(&mut self, now: Timestamp, i: usize, range: std::ops::Range<usize>) {
        let part = (i, range.start);
        let base = i * RECV_SLOT;
        let Some(inner) = self.inp.get(base + range.start..base + range.end) else {
            return self.ctr.drop(DropReason::BadIpip);
        };
        // Checked first: it reads the payload only for a packet that is merged.
        if let Some(vnet) = batch_gro::kernel_merged(inner, Framing::Ip, self.mtu) {
            self.ctr.rx_merged += 1;
            self.flush_device(now);
            let inner = &mut self.inp[base + range.start..base + range.end];
            if !self.vnet_hdr {
                // No offloads to hand it over with: complete its checksum, write it whole.
                if !batch_gro::complete_merged(inner, Framing::Ip) {
                    // Not reached: kernel_merged read the same headers.
                    return self.ctr.drop(DropReason::BadIpip);
                }
                return self.write_one(now, part);
            }
            let iov = [IoSlice::new(&vnet), IoSlice::new(inner)];
            match self.dev.send_vectored(&iov) {
                Ok(_) => self.ctr.tx_device += 1,
                Err(e) => self.device_error(now, &e),
            }
            return;
        }
        if self.vnet_hdr
            && let Some(seg) = batch_gro::tcp_segment(inner, Framing::Ip)
        {
            let (inp, meta) = (&self.inp, &self.inp_meta);
            let bytes = |p: Part| received(inp, meta, p);
            if !self.run.offer(0, part, &seg, bytes) {
                self.flush_device(now);
                self.run.start(0, part, &seg);
            }
            return;
        }
        self.flush_device(now);
        self.write_one(now, part);
    }

    /// Writes the packet at `part` (an inner packet of the receive batch) as it is.
    fn write_one(&mut self, now: Timestamp, part: Part) {
        let Some(packet) = received(&self.inp, &self.inp_meta, part) else {
            return self.ctr.drop(DropReason::DeviceTxError);
        };
        let res = write_plain(&self.dev, self.vnet_hdr, &mut self.scratch, packet);
        match res {
            Ok(_) => self.ctr.tx_device += 1,
            Err(e) => self.device_error(now, &e),
        }
    }

    /// Writes the pending run of TCP segments: several as one GSO packet (one by one if the
    /// kernel refuses it), a single one as it is.
    fn flush_device(&mut self, now: Timestamp) {
        let (inp, meta) = (&self.inp, &self.inp_meta);
        let bytes = |p: Part| received(inp, meta, p);
        let dev = &*self.dev;
        let flushed = self.run.flush(|_| Some(dev), bytes);
        let (_, singles) = self.run.settle(flushed, &mut self.ctr);
        for k in 0..singles {
            let part = self.run.flushed(singles)[k];
            self.write_one(now, part);
        }
    }

    /// Reads packets and super-packets from the device until it would block or the budget is
    /// spent (true then), encapsulating every segment into the `sendmmsg` queue; a read error
    /// other than would-block means the device is gone.
    fn drain_device(&mut self, now: Timestamp) -> Result<bool, String> {
        let mut more = true;
        for _ in 0..BUDGET {
            if self.out.needs_flush() {
                self.flush_tunnel(now);
            }
            let segs = match self.out.read(&self.dev) {
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
                    if let Some(held) = self.device_err_log.check(now) {
                        warn!(dev = %self.dev_name, error = %e, suppressed = held,
                              "cannot split a packet from the device");
                    }
                    continue;
                }
                Err(e) => {
                    self.flush_tunnel(now);
                    return Err(if e.raw_os_error() == Some(libc::EBADFD) {
                        format!("device {} was removed (read from it: {e})", self.dev_name)
                    } else {
                        format!("device {} failed (read from it: {e})", self.dev_name)
                    });
                }
            };
            for i in segs {
                let (slot, n) = self.out.slot_mut(i);
                let verdict =
                    self.ipip
                        .on_local_ip(now, slot, OVERHEAD, n, &mut self.tx, &mut self.ctr);
                match verdict {
                    LocalVerdict::ToTunnel { dst, range } => self.queue.push(i, range, dst),
                    LocalVerdict::Reply => self.send_reply(now),
                    LocalVerdict::Drop(_) => {}
                }
            }
        }
        self.flush_tunnel(now);
        Ok(more)
    }

    /// Sends the queued encapsulated packets and frees the device slots.
    fn flush_tunnel(&mut self, now: Timestamp) {
        let log = &mut self.tunnel_err_log;
        self.queue
            .flush(&self.out, &self.sock, &mut self.ctr, |dst, e| {
                // Unreachable, ENOBUFS, EMSGSIZE (a path MTU below ours), a full buffer: this
                // packet is lost, the loop goes on.
                if let Some(held) = log.check(now) {
                    warn!(remote = %dst, error = %e, suppressed = held, "send to remote node failed");
                }
            });
        self.out.clear();
    }

    /// Writes the ICMP reply `tx` holds to the device.
    fn send_reply(&mut self, now: Timestamp) {
        let res = write_plain(&self.dev, self.vnet_hdr, &mut self.scratch, self.tx.reply());
        match res {
            Ok(_) => self.ctr.tx_device += 1,
            Err(e) => self.device_error(now, &e),
        }
    }

    fn device_error(&mut self, now: Timestamp, e: &io::Error) {
        // EBADFD means the device was deleted: the next read reports it and stops us. Anything
        // else (EIO while the device is down, ...) loses this packet only.
        self.ctr.drop(DropReason::DeviceTxError);
        if let Some(held) = self.device_err_log.check(now) {
            warn!(dev = %self.dev_name, error = %e, suppressed = held, "write to device failed");
        }
        if e.raw_os_error() == Some(libc::EBADFD) {
            self.pending[1] = true;
        }
    }
}
