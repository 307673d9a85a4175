//! Usage contract of the L3 VXLAN and ARP flags (`--neigh`, `--arp-suppress`, `--mode l3
//! --encap vxlan`, `neigh ...`): a bad value or combination gives one line on stderr, status 2,
//! and creates nothing (checked inside a fresh network namespace). Needs root.

mod cli_support;
mod daemon_support;

use cli_support::RejectNs;
use daemon_support::{BIN, run};
use std::process::Command;

#[test]
fn bad_neigh_and_arp_flags_are_one_line_status_2_and_create_nothing() {
    let rj = RejectNs::new("n");
    let l3 = ["--mode", "l3", "--encap", "vxlan"];
    let l3a = [&l3[..], &["--address", "10.244.0.0/32"]].concat();
    let with = |head: &[&str], tail: &[&str]| -> Vec<String> {
        head.iter().chain(tail).map(|s| s.to_string()).collect()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (with(&[], &["--neigh", "10.244.1.0"]), "IP=MAC"),
        (with(&[], &["--neigh", "10.244.1.0=zz"]), "MAC"),
        (
            with(&[], &["--neigh", "10.244.1.0=01:00:5e:00:00:01"]),
            "unicast",
        ),
        (
            with(&[], &["--neigh", "224.0.0.5=02:00:00:00:00:01"]),
            "cannot be a neighbour",
        ),
        (
            with(&[], &["--neigh", "10.244.1.0=02:00:00:00:00:01"]),
            "only used by --arp-suppress",
        ),
        (with(&l3, &[]), "needs --address"),
        (
            with(&l3a, &["--arp-suppress"]),
            "--arp-suppress is for --mode l2",
        ),
        (
            with(&l3a, &["--route", "10.244.0.0/16=10.244.1.0"]),
            "covers our own --address",
        ),
        (
            with(&l3a, &["--route", "192.0.0.0/16=10.244.1.0"]),
            "covers",
        ),
        (
            with(
                &l3a,
                &[
                    "--route",
                    "10.244.1.0/24=10.244.1.0",
                    "--route",
                    "10.244.1.0/24=10.244.1.9",
                ],
            ),
            "twice",
        ),
        (
            with(
                &["--mode", "l3", "--encap", "ipip"],
                &["--route", "10.1.0.0/24=192.0.2.2", "--arp-suppress"],
            ),
            "IPIP has no link layer",
        ),
    ];
    for (extra, want) in &cases {
        rj.refuse(extra, want);
    }
    rj.assert_nothing_created("run");
}

#[test]
fn bad_neigh_client_arguments_are_status_2() {
    for args in [
        &["neigh", "add", "10.0.0.1"][..],
        &["neigh", "add", "10.0.0.1", "ff:ff:ff:ff:ff:ff"],
        &["neigh", "add", "0.0.0.0", "02:00:00:00:00:01"],
        &["neigh", "del", "10.0.0"],
        &["neigh", "show", "--vni", "16777216"],
    ] {
        let o = run(Command::new(BIN).args(args));
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&o.stderr).lines().count(),
            1,
            "{args:?}"
        );
    }
    let o = run(Command::new(BIN).args(["run", "--help"]));
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in ["--neigh", "--arp-suppress"] {
        assert!(help.contains(flag), "run --help lacks {flag}");
    }
    let o = run(Command::new(BIN).args(["neigh", "--help"]));
    let help = String::from_utf8_lossy(&o.stdout);
    for c in ["show", "add", "del"] {
        assert!(help.contains(c), "neigh --help lacks {c}");
    }
}
