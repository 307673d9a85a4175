//! Bad input from the underlay, crafted with scapy (lab/scapy/vxlan_inject.py) and sent into a running
//! daemon from a namespace on the underlay bridge: each kind is dropped and counted under its reason in
//! `stats --json`, nothing reaches the device, and the daemon keeps forwarding afterwards.
//!
//! The fabric is two vtepd hosts with one pod each; the sender `x` (192.0.2.99) spoofs h2's address
//! (192.0.2.2, a configured peer) unless the case is about a stranger's address.

mod lab_util;

use lab_util::{Lab, WAIT, lab_available, wait_for};

const PEER: &str = "192.0.2.2";
const STRANGER: &str = "192.0.2.99";
/// Inner destination of the injected frames: no pod has it, so a delivered frame is easy to spot.
const INNER_DST: &str = "02:99:00:00:00:aa";

fn fabric(tag: &str) -> Lab {
    let lab = Lab::new(tag);
    lab.fabric(2, 1, "vtepd vtepd", "");
    // Pinned neighbours: no ARP of the pods' own crosses the tunnel while counters are compared.
    lab.sh(&["pin-neigh", "h1p1", "10.42.2.10", "02:42:0a:2a:02:01"]);
    lab.sh(&["pin-neigh", "h2p1", "10.42.1.10", "02:42:0a:2a:01:01"]);
    lab.sh(&["host", "x", STRANGER]);
    lab.sh(&["wait-ping", "h1p1", "10.42.2.10", "8"]);
    lab
}

/// Sends `kind` datagrams from `x` to h1 with source `src`; returns how many were sent.
fn inject(lab: &Lab, src: &str, kind: &str, extra: &[&str]) -> u64 {
    let mut args = vec!["inject", "x", "h1", src, kind, "--inner-dst", INNER_DST];
    args.extend_from_slice(extra);
    let out = lab.sh(&args);
    out.trim()
        .strip_prefix("sent ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("vxlan_inject.py printed {out:?}"))
}

/// The daemon must still carry pod traffic both ways.
fn still_forwards(lab: &Lab) {
    lab.sh(&["wait-ping", "h1p1", "10.42.2.10", "5"]);
    lab.sh(&["wait-ping", "h2p1", "10.42.1.10", "5"]);
}

/// Injects `kind` from `src` and checks that exactly the sent datagrams were received and dropped under
/// `reason`, that no other drop reason moved and that nothing was delivered to the device.
fn dropped_and_counted(tag: &str, src: &str, kind: &str, reason: &str) {
    dropped_and_counted_after(tag, src, kind, reason, &|_| {});
}

/// [`dropped_and_counted`], with `setup` run on the fabric first.
fn dropped_and_counted_after(tag: &str, src: &str, kind: &str, reason: &str, setup: &dyn Fn(&Lab)) {
    let lab = fabric(tag);
    setup(&lab);
    let before = lab.stats("h1");
    let sent = inject(&lab, src, kind, &[]);
    assert!(sent > 0);
    let after = wait_for(&format!("drops.{reason} to grow by {sent}"), WAIT, || {
        let s = lab.stats("h1");
        (s.drop_of(reason) >= before.drop_of(reason) + sent).then_some(s)
    });
    let mut reasons: Vec<String> = before
        .drops()
        .into_iter()
        .chain(after.drops())
        .map(|(r, _)| r)
        .collect();
    reasons.sort();
    reasons.dedup();
    assert!(
        reasons.iter().any(|r| r == reason),
        "stats --json has no drops.{reason}: {}",
        after.0
    );
    for r in &reasons {
        let want = if r == reason { sent } else { 0 };
        assert_eq!(
            after.drop_of(r) - before.drop_of(r),
            want,
            "drops.{r} after {sent} {kind} datagrams"
        );
    }
    assert_eq!(
        after.get("rx_tunnel") - before.get("rx_tunnel"),
        sent,
        "rx_tunnel"
    );
    assert_eq!(
        after.get("tx_device") - before.get("tx_device"),
        0,
        "tx_device: a bad datagram was delivered"
    );
    still_forwards(&lab);
}

#[test]
fn truncated_datagrams_are_dropped_and_counted() {
    if lab_available("truncated_datagrams_are_dropped_and_counted") {
        dropped_and_counted("btr", PEER, "truncated", "truncated");
    }
}

#[test]
fn i_flag_clear_is_dropped_and_counted() {
    if lab_available("i_flag_clear_is_dropped_and_counted") {
        dropped_and_counted("bif", PEER, "iflag", "vxlan_flags");
    }
}

#[test]
fn unknown_vni_is_dropped_and_counted() {
    if lab_available("unknown_vni_is_dropped_and_counted") {
        dropped_and_counted("bvn", PEER, "vni", "unknown_vni");
    }
}

#[test]
fn unknown_peer_is_dropped_and_counted() {
    if lab_available("unknown_peer_is_dropped_and_counted") {
        dropped_and_counted("bpe", STRANGER, "good", "unknown_peer");
    }
}

#[test]
fn runt_inner_frame_is_dropped_and_counted() {
    if lab_available("runt_inner_frame_is_dropped_and_counted") {
        dropped_and_counted("bru", PEER, "runt", "inner_runt");
    }
}

/// A known peer sending frames whose source MAC a static entry pins to another VTEP: a spoof.
/// The entry stays, and the frames are dropped and counted (as Linux's vxlan drops them), not
/// delivered.
#[test]
fn a_source_mac_pinned_elsewhere_is_dropped_and_counted() {
    if lab_available("a_source_mac_pinned_elsewhere_is_dropped_and_counted") {
        // The injected frames' source MAC (vxlan_inject.py's INNER_SRC), pinned to a third VTEP.
        let pin = |lab: &Lab| {
            lab.sh(&[
                "client",
                "h1",
                "fdb",
                "add",
                "02:99:00:00:00:01",
                "192.0.2.3",
            ]);
        };
        dropped_and_counted_after("bsp", PEER, "good", "static_conflict", &pin);
    }
}

/// A wrong UDP checksum is the kernel's to drop: the datagram never reaches the daemon's socket
/// (rx_tunnel unchanged, the kernel's InCsumErrors up) and nothing reaches the TAP. The same
/// datagram with a right checksum is delivered, so the check cannot pass vacuously.
#[test]
fn bad_udp_checksum_never_reaches_the_daemon() {
    if !lab_available("bad_udp_checksum_never_reaches_the_daemon") {
        return;
    }
    let lab = fabric("bck");
    // Frames the daemon writes to its TAP arrive, from the kernel's side, on vtep0.
    lab.sh(&[
        "capture",
        "h1",
        "vtep0",
        &format!("ether dst {INNER_DST}"),
        "tap",
    ]);
    let tap_count = || -> u64 { lab.sh(&["count-pcap", "tap"]).trim().parse().unwrap() };
    let csum_errors = || -> u64 { lab.sh(&["udp-csum-errors", "h1"]).trim().parse().unwrap() };
    // Everything else that reaches h1's VXLAN port meanwhile (a late ping reply or an ARP re-probe
    // between the pods on a loaded machine) is counted on the wire, so it can be told apart.
    lab.sh(&["capture", "h1", "eth0", "udp dst port 4789", "ul"]);
    let hex = INNER_DST.replace(':', "");
    let not_injected = format!(
        "not (udp[16:4] = 0x{} and udp[20:2] = 0x{})",
        &hex[..8],
        &hex[8..]
    );
    let background = || -> u64 {
        lab.sh(&["count-pcap", "ul", &not_injected])
            .trim()
            .parse()
            .unwrap()
    };

    let before = lab.stats("h1");
    let bg_before = background();
    let errors_before = csum_errors();
    let sent = inject(&lab, PEER, "badcsum", &["--count", "3"]);
    wait_for("the kernel to count the bad checksums", WAIT, || {
        (csum_errors() >= errors_before + sent).then_some(())
    });
    assert_eq!(csum_errors() - errors_before, sent, "Udp InCsumErrors");

    // Control: the same datagram with its checksum right, sent after them, is received and delivered.
    // Once it is counted, any bad-checksum datagram the daemon had seen would be counted too.
    inject(&lab, PEER, "good", &[]);
    let bg_low = wait_for("the good datagram to be delivered", WAIT, || {
        let bg = background();
        let s = lab.stats("h1");
        (tap_count() >= 1 && s.get("tx_device") > before.get("tx_device")).then_some(bg)
    });
    let after = lab.stats("h1");
    let bg_high = background();
    assert_eq!(
        tap_count(),
        1,
        "frames on the TAP: the good datagram's only"
    );
    // The daemon saw the good datagram plus the background traffic, and not one bad checksum.
    let rx = after.get("rx_tunnel") - before.get("rx_tunnel");
    let (lo, hi) = (1 + bg_low - bg_before, 1 + bg_high - bg_before);
    assert!(
        (lo..=hi).contains(&rx),
        "rx_tunnel grew by {rx}: a bad checksum reached the daemon (expected {lo}..={hi}: the good \
         datagram plus {} to {} background datagrams)",
        bg_low - bg_before,
        bg_high - bg_before
    );
    let tx = after.get("tx_device") - before.get("tx_device");
    assert!(
        (lo..=hi).contains(&tx),
        "tx_device grew by {tx}, expected {lo}..={hi}"
    );
    for (r, n) in after.drops() {
        assert_eq!(n, before.drop_of(&r), "drops.{r} moved");
    }
    still_forwards(&lab);
}
