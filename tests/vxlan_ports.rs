//! Networks on UDP ports of their own (`port` in a `[[network]]`, what ip-link's `dstport` is per
//! vxlan device), in network namespaces, with Linux's vxlan devices as the independent peer.
//!
//! Topology: a [`Pair`]; host A (192.0.2.1) runs vtepd with VNI 42 on the daemon's port 4789 and
//! VNI 43 on port 8472 (flannel's), host B (192.0.2.2) has two kernel vxlan devices, VNI 42
//! `dstport 4789` and VNI 43 `dstport 8472`. Overlays 10.42.0.0/24 and 10.43.0.0/24 (.1 on A,
//! .2 on B).
//!
//! Checked: pings cross both networks both ways, a TCP stream crosses VNI 43 (vtepd sends it
//! with UDP GSO), and tshark, on B's underlay link, sees each network's outer packets (vtepd's
//! and the kernel's) on its own destination port only; a VXLAN datagram for VNI 43 sent to
//! port 4789 (scapy, lab/scapy/vxlan_inject.py) is dropped and counted as `wrong_port`, in the
//! totals and in network 43, and not delivered, while the same datagram to port 8472 is. Needs
//! root, tcpdump, tshark, ethtool and Debian's /usr/bin/python3 with scapy.

mod daemon_support;
mod transfer_support;

use daemon_support::{Capture, Conf, Daemon, Pair, must, wait_until};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;
use transfer_support::{Ends, Payload, transfer};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/lab/scapy/vxlan_inject.py");
const PYTHON: &str = "/usr/bin/python3";
const VTEPD: &str = "192.0.2.1";
const KERNEL: &str = "192.0.2.2";
const WAIT: Duration = Duration::from_secs(10);

/// The two networks: (VNI, UDP port, overlay prefix).
const NETS: [(u32, u16, &str); 2] = [(42, 4789, "10.42.0"), (43, 8472, "10.43.0")];

/// vtepd on A with both networks (two workers: each listens on both ports), the kernel's
/// devices on B; the file is removed when the returned `Conf` is dropped.
fn two_ports() -> (Pair, Conf, Daemon) {
    let p = Pair::new();
    p.a.disable_ipv6();
    p.b.disable_ipv6();
    // Checksums finished in software on B: a veth hands the kernel VTEP's inner TCP checksums
    // over partial otherwise, and vtepd reads the inner frames as they come.
    must(p.b.cmd("ethtool").args(["-K", "eth0", "tx", "off"]));
    let mut file = format!("local = \"{VTEPD}\"\nthreads = 2\n");
    for (vni, port, net) in NETS {
        // The daemon's port is 4789: only VNI 43 needs a key of its own.
        let own = if port == 4789 {
            String::new()
        } else {
            format!("port = {port}\n")
        };
        file.push_str(&format!(
            "[[network]]\ndev = \"vx{vni}\"\nvni = {vni}\naddress = \"{net}.1/24\"\n\
             peers = [\"{KERNEL}\"]\n{own}"
        ));
        let dev = format!("kx{vni}");
        p.b.ip(&[
            "link",
            "add",
            &dev,
            "type",
            "vxlan",
            "id",
            &vni.to_string(),
            "local",
            KERNEL,
            "dstport",
            &port.to_string(),
        ]);
        must(p.b.cmd("bridge").args([
            "fdb",
            "append",
            "00:00:00:00:00:00",
            "dev",
            &dev,
            "dst",
            VTEPD,
        ]));
        p.b.ip(&["addr", "add", &format!("{net}.2/24"), "dev", &dev]);
        p.b.ip(&["link", "set", &dev, "up"]);
    }
    let conf = Conf::new(&file);
    let d = Daemon::start(&p.a, &["--config", conf.path()]);
    (p, conf, d)
}

#[test]
fn each_network_talks_to_the_kernel_on_its_own_port() {
    let (p, _conf, d) = two_ports();
    let cap = Capture::start(&p.b, "udp");
    for (_, _, net) in NETS {
        let (to_b, to_a) = (format!("{net}.2"), format!("{net}.1"));
        assert!(
            p.a.ping_within(&to_b, WAIT),
            "A -> {to_b}: {}",
            d.log_text()
        );
        assert!(
            p.b.ping_within(&to_a, WAIT),
            "B -> {to_a}: {}",
            d.log_text()
        );
    }
    // A TCP stream from A on VNI 43: TSO super-frames from the TAP, sent with UDP GSO.
    let file = Payload::new("vp", 43, 2 << 20);
    let (src, sink) = transfer(
        Ends(&p.a.name, &p.b.name),
        &file,
        "10.43.0.2",
        5201,
        0,
        65536,
    );
    assert_eq!(
        (&src["size"], &src["sha256"]),
        (&sink["size"], &sink["sha256"])
    );
    let gso = cap.tshark(&[
        "-Y",
        &format!("ip.src == {VTEPD} && udp.dstport == 8472 && ip.len > 1500"),
    ]);
    assert!(!gso.trim().is_empty(), "no UDP GSO send to port 8472 seen");
    // (outer source, destination port, VNI) of every VXLAN packet on B's link, as tshark
    // reads them.
    let want: BTreeSet<(String, u16, u32)> = [VTEPD, KERNEL]
        .into_iter()
        .flat_map(|src| NETS.map(|(vni, port, _)| (src.to_owned(), port, vni)))
        .collect();
    let mut seen = BTreeSet::new();
    let all = wait_until(WAIT, || {
        let out = cap.tshark(&[
            "-d",
            "udp.port==8472,vxlan",
            "-Y",
            "vxlan",
            "-T",
            "fields",
            "-E",
            "occurrence=f",
            "-e",
            "ip.src",
            "-e",
            "udp.dstport",
            "-e",
            "vxlan.vni",
        ]);
        seen = out
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                Some((
                    f.first()?.to_string(),
                    f.get(1)?.parse().ok()?,
                    f.get(2)?.parse().ok()?,
                ))
            })
            .collect();
        seen.is_superset(&want)
    });
    assert!(all, "captured {seen:?}, wanted at least {want:?}");
    assert_eq!(seen, want, "a network's packets on another network's port");
    // Every UDP packet between the two is one of those: nothing went to another port.
    let ports = cap.tshark(&["-Y", "udp", "-T", "fields", "-e", "udp.dstport"]);
    let ports: BTreeSet<&str> = ports.lines().collect();
    assert_eq!(ports, BTreeSet::from(["4789", "8472"]));
    // `config show` gives VNI 43 its port, and VNI 42 (the daemon's port) none of its own.
    let shown = d.ok(&["config", "show"]);
    assert_eq!(shown.matches("port = ").count(), 2, "{shown}");
    assert!(shown.contains("port = 4789\n"), "{shown}");
    assert!(shown.contains("vni = 43\n"), "{shown}");
    let net43 = &shown[shown.find("vni = 43").unwrap()..];
    assert!(net43.contains("port = 8472\n"), "{shown}");
}

/// Network `vni`'s entry of `stats --json`.
fn net(st: &Value, vni: u32) -> &Value {
    st["networks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["vni"] == vni)
        .unwrap_or_else(|| panic!("no network {vni}: {st}"))
}

#[test]
fn a_datagram_on_another_networks_port_is_dropped_as_wrong_port() {
    let (p, _conf, d) = two_ports();
    let mac = p.a.mac("eth0");
    let inject = |dport: &str| {
        let out = must(p.b.cmd(PYTHON).arg(SCRIPT).args([
            "eth0", &mac, KERNEL, VTEPD, "good", "--vni", "43", "--dport", dport, "--count", "5",
        ]));
        assert_eq!(out.trim(), "sent 5");
    };
    let n = |st: &Value, key: &str| st[key].as_u64().unwrap();
    let before = d.stats();
    inject("4789");
    let mut after = before.clone();
    let counted = wait_until(WAIT, || {
        after = d.stats();
        n(&after, "rx_tunnel") >= n(&before, "rx_tunnel") + 5
    });
    assert!(counted, "the datagrams never arrived: {after}");
    assert_eq!(n(&after, "rx_tunnel") - n(&before, "rx_tunnel"), 5);
    assert_eq!(after["drops"]["wrong_port"], 5, "{after}");
    assert_eq!(n(&after, "drops_total") - n(&before, "drops_total"), 5);
    assert_eq!(net(&after, 43)["drops"]["wrong_port"], 5, "{after}");
    assert_eq!(net(&after, 42)["drops"]["wrong_port"], 0, "{after}");
    assert_eq!(
        n(&after, "tx_device"),
        n(&before, "tx_device"),
        "delivered: {after}"
    );
    // The same datagrams on VNI 43's own port are delivered to its device.
    inject("8472");
    let delivered = wait_until(WAIT, || {
        after = d.stats();
        n(net(&after, 43), "tx_device") >= 5
    });
    assert!(delivered, "not delivered on port 8472: {after}");
    assert_eq!(after["drops"]["wrong_port"], 5, "{after}");
}
