//! L3 IPIP between two daemons, with one worker and with `--threads 2`.
//!
//! Byte-exact TCP transfers through the L3 IPIP tunnel, whose TUN device has offloads on: the
//! sender's kernel hands vtepd TSO super-packets (split into segments, each encapsulated) and the
//! receiving vtepd coalesces decapsulated segments into GSO writes. A file with a known sha256
//! crosses with segment sizes around the tunnel MTU boundary (MSS 1440 fills the 1480-byte
//! tunnel MTU exactly; 1439, 1200, 536 and the default too) and odd write sizes; the receiver's
//! hash must equal the sender's; with two workers on each side too.
//!
//! Behind an underlay with GRO (the receiving veth with GRO and a NAPI thread, as a NIC with
//! interrupt coalescing): the kernel merges the IPIP packets of a TCP flow before the raw
//! socket sees them (a super-packet whose TCP checksum field holds only the pseudo-header sum);
//! the stream must still arrive byte-identical, and vtepd counts what came merged; over IPv6
//! too (protocol 41, merged by the kernel's GRO for IPv6 in IPv4).
//!
//! With `--threads 2`: sequence-numbered UDP flows spread over both workers of each daemon (both
//! read from their TUN queue and sent, both received from their raw socket and wrote to the
//! device), none is reordered, and the per-worker counters sum to the totals.
//! Needs root and /usr/bin/python3.

mod daemon_support;
mod flow_support;
mod l3_pair_support;
mod transfer_support;

use daemon_support::{Daemon, Pair};
use flow_support::{
    assert_rows_sum_to_totals, five_pings_are_counted, n, sequenced_flows, workers,
};
use l3_pair_support::{ipip_pair, ipip_pair6};
use transfer_support::{Payload, transfer};

fn counter(d: &Daemon, key: &str) -> u64 {
    let s = d.stats();
    s[key]
        .as_u64()
        .or_else(|| s["totals"][key].as_u64())
        .unwrap_or_else(|| panic!("no {key} in {s}"))
}

#[test]
fn ipip_tcp_streams_arrive_byte_identical_with_tun_offloads() {
    byte_identical_transfers("1");
}

#[test]
fn ipip_tcp_streams_arrive_byte_identical_over_two_workers() {
    let (_p, a, b) = byte_identical_transfers("2");
    for d in [&a, &b] {
        let st = d.stats();
        assert_eq!(workers(&st).len(), 2, "{st}");
        assert_rows_sum_to_totals(&st);
    }
}

/// The transfers with `threads` workers a side; returns the pair and its daemons (sender,
/// receiver).
fn byte_identical_transfers(threads: &str) -> (Pair, Daemon, Daemon) {
    let (p, a, b) = ipip_pair(threads);
    let file = Payload::new("ipl", 0x2545_f491_4f6c_dd1d, 8 << 20);
    let cases: &[(u32, usize)] = &[
        (0, 65_536),
        (1440, 65_536),
        (1439, 1439),
        (1200, 4093),
        (536, 100_003),
    ];
    for (i, &(mss, chunk)) in cases.iter().enumerate() {
        let (sent, got) = transfer(&p, &file, "10.43.2.1", 7300 + i as u16, mss, chunk);
        assert_eq!(sent["bytes"], 8 << 20, "MSS {mss}: {sent}");
        assert_eq!(
            got, sent,
            "MSS {mss}, writes of {chunk}: the stream changed in the tunnel"
        );
    }
    // The sender's device handed over super-packets: more packets left for the tunnel than
    // the device counted (each super-packet is one rx on the TUN device, many tx_tunnel).
    let tun_rx: u64 =
        p.a.cmd("cat")
            .arg("/sys/class/net/tun0/statistics/tx_packets")
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
    let tx_tunnel = counter(&a, "tx_tunnel");
    assert!(
        tx_tunnel > tun_rx,
        "no super-packet was split: the device sent {tun_rx}, the tunnel got {tx_tunnel}"
    );
    (p, a, b)
}

#[test]
fn ipip_tcp_streams_arrive_byte_identical_from_an_underlay_with_gro() {
    let (p, a, b) = ipip_pair6("1");
    // GRO on the receiving veth needs its NAPI, which a veth uses for packets from a sender
    // whose veth has TSO only with UDP GRO forwarding on; the NAPI thread lets packets
    // accumulate between polls, as interrupt coalescing does on a NIC.
    let on = p
        .b
        .cmd("sh")
        .args([
            "-c",
            "ethtool -K eth0 gro on rx-udp-gro-forwarding on && echo 1 > /sys/class/net/eth0/threaded",
        ])
        .status()
        .expect("ethtool");
    assert!(on.success(), "cannot turn GRO on for the underlay");
    let file = Payload::new("ipg", 0x6c8e_9cf5_7041_2a33, 16 << 20);
    for (i, &(mss, chunk)) in [(0, 65_536), (1440, 65_536), (536, 100_003)]
        .iter()
        .enumerate()
    {
        let (sent, got) = transfer(&p, &file, "10.43.2.1", 7400 + i as u16, mss, chunk);
        assert_eq!(sent["bytes"], 16 << 20, "MSS {mss}: {sent}");
        assert_eq!(got, sent, "MSS {mss}: the stream changed in the tunnel");
    }
    // The receiver handled packets the underlay had merged (how many depends on when the NAPI
    // thread ran: some in 48 MiB).
    let merged = counter(&b, "rx_merged");
    assert!(merged > 0, "the underlay merged nothing: {}", b.stats());
    // IPv6 in IPv4 (protocol 41), merged the same way.
    let (sent, got) = transfer(&p, &file, "fd00:43:2::1", 7410, 0, 65_536);
    assert_eq!(sent["bytes"], 16 << 20, "IPv6: {sent}");
    assert_eq!(got, sent, "IPv6: the stream changed in the tunnel");
    let merged6 = counter(&b, "rx_merged") - merged;
    assert!(
        merged6 > 0,
        "IPv6: the underlay merged nothing: {}",
        b.stats()
    );
    assert!(
        counter(&b, "rx_tunnel") < counter(&a, "tx_tunnel"),
        "{}",
        b.stats()
    );
    // The host's MLD reports into the device are the only drops (quiet, expected).
    let st = b.stats();
    let quiet = st["drops"]["ipv6_multicast"].as_u64().unwrap_or(0);
    assert_eq!(counter(&b, "drops_total"), quiet, "{st}");
}

#[test]
fn ipip_flows_spread_over_two_workers_in_order_and_counters_sum() {
    let (p, a, b) = ipip_pair("2");
    let report = sequenced_flows(&p, "10.43.2.1", 16, 300);
    assert_eq!(n(&report, "reordered"), 0, "a flow was reordered: {report}");
    assert_eq!(n(&report, "flows"), 16, "every flow arrived: {report}");
    // Some loss under load is allowed (UDP), but most must arrive.
    assert!(n(&report, "received") > 16 * 300 / 2, "{report}");
    let (sa, sb) = (a.stats(), b.stats());
    for (st, key) in [
        (&sa, "rx_device"),
        (&sa, "tx_tunnel"),
        (&sb, "rx_tunnel"),
        (&sb, "tx_device"),
    ] {
        let rows = workers(st);
        assert_eq!(rows.len(), 2, "{st}");
        for w in rows {
            assert!(n(&w, key) > 0, "a worker never saw {key}: {st}");
        }
    }
    assert_rows_sum_to_totals(&sa);
    assert_rows_sum_to_totals(&sb);
    flow_support::traffic_sums_to_totals(&a).unwrap();
    flow_support::traffic_sums_to_totals(&b).unwrap();
    // Every datagram B received from the tunnel was received once: what B's workers took in
    // is what A's workers sent (nothing else crossed meanwhile but the ping and its reply).
    assert!(
        n(&sb, "rx_tunnel") <= n(&sa, "tx_tunnel"),
        "more received than sent: {sa} {sb}"
    );
}

/// Pings counted per network (the TUN, VNI 0) and per remote node, in packets and bytes; the
/// text shows no VXLAN counters.
#[test]
fn pings_are_counted_per_network_and_per_node() {
    let (p, a, b) = ipip_pair("1");
    let text = five_pings_are_counted(&p, &a, &b, "10.43.2.1", ("tun0", 0, "l3-ipip"), 1028);
    eprintln!("{text}");
    assert!(text.starts_with("vtepd l3-ipip: up "), "{text}");
    assert!(text.contains("network vni 0 dev tun0\n"), "{text}");
    assert!(
        text.contains("peer 192.0.2.2 vni 0 dev tun0: rx "),
        "{text}"
    );
    for absent in ["fdb", "arp_", "learned", "flood_copies", "neigh", "mac"] {
        assert!(!text.contains(absent), "{absent} in {text}");
    }
}
