//! Living under a service manager: readiness and stopping notices (`Type=notify`, through a
//! notify socket this test owns, as systemd's), signals that must not kill the daemon
//! uncleanly, JSON logs, running with only the unit file's capabilities as an unprivileged
//! user, and the unit file itself (`systemd-analyze verify`, where systemd-analyze is
//! installed). Needs root (network namespaces).

mod daemon_support;

use daemon_support::{BIN, Daemon, Netns, control_path, must, run, unique, wait_until};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A daemon started by hand (environment or credentials of its own), killed on drop if still
/// running, its files removed.
struct Proc {
    child: Child,
    log: PathBuf,
    control: PathBuf,
}

impl Proc {
    /// Spawns `cmd` (a `vtepd run` through `ip netns exec`) with stderr to a log file.
    fn spawn(cmd: &mut Command, control: PathBuf) -> Proc {
        let log = control.with_extension("log");
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        Proc {
            child,
            log,
            control,
        }
    }
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    fn client(&self, args: &[&str]) -> std::process::Output {
        run(Command::new(BIN)
            .args(args)
            .arg("--control")
            .arg(&self.control))
    }
    fn signal(&self, sig: &str) {
        must(Command::new("kill").args([&format!("-{sig}"), &self.child.id().to_string()]));
    }
    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    /// Waits (≤ 10 s) for the exit status.
    fn wait_exit(&mut self) -> Option<i32> {
        let mut code = None;
        wait_until(SECS(10), || match self.child.try_wait() {
            Ok(Some(st)) => {
                code = st.code();
                true
            }
            _ => false,
        });
        code
    }
    /// The names of the daemon's threads.
    fn threads(&self) -> Vec<String> {
        let dir = format!("/proc/{}/task", self.child.id());
        std::fs::read_dir(dir)
            .map(|it| {
                it.filter_map(|t| t.ok())
                    .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                    .map(|c| c.trim().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_file(&self.control);
    }
}

/// A directory of this test's own, removed (with what is in it) on drop, even after a panic.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A notify socket as systemd makes it: a Unix datagram socket at a path, removed on drop.
struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn new() -> NotifySocket {
        let path = std::env::temp_dir().join(format!("{}.notify", unique("n")));
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        NotifySocket { sock, path }
    }
    /// The next notice within `limit` (`None`: none came).
    fn next(&self, limit: Duration) -> Option<String> {
        let end = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            if let Ok(n) = self.sock.recv(&mut buf) {
                return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        None
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The first notice is READY=1, and when it arrives the control socket answers at once, the
/// device exists and every worker thread and the control thread run; SIGTERM brings
/// STOPPING=1, then a clean exit (status 0, device and socket gone). Without NOTIFY_SOCKET
/// the daemon runs the same (every other test).
#[test]
fn ready_is_told_once_everything_is_up_and_stopping_at_sigterm() {
    let ns = Netns::new("rd");
    let notify = NotifySocket::new();
    let control = control_path("rd");
    let mut d = Proc::spawn(
        ns.cmd(BIN)
            .args([
                "run",
                "--dev",
                "vxr0",
                "--local",
                "127.0.0.1",
                "--threads",
                "2",
            ])
            .arg("--control")
            .arg(&control)
            .env("NOTIFY_SOCKET", &notify.path),
        control,
    );
    let first = notify.next(SECS(15));
    // Checked at once, before anything else: no retry.
    let stats = d.client(&["stats", "--json"]);
    let has_dev = ns.has_link("vxr0");
    let threads = d.threads();
    let first = first.unwrap_or_else(|| panic!("no notice within 15 s: {}", d.log_text()));
    assert!(first.lines().any(|l| l == "READY=1"), "{first:?}");
    let status = first.lines().find_map(|l| l.strip_prefix("STATUS="));
    assert!(
        status.is_some_and(|s| s.contains("2 worker(s)")),
        "{first:?}"
    );
    assert!(
        stats.status.success(),
        "READY=1 before the control socket answered: {}",
        String::from_utf8_lossy(&stats.stderr)
    );
    assert!(has_dev, "READY=1 before the device existed");
    for t in ["vtepd-l2-0", "vtepd-l2-1", "vtepd-control"] {
        assert!(
            threads.iter().any(|n| n == t),
            "READY=1 before {t}: {threads:?}"
        );
    }
    assert_eq!(notify.next(Duration::from_millis(300)), None, "one READY");

    d.signal("TERM");
    let stopping = notify.next(SECS(10)).expect("no STOPPING=1 after SIGTERM");
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    assert!(stopping.contains("STATUS=SIGTERM received"), "{stopping:?}");
    assert_eq!(d.wait_exit(), Some(0), "{}", d.log_text());
    assert!(!ns.has_link("vxr0"), "device left behind");
    assert!(!d.control.exists(), "control socket left behind");
}

/// A daemon that fails (its device removed under it) tells STOPPING=1 with the reason, then
/// exits with status 1.
#[test]
fn stopping_is_told_when_the_daemon_fails() {
    let ns = Netns::new("rf");
    let notify = NotifySocket::new();
    let control = control_path("rf");
    let mut d = Proc::spawn(
        ns.cmd(BIN)
            .args([
                "run",
                "--dev",
                "vxf0",
                "--local",
                "127.0.0.1",
                "--threads",
                "1",
            ])
            .arg("--control")
            .arg(&control)
            .env("NOTIFY_SOCKET", &notify.path),
        control,
    );
    let ready = notify.next(SECS(15)).unwrap_or_default();
    assert!(
        ready.lines().any(|l| l == "READY=1"),
        "{ready:?}: {}",
        d.log_text()
    );
    ns.ip(&["link", "del", "vxf0"]);
    let stopping = notify
        .next(SECS(10))
        .expect("no STOPPING=1 after a failure");
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    assert!(
        stopping.contains("STATUS=failed, shutting down: ") && stopping.contains("vxf0"),
        "{stopping:?}"
    );
    assert_eq!(d.wait_exit(), Some(1), "{}", d.log_text());
    assert!(!d.control.exists(), "control socket left behind");
}

/// A notify socket nobody listens on is logged, and the daemon still runs and stops cleanly.
#[test]
fn a_dead_notify_socket_is_logged_not_fatal() {
    let ns = Netns::new("rx");
    let path = std::env::temp_dir().join(format!("{}.notify", unique("nx")));
    let control = control_path("rx");
    let mut d = Proc::spawn(
        ns.cmd(BIN)
            .args([
                "run",
                "--dev",
                "vxx0",
                "--local",
                "127.0.0.1",
                "--threads",
                "1",
            ])
            .arg("--control")
            .arg(&control)
            .env("NOTIFY_SOCKET", &path),
        control,
    );
    let up = wait_until(SECS(10), || d.client(&["stats"]).status.success());
    assert!(up, "did not start: {}", d.log_text());
    assert!(
        wait_until(SECS(5), || d
            .log_text()
            .contains("cannot tell the service manager READY=1")),
        "{}",
        d.log_text()
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(), Some(0), "{}", d.log_text());
    assert!(!ns.has_link("vxx0"));
}

/// SIGHUP reloads (a daemon started from flags has no file: it says so), SIGUSR1 and SIGUSR2
/// are logged and ignored, SIGPIPE ignored: the daemon keeps its device and answers; SIGTERM
/// then stops it cleanly.
#[test]
fn hup_usr1_usr2_and_pipe_do_not_end_the_daemon() {
    let ns = Netns::new("hp");
    let mut d = Daemon::start(&ns, &["--dev", "vxh0", "--local", "127.0.0.1"]);
    for sig in ["HUP", "USR1", "USR2", "PIPE"] {
        d.signal(sig);
    }
    for line in [
        "SIGHUP received: reloading the configuration",
        "SIGHUP: this daemon was started from flags, not --config: there is no file to reload",
        "SIGUSR1 received: ignored",
        "SIGUSR2 received: ignored",
    ] {
        assert!(
            wait_until(SECS(5), || d.log_text().contains(line)),
            "no {line:?}: {}",
            d.log_text()
        );
    }
    assert_eq!(
        d.wait_exit(Duration::from_millis(500)),
        None,
        "a signal ended it"
    );
    assert!(d.client(&["stats"]).status.success());
    assert!(ns.has_link("vxh0"));
    d.signal("TERM");
    let st = d.wait_exit(SECS(10)).expect("no exit after SIGTERM");
    assert_eq!(st.code(), Some(0), "{}", d.log_text());
    assert!(!ns.has_link("vxh0"));
    assert!(!d.control.exists());
}

/// `--log-format json`: every line on stderr is one JSON object with a level and a message.
#[test]
fn json_logs_are_one_object_per_line() {
    let ns = Netns::new("js");
    let mut d = Daemon::start(
        &ns,
        &[
            "--dev",
            "vxj0",
            "--local",
            "127.0.0.1",
            "--log-format",
            "json",
        ],
    );
    d.signal("HUP");
    assert!(wait_until(SECS(5), || d.log_text().contains("SIGHUP")));
    d.signal("TERM");
    assert_eq!(d.wait_exit(SECS(10)).and_then(|s| s.code()), Some(0));
    let log = d.log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let msg = |v: &serde_json::Value| v["fields"]["message"].as_str().unwrap_or("").to_owned();
    assert!(
        lines
            .iter()
            .all(|v| v["level"].is_string() && v["timestamp"].is_string())
    );
    assert!(lines.iter().any(|v| msg(v).contains(" up: ")), "{log}");
    assert!(
        lines
            .iter()
            .any(|v| v["level"] == "WARN" && msg(v).starts_with("SIGHUP: this daemon was started")),
        "{log}"
    );
    assert!(lines.iter().any(|v| msg(v) == "vtepd stopped"), "{log}");
}

/// The unit file's values of `key` (space-separated, every line with it).
fn unit_values(key: &str) -> Vec<String> {
    let unit = std::fs::read_to_string(unit_path()).unwrap();
    unit.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .flat_map(|v| v.split_whitespace().map(str::to_owned))
        .collect()
}

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/vtepd.service")
}

/// The unit's privileges are enough: vtepd run as an unprivileged user (nobody) holding only
/// the unit's ambient capabilities, its bounding set limited to them and no new privileges
/// (what `DynamicUser=yes`, `AmbientCapabilities=`, `CapabilityBoundingSet=` and
/// `NoNewPrivileges=yes` give it), creates its device, forwards a ping through the tunnel to a
/// root-run peer, and removes everything at SIGTERM.
#[test]
fn the_units_capabilities_are_enough() {
    let caps = unit_values("AmbientCapabilities");
    assert_eq!(caps, ["CAP_NET_ADMIN", "CAP_NET_RAW"]);
    assert_eq!(unit_values("CapabilityBoundingSet"), caps);
    assert_eq!(unit_values("NoNewPrivileges"), ["yes"]);
    let list = caps
        .iter()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",");
    let p = daemon_support::Pair::new();
    // The RuntimeDirectory: owned by the service's user.
    let tmp = TempDir::new("rt");
    let dir = tmp.0.clone();
    must(Command::new("chown").args(["65534:65534"]).arg(&dir));
    let control = dir.join("vtepd.sock");
    // /dev/net/tun as udev makes it on a systemd host (mode 0666), in a mount namespace of
    // this daemon's own: this container's node is 0600, which only root can open.
    let node = dir.join("tun");
    let setup = format!(
        "mknod {n} c 10 200 && chmod 0666 {n} && mount --bind {n} /dev/net/tun && exec \"$@\"",
        n = node.display()
    );
    let mut a = Proc::spawn(
        Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                &setup,
                "sh",
            ])
            .args(["ip", "netns", "exec", &p.a.name, "setpriv"])
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                &format!("--inh-caps=-all,{list}"),
                &format!("--ambient-caps=-all,{list}"),
                &format!("--bounding-set=-all,{list}"),
                "--no-new-privs",
                BIN,
                "run",
                "--dev",
                "vxc0",
                "--local",
                "192.0.2.1",
                "--peer",
                "192.0.2.2",
                "--address",
                "10.77.0.1/24",
                "--threads",
                "2",
                "--control",
            ])
            .arg(&control),
        control,
    );
    let b = Daemon::start(
        &p.b,
        &[
            "--dev",
            "vxc0",
            "--local",
            "192.0.2.2",
            "--peer",
            "192.0.2.1",
            "--address",
            "10.77.0.2/24",
        ],
    );
    let up = wait_until(SECS(10), || a.client(&["stats"]).status.success());
    assert!(up && a.running(), "unprivileged vtepd: {}", a.log_text());
    let uid = std::fs::read_to_string(format!("/proc/{}/status", a.child.id()))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .map(str::to_owned)
        .unwrap();
    assert!(uid.contains("65534"), "{uid}");
    assert!(p.a.ping_within("10.77.0.2", SECS(10)), "{}", a.log_text());
    assert!(!b.fdb().is_empty());
    a.signal("TERM");
    assert_eq!(a.wait_exit(), Some(0), "{}", a.log_text());
    assert!(!p.a.has_link("vxc0"), "device left behind");
    assert!(!a.control.exists(), "control socket left behind");
    drop(a);
}

/// `systemd-analyze verify` accepts the unit without a warning (with the binary path pointed
/// at the one under test; man pages are not installed here). Skipped, saying so, where
/// systemd-analyze is not installed.
#[test]
fn the_unit_file_verifies() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let unit = std::fs::read_to_string(unit_path()).unwrap();
    assert!(unit.contains("\nType=notify\n"));
    assert!(unit.contains("\nExecStart=/usr/bin/vtepd run --config /etc/vtepd/vtepd.toml\n"));
    assert!(
        unit.contains("\nExecReload=/bin/kill -HUP $MAINPID\n"),
        "systemctl reload sends SIGHUP"
    );
    let dir = TempDir::new("unit");
    let copy = dir.0.join("vtepd.service");
    std::fs::write(&copy, unit.replace("/usr/bin/vtepd", BIN)).unwrap();
    let o = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.trim().is_empty(), "{err}");
}

/// The example configuration beside the unit is valid.
#[test]
fn the_example_configuration_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/vtepd.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let cfg = vtepd::config::DaemonConfig::from_toml(&text).unwrap();
    assert_eq!(cfg.networks.len(), 1);
    assert_eq!(cfg.control, Path::new("/run/vtepd/vtepd.sock"));
}
