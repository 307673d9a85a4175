//! Reloading the configuration of a running daemon (`vtepd reload`, SIGHUP) and printing the
//! running one (`vtepd config show`), end to end in network namespaces: a reload under traffic
//! keeps learned entries and counters, a peer added by a reload gets flooded traffic and one
//! removed stops getting it, a refused reload (a setting that needs a restart, an invalid file)
//! changes nothing, SIGHUP does what `vtepd reload` does, routes follow the file in the kernel,
//! and `config show` round-trips through a file. Needs root (network namespaces).

mod daemon_support;

use daemon_support::{BIN, Conf, Daemon, Netns, Pair, must, run, wait_until};
use std::process::Stdio;
use std::time::Duration;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// An L2 network file for host `me` of a pair: VNI 42 on TAP vx0, overlay 10.9.0.`me`/24, one
/// worker, with `peers` and the extra network keys `extra`.
fn l2_file(me: u8, peers: &str, extra: &str) -> String {
    format!(
        "local = \"192.0.2.{me}\"\nthreads = 1\n[[network]]\ndev = \"vx0\"\nvni = 42\n\
         address = \"10.9.0.{me}/24\"\npeers = [{peers}]\n{extra}"
    )
}

/// `vtepd reload` on `d`: (exit code, stdout, stderr).
fn reload(d: &Daemon) -> (Option<i32>, String, String) {
    let o = d.client(&["reload"]);
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `vtepd reload` that must succeed; its output.
fn reload_ok(d: &Daemon) -> String {
    let (code, out, err) = reload(d);
    assert_eq!(code, Some(0), "reload failed: {err}{}", d.log_text());
    out
}

fn config_show(d: &Daemon) -> String {
    d.ok(&["config", "show"])
}

/// The learned FDB rows of `d` (MAC, remote).
fn learned(d: &Daemon) -> Vec<(String, String)> {
    d.fdb()
        .into_iter()
        .filter(|e| e["kind"] == "learned")
        .map(|e| {
            (
                e["mac"].as_str().unwrap().to_owned(),
                e["remote"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A namespace whose underlay holds 192.0.2.1/24 (on one end of a veth pair of its own).
fn underlay_ns(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ]);
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "eth0"]);
    ns.ip(&["link", "set", "eth0", "up"]);
    ns.ip(&["link", "set", "eth1", "up"]);
    ns
}

/// Two L2 daemons on a pair, each started from a file naming the other as its peer; returns
/// once A pings B through the tunnel.
fn pair_from_files() -> (Pair, Conf, Conf, Daemon, Daemon) {
    let p = Pair::new();
    p.a.disable_ipv6();
    p.b.disable_ipv6();
    let (fa, fb) = (
        Conf::new(&l2_file(1, "\"192.0.2.2\"", "")),
        Conf::new(&l2_file(2, "\"192.0.2.1\"", "")),
    );
    let a = Daemon::start(&p.a, &["--config", fa.path()]);
    let b = Daemon::start(&p.b, &["--config", fb.path()]);
    assert!(p.a.ping_within("10.9.0.2", SECS(10)), "{}", a.log_text());
    (p, fa, fb, a, b)
}

/// A steady ping from A to B runs while A reloads several times (settings, a static entry, a
/// third peer): every echo is answered, the learned entries and the counters are still there
/// afterwards, and `config show` has the new settings.
#[test]
fn a_reload_under_traffic_keeps_learned_entries_and_counters() {
    let (p, fa, _fb, a, _b) = pair_from_files();
    let before = learned(&a);
    assert!(
        before.iter().any(|(_, r)| r == "192.0.2.2"),
        "nothing learned from B: {before:?}"
    );
    let st = a.stats();
    let (rx, tx) = (
        st["rx_tunnel"].as_u64().unwrap(),
        st["tx_tunnel"].as_u64().unwrap(),
    );
    assert!(rx > 0 && tx > 0, "{st}");

    let ping =
        p.a.cmd("ping")
            .args(["-c", "30", "-i", "0.1", "-W", "3", "10.9.0.2"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
    let files = [
        l2_file(1, "\"192.0.2.2\"", "ageing = 600\nmax_fdb = 1000\n"),
        l2_file(
            1,
            "\"192.0.2.2\", \"192.0.2.3\"",
            "ageing = 600\nmax_fdb = 1000\nmac_move = { moves = 2, window = 10, hold = 10 }\n\
             fdb = [{ mac = \"02:00:00:00:00:77\", remote = \"192.0.2.7\" }]\n",
        ),
        l2_file(
            1,
            "\"192.0.2.2\", \"192.0.2.3\"",
            "ageing = 600\nmax_fdb = 1000\nmac_move = { moves = 2, window = 10, hold = 10 }\n\
             fdb = [{ mac = \"02:00:00:00:00:77\", remote = \"192.0.2.7\" }]\n\
             storm = { broadcast = 1000 }\n",
        ),
    ];
    let mut said = String::new();
    for f in &files {
        fa.write(f);
        said += &reload_ok(&a);
        std::thread::sleep(Duration::from_millis(300));
    }
    let out = ping.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("30 packets transmitted, 30 received"),
        "echoes lost across reloads: {text}\n{}",
        a.log_text()
    );
    for want in [
        "VNI 42: ageing 300s -> 600s",
        "VNI 42: max_fdb 65536 -> 1000",
        "VNI 42: peer 192.0.2.3 added",
        "VNI 42: static FDB entry 02:00:00:00:00:77 -> 192.0.2.7 added",
        "VNI 42: mac_move moves=5,window=180,hold=180 -> moves=2,window=10,hold=10",
        "VNI 42: storm broadcast=unlimited",
    ] {
        assert!(said.contains(want), "{want}: {said}");
    }
    // Learned state and counters are kept.
    let after = learned(&a);
    for e in &before {
        assert!(after.contains(e), "{e:?} lost: {after:?}");
    }
    let st = a.stats();
    assert!(st["rx_tunnel"].as_u64().unwrap() >= rx + 30, "{st}");
    assert!(st["tx_tunnel"].as_u64().unwrap() >= tx + 30, "{st}");
    let shown = config_show(&a);
    for want in [
        "ageing = 600",
        "max_fdb = 1000",
        "192.0.2.3",
        "02:00:00:00:00:77",
    ] {
        assert!(shown.contains(want), "{want}: {shown}");
    }
    // The same file again: no change.
    assert_eq!(reload_ok(&a), "no change\n");
}

/// A's file starts with no peer: its broadcasts (ARP) reach nobody and A cannot ping B. A peer
/// added by a reload gets them (the ping works); removed by the next reload, it no longer does:
/// A's ARP requests are dropped as `no_peers`.
#[test]
fn a_peer_added_by_reload_gets_flooded_traffic_and_a_removed_one_stops() {
    let p = Pair::new();
    p.a.disable_ipv6();
    p.b.disable_ipv6();
    let fa = Conf::new(&l2_file(1, "", ""));
    let fb = Conf::new(&l2_file(2, "\"192.0.2.1\"", ""));
    let a = Daemon::start(&p.a, &["--config", fa.path()]);
    let _b = Daemon::start(&p.b, &["--config", fb.path()]);
    let no_peers = |d: &Daemon| d.stats()["drops"]["no_peers"].as_u64().unwrap();
    assert!(!p.a.ping("10.9.0.2"));
    assert!(no_peers(&a) > 0, "A flooded with no peer");

    fa.write(&l2_file(1, "\"192.0.2.2\"", ""));
    assert_eq!(reload_ok(&a), "VNI 42: peer 192.0.2.2 added\n");
    assert!(
        p.a.ping_within("10.9.0.2", SECS(10)),
        "B added by reload gets no flooded ARP: {}",
        a.log_text()
    );
    let flooded = a.stats()["flood_copies"].as_u64().unwrap();
    assert!(flooded > 0);

    fa.write(&l2_file(1, "", ""));
    assert_eq!(reload_ok(&a), "VNI 42: peer 192.0.2.2 removed\n");
    must(p.a.cmd("ip").args(["neigh", "flush", "dev", "vx0"]));
    let dropped = no_peers(&a);
    assert!(!p.a.ping("10.9.0.2"), "B still answers after its removal");
    assert!(
        no_peers(&a) > dropped,
        "A's ARP was not refused for want of peers"
    );
    assert_eq!(a.stats()["flood_copies"].as_u64().unwrap(), flooded);
    assert!(
        a.ok(&["peers", "show"])
            .lines()
            .all(|l| !l.contains("192.0.2.2"))
    );
}

/// A reload that needs a restart (our own address changed) and one of an invalid file are
/// refused with status 2 and the reason; the running configuration stays exactly as it was
/// and traffic keeps flowing. SIGHUP does the same as `vtepd reload`: it refuses the invalid
/// file (logged) and applies a valid change.
#[test]
fn a_refused_reload_changes_nothing_and_sighup_does_what_reload_does() {
    let (p, fa, _fb, a, _b) = pair_from_files();
    a.ok(&["fdb", "add", "02:00:00:00:00:55", "192.0.2.5"]);
    let shown = config_show(&a);
    let peers = a.ok(&["peers", "show", "--json"]);

    fa.write(&l2_file(1, "\"192.0.2.2\"", "").replace("192.0.2.1", "192.0.2.100"));
    let (code, _, err) = reload(&a);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err.trim(),
        "vtepd: reload refused, nothing changed: local 192.0.2.1 -> 192.0.2.100: needs a restart"
    );
    assert_eq!(config_show(&a), shown);

    let bad = format!("{}ageing = \"soon\"\n", l2_file(1, "\"192.0.2.2\"", ""));
    fa.write(&bad);
    let (code, _, err) = reload(&a);
    assert_eq!(code, Some(2), "{err}");
    // The same words as a start from that file.
    let start = run(p.a.cmd(BIN).args(["run", "--config", fa.path()]));
    assert_eq!(start.status.code(), Some(2));
    let why = String::from_utf8_lossy(&start.stderr);
    let why = why.trim().strip_prefix("vtepd: ").unwrap();
    assert!(why.contains("line 8"), "{why}");
    assert_eq!(
        err.trim(),
        format!("vtepd: reload refused, nothing changed: {why}")
    );
    assert_eq!(config_show(&a), shown);
    assert_eq!(a.ok(&["peers", "show", "--json"]), peers);

    // SIGHUP with the invalid file: refused, logged, nothing changed.
    a.signal("HUP");
    assert!(
        wait_until(SECS(10), || a.log_text().contains(&format!(
            "SIGHUP: reload refused, nothing changed: {why}"
        ))),
        "{}",
        a.log_text()
    );
    assert_eq!(config_show(&a), shown);
    assert!(
        p.a.ping("10.9.0.2"),
        "traffic stopped after a refused reload"
    );

    // SIGHUP with a valid change: applied (and the static entry added by hand, not in the
    // file, is removed: the file is the truth).
    fa.write(&l2_file(1, "\"192.0.2.2\"", "ageing = 77\n"));
    a.signal("HUP");
    assert!(
        wait_until(SECS(10), || config_show(&a).contains("ageing = 77")),
        "{}",
        a.log_text()
    );
    let log = a.log_text();
    assert!(
        log.contains("configuration reloaded: VNI 42: ageing 300s -> 77s"),
        "{log}"
    );
    assert!(
        log.contains(
            "configuration reloaded: VNI 42: static FDB entry 02:00:00:00:00:55 -> 192.0.2.5 removed"
        ),
        "{log}"
    );
    assert!(!config_show(&a).contains("02:00:00:00:00:55"));
    assert!(p.a.ping("10.9.0.2"));
}

/// A daemon started from flags has no file: `vtepd reload` says so (status 2) and SIGHUP logs
/// it; `config show` still prints what runs, and a daemon started from that file shows the same.
#[test]
fn a_daemon_from_flags_refuses_reload_but_shows_its_configuration() {
    let ns = Netns::new("rf");
    let d = Daemon::start(
        &ns,
        &[
            "--dev",
            "vxf0",
            "--local",
            "127.0.0.1",
            "--vni",
            "9",
            "--threads",
            "1",
        ],
    );
    let (code, _, err) = reload(&d);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("started from flags, not --config"), "{err}");
    d.signal("HUP");
    assert!(wait_until(SECS(10), || d
        .log_text()
        .contains("SIGHUP: this daemon was started from flags")));
    let shown = config_show(&d);
    assert!(
        shown.contains("dev = \"vxf0\"") && shown.contains("vni = 9"),
        "{shown}"
    );
    drop(d);
    let f = Conf::new(&shown);
    let again = Daemon::start(&ns, &["--config", f.path()]);
    let control = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("control = "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(control(&config_show(&again)), control(&shown));
}

/// `config show` after changes through the control socket, written to a file: a reload from
/// that file changes nothing, and a second daemon started from it (in a namespace of its own
/// with the same underlay address) shows the same configuration, peers and static entries.
#[test]
fn config_show_round_trips_through_a_file() {
    let (p, fa, _fb, a, _b) = pair_from_files();
    a.ok(&["peers", "add", "192.0.2.3"]);
    a.ok(&["peers", "del", "192.0.2.2"]);
    a.ok(&["peers", "add", "192.0.2.2"]);
    a.ok(&["fdb", "add", "02:00:00:00:00:31", "192.0.2.31"]);
    a.ok(&["fdb", "add", "02:00:00:00:00:32", "192.0.2.32"]);
    a.ok(&["fdb", "del", "02:00:00:00:00:31"]);
    let shown = config_show(&a);
    for want in [
        "\"192.0.2.3\", \"192.0.2.2\"",
        "02:00:00:00:00:32",
        "192.0.2.32",
    ] {
        assert!(shown.contains(want), "{want}: {shown}");
    }
    assert!(!shown.contains("02:00:00:00:00:31"), "{shown}");

    // Reload from it: nothing to do, nothing changes.
    fa.write(&shown);
    assert_eq!(reload_ok(&a), "no change\n");
    assert_eq!(config_show(&a), shown);

    // A second daemon from it, where 192.0.2.1 is an address too.
    let ns = underlay_ns("rt");
    let f2 = Conf::new(&shown);
    let second = Daemon::start(&ns, &["--config", f2.path()]);
    let no_control = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("control = "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(no_control(&config_show(&second)), no_control(&shown));
    assert_eq!(
        second.ok(&["peers", "show", "--json"]),
        a.ok(&["peers", "show", "--json"])
    );
    let statics = |d: &Daemon| -> Vec<(String, String)> {
        d.fdb()
            .into_iter()
            .filter(|e| e["kind"] == "static")
            .map(|e| (e["mac"].to_string(), e["remote"].to_string()))
            .collect()
    };
    assert_eq!(statics(&second), statics(&a));
    drop(p);
}

/// IPIP: routes follow the file through a reload, in the route table and in the kernel; a
/// route added through the control socket and not in the file goes.
#[test]
fn routes_follow_the_file_in_the_kernel() {
    let ns = underlay_ns("ri");
    let file = |routes: &str| {
        format!(
            "local = \"192.0.2.1\"\nmode = \"l3\"\nencap = \"ipip\"\nthreads = 1\n\
             [[network]]\ndev = \"tri0\"\nroutes = [{routes}]\n"
        )
    };
    let f = Conf::new(&file(
        "\"10.1.1.0/26=192.0.2.2\", \"10.1.2.0/26=192.0.2.3\"",
    ));
    let d = Daemon::start(&ns, &["--config", f.path()]);
    d.ok(&["routes", "add", "10.1.9.0/24", "192.0.2.9"]);
    let kernel = || ns.ip(&["route", "show", "dev", "tri0"]);
    assert!(kernel().contains("10.1.9.0/24"), "{}", kernel());

    f.write(&file(
        "\"10.1.2.0/26=192.0.2.4\", \"10.1.3.0/26=192.0.2.3\"",
    ));
    let said = reload_ok(&d);
    assert_eq!(
        said,
        "route 10.1.1.0/26 via 192.0.2.2 removed\nroute 10.1.9.0/24 via 192.0.2.9 removed\n\
         route 10.1.2.0/26 via 192.0.2.4 (was via 192.0.2.3)\n\
         route 10.1.3.0/26 via 192.0.2.3 added\n"
    );
    let k = kernel();
    assert!(
        k.contains("10.1.2.0/26") && k.contains("10.1.3.0/26"),
        "{k}"
    );
    assert!(
        !k.contains("10.1.1.0/26") && !k.contains("10.1.9.0/24"),
        "{k}"
    );
    let shown = config_show(&d);
    assert!(
        shown.contains("routes = [\"10.1.2.0/26=192.0.2.4\", \"10.1.3.0/26=192.0.2.3\"]"),
        "{shown}"
    );
    let routes = d.ok(&["routes", "show"]);
    assert!(
        routes.contains("192.0.2.4") && !routes.contains("10.1.1.0"),
        "{routes}"
    );

    // Refused: our own address changed; routes untouched.
    f.write(
        &file("\"10.1.5.0/26=192.0.2.5\"")
            .replace("local = \"192.0.2.1\"", "local = \"192.0.2.7\""),
    );
    let (code, _, err) = reload(&d);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(kernel(), k);

    // At exit the routes are removed with the device, and the route service is not left
    // shared by the reloader.
    let mut d = d;
    d.signal("TERM");
    assert_eq!(d.wait_exit(SECS(10)).and_then(|s| s.code()), Some(0));
    assert!(!d.log_text().contains("still shared"), "{}", d.log_text());
    assert!(!ns.has_link("tri0"));
}

/// L3 VXLAN: static neighbours and routes follow the file (a neighbour's MAC changed, one
/// added, a route replaced), learned state aside; `config show` then reloads as no change.
#[test]
fn l3_vxlan_neighbours_and_routes_follow_the_file() {
    let ns = underlay_ns("rv");
    let file = |neigh: &str, routes: &str| {
        format!(
            "local = \"192.0.2.1\"\nmode = \"l3\"\nthreads = 1\n[[network]]\ndev = \"trv0\"\n\
             vni = 7\naddress = \"10.244.0.0/32\"\npeers = [\"192.0.2.2\"]\n\
             routes = [{routes}]\nneigh = [{neigh}]\n"
        )
    };
    let n1 = "{ ip = \"10.244.1.0\", mac = \"02:00:00:00:00:01\" }";
    let f = Conf::new(&file(n1, "\"10.244.1.0/24=10.244.1.0\""));
    let d = Daemon::start(&ns, &["--config", f.path()]);
    let neigh = |d: &Daemon| -> Vec<(String, String, String)> {
        serde_json::from_str::<Vec<serde_json::Value>>(&d.ok(&["neigh", "show", "--json"]))
            .unwrap()
            .into_iter()
            .map(|e| {
                (
                    e["ip"].as_str().unwrap().to_owned(),
                    e["mac"].as_str().unwrap().to_owned(),
                    e["kind"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let st = |ip: &str, mac: &str| (ip.to_owned(), mac.to_owned(), "static".to_owned());
    assert_eq!(neigh(&d), [st("10.244.1.0", "02:00:00:00:00:01")]);

    let n2 = "{ ip = \"10.244.1.0\", mac = \"02:00:00:00:00:0a\" }, \
              { ip = \"10.244.2.0\", mac = \"02:00:00:00:00:02\" }";
    f.write(&file(n2, "\"10.244.2.0/24=10.244.2.0\""));
    let said = reload_ok(&d);
    assert_eq!(
        said,
        "route 10.244.1.0/24 via 10.244.1.0 removed\nroute 10.244.2.0/24 via 10.244.2.0 added\n\
         VNI 7: neighbour 10.244.1.0 = 02:00:00:00:00:0a (was 02:00:00:00:00:01)\n\
         VNI 7: neighbour 10.244.2.0 = 02:00:00:00:00:02 added\n"
    );
    assert_eq!(
        neigh(&d),
        [
            st("10.244.1.0", "02:00:00:00:00:0a"),
            st("10.244.2.0", "02:00:00:00:00:02")
        ]
    );
    let k = ns.ip(&["route", "show", "dev", "trv0"]);
    assert!(
        k.contains("10.244.2.0/24") && !k.contains("10.244.1.0/24"),
        "{k}"
    );

    // What config show prints, reloaded: nothing to do.
    f.write(&config_show(&d));
    assert_eq!(reload_ok(&d), "no change\n");
}

/// L2: a network added by a reload gets its TAP device and carries traffic at once; one
/// removed has its device gone while the others keep forwarding with their learned entries;
/// and a VNI removed can come back.
#[test]
fn l2_networks_added_and_removed_by_reload() {
    let (p, fa, fb, a, b) = pair_from_files();
    let second = |me: u8, other: u8| {
        format!(
            "[[network]]\ndev = \"vy0\"\nvni = 43\naddress = \"10.9.1.{me}/24\"\n\
             peers = [\"192.0.2.{other}\"]\n"
        )
    };
    // Both hosts' files with VNI 42 and VNI 43.
    let both = || {
        fa.write(&format!(
            "{}{}",
            l2_file(1, "\"192.0.2.2\"", ""),
            second(1, 2)
        ));
        fb.write(&format!(
            "{}{}",
            l2_file(2, "\"192.0.2.1\"", ""),
            second(2, 1)
        ));
    };
    both();
    assert_eq!(reload_ok(&a), "network VNI 43 (dev vy0) added\n");
    assert_eq!(reload_ok(&b), "network VNI 43 (dev vy0) added\n");
    assert!(p.a.has_link("vy0") && p.b.has_link("vy0"));
    assert!(
        p.a.ping_within("10.9.1.2", SECS(10)),
        "no traffic on the added network: {}",
        a.log_text()
    );
    let nets = |d: &Daemon| -> Vec<u64> {
        d.stats()["networks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["vni"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(nets(&a), [42, 43]);
    assert!(learned(&a).len() >= 2, "{:?}", learned(&a));
    // The added network has counters of its own.
    let net43 = |d: &Daemon, key: &str| {
        d.stats()["networks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["vni"] == 43)
            .map_or(0, |n| n[key].as_u64().unwrap_or(0))
    };
    assert!(
        net43(&a, "rx_tunnel") > 0 && net43(&a, "tx_device") > 0,
        "{}",
        a.stats()
    );
    let before = a.stats()["rx_tunnel"].as_u64().unwrap();

    // VNI 42 goes: its device too; VNI 43 keeps forwarding and its learned entries.
    let only43 = |me: u8, other: u8| {
        format!(
            "local = \"192.0.2.{me}\"\nthreads = 1\n{}",
            second(me, other)
        )
    };
    fa.write(&only43(1, 2));
    fb.write(&only43(2, 1));
    assert_eq!(reload_ok(&a), "network VNI 42 (dev vx0) removed\n");
    assert_eq!(reload_ok(&b), "network VNI 42 (dev vx0) removed\n");
    assert!(!p.a.has_link("vx0") && !p.b.has_link("vx0"));
    assert!(p.a.ping("10.9.1.2"), "{}", a.log_text());
    assert_eq!(nets(&a), [43]);
    assert!(a.fdb().iter().all(|e| e["vni"] == 43));
    assert!(
        a.stats()["rx_tunnel"].as_u64().unwrap() > before,
        "counters kept"
    );
    assert!(!config_show(&a).contains("vx0"));

    // And back, as a new network.
    both();
    assert_eq!(reload_ok(&a), "network VNI 42 (dev vx0) added\n");
    assert_eq!(reload_ok(&b), "network VNI 42 (dev vx0) added\n");
    assert!(p.a.ping_within("10.9.0.2", SECS(10)), "{}", a.log_text());
    assert!(p.a.ping("10.9.1.2"));

    // At exit every device goes, those from the start and those added since.
    let (mut a, mut b) = (a, b);
    for d in [&mut a, &mut b] {
        d.signal("TERM");
        assert_eq!(
            d.wait_exit(SECS(10)).and_then(|s| s.code()),
            Some(0),
            "{}",
            d.log_text()
        );
    }
    for ns in [&p.a, &p.b] {
        assert!(
            !ns.has_link("vx0") && !ns.has_link("vy0"),
            "{:?}",
            ns.links()
        );
    }
}

/// Networks on UDP ports of their own: a reload adds a network on a port the daemon listens on
/// (another network's), which then carries traffic, and refuses one on a port it does not
/// listen on, and a network's port changed, naming each and changing nothing.
#[test]
fn a_network_is_added_on_a_port_in_use_and_refused_on_a_new_one() {
    let p = Pair::new();
    p.a.disable_ipv6();
    p.b.disable_ipv6();
    // Host `me`'s file: VNI 42 (vx0, the daemon's port), then (VNI, port) networks on TAPs
    // vp<VNI> with overlay 10.<VNI>.0.`me`/24.
    let file = |me: u8, nets: &[(u32, u16)]| {
        let mut f = l2_file(me, &format!("\"192.0.2.{}\"", 3 - me), "");
        for (vni, port) in nets {
            f.push_str(&format!(
                "[[network]]\ndev = \"vp{vni}\"\nvni = {vni}\naddress = \"10.{vni}.0.{me}/24\"\n\
                 peers = [\"192.0.2.{}\"]\nport = {port}\n",
                3 - me
            ));
        }
        f
    };
    let (fa, fb) = (
        Conf::new(&file(1, &[(43, 8472)])),
        Conf::new(&file(2, &[(43, 8472)])),
    );
    let a = Daemon::start(&p.a, &["--config", fa.path()]);
    let b = Daemon::start(&p.b, &["--config", fb.path()]);
    assert!(p.a.ping_within("10.43.0.2", SECS(10)), "{}", a.log_text());

    fa.write(&file(1, &[(43, 8472), (44, 8472)]));
    fb.write(&file(2, &[(43, 8472), (44, 8472)]));
    assert_eq!(reload_ok(&a), "network VNI 44 (dev vp44) added\n");
    assert_eq!(reload_ok(&b), "network VNI 44 (dev vp44) added\n");
    assert!(
        p.a.ping_within("10.44.0.2", SECS(10)),
        "no traffic on the added network: {}",
        a.log_text()
    );
    assert!(p.a.ping("10.43.0.2") && p.a.ping("10.9.0.2"));

    let shown = config_show(&a);
    fa.write(&file(1, &[(43, 8473), (44, 8472), (45, 4790)]));
    let (code, _, err) = reload(&a);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err.trim(),
        "vtepd: reload refused, nothing changed: network VNI 45 (dev vp45) added on port 4790, \
         which no running network uses (a port's sockets are opened at start): needs a restart; \
         network VNI 43 (dev vp43): port 8472 -> 8473: needs a restart"
    );
    assert_eq!(config_show(&a), shown);
    assert!(!p.a.has_link("vp45"));
    assert!(
        p.a.ping("10.44.0.2"),
        "traffic stopped after a refused reload"
    );
}
