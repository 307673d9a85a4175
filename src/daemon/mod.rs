//! `vtepd run`: sets up the networks (TAP devices, UDP sockets, control socket), runs the
//! dataplane workers (`--threads N`: one thread each, with its own TAP queue of every network,
//! its own SO_REUSEPORT UDP socket and its own raw send socket) and the control server on their
//! own threads, and shuts everything down on SIGINT/SIGTERM (status 0) or when a device fails
//! (status 1).
//!
//! Order of work: read-only checks first (underlay address and MTU, privilege), so that a bad
//! configuration changes nothing; then every resource is held by a value whose drop undoes it
//! (the control socket file, the TAP devices we created), so any later failure cleans up.

pub mod batch;
pub mod batch_gro;
pub mod batch_tso;
pub mod device;
pub mod handler;
pub mod ipip_group;
pub mod l3_ipip;
pub mod l3_offload;
pub mod l3_vxlan;
pub mod netlink;
pub mod ratelimit;
pub mod socket;
pub mod stats;
pub mod tun;
pub mod tunnel_tx;
pub mod worker;

use crate::config::{DaemonConfig, stable_mac};
use crate::control::server::{self, Server};
use crate::core::{Core, CoreConfig, NetworkConfig};
use crate::error::Failure;
use device::Tap;
use encap::VxlanConfig;
use handler::{Handler, NetInfo};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use stats::{Clock, StatsBoard};
use std::collections::VecDeque;
use std::io::{ErrorKind, IsTerminal};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use tracing::{error, info};
use worker::{TapPort, Worker, WorkerSetup};

const SIGNALS: Token = Token(0);
const WAKE: Token = Token(1);

/// Sets up `tracing` for the daemon: RUST_LOG (default `info`) to stderr.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Fails only if a subscriber is already installed (tests), which is fine.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Why a thread ended, sent to the supervisor when the thread finishes (or unwinds).
struct ExitNotice {
    who: String,
    result: Option<Result<(), String>>,
    tx: mpsc::Sender<(String, Result<(), String>)>,
    waker: Arc<Waker>,
}

impl Drop for ExitNotice {
    fn drop(&mut self) {
        let r = self
            .result
            .take()
            .unwrap_or_else(|| Err(format!("{} panicked", self.who)));
        // The supervisor may already be gone when the process is ending: nothing to tell then.
        let _ = self.tx.send((std::mem::take(&mut self.who), r));
        let _ = self.waker.wake();
    }
}

/// A thread the supervisor stops with `stop` + its waker, then joins.
struct Task {
    waker: Arc<Waker>,
    handle: JoinHandle<()>,
}

fn spawn<F>(
    name: &str,
    body: F,
    tx: &mpsc::Sender<(String, Result<(), String>)>,
    main_waker: &Arc<Waker>,
) -> Result<JoinHandle<()>, Failure>
where
    F: FnOnce() -> Result<(), String> + Send + 'static,
{
    let notice = ExitNotice {
        who: name.to_owned(),
        result: None,
        tx: tx.clone(),
        waker: Arc::clone(main_waker),
    };
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let mut notice = notice;
            notice.result = Some(body());
        })
        .map_err(|e| Failure::Runtime(format!("cannot start thread {name}: {e}")))
}

/// Outer header settings: our address, the VXLAN port, source ports from the inner flow hash
/// in 49152-65535, TTL 64, DSCP and ECN inherited, and a zero UDP checksum (as Linux's vxlan
/// device sends by default over IPv4; RFC 7348 §5 allows it and saves a pass over the frame).
fn vxlan_config(cfg: &DaemonConfig) -> VxlanConfig {
    let mut v = VxlanConfig::new(cfg.local);
    v.dst_port = cfg.port;
    v.udp_checksum = false;
    v
}

/// Worker `id`'s port on `tap`: its own queue, or (a device with fewer queues than workers)
/// a shared one it only writes to.
fn port_of(tap: &Tap, id: usize) -> TapPort {
    let n = tap.queues.len().max(1);
    TapPort {
        dev: Arc::clone(&tap.queues[id % n]),
        name: tap.name.clone(),
        read: id < n,
        vnet_hdr: tap.vnet_hdr,
    }
}

/// Runs the daemon until a signal (Ok) or a fatal error.
pub fn run(cfg: &DaemonConfig) -> Result<(), Failure> {
    match cfg.tunnel {
        crate::config::Tunnel::L3Vxlan => return l3_vxlan::run(cfg),
        crate::config::Tunnel::L3Ipip => return l3_ipip::run(cfg),
        crate::config::Tunnel::L2Vxlan => {}
    }
    init_logging();
    // Read-only checks: a failure here leaves the system untouched.
    let underlay = device::find_underlay(cfg.local)?;
    let mtus = cfg
        .networks
        .iter()
        .map(|n| device::device_mtu(n, &underlay))
        .collect::<Result<Vec<_>, _>>()?;
    device::check_privilege()?;

    // Signals first, so that a SIGTERM during set-up still cleans up.
    let rt = |what: &str, e: std::io::Error| Failure::Runtime(format!("{what}: {e}"));
    let mut poll = Poll::new().map_err(|e| rt("cannot create poller", e))?;
    let main_waker = Arc::new(Waker::new(poll.registry(), WAKE).map_err(|e| rt("waker", e))?);
    let mut signals =
        Signals::new([SIGINT, SIGTERM]).map_err(|e| rt("cannot install signal handlers", e))?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)
        .map_err(|e| rt("cannot watch signals", e))?;

    // From here on every resource undoes itself when dropped.
    let (listener, socket_file) = server::bind(&cfg.control)?;
    let workers = cfg.threads.max(1);
    let mut udp: VecDeque<_> = socket::bind_udp_group(cfg.local, cfg.port, workers)?.into();
    let mut taps: Vec<Tap> = Vec::with_capacity(cfg.networks.len());
    for (n, mtu) in cfg.networks.iter().zip(&mtus) {
        let tap = device::open_tap(n, *mtu, stable_mac(&n.dev, n.vni, cfg.local), workers)?;
        taps.push(tap);
    }
    let clock = Clock::new();
    let core = Arc::new(
        Core::new(CoreConfig {
            local: cfg.local,
            allow_any_peer: cfg.allow_any_peer,
            networks: cfg
                .networks
                .iter()
                .zip(&taps)
                .map(|(n, t)| NetworkConfig {
                    vni: n.vni,
                    peers: n.peers.clone(),
                    own_mac: t.mac,
                    learning: n.learning,
                    ageing: n.ageing,
                    max_learned: n.max_fdb,
                })
                .collect(),
        })
        .map_err(|e| Failure::Usage(e.to_string()))?,
    );
    for n in &cfg.networks {
        for e in &n.fdb {
            core.fdb_add(clock.now(), n.vni, e.mac, e.remote)
                .map_err(|err| Failure::Usage(format!("static entry {}: {err}", e.mac)))?;
        }
        for e in &n.neigh {
            core.neigh_add(clock.now(), n.vni, e.ip, e.mac)
                .map_err(|err| Failure::Usage(format!("neighbour {}: {err}", e.ip)))?;
        }
    }

    info!(
        "vtepd {} up: VXLAN on {}:{} (underlay {} MTU {}), {} worker(s), control socket {}",
        env!("CARGO_PKG_VERSION"),
        cfg.local,
        cfg.port,
        underlay.ifname,
        underlay.mtu,
        workers,
        cfg.control.display()
    );
    for (n, t) in cfg.networks.iter().zip(&taps) {
        info!(
            vni = %n.vni,
            dev = %t.name,
            mtu = t.mtu,
            mac = %t.mac,
            peers = ?n.peers,
            learning = n.learning,
            arp_suppress = n.arp_suppress,
            static_entries = n.fdb.len(),
            created = t.created,
            "network ready"
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let board = Arc::new(StatsBoard::new(workers));
    let (tx, rx) = mpsc::channel();
    let mut tasks = Vec::new();

    for id in 0..workers {
        let (Some(sock), raw) = (udp.pop_front(), socket::open_raw_sender()?) else {
            return Err(Failure::Runtime("fewer UDP sockets than workers".into()));
        };
        let (w, waker) = Worker::new(WorkerSetup {
            id,
            core: Arc::clone(&core),
            socket: mio::net::UdpSocket::from_std(sock),
            tx: tunnel_tx::TunnelTx::new(raw, vxlan_config(cfg)),
            taps: taps.iter().map(|t| port_of(t, id)).collect(),
            clock,
            board: Arc::clone(&board),
            stop: Arc::clone(&stop),
            // FDB ageing runs in exactly one place.
            housekeeping: id == 0,
            arp: crate::core::arp_suppress::ArpSuppress::new(
                Arc::clone(&core),
                cfg.networks.iter().map(|n| n.arp_suppress).collect(),
            ),
        })
        .map_err(|e| rt("cannot set up a worker", e))?;
        tasks.push(Task {
            waker,
            handle: spawn(
                &format!("vtepd-worker-{id}"),
                move || w.run(),
                &tx,
                &main_waker,
            )?,
        });
    }

    let handler = Handler {
        core: Arc::clone(&core),
        nets: cfg
            .networks
            .iter()
            .zip(&taps)
            .map(|(n, t)| NetInfo {
                vni: n.vni,
                dev: n.dev.clone(),
                mac: Some(t.mac),
            })
            .collect(),
        board,
        clock,
        routes: None,
    };
    let (srv, waker) = Server::new(listener, handler, Arc::clone(&stop))
        .map_err(|e| rt("cannot set up the control server", e))?;
    tasks.push(Task {
        waker,
        handle: spawn("vtepd-control", move || srv.run(), &tx, &main_waker)?,
    });

    let outcome = supervise(&mut poll, &mut signals, &rx);

    stop.store(true, Ordering::Release);
    for t in &tasks {
        if let Err(e) = t.waker.wake() {
            error!("cannot wake a thread to stop it: {e}");
        }
    }
    for t in tasks {
        if t.handle.join().is_err() {
            error!("a thread panicked while stopping");
        }
    }
    drop(core);
    for t in taps {
        // Closing the last handle of a device we created deletes it (unless someone already did).
        let (name, ours) = (
            t.name.clone(),
            t.created && device::interface_exists(&t.name),
        );
        drop(t);
        if ours {
            info!(dev = %name, "device removed");
        }
    }
    drop(socket_file);
    if outcome.is_ok() {
        info!("vtepd stopped");
    }
    outcome
}

/// Waits for SIGINT/SIGTERM (Ok) or for a thread to end (its error).
fn supervise(
    poll: &mut Poll,
    signals: &mut Signals,
    rx: &mpsc::Receiver<(String, Result<(), String>)>,
) -> Result<(), Failure> {
    let mut events = Events::with_capacity(8);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(Failure::Runtime(format!("poll failed: {e}")));
        }
        for ev in events.iter() {
            if ev.token() == SIGNALS {
                if let Some(sig) = signals.pending().next() {
                    let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
                    info!("{name} received, shutting down");
                    return Ok(());
                }
            }
        }
        if let Ok((who, r)) = rx.try_recv() {
            return Err(Failure::Runtime(match r {
                Err(msg) => msg,
                Ok(()) => format!("{who} stopped unexpectedly"),
            }));
        }
    }
}
