//! L3 IPIP (`--mode l3 --encap ipip`) in network namespaces.
//!
//! - lab/calico-ipip.sh in quiet mode: two Calico-style nodes, pod-to-pod ping both ways, tshark
//!   decodes the underlay as IPv4-in-IPv4, an iperf3 TCP transfer.
//! - Conformance against scapy as the independent IPIP peer (the kernel here has no `ipip` link
//!   type): one vtepd node h1 with a pod, a "remote node" h2 (192.0.2.2) that is only scapy and
//!   tcpdump, and a stranger x (192.0.2.99). Checked: an IPIP packet from the listed node is
//!   delivered (the pod answers, through the tunnel); one from the stranger is dropped and counted;
//!   the outer header of what vtepd sends copies DF and ECN (CE sent as ECT(0)) with TTL 64; an
//!   oversize DF packet gets ICMP "fragmentation needed" with the tunnel MTU; TTL 0, our own source
//!   and outer CE over inner Not-ECT are dropped and counted; `routes add|del|show` changes the
//!   data path and the kernel routes at once; SIGTERM removes the device and its routes.
//! - IPv6 in IPIP (protocol 41, RFC 4213) against scapy the same way, with `--address6`: see
//!   `ipip6_conformance_against_scapy`.

mod lab_util;

use lab_util::{Lab, Stats, WAIT, lab_available, repo, wait_for};
use std::process::Command;

const H1: &str = "192.0.2.1";
const H2: &str = "192.0.2.2";
const X: &str = "192.0.2.99";
const POD: &str = "10.244.1.65";
/// A pod "behind" h2, which only scapy plays.
const REMOTE_POD: &str = "10.244.2.70";

#[test]
fn calico_ipip_script_succeeds() {
    if !lab_available("calico_ipip_script_succeeds") {
        return;
    }
    let lab = Lab::new("tcal");
    let out = lab
        .command("timeout")
        .args(["--kill-after=5", "120"])
        .arg(repo().join("lab/calico-ipip.sh"))
        .arg("--quiet")
        .output()
        .expect("cannot run lab/calico-ipip.sh");
    assert!(
        out.status.success(),
        "lab/calico-ipip.sh --quiet failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "--quiet printed something");
}

/// The conformance lab: h1 runs vtepd (tunnel MTU 1480, device MTU 1500 so that oversize packets
/// reach it, and `flags`) with pod h1p1 (MTU 1500); h2 and x are bare underlay hosts.
fn conformance_lab(tag: &str, flags: &[&str]) -> Lab {
    let lab = Lab::new(tag);
    let pod_mtu = [("LAB_IPIP_POD_MTU", "1500")];
    lab.sh(&["underlay"]);
    lab.sh(&["calico-node", "h1"]);
    lab.sh_env(&pod_mtu, &["calico-pod", "h1", "p1"]);
    lab.sh(&["host", "h2"]);
    lab.sh(&["host", "x", X]);
    lab.sh(&["ipip-sink", "h2"]);
    let routes = format!("10.244.2.64/26={H2}");
    let mut args = vec!["vtepd-ipip", "h1", &routes, "--mtu", "1500"];
    args.extend_from_slice(flags);
    lab.sh(&args);
    lab
}

/// Injects `count` IPIP echo requests from `node` (outer source `osrc`) toward pod h1p1.
fn inject(lab: &Lab, node: &str, osrc: &str, count: u64, opts: &[&str]) {
    let n = count.to_string();
    let mut args = vec![
        "ipip-inject",
        node,
        "h1",
        osrc,
        REMOTE_POD,
        POD,
        "--count",
        &n,
    ];
    args.extend_from_slice(opts);
    let out = lab.sh(&args);
    assert_eq!(out.trim(), format!("sent {count}"));
}

/// Waits until drop `reason` on h1 grew by `n` from `before`; returns the new stats.
fn wait_drop(lab: &Lab, before: &Stats, reason: &str, n: u64) -> Stats {
    wait_for(&format!("drops.{reason} to grow by {n}"), WAIT, || {
        let s = lab.stats("h1");
        (s.drop_of(reason) >= before.drop_of(reason) + n).then_some(s)
    })
}

/// tshark's decoding of capture `name`: (ip.src, ip.dst, ip.proto, ip.flags.df, ip.dsfield.ecn,
/// ip.ttl) per packet, each "outer,inner".
fn fields(lab: &Lab, name: &str, filter: &str) -> Vec<Vec<String>> {
    lab.sh(&["ipip-fields", name, filter])
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

/// The (rx_tunnel, rx_tunnel_bytes) of h1's peer row for `remote` (VNI 0), if it has one.
fn peer_rx(s: &Stats, remote: &str) -> Option<(u64, u64)> {
    let row = s.0["peers"]
        .as_array()?
        .iter()
        .find(|r| r["vni"] == 0 && r["remote"] == remote)?;
    Some((row["rx_tunnel"].as_u64()?, row["rx_tunnel_bytes"].as_u64()?))
}

fn stop_capture(lab: &Lab, name: &str) {
    let pid = std::fs::read_to_string(format!(
        "/run/vtepd-lab-{}/{name}.tcpdump.pid",
        lab.prefix()
    ))
    .expect("capture pid");
    // tcpdump writes each packet as it comes (-U): stopping only closes the file.
    let _ = Command::new("kill").arg(pid.trim()).status();
    std::thread::sleep(std::time::Duration::from_millis(200));
}

fn in_ns(lab: &Lab, node: &str, args: &[&str]) -> std::process::Output {
    Command::new("timeout")
        .args(["20", "ip", "netns", "exec"])
        .arg(format!("{}-{node}", lab.prefix()))
        .args(args)
        .output()
        .expect("cannot run a command in a namespace")
}

#[test]
fn ipip_conformance_against_scapy() {
    if !lab_available("ipip_conformance_against_scapy") {
        return;
    }
    let lab = conformance_lab("tipip", &[]);

    // 1. An IPIP packet from the listed node reaches the pod, whose answer comes back through
    //    the tunnel to h2.
    lab.sh(&["capture", "h2", "eth0", "ip proto 4", "replies"]);
    let before = lab.stats("h1");
    inject(&lab, "h2", H2, 3, &[]);
    let after = wait_for("3 packets delivered into the TUN", WAIT, || {
        let s = lab.stats("h1");
        (s.get("tx_device") >= before.get("tx_device") + 3).then_some(s)
    });
    // Counted for h2 as a peer: 3 packets of 60 bytes (IPv4, ICMP, 32 bytes of data).
    let rx = |s: &Stats| peer_rx(s, H2).unwrap_or((0, 0));
    let ((p0, b0), (p1, b1)) = (rx(&before), rx(&after));
    assert_eq!((p1 - p0, b1 - b0), (3, 180), "{}", after.0["peers"]);
    wait_for("3 echo replies tunnelled to h2", WAIT, || {
        (fields(&lab, "replies", "icmp.type == 0").len() >= 3).then_some(())
    });
    stop_capture(&lab, "replies");
    for f in fields(&lab, "replies", "icmp.type == 0") {
        assert_eq!(
            f[0],
            format!("{H1},{POD}"),
            "outer and inner sources: {f:?}"
        );
        assert_eq!(f[1], format!("{H2},{REMOTE_POD}"), "destinations: {f:?}");
        assert_eq!(f[2], "4,1", "IPv4-in-IPv4 around ICMP: {f:?}");
    }

    // 2. The same packet from a stranger: dropped and counted, nothing delivered.
    let before = lab.stats("h1");
    inject(&lab, "x", X, 4, &[]);
    let after = wait_drop(&lab, &before, "unknown_peer", 4);
    assert_eq!(after.get("tx_device"), before.get("tx_device"));
    assert_eq!(after.get("rx_tunnel"), before.get("rx_tunnel") + 4);
    // Counted in the network (the TUN), and the stranger gets no peer row.
    let drops_in_net = |s: &Stats| s.0["networks"][0]["drops"]["unknown_peer"].as_u64();
    assert_eq!(
        drops_in_net(&after),
        drops_in_net(&before).map(|d| d + 4),
        "{}",
        after.0
    );
    assert!(
        peer_rx(&after, X).is_none(),
        "a row for the stranger: {}",
        after.0
    );

    // 3. The outer header of what vtepd sends: DF copied, ECN copied (CE as ECT(0)), TTL 64.
    lab.sh(&["capture", "h2", "eth0", "ip proto 4", "outer"]);
    for (df, tos) in [("do", "0x02"), ("dont", "0x03"), ("do", "0x01")] {
        // Nobody answers these pings (h2 is only scapy): only the packets matter.
        in_ns(
            &lab,
            "h1p1",
            &[
                "ping", "-c", "2", "-i", "0.2", "-W", "1", "-M", df, "-Q", tos, "-s", "100",
                REMOTE_POD,
            ],
        );
    }
    wait_for("6 echo requests tunnelled to h2", WAIT, || {
        (fields(&lab, "outer", "icmp.type == 8").len() >= 6).then_some(())
    });
    stop_capture(&lab, "outer");
    let seen: Vec<(String, String, String)> = fields(&lab, "outer", "icmp.type == 8")
        .into_iter()
        .map(|f| (f[3].clone(), f[4].clone(), f[5].clone()))
        .collect();
    eprintln!("outer,inner DF / ECN / TTL: {seen:?}");
    let want = [("1,1", "2,2"), ("0,0", "2,3"), ("1,1", "1,1")];
    for (df, ecn) in want {
        let n = seen
            .iter()
            .filter(|(d, e, t)| d == df && e == ecn && t == "64,63")
            .count();
        assert_eq!(n, 2, "DF {df} ECN {ecn} TTL 64,63 in {seen:?}");
    }

    // 4. An oversize DF packet: ICMP "fragmentation needed" with the tunnel MTU (1480) reaches
    //    the sender, whose ping reports it.
    let before = lab.stats("h1");
    let out = in_ns(
        &lab,
        "h1p1",
        &[
            "ping", "-c", "2", "-i", "0.3", "-W", "1", "-M", "do", "-s", "1472", REMOTE_POD,
        ],
    );
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("ping -M do -s 1472 from the pod:\n{text}");
    let text = text.to_lowercase();
    assert!(
        text.contains("mtu = 1480") || text.contains("mtu=1480"),
        "ping did not learn MTU 1480: {text}"
    );
    let after = lab.stats("h1");
    assert!(after.drop_of("too_big") > before.drop_of("too_big"));
    assert!(
        after.get("tx_device") > before.get("tx_device"),
        "the ICMP went into the TUN"
    );

    // 5. TTL 0 and our own underlay source, written into the tunnel by the node itself.
    let before = lab.stats("h1");
    lab.sh(&[
        "ipip-local",
        "h1",
        "10.244.1.64",
        REMOTE_POD,
        "--ttl",
        "0",
        "--count",
        "2",
    ]);
    wait_drop(&lab, &before, "ttl_zero", 2);
    lab.sh(&["ipip-local", "h1", H1, REMOTE_POD, "--count", "3"]);
    wait_drop(&lab, &before, "own_source", 3);

    // 6. From the listed node: outer CE over inner Not-ECT, and inner TTL 0.
    let before = lab.stats("h1");
    inject(
        &lab,
        "h2",
        H2,
        2,
        &["--outer-tos", "0x03", "--inner-tos", "0"],
    );
    wait_drop(&lab, &before, "ecn_drop", 2);
    inject(&lab, "h2", H2, 1, &["--ttl", "0"]);
    let after = wait_drop(&lab, &before, "ttl_zero", 1);
    assert_eq!(after.get("tx_device"), before.get("tx_device"));
    // Outer CE over inner ECT(0) is delivered (as CE).
    inject(
        &lab,
        "h2",
        H2,
        1,
        &["--outer-tos", "0x03", "--inner-tos", "0x02"],
    );
    wait_for("the CE-marked packet delivered", WAIT, || {
        (lab.stats("h1").get("tx_device") > after.get("tx_device")).then_some(())
    });
}

#[test]
fn ipip_routes_change_at_once_and_go_away_on_exit() {
    if !lab_available("ipip_routes_change_at_once_and_go_away_on_exit") {
        return;
    }
    let lab = conformance_lab("tiprt", &[]);
    let kernel_routes = || {
        String::from_utf8_lossy(&in_ns(&lab, "h1", &["ip", "route", "show", "dev", "tunl0"]).stdout)
            .to_string()
    };
    assert!(
        kernel_routes().contains("10.244.2.64/26"),
        "{}",
        kernel_routes()
    );

    // x is no next hop: its packets are dropped ...
    let before = lab.stats("h1");
    inject(&lab, "x", X, 2, &[]);
    wait_drop(&lab, &before, "unknown_peer", 2);
    // ... until a route names it; then they are delivered, and the kernel route is there.
    lab.client_ok("h1", &["routes", "add", "10.244.9.64/26", X]);
    let shown: serde_json::Value =
        serde_json::from_str(&lab.client_ok("h1", &["routes", "show", "--json"])).unwrap();
    assert!(
        shown
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["prefix"] == "10.244.9.64/26" && r["via"] == X && r["dev"] == "tunl0"),
        "{shown}"
    );
    assert!(
        kernel_routes().contains("10.244.9.64/26"),
        "{}",
        kernel_routes()
    );
    let before = lab.stats("h1");
    inject(&lab, "x", X, 2, &[]);
    wait_for("x's packets delivered", WAIT, || {
        (lab.stats("h1").get("tx_device") >= before.get("tx_device") + 2).then_some(())
    });
    // Deleting it takes both away again.
    lab.client_ok("h1", &["routes", "del", "10.244.9.64/26"]);
    assert!(
        !kernel_routes().contains("10.244.9.64/26"),
        "{}",
        kernel_routes()
    );
    let before = lab.stats("h1");
    inject(&lab, "x", X, 2, &[]);
    wait_drop(&lab, &before, "unknown_peer", 2);
    // Bad requests: one line, status 2, nothing changed.
    for bad in [
        &["routes", "add", "10.244.9.0/16", X][..],
        &["routes", "add", "10.244.9.64/26", "224.0.0.1"],
        &["routes", "add", "192.0.2.0/24", X],
        &["routes", "add", "10.244.9.64/26", H1],
    ] {
        let out = lab.client("h1", bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).lines().count(),
            1,
            "{bad:?}"
        );
    }
    let out = lab.client("h1", &["peers", "add", "192.0.2.5"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "peers add on an L3 daemon: {out:?}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("L3 mode"));
    let out = lab.client("h1", &["routes", "del", "10.244.7.0/24"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "deleting a missing route: {out:?}"
    );
    assert_eq!(lab.client_ok("h1", &["routes", "show"]).lines().count(), 1);

    // SIGTERM: vtepd exits 0 and its device (with its routes) is gone.
    let pid = std::fs::read_to_string(format!("/run/vtepd-lab-{}/h1.vtepd.pid", lab.prefix()))
        .unwrap()
        .trim()
        .to_owned();
    assert!(Command::new("kill").arg(&pid).status().unwrap().success());
    wait_for("vtepd to exit", WAIT, || {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    });
    let out = in_ns(&lab, "h1", &["ip", "link", "show", "tunl0"]);
    assert!(!out.status.success(), "tunl0 still exists after SIGTERM");
    assert!(!kernel_routes().contains("10.244."), "{}", kernel_routes());
}

/// `--threads 3`: IPIP packets of many inner flows from scapy reach the pod exactly once each
/// (the raw sockets' filters hand each packet to one worker), counted once, spread over the
/// workers, whose counters sum to the totals.
#[test]
fn ipip_packets_reach_the_pod_exactly_once_with_three_workers() {
    if !lab_available("ipip_packets_reach_the_pod_exactly_once_with_three_workers") {
        return;
    }
    let lab = conformance_lab("tipmq", &["--threads", "3"]);
    let rows = |s: &Stats| s.0["workers"].as_array().cloned().unwrap_or_default();
    let before = lab.stats("h1");
    assert_eq!(rows(&before).len(), 3, "{:?}", before.0);
    lab.sh(&["capture", "h1p1", "eth0", "udp dst port 9", "pod"]);
    const K: u64 = 90;
    let n = K.to_string();
    let out = lab.sh(&[
        "ipip-inject",
        "h2",
        "h1",
        H2,
        REMOTE_POD,
        POD,
        "--count",
        &n,
        "--flows",
        "30",
    ]);
    assert_eq!(out.trim(), format!("sent {K}"));
    let after = wait_for("K datagrams delivered into the TUN", WAIT, || {
        let s = lab.stats("h1");
        (s.get("tx_device") >= before.get("tx_device") + K).then_some(s)
    });
    wait_for("K datagrams at the pod", WAIT, || {
        (fields(&lab, "pod", "udp.dstport == 9").len() as u64 >= K).then_some(())
    });
    // A duplicate would come right behind its original: give it time to show up.
    std::thread::sleep(std::time::Duration::from_millis(500));
    stop_capture(&lab, "pod");
    let after_wait = lab.stats("h1");
    assert_eq!(
        fields(&lab, "pod", "udp.dstport == 9").len() as u64,
        K,
        "each datagram reaches the pod once"
    );
    for s in [&after, &after_wait] {
        assert_eq!(s.get("rx_tunnel"), before.get("rx_tunnel") + K, "{:?}", s.0);
        assert_eq!(s.get("tx_device"), before.get("tx_device") + K, "{:?}", s.0);
    }
    let (w0, w1) = (rows(&before), rows(&after_wait));
    let grew = w0
        .iter()
        .zip(&w1)
        .filter(|(x, y)| y["rx_tunnel"].as_u64() > x["rx_tunnel"].as_u64())
        .count();
    assert!(grew >= 2, "30 flows all went to one worker: {w1:?}");
    for key in [
        "rx_tunnel",
        "tx_tunnel",
        "rx_device",
        "tx_device",
        "drops_total",
    ] {
        let sum: u64 = w1.iter().map(|w| w[key].as_u64().unwrap_or(0)).sum();
        assert_eq!(sum, after_wait.get(key), "{key}: {w1:?}");
    }
}

/// Checks each captured IPIP packet against the outer header scapy builds for its inner packet
/// under `ttl`, `tos` and `df` (ip-link's words: a number or inherit; set, unset or inherit),
/// written out here from RFC 2003 and RFC 6040 (CE is sent as ECT(0)), not from vtepd: the whole
/// outer header must be byte for byte scapy's, IP ID taken from the capture. Prints
/// `checked N` and one line per mismatch.
const SCAPY_OUTER_CHECK: &str = r#"
import sys
from scapy.all import rdpcap, IP, raw
pcap, ttl, tos, df = sys.argv[1:5]
n = 0
for p in rdpcap(pcap):
    if IP not in p or p[IP].proto != 4:
        continue
    o = p[IP]
    inner = IP(raw(o.payload))
    if inner.proto != 1 or inner.payload.type != 8:
        continue
    ecn = inner.tos & 3
    want_tos = (inner.tos if tos == "inherit" else int(tos, 0)) & 0xfc
    want_tos |= 2 if ecn == 3 else ecn
    inner_df = bool(inner.flags & 2)
    want_df = {"set": True, "unset": False, "inherit": inner_df}[df]
    want = IP(src=o.src, dst=o.dst, proto=4, id=o.id,
              ttl=inner.ttl if ttl == "inherit" else int(ttl),
              tos=want_tos, flags="DF" if want_df else 0) / inner
    n += 1
    if raw(want)[:20] != raw(o)[:20]:
        print("mismatch", raw(o)[:20].hex(), "want", raw(want)[:20].hex())
print("checked", n)
"#;

/// Runs [`SCAPY_OUTER_CHECK`] on `pcap` for the option words; returns (checked, its output).
fn scapy_outer_check(pcap: &str, ttl: &str, tos: &str, df: &str) -> (usize, String) {
    let out = Command::new("timeout")
        .args([
            "30",
            "/usr/bin/python3",
            "-c",
            SCAPY_OUTER_CHECK,
            pcap,
            ttl,
            tos,
            df,
        ])
        .output()
        .expect("cannot run python3");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let checked = text
        .lines()
        .find_map(|l| l.strip_prefix("checked "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    (checked, text)
}

/// `--ttl`, `--tos` and `--df` on the IPIP wire, each option set against scapy's outer header
/// for the same inner packets: pings from the pod with DF or not and four TOS bytes (DSCP 46 with
/// ECT(1), DSCP 10 with CE, DSCP 0 Not-ECT, ECT(0)). The check itself must see a wrong TTL.
#[test]
fn ipip_outer_policy_against_scapy() {
    if !lab_available("ipip_outer_policy_against_scapy") {
        return;
    }
    let cases: [(&str, &str, &str); 3] = [
        ("33", "0x28", "unset"),
        ("inherit", "inherit", "set"),
        ("inherit", "0xb8", "inherit"),
    ];
    for ((ttl, tos, df), tag) in cases.into_iter().zip(["tpola", "tpolb", "tpolc"]) {
        let lab = conformance_lab(tag, &["--ttl", ttl, "--tos", tos, "--df", df]);
        lab.sh(&["capture", "h2", "eth0", "ip proto 4", "policy"]);
        for (m, q) in [
            ("do", "0xb9"),
            ("dont", "0x2b"),
            ("do", "0x00"),
            ("dont", "0x02"),
        ] {
            // Nobody answers these pings (h2 is only scapy): only the packets matter.
            in_ns(
                &lab,
                "h1p1",
                &[
                    "ping", "-c", "2", "-i", "0.2", "-W", "1", "-M", m, "-Q", q, "-s", "100",
                    REMOTE_POD,
                ],
            );
        }
        wait_for("8 echo requests tunnelled to h2", WAIT, || {
            (fields(&lab, "policy", "icmp.type == 8").len() >= 8).then_some(())
        });
        stop_capture(&lab, "policy");
        let pcap = format!("/run/vtepd-lab-{}/policy.pcap", lab.prefix());
        let what = format!("--ttl {ttl} --tos {tos} --df {df}");
        let (checked, text) = scapy_outer_check(&pcap, ttl, tos, df);
        eprintln!("{what}: {text}");
        assert!(!text.contains("mismatch"), "{what}: {text}");
        assert!(checked >= 8, "{what}: {text}");
        if ttl == "33" {
            let (_, wrong) = scapy_outer_check(&pcap, "34", tos, df);
            assert!(wrong.contains("mismatch"), "the check is blind: {wrong}");
        }
    }
}

/// vtepd's IPv6 address on h1's device, pod h1p1's, and one "behind" h2 (only scapy plays it).
const ADDR6: &str = "fd00:1::40";
const POD6: &str = "fd00:1::41";
const REMOTE_POD6: &str = "fd00:2::70";

/// Checks a capture of protocol-41 packets against what scapy builds, written out here from
/// RFC 4213 and RFC 6040 (not from vtepd): for each IPv4 packet of protocol 41 around an
/// ICMPv6 echo, the outer header must be byte for byte scapy's `IP(proto=41, DF, TTL 64, TOS =
/// the inner traffic class with CE sent as ECT(0))` (IP ID from the capture); prints `checked N`,
/// one line per mismatch, and `echo TYPE SRC DST HLIM TC` per packet. For each ICMPv6 "packet
/// too big" (a capture on the TUN device), prints `ptb MTU SRC DST HLIM LEN QUOTED_SRC csum-ok`
/// or `csum-bad` (scapy recomputes the checksum).
const SCAPY_IPIP6_CHECK: &str = r#"
import sys
from scapy.all import rdpcap, raw, Ether, IP, IPv6, ICMPv6EchoRequest, ICMPv6EchoReply, ICMPv6PacketTooBig
n = 0
for p in rdpcap(sys.argv[1]):
    # The wire capture is Ethernet, the TUN capture raw IP: go by the link, not the first byte
    # (a destination MAC can start with the nibble 6).
    if Ether in p:
        p = p[Ether].payload
    b = raw(p)
    if b[0] >> 4 == 6:
        q = IPv6(b)
        if ICMPv6PacketTooBig in q:
            t = q[ICMPv6PacketTooBig]
            again = IPv6(raw(q))
            del again[ICMPv6PacketTooBig].cksum
            ok = raw(again) == raw(q)
            quoted = IPv6(raw(t.payload))
            print("ptb", t.mtu, q.src, q.dst, q.hlim, len(b), quoted.src, "csum-ok" if ok else "csum-bad")
        continue
    if IP not in p or p[IP].proto != 41:
        continue
    o = p[IP]
    inner = IPv6(raw(o.payload))
    kind = 128 if ICMPv6EchoRequest in inner else 129 if ICMPv6EchoReply in inner else None
    if kind is None:
        continue
    ecn = inner.tc & 3
    tos = (inner.tc & 0xfc) | (2 if ecn == 3 else ecn)
    want = IP(src=o.src, dst=o.dst, proto=41, id=o.id, ttl=64, tos=tos, flags="DF") / inner
    n += 1
    if raw(want)[:20] != raw(o)[:20]:
        print("mismatch", raw(o)[:20].hex(), "want", raw(want)[:20].hex())
    print("echo", kind, inner.src, inner.dst, inner.hlim, inner.tc)
print("checked", n)
"#;

/// Runs [`SCAPY_IPIP6_CHECK`] on capture `name` of `lab`.
fn scapy_ipip6_check(lab: &Lab, name: &str) -> String {
    let pcap = format!("/run/vtepd-lab-{}/{name}.pcap", lab.prefix());
    let out = Command::new("timeout")
        .args(["30", "/usr/bin/python3", "-c", SCAPY_IPIP6_CHECK, &pcap])
        .output()
        .expect("cannot run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// IPv6 in IPIP (protocol 41, RFC 4213) against scapy as the independent peer (this kernel has
/// no `sit` device), in one lab: h1 runs vtepd with `--address6` and a route for h2's IPv6 pod
/// block; pod h1p1 is dual-stack. Checked: protocol-41 packets from h2 reach the pod and vtepd's
/// own address, whose answers go back as protocol 41 with scapy's outer header (DF, TTL 64,
/// traffic class as TOS with CE sent as ECT(0)) and the inner hop limit decremented once, by the
/// host's forwarding; the pod's traffic class is copied out; a stranger, hop limit 0 and outer CE
/// over inner Not-ECT are dropped and counted; an oversize packet gets an ICMPv6 "packet too
/// big" with the tunnel MTU (scapy checks its checksum, ping learns it); hop limit 1 gets the
/// host's "time exceeded"; `routes show` and the kernel list the IPv6 route; the device has no
/// link-local address, and of the kernel's own packets only its MLD reports reach vtepd
/// (dropped as `ipv6_multicast`).
#[test]
fn ipip6_conformance_against_scapy() {
    if !lab_available("ipip6_conformance_against_scapy") {
        return;
    }
    let started = std::time::Instant::now();
    let route6 = format!("fd00:2::/64={H2}");
    let addr6 = format!("{ADDR6}/128");
    let lab = conformance_lab("tipsix", &["--address6", &addr6, "--route", &route6]);
    lab.sh(&["calico-pod6", "h1", "p1"]);
    let inject6 = |node: &str, osrc: &str, dst: &str, n: u64, opts: &[&str]| {
        let n = n.to_string();
        let mut args = vec![
            "ipip-inject",
            node,
            "h1",
            osrc,
            REMOTE_POD6,
            dst,
            "--inner6",
            "--count",
            &n,
        ];
        args.extend_from_slice(opts);
        assert_eq!(lab.sh(&args).trim(), format!("sent {n}"));
    };

    // 1. From h2: echo requests to the pod (inner ECT(0), outer ECT(0)) and to vtepd's own
    //    address; both answers come back through the tunnel as protocol 41.
    lab.sh(&["capture", "h2", "eth0", "ip proto 41", "wire6"]);
    // What vtepd writes into its device is what the host receives on it.
    lab.sh(&["capture", "h1", "tunl0", "icmp6", "tun6"]);
    let before = lab.stats("h1");
    inject6(
        "h2",
        H2,
        POD6,
        2,
        &["--inner-tos", "0x02", "--outer-tos", "0x02"],
    );
    inject6("h2", H2, ADDR6, 2, &[]);
    // 2. From the pod: its traffic class copied out (ECT(1) with DSCP 46, and CE). Nobody
    //    answers these pings (h2 is only scapy): only the packets matter, so both wait at once.
    let pings =
        format!("for q in 0xb9 0x03; do ping -6 -c 1 -W 1 -Q $q -s 100 {REMOTE_POD6} & done; wait");
    in_ns(&lab, "h1p1", &["sh", "-c", &pings]);
    wait_for("4 echo replies and 2 requests on h2's wire", WAIT, || {
        (fields(&lab, "wire6", "icmpv6.type == 128 || icmpv6.type == 129").len() >= 6).then_some(())
    });
    lab.sh(&["capture-stop", "wire6"]);
    let text = scapy_ipip6_check(&lab, "wire6");
    eprintln!("protocol 41 on h2's wire:\n{text}");
    assert!(!text.contains("mismatch"), "{text}");
    let has = |line: &str| text.lines().any(|l| l.starts_with(line));
    // The pod's and vtepd's answers: the host forwarded the pod's (hop limit 64 - 1); its own
    // it sent itself. (Their traffic class is the kernel's choice; the outer check covers it.)
    assert!(has(&format!("echo 129 {POD6} {REMOTE_POD6} 63 ")), "{text}");
    assert!(
        has(&format!("echo 129 {ADDR6} {REMOTE_POD6} 64 ")),
        "{text}"
    );
    assert!(
        has(&format!("echo 128 {POD6} {REMOTE_POD6} 63 185")),
        "{text}"
    );
    assert!(
        has(&format!("echo 128 {POD6} {REMOTE_POD6} 63 3")),
        "{text}"
    );
    let after = lab.stats("h1");
    assert!(
        after.get("tx_device") >= before.get("tx_device") + 4,
        "{}",
        after.0
    );

    // 3. Dropped and counted: a stranger, hop limit 0, outer CE over inner Not-ECT.
    let before = lab.stats("h1");
    inject6("x", X, POD6, 2, &[]);
    wait_drop(&lab, &before, "unknown_peer", 2);
    inject6("h2", H2, POD6, 1, &["--ttl", "0"]);
    wait_drop(&lab, &before, "ttl_zero", 1);
    inject6(
        "h2",
        H2,
        POD6,
        1,
        &["--outer-tos", "0x03", "--inner-tos", "0"],
    );
    let after = wait_drop(&lab, &before, "ecn_drop", 1);
    assert_eq!(after.get("tx_device"), before.get("tx_device"));

    // 4. Oversize with the tunnel MTU of 1480: "packet too big" into the device, which the
    //    pod's ping learns; hop limit 1: the host's own "time exceeded".
    let ping = |args: &[&str]| {
        let out = in_ns(&lab, "h1p1", args);
        (String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
            .to_lowercase()
    };
    let big = ping(&[
        "ping",
        "-6",
        "-c",
        "2",
        "-i",
        "0.3",
        "-W",
        "1",
        "-M",
        "do",
        "-s",
        "1452",
        REMOTE_POD6,
    ]);
    assert!(
        big.contains("mtu=1480") || big.contains("mtu = 1480"),
        "{big}"
    );
    let hop = ping(&["ping", "-6", "-c", "1", "-W", "1", "-t", "1", REMOTE_POD6]);
    assert!(hop.contains("time exceeded"), "{hop}");
    lab.sh(&["capture-stop", "tun6"]);
    let ptb = scapy_ipip6_check(&lab, "tun6");
    eprintln!("ICMPv6 written into the TUN device:\n{ptb}");
    let line = ptb
        .lines()
        .find(|l| l.starts_with("ptb "))
        .unwrap_or_else(|| panic!("no packet too big: {ptb}"));
    assert_eq!(
        line,
        format!("ptb 1480 {REMOTE_POD6} {POD6} 64 1280 {POD6} csum-ok"),
        "{ptb}"
    );

    // 5. The route in `routes show` and the kernel; no link-local address on the device and
    //    nothing of the kernel's own dropped.
    let shown = lab.client_ok("h1", &["routes", "show", "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert!(
        shown
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["prefix"] == "fd00:2::/64" && r["via"] == H2),
        "{shown}"
    );
    let ip6 = |args: &[&str]| String::from_utf8_lossy(&in_ns(&lab, "h1", args).stdout).to_string();
    let kernel = ip6(&["ip", "-6", "route", "show", "dev", "tunl0"]);
    assert!(kernel.contains("fd00:2::/64"), "{kernel}");
    let addrs = ip6(&["ip", "-6", "addr", "show", "dev", "tunl0"]);
    assert!(addrs.contains(&addr6) && !addrs.contains("fe80"), "{addrs}");
    let end = lab.stats("h1");
    for none in ["no_route", "not_ipv4", "no_ipv6", "bad_ip_header"] {
        assert_eq!(end.drop_of(none), 0, "{none}: {}", end.0["drops"]);
    }

    // 6. `trace --inject` of a protocol-41 packet from h2 (an ICMPv6 echo the CLI wraps):
    // its IPv6 headers and outcome.
    let traced = lab.client_ok(
        "h1",
        &[
            "trace",
            "--inject",
            "--json",
            "--from",
            "tunnel",
            "--outer-src",
            H2,
            "--src-ip",
            REMOTE_POD6,
            "--dst-ip",
            POD6,
        ],
    );
    let r: serde_json::Value = serde_json::from_str(&traced).unwrap();
    let h = &r["headers"];
    assert_eq!(
        (&h["src_ip"], &h["dst_ip"], &h["proto"], &r["outcome"]),
        (
            &serde_json::json!(REMOTE_POD6),
            &serde_json::json!(POD6),
            &serde_json::json!(58),
            &serde_json::json!("deliver")
        ),
        "{r}"
    );
    eprintln!("ipip6_conformance_against_scapy: {:?}", started.elapsed());
}
