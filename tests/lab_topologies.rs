//! The lab's topology scripts, run as a test in quiet mode: lab/demo.sh (three vtepd hosts, six pods,
//! every pod pings every other) and lab/interop-kernel.sh (two vtepd hosts and a kernel vxlan host
//! reach each other's pods and learn each other's MACs). Each must exit 0.

mod lab_util;

use lab_util::{Lab, lab_available, repo};

fn run_script(tag: &str, script: &str) {
    let lab = Lab::new(tag);
    let out = lab
        .command("timeout")
        .args(["--kill-after=5", "120"])
        .arg(repo().join(script))
        .arg("--quiet")
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
        run_script("tdemo", "lab/demo.sh");
    }
}

#[test]
fn interop_kernel_script_succeeds() {
    if lab_available("interop_kernel_script_succeeds") {
        run_script("tintk", "lab/interop-kernel.sh");
    }
}
