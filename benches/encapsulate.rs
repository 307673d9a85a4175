//! Per-packet cost of writing the VXLAN outer headers (`core::encapsulator`): with one
//! outer-header policy for every network (no look-up by VNI), with a network of its own policy
//! (one look-up by VNI), with every field inherited from the inner frame, and over an IPv6
//! underlay (56 bytes of headers and the UDP checksum over the frame, as vtepd sends there).
//!
//! Run: `cargo bench --bench encapsulate`.

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};

use encap::{Df, Dscp, Ttl, Vni, VxlanConfig};
use vtepd::core::encapsulator::{Encapsulator, TunnelConfig};

fn main() {
    divan::main();
}

const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const HEAD: usize = encap::tunnel::vxlan::OVERHEAD;
/// A 1400-byte inner frame: Ethernet + IPv4 + UDP.
const LEN: usize = 1400;

fn frame() -> Vec<u8> {
    let mut f = vec![0u8; HEAD + LEN];
    let e = &mut f[HEAD..];
    e[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    e[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    e[12..14].copy_from_slice(&[8, 0]);
    e[14] = 0x45;
    e[15] = 0xb8;
    e[16..18].copy_from_slice(&((LEN - 14) as u16).to_be_bytes());
    e[20] = 0x40;
    e[22] = 33;
    e[23] = 17;
    e[26..34].copy_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    f
}

fn run(bencher: divan::Bencher, mut enc: Encapsulator, vni: Vni) {
    let mut f = frame();
    bencher.bench_local(|| {
        let r = enc.encapsulate(black_box(&mut f), HEAD, LEN, vni, REMOTE.into());
        debug_assert!(r.is_ok());
        black_box(r)
    });
}

/// vtepd's defaults over an IPv6 underlay (the UDP checksum on).
#[divan::bench(sample_count = 200, sample_size = 5000)]
fn ipv6_underlay(bencher: divan::Bencher) {
    const HEAD6: usize = encap::tunnel::vxlan6::OVERHEAD;
    let mut enc = Encapsulator::new(TunnelConfig::Vxlan(VxlanConfig::new(LOCAL)), 0, 65_536)
        .over_ipv6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    let remote = vtepd::core::Remote::v6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));
    let mut f = vec![0u8; HEAD6 - HEAD];
    f.extend_from_slice(&frame());
    let vni = Vni::new(7).unwrap();
    bencher.bench_local(|| {
        let r = enc.encapsulate(black_box(&mut f), HEAD6, LEN, vni, remote);
        debug_assert!(r.is_ok());
        black_box(r)
    });
}

fn daemon_default() -> VxlanConfig {
    let mut c = VxlanConfig::new(LOCAL);
    c.udp_checksum = false;
    c
}

/// vtepd's defaults, one policy for all networks.
#[divan::bench(sample_count = 200, sample_size = 5000)]
fn one_policy(bencher: divan::Bencher) {
    let enc = Encapsulator::new(TunnelConfig::Vxlan(daemon_default()), 0, 65_536);
    run(bencher, enc, Vni::new(7).unwrap());
}

/// A network with a policy of its own: the VNI is looked up.
#[divan::bench(sample_count = 200, sample_size = 5000)]
fn per_network_policy(bencher: divan::Bencher) {
    let own = VxlanConfig {
        ttl: Ttl::Fixed(9),
        ..daemon_default()
    };
    let enc = Encapsulator::new(TunnelConfig::Vxlan(daemon_default()), 0, 65_536)
        .with_network(Vni::new(7).unwrap(), TunnelConfig::Vxlan(own));
    run(bencher, enc, Vni::new(7).unwrap());
}

/// TTL, TOS and DF inherited from the inner frame.
#[divan::bench(sample_count = 200, sample_size = 5000)]
fn all_inherited(bencher: divan::Bencher) {
    let c = VxlanConfig {
        ttl: Ttl::Inherit,
        dscp: Dscp::Inherit,
        df: Df::Inherit,
        ..daemon_default()
    };
    let enc = Encapsulator::new(TunnelConfig::Vxlan(c), 0, 65_536);
    run(bencher, enc, Vni::new(7).unwrap());
}
