//! `vtepd trace` end to end, in network namespaces (needs root): an armed trace of a real ping
//! in each mode names the steps and the outcome (L2 VXLAN against the kernel's vxlan device, L3
//! VXLAN and IPIP between two vtepd hosts); with `--drops` armed, malformed datagrams from
//! scapy are traced with their reason, and so is a send the kernel refuses (a worker's drop); `--inject` names the remote of a known MAC, every flood
//! peer for an unknown one, refuses a source that would move a static entry, and changes no
//! state. Bad filters are one line and status 2.

mod daemon_support;
mod l2_pair_support;
mod l3_pair_support;

use daemon_support::{BIN, Daemon, Netns, Pair, run, wait_calling, wait_until};
use l2_pair_support::{daemon_on_a, l2_daemon};
use l3_pair_support::{ipip_pair6, l3vx_pair6};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

const SCAPY_INJECT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/lab/scapy/vxlan_inject.py");
const PYTHON: &str = "/usr/bin/python3";
/// How long an armed trace may take to collect its records.
const TRACE_WAIT: Duration = Duration::from_secs(20);

/// Runs `vtepd trace ARGS` against `d` and calls `trigger` until the trace has its records
/// (it exits by itself after --count) or [`TRACE_WAIT`] passes; what it printed.
fn armed(d: &Daemon, args: &[&str], mut trigger: impl FnMut()) -> String {
    let mut child = Command::new(BIN)
        .arg("trace")
        .args(args)
        .arg("--control")
        .arg(&d.control)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // SIGINT when it has not finished: the client stops its session.
    let done = wait_calling(&mut child, TRACE_WAIT, &mut trigger);
    let out = child.wait_with_output().unwrap();
    assert!(
        done,
        "trace {args:?} did not finish: {}{}",
        String::from_utf8_lossy(&out.stdout),
        d.log_text()
    );
    assert!(
        out.status.success(),
        "trace {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`armed`] with `--json`: the records.
fn armed_trace(d: &Daemon, args: &[&str], trigger: impl FnMut()) -> Vec<Value> {
    let all: Vec<&str> = std::iter::once("--json")
        .chain(args.iter().copied())
        .collect();
    armed(d, &all, trigger)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `vtepd trace --inject --json ARGS` against `d`: the simulated record.
fn inject(d: &Daemon, args: &[&str]) -> Value {
    let mut all = vec!["trace", "--inject", "--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&d.ok(&all)).unwrap()
}

/// Whether `r`'s steps include one with every field of `want`.
fn has_step(r: &Value, want: Value) -> bool {
    let want = want.as_object().unwrap();
    r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| want.iter().all(|(k, v)| &s[k] == v))
}

/// Asserts that `r` has a step with every field of `want`.
#[track_caller]
fn assert_step(r: &Value, want: Value) {
    assert!(has_step(r, want.clone()), "no step {want} in {r}");
}

/// The echo request (from the device, tunnelled to 192.0.2.2) and the echo reply (from the
/// tunnel, from 192.0.2.2, delivered to `dev`) of a traced ping.
fn request_and_reply<'a>(records: &'a [Value], dev: &str) -> (&'a Value, &'a Value) {
    let find = |from: &str| {
        records
            .iter()
            .find(|r| r["origin"]["from"] == from)
            .unwrap_or_else(|| panic!("no packet from the {from}: {records:?}"))
    };
    let (out, back) = (find("device"), find("tunnel"));
    assert_eq!(out["outcome"], "tunnel", "{out}");
    assert_eq!(out["remotes"], serde_json::json!(["192.0.2.2"]), "{out}");
    assert_eq!(back["origin"]["src"], "192.0.2.2", "{back}");
    assert_eq!(back["outcome"], "deliver", "{back}");
    assert_eq!(back["dev"], dev, "{back}");
    (out, back)
}

/// An L3 pair's trace (`filter`) of one ping from pod A to `dst`: its request and reply (as
/// [`request_and_reply`] checks them, on `tun0`), the request routed to `dst` via `via`.
fn traced_ping(p: &Pair, a: &Daemon, filter: &[&str], dst: &str, via: &str) -> [Value; 2] {
    let args: Vec<&str> = ["--count", "2"]
        .into_iter()
        .chain(filter.iter().copied())
        .collect();
    let records = armed_trace(a, &args, || ping(&p.a, dst));
    let (out, back) = request_and_reply(&records, "tun0");
    assert!(
        has_step(
            out,
            serde_json::json!({"step": "route", "dst": dst, "via": via})
        ),
        "{out}"
    );
    [out.clone(), back.clone()]
}

/// One ping from `ns` to `dst`, not waiting for its answer long.
fn ping(ns: &Netns, dst: &str) {
    let _ = run(ns
        .cmd("ping")
        .args(["-c", "1", "-W", "1", dst])
        .stdout(Stdio::null()));
}

#[test]
fn l2_vxlan_trace_of_a_ping_names_the_fdb_answer_and_the_learning() {
    let (p, a) = daemon_on_a(&[]);
    // B is the kernel's vxlan device.
    p.b.ip(&[
        "link",
        "add",
        "vx0",
        "type",
        "vxlan",
        "id",
        "42",
        "local",
        "192.0.2.2",
        "remote",
        "192.0.2.1",
        "dstport",
        "4789",
        "dev",
        "eth0",
    ]);
    p.b.ip(&["addr", "add", "10.9.0.2/24", "dev", "vx0"]);
    p.b.ip(&["link", "set", "vx0", "up"]);
    assert!(
        p.a.ping_within("10.9.0.2", Duration::from_secs(10)),
        "{}",
        a.log_text()
    );
    let b_mac = p.b.mac("vx0");

    let records = armed_trace(&a, &["--count", "2", "--proto", "icmp"], || {
        ping(&p.a, "10.9.0.2")
    });
    assert_eq!(records.len(), 2, "{records:?}");
    let (out, back) = request_and_reply(&records, "vx0");
    assert_eq!(back["vni"], 42, "{back}");
    assert_eq!(out["dev"], "vx0");
    assert!(
        has_step(
            out,
            serde_json::json!({"step": "fdb", "mac": b_mac, "remote": "192.0.2.2"})
        ),
        "{out}"
    );
    assert!(has_step(
        back,
        serde_json::json!({"step": "vni", "vni": 42, "found": true})
    ));
    assert!(has_step(
        back,
        serde_json::json!({"step": "peer", "accepted": true})
    ));
    assert!(
        has_step(
            back,
            serde_json::json!({"step": "learn", "mac": b_mac, "result": "refreshed"})
        ),
        "{back}"
    );
    // The text form says the same in words.
    let text = armed(
        &a,
        &["--count", "1", "--proto", "icmp", "--outer-ip", "192.0.2.2"],
        || ping(&p.a, "10.9.0.2"),
    );
    assert!(text.contains("packet 1 from "), "{text}");
    assert!(text.contains("192.0.2.2"), "{text}");
}

#[test]
fn with_drops_armed_malformed_datagrams_and_a_refused_send_are_traced_with_their_reason() {
    let (p, a) = daemon_on_a(&[]);
    let a_mac = p.a.mac("eth0");
    for (kind, reason, count) in [("truncated", "truncated", "8"), ("vni", "unknown_vni", "1")] {
        let records = armed_trace(&a, &["--drops", "--count", count], || {
            let out = run(p
                .b
                .cmd(PYTHON)
                .args([SCAPY_INJECT, "eth0", &a_mac, "192.0.2.2", "192.0.2.1", kind])
                .args(["--vni", "42"]));
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        });
        assert!(!records.is_empty());
        for r in &records {
            assert_eq!(
                (&r["origin"]["from"], &r["origin"]["src"]),
                (&"tunnel".into(), &"192.0.2.2".into())
            );
            assert_eq!(
                (&r["outcome"], &r["reason"]),
                (&"drop".into(), &reason.into()),
                "{r}"
            );
        }
        if kind == "vni" {
            assert!(has_step(
                &records[0],
                serde_json::json!({"step": "vni", "vni": 1042, "found": false})
            ));
        }
    }
    // A drop no engine sees: the worker's send to a peer without a route (ENETUNREACH).
    a.ok(&["peers", "add", "198.51.100.9"]);
    let records = armed_trace(&a, &["--drops", "--count", "1"], || ping(&p.a, "10.9.0.77"));
    let r = &records[0];
    assert_eq!(
        (&r["origin"]["from"], &r["reason"], &r["dev"]),
        (&"device".into(), &"tunnel_tx_error".into(), &"vx0".into()),
        "{r}"
    );
    assert!(
        has_step(
            r,
            serde_json::json!({"step": "worker", "stage": "send", "remote": "198.51.100.9"})
        ),
        "{r}"
    );
    assert_eq!(r["headers"]["arp_op"], 1, "A's ARP request, flooded: {r}");
}

#[test]
fn l2_inject_names_the_remote_every_flood_peer_and_refuses_a_static_move() {
    let p = Pair::new();
    p.a.disable_ipv6();
    let a = l2_daemon(
        &p.a,
        1,
        2,
        &["--vni", "42", "--peer", "192.0.2.3", "--arp-suppress"],
    );
    a.ok(&["fdb", "add", "02:00:00:00:00:09", "192.0.2.3"]);
    let known = inject(&a, &["--dst-mac", "02:00:00:00:00:09"]);
    assert_eq!(
        (&known["outcome"], &known["simulated"]),
        (&"tunnel".into(), &true.into())
    );
    assert_eq!(
        known["remotes"],
        serde_json::json!(["192.0.2.3"]),
        "{known}"
    );
    let unknown = inject(&a, &["--dst-mac", "02:00:00:00:00:0a"]);
    assert_eq!(
        unknown["remotes"],
        serde_json::json!(["192.0.2.2", "192.0.2.3"]),
        "{unknown}"
    );
    assert!(has_step(
        &unknown,
        serde_json::json!({"step": "flood", "kind": "unknown_unicast", "peers": 2})
    ));
    // A frame from 192.0.2.2 whose source the static entry pins to 192.0.2.3.
    let moved = inject(
        &a,
        &[
            "--from",
            "tunnel",
            "--outer-src",
            "192.0.2.2",
            "--src-mac",
            "02:00:00:00:00:09",
        ],
    );
    assert_eq!(
        (&moved["outcome"], &moved["reason"]),
        (&"drop".into(), &"static_conflict".into())
    );
    assert!(
        has_step(
            &moved,
            serde_json::json!({"step": "learn", "result": "static_conflict", "pinned": "192.0.2.3"})
        ),
        "{moved}"
    );
    let text = a.ok(&[
        "trace",
        "--inject",
        "--from",
        "tunnel",
        "--outer-src",
        "192.0.2.2",
        "--src-mac",
        "02:00:00:00:00:09",
    ]);
    assert!(
        text.contains("refused: a static entry pins it to 192.0.2.3"),
        "{text}"
    );
    // One that would be learned: nothing is, and nothing is counted.
    let before = a.stats();
    let new = inject(
        &a,
        &[
            "--from",
            "tunnel",
            "--outer-src",
            "192.0.2.2",
            "--src-mac",
            "02:00:00:00:00:0b",
        ],
    );
    assert_eq!(new["outcome"], "deliver", "{new}");
    assert!(has_step(
        &new,
        serde_json::json!({"step": "learn", "result": "learned", "simulated": true})
    ));
    let fdb = a.fdb();
    assert_eq!(fdb.len(), 1, "only the static entry: {fdb:?}");
    // ND suppression: a solicitation for a known remote address is answered here, one for an
    // unknown address flooded; one from the tunnel would teach its source, and teaches not.
    a.ok(&["neigh", "add", "fd00::9", "02:00:00:00:00:09"]);
    let ask = |target: &str| inject(&a, &["--proto", "nd", "--dst-ip", target]);
    let known = ask("fd00::9");
    assert_eq!(known["outcome"], "answered", "{known}");
    assert_eq!(
        (&known["headers"]["src_ip"], &known["headers"]["icmp_type"]),
        (&"fd00::1".into(), &135.into()),
        "{known}"
    );
    assert_step(
        &known,
        serde_json::json!({"step": "nd_suppress", "target": "fd00::9", "answer": "02:00:00:00:00:09"}),
    );
    let unknown = ask("fd00::10");
    assert_eq!(unknown["copies"], 2, "flooded: {unknown}");
    assert_step(
        &unknown,
        serde_json::json!({"step": "nd_suppress", "target": "fd00::10", "answer": null}),
    );
    let from_b = ["--from", "tunnel", "--outer-src", "192.0.2.2"];
    let nd_from_b = [
        "--src-mac",
        "02:00:00:00:00:0c",
        "--src-ip",
        "fd00::c",
        "--proto",
        "nd",
    ];
    let snooped = inject(&a, &[&from_b[..], &nd_from_b].concat());
    assert_step(
        &snooped,
        serde_json::json!({"step": "neigh_learn", "ip": "fd00::c", "result": "new"}),
    );
    let neigh = a.ok(&["neigh", "show", "--json"]);
    assert!(!neigh.contains("fd00::c"), "nothing bound: {neigh}");
    let after = a.stats();
    for c in [
        "rx_tunnel",
        "learned",
        "tx_tunnel",
        "rx_device",
        "nd_suppressed",
        "neigh_learned",
    ] {
        assert_eq!(after[c], before[c], "{c}");
    }
}

#[test]
fn l3_vxlan_trace_of_a_ping_and_an_inject_name_route_neighbour_and_remote() {
    let (p, a, _b) = l3vx_pair6("1");
    let records = traced_ping(&p, &a, &["--ip", "10.45.0.2"], "10.45.0.2", "10.45.0.2");
    let out = &records[0];
    assert!(
        has_step(
            out,
            serde_json::json!({"step": "neigh", "hop": "10.45.0.2"})
        ),
        "{out}"
    );
    // A simulation to an address nobody answers for: held, nothing queued.
    let asked = a.stats()["arp_requests"].clone();
    let held = inject(&a, &["--dst-ip", "10.45.0.77"]);
    assert_eq!(held["outcome"], "held", "{held}");
    assert!(has_step(
        &held,
        serde_json::json!({"step": "neigh", "hop": "10.45.0.77", "mac": null})
    ));
    assert_eq!(a.stats()["arp_requests"], asked, "a simulation asks nobody");
    let to_b = inject(&a, &["--dst-ip", "10.45.0.2"]);
    assert_eq!(to_b["remotes"], serde_json::json!(["192.0.2.2"]), "{to_b}");

    // IPv6: a ping traced both ways by its address (the reply's inner frame is IPv6).
    let [out6, _] = traced_ping(&p, &a, &["--ip", "fd00:45::2"], "fd00:45::2", "fd00:45::2");
    let resolved = out6["steps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["step"] == "neigh" && s["hop"] == "fd00:45::2" && s["mac"].is_string());
    assert!(resolved, "{out6}");
    // Simulated: resolved, to B; unresolved, held and a solicitation made (none is).
    let to_b6 = inject(&a, &["--dst-ip", "fd00:45::2"]);
    assert_eq!(
        to_b6["remotes"],
        serde_json::json!(["192.0.2.2"]),
        "{to_b6}"
    );
    let before = a.stats();
    let held6 = inject(&a, &["--dst-ip", "fd00:45::77"]);
    assert_eq!(held6["outcome"], "held", "{held6}");
    assert_step(
        &held6,
        serde_json::json!({"step": "hold", "hop": "fd00:45::77", "arp_request": true}),
    );
    let text = a.ok(&["trace", "--inject", "--dst-ip", "fd00:45::77"]);
    assert!(
        text.contains("(a neighbour solicitation would be sent)"),
        "{text}"
    );
    // A solicitation for A's address from the tunnel: the asker would be learned and answered.
    let who_has_a = inject(
        &a,
        &[
            "--from",
            "tunnel",
            "--outer-src",
            "192.0.2.2",
            "--proto",
            "nd",
            "--src-mac",
            "02:00:00:00:00:0c",
            "--src-ip",
            "fd00:45::c",
            "--dst-ip",
            "fd00:45::1",
        ],
    );
    assert_eq!(who_has_a["outcome"], "consumed", "{who_has_a}");
    assert_step(
        &who_has_a,
        serde_json::json!({"step": "neigh_learn", "ip": "fd00:45::c", "result": "new"}),
    );
    assert_step(
        &who_has_a,
        serde_json::json!({"step": "reply", "kind": "nd"}),
    );
    let neigh = a.ok(&["neigh", "show", "--json"]);
    assert!(!neigh.contains("fd00:45::c"), "nothing bound: {neigh}");
    let after = a.stats();
    for c in ["nd_solicits", "nd_adverts", "neigh_learned"] {
        assert_eq!(after[c], before[c], "a simulation changes no {c}");
    }
}

#[test]
fn ipip_trace_of_a_ping_and_an_inject_name_the_route_and_the_peer_check() {
    let (p, a, _b) = ipip_pair6("1");
    let records = traced_ping(&p, &a, &["--proto", "icmp"], "10.43.2.1", "192.0.2.2");
    let back = &records[1];
    assert!(has_step(
        back,
        serde_json::json!({"step": "peer", "src": "192.0.2.2", "accepted": true})
    ));
    let none = inject(&a, &["--dst-ip", "10.9.7.1"]);
    assert_eq!(
        (&none["outcome"], &none["reason"]),
        (&"drop".into(), &"no_route".into())
    );
    let stranger = inject(
        &a,
        &[
            "--from",
            "tunnel",
            "--outer-src",
            "192.0.2.99",
            "--dst-ip",
            "10.43.1.1",
        ],
    );
    assert_eq!(stranger["reason"], "unknown_peer", "{stranger}");
    // IPv6 goes by its route to B (as protocol 41), and B's protocol 41 is delivered.
    let to_b6 = inject(&a, &["--dst-ip", "fd00:43:2::5"]);
    assert_eq!(
        to_b6["remotes"],
        serde_json::json!(["192.0.2.2"]),
        "{to_b6}"
    );
    assert_step(
        &to_b6,
        serde_json::json!({"step": "route", "dst": "fd00:43:2::5", "via": "192.0.2.2"}),
    );
    let from_b6 = inject(
        &a,
        &[
            "--from",
            "tunnel",
            "--outer-src",
            "192.0.2.2",
            "--src-ip",
            "fd00:43:2::5",
            "--dst-ip",
            "fd00:43:1::1",
            "--proto",
            "udp",
        ],
    );
    assert_eq!(from_b6["outcome"], "deliver", "{from_b6}");
    assert_eq!(
        (&from_b6["headers"]["dst_ip"], &from_b6["headers"]["proto"]),
        (&"fd00:43:1::1".into(), &17.into()),
        "{from_b6}"
    );
}

/// One raw control request line to `d`: the answer (bounded by a 5 s read timeout).
fn request(d: &Daemon, line: &str) -> Value {
    let mut s = UnixStream::connect(&d.control).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    writeln!(s, "{line}").unwrap();
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

#[test]
fn sessions_are_bounded_and_those_nobody_polls_are_stopped_by_the_daemon() {
    let (_p, a) = daemon_on_a(&[]);
    let start = r#"{"cmd":"trace_start","count":5}"#;
    let ids: Vec<Value> = (0..8)
        .map(|_| request(&a, start)["data"]["session"].clone())
        .collect();
    assert!(ids.iter().all(Value::is_u64), "{ids:?}");
    let full = request(&a, start);
    assert_eq!(full["ok"], false, "{full}");
    assert!(
        full["error"].as_str().unwrap().contains("8 sessions"),
        "{full}"
    );
    // As if eight clients were killed: nobody polls, and within 5 s the daemon stops them.
    assert!(
        wait_until(Duration::from_secs(15), || request(&a, start)["ok"] == true),
        "the unpolled sessions were not stopped"
    );
    let gone = request(
        &a,
        &format!(r#"{{"cmd":"trace_poll","session":{}}}"#, ids[0]),
    );
    assert_eq!(gone["ok"], false, "{gone}");
}

#[test]
fn ctrl_c_stops_the_clients_session() {
    let (_p, a) = daemon_on_a(&[]);
    // Session ids are given in order: the client's is the one after ours.
    let ours = request(&a, r#"{"cmd":"trace_start","count":1}"#)["data"]["session"]
        .as_u64()
        .unwrap();
    let poll_next = || {
        request(
            &a,
            &format!(r#"{{"cmd":"trace_poll","session":{}}}"#, ours + 1),
        )
    };
    let client = Command::new(BIN)
        .args(["trace", "--ip", "10.99.99.99", "--control"])
        .arg(&a.control)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let armed = wait_until(Duration::from_secs(10), || poll_next()["ok"] == true);
    // Ours, by PID, as Ctrl-C would.
    let _ = Command::new("kill")
        .args(["-INT", &client.id().to_string()])
        .status();
    let out = client.wait_with_output().unwrap();
    assert!(armed, "the client's session never appeared");
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("0 packets traced, 0 records lost"), "{err}");
    assert_eq!(
        poll_next()["ok"],
        false,
        "the client stopped its session on the way out"
    );
}

#[test]
fn trace_help_names_every_filter_and_the_inject_fields() {
    let o = run(Command::new(BIN).args(["trace", "--help"]));
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--count",
        "--vni",
        "--mac",
        "--ip",
        "--outer-ip",
        "--proto",
        "--drops",
        "--filter",
        "--json",
        "--inject",
        "--from",
        "--outer-src",
        "--hex",
        "--src-mac",
        "--dst-mac",
        "--src-ip",
        "--dst-ip",
        "IPv4 or IPv6",
        "nd: a neighbour solicitation",
        "mac=02:00:00:00:00:01,proto=icmp,drops",
    ] {
        assert!(help.contains(flag), "trace --help lacks {flag}: {help}");
    }
}

#[test]
fn bad_trace_arguments_are_one_line_and_status_2() {
    for (args, says) in [
        (&["--proto", "gre"][..], "not a protocol"),
        (&["--filter", "color=red"], "not one of"),
        (
            &[
                "--filter",
                "mac=02:00:00:00:00:01",
                "--mac",
                "02:00:00:00:00:02",
            ],
            "both",
        ),
        (&["--count", "0"], "0"),
        (
            &["--inject", "--mac", "02:00:00:00:00:01"],
            "cannot be used",
        ),
        (&["--hex", "00"], "--inject"),
        (
            &["--inject", "--src-ip", "10.0.0.1", "--dst-ip", "fd00::1"],
            "one address family",
        ),
        (
            &["--inject", "--proto", "nd", "--dst-ip", "10.0.0.1"],
            "IPv6's",
        ),
    ] {
        let out = run(Command::new(BIN)
            .arg("trace")
            .args(args)
            .args(["--control", "/nonexistent/vtepd.sock"]));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
