//! Shared by the usage-contract tests (cli_usage, l3_vxlan_cli): the one-line error check, and a
//! namespace in which `vtepd run` is expected to refuse and must create nothing. Include it next
//! to `mod daemon_support;`.
#![allow(dead_code)] // each test binary uses a different part

use crate::daemon_support::{self, BIN, Netns, run};
use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Output;

/// A command's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts exit status `code` with exactly one non-empty line on stderr containing `want`.
pub fn assert_one_line(o: &Output, code: i32, want: &str, what: &str) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "{what}: status {:?}, stderr {err:?}",
        o.status
    );
    assert_eq!(err.lines().count(), 1, "{what}: not one line: {err:?}");
    assert!(err.starts_with("vtepd: "), "{what}: {err:?}");
    assert!(err.contains(want), "{what}: {err:?} lacks {want:?}");
}

/// A fresh namespace with a veth pair (eth0 = 192.0.2.1/24 and up, eth1), its links as they
/// were before any run, and a control socket path no run may create.
pub struct RejectNs {
    /// The namespace.
    pub ns: Netns,
    /// The control socket path the runs are given.
    pub ctl: PathBuf,
    before: Vec<String>,
}

impl RejectNs {
    /// Builds it; `tag` names the namespace and the control socket.
    pub fn new(tag: &str) -> RejectNs {
        let ns = Netns::new(tag);
        ns.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
        ]);
        ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "eth0"]);
        ns.ip(&["link", "set", "eth0", "up"]);
        let before = ns.links();
        let ctl = daemon_support::control_path(tag);
        RejectNs { ns, ctl, before }
    }

    /// The control socket path as text.
    pub fn ctl_str(&self) -> &str {
        self.ctl.to_str().unwrap()
    }

    /// `run --dev vx0 --local 192.0.2.1 --control <ctl>`: a valid start for a bad command line.
    pub fn base(&self) -> [&str; 7] {
        [
            "run",
            "--dev",
            "vx0",
            "--local",
            "192.0.2.1",
            "--control",
            self.ctl_str(),
        ]
    }

    /// Runs `vtepd ARGS` in the namespace.
    pub fn vtepd<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        run(self.ns.cmd(BIN).args(args))
    }

    /// Runs [`RejectNs::base`] plus `extra`: status 2 and one line on stderr containing `want`.
    pub fn refuse<S: AsRef<OsStr> + std::fmt::Debug>(&self, extra: &[S], want: &str) {
        let o = run(self.ns.cmd(BIN).args(self.base()).args(extra));
        assert_one_line(&o, 2, want, &format!("{extra:?}"));
    }

    /// Asserts that no device and no control socket appeared (`what` was refused).
    pub fn assert_nothing_created(&self, what: &str) {
        assert_eq!(
            self.ns.links(),
            self.before,
            "a rejected {what} created a device"
        );
        assert!(
            !self.ctl.exists(),
            "a rejected {what} created the control socket"
        );
    }
}
