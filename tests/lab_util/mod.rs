//! Harness shared by the lab integration tests (`tests/lab_*.rs`): runs `lab/lib.sh` helpers under a
//! namespace prefix of the test's own and removes everything it made when dropped, also when the test
//! fails. The tests need root (they build network namespaces): without it they say so and pass
//! vacuously, except under CI (`CI` set), where they fail.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod wire;

use serde::Deserialize;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The repository root (where `lab/` lives).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The vtepd binary under test: `$VTEPD_BIN` (scripts/test.sh points it at the release build), else
/// the binary cargo built for this test run.
pub fn vtepd_bin() -> PathBuf {
    std::env::var_os("VTEPD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_vtepd")))
}

fn is_root() -> bool {
    // /proc/self/status: "Uid:\t<real>\t<effective>\t<saved>\t<fs>".
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// True when the lab can run here; false (with a note) when it cannot and that is acceptable.
/// Panics under CI without root: CI must run these tests.
pub fn lab_available(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: the lab tests need root (network namespaces), and CI is set"
    );
    eprintln!("{test}: skipped: needs root to build network namespaces");
    false
}

/// How long any single wait in these tests may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// Polls `f` every 20 ms until it returns `Some`, or panics with `what` after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One entry of `vtepd fdb show --json` (README.md, "Talking to a running daemon").
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct FdbEntry {
    /// VNI.
    pub vni: u32,
    /// MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Remote VTEP address.
    pub remote: String,
    /// `learned` or `static`.
    pub kind: String,
    /// Seconds since last seen as a source.
    pub age_secs: f64,
}

/// A lab: a namespace prefix of its own, with everything under it removed on drop.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    vni: u32,
}

impl Lab {
    /// A lab for one test; `tag` (a few letters, unique per test) and our PID make the prefix, so
    /// tests running in parallel, and other runs on the machine, do not clash.
    pub fn new(tag: &str) -> Lab {
        assert!(
            tag.len() <= 6 && tag.bytes().all(|b| b.is_ascii_lowercase()),
            "bad tag {tag}"
        );
        let lab = Lab {
            prefix: format!("{tag}{}", std::process::id()),
            vni: 42,
        };
        // A previous run killed before its cleanup may have left the same prefix behind.
        lab.cleanup();
        lab
    }

    /// The namespace prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The fabric's VNI.
    pub fn vni(&self) -> u32 {
        self.vni
    }

    /// A command with the lab's environment: prefix, vtepd binary, quiet, bounded waits.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env("LAB_PREFIX", &self.prefix)
            .env("VTEPD_BIN", vtepd_bin())
            .env("LAB_VNI", self.vni.to_string())
            .env("QUIET", "1")
            .env("LAB_TIMEOUT", "8")
            .env("LAB_SKIP_SETUP", "1");
        c
    }

    /// Runs `lab/lib.sh ARGS...` with extra environment; returns its output whatever the status.
    pub fn try_sh_env(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        let mut c = self.command("timeout");
        c.arg("--kill-after=5")
            .arg("60")
            .arg(repo().join("lab/lib.sh"))
            .args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("cannot run lab/lib.sh")
    }

    /// Runs `lab/lib.sh ARGS...`; panics (showing stderr) unless it succeeds; returns stdout.
    pub fn sh(&self, args: &[&str]) -> String {
        self.sh_env(&[], args)
    }

    /// [`Lab::sh`] with extra environment.
    pub fn sh_env(&self, env: &[(&str, &str)], args: &[&str]) -> String {
        let out = self.try_sh_env(env, args);
        assert!(
            out.status.success(),
            "lab/lib.sh {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("lab/lib.sh printed non-UTF-8")
    }

    /// Builds the standard fabric (lab_fabric): `hosts` hosts with `pods` pods each; `impls` lists
    /// each host's VTEP ("vtepd" or "kernel"); `vtepd_args` are extra `vtepd run` flags.
    pub fn fabric(&self, hosts: u32, pods: u32, impls: &str, vtepd_args: &str) {
        self.sh_env(
            &[("LAB_IMPLS", impls), ("VTEPD_ARGS", vtepd_args)],
            &["fabric", &hosts.to_string(), &pods.to_string()],
        );
    }

    /// Runs a vtepd client subcommand against `host`'s daemon (`--control` appended).
    pub fn client(&self, host: &str, args: &[&str]) -> Output {
        let mut full = vec!["client", host];
        full.extend_from_slice(args);
        self.try_sh_env(&[], &full)
    }

    /// Runs a vtepd client subcommand that must succeed; returns stdout.
    pub fn client_ok(&self, host: &str, args: &[&str]) -> String {
        let out = self.client(host, args);
        assert!(
            out.status.success(),
            "vtepd {} (on {host}) failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("vtepd printed non-UTF-8")
    }

    /// `vtepd fdb show --json` on `host`, parsed.
    pub fn fdb(&self, host: &str) -> Vec<FdbEntry> {
        let out = self.client_ok(host, &["fdb", "show", "--json"]);
        serde_json::from_str(&out).unwrap_or_else(|e| {
            panic!("fdb show --json on {host} is not the contract's JSON ({e}): {out}")
        })
    }

    /// The FDB entry for `mac` on `host`, if any.
    pub fn fdb_entry(&self, host: &str, mac: &str) -> Option<FdbEntry> {
        self.fdb(host)
            .into_iter()
            .find(|e| e.mac.eq_ignore_ascii_case(mac))
    }

    /// `(mac, remote)` pairs of learned entries of `host`'s VTEP, vtepd's or the kernel's.
    pub fn learned(&self, host: &str) -> Vec<(String, String)> {
        self.sh(&["fdb-learned", host])
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(m, r)| (m.to_string(), r.to_string()))
            .collect()
    }

    /// `vtepd stats --json` on `host`, parsed.
    pub fn stats(&self, host: &str) -> Stats {
        let out = self.client_ok(host, &["stats", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("stats --json on {host} is not JSON ({e}): {out}"));
        Stats(v)
    }

    /// Starts counting VXLAN datagrams arriving on `host`'s underlay link.
    pub fn capture(&self, host: &str) {
        self.sh(&["capture", host]);
    }

    /// VXLAN datagrams `host` received so far whose inner frame is addressed to `mac`.
    pub fn count(&self, host: &str, mac: &str) -> u64 {
        let out = self.sh(&["count", host, mac]);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("lab count printed {out:?}"))
    }

    /// Sends `n` frames (ethertype 0x88b5) to `dst` from pod `node`'s eth0, with its own source MAC
    /// or `src`.
    pub fn send_frames(&self, node: &str, dst: &str, n: u64, src: Option<&str>) {
        let n = n.to_string();
        let mut args = vec!["send-frames", node, dst, &n];
        if let Some(s) = src {
            args.push(s);
        }
        self.sh(&args);
    }

    /// Prints the daemons' logs (on failure).
    pub fn dump_logs(&self) {
        let out = self.try_sh_env(&[], &["dump-logs"]);
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
    }

    /// Stops what the lab started and deletes its namespaces.
    pub fn cleanup(&self) {
        let out = self.try_sh_env(&[], &["cleanup"]);
        if !out.status.success() {
            eprintln!(
                "lab cleanup of {} failed: {}",
                self.prefix,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("lab {}: test failed; daemon logs follow", self.prefix);
            self.dump_logs();
        }
        self.cleanup();
    }
}

/// `vtepd stats --json`: the contract's counters and drops by reason.
#[derive(Debug, Clone)]
pub struct Stats(pub serde_json::Value);

impl Stats {
    /// A top-level counter (`rx_tunnel`, `tx_device`, ...); panics if absent.
    pub fn get(&self, name: &str) -> u64 {
        self.0
            .get(name)
            .and_then(|v| v.as_u64())
            .unwrap_or_else(|| panic!("stats --json has no counter {name}: {}", self.0))
    }

    /// Drops counted under `reason` (absent means 0).
    pub fn drop_of(&self, reason: &str) -> u64 {
        let drops = self.0.get("drops").and_then(|d| d.as_object());
        let drops = drops.unwrap_or_else(|| panic!("stats --json has no drops object: {}", self.0));
        drops.get(reason).map_or(0, |v| {
            v.as_u64()
                .unwrap_or_else(|| panic!("drops.{reason} is not a count: {v}"))
        })
    }

    /// Every drop reason with its count.
    pub fn drops(&self) -> Vec<(String, u64)> {
        let drops = self.0.get("drops").and_then(|d| d.as_object());
        let drops = drops.unwrap_or_else(|| panic!("stats --json has no drops object: {}", self.0));
        drops
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(u64::MAX)))
            .collect()
    }
}
