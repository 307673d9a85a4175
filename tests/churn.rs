//! Control-plane churn under load, in network namespaces: while iperf3 pushes TCP through the
//! tunnel (`--threads 2` on both ends), a loop adds and deletes static FDB entries, flushes the
//! FDB and adds and deletes peers through the control socket. Afterwards: both daemons are
//! alive, traffic still flows on every worker, the static entries and peers are exactly what
//! the loop left, and the counters add up. Needs root, iperf3 and /usr/bin/python3.
//!
//! VTEPD_CHURN_SECS sets how long the churn lasts (default 30).

mod daemon_support;
#[allow(dead_code)] // the sequenced flows are not used here
mod flow_support;
mod l2_pair_support;

use flow_support::{assert_rows_sum_to_totals, n, workers};
use l2_pair_support::two_daemons;
use serde_json::Value;
use std::process::Stdio;
use std::time::{Duration, Instant};

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn churn_secs() -> u64 {
    std::env::var("VTEPD_CHURN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
}

/// MAC of churn entry `i`.
fn mac(i: u32) -> String {
    format!("02:00:5e:00:{:02x}:{:02x}", (i >> 8) & 0xff, i & 0xff)
}

#[test]
fn control_churn_under_load_leaves_consistent_state() {
    let secs = churn_secs();
    let (p, a, b) = two_daemons("2");

    let mut server =
        p.b.cmd("iperf3")
            .args(["-s", "-1", "-B", "10.9.0.2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let client =
        p.a.cmd("timeout")
            .args([
                &(secs + 30).to_string(),
                "iperf3",
                "-c",
                "10.9.0.2",
                "-P",
                "4",
            ])
            .args(["-t", &secs.to_string(), "-J"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();

    // The churn: every round adds and deletes static entries and a peer on both daemons,
    // and now and then flushes learned entries (A relearns B's MAC from the traffic) or
    // everything.
    let end = Instant::now() + SECS(secs);
    let mut round = 0u32;
    while Instant::now() < end {
        for (d, other) in [(&a, "192.0.2.2"), (&b, "192.0.2.1")] {
            let m = mac(round % 512);
            let extra_peer = format!("192.0.2.{}", 100 + round % 50);
            d.ok(&["fdb", "add", &m, "192.0.2.77"]);
            d.ok(&["peers", "add", &extra_peer]);
            if round % 3 == 0 {
                d.ok(&["fdb", "del", &m]);
            }
            d.ok(&["peers", "del", &extra_peer]);
            match round % 10 {
                4 => {
                    d.ok(&["fdb", "flush", "--learned-only"]);
                }
                9 => {
                    d.ok(&["fdb", "flush"]);
                }
                _ => {}
            }
            // The real peer must survive the loop.
            let peers = d.ok(&["peers", "show"]);
            assert!(peers.contains(other), "{peers}");
        }
        round += 1;
    }
    let out = client.wait_with_output().unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        out.status.success(),
        "iperf3 failed under churn ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let moved = report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    assert!(moved > 0, "no bytes moved: {report}");
    eprintln!("churn: {round} rounds in {secs} s, {moved} bytes through the tunnel");

    // Both daemons alive, answering, and the tunnel still carries traffic.
    assert!(p.a.ping_within("10.9.0.2", SECS(10)), "{}", a.log_text());
    assert!(p.b.ping_within("10.9.0.1", SECS(10)), "{}", b.log_text());

    // Leave a known state: no churn entries, then exactly these static entries.
    for d in [&a, &b] {
        d.ok(&["fdb", "flush"]);
        let want: Vec<(String, String)> = (0..8)
            .map(|i| (mac(1000 + i), format!("192.0.2.{}", 60 + i)))
            .collect();
        for (m, r) in &want {
            d.ok(&["fdb", "add", m, r]);
        }
        let fdb = d.fdb();
        let mut statics: Vec<(String, String)> = fdb
            .iter()
            .filter(|e| e["kind"] == "static")
            .map(|e| {
                (
                    e["mac"].as_str().unwrap().to_owned(),
                    e["remote"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        statics.sort();
        assert_eq!(statics, want, "static entries after churn: {fdb:?}");
        let peers: Value = serde_json::from_str(&d.ok(&["peers", "show", "--json"])).unwrap();
        assert_eq!(
            peers[0]["peers"].as_array().map(Vec::len),
            Some(1),
            "{peers}"
        );
    }

    // Every worker still moves packets: several flows after the churn.
    let before = [a.stats(), b.stats()];
    for port in 7100..7116 {
        let _ =
            p.a.cmd("timeout")
                .args(["5", "/usr/bin/python3", "-c"])
                .arg(format!(
                    "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
                 s.bind(('0.0.0.0',{port}))\n[s.sendto(b'x'*100,('10.9.0.2',9)) for _ in range(20)]"
                ))
                .status();
    }
    let after = [a.stats(), b.stats()];
    for (x, y) in before.iter().zip(&after) {
        for (wx, wy) in workers(x).iter().zip(workers(y).iter()) {
            let moved = n(wy, "rx_device") + n(wy, "rx_tunnel");
            assert!(
                moved > n(wx, "rx_device") + n(wx, "rx_tunnel"),
                "a worker is stuck: {x} -> {y}"
            );
        }
    }
    // Counters: the rows sum to the totals, and nothing was sent that was not received.
    for st in &after {
        assert_rows_sum_to_totals(st);
        assert!(n(st, "tx_device") <= n(st, "rx_tunnel"), "{st}");
        assert!(
            n(st, "tx_tunnel") <= n(st, "rx_device") + n(st, "flood_copies"),
            "{st}"
        );
    }
}
