//! The real dataplane workers of every mode, driven in memory: their device queues and sockets
//! are `daemon::io::mem` fakes, so a test injects a frame or datagram, calls the worker's
//! `drain` as the event loop would, and checks what it wrote or sent, with no kernel. Outer
//! headers are checked with encap's decapsulators and inner packets byte for byte against what
//! went in.

mod engine_support;
mod packet_support;

use encap::{IpipConfig, MacAddr, Vni, VxlanConfig};
use engine_support::{LOCAL, ipip, l3vx, vni};
use packet_support::{ipv4, tcp};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use vtepd::core::capture::{Captured, Dir, Link, MAX_SNAPLEN, Side, Sides, Spec};
use vtepd::core::l2::L2;
use vtepd::core::route::Route;
use vtepd::core::trace::{Filter, Mac, Origin, Outcome, Record, Step, WorkerStage};
use vtepd::core::{Core, CoreConfig, DropReason, NetId, NetworkConfig, Timestamp};
use vtepd::daemon::batch::MAX_PACKET;
use vtepd::daemon::batch_gro::VNET_HDR_LEN;
use vtepd::daemon::capture::{
    ANSWER, CAPTURE_LIMITS, CaptureSessions, OWN_FRAME, TSO_SEGMENT, WorkerCapture,
};
use vtepd::daemon::dev_port::DevPort;
use vtepd::daemon::event_loop::{BUDGET, Dataplane};
use vtepd::daemon::io::mem::{MemDevice, MemSocket};
use vtepd::daemon::l2_vxlan::L2Worker;
use vtepd::daemon::l3_ipip::IpipWorker;
use vtepd::daemon::l3_vxlan::L3VxWorker;
use vtepd::daemon::session::{ArmedFlags, Limits};
use vtepd::daemon::trace::{TraceSessions, WorkerTrace};
use vtepd::daemon::tunnel_tx::TunnelTx;

const P1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const P2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
const OWN: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const HOST_A: MacAddr = MacAddr([2, 0, 0, 0, 0xa, 1]);
const HOST_B: MacAddr = MacAddr([2, 0, 0, 0, 0xb, 1]);
/// Source 0 of every worker is its socket, source 1 its (first) device queue.
const SOCKET: usize = 0;
const DEVICE: usize = 1;
const NOW: Timestamp = Timestamp(1000);
/// The underlay MTU the VXLAN workers send over.
const UNDERLAY_MTU: u32 = 1500;
/// Hosts A and B of the L2 tests (B behind the tunnel).
const A_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// A core with one network, VNI 42, flooding to `peers`.
fn core(peers: Vec<Ipv4Addr>) -> Arc<Core> {
    engine_support::core(OWN, peers)
}

fn vxlan_settings() -> VxlanConfig {
    let mut v = VxlanConfig::new(LOCAL);
    v.udp_checksum = false;
    v
}

/// An Ethernet frame carrying `payload` (IPv4).
fn frame(dst: MacAddr, src: MacAddr, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(payload);
    f
}

/// A VXLAN datagram (UDP payload) for VNI 42 carrying `inner`.
fn vxlan(inner: &[u8]) -> Vec<u8> {
    let mut d = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
    d.extend_from_slice(inner);
    d
}

/// Every datagram `sock` sent: (destination, bytes).
fn sent(sock: &MemSocket) -> Vec<(IpAddr, Vec<u8>)> {
    let mut v = Vec::new();
    sock.take_sent(|dst, p| v.push((dst, p.to_vec())));
    v
}

/// Every packet written to `dev`, without its virtio-net header (which must say "nothing to
/// do" unless `gso`).
fn written(dev: &MemDevice) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    dev.take_written(|p| v.push(p.to_vec()));
    v
}

fn plain(packets: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    packets
        .into_iter()
        .map(|p| {
            assert_eq!(&p[..VNET_HDR_LEN], &[0u8; VNET_HDR_LEN], "a plain write");
            p[VNET_HDR_LEN..].to_vec()
        })
        .collect()
}

struct L2Rig {
    w: L2Worker<MemDevice, Arc<MemSocket>>,
    tap: Arc<MemDevice>,
    udp: Arc<MemSocket>,
    raw: Arc<MemSocket>,
}

fn l2(peers: Vec<Ipv4Addr>) -> L2Rig {
    let engine = Arc::new(L2::new(core(peers), vec![false]));
    let tap = Arc::new(MemDevice::new(128, true).unwrap());
    let udp = Arc::new(MemSocket::new(128).unwrap());
    let raw = Arc::new(MemSocket::new(128).unwrap());
    let tx = TunnelTx::new(Arc::clone(&raw), vxlan_settings(), UNDERLAY_MTU);
    let port = DevPort::new(Arc::clone(&tap), "tap0", true, true);
    let w = L2Worker::new(engine, (4789, Arc::clone(&udp)), tx, vec![port]);
    L2Rig { w, tap, udp, raw }
}

#[test]
fn l2_floods_learns_delivers_and_sends_unicast() {
    let mut r = l2(vec![P1, P2]);
    assert_eq!(r.w.sources().len(), 2);
    // A broadcast from the local host: one copy per peer, each a VXLAN packet from us.
    let bcast = frame(
        MacAddr::BROADCAST,
        HOST_A,
        &ipv4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 255),
            60,
            0,
            1,
        ),
    );
    assert!(r.tap.inject(&bcast));
    assert_eq!(r.w.drain(DEVICE, NOW, BUDGET), Ok(false));
    let out = sent(&r.raw);
    assert_eq!(
        out.iter().map(|(d, _)| *d).collect::<Vec<_>>(),
        vec![IpAddr::from(P1), IpAddr::from(P2)]
    );
    for (dst, pkt) in &out {
        let rx = encap::tunnel::vxlan::decapsulate(pkt, 4789).unwrap();
        assert_eq!(
            (IpAddr::from(rx.src), IpAddr::from(rx.dst), rx.vni),
            (IpAddr::from(LOCAL), *dst, vni())
        );
        assert_eq!(&pkt[rx.inner], &bcast[..]);
    }
    assert_eq!(r.w.counters().flood_copies, 2);
    assert_eq!(r.w.counters().rx_device_bytes, bcast.len() as u64);

    // From P1, host B answers host A: delivered into the TAP as it was, B learned behind P1.
    let reply = frame(
        HOST_A,
        HOST_B,
        &ipv4(
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(10, 0, 0, 1),
            60,
            0,
            2,
        ),
    );
    assert!(r.udp.inject(P1, 0, &vxlan(&reply)));
    assert_eq!(r.w.drain(SOCKET, NOW, BUDGET), Ok(false));
    assert_eq!(plain(written(&r.tap)), vec![reply.clone()]);
    let c = r.w.counters();
    assert_eq!((c.rx_tunnel, c.tx_device, c.learned), (1, 1, 1));
    assert_eq!(c.tx_device_bytes, reply.len() as u64);

    // Now a frame to B goes to P1 alone.
    let to_b = frame(
        HOST_B,
        HOST_A,
        &ipv4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            80,
            0,
            3,
        ),
    );
    assert!(r.tap.inject(&to_b));
    assert_eq!(r.w.drain(DEVICE, NOW, BUDGET), Ok(false));
    let out = sent(&r.raw);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, P1);
    let rx = encap::tunnel::vxlan::decapsulate(&out[0].1, 4789).unwrap();
    assert_eq!(&out[0].1[rx.inner], &to_b[..]);
    assert_eq!(r.w.counters().tx_tunnel, 3);

    // From an unknown source: counted, not delivered.
    assert!(
        r.udp
            .inject(Ipv4Addr::new(192, 0, 2, 99), 0, &vxlan(&reply))
    );
    assert_eq!(r.w.drain(SOCKET, NOW, BUDGET), Ok(false));
    assert!(written(&r.tap).is_empty());
    assert_eq!(r.w.counters().drops_of(DropReason::UnknownPeer), 1);
}

/// The traffic cells of an L2 worker: a flood counts one copy for each peer it went to, a
/// delivered frame for its network and sender, a drop in the network its VNI names, and a
/// datagram for a VNI we do not have in no network.
#[test]
fn l2_counts_traffic_per_network_and_per_peer() {
    use vtepd::daemon::stats::StatsBoard;
    let mut r = l2(vec![P1, P2]);
    let board = StatsBoard::new(1);
    board.ensure_networks(1);
    r.w.attach(board.traffic(0));
    let bcast = frame(
        MacAddr::BROADCAST,
        HOST_A,
        &ipv4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 255),
            60,
            0,
            1,
        ),
    );
    assert!(r.tap.inject(&bcast));
    assert_eq!(r.w.drain(DEVICE, NOW, BUDGET), Ok(false));
    let len = bcast.len() as u64;
    let peer = |remote: Ipv4Addr| {
        board
            .peers()
            .0
            .into_iter()
            .find(|(net, r, _)| *net == NetId(0) && *r == remote)
            .map(|(_, _, t)| t)
    };
    for p in [P1, P2] {
        let t = peer(p).unwrap_or_else(|| panic!("no row for {p}"));
        assert_eq!((t.tx_tunnel, t.tx_tunnel_bytes, t.rx_tunnel), (1, len, 0));
    }
    let (net, drops) = board.networks(1)[0];
    assert_eq!((net.tx_tunnel, net.tx_tunnel_bytes), (2, 2 * len));
    assert_eq!((net.rx_device, net.rx_device_bytes), (1, len));
    assert_eq!(r.w.counters().tx_tunnel_bytes, 2 * len);
    assert_eq!(drops.iter().sum::<u64>(), 0);

    let reply = frame(
        HOST_A,
        HOST_B,
        &ipv4(
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(10, 0, 0, 1),
            60,
            0,
            2,
        ),
    );
    assert!(r.udp.inject(P1, 0, &vxlan(&reply)));
    assert_eq!(r.w.drain(SOCKET, NOW, BUDGET), Ok(false));
    let rlen = reply.len() as u64;
    let t = peer(P1).unwrap();
    assert_eq!((t.rx_tunnel, t.rx_tunnel_bytes), (1, rlen));
    let (net, _) = board.networks(1)[0];
    assert_eq!((net.rx_tunnel, net.rx_tunnel_bytes), (1, rlen));
    assert_eq!((net.tx_device, net.tx_device_bytes), (1, rlen));
    assert_eq!(r.w.counters().rx_tunnel_bytes, rlen);

    // A stranger in our VNI: dropped in the network, no row. Another VNI: in no network.
    let stranger = Ipv4Addr::new(192, 0, 2, 99);
    assert!(r.udp.inject(stranger, 0, &vxlan(&reply)));
    let mut other_vni = vxlan(&reply);
    other_vni[6] = 43;
    assert!(r.udp.inject(P1, 0, &other_vni));
    assert_eq!(r.w.drain(SOCKET, NOW, BUDGET), Ok(false));
    let (_, drops) = board.networks(1)[0];
    assert_eq!(drops[DropReason::UnknownPeer as usize], 1);
    assert_eq!(drops.iter().sum::<u64>(), 1);
    assert_eq!(r.w.counters().drops_of(DropReason::UnknownVni), 1);
    assert!(peer(stranger).is_none());
    assert_eq!(board.peers().0.len(), 2);
}

/// Two networks on two UDP ports: the worker polls a socket of each (sources 0 and 1, then the
/// TAPs), takes a network's datagrams only from its own port's socket (`wrong_port` from the
/// other one) and sends each network's copies to its own port.
#[test]
fn l2_listens_and_sends_on_each_networks_port() {
    let (v42, v43) = (vni(), Vni::new(43).unwrap());
    let net = |vni: Vni, port: u16, own: MacAddr| NetworkConfig {
        vni,
        peers: vec![P1.into()],
        own_mac: own,
        port,
        ..Default::default()
    };
    let core = Core::new(CoreConfig {
        local: LOCAL.into(),
        allow_any_peer: false,
        networks: vec![
            net(v42, 4789, OWN),
            net(v43, 8472, MacAddr([2, 0, 0, 0, 0, 2])),
        ],
    })
    .unwrap();
    let engine = Arc::new(L2::new(Arc::new(core), vec![false, false]));
    let taps = [0, 1].map(|_| Arc::new(MemDevice::new(64, true).unwrap()));
    let socks = [0, 1].map(|_| Arc::new(MemSocket::new(64).unwrap()));
    let raw = Arc::new(MemSocket::new(64).unwrap());
    let mut on_8472 = vxlan_settings();
    on_8472.dst_port = 8472;
    let tx =
        TunnelTx::new(Arc::clone(&raw), vxlan_settings(), UNDERLAY_MTU).with_network(v43, on_8472);
    let ports = taps
        .iter()
        .map(|t| DevPort::new(Arc::clone(t), "tap", true, true))
        .collect();
    let mut w = L2Worker::new(engine, (4789, Arc::clone(&socks[0])), tx, ports)
        .with_socket(8472, Arc::clone(&socks[1]));
    assert_eq!(w.sources().len(), 4);

    let reply = frame(HOST_A, HOST_B, &ipv4(B_IP, A_IP, 60, 0, 1));
    let mut for43 = vxlan(&reply);
    for43[6] = 43;
    assert!(socks[0].inject(P1, 0, &for43));
    assert_eq!(w.drain(0, NOW, BUDGET), Ok(false));
    assert_eq!(w.counters().drops_of(DropReason::WrongPort), 1);
    assert!(written(&taps[1]).is_empty() && written(&taps[0]).is_empty());
    assert!(socks[1].inject(P1, 0, &for43));
    assert_eq!(w.drain(1, NOW, BUDGET), Ok(false));
    assert_eq!(plain(written(&taps[1])), vec![reply.clone()]);
    // VNI 42 on its own port (the first socket) is delivered to its TAP.
    assert!(socks[0].inject(P1, 0, &vxlan(&reply)));
    assert_eq!(w.drain(0, NOW, BUDGET), Ok(false));
    assert_eq!(plain(written(&taps[0])), vec![reply]);
    assert_eq!(w.counters().drops_of(DropReason::WrongPort), 1);
    assert_eq!(w.counters().total_drops(), 1);

    // A broadcast from each TAP (sources 2 and 3): flooded to P1 on the network's own port.
    let bcast = frame(MacAddr::BROADCAST, HOST_A, &ipv4(A_IP, B_IP, 60, 0, 2));
    for (t, (vni, port)) in [(v42, 4789), (v43, 8472)].into_iter().enumerate() {
        assert!(taps[t].inject(&bcast));
        assert_eq!(w.drain(2 + t, NOW, BUDGET), Ok(false));
        let out = sent(&raw);
        assert_eq!(out.len(), 1, "{vni:?}");
        let rx = encap::tunnel::vxlan::decapsulate(&out[0].1, port).unwrap();
        assert_eq!((rx.dst, rx.vni), (P1, vni));
        let other = if port == 4789 { 8472 } else { 4789 };
        assert!(encap::tunnel::vxlan::decapsulate(&out[0].1, other).is_err());
    }
}

#[test]
fn l2_applies_ecn_inside_the_decision() {
    let mut r = l2(vec![P1]);
    // Outer CE over inner ECT(0): the inner packet leaves marked CE (checksum updated).
    let inner = ipv4(
        Ipv4Addr::new(10, 0, 0, 2),
        Ipv4Addr::new(10, 0, 0, 1),
        60,
        0x02,
        1,
    );
    let f = frame(HOST_A, HOST_B, &inner);
    assert!(r.udp.inject(P1, 0x03, &vxlan(&f)));
    // Outer CE over inner Not-ECT: dropped.
    let not_ect = frame(
        HOST_A,
        HOST_B,
        &ipv4(
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(10, 0, 0, 1),
            60,
            0x00,
            2,
        ),
    );
    assert!(r.udp.inject(P1, 0x03, &vxlan(&not_ect)));
    assert_eq!(r.w.drain(SOCKET, NOW, BUDGET), Ok(false));
    let got = plain(written(&r.tap));
    assert_eq!(got.len(), 1);
    let ip = encap::ipv4::Ipv4Packet::new_checked(&got[0][14..]).unwrap();
    assert_eq!(ip.tos() & 3, 3, "CE");
    assert!(ip.verify_checksum());
    assert_eq!(r.w.counters().drops_of(DropReason::EcnDrop), 1);
}

#[test]
fn l2_coalesces_a_tcp_run_into_one_gso_write() {
    let mut r = l2(vec![P1]);
    for k in 0..4u32 {
        let f = frame(HOST_A, HOST_B, &tcp(B_IP, A_IP, k * 1000, 1000));
        assert!(r.udp.inject(P1, 0, &vxlan(&f)));
    }
    assert_eq!(r.w.drain(SOCKET, NOW, BUDGET), Ok(false));
    let w = written(&r.tap);
    assert_eq!(w.len(), 1, "one super-frame");
    let v = &w[0];
    assert_eq!(v[1], 1, "GSO TCPv4");
    assert_eq!(u16::from_le_bytes([v[4], v[5]]), 1000, "gso_size");
    // Headers once, then the four payloads in order.
    let payload: Vec<u8> = (0..4u32)
        .flat_map(|k| tcp(B_IP, A_IP, k * 1000, 1000)[40..].to_vec())
        .collect();
    assert_eq!(&v[VNET_HDR_LEN + 14 + 40..], &payload[..]);
    assert_eq!(r.w.counters().tx_device, 4);
    assert_eq!(r.w.counters().tx_device_bytes, 4 * (14 + 40 + 1000));
}

#[test]
fn l2_cuts_a_tso_super_frame_into_valid_segments() {
    let mut r = l2(vec![P1]);
    // A 3000-byte TCP super-frame as the kernel hands it over: the IP length of the whole, the
    // TCP checksum field holding the pseudo-header sum, a virtio-net header asking for TCPv4
    // segmentation at 1000 bytes.
    let whole = tcp(B_IP, A_IP, 0, 3000);
    let mut f = frame(HOST_B, HOST_A, &whole);
    let ps = encap::checksum::pseudo_header(
        Ipv4Addr::new(10, 0, 0, 2),
        Ipv4Addr::new(10, 0, 0, 1),
        6,
        (20 + 3000) as u16,
    );
    f[14 + 36..14 + 38].copy_from_slice(&encap::checksum::fold(ps).to_be_bytes());
    let mut vnet = [0u8; VNET_HDR_LEN];
    vnet[0] = 1; // needs checksum
    vnet[1] = 1; // GSO TCPv4
    vnet[2..4].copy_from_slice(&54u16.to_le_bytes());
    vnet[4..6].copy_from_slice(&1000u16.to_le_bytes());
    vnet[6..8].copy_from_slice(&34u16.to_le_bytes());
    vnet[8..10].copy_from_slice(&16u16.to_le_bytes());
    assert!(r.tap.inject_with_header(&vnet, &f));
    assert_eq!(r.w.drain(DEVICE, NOW, BUDGET), Ok(false));
    // Flooded to the one peer: three segments, each a valid TCP segment of the stream (its
    // checksum verified by the coalescer's check), in order.
    let out = sent(&r.raw);
    assert_eq!(out.len(), 3, "one datagram per segment");
    let mut stream = Vec::new();
    for (k, (dst, pkt)) in out.iter().enumerate() {
        assert_eq!(*dst, P1);
        let rx = encap::tunnel::vxlan::decapsulate(pkt, 4789).unwrap();
        let inner = &pkt[rx.inner];
        let seg = vtepd::daemon::batch_gro::tcp_segment(
            inner,
            vtepd::daemon::batch_gro::Framing::Ethernet,
        )
        .unwrap_or_else(|| panic!("segment {k} is not a valid TCP segment"));
        assert_eq!(seg.seq, k as u32 * 1000);
        stream.extend_from_slice(&inner[14 + 40..]);
    }
    assert_eq!(stream, whole[40..]);
    let c = r.w.counters();
    assert_eq!((c.rx_device, c.tx_tunnel, c.flood_copies), (3, 3, 3));
    assert_eq!(c.rx_device_bytes, 3 * (14 + 40 + 1000));

    // Dropped whole (no peer to flood to): still counted as the three frames it stands for.
    let mut r = l2(vec![]);
    assert!(r.tap.inject_with_header(&vnet, &f));
    assert_eq!(r.w.drain(DEVICE, NOW, BUDGET), Ok(false));
    let c = r.w.counters();
    assert_eq!((c.rx_device, c.drops_of(DropReason::NoPeers)), (3, 1));
    assert!(sent(&r.raw).is_empty());
}

/// `remcsum_tx auto`: a super-frame flooded to two peers leaves with remote checksum offload
/// toward the one the store says takes it (VXLAN flags 0x0820, start 34 / 2 = 17; its TCP
/// checksum left partial, completing to a valid one) and with complete checksums (valid TCP
/// segments, no option) toward the other.
#[test]
fn remote_checksum_offload_goes_only_to_the_peers_that_take_it() {
    let core = engine_support::core_with(NetworkConfig {
        vni: vni(),
        peers: vec![P1.into(), P2.into()],
        own_mac: OWN,
        remote_csum_tx: vtepd::core::remote_csum::TxMode::Auto,
        ..Default::default()
    });
    assert_eq!(core.store_remote_csum_set(vni(), &[P1.into()]), Ok(true));
    let engine = Arc::new(L2::new(Arc::clone(&core), vec![false]));
    let tap = Arc::new(MemDevice::new(128, true).unwrap());
    let raw = Arc::new(MemSocket::new(128).unwrap());
    let tx = TunnelTx::new(Arc::clone(&raw), vxlan_settings(), UNDERLAY_MTU).with_core(core);
    let port = DevPort::new(Arc::clone(&tap), "tap0", true, true);
    let udp = Arc::new(MemSocket::new(128).unwrap());
    let mut w = L2Worker::new(engine, (4789, udp), tx, vec![port]);
    let (vnet, f) = tso_frame(3, 1000);
    assert!(tap.inject_with_header(&vnet, &f));
    assert_eq!(w.drain(DEVICE, NOW, BUDGET), Ok(false));
    let out = sent(&raw);
    assert_eq!(out.len(), 6, "three segments to each peer");
    assert_eq!(w.counters().tx_remote_csum, 3);
    for (dst, pkt) in &out {
        let rx = encap::tunnel::vxlan::decapsulate(pkt, 4789).unwrap();
        let vx = &pkt[rx.inner.start - 8..rx.inner.start];
        let seg = vtepd::daemon::batch_gro::tcp_segment(
            &pkt[rx.inner.clone()],
            vtepd::daemon::batch_gro::Framing::Ethernet,
        );
        if *dst == IpAddr::from(P1) {
            assert_eq!((vx[1], vx[7]), (0x20, 17), "to the peer that takes it");
            assert!(seg.is_none(), "its checksum left partial");
            let p = vtepd::core::remote_csum::Partial::of_datagram(&pkt[rx.inner.start - 8..], 8)
                .expect("the option, inside the frame");
            let mut inner = pkt[rx.inner.clone()].to_vec();
            let at = p.start + p.offset;
            let c = p.complete(&inner);
            inner[at..at + 2].copy_from_slice(&c.to_be_bytes());
            assert!(
                vtepd::daemon::batch_gro::tcp_segment(
                    &inner,
                    vtepd::daemon::batch_gro::Framing::Ethernet
                )
                .is_some(),
                "completes to a valid segment"
            );
        } else {
            assert_eq!(*dst, IpAddr::from(P2));
            assert_eq!((vx[1], vx[7]), (0, 0), "to the other: no option");
            assert!(seg.is_some(), "a complete checksum");
        }
    }
}

/// A TSO super-frame from host A to host B: `segs` TCP segments of `mss` bytes, as the kernel
/// hands it over (IP length of the whole, pseudo-header sum in the TCP checksum, a virtio-net
/// header asking for TCPv4 segmentation).
fn tso_frame(segs: usize, mss: u16) -> ([u8; VNET_HDR_LEN], Vec<u8>) {
    let len = segs * usize::from(mss);
    let whole = tcp(B_IP, A_IP, 0, len);
    let mut f = frame(HOST_B, HOST_A, &whole);
    let ps = encap::checksum::pseudo_header(
        Ipv4Addr::new(10, 0, 0, 2),
        Ipv4Addr::new(10, 0, 0, 1),
        6,
        (20 + len) as u16,
    );
    f[14 + 36..14 + 38].copy_from_slice(&encap::checksum::fold(ps).to_be_bytes());
    let mut vnet = [0u8; VNET_HDR_LEN];
    vnet[0] = 1; // needs checksum
    vnet[1] = 1; // GSO TCPv4
    vnet[2..4].copy_from_slice(&54u16.to_le_bytes());
    vnet[4..6].copy_from_slice(&mss.to_le_bytes());
    vnet[6..8].copy_from_slice(&34u16.to_le_bytes());
    vnet[8..10].copy_from_slice(&16u16.to_le_bytes());
    (vnet, f)
}

/// A device MTU above what the underlay carries: every copy that would not fit in one underlay
/// packet is counted `too_big` and never handed to a socket (no `tunnel_tx_error`), on every
/// send path: a plain frame (once per flooded copy), each segment of a TSO super-frame (the
/// GSO send is not tried), an L3 VXLAN packet; what fits still leaves.
#[test]
fn copies_too_big_for_the_underlay_are_too_big_on_every_path() {
    let mut r = l2(vec![P1, P2]);
    // 1464 bytes of frame + 36 of outer headers = 1500: fits exactly. One byte more does not.
    for (len, sent_copies) in [(1464usize, 2usize), (1465, 0), (9014, 0)] {
        let f = frame(
            MacAddr::BROADCAST,
            HOST_A,
            &ipv4(A_IP, Ipv4Addr::new(10, 0, 0, 255), len - 14, 0, 1),
        );
        assert!(r.tap.inject(&f));
        assert_eq!(r.w.drain(DEVICE, NOW, BUDGET), Ok(false));
        assert_eq!(sent(&r.raw).len(), sent_copies, "frame of {len}");
    }
    let c = r.w.counters();
    assert_eq!(
        c.drops_of(DropReason::TooBig),
        4,
        "two copies of two frames"
    );
    assert_eq!(c.drops_of(DropReason::TunnelTxError), 0);
    assert_eq!(c.tx_tunnel, 2);

    // A super-frame whose segments (14 + 40 + 1460 + 36 = 1550) do not fit the path: cut
    // again to the MSS that fits (1410), nothing dropped, the stream whole. One whose segments
    // fit (MSS 1410) leaves as it was cut.
    let mut r = l2(vec![P1]);
    let (vnet, f) = tso_frame(3, 1460);
    assert!(r.tap.inject_with_header(&vnet, &f));
    assert_eq!(r.w.drain(DEVICE, NOW, BUDGET), Ok(false));
    let out = sent(&r.raw);
    assert_eq!(out.len(), 4, "4380 bytes in segments of 1410");
    assert!(out.iter().all(|(_, p)| p.len() <= 1500));
    let mut stream = Vec::new();
    for (_, p) in &out {
        let rx = encap::tunnel::vxlan::decapsulate(p, 4789).unwrap();
        stream.extend_from_slice(&p[rx.inner][14 + 40..]);
    }
    assert_eq!(stream, f[14 + 40..]);
    let c = r.w.counters();
    assert_eq!(c.drops_of(DropReason::TooBig), 0);
    assert_eq!((c.tx_tunnel, c.drops_of(DropReason::TunnelTxError)), (4, 0));
    let mut r = l2(vec![P1]);
    let (vnet, f) = tso_frame(3, 1410);
    assert!(r.tap.inject_with_header(&vnet, &f));
    assert_eq!(r.w.drain(DEVICE, NOW, BUDGET), Ok(false));
    let out = sent(&r.raw);
    assert_eq!(out.len(), 3);
    assert!(
        out.iter().all(|(_, p)| p.len() == 1500),
        "full-size datagrams"
    );

    // L3 VXLAN: a packet to a resolved neighbour, 1450 bytes (fits) and 1451 (does not).
    let L3Rig {
        mut w, tun, raw, ..
    } = l3vx_rig(true);
    for (len, copies) in [(1450usize, 1usize), (1451, 0)] {
        assert!(tun.inject(&ipv4(OWN_IP, PEER_IP, len, 0, 9)));
        assert_eq!(w.drain(DEVICE, NOW, BUDGET), Ok(false));
        assert_eq!(sent(&raw).len(), copies, "packet of {len}");
    }
    let c = w.counters();
    assert_eq!(c.drops_of(DropReason::TooBig), 1);
    assert_eq!(c.drops_of(DropReason::TunnelTxError), 0);
    // The one with DF was answered into the TUN: fragmentation needed, MTU 1450.
    let mut icmp = Vec::new();
    tun.take_written(|p| icmp.push(p.to_vec()));
    let answer = icmp.last().expect("an ICMP error");
    let ip = &answer[answer.len() - 576..];
    assert_eq!((ip[9], ip[20], ip[21]), (1, 3, 4), "ICMP 3/4");
    assert_eq!(u16::from_be_bytes([ip[26], ip[27]]), 1450);
    assert_eq!(c.icmp_too_big, 1);
}

#[test]
fn a_removed_device_ends_the_worker_with_its_reason() {
    let mut r = l2(vec![P1]);
    r.tap.remove();
    let e = r.w.drain(DEVICE, NOW, BUDGET).unwrap_err();
    assert!(e.contains("tap0 was removed"), "{e}");
    // Noticed on a write too (a datagram for the device).
    let mut r = l2(vec![P1]);
    r.tap.remove();
    let f = frame(
        HOST_A,
        HOST_B,
        &ipv4(
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(10, 0, 0, 1),
            60,
            0,
            1,
        ),
    );
    assert!(r.udp.inject(P1, 0, &vxlan(&f)));
    let e = r.w.drain(SOCKET, NOW, BUDGET).unwrap_err();
    assert!(e.contains("tap0 was removed (write to it"), "{e}");
    assert_eq!(r.w.counters().drops_of(DropReason::DeviceTxError), 1);
}

const OWN_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 7);

/// An ARP packet in an Ethernet frame.
fn arp(
    op: u16,
    eth_dst: MacAddr,
    sha: MacAddr,
    spa: Ipv4Addr,
    tha: MacAddr,
    tpa: Ipv4Addr,
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&eth_dst.0);
    f.extend_from_slice(&sha.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha.0);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&tha.0);
    f.extend_from_slice(&tpa.octets());
    f
}

struct L3Rig {
    w: L3VxWorker<MemDevice, Arc<MemSocket>>,
    tun: Arc<MemDevice>,
    udp: Arc<MemSocket>,
    raw: Arc<MemSocket>,
}

/// An L3 VXLAN worker flooding to P1, its neighbour PEER_IP bound to HOST_B when `bound`.
fn l3vx_rig(bound: bool) -> L3Rig {
    let c = core(vec![P1]);
    if bound {
        c.neigh_add(Timestamp(0), vni(), PEER_IP, HOST_B).unwrap();
    }
    let engine = Arc::new(l3vx(&c, OWN, OWN_IP, &[]));
    let tun = Arc::new(MemDevice::new(64, true).unwrap());
    let udp = Arc::new(MemSocket::new(64).unwrap());
    let raw = Arc::new(MemSocket::new(64).unwrap());
    let tx = TunnelTx::new(Arc::clone(&raw), vxlan_settings(), UNDERLAY_MTU);
    let port = DevPort::new(Arc::clone(&tun), "tun0", true, true);
    let w = L3VxWorker::new(engine, (4789, Arc::clone(&udp)), tx, port);
    L3Rig { w, tun, udp, raw }
}

#[test]
fn l3_vxlan_resolves_releases_and_unwraps() {
    let L3Rig {
        mut w,
        tun,
        udp,
        raw,
    } = l3vx_rig(false);

    // A packet for an on-link address nobody resolved yet: held, and an ARP request flooded.
    let pkt = ipv4(OWN_IP, PEER_IP, 100, 0, 9);
    assert!(tun.inject(&pkt));
    assert_eq!(w.drain(DEVICE, NOW, BUDGET), Ok(false));
    let out = sent(&raw);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, P1);
    let rx = encap::tunnel::vxlan::decapsulate(&out[0].1, 4789).unwrap();
    let req = &out[0].1[rx.inner];
    assert_eq!(
        req,
        &arp(1, MacAddr::BROADCAST, OWN, OWN_IP, MacAddr::ZERO, PEER_IP)[..]
    );

    // The answer from P1: the held packet leaves, framed toward the answer's MAC.
    let is_at = arp(2, OWN, HOST_B, PEER_IP, OWN, OWN_IP);
    assert!(udp.inject(P1, 0, &vxlan(&is_at)));
    assert_eq!(w.drain(SOCKET, NOW, BUDGET), Ok(false));
    let out = sent(&raw);
    assert_eq!(out.len(), 1);
    let rx = encap::tunnel::vxlan::decapsulate(&out[0].1, 4789).unwrap();
    assert_eq!(&out[0].1[rx.inner], &frame(HOST_B, OWN, &pkt)[..]);
    assert_eq!(w.counters().neigh_learned, 1);

    // A packet for us from the tunnel: its IP packet goes into the TUN.
    let back = ipv4(PEER_IP, OWN_IP, 90, 0, 4);
    assert!(udp.inject(P1, 0, &vxlan(&frame(OWN, HOST_B, &back))));
    assert_eq!(w.drain(SOCKET, NOW, BUDGET), Ok(false));
    assert_eq!(plain(written(&tun)), vec![back]);

    // And later packets to the resolved neighbour leave at once.
    assert!(tun.inject(&pkt));
    assert_eq!(w.drain(DEVICE, NOW, BUDGET), Ok(false));
    assert_eq!(sent(&raw).len(), 1);
}

#[test]
fn ipip_encapsulates_decapsulates_and_answers_oversize() {
    let ipip = Arc::new(ipip(&[Route {
        prefix: "10.0.2.0/24".parse().unwrap(),
        via: P1.into(),
    }]));
    let tun = Arc::new(MemDevice::new(64, true).unwrap());
    let sock = Arc::new(MemSocket::new(64).unwrap());
    let port = DevPort::new(Arc::clone(&tun), "tunl0", true, true);
    let mut w = IpipWorker::new(
        ipip,
        IpipConfig::new(LOCAL),
        100,
        1480,
        port,
        Arc::clone(&sock),
    );
    let pod_a = Ipv4Addr::new(10, 0, 1, 5);
    let pod_b = Ipv4Addr::new(10, 0, 2, 7);

    let pkt = ipv4(pod_a, pod_b, 200, 0, 1);
    assert!(tun.inject(&pkt));
    assert_eq!(w.drain(DEVICE, NOW, BUDGET), Ok(false));
    let out = sent(&sock);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, P1);
    let rx = encap::tunnel::ipip::decapsulate(&out[0].1).unwrap();
    assert_eq!((rx.src, rx.dst, rx.dont_frag), (LOCAL, P1, true));
    assert_eq!(&out[0].1[rx.inner], &pkt[..]);
    assert_eq!(w.counters().rx_device_bytes, pkt.len() as u64);

    // P1's answer, as a raw socket hands it over (outer header included).
    let back = ipv4(pod_b, pod_a, 120, 0, 2);
    let mut wire = vec![0u8; 20];
    wire.extend_from_slice(&back);
    encap::ipv4::Ipv4Repr {
        src: P1,
        dst: LOCAL,
        protocol: 4,
        tos: 0,
        ident: 1,
        dont_frag: true,
        ttl: 64,
        payload_len: back.len(),
    }
    .emit(&mut wire[..])
    .unwrap();
    assert!(sock.inject(P1, 0, &wire));
    assert_eq!(w.drain(SOCKET, NOW, BUDGET), Ok(false));
    assert_eq!(plain(written(&tun)), vec![back]);

    // Too big for the tunnel with DF: an ICMP "fragmentation needed" back into the TUN.
    let big = ipv4(pod_a, pod_b, 1500, 0, 3);
    assert!(tun.inject(&big));
    assert_eq!(w.drain(DEVICE, NOW, BUDGET), Ok(false));
    assert!(sent(&sock).is_empty());
    let icmp = plain(written(&tun));
    assert_eq!(icmp.len(), 1);
    let ip = encap::ipv4::Ipv4Packet::new_checked(&icmp[0][..]).unwrap();
    assert_eq!((ip.src(), ip.dst(), ip.protocol()), (pod_b, pod_a, 1));
    let body = ip.payload();
    assert_eq!((body[0], body[1]), (3, 4));
    assert_eq!(u16::from_be_bytes([body[6], body[7]]), 1480);
    assert_eq!(w.counters().drops_of(DropReason::TooBig), 1);
}

/// A trace and a capture of both sides armed on a worker.
struct Armed {
    traces: Arc<TraceSessions>,
    trace: u64,
    captures: Arc<CaptureSessions>,
    capture: u64,
}

impl Armed {
    /// Arms on `w` a trace of `count` packets `filter` takes, and a capture of both sides.
    fn on(w: &mut impl Dataplane, filter: Filter, count: u64) -> Armed {
        let flags = ArmedFlags::default();
        let traces = Arc::new(TraceSessions::sharing(Limits::default(), &flags, 0));
        let captures = Arc::new(CaptureSessions::sharing(CAPTURE_LIMITS, &flags, 1));
        let trace = traces.start(filter, count, NOW).unwrap();
        let both = Spec {
            sides: Sides::Both,
            snaplen: MAX_SNAPLEN,
        };
        let all = Filter::default();
        let capture = captures.start_with(all, 100, u64::MAX, both, NOW).unwrap();
        let worker = WorkerTrace::new(Arc::clone(&traces), 0);
        w.attach_trace(worker, WorkerCapture::new(Arc::clone(&captures), 0));
        Armed {
            traces,
            trace,
            captures,
            capture,
        }
    }

    /// The trace's records so far.
    fn traced(&self) -> Vec<Record> {
        self.traces.poll(self.trace, NOW, 100).unwrap().records
    }

    /// The capture's records so far.
    fn captured(&self) -> Vec<Captured> {
        self.captures.poll(self.capture, NOW, 100).unwrap().records
    }
}

/// The worker's own drops are traced (`trace --drops`) with the step that says where, and a
/// TSO super-frame is captured as the segments cut for the wire: a datagram longer than a
/// receive slot (cut short: MSG_TRUNC), a super-frame whose offload request cannot be carried
/// out, a good super-frame of three segments.
#[test]
fn l2_traces_its_own_drops_and_captures_a_super_frame_as_its_segments() {
    let mut r = l2(vec![P1]);
    let drops = Filter {
        drops: true,
        ..Filter::default()
    };
    let armed = Armed::on(&mut r.w, drops, 10);

    assert!(r.udp.inject(P1, 0, &vec![0x08; MAX_PACKET + 10]));
    assert_eq!(r.w.drain(SOCKET, NOW, BUDGET), Ok(false));
    let (vnet, good) = tso_frame(3, 1000);
    let not_ip = frame(HOST_B, HOST_A, &[0u8; 60]);
    assert!(r.tap.inject_with_header(&vnet, &not_ip));
    assert!(r.tap.inject_with_header(&vnet, &good));
    assert_eq!(r.w.drain(DEVICE, NOW, BUDGET), Ok(false));

    let traced = armed.traced();
    let said: Vec<_> = traced
        .iter()
        .map(|r| (r.origin, r.steps.to_vec(), r.outcome.dropped()))
        .collect();
    let worker = |stage| {
        vec![Step::Worker {
            stage,
            remote: None,
        }]
    };
    let from_p1 = Origin::Tunnel {
        src: P1.into(),
        src_port: Some(0),
        dst_port: Some(4789),
        tos: 0,
    };
    assert_eq!(
        said,
        [
            (
                from_p1,
                worker(WorkerStage::Receive),
                Some(DropReason::Truncated)
            ),
            (
                Origin::Device { vni: 42 },
                worker(WorkerStage::DeviceRead),
                Some(DropReason::DeviceOffload)
            ),
        ]
    );
    let segments: Vec<_> = armed
        .captured()
        .into_iter()
        .filter(|r| r.note.as_deref() == Some(TSO_SEGMENT))
        .collect();
    assert_eq!(segments.len(), 3, "{segments:?}");
    for (k, s) in segments.iter().enumerate() {
        assert_eq!(s.data.len(), 54 + 1000, "segment {k}");
        let ip = &s.data[14..];
        assert_eq!(
            usize::from(u16::from_be_bytes([ip[2], ip[3]])),
            20 + 20 + 1000
        );
        assert!(
            encap::checksum::verify(&ip[..20]),
            "segment {k}'s IP checksum"
        );
        assert_eq!(&s.data[54..], &good[54 + k * 1000..54 + (k + 1) * 1000]);
    }
}

/// An L3 VXLAN worker under an armed trace and capture: a TSO super-packet read from the TUN
/// is traced once, with its neighbour lookup and its remote, and captured as its segments; a
/// packet too big for the underlay is answered into the TUN, and the answer is captured as
/// vtepd's own; so is its ARP reply into the tunnel, on the underlay side.
#[test]
fn l3_vxlan_traces_a_super_packet_and_captures_its_segments_and_its_own_answer() {
    let L3Rig {
        mut w,
        tun,
        udp,
        raw,
    } = l3vx_rig(true);
    let armed = Armed::on(&mut w, Filter::default(), 1);

    // The super-packet as the TUN hands it over: the IP packet of the Ethernet super-frame.
    let (mut vnet, f) = tso_frame(3, 1000);
    let mut packet = f[14..].to_vec();
    packet[12..20].copy_from_slice(&[10, 244, 0, 1, 10, 244, 0, 7]);
    packet[10..12].copy_from_slice(&[0, 0]);
    let sum = encap::checksum::checksum(&packet[..20]);
    packet[10..12].copy_from_slice(&sum.to_be_bytes());
    vnet[2..4].copy_from_slice(&40u16.to_le_bytes());
    vnet[6..8].copy_from_slice(&20u16.to_le_bytes());
    assert!(tun.inject_with_header(&vnet, &packet));
    assert_eq!(w.drain(DEVICE, NOW, BUDGET), Ok(false));
    assert_eq!(sent(&raw).len(), 3, "three segments sent");
    let traced = armed.traced();
    assert_eq!(traced.len(), 1, "{traced:?}");
    let r = &traced[0];
    assert_eq!(r.origin, Origin::Device { vni: 42 });
    assert!(
        r.steps.contains(&Step::Neigh {
            hop: PEER_IP.into(),
            mac: Some(Mac(HOST_B))
        }),
        "{r:?}"
    );
    assert_eq!(
        r.outcome,
        Outcome::Tunnel {
            vni: 42,
            remotes: [IpAddr::from(P1)].into_iter().collect(),
            copies: 1
        }
    );

    // 1451 bytes with DF: more than the underlay carries, answered into the TUN.
    assert!(tun.inject(&ipv4(OWN_IP, PEER_IP, 1451, 0, 9)));
    assert_eq!(w.drain(DEVICE, NOW, BUDGET), Ok(false));
    // HOST_B asks through the tunnel who has our address: vtepd answers into the tunnel.
    let who_has = arp(
        1,
        MacAddr::BROADCAST,
        HOST_B,
        PEER_IP,
        MacAddr::ZERO,
        OWN_IP,
    );
    assert!(udp.inject(P1, 0, &vxlan(&who_has)));
    assert_eq!(w.drain(SOCKET, NOW, BUDGET), Ok(false));
    let records = armed.captured();
    let noted = |note: &str| -> Vec<_> {
        records
            .iter()
            .filter(|r| r.note.as_deref() == Some(note))
            .collect()
    };
    let segments = noted(TSO_SEGMENT);
    assert_eq!(segments.len(), 3, "{records:?}");
    for (k, s) in segments.iter().enumerate() {
        assert_eq!(s.data.len(), 40 + 1000, "segment {k}");
        assert_eq!(&s.data[40..], &packet[40 + k * 1000..40 + (k + 1) * 1000]);
    }
    let answers = noted(ANSWER);
    assert_eq!(answers.len(), 1, "{records:?}");
    let a = &answers[0];
    assert_eq!((a.side, a.dir, a.link), (Side::Overlay, Dir::Out, Link::Ip));
    assert_eq!((a.data[9], a.data[20], a.data[21]), (1, 3, 4), "ICMP 3/4");
    // The ARP reply, on the underlay as sent: outer IPv4/UDP/VXLAN, then the reply.
    let own = noted(OWN_FRAME);
    assert_eq!(
        own.len(),
        1,
        "only vtepd's reply, not the segments: {records:?}"
    );
    let r = &own[0];
    assert_eq!((r.side, r.dir), (Side::Underlay, Dir::Out));
    let reply = &r.data[36..];
    assert_eq!(
        (&reply[12..14], &reply[20..22]),
        (&[8, 6][..], &[0, 2][..]),
        "ARP reply"
    );
    assert_eq!(&reply[28..32], &OWN_IP.octets(), "from our address");
    assert_eq!(
        sent(&raw).last().map(|(dst, _)| *dst),
        Some(IpAddr::from(P1))
    );
}
