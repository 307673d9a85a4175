//! A TAP/TUN device another process holds is refused (status 2, one line naming the device
//! and its holder) instead of being shared: a second vtepd on the first one's device, and
//! vtepd on a device a plain program (Python) holds. The holder keeps working. Needs root.

mod cli_support;
mod daemon_support;

use cli_support::assert_one_line;
use daemon_support::{BIN, Daemon, Netns, Pair, control_path, run};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// The kernel's count of queues attached to `dev` (`numqueues N` in `ip -d link`).
fn numqueues(ns: &Netns, dev: &str) -> Option<u32> {
    let out = ns.ip(&["-d", "link", "show", "dev", dev]);
    let mut words = out.split_whitespace();
    words.find(|w| *w == "numqueues")?;
    words.next()?.parse().ok()
}

/// Runs `vtepd run ARGS --control <unique>` in `ns` to completion (it must be refused).
fn refused_run(ns: &Netns, args: &[&str]) -> std::process::Output {
    let ctl = control_path("in");
    let o = run(ns.cmd(BIN).arg("run").args(args).arg("--control").arg(&ctl));
    assert!(!ctl.exists(), "a refused daemon left its control socket");
    o
}

#[test]
fn a_second_vtepd_on_the_same_device_is_refused_and_the_first_keeps_working() {
    let p = Pair::new();
    let a = Daemon::start(
        &p.a,
        &[
            "--dev",
            "vxu0",
            "--local",
            "192.0.2.1",
            "--peer",
            "192.0.2.2",
            "--address",
            "10.78.0.1/24",
            "--threads",
            "2",
        ],
    );
    let _b = Daemon::start(
        &p.b,
        &[
            "--dev",
            "vxu0",
            "--local",
            "192.0.2.2",
            "--peer",
            "192.0.2.1",
            "--address",
            "10.78.0.2/24",
        ],
    );
    assert!(p.a.ping_within("10.78.0.2", SECS(10)), "{}", a.log_text());
    let before = p.a.ip(&["-d", "link", "show", "dev", "vxu0"]);
    assert_eq!(numqueues(&p.a, "vxu0"), Some(2));
    for threads in ["1", "2", "3"] {
        let o = refused_run(
            &p.a,
            &[
                "--dev",
                "vxu0",
                "--local",
                "192.0.2.1",
                "--port",
                "4790",
                "--threads",
                threads,
            ],
        );
        assert_one_line(&o, 2, "device vxu0 is in use", threads);
        let err = String::from_utf8_lossy(&o.stderr);
        let pid = format!("pid {} (vtepd)", a.child.id());
        assert!(err.contains(&pid), "{err} does not name {pid}");
    }
    // The first daemon's device is untouched (queues, flags, addresses) and still carries.
    assert_eq!(p.a.ip(&["-d", "link", "show", "dev", "vxu0"]), before);
    assert!(p.a.ping("10.78.0.2"), "{}", a.log_text());
    assert!(a.client(&["stats"]).status.success());
}

/// A program holding a device, through its own `TUNSETIFF` (Python, like any other program).
struct Holder(Child);

impl Holder {
    fn new(ns: &Netns, dev: &str, kind: &str, multi_queue: bool) -> Holder {
        const SCRIPT: &str = "import fcntl, os, struct, sys\n\
            fd = os.open('/dev/net/tun', os.O_RDWR)\n\
            flags = {'tun': 0x1, 'tap': 0x2}[sys.argv[2]] | 0x1000\n\
            flags |= 0x100 if sys.argv[3] == 'mq' else 0\n\
            fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH', sys.argv[1].encode(), flags))\n\
            print('held', flush=True)\n\
            sys.stdin.read()\n";
        let mq = if multi_queue { "mq" } else { "sq" };
        let child = ns
            .cmd("/usr/bin/python3")
            .args(["-c", SCRIPT, dev, kind, mq])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut h = Holder(child);
        // One line once attached; end of file (bounded by its exit) if it failed.
        let mut line = String::new();
        let out = h.0.stdout.take().unwrap();
        let _ = BufReader::new(out).read_line(&mut line);
        assert_eq!(line.trim(), "held", "python did not attach to {dev}");
        h
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_device_another_program_holds_is_refused() {
    let ns = Netns::new("hd");
    ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ]);
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "eth0"]);
    ns.ip(&["link", "set", "eth0", "up"]);
    let cases: &[(&str, &str, bool, &[&str])] = &[
        ("tph0", "tap", true, &["--threads", "2"]),
        ("tph1", "tap", false, &["--threads", "1"]),
        (
            "tnh0",
            "tun",
            true,
            &[
                "--mode",
                "l3",
                "--encap",
                "ipip",
                "--address",
                "10.79.0.1/32",
                "--route",
                "10.79.1.0/24=192.0.2.2",
            ],
        ),
    ];
    for (dev, kind, mq, extra) in cases {
        let mq_word = if *mq { "multi_queue" } else { "" };
        let mut add = vec!["tuntap", "add", "dev", dev, "mode", kind];
        if *mq {
            add.push(mq_word);
        }
        ns.ip(&add);
        let holder = Holder::new(&ns, dev, kind, *mq);
        let before = ns.ip(&["-d", "link", "show", "dev", dev]);
        let mut args = vec!["--dev", dev, "--local", "192.0.2.1"];
        args.extend_from_slice(extra);
        let o = refused_run(&ns, &args);
        assert_one_line(&o, 2, &format!("device {dev} is in use"), dev);
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("(python3)"),
            "{o:?}"
        );
        assert_eq!(
            ns.ip(&["-d", "link", "show", "dev", dev]),
            before,
            "{dev} changed"
        );
        drop(holder);
        // Once nobody holds it, vtepd attaches (and gives it back at exit).
        let mut d = Daemon::start(&ns, &args);
        d.signal("TERM");
        assert_eq!(d.wait_exit(SECS(10)).and_then(|s| s.code()), Some(0));
        if *mq {
            assert_eq!(numqueues(&ns, dev), Some(0));
        }
    }
}
