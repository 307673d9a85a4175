//! ARP suppression (`--arp-suppress`) counted on the wire: three vtepd hosts with two pods each.
//! h1p1 reaches h2p1 first (its ARP floods; h2p1's reply crosses the tunnel and h1's vtepd snoops
//! the binding). Then h1p2 asks for the same address: with suppression, h1's vtepd answers into
//! its TAP and no copy of the request reaches the underlay (tcpdump on both peers counts 0,
//! `arp_suppressed` +1); without, the request is flooded (one copy per peer).

mod lab_util;

use lab_util::{Lab, WAIT, lab_available, wait_for};

/// h2p1's overlay address (lab_pod_ip h2 p1).
const H2P1: &str = "10.42.2.10";
/// VXLAN datagrams whose inner frame is an ARP request (ethertype at udp[16 + 12], operation 1
/// at udp[16 + 14 + 6]) from h1p2 (10.42.1.11 = 0x0a2a010b, the sender address at
/// udp[16 + 14 + 14]). h1p2's reply to h2p1's own ARP does cross the tunnel and is not counted.
const H1P2_ARP: &str =
    "udp dst port 4789 and udp[28:2] = 0x0806 and udp[36:2] = 1 and udp[44:4] = 0x0a2a010b";

/// Runs the scenario; returns (copies of h1p2's ARP request seen on the peers' underlay links,
/// increase of h1's `arp_suppressed`).
fn second_pod_asks(tag: &str, suppress: bool) -> (u64, u64) {
    let lab = Lab::new(tag);
    let args = if suppress { "--arp-suppress" } else { "" };
    lab.fabric(3, 2, "vtepd vtepd vtepd", args);
    lab.sh(&["wait-ping", "h1p1", H2P1]);
    if suppress {
        wait_for("h1 to snoop h2p1's binding", WAIT, || {
            lab.client_ok("h1", &["neigh", "show", "--json"])
                .contains(H2P1)
                .then_some(())
        });
        let rows: serde_json::Value =
            serde_json::from_str(&lab.client_ok("h1", &["neigh", "show", "--json"])).unwrap();
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["ip"] == H2P1)
            .unwrap();
        assert_eq!(row["mac"], "02:42:0a:2a:02:01", "h2p1's MAC: {row}");
        assert_eq!(row["kind"], "learned");
    }
    for host in ["h2", "h3"] {
        let name = format!("{host}arp");
        lab.sh(&["capture", host, "eth0", H1P2_ARP, &name]);
    }
    let before = lab.stats("h1").get("arp_suppressed");
    lab.sh(&["ping-once", "h1p2", H2P1, "56"]);
    // Let the captures catch up with anything still in flight.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let copies: u64 = ["h2arp", "h3arp"]
        .iter()
        .map(|n| {
            let out = lab.sh(&["count-pcap", n, H1P2_ARP]);
            out.trim().parse::<u64>().unwrap()
        })
        .sum();
    let after = lab.stats("h1").get("arp_suppressed");
    (copies, after - before)
}

#[test]
fn suppressed_request_never_reaches_the_underlay() {
    if !lab_available("suppressed_request_never_reaches_the_underlay") {
        return;
    }
    assert_eq!(second_pod_asks("arpon", true), (0, 1));
}

#[test]
fn without_suppression_the_request_floods_to_every_peer() {
    if !lab_available("without_suppression_the_request_floods_to_every_peer") {
        return;
    }
    assert_eq!(second_pod_asks("arpoff", false), (2, 0));
}

/// VXLAN datagrams carrying an ARP request from h1p1 (10.42.1.10 = 0x0a2a010a).
const H1P1_ARP: &str =
    "udp dst port 4789 and udp[28:2] = 0x0806 and udp[36:2] = 1 and udp[44:4] = 0x0a2a010a";

#[test]
fn static_binding_from_the_control_socket_is_answered_until_deleted() {
    if !lab_available("static_binding_from_the_control_socket_is_answered_until_deleted") {
        return;
    }
    let lab = Lab::new("arpst");
    lab.fabric(3, 1, "vtepd vtepd vtepd", "--arp-suppress");
    let vni = lab.vni().to_string();
    // An address nobody on the overlay has: only the static binding can answer for it.
    let (ip, mac) = ("10.42.2.99", "02:42:0a:2a:02:63");
    lab.client_ok("h1", &["neigh", "add", ip, mac, "--vni", &vni]);
    let rows: serde_json::Value =
        serde_json::from_str(&lab.client_ok("h1", &["neigh", "show", "--json"])).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ip"] == ip)
        .unwrap_or_else(|| panic!("neigh show lacks {ip}: {rows}"));
    assert_eq!(
        (row["mac"].as_str(), row["kind"].as_str()),
        (Some(mac), Some("static"))
    );

    let pod = format!("{}-h1p1", lab.prefix());
    let ask = || {
        // The pod forgets what it knew, then asks (the echo itself goes nowhere).
        let _ = std::process::Command::new("ip")
            .args(["netns", "exec", &pod, "ip", "neigh", "flush", "all"])
            .status();
        let _ = std::process::Command::new("ip")
            .args(["netns", "exec", &pod, "ping", "-c", "1", "-W", "1", ip])
            .output();
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    let copies = |lab: &Lab, tag: &str| -> u64 {
        ["h2", "h3"]
            .iter()
            .map(|h| {
                let out = lab.sh(&["count-pcap", &format!("{h}{tag}"), H1P1_ARP]);
                out.trim().parse::<u64>().unwrap()
            })
            .sum()
    };
    for h in ["h2", "h3"] {
        lab.sh(&["capture", h, "eth0", H1P1_ARP, &format!("{h}on")]);
    }
    let before = lab.stats("h1").get("arp_suppressed");
    ask();
    let neigh = std::process::Command::new("ip")
        .args(["netns", "exec", &pod, "ip", "neigh", "show", ip])
        .output()
        .unwrap();
    let neigh = String::from_utf8_lossy(&neigh.stdout);
    assert!(
        neigh.contains(mac),
        "the pod did not get {mac} for {ip}: {neigh}"
    );
    assert_eq!(
        copies(&lab, "on"),
        0,
        "a suppressed request reached the underlay"
    );
    assert!(lab.stats("h1").get("arp_suppressed") > before);

    lab.client_ok("h1", &["neigh", "del", ip, "--vni", &vni]);
    for h in ["h2", "h3"] {
        lab.sh(&["capture", h, "eth0", H1P1_ARP, &format!("{h}off")]);
    }
    ask();
    assert!(
        copies(&lab, "off") >= 2,
        "after neigh del the request must flood to both peers"
    );
}
