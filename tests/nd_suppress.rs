//! ND suppression (`--arp-suppress` covers IPv6 too) counted on the wire: two vtepd hosts with
//! one pod each, IPv6 on the pods. h1p1 pings h2p1 over IPv6 (its neighbour solicitation
//! floods; h2p1's advertisement crosses the tunnel and h1's vtepd snoops the binding). Then h1p1
//! forgets its neighbours and pings again: h1's vtepd answers the new solicitation into its TAP
//! (`nd_suppressed` +1, no flood, no copy on the underlay), and tshark reads the advertisement
//! h1p1 received: flags, target, option, hop limit, checksum.

mod lab_util;

use lab_util::{Lab, WAIT, lab_available, wait_for};
use std::process::Command;
use std::time::Instant;

const H1P1: &str = "fd00::1:10";
const H2P1: &str = "fd00::2:10";
/// lab_pod_mac h2 p1.
const H2P1_MAC: &str = "02:42:0a:2a:02:01";
/// lab_pod_mac h1 p1.
const H1P1_MAC: &str = "02:42:0a:2a:01:01";
/// VXLAN datagrams carrying a multicast neighbour solicitation: inner Ethernet destination
/// 33:33:... at udp[16], ethertype IPv6 at udp[28], next header ICMPv6 at udp[36], ICMPv6
/// type 135 at udp[70] (UDP 8 + VXLAN 8 + Ethernet 14 + IPv6 40 = 70).
const NS_IN_VXLAN: &str = "udp dst port 4789 and udp[16:2] = 0x3333 and udp[28:2] = 0x86dd \
                           and udp[36] = 58 and udp[70] = 135";

/// Runs `ip netns exec NS ARGS...`; its output.
fn in_ns(lab: &Lab, node: &str, args: &[&str]) -> std::process::Output {
    Command::new("timeout")
        .args([
            "10",
            "ip",
            "netns",
            "exec",
            &format!("{}-{node}", lab.prefix()),
        ])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_known_remote_ipv6_address_is_answered_by_vtepd() {
    if !lab_available("a_known_remote_ipv6_address_is_answered_by_vtepd") {
        return;
    }
    let started = Instant::now();
    let lab = Lab::new("ndsup");
    lab.fabric(2, 1, "vtepd vtepd", "--arp-suppress");
    lab.sh(&["pod-ipv6", "h1p1", &format!("{H1P1}/64")]);
    lab.sh(&["pod-ipv6", "h2p1", &format!("{H2P1}/64")]);
    lab.sh(&["wait-ping", "h1p1", H2P1]);
    let rows = wait_for("h1 to snoop h2p1's IPv6 binding", WAIT, || {
        let out = lab.client_ok("h1", &["neigh", "show", "--json"]);
        let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
        let row = rows.as_array()?.iter().find(|r| r["ip"] == H2P1)?.clone();
        Some(row)
    });
    assert_eq!(
        (rows["mac"].as_str(), rows["kind"].as_str()),
        (Some(H2P1_MAC), Some("learned")),
        "{rows}"
    );

    lab.sh(&["capture", "h2", "eth0", NS_IN_VXLAN, "h2ns"]);
    lab.sh(&["capture", "h1p1", "eth0", "icmp6 and ip6[40] = 136", "na"]);
    let flush = in_ns(&lab, "h1p1", &["ip", "-6", "neigh", "flush", "dev", "eth0"]);
    assert!(flush.status.success(), "{flush:?}");
    let before = lab.stats("h1");
    let ping = in_ns(&lab, "h1p1", &["ping", "-c", "1", "-W", "2", H2P1]);
    assert!(ping.status.success(), "ping6 after the flush: {ping:?}");
    let after = lab.stats("h1");
    let delta = |k: &str| after.get(k) - before.get(k);
    assert_eq!(delta("nd_suppressed"), 1, "one solicitation answered");
    assert_eq!(delta("flood_copies"), 0, "nothing flooded");
    lab.sh(&["capture-stop", "h2ns"]);
    lab.sh(&["capture-stop", "na"]);
    let copies = lab.sh(&["count-pcap", "h2ns"]);
    assert_eq!(copies.trim(), "0", "a solicitation reached the underlay");

    // The advertisement h1p1 received, as tshark reads it.
    let pcap = format!("/run/vtepd-lab-{}/na.pcap", lab.prefix());
    let fields = [
        "eth.src",
        "eth.dst",
        "ipv6.src",
        "ipv6.dst",
        "ipv6.hlim",
        "icmpv6.type",
        "icmpv6.code",
        "icmpv6.nd.na.flag.r",
        "icmpv6.nd.na.flag.s",
        "icmpv6.nd.na.flag.o",
        "icmpv6.nd.na.target_address",
        "icmpv6.opt.type",
        "icmpv6.opt.linkaddr",
        "icmpv6.checksum.status",
    ];
    let mut cmd = Command::new("tshark");
    cmd.args(["-r", &pcap, "-n", "-T", "fields", "-E", "separator=|"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("tshark");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), 1, "one advertisement: {text}");
    let got: Vec<(&str, &str)> = fields.iter().copied().zip(rows[0].clone()).collect();
    let want = [
        ("eth.src", H2P1_MAC),
        ("eth.dst", H1P1_MAC),
        ("ipv6.src", H2P1),
        ("ipv6.dst", H1P1),
        ("ipv6.hlim", "255"),
        ("icmpv6.type", "136"),
        ("icmpv6.code", "0"),
        ("icmpv6.nd.na.flag.r", "0"),
        ("icmpv6.nd.na.flag.s", "1"),
        ("icmpv6.nd.na.flag.o", "1"),
        ("icmpv6.nd.na.target_address", H2P1),
        ("icmpv6.opt.type", "2"),
        ("icmpv6.opt.linkaddr", H2P1_MAC),
        ("icmpv6.checksum.status", "1"),
    ];
    assert_eq!(got, want);
    eprintln!("nd suppression lab: {:?}", started.elapsed());
}
