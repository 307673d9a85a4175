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
