//! The outer-header policy on the wire, against Linux's own vxlan device as the reference: for
//! each set of options, the same inner frames are sent through a kernel vxlan device configured
//! with `ip link add ... type vxlan ... ttl T tos S df D srcport A B [no]udpcsum` and through
//! vtepd run with the flags of the same names, both toward an observer that only captures. The
//! observer's tshark reads both; vtepd's outer header must match the kernel's for every frame:
//! TTL, TOS byte (DSCP and ECN), DF, UDP checksum present (and then valid) or zero, and the
//! source port within the range. The expected values come from the kernel device, never from
//! vtepd's encoder.
//!
//! Topology: a hub namespace with a bridge, and three hosts on it: the observer (192.0.2.2), the
//! kernel VTEP (192.0.2.10) and vtepd (192.0.2.11). The hub's ports toward the observer and
//! vtepd have transmit checksum offload off, so what they receive carries final checksums (a
//! veth otherwise hands over partial ones), as a wire would.
//!
//! Inner frames (scapy, written to the devices with AF_PACKET), all broadcast so both VTEPs
//! flood them: IPv4 with DF, TTL 17, TOS 0xb9 (DSCP 46, ECT(1)); IPv4 without DF, TTL 5, TOS
//! 0x2b (DSCP 10, CE: sent as ECT(0)); IPv6 hop limit 23, traffic class 0x29; ARP (not IP); IPv4
//! TTL 0 (inherited as 64). Each has its own length, which pairs the two VTEPs' packets.
//!
//! A second test sends a TCP stream through vtepd's TAP (TSO super-frames, sent with UDP GSO)
//! and the kernel's device with `ttl inherit tos inherit df inherit udpcsum`: every data packet
//! of both must carry the inner TTL and DSCP, DF and a valid UDP checksum.
//!
//! Needs root, tcpdump, tshark, ethtool and Debian's /usr/bin/python3 with scapy.

mod daemon_support;
mod lab_util;

use daemon_support::{Capture, Daemon, Netns, must, run, wait_until};
use lab_util::lab_available;
use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::Duration;

const OBSERVER: &str = "192.0.2.2";
const KERNEL: &str = "192.0.2.10";
const VTEPD: &str = "192.0.2.11";
const WAIT: Duration = Duration::from_secs(10);

/// The hub, the observer and the two VTEP hosts.
struct Fabric {
    observer: Netns,
    kernel: Netns,
    vtepd: Netns,
    // Dropped last: the hosts' veths go with their own namespaces.
    _hub: Netns,
}

impl Fabric {
    fn new() -> Fabric {
        let hub = Netns::new("h");
        hub.disable_ipv6();
        hub.ip(&["link", "add", "br0", "type", "bridge"]);
        hub.ip(&["link", "set", "br0", "up"]);
        let host = |tag: &str, addr: &str| {
            let ns = Netns::new(tag);
            ns.disable_ipv6();
            let port = format!("p{tag}");
            hub.ip(&[
                "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
            ]);
            hub.ip(&["link", "set", &port, "master", "br0", "up"]);
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
            ns.ip(&["link", "set", "eth0", "up"]);
            ns
        };
        let observer = host("o", OBSERVER);
        let kernel = host("k", KERNEL);
        let vtepd = host("v", VTEPD);
        // Checksums (and GSO segmentation) are finished in software on the way to the observer,
        // and to vtepd, which reads the inner frames of what it receives as they came (a veth
        // would hand it the kernel VTEP's partial inner TCP checksums).
        for port in ["po", "pv"] {
            must(hub.cmd("ethtool").args(["-K", port, "tx", "off"]));
        }
        Fabric {
            observer,
            kernel,
            vtepd,
            _hub: hub,
        }
    }

    /// The kernel vxlan device vx0 (VNI 42, port 4789) with `opts`, flooding to the observer.
    fn kernel_vtep(&self, opts: &str) -> KernelVtep<'_> {
        let mut args = vec![
            "link", "add", "vx0", "type", "vxlan", "id", "42", "local", KERNEL, "dstport", "4789",
        ];
        args.extend(opts.split_whitespace());
        self.kernel.ip(&args);
        must(self.kernel.cmd("bridge").args([
            "fdb",
            "append",
            "00:00:00:00:00:00",
            "dev",
            "vx0",
            "dst",
            OBSERVER,
        ]));
        self.kernel.ip(&["link", "set", "vx0", "up"]);
        KernelVtep(&self.kernel)
    }

    /// vtepd (L2, one worker: the frames stay in order) with `flags`, flooding to the observer.
    fn vtepd(&self, flags: &[&str], extra: &[&str]) -> Daemon {
        let mut args = vec![
            "--dev",
            "vtep0",
            "--local",
            VTEPD,
            "--vni",
            "42",
            "--peer",
            OBSERVER,
            "--threads",
            "1",
        ];
        args.extend_from_slice(flags);
        args.extend_from_slice(extra);
        Daemon::start(&self.vtepd, &args)
    }
}

/// The kernel's vx0, deleted on drop.
struct KernelVtep<'a>(&'a Netns);

impl Drop for KernelVtep<'_> {
    fn drop(&mut self) {
        let _ = run(self.0.cmd("ip").args(["link", "del", "vx0"]));
    }
}

/// tshark's reading of `cap` so far: the outer fields of each packet `filter` keeps (see
/// `Outer`).
fn outer(cap: &Capture, filter: &str) -> Vec<Outer> {
    let mut args = vec![
        "-o",
        "udp.check_checksum:TRUE",
        "-d",
        "udp.port==4789,vxlan",
        "-Y",
        filter,
        "-T",
        "fields",
        "-E",
        "occurrence=f",
        "-E",
        "separator=/t",
    ];
    args.extend(Outer::FIELDS.iter().flat_map(|f| ["-e", f]));
    cap.tshark(&args).lines().filter_map(Outer::parse).collect()
}

/// The outer header of one captured VXLAN packet, as tshark decodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outer {
    src: String,
    ttl: u8,
    tos: u8,
    df: bool,
    src_port: u16,
    udp_len: u16,
    /// The checksum field (0: none sent).
    csum: u16,
    /// tshark's verdict on it: "1" good, "0" bad, "3" not present, "2" not checked.
    csum_status: String,
}

impl Outer {
    const FIELDS: [&'static str; 8] = [
        "ip.src",
        "ip.ttl",
        "ip.dsfield",
        "ip.flags.df",
        "udp.srcport",
        "udp.length",
        "udp.checksum",
        "udp.checksum.status",
    ];

    fn parse(line: &str) -> Option<Outer> {
        let f: Vec<&str> = line.split('\t').collect();
        let num = |s: &str| -> Option<u64> {
            match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None => s.parse().ok(),
            }
        };
        Some(Outer {
            src: f.first()?.to_string(),
            ttl: num(f.get(1)?)? as u8,
            tos: num(f.get(2)?)? as u8,
            df: *f.get(3)? == "1" || *f.get(3)? == "True",
            src_port: num(f.get(4)?)? as u16,
            udp_len: num(f.get(5)?)? as u16,
            csum: num(f.get(6)?)? as u16,
            csum_status: f.get(7)?.to_string(),
        })
    }

    /// Present and right, or absent (zero).
    fn csum_kind(&self) -> &'static str {
        match (self.csum, self.csum_status.as_str()) {
            (0, _) => "zero",
            (_, "1") => "valid",
            _ => "bad",
        }
    }
}

/// The inner frames, written with scapy to `dev` in `ns`. Each has its own length.
fn send_frames(ns: &Netns, dev: &str) {
    let script = format!(
        r#"
from scapy.all import Ether, IP, IPv6, UDP, ARP, Raw, sendp
b = "ff:ff:ff:ff:ff:ff"
s = "02:00:00:00:00:01"
frames = [
    Ether(dst=b, src=s)/IP(src="10.42.0.1", dst="10.42.0.9", ttl=17, tos=0xb9, flags="DF")/UDP(sport=1111, dport=2222)/Raw(b"a"*10),
    Ether(dst=b, src=s)/IP(src="10.42.0.1", dst="10.42.0.9", ttl=5, tos=0x2b, flags=0)/UDP(sport=1112, dport=2222)/Raw(b"b"*30),
    Ether(dst=b, src=s)/IPv6(src="fd00::1", dst="fd00::9", hlim=23, tc=0x29)/UDP(sport=1113, dport=2222)/Raw(b"c"*50),
    Ether(dst=b, src=s)/ARP(op=1, hwsrc=s, psrc="10.42.0.1", pdst="10.42.0.9"),
    Ether(dst=b, src=s)/IP(src="10.42.0.1", dst="10.42.0.9", ttl=0, tos=0, flags=0)/UDP(sport=1115, dport=2222)/Raw(b"e"*90),
]
sendp(frames, iface="{dev}", verbose=False)
"#
    );
    must(
        ns.cmd("timeout")
            .args(["20", "/usr/bin/python3", "-c", &script]),
    );
}

/// How many frames `send_frames` writes.
const FRAMES: usize = 5;

/// One option set: the kernel's ip-link words, vtepd's flags, and the source port range both
/// must stay in (inclusive).
struct Case {
    kernel: &'static str,
    vtepd: &'static [&'static str],
    ports: (u16, u16),
}

const CASES: &[Case] = &[
    // vtepd's defaults, spelled out for the kernel.
    Case {
        kernel: "ttl 64 tos inherit df set srcport 49152 65535 noudpcsum",
        vtepd: &[],
        ports: (49152, 65535),
    },
    Case {
        kernel: "ttl 33 tos 0x28 df unset srcport 5000 5010 udpcsum",
        vtepd: &[
            "--ttl",
            "33",
            "--tos",
            "0x28",
            "--df",
            "unset",
            "--srcport",
            "5000-5010",
            "--udp-csum",
            "on",
        ],
        ports: (5000, 5010),
    },
    Case {
        kernel: "ttl inherit tos inherit df inherit srcport 49152 65535 udpcsum",
        vtepd: &[
            "--ttl",
            "inherit",
            "--tos",
            "inherit",
            "--df",
            "inherit",
            "--udp-csum",
            "on",
        ],
        ports: (49152, 65535),
    },
    Case {
        kernel: "ttl 1 tos 0 df set srcport 40000 40001 noudpcsum",
        vtepd: &[
            "--ttl",
            "1",
            "--tos",
            "0",
            "--df",
            "set",
            "--srcport",
            "40000-40001",
            "--udp-csum",
            "off",
        ],
        ports: (40000, 40001),
    },
];

/// Fixed fields and DF clear, for the UDP GSO test (`CASES[2]` is its inherited one).
const GSO_FIXED: Case = Case {
    kernel: "ttl 7 tos 0xb8 df unset srcport 5000 5010 udpcsum",
    vtepd: &[
        "--ttl",
        "7",
        "--tos",
        "0xb8",
        "--df",
        "unset",
        "--srcport",
        "5000-5010",
        "--udp-csum",
        "on",
    ],
    ports: (5000, 5010),
};

/// Captures the VXLAN packets `count` frames make from `src`, until all are there.
fn wait_packets(cap: &Capture, src: &str, count: usize) -> Vec<Outer> {
    let filter = format!("ip.src == {src} && vxlan");
    let mut got = Vec::new();
    let all = wait_until(WAIT, || {
        got = outer(cap, &filter);
        got.len() >= count
    });
    assert!(all, "{count} packets from {src} expected, captured {got:?}");
    got
}

#[test]
fn outer_header_matches_the_kernel_vxlan_device_for_each_option() {
    if !lab_available("outer_header_matches_the_kernel_vxlan_device_for_each_option") {
        return;
    }
    let fabric = Fabric::new();
    let mut table = Vec::new();
    for case in CASES {
        let cap = Capture::start(&fabric.observer, "udp dst port 4789");
        {
            let _vx = fabric.kernel_vtep(case.kernel);
            send_frames(&fabric.kernel, "vx0");
            let _d = fabric.vtepd(case.vtepd, &[]);
            send_frames(&fabric.vtepd, "vtep0");
            wait_packets(&cap, KERNEL, FRAMES);
            wait_packets(&cap, VTEPD, FRAMES);
        }
        let by_len = |src: &str| -> BTreeMap<u16, Outer> {
            outer(&cap, &format!("ip.src == {src} && vxlan"))
                .into_iter()
                .map(|o| (o.udp_len, o))
                .collect()
        };
        let (k, v) = (by_len(KERNEL), by_len(VTEPD));
        assert_eq!(
            k.keys().collect::<Vec<_>>(),
            v.keys().collect::<Vec<_>>(),
            "{}: the same frames from both: kernel {k:?}, vtepd {v:?}",
            case.kernel
        );
        assert_eq!(k.len(), FRAMES, "{}: {k:?}", case.kernel);
        let (lo, hi) = case.ports;
        for (len, ko) in &k {
            let vo = &v[len];
            let ctx = format!(
                "{} (UDP length {len}): kernel {ko:?}, vtepd {vo:?}",
                case.kernel
            );
            table.push(format!(
                "{:<56} len {len:>3}: ttl {}/{} tos {:#04x}/{:#04x} df {}/{} csum {}/{} sport {}/{}",
                case.kernel,
                ko.ttl,
                vo.ttl,
                ko.tos,
                vo.tos,
                u8::from(ko.df),
                u8::from(vo.df),
                ko.csum_kind(),
                vo.csum_kind(),
                ko.src_port,
                vo.src_port
            ));
            assert_eq!(vo.ttl, ko.ttl, "TTL: {ctx}");
            assert_eq!(vo.tos, ko.tos, "TOS: {ctx}");
            assert_eq!(vo.df, ko.df, "DF: {ctx}");
            assert_eq!(vo.csum_kind(), ko.csum_kind(), "UDP checksum: {ctx}");
            assert_ne!(vo.csum_kind(), "bad", "{ctx}");
            assert!(
                (lo..=hi).contains(&ko.src_port),
                "kernel source port: {ctx}"
            );
            assert!((lo..=hi).contains(&vo.src_port), "vtepd source port: {ctx}");
        }
    }
    eprintln!("kernel/vtepd per frame:\n{}", table.join("\n"));
}

/// A TCP receiver on the observer's overlay address: reads `conns` connections to their end.
fn tcp_sink(ns: &Netns, port: u16, conns: usize) -> Child {
    let script = format!(
        r#"
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.42.0.2", {port}))
s.listen(4)
for _ in range({conns}):
    c, _ = s.accept()
    while c.recv(1 << 16):
        pass
    c.close()
"#
    );
    ns.cmd("timeout")
        .args(["60", "/usr/bin/python3", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot run python3")
}

/// Sends `len` bytes by TCP from `ns` to the observer's sink with inner TTL 33 and TOS 0x28
/// (connecting again until the sink listens, within the bound).
fn tcp_send(ns: &Netns, port: u16, len: usize) {
    let script = format!(
        r#"
import socket, time
end = time.time() + 10
while True:
    s = socket.socket()
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 33)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x28)
    s.settimeout(10)
    try:
        s.connect(("10.42.0.2", {port}))
        break
    except OSError:
        s.close()
        if time.time() > end:
            raise
        time.sleep(0.1)
s.sendall(b"x" * {len})
s.shutdown(socket.SHUT_WR)
s.recv(1)
s.close()
"#
    );
    must(
        ns.cmd("timeout")
            .args(["30", "/usr/bin/python3", "-c", &script]),
    );
}

/// TCP through both VTEPs, once with every field inherited and once with fixed ones and DF
/// clear: vtepd sends its TSO super-frames with UDP GSO (seen whole on its own link), and on the
/// wire every data packet of vtepd carries the outer fields the kernel's do (inner TTL 33 and
/// TOS 0x28 where inherited), a valid UDP checksum and a source port in range.
#[test]
fn gso_sends_keep_the_outer_policy() {
    if !lab_available("gso_sends_keep_the_outer_policy") {
        return;
    }
    const LEN: usize = 2 << 20;
    let cases = [&CASES[2], &GSO_FIXED];
    let fabric = Fabric::new();
    let o = &fabric.observer;
    o.ip(&[
        "link", "add", "vx0", "type", "vxlan", "id", "42", "local", OBSERVER, "dstport", "4789",
    ]);
    for dst in [KERNEL, VTEPD] {
        must(o.cmd("bridge").args([
            "fdb",
            "append",
            "00:00:00:00:00:00",
            "dev",
            "vx0",
            "dst",
            dst,
        ]));
    }
    o.ip(&["addr", "add", "10.42.0.2/24", "dev", "vx0"]);
    o.ip(&["link", "set", "vx0", "up"]);
    for (i, case) in cases.into_iter().enumerate() {
        let (kernel, (lo, hi)) = (case.kernel, case.ports);
        let port = 7000 + i as u16;
        let _vx = fabric.kernel_vtep(kernel);
        fabric
            .kernel
            .ip(&["addr", "add", "10.42.0.10/24", "dev", "vx0"]);
        let _d = fabric.vtepd(case.vtepd, &["--address", "10.42.0.11/24"]);
        let wire = Capture::start(o, "udp dst port 4789 and not src host 192.0.2.2");
        let sent = Capture::start(&fabric.vtepd, "udp dst port 4789");
        let mut sink = tcp_sink(o, port, 2);
        tcp_send(&fabric.kernel, port, LEN);
        tcp_send(&fabric.vtepd, port, LEN);
        let _ = sink.wait();

        // On vtepd's own link a UDP GSO send shows whole, longer than the MTU.
        let whole = outer(&sent, "ip.len > 1500");
        assert!(
            !whole.is_empty(),
            "{kernel}: vtepd sent no UDP GSO super-packet"
        );
        let mut seen = BTreeMap::new();
        for src in [KERNEL, VTEPD] {
            let data = outer(&wire, &format!("ip.src == {src} && udp.length > 1000"));
            // A capture may miss some of a fast stream: a sample is enough.
            assert!(
                data.len() >= 100,
                "{kernel}: {src}: {} data packets captured",
                data.len()
            );
            let kinds: std::collections::BTreeSet<_> = data
                .iter()
                .map(|p| {
                    assert!((lo..=hi).contains(&p.src_port), "{kernel}: {src}: {p:?}");
                    (p.ttl, p.tos, p.df, p.csum_kind())
                })
                .collect();
            eprintln!(
                "{kernel}: {src}: {} data packets, outer (ttl, tos, df, csum) {kinds:?}",
                data.len()
            );
            seen.insert(src, kinds);
        }
        eprintln!("{kernel}: vtepd's UDP GSO sends: {}", whole.len());
        assert_eq!(seen[KERNEL].len(), 1, "{kernel}: {seen:?}");
        assert_eq!(
            seen[VTEPD], seen[KERNEL],
            "{kernel}: vtepd's and the kernel's"
        );
        assert!(
            seen[VTEPD].iter().all(|k| k.3 == "valid"),
            "{kernel}: {seen:?}"
        );
    }
}
