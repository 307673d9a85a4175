//! L3 VXLAN (`--mode l3 --encap vxlan`) with TUN offloads, end to end in network namespaces:
//! - byte-exact TCP transfers: the sender's kernel hands vtepd TSO super-packets (framed,
//!   cut into segments and sent as UDP GSO runs) and the receiving vtepd coalesces the
//!   decapsulated segments into GSO writes. A file with a known sha256 crosses with segment
//!   sizes around the tunnel MTU boundary (MSS 1410 fills the 1450-byte tunnel MTU exactly;
//!   1409, 1200, 536 and the default too) and odd write sizes, and one over IPv6 (TSO6 read,
//!   IPv6 TCP coalesced);
//! - `--threads 2`: flows spread over both workers (multi-queue TUN, SO_REUSEPORT), no flow is
//!   reordered, a TCP stream still arrives intact, per-worker counters sum to the totals.
//!
//! Needs root and /usr/bin/python3.

mod daemon_support;
mod flow_support;
mod l3_pair_support;
mod transfer_support;

use daemon_support::{Capture, Netns, Pair};
use flow_support::{
    assert_rows_sum_to_totals, five_pings_are_counted, n, sequenced_flows, workers,
};
use l3_pair_support::{l3vx_daemon_extra, l3vx_pair, l3vx_pair6};
use std::time::Duration;
use transfer_support::{Payload, transfer};

fn device_counter(ns: &Netns, key: &str) -> u64 {
    ns.cmd("cat")
        .arg(format!("/sys/class/net/tun0/statistics/{key}"))
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

#[test]
fn l3_vxlan_tcp_streams_arrive_byte_identical_with_tun_offloads() {
    let (p, a, b) = l3vx_pair6("1");
    let file = Payload::new("l3vxo", 0x5eed_1a3c_0ffe_e001, 8 << 20);
    // IPv6 first, counted on its own: super-packets read (many more tunnel packets than device
    // packets) and segments coalesced (far fewer device writes than segments written).
    let (sent, got) = transfer(&p, &file, "fd00:45::2", 7399, 0, 65_536);
    assert_eq!(sent["bytes"], 8 << 20, "IPv6: {sent}");
    assert_eq!(got, sent, "IPv6: the stream changed in the tunnel");
    let (tx_tunnel6, tun_tx6) = (
        n(&a.stats(), "tx_tunnel"),
        device_counter(&p.a, "tx_packets"),
    );
    // (Without TSO6 the two are equal but for the few packets vtepd makes itself.)
    assert!(
        tx_tunnel6 > 2 * tun_tx6,
        "IPv6: no super-packet was split: the device sent {tun_tx6}, the tunnel got {tx_tunnel6}"
    );
    let (tx_device6, tun_rx6) = (
        n(&b.stats(), "tx_device"),
        device_counter(&p.b, "rx_packets"),
    );
    assert!(
        2 * tun_rx6 < tx_device6,
        "IPv6: nothing was coalesced: {tx_device6} packets written as {tun_rx6} device packets"
    );
    let cases: &[(u32, usize)] = &[
        (0, 65_536),
        (1410, 65_536),
        (1409, 1409),
        (1200, 4093),
        (536, 100_003),
    ];
    for (i, &(mss, chunk)) in cases.iter().enumerate() {
        let (sent, got) = transfer(&p, &file, "10.45.0.2", 7400 + i as u16, mss, chunk);
        assert_eq!(sent["bytes"], 8 << 20, "MSS {mss}: {sent}");
        assert_eq!(
            got,
            sent,
            "MSS {mss}, writes of {chunk}: the stream changed in the tunnel\n{}\n{}",
            a.log_text(),
            b.log_text()
        );
    }
    // The sender's device handed over super-packets: more packets left for the tunnel than
    // the device counted (each super-packet is one packet of the TUN device, many tx_tunnel).
    let st = a.stats();
    let tx_tunnel = n(&st, "tx_tunnel");
    let tun_tx = device_counter(&p.a, "tx_packets");
    assert!(
        tx_tunnel > tun_tx,
        "no super-packet was split: the device sent {tun_tx}, the tunnel got {tx_tunnel}"
    );
    // The receiver coalesced: fewer writes reached its device than segments were written.
    let tx_device = n(&b.stats(), "tx_device");
    let tun_rx = device_counter(&p.b, "rx_packets");
    assert!(
        tun_rx < tx_device,
        "nothing was coalesced: {tx_device} packets written as {tun_rx} device packets"
    );
    // The host's MLD reports into the device are the only drops (quiet, expected).
    let quiet = st["drops"]["ipv6_multicast"].as_u64().unwrap_or(0);
    assert_eq!(n(&st, "drops_total"), quiet, "{st}");
}

/// With remote checksum offload on both sides (`--remcsum-tx on --remcsum-rx on`), the
/// segments leave with their TCP checksum partial and the option in their VXLAN header (tshark
/// reads the flags 0x0820 and start 34 / 2 on B's link), and the stream still arrives intact:
/// B writes them checksum partial, and its kernel's TCP takes them.
#[test]
fn l3_vxlan_streams_arrive_byte_identical_with_remote_checksum_offload() {
    let p = Pair::new();
    p.a.disable_ipv6();
    p.b.disable_ipv6();
    let rco = ["--remcsum-tx", "on", "--remcsum-rx", "on"];
    let a = l3vx_daemon_extra(&p.a, 1, 2, &rco);
    let b = l3vx_daemon_extra(&p.b, 2, 1, &rco);
    assert!(p.a.ping_within("10.45.0.2", Duration::from_secs(10)));
    let cap = Capture::start(&p.b, "udp dst port 4789");
    let file = Payload::new("l3vxr", 0x0dd5_eed5_7ac0_11a5, 8 << 20);
    let (sent, got) = transfer(&p, &file, "10.45.0.2", 7450, 0, 65_536);
    assert_eq!(sent["bytes"], 8 << 20, "{sent}");
    assert_eq!(
        got,
        sent,
        "the stream changed in the tunnel\n{}",
        b.log_text()
    );
    let (rows, rco_rows) = cap.rco_segments("frame");
    assert!(
        rows > 0 && 2 * rco_rows >= rows,
        "{rco_rows} of {rows} data segments with the option"
    );
    for d in [&a, &b] {
        assert_eq!(d.stats()["drops"]["remote_csum"], 0, "{}", d.stats());
    }
}

#[test]
fn l3_vxlan_two_workers_spread_flows_in_order_and_counters_sum() {
    let (p, a, b) = l3vx_pair("2");
    for d in [&a, &b] {
        assert_eq!(workers(&d.stats()).len(), 2, "two workers in stats --json");
    }
    let report = sequenced_flows(&p, "10.45.0.2", 16, 300);
    assert_eq!(n(&report, "reordered"), 0, "a flow was reordered: {report}");
    assert_eq!(n(&report, "flows"), 16, "every flow arrived: {report}");
    assert!(n(&report, "received") > 16 * 300 / 2, "{report}");

    // Both of A's workers read from their TUN queue, both of B's received datagrams.
    let (sa, sb) = (a.stats(), b.stats());
    for (st, key) in [
        (&sa, "rx_device"),
        (&sa, "tx_tunnel"),
        (&sb, "rx_tunnel"),
        (&sb, "tx_device"),
    ] {
        for w in workers(st) {
            assert!(n(&w, key) > 0, "a worker never saw {key}: {st}");
        }
    }
    // A TCP stream is still intact with two workers on each side.
    let file = Payload::new("l3vxm", 0x0dd5_eed5_1234_5678, 4 << 20);
    let (sent, got) = transfer(&p, &file, "10.45.0.2", 7420, 0, 65_536);
    assert_eq!(got, sent, "the stream changed in the tunnel");
    assert_rows_sum_to_totals(&a.stats());
    assert_rows_sum_to_totals(&b.stats());
    flow_support::traffic_sums_to_totals(&a).unwrap();
    flow_support::traffic_sums_to_totals(&b).unwrap();
}

/// Pings counted per network and per remote VTEP: an Ethernet frame (1042 bytes) in the tunnel
/// for each 1028-byte packet on the TUN; the text shows no L2 or IPIP counters.
#[test]
fn pings_are_counted_per_network_and_per_vtep() {
    let (p, a, b) = l3vx_pair("1");
    let text = five_pings_are_counted(&p, &a, &b, "10.45.0.2", ("tun0", 45, "l3-vxlan"), 1042);
    eprintln!("{text}");
    assert!(text.starts_with("vtepd l3-vxlan: up "), "{text}");
    assert!(text.contains("network vni 45 dev tun0 mac "), "{text}");
    assert!(
        text.contains("peer 192.0.2.2 vni 45 dev tun0: rx "),
        "{text}"
    );
    for absent in ["arp_suppressed", "rx_merged"] {
        assert!(!text.contains(absent), "{absent} in {text}");
    }
}
