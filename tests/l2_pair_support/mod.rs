//! Shared by the L2 multi-worker tests (multicore, churn, multicore_integrity): a pair of vtepd
//! L2 daemons over the veth underlay of a [`Pair`] (VNI 42, overlay 10.9.0.0/24), and the
//! per-worker rows of `stats --json`. Include it next to `mod daemon_support;`.
#![allow(dead_code)] // each test binary uses a different part

use crate::daemon_support::{Daemon, Netns, Pair};
use serde_json::Value;
use std::time::Duration;

/// Starts vtepd L2 in host `me` of a pair (192.0.2.`me`, overlay 10.9.0.`me`/24 on TAP vx0)
/// with host `other` as its peer, plus `extra` flags.
pub fn l2_daemon(ns: &Netns, me: u8, other: u8, extra: &[&str]) -> Daemon {
    let (local, address, peer) = (
        format!("192.0.2.{me}"),
        format!("10.9.0.{me}/24"),
        format!("192.0.2.{other}"),
    );
    let mut args = vec![
        "--dev",
        "vx0",
        "--local",
        &local,
        "--address",
        &address,
        "--peer",
        &peer,
    ];
    args.extend_from_slice(extra);
    Daemon::start(ns, &args)
}

/// A pair with IPv6 off (its multicast chatter would be flooded and blur the counters) and
/// vtepd L2 on VNI 42 with `--threads threads` on both hosts; returns once A pings B through the
/// tunnel (≤ 10 s).
pub fn two_daemons(threads: &str) -> (Pair, Daemon, Daemon) {
    let p = Pair::new();
    p.a.disable_ipv6();
    p.b.disable_ipv6();
    let flags = ["--vni", "42", "--threads", threads];
    let a = l2_daemon(&p.a, 1, 2, &flags);
    let b = l2_daemon(&p.b, 2, 1, &flags);
    assert!(
        p.a.ping_within("10.9.0.2", Duration::from_secs(10)),
        "{}",
        a.log_text()
    );
    (p, a, b)
}

/// Counter `key` of a `stats --json` object (or one of its worker rows).
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
