//! scripts/soak.sh runs end to end: a 20-second soak (`SOAK_SECONDS=20`, iperf3 at 20 Mbit/s) of
//! every mode under traffic, control churn, learning churn and malformed bursts must exit 0 with
//! the verdict PASS, and its report must hold the sampled figures: RSS, threads and fds (first /
//! max / last) of each of the six daemons, traffic counters of each mode, the churn and the
//! malformed bursts; its samples.csv must hold a row per daemon and sample. No figure is compared
//! with an expectation beyond being sampled: whether memory grows is the long soak's business.
//! Also: `--help` and bad usage, which need no root.

mod lab_util;

use lab_util::{lab_available, repo, vtepd_bin};
use std::path::Path;
use std::process::{Command, Stdio};

const DAEMONS: [(&str, &str); 6] = [
    ("l2a", "l2-vxlan"),
    ("l2b", "l2-vxlan"),
    ("ipa", "l3-ipip"),
    ("ipb", "l3-ipip"),
    ("l3a", "l3-vxlan"),
    ("l3b", "l3-vxlan"),
];

/// "first/max/last" as three numbers, checked for first <= max and last <= max.
fn triple(s: &str, what: &str) -> [u64; 3] {
    let v: Vec<u64> = s
        .split('/')
        .map(|x| {
            x.parse()
                .unwrap_or_else(|_| panic!("{what}: {s:?} is not first/max/last"))
        })
        .collect();
    assert_eq!(v.len(), 3, "{what}: {s:?} is not first/max/last");
    assert!(
        v[0] <= v[1] && v[2] <= v[1],
        "{what}: {s:?}: max below first or last"
    );
    [v[0], v[1], v[2]]
}

/// The report's row of `daemon`: `name mode pid rss threads fds fds_no_gso gso_max`.
fn check_daemon_row(report: &str, daemon: &str, mode: &str) {
    let row = report
        .lines()
        .find(|l| l.split_whitespace().next() == Some(daemon))
        .unwrap_or_else(|| panic!("the report has no row for {daemon}:\n{report}"));
    let f: Vec<&str> = row.split_whitespace().collect();
    assert!(f.len() >= 7, "{daemon}'s row is short: {row}");
    assert_eq!(f[1], mode, "{row}");
    assert!(f[2].parse::<u32>().is_ok_and(|p| p > 1), "pid in {row}");
    let rss = triple(f[3], &format!("{daemon} rss"));
    assert!(
        rss.iter().all(|&k| k > 0),
        "{daemon} RSS not sampled: {row}"
    );
    let threads = triple(f[4], &format!("{daemon} threads"));
    // The main thread, the control thread and at least one worker.
    assert!(threads.iter().all(|&t| t >= 3), "{daemon} threads: {row}");
    let fds = triple(f[5], &format!("{daemon} fds"));
    assert!(fds.iter().all(|&n| n >= 3), "{daemon} fds: {row}");
    let fixed = triple(f[6], &format!("{daemon} fds without GSO senders"));
    assert!(fixed[1] <= fds[1], "{row}");
}

fn check_samples_csv(path: &Path) {
    let csv = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut lines = csv.lines();
    let header: Vec<&str> = lines
        .next()
        .expect("samples.csv is empty")
        .split(',')
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("samples.csv has no column {name}: {header:?}"))
    };
    let (d, rss, thr, fds, tx) = (
        col("daemon"),
        col("rss_kb"),
        col("threads"),
        col("fds"),
        col("tx_tunnel"),
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    for (daemon, _) in DAEMONS {
        let mine: Vec<_> = rows.iter().filter(|r| r[d] == daemon).collect();
        assert!(mine.len() >= 3, "{daemon}: {} samples", mine.len());
        for r in &mine {
            for c in [rss, thr, fds] {
                assert!(
                    r[c].parse::<u64>().is_ok_and(|v| v > 0),
                    "{daemon}: {} = {:?} in {r:?}",
                    header[c],
                    r[c]
                );
            }
        }
        let last_tx: u64 = mine.last().unwrap()[tx].parse().expect("tx_tunnel");
        assert!(last_tx > 0, "{daemon} sent nothing into the tunnel");
    }
}

#[test]
fn a_short_soak_passes_and_reports_its_figures() {
    if !lab_available("a_short_soak_passes_and_reports_its_figures") {
        return;
    }
    let results = std::env::temp_dir().join(format!("vtepd-soak-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&results);
    let out = Command::new("timeout")
        .args(["--kill-after=10", "240"])
        .arg(repo().join("scripts/soak.sh"))
        .env("SOAK_SECONDS", "20")
        .env("SOAK_RATE", "20M")
        .env("SOAK_RESULTS", &results)
        .env("VTEPD_BIN", vtepd_bin())
        .env("LAB_SKIP_SETUP", "1")
        .stdin(Stdio::null())
        .output()
        .expect("cannot run scripts/soak.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/soak.sh failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let report = std::fs::read_to_string(results.join("report.txt"))
        .unwrap_or_else(|e| panic!("no report.txt in {}: {e}", results.display()));
    assert!(
        stdout.contains(report.trim()),
        "stdout does not hold the report file"
    );
    assert!(
        report.lines().any(|l| l == "verdict: PASS"),
        "no PASS verdict:\n{report}"
    );
    for (daemon, mode) in DAEMONS {
        check_daemon_row(&report, daemon, mode);
    }
    // Traffic counters of each mode: packets both ways through the tunnel.
    for mode in ["l2-vxlan", "l3-ipip", "l3-vxlan"] {
        let row = report
            .lines()
            .find(|l| l.trim_start().starts_with(mode) && l.split_whitespace().count() == 7)
            .unwrap_or_else(|| panic!("no traffic row for {mode}:\n{report}"));
        let n: Vec<u64> = row
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().expect("a traffic counter"))
            .collect();
        assert!(n.iter().all(|&x| x > 0), "{mode}: {row}");
    }
    for want in [
        "iperf3 rounds",
        "drops by reason",
        "control churn",
        "malformed input: ",
        "end check: after a flush",
        "shutdown: exit status on SIGTERM: l2a 0, l2b 0, ipa 0, ipb 0, l3a 0, l3b 0",
    ] {
        assert!(
            report.contains(want),
            "the report lacks {want:?}:\n{report}"
        );
    }
    assert!(
        !report.contains("malformed input: no bursts"),
        "no malformed burst:\n{report}"
    );
    check_samples_csv(&results.join("samples.csv"));
    let _ = std::fs::remove_dir_all(&results);
}

#[test]
fn soak_help_and_bad_usage() {
    let soak = repo().join("scripts/soak.sh");
    let out = Command::new(&soak)
        .arg("--help")
        .output()
        .expect("cannot run scripts/soak.sh");
    assert!(out.status.success(), "--help: {}", out.status);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("usage: sudo scripts/soak.sh [MINUTES]"),
        "{help}"
    );
    for args in [&["abc"][..], &["--frobnicate"], &["0.1"]] {
        let out = Command::new(&soak)
            .args(args)
            .env_remove("SOAK_SECONDS")
            .output()
            .expect("cannot run scripts/soak.sh");
        assert_eq!(out.status.code(), Some(2), "scripts/soak.sh {args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "scripts/soak.sh {args:?}: {err}");
        assert!(err.starts_with("scripts/soak.sh: "), "{err}");
    }
}
