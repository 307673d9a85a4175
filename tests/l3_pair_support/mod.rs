//! Shared by the L3 tests over two hosts (l3_ipip_offload, l3_vxlan_offload, trace): vtepd L3
//! IPIP (overlay 10.43.N.1/24 on host N, a route to the other's /24) or L3 VXLAN (VNI 45,
//! overlay 10.45.0.N/24) on TUN tun0 in each host of a [`Pair`]. Include it next to
//! `mod daemon_support;`.
#![allow(dead_code)] // each test binary uses a different part

use crate::daemon_support::{Daemon, Netns, Pair};
use std::time::Duration;

/// vtepd L3 IPIP in host `me` (192.0.2.`me`) routing 10.43.`other`.0/24 to host `other`.
pub fn ipip_daemon(ns: &Netns, me: u8, other: u8, threads: &str) -> Daemon {
    ipip_daemon_with(ns, me, other, threads, &[])
}

/// [`ipip_daemon`] dual-stack: fd00:43:`me`::1/64 on the device and a route for the other's
/// fd00:43:`other`::/64 (protocol 41).
pub fn ipip_daemon6(ns: &Netns, me: u8, other: u8, threads: &str) -> Daemon {
    let (addr, route) = (
        format!("fd00:43:{me}::1/64"),
        format!("fd00:43:{other}::/64=192.0.2.{other}"),
    );
    let extra = ["--address6", &addr, "--route", &route];
    ipip_daemon_with(ns, me, other, threads, &extra)
}

fn ipip_daemon_with(ns: &Netns, me: u8, other: u8, threads: &str, extra: &[&str]) -> Daemon {
    let args = [
        "--mode",
        "l3",
        "--encap",
        "ipip",
        "--dev",
        "tun0",
        "--local",
        &format!("192.0.2.{me}"),
        "--address",
        &format!("10.43.{me}.1/24"),
        "--route",
        &format!("10.43.{other}.0/24=192.0.2.{other}"),
        "--threads",
        threads,
    ];
    Daemon::start(ns, &[&args[..], extra].concat())
}

/// vtepd L3 VXLAN in host `me` (192.0.2.`me`, overlay 10.45.0.`me`/24) with host `other` as
/// its peer.
pub fn l3vx_daemon(ns: &Netns, me: u8, other: u8, threads: &str) -> Daemon {
    l3vx_daemon_with(ns, me, other, threads, &[])
}

/// [`l3vx_daemon`] dual-stack: IPv6 overlay fd00:45::`me`/64 too.
pub fn l3vx_daemon6(ns: &Netns, me: u8, other: u8, threads: &str) -> Daemon {
    l3vx_daemon_with(
        ns,
        me,
        other,
        threads,
        &["--address6", &format!("fd00:45::{me}/64")],
    )
}

fn l3vx_daemon_with(ns: &Netns, me: u8, other: u8, threads: &str, extra: &[&str]) -> Daemon {
    let args = [
        "--mode",
        "l3",
        "--encap",
        "vxlan",
        "--dev",
        "tun0",
        "--vni",
        "45",
        "--local",
        &format!("192.0.2.{me}"),
        "--peer",
        &format!("192.0.2.{other}"),
        "--address",
        &format!("10.45.0.{me}/24"),
        "--threads",
        threads,
    ];
    Daemon::start(ns, &[&args[..], extra].concat())
}

/// [`l3vx_daemon`] with more flags.
pub fn l3vx_daemon_extra(ns: &Netns, me: u8, other: u8, extra: &[&str]) -> Daemon {
    l3vx_daemon_with(ns, me, other, "1", extra)
}

/// A pair with IPv6 off and `start` run in both hosts; returns once A pings `b_addr` through
/// the tunnel (≤ 10 s: ARP resolved in L3 VXLAN).
fn pair(
    start: fn(&Netns, u8, u8, &str) -> Daemon,
    threads: &str,
    b_addr: &str,
) -> (Pair, Daemon, Daemon) {
    let p = Pair::new();
    p.a.disable_ipv6();
    p.b.disable_ipv6();
    let a = start(&p.a, 1, 2, threads);
    let b = start(&p.b, 2, 1, threads);
    assert!(
        p.a.ping_within(b_addr, Duration::from_secs(10)),
        "{}\n{}",
        a.log_text(),
        b.log_text()
    );
    (p, a, b)
}

/// Two IPIP daemons with `threads` workers each, pinging each other (A reaches 10.43.2.1).
pub fn ipip_pair(threads: &str) -> (Pair, Daemon, Daemon) {
    pair(ipip_daemon, threads, "10.43.2.1")
}

/// [`ipip_pair`] dual-stack (IPv6 only on the TUN devices); returns once A pings B over both.
pub fn ipip_pair6(threads: &str) -> (Pair, Daemon, Daemon) {
    dual_stack(pair(ipip_daemon6, threads, "10.43.2.1"), "fd00:43:2::1")
}

/// `(p, a, b)` once A pings `b_addr6` too.
fn dual_stack((p, a, b): (Pair, Daemon, Daemon), b_addr6: &str) -> (Pair, Daemon, Daemon) {
    assert!(
        p.a.ping_within(b_addr6, Duration::from_secs(10)),
        "{}\n{}",
        a.log_text(),
        b.log_text()
    );
    (p, a, b)
}

/// Two L3 VXLAN daemons with `threads` workers each, pinging each other (A reaches 10.45.0.2).
pub fn l3vx_pair(threads: &str) -> (Pair, Daemon, Daemon) {
    pair(l3vx_daemon, threads, "10.45.0.2")
}

/// [`l3vx_pair`] dual-stack (IPv6 only on the TUN devices: fd00:45::1 and ::2); returns once
/// A pings B over both.
pub fn l3vx_pair6(threads: &str) -> (Pair, Daemon, Daemon) {
    dual_stack(pair(l3vx_daemon6, threads, "10.45.0.2"), "fd00:45::2")
}
