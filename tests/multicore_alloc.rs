//! The per-packet path allocates nothing: a counting global allocator watches one thread while
//! it runs, in steady state, the real dataplane workers of every mode:
//! - two L2 VXLAN workers (`L2Worker`) as two VTEPs on loopback, with real sockets (their UDP
//!   sockets and raw send sockets, `recvmmsg`/`sendmmsg`) and in-memory TAP queues: unicast
//!   and flooded frames from each TAP, encapsulated, sent, received by the other worker,
//!   learned (a refresh) and delivered into its TAP. The two VTEPs' addresses are underlay
//!   addresses put on `lo` of a private network namespace (a remote VTEP cannot be a loopback
//!   address). The raw socket and the namespace need root (without it the test says so and
//!   passes, except under CI).
//! - an L3 VXLAN worker and an IPIP worker on in-memory devices and sockets, both directions.
//! - an L2 worker flooding broadcasts to 500 peers, through a socket that counts its `sendmmsg`
//!   calls: ceil(500 / 64) each, the bound head-end replication keeps.
//!
//! The receive side's TCP coalescing (`batch_gro::TcpRun`: segments checked, joined into runs,
//! written as one super-packet from where they were received) allocates nothing either.
//! The allocator is the one `unsafe` outside src/sys.rs: a test-only forwarding wrapper.

mod packet_support;

use encap::{IpipConfig, MacAddr, Vni, VxlanConfig};
use packet_support::{ipv4, tcp, tcp6};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;
use vtepd::core::ipip::{Ipip, IpipSettings};
use vtepd::core::l2::L2;
use vtepd::core::l3vx::{L3Vx, L3VxConfig};
use vtepd::core::route::{Route, Routes};
use vtepd::core::{Core, CoreConfig, NetId, NetworkConfig, Timestamp};
use vtepd::daemon::batch_gro::{self, Flushed, Framing, PacketWrite, Part, TcpRun};
use vtepd::daemon::dev_port::DevPort;
use vtepd::daemon::event_loop::{BUDGET, Dataplane};
use vtepd::daemon::io::mem::{MemDevice, MemSocket};
use vtepd::daemon::io::{DatagramSocket, DeviceQueue};
use vtepd::daemon::l2_vxlan::L2Worker;
use vtepd::daemon::l3_ipip::IpipWorker;
use vtepd::daemon::l3_vxlan::L3VxWorker;
use vtepd::daemon::socket;
use vtepd::daemon::tunnel_tx::TunnelTx;

struct Counting;

thread_local! {
    static WATCH: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // try_with: the thread-locals may be gone while a thread exits.
    let _ = WATCH.try_with(|w| {
        if w.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

// SAFETY (test-only allocator): forwards every call unchanged to the system allocator and only
// counts calls made while the current thread watches.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    COUNT.with(|c| c.set(0));
    WATCH.with(|w| w.set(true));
    f();
    WATCH.with(|w| w.set(false));
    COUNT.with(|c| c.get())
}

const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const HOST_A: MacAddr = MacAddr([2, 0, 0, 0, 0xa, 1]);
const HOST_B: MacAddr = MacAddr([2, 0, 0, 0, 0xb, 1]);
/// Source 0 of every worker is its socket, source 1 its device queue.
const SOCKET: usize = 0;
const DEVICE: usize = 1;

fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    // Ethernet + a minimal IPv4/UDP packet: the flow hash looks into it.
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&46u16.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    f[34..36].copy_from_slice(&1234u16.to_be_bytes());
    f[36..38].copy_from_slice(&5678u16.to_be_bytes());
    f
}

fn core(local: Ipv4Addr, peer: Ipv4Addr, own: MacAddr, port: u16) -> Arc<Core> {
    Arc::new(
        Core::new(CoreConfig {
            local: local.into(),
            allow_any_peer: false,
            networks: vec![NetworkConfig {
                vni: Vni::new(42).unwrap(),
                peers: vec![peer.into()],
                own_mac: own,
                ageing: Duration::from_secs(300),
                max_learned: 1024,
                port,
                ..Default::default()
            }],
        })
        .unwrap(),
    )
}

/// The packets `dev` was given, counted and forgotten.
fn drain_written(dev: &MemDevice) -> usize {
    dev.take_written(|_| ())
}

/// One L2 VTEP on loopback: a real UDP socket on `local`:`port`, a real raw send socket, an
/// in-memory TAP.
fn vtep(
    local: Ipv4Addr,
    peer: Ipv4Addr,
    port: u16,
    own: MacAddr,
) -> Option<(L2Worker<MemDevice, socket2::Socket>, Arc<MemDevice>, u16)> {
    let raw = match socket::open_raw_sender(local.into()) {
        Ok(s) => s,
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI needs CAP_NET_RAW: {e}"
            );
            eprintln!("skipped: no raw socket ({e})");
            return None;
        }
    };
    let udp = socket::bind_udp(local.into(), port).unwrap();
    let port = udp.local_addr().unwrap().port();
    let mut vx = VxlanConfig::new(local);
    vx.dst_port = port;
    vx.udp_checksum = false;
    let tap = Arc::new(MemDevice::new(64, true).unwrap());
    let engine = Arc::new(L2::new(core(local, peer, own, port), vec![false]));
    let w = L2Worker::new(
        engine,
        (port, udp.into()),
        TunnelTx::new(raw, vx, 65_536),
        vec![DevPort::new(Arc::clone(&tap), "tap", true, true)],
    );
    Some((w, tap, port))
}

/// Drains `w`'s socket until `want` frames reached its TAP (loopback delivers in the sender's
/// system call; a few tries cover a late softirq).
fn receive(
    w: &mut L2Worker<MemDevice, socket2::Socket>,
    tap: &MemDevice,
    want: usize,
    now: Timestamp,
) {
    let mut got = 0;
    for _ in 0..1000 {
        assert_eq!(w.drain(SOCKET, now, BUDGET), Ok(false));
        got += drain_written(tap);
        if got >= want {
            break;
        }
    }
    assert_eq!(got, want, "frames delivered");
}

/// Moves the calling thread into a private network namespace whose `lo` is up and holds A and B
/// (false, and why on stderr, when it cannot: not root).
fn private_loopback_with_a_and_b() -> bool {
    if let Err(e) = vtepd::sys::unshare_network_namespace() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs a network namespace: {e}"
        );
        eprintln!("skipped: cannot create a network namespace ({e})");
        return false;
    }
    let ip = |args: &[&str]| {
        let ok = std::process::Command::new("ip")
            .args(args)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip {args:?}");
    };
    ip(&["link", "set", "lo", "up"]);
    for a in [A, B] {
        ip(&["addr", "add", &format!("{a}/32"), "dev", "lo"]);
    }
    true
}

#[test]
fn steady_state_l2_workers_do_not_allocate() {
    // The namespace belongs to the thread that made it: the whole test runs on that thread.
    std::thread::spawn(|| {
        if private_loopback_with_a_and_b() {
            l2_workers_do_not_allocate();
        }
    })
    .join()
    .unwrap();
}

fn l2_workers_do_not_allocate() {
    let Some((mut wa, tap_a, port)) = vtep(A, B, 0, MacAddr([2, 0, 0, 0, 0, 0xa])) else {
        return;
    };
    let Some((mut wb, tap_b, _)) = vtep(B, A, port, MacAddr([2, 0, 0, 0, 0, 0xb])) else {
        return;
    };
    let to_b = frame(HOST_B, HOST_A);
    let bcast_a = frame(MacAddr::BROADCAST, HOST_A);
    let to_a = frame(HOST_A, HOST_B);
    let mut now = Timestamp(1000);
    // One round of both workers' work: A's TAP sends a unicast frame and a broadcast (flooded
    // to B), B receives and delivers both; B's TAP answers, A delivers it.
    let mut round = |now: Timestamp| {
        assert!(tap_a.inject(&to_b) && tap_a.inject(&bcast_a));
        assert_eq!(wa.drain(DEVICE, now, BUDGET), Ok(false));
        receive(&mut wb, &tap_b, 2, now);
        assert!(tap_b.inject(&to_a));
        assert_eq!(wb.drain(DEVICE, now, BUDGET), Ok(false));
        receive(&mut wa, &tap_a, 1, now);
    };
    // Warm up: MACs learned both ways (map inserts), header templates, thread-locals.
    round(now);
    round(now);
    let allocs = allocations(|| {
        for _ in 0..200 {
            now = Timestamp(now.0 + 1);
            round(now);
        }
    });
    assert_eq!(allocs, 0, "the per-packet path allocated");
    let (ca, cb) = (wa.counters(), wb.counters());
    assert_eq!((ca.rx_device, ca.tx_tunnel), (2 * 202, 2 * 202));
    assert_eq!((cb.rx_tunnel, cb.tx_device), (2 * 202, 2 * 202));
    assert_eq!(
        (ca.learned, cb.learned),
        (1, 1),
        "learned once, refreshed since"
    );
    assert_eq!(ca.total_drops() + cb.total_drops(), 0, "{ca:?} {cb:?}");
}

/// A send socket that only counts: its `sendmmsg` calls and the datagrams in them (it takes
/// all of each, and never has anything to receive).
#[derive(Debug)]
struct SendCounter {
    calls: AtomicUsize,
    datagrams: AtomicUsize,
    largest: AtomicUsize,
    fd: std::os::unix::net::UnixDatagram,
}

impl DatagramSocket for SendCounter {
    fn recv_batch(
        &self,
        _: &mut [u8],
        _: usize,
        _: &mut [vtepd::sys::RecvMeta],
    ) -> std::io::Result<(usize, Option<u32>)> {
        Err(std::io::ErrorKind::WouldBlock.into())
    }
    fn send_batch(&self, msgs: &[vtepd::sys::SendMsg<'_>]) -> std::io::Result<usize> {
        self.calls.fetch_add(1, Relaxed);
        self.datagrams.fetch_add(msgs.len(), Relaxed);
        self.largest.fetch_max(msgs.len(), Relaxed);
        Ok(msgs.len())
    }
    fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.fd.as_raw_fd()
    }
}

/// Head-end replication to 500 peers (issue 17's bound): one broadcast from the TAP is 500
/// copies in ceil(500 / 64) = 8 `sendmmsg` calls of at most 64, and allocates nothing once
/// the header templates are made.
#[test]
fn a_broadcast_to_500_peers_is_8_sendmmsg_calls_without_allocation() {
    const PEERS: usize = 500;
    let peers: Vec<Ipv4Addr> = (0..PEERS)
        .map(|i| Ipv4Addr::new(198, 51, (i / 250) as u8, (i % 250 + 1) as u8))
        .collect();
    let c = Arc::new(
        Core::new(CoreConfig {
            local: A.into(),
            allow_any_peer: false,
            networks: vec![NetworkConfig {
                vni: Vni::new(42).unwrap(),
                peers: peers.into_iter().map(Into::into).collect(),
                own_mac: MacAddr([2, 0, 0, 0, 0, 0xa]),
                ageing: Duration::from_secs(300),
                max_learned: 1024,
                port: encap::vxlan::DEFAULT_PORT,
                ..Default::default()
            }],
        })
        .unwrap(),
    );
    let sock = Arc::new(SendCounter {
        calls: AtomicUsize::new(0),
        datagrams: AtomicUsize::new(0),
        largest: AtomicUsize::new(0),
        fd: std::os::unix::net::UnixDatagram::unbound().unwrap(),
    });
    let tap = Arc::new(MemDevice::new(64, true).unwrap());
    let mut vx = VxlanConfig::new(A);
    vx.udp_checksum = false;
    let mut w = L2Worker::new(
        Arc::new(L2::new(c, vec![false])),
        (encap::vxlan::DEFAULT_PORT, Arc::clone(&sock)),
        TunnelTx::new(Arc::clone(&sock), vx, 1500),
        vec![DevPort::new(Arc::clone(&tap), "tap", true, true)],
    );
    let bcast = frame(MacAddr::BROADCAST, HOST_A);
    let mut now = Timestamp(1000);
    let mut broadcast = |now: Timestamp| {
        assert!(tap.inject(&bcast));
        assert_eq!(w.drain(DEVICE, now, BUDGET), Ok(false));
    };
    // Warm up: a header template per peer.
    broadcast(now);
    let (calls0, sent0) = (sock.calls.load(Relaxed), sock.datagrams.load(Relaxed));
    assert_eq!(sent0, PEERS);
    assert_eq!(
        calls0,
        PEERS.div_ceil(64),
        "sendmmsg calls for one broadcast"
    );
    const ROUNDS: usize = 20;
    let allocs = allocations(|| {
        for _ in 0..ROUNDS {
            now = Timestamp(now.0 + 1);
            broadcast(now);
        }
    });
    assert_eq!(allocs, 0, "replication allocated");
    let calls = sock.calls.load(Relaxed) - calls0;
    let sent = sock.datagrams.load(Relaxed) - sent0;
    assert_eq!((calls, sent), (ROUNDS * 8, ROUNDS * PEERS));
    assert_eq!(sock.largest.load(Relaxed), 64);
    eprintln!(
        "one broadcast to {PEERS} peers: {} sendmmsg calls, {} datagrams",
        calls / ROUNDS,
        sent / ROUNDS
    );
}

#[test]
fn steady_state_l3_workers_do_not_allocate() {
    // L3 VXLAN: a resolved next hop out, and a frame for us in.
    let own = MacAddr([2, 0, 0, 0, 0, 1]);
    let c = core(A, B, own, encap::vxlan::DEFAULT_PORT);
    let routes = Arc::new(Routes::with_overlay_routes(A, false, &[]).unwrap());
    let own_ip = Ipv4Addr::new(10, 244, 0, 1);
    let peer_ip = Ipv4Addr::new(10, 244, 0, 7);
    c.neigh_add(Timestamp(0), Vni::new(42).unwrap(), peer_ip, HOST_B)
        .unwrap();
    let engine = Arc::new(L3Vx::new(
        Arc::clone(&c),
        NetId(0),
        L3VxConfig::new(own, own_ip, 24),
        routes,
    ));
    let tun = Arc::new(MemDevice::new(64, true).unwrap());
    let udp = Arc::new(MemSocket::new(64).unwrap());
    let mut vx = VxlanConfig::new(A);
    vx.udp_checksum = false;
    let mut w = L3VxWorker::new(
        engine,
        (encap::vxlan::DEFAULT_PORT, Arc::clone(&udp)),
        TunnelTx::new(Arc::clone(&udp), vx, 1500),
        DevPort::new(Arc::clone(&tun), "tun", true, true),
    );
    let out_pkt = ipv4(own_ip, peer_ip, 100, 0, 1);
    let mut in_dgram = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
    in_dgram.extend_from_slice(&own.0);
    in_dgram.extend_from_slice(&HOST_B.0);
    in_dgram.extend_from_slice(&[0x08, 0x00]);
    in_dgram.extend_from_slice(&ipv4(peer_ip, own_ip, 100, 0, 2));
    let mut round = |now: Timestamp| {
        assert!(tun.inject(&out_pkt));
        assert_eq!(w.drain(DEVICE, now, BUDGET), Ok(false));
        assert_eq!(udp.take_sent(|_, _| ()), 1);
        assert!(udp.inject(B, 0, &in_dgram));
        assert_eq!(w.drain(SOCKET, now, BUDGET), Ok(false));
        assert_eq!(drain_written(&tun), 1);
    };
    round(Timestamp(1000));
    let allocs = allocations(|| {
        for k in 0..200 {
            round(Timestamp(1001 + k));
        }
    });
    assert_eq!(allocs, 0, "the L3 VXLAN path allocated");
    assert_eq!(w.counters().total_drops(), 0, "{:?}", w.counters());

    // IPIP (in memory, so any addresses): a routed packet out, an IPIP packet in, for IPv4
    // and for IPv6 (protocol 41).
    let (a, b) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
    let route = Route {
        prefix: "10.0.2.0/24".parse().unwrap(),
        via: b.into(),
    };
    let route6 = Route {
        prefix: "fd00:2::/64".parse().unwrap(),
        via: b.into(),
    };
    let ipip = Arc::new(Ipip::new(
        &IpipSettings {
            local: a,
            allow_any_peer: false,
            tunnel_mtu: 1480,
            ipv6: true,
        },
        Arc::new(Routes::with_routes(a, true, &[route, route6]).unwrap()),
    ));
    let tun = Arc::new(MemDevice::new(64, true).unwrap());
    let sock = Arc::new(MemSocket::new(64).unwrap());
    let mut w = IpipWorker::new(
        ipip,
        IpipConfig::new(a),
        1,
        1480,
        DevPort::new(Arc::clone(&tun), "tunl", true, true),
        Arc::clone(&sock),
    );
    assert!(tun.tcp_gso());
    let (pod_a, pod_b) = (Ipv4Addr::new(10, 0, 1, 5), Ipv4Addr::new(10, 0, 2, 7));
    let out_pkt = ipv4(pod_a, pod_b, 200, 0, 1);
    let mut wire = ipv4(b, a, 20 + 200, 0, 0);
    wire[9] = 4;
    wire[10..12].fill(0);
    let sum = encap::checksum::checksum(&wire[..20]);
    wire[10..12].copy_from_slice(&sum.to_be_bytes());
    wire[20..].copy_from_slice(&ipv4(pod_b, pod_a, 200, 0, 2));
    // An IPv6 UDP-ish packet fd00:1::5 -> fd00:2::7, and the other way round inside
    // protocol 41.
    let ipv6 = |src: &str, dst: &str| {
        let mut p = vec![0u8; 40 + 160];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&160u16.to_be_bytes());
        (p[6], p[7]) = (17, 64);
        p[8..24].copy_from_slice(&src.parse::<std::net::Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(&dst.parse::<std::net::Ipv6Addr>().unwrap().octets());
        p
    };
    let out6 = ipv6("fd00:1::5", "fd00:2::7");
    let mut wire6 = wire[..20].to_vec();
    wire6.extend_from_slice(&ipv6("fd00:2::7", "fd00:1::5"));
    let total = wire6.len() as u16;
    wire6[2..4].copy_from_slice(&total.to_be_bytes());
    wire6[9] = 41;
    wire6[10..12].fill(0);
    let sum = encap::checksum::checksum(&wire6[..20]);
    wire6[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut round = |now: Timestamp| {
        assert!(tun.inject(&out_pkt) && tun.inject(&out6));
        assert_eq!(w.drain(DEVICE, now, BUDGET), Ok(false));
        assert_eq!(sock.take_sent(|_, _| ()), 2);
        assert!(sock.inject(b, 0, &wire) && sock.inject(b, 0, &wire6));
        assert_eq!(w.drain(SOCKET, now, BUDGET), Ok(false));
        assert_eq!(drain_written(&tun), 2);
    };
    round(Timestamp(1000));
    let allocs = allocations(|| {
        for k in 0..200 {
            round(Timestamp(1001 + k));
        }
    });
    assert_eq!(allocs, 0, "the IPIP path allocated");
    assert_eq!(w.counters().total_drops(), 0, "{:?}", w.counters());
}

/// A device that counts what it is given.
#[derive(Default)]
struct CountingDevice {
    packets: Cell<u64>,
    bytes: Cell<u64>,
}

impl PacketWrite for CountingDevice {
    fn write_packet(&self, iov: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        let n: usize = iov.iter().map(|s| s.len()).sum();
        self.packets.set(self.packets.get() + 1);
        self.bytes.set(self.bytes.get() + n as u64);
        Ok(n)
    }
}

#[test]
fn receive_coalescing_does_not_allocate() {
    // One receive batch's worth: 44 segments of a flow, then a gap (a second run); over IPv4
    // and over IPv6.
    let seq = |k: u32| k * 1400 + if k >= 44 { 7000 } else { 0 };
    let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    let v4: Vec<Vec<u8>> = (0..48u32).map(|k| tcp(a, b, seq(k), 1400)).collect();
    coalescing_allocates_nothing(&v4, 40);
    let (a, b) = ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
    let v6: Vec<Vec<u8>> = (0..48u32).map(|k| tcp6(a, b, seq(k), 1400)).collect();
    coalescing_allocates_nothing(&v6, 60);
}

/// Runs `segs` (IP packets with `hdr` bytes of headers each) through a [`TcpRun`] 201 times,
/// watching the last 200 for allocations.
fn coalescing_allocates_nothing(segs: &[Vec<u8>], hdr: usize) {
    let dev = CountingDevice::default();
    let mut run = TcpRun::new(Framing::Ip);
    let batch = |run: &mut TcpRun| {
        let bytes = |(i, off): Part| segs.get(i).and_then(|p| p.get(off..));
        for (i, p) in segs.iter().enumerate() {
            let seg = batch_gro::tcp_segment(p, Framing::Ip).expect("mergeable");
            assert!(batch_gro::kernel_merged(p, Framing::Ip, 1480).is_none());
            if !run.offer(0, (i, 0), &seg, bytes) {
                assert!(!matches!(
                    run.flush(|_| Some(&dev), bytes),
                    Flushed::Refused { .. }
                ));
                run.start(0, (i, 0), &seg);
            }
        }
        assert!(matches!(
            run.flush(|_| Some(&dev), bytes),
            Flushed::Merged { count: 4, .. }
        ));
    };
    batch(&mut run);
    let allocs = allocations(|| {
        for _ in 0..200 {
            batch(&mut run);
        }
    });
    assert_eq!(allocs, 0, "the receive coalescing allocated");
    // Two super-packets a batch: 44 and 4 segments, each behind one virtio-net + header copy.
    assert_eq!(dev.packets.get(), 2 * 201);
    assert_eq!(dev.bytes.get(), 201 * (2 * (10 + hdr) + 48 * 1400) as u64);
}
