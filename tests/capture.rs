//! `vtepd capture` end to end, in network namespaces (needs root and tshark): both sides
//! captured during a ping across two vtepd hosts in each mode, read back by tshark (the
//! underlay as VXLAN with its VNI, addresses and port, or as IPIP; the overlay as the ICMP of
//! the ping, as many packets as on the underlay); a datagram scapy sends with an unknown VNI
//! captured with its drop reason, and an ARP reply of ARP suppression marked as vtepd's own
//! answer; TSO super-packets (L2 and L3 VXLAN) as the segments on the wire; `-w -` piped into
//! tshark; the byte budget ends a capture by itself; bad arguments are one line, status 2.

mod capture_support;
mod cli_support;
mod daemon_support;
mod l2_pair_support;
mod l3_pair_support;
mod transfer_support;

use capture_support::{CAPTURE_WAIT, capture, tshark};
use daemon_support::{BIN, Daemon, Netns, Pair, run, wait_calling};
use l2_pair_support::{daemon_on_a, two_daemons};
use l3_pair_support::{ipip_pair, l3vx_pair};
use std::process::{Command, Stdio};
use transfer_support::{Payload, transfer};

const SCAPY_INJECT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/lab/scapy/vxlan_inject.py");
const PYTHON: &str = "/usr/bin/python3";
/// One ping from `ns` to `dst`, not waiting for its answer long.
fn ping(ns: &Netns, dst: &str) {
    let _ = run(ns
        .cmd("ping")
        .args(["-c", "1", "-W", "1", dst])
        .stdout(Stdio::null()));
}

/// Captures both sides of host A's pings to `dst` (3 round trips: 12 packets, ICMP only) and
/// checks what tshark reads (`decode`: its extra options): on the underlay, outer packets
/// between 192.0.2.1 and .2 each way, each with the tshark fields and values of `expect`; on
/// the overlay, the ICMP echo requests and replies, as many as on the underlay.
fn both_sides_of_a_ping(
    a: &Daemon,
    ns: &Netns,
    dst: &str,
    decode: &[&str],
    expect: &[(&str, &str)],
) {
    let (file, summary) = capture(a, &["--count", "12", "--filter", "proto=icmp"], || {
        ping(ns, dst)
    });
    assert!(summary.contains("12 packets captured"), "{summary}");
    let mut fields = vec![
        "frame.interface_name",
        "frame.comment",
        "ip.src",
        "ip.dst",
        "icmp.type",
    ];
    fields.extend(expect.iter().map(|e| e.0));
    let rows = tshark(&file, decode, &fields);
    assert_eq!(rows.len(), 12, "{rows:?}");
    let (under, over): (Vec<_>, Vec<_>) = rows.iter().partition(|r| r[0] == "underlay");
    assert_eq!((under.len(), over.len()), (6, 6), "{rows:?}");
    for r in &under {
        let (src, dst) = match r[1].starts_with("out") {
            true => ("192.0.2.1,", "192.0.2.2,"),
            false => ("192.0.2.2,", "192.0.2.1,"),
        };
        // The outer addresses, then the inner ones.
        assert!(r[2].starts_with(src) && r[3].starts_with(dst), "{r:?}");
        for (k, (field, want)) in expect.iter().enumerate() {
            assert_eq!(&r[5 + k], want, "{field}: {r:?}");
        }
    }
    for side in [&under, &over] {
        let echo = |t: &str| side.iter().filter(|r| r[4] == t).count();
        assert_eq!((echo("8"), echo("0")), (3, 3), "{side:?}");
    }
}

#[test]
fn l2_vxlan_capture_of_a_ping_reads_as_vxlan_and_icmp() {
    let (p, a, _b) = two_daemons("1");
    let vxlan = [("vxlan.vni", "42"), ("udp.dstport", "4789")];
    both_sides_of_a_ping(&a, &p.a, "10.9.0.2", &[], &vxlan);
}

#[test]
fn l3_vxlan_capture_of_a_ping_and_a_tso_transfer_reads_as_vxlan_icmp_and_segments() {
    let (p, a, _b) = l3vx_pair("1");
    let vxlan = [("vxlan.vni", "45"), ("udp.dstport", "4789")];
    both_sides_of_a_ping(&a, &p.a, "10.45.0.2", &[], &vxlan);
    // The TUN's TSO super-packets too, on the same pair.
    tso_segments_captured(&p, &a, "10.45.0.2");
}

#[test]
fn ipip_capture_of_a_ping_reads_as_ipip_and_icmp() {
    let (p, a, _b) = ipip_pair("1");
    // The outer protocol, then the inner one.
    both_sides_of_a_ping(&a, &p.a, "10.43.2.1", &[], &[("ip.proto", "4,1")]);
}

#[test]
fn a_dropped_datagram_and_an_answer_of_vtepd_are_captured_with_their_notes() {
    let (p, a) = daemon_on_a(&["--arp-suppress"]);
    let a_mac = p.a.mac("eth0");
    let args = ["--drops", "--side", "underlay", "--count", "1"];
    let (file, _) = capture(&a, &args, || {
        let out = run(p
            .b
            .cmd(PYTHON)
            .args([
                SCAPY_INJECT,
                "eth0",
                &a_mac,
                "192.0.2.2",
                "192.0.2.1",
                "vni",
            ])
            .args(["--vni", "42"]));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    let fields = ["frame.comment", "ip.src", "udp.dstport", "vxlan.vni"];
    let rows = tshark(&file, &[], &fields);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert!(
        r[0].starts_with("in, ") && r[0].contains("dropped: unknown_vni"),
        "{r:?}"
    );
    assert!(r[1].starts_with("192.0.2.2"), "{r:?}");
    assert_eq!((r[2].as_str(), r[3].as_str()), ("4789", "1042"), "{r:?}");

    // ARP suppression: vtepd answers A's request for a bound address into the device itself.
    a.ok(&["neigh", "add", "10.9.0.77", "02:00:00:00:00:77"]);
    let args = ["--side", "overlay", "--filter", "proto=arp", "--count", "2"];
    let (file, _) = capture(&a, &args, || {
        // A fresh ARP request each time: the capture may arm after the first was answered.
        let _ = run(p.a.cmd("ip").args(["neigh", "flush", "to", "10.9.0.77"]));
        ping(&p.a, "10.9.0.77")
    });
    let fields = [
        "frame.comment",
        "arp.opcode",
        "arp.src.proto_ipv4",
        "arp.src.hw_mac",
    ];
    let rows = tshark(&file, &[], &fields);
    let answer = rows
        .iter()
        .find(|r| r[1] == "2")
        .unwrap_or_else(|| panic!("no ARP reply: {rows:?}"));
    assert!(
        answer[0].starts_with("out, ") && answer[0].contains("an answer vtepd made itself"),
        "{answer:?}"
    );
    assert_eq!(
        (answer[2].as_str(), answer[3].as_str()),
        ("10.9.0.77", "02:00:00:00:00:77")
    );
    let asked = rows.iter().find(|r| r[1] == "1");
    assert!(asked.is_some_and(|r| r[0].starts_with("in, ")), "{rows:?}");
}

#[test]
fn the_byte_budget_ends_a_capture_by_itself() {
    let (p, a, _b) = two_daemons("1");
    let (file, summary) = capture(
        &a,
        &["--max-bytes", "400", "--filter", "proto=icmp"],
        || ping(&p.a, "10.9.0.2"),
    );
    let lens: Vec<usize> = tshark(&file, &[], &["frame.cap_len"])
        .iter()
        .map(|r| r[0].parse().unwrap())
        .collect();
    // An ICMP echo is 98 bytes on the device and 148 on the underlay: 2 to 4 fit.
    assert!((2..=4).contains(&lens.len()), "{lens:?}");
    assert!(lens.iter().sum::<usize>() <= 400, "{lens:?}");
    assert!(
        summary.contains(&format!("{} packets captured", lens.len())),
        "{summary}"
    );
}

#[test]
fn a_tso_super_frame_is_captured_as_the_segments_that_cross_the_wire() {
    let (p, a, _b) = two_daemons("1");
    tso_segments_captured(&p, &a, "10.9.0.2");
}

/// Captures both sides of a TCP transfer from host A to `dst` (TSO on the device, UDP GSO on
/// the underlay): tshark reads no packet longer than the wire carries on either side, and
/// both the device's super-packets (cut by vtepd) and the GSO sends show as their segments.
fn tso_segments_captured(p: &Pair, a: &Daemon, dst: &str) {
    let file = Payload::new("capture-tso", 7, 4 << 20);
    let args = ["--side", "both", "--filter", "proto=tcp", "--count", "400"];
    let cap = std::thread::scope(|s| {
        let mut started = false;
        capture(a, &args, || {
            if !std::mem::replace(&mut started, true) {
                s.spawn(|| transfer(p, &file, dst, 5301, 1400, 65536));
            }
        })
        .0
    });
    let rows = tshark(
        &cap,
        &[],
        &["frame.interface_name", "frame.len", "frame.comment"],
    );
    let side = |name: &str, note: &str| rows.iter().any(|r| r[0] == name && r[2].contains(note));
    assert!(
        side("underlay", "UDP GSO"),
        "no segment of a GSO send: {rows:?}"
    );
    assert!(
        side("overlay", "segment vtepd cut from a TSO super-packet"),
        "no segment of a device super-packet: {rows:?}"
    );
    let over_mtu = |r: &&Vec<String>| r[1].parse::<usize>().unwrap() > 1500;
    assert!(!rows.iter().any(|r| over_mtu(&r)), "{rows:?}");
}

#[test]
fn bad_capture_arguments_are_one_line_and_status_2() {
    for (args, says) in [
        (&["--filter", "color=red", "-w", "-"][..], "not one of"),
        (&["--filter", "vni=1", "--vni", "2", "-w", "-"], "both"),
        (&["--snaplen", "0", "-w", "-"], "0"),
        (&["--count", "0", "-w", "-"], "0"),
        (&["--side", "left", "-w", "-"], "left"),
        (&["-w", "/nonexistent/dir/x.pcapng"], "cannot write"),
    ] {
        let out = run(Command::new(BIN)
            .arg("capture")
            .args(args)
            .args(["--control", "/nonexistent/vtepd.sock"]));
        cli_support::assert_one_line(&out, 2, says, &format!("capture {args:?}"));
    }
}

#[test]
fn a_capture_to_stdout_pipes_into_tshark() {
    let (p, a, _b) = two_daemons("1");
    let mut cap = Command::new(BIN)
        .args([
            "capture",
            "--count",
            "4",
            "--filter",
            "proto=icmp",
            "-w",
            "-",
        ])
        .arg("--control")
        .arg(&a.control)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tshark = Command::new("tshark")
        .args(["-r", "-", "-T", "fields", "-e", "frame.interface_name"])
        .stdin(cap.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let done = wait_calling(&mut cap, CAPTURE_WAIT, || ping(&p.a, "10.9.0.2"));
    let summary = String::from_utf8_lossy(&cap.wait_with_output().unwrap().stderr).into_owned();
    let read = tshark.wait_with_output().unwrap();
    assert!(done, "{summary}");
    let read = String::from_utf8_lossy(&read.stdout).into_owned();
    let mut sides: Vec<_> = read.lines().collect();
    // The capture may arm between a request and its reply: the order varies, the sides not.
    sides.sort_unstable();
    assert_eq!(
        sides,
        ["overlay", "overlay", "underlay", "underlay"],
        "{summary}"
    );
}
