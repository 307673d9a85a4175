//! Every packet the kernel refuses or drops on the underlay is counted, in network namespaces:
//! a shaping qdisc that drops on the way out (the send sockets report it with IP_RECVERR), and
//! a receive queue that overflowed while the daemon was stopped (read on the tick, not only
//! with the next datagram). Needs root (netns, TAP, tc) and /usr/bin/python3.

mod daemon_support;
mod l2_pair_support;

use daemon_support::{Daemon, must, wait_until};
use l2_pair_support::two_daemons;
use std::time::Duration;

fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

fn drops(v: &serde_json::Value) -> u64 {
    n(v, "drops_total")
}

fn drop_of(v: &serde_json::Value, reason: &str) -> u64 {
    v["drops"][reason]
        .as_u64()
        .unwrap_or_else(|| panic!("no drops.{reason} in {v}"))
}

/// A's underlay shapes to 5 Mbit/s with a 10 KB queue while A's pod floods 10 Mbit/s of UDP
/// through the tunnel: every frame read from the TAP is either sent or counted as dropped, and
/// what the qdisc dropped shows as `tunnel_tx_nobufs`.
/// Waits (≤ 10 s) until A's `rx_device` grew by at least `min` since `before` and then stood
/// still for 300 ms (everything read has been handled); A's stats then.
fn quiet(a: &Daemon, before: &serde_json::Value, min: u64) -> serde_json::Value {
    let mut last = before.clone();
    let settled = wait_until(Duration::from_secs(10), || {
        std::thread::sleep(Duration::from_millis(300));
        let now = a.stats();
        let still = n(&now, "rx_device") == n(&last, "rx_device");
        last = now;
        still && n(&last, "rx_device") >= n(before, "rx_device") + min
    });
    assert!(settled, "A never read the flood: {last}");
    last
}

#[test]
fn qdisc_drops_on_the_way_out_are_counted() {
    let (p, a, _b) = two_daemons("1");
    must(p.a.cmd("tc").args([
        "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", "5mbit", "burst", "5kb", "limit",
        "10kb",
    ]));
    let before = a.stats();
    // 3000 datagrams of 1000 bytes, as fast as the socket takes them (about 10x the rate).
    must(p.a.cmd("/usr/bin/python3").args([
        "-c",
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for _ in range(3000):\n    s.sendto(b'x' * 1000, ('10.9.0.2', 9))\n",
    ]));
    // Everything read from the TAP has been handled once the counters stop moving (the TAP's
    // own queue drops part of the flood before A reads it: not A's to count).
    let after = quiet(&a, &before, 1000);
    let read = n(&after, "rx_device") - n(&before, "rx_device");
    let sent = n(&after, "tx_tunnel") - n(&before, "tx_tunnel");
    let dropped = drops(&after) - drops(&before);
    let nobufs = drop_of(&after, "tunnel_tx_nobufs") - drop_of(&before, "tunnel_tx_nobufs");
    assert_eq!(
        read,
        sent + dropped,
        "every frame read is sent or counted as dropped: {after}"
    );
    let qdisc = must(p.a.cmd("tc").args(["-s", "qdisc", "show", "dev", "eth0"]));
    let qdisc_dropped: u64 = qdisc
        .split("dropped ")
        .nth(1)
        .and_then(|r| r.split([',', ' ']).next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no dropped count in {qdisc}"));
    eprintln!(
        "read {read}, sent {sent}, dropped {dropped} (nobufs {nobufs}), qdisc dropped \
         {qdisc_dropped}"
    );
    assert!(qdisc_dropped > 100, "the qdisc should drop a lot: {qdisc}");
    assert!(
        nobufs > 0 && nobufs <= qdisc_dropped,
        "tunnel_tx_nobufs {nobufs}, qdisc dropped {qdisc_dropped}: {after}"
    );
    // Nearly all of the qdisc's drops are ours. Not all: it may also drop the kernel's own
    // packets (ARP), and a datagram refused after the first of a `sendmmsg` call is dropped
    // without an error (the call returns how many were sent, the error is lost: sendmmsg(2))
    // and vtepd sends it again with its next call, so the qdisc drops one attempt that vtepd
    // never saw fail. How many calls end that way depends on the machine's timing (2-3% of
    // the drops on a 6.18 kernel; under 20 in all on others).
    assert!(
        nobufs + nobufs / 10 + 20 >= qdisc_dropped,
        "tunnel_tx_nobufs {nobufs}, qdisc dropped {qdisc_dropped}"
    );
}

/// The same with TCP through the tunnel: A sends its segments as UDP GSO super-datagrams, which
/// the qdisc drops whole; each must still be counted (the UDP socket reports the drop only with
/// IP_RECVERR), segment by segment.
#[test]
fn qdisc_drops_of_gso_sends_are_counted() {
    let (p, a, _b) = two_daemons("1");
    must(p.a.cmd("tc").args([
        "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", "20mbit", "burst", "20kb",
        "limit", "30kb",
    ]));
    let mut server =
        p.b.cmd("iperf3")
            .args(["-s", "-1", "-p", "5399"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let before = a.stats();
    must(
        p.a.cmd("iperf3")
            .args(["-c", "10.9.0.2", "-p", "5399", "-t", "2"]),
    );
    let _ = server.wait();
    let last = quiet(&a, &before, 1);
    let read = n(&last, "rx_device") - n(&before, "rx_device");
    let sent = n(&last, "tx_tunnel") - n(&before, "tx_tunnel");
    let dropped = drops(&last) - drops(&before);
    let nobufs = drop_of(&last, "tunnel_tx_nobufs") - drop_of(&before, "tunnel_tx_nobufs");
    eprintln!("read {read}, sent {sent}, dropped {dropped} (nobufs {nobufs})");
    assert!(nobufs > 0, "the qdisc dropped, nothing was counted: {last}");
    assert_eq!(
        read,
        sent + dropped,
        "every segment read is sent or counted: {last}"
    );
}

/// The kernel's UDP counters of a namespace (`/proc/net/snmp`): (InDatagrams, RcvbufErrors).
fn udp_mib(ns: &daemon_support::Netns) -> (u64, u64) {
    let snmp = must(ns.cmd("cat").arg("/proc/net/snmp"));
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let (names, values) = (udp.next().unwrap(), udp.next().unwrap());
    let field = |name: &str| -> u64 {
        let i = names.split_whitespace().position(|f| f == name).unwrap();
        values.split_whitespace().nth(i).unwrap().parse().unwrap()
    };
    (field("InDatagrams"), field("RcvbufErrors"))
}

/// A is stopped (SIGSTOP) while B sends 40000 small VXLAN datagrams to it, then 2000 large
/// ones: its socket's queue overflows, and no datagram queued after the large ones' drops
/// carries their count (a full queue of small datagrams has no room left for a large one).
/// After SIGCONT, with no traffic after the burst (B's daemon is stopped too), the overflow
/// still shows as `rx_queue_full`: exactly what the kernel counted as dropped for a full receive
/// buffer, while `rx_tunnel` is exactly what it delivered.
#[test]
fn a_receive_queue_overflow_is_counted_without_later_traffic() {
    let (p, a, b) = two_daemons("1");
    // B's daemon stays stopped: nothing it sends (its kernel's ARP refreshes through the
    // tunnel) reaches A after the burst.
    b.signal("STOP");
    let before = a.stats();
    let mib_before = udp_mib(&p.a);
    a.signal("STOP");
    // Well-formed datagrams from B (a peer) for VNI 42 with a small inner frame.
    must(p.b.cmd("/usr/bin/python3").args([
        "-c",
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('192.0.2.2', 0))\n\
         d = bytes([8, 0, 0, 0, 0, 0, 42, 0]) + bytes([2, 0x99, 0, 0, 0, 0xaa, 2, 0x99, 0, 0, 0, 1, 0x88, 0xb5]) + bytes(46)\n\
         for _ in range(40000):\n    s.sendto(d, ('192.0.2.1', 4789))\n\
         big = d + bytes(1300)\n\
         for _ in range(2000):\n    s.sendto(big, ('192.0.2.1', 4789))\n",
    ]));
    // What A's full socket dropped, by the kernel's own count (the queued rest is counted as
    // delivered when A reads it).
    let overflowed = udp_mib(&p.a).1 - mib_before.1;
    assert!(overflowed > 0, "the queue should have overflowed");
    a.signal("CONT");
    let (mut last, mut delivered) = (before.clone(), 0);
    let counted = wait_until(Duration::from_secs(10), || {
        last = a.stats();
        delivered = udp_mib(&p.a).0 - mib_before.0;
        n(&last, "rx_tunnel") - n(&before, "rx_tunnel") == delivered
            && drop_of(&last, "rx_queue_full") - drop_of(&before, "rx_queue_full") == overflowed
    });
    let received = n(&last, "rx_tunnel") - n(&before, "rx_tunnel");
    let overflow = drop_of(&last, "rx_queue_full") - drop_of(&before, "rx_queue_full");
    assert!(
        counted,
        "rx_tunnel {received} (kernel delivered {delivered}), rx_queue_full {overflow} \
         (kernel dropped {overflowed}): {last}"
    );
    assert!(received > 0);
}
