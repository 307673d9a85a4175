//! `vtepd capture` run against a test daemon, and tshark's reading of what it wrote.

use crate::daemon_support::{BIN, Daemon, run, wait_calling};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long an armed capture may take to collect its packets.
pub const CAPTURE_WAIT: Duration = Duration::from_secs(20);

/// Runs `vtepd capture ARGS -w FILE` against `d`, calling `trigger` until it exits by itself
/// (its count or budget reached) or [`CAPTURE_WAIT`] passes; the file and the summary it
/// printed on stderr.
pub fn capture(d: &Daemon, args: &[&str], mut trigger: impl FnMut()) -> (PathBuf, String) {
    let file = d.control.with_extension("pcapng");
    let mut child = Command::new(BIN)
        .arg("capture")
        .args(args)
        .arg("-w")
        .arg(&file)
        .arg("--control")
        .arg(&d.control)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // SIGINT when it has not finished: the client stops its session.
    let done = wait_calling(&mut child, CAPTURE_WAIT, &mut trigger);
    let out = child.wait_with_output().unwrap();
    let summary = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        done,
        "capture {args:?} did not finish: {summary}{}",
        d.log_text()
    );
    assert!(out.status.success(), "capture {args:?}: {summary}");
    (file, summary)
}

/// tshark's reading of `file`: for each packet, the fields `fields` separated by `|` (a field
/// with several values, like the outer and inner ip.src, has them joined by commas).
pub fn tshark(file: &PathBuf, extra: &[&str], fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(file).args(extra);
    cmd.args(["-T", "fields", "-E", "separator=|"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = run(&mut cmd);
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect()
}
