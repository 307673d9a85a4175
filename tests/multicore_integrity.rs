//! Byte-exact TCP transfers through the L2 tunnel (`--threads 2`): a file with a known sha256
//! crosses with segment sizes around the tunnel MTU boundary (MSS 1398 fills a 1450-byte TAP
//! MTU exactly; 1397, 1200, 536 and the default too) and odd write sizes; the receiver's hash
//! must equal the sender's. Then the same over IPv6 inside the overlay (fd00:9::/64 on the
//! TAPs): the sending TAP hands TCP/IPv6 super-frames over (TSO6) that vtepd cuts, the
//! receiving vtepd merges the segments into GSO TCPv6 writes, and the stream arrives intact.
//! Needs root and /usr/bin/python3.

mod daemon_support;
mod l2_pair_support;
mod transfer_support;

use daemon_support::{Daemon, Netns, must};
use l2_pair_support::two_daemons;
use std::time::Duration;
use transfer_support::{Payload, transfer};

/// The kernel's count `stat` (`tx_packets`, `rx_packets`) of vx0 in `ns`.
fn kernel_count(ns: &Netns, stat: &str) -> u64 {
    let path = format!("/sys/class/net/vx0/statistics/{stat}");
    must(ns.cmd("cat").arg(path)).trim().parse().unwrap()
}

/// vtepd's counter `key` of `d` (`stats --json`).
fn count(d: &Daemon, key: &str) -> u64 {
    let s = d.stats();
    s[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {s}"))
}

/// IPv6 on vx0 in `ns` (the pair's namespaces have it off), with `addr` (no DAD wait).
fn overlay_ipv6(ns: &Netns, addr: &str) {
    must(
        ns.cmd("sysctl")
            .args(["-qw", "net.ipv6.conf.vx0.disable_ipv6=0"]),
    );
    ns.ip(&["addr", "add", addr, "dev", "vx0", "nodad"]);
}

#[test]
fn tcp_streams_arrive_byte_identical_around_the_mtu_boundary() {
    let (p, a, b) = two_daemons("2");
    let file = Payload::new("pl", 0x9e37_79b9_7f4a_7c15, 8 << 20);
    let cases: &[(u32, usize)] = &[
        (0, 65_536),
        (1398, 65_536),
        (1397, 1397),
        (1200, 4093),
        (536, 100_003),
    ];
    for (i, &(mss, chunk)) in cases.iter().enumerate() {
        let (sent, got) = transfer(&p, &file, "10.9.0.2", 7200 + i as u16, mss, chunk);
        assert_eq!(sent["bytes"], 8 << 20, "MSS {mss}: {sent}");
        assert_eq!(
            got, sent,
            "MSS {mss}, writes of {chunk}: the stream changed in the tunnel"
        );
    }
    // TCP over IPv6 in the overlay: cut on A (the kernel hands A's vtepd fewer packets than
    // it reads segments), merged on B (B's kernel takes fewer packets than vtepd wrote
    // segments), byte-exact.
    overlay_ipv6(&p.a, "fd00:9::1/64");
    overlay_ipv6(&p.b, "fd00:9::2/64");
    assert!(p.a.ping_within("fd00:9::2", Duration::from_secs(10)));
    let (handed, read) = (kernel_count(&p.a, "tx_packets"), count(&a, "rx_device"));
    let (taken, written) = (kernel_count(&p.b, "rx_packets"), count(&b, "tx_device"));
    let (sent, got) = transfer(&p, &file, "fd00:9::2", 7299, 0, 65_536);
    assert_eq!(sent["bytes"], 8 << 20, "IPv6: {sent}");
    assert_eq!(got, sent, "IPv6: the stream changed in the tunnel");
    let handed = kernel_count(&p.a, "tx_packets") - handed;
    let read = count(&a, "rx_device") - read;
    assert!(
        2 * handed < read,
        "A's TAP handed {handed} packets over for {read} segments: no TSO6 super-frames"
    );
    let taken = kernel_count(&p.b, "rx_packets") - taken;
    let written = count(&b, "tx_device") - written;
    eprintln!("IPv6: A read {read} segments in {handed} reads, B wrote {written} in {taken}");
    assert!(
        2 * taken < written,
        "B's TAP took {taken} packets for {written} segments: no IPv6 TCP merged"
    );
}
