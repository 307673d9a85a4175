//! UDP GSO and GRO against the kernel's vxlan device: host h1 runs vtepd (L2), host h2 the
//! kernel vxlan device (lab_kernel_vtep), one pod behind each. A file with a known sha256 crosses
//! by TCP each way with segment sizes around the MTU boundary (MSS 1410 fills the 1450-byte pod
//! MTU, so vtepd's datagrams fill the 1500-byte underlay exactly; 1409, 1200 and 536 too) and
//! odd write sizes; the receiver's hash must equal the sender's.
//!
//! The underlay is captured twice and checked by lab/scapy/vxlan_gso_check.py, not by vtepd's
//! code: on h1's own link, where each UDP GSO send of vtepd shows whole (cut there into its
//! segments: VXLAN header each, equal sizes, none above the MTU), and on h2's link, behind a
//! bridge port without offloads, where the datagrams are as a wire carries them: every one of
//! vtepd's no larger than the MTU, DF set, flags 0x08, VNI 42, UDP checksum right (or zero), inner
//! IPv4 and TCP checksums right. In the bulk transfer (full MSS, 64 KiB writes) at least half
//! of vtepd's datagrams must come from GSO sends.
//! Toward vtepd, h1's link has GRO on: the captures there must show merged datagrams, which
//! vtepd's UDP GRO receive path then takes apart. Needs root, tcpdump, ethtool and Debian's
//! /usr/bin/python3 with scapy.

mod daemon_support;
mod lab_util;
mod transfer_support;

use lab_util::{Lab, lab_available};
use serde_json::Value;
use transfer_support::{Ends, Payload, transfer};

/// Payload bytes per transfer.
const LEN: u64 = 8 << 20;
/// The underlay MTU (veth default).
const MTU: u64 = 1500;
/// The bulk transfer: full-MSS segments (filling the MTU), large writes.
const BULK: (u32, usize) = (1410, 65_536);
/// (MSS, write size) of each transfer.
const CASES: &[(u32, usize)] = &[BULK, (1409, 1409), (1200, 4093), (536, 100_003)];

fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// The JSON report of vxlan_gso_check.py in `mode` on capture `name`, for datagrams from `tx`.
fn check(lab: &Lab, mode: &str, name: &str, tx: &str) -> Value {
    let out = lab.sh(&["vxlan-gso-check", mode, name, tx]);
    serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("vxlan_gso_check.py printed {out:?}: {e}"))
}

/// Transfers the payload from pod `from` to pod `to` (address `dst`) while capturing: `out`
/// outbound on the `tx` host's link, `in` inbound on the `rx` host's link. Asserts the
/// stream arrived intact; returns how many packets each capture lost (out, in).
fn captured_transfer(
    lab: &Lab,
    file: &Payload,
    (from, to, dst): (&str, &str, &str),
    (tx, rx): (&str, &str),
    port: u16,
    mss: u32,
    chunk: usize,
) -> (u64, u64) {
    let filter = "udp dst port 4789";
    let bulk = [("LAB_CAPTURE_BULK", "1")];
    lab.sh_env(&bulk, &["capture", tx, "eth0", filter, "out", "out"]);
    lab.sh_env(&bulk, &["capture", rx, "eth0", filter, "in"]);
    let ns = |pod: &str| format!("{}-{pod}", lab.prefix());
    let (sent, got) = transfer(Ends(&ns(from), &ns(to)), file, dst, port, mss, chunk);
    // Both stopped in one call: the wait for a bulk capture's last block is paid once.
    let out = lab.sh(&["capture-stop", "out", "in"]);
    let counts: Vec<u64> = out
        .lines()
        .map(|l| l.trim().parse())
        .collect::<Result<_, _>>()
        .unwrap_or_else(|_| panic!("capture-stop printed {out:?}"));
    let [out_lost, in_lost] = counts[..] else {
        panic!("capture-stop printed {out:?}: not one count per capture");
    };
    let lost = (out_lost, in_lost);
    assert_eq!(n(&sent, "bytes"), LEN, "{from} -> {to}, MSS {mss}: {sent}");
    assert_eq!(
        got, sent,
        "{from} -> {to}, MSS {mss}, writes of {chunk}: the stream changed in the tunnel"
    );
    lost
}

#[test]
fn gso_sends_and_gro_receives_interoperate_with_the_kernel_vxlan_device() {
    if !lab_available("gso_sends_and_gro_receives_interoperate_with_the_kernel_vxlan_device") {
        return;
    }
    let lab = Lab::new("gsoi");
    lab.fabric(2, 1, "vtepd kernel", "");
    // What reaches the kernel host is what a wire carries; what reaches vtepd arrives merged.
    lab.sh(&["wire-port", "h2"]);
    lab.sh(&["gro", "h1"]);
    lab.sh(&["wait-ping", "h1p1", "10.42.2.10"]);
    let file = Payload::new("gso", 0x2545_f491_4f6c_dd1d, LEN as usize);
    let mut gro_merged = 0;

    for (i, &(mss, chunk)) in CASES.iter().enumerate() {
        let port = 7300 + i as u16;
        let lost = captured_transfer(
            &lab,
            &file,
            ("h1p1", "h2p1", "10.42.2.10"),
            ("h1", "h2"),
            port,
            mss,
            chunk,
        );
        let whole = check(&lab, "whole", "out", "h1");
        let wire = check(&lab, "wire", "in", "h1");
        eprintln!("vtepd -> kernel, MSS {mss}: sent {whole}, wire {wire}");
        let ctx = format!("vtepd -> kernel, MSS {mss}: sent {whole}, on the wire {wire}");
        assert_eq!(lost, (0, 0), "the captures lost packets: {ctx}");
        for key in [
            "over_mtu",
            "no_df",
            "bad_vxlan",
            "bad_udp_csum",
            "bad_inner_ip_csum",
            "bad_inner_tcp_csum",
        ] {
            assert_eq!(n(&wire, key), 0, "{key}: {ctx}");
        }
        assert!(
            n(&wire, "inner_tcp") >= LEN / 1410,
            "too few segments: {ctx}"
        );
        if mss == 1410 {
            assert_eq!(
                n(&wire, "max_len"),
                MTU,
                "MSS 1410 must fill the MTU: {ctx}"
            );
        }
        for key in ["bad_split", "bad_gso_vxlan"] {
            assert_eq!(n(&whole, key), 0, "{key}: {ctx}");
        }
        // How a stream is cut into TSO frames, and so how much vtepd can send by GSO, depends
        // on the sender's writes and timing; with 64 KiB writes at the full MSS the frames are
        // large (up to 64 segments: vtepd's limit for one GSO send), and GSO must carry most.
        if (mss, chunk) == BULK {
            let (gso, single) = (n(&whole, "gso_segments"), n(&whole, "single"));
            assert!(
                gso >= single,
                "fewer than half of vtepd's datagrams came from GSO sends: {ctx}"
            );
            // Its GSO runs are still runs on the wire (same source port, consecutive IP IDs,
            // equal sizes).
            assert!(n(&wire, "run_continuations") > 0, "{ctx}");
        }

        captured_transfer(
            &lab,
            &file,
            ("h2p1", "h1p1", "10.42.1.10"),
            ("h2", "h1"),
            port + 100,
            mss,
            chunk,
        );
        let merged = check(&lab, "whole", "in", "h2");
        eprintln!("kernel -> vtepd, MSS {mss}: received {merged}");
        assert_eq!(n(&merged, "bad_split"), 0, "kernel -> vtepd: {merged}");
        gro_merged += n(&merged, "gso_sends");
    }
    assert!(gro_merged > 0, "vtepd never received GRO-merged datagrams");
    let st = lab.stats("h1");
    assert!(st.get("rx_tunnel") >= 4 * LEN / 1410, "{:?}", st.0);
    assert!(st.get("tx_tunnel") >= 4 * LEN / 1410, "{:?}", st.0);
}
