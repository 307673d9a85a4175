//! RFC 6040 decapsulation on the VXLAN receive paths (L2 over a TAP, L3 over a TUN), in network
//! namespaces: host B (no daemon, scapy: lab/scapy/vxlan_ecn.py) sends VXLAN datagrams with
//! chosen outer and inner ECN bits to vtepd on host A, and a capture on A's device shows what
//! vtepd delivered. Outer CE over an inner Not-ECT packet is dropped and counted as `ecn_drop`;
//! outer CE over ECT becomes inner CE, outer ECT(1) over ECT(0) becomes ECT(1), everything else
//! keeps its inner bits; every delivered inner IPv4 header has a valid checksum. Needs root,
//! tcpdump and Debian's /usr/bin/python3 with scapy.

mod daemon_support;
mod l2_pair_support;

use daemon_support::{Daemon, Pair, must, unique, wait_until};
use l2_pair_support::daemon_on_a;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/lab/scapy/vxlan_ecn.py");
const PYTHON: &str = "/usr/bin/python3";

/// ECN codepoints.
const NOT_ECT: u8 = 0;
const ECT1: u8 = 1;
const ECT0: u8 = 2;
const CE: u8 = 3;

/// (case id, outer ECN, inner ECN, inner ECN delivered or None: dropped). The last case marks
/// the end: the datagrams share a flow, so one worker handles them in order.
const CASES: &[(u32, u8, u8, Option<u8>)] = &[
    (1, CE, NOT_ECT, None),
    (2, CE, ECT0, Some(CE)),
    (3, CE, ECT1, Some(CE)),
    (4, ECT1, ECT0, Some(ECT1)),
    (5, ECT0, ECT1, Some(ECT1)),
    (6, NOT_ECT, CE, Some(CE)),
    (7, ECT0, NOT_ECT, Some(NOT_ECT)),
    (8, CE, CE, Some(CE)),
    (9, ECT1, NOT_ECT, Some(NOT_ECT)),
    (99, NOT_ECT, NOT_ECT, Some(NOT_ECT)),
];

#[test]
fn outer_ecn_is_decapsulated_per_rfc6040_and_ce_over_not_ect_is_dropped() {
    let (p, a) = daemon_on_a(&[]);
    let tap = p.a.mac("vx0");
    check_cases(&p, &a, "vx0", &tap);
}

#[test]
fn l3_vxlan_decapsulates_outer_ecn_per_rfc6040_too() {
    let p = Pair::new();
    p.a.disable_ipv6();
    p.b.disable_ipv6();
    let a = Daemon::start(
        &p.a,
        &[
            "--mode",
            "l3",
            "--encap",
            "vxlan",
            "--dev",
            "tun0",
            "--local",
            "192.0.2.1",
            "--vni",
            "42",
            "--address",
            "10.9.0.1/24",
            "--peer",
            "192.0.2.2",
        ],
    );
    // vtepd is the Ethernet endpoint itself: the inner frames go to its own MAC.
    let own = vtepd::config::stable_mac(
        "tun0",
        encap::Vni::new(42).unwrap(),
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)),
    );
    check_cases(&p, &a, "tun0", &own.to_string());
}

/// Sends every case from B to A's daemon `a` (inner frames to `inner_mac`), captures what
/// reaches A's device `dev` and checks it against [`CASES`].
fn check_cases(p: &Pair, a: &Daemon, dev: &str, inner_mac: &str) {
    let pcap = std::env::temp_dir().join(format!("{}.pcap", unique("ecn")));
    let mut dump =
        p.a.cmd("timeout")
            .args(["20", "tcpdump", "-i", dev, "-Q", "in", "-nn", "-U"])
            .args(["--immediate-mode", "-w"])
            .arg(&pcap)
            .arg("udp dst port 9")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let listening = BufReader::new(dump.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("listening on"));
    assert!(listening, "tcpdump on {dev} did not start");

    let cases: Vec<String> = CASES
        .iter()
        .map(|(id, outer, inner, _)| format!("{id}:{outer}:{inner}"))
        .collect();
    let eth0 = p.a.mac("eth0");
    must(
        p.b.cmd(PYTHON)
            .arg(SCRIPT)
            .args(["send", "eth0", &eth0, "192.0.2.2", "192.0.2.1", inner_mac])
            .args(&cases),
    );
    let seen = || -> Value {
        let out = must(
            std::process::Command::new(PYTHON)
                .arg(SCRIPT)
                .arg("check")
                .arg(&pcap),
        );
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("check printed {out:?}: {e}"))
    };
    // Each look starts scapy (seconds on a loaded machine), so the bound is generous; it ends
    // as soon as the last case is seen.
    let done = wait_until(Duration::from_secs(30), || !seen()["99"].is_null());
    let _ = dump.kill();
    let _ = dump.wait();
    let got = seen();
    let _ = std::fs::remove_file(&pcap);
    assert!(
        done,
        "the last case never reached {dev}: {got} {}",
        a.log_text()
    );

    let stats = a.stats();
    for &(id, outer, inner, want) in CASES {
        let rows = &got[id.to_string()];
        match want {
            None => assert!(
                rows.is_null(),
                "case {id}: outer {outer} over inner {inner} must be dropped, was delivered: {rows}"
            ),
            Some(ecn) => assert_eq!(
                rows,
                &serde_json::json!([[ecn, true]]),
                "case {id}: outer {outer} over inner {inner}: want inner ECN {ecn} and a valid \
                 IPv4 checksum, delivered {rows}; vtepd: {stats}"
            ),
        }
    }
    let st = a.stats();
    let dropped = CASES.iter().filter(|c| c.3.is_none()).count();
    assert_eq!(st["drops"]["ecn_drop"], dropped, "{st}");
}
