//! lab/bench.sh runs and produces numbers: `--quick --modes kernel,ceiling_l2,ceiling_ipip,vtepd_l2
//! --json` must exit 0 and print one JSON object holding every figure of the modes as a positive
//! number, and vtepd's ratios to the kernel and to its ceiling. No figure is compared with any
//! expectation: speed is the benchmark's business, this only checks that it measures.

mod lab_util;

use lab_util::{Lab, lab_available, repo};
use serde_json::{Map, Value};

/// Figures every measured mode has, each a positive number.
const FIGURES: [&str; 7] = [
    "tcp1_gbps",
    "tcp4_gbps",
    "udp64_pps",
    "udp64_offered_pps",
    "rtt_p50_us",
    "rtt_p99_us",
    "cpu_s_per_gb",
];
/// Ratio keys of a vtepd mode (`<mode>_<name>_ratio`).
const RATIOS: [&str; 6] = ["tcp1", "tcp4", "udp64", "rtt_p50", "rtt_p99", "cpu"];

/// The ceiling (examples/ceiling.rs): `$BENCH_CEILING_BIN` (scripts/test.sh builds it with the
/// vtepd the tests run), else the one `cargo build --example ceiling` put next to this test's binary.
fn ceiling_bin() -> std::path::PathBuf {
    if let Some(bin) = std::env::var_os("BENCH_CEILING_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<this test> -> target/<profile>/examples/ceiling
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples/ceiling"))
        .expect("the test binary lives in target/<profile>/deps");
    assert!(
        bin.exists(),
        "{} is missing: build it (cargo build --example ceiling) or set BENCH_CEILING_BIN",
        bin.display()
    );
    bin
}

fn positive(json: &Map<String, Value>, key: &str) -> f64 {
    let v = json
        .get(key)
        .unwrap_or_else(|| panic!("bench JSON has no key {key}: {json:?}"));
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("bench JSON {key} is not a number: {v}"));
    assert!(x.is_finite() && x > 0.0, "bench JSON {key} = {x}, want > 0");
    x
}

#[test]
fn quick_bench_of_kernel_and_vtepd_l2_produces_numbers() {
    if !lab_available("quick_bench_of_kernel_and_vtepd_l2_produces_numbers") {
        return;
    }
    let lab = Lab::new("tbench");
    let out = lab
        .command("timeout")
        .args(["--kill-after=5", "150"])
        .arg(repo().join("lab/bench.sh"))
        .args([
            "--quick",
            "--modes",
            "kernel,ceiling_l2,ceiling_ipip,vtepd_l2",
            "--json",
        ])
        .env("BENCH_CEILING_BIN", ceiling_bin())
        .output()
        .expect("cannot run lab/bench.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "lab/bench.sh failed ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("lab/bench.sh --json printed no JSON object ({e}): {stdout}"));
    let json = json.as_object().expect("the bench JSON is an object");

    for mode in ["kernel_vxlan", "ceiling_l2", "vtepd_l2_vxlan"] {
        assert_eq!(
            json.get(&format!("{mode}_status")),
            Some(&Value::from("ok")),
            "{mode} was not measured"
        );
        for fig in FIGURES {
            positive(json, &format!("{mode}_{fig}"));
        }
        assert!(
            positive(json, &format!("{mode}_rtt_p99_us"))
                >= positive(json, &format!("{mode}_rtt_p50_us")),
            "{mode}: p99 below p50"
        );
    }
    let daemon_cpu = json
        .get("vtepd_l2_vxlan_daemon_cpu_s_per_gb")
        .and_then(Value::as_f64)
        .expect("vtepd's own CPU per GB is a number");
    assert!(daemon_cpu.is_finite() && daemon_cpu >= 0.0);
    for r in RATIOS {
        let name = |mode: &str| match r {
            "cpu" => format!("{mode}_cpu_s_per_gb"),
            "udp64" => format!("{mode}_udp64_pps"),
            rtt if rtt.starts_with("rtt") => format!("{mode}_{rtt}_us"),
            tcp => format!("{mode}_{tcp}_gbps"),
        };
        for (key, of) in [("ratio", "kernel_vxlan"), ("of_ceiling", "ceiling_l2")] {
            let ratio = positive(json, &format!("vtepd_l2_vxlan_{r}_{key}"));
            let want = positive(json, &name("vtepd_l2_vxlan")) / positive(json, &name(of));
            assert!(
                (ratio - want).abs() <= want * 1e-3,
                "vtepd_l2_vxlan_{r}_{key} = {ratio}, the figures give {want}"
            );
        }
    }
    // The IPIP ceiling is a raw-socket rate: one and two sending threads.
    assert_eq!(json.get("ceiling_ipip_status"), Some(&Value::from("ok")));
    positive(json, "ceiling_ipip_tcp1_gbps");
    positive(json, "ceiling_ipip_tcp4_gbps");
    // Modes not asked for are not in the object.
    assert!(!json.keys().any(|k| k.starts_with("bare_veth_")));
}

/// Bad usage is refused with status 2 and a one-line reason, before anything is built or created.
#[test]
fn bad_bench_usage_exits_2() {
    for args in [
        &["--modes", "nope"][..],
        &["--repeat", "0"],
        &["--profile", "gprof"],
        &["--frobnicate"],
        &["--plot"],
        &["--modes", "ceiling_l9"],
    ] {
        let out = std::process::Command::new(repo().join("lab/bench.sh"))
            .args(args)
            .output()
            .expect("cannot run lab/bench.sh");
        assert_eq!(out.status.code(), Some(2), "lab/bench.sh {args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "lab/bench.sh {args:?}: {err}");
        assert!(err.starts_with("lab/bench.sh: "), "{err}");
    }
}
