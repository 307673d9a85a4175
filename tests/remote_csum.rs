//! VXLAN remote checksum offload (RCO: `--remcsum-tx`, `--remcsum-rx`) against the kernel's vxlan
//! device configured with `udpcsum remcsumtx remcsumrx`: host h1 runs vtepd (L2), host h2 the
//! kernel device, one pod behind each. A file with a known sha256 crosses by TCP each way and
//! must arrive intact: the kernel completes the checksums vtepd left partial, and vtepd hands
//! the kernel's partial ones to its TAP as partial. h1's underlay link is captured both ways and
//! read by tshark, not by vtepd's code: the data segments each side sent must carry the option
//! (VXLAN flags 0x0820, the checksum start 34 / 2 = 17 in the VNI word's last byte) - the
//! kernel's, as the reference of the format, and vtepd's. Needs root, tcpdump and tshark.

mod daemon_support;
mod lab_util;
mod transfer_support;

use lab_util::{Lab, lab_available};
use transfer_support::{Ends, Payload, transfer};

/// Payload bytes per transfer.
const LEN: usize = 8 << 20;

/// Data segments (inner TCP payload of 1000 bytes or more) in capture `name` sent from
/// `src`, and how many of them carry the option with the checksum start of TCP over IPv4
/// behind Ethernet.
fn rco_segments(lab: &Lab, name: &str, src: &str) -> (usize, usize) {
    let file = format!("/run/vtepd-lab-{}/{name}.pcap", lab.prefix());
    let out = lab
        .command("tshark")
        .args(["-r", &file, "-n", "-d", "udp.port==4789,vxlan"])
        .args(["-Y", &format!("ip.src == {src} && tcp.len >= 1000")])
        .args(["-T", "fields", "-E", "occurrence=f", "-E", "separator=/t"])
        .args(["-e", "vxlan.flags", "-e", "vxlan.reserved8"])
        .output()
        .expect("tshark runs");
    assert!(out.status.success(), "tshark: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once('\t')).collect();
    let rco = rows
        .iter()
        .filter(|(flags, start)| *flags == "0x0820" && *start == "17")
        .count();
    (rows.len(), rco)
}

#[test]
fn remote_checksum_offload_interoperates_with_the_kernel_vxlan_device() {
    if !lab_available("remote_checksum_offload_interoperates_with_the_kernel_vxlan_device") {
        return;
    }
    let lab = Lab::new("rcsm");
    let kernel = [
        ("LAB_IMPLS", "vtepd kernel"),
        ("VTEPD_ARGS", "--remcsum-tx on --remcsum-rx on"),
        ("LAB_KERNEL_VXLAN", "udpcsum remcsumtx remcsumrx"),
    ];
    lab.sh_env(&kernel, &["fabric", "2", "1"]);
    lab.sh(&["wait-ping", "h1p1", "10.42.2.10"]);
    let (h1, h2) = ("192.0.2.1", "192.0.2.2");
    let file = Payload::new("rcsm", 0x7c1d_03a5_92be_4411, LEN);
    let ns = |pod: &str| format!("{}-{pod}", lab.prefix());
    let bulk = [("LAB_CAPTURE_BULK", "1")];
    let filter = "udp dst port 4789";
    lab.sh_env(&bulk, &["capture", "h1", "eth0", filter, "out", "out"]);
    lab.sh_env(&bulk, &["capture", "h1", "eth0", filter, "in", "in"]);
    for (from, to, dst, port) in [
        ("h1p1", "h2p1", "10.42.2.10", 7500),
        ("h2p1", "h1p1", "10.42.1.10", 7501),
    ] {
        let (sent, got) = transfer(Ends(&ns(from), &ns(to)), &file, dst, port, 0, 65_536);
        assert_eq!(sent["bytes"], LEN as u64, "{from} -> {to}: {sent}");
        assert_eq!(
            got, sent,
            "{from} -> {to}: the stream changed in the tunnel"
        );
    }
    let lost = lab.sh(&["capture-stop", "out", "in"]);
    assert_eq!(
        lost.split_whitespace().collect::<Vec<_>>(),
        ["0", "0"],
        "lost"
    );
    let (kernel_data, kernel_rco) = rco_segments(&lab, "in", h2);
    assert!(kernel_data > 0, "no data segment from the kernel captured");
    assert_eq!(
        kernel_rco, kernel_data,
        "the kernel (remcsumtx) sent {kernel_data} data segments, {kernel_rco} with the option"
    );
    let (ours, ours_rco) = rco_segments(&lab, "out", h1);
    eprintln!(
        "data segments (with the option): kernel {kernel_data} ({kernel_rco}), vtepd {ours} ({ours_rco})"
    );
    assert!(ours > 0, "no data segment from vtepd captured");
    // What vtepd cuts from a device super-frame carries the option; a segment the device
    // handed over whole keeps a complete checksum. A bulk transfer is super-frames.
    assert!(
        2 * ours_rco >= ours,
        "vtepd sent {ours} data segments, only {ours_rco} with the option"
    );
    let st = lab.stats("h1");
    assert_eq!(st.drop_of("remote_csum"), 0, "{:?}", st.0);
    // The kernel's datagrams with the option, taken; vtepd's own, counted as it sent them.
    assert!(st.get("rx_remote_csum") >= kernel_rco as u64, "{:?}", st.0);
    assert!(st.get("tx_remote_csum") >= ours_rco as u64, "{:?}", st.0);
}
