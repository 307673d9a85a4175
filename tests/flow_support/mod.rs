//! Shared by the multi-worker tests (L2 VXLAN, L3 IPIP): sequence-numbered UDP flows through
//! tests/multicore_tool.py between the two namespaces of a daemon pair, and the per-worker rows
//! of `stats --json`. Include it next to `mod daemon_support;`.

use crate::daemon_support::{Netns, Pair};
use serde_json::Value;
use std::process::{Child, Stdio};

const TOOL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/multicore_tool.py");
/// The Debian python with the standard library we need (the first python3 on PATH may differ).
const PYTHON: &str = "/usr/bin/python3";

/// Counter `key` of a JSON object (panics when missing).
pub fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// The `workers` rows of `stats --json`.
pub fn workers(st: &Value) -> Vec<Value> {
    st["workers"]
        .as_array()
        .unwrap_or_else(|| panic!("stats --json has no workers array: {st}"))
        .clone()
}

/// Checks that every per-worker counter sums to its total.
pub fn assert_rows_sum_to_totals(st: &Value) {
    let rows = workers(st);
    for key in [
        "rx_tunnel",
        "tx_tunnel",
        "rx_device",
        "tx_device",
        "flood_copies",
        "drops_total",
    ] {
        let sum: u64 = rows.iter().map(|w| n(w, key)).sum();
        assert_eq!(sum, n(st, key), "{key}: workers {rows:?} vs total in {st}");
    }
}

/// The networks' and peers' traffic against the totals, once the daemon is quiet (the totals
/// are published after each batch, the cells as they count, so one look may land between
/// them): every packet sent has a network and a peer row (or the overflow), every packet read
/// from or written to a device a network, and what the networks received the peers did.
/// Returns the problem seen last when it never adds up within 5 s.
#[allow(dead_code)]
pub fn traffic_sums_to_totals(d: &crate::daemon_support::Daemon) -> Result<(), String> {
    let sum = |rows: &Value, key: &str| -> u64 {
        rows.as_array()
            .map_or(0, |a| a.iter().map(|r| n(r, key)).sum())
    };
    let check = |st: &Value| -> Result<(), String> {
        let (nets, peers, over) = (&st["networks"], &st["peers"], &st["peers_overflow"]);
        for key in ["tx_tunnel", "tx_tunnel_bytes"] {
            let (total, in_nets) = (n(st, key), sum(nets, key));
            let in_peers = sum(peers, key) + n(over, key);
            if total != in_nets || total != in_peers {
                return Err(format!(
                    "{key}: total {total}, networks {in_nets}, peers {in_peers}"
                ));
            }
        }
        for key in [
            "rx_device",
            "rx_device_bytes",
            "tx_device",
            "tx_device_bytes",
        ] {
            if n(st, key) != sum(nets, key) {
                return Err(format!(
                    "{key}: total {}, networks {}",
                    n(st, key),
                    sum(nets, key)
                ));
            }
        }
        for key in ["rx_tunnel", "rx_tunnel_bytes"] {
            let (in_nets, in_peers) = (sum(nets, key), sum(peers, key) + n(over, key));
            if in_nets != in_peers || in_nets > n(st, key) {
                return Err(format!(
                    "{key}: total {}, networks {in_nets}, peers {in_peers}",
                    n(st, key)
                ));
            }
        }
        Ok(())
    };
    let mut last = Err("never looked".to_owned());
    crate::daemon_support::wait_until(std::time::Duration::from_secs(5), || {
        let st = d.stats();
        last = check(&st).map_err(|e| format!("{e}\n{st}"));
        last.is_ok()
    });
    last
}

/// A python helper process in a namespace.
fn tool(ns: &Netns, args: &[&str]) -> Child {
    ns.cmd("timeout")
        .args(["60", PYTHON, TOOL])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the python helper")
}

/// Waits for a helper; its stdout parsed as JSON (panics with its stderr otherwise).
fn finish(child: Child) -> Value {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "helper failed ({}): {text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("helper printed {text:?}: {e}"))
}

/// Sends `per_flow` sequence-numbered datagrams on each of `flows` UDP flows from A to B's
/// address `dst` and returns the receiver's report.
pub fn sequenced_flows(p: &Pair, dst: &str, flows: u32, per_flow: u32) -> Value {
    let mut rx = tool(&p.b, &["seq-recv", "7000", "2"]);
    // The receiver says "ready" on stderr once bound.
    let mut ready = false;
    if let Some(err) = rx.stderr.as_mut() {
        use std::io::Read;
        let mut b = [0u8; 6];
        ready = err.read_exact(&mut b).is_ok() && &b == b"ready\n";
    }
    assert!(ready, "the receiver did not start");
    let tx =
        p.a.cmd("timeout")
            .args(["60", PYTHON, TOOL, "seq-send", dst, "7000"])
            .args([flows.to_string(), per_flow.to_string()])
            .status()
            .unwrap();
    assert!(tx.success(), "sender failed: {tx}");
    finish(rx)
}

/// Five pings of 1000 bytes from `p.a` to `dst` across a pair of L3 daemons (`a` in `p.a`,
/// `b` in `p.b`, ARP already resolved, no IPv6): both count exactly 5 packets each way in
/// network `dev` (VNI `vni`) and for each other as peer: `tunnel` inner bytes a packet in the
/// tunnel (the IP packet in IPIP, behind an Ethernet header in VXLAN), 1028 on the device.
/// Returns `a`'s `stats` text.
#[allow(dead_code)]
pub fn five_pings_are_counted(
    p: &Pair,
    a: &crate::daemon_support::Daemon,
    b: &crate::daemon_support::Daemon,
    dst: &str,
    (dev, vni, mode): (&str, u64, &str),
    tunnel: u64,
) -> String {
    let net = |st: &Value| {
        st["networks"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["dev"] == dev))
            .cloned()
            .unwrap_or_else(|| panic!("no network {dev} in {st}"))
    };
    let peer = |st: &Value, remote: &str| {
        st["peers"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|r| r["vni"] == vni && r["remote"] == remote)
            })
            .cloned()
            .unwrap_or_else(|| serde_json::json!({"rx_tunnel": 0, "rx_tunnel_bytes": 0, "tx_tunnel": 0, "tx_tunnel_bytes": 0}))
    };
    let (a0, b0) = (a.stats(), b.stats());
    let out = crate::daemon_support::must(
        p.a.cmd("ping")
            .args(["-c", "5", "-i", "0.2", "-W", "2", "-s", "1000", dst]),
    );
    assert!(out.contains("5 received"), "{out}");
    let (a1, b1) = (a.stats(), b.stats());
    assert_eq!(a1["version"], 1, "{a1}");
    assert_eq!(a1["mode"], mode, "{a1}");
    const PACKET: u64 = 20 + 8 + 1000;
    let (n0, n1) = (net(&a0), net(&a1));
    assert_eq!(n1["vni"], vni, "{n1}");
    for (k, want) in [
        ("rx_tunnel", 5),
        ("rx_tunnel_bytes", 5 * tunnel),
        ("tx_tunnel", 5),
        ("tx_tunnel_bytes", 5 * tunnel),
        ("rx_device", 5),
        ("rx_device_bytes", 5 * PACKET),
        ("tx_device", 5),
        ("tx_device_bytes", 5 * PACKET),
    ] {
        assert_eq!(n(&n1, k) - n(&n0, k), want, "{k}: {n0} -> {n1}");
        assert_eq!(n(&a1, k) - n(&a0, k), want, "total {k}");
    }
    let (pa0, pa1) = (peer(&a0, "192.0.2.2"), peer(&a1, "192.0.2.2"));
    let (pb0, pb1) = (peer(&b0, "192.0.2.1"), peer(&b1, "192.0.2.1"));
    for (k, want) in [
        ("rx_tunnel", 5),
        ("rx_tunnel_bytes", 5 * tunnel),
        ("tx_tunnel", 5),
        ("tx_tunnel_bytes", 5 * tunnel),
    ] {
        assert_eq!(
            n(&pa1, k) - n(&pa0, k),
            want,
            "a's peer {k}: {pa0} -> {pa1}"
        );
        assert_eq!(
            n(&pb1, k) - n(&pb0, k),
            want,
            "b's peer {k}: {pb0} -> {pb1}"
        );
    }
    assert_eq!(pa1["dev"], dev);
    assert_eq!(n(&a1["peers_overflow"], "tx_tunnel"), 0);
    a.ok(&["stats"])
}
