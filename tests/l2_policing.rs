//! MAC-move dampening and storm control on the wire: a vtepd L2 daemon in a namespace, fed by
//! a scapy-free Python sender (plain sockets) from the peer namespace or the TAP.
mod daemon_support;
mod l2_pair_support;

use daemon_support::{Daemon, Pair, must, wait_until};
use l2_pair_support::l2_daemon;
use std::time::{Duration, Instant};

fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {key}: {v}"))
}

fn drop_of(v: &serde_json::Value, reason: &str) -> u64 {
    v["drops"][reason]
        .as_u64()
        .unwrap_or_else(|| panic!("no drop reason {reason}: {v}"))
}

/// Waits (≤ 10 s) until `key` of A's stats grew by at least `by` since `before`; the stats then.
fn settled(a: &Daemon, before: &serde_json::Value, key: &str, by: u64) -> serde_json::Value {
    let mut last = before.clone();
    let ok = wait_until(Duration::from_secs(10), || {
        last = a.stats();
        n(&last, key) - n(before, key) >= by
    });
    assert!(ok, "{key} never grew by {by}: {last}");
    last
}

const FLAPPER: &str = "02:99:00:00:00:07";

/// Python that sends VXLAN (VNI 42) frames from FLAPPER to broadcast, alternately from the
/// source addresses given, `count` in all, pausing 20 ms between two so they arrive in order.
fn flap(p: &Pair, sources: &[&str], count: usize) {
    let srcs = sources
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(",");
    let script = format!(
        "import socket, time\n\
         socks = []\n\
         for a in [{srcs}]:\n    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n    s.bind((a, 0))\n    socks.append(s)\n\
         f = bytes([8,0,0,0,0,0,42,0]) + bytes([0xff]*6) + bytes.fromhex('{mac}') + bytes([0x88,0xb5]) + bytes(46)\n\
         for i in range({count}):\n    socks[i % len(socks)].sendto(f, ('192.0.2.1', 4789))\n    time.sleep(0.02)\n",
        mac = FLAPPER.replace(':', ""),
    );
    must(p.b.cmd("/usr/bin/python3").args(["-c", &script]));
}

/// A MAC moving between B's two addresses freezes after `moves` moves: its frames are still
/// delivered, the entry stays on its last remote (shown frozen in `fdb show`), the freeze is
/// counted and logged once, and `fdb del` ends it.
#[test]
fn a_flapping_mac_is_frozen_on_its_last_remote() {
    let p = Pair::new();
    p.a.disable_ipv6();
    p.b.disable_ipv6();
    p.b.ip(&["addr", "add", "192.0.2.3/24", "dev", "eth0"]);
    let flags = [
        "--vni",
        "42",
        "--threads",
        "1",
        "--mac-move",
        "moves=3,window=60,hold=30",
    ];
    let a = l2_daemon(&p.a, 1, 2, &flags);
    a.ok(&["peers", "add", "192.0.2.3"]);
    let before = a.stats();
    // Learned from .2, moved to .3, .2, .3 (3 moves); the 4th move (to .2) freezes it on .3
    // and is held, as is the next from .2 (the frames from .3 only refresh it).
    flap(&p, &["192.0.2.2", "192.0.2.3"], 8);
    let after = settled(&a, &before, "tx_device", 8);
    let delta = |k: &str| n(&after, k) - n(&before, k);
    assert_eq!(
        (
            delta("mac_moves"),
            delta("mac_frozen"),
            delta("mac_moves_held")
        ),
        (3, 1, 2),
        "{after}"
    );
    assert_eq!(delta("tx_device"), 8, "every frame delivered: {after}");
    let entry = a
        .fdb()
        .into_iter()
        .find(|e| e["mac"] == FLAPPER)
        .expect("the flapping MAC is in the FDB");
    assert_eq!(entry["remote"], "192.0.2.3", "{entry}");
    let left = entry["frozen_secs"].as_u64().expect("shown frozen");
    assert!((1..=30).contains(&left), "{entry}");
    assert!(a.ok(&["fdb", "show"]).contains(" frozen "));
    let logged = |a: &Daemon| a.log_text().matches("frozen on its current remote").count();
    assert!(
        wait_until(Duration::from_secs(5), || logged(&a) == 1),
        "logged once: {}",
        a.log_text()
    );
    // Deleting the entry ends the freeze: the MAC is learned afresh where it is seen next.
    a.ok(&["fdb", "del", FLAPPER]);
    let before = a.stats();
    flap(&p, &["192.0.2.2"], 1);
    settled(&a, &before, "learned", 1);
    let entry = a.fdb().into_iter().find(|e| e["mac"] == FLAPPER).unwrap();
    assert_eq!(entry["remote"], "192.0.2.2", "{entry}");
    assert!(entry.get("frozen_secs").is_none(), "{entry}");
    assert_eq!(logged(&a), 1, "{}", a.log_text());
}

/// With dampening off (moves=0) the same flapping moves the entry every time.
#[test]
fn with_dampening_off_every_move_is_made() {
    let p = Pair::new();
    p.a.disable_ipv6();
    p.b.disable_ipv6();
    p.b.ip(&["addr", "add", "192.0.2.3/24", "dev", "eth0"]);
    let flags = ["--vni", "42", "--threads", "1", "--mac-move", "moves=0"];
    let a = l2_daemon(&p.a, 1, 2, &flags);
    a.ok(&["peers", "add", "192.0.2.3"]);
    let before = a.stats();
    flap(&p, &["192.0.2.2", "192.0.2.3"], 8);
    let after = settled(&a, &before, "tx_device", 8);
    assert_eq!(
        n(&after, "mac_moves") - n(&before, "mac_moves"),
        7,
        "{after}"
    );
    assert_eq!(n(&after, "mac_frozen"), 0, "{after}");
}

/// Sends from A's TAP (AF_PACKET on vx0): `count` frames to each destination MAC given, about
/// 50 a millisecond (fast, but not faster than a debug build drains the TAP's queue). Returns
/// the seconds it took.
fn blast(p: &Pair, dsts: &[&str], count: usize) -> f64 {
    let dsts = dsts
        .iter()
        .map(|d| format!("bytes.fromhex('{}')", d.replace(':', "")))
        .collect::<Vec<_>>()
        .join(",");
    let script = format!(
        "import socket, time\n\
         s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
         s.bind(('vx0', 0))\n\
         src = bytes.fromhex('02aa00000001')\n\
         t = time.monotonic()\n\
         for d in [{dsts}]:\n    f = d + src + bytes([0x88, 0xb5]) + bytes(46)\n    for i in range({count}):\n        s.send(f)\n        if i % 50 == 0: time.sleep(0.001)\n\
         print(time.monotonic() - t)\n"
    );
    must(p.a.cmd("/usr/bin/python3").args(["-c", &script]))
        .trim()
        .parse()
        .unwrap()
}

/// A storm from the TAP is cut to the configured rate per kind: what exceeds it is dropped
/// under the kind's reason, what passes reaches the peer, and a kind without a limit passes
/// whole.
#[test]
fn a_storm_from_the_device_is_cut_to_the_limit_per_kind() {
    const RATE: u64 = 200;
    const FRAMES: u64 = 3000;
    let p = Pair::new();
    p.a.disable_ipv6();
    p.b.disable_ipv6();
    let flags = [
        "--vni",
        "42",
        "--threads",
        "1",
        "--storm",
        "broadcast=200,unknown_unicast=200",
    ];
    let a = l2_daemon(&p.a, 1, 2, &flags);
    let b = l2_daemon(&p.b, 2, 1, &["--vni", "42", "--threads", "1"]);
    let (a0, b0) = (a.stats(), b.stats());
    let started = Instant::now();
    let secs = blast(
        &p,
        &[
            "ff:ff:ff:ff:ff:ff",
            "02:bb:00:00:00:09",
            "01:00:5e:01:02:03",
        ],
        FRAMES as usize,
    );
    let a1 = settled(&a, &a0, "rx_device", 3 * FRAMES);
    let elapsed = started.elapsed().as_secs_f64();
    let d = |k: &str| n(&a1, k) - n(&a0, k);
    let dropped = |r: &str| drop_of(&a1, r) - drop_of(&a0, r);
    let (bcast, unknown, mcast) = (
        dropped("storm_broadcast"),
        dropped("storm_unknown_unicast"),
        dropped("storm_multicast"),
    );
    // Python sends thousands of frames a second: far over 200/s.
    assert!(
        secs < (FRAMES / RATE) as f64,
        "the sender was too slow ({secs} s)"
    );
    assert!(bcast > 0 && unknown > 0, "{a1}");
    assert_eq!(mcast, 0, "multicast has no limit: {a1}");
    // What passed of each limited kind: at most the rate over the time it took, plus a
    // burst of a tenth of a second.
    let most = (RATE as f64 * elapsed) as u64 + RATE / 10 + 1;
    for (kind, cut) in [("broadcast", bcast), ("unknown unicast", unknown)] {
        let passed = FRAMES - cut;
        assert!(
            passed <= most,
            "{kind}: {passed} passed in {elapsed} s: {a1}"
        );
    }
    // Every frame read is flooded to the one peer or dropped, and the peer gets what passed.
    assert_eq!(
        d("rx_device"),
        d("tx_tunnel") + n(&a1, "drops_total") - n(&a0, "drops_total"),
        "{a1}"
    );
    assert_eq!(d("tx_tunnel"), 3 * FRAMES - bcast - unknown, "{a1}");
    let mut b1 = b0.clone();
    let arrived = wait_until(Duration::from_secs(10), || {
        b1 = b.stats();
        n(&b1, "rx_tunnel") - n(&b0, "rx_tunnel") >= d("tx_tunnel")
    });
    assert!(arrived, "B got {b1}");
}
