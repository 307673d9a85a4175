//! `vtepd run`, once for every mode: the only place that orders start-up, supervises the
//! threads, handles signals, decides the exit status and tears down.
//!
//! Order of work:
//! 1. Read-only checks ([`Mode::check`]: the underlay holding `--local` and its MTU, the mode's
//!    own settings; then the privilege): a bad configuration changes nothing.
//! 2. Signals (so a SIGTERM during set-up still cleans up), the control socket, then the
//!    mode's devices, sockets and shared state ([`Mode::open`]). From here every resource is
//!    held by a value whose drop undoes it, so any later failure cleans up.
//! 3. One thread per dataplane worker, each running the one [`EventLoop`] over the mode's
//!    [`Dataplane`] (named `vtepd-<mode>-<n>`), the control server's thread, and with
//!    `--metrics` the metrics server's (`vtepd-metrics`; its listener is bound in step 1, so an
//!    address that cannot be listened on is refused before anything is created).
//! 4. Readiness told to the service manager (`READY=1`, see [`notify`]), then supervision:
//!    SIGINT/SIGTERM end the daemon with status 0; SIGHUP reloads the configuration file
//!    ([`Reloader`], the same as `vtepd reload`; `RELOADING=1` then `READY=1` to the service
//!    manager); SIGUSR1 and SIGUSR2 are logged and ignored ([`signals`]); a thread that ends (a
//!    device removed, a panic) ends it with status 1 and its reason. `STOPPING=1` is told as
//!    shutdown begins.
//! 5. Teardown in reverse: stop and join every thread, then the kernel routes (they point at
//!    the device), then the devices (those vtepd created removed in one batch, those it
//!    attached to given back as they were), then the control socket file.

use super::capture::{CAPTURE_LIMITS, CaptureSessions};
use super::capture_control::CaptureControl;
use super::device::{self, OwnedDevice, Underlay};
use super::event_loop::{Dataplane, EventLoop, LoopContext};
use super::handler::{Handler, NetInfo};
use super::inject::Injector;
use super::metrics;
use super::netlink::RouteService;
use super::notify;
use super::reload::Reloader;
use super::session::{ArmedFlags, Limits};
use super::signals::{self, Action};
use super::stats::{Clock, StatsBoard};
use super::store::{self, Installer, status::StoreStatus};
use super::trace::TraceSessions;
use super::trace_control::TraceControl;
use crate::config::{ConfigSource, DaemonConfig};
use crate::control::protocol::TunnelMode;
use crate::control::server::{self, Server};
use crate::core::Core;
use crate::core::pmtu::PathMtus;
use crate::error::Failure;
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook_mio::v1_0::Signals;
use std::io::ErrorKind;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use tracing::{error, info, warn};

const SIGNALS: Token = Token(0);
const WAKE: Token = Token(1);

/// What a mode supplies to the runner: its checks, and how it opens its devices, sockets and
/// per-worker dataplanes.
pub trait Mode: Sized {
    /// The per-worker dataplane the event loop drives.
    type Worker: Dataplane + Send + 'static;

    /// Read-only checks and the settings they derive (MTUs, routes): nothing is created.
    fn check(cfg: &DaemonConfig, underlay: &Underlay) -> Result<Self, Failure>;

    /// Opens the devices and sockets and builds the shared state and one dataplane per worker.
    /// Everything it returns undoes itself when dropped.
    fn open(self, cfg: &DaemonConfig, clock: Clock) -> Result<Opened<Self::Worker>, Failure>;
}

/// What [`Mode::open`] hands to the runner.
#[derive(Debug)]
pub struct Opened<W> {
    /// One dataplane per worker thread.
    pub workers: Vec<W>,
    /// What the control plane answers from.
    pub control: ControlParts,
    /// What was created, undone after the threads stopped.
    pub held: Held,
    /// What runs, for the "up" log line (`VXLAN on 192.0.2.1:4789`, ...).
    pub summary: String,
}

/// The shared state the control plane works on.
#[derive(Debug)]
pub struct ControlParts {
    /// The forwarding core.
    pub core: Arc<Core>,
    /// The networks, in `NetId` order.
    pub nets: Vec<NetInfo>,
    /// The route table and its kernel routes (L3 modes).
    pub routes: Option<Arc<RouteService>>,
    /// The path MTU toward each remote (shared with the workers).
    pub path_mtus: Arc<PathMtus>,
    /// Networks added and removed at run time by a reload (L2; `None`: refused).
    pub networks: Option<Arc<dyn super::reload::NetworkSet>>,
    /// The engine, for `trace --inject`.
    pub injector: Injector,
}

/// What a mode created or changed, undone after every thread stopped: kernel routes first
/// (they point at the device), then the devices.
#[derive(Debug, Default)]
pub struct Held {
    /// The route service, whose drop removes its kernel routes.
    pub routes: Option<Arc<RouteService>>,
    /// The devices: removed if vtepd created them, else given back as they were.
    pub devices: Vec<OwnedDevice>,
    /// The networks whose devices come and go at run time (L2), released with the devices.
    pub networks: Option<Arc<dyn super::reload::NetworkSet>>,
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

/// A running thread: stopped with the shared stop flag and its waker, then joined.
struct Task {
    waker: Arc<Waker>,
    handle: JoinHandle<()>,
}

/// The threads, and the channel on which they say why they ended.
struct Threads {
    tasks: Vec<Task>,
    tx: mpsc::Sender<(String, Result<(), String>)>,
    rx: mpsc::Receiver<(String, Result<(), String>)>,
    main_waker: Arc<Waker>,
}

impl Threads {
    fn new(main_waker: Arc<Waker>) -> Threads {
        let (tx, rx) = mpsc::channel();
        Threads {
            tasks: Vec::new(),
            tx,
            rx,
            main_waker,
        }
    }

    /// Starts `body` on a thread called `name`, stopped through `waker`.
    fn spawn<F>(&mut self, name: String, waker: Arc<Waker>, body: F) -> Result<(), Failure>
    where
        F: FnOnce() -> Result<(), String> + Send + 'static,
    {
        let notice = ExitNotice {
            who: name.clone(),
            result: None,
            tx: self.tx.clone(),
            waker: Arc::clone(&self.main_waker),
        };
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let mut notice = notice;
                notice.result = Some(body());
            })
            .map_err(|e| Failure::Runtime(format!("cannot start thread {name}: {e}")))?;
        self.tasks.push(Task { waker, handle });
        Ok(())
    }

    /// Sets `stop`, wakes every thread and joins them.
    fn stop(self, stop: &AtomicBool) {
        stop.store(true, Ordering::Release);
        for t in &self.tasks {
            if let Err(e) = t.waker.wake() {
                error!("cannot wake a thread to stop it: {e}");
            }
        }
        for t in self.tasks {
            if t.handle.join().is_err() {
                error!("a thread panicked while stopping");
            }
        }
    }
}

/// Runs the daemon in mode `M` until a signal (Ok) or a fatal error; `source` is where `cfg`
/// was read from (`None`: flags), for reloads.
pub fn run<M: Mode>(cfg: &DaemonConfig, source: Option<ConfigSource>) -> Result<(), Failure> {
    super::logging::init(cfg.log_format)?;
    // Read-only checks: a failure here leaves the system untouched.
    let underlay = device::find_underlay(cfg.local)?;
    let mode = M::check(cfg, &underlay)?;
    device::check_privilege()?;
    // Bound now, so that an address that cannot be listened on changes nothing.
    let metrics_listener = cfg.metrics.map(metrics::http::bind).transpose()?;

    // Signals first, so that a SIGTERM during set-up still cleans up.
    let rt = |what: &str, e: std::io::Error| Failure::Runtime(format!("{what}: {e}"));
    let mut poll = Poll::new().map_err(|e| rt("cannot create poller", e))?;
    let main_waker = Arc::new(Waker::new(poll.registry(), WAKE).map_err(|e| rt("waker", e))?);
    let mut signals =
        Signals::new(signals::HANDLED).map_err(|e| rt("cannot install signal handlers", e))?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)
        .map_err(|e| rt("cannot watch signals", e))?;

    // From here on every resource undoes itself when dropped.
    let (listener, socket_file) = server::bind(&cfg.control)?;
    let clock = Clock::new();
    let Opened {
        workers,
        control,
        held,
        summary,
    } = mode.open(cfg, clock)?;
    let up = format!(
        "{summary} (underlay {} MTU {}), {} worker(s), control socket {}",
        underlay.ifname,
        underlay.mtu,
        workers.len(),
        cfg.control.display()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let board = Arc::new(StatsBoard::new(workers.len()));
    // Every mode counts into network 0 at least (IPIP's device has no network list).
    board.ensure_networks(control.nets.len().max(1));
    if let Some(set) = &control.networks {
        set.count_into(Arc::clone(&board));
    }
    let store = cfg.store.settings().map_err(Failure::Usage)?;
    if store.is_some() && !store::BUILT_IN {
        return Err(Failure::Usage(NO_STORE.into()));
    }
    let installed: Option<super::store::Installed> = store.as_ref().map(|_| Arc::default());
    let reloader = Arc::new(
        Reloader::new(
            cfg.clone(),
            source,
            Arc::clone(&control.core),
            control
                .routes
                .clone()
                .map(|r| r as Arc<dyn super::reload::RouteTable>),
            control.nets.clone(),
            clock,
        )
        .with_networks(control.networks.clone())
        .with_store(installed.clone()),
    );
    let store_status = store.as_ref().map(|_| Arc::new(StoreStatus::default()));
    let store_parts = store.zip(installed).map(|(settings, installed)| {
        let installer = Installer::new(
            Arc::clone(&control.core),
            control.routes.clone(),
            Arc::clone(&reloader),
            installed,
            clock,
        );
        (settings, installer)
    });
    let mut threads = Threads::new(main_waker);
    let started = start(
        cfg,
        (listener, metrics_listener),
        workers,
        control,
        Arc::clone(&reloader),
        &board,
        clock,
        &stop,
        store_status.clone(),
        &mut threads,
    )
    .and_then(|()| match (store_parts, store_status) {
        (Some((settings, installer)), Some(status)) => {
            start_store(settings, installer, status, &stop, &mut threads)
        }
        _ => Ok(()),
    });
    let outcome = started.and_then(|()| {
        info!("vtepd {} up: {up}", env!("CARGO_PKG_VERSION"));
        notify::ready(&up);
        supervise(&mut poll, &mut signals, &threads.rx, &reloader, &up)
    });
    notify::stopping(&match &outcome {
        Ok(signal) => format!("{signal} received, shutting down"),
        Err(f) => format!("failed, shutting down: {}", f.message()),
    });
    threads.stop(&stop);
    // The last handle on the route service besides `held`'s (the handler's went with the
    // control thread), so that teardown removes the kernel routes.
    drop(reloader);
    teardown(held);
    drop(socket_file);
    outcome.map(|_| info!("vtepd stopped"))
}

/// Starts the workers' threads, the control server's and the metrics server's.
#[allow(clippy::too_many_arguments)]
fn start<W: Dataplane + Send + 'static>(
    cfg: &DaemonConfig,
    (listener, metrics_listener): (UnixListener, Option<std::net::TcpListener>),
    workers: Vec<W>,
    control: ControlParts,
    reloader: Arc<Reloader>,
    board: &Arc<StatsBoard>,
    clock: Clock,
    stop: &Arc<AtomicBool>,
    store: Option<Arc<StoreStatus>>,
    threads: &mut Threads,
) -> Result<(), Failure> {
    let rt = |what: &str, e: std::io::Error| Failure::Runtime(format!("{what}: {e}"));
    // Trace and capture share one word of armed flags: a worker reads one per batch.
    let flags = ArmedFlags::default();
    let trace = Arc::new(TraceSessions::sharing(Limits::default(), &flags, 0));
    let capture = Arc::new(CaptureSessions::sharing(CAPTURE_LIMITS, &flags, 1));
    for (id, w) in workers.into_iter().enumerate() {
        let cx = LoopContext {
            id,
            clock,
            board: Arc::clone(board),
            stop: Arc::clone(stop),
            trace: Arc::clone(&trace),
            capture: Arc::clone(&capture),
            busy_poll: cfg.busy_poll,
        };
        let (lp, waker) = EventLoop::new(w, cx).map_err(|e| rt("cannot set up a worker", e))?;
        let name = format!("vtepd-{}-{id}", cfg.tunnel.name());
        threads.spawn(name, waker, move || lp.run())?;
    }
    let handler = Arc::new(
        Handler::new(
            control.core,
            control.nets,
            Arc::clone(board),
            clock,
            control.routes,
        )
        .with_path_mtus(control.path_mtus)
        .with_trace(TraceControl {
            sessions: trace,
            injector: Some(control.injector),
        })
        .with_capture(CaptureControl { sessions: capture })
        .with_mode(match cfg.tunnel {
            crate::config::Tunnel::L2Vxlan => TunnelMode::L2Vxlan,
            crate::config::Tunnel::L3Vxlan => TunnelMode::L3Vxlan,
            crate::config::Tunnel::L3Ipip => TunnelMode::L3Ipip,
        })
        .with_reloader(reloader)
        .with_store(store),
    );
    if let Some(l) = metrics_listener {
        // Every scrape is one fresh `stats` report from the handler the control socket uses.
        let from = Arc::clone(&handler);
        let meta = metrics::Meta::new(clock.uptime());
        let registry = metrics::StatsCollector::new(move || from.stats_now(), meta).into_registry();
        let render = Box::new(move || metrics::render(&registry).ok());
        let (srv, waker) = metrics::http::MetricsServer::new(l, render, Arc::clone(stop))
            .map_err(|e| rt("cannot set up the metrics server", e))?;
        threads.spawn("vtepd-metrics".into(), waker, move || srv.run())?;
    }
    let (srv, waker) = Server::new(listener, handler, Arc::clone(stop))
        .map_err(|e| rt("cannot set up the control server", e))?;
    threads.spawn("vtepd-control".into(), waker, move || srv.run())
}

/// The refusal of `--store` by a build without the etcd client.
const NO_STORE: &str =
    "--store: this vtepd was built without the etcd client (cargo feature `store`, on by default)";

/// Starts the store client's thread, `vtepd-store`.
#[cfg(feature = "store")]
fn start_store(
    settings: crate::config::store::StoreSettings,
    installer: Installer,
    status: Arc<StoreStatus>,
    stop: &Arc<AtomicBool>,
    threads: &mut Threads,
) -> Result<(), Failure> {
    let client = store::client::StoreClient::new(settings, installer, status, Arc::clone(stop));
    // The client looks at the stop flag itself; its waker only completes the set.
    let (poll, waker) = idle_waker()?;
    threads.spawn("vtepd-store".into(), waker, move || {
        let _poll = poll;
        client.run()
    })
}

/// Without the etcd client, `run` refused `--store` before anything started.
#[cfg(not(feature = "store"))]
fn start_store(
    _: crate::config::store::StoreSettings,
    _: Installer,
    _: Arc<StoreStatus>,
    _: &Arc<AtomicBool>,
    _: &mut Threads,
) -> Result<(), Failure> {
    Err(Failure::Usage(NO_STORE.into()))
}

/// A poller and its waker for a thread that does not poll (it looks at the stop flag itself).
#[cfg(feature = "store")]
fn idle_waker() -> Result<(Poll, Arc<Waker>), Failure> {
    let rt = |e: std::io::Error| Failure::Runtime(format!("cannot make a waker: {e}"));
    let poll = Poll::new().map_err(rt)?;
    let waker = Waker::new(poll.registry(), WAKE).map_err(rt)?;
    Ok((poll, Arc::new(waker)))
}

/// Undoes what the mode did: kernel routes first (they point at the device), then the
/// devices: those vtepd created removed in one batch, those it attached to given back as they
/// were (see [`device::release`]).
fn teardown(held: Held) {
    let Held {
        routes,
        devices,
        networks,
    } = held;
    if let Some(svc) = routes
        && Arc::try_unwrap(svc).is_err()
    {
        error!("route service still shared at exit; kernel routes left to the device");
    }
    device::release(devices);
    if let Some(n) = networks {
        n.release();
    }
}

/// Waits for SIGINT/SIGTERM (Ok: the signal's name) or for a thread to end (its error);
/// reloads at SIGHUP (telling the service manager, whose status line `up` is given back after);
/// logs and ignores the other handled signals.
fn supervise(
    poll: &mut Poll,
    signals: &mut Signals,
    rx: &mpsc::Receiver<(String, Result<(), String>)>,
    reloader: &Reloader,
    up: &str,
) -> Result<&'static str, Failure> {
    let mut events = Events::with_capacity(8);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(Failure::Runtime(format!("poll failed: {e}")));
        }
        if events.iter().any(|ev| ev.token() == SIGNALS) {
            for sig in signals.pending() {
                match signals::action(sig) {
                    Action::Stop(name) => {
                        info!("{name} received, shutting down");
                        return Ok(name);
                    }
                    Action::Reload => {
                        info!("SIGHUP received: reloading the configuration");
                        notify::reloading();
                        // The reloader logs each change; a refusal is logged here.
                        if let Err(e) = reloader.reload() {
                            warn!("SIGHUP: {e}");
                        }
                        notify::ready(up);
                    }
                    Action::Ignore(line) => warn!("{line}"),
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
