//! A store-driven fabric (`--store etcd=URL`), end to end with a real etcd in network
//! namespaces: hosts given only the store (no `--peer`) find each other and ping, a host that
//! joins later is reached, one killed drops out of the others' flood lists once its lease
//! expires, one stopped cleanly at once; a network a reload adds is registered, one it removes
//! withdrawn; what the store installed is not the operator's configuration and is marked as the
//! store's; announced MACs and the addresses behind them answer ARP and ND before any traffic;
//! faults
//! (etcd down, leases lost, bad values, a watch behind a compaction) are survived and counted;
//! a fabric over an IPv6 underlay registers and finds its members by their IPv6 addresses.
//! Needs root (network namespaces) and etcd (scripts/setup.sh).

mod daemon_support;
mod etcd_support;
mod transfer_support;

use daemon_support::{Capture, Conf, Daemon, Netns, Switch, wait_until};
use etcd_support::Etcd;
use std::time::Duration;
use transfer_support::{Ends, Payload, transfer};

const PREFIX: &str = "/vtepd/t";
/// The lease TTL the daemons register with: short, so a dead host leaves quickly.
const TTL: &str = "3";
/// How long any one wait may take (a lease expiry included).
const WAIT: Duration = Duration::from_secs(15);

/// An L2 daemon on host `n` (192.0.2.n, overlay 10.9.0.n/24, VNI 42) given only the store.
fn host(ns: &Netns, n: u8, etcd: &Etcd) -> Daemon {
    host_ttl(ns, n, etcd, TTL)
}

/// [`host`] with a lease TTL of `ttl` seconds.
fn host_ttl(ns: &Netns, n: u8, etcd: &Etcd, ttl: &str) -> Daemon {
    host_with(ns, n, etcd, ttl, &[])
}

/// [`host_ttl`] with `extra` flags.
fn host_with(ns: &Netns, n: u8, etcd: &Etcd, ttl: &str, extra: &[&str]) -> Daemon {
    let (local, address) = (format!("192.0.2.{n}"), format!("10.9.0.{n}/24"));
    let store = format!("etcd={}", etcd.url);
    let args = [
        "--dev",
        "vx0",
        "--vni",
        "42",
        "--local",
        &local,
        "--address",
        &address,
        "--threads",
        "1",
        "--store",
        &store,
        "--store-prefix",
        PREFIX,
        "--store-ttl",
        ttl,
    ];
    Daemon::start(ns, &[&args[..], extra].concat())
}

/// `peers show --json` of VNI 42: (flood list, those from the store).
fn peers(d: &Daemon) -> (Vec<String>, Vec<String>) {
    peers_of(d, 42)
}

/// `peers show --json` of VNI `vni`: (flood list, those from the store); empty for a network
/// it does not have.
fn peers_of(d: &Daemon, vni: u64) -> (Vec<String>, Vec<String>) {
    let rows: serde_json::Value =
        serde_json::from_str(&d.ok(&["peers", "show", "--json"])).unwrap();
    let Some(row) = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["vni"].as_u64() == Some(vni))
    else {
        return (Vec::new(), Vec::new());
    };
    let list = |k: &str| -> Vec<String> {
        row[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    (list("peers"), list("store"))
}

/// Waits until `d` floods to exactly `want` (sorted), all of them from the store.
fn wait_flood(d: &Daemon, want: &[&str]) {
    let ok = wait_until(WAIT, || {
        let (mut all, mut store) = peers(d);
        all.sort();
        store.sort();
        all == want && store == want
    });
    assert!(
        ok,
        "flood list {:?}, wanted {want:?}: {}",
        peers(d),
        d.log_text()
    );
}

/// `--remcsum-tx auto`: VXLAN remote checksum offload negotiated per peer through the store.
/// h1 sends with it to the members that registered taking it (h2, `--remcsum-rx on`) and
/// complete checksums to the others (h3, which would drop the option as `remote_csum`). A file
/// crosses by TCP to each, byte-exact; tshark on h1's link counts the data segments to each
/// that carry the option (VXLAN flags 0x0820, start 17).
#[test]
fn remote_checksum_offload_goes_to_the_members_that_take_it() {
    let sw = Switch::new(Some("192.0.2.254/24"));
    let etcd = Etcd::start(&sw.ns, "192.0.2.254");
    let ns: Vec<Netns> = (1..=3)
        .map(|n| sw.host(&format!("192.0.2.{n}/24")))
        .collect();
    let extra: [&[&str]; 3] = [
        &["--remcsum-tx", "auto", "--remcsum-rx", "on"],
        &["--remcsum-rx", "on"],
        &[],
    ];
    let mut d: Vec<Daemon> = (0..3)
        .map(|i| host_with(&ns[i], i as u8 + 1, &etcd, TTL, extra[i]))
        .collect();
    wait_flood(&d[0], &["192.0.2.2", "192.0.2.3"]);
    let takers = |d: &Daemon| {
        let rows: serde_json::Value =
            serde_json::from_str(&d.ok(&["peers", "show", "--json"])).unwrap();
        rows[0]["remcsum_rx"].clone()
    };
    assert!(
        wait_until(WAIT, || takers(&d[0]) == serde_json::json!(["192.0.2.2"])),
        "h1 takes {} as the peers taking the option",
        takers(&d[0])
    );
    let text = d[0].ok(&["peers", "show"]);
    let line = |ip: &str| text.lines().find(|l| l.contains(ip)).unwrap_or_default();
    assert!(line("192.0.2.2").ends_with("(store, remcsum-rx)"), "{text}");
    assert!(line("192.0.2.3").ends_with("(store)"), "{text}");
    assert!(ns[0].ping_within("10.9.0.2", WAIT) && ns[0].ping_within("10.9.0.3", WAIT));
    let cap = Capture::start(&ns[0], "src host 192.0.2.1 and udp dst port 4789");
    const LEN: usize = 4 << 20;
    let file = Payload::new("rcoauto", 0x51a7_e0c4_9d2b_1f03, LEN);
    for (i, dst) in [(1, "10.9.0.2"), (2, "10.9.0.3")] {
        let (sent, got) = transfer(Ends(&ns[0].name, &ns[i].name), &file, dst, 7600, 0, 65_536);
        assert_eq!(sent["bytes"], LEN, "to {dst}: {sent}");
        assert_eq!(got, sent, "to {dst}: the stream changed in the tunnel");
    }
    let count = |to: &str| cap.rco_segments(&format!("ip.dst == {to}"));
    let (to_h2, rco_h2) = count("192.0.2.2");
    let (to_h3, rco_h3) = count("192.0.2.3");
    eprintln!(
        "data segments (with the option): to h2 {to_h2} ({rco_h2}), to h3 {to_h3} ({rco_h3})"
    );
    assert!(to_h2 > 0 && to_h3 > 0, "data segments not captured");
    // What h1 cuts from a device super-frame carries the option; a bulk transfer is those.
    assert!(
        2 * rco_h2 >= to_h2,
        "to h2: {to_h2} data segments, {rco_h2} with the option"
    );
    assert_eq!(rco_h3, 0, "h3 does not take the option");
    let drops = |d: &Daemon| {
        d.stats()["drops"]["remote_csum"]
            .as_u64()
            .expect("a drop reason")
    };
    assert_eq!((drops(&d[1]), drops(&d[2])), (0, 0));
    // Counted on both sides: what h1 sent with it, what h2 took; h3 took none.
    let n = |d: &Daemon, k: &str| d.stats()[k].as_u64().expect("a counter");
    assert!(n(&d[0], "tx_remote_csum") >= (LEN / 1448) as u64 / 2);
    assert!(n(&d[1], "rx_remote_csum") > 0);
    assert_eq!(n(&d[2], "rx_remote_csum"), 0);
    // h2 leaves (its lease revoked): h1 no longer counts it among those taking the option.
    drop(d.remove(1));
    assert!(
        wait_until(WAIT, || takers(&d[0]) == serde_json::json!([])),
        "h1 still takes {} as taking the option",
        takers(&d[0])
    );
}

#[test]
fn hosts_given_only_the_store_find_each_other_and_leave() {
    let sw = Switch::new(Some("192.0.2.254/24"));
    let etcd = Etcd::start(&sw.ns, "192.0.2.254");
    let ns: Vec<Netns> = (1..=4)
        .map(|n| sw.host(&format!("192.0.2.{n}/24")))
        .collect();
    let mut d: Vec<Daemon> = (1..=3).map(|n| host(&ns[n - 1], n as u8, &etcd)).collect();

    // Three hosts: each floods to the two others, and they ping.
    wait_flood(&d[0], &["192.0.2.2", "192.0.2.3"]);
    wait_flood(&d[1], &["192.0.2.1", "192.0.2.3"]);
    wait_flood(&d[2], &["192.0.2.1", "192.0.2.2"]);
    assert!(ns[0].ping_within("10.9.0.2", WAIT), "{}", d[1].log_text());
    assert!(ns[0].ping_within("10.9.0.3", WAIT), "{}", d[2].log_text());
    assert!(ns[1].ping_within("10.9.0.3", WAIT));
    // Registrations are what the README documents.
    let mut keys = etcd.keys(&sw.ns, &format!("{PREFIX}/members/"));
    keys.sort();
    assert_eq!(
        keys,
        [1, 2, 3].map(|n| format!("{PREFIX}/members/42/192.0.2.{n}"))
    );
    // An operator's static entry in the store reaches every host as the store's.
    let key = format!("{PREFIX}/fdb/42/02:00:00:00:00:99");
    etcd.put(&sw.ns, &key, br#"{"version":1,"remote":"192.0.2.3"}"#);
    let has = |d: &Daemon| {
        d.fdb().iter().any(|e| {
            e["mac"] == "02:00:00:00:00:99"
                && e["remote"] == "192.0.2.3"
                && e["kind"] == "static"
                && e["store"] == true
        })
    };
    assert!(
        wait_until(WAIT, || has(&d[0]) && has(&d[1])),
        "{:?}",
        d[0].fdb()
    );
    let text = d[0].ok(&["fdb", "show"]);
    assert!(
        text.contains("02:00:00:00:00:99 dev vx0 vni 42 dst 192.0.2.3 static (store)"),
        "{text}"
    );
    // The store's peers and entries are not the operator's: the running configuration has none.
    let conf = d[0].ok(&["config", "show"]);
    assert!(!conf.contains("peers") && !conf.contains("00:99"), "{conf}");
    assert!(
        conf.contains(&format!("store = \"etcd={}\"", etcd.url)),
        "{conf}"
    );

    // A fourth joins (from a file), nothing done to the others: they flood to it and reach it.
    let file = |extra: &str| {
        format!(
            "local = \"192.0.2.4\"\nthreads = 1\nstore = \"etcd={}\"\nstore_prefix = \"{PREFIX}\"\n\
             store_ttl = {TTL}\n[[network]]\ndev = \"vx0\"\nvni = 42\naddress = \"10.9.0.4/24\"\n\
             {extra}",
            etcd.url
        )
    };
    let conf4 = Conf::new(&file(""));
    d.push(Daemon::start(&ns[3], &["--config", conf4.path()]));
    wait_flood(&d[0], &["192.0.2.2", "192.0.2.3", "192.0.2.4"]);
    wait_flood(&d[3], &["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
    assert!(ns[0].ping_within("10.9.0.4", WAIT), "{}", d[3].log_text());
    assert!(ns[3].ping_within("10.9.0.2", WAIT));
    // A network a reload adds is registered and takes the store's members of it (one written
    // by hand here); one a reload removes is withdrawn.
    let key43 = |n: u8| format!("{PREFIX}/members/43/192.0.2.{n}");
    etcd.put(
        &sw.ns,
        &key43(9),
        br#"{"version":1,"underlay":"192.0.2.9","vni":43,"port":4789}"#,
    );
    conf4.write(&file("[[network]]\ndev = \"vx1\"\nvni = 43\n"));
    d[3].ok(&["reload"]);
    let registered = wait_until(WAIT, || {
        etcd.keys(&sw.ns, &key43(4)) == [key43(4)] && peers_of(&d[3], 43).1 == ["192.0.2.9"]
    });
    assert!(registered, "{:?} {}", peers_of(&d[3], 43), d[3].log_text());
    conf4.write(&file(""));
    d[3].ok(&["reload"]);
    let withdrawn = wait_until(WAIT, || etcd.keys(&sw.ns, &key43(4)).is_empty());
    assert!(withdrawn, "{}", d[3].log_text());
    etcd.delete(&sw.ns, &key43(9));

    // Host 3 dies (SIGKILL: no clean leave): it drops out when its lease expires.
    d[2].signal("KILL");
    assert!(d[2].wait_exit(WAIT).is_some());
    wait_flood(&d[0], &["192.0.2.2", "192.0.2.4"]);
    wait_flood(&d[1], &["192.0.2.1", "192.0.2.4"]);
    // Host 4 leaves cleanly (SIGTERM revokes its lease): gone from the store and the others.
    d[3].signal("TERM");
    assert_eq!(d[3].wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    assert!(
        d[3].log_text().contains("lease revoked"),
        "{}",
        d[3].log_text()
    );
    wait_flood(&d[0], &["192.0.2.2"]);
    let mut keys = etcd.keys(&sw.ns, &format!("{PREFIX}/members/"));
    keys.sort();
    assert_eq!(
        keys,
        [1, 2].map(|n| format!("{PREFIX}/members/42/192.0.2.{n}"))
    );
    assert!(ns[0].ping_within("10.9.0.2", WAIT));
    let st = d[0].stats();
    assert_eq!(st["store"]["state"], "connected", "{st}");
    assert_eq!(st["store"]["members"], 2, "{st}");
}

/// Over an IPv6 underlay (2001:db8::/64, etcd reached over IPv6 too): three L2 hosts given only
/// the store register under their IPv6 addresses, flood to each other, ping across (IPv4 and
/// IPv6 overlay), and the MACs they announce and an operator's static entry reach the others'
/// FDB with IPv6 remotes. A member of the other family (IPv4) is left out, counted as `skipped`
/// and logged once; a static entry with an IPv4 remote is a bad value. Two L3 VXLAN hosts on
/// the same underlay route to each other's advertised blocks through the store.
#[test]
fn an_ipv6_underlay_fabric_runs_on_the_store() {
    let t0 = std::time::Instant::now();
    let sw = Switch::new(Some("2001:db8::fe/64"));
    let etcd = Etcd::start(&sw.ns, "[2001:db8::fe]");
    let store = format!("etcd={}", etcd.url);
    let ns: Vec<Netns> = (1..=3)
        .map(|n| sw.host(&format!("2001:db8::{n}/64")))
        .collect();
    let d: Vec<Daemon> = (1..=3)
        .map(|n| {
            let (local, address) = (format!("2001:db8::{n}"), format!("10.9.0.{n}/24"));
            let mut args = vec!["--dev", "vx0", "--vni", "42", "--local", &local];
            args.extend_from_slice(&["--address", &address, "--threads", "1", "--store", &store]);
            args.extend_from_slice(&["--store-prefix", PREFIX, "--store-ttl", TTL, "--announce"]);
            Daemon::start(&ns[n - 1], &args)
        })
        .collect();
    wait_flood(&d[0], &["2001:db8::2", "2001:db8::3"]);
    wait_flood(&d[1], &["2001:db8::1", "2001:db8::3"]);
    wait_flood(&d[2], &["2001:db8::1", "2001:db8::2"]);
    let mut keys = etcd.keys(&sw.ns, &format!("{PREFIX}/members/"));
    keys.sort();
    assert_eq!(
        keys,
        [1, 2, 3].map(|n| format!("{PREFIX}/members/42/2001:db8::{n}"))
    );
    assert!(ns[0].ping_within("10.9.0.2", WAIT), "{}", d[1].log_text());
    assert!(ns[1].ping_within("10.9.0.3", WAIT), "{}", d[2].log_text());
    for (n, h) in ns.iter().enumerate() {
        h.enable_ipv6("vx0", &format!("fd00::9:{}/64", n + 1));
    }
    assert!(ns[2].ping_within("fd00::9:1", WAIT), "{}", d[0].log_text());
    // Host 2's MAC (seen on its device by now) is announced from its IPv6 address.
    let mac2 = ns[1].mac("vx0");
    let from_store = |d: &Daemon, mac: &str, remote: &str| {
        d.fdb().iter().any(|e| {
            e["mac"] == mac && e["remote"] == remote && e["kind"] == "static" && e["store"] == true
        })
    };
    let announced = wait_until(WAIT, || from_store(&d[0], &mac2, "2001:db8::2"));
    assert!(announced, "{:?} {}", d[0].fdb(), d[1].log_text());

    // A member of the other family: never a peer, counted once, logged once.
    let counters = |d: &Daemon| store_stats(d)["counters"].clone();
    let before = counters(&d[0]);
    let key9 = format!("{PREFIX}/members/42/192.0.2.9");
    etcd.put(
        &sw.ns,
        &key9,
        br#"{"version":1,"underlay":"192.0.2.9","vni":42,"port":4789}"#,
    );
    let skipped = |d: &Daemon| counters(d)["skipped"].as_u64().unwrap();
    let base = before["skipped"].as_u64().unwrap();
    assert!(
        wait_until(WAIT, || skipped(&d[0]) == base + 1),
        "{}",
        store_stats(&d[0])
    );
    // An operator's static entries: an IPv6 remote is installed everywhere, an IPv4 one is a
    // bad value (one address family per network, as on the command line).
    let bad_before = before["bad_values"].as_u64().unwrap();
    let fdb_key = |m: u8| format!("{PREFIX}/fdb/42/02:00:00:00:00:{m:02x}");
    etcd.put(
        &sw.ns,
        &fdb_key(0x99),
        br#"{"version":1,"remote":"2001:db8::3"}"#,
    );
    etcd.put(
        &sw.ns,
        &fdb_key(0x98),
        br#"{"version":1,"remote":"192.0.2.3"}"#,
    );
    let installed = wait_until(WAIT, || {
        from_store(&d[0], "02:00:00:00:00:99", "2001:db8::3")
            && counters(&d[0])["bad_values"].as_u64() == Some(bad_before + 1)
    });
    assert!(installed, "{:?} {}", d[0].fdb(), store_stats(&d[0]));
    let text = d[0].ok(&["fdb", "show"]);
    assert!(
        text.contains("02:00:00:00:00:99 dev vx0 vni 42 dst 2001:db8::3 static (store)")
            && !text.contains("02:00:00:00:00:98"),
        "{text}"
    );
    // Those changes were rounds of their own: the member left out is still counted once.
    assert_eq!(skipped(&d[0]), base + 1, "{}", store_stats(&d[0]));
    let log = d[0].log_text();
    let why = "192.0.2.9 is an IPv4 address but --local 2001:db8::1 is IPv6";
    assert_eq!(log.matches(why).count(), 1, "{log}");
    let mut flood = peers(&d[0]).0;
    flood.sort();
    assert_eq!(flood, ["2001:db8::2", "2001:db8::3"]);

    // L3 VXLAN on the same underlay (a port and a fabric of its own): hosts 1 and 2 route to
    // each other's advertised block via its overlay address, its MAC behind its IPv6 address.
    let l3: Vec<Daemon> = (1..=2)
        .map(|n| {
            let local = format!("2001:db8::{n}");
            let (addr, block) = (format!("10.245.{n}.0/32"), format!("10.245.{n}.0/24"));
            let mut args = vec![
                "--mode", "l3", "--encap", "vxlan", "--vni", "1", "--dev", "vt1",
            ];
            args.extend_from_slice(&["--port", "4790", "--local", &local, "--threads", "1"]);
            args.extend_from_slice(&["--address", &addr, "--advertise", &block]);
            args.extend_from_slice(&["--store", &store, "--store-prefix", "/vtepd/l3"]);
            Daemon::start(&ns[n - 1], &args)
        })
        .collect();
    let want = [("10.245.2.0/24".to_owned(), "10.245.2.0".to_owned())];
    let routed = wait_until(WAIT, || routes(&l3[0]) == want);
    assert!(routed, "{:?} {}", routes(&l3[0]), l3[0].log_text());
    let mac = l3[1].stats()["networks"][0]["mac"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(from_store(&l3[0], &mac, "2001:db8::2"), "{:?}", l3[0].fdb());
    assert!(
        ns[0].ping_within("10.245.2.0", WAIT),
        "{}",
        l3[1].log_text()
    );
    eprintln!("store ipv6 underlay: {:.1} s", t0.elapsed().as_secs_f64());
}

/// `routes show --json` of `d`: (prefix, next hop) pairs.
fn routes(d: &Daemon) -> Vec<(String, String)> {
    let rows: serde_json::Value =
        serde_json::from_str(&d.ok(&["routes", "show", "--json"])).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_owned();
            (s("prefix"), s("via"))
        })
        .collect()
}

/// The L3 modes, dual-stack: each host advertises its IPv4 and its IPv6 block; IPIP hosts
/// route the other's blocks to its node (Calico's way; IPv6 as protocol 41), L3 VXLAN hosts
/// through its overlay address of the block's family bound to its MAC (flannel's way); they
/// ping across over IPv4 and IPv6, and the store's routes are not in the running configuration.
/// An operator's IPv6 route key is installed, one with a next hop of the wrong family counted
/// as a bad value.
#[test]
fn l3_hosts_route_to_each_others_advertised_blocks() {
    let sw = Switch::new(Some("192.0.2.254/24"));
    let etcd = Etcd::start(&sw.ns, "192.0.2.254");
    let store = format!("etcd={}", etcd.url);
    let ns: Vec<Netns> = (1..=4)
        .map(|n| sw.host(&format!("192.0.2.{n}/24")))
        .collect();
    let start = |n: usize, args: &[&str], prefix: &str| {
        let local = format!("192.0.2.{n}");
        let mut all = vec!["--local", &local, "--threads", "1", "--store", &store];
        all.extend_from_slice(&["--store-prefix", prefix, "--store-ttl", TTL]);
        all.extend_from_slice(args);
        Daemon::start(&ns[n - 1], &all)
    };
    let ipip: Vec<Daemon> = [1, 2]
        .into_iter()
        .map(|n| {
            let (addr, block) = (format!("10.244.{n}.1/32"), format!("10.244.{n}.0/24"));
            let (addr6, block6) = (format!("fd00:244:{n}::1/128"), format!("fd00:244:{n}::/64"));
            let args = ["--mode", "l3", "--encap", "ipip", "--dev", "tunl1"];
            let mut a = args.to_vec();
            a.extend_from_slice(&["--address", &addr, "--advertise", &block]);
            a.extend_from_slice(&["--address6", &addr6, "--advertise", &block6]);
            start(n, &a, "/vtepd/ipip")
        })
        .collect();
    let l3vx: Vec<Daemon> = [3, 4]
        .into_iter()
        .map(|n| {
            let (addr, block) = (format!("10.245.{n}.0/32"), format!("10.245.{n}.0/24"));
            let (addr6, block6) = (format!("fd00:245:{n}::1/128"), format!("fd00:245:{n}::/64"));
            let args = [
                "--mode", "l3", "--encap", "vxlan", "--vni", "1", "--dev", "vt1",
            ];
            let mut a = args.to_vec();
            a.extend_from_slice(&["--address", &addr, "--advertise", &block]);
            a.extend_from_slice(&["--address6", &addr6, "--advertise", &block6]);
            start(n, &a, "/vtepd/l3vx")
        })
        .collect();

    let want = |d: &Daemon, r: [(&str, &str); 2]| {
        let r = r.map(|(p, v)| (p.to_owned(), v.to_owned()));
        let ok = wait_until(WAIT, || routes(d) == r);
        assert!(ok, "routes {:?}, wanted {r:?}: {}", routes(d), d.log_text());
    };
    want(
        &ipip[0],
        [
            ("10.244.2.0/24", "192.0.2.2"),
            ("fd00:244:2::/64", "192.0.2.2"),
        ],
    );
    want(
        &ipip[1],
        [
            ("10.244.1.0/24", "192.0.2.1"),
            ("fd00:244:1::/64", "192.0.2.1"),
        ],
    );
    want(
        &l3vx[0],
        [
            ("10.245.4.0/24", "10.245.4.0"),
            ("fd00:245:4::/64", "fd00:245:4::1"),
        ],
    );
    want(
        &l3vx[1],
        [
            ("10.245.3.0/24", "10.245.3.0"),
            ("fd00:245:3::/64", "fd00:245:3::1"),
        ],
    );
    // L3 VXLAN: both next hops bound to the other host's MAC, the MAC to its underlay address.
    let mac4 = l3vx[1].stats()["networks"][0]["mac"]
        .as_str()
        .unwrap()
        .to_owned();
    let neigh: Vec<serde_json::Value> =
        serde_json::from_str(&l3vx[0].ok(&["neigh", "show", "--json"])).unwrap();
    for hop in ["10.245.4.0", "fd00:245:4::1"] {
        assert!(
            neigh
                .iter()
                .any(|e| e["ip"] == hop && e["mac"] == mac4.as_str() && e["store"] == true),
            "{hop}: {neigh:?}"
        );
    }
    let fdb = l3vx[0].fdb();
    assert!(
        fdb.iter()
            .any(|e| e["mac"] == mac4.as_str() && e["remote"] == "192.0.2.4"),
        "{fdb:?}"
    );
    // IPv4 and IPv6 between the advertised blocks: IPIP (IPv6 as protocol 41) from host 1 to
    // host 2, L3 VXLAN (IPv6 via the IPv6 next hop) from host 3 to host 4.
    for (from, to, d) in [
        (0, "10.244.2.1", &ipip[1]),
        (0, "fd00:244:2::1", &ipip[1]),
        (2, "10.245.4.0", &l3vx[1]),
        (2, "fd00:245:4::1", &l3vx[1]),
    ] {
        assert!(ns[from].ping_within(to, WAIT), "{to}: {}", d.log_text());
    }
    let kernel6 = ns[2].ip(&["-6", "route", "show", "dev", "vt1"]);
    assert!(kernel6.contains("fd00:245:4::/64 "), "{kernel6}");
    for d in ipip.iter().chain(&l3vx) {
        let conf = d.ok(&["config", "show"]);
        assert!(
            !conf.contains("routes") && !conf.contains("neigh ="),
            "{conf}"
        );
        assert!(conf.contains("advertise"), "{conf}");
    }
    // An operator's route keys reach the IPIP hosts (and stay when a member leaves), IPv6 ones
    // too; one whose next hop is of the wrong family is a bad value, installed nowhere.
    let bad = |d: &Daemon| store_stats(d)["counters"]["bad_values"].as_u64().unwrap();
    let bad_before = bad(&ipip[0]);
    for (cidr, via) in [
        ("10.244.9.0/24", "192.0.2.2"),
        ("fd00:244:9::/64", "192.0.2.2"),
        ("fd00:244:8::/64", "fd00:244:2::1"),
    ] {
        let value = format!(r#"{{"version":1,"via":"{via}"}}"#);
        etcd.put(
            &sw.ns,
            &format!("/vtepd/ipip/routes/{cidr}"),
            value.as_bytes(),
        );
    }
    let op = ("10.244.9.0/24".to_owned(), "192.0.2.2".to_owned());
    let op6 = ("fd00:244:9::/64".to_owned(), "192.0.2.2".to_owned());
    assert!(
        wait_until(WAIT, || {
            let r = routes(&ipip[0]);
            r.contains(&op) && r.contains(&op6) && bad(&ipip[0]) == bad_before + 1
        }),
        "{:?} {}",
        routes(&ipip[0]),
        store_stats(&ipip[0])
    );
    assert!(!routes(&ipip[0]).iter().any(|r| r.0 == "fd00:244:8::/64"));
    // A host that leaves takes its routes (and its kernel routes) with it.
    ipip[1].signal("TERM");
    let ok = wait_until(WAIT, || routes(&ipip[0]) == [op.clone(), op6.clone()]);
    assert!(ok, "{:?}", routes(&ipip[0]));
    let kernel = ns[0].ip(&["route", "show", "dev", "tunl1"]);
    assert!(!kernel.contains("10.244.2.0/24"), "{kernel}");
    let kernel6 = ns[0].ip(&["-6", "route", "show", "dev", "tunl1"]);
    assert!(
        !kernel6.contains("fd00:244:2::/64") && kernel6.contains("fd00:244:9::/64"),
        "{kernel6}"
    );
}

/// `stats --json` `store` of `d`.
fn store_stats(d: &Daemon) -> serde_json::Value {
    d.stats()["store"].clone()
}

/// Faults: etcd stopped and started again while a ping runs: forwarding goes on with the last
/// state (no echo lost), the client reports `unreachable` (one log line) and resyncs on
/// reconnect; every lease lost at once: both hosts register again; a corrupt value and one of
/// an unknown version are skipped and counted, and change nothing; a watch that fell behind a
/// compaction reads everything again and ends equal to the store.
#[test]
fn store_faults_keep_forwarding_and_are_reported() {
    let sw = Switch::new(Some("192.0.2.254/24"));
    let mut etcd = Etcd::start(&sw.ns, "192.0.2.254");
    let ns: Vec<Netns> = (1..=2)
        .map(|n| sw.host(&format!("192.0.2.{n}/24")))
        .collect();
    // Host 1's lease outlives its pause below (about a second) with room to spare.
    let d = [host_ttl(&ns[0], 1, &etcd, "5"), host(&ns[1], 2, &etcd)];
    wait_flood(&d[0], &["192.0.2.2"]);
    assert!(ns[0].ping_within("10.9.0.2", WAIT));

    // A steady ping (8 s, 40 echoes) while etcd is down for part of it.
    let ping = ns[0]
        .cmd("ping")
        .args(["-c", "40", "-i", "0.2", "-W", "1", "10.9.0.2"])
        .output();
    let pinger = std::thread::spawn(move || ping);
    std::thread::sleep(Duration::from_secs(1));
    etcd.stop();
    let down = wait_until(WAIT, || store_stats(&d[0])["state"] == "unreachable");
    assert!(down, "{}", store_stats(&d[0]));
    // The last state stays: still flooding to the other host.
    assert_eq!(peers(&d[0]).0, ["192.0.2.2"]);
    std::thread::sleep(Duration::from_secs(2));
    etcd.restart(&sw.ns);
    let up = wait_until(WAIT, || store_stats(&d[0])["state"] == "connected");
    assert!(up, "{}", d[0].log_text());
    let out = pinger.join().unwrap().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("40 received"),
        "echoes lost while etcd was down: {text}"
    );
    let st = store_stats(&d[0]);
    assert_eq!(st["counters"]["unreachable"], 1, "{st}");
    assert!(st["counters"]["resyncs"].as_u64().unwrap() >= 2, "{st}");
    let lines = d[0].log_text().matches("store unreachable").count();
    assert_eq!(
        lines,
        1,
        "one log line per state change: {}",
        d[0].log_text()
    );
    wait_flood(&d[0], &["192.0.2.2"]);

    // Every lease revoked (as if expired): both hosts notice and register again.
    assert_eq!(etcd.revoke_all_leases(&sw.ns), 2);
    let back = wait_until(WAIT, || {
        etcd.keys(&sw.ns, PREFIX).len() == 2
            && d.iter()
                .all(|h| store_stats(h)["counters"]["lease_lost"] == 1)
    });
    assert!(back, "{:?} {}", etcd.keys(&sw.ns, PREFIX), d[0].log_text());
    wait_flood(&d[1], &["192.0.2.1"]);

    // Bad values: skipped, counted, nothing changes.
    let bad_before = store_stats(&d[0])["counters"]["bad_values"]
        .as_u64()
        .unwrap();
    etcd.put(
        &sw.ns,
        &format!("{PREFIX}/members/42/192.0.2.9"),
        b"{not json",
    );
    etcd.put(
        &sw.ns,
        &format!("{PREFIX}/members/42/192.0.2.8"),
        br#"{"version":9,"underlay":"192.0.2.8","vni":42,"port":4789}"#,
    );
    let counted = wait_until(WAIT, || {
        store_stats(&d[0])["counters"]["bad_values"].as_u64() == Some(bad_before + 2)
    });
    assert!(counted, "{}", store_stats(&d[0]));
    assert_eq!(peers(&d[0]).0, ["192.0.2.2"]);
    assert!(
        d[0].log_text().contains("version 9 is not known"),
        "{}",
        d[0].log_text()
    );
    assert!(ns[0].ping_within("10.9.0.2", WAIT));

    // A watch that falls behind a compaction: host 1 is paused (SIGSTOP) while more is written
    // than its watch stream holds, so etcd stops sending to it and moves it out of the live
    // watchers; then a member it knew leaves, another joins, and the history is compacted past
    // both. Resumed, host 1 finds its watch cancelled by the compaction, reads everything again,
    // and floods to exactly what the store holds.
    let member = |n: u8| {
        let key = format!("{PREFIX}/members/42/192.0.2.{n}");
        let value = format!(r#"{{"version":1,"underlay":"192.0.2.{n}","vni":42,"port":4789}}"#);
        (key, value)
    };
    let (k6, v6) = member(6);
    etcd.put(&sw.ns, &k6, v6.as_bytes());
    wait_flood(&d[0], &["192.0.2.2", "192.0.2.6"]);
    let before = store_stats(&d[0])["counters"].clone();
    d[0].signal("STOP");
    let filler = format!("{PREFIX}/filler");
    etcd.put_repeated(&sw.ns, &filler, 32 * 1024, 300);
    etcd.delete(&sw.ns, &k6);
    let (k7, v7) = member(7);
    etcd.put(&sw.ns, &k7, v7.as_bytes());
    etcd.delete(&sw.ns, &filler);
    etcd.compact(&sw.ns);
    d[0].signal("CONT");
    wait_flood(&d[0], &["192.0.2.2", "192.0.2.7"]);
    let after = store_stats(&d[0])["counters"].clone();
    assert_eq!(
        after["compactions"].as_u64(),
        before["compactions"].as_u64().map(|c| c + 1),
        "{after}"
    );
    assert_eq!(
        after["connects"], before["connects"],
        "no reconnect: {after}"
    );
    assert!(
        d[0].log_text().contains("fell behind a compaction"),
        "{}",
        d[0].log_text()
    );
}

/// MAC announcements (`--announce`): a MAC seen on one host's device reaches the others' FDB
/// through the store, as an entry toward that host, and the addresses behind it (IPv4 and
/// IPv6) their ARP/ND suppression tables, before any traffic to it; then a host that does not
/// learn answers the ARP request and the neighbour solicitation for it itself and sends the
/// frames straight there, with no flood copy (counted); the announcement goes with the host.
#[test]
fn announced_macs_reach_the_others_before_the_first_packet() {
    let sw = Switch::new(Some("192.0.2.254/24"));
    let etcd = Etcd::start(&sw.ns, "192.0.2.254");
    let ns: Vec<Netns> = (1..=3)
        .map(|n| sw.host(&format!("192.0.2.{n}/24")))
        .collect();
    let store = format!("etcd={}", etcd.url);
    let start = |n: usize, extra: &[&str]| {
        let (local, address) = (format!("192.0.2.{n}"), format!("10.9.0.{n}/24"));
        let mut args = vec!["--dev", "vx0", "--vni", "42", "--local", &local];
        args.extend_from_slice(&["--address", &address, "--threads", "1", "--store", &store]);
        args.extend_from_slice(&["--store-prefix", PREFIX, "--store-ttl", TTL, "--announce"]);
        args.extend_from_slice(extra);
        Daemon::start(&ns[n - 1], &args)
    };
    // Host 1 does not learn: it can only know another host's MAC (and address) from the store.
    let host1 = ["--no-learning", "--arp-suppress"];
    let mut d = vec![start(1, &host1), start(2, &[]), start(3, &[])];
    wait_flood(&d[0], &["192.0.2.2", "192.0.2.3"]);
    let mac2 = ns[1].mac("vx0");
    let entry = |d: &Daemon| {
        d.fdb()
            .into_iter()
            .find(|e| e["mac"].as_str() == Some(mac2.as_str()))
    };
    assert!(entry(&d[0]).is_none(), "not announced before it was seen");
    // Host 3 pings host 2: host 2's device answers its ARP request (a unicast reply, which host
    // 1 never sees): host 2's MAC is seen, and announced with its address.
    assert!(ns[2].ping("10.9.0.2"), "{}", d[1].log_text());
    let announced = wait_until(WAIT, || {
        entry(&d[0]).is_some_and(|e| {
            e["remote"] == "192.0.2.2" && e["kind"] == "static" && e["store"] == true
        })
    });
    assert!(announced, "{:?} {}", d[0].fdb(), d[1].log_text());
    assert!(
        etcd.keys(&sw.ns, PREFIX)
            .contains(&format!("{PREFIX}/macs/42/{mac2}"))
    );
    let conf = d[0].ok(&["config", "show"]);
    assert!(
        !conf.contains(&mac2),
        "the store's entry is not the operator's: {conf}"
    );
    let neigh = || -> serde_json::Value {
        serde_json::from_str(&d[0].ok(&["neigh", "show", "--json"])).unwrap()
    };
    // Host 1 pings host 2 at `ip` once the store bound it to host 2's MAC: its ARP request or
    // neighbour solicitation is answered by vtepd (`counter`), the echoes go to the store's
    // entry: no flood copy at all.
    let answered_from_the_store = |ip: &str, counter: &str| {
        let bound = wait_until(WAIT, || {
            neigh()
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["ip"] == ip && n["mac"] == mac2.as_str() && n["store"] == true)
        });
        assert!(bound, "{ip}: {} {}", neigh(), d[1].log_text());
        let before = d[0].stats();
        assert!(ns[0].ping_within(ip, WAIT), "{}", d[1].log_text());
        let after = d[0].stats();
        assert!(after["tx_tunnel"].as_u64() > before["tx_tunnel"].as_u64());
        assert_eq!(after["flood_copies"], before["flood_copies"], "{after}");
        assert_eq!(
            after[counter].as_u64(),
            before[counter].as_u64().map(|n| n + 1),
            "{after}"
        );
    };
    answered_from_the_store("10.9.0.2", "arp_suppressed");
    // IPv6: host 2's advertisement to host 3 (never seen by host 1) is announced.
    for (n, h) in ns.iter().enumerate() {
        h.enable_ipv6("vx0", &format!("fd00::9:{}/64", n + 1));
    }
    assert!(ns[2].ping_within("fd00::9:2", WAIT), "{}", d[1].log_text());
    answered_from_the_store("fd00::9:2", "nd_suppressed");
    let host2 = d[1].stats();
    assert!(host2["local_macs"].as_u64() >= Some(1), "{host2}");
    assert!(host2["local_ips"].as_u64() >= Some(2), "{host2}");
    // Host 2 leaves: its announcement (under its lease) goes, and the entry with it.
    d[1].signal("TERM");
    assert!(d[1].wait_exit(WAIT).is_some());
    assert!(
        wait_until(WAIT, || entry(&d[0]).is_none()),
        "{:?}",
        d[0].fdb()
    );
    d.truncate(1);
}
