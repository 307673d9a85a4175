//! VXLAN over an IPv6 underlay, in network namespaces, with Linux's vxlan device (over IPv6)
//! as the independent peer.
//!
//! Topology: two namespaces joined by a veth pair on 2001:db8:42::/64 (`nodad`: usable at once);
//! A (2001:db8:42::1) runs vtepd L2 with VNI 42 and B (2001:db8:42::2) as its peer, B has
//! `ip link add vx0 type vxlan id 42 local 2001:db8:42::2 remote 2001:db8:42::1 dstport 4789`.
//! Overlay 10.42.0.0/24: .1 on vtepd's TAP, .2 on vx0.
//!
//! L2 (one rig) checks: pings both ways; a 2 MiB TCP transfer A -> B arrives byte-exact; each
//! side learned the other's MAC behind the other's IPv6 address (vtepd's `fdb show`, the
//! kernel's `bridge fdb show dev vx0`); and tshark, on B's underlay link, decodes vtepd's
//! outer IPv6/UDP/VXLAN packets with VNI 42, the two addresses, port 4789 and a UDP checksum
//! that is not zero and that tshark finds correct; an IPv4 peer or FDB remote is refused at run
//! time (`peers add`, `fdb add`). L3 VXLAN on the same topology (a TUN device): pings both ways
//! and learning on both sides. Needs root, tcpdump, tshark and ethtool.

mod capture_support;
mod daemon_support;
mod transfer_support;

use daemon_support::{Capture, Daemon, Netns, Pair, must, run, wait_until};
use std::process::Stdio;
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

/// The pair on its IPv6 underlay (its IPv4 addresses stay unused), and the kernel's vx0 on B
/// (VNI 42, flooding to A, 10.42.0.2/24).
fn kernel_peer() -> Pair {
    kernel_peer_with(&[])
}

/// [`kernel_peer`], B's vx0 with the extra vxlan options `extra`.
fn kernel_peer_with(extra: &[&str]) -> Pair {
    let p = Pair::new();
    for (ns, addr) in [(&p.a, VTEPD), (&p.b, KERNEL)] {
        ns.ip(&["addr", "add", &format!("{addr}/64"), "dev", "eth0", "nodad"]);
    }
    // Checksums finished in software on both links, as a NIC would: on B a veth hands the
    // kernel VTEP's inner TCP checksums over partial otherwise (and vtepd reads the inner
    // frames as they come); on A, vtepd's UDP GSO sends would cross the veth as one partial
    // super-packet each, where tshark on B is to read the datagrams of the wire.
    for ns in [&p.a, &p.b] {
        must(ns.cmd("ethtool").args(["-K", "eth0", "tx", "off"]));
    }
    let mut vx = vec![
        "link", "add", "vx0", "type", "vxlan", "id", "42", "local", KERNEL, "remote", VTEPD,
        "dstport", "4789", "dev", "eth0",
    ];
    vx.extend_from_slice(extra);
    p.b.ip(&vx);
    p.b.ip(&["addr", "add", "10.42.0.2/24", "dev", "vx0"]);
    p.b.ip(&["link", "set", "vx0", "up"]);
    p
}

/// vtepd on A (VNI 42, the kernel as its peer, 10.42.0.1/24, plus `args`), once pings cross
/// both ways.
fn vtepd_pinging(p: &Pair, args: &[&str]) -> Daemon {
    let mut all = vec!["--local", VTEPD, "--vni", "42", "--peer", KERNEL];
    all.extend_from_slice(&["--address", "10.42.0.1/24"]);
    all.extend_from_slice(args);
    let d = Daemon::start(&p.a, &all);
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
    d
}

/// L3 VXLAN over IPv6: vtepd is the Ethernet endpoint (its own MAC and ARP) on a TUN device;
/// the kernel's vx0 resolves it over the tunnel. Pings both ways, and each side has the
/// other's MAC behind the other's IPv6 address.
#[test]
fn l3_vxlan_interoperates_with_the_kernel_over_ipv6() {
    let t0 = Instant::now();
    let p = kernel_peer();
    let d = vtepd_pinging(&p, &["--mode", "l3", "--encap", "vxlan", "--dev", "tun42"]);
    let mac_b = p.b.mac("vx0");
    let learned = d.fdb().into_iter().find(|e| e["mac"] == mac_b.as_str());
    assert_eq!(
        learned.as_ref().map(|e| e["remote"].clone()),
        Some(KERNEL.into()),
        "{:?}",
        d.fdb()
    );
    let neigh = must(
        p.b.cmd("ip")
            .args(["neigh", "show", "10.42.0.1", "dev", "vx0"]),
    );
    let mac_a = neigh
        .split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .unwrap_or_else(|| panic!("the kernel did not resolve 10.42.0.1: {neigh}"))
        .to_owned();
    assert_eq!(kernel_remote_of(&p, &mac_a).as_deref(), Some(VTEPD));
    eprintln!("ipv6_underlay l3: {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
fn l2_vxlan_interoperates_with_the_kernel_over_ipv6() {
    let t0 = Instant::now();
    let p = kernel_peer();
    let cap = Capture::start(&p.b, "udp port 4789");
    let d = vtepd_pinging(&p, &["--dev", "vx42"]);

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
        "-e",
        "ipv6.flow",
        "-e",
        "tcp.srcport",
        "-e",
        "tcp.dstport",
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
    // One flow label per inner TCP flow, whether a packet left as a segment of a UDP GSO send
    // (the kernel writes its outer header) or on the raw socket (vtepd writes it).
    let mut labels = std::collections::HashMap::new();
    for r in &rows {
        assert_eq!(r[..3], [KERNEL, "4789", "42"], "{r:?}");
        assert_ne!(r[3], "0x0000", "a zero UDP checksum over IPv6: {r:?}");
        assert_eq!(
            r[4], "1",
            "tshark finds the UDP checksum wrong (1: good): {r:?}"
        );
        if r.len() > 7 && !r[6].is_empty() {
            let flow = labels.entry((r[6], r[7])).or_insert(r[5]);
            assert_eq!(*flow, r[5], "two flow labels for one TCP flow: {r:?}");
        }
    }
    assert!(!labels.is_empty(), "no inner TCP seen: {fields}");
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
    underlay_capture_reads_as_ipv6(&p, &d);
    eprintln!("ipv6_underlay: {:.1} s", t0.elapsed().as_secs_f64());
}

/// `vtepd capture` of the underlay during pings A -> B: tshark reads each outer packet as
/// IPv6/UDP/VXLAN (VNI 42, port 4789) between the two addresses, the received ones with the
/// note that their outer header was rebuilt, and the ICMP inside.
fn underlay_capture_reads_as_ipv6(p: &Pair, d: &Daemon) {
    let args = [
        "--count",
        "4",
        "--side",
        "underlay",
        "--filter",
        "proto=icmp",
    ];
    let (file, summary) = capture_support::capture(d, &args, || {
        let mut ping = p.a.cmd("ping");
        ping.args(["-c", "1", "-W", "1", "10.42.0.2"]);
        let _ = run(ping.stdout(Stdio::null()));
    });
    assert!(summary.contains("4 packets captured"), "{summary}");
    let fields = [
        "frame.comment",
        "ipv6.src",
        "ipv6.dst",
        "udp.dstport",
        "vxlan.vni",
        "icmp.type",
    ];
    let rows = capture_support::tshark(&file, &[], &fields);
    let outs = rows.iter().filter(|r| r[0].starts_with("out")).count();
    assert_eq!((rows.len(), outs), (4, 2), "two pings, each way: {rows:?}");
    for r in &rows {
        let out = r[0].starts_with("out");
        let (src, dst, icmp) = if out {
            (VTEPD, KERNEL, "8")
        } else {
            (KERNEL, VTEPD, "0")
        };
        assert_eq!(r[1..], [src, dst, "4789", "42", icmp], "{r:?}");
        assert_eq!(
            r[0].contains("outer IPv6/UDP header rebuilt"),
            !out,
            "{r:?}"
        );
    }
    gso_segments_captured(p, d);
}

/// Path MTU over IPv6: host A (vtepd, 2001:db8:a::1) - router R - host B (the kernel's vx0,
/// 2001:db8:b::2), the R-B link of MTU 1400. vtepd's first oversize datagram toward B draws an
/// ICMPv6 "packet too big" (1400) from R; vtepd's ICMPv6 listener takes it (`path_mtu` learned
/// 1400 toward B) and from then on answers an inner IPv4 packet with DF that does not fit with
/// an ICMP "fragmentation needed" carrying 1330 (1400 - 70).
#[test]
fn l2_learns_the_ipv6_path_mtu_from_a_router() {
    let t0 = Instant::now();
    let (a, r, b) = (Netns::new("a6"), Netns::new("r6"), Netns::new("b6"));
    a.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "ra", "netns", &r.name,
    ]);
    b.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "rb", "netns", &r.name,
    ]);
    let (host_a, host_b) = ("2001:db8:a::1", "2001:db8:b::2");
    for (ns, dev, addr) in [
        (&a, "eth0", "2001:db8:a::1/64"),
        (&r, "ra", "2001:db8:a::fe/64"),
        (&r, "rb", "2001:db8:b::fe/64"),
        (&b, "eth0", "2001:db8:b::2/64"),
    ] {
        ns.ip(&["addr", "add", addr, "dev", dev, "nodad"]);
    }
    r.ip(&["link", "set", "rb", "mtu", "1400"]);
    b.ip(&["link", "set", "eth0", "mtu", "1400"]);
    for (ns, dev) in [(&a, "eth0"), (&r, "ra"), (&r, "rb"), (&b, "eth0")] {
        ns.ip(&["link", "set", dev, "up"]);
    }
    a.ip(&[
        "-6",
        "route",
        "add",
        "2001:db8:b::/64",
        "via",
        "2001:db8:a::fe",
    ]);
    b.ip(&[
        "-6",
        "route",
        "add",
        "2001:db8:a::/64",
        "via",
        "2001:db8:b::fe",
    ]);
    must(
        r.cmd("sysctl")
            .args(["-qw", "net.ipv6.conf.all.forwarding=1"]),
    );
    b.ip(&[
        "link", "add", "vx0", "type", "vxlan", "id", "42", "local", host_b, "remote", host_a,
        "dstport", "4789", "dev", "eth0",
    ]);
    b.ip(&["addr", "add", "10.42.0.2/24", "dev", "vx0"]);
    b.ip(&["link", "set", "vx0", "up"]);
    let d = Daemon::start(
        &a,
        &[
            "--dev",
            "vx42",
            "--local",
            host_a,
            "--vni",
            "42",
            "--peer",
            host_b,
            "--address",
            "10.42.0.1/24",
        ],
    );
    assert!(a.ping_within("10.42.0.2", WAIT), "A -> B: {}", d.log_text());
    // 1400 bytes of inner IPv4 packet: 1470 outside, more than the R-B link carries.
    let mut said = String::new();
    let told = wait_until(WAIT, || {
        let out =
            run(a
                .cmd("ping")
                .args(["-M", "do", "-s", "1372", "-c", "1", "-W", "1", "10.42.0.2"]));
        said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        said.contains("mtu = 1330") || said.contains("mtu=1330")
    });
    assert!(told, "no answer with MTU 1330: {said}\n{}", d.log_text());
    let st = d.stats();
    let learned = st["path_mtu"]["learned"]
        .as_array()
        .and_then(|l| l.iter().find(|e| e["remote"] == host_b))
        .and_then(|e| e["mtu"].as_u64());
    assert_eq!(learned, Some(1400), "{st}");
    assert!(
        a.ping_within("10.42.0.2", WAIT),
        "small packets still cross"
    );
    eprintln!("ipv6_underlay pmtu: {:.1} s", t0.elapsed().as_secs_f64());
}

/// `vtepd capture` of the underlay's TCP during a transfer A -> B: vtepd's TCP super-frames
/// leave as UDP GSO sends over IPv6 (the segments noted so); tshark reads every packet, each
/// way, as IPv6/UDP/VXLAN, VNI 42.
fn gso_segments_captured(p: &Pair, d: &Daemon) {
    let file = Payload::new("v6gso", 7, 512 << 10);
    let mut sent = false;
    let args = [
        "--count",
        "40",
        "--side",
        "underlay",
        "--filter",
        "proto=tcp",
    ];
    let (pcap, summary) = capture_support::capture(d, &args, || {
        if !sent {
            sent = true;
            transfer(
                Ends(&p.a.name, &p.b.name),
                &file,
                "10.42.0.2",
                5202,
                0,
                65536,
            );
        }
    });
    assert!(summary.contains("40 packets captured"), "{summary}");
    let fields = ["frame.comment", "ipv6.src", "ipv6.dst", "vxlan.vni"];
    let rows = capture_support::tshark(&pcap, &[], &fields);
    assert_eq!(rows.len(), 40, "{rows:?}");
    for r in &rows {
        let out = r[0].starts_with("out");
        let (src, dst) = if out {
            (VTEPD, KERNEL)
        } else {
            (KERNEL, VTEPD)
        };
        assert_eq!(r[1..], [src, dst, "42"], "{r:?}");
    }
    assert!(
        rows.iter()
            .any(|r| r[0].contains("a segment of a UDP GSO send")),
        "no GSO segment among vtepd's TCP packets: {rows:?}"
    );
}

/// RFC 6935/6936 over IPv6: B's kernel VTEP sends zero UDP checksums (`udp6zerocsumtx`). vtepd
/// by default (as the kernel's `udp6zerocsumrx` off) never sees B's datagrams, so no ping
/// crosses; with `--udp6-zero-csum-rx on` pings cross both ways (the same rig: only the flag
/// differs).
#[test]
fn zero_udp_checksums_are_taken_only_with_udp6_zero_csum_rx() {
    let t0 = Instant::now();
    let p = kernel_peer_with(&["udp6zerocsumtx", "udp6zerocsumrx"]);
    let args = [
        "--local", VTEPD, "--vni", "42", "--peer", KERNEL, "--dev", "vx42",
    ];
    let address = ["--address", "10.42.0.1/24"];
    let d = Daemon::start(&p.a, &[&args[..], &address].concat());
    assert!(
        !p.a.ping_within("10.42.0.2", Duration::from_secs(2)),
        "a ping crossed though B's replies carry a zero UDP checksum: {}",
        d.log_text()
    );
    drop(d);
    let _d = vtepd_pinging(&p, &["--dev", "vx42", "--udp6-zero-csum-rx", "on"]);
    eprintln!(
        "ipv6_underlay zero checksums: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
