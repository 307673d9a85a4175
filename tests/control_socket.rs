//! The control socket under load, against a real daemon in a network namespace: connections
//! that never send a request, and a client reconnecting in a loop, must not keep a real client
//! from being answered. Needs root (CAP_NET_ADMIN) and the tun and netns kernel features.

mod daemon_support;

use daemon_support::{Daemon, Netns};
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn daemon(tag: &str) -> (Netns, Daemon) {
    let ns = Netns::new(tag);
    let d = Daemon::start(&ns, &["--dev", "vx0", "--local", "127.0.0.1"]);
    (ns, d)
}

/// `vtepd stats` must succeed; its failure message otherwise.
fn stats_answered(d: &Daemon) -> Result<(), String> {
    let out = d.client(&["stats", "--json"]);
    if !out.status.success() {
        return Err(format!(
            "status {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    v.get("uptime_secs")
        .map(drop)
        .ok_or_else(|| format!("not a stats answer: {v}"))
}

#[test]
fn twenty_silent_connections_do_not_keep_a_real_client_out() {
    let (_ns, d) = daemon("q");
    // More silent connections than the daemon answers at once, held open throughout.
    let silent: Vec<UnixStream> = (0..20)
        .map(|_| UnixStream::connect(&d.control).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    for i in 0..3 {
        if let Err(e) = stats_answered(&d) {
            panic!("stats #{i} with 20 silent connections open: {e}");
        }
    }
    // The silent ones are not kept forever: each is closed (with an error line) once its time
    // to send a request is over.
    for mut s in silent {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest)
            .expect("a silent connection is closed by the daemon, not left open");
    }
    d.ok(&["stats"]);
}

#[test]
fn a_client_reconnecting_in_a_loop_does_not_keep_a_real_client_out() {
    let (_ns, d) = daemon("r");
    let stop = Arc::new(AtomicBool::new(false));
    let connects = Arc::new(AtomicUsize::new(0));
    // Two attackers reconnecting as fast as they can (one hangs up at once, one stays silent
    // for a while first), and one that keeps 20 silent connections open, replacing each one
    // the daemon closes.
    let mut attackers = Vec::new();
    for hold in [Duration::ZERO, Duration::from_millis(30)] {
        let (stop, connects, path) = (Arc::clone(&stop), Arc::clone(&connects), d.control.clone());
        attackers.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(s) = UnixStream::connect(&path) {
                    connects.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(hold);
                    drop(s);
                }
            }
        }));
    }
    {
        let (stop, connects, path) = (Arc::clone(&stop), Arc::clone(&connects), d.control.clone());
        attackers.push(std::thread::spawn(move || {
            let mut held: Vec<UnixStream> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                held.retain(|s| {
                    s.set_nonblocking(true).unwrap();
                    let mut b = [0u8; 256];
                    // Still open while a read would block; gone once the daemon answered or
                    // closed it.
                    matches!((&*s).read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                });
                while held.len() < 20 {
                    match UnixStream::connect(&path) {
                        Ok(s) => {
                            connects.fetch_add(1, Ordering::Relaxed);
                            held.push(s);
                        }
                        Err(_) => break,
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let mut failures = Vec::new();
    for i in 0..5 {
        if let Err(e) = stats_answered(&d) {
            failures.push(format!("stats #{i}: {e}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.join().unwrap();
    }
    let n = connects.load(Ordering::Relaxed);
    assert!(n > 100, "the attackers hardly connected ({n} connections)");
    assert!(
        failures.is_empty(),
        "real clients not answered during {:?} of {n} attacker connections: {failures:?}",
        started.elapsed()
    );
    d.ok(&["stats"]);
}

#[test]
fn stats_and_fdb_show_agree_with_a_config_of_many_networks() {
    // The shape that made `stats` time out (3000 networks x 70 static entries), smaller:
    // every TAP costs the kernel time to create and more to remove.
    const NETS: u32 = 200;
    const PER: u32 = 70;
    let ns = Netns::new("m");
    ns.disable_ipv6();
    let mut conf = String::from("local = \"127.0.0.1\"\nthreads = 1\n");
    for v in 1..=NETS {
        conf.push_str(&format!("[[network]]\ndev = \"m{v}\"\nvni = {v}\nfdb = ["));
        for j in 0..PER {
            conf.push_str(&format!(
                "{{ mac = \"02:00:00:{:02x}:{:02x}:{j:02x}\", remote = \"192.0.2.{}\" }},",
                v >> 8,
                v & 0xff,
                2 + j % 50
            ));
        }
        conf.push_str("]\n");
    }
    let file = std::env::temp_dir().join(format!("{}.toml", ns.name));
    std::fs::write(&file, conf).unwrap();
    let d = Daemon::start(&ns, &["--config", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);

    let st = d.stats();
    let nets = st["networks"].as_array().unwrap();
    assert_eq!(nets.len(), NETS as usize);
    for (v, n) in (1..=NETS).zip(nets) {
        assert_eq!(n["vni"], v);
        assert_eq!(n["dev"], format!("m{v}"));
        assert_eq!(n["fdb_entries"], PER, "{n}");
    }
    assert_eq!(st["fdb_entries"], NETS * PER);
    let fdb = d.fdb();
    assert_eq!(fdb.len(), (NETS * PER) as usize);
    assert!(fdb.iter().all(|e| e["kind"] == "static"));
    let one: Vec<serde_json::Value> =
        serde_json::from_str(&d.ok(&["fdb", "show", "--vni", "77", "--json"])).unwrap();
    assert_eq!(one.len(), PER as usize);
    assert!(one.iter().all(|e| e["vni"] == 77 && e["dev"] == "m77"));
    assert_eq!(
        d.ok(&["fdb", "show"]).lines().count(),
        (NETS * PER) as usize
    );
    // A change shows in the counts at once.
    d.ok(&["fdb", "del", "02:00:00:00:4d:00", "--vni", "77"]);
    let st = d.stats();
    assert_eq!(st["networks"][76]["fdb_entries"], PER - 1);
    assert_eq!(st["fdb_entries"], NETS * PER - 1);
}
