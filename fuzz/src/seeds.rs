//! The seed corpus: `cargo test --lib -- --ignored write_seeds` (re)writes `corpus/<target>/seed-*`
//! from the golden vectors (`encap/tests/golden/*.txt`, kernel captures and scapy), the scapy
//! vectors of `tests/l3_vxlan_core.rs`, and hand-written minimal cases, each encoded the way
//! the target decodes its input. Files the fuzzer found (kept as regressions) have other
//! names and are left alone.

use crate::frames::{write_arp, write_ipv4, write_raw};
use crate::input::{Writer, hex};
use crate::{core_ops, gro, ipip_engine, l3vx_engine, recv_split};
use encap::MacAddr;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The `packet` lines of the golden files of one kind (`vxlan` or `ipip`), with their case.
fn golden(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../encap/tests/golden");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let (mut case, mut this_kind) = (String::new(), String::new());
        for line in text.lines() {
            if let Some(c) = line.strip_prefix("case ") {
                case = c.replace(['#', '/'], "-");
            } else if let Some(k) = line.strip_prefix("kind ") {
                this_kind = k.to_string();
            } else if let Some(p) = line.strip_prefix("packet ")
                && this_kind == kind
            {
                out.push((case.clone(), hex(p)));
            }
        }
    }
    out
}

// scapy-built (lab/scapy/l3vx_vectors.py), as in tests/l3_vxlan_core.rs.
const ARP_REQUEST: &str =
    "ffffffffffff020000000002080600010800060400010200000000020af400070000000000000af40000";
const ARP_PEER_IS_AT: &str =
    "020000000001020000000002080600010800060400020200000000020af400070200000000010af40000";
const ECHO_REQUEST: &str = "02000000000102000000000308004500004c123440003f0112910af401050af400000800c8e404d20007000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f";

struct Seeds {
    root: PathBuf,
    written: usize,
}

impl Seeds {
    fn put(&mut self, target: &str, name: &str, data: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
        self.written += 1;
    }
}

fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

fn mac(last: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 1, last])
}

/// A datagram op of core_ops: from `src`, outer TOS `tos`, VNI `vni`, the frame.
fn remote(
    w: &mut Writer,
    src: std::net::IpAddr,
    tos: u8,
    vni: u32,
    frame: impl FnOnce(&mut Writer),
) {
    w.u8(core_ops::Op::Remote as u8).ip(src).u8(tos);
    core_ops::write_datagram(w, vni, frame);
}

/// A device frame op of core_ops.
fn local(w: &mut Writer, net: u8, frame: impl FnOnce(&mut Writer)) {
    w.u8(core_ops::Op::Local as u8).u8(net);
    frame(w);
}

fn eth_ip(dst: MacAddr, src: MacAddr, tos: u8) -> impl FnOnce(&mut Writer) {
    move |w: &mut Writer| {
        write_ipv4(
            w,
            dst,
            src,
            tos,
            64,
            17,
            ip(10, 42, 0, 1),
            ip(10, 42, 0, 2),
            b"hi",
        )
    }
}

fn core_ops_seeds(s: &mut Seeds) {
    let [r1, r2, r3, r4] = core_ops::R;
    // Every golden VXLAN datagram (UDP payload), its VNI made 1, from a peer.
    for (case, p) in golden("vxlan") {
        let ihl = usize::from(p[0] & 0x0f) * 4;
        let mut d = p[ihl + 8..].to_vec();
        d[4..7].copy_from_slice(&[0, 0, 1]);
        let mut w = Writer::new();
        w.u8(0)
            .u8(core_ops::Op::Remote as u8)
            .ip(r1)
            .u8(p[1])
            .u8(0x80)
            .bytes(&d);
        // ... and a frame back to the MAC it taught.
        let inner_src = MacAddr::from_bytes(&d[14..]).unwrap();
        local(&mut w, 0, eth_ip(inner_src, core_ops::OWN[0], 0));
        s.put("core_ops", &format!("golden-{case}"), &w.finish());
    }
    // Flood and learn: unknown unicast floods, a reply teaches, unicast follows; a move.
    let mut w = Writer::new();
    w.u8(0);
    local(&mut w, 0, eth_ip(mac(1), mac(2), 0));
    remote(&mut w, r1, 0, 1, eth_ip(mac(2), mac(1), 0));
    local(&mut w, 0, eth_ip(mac(1), mac(2), 0));
    remote(&mut w, r2, 0, 1, eth_ip(mac(2), mac(1), 0));
    local(&mut w, 0, eth_ip(mac(1), mac(2), 0));
    local(&mut w, 0, eth_ip(MacAddr::BROADCAST, mac(2), 0));
    s.put("core_ops", "flood-learn-move", &w.finish());
    // The cap: four MACs into a network of three; ageing frees room.
    let mut w = Writer::new();
    w.u8(0);
    for k in 1..=4 {
        remote(&mut w, r1, 0, 1, eth_ip(mac(9), mac(k), 0));
    }
    w.u8(core_ops::Op::Step as u8).u8(2);
    w.u8(core_ops::Op::Expire as u8);
    remote(&mut w, r2, 0, 1, eth_ip(mac(9), mac(4), 0));
    s.put("core_ops", "cap-and-ageing", &w.finish());
    // Static entries: learning never moves them; a static remote becomes known; flushes.
    let mut w = Writer::new();
    w.u8(0);
    w.u8(core_ops::Op::FdbAdd as u8).u8(0).mac(mac(5)).ip(r4);
    remote(&mut w, r1, 0, 1, eth_ip(mac(9), mac(5), 0));
    remote(&mut w, r4, 0, 1, eth_ip(mac(9), mac(6), 0));
    local(&mut w, 0, eth_ip(mac(5), mac(9), 0));
    w.u8(core_ops::Op::FdbFlush as u8).u8(0).u8(1);
    w.u8(core_ops::Op::FdbDel as u8).u8(0).mac(mac(5));
    w.u8(core_ops::Op::FdbAdd as u8).u8(1).mac(mac(5)).ip(r3);
    w.u8(core_ops::Op::FdbFlush as u8).u8(0).u8(0);
    s.put("core_ops", "static-entries", &w.finish());
    // Flood lists: add, remove, empty (no_peers), unknown peers, allow-any-peer.
    let mut w = Writer::new();
    w.u8(0);
    w.u8(core_ops::Op::PeerAdd as u8).u8(1).ip(r4);
    w.u8(core_ops::Op::PeerDel as u8).u8(0).ip(r1);
    w.u8(core_ops::Op::PeerDel as u8).u8(0).ip(r2);
    local(&mut w, 0, eth_ip(MacAddr::BROADCAST, mac(2), 0));
    remote(&mut w, r3, 0, 1, eth_ip(mac(2), mac(1), 0));
    w.u8(core_ops::Op::AllowAny as u8).u8(1);
    remote(&mut w, r3, 0, 1, eth_ip(mac(2), mac(1), 0));
    remote(&mut w, core_ops::LOCAL, 0, 2, eth_ip(mac(2), mac(1), 0));
    s.put("core_ops", "peers", &w.finish());
    // ECN: outer CE over an inner Not-ECT packet is dropped, over ECT(0) marked.
    let mut w = Writer::new();
    w.u8(0);
    remote(&mut w, r1, 3, 1, eth_ip(mac(2), mac(1), 0));
    remote(&mut w, r1, 3, 1, eth_ip(mac(2), mac(1), 2));
    s.put("core_ops", "ecn", &w.finish());
    // Malformed datagrams: short, I flag clear, unknown VNI, runt, bad source MACs.
    let mut w = Writer::new();
    w.u8(0);
    w.u8(core_ops::Op::Remote as u8)
        .ip(r1)
        .u8(0)
        .u8(0x80)
        .bytes(&[8, 0, 0]);
    w.u8(core_ops::Op::Remote as u8)
        .ip(r1)
        .u8(0)
        .u8(0x80)
        .bytes(&[0; 30]);
    remote(&mut w, r1, 0, 3, eth_ip(mac(2), mac(1), 0));
    remote(&mut w, r1, 0, 1, |w| write_raw(w, &[2; 10]));
    remote(&mut w, r1, 0, 1, eth_ip(mac(2), MacAddr::BROADCAST, 0));
    remote(&mut w, r1, 0, 1, eth_ip(mac(2), core_ops::OWN[0], 0));
    local(&mut w, 0, |w| write_raw(w, &[1; 13]));
    local(&mut w, 2, eth_ip(mac(2), mac(1), 0));
    s.put("core_ops", "malformed", &w.finish());
    // ARP suppression on network 0: a reply from the tunnel teaches, a request is answered.
    let (h1, h2) = (ip(10, 42, 0, 1), ip(10, 42, 0, 2));
    let mut w = Writer::new();
    w.u8(8);
    remote(&mut w, r1, 0, 1, |w| {
        write_arp(w, mac(2), mac(1), 2, mac(1), h1, mac(2), h2)
    });
    local(&mut w, 0, |w| {
        write_arp(
            w,
            MacAddr::BROADCAST,
            mac(2),
            1,
            mac(2),
            h2,
            MacAddr::ZERO,
            h1,
        )
    });
    w.u8(core_ops::Op::NeighAdd as u8).u8(0).ip(h2).mac(mac(3));
    local(&mut w, 0, |w| {
        write_arp(
            w,
            MacAddr::BROADCAST,
            mac(1),
            1,
            mac(1),
            h1,
            MacAddr::ZERO,
            h2,
        )
    });
    w.u8(core_ops::Op::NeighDel as u8).u8(0).ip(h2);
    s.put("core_ops", "arp-suppress", &w.finish());
}

fn ipip_seeds(s: &mut Seeds) {
    use ipip_engine::{NODES, Op};
    let pod = ip(10, 0, 1, 5);
    let pod_b = ip(10, 0, 2, 7);
    for (case, p) in golden("ipip") {
        s.put("ipip_decap", &format!("golden-{case}"), &p);
        // As node B's packet to us: outer source and destination swapped.
        let mut q = p.clone();
        q[12..16].copy_from_slice(&NODES[0].octets());
        q[16..20].copy_from_slice(&ipip_engine::LOCAL.octets());
        q[10..12].fill(0);
        let c = encap::checksum::checksum(&q[..20]);
        q[10..12].copy_from_slice(&c.to_be_bytes());
        let mut w = Writer::new();
        // IPv6 on for protocol 41's vectors.
        w.u8(if case.starts_with("ipip6") { 8 } else { 0 });
        ipip_engine::write_remote_raw(&mut w, NODES[0], &q);
        ipip_engine::write_remote_raw(&mut w, NODES[0], &p);
        s.put("ipip_engine", &format!("golden-{case}"), &w.finish());
    }
    // Routed, every local rule, and the tunnel MTUs (cfg picks one: 2: 68, 4: 100, 6: 576).
    for (cfg, name) in [(0u8, "1480"), (2, "68"), (4, "100"), (6, "576")] {
        let mut w = Writer::new();
        w.u8(cfg);
        ipip_engine::write_local(&mut w, 0x02, 64, pod, pod_b, &[7; 40]);
        ipip_engine::write_local(&mut w, 0x03, 64, pod, ip(10, 0, 3, 9), &[7; 100]);
        ipip_engine::write_local(&mut w, 0, 0, pod, pod_b, &[7; 10]);
        ipip_engine::write_local(&mut w, 0, 9, ipip_engine::LOCAL, pod_b, &[7; 10]);
        ipip_engine::write_local(&mut w, 0, 9, pod, ip(10, 1, 0, 1), &[7; 10]);
        ipip_engine::write_local(&mut w, 0, 9, pod, pod_b, &[9; 600]);
        w.u8(Op::Local as u8).u8(2).bytes(&[0x60; 40]);
        s.put("ipip_engine", &format!("local-mtu-{name}"), &w.finish());
    }
    // IPv6 on (cfg 8, MTU 1480): tunnelled as protocol 41, too big and answered (ICMPv6), hop
    // limit 0, and no route.
    let mut w = Writer::new();
    w.u8(8);
    ipip_engine::write_local6(&mut w, 0xb9, 63, 1, 0, &[7; 8]);
    ipip_engine::write_local6(&mut w, 0, 64, 1, 0, &[7; 1460]);
    ipip_engine::write_local6(&mut w, 0, 0, 1, 0, &[7; 8]);
    ipip_engine::write_local6(&mut w, 0, 5, 0, 1, &[7; 8]);
    s.put("ipip_engine", "local6", &w.finish());
    // Routes change; a packet of ours comes back through node B.
    let mut w = Writer::new();
    w.u8(4);
    w.u8(Op::RouteAdd as u8).u8(3).ip(NODES[2]);
    ipip_engine::write_local(&mut w, 0, 9, pod, ip(10, 0, 2, 40), &[1; 8]);
    w.u8(Op::RouteDel as u8).u8(0);
    ipip_engine::write_local(&mut w, 0, 9, pod, pod_b, &[1; 8]);
    w.u8(Op::Remote as u8).u8(0).ip(NODES[0]);
    crate::frames::write_ipv4_packet(&mut w, 2, 64, 17, pod_b, pod, &[5; 20]);
    w.u8(3).ip(NODES[0]);
    w.u8(Op::AllowAny as u8).u8(1);
    w.u8(Op::Remote as u8).u8(0).ip(NODES[2]);
    crate::frames::write_ipv4_packet(&mut w, 0, 64, 17, pod_b, pod, &[5; 20]);
    w.u8(0).ip(NODES[2]);
    s.put("ipip_engine", "routes-and-remote", &w.finish());
}

fn l3vx_seeds(s: &mut Seeds) {
    use l3vx_engine::{NODE_B, Op, PEER_IP, PEERS};
    let pod_b = ip(10, 244, 1, 5);
    // The scapy frames: ARP for our address answered, echo answered, a reply releasing.
    for (name, f) in [
        ("scapy-arp-request", ARP_REQUEST),
        ("scapy-echo-request", ECHO_REQUEST),
        ("scapy-arp-reply", ARP_PEER_IS_AT),
    ] {
        let mut w = Writer::new();
        w.u8(0);
        l3vx_engine::write_frame(&mut w, |w| write_raw(w, &hex(f)));
        s.put("l3vx_engine", name, &w.finish());
    }
    // Resolution: held, asked, the scapy reply releases in order.
    let mut w = Writer::new();
    w.u8(0);
    l3vx_engine::write_local(&mut w, PEER_IP, &[1; 20]);
    l3vx_engine::write_local(&mut w, PEER_IP, &[2; 20]);
    l3vx_engine::write_frame(&mut w, |w| write_raw(w, &hex(ARP_PEER_IS_AT)));
    l3vx_engine::write_local(&mut w, PEER_IP, &[3; 20]);
    s.put("l3vx_engine", "resolve-and-release", &w.finish());
    // Retries then giving up; the queue's per-hop and byte bounds.
    let mut w = Writer::new();
    w.u8(0);
    for k in 0..5u8 {
        l3vx_engine::write_local(&mut w, pod_b, &[k; 100]);
    }
    for k in 0..4u8 {
        l3vx_engine::write_local(&mut w, ip(10, 244, 0, 9), &[k; 200]);
    }
    for _ in 0..4 {
        l3vx_engine::write_poll_after(&mut w, 1000);
    }
    s.put("l3vx_engine", "retry-give-up-bounds", &w.finish());
    // A static binding added while waiting is released by poll; routes change.
    let mut w = Writer::new();
    w.u8(0);
    l3vx_engine::write_local(&mut w, pod_b, &[1; 30]);
    w.u8(Op::NeighAdd as u8)
        .ip(NODE_B)
        .mac(MacAddr([2, 0, 0, 0, 0, 3]));
    l3vx_engine::write_poll_after(&mut w, 1000);
    l3vx_engine::write_local(&mut w, pod_b, &[2; 30]);
    w.u8(Op::Route as u8).u8(2).ip(PEER_IP);
    l3vx_engine::write_local(&mut w, ip(10, 244, 2, 5), &[3; 30]);
    w.u8(Op::Route as u8).u8(1);
    l3vx_engine::write_local(&mut w, ip(10, 244, 1, 6), &[4; 30]);
    w.u8(Op::NeighDel as u8).ip(NODE_B);
    w.u8(Op::Step as u8)
        .u8(1)
        .u8(7)
        .u8(Op::Step as u8)
        .u8(1)
        .u8(7);
    w.u8(Op::Step as u8)
        .u8(1)
        .u8(7)
        .u8(Op::Step as u8)
        .u8(1)
        .u8(7);
    w.u8(Op::Step as u8).u8(1).u8(7).u8(Op::Expire as u8);
    s.put("l3vx_engine", "static-release-routes", &w.finish());
    // From the tunnel: the echo request in VXLAN from a peer, broadcast and multicast out.
    let mut w = Writer::new();
    w.u8(0);
    w.u8(Op::Remote as u8).ip(PEERS[0]).u8(0);
    core_ops::write_datagram(&mut w, 1, |w| write_raw(w, &hex(ECHO_REQUEST)));
    w.u8(Op::Remote as u8).ip(PEERS[0]).u8(0);
    core_ops::write_datagram(&mut w, 1, |w| write_raw(w, &hex(ARP_REQUEST)));
    l3vx_engine::write_local(&mut w, ip(10, 244, 0, 255), &[5; 8]);
    l3vx_engine::write_local(&mut w, ip(224, 0, 0, 5), &[5; 8]);
    w.u8(Op::Tun as u8).u8(0);
    crate::frames::write_ipv4_packet(&mut w, 0, 64, 17, l3vx_engine::OWN_IP, pod_b, &[6; 8]);
    w.u8(1).ip(NODE_B);
    s.put("l3vx_engine", "tunnel-and-tun", &w.finish());
}

/// A neighbour advertisement and a solicitation, as scapy writes them (see [`arp_seeds`]).
const SCAPY_NA: &str = "02000000000102000000000286dd6000000000203afffd000000000000000000000000000002\
     fd00000000000000000000000000000188001c9a60000000fd0000000000000000000000000000020201020000000002";
const SCAPY_NS: &str = "3333ff00000202000000000186dd6000000000203afffd000000000000000000000000000001\
     ff0200000000000000000001ff00000287007d9700000000fd0000000000000000000000000000020101020000000001";

fn arp_seeds(s: &mut Seeds) {
    use crate::arp::{Op, write_frame_op};
    // ND suppression: scapy's advertisement of fd00::2 (02:..:02, solicited, override, target
    // link-layer option) from the tunnel, then its solicitation for fd00::2 from fd00::1
    // (02:..:01, to the solicited-node group) from the device: answered.
    let mut w = Writer::new();
    write_frame_op(&mut w, Op::Snoop, 0, |w| write_raw(w, &hex(SCAPY_NA)));
    write_frame_op(&mut w, Op::Answer, 0, |w| write_raw(w, &hex(SCAPY_NS)));
    write_frame_op(&mut w, Op::Answer, 1, |w| write_raw(w, &hex(SCAPY_NS)));
    s.put("arp", "scapy-nd", &w.finish());
    for (name, f) in [("request", ARP_REQUEST), ("reply", ARP_PEER_IS_AT)] {
        let mut w = Writer::new();
        w.u8(Op::Codec as u8).bytes(&hex(f)[14..]);
        s.put("arp", &format!("scapy-{name}"), &w.finish());
    }
    let (h1, h2, h3) = (ip(10, 42, 0, 1), ip(10, 42, 0, 2), ip(10, 42, 0, 3));
    let (m1, m2, m3) = (
        MacAddr([2, 0, 0, 0, 0, 1]),
        MacAddr([2, 0, 0, 0, 0, 2]),
        MacAddr([2, 0, 0, 0, 0, 3]),
    );
    let mut w = Writer::new();
    // Learn h1 from the tunnel (network 0: on; 1: off), answer a local request for it.
    write_frame_op(&mut w, Op::Snoop, 0, |w| {
        write_arp(w, m2, m1, 2, m1, h1, m2, h2)
    });
    write_frame_op(&mut w, Op::Snoop, 1, |w| {
        write_arp(w, m2, m1, 2, m1, h1, m2, h2)
    });
    write_frame_op(&mut w, Op::Answer, 0, |w| {
        write_arp(w, MacAddr::BROADCAST, m2, 1, m2, h2, MacAddr::ZERO, h1)
    });
    write_frame_op(&mut w, Op::Answer, 1, |w| {
        write_arp(w, MacAddr::BROADCAST, m2, 1, m2, h2, MacAddr::ZERO, h1)
    });
    // Not answered: unicast, gratuitous, a probe, the asker's own address.
    write_frame_op(&mut w, Op::Answer, 0, |w| {
        write_arp(w, m1, m2, 1, m2, h2, MacAddr::ZERO, h1)
    });
    write_frame_op(&mut w, Op::Answer, 0, |w| {
        write_arp(w, MacAddr::BROADCAST, m2, 1, m2, h1, MacAddr::ZERO, h1)
    });
    write_frame_op(&mut w, Op::Answer, 0, |w| {
        write_arp(
            w,
            MacAddr::BROADCAST,
            m2,
            1,
            m2,
            Ipv4Addr::UNSPECIFIED,
            MacAddr::ZERO,
            h1,
        )
    });
    write_frame_op(&mut w, Op::Answer, 0, |w| {
        write_arp(w, MacAddr::BROADCAST, m1, 1, m1, h3, MacAddr::ZERO, h1)
    });
    // The cap, a static binding, ageing.
    write_frame_op(&mut w, Op::Snoop, 0, |w| {
        write_arp(w, m2, m3, 2, m3, h3, m2, h2)
    });
    write_frame_op(&mut w, Op::Snoop, 0, |w| {
        write_arp(w, m2, m2, 2, m2, h2, m2, h2)
    });
    w.u8(Op::NeighAdd as u8).ip(h1).mac(m3);
    write_frame_op(&mut w, Op::Snoop, 0, |w| {
        write_arp(w, m2, m1, 2, m1, h1, m2, h2)
    });
    w.u8(Op::Step as u8).u16(6000);
    write_frame_op(&mut w, Op::Answer, 0, |w| {
        write_arp(w, MacAddr::BROADCAST, m2, 1, m2, h2, MacAddr::ZERO, h3)
    });
    w.u8(Op::Repr as u8)
        .u8(3)
        .u16(9)
        .mac(m1)
        .ip(h1)
        .mac(m2)
        .ip(h2)
        .mac(m1)
        .mac(m2);
    s.put("arp", "suppression", &w.finish());
}

fn gro_seeds(s: &mut Seeds) {
    for (cfg, name) in [(0u8, "ip"), (1, "ethernet")] {
        // A run of four, the last with PSH; then a gap; then a corrupted one.
        let mut w = Writer::new();
        w.u8(cfg).u32(1000);
        w.u8(0);
        gro::write_segment(&mut w, &[1; 100], false);
        w.u8(0);
        gro::write_segment(&mut w, &[2; 100], false);
        w.u8(0);
        gro::write_segment(&mut w, &[3; 100], false);
        w.u8(0);
        gro::write_segment(&mut w, &[4; 60], true);
        w.u8(0);
        gro::write_segment(&mut w, &[5; 100], false);
        w.u8(0)
            .u8(1 | 4)
            .u32(99)
            .u8(10)
            .raw(&[6; 10])
            .u8(0x40)
            .u16(7)
            .u16(3);
        s.put("gro", &format!("run-{name}"), &w.finish());
    }
    // Runs on two devices and a missing one (key 2).
    let mut w = Writer::new();
    w.u8(0).u32(1);
    for (k, p) in [
        (0u8, 1u8),
        (0, 2),
        (1, 3),
        (1, 4),
        (2, 5),
        (2, 6),
        (4, 7),
        (4, 8),
    ] {
        w.u8(k);
        gro::write_segment(&mut w, &[p; 20], false);
    }
    // A packet that is no segment flushes the run: drawn 4 (device 1 refuses, EINVAL), then
    // 9 (device 0 is gone, EBADFD).
    w.u8(4).u8(0).bytes(&[0x45; 30]);
    for p in [9u8, 10] {
        w.u8(0);
        gro::write_segment(&mut w, &[p; 20], false);
    }
    w.u8(9).u8(0).bytes(&[0x45; 30]);
    s.put("gro", "devices", &w.finish());
    // What the underlay's GRO hands over: merged, the pseudo-header sum in the checksum field.
    let mut p = vec![0u8; 20 + 20 + 3000];
    p[0] = 0x45;
    let n = p.len() as u16;
    p[2..4].copy_from_slice(&n.to_be_bytes());
    p[8] = 64;
    p[9] = 6;
    p[12..20].copy_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    let c = encap::checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[32] = 0x50;
    p[33] = 0x18;
    let ps = encap::checksum::pseudo_header(ip(10, 0, 0, 1), ip(10, 0, 0, 2), 6, 3020);
    p[36..38].copy_from_slice(&encap::checksum::fold(ps).to_be_bytes());
    for (cfg, name) in [(2u8, "1480"), (4, "100"), (0, "1500")] {
        let mut w = Writer::new();
        w.u8(cfg).u32(0).u8(0).u8(0).bytes(&p);
        s.put("gro", &format!("kernel-merged-{name}"), &w.finish());
    }
    // Dual-stack: an IPv6 run of three (the last with PSH); an IPv4 segment continuing the
    // sequence (another family: no continuation); IPv6 segments continuing it, each no
    // continuation of the one before: the second with its flow label flipped, the fourth with
    // hop limit 63 (x bit 2), the fifth with its next header flipped (not TCP).
    let v6 = gro::KEY_V6;
    for (cfg, name, l3) in [
        (gro::CFG_DUAL, "ip", 0u16),
        (gro::CFG_DUAL | 1, "ethernet", 14),
    ] {
        let mut w = Writer::new();
        w.u8(cfg).u32(1000);
        for (k, p, psh) in [
            (v6, 1u8, false),
            (v6, 2, false),
            (v6, 3, true),
            (0, 4, false),
        ] {
            w.u8(k);
            gro::write_segment(&mut w, &[p; 20], psh);
        }
        // (payload byte, the x byte, where to flip a bit)
        for (p, x, flip) in [
            (5u8, 0u8, None),
            (6, 0x40, Some(l3 + 3)),
            (7, 0, None),
            (8, 4, None),
            (9, 0x40, Some(l3 + 6)),
        ] {
            w.u8(v6).u8(1).u8(20).raw(&[p; 20]).u8(x).u16(7);
            if let Some(at) = flip {
                w.u16(at);
            }
        }
        s.put("gro", &format!("run6-{name}"), &w.finish());
    }
    // What the underlay's GRO hands over, IPv6 and IPv4, for a 100-byte MTU: GSO.
    let mut w = Writer::new();
    w.u8(gro::CFG_DUAL | 4).u32(0);
    for k in [v6 | gro::KEY_PARTIAL, gro::KEY_PARTIAL] {
        w.u8(k);
        gro::write_segment(&mut w, &[7; 200], true);
    }
    s.put("gro", "kernel-merged6", &w.finish());
    // complete_read with a checksum-partial header.
    let mut w = Writer::new();
    let mut vnet = [0u8; 10];
    vnet[0] = 1;
    vnet[6..8].copy_from_slice(&20u16.to_le_bytes());
    vnet[8..10].copy_from_slice(&16u16.to_le_bytes());
    w.u8(0).u32(0).u8(0xff).raw(&vnet).bytes(&p[..200]);
    s.put("gro", "complete-read", &w.finish());
}

fn recv_seeds(s: &mut Seeds) {
    let cases: [(&str, &[(u16, u16)]); 6] = [
        ("gro-run", &[(1400 * 3 + 100, 1400)]),
        ("empty", &[(0, 0), (0, 1400)]),
        ("mixed", &[(100, 0), (5000, 1000), (1, 1), (64, 64)]),
        ("slot", &[(65535, 0), (65535, 1480)]),
        ("tiny-gso", &[(4000, 1), (4000, 1), (4000, 1)]),
        ("full", &[(64, 0); 64]),
    ];
    for (name, reads) in cases {
        let mut w = Writer::new();
        w.u8(1).u8(1).u32(5);
        recv_split::write_reads(&mut w, reads);
        w.u8(0).u8(1).u32(9);
        recv_split::write_reads(&mut w, &[(10, 3)]);
        s.put("recv_split", name, &w.finish());
    }
}

fn json_seeds(s: &mut Seeds) {
    let reqs = [
        r#"{"cmd":"fdb_show"}"#,
        r#"{"cmd":"fdb_show","vni":42}"#,
        r#"{"cmd":"fdb_add","vni":42,"mac":"02:00:00:00:00:01","remote":"192.0.2.2"}"#,
        r#"{"cmd":"fdb_del","mac":"02:00:00:00:00:01"}"#,
        r#"{"cmd":"fdb_flush","vni":1,"learned_only":true}"#,
        r#"{"cmd":"peers_show"}"#,
        r#"{"cmd":"peers_add","vni":7,"ip":"192.0.2.9"}"#,
        r#"{"cmd":"peers_del","ip":"192.0.2.9"}"#,
        r#"{"cmd":"stats"}"#,
        r#"{"cmd":"routes_show"}"#,
        r#"{"cmd":"routes_add","prefix":"10.0.1.0/26","via":"192.0.2.2"}"#,
        r#"{"cmd":"routes_del","prefix":"10.0.1.0/26"}"#,
        r#"{"cmd":"neigh_show","vni":null}"#,
        r#"{"cmd":"neigh_add","ip":"10.244.1.0","mac":"02:00:00:00:00:01"}"#,
        r#"{"cmd":"neigh_del","vni":1,"ip":"10.244.1.0"}"#,
        r#"{"cmd":"fdb_show","x":1}"#,
        r#"{"ok":false,"usage":true,"error":"give --vni","data":null}"#,
        r#"{"ok":true,"data":[{"vni":1,"mac":"02:00:00:00:00:01"}]}"#,
    ];
    for (i, r) in reqs.iter().enumerate() {
        s.put("control_request", &format!("{i:02}"), r.as_bytes());
    }
}

fn toml_seeds(s: &mut Seeds) {
    let cfgs = [
        (
            "readme",
            r#"local = "192.0.2.1"
[[network]]
dev = "vtep42"
vni = 42
peers = ["192.0.2.2", "192.0.2.3"]
address = "10.42.1.1/16"
fdb = [{ mac = "02:00:00:00:00:09", remote = "192.0.2.3" }]
"#,
        ),
        (
            "full-l2",
            r#"local = "192.0.2.1"
port = 4789
control = "/tmp/x.sock"
threads = 2
allow_any_peer = true

[[network]]
dev = "vtep42"
vni = 42
peers = ["192.0.2.2", "192.0.2.3"]
address = "10.42.0.1/24"
mtu = 1400
learning = false
ageing = 60
max_fdb = 100
arp_suppress = true
neigh = [{ ip = "10.42.0.9", mac = "02:00:00:00:00:09" }]
fdb = [{ mac = "02:00:00:00:00:09", remote = "192.0.2.9" }]

[[network]]
dev = "vtep43"
vni = 43
"#,
        ),
        (
            "l3-ipip",
            r#"local = "192.0.2.1"
mode = "l3"
encap = "ipip"
[[network]]
dev = "tunl0"
address = "10.244.1.64/32"
routes = ["10.244.2.64/26=192.0.2.2", "10.244.3.64/26=192.0.2.3"]
"#,
        ),
        (
            "l3-vxlan",
            r#"local = "192.0.2.1"
mode = "l3"
encap = "vxlan"
[[network]]
dev = "vtep0"
vni = 1
address = "10.244.0.0/32"
peers = ["192.0.2.2"]
routes = ["10.244.1.0/24=10.244.1.0"]
neigh = [{ ip = "10.244.1.0", mac = "02:00:00:00:00:02" }]
"#,
        ),
        (
            "bad-dev",
            "local = \"192.0.2.1\"\n[[network]]\ndev = \"a b\"\nvni = 1\n",
        ),
        ("bad-syntax", "local = \n[[network]\n"),
    ];
    for (name, c) in cfgs {
        s.put("config_toml", name, c.as_bytes());
    }
}

/// (Re)writes the seed corpus.
#[test]
#[ignore = "writes corpus/: run by hand after changing an input format"]
fn write_seeds() {
    let mut s = Seeds {
        root: Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"),
        written: 0,
    };
    for (case, p) in golden("vxlan") {
        s.put("vxlan_decap", &format!("golden-{case}"), &p);
    }
    core_ops_seeds(&mut s);
    ipip_seeds(&mut s);
    l3vx_seeds(&mut s);
    arp_seeds(&mut s);
    gro_seeds(&mut s);
    recv_seeds(&mut s);
    json_seeds(&mut s);
    toml_seeds(&mut s);
    eprintln!("{} seeds written", s.written);
}
