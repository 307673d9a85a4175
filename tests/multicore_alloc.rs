//! The per-packet path allocates nothing: a counting global allocator watches one thread while
//! it runs, in steady state, what a worker does for every packet - a frame through
//! `Core::on_local`, its outer header from a cached `VxlanEncap` template, queued into the
//! `SendBatch` and sent with `sendmmsg` on a raw socket (one unicast copy and one flooded to two
//! peers); the datagrams read back with `recvmmsg` into the `RecvBatch` and handed to
//! `Core::on_remote` (which refreshes the learned entry). Loopback only; the raw socket needs
//! CAP_NET_RAW (without it the test says so and passes, except under CI).
//! The receive side's TCP coalescing (`batch_gro::TcpRun`: segments checked, joined into runs,
//! written as one super-packet from where they were received) allocates nothing either.
//! The allocator is the one `unsafe` outside src/sys.rs: a test-only forwarding wrapper.

use encap::{MacAddr, Vni, VxlanConfig, VxlanEncap, VxlanTx};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;
use vtepd::core::{
    Core, CoreConfig, Counters, FromDevice, FromTunnel, NetId, NetworkConfig, Remotes, Timestamp,
};
use vtepd::daemon::batch::{HEADROOM, RecvBatch, SendBatch};
use vtepd::daemon::batch_gro::{self, Flushed, Framing, PacketWrite, Part, TcpRun};

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
static A: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    COUNT.with(|c| c.set(0));
    WATCH.with(|w| w.set(true));
    f();
    WATCH.with(|w| w.set(false));
    COUNT.with(|c| c.get())
}

const LOCAL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const PEER2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const OWN: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const REMOTE_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

fn frame(dst: MacAddr, src: MacAddr, out: &mut [u8]) -> usize {
    // Ethernet + a minimal IPv4/UDP packet: the flow hash looks into it.
    let mut f = [0u8; 60];
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
    out[..60].copy_from_slice(&f);
    60
}

#[test]
fn steady_state_forwarding_does_not_allocate() {
    let vni = Vni::new(42).unwrap();
    let core = Arc::new(
        Core::new(CoreConfig {
            local: LOCAL,
            allow_any_peer: true,
            networks: vec![NetworkConfig {
                vni,
                peers: vec![PEER, PEER2],
                own_mac: OWN,
                learning: true,
                ageing: Duration::from_secs(300),
                max_learned: 1024,
            }],
        })
        .unwrap(),
    );
    // The "remote VTEP": a UDP socket the raw socket's datagrams go to (they carry its port).
    let rx = UdpSocket::bind((LOCAL, 0)).unwrap();
    let port = rx.local_addr().unwrap().port();
    let raw = match socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::from(libc::IPPROTO_RAW)),
    ) {
        Ok(s) => s,
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI needs CAP_NET_RAW: {e}"
            );
            eprintln!("skipped: no raw socket ({e})");
            return;
        }
    };
    let mut vx = VxlanConfig::new(LOCAL);
    vx.dst_port = port;
    vx.udp_checksum = false;
    let enc: Vec<VxlanEncap> = [LOCAL, PEER, PEER2]
        .iter()
        .map(|r| VxlanEncap::new(&vx, *r).unwrap())
        .collect();
    let mut txb = SendBatch::new();
    let mut rxb = RecvBatch::new();
    let mut to = Remotes::with_capacity(64);
    let mut ctr = Counters::default();
    let mut now = Timestamp(1000);

    // Learn REMOTE_MAC (a map insert), thread-local state of the map's guards.
    // A frame to REMOTE_MAC is flooded until then.
    let mut first = [0u8; 128];
    let n = frame(OWN, REMOTE_MAC, &mut first[8..]);
    first[0] = 0x08;
    first[4..7].copy_from_slice(&[0, 0, 42]);
    core.on_remote(now, PEER.into(), &mut first[..8 + n], &mut ctr);

    // One round of a worker's work, both directions.
    let mut round = |now: Timestamp, txb: &mut SendBatch, rxb: &mut RecvBatch| {
        for dst in [REMOTE_MAC, MacAddr::BROADCAST] {
            let (slot, buf) = txb.next_slot();
            let len = frame(dst, OWN, &mut buf[HEADROOM..]);
            txb.commit_slot();
            let f = &txb.slot_mut(slot)[HEADROOM..HEADROOM + len];
            let v = core.on_local(now, NetId(0), f, &mut to, &mut ctr);
            assert_eq!(v, FromDevice::Tunnel);
            let vni = to.vni();
            for _dst in to.as_slice() {
                // Every copy goes to the loopback "remote", whatever its VTEP address.
                let buf = txb.slot_mut(slot);
                let r = enc[0]
                    .encapsulate(buf, HEADROOM, len, &VxlanTx::new(vni))
                    .unwrap();
                let mut head = [0u8; HEADROOM];
                head.copy_from_slice(&buf[r.start..r.start + HEADROOM]);
                assert!(txb.push(&head, slot, len, LOCAL));
            }
        }
        {
            let done = txb.flush(&raw, |d, e| panic!("send to {d}: {e}"));
            assert_eq!(done.sent, 3, "one unicast copy and two flooded ones");
            let (n, _) = rxb.recv(&rx).unwrap();
            assert_eq!(n, 3);
            for i in 0..n {
                let (d, m) = rxb.get(i).unwrap();
                // The datagram as a remote VTEP would send it: from PEER, REMOTE_MAC inside.
                let mut dg = [0u8; 128];
                dg[..d.len()].copy_from_slice(d);
                dg[8 + 6..8 + 12].copy_from_slice(&REMOTE_MAC.0);
                let v = core.on_remote(now, PEER.into(), &mut dg[..d.len()], &mut ctr);
                assert!(
                    matches!(v, FromTunnel::Deliver { .. }),
                    "{v:?} from {:?}",
                    m.src
                );
            }
        }
    };
    // Warm up: thread-local state of the map's guards, the socket paths.
    round(now, &mut txb, &mut rxb);

    let allocs = allocations(|| {
        for _ in 0..200 {
            now = Timestamp(now.0 + 1);
            round(now, &mut txb, &mut rxb);
        }
    });
    assert_eq!(allocs, 0, "the per-packet path allocated");
    assert!(ctr.rx_device >= 400 && ctr.flood_copies >= 400, "{ctr:?}");
    assert!(ctr.rx_tunnel >= 600, "{ctr:?}");
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

/// An IPv4/TCP segment (ACK, no options) of `payload` bytes at sequence `seq`, checksums valid.
fn tcp_segment(seq: u32, payload: usize) -> Vec<u8> {
    let mut p = vec![0u8; 40 + payload];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&[10, 0, 0, 1]);
    p[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let c = encap::checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&1234u16.to_be_bytes());
    p[22..24].copy_from_slice(&80u16.to_be_bytes());
    p[24..28].copy_from_slice(&seq.to_be_bytes());
    p[32] = 5 << 4;
    p[33] = 0x10;
    p[34..36].copy_from_slice(&512u16.to_be_bytes());
    for (i, b) in p[40..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let ps = encap::checksum::pseudo_header(
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(10, 0, 0, 2),
        6,
        (20 + payload) as u16,
    );
    let c = encap::checksum::finish(encap::checksum::add(ps, encap::checksum::sum(&p[20..])));
    p[36..38].copy_from_slice(&c.to_be_bytes());
    p
}

#[test]
fn receive_coalescing_does_not_allocate() {
    // One receive batch's worth: 44 segments of a flow, then a gap (a second run).
    let segs: Vec<Vec<u8>> = (0..48u32)
        .map(|k| tcp_segment(k * 1400 + if k >= 44 { 7000 } else { 0 }, 1400))
        .collect();
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
            Flushed::Merged { count: 4 }
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
    assert_eq!(dev.bytes.get(), 201 * (2 * (10 + 40) + 48 * 1400));
}
