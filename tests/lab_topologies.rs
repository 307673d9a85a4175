//! The lab's topology scripts, run as a test in quiet mode: lab/demo.sh (three vtepd hosts, six pods,
//! every pod pings every other), lab/store-fabric.sh (hosts given only an etcd store, over an IPv4
//! and over an IPv6 underlay) and
//! lab/interop-kernel.sh (two vtepd hosts and a kernel vxlan host
//! reach each other's pods, learn each other's MACs, and vtepd's datagrams follow the wire rules).
//! Each must exit 0.

mod lab_util;

use lab_util::{Lab, lab_available, repo};

/// Runs `script --quiet ARGS` with `env` added; it must exit 0 and print nothing.
fn run_script(tag: &str, script: &str, args: &[&str], env: &[(&str, &str)]) {
    let lab = Lab::new(tag);
    let out = lab
        .command("timeout")
        .envs(env.iter().copied())
        .args(["--kill-after=5", "120"])
        .arg(repo().join(script))
        .arg("--quiet")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} --quiet failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.is_empty(),
        "{script} --quiet printed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn demo_script_succeeds() {
    if lab_available("demo_script_succeeds") {
        run_script("tdemo", "lab/demo.sh", &[], &[]);
    }
}

/// lab/store-fabric.sh: hosts given only an etcd store find each other, join and leave.
#[test]
fn store_fabric_script_succeeds() {
    if lab_available("store_fabric_script_succeeds") {
        run_script("tstore", "lab/store-fabric.sh", &[], &[]);
    }
}

/// lab/store-fabric.sh --ipv6: the same over an IPv6 underlay (the hosts have no IPv4 address
/// there, so every ping crossed VXLAN over IPv6) with etcd on an IPv6 address.
#[test]
fn store_fabric_script_succeeds_over_ipv6() {
    if lab_available("store_fabric_script_succeeds_over_ipv6") {
        run_script("tstsix", "lab/store-fabric.sh", &["--ipv6"], &[]);
    }
}

#[test]
fn interop_kernel_script_succeeds() {
    if lab_available("interop_kernel_script_succeeds") {
        run_script("tintk", "lab/interop-kernel.sh", &[], &[]);
    }
}

/// RFC 7348 §5 (the wire rules in ARCHITECTURE.md): the UDP source port comes from a hash of the
/// inner flow, in 49152-65535, so the underlay's ECMP spreads flows (the kernel vxlan device does
/// this). interop-kernel.sh checks it on the captured datagrams with LAB_CHECK_SRCPORT=1.
#[test]
fn interop_vtepd_source_ports_follow_the_inner_flow() {
    if lab_available("interop_vtepd_source_ports_follow_the_inner_flow") {
        run_script(
            "tsport",
            "lab/interop-kernel.sh",
            &[],
            &[("LAB_CHECK_SRCPORT", "1")],
        );
    }
}
