//! Helpers for the netns integration tests of the vtepd binary: namespaces and daemons that
//! clean up after themselves, bounded waits, and the client subcommands.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_vtepd");

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A name unique to this process and call, short enough for device names (≤ 15 bytes).
pub fn unique(tag: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("vt{}{}{}", std::process::id() % 100_000, tag, n)
}

/// Runs a command, returning its output (panics only if it cannot be started).
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command that must succeed.
pub fn must(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip ARGS...` that must succeed.
pub fn ip(args: &[&str]) -> String {
    must(Command::new("ip").args(args))
}

/// Polls `cond` every 50 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits up to `limit` for `child` (a client that ends by itself) to exit, calling `trigger`
/// meanwhile; if it has not, sends it SIGINT by its PID, as Ctrl-C would. Whether it exited
/// by itself.
pub fn wait_calling(child: &mut Child, limit: Duration, mut trigger: impl FnMut()) -> bool {
    let done = wait_until(limit, || {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return true;
        }
        trigger();
        false
    });
    if !done {
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
    }
    done
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    /// Its name.
    pub name: String,
}

impl Netns {
    /// A fresh namespace with `lo` up.
    pub fn new(tag: &str) -> Netns {
        let name = unique(tag);
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }
    /// `ip -n NS ARGS...` that must succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }
    /// A command run inside the namespace.
    pub fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, prog]);
        c
    }
    /// Turns IPv6 off in the namespace (no router solicitations or MLD on the test's links).
    pub fn disable_ipv6(&self) {
        for key in ["all", "default"] {
            must(
                self.cmd("sysctl")
                    .args(["-qw", &format!("net.ipv6.conf.{key}.disable_ipv6=1")]),
            );
        }
    }
    /// Turns IPv6 on for `dev` alone with address `cidr` and nothing else it would send by
    /// itself: no link-local address, no duplicate address detection, no router solicitations,
    /// its MLD reports sent at once.
    pub fn enable_ipv6(&self, dev: &str, cidr: &str) {
        let conf = |k: &str, v: &str| format!("net.ipv6.conf.{dev}.{k}={v}");
        for (k, v) in [
            ("router_solicitations", "0"),
            ("addr_gen_mode", "1"),
            ("mldv1_unsolicited_report_interval", "1"),
            ("mldv2_unsolicited_report_interval", "1"),
            ("disable_ipv6", "0"),
        ] {
            must(self.cmd("sysctl").args(["-qw", &conf(k, v)]));
        }
        self.ip(&["-6", "addr", "add", cidr, "dev", dev, "nodad"]);
    }
    /// Names of the links in the namespace.
    pub fn links(&self) -> Vec<String> {
        self.ip(&["-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_owned())
            .collect()
    }
    /// Whether a link exists.
    pub fn has_link(&self, dev: &str) -> bool {
        self.links().iter().any(|l| l == dev)
    }
    /// The MAC address of a link.
    pub fn mac(&self, dev: &str) -> String {
        let out = self.ip(&["-o", "link", "show", dev]);
        let mut words = out.split_whitespace();
        words.find(|w| *w == "link/ether");
        words
            .next()
            .unwrap_or_else(|| panic!("no MAC in {out}"))
            .to_owned()
    }
    /// One ping from this namespace with a 1 s deadline; true if answered.
    pub fn ping(&self, dst: &str) -> bool {
        run(self
            .cmd("ping")
            .args(["-c", "1", "-W", "1", dst])
            .stdout(Stdio::null()))
        .status
        .success()
    }
    /// Pings until one is answered or `limit` passes.
    pub fn ping_within(&self, dst: &str, limit: Duration) -> bool {
        wait_until(limit, || self.ping(dst))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A configuration file of a test's own, removed on drop.
#[derive(Debug)]
pub struct Conf(pub PathBuf);

impl Conf {
    /// A new file holding `text`.
    pub fn new(text: &str) -> Conf {
        let c = Conf(std::env::temp_dir().join(format!("{}.toml", unique("cf"))));
        c.write(text);
        c
    }
    /// Replaces its text.
    pub fn write(&self, text: &str) {
        std::fs::write(&self.0, text).unwrap();
    }
    /// Its path, as an argument.
    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Conf {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// tcpdump writing a capture file of `eth0` in a namespace; stopped (and the file removed) on
/// drop.
#[derive(Debug)]
pub struct Capture {
    child: Child,
    file: PathBuf,
    log: PathBuf,
}

impl Capture {
    /// Starts capturing `filter` on eth0 of `ns`; returns once tcpdump listens (≤ 10 s).
    pub fn start(ns: &Netns, filter: &str) -> Capture {
        let file = std::env::temp_dir().join(format!("{}.pcap", unique("cap")));
        let log = file.with_extension("tcpdump.log");
        let child = ns
            .cmd("tcpdump")
            .args(["-i", "eth0", "-n", "-U", "-w"])
            .arg(&file)
            .arg(filter)
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("cannot run tcpdump");
        let c = Capture { child, file, log };
        assert!(
            wait_until(Duration::from_secs(10), || std::fs::read_to_string(&c.log)
                .is_ok_and(|l| l.contains("listening on"))),
            "tcpdump did not start: {:?}",
            std::fs::read_to_string(&c.log)
        );
        c
    }

    /// `tshark -r <the capture so far> -n ARGS`: its output.
    pub fn tshark(&self, args: &[&str]) -> String {
        let out = run(Command::new("tshark")
            .arg("-r")
            .arg(&self.file)
            .arg("-n")
            .args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// VXLAN data segments (inner TCP payload of 1000 bytes or more) captured so far that
    /// match the display filter `also` (`"frame"`: all), and how many of them carry remote
    /// checksum offload (flags 0x0820) with the start of TCP over IPv4 behind Ethernet
    /// (34 / 2 = 17); tshark decodes them, not vtepd.
    pub fn rco_segments(&self, also: &str) -> (usize, usize) {
        let fields = self.tshark(&[
            "-d",
            "udp.port==4789,vxlan",
            "-Y",
            &format!("tcp.len >= 1000 && ({also})"),
            "-T",
            "fields",
            "-E",
            "occurrence=f",
            "-e",
            "vxlan.flags",
            "-e",
            "vxlan.reserved8",
        ]);
        let rows: Vec<&str> = fields.lines().collect();
        let rco = rows.iter().filter(|r| **r == "0x0820\t17").count();
        (rows.len(), rco)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Two namespaces joined by a veth pair on 192.0.2.0/24: `a` is .1, `b` is .2.
#[derive(Debug)]
pub struct Pair {
    /// Host A (192.0.2.1).
    pub a: Netns,
    /// Host B (192.0.2.2).
    pub b: Netns,
}

impl Pair {
    /// Builds the pair.
    pub fn new() -> Pair {
        let (a, b) = (Netns::new("a"), Netns::new("b"));
        a.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &b.name,
        ]);
        for (ns, addr) in [(&a, "192.0.2.1/24"), (&b, "192.0.2.2/24")] {
            ns.ip(&["addr", "add", addr, "dev", "eth0"]);
            ns.ip(&["link", "set", "eth0", "up"]);
        }
        Pair { a, b }
    }
}

/// An underlay switch: a namespace holding a bridge (`br0`, up) that hosts are plugged into,
/// on 192.0.2.0/24 (or 2001:db8::/64); the switch itself may hold an address on it (a service
/// the hosts reach).
#[derive(Debug)]
pub struct Switch {
    /// The switch's namespace.
    pub ns: Netns,
    ports: AtomicUsize,
}

impl Switch {
    /// A switch with `br0` up, holding `addr` (like `192.0.2.254/24`, or an IPv6 one with IPv6
    /// on for `br0` and `lo` alone) if given.
    pub fn new(addr: Option<&str>) -> Switch {
        let ns = Netns::new("sw");
        ns.disable_ipv6();
        ns.ip(&["link", "add", "br0", "type", "bridge"]);
        ns.ip(&["link", "set", "br0", "up"]);
        match addr {
            Some(a) if a.contains(':') => {
                ns.enable_ipv6("br0", a);
                // Its own clients reach it through `lo`.
                must(
                    ns.cmd("sysctl")
                        .args(["-qw", "net.ipv6.conf.lo.disable_ipv6=0"]),
                );
            }
            Some(a) => {
                ns.ip(&["addr", "add", a, "dev", "br0"]);
            }
            None => {}
        }
        Switch {
            ns,
            ports: AtomicUsize::new(0),
        }
    }

    /// A new host namespace (IPv6 off) whose `eth0` is plugged into the switch and holds `addr`
    /// (an IPv6 one turns IPv6 on for `eth0` alone: [`Netns::enable_ipv6`]).
    pub fn host(&self, addr: &str) -> Netns {
        let h = Netns::new("h");
        h.disable_ipv6();
        let port = format!("p{}", self.ports.fetch_add(1, Ordering::Relaxed));
        self.ns.ip(&[
            "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &h.name,
        ]);
        self.ns.ip(&["link", "set", &port, "master", "br0", "up"]);
        if addr.contains(':') {
            h.enable_ipv6("eth0", addr);
        } else {
            h.ip(&["addr", "add", addr, "dev", "eth0"]);
        }
        h.ip(&["link", "set", "eth0", "up"]);
        h
    }
}

/// A vtepd daemon in a namespace; killed (SIGKILL) on drop if still running.
#[derive(Debug)]
pub struct Daemon {
    /// The process (`ip netns exec` execs vtepd, so this is vtepd itself).
    pub child: Child,
    /// Its control socket.
    pub control: PathBuf,
    /// Where its stderr goes.
    pub log: PathBuf,
    exited: Option<ExitStatus>,
}

/// A control socket path unique to this test.
pub fn control_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{}.sock", unique(tag)))
}

impl Daemon {
    /// Starts `vtepd run ARGS --control <unique>` in `ns` and waits (≤ 10 s) until its control
    /// socket answers.
    pub fn start(ns: &Netns, args: &[&str]) -> Daemon {
        let control = control_path("c");
        let log = control.with_extension("log");
        let file = std::fs::File::create(&log).unwrap();
        let child = ns
            .cmd(BIN)
            .arg("run")
            .args(args)
            .arg("--control")
            .arg(&control)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        let mut d = Daemon {
            child,
            control,
            log,
            exited: None,
        };
        let up = wait_until(Duration::from_secs(10), || {
            if let Ok(Some(st)) = d.child.try_wait() {
                d.exited = Some(st);
                return true;
            }
            d.client(&["stats"]).status.success()
        });
        assert!(
            up && d.exited.is_none(),
            "vtepd did not start ({:?}): {}",
            d.exited,
            d.log_text()
        );
        d
    }
    /// The daemon's stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    /// `vtepd ARGS --control <ours>`.
    pub fn client(&self, args: &[&str]) -> Output {
        run(Command::new(BIN)
            .args(args)
            .arg("--control")
            .arg(&self.control))
    }
    /// A client command that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.client(args);
        assert!(
            out.status.success(),
            "vtepd {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    /// `stats --json`.
    pub fn stats(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["stats", "--json"])).unwrap()
    }
    /// `fdb show --json`.
    pub fn fdb(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.ok(&["fdb", "show", "--json"])).unwrap()
    }
    /// Sends a signal by PID.
    pub fn signal(&self, sig: &str) {
        must(Command::new("kill").args([&format!("-{sig}"), &self.child.id().to_string()]));
    }
    /// Waits (≤ `limit`) for the daemon to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.exited.is_none() {
            wait_until(limit, || {
                self.exited = self.child.try_wait().ok().flatten();
                self.exited.is_some()
            });
        }
        self.exited
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.exited.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_file(&self.control);
    }
}
