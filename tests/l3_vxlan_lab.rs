//! lab/flannel-vxlan.sh in quiet mode: vtepd in L3 VXLAN mode against the kernel vxlan device set
//! up the way flannel's vxlan backend sets it up (static neighbour, FDB entry and onlink route per
//! remote node), and against an L2 vtepd on the same VNI: pings both ways (small and full MTU), a
//! ping answered by vtepd itself, ARP resolution of a next hop, and iperf3 TCP each way; the same
//! over IPv6 between vtepd and the kernel, with Neighbor Discovery both ways (vtepd resolving the
//! kernel's address, the kernel vtepd's once its permanent neighbour is gone). The
//! script exits non-zero on any failure and prints nothing when it succeeds. iperf3 runs one
//! second each way here: long enough to prove TCP flows, short enough not to starve the lab
//! tests running beside it.

mod lab_util;

use lab_util::{Lab, lab_available, repo};

#[test]
fn flannel_vxlan_script_succeeds() {
    if !lab_available("flannel_vxlan_script_succeeds") {
        return;
    }
    let lab = Lab::new("tflan");
    let out = lab
        .command("timeout")
        .env("IPERF_SECS", "1")
        .args(["--kill-after=5", "150"])
        .arg(repo().join("lab/flannel-vxlan.sh"))
        .arg("--quiet")
        .output()
        .expect("cannot run lab/flannel-vxlan.sh");
    assert!(
        out.status.success(),
        "lab/flannel-vxlan.sh --quiet failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.is_empty(),
        "lab/flannel-vxlan.sh --quiet printed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
