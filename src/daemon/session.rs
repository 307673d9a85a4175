//! Sessions: what a client arms in the running workers and polls records from (`vtepd trace`;
//! any later per-packet tool can use them too, over its own record type `R`).
//!
//! - The control plane starts a session (a [`Filter`], how many records it wants) and gets
//!   its id; the client polls it (every ~100 ms) for the records so far and stops it at the
//!   end. A session nobody polled for [`Limits::idle`] is stopped by the daemon (a killed client
//!   leaves nothing armed), and at most [`Limits::sessions`] run at once.
//! - Workers never block on a session: they read the list of live sessions from an immutable
//!   snapshot (arc-swap), look at one flag per batch ([`Sessions::armed`]), claim a record with
//!   one atomic decrement ([`Session::claim`]) and hand it over through a bounded lock-free
//!   queue ([`Session::push`]); a full queue loses the record, counted
//!   ([`Polled::overflow`]), never the packet.
//! - The control plane's changes (start, stop, expiry) are serialised by a mutex the workers
//!   only ever try (the leader's expiry on its tick).
//! - A session may carry a spec of its own kind (`X`: what a capture records besides its
//!   filter) and a byte budget besides its count ([`Session::claim_sized`]).
//! - The kinds of a daemon share one word of armed flags ([`ArmedFlags`], a bit each), so a
//!   worker reads one word per batch whatever the tools.

use super::handler::NetList;
use crate::control::protocol::{Response, TraceStarted};
use crate::core::Timestamp;
use crate::core::trace::Filter;
use arc_swap::{ArcSwap, Guard};
use crossbeam_queue::ArrayQueue;
use encap::Vni;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The bounds of a daemon's sessions.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Sessions at once.
    pub sessions: usize,
    /// Records waiting per session (more are lost, counted).
    pub queue: usize,
    /// A session not polled for this long is stopped.
    pub idle: Duration,
    /// Most records one session may ask for.
    pub max_count: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            sessions: 8,
            queue: 1024,
            idle: Duration::from_secs(5),
            max_count: 100_000,
        }
    }
}

/// The live sessions of one kind, as the workers see them.
pub type LiveList<R, X = ()> = Arc<Vec<Arc<Session<R, X>>>>;

/// The armed flags of a daemon's session kinds: one bit per kind, one word for the workers.
pub type ArmedFlags = Arc<AtomicU8>;

/// One armed session.
#[derive(Debug)]
pub struct Session<R, X = ()> {
    id: u64,
    filter: Filter,
    /// What else it asked for (its kind's).
    spec: X,
    /// Records still wanted.
    wanted: AtomicU64,
    /// Bytes still wanted ([`Session::claim_sized`]).
    bytes: AtomicU64,
    queue: ArrayQueue<R>,
    overflow: AtomicU64,
    /// When it was last polled (daemon milliseconds).
    polled: AtomicU64,
}

impl<R, X> Session<R, X> {
    /// Its filter.
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// What else it asked for.
    pub fn spec(&self) -> &X {
        &self.spec
    }

    /// Whether it still wants records.
    #[inline]
    pub fn wants(&self) -> bool {
        self.wanted.load(Relaxed) > 0
    }

    /// Takes one of the records it still wants (false: it has all it asked for).
    pub fn claim(&self) -> bool {
        self.wanted
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Takes one record of `n` bytes: false once the count or the byte budget is spent (a
    /// record past the byte budget ends the session: it wants nothing more).
    pub fn claim_sized(&self, n: u64) -> bool {
        if self
            .bytes
            .fetch_update(Relaxed, Relaxed, |b| b.checked_sub(n))
            .is_err()
        {
            self.wanted.store(0, Relaxed);
            return false;
        }
        self.claim()
    }

    /// Hands a claimed record to the client; a full queue loses it, counted.
    pub fn push(&self, r: R) {
        if self.queue.push(r).is_err() {
            self.overflow.fetch_add(1, Relaxed);
        }
    }
}

/// What one poll gave.
#[derive(Debug)]
pub struct Polled<R> {
    /// The records since the last poll, in the order the queue got them.
    pub records: Vec<R>,
    /// Records lost so far to a full queue (the client polled too slowly).
    pub overflow: u64,
    /// The session has every record it asked for, and all were taken.
    pub done: bool,
}

/// Why a session could not be started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Too many at once.
    #[error("{0} sessions are running already (the most at once): stop one, or wait for it")]
    Busy(usize),
    /// A count of 0 or too large.
    #[error("count {0} is out of range (1-{1})")]
    Count(u64, u64),
}

/// The sessions of one kind (trace, ...) of a daemon: shared by the control plane and every
/// worker.
#[derive(Debug)]
pub struct Sessions<R, X = ()> {
    /// The daemon's armed flags (shared with its other kinds) and this kind's bit.
    armed: ArmedFlags,
    bit: u8,
    live: ArcSwap<Vec<Arc<Session<R, X>>>>,
    next_id: Mutex<u64>,
    limits: Limits,
}

impl<R, X> Default for Sessions<R, X> {
    fn default() -> Self {
        Sessions::new(Limits::default())
    }
}

impl<R, X: Default> Sessions<R, X> {
    /// Starts a session for the next `count` records matching `filter`; its id.
    pub fn start(&self, filter: Filter, count: u64, now: Timestamp) -> Result<u64, SessionError> {
        self.start_with(filter, count, u64::MAX, X::default(), now)
    }
}

impl<R, X> Sessions<R, X> {
    /// No sessions, within `limits`, with armed flags of their own.
    pub fn new(limits: Limits) -> Sessions<R, X> {
        Sessions::sharing(limits, &ArmedFlags::default(), 0)
    }

    /// No sessions, within `limits`, armed as bit `bit` (0-7) of `flags` (the daemon's other
    /// kinds have the other bits).
    pub fn sharing(limits: Limits, flags: &ArmedFlags, bit: u8) -> Sessions<R, X> {
        Sessions {
            armed: Arc::clone(flags),
            bit: 1 << (bit & 7),
            live: ArcSwap::from_pointee(Vec::new()),
            next_id: Mutex::new(1),
            limits,
        }
    }

    /// Whether a session of this kind runs.
    #[inline]
    pub fn armed(&self) -> bool {
        self.armed.load(Relaxed) & self.bit != 0
    }

    /// Whether a session of any kind sharing the flags runs: the one load a worker makes per
    /// batch.
    #[inline]
    pub fn any_armed(&self) -> bool {
        self.armed.load(Relaxed) != 0
    }

    /// The live sessions (a snapshot; cheap, lock-free).
    pub fn live(&self) -> Guard<LiveList<R, X>> {
        self.live.load()
    }

    /// The live sessions, to keep for a while (a worker's batch).
    pub fn live_list(&self) -> LiveList<R, X> {
        self.live.load_full()
    }

    /// Starts a session for the next `count` records matching `filter`, together at most
    /// `bytes` long, with `spec`; its id.
    pub fn start_with(
        &self,
        filter: Filter,
        count: u64,
        bytes: u64,
        spec: X,
        now: Timestamp,
    ) -> Result<u64, SessionError> {
        if count == 0 || count > self.limits.max_count {
            return Err(SessionError::Count(count, self.limits.max_count));
        }
        let mut next = self.edit();
        self.expire_locked(now);
        let live = self.live.load_full();
        if live.len() >= self.limits.sessions {
            return Err(SessionError::Busy(self.limits.sessions));
        }
        let id = *next;
        *next += 1;
        let s = Arc::new(Session {
            id,
            filter,
            spec,
            wanted: AtomicU64::new(count),
            bytes: AtomicU64::new(bytes),
            queue: ArrayQueue::new(self.limits.queue.max(1)),
            overflow: AtomicU64::new(0),
            polled: AtomicU64::new(now.millis()),
        });
        let mut list = (*live).clone();
        list.push(s);
        self.publish(list);
        Ok(id)
    }

    /// Takes the records of session `id` so far (at most `max`); `None`: no such session
    /// (stopped, or expired).
    pub fn poll(&self, id: u64, now: Timestamp, max: usize) -> Option<Polled<R>> {
        self.poll_until(id, now, max, |_| true)
    }

    /// Like [`Sessions::poll`], taking records only while `more` says so of the one at hand
    /// (it is taken, then asked).
    pub fn poll_until(
        &self,
        id: u64,
        now: Timestamp,
        max: usize,
        mut more: impl FnMut(&R) -> bool,
    ) -> Option<Polled<R>> {
        let live = self.live.load();
        let s = live.iter().find(|s| s.id == id)?;
        s.polled.store(now.millis(), Relaxed);
        let mut records = Vec::with_capacity(s.queue.len().min(max));
        while records.len() < max {
            match s.queue.pop() {
                Some(r) => {
                    let go_on = more(&r);
                    records.push(r);
                    if !go_on {
                        break;
                    }
                }
                None => break,
            }
        }
        Some(Polled {
            records,
            overflow: s.overflow.load(Relaxed),
            done: !s.wants() && s.queue.is_empty(),
        })
    }

    /// Stops session `id`; false if there was none.
    pub fn stop(&self, id: u64) -> bool {
        let _edit = self.edit();
        let live = self.live.load_full();
        let list: Vec<_> = live.iter().filter(|s| s.id != id).cloned().collect();
        let found = list.len() != live.len();
        self.publish(list);
        found
    }

    /// Stops the sessions nobody polled for [`Limits::idle`]; never waits (a worker's tick
    /// calls it: when the control plane holds the lock, it is done next time).
    pub fn expire(&self, now: Timestamp) {
        if !self.armed() {
            return;
        }
        if let Ok(_edit) = self.next_id.try_lock() {
            self.expire_locked(now);
        }
    }

    fn expire_locked(&self, now: Timestamp) {
        let idle = self.limits.idle.as_millis() as u64;
        let live = self.live.load_full();
        if live
            .iter()
            .all(|s| now.millis().saturating_sub(s.polled.load(Relaxed)) <= idle)
        {
            return;
        }
        let list = live
            .iter()
            .filter(|s| now.millis().saturating_sub(s.polled.load(Relaxed)) <= idle)
            .cloned()
            .collect();
        self.publish(list);
    }

    fn publish(&self, list: Vec<Arc<Session<R, X>>>) {
        match list.is_empty() {
            true => self.armed.fetch_and(!self.bit, Relaxed),
            false => self.armed.fetch_or(self.bit, Relaxed),
        };
        self.live.store(Arc::new(list));
    }

    fn edit(&self) -> std::sync::MutexGuard<'_, u64> {
        // Only a counter is kept under it: nothing half-done to refuse service over.
        self.next_id.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The control socket's side of a kind of session, for the tool named `tool` ("trace",
/// "capture") in its answers: what `*_start`, `*_poll` and `*_stop` requests of every kind
/// answer alike.
impl<R, X> Sessions<R, X> {
    /// Starts a session (as [`Sessions::start_with`]) after checking the VNI its filter names
    /// against the daemon's networks `nets` (VNI 0 stands for IPIP's one network); the answer
    /// carries its id.
    #[allow(clippy::too_many_arguments)]
    pub fn start_for(
        &self,
        tool: &str,
        filter: Filter,
        count: u64,
        bytes: u64,
        spec: X,
        now: Timestamp,
        nets: &NetList,
    ) -> Result<Response, Response> {
        if let Some(v) = filter.vni
            && !Vni::new(v).is_ok_and(|v| nets.has(v))
            && !(nets.nets().is_empty() && v == 0)
        {
            return Err(Response::err(
                true,
                format!("no network with VNI {v} to {tool}"),
            ));
        }
        let session = self
            .start_with(filter, count, bytes, spec, now)
            .map_err(|e| Response::err(matches!(e, SessionError::Count(..)), e.to_string()))?;
        Ok(Response::ok(
            serde_json::to_value(TraceStarted { session }).unwrap_or_default(),
        ))
    }

    /// [`Sessions::poll_until`], with the error the client shows when session `id` is gone.
    pub fn poll_for(
        &self,
        tool: &str,
        id: u64,
        now: Timestamp,
        max: usize,
        more: impl FnMut(&R) -> bool,
    ) -> Result<Polled<R>, Response> {
        self.poll_until(id, now, max, more).ok_or_else(|| {
            Response::err(
                false,
                format!("no {tool} session {id} (stopped, or not polled for 5 s)"),
            )
        })
    }

    /// Stops session `id`.
    pub fn stop_for(&self, tool: &str, id: u64) -> Result<Response, Response> {
        if self.stop(id) {
            Ok(Response::ok(serde_json::Value::Null))
        } else {
            Err(Response::err(false, format!("no {tool} session {id}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Sessions<u32> {
        Sessions::new(Limits {
            sessions: 2,
            queue: 3,
            idle: Duration::from_secs(5),
            max_count: 10,
        })
    }

    #[test]
    fn a_session_takes_what_it_asked_for_and_counts_what_did_not_fit() {
        let s = small();
        assert!(!s.armed());
        let id = s.start(Filter::default(), 5, Timestamp(0)).unwrap();
        assert!(s.armed());
        let live = s.live();
        let session = &live[0];
        for r in 0..5 {
            assert!(session.claim());
            session.push(r);
        }
        assert!(!session.claim(), "five asked for");
        let p = s.poll(id, Timestamp(10), 100).unwrap();
        assert_eq!(p.records, [0, 1, 2], "the queue holds three");
        assert_eq!(p.overflow, 2);
        assert!(p.done);
        assert!(s.stop(id) && !s.armed());
        assert!(s.poll(id, Timestamp(20), 100).is_none());
    }

    #[test]
    fn sessions_are_bounded_and_an_unpolled_one_expires() {
        let s = small();
        let a = s.start(Filter::default(), 1, Timestamp(0)).unwrap();
        let b = s.start(Filter::default(), 1, Timestamp(0)).unwrap();
        assert_eq!(
            s.start(Filter::default(), 1, Timestamp(0)),
            Err(SessionError::Busy(2))
        );
        assert!(matches!(
            s.start(Filter::default(), 0, Timestamp(0)),
            Err(SessionError::Count(0, 10))
        ));
        assert!(s.poll(b, Timestamp(4000), 1).is_some());
        s.expire(Timestamp(6000));
        assert!(
            s.poll(a, Timestamp(6000), 1).is_none(),
            "not polled for 6 s"
        );
        assert!(s.poll(b, Timestamp(6000), 1).is_some(), "polled 2 s ago");
        s.expire(Timestamp(20_000));
        assert!(!s.armed(), "the last one expired: nothing armed");
    }

    #[test]
    fn the_byte_budget_ends_a_session_and_kinds_share_one_armed_word() {
        let flags = ArmedFlags::default();
        let trace: Sessions<u32> = Sessions::sharing(Limits::default(), &flags, 0);
        let capture: Sessions<u32, u8> = Sessions::sharing(Limits::default(), &flags, 1);
        let id = capture
            .start_with(Filter::default(), 10, 100, 7, Timestamp(0))
            .unwrap();
        assert!(capture.armed() && capture.any_armed());
        assert!(!trace.armed() && trace.any_armed(), "the other kind's bit");
        let live = capture.live();
        assert_eq!(*live[0].spec(), 7);
        assert!(live[0].claim_sized(60) && live[0].claim_sized(40));
        assert!(!live[0].claim_sized(1), "100 bytes spent");
        assert!(
            !live[0].wants(),
            "the budget ended it with 8 of 10 records left"
        );
        assert!(capture.stop(id));
        assert!(!capture.any_armed() && !trace.any_armed());
    }
}
