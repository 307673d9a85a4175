//! A worker's side of `vtepd trace`: one flag read per batch ([`WorkerTrace::refresh`]); only
//! while a session is armed are a packet's headers parsed and matched against the sessions'
//! filters, and only a packet some session may take runs the engine's traced variant. Its
//! [`Record`] goes to every session that takes it, through their bounded queues.

use super::session::{Session, Sessions};
use crate::core::trace::{Headers, Origin, Outcome, Record, Recorder};
use crate::core::{FromDevice, FromTunnel, Remotes, Timestamp};
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
        let mut record = None;
        for s in self.live.iter() {
            let f = s.filter();
            if f.may_take(&self.origin, &self.headers)
                && f.takes(&self.origin, &outcome)
                && s.claim()
            {
                let r = record.get_or_insert_with(|| Record {
                    worker: Some(self.worker),
                    at_ms: now.millis(),
                    ..Record::new(self.origin, self.headers, &self.rec, outcome.clone())
                });
                s.push(r.clone());
            }
        }
    }
}
