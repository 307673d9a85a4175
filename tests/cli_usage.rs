//! The binary's usage contract: bad arguments and bad configuration files give one line on
//! stderr and status 2 and create nothing (checked inside a fresh network namespace); a client
//! without a daemon gives status 1; help is complete. Needs root for the namespace checks.

mod cli_support;
mod daemon_support;

use cli_support::{RejectNs, assert_one_line};
use daemon_support::{BIN, Netns, run};
use std::process::Command;

#[test]
fn bad_run_arguments_are_one_line_status_2_and_create_nothing() {
    let rj = RejectNs::new("u");
    let ctl = rj.ctl_str();
    let cases: &[(&[&str], &str)] = &[
        (&["--vni", "16777216"], "out of range"),
        (&["--vni=-1"], "--vni"),
        (&["--port", "0"], "port"),
        (&["--port", "70000"], "port"),
        (&["--peer", "192.0.2"], "not an IPv4 or IPv6 address"),
        (&["--peer", "224.0.0.1"], "224.0.0.1 is a multicast address"),
        (
            &["--peer", "127.0.0.1"],
            "127.0.0.1 is a loopback address: a remote VTEP must be reachable over the underlay",
        ),
        (&["--peer", "0.0.0.0"], "0.0.0.0 is the unspecified address"),
        (&["--peer", "192.0.2.1"], "own"),
        (
            &["--peer", "2001:db8::2"],
            "2001:db8::2 is an IPv6 address but --local 192.0.2.1 is IPv4: one address family per network",
        ),
        (&["--address", "10.0.0.1/33"], "prefix"),
        (&["--address", "10.0.0.300/24"], "not an IPv4 address"),
        (&["--mtu", "20"], "MTU"),
        (&["--ageing", "0"], "ageing"),
        (&["--max-fdb", "0"], "cap"),
        (&["--storm", "broadcast=0"], "at least 1"),
        (&["--storm", "everything=5"], "unknown field"),
        (&["--mac-move", "moves=5,window=0"], "window"),
        (&["--mac-move", "5"], "--mac-move"),
        (&["--threads", "0"], "thread"),
        (&["--threads", "65"], "thread"),
        (&["--mode", "l3"], "needs --address"),
        (&["--mode", "l9"], "expected l2 or l3"),
        (&["--encap", "ipip"], "needs --mode l3"),
        (&["--route", "10.1.0.0/24=192.0.2.2"], "need --mode l3"),
        // L3 IPIP: bad routes and VXLAN-only flags.
        (
            &["--mode", "l3", "--encap", "ipip", "--route", "10.1.0.0/24"],
            "CIDR=IP",
        ),
        (
            &[
                "--mode",
                "l3",
                "--encap",
                "ipip",
                "--route",
                "10.1.0.0/40=192.0.2.2",
            ],
            "prefix",
        ),
        (
            &[
                "--mode",
                "l3",
                "--encap",
                "ipip",
                "--route",
                "10.1.0.9/24=192.0.2.2",
            ],
            "host bits",
        ),
        (
            &[
                "--mode",
                "l3",
                "--encap",
                "ipip",
                "--route",
                "10.1.0.0/24=239.1.1.1",
            ],
            "unicast",
        ),
        (
            &[
                "--mode",
                "l3",
                "--encap",
                "ipip",
                "--route",
                "10.1.0.0/24=192.0.2.1",
            ],
            "own",
        ),
        (
            &[
                "--mode",
                "l3",
                "--encap",
                "ipip",
                "--route",
                "192.0.0.0/16=192.0.2.2",
            ],
            "covers",
        ),
        (
            &["--mode", "l3", "--encap", "ipip", "--vni", "7"],
            "--vni is not used",
        ),
        (
            &["--mode", "l3", "--encap", "ipip", "--peer", "192.0.2.2"],
            "--peer is not used",
        ),
        // Outer-header policy (ip-link's vxlan options).
        (&["--ttl", "0"], "TTL 0 is not in 1..=255"),
        (&["--ttl", "256"], "not in 1..=255"),
        (&["--ttl", "auto"], "not a TTL"),
        (&["--tos", "0x29"], "sets ECN bits"),
        (&["--tos", "0x100"], "not in 0..=255"),
        (&["--tos", "af11"], "not a TOS"),
        (&["--df", "yes"], "expected set, unset or inherit"),
        (&["--srcport", "5010-5000"], "5010 is more than 5000"),
        (&["--srcport", "0-100"], "port 0"),
        (&["--srcport", "5000"], "MIN-MAX"),
        (&["--udp-csum", "1"], "expected on or off"),
        (
            &["--mode", "l3", "--encap", "ipip", "--srcport", "5000-5010"],
            "--srcport is for VXLAN: IPIP has no UDP header",
        ),
        (
            &["--mode", "l3", "--encap", "ipip", "--udp-csum", "on"],
            "--udp-csum is for VXLAN",
        ),
        (
            &["--config", "/dev/null", "--ttl", "9"],
            "cannot be used with",
        ),
        (&["--metrics", "127.0.0.1"], "is not IP:PORT"),
        (&["--metrics", "localhost:9570"], "is not IP:PORT"),
        (&["--metrics", "127.0.0.1:0"], "port other than 0"),
        // Syntactically fine but not an address of this namespace: refused at start, before
        // the control socket or the device exist.
        (
            &["--metrics", "203.0.113.9:9570"],
            "cannot listen for metrics on 203.0.113.9:9570",
        ),
        (&["--frobnicate"], "unexpected argument"),
        (&["--config", "/dev/null"], "cannot be used with"),
    ];
    for (extra, want) in cases {
        rj.refuse(extra, want);
    }
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--dev", "vx0"], "--local"),
        (&["run", "--local", "192.0.2.1"], "--dev"),
        (
            &["run", "--dev", "name-far-too-long", "--local", "192.0.2.1"],
            "longer than 15",
        ),
        (
            &["run", "--dev", "a/b", "--local", "192.0.2.1"],
            "not a valid device name",
        ),
        // Not an address of this namespace: checked before anything is created.
        (
            &[
                "run",
                "--dev",
                "vx0",
                "--local",
                "192.0.2.99",
                "--control",
                ctl,
            ],
            "not an address",
        ),
        (
            &[
                "run",
                "--control",
                "",
                "--dev",
                "vx0",
                "--local",
                "192.0.2.1",
            ],
            "empty",
        ),
        // An existing device that is not a TAP: refused, and nothing is left behind.
        (
            &[
                "run",
                "--dev",
                "eth1",
                "--local",
                "192.0.2.1",
                "--control",
                ctl,
            ],
            "not a TAP device",
        ),
    ];
    for (args, want) in cases {
        let o = rj.vtepd(args);
        assert_one_line(&o, 2, want, &format!("{args:?}"));
    }
    rj.assert_nothing_created("run");
}

#[test]
fn bad_config_files_are_one_line_status_2_and_create_nothing() {
    let rj = RejectNs::new("f");
    let ctl = &rj.ctl;
    let head = format!("local = \"192.0.2.1\"\ncontrol = \"{}\"\n", ctl.display());
    let net = |body: &str| format!("{head}[[network]]\ndev = \"vx0\"\nvni = 1\n{body}");
    let cases: Vec<(String, &str)> =
        vec![
        (net("colour = \"blue\"\n"), "unknown field"),
        (format!("{head}verbose = true\n"), "unknown field"),
        (net("vni = 2\n"), "duplicate key"),
        (
            format!("{head}[[network]]\ndev = \"vx0\"\nvni = 16777216\n"),
            "out of range",
        ),
        (net("peers = [\"192.0.2.300\"]\n"), "not an IPv4 or IPv6 address"),
        (
            net("peers = [\"127.0.0.1\"]\n"),
            "127.0.0.1 is a loopback address",
        ),
        (
            net("fdb = [{ mac = \"02:00:00:00:00:09\", remote = \"127.0.0.2\" }]\n"),
            "127.0.0.2 is a loopback address",
        ),
        (net("address = \"10.0.0.1/40\"\n"), "prefix"),
        (net("mtu = 100000\n"), "MTU"),
        (
            net("fdb = [{ mac = \"ff:ff:ff:ff:ff:ff\", remote = \"192.0.2.2\" }]\n"),
            "unicast",
        ),
        (
            net("[[network]]\ndev = \"vx1\"\nvni = 1\n"),
            "VNI 1 is configured twice",
        ),
        (
            net("[[network]]\ndev = \"vx0\"\nvni = 2\n"),
            "device vx0 is configured twice",
        ),
        (head.clone(), "no network"),
        (
            "local = \"192.0.2.1\"\nport = 0\n[[network]]\ndev = \"v\"\nvni = 1\n".to_owned(),
            "port",
        ),
        ("local = [".to_owned(), "line 1"),
        (net("ttl = 0\n"), "TTL 0"),
        (net("tos = \"0x03\"\n"), "sets ECN bits"),
        (net("df = \"maybe\"\n"), "expected set, unset or inherit"),
        (net("srcport = \"9-8\"\n"), "9 is more than 8"),
        (net("udp_csum = \"sometimes\"\n"), "expected on or off"),
        (
            "local = \"192.0.2.1\"\nmode = \"l3\"\nencap = \"ipip\"\n[[network]]\ndev = \"t\"\n\
             udp_csum = true\n"
                .to_owned(),
            "udp_csum is for VXLAN",
        ),
        (
            "local = \"192.0.2.77\"\n[[network]]\ndev = \"vx0\"\nvni = 1\n".to_owned(),
            "not an address",
        ),
    ];
    let file = std::env::temp_dir().join(format!("{}.toml", rj.ns.name));
    for (text, want) in &cases {
        std::fs::write(&file, text).unwrap();
        let o = run(rj.ns.cmd(BIN).args(["run", "--config"]).arg(&file));
        assert_one_line(&o, 2, want, text);
    }
    let _ = std::fs::remove_file(&file);
    let o = rj.vtepd(&["run", "--config", "/nonexistent/vtepd.toml"]);
    assert_one_line(&o, 2, "cannot read config", "missing file");
    rj.assert_nothing_created("config");
}

#[test]
fn missing_privilege_is_status_1() {
    let ns = Netns::new("p");
    let ctl = daemon_support::control_path("p");
    let o = run(ns
        .cmd("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            BIN,
        ])
        .args(["run", "--dev", "vx0", "--local", "127.0.0.1", "--control"])
        .arg(&ctl));
    assert_one_line(&o, 1, "CAP_NET_ADMIN", "unprivileged run");
    assert!(!ns.has_link("vx0"));
}

#[test]
fn client_without_daemon_is_status_1() {
    let ctl = daemon_support::control_path("none");
    for args in [
        &["stats"][..],
        &["fdb", "show"],
        &["fdb", "add", "02:00:00:00:00:01", "192.0.2.2"],
        &["peers", "show", "--json"],
    ] {
        let o = run(Command::new(BIN).args(args).arg("--control").arg(&ctl));
        assert_one_line(&o, 1, "cannot reach vtepd", &format!("{args:?}"));
    }
    // A socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&ctl).unwrap());
    let o = run(Command::new(BIN).args(["stats", "--control"]).arg(&ctl));
    assert_one_line(&o, 1, "connection refused", "stale socket");
    let _ = std::fs::remove_file(&ctl);
}

#[test]
fn bad_client_arguments_are_status_2() {
    let cases: &[&[&str]] = &[
        &["fdb", "add", "01:00:5e:00:00:01", "192.0.2.2"],
        &["fdb", "add", "02:00:00:00:00:01"],
        &["fdb", "add", "02:00:00:00:00:01", "0.0.0.0"],
        &["fdb", "del", "nonsense"],
        &["fdb", "show", "--vni", "x"],
        &["peers", "add", "192.0.2"],
        &["peers", "remove", "192.0.2.2"],
        &["stats", "--yaml"],
        &["frobnicate"],
    ];
    for args in cases {
        let o = run(Command::new(BIN).args(*args));
        assert_one_line(&o, 2, "", &format!("{args:?}"));
    }
    // A remote VTEP on loopback is refused before any daemon is asked, saying why.
    let ctl = daemon_support::control_path("lo");
    let loopback: &[&[&str]] = &[
        &["fdb", "add", "02:00:00:00:00:01", "127.0.0.1"],
        &["peers", "add", "127.0.0.1"],
        &["peers", "add", "127.1.2.3", "--vni", "7"],
    ];
    for args in loopback {
        let o = run(Command::new(BIN).args(*args).arg("--control").arg(&ctl));
        assert_one_line(
            &o,
            2,
            "is a loopback address: a remote VTEP must be reachable over the underlay",
            &format!("{args:?}"),
        );
    }
}

#[test]
fn help_lists_every_flag() {
    let o = run(Command::new(BIN).args(["run", "--help"]));
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--config",
        "--dev",
        "--local",
        "--vni",
        "--peer",
        "--mode",
        "--encap",
        "--port",
        "--address",
        "--mtu",
        "--route",
        "--no-learning",
        "--ageing",
        "--max-fdb",
        "--allow-any-peer",
        "--threads",
        "--control",
        "--metrics",
        "--ttl",
        "--tos",
        "--df",
        "--srcport",
        "--udp-csum",
        "--log-format",
    ] {
        assert!(help.contains(flag), "run --help lacks {flag}");
    }
    let o = run(Command::new(BIN).arg("--help"));
    let help = String::from_utf8_lossy(&o.stdout);
    for sub in [
        "run",
        "fdb",
        "peers",
        "routes",
        "stats",
        "trace",
        "capture",
        "completions",
        "man",
    ] {
        assert!(help.contains(sub), "--help lacks {sub}");
    }
    for sub in [
        &["fdb", "--help"][..],
        &["peers", "--help"],
        &["routes", "--help"],
    ] {
        let o = run(Command::new(BIN).args(sub));
        let help = String::from_utf8_lossy(&o.stdout);
        for c in ["show", "add", "del"] {
            assert!(help.contains(c), "{sub:?} lacks {c}");
        }
    }
}

#[test]
fn bad_log_settings_are_one_line_status_2_and_create_nothing() {
    let rj = RejectNs::new("lg");
    rj.refuse(
        &["--log-format", "xml"],
        "log format 'xml': expected text or json",
    );
    for (filter, want) in [
        (
            "vtepd=loud",
            "RUST_LOG=\"vtepd=loud\" is not a valid log filter",
        ),
        ("info,[{", "is not a valid log filter"),
    ] {
        let o = run(rj.ns.cmd(BIN).args(rj.base()).env("RUST_LOG", filter));
        assert_one_line(&o, 2, want, filter);
    }
    let file = std::env::temp_dir().join(format!("{}.toml", rj.ns.name));
    let text = format!(
        "local = \"192.0.2.1\"\ncontrol = \"{}\"\nlog_format = \"yaml\"\n[[network]]\ndev = \"vx0\"\nvni = 1\n",
        rj.ctl.display()
    );
    std::fs::write(&file, text).unwrap();
    let o = run(rj.ns.cmd(BIN).args(["run", "--config"]).arg(&file));
    let _ = std::fs::remove_file(&file);
    assert_one_line(&o, 2, "log format 'yaml'", "log_format in a file");
    rj.assert_nothing_created("log setting");
}

#[test]
fn completions_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = run(Command::new(BIN).args(["completions", shell]));
        assert!(o.status.success(), "{shell}: {o:?}");
        let script = String::from_utf8_lossy(&o.stdout);
        for word in [
            "run",
            "fdb",
            "peers",
            "routes",
            "neigh",
            "stats",
            "reload",
            "config",
            "trace",
            "capture",
            "log-format",
        ] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    // bash: a script bash itself accepts, which completes `vtepd f` to fdb.
    let o = run(Command::new(BIN).args(["completions", "bash"]));
    let script = String::from_utf8_lossy(&o.stdout).into_owned();
    let probe = format!(
        "{script}\nCOMP_WORDS=(vtepd f); COMP_CWORD=1; COMP_LINE='vtepd f'; COMP_POINT=7; \
         _vtepd vtepd f vtepd; echo \"${{COMPREPLY[@]}}\""
    );
    let o = run(Command::new("bash").args(["--norc", "-c", &probe]));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "fdb", "{o:?}");
    let o = run(Command::new(BIN).args(["completions", "tcsh"]));
    assert_one_line(&o, 2, "tcsh", "unknown shell");
}

#[test]
fn the_man_page_renders() {
    let o = run(Command::new(BIN).arg("man"));
    assert!(o.status.success());
    let roff = String::from_utf8_lossy(&o.stdout).into_owned();
    for part in [".TH vtepd 1", ".SH NAME", ".SH SYNOPSIS", ".SH SUBCOMMANDS"] {
        assert!(roff.contains(part), "vtepd man lacks {part}");
    }
    let dir = std::env::temp_dir().join(daemon_support::unique("man"));
    let o = run(Command::new(BIN).arg("man").arg("--out-dir").arg(&dir));
    assert!(o.status.success(), "{o:?}");
    let run_page = dir.join("vtepd-run.1");
    let page = std::fs::read_to_string(&run_page).unwrap_or_default();
    for sub in ["vtepd-fdb-show.1", "vtepd-completions.1", "vtepd-man.1"] {
        assert!(dir.join(sub).exists(), "no {sub}");
    }
    assert!(
        !dir.join("vtepd-help.1").exists(),
        "a page for clap's help subcommand"
    );
    let o = run(Command::new(BIN).args(["man", "--out-dir", "/proc/vtepd-man"]));
    assert_one_line(
        &o,
        1,
        "cannot create /proc/vtepd-man",
        "unwritable --out-dir",
    );
    // Rendered by groff (man's formatter) when it is installed: no warnings, every flag.
    let rendered = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(&run_page)
        .output();
    let text = Command::new("groff")
        .args(["-man", "-Tascii", "-P-c", "-P-b", "-P-u"])
        .arg(&run_page)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(page.contains(".SH OPTIONS"), "{page}");
    match (rendered, text) {
        (Ok(check), Ok(text)) => {
            let warnings = String::from_utf8_lossy(&check.stderr);
            assert!(check.status.success() && warnings.is_empty(), "{warnings}");
            let text = String::from_utf8_lossy(&text.stdout);
            for flag in ["--dev", "--local", "--log-format", "--control", "SIGHUP"] {
                assert!(text.contains(flag), "vtepd-run(1) lacks {flag}:\n{text}");
            }
        }
        _ => eprintln!("groff not installed: roff structure checked only"),
    }
}

#[test]
fn usage_lines_show_the_required_arguments() {
    let o = run(Command::new(BIN).args(["run", "--help"]));
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(
        help.contains("Usage: vtepd run --dev <NAME> --local <IP> [OPTIONS]"),
        "{help}"
    );
    assert!(help.contains("vtepd run --config <FILE>"), "{help}");
    let o = run(Command::new(BIN).args(["fdb", "add", "--help"]));
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(
        help.contains("Usage: vtepd fdb add [OPTIONS] <MAC> <REMOTE>"),
        "{help}"
    );
    // Wrapped to the terminal's width (COLUMNS when stdout is not a terminal).
    let o = run(Command::new(BIN)
        .args(["run", "--help"])
        .env("COLUMNS", "60"));
    let help = String::from_utf8_lossy(&o.stdout);
    let long = help
        .lines()
        .filter(|l| l.len() > 60 && !l.contains("vtepd run"))
        .count();
    assert_eq!(long, 0, "{help}");
}
