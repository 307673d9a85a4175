//! `vtepd run --metrics`: a scrape read by an independent parser (Python prometheus_client,
//! tests/metrics_tool.py) equals `stats --json`; hostile scrapers never keep a real scrape or
//! the control socket waiting; an address that cannot be listened on is refused; every metric
//! the Grafana dashboard (dist/grafana/vtepd.json) queries is in a real scrape.
//! Needs root and /usr/bin/python3 with prometheus_client (python3-prometheus-client).

mod daemon_support;
mod l2_pair_support;

use daemon_support::{BIN, Daemon, Netns, Pair, control_path, run};
use l2_pair_support::l2_daemon;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;
use vtepd::core::Counters;

/// Where the daemons under test serve metrics (inside their own namespace).
const METRICS: &str = "127.0.0.1:9570";
const TOOL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/metrics_tool.py");

/// One parsed scrape: `(name, labels) -> value`, and the families by name with their type.
#[derive(Debug)]
struct Scrape {
    content_type: String,
    families: BTreeMap<String, String>,
    samples: BTreeMap<(String, BTreeMap<String, String>), f64>,
}

impl Scrape {
    /// The value of the sample `name{labels}`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        *self
            .samples
            .get(&(name.to_owned(), labels.clone()))
            .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
    }
    /// The value of `name{labels}`, 0 if there is no such sample.
    fn get_or_zero(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .get(&(name.to_owned(), labels))
            .copied()
            .unwrap_or(0.0)
    }
    /// The sum of every `name` sample whose label `key` is `value`.
    fn sum_where(&self, name: &str, key: &str, value: &str) -> f64 {
        self.samples
            .iter()
            .filter(|((n, l), _)| n == name && l.get(key).map(String::as_str) == Some(value))
            .map(|(_, v)| v)
            .sum()
    }
    /// Every sample name, and every family name as a query would use it.
    fn names(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self.samples.keys().map(|(n, _)| n.clone()).collect();
        for (f, t) in &self.families {
            names.insert(match t.as_str() {
                "counter" => format!("{f}_total"),
                "info" => format!("{f}_info"),
                _ => f.clone(),
            });
        }
        names
    }
}

/// Scrapes `METRICS` from inside `ns` with the Python tool (bounded: `timeout 20`).
fn scrape(ns: &Netns) -> Scrape {
    scrape_at(ns, METRICS)
}

/// Scrapes `addr` from inside `ns`.
fn scrape_at(ns: &Netns, addr: &str) -> Scrape {
    let out = run(ns
        .cmd("timeout")
        .args(["20", "/usr/bin/python3", TOOL, "scrape", addr]));
    assert!(
        out.status.success(),
        "scrape failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    Scrape {
        content_type: v["content_type"].as_str().unwrap().to_owned(),
        families: v["families"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f[0].as_str().unwrap().into(), f[1].as_str().unwrap().into()))
            .collect(),
        samples: v["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let labels = s[1]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect();
                (
                    (s[0].as_str().unwrap().to_owned(), labels),
                    s[2].as_f64().unwrap(),
                )
            })
            .collect(),
    }
}

fn u(v: &Value) -> f64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}")) as f64
}

/// Every figure of `st` (`stats --json`) the scrape carries, as `(what, in stats, in scrape)`.
fn figures(st: &Value, s: &Scrape) -> Vec<(String, f64, f64)> {
    let mut out = Vec::new();
    let mut push = |what: String, a: f64, b: f64| out.push((what, a, b));
    for name in Counters::NAMES {
        push(
            name.to_string(),
            u(&st[name]),
            s.get(&format!("vtepd_{name}_total"), &[]),
        );
    }
    // A reason's rows (per network, and the rest with empty vni and dev) sum to its total.
    for (reason, n) in st["drops"].as_object().unwrap() {
        push(
            format!("drops {reason}"),
            u(n),
            s.sum_where("vtepd_drops_total", "reason", reason),
        );
    }
    for w in st["workers"].as_array().unwrap() {
        let id = w["worker"].to_string();
        for name in [
            "rx_tunnel",
            "tx_tunnel",
            "rx_device",
            "tx_device",
            "rx_device_bytes",
            "rx_tunnel_bytes",
        ] {
            push(
                format!("worker {id} {name}"),
                u(&w[name]),
                s.get(&format!("vtepd_worker_{name}_total"), &[("worker", &id)]),
            );
        }
        push(
            format!("worker {id} drops"),
            u(&w["drops_total"]),
            s.get("vtepd_worker_drops_total", &[("worker", &id)]),
        );
    }
    for n in st["networks"].as_array().unwrap() {
        let (vni, dev) = (n["vni"].to_string(), n["dev"].as_str().unwrap());
        let net = [("vni", vni.as_str()), ("dev", dev)];
        for (kind, key) in [
            ("learned", "fdb_learned_entries"),
            ("static", "fdb_static_entries"),
        ] {
            push(
                format!("{vni} fdb {kind}"),
                u(&n[key]),
                s.get("vtepd_fdb_entries", &[net[0], net[1], ("kind", kind)]),
            );
        }
        push(
            format!("{vni} neigh"),
            u(&n["neigh_entries"]),
            s.get("vtepd_neigh_entries", &net),
        );
        push(
            format!("{vni} peers"),
            u(&n["peers"]),
            s.get("vtepd_peers", &net),
        );
        for (dir, side, key) in [
            ("rx", "tunnel", "rx_tunnel"),
            ("tx", "tunnel", "tx_tunnel"),
            ("rx", "device", "rx_device"),
            ("tx", "device", "tx_device"),
        ] {
            let labels = [net[0], net[1], ("side", side)];
            push(
                format!("{vni} {key}"),
                u(&n[key]),
                s.get(&format!("vtepd_{dir}_packets_total"), &labels),
            );
            push(
                format!("{vni} {key}_bytes"),
                u(&n[&format!("{key}_bytes")]),
                s.get(&format!("vtepd_{dir}_bytes_total"), &labels),
            );
        }
        for (reason, v) in n["drops"].as_object().unwrap() {
            let labels = [("reason", reason.as_str()), net[0], net[1]];
            push(
                format!("{vni} drops {reason}"),
                u(v),
                s.get_or_zero("vtepd_drops_total", &labels),
            );
        }
    }
    let peer_keys = [
        ("rx_tunnel", "vtepd_peer_rx_packets_total"),
        ("rx_tunnel_bytes", "vtepd_peer_rx_bytes_total"),
        ("tx_tunnel", "vtepd_peer_tx_packets_total"),
        ("tx_tunnel_bytes", "vtepd_peer_tx_bytes_total"),
    ];
    for p in st["peers"].as_array().unwrap() {
        let (vni, dev, remote) = (
            p["vni"].to_string(),
            p["dev"].as_str().unwrap(),
            p["remote"].as_str().unwrap(),
        );
        let labels = [("vni", vni.as_str()), ("dev", dev), ("remote", remote)];
        for (key, family) in peer_keys {
            push(
                format!("peer {remote} {key}"),
                u(&p[key]),
                s.get(family, &labels),
            );
        }
    }
    let overflow = [("vni", ""), ("dev", ""), ("remote", "")];
    for (key, family) in peer_keys {
        push(
            format!("peers_overflow {key}"),
            u(&st["peers_overflow"][key]),
            s.get(family, &overflow),
        );
    }
    out
}

/// A pair with vtepd L2 on both hosts, A serving metrics; A pings B through the tunnel.
fn pair_with_metrics() -> (Pair, Daemon, Daemon) {
    let p = Pair::new();
    p.a.disable_ipv6();
    p.b.disable_ipv6();
    let flags = ["--vni", "42", "--threads", "2"];
    let a = l2_daemon(&p.a, 1, 2, &[&flags[..], &["--metrics", METRICS]].concat());
    let b = l2_daemon(&p.b, 2, 1, &flags);
    assert!(
        p.a.ping_within("10.9.0.2", Duration::from_secs(10)),
        "{}",
        a.log_text()
    );
    (p, a, b)
}

#[test]
fn a_scrape_equals_stats_json_after_known_traffic() {
    let (p, a, _b) = pair_with_metrics();
    a.ok(&["fdb", "add", "02:00:00:00:00:99", "192.0.2.2"]);
    let before = scrape(&p.a);
    assert!(
        before
            .content_type
            .starts_with("application/openmetrics-text"),
        "{}",
        before.content_type
    );
    // Known traffic: 20 pings through the tunnel, every one answered.
    let out = run(p
        .a
        .cmd("ping")
        .args(["-c", "20", "-i", "0.05", "-W", "2", "10.9.0.2"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let after = scrape(&p.a);
    for name in ["rx_device", "tx_tunnel", "rx_tunnel", "tx_device"] {
        let m = format!("vtepd_{name}_total");
        let grew = after.get(&m, &[]) - before.get(&m, &[]);
        assert!(grew >= 20.0, "{m} grew by {grew} for 20 pings");
    }
    let bytes = after.get("vtepd_rx_device_bytes_total", &[])
        - before.get("vtepd_rx_device_bytes_total", &[]);
    // 20 echo requests of 98 bytes each (an Ethernet frame of 84 bytes of IPv4 and 14 of header).
    assert!(bytes >= 20.0 * 98.0, "rx_device_bytes grew by {bytes}");
    // The same traffic per network and toward the peer.
    let grew =
        |name: &str, labels: &[(&str, &str)]| after.get(name, labels) - before.get(name, labels);
    let net = |side| [("vni", "42"), ("dev", "vx0"), ("side", side)];
    assert!(grew("vtepd_rx_packets_total", &net("device")) >= 20.0);
    assert!(grew("vtepd_rx_bytes_total", &net("device")) >= 20.0 * 98.0);
    assert!(grew("vtepd_tx_packets_total", &net("tunnel")) >= 20.0);
    assert!(grew("vtepd_rx_packets_total", &net("tunnel")) >= 20.0);
    assert!(grew("vtepd_tx_packets_total", &net("device")) >= 20.0);
    let peer = [("vni", "42"), ("dev", "vx0"), ("remote", "192.0.2.2")];
    assert!(grew("vtepd_peer_tx_packets_total", &peer) >= 20.0);
    assert!(grew("vtepd_peer_rx_packets_total", &peer) >= 20.0);
    assert!(grew("vtepd_peer_tx_bytes_total", &peer) >= 20.0 * 98.0);

    // The scrape and `stats --json` read the same cells: taken between two `stats` with equal
    // counters (nothing happened in between), they are equal; otherwise the scrape lies
    // between the two. Counters only grow, so the sandwich always holds.
    let mut exact = false;
    for _ in 0..10 {
        let s1 = a.stats();
        let s = scrape(&p.a);
        let s2 = a.stats();
        let (f1, f2) = (figures(&s1, &s), figures(&s2, &s));
        for ((what, lo, got), (_, hi, _)) in f1.iter().zip(&f2) {
            if what.contains("fdb") || what.contains("neigh") || what.ends_with(" peers") {
                continue; // gauges: only compared when nothing moved
            }
            assert!(lo <= got && got <= hi, "{what}: {lo} <= {got} <= {hi}");
        }
        let quiet = f1.iter().zip(&f2).all(|(a, b)| a.1 == b.1);
        if quiet {
            for (what, want, got) in &f1 {
                assert_eq!(want, got, "{what}: stats --json {want}, scrape {got}");
            }
            // The totals are the sums of the worker rows and of the reasons.
            let workers: f64 = (0..2)
                .map(|w| {
                    s.get(
                        "vtepd_worker_rx_device_total",
                        &[("worker", &w.to_string())],
                    )
                })
                .sum();
            assert_eq!(workers, s.get("vtepd_rx_device_total", &[]));
            assert_eq!(
                s.get(
                    "vtepd_fdb_entries",
                    &[("vni", "42"), ("dev", "vx0"), ("kind", "static")]
                ),
                1.0
            );
            assert!(
                s.get(
                    "vtepd_fdb_entries",
                    &[("vni", "42"), ("dev", "vx0"), ("kind", "learned")]
                ) >= 1.0,
                "B's MAC was learned"
            );
            let version = env!("CARGO_PKG_VERSION");
            let info = [("version", version), ("mode", "l2-vxlan")];
            assert_eq!(s.get("vtepd_build_info", &info), 1.0);
            assert_eq!(s.get("vtepd_up", &[]), 1.0);
            exact = true;
            break;
        }
    }
    assert!(exact, "never two equal stats around a scrape in 10 tries");
}

#[test]
fn hostile_scrapers_never_block_a_scrape_or_the_control_socket() {
    let p = Pair::new();
    // From a file this time: `metrics` is a file key too.
    let file = control_path("cfg").with_extension("toml");
    std::fs::write(
        &file,
        format!(
            "local = \"192.0.2.1\"\nmetrics = \"{METRICS}\"\nthreads = 1\n\
[[network]]\ndev = \"vx0\"\nvni = 42\npeers = [\"192.0.2.2\"]\n"
        ),
    )
    .unwrap();
    let a = Daemon::start(&p.a, &["--config", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    let mut tool =
        p.a.cmd("timeout")
            .args(["60", "/usr/bin/python3", TOOL, "hostile", METRICS, "40"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let mut lines = BufReader::new(tool.stdout.take().unwrap()).lines();
    let ready = lines.next().and_then(Result::ok).unwrap_or_default();
    // 40 silent connections, a 1 MiB request and a scraper that never reads are open: the
    // control socket still answers.
    let stats = a.client(&["stats"]);
    let stats_ok = stats.status.success();
    let _ = tool.stdin.take().unwrap().write_all(b"go\n");
    let report = lines.next().and_then(Result::ok).unwrap_or_default();
    let done = tool.wait_with_output().unwrap();
    assert_eq!(
        ready,
        "ready",
        "the hostile tool failed: {}\n{}",
        String::from_utf8_lossy(&done.stderr),
        a.log_text()
    );
    assert!(stats_ok, "vtepd stats failed: {stats:?}");
    let r: Value = serde_json::from_str(&report).unwrap_or_else(|e| panic!("{e}: {report:?}"));
    assert_eq!(r["scrape_ok"], true, "{r}");
    assert_eq!(
        r["evicted"], true,
        "the oldest silent connection was kept: {r}"
    );
    assert_eq!(
        r["huge"]["closed"], true,
        "the 1 MiB request was not cut off: {r}"
    );
    let status = r["huge"]["status"].as_str().unwrap();
    assert!(
        status.is_empty() || status.contains("431"),
        "huge request answered {status:?}"
    );
    assert_eq!(r["statuses"]["/"], 200, "{r}");
    assert_eq!(r["root_links"], true, "{r}");
    assert_eq!(r["statuses"]["/nope"], 404, "{r}");
    assert_eq!(r["statuses"]["POST /metrics"], 405, "{r}");
    // And after them the daemon still scrapes.
    assert!(scrape(&p.a).get("vtepd_up", &[]) == 1.0);

    // Silent scrapers do not hold up a shutdown either.
    let mut holder =
        p.a.cmd("timeout")
            .args([
                "30",
                "/usr/bin/python3",
                "-c",
                "import socket, sys, time\n\
             s = [socket.create_connection(('127.0.0.1', 9570)) for _ in range(5)]\n\
             print('open', flush=True)\n\
             time.sleep(30)\n",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
    let open = BufReader::new(holder.stdout.take().unwrap())
        .lines()
        .next()
        .and_then(Result::ok);
    assert_eq!(open.as_deref(), Some("open"));
    let mut a = a;
    a.signal("TERM");
    let st = a.wait_exit(Duration::from_secs(10));
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(
        st.is_some_and(|s| s.success()),
        "SIGTERM with scrapers connected: {st:?}\n{}",
        a.log_text()
    );
}

/// A reload keeps the metrics endpoint and the scrape follows it: a network added by the
/// reload has its rows; a reload that moves the endpoint is refused and the old one answers.
#[test]
fn scrapes_follow_a_reload_and_the_endpoint_stays() {
    let p = Pair::new();
    let file = control_path("cfg").with_extension("toml");
    let write = |extra: &str, metrics: &str| {
        std::fs::write(
            &file,
            format!(
                "local = \"192.0.2.1\"\nmetrics = \"{metrics}\"\nthreads = 1\n\
[[network]]\ndev = \"vx0\"\nvni = 42\npeers = [\"192.0.2.2\"]\n{extra}"
            ),
        )
        .unwrap();
    };
    write("", METRICS);
    let a = Daemon::start(&p.a, &["--config", file.to_str().unwrap()]);
    let peers =
        |s: &Scrape, vni: &str, dev: &str| s.get("vtepd_peers", &[("vni", vni), ("dev", dev)]);
    assert_eq!(peers(&scrape(&p.a), "42", "vx0"), 1.0);
    write(
        "[[network]]\ndev = \"vx1\"\nvni = 43\npeers = [\"192.0.2.2\", \"192.0.2.3\"]\n",
        METRICS,
    );
    let out = a.ok(&["reload"]);
    assert!(out.contains("43"), "{out}");
    let s = scrape(&p.a);
    assert_eq!(peers(&s, "43", "vx1"), 2.0, "{}", a.log_text());
    assert_eq!(peers(&s, "42", "vx0"), 1.0);
    write("", "127.0.0.1:9571");
    let refused = a.client(&["reload"]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let msg = String::from_utf8_lossy(&refused.stderr);
    assert!(
        msg.contains("metrics 127.0.0.1:9570 -> 127.0.0.1:9571: needs a restart"),
        "{msg}"
    );
    assert_eq!(peers(&scrape(&p.a), "43", "vx1"), 2.0, "nothing changed");
}

#[test]
fn a_metrics_address_in_use_is_refused_before_anything_is_created() {
    let ns = Netns::new("m");
    ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ]);
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "eth0"]);
    ns.ip(&["link", "set", "eth0", "up"]);
    let _first = Daemon::start(
        &ns,
        &["--dev", "vx0", "--local", "192.0.2.1", "--metrics", METRICS],
    );
    let ctl = control_path("m2");
    let out = run(ns.cmd(BIN).args([
        "run",
        "--dev",
        "vx1",
        "--local",
        "192.0.2.1",
        "--port",
        "4790",
        "--metrics",
        METRICS,
        "--control",
        ctl.to_str().unwrap(),
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot listen for metrics on 127.0.0.1:9570") && err.contains("in use"),
        "{err}"
    );
    assert!(!ns.has_link("vx1"), "a refused start created its device");
    assert!(!ctl.exists(), "a refused start created its control socket");
}

#[test]
fn an_ipip_daemon_serves_metrics_on_ipv6_loopback() {
    let ns = Netns::new("m6");
    ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ]);
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "eth0"]);
    ns.ip(&["link", "set", "eth0", "up"]);
    let d = Daemon::start(
        &ns,
        &[
            "--mode",
            "l3",
            "--encap",
            "ipip",
            "--dev",
            "tun0",
            "--local",
            "192.0.2.1",
            "--address",
            "10.244.0.1/32",
            "--route",
            "10.244.1.0/24=192.0.2.2",
            "--threads",
            "1",
            "--metrics",
            "[::1]:9570",
        ],
    );
    let s = scrape_at(&ns, "[::1]:9570");
    let info = [("version", env!("CARGO_PKG_VERSION")), ("mode", "l3-ipip")];
    assert_eq!(s.get("vtepd_build_info", &info), 1.0);
    let st = d.stats();
    assert_eq!(
        s.get("vtepd_uptime_seconds", &[]).floor(),
        s.get("vtepd_uptime_seconds", &[])
    );
    assert!(s.get("vtepd_uptime_seconds", &[]) <= u(&st["uptime_secs"]));
    assert!(
        d.log_text()
            .contains("metrics on http://[::1]:9570/metrics"),
        "{}",
        d.log_text()
    );
    // IPIP's one device is network 0 in stats --json, and in the scrape.
    assert_eq!(st["networks"][0]["dev"], "tun0");
    let net = [("vni", "0"), ("dev", "tun0"), ("side", "device")];
    // (Taken after the scrape: it can only have grown.)
    assert!(s.get("vtepd_rx_packets_total", &net) <= u(&st["networks"][0]["rx_device"]));
}

/// The metric names a PromQL expression uses: every identifier starting with `vtepd_`.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
        if ident(b[i]) && (i == 0 || !ident(b[i - 1])) {
            let start = i;
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            // Not a label value ("..."): vtepd names never appear quoted in the dashboard.
            if word.starts_with("vtepd_") && (start == 0 || b[start - 1] != b'"') {
                names.push(word.to_owned());
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Every `expr` in a Grafana dashboard (panels, rows' panels, templating queries).
fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    ("query", Value::String(s)) if s.contains("vtepd_") => out.push(s.clone()),
                    ("query", Value::Object(q)) => {
                        if let Some(Value::String(s)) = q.get("query") {
                            out.push(s.clone());
                        }
                    }
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_a_scrape_has() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/dist/grafana/vtepd.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut all = Vec::new();
    exprs(&dash, &mut all);
    assert!(
        all.len() >= 8,
        "only {} queries in the dashboard",
        all.len()
    );
    let (p, _a, _b) = pair_with_metrics();
    let names = scrape(&p.a).names();
    let mut used = BTreeSet::new();
    for e in &all {
        assert!(
            !e.contains("__name__"),
            "a query matches names by pattern: {e}"
        );
        let found = metric_names(e);
        assert!(!found.is_empty(), "a query without a vtepd metric: {e}");
        for n in found {
            assert!(
                names.contains(&n),
                "the dashboard queries {n}, which no scrape has ({e})"
            );
            used.insert(n);
        }
    }
    // Each panel named in the issue has its metrics.
    for must in [
        "vtepd_drops_total",
        "vtepd_fdb_entries",
        "vtepd_neigh_entries",
        "vtepd_worker_rx_device_total",
        "vtepd_rx_bytes_total",
        "vtepd_tx_bytes_total",
        "vtepd_peer_rx_bytes_total",
        "vtepd_peer_tx_bytes_total",
    ] {
        assert!(used.contains(must), "the dashboard does not show {must}");
    }
}

#[test]
fn metric_names_are_extracted_from_promql() {
    assert_eq!(
        metric_names(
            r#"sum by (reason) (rate(vtepd_drops_total{vni=~"$vni",reason!="x"}[5m])) / ignoring(x) vtepd_up"#
        ),
        ["vtepd_drops_total", "vtepd_up"]
    );
    assert!(metric_names(r#"label_values(foo, "vtepd_x")"#).is_empty());
}
