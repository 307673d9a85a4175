//! VXLAN over an IPv6 underlay, in network namespaces, with Linux's vxlan device (over IPv6)
//! as the independent peer.
//!
//! Topology: two namespaces joined by a veth pair on 2001:db8:42::/64 (`nodad`: usable at once);
//! A (2001:db8:42::1) runs vtepd L2 with VNI 42 and B (2001:db8:42::2) as its peer, B has
//! `ip link add vx0 type vxlan id 42 local 2001:db8:42::2 remote 2001:db8:42::1 dstport 4789`.
//! Overlay 10.42.0.0/24: .1 on vtepd's TAP, .2 on vx0.
//!
//! Checked in one rig: pings both ways; a 2 MiB TCP transfer A -> B arrives byte-exact; each
//! side learned the other's MAC behind the other's IPv6 address (vtepd's `fdb show`, the
//! kernel's `bridge fdb show dev vx0`); and tshark, on B's underlay link, decodes vtepd's
//! outer IPv6/UDP/VXLAN packets with VNI 42, the two addresses, port 4789 and a UDP checksum
//! that is not zero and that tshark finds correct; an IPv4 peer or FDB remote is refused at run
//! time (`peers add`, `fdb add`). Needs root, tcpdump, tshark and ethtool.

mod daemon_support;
mod transfer_support;

use daemon_support::{Capture, Daemon, Pair, must};
use std::time::{Duration, Instant};
use transfer_support::{Ends, Payload, transfer};

const VTEPD: &str = "2001:db8:42::1";
const KERNEL: &str = "2001:db8:42::2";
const WAIT: Duration = Duration::from_secs(10);

/// The kernel's learned FDB entry for `mac` on vx0: its `dst`.
fn kernel_remote_of(p: &Pair, mac: &str) -> Option<String> {
    let out = must(p.b.cmd("bridge").args(["fdb", "show", "dev", "vx0"]));
    out.lines()
        .filter(|l| l.starts_with(mac))
        .find_map(|l| l.split(" dst ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
}

#[test]
fn l2_vxlan_interoperates_with_the_kernel_over_ipv6() {
    let t0 = Instant::now();
    let p = Pair::new();
    // The pair's IPv4 addresses stay; the underlay of this test is IPv6.
    for (ns, addr) in [(&p.a, VTEPD), (&p.b, KERNEL)] {
        ns.ip(&["addr", "add", &format!("{addr}/64"), "dev", "eth0", "nodad"]);
    }
    // Checksums finished in software on B: a veth hands the kernel VTEP's inner TCP checksums
    // over partial otherwise, and vtepd reads the inner frames as they come.
    must(p.b.cmd("ethtool").args(["-K", "eth0", "tx", "off"]));
    p.b.ip(&[
        "link", "add", "vx0", "type", "vxlan", "id", "42", "local", KERNEL, "remote", VTEPD,
        "dstport", "4789", "dev", "eth0",
    ]);
    p.b.ip(&["addr", "add", "10.42.0.2/24", "dev", "vx0"]);
    p.b.ip(&["link", "set", "vx0", "up"]);
    let cap = Capture::start(&p.b, "udp port 4789");
    let d = Daemon::start(
        &p.a,
        &[
            "--dev",
            "vx42",
            "--local",
            VTEPD,
            "--vni",
            "42",
            "--peer",
            KERNEL,
            "--address",
            "10.42.0.1/24",
        ],
    );
    assert!(
        p.a.ping_within("10.42.0.2", WAIT),
        "A -> B: {}",
        d.log_text()
    );
    assert!(
        p.b.ping_within("10.42.0.1", WAIT),
        "B -> A: {}",
        d.log_text()
    );

    let file = Payload::new("v6", 42, 2 << 20);
    let (src, sink) = transfer(
        Ends(&p.a.name, &p.b.name),
        &file,
        "10.42.0.2",
        5201,
        0,
        65536,
    );
    assert_eq!(
        (&src["size"], &src["sha256"]),
        (&sink["size"], &sink["sha256"])
    );

    // Learning on both sides: each has the other's device MAC behind the other's address.
    let (mac_a, mac_b) = (p.a.mac("vx42"), p.b.mac("vx0"));
    let learned = d
        .fdb()
        .into_iter()
        .find(|e| e["mac"] == mac_b.as_str())
        .unwrap_or_else(|| panic!("vtepd did not learn {mac_b}: {:?}", d.fdb()));
    assert_eq!(learned["remote"], KERNEL, "{learned}");
    assert_eq!(learned["kind"], "learned", "{learned}");
    assert_eq!(
        kernel_remote_of(&p, &mac_a).as_deref(),
        Some(VTEPD),
        "the kernel's FDB: {}",
        must(p.b.cmd("bridge").args(["fdb", "show", "dev", "vx0"]))
    );

    // On the wire: vtepd's packets decode as IPv6/UDP/VXLAN, VNI 42, with a correct, non-zero
    // UDP checksum.
    let fields = cap.tshark(&[
        "-o",
        "udp.check_checksum:TRUE",
        "-d",
        "udp.port==4789,vxlan",
        "-Y",
        &format!("ipv6.src == {VTEPD} && vxlan"),
        "-T",
        "fields",
        "-e",
        "ipv6.dst",
        "-e",
        "udp.dstport",
        "-e",
        "vxlan.vni",
        "-e",
        "udp.checksum",
        "-e",
        "udp.checksum.status",
    ]);
    // The outer header's value comes first where the inner frame has the same field.
    let rows: Vec<Vec<&str>> = fields
        .lines()
        .map(|l| {
            l.split('\t')
                .map(|f| f.split(',').next().unwrap_or(f))
                .collect()
        })
        .collect();
    assert!(rows.len() > 100, "too few packets from vtepd: {fields}");
    for r in &rows {
        assert_eq!(r[..3], [KERNEL, "4789", "42"], "{r:?}");
        assert_ne!(r[3], "0x0000", "a zero UDP checksum over IPv6: {r:?}");
        assert_eq!(
            r[4], "1",
            "tshark finds the UDP checksum wrong (1: good): {r:?}"
        );
    }
    // One address family per network, at run time too.
    for args in [
        &["peers", "add", "192.0.2.9"][..],
        &["fdb", "add", "02:00:00:00:00:09", "192.0.2.9"],
    ] {
        let out = d.client(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("one address family per network"),
            "{args:?}: {err}"
        );
    }
    let stats = d.stats();
    assert_eq!(
        stats["drops"]["unknown_peer"].as_u64().unwrap_or(0),
        0,
        "{stats}"
    );
    eprintln!("ipv6_underlay: {:.1} s", t0.elapsed().as_secs_f64());
}
