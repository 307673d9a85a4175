//! `--threads 2` end to end, in network namespaces: flows spread over both workers, no flow is
//! reordered, what one worker learns every worker uses, and the per-worker counters in
//! `stats --json` sum to the totals. Needs root (netns, TAP) and /usr/bin/python3.

mod daemon_support;
mod flow_support;
mod l2_pair_support;

use daemon_support::{Daemon, Pair};
use flow_support::{assert_rows_sum_to_totals, n, traffic_sums_to_totals, workers};
use l2_pair_support::{l2_daemon, two_daemons, two_daemons_with};
use std::time::Duration;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Sequenced flows to B's overlay address.
fn sequenced_flows(p: &Pair, flows: u32, per_flow: u32) -> serde_json::Value {
    flow_support::sequenced_flows(p, "10.9.0.2", flows, per_flow)
}

#[test]
fn flows_spread_over_workers_in_order_and_counters_sum() {
    let (p, a, b) = two_daemons("2");
    for d in [&a, &b] {
        assert_eq!(workers(&d.stats()).len(), 2, "two workers in stats --json");
    }
    let report = sequenced_flows(&p, 16, 300);
    assert_eq!(n(&report, "reordered"), 0, "a flow was reordered: {report}");
    assert_eq!(n(&report, "flows"), 16, "every flow arrived: {report}");
    // Some loss under load is allowed (UDP), but most must arrive.
    assert!(n(&report, "received") > 16 * 300 / 2, "{report}");

    // Both of A's workers read frames from the TAP, both of B's received datagrams.
    let (sa, sb) = (a.stats(), b.stats());
    for (st, key) in [
        (&sa, "rx_device"),
        (&sa, "tx_tunnel"),
        (&sb, "rx_tunnel"),
        (&sb, "tx_device"),
    ] {
        for w in workers(st) {
            assert!(n(&w, key) > 0, "a worker never saw {key}: {st}");
        }
    }
    assert_rows_sum_to_totals(&a.stats());
    assert_rows_sum_to_totals(&b.stats());
    // The per-network and per-peer cells of both workers add up to the totals.
    traffic_sums_to_totals(&a).unwrap();
    traffic_sums_to_totals(&b).unwrap();
}

#[test]
fn what_one_worker_learns_every_worker_uses() {
    let (p, a, _b) = two_daemons("2");
    // B's MAC is known on A after the ping (learned by whichever worker got B's reply).
    let b_mac = p.b.mac("vx0");
    assert!(
        a.fdb().iter().any(|e| e["mac"] == b_mac.as_str()),
        "{:?}",
        a.fdb()
    );
    let before = a.stats();
    let report = sequenced_flows(&p, 16, 100);
    assert!(n(&report, "received") > 0, "{report}");
    let after = a.stats();
    // Every worker sent unicast to B: nothing was flooded, though both workers carried flows.
    assert_eq!(
        n(&after, "flood_copies"),
        n(&before, "flood_copies"),
        "frames to a learned MAC were flooded: {after}"
    );
    let (wb, wa) = (workers(&before), workers(&after));
    for (x, y) in wb.iter().zip(&wa) {
        assert!(
            n(y, "tx_tunnel") > n(x, "tx_tunnel"),
            "a worker sent nothing: {before} -> {after}"
        );
    }
}

#[test]
fn one_thread_still_works_and_reports_one_worker() {
    let (p, a, _b) = two_daemons("1");
    let report = sequenced_flows(&p, 4, 50);
    assert_eq!(n(&report, "reordered"), 0, "{report}");
    let st = a.stats();
    assert_eq!(workers(&st).len(), 1, "{st}");
    assert_rows_sum_to_totals(&st);
}

/// `--busy-poll`: workers that never sleep still carry every flow, in order, and a SIGTERM
/// still stops the daemon cleanly.
#[test]
fn busy_polling_workers_forward_every_flow_in_order() {
    let (p, a, b) = two_daemons_with("2", &["--busy-poll"]);
    let report = sequenced_flows(&p, 8, 200);
    assert_eq!(n(&report, "reordered"), 0, "a flow was reordered: {report}");
    assert_eq!(n(&report, "flows"), 8, "every flow arrived: {report}");
    assert!(n(&report, "received") > 8 * 200 / 2, "{report}");
    for mut d in [a, b] {
        assert_rows_sum_to_totals(&d.stats());
        d.signal("TERM");
        let status = d.wait_exit(SECS(10));
        assert!(
            status.is_some_and(|s| s.success()),
            "{status:?}: {}",
            d.log_text()
        );
    }
}

#[test]
fn default_thread_count_is_the_cpu_count() {
    let p = Pair::new();
    let a = Daemon::start(
        &p.a,
        &[
            "--dev",
            "vx0",
            "--local",
            "192.0.2.1",
            "--peer",
            "192.0.2.2",
        ],
    );
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(workers(&a.stats()).len(), cpus.min(64));
}

#[test]
fn an_existing_single_queue_tap_is_attached_with_one_queue() {
    let p = Pair::new();
    p.a.disable_ipv6();
    p.b.disable_ipv6();
    p.a.ip(&["tuntap", "add", "dev", "vx0", "mode", "tap"]);
    let a = l2_daemon(&p.a, 1, 2, &["--threads", "2"]);
    let _b = l2_daemon(&p.b, 2, 1, &["--threads", "2"]);
    assert!(p.a.ping_within("10.9.0.2", SECS(10)), "{}", a.log_text());
    assert!(a.log_text().contains("not multi-queue"), "{}", a.log_text());
    let report = sequenced_flows(&p, 8, 50);
    assert_eq!(n(&report, "reordered"), 0, "{report}");
    let st = a.stats();
    assert_eq!(workers(&st).len(), 2, "{st}");
    // Only worker 0 reads the single queue; both may write to it.
    assert_eq!(n(&workers(&st)[1], "rx_device"), 0, "{st}");
    assert!(n(&workers(&st)[0], "rx_device") > 0, "{st}");
    assert_rows_sum_to_totals(&st);
}
