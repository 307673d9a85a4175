//! End-to-end checks of `vtepd run` in network namespaces: two daemons on a veth underlay,
//! an address on each TAP, pings across, and the control socket's view and changes.
//! Needs root (CAP_NET_ADMIN) and the tun, veth and netns kernel features.

mod daemon_support;

use daemon_support::{Daemon, Netns, Pair, control_path, must, wait_until};
use std::process::Command;
use std::time::Duration;
use vtepd::core::DropReason;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn two_daemons(extra_a: &[&str], extra_b: &[&str]) -> (Pair, Daemon, Daemon) {
    let p = Pair::new();
    let mut a = vec!["--dev", "vx0", "--local", "192.0.2.1", "--vni", "42"];
    a.extend_from_slice(&["--address", "10.9.0.1/24"]);
    a.extend_from_slice(extra_a);
    let mut b = vec!["--dev", "vx0", "--local", "192.0.2.2", "--vni", "42"];
    b.extend_from_slice(&["--address", "10.9.0.2/24"]);
    b.extend_from_slice(extra_b);
    let da = Daemon::start(&p.a, &a);
    let db = Daemon::start(&p.b, &b);
    (p, da, db)
}

fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[test]
fn ping_across_learns_and_counts() {
    let (p, a, b) = two_daemons(&["--peer", "192.0.2.2"], &["--peer", "192.0.2.1"]);
    // The TAP: created, up, MTU = 1500 - 50, address set.
    let link = p.a.ip(&["-o", "link", "show", "vx0"]);
    assert!(link.contains("mtu 1450") && link.contains("UP"), "{link}");
    assert!(
        p.a.ip(&["-o", "addr", "show", "vx0"])
            .contains("10.9.0.1/24")
    );

    assert!(
        p.a.ping_within("10.9.0.2", SECS(5)),
        "no ping across: {}",
        a.log_text()
    );
    assert!(p.b.ping("10.9.0.1"));

    let b_mac = p.b.mac("vx0");
    let fdb = a.fdb();
    let e = fdb
        .iter()
        .find(|e| e["mac"] == b_mac.as_str())
        .unwrap_or_else(|| panic!("{fdb:?}"));
    assert_eq!(e["remote"], "192.0.2.2");
    assert_eq!(e["kind"], "learned");
    assert_eq!(e["vni"], 42);
    assert!(e["age_secs"].as_u64().is_some());
    // The text form, like `bridge fdb show`.
    let text = a.ok(&["fdb", "show"]);
    assert!(
        text.contains(&format!("{b_mac} dev vx0 vni 42 dst 192.0.2.2 learned")),
        "{text}"
    );

    let st = a.stats();
    for k in [
        "rx_tunnel",
        "tx_tunnel",
        "rx_device",
        "tx_device",
        "flood_copies",
        "learned",
    ] {
        assert!(n(&st, k) > 0, "{k} is zero: {st}");
    }
    assert!(n(&st, "fdb_entries") >= 1);
    let drops = st["drops"].as_object().unwrap();
    assert_eq!(drops.len(), DropReason::COUNT, "every reason listed: {st}");
    for r in DropReason::ALL {
        assert!(drops.contains_key(r.name()), "{} missing", r.name());
    }
    let peers: serde_json::Value =
        serde_json::from_str(&a.ok(&["peers", "show", "--json"])).unwrap();
    assert_eq!(peers[0]["vni"], 42);
    assert_eq!(peers[0]["peers"][0], "192.0.2.2");
    drop(b);
}

#[test]
fn peers_and_fdb_changes_steer_traffic() {
    // A floods nowhere and learns nothing; B knows A.
    let (p, a, _b) = two_daemons(&["--no-learning"], &["--peer", "192.0.2.1"]);
    assert!(!p.a.ping("10.9.0.2"));
    assert!(n(&a.stats()["drops"], "no_peers") > 0);

    // A flood-list peer makes ARP and unknown unicast reach B.
    a.ok(&["peers", "add", "192.0.2.2"]);
    assert!(p.a.ping_within("10.9.0.2", SECS(5)), "{}", a.log_text());
    assert!(a.fdb().is_empty(), "--no-learning learned: {:?}", a.fdb());

    // Without it, the (now ARP-resolved) unicast has nowhere to go.
    a.ok(&["peers", "del", "192.0.2.2"]);
    assert!(!p.a.ping("10.9.0.2"));

    // A static entry steers unicast to B again, without any flooding.
    let b_mac = p.b.mac("vx0");
    a.ok(&["fdb", "add", &b_mac, "192.0.2.2"]);
    let fdb = a.fdb();
    assert_eq!(fdb.len(), 1);
    assert_eq!(fdb[0]["kind"], "static");
    let floods = n(&a.stats(), "flood_copies");
    assert!(
        p.a.ping("10.9.0.2"),
        "static entry did not steer: {}",
        a.log_text()
    );
    assert_eq!(n(&a.stats(), "flood_copies"), floods, "unicast was flooded");

    a.ok(&["fdb", "del", &b_mac]);
    assert!(a.fdb().is_empty());
    assert!(!p.a.ping("10.9.0.2"));

    // Deleting what is not there is a runtime error; an unknown VNI is bad usage.
    assert_eq!(a.client(&["fdb", "del", &b_mac]).status.code(), Some(1));
    assert_eq!(
        a.client(&["peers", "del", "192.0.2.9"]).status.code(),
        Some(1)
    );
    let out = a.client(&["peers", "add", "192.0.2.9", "--vni", "7"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("VNI 7"));
    // A flush clears static entries too unless --learned-only.
    a.ok(&["fdb", "add", &b_mac, "192.0.2.2"]);
    a.ok(&["fdb", "flush", "--learned-only"]);
    assert_eq!(a.fdb().len(), 1);
    a.ok(&["fdb", "flush"]);
    assert!(a.fdb().is_empty());
}

#[test]
fn sigterm_and_sigint_exit_zero_and_clean_up() {
    for sig in ["TERM", "INT"] {
        let ns = Netns::new("s");
        let mut d = Daemon::start(&ns, &["--dev", "vx0", "--local", "127.0.0.1"]);
        assert!(ns.has_link("vx0"));
        let mode = std::fs::metadata(&d.control).map(|m| {
            use std::os::unix::fs::PermissionsExt;
            m.permissions().mode() & 0o777
        });
        assert_eq!(mode.unwrap(), 0o600);
        d.signal(sig);
        let st = d.wait_exit(SECS(10)).expect("daemon did not exit");
        assert_eq!(st.code(), Some(0), "SIG{sig}: {}", d.log_text());
        assert!(!ns.has_link("vx0"), "TAP left behind after SIG{sig}");
        assert!(
            !d.control.exists(),
            "control socket left behind after SIG{sig}"
        );
    }
}

#[test]
fn deleted_device_ends_the_daemon_with_status_1() {
    let ns = Netns::new("d");
    let mut d = Daemon::start(&ns, &["--dev", "vx0", "--local", "127.0.0.1"]);
    ns.ip(&["link", "del", "vx0"]);
    let st = d
        .wait_exit(SECS(10))
        .expect("daemon kept running without its device");
    assert_eq!(st.code(), Some(1));
    let log = d.log_text();
    assert!(log.contains("vx0 was removed"), "{log}");
    assert!(!d.control.exists());
}

#[test]
fn stale_socket_is_replaced_and_a_live_daemon_is_refused() {
    let ns = Netns::new("k");
    let path = control_path("stale");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists(), "stale socket file");
    // A daemon on the stale path starts (Daemon::start uses its own path, so drive it here).
    let mut first = ns
        .cmd(daemon_support::BIN)
        .args(["run", "--dev", "vx0", "--local", "127.0.0.1", "--control"])
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = |args: &[&str]| {
        Command::new(daemon_support::BIN)
            .args(args)
            .arg("--control")
            .arg(&path)
            .output()
            .unwrap()
    };
    let up = wait_until(SECS(10), || client(&["stats"]).status.success());
    // A second daemon (another device) is refused while the first answers.
    let second = ns
        .cmd(daemon_support::BIN)
        .args([
            "run",
            "--dev",
            "vx1",
            "--local",
            "127.0.0.1",
            "--port",
            "4790",
            "--control",
        ])
        .arg(&path)
        .output()
        .unwrap();
    must(Command::new("kill").args(["-TERM", &first.id().to_string()]));
    let exited = wait_until(SECS(10), || matches!(first.try_wait(), Ok(Some(_))));
    if !exited {
        let _ = first.kill();
    }
    let _ = first.wait();
    let _ = std::fs::remove_file(&path);
    assert!(up, "daemon did not start over a stale socket");
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("another vtepd"), "{err}");
    assert!(!ns.has_link("vx1"), "refused daemon created its device");
}

/// What `ip` and the kernel say about device `dev` in `ns` that vtepd may change: the link with
/// its TUN/TAP details, its IPv4 addresses, and its offloads (as ethtool shows them, when
/// ethtool is there, less what was only requested). Left out: what the kernel itself changes
/// the first time a device goes up and keeps (its queueing discipline; a TUN's IPv6 address
/// generation mode, eui64 to random).
fn device_state(ns: &Netns, dev: &str) -> String {
    let link = ns.ip(&["-d", "-o", "link", "show", "dev", dev]);
    let mut words = link.split_whitespace().peekable();
    let mut kept = Vec::new();
    while let Some(w) = words.next() {
        if w == "qdisc" || w == "addrgenmode" {
            words.next();
            continue;
        }
        kept.push(w);
    }
    let addrs = ns.ip(&["-4", "-o", "addr", "show", "dev", dev]);
    let offloads = daemon_support::run(ns.cmd("ethtool").args(["-k", dev]));
    let offloads = String::from_utf8_lossy(&offloads.stdout)
        .lines()
        .map(|l| l.split(" [").next().unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    format!("{}\n{addrs}\n{offloads}", kept.join(" "))
}

/// A TAP or TUN made beforehand (multi-queue or not) with an address of its own: vtepd adds
/// its address beside it, sets its MTU and brings it up; after SIGTERM the device is still
/// there and exactly as it was (down, its MTU, queue length and address, no virtio-net header,
/// offloads off).
#[test]
fn an_existing_device_is_given_back_as_it_was() {
    let l2: &[&str] = &["--dev", "vx0", "--local", "127.0.0.1"];
    let ipip: &[&str] = &[
        "--mode",
        "l3",
        "--encap",
        "ipip",
        "--dev",
        "vx0",
        "--local",
        "127.0.0.1",
    ];
    for (kind, mq, args) in [("tap", true, l2), ("tap", false, l2), ("tun", true, ipip)] {
        let ns = Netns::new("r");
        let mut add = vec!["tuntap", "add", "dev", "vx0", "mode", kind];
        if mq {
            add.push("multi_queue");
        }
        ns.ip(&add);
        ns.ip(&["addr", "add", "10.8.0.1/24", "dev", "vx0"]);
        let mac = (kind == "tap").then(|| ns.mac("vx0"));
        let before = device_state(&ns, "vx0");
        let mut all = args.to_vec();
        all.extend_from_slice(&[
            "--address",
            "10.9.0.1/24",
            "--mtu",
            "1400",
            "--threads",
            "2",
        ]);
        let mut d = Daemon::start(&ns, &all);
        let link = ns.ip(&["-o", "link", "show", "vx0"]);
        assert!(link.contains("mtu 1400") && link.contains(",UP"), "{link}");
        let addrs = ns.ip(&["-4", "-o", "addr", "show", "dev", "vx0"]);
        assert!(
            addrs.contains("10.8.0.1/24") && addrs.contains("10.9.0.1/24"),
            "added beside the device's own: {addrs}"
        );
        if let Some(mac) = mac {
            assert_eq!(ns.mac("vx0"), mac, "an existing device keeps its MAC");
        }
        d.signal("TERM");
        assert_eq!(
            d.wait_exit(SECS(10)).and_then(|s| s.code()),
            Some(0),
            "{}",
            d.log_text()
        );
        assert!(
            ns.has_link("vx0"),
            "a device vtepd did not create must stay"
        );
        assert_eq!(
            device_state(&ns, "vx0"),
            before,
            "{kind} (multi_queue {mq}) not as it was: {}",
            d.log_text()
        );
        assert!(d.log_text().contains("device given back as it was"));
    }
}

#[test]
fn config_file_with_two_networks() {
    let p = Pair::new();
    let conf = |local: &str, peer: &str, host: u8| {
        format!(
            "local = \"{local}\"\n\
             [[network]]\ndev = \"vx10\"\nvni = 10\npeers = [\"{peer}\"]\naddress = \"10.10.0.{host}/24\"\n\
             [[network]]\ndev = \"vx20\"\nvni = 20\npeers = [\"{peer}\"]\naddress = \"10.20.0.{host}/24\"\n"
        )
    };
    let dir = std::env::temp_dir();
    let (fa, fb) = (
        dir.join(format!("{}.toml", p.a.name)),
        dir.join(format!("{}.toml", p.b.name)),
    );
    std::fs::write(&fa, conf("192.0.2.1", "192.0.2.2", 1)).unwrap();
    std::fs::write(&fb, conf("192.0.2.2", "192.0.2.1", 2)).unwrap();
    let a = Daemon::start(&p.a, &["--config", fa.to_str().unwrap()]);
    let _b = Daemon::start(&p.b, &["--config", fb.to_str().unwrap()]);
    let _ = std::fs::remove_file(&fa);
    let _ = std::fs::remove_file(&fb);
    assert!(p.a.ping_within("10.10.0.2", SECS(5)), "{}", a.log_text());
    assert!(p.a.ping_within("10.20.0.2", SECS(5)), "{}", a.log_text());
    // Each network learned its own remote MAC, under its own VNI.
    let fdb = a.fdb();
    for (vni, dev) in [(10, "vx10"), (20, "vx20")] {
        let mac = p.b.mac(dev);
        assert!(
            fdb.iter()
                .any(|e| e["vni"] == vni && e["mac"] == mac.as_str()),
            "VNI {vni}: {fdb:?}"
        );
    }
    assert_eq!(
        a.ok(&["fdb", "show", "--vni", "10", "--json"])
            .matches("\"vni\"")
            .count(),
        1
    );
    // With two networks a change needs --vni.
    let out = a.client(&["peers", "add", "192.0.2.9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give --vni"));
    a.ok(&["peers", "add", "192.0.2.9", "--vni", "20"]);
    let peers = a.ok(&["peers", "show"]);
    assert!(
        peers
            .lines()
            .any(|l| l.starts_with("20 ") && l.split_whitespace().nth(2) == Some("192.0.2.9")),
        "{peers}"
    );
}

#[test]
fn a_peer_that_cannot_be_reached_is_counted_and_the_others_still_work() {
    // 198.51.100.9 has no route in A's namespace: every copy to it fails with ENETUNREACH.
    let (p, a, _b) = two_daemons(
        &["--peer", "198.51.100.9", "--peer", "192.0.2.2"],
        &["--peer", "192.0.2.1"],
    );
    assert!(p.a.ping_within("10.9.0.2", SECS(5)), "{}", a.log_text());
    let st = a.stats();
    assert!(n(&st["drops"], "tunnel_tx_error") > 0, "{st}");
    // Counted in the network too, with the copies that went through to the other peer.
    let net = net_row(&st, "vx0");
    assert_eq!(
        n(&net["drops"], "tunnel_tx_error"),
        n(&st["drops"], "tunnel_tx_error"),
        "{net}"
    );
    assert!(n(net, "drops_total") >= n(&net["drops"], "tunnel_tx_error"));
    assert!(n(&peer_row(&st, 42, "192.0.2.2"), "tx_tunnel") > 0, "{st}");
    assert_eq!(
        n(&peer_row(&st, 42, "198.51.100.9"), "tx_tunnel"),
        0,
        "{st}"
    );
    assert!(p.a.ping("10.9.0.2"), "the loop stopped after a send error");
}

#[test]
fn learned_entries_age_out() {
    let (p, a, _b) = two_daemons(
        &["--peer", "192.0.2.2", "--ageing", "1"],
        &["--peer", "192.0.2.1"],
    );
    assert!(p.a.ping_within("10.9.0.2", SECS(5)));
    let b_mac = p.b.mac("vx0");
    a.ok(&["fdb", "add", "02:00:00:00:00:77", "192.0.2.2"]);
    let aged = wait_until(SECS(10), || {
        let fdb = a.fdb();
        !fdb.iter().any(|e| e["mac"] == b_mac.as_str())
    });
    assert!(aged, "learned entry did not age out: {:?}", a.fdb());
    // Static entries never age.
    assert!(a.fdb().iter().any(|e| e["mac"] == "02:00:00:00:00:77"));
}

#[test]
fn control_socket_answers_garbage_with_an_error_and_keeps_serving() {
    use std::io::{BufRead, BufReader, Write};
    let ns = Netns::new("g");
    let d = Daemon::start(&ns, &["--dev", "vx0", "--local", "127.0.0.1"]);
    for req in [
        "not json\n",
        "{\"cmd\":\"reboot\"}\n",
        "{\"cmd\":\"fdb_show\",\"vni\":\"x\"}\n",
    ] {
        let mut s = std::os::unix::net::UnixStream::connect(&d.control).unwrap();
        s.set_read_timeout(Some(SECS(5))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ok"], false, "{req}: {line}");
        assert!(
            v["error"].as_str().unwrap().contains("bad request"),
            "{line}"
        );
    }
    // A client that connects and says nothing does not wedge the server for good.
    let _silent = std::os::unix::net::UnixStream::connect(&d.control).unwrap();
    d.ok(&["stats"]);
}

/// A device MTU above what the underlay carries: one warning line, and oversize traffic is
/// still carried (issue 11 §1): IPv4 without DF is cut into fragments, TCP super-frames are cut
/// to segments that fit; nothing is handed to the kernel too large (no `tunnel_tx_error`).
#[test]
fn an_mtu_above_the_underlay_warns_and_oversize_traffic_still_crosses() {
    // Both TAPs at MTU 9000 over a 1500 underlay (veth): TCP agrees on an MSS of 8960.
    let (p, a, _b) = two_daemons(
        &["--peer", "192.0.2.2", "--mtu", "9000"],
        &["--peer", "192.0.2.1", "--mtu", "9000"],
    );
    let warn = "dev vx0: MTU 9000 is more than the underlay carries: eth0 has MTU 1500, \
                which leaves 1450 after VXLAN's 50 bytes; larger IPv4 packets with DF and IPv6 \
                packets from it are answered with an ICMP error carrying the MTU that fits, larger \
                IPv4 packets without DF are cut into fragments, other frames are dropped (counted \
                too_big)";
    let log = a.log_text();
    assert_eq!(
        log.lines().filter(|l| l.contains(warn)).count(),
        1,
        "one warning line: {log}"
    );
    assert!(p.a.ping_within("10.9.0.2", SECS(5)), "{}", a.log_text());
    // A 3028-byte packet without DF, not fragmented by the TAP (MTU 9000): cut by vtepd.
    let big = daemon_support::run(
        p.a.cmd("ping")
            .args(["-c", "2", "-W", "1", "-M", "dont", "-s", "3000", "10.9.0.2"])
            .stdout(std::process::Stdio::null()),
    );
    assert!(big.status.success(), "a 3028-byte ping was lost");
    let st = a.stats();
    assert!(n(&st, "fragmented") >= 2, "{st}");
    assert_eq!(n(&st["drops"], "tunnel_tx_error"), 0, "{st}");

    // TCP: full-size segments (from TSO super-frames: the GSO send path) are cut to fit.
    let sink = "import socket\n\
                l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                l.bind(('10.9.0.2', 5201)); l.listen(1); l.settimeout(10)\n\
                c, _ = l.accept(); c.settimeout(10); n = 0\n\
                while True:\n    b = c.recv(65536)\n    if not b: break\n    n += len(b)\n\
                print(n)\n";
    let sink =
        p.b.cmd("timeout")
            .args(["30", "python3", "-c", sink])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
    let source = "import socket, time\n\
                  for _ in range(50):\n    try:\n        s = socket.create_connection(('10.9.0.2', 5201), timeout=3); break\n    except OSError: time.sleep(0.1)\n\
                  s.settimeout(10)\n\
                  s.sendall(b'x' * 2000000); s.close()\n";
    let sent = daemon_support::run(p.a.cmd("timeout").args(["30", "python3", "-c", source]));
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let got = sink.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "2000000");
    let st = a.stats();
    assert_eq!(n(&st["drops"], "tunnel_tx_error"), 0, "{st}");
}

/// Many networks from a file: every device has one root qdisc (not one per possible queue), and
/// after SIGTERM every device vtepd created is gone (removed in one batch), while a device of
/// someone else's in the same namespace stays.
#[test]
fn many_networks_are_all_removed_at_exit() {
    const NETS: usize = 300;
    let ns = Netns::new("m");
    ns.ip(&["tuntap", "add", "dev", "other0", "mode", "tap"]);
    let mut conf = String::from("local = \"127.0.0.1\"\nthreads = 2\n");
    for i in 1..=NETS {
        conf.push_str(&format!("[[network]]\ndev = \"vn{i}\"\nvni = {i}\n"));
    }
    let file = std::env::temp_dir().join(format!("{}.toml", ns.name));
    std::fs::write(&file, conf).unwrap();
    let mut d = Daemon::start(&ns, &["--config", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    let ours = |ns: &Netns| ns.links().iter().filter(|l| l.starts_with("vn")).count();
    assert_eq!(ours(&ns), NETS);
    let qdisc = must(ns.cmd("tc").args(["qdisc", "show", "dev", "vn1"]));
    assert!(
        qdisc.lines().count() == 1 && qdisc.contains(" root ") && !qdisc.contains("mq"),
        "one root qdisc: {qdisc}"
    );
    d.signal("TERM");
    let st = d.wait_exit(SECS(120)).expect("daemon did not exit");
    assert_eq!(st.code(), Some(0), "{}", d.log_text());
    assert_eq!(ours(&ns), 0, "devices left behind: {}", d.log_text());
    assert!(ns.has_link("other0"), "someone else's device was removed");
    let log = d.log_text();
    assert!(
        log.contains(&format!(
            "devices removed (vn1, vn2, vn3, vn4, vn5, vn6, vn7, vn8 and {} more) devices={NETS}",
            NETS - 8
        )),
        "{log}"
    );
}

/// The `networks` row of `dev` in `stats --json`.
fn net_row<'a>(st: &'a serde_json::Value, dev: &str) -> &'a serde_json::Value {
    st["networks"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["dev"] == dev))
        .unwrap_or_else(|| panic!("no network {dev} in {st}"))
}

/// The `peers` row of (`vni`, `remote`) in `stats --json` (all zero when absent).
fn peer_row(st: &serde_json::Value, vni: u64, remote: &str) -> serde_json::Value {
    st["peers"]
        .as_array()
        .unwrap_or_else(|| panic!("no peers array in {st}"))
        .iter()
        .find(|r| r["vni"] == vni && r["remote"] == remote)
        .cloned()
        .unwrap_or_else(|| serde_json::json!({"rx_tunnel": 0, "rx_tunnel_bytes": 0, "tx_tunnel": 0, "tx_tunnel_bytes": 0}))
}

/// `after[key] - before[key]`.
fn grew(after: &serde_json::Value, before: &serde_json::Value, key: &str) -> u64 {
    n(after, key) - n(before, key)
}

/// A two-network configuration file for host `host` (1 or 2) of a [`Pair`], plus `extra` keys.
fn two_network_conf(p: &Pair, host: u8, extra: &str) -> std::path::PathBuf {
    let (local, peer, ns) = match host {
        1 => ("192.0.2.1", "192.0.2.2", &p.a),
        _ => ("192.0.2.2", "192.0.2.1", &p.b),
    };
    let text = format!(
        "local = \"{local}\"\n{extra}\n\
         [[network]]\ndev = \"vx10\"\nvni = 10\npeers = [\"{peer}\"]\naddress = \"10.10.0.{host}/24\"\n\
         [[network]]\ndev = \"vx20\"\nvni = 20\npeers = [\"{peer}\"]\naddress = \"10.20.0.{host}/24\"\n"
    );
    let f = std::env::temp_dir().join(format!("{}.toml", ns.name));
    std::fs::write(&f, text).unwrap();
    f
}

/// Five pings of 1000 bytes across network 10 (no ARP: permanent neighbours; no IPv6): each
/// side counts exactly 5 frames of 1042 bytes (Ethernet + IPv4 + ICMP + 1000) each way, in
/// network 10 and for the other side's address as peer, and nothing in network 20.
#[test]
fn per_network_and_per_peer_counters_count_known_pings() {
    let p = Pair::new();
    p.a.disable_ipv6();
    p.b.disable_ipv6();
    let (fa, fb) = (two_network_conf(&p, 1, ""), two_network_conf(&p, 2, ""));
    let a = Daemon::start(&p.a, &["--config", fa.to_str().unwrap()]);
    let b = Daemon::start(&p.b, &["--config", fb.to_str().unwrap()]);
    let _ = std::fs::remove_file(&fa);
    let _ = std::fs::remove_file(&fb);
    for (ns, other, ip) in [(&p.a, &p.b, "10.10.0.2"), (&p.b, &p.a, "10.10.0.1")] {
        let mac = other.mac("vx10");
        ns.ip(&[
            "neigh",
            "replace",
            ip,
            "lladdr",
            &mac,
            "dev",
            "vx10",
            "nud",
            "permanent",
        ]);
    }
    // Both MACs learned (the first frames are flooded, as unknown unicast).
    assert!(p.a.ping_within("10.10.0.2", SECS(5)), "{}", a.log_text());
    let (a0, b0) = (a.stats(), b.stats());
    let out =
        must(
            p.a.cmd("ping")
                .args(["-c", "5", "-i", "0.2", "-W", "2", "-s", "1000", "10.10.0.2"]),
        );
    assert!(out.contains("5 received"), "{out}");
    let (a1, b1) = (a.stats(), b.stats());
    const FRAME: u64 = 14 + 20 + 8 + 1000;

    assert_eq!(a1["version"], 1, "{a1}");
    assert_eq!(a1["mode"], "l2-vxlan", "{a1}");
    let (n0, n1) = (net_row(&a0, "vx10"), net_row(&a1, "vx10"));
    for (k, want) in [
        ("rx_tunnel", 5),
        ("rx_tunnel_bytes", 5 * FRAME),
        ("tx_tunnel", 5),
        ("tx_tunnel_bytes", 5 * FRAME),
        ("rx_device", 5),
        ("rx_device_bytes", 5 * FRAME),
        ("tx_device", 5),
        ("tx_device_bytes", 5 * FRAME),
    ] {
        assert_eq!(grew(n1, n0, k), want, "A's vx10 {k}: {n0} -> {n1}");
        // The daemon's totals moved as much (it has no other traffic).
        assert_eq!(grew(&a1, &a0, k), want, "A's total {k}");
    }
    // The other network saw nothing: every figure present, all zero.
    let other = net_row(&a1, "vx20");
    for k in vtepd::core::NetTraffic::NAMES {
        assert_eq!(n(other, k), 0, "vx20 {k}: {other}");
    }
    assert_eq!(other["drops"].as_object().unwrap().len(), DropReason::COUNT);
    assert_eq!(n(other, "drops_total"), 0);
    // Per peer, both sides.
    let (p0, p1) = (
        peer_row(&a0, 10, "192.0.2.2"),
        peer_row(&a1, 10, "192.0.2.2"),
    );
    let (q0, q1) = (
        peer_row(&b0, 10, "192.0.2.1"),
        peer_row(&b1, 10, "192.0.2.1"),
    );
    for (k, want) in [
        ("rx_tunnel", 5),
        ("rx_tunnel_bytes", 5 * FRAME),
        ("tx_tunnel", 5),
        ("tx_tunnel_bytes", 5 * FRAME),
    ] {
        assert_eq!(grew(&p1, &p0, k), want, "A's peer {k}: {p0} -> {p1}");
        assert_eq!(grew(&q1, &q0, k), want, "B's peer {k}: {q0} -> {q1}");
    }
    assert_eq!(p1["dev"], "vx10");
    assert_eq!(p1["path_mtu"], 1500, "{p1}");
    assert_eq!(
        peer_row(&a1, 20, "192.0.2.2"),
        peer_row(&a0, 20, "192.0.2.2"),
        "network 20's peer row moved"
    );
    assert_eq!(n(&a1["peers_overflow"], "rx_tunnel"), 0, "{a1}");

    // The text: one block per network, one line per peer, units, only L2 counters.
    let text = a.ok(&["stats"]);
    eprintln!("{text}");
    assert!(text.starts_with("vtepd l2-vxlan: up "), "{text}");
    assert!(text.contains("network vni 10 dev vx10 mac "), "{text}");
    assert!(
        text.contains("peer 192.0.2.2 vni 10 dev vx10: rx "),
        "{text}"
    );
    assert!(text.contains(" KiB"), "{text}");
    for absent in ["rx_merged", "arp_requests", "icmp_echo_replies", " 0\n"] {
        assert!(!text.contains(absent), "{absent:?} in {text}");
    }
    let all = a.ok(&["stats", "--all"]);
    assert!(all.contains("  mac_moves               0\n"), "{all}");
    assert!(!all.contains("rx_merged"), "{all}");
}

/// With `--allow-any-peer`, VXLAN frames from 760 spoofed sources in two networks (1520
/// (network, remote) pairs, more than a worker's rows): the rows stop at the bound, the rest
/// is counted in `peers_overflow`, and rows plus overflow add up to the networks' figures.
#[test]
fn a_spoofed_flood_does_not_grow_the_peer_rows_past_the_bound() {
    let p = Pair::new();
    let fb = two_network_conf(&p, 2, "allow_any_peer = true\nthreads = 1");
    let b = Daemon::start(&p.b, &["--config", fb.to_str().unwrap()]);
    let _ = std::fs::remove_file(&fb);
    for key in ["all", "default", "eth0"] {
        must(
            p.b.cmd("sysctl")
                .args(["-qw", &format!("net.ipv4.conf.{key}.rp_filter=0")]),
        );
    }
    // Raw IPv4 (the kernel fills in the length, ID and header checksum), UDP checksum 0.
    let script = r#"
import socket, struct, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
srcs = ["192.0.2.%d" % i for i in range(3, 255)]
srcs += ["198.51.100.%d" % i for i in range(1, 255)] + ["203.0.113.%d" % i for i in range(1, 255)]
sent = 0
for vni in (10, 20):
    for k, src in enumerate(srcs):
        mac = bytes([2, 0xaa, vni, 0, k >> 8, k & 0xff])
        frame = b"\xff" * 6 + mac + b"\x88\xb5" + bytes(46)
        vx = struct.pack("!II", 0x08000000, vni << 8)
        udp = struct.pack("!HHHH", 40000 + k, 4789, 8 + len(vx) + len(frame), 0)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, 0, 0, 64, 17, 0,
                         socket.inet_aton(src), socket.inet_aton("192.0.2.2"))
        s.sendto(ip + udp + vx + frame, ("192.0.2.2", 0))
        sent += 1
        if sent % 32 == 0:
            time.sleep(0.002)
print(sent)
"#;
    let sent: u64 = must(p.a.cmd("/usr/bin/python3").args(["-c", script]))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(sent, 1520);
    // Every datagram read (or lost to a full socket queue, counted) before looking.
    let seen = wait_until(SECS(10), || {
        let st = b.stats();
        n(&st, "rx_tunnel") + n(&st["drops"], "rx_queue_full") >= sent
    });
    let st = b.stats();
    assert!(seen, "not all datagrams arrived: {st}");
    let rows = st["peers"].as_array().unwrap();
    let bound = vtepd::daemon::stats::PEER_ROWS;
    assert!(
        rows.len() <= bound,
        "{} peer rows, bound {bound}",
        rows.len()
    );
    let overflow = n(&st["peers_overflow"], "rx_tunnel");
    assert!(
        overflow > 0,
        "nothing in the overflow: {}",
        st["peers_overflow"]
    );
    let in_rows: u64 = rows.iter().map(|r| n(r, "rx_tunnel")).sum();
    let in_nets: u64 = st["networks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| n(r, "rx_tunnel"))
        .sum();
    assert_eq!(in_rows + overflow, in_nets, "rows + overflow vs networks");
    assert!(
        in_nets > bound as u64,
        "only {in_nets} frames delivered: {st}"
    );
    assert_eq!(
        n(&st["peers_overflow"], "rx_tunnel_bytes"),
        overflow * 60,
        "60-byte frames"
    );
    let text = b.ok(&["stats"]);
    assert!(text.contains("peers beyond the row limit: rx "), "{text}");
}
