//! Per-packet cost of the tunnel codecs (issue 2 §4): VXLAN and IPIP encapsulation and
//! decapsulation of 64- and 1500-byte inner frames, and a 64-byte encap+decap round trip.
//! Run with `cargo bench -p encap`.

use divan::{Bencher, black_box};
use encap::ipv4::Ipv4Repr;
use encap::tunnel::{ipip, vxlan};
use encap::{IpipConfig, IpipEncap, Vni, VxlanConfig, VxlanEncap, VxlanTx};
use std::net::Ipv4Addr;

fn main() {
    divan::main();
}

const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const SIZES: [usize; 2] = [64, 1500];

/// An inner IPv4 packet of `len` bytes (TCP, DSCP AF11 + ECT(0)) at `buf[off..]`.
fn ipv4_at(buf: &mut [u8], off: usize, len: usize) {
    let ip = Ipv4Repr {
        src: Ipv4Addr::new(10, 0, 0, 1),
        dst: Ipv4Addr::new(10, 0, 1, 1),
        protocol: 6,
        tos: 0x2a,
        ident: 1,
        dont_frag: true,
        ttl: 64,
        payload_len: len - 20,
    };
    ip.emit(&mut buf[off..]).unwrap();
    for (i, b) in buf[off + 20..off + len].iter_mut().enumerate() {
        *b = i as u8;
    }
}

/// A buffer with 36 bytes of headroom and an Ethernet/IPv4/TCP inner frame of `len` bytes.
fn vxlan_buffer(len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; vxlan::OVERHEAD + len];
    let f = &mut buf[vxlan::OVERHEAD..];
    f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    ipv4_at(f, 14, len - 14);
    buf
}

fn vxlan_encap(udp_checksum: bool) -> VxlanEncap {
    VxlanEncap::new(
        &VxlanConfig {
            udp_checksum,
            ..VxlanConfig::new(A)
        },
        B,
    )
    .unwrap()
}

fn tx() -> VxlanTx {
    VxlanTx {
        vni: Vni::new(42).unwrap(),
        ip_id: 7,
        src_port: None,
    }
}

#[divan::bench(args = SIZES)]
fn vxlan_encap_udp_checksum(b: Bencher, len: usize) {
    let enc = vxlan_encap(true);
    let mut buf = vxlan_buffer(len);
    let tx = tx();
    b.bench_local(|| black_box(enc.encapsulate(black_box(&mut buf), vxlan::OVERHEAD, len, &tx)));
}

#[divan::bench(args = SIZES)]
fn vxlan_encap_zero_checksum(b: Bencher, len: usize) {
    let enc = vxlan_encap(false);
    let mut buf = vxlan_buffer(len);
    let tx = tx();
    b.bench_local(|| black_box(enc.encapsulate(black_box(&mut buf), vxlan::OVERHEAD, len, &tx)));
}

fn encapsulated(udp_checksum: bool, len: usize) -> Vec<u8> {
    let mut buf = vxlan_buffer(len);
    vxlan_encap(udp_checksum)
        .encapsulate(&mut buf, vxlan::OVERHEAD, len, &tx())
        .unwrap();
    buf
}

#[divan::bench(args = SIZES)]
fn vxlan_decap_udp_checksum(b: Bencher, len: usize) {
    let pkt = encapsulated(true, len);
    b.bench_local(|| black_box(vxlan::decapsulate(black_box(&pkt), 4789)));
}

#[divan::bench(args = SIZES)]
fn vxlan_decap_zero_checksum(b: Bencher, len: usize) {
    let pkt = encapsulated(false, len);
    b.bench_local(|| black_box(vxlan::decapsulate(black_box(&pkt), 4789)));
}

#[divan::bench(args = SIZES)]
fn vxlan_decap_mut_zero_checksum(b: Bencher, len: usize) {
    let mut pkt = encapsulated(false, len);
    b.bench_local(|| black_box(vxlan::decapsulate_mut(black_box(&mut pkt), 4789)));
}

/// The 64-byte round trip the issue targets (< 50 ns), with and without the UDP checksum.
#[divan::bench(args = [false, true])]
fn vxlan_encap_decap_64(b: Bencher, udp_checksum: bool) {
    let enc = vxlan_encap(udp_checksum);
    let mut buf = vxlan_buffer(64);
    let tx = tx();
    b.bench_local(|| {
        let r = enc
            .encapsulate(black_box(&mut buf), vxlan::OVERHEAD, 64, &tx)
            .unwrap();
        black_box(vxlan::decapsulate(black_box(&buf[r]), 4789))
    });
}

fn ipip_buffer(len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; ipip::OVERHEAD + len];
    ipv4_at(&mut buf, ipip::OVERHEAD, len);
    buf
}

#[divan::bench(args = SIZES)]
fn ipip_encap(b: Bencher, len: usize) {
    let enc = IpipEncap::new(&IpipConfig::new(A), B).unwrap();
    let mut buf = ipip_buffer(len);
    b.bench_local(|| black_box(enc.encapsulate(black_box(&mut buf), ipip::OVERHEAD, len, 7)));
}

#[divan::bench(args = SIZES)]
fn ipip_decap(b: Bencher, len: usize) {
    let mut pkt = ipip_buffer(len);
    let enc = IpipEncap::new(&IpipConfig::new(A), B).unwrap();
    enc.encapsulate(&mut pkt, ipip::OVERHEAD, len, 7).unwrap();
    b.bench_local(|| black_box(ipip::decapsulate(black_box(&pkt))));
}

#[divan::bench]
fn ipip_encap_decap_64(b: Bencher) {
    let enc = IpipEncap::new(&IpipConfig::new(A), B).unwrap();
    let mut buf = ipip_buffer(64);
    b.bench_local(|| {
        let r = enc
            .encapsulate(black_box(&mut buf), ipip::OVERHEAD, 64, 7)
            .unwrap();
        black_box(ipip::decapsulate(black_box(&buf[r])))
    });
}

/// The Internet checksum alone (what the UDP checksum adds per byte).
#[divan::bench(args = SIZES)]
fn checksum_sum(b: Bencher, len: usize) {
    let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
    b.bench_local(|| black_box(encap::checksum::checksum(black_box(&data))));
}
