//! Shared by the L2 multi-worker tests (multicore, churn, multicore_integrity): a pair of vtepd
//! L2 daemons over the veth underlay of a [`Pair`] (VNI 42, overlay 10.9.0.0/24). Include it
//! next to `mod daemon_support;`.
#![allow(dead_code)] // each test binary uses a different part

use crate::daemon_support::{Daemon, Netns, Pair};
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

/// A pair with IPv6 off and vtepd L2 on VNI 42 (and the flags `extra`) in host A only (host
/// B is for a peer the test makes: the kernel's vxlan device, scapy).
pub fn daemon_on_a(extra: &[&str]) -> (Pair, Daemon) {
    let p = Pair::new();
    p.a.disable_ipv6();
    p.b.disable_ipv6();
    let mut flags = vec!["--vni", "42"];
    flags.extend_from_slice(extra);
    let a = l2_daemon(&p.a, 1, 2, &flags);
    (p, a)
}

/// A pair with IPv6 off (its multicast chatter would be flooded and blur the counters) and
/// vtepd L2 on VNI 42 with `--threads threads` on both hosts; returns once A pings B through the
/// tunnel (≤ 10 s).
pub fn two_daemons(threads: &str) -> (Pair, Daemon, Daemon) {
    two_daemons_with(threads, &[])
}

/// [`two_daemons`], both daemons also given the flags `extra`.
pub fn two_daemons_with(threads: &str, extra: &[&str]) -> (Pair, Daemon, Daemon) {
    let p = Pair::new();
    p.a.disable_ipv6();
    p.b.disable_ipv6();
    let mut flags = vec!["--vni", "42", "--threads", threads];
    flags.extend_from_slice(extra);
    let a = l2_daemon(&p.a, 1, 2, &flags);
    let b = l2_daemon(&p.b, 2, 1, &flags);
    assert!(
        p.a.ping_within("10.9.0.2", Duration::from_secs(10)),
        "{}",
        a.log_text()
    );
    (p, a, b)
}
