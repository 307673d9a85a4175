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
