//! Per-packet cost of the forwarding core: known-unicast `on_local`, `on_remote` with a
//! learning refresh, and head-end replication to 1, 8 and 32 peers (divide by the peer count
//! for the cost per replica). The allocation profiler shows the paths do not allocate.
//! The `count_*` benches are what the dataplane adds per packet for the traffic counters
//! (per network and per peer: `vtepd::daemon::stats::Traffic`). The `trace_*` benches are
//! `on_remote_learned_refresh` as a worker runs it under `vtepd trace`: off (no session
//! armed), armed with a filter the packet does not match, and traced. The `capture_*` benches
//! are the same receive path under `vtepd capture` (the datagram kept as received, its outer
//! header made up, the delivered frame): off, armed for other packets, every packet captured.
//! `l3vx_on_local_resolved` is the L3 VXLAN engine's path for an IPv4 packet whose next hop is
//! resolved.
//!
//! Run: `cargo bench --bench forward`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use encap::vxlan::{HEADER_LEN, VxlanPacket};
use encap::{MacAddr, Vni};
use vtepd::core::capture::{Link, Spec};
use vtepd::core::trace::{Filter, Headers, Origin};
use vtepd::core::{
    Core, CoreConfig, Counters, FromDevice, FromTunnel, NetId, NetworkConfig, Outer, Remote,
    Remotes, Timestamp,
};
use vtepd::daemon::capture::{CaptureSessions, Received, WorkerCapture, capture_tunnel};
use vtepd::daemon::session::{ArmedFlags, Limits, Sessions};
use vtepd::daemon::stats::StatsBoard;
use vtepd::daemon::trace::WorkerTrace;

#[global_allocator]
static ALLOC: divan::AllocProfiler = divan::AllocProfiler::system();

fn main() {
    divan::main();
}

const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const NET: NetId = NetId(0);

fn vni() -> Vni {
    Vni::new(100).unwrap()
}

fn peer(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(
        u32::from(Ipv4Addr::new(198, 51, 100, 0)) + 1 + i as u32,
    ))
}

fn host(i: u32) -> MacAddr {
    let b = i.to_be_bytes();
    MacAddr([0x02, 0, b[0], b[1], b[2], b[3]])
}

/// A core with `peers` flood-list peers and `fdb` learned entries spread over them.
fn core(peers: usize, fdb: u32) -> Core {
    let c = Core::new(CoreConfig {
        local: LOCAL.into(),
        allow_any_peer: false,
        networks: vec![NetworkConfig {
            vni: vni(),
            peers: (0..peers).map(peer).collect(),
            own_mac: MacAddr([0x02, 0xff, 0, 0, 0, 1]),
            ..Default::default()
        }],
    })
    .unwrap();
    let mut ctr = Counters::default();
    for i in 0..fdb {
        let mut d = datagram(MacAddr::BROADCAST, host(i));
        c.on_remote(
            Timestamp(0),
            peer(i as usize % peers).into(),
            &mut d,
            &mut ctr,
        );
    }
    assert_eq!(ctr.learned, u64::from(fdb));
    c
}

fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.resize(64, 0);
    f
}

fn datagram(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    let mut d = vec![0u8; HEADER_LEN];
    VxlanPacket::new_unchecked(&mut d[..]).set_header(vni());
    d.extend_from_slice(&frame(dst, src));
    d
}

const FDB_SIZE: u32 = 10_000;

/// A local frame to a learned MAC: one FDB lookup, one remote.
#[divan::bench(sample_count = 200, sample_size = 5000)]
fn on_local_known_unicast(bencher: divan::Bencher) {
    let c = core(8, FDB_SIZE);
    let f = frame(host(1234), MacAddr([0x02, 0xee, 0, 0, 0, 1]));
    let (mut to, mut ctr) = (Remotes::with_capacity(64), Counters::default());
    bencher.bench_local(|| {
        let v = black_box(c.on_local(Timestamp(1), NET, black_box(&f), &mut to, &mut ctr));
        debug_assert!(v == FromDevice::Tunnel && to.len() == 1);
    });
}

/// A datagram from a known peer whose source MAC is already learned: header checks, peer
/// check, learning refresh (the clock advances, so the refresh stores), one `Deliver`.
#[divan::bench(sample_count = 200, sample_size = 5000)]
fn on_remote_learned_refresh(bencher: divan::Bencher) {
    let c = core(8, FDB_SIZE);
    let src = Outer::from(peer(1234 % 8));
    // Outer TOS 0 (Not-ECT): the in-place ECN step leaves the datagram as it is.
    let mut d = datagram(MacAddr([0x02, 0xee, 0, 0, 0, 1]), host(1234));
    let mut ctr = Counters::default();
    let mut now = 1u64;
    bencher.bench_local(|| {
        now += 1;
        let v = black_box(c.on_remote(Timestamp(now), src, black_box(d.as_mut_slice()), &mut ctr));
        debug_assert!(matches!(v, FromTunnel::Deliver { .. }));
    });
    assert_eq!(ctr.mac_moves + ctr.learned, 0);
}

/// A broadcast frame replicated to every flood-list peer (cost per call; divide by `peers`
/// for the cost per replica).
#[divan::bench(args = [1, 8, 32], sample_count = 200, sample_size = 5000)]
fn flood(bencher: divan::Bencher, peers: usize) {
    let c = core(peers, 0);
    let f = frame(MacAddr::BROADCAST, MacAddr([0x02, 0xee, 0, 0, 0, 1]));
    let (mut to, mut ctr) = (Remotes::with_capacity(64), Counters::default());
    // Warm up: the first snapshot load on a thread registers it with arc-swap (one allocation).
    c.on_local(Timestamp(1), NET, &f, &mut to, &mut ctr);
    bencher
        .counter(divan::counter::ItemsCount::new(peers))
        .bench_local(|| {
            let v = black_box(c.on_local(Timestamp(1), NET, black_box(&f), &mut to, &mut ctr));
            debug_assert!(v == FromDevice::Tunnel && to.len() == peers);
        });
}

/// `on_remote_learned_refresh` and what the dataplane counts for the delivered frame: the
/// network's and the peer's `rx_tunnel` and bytes.
#[divan::bench(sample_count = 200, sample_size = 5000)]
fn on_remote_counted(bencher: divan::Bencher) {
    let c = core(8, FDB_SIZE);
    let board = StatsBoard::new(1);
    board.ensure_networks(1);
    let traffic = board.traffic(0);
    let src = Outer::from(peer(1234 % 8));
    let mut d = datagram(MacAddr([0x02, 0xee, 0, 0, 0, 1]), host(1234));
    let mut ctr = Counters::default();
    let mut now = 1u64;
    bencher.bench_local(|| {
        now += 1;
        let v = black_box(c.on_remote(Timestamp(now), src, black_box(d.as_mut_slice()), &mut ctr));
        if let FromTunnel::Deliver { net, range } = v {
            traffic.tunnel_rx(net, src.src, 1, range.len() as u64);
        }
    });
    assert!(board.peers().0.len() == 1);
}

/// The counting alone for one sent copy (network and peer cells), over 32 remotes in turn: the
/// cost per flooded replica on top of `flood`.
#[divan::bench(sample_count = 200, sample_size = 5000)]
fn count_tunnel_tx_32_peers(bencher: divan::Bencher) {
    let board = StatsBoard::new(1);
    board.ensure_networks(1);
    let traffic = board.traffic(0);
    let remotes: Vec<Remote> = (0..32).map(|i| peer(i).into()).collect();
    let mut i = 0;
    bencher.bench_local(|| {
        i = (i + 1) % remotes.len();
        traffic.tunnel_tx(NET, black_box(remotes[i]), 1, black_box(64));
    });
    assert_eq!(board.peers().0.len(), 32);
}

/// How a worker runs the engine under `vtepd trace`: the armed flag read once per batch of
/// 64, and for each packet the traced variant only when a session may take it (`check`
/// false: the same loop without the per-packet check, the baseline of `trace_off`).
fn trace_bench(bencher: divan::Bencher, filter: Option<Filter>, check: bool) {
    let c = core(8, FDB_SIZE);
    let sessions = std::sync::Arc::new(Sessions::new(Limits {
        max_count: u64::MAX,
        ..Limits::default()
    }));
    if let Some(f) = filter {
        sessions.start(f, u64::MAX, Timestamp(0)).unwrap();
    }
    let mut wt = WorkerTrace::new(std::sync::Arc::clone(&sessions), 0);
    let src = Outer::from(peer(1234 % 8));
    let mut d = datagram(MacAddr([0x02, 0xee, 0, 0, 0, 1]), host(1234));
    let mut ctr = Counters::default();
    let mut now = 1u64;
    bencher.bench_local(|| {
        now += 1;
        if now % 64 == 0 {
            wt.refresh();
        }
        let d = black_box(d.as_mut_slice());
        let origin = Origin::Tunnel {
            src: src.src.ip(),
            src_port: None,
            dst_port: Some(src.port),
            tos: 0,
        };
        let v = if check && wt.armed() && wt.begin(origin, || Headers::of_vxlan(d)) {
            let v = c.on_remote_traced(Timestamp(now), src, d, &mut ctr, wt.recorder());
            wt.finish_tunnel(Timestamp(now), &v);
            v
        } else {
            c.on_remote(Timestamp(now), src, d, &mut ctr)
        };
        black_box(v);
    });
}

/// The loop of the `trace_*` benches without tracing: what `trace_off` is compared with.
#[divan::bench(sample_count = 200, sample_size = 5000)]
fn trace_baseline(bencher: divan::Bencher) {
    trace_bench(bencher, None, false);
}

/// No trace armed: the untraced path behind the worker's flag.
#[divan::bench(sample_count = 200, sample_size = 5000)]
fn trace_off(bencher: divan::Bencher) {
    trace_bench(bencher, None, true);
}

/// A trace armed for other packets: headers parsed and the filter checked, not traced.
#[divan::bench(sample_count = 200, sample_size = 5000)]
fn trace_armed_other_packets(bencher: divan::Bencher) {
    let f = "ip=10.99.99.99".parse().unwrap();
    trace_bench(bencher, Some(f), true);
}

/// Every packet traced: the traced variant, its record built and queued (the queue is full
/// after the first 1024: the rest are counted as lost, as when a client reads too slowly).
#[divan::bench(sample_count = 200, sample_size = 5000)]
fn trace_every_packet(bencher: divan::Bencher) {
    trace_bench(bencher, Some(Filter::default()), true);
}

/// How an L2 worker receives under `vtepd capture`: one armed word read per batch of 64 (for
/// trace and capture), and for each packet the capture's copy and records only when a
/// session may take it (`check` false: the loop without the per-packet checks).
fn capture_bench(bencher: divan::Bencher, filter: Option<Filter>, check: bool) {
    let c = core(8, FDB_SIZE);
    let limits = Limits {
        max_count: u64::MAX,
        ..Limits::default()
    };
    let flags = ArmedFlags::default();
    let traces = std::sync::Arc::new(Sessions::sharing(limits, &flags, 0));
    let captures = std::sync::Arc::new(CaptureSessions::sharing(limits, &flags, 1));
    if let Some(f) = filter {
        let spec = Spec::default();
        captures
            .start_with(f, u64::MAX, u64::MAX, spec, Timestamp(0))
            .unwrap();
    }
    let mut wt = WorkerTrace::new(traces, 0);
    let mut cap = WorkerCapture::new(captures, 0);
    let src = Outer::from(peer(1234 % 8));
    let mut d = datagram(MacAddr([0x02, 0xee, 0, 0, 0, 1]), host(1234));
    let mut ctr = Counters::default();
    let mut now = 1u64;
    bencher.bench_local(|| {
        now += 1;
        if now % 64 == 0 {
            wt.refresh();
            cap.refresh(&wt, Timestamp(now));
        }
        let d = black_box(d.as_mut_slice());
        let origin = Origin::Tunnel {
            src: src.src.ip(),
            src_port: Some(50000),
            dst_port: Some(4789),
            tos: 0,
        };
        let captured = check && wt.armed() && cap.keep(&origin, d, Headers::of_vxlan);
        let v = c.on_remote(Timestamp(now), src, d, &mut ctr);
        if check && wt.armed() {
            let r = Received::of(src.src.ip(), 50000, LOCAL.into(), 4789, 0);
            let kept = captured.then_some((r, cap.kept()));
            capture_tunnel(&cap, origin, &v, kept, d, Link::Ethernet, false);
        }
        v
    });
}

/// The receive path under `vtepd capture`, by case: `baseline` (the loop without the
/// per-packet checks, what `off` is compared with), `off` (nothing armed: the untraced path
/// behind the worker's one flag), `armed_other_packets` (headers parsed and the filter checked,
/// nothing copied), `every_packet` (the datagram kept, its outer header made up, both records,
/// the outer packet and the delivered frame, built and queued; the queue is full after the
/// first 1024: the rest are counted as lost, as when a client reads too slowly).
#[divan::bench(
    sample_count = 200,
    sample_size = 5000,
    args = ["baseline", "off", "armed_other_packets", "every_packet"]
)]
fn capture(bencher: divan::Bencher, case: &str) {
    match case {
        "baseline" => capture_bench(bencher, None, false),
        "off" => capture_bench(bencher, None, true),
        "armed_other_packets" => {
            let f = "ip=10.99.99.99".parse().unwrap();
            capture_bench(bencher, Some(f), true);
        }
        _ => capture_bench(bencher, Some(Filter::default()), true),
    }
}

/// L3 VXLAN: an IPv4 packet from the TUN to an on-link next hop with a static neighbour whose
/// MAC is learned: the engine's decision, its Ethernet header, one FDB lookup, one remote.
#[divan::bench(sample_count = 200, sample_size = 5000)]
fn l3vx_on_local_resolved(bencher: divan::Bencher) {
    use std::sync::Arc;
    use vtepd::core::l3vx::{L3Vx, L3VxConfig};
    use vtepd::core::route::Routes;
    let c = Arc::new(core(8, FDB_SIZE));
    let hop = Ipv4Addr::new(10, 0, 0, 7);
    c.neigh_add(Timestamp(0), vni(), hop, host(1234)).unwrap();
    let cfg = L3VxConfig::new(
        MacAddr([0x02, 0xff, 0, 0, 0, 1]),
        Ipv4Addr::new(10, 0, 0, 1),
        24,
    );
    let e = L3Vx::new(Arc::clone(&c), NET, cfg, Arc::new(Routes::new(LOCAL)));
    let mut f = vec![0u8; 14 + 64];
    f[14] = 0x45;
    f[16..18].copy_from_slice(&64u16.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&hop.octets());
    let (mut out, mut ctr) = (vtepd::core::Out::default(), Counters::default());
    bencher.bench_local(|| {
        let v = black_box(e.on_local(Timestamp(1), black_box(&mut f), &mut out, &mut ctr));
        debug_assert!(v == FromDevice::Tunnel && out.remotes.len() == 1);
    });
}
