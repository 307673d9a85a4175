//! A worker's side of `vtepd trace`: one flag read per batch ([`WorkerTrace::refresh`]); only
//! while a session is armed are a packet's headers parsed and matched against the sessions'
//! filters, and only a packet some session may take runs the engine's traced variant. Its
//! [`Record`] goes to every session that takes it, through their bounded queues.

use super::session::{LiveList, Session, Sessions};
use crate::core::trace::{Headers, Origin, Outcome, Record, Recorder, Step, Trace, WorkerStage};
use crate::core::{DropReason, FromDevice, FromTunnel, Remotes, Timestamp};
use crate::sys::RecvMeta;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// The trace sessions of a daemon.
pub type TraceSessions = Sessions<Record>;

/// One worker's tracer.
#[derive(Debug)]
pub struct WorkerTrace {
    sessions: Arc<TraceSessions>,
    worker: u16,
    armed: bool,
    /// The live sessions, taken with the flag (while armed) for the whole batch.
    live: Arc<Vec<Arc<Session<Record>>>>,
    /// No sessions (what `live` becomes when no trace is armed; kept to not allocate).
    none: Arc<Vec<Arc<Session<Record>>>>,
    rec: Recorder,
    origin: Origin,
    headers: Headers,
}

impl Default for WorkerTrace {
    /// A tracer on sessions of its own, never armed (a worker nobody traces).
    fn default() -> WorkerTrace {
        WorkerTrace::new(Arc::default(), 0)
    }
}

impl WorkerTrace {
    /// Worker `worker`'s tracer on `sessions`.
    pub fn new(sessions: Arc<TraceSessions>, worker: usize) -> WorkerTrace {
        WorkerTrace {
            sessions,
            worker: worker as u16,
            armed: false,
            live: Arc::default(),
            none: Arc::default(),
            rec: Recorder::default(),
            origin: Origin::Device { vni: 0 },
            headers: Headers::default(),
        }
    }

    /// Reads whether a session of any kind (trace, capture) is armed: the one flag read
    /// once per batch; armed, takes the trace sessions.
    #[inline]
    pub fn refresh(&mut self) {
        self.armed = self.sessions.any_armed();
        if self.armed && self.sessions.armed() {
            self.live = self.sessions.live_list();
        } else if !self.live.is_empty() {
            self.live = Arc::clone(&self.none);
        }
    }

    /// Whether a session of any kind was armed at the last [`WorkerTrace::refresh`] (the
    /// packet path's one test; [`WorkerTrace::begin`] finds no trace when only a capture is).
    #[inline]
    pub fn armed(&self) -> bool {
        self.armed
    }

    /// Whether some session may take the packet from `origin` whose headers `headers` parses
    /// (call only when [`WorkerTrace::armed`]); if so, the engine's traced variant is to run
    /// with [`WorkerTrace::recorder`], then [`WorkerTrace::finish`].
    pub fn begin(&mut self, origin: Origin, headers: impl FnOnce() -> Headers) -> bool {
        let live = &self.live;
        if !live.iter().any(|s| s.wants()) {
            return false;
        }
        let h = headers();
        let wanted = live
            .iter()
            .any(|s| s.wants() && s.filter().may_take(&origin, &h));
        if wanted {
            self.origin = origin;
            self.headers = h;
            self.rec.clear();
        }
        wanted
    }

    /// Where the engine records the steps of the packet [`WorkerTrace::begin`] took.
    pub fn recorder(&mut self) -> &mut Recorder {
        &mut self.rec
    }

    /// Finishes a packet from the tunnel with the engine's decision.
    pub fn finish_tunnel(&mut self, now: Timestamp, v: &FromTunnel) {
        let vni = self.headers.vni.unwrap_or(0);
        self.finish(now, Outcome::from_tunnel(v, vni));
    }

    /// Finishes a packet from a device with the engine's decision (its remotes in `to`).
    pub fn finish_device(&mut self, now: Timestamp, v: FromDevice, to: &Remotes) {
        self.finish(now, Outcome::from_device(v, to));
    }

    /// The packet's outcome: its record goes to every session that takes it.
    pub fn finish(&mut self, now: Timestamp, outcome: Outcome) {
        let (origin, headers) = (self.origin, self.headers);
        hand_over(
            &self.live,
            self.worker,
            now.millis(),
            origin,
            headers,
            &self.rec,
            outcome,
        );
    }

    /// A packet from `origin` (its headers parsed by `headers`, only if some session may want
    /// it) the worker lost at `stage`, outside the engine, counted under `reason`: its record
    /// (that one step) goes to every session that takes it.
    pub fn dropped(
        &mut self,
        now: Timestamp,
        origin: Origin,
        headers: impl FnOnce() -> Headers,
        stage: WorkerStage,
        reason: DropReason,
    ) {
        if self.armed && self.begin(origin, headers) {
            self.rec.step(Step::Worker {
                stage,
                remote: None,
            });
            self.finish(now, Outcome::Drop { reason });
        }
    }

    /// A packet read from the device of network `vni` (its headers parsed by `headers`) that
    /// the worker cannot carry out the offload request of: traced as [`WorkerTrace::dropped`]
    /// (`device_offload`) on the device read.
    pub fn device_lost(&mut self, now: Timestamp, vni: u32, headers: impl FnOnce() -> Headers) {
        let (stage, reason) = (WorkerStage::DeviceRead, DropReason::DeviceOffload);
        self.dropped(now, Origin::Device { vni }, headers, stage, reason);
    }

    /// A datagram (or IPIP packet: `port` none) the socket handed over unusable (`m`: how it
    /// came; cut short, or from no IPv4 or IPv6 sender), counted under `reason`: traced as
    /// [`WorkerTrace::dropped`] on receive.
    pub fn receive_lost(
        &mut self,
        now: Timestamp,
        m: &RecvMeta,
        port: Option<u16>,
        headers: impl FnOnce() -> Headers,
        reason: DropReason,
    ) {
        let origin = Origin::Tunnel {
            src: m.src.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            src_port: port.map(|_| m.src_port),
            dst_port: port,
            tos: m.tos,
        };
        self.dropped(now, origin, headers, WorkerStage::Receive, reason);
    }

    /// The sessions for the send path's drops in the batch that starts at `now` (`None`: no
    /// trace armed).
    pub fn tap(&self, now: Timestamp) -> Option<DropTap> {
        (!self.live.is_empty()).then(|| DropTap {
            live: Arc::clone(&self.live),
            worker: self.worker,
            at_ms: now.millis(),
        })
    }
}

/// The trace sessions as the send path sees them, taken per batch while a trace is armed
/// ([`WorkerTrace::tap`]): a send the kernel refused is a drop no engine saw.
#[derive(Debug, Clone)]
pub struct DropTap {
    live: LiveList<Record>,
    worker: u16,
    /// When the batch started (daemon milliseconds).
    at_ms: u64,
}

impl DropTap {
    /// A packet from `origin` (its headers parsed by `headers`, only if a session may want it)
    /// for `remote` whose send was refused, counted under `reason`.
    pub fn send_refused(
        &self,
        origin: Origin,
        headers: impl FnOnce() -> Headers,
        remote: IpAddr,
        reason: DropReason,
    ) {
        if !self.live.iter().any(|s| s.wants()) {
            return;
        }
        let h = headers();
        if !self.live.iter().any(|s| s.filter().may_take(&origin, &h)) {
            return;
        }
        let mut rec = Recorder::default();
        rec.step(Step::Worker {
            stage: WorkerStage::Send,
            remote: Some(remote),
        });
        let outcome = Outcome::Drop { reason };
        hand_over(
            &self.live,
            self.worker,
            self.at_ms,
            origin,
            h,
            &rec,
            outcome,
        );
    }
}

/// Hands the record of a packet (from `origin`, `headers`, the steps in `rec`, `outcome`) to
/// every session of `live` that takes it.
fn hand_over(
    live: &[Arc<Session<Record>>],
    worker: u16,
    at_ms: u64,
    origin: Origin,
    headers: Headers,
    rec: &Recorder,
    outcome: Outcome,
) {
    let mut record = None;
    for s in live {
        let f = s.filter();
        if f.may_take(&origin, &headers) && f.takes(&origin, &outcome) && s.claim() {
            let r = record.get_or_insert_with(|| Record {
                worker: Some(worker),
                at_ms,
                ..Record::new(origin, headers, rec, outcome.clone())
            });
            s.push(r.clone());
        }
    }
}
