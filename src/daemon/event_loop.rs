//! The one event loop every dataplane worker runs, whatever the mode: a mio poll over the
//! worker's readable sources (its device queue(s) and its underlay socket), each drained until
//! it would block or the round's [`BUDGET`] is spent (so one busy source cannot starve the
//! others), a periodic [`TICK`] for housekeeping, the stop flag, and `EINTR`.
//!
//! A mode supplies only its [`Dataplane`]: which file descriptors to watch, what draining one
//! of them means, its housekeeping, and (L2) changes to its sources made at run time (networks
//! added or removed by a reload), which the loop takes between two rounds. The loop owns everything around that: it publishes the
//! worker's counters into its slot of the [`StatsBoard`] after every round, logs the periodic
//! drop summary, and returns `Ok` when asked to stop or the dataplane's error (a device gone)
//! when draining fails.

use super::capture::{CaptureSessions, WorkerCapture};
use super::ratelimit::DropReport;
use super::stats::{Clock, StatsBoard, Traffic};
use super::trace::{TraceSessions, WorkerTrace};
use crate::core::{Counters, Timestamp};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use std::io::{self, ErrorKind};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Packets taken from one source before the loop looks at the others (a device super-packet
/// counts as the segments it holds).
pub const BUDGET: usize = 256;
/// Housekeeping period: ageing, ARP retries, the drop summary.
pub const TICK: Duration = Duration::from_secs(1);
/// Token of the waker that interrupts the poll to stop the loop.
const WAKE: Token = Token(usize::MAX);

/// One worker's dataplane: what a mode supplies to the event loop.
pub trait Dataplane {
    /// The file descriptors to watch for reading, in source order: source `i` is `sources()[i]`.
    fn sources(&self) -> Vec<RawFd>;
    /// Takes packets from source `i` until it would block (`Ok(false)`) or `budget` packets
    /// were taken (`Ok(true)`: more may be waiting). An error ends the worker (and the daemon):
    /// a one-line reason, such as a device that was removed.
    fn drain(&mut self, i: usize, now: Timestamp, budget: usize) -> Result<bool, String>;
    /// Housekeeping, once per [`TICK`]; `leader` is true on exactly one worker, which does the
    /// work that must happen once (ageing, ARP retries).
    fn tick(&mut self, now: Timestamp, leader: bool);
    /// The worker's counters.
    fn counters(&self) -> &Counters;
    /// Whether changes to the dataplane's sources wait (networks added or removed by a
    /// reload); looked at once per round (one atomic load).
    fn changes_waiting(&self) -> bool {
        false
    }
    /// Takes the waiting changes. The loop unregisters the sources before and registers
    /// [`Dataplane::sources`] again after, so the dataplane may close what it no longer reads.
    fn apply_changes(&mut self) {}
    /// Gives the worker its traffic cells (per network and per remote) before it runs.
    fn attach(&mut self, traffic: Arc<Traffic>) {
        let _ = traffic;
    }
    /// Gives the worker its tracer and its side of the captures before it runs (it reads
    /// their one armed flag once per batch).
    fn attach_trace(&mut self, trace: WorkerTrace, capture: WorkerCapture) {
        let _ = (trace, capture);
    }
}

/// What the loop needs besides the dataplane.
#[derive(Debug, Clone)]
pub struct LoopContext {
    /// Worker index: its slot on the stats board, and its name in logs.
    pub id: usize,
    /// The daemon clock.
    pub clock: Clock,
    /// Where counters are published.
    pub board: Arc<StatsBoard>,
    /// Set (then wake the loop) to make it return.
    pub stop: Arc<AtomicBool>,
    /// The daemon's trace sessions (the leader expires those nobody polls).
    pub trace: Arc<TraceSessions>,
    /// The daemon's capture sessions (expired the same way).
    pub capture: Arc<CaptureSessions>,
    /// Never sleep in the poller (`--busy-poll`): poll without waiting, giving the CPU up when
    /// a poll finds nothing.
    pub busy_poll: bool,
}

/// A dataplane registered with its own poller, ready to run on its thread.
pub struct EventLoop<D> {
    dp: D,
    cx: LoopContext,
    poll: Poll,
    /// Sources that may still have data.
    pending: Vec<bool>,
}

impl<D> std::fmt::Debug for EventLoop<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("id", &self.cx.id)
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl<D: Dataplane> EventLoop<D> {
    /// Registers `dp`'s sources with a new poller; returns the loop and the waker that
    /// interrupts it (set `stop` first, then wake).
    pub fn new(mut dp: D, cx: LoopContext) -> io::Result<(EventLoop<D>, Arc<Waker>)> {
        dp.attach(cx.board.traffic(cx.id));
        dp.attach_trace(
            WorkerTrace::new(Arc::clone(&cx.trace), cx.id),
            WorkerCapture::new(Arc::clone(&cx.capture), cx.id),
        );
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let pending = register(&poll, &dp.sources())?;
        Ok((
            EventLoop {
                dp,
                cx,
                poll,
                pending,
            },
            waker,
        ))
    }

    /// Runs until `stop` is set (`Ok`) or the dataplane fails (its reason).
    pub fn run(mut self) -> Result<(), String> {
        let mut events = Events::with_capacity(64);
        let start = self.cx.clock.now();
        let mut next_tick = start.add(TICK);
        let mut drops = DropReport::new(start);
        let (id, leader) = (self.cx.id, self.cx.id == 0);
        let busy = self.cx.busy_poll;
        loop {
            let timeout = if busy || self.pending.contains(&true) {
                Duration::ZERO
            } else {
                next_tick.since(self.cx.clock.now())
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("worker {id}: poll failed: {e}"));
            }
            // Busy polling and nothing came: let whatever else wants this CPU run first (a
            // thread that only spun would hold the CPU the next stage of the path needs).
            if busy && events.is_empty() && !self.pending.contains(&true) {
                std::thread::yield_now();
            }
            if self.cx.stop.load(Ordering::Acquire) {
                self.cx.board.publish(id, self.dp.counters());
                return Ok(());
            }
            for ev in events.iter() {
                if let Some(p) = self.pending.get_mut(ev.token().0) {
                    *p = true;
                }
            }
            let now = self.cx.clock.now();
            for i in 0..self.pending.len() {
                if self.pending[i] {
                    let drained = self.dp.drain(i, now, BUDGET);
                    self.pending[i] = match drained {
                        Ok(more) => more,
                        Err(e) => {
                            self.cx.board.publish(id, self.dp.counters());
                            return Err(e);
                        }
                    };
                }
            }
            if self.dp.changes_waiting() {
                self.reconfigure()
                    .map_err(|e| format!("worker {id}: cannot watch its sources: {e}"))?;
            }
            if now >= next_tick {
                next_tick = now.add(TICK);
                self.dp.tick(now, leader);
                if leader {
                    self.cx.trace.expire(now);
                    self.cx.capture.expire(now);
                }
                drops.tick(now, id, self.dp.counters());
            }
            self.cx.board.publish(id, self.dp.counters());
        }
    }
}

impl<D: Dataplane> EventLoop<D> {
    /// Takes the dataplane's changes, its sources unregistered meanwhile.
    fn reconfigure(&mut self) -> io::Result<()> {
        for fd in self.dp.sources() {
            // A source the poller no longer has is fine.
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
        self.dp.apply_changes();
        self.pending = register(&self.poll, &self.dp.sources())?;
        Ok(())
    }
}

/// Registers `sources` (source `i` as token `i`); every one pending: it may hold data already.
fn register(poll: &Poll, sources: &[RawFd]) -> io::Result<Vec<bool>> {
    for (i, fd) in sources.iter().enumerate() {
        poll.registry()
            .register(&mut SourceFd(fd), Token(i), Interest::READABLE)?;
    }
    Ok(vec![true; sources.len()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::DropReason;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    /// A dataplane over two socket pairs: drains bytes, counts them as packets, takes at most
    /// `budget` a call; fails when told to.
    struct Pipes {
        ends: [UnixStream; 2],
        ctr: Counters,
        ticks: Arc<std::sync::atomic::AtomicU32>,
        /// Rounds of the loop (it asks for changes once a round).
        rounds: Arc<std::sync::atomic::AtomicU32>,
        fail_on: Option<u8>,
    }

    impl Dataplane for Pipes {
        fn sources(&self) -> Vec<RawFd> {
            self.ends.iter().map(|e| e.as_raw_fd()).collect()
        }
        fn drain(&mut self, i: usize, _now: Timestamp, budget: usize) -> Result<bool, String> {
            let mut b = [0u8; 1];
            for _ in 0..budget {
                match (&self.ends[i]).read(&mut b) {
                    Ok(0) => return Ok(false),
                    Ok(_) if Some(b[0]) == self.fail_on => {
                        return Err(format!("source {i} failed"));
                    }
                    Ok(_) => {
                        self.ctr.rx_device += 1;
                        self.ctr.drop(DropReason::NoPeers);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(true)
        }
        fn tick(&mut self, _now: Timestamp, leader: bool) {
            assert!(leader, "worker 0 leads");
            self.ticks.fetch_add(1, Ordering::Relaxed);
        }
        fn counters(&self) -> &Counters {
            &self.ctr
        }
        fn changes_waiting(&self) -> bool {
            self.rounds.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    fn pipes(fail_on: Option<u8>) -> (Pipes, [UnixStream; 2]) {
        let (a, a2) = UnixStream::pair().unwrap();
        let (b, b2) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        let p = Pipes {
            ends: [a, b],
            ctr: Counters::default(),
            ticks: Arc::default(),
            rounds: Arc::default(),
            fail_on,
        };
        (p, [a2, b2])
    }

    fn context() -> LoopContext {
        LoopContext {
            id: 0,
            clock: Clock::new(),
            board: Arc::new(StatsBoard::new(1)),
            stop: Arc::new(AtomicBool::new(false)),
            trace: Arc::default(),
            capture: Arc::default(),
            busy_poll: false,
        }
    }

    #[test]
    fn drains_every_source_past_the_budget_publishes_and_stops() {
        let (dp, [mut a, mut b]) = pipes(None);
        let cx = context();
        let (board, stop) = (Arc::clone(&cx.board), Arc::clone(&cx.stop));
        // More than a budget's worth on one source, a little on the other.
        a.write_all(&[1u8; BUDGET * 3 + 5]).unwrap();
        b.write_all(&[1u8; 7]).unwrap();
        let (lp, waker) = EventLoop::new(dp, cx).unwrap();
        let t = std::thread::spawn(move || lp.run());
        let want = (BUDGET * 3 + 12) as u64;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while board.sum().rx_device < want {
            assert!(std::time::Instant::now() < deadline, "{:?}", board.sum());
            std::thread::sleep(Duration::from_millis(5));
        }
        // Later arrivals wake the loop.
        b.write_all(&[1u8; 3]).unwrap();
        while board.sum().rx_device < want + 3 {
            assert!(std::time::Instant::now() < deadline, "{:?}", board.sum());
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Release);
        waker.wake().unwrap();
        assert_eq!(t.join().unwrap(), Ok(()));
        let c = board.sum();
        assert_eq!(c.rx_device, want + 3);
        assert_eq!(c.drops_of(DropReason::NoPeers), want + 3);
    }

    #[test]
    fn a_failing_source_ends_the_loop_with_its_reason() {
        let (dp, [_a, mut b]) = pipes(Some(9));
        let cx = context();
        let board = Arc::clone(&cx.board);
        b.write_all(&[1, 1, 9]).unwrap();
        let (lp, _waker) = EventLoop::new(dp, cx).unwrap();
        let t = std::thread::spawn(move || lp.run());
        assert_eq!(t.join().unwrap(), Err("source 1 failed".to_owned()));
        assert_eq!(
            board.sum().rx_device,
            2,
            "counters published on the way out"
        );
    }

    /// An idle loop, sleeping or busy polling, for 2.5 s: (ticks, rounds).
    fn idle_for_two_ticks(busy_poll: bool) -> (u32, u32) {
        let (dp, _ends) = pipes(None);
        let (ticks, rounds) = (Arc::clone(&dp.ticks), Arc::clone(&dp.rounds));
        let cx = LoopContext {
            busy_poll,
            ..context()
        };
        let stop = Arc::clone(&cx.stop);
        let (lp, waker) = EventLoop::new(dp, cx).unwrap();
        let t = std::thread::spawn(move || lp.run());
        std::thread::sleep(TICK * 2 + Duration::from_millis(500));
        stop.store(true, Ordering::Release);
        waker.wake().unwrap();
        assert_eq!(t.join().unwrap(), Ok(()));
        (
            ticks.load(Ordering::Relaxed),
            rounds.load(Ordering::Relaxed),
        )
    }

    #[test]
    fn an_idle_loop_sleeps_until_the_next_tick() {
        let (ticks, rounds) = idle_for_two_ticks(false);
        // About one a second: some, and not one per (busy) round.
        assert!((1..=3).contains(&ticks), "{ticks} ticks in 2.5 s");
        assert!(rounds < 10, "{rounds} rounds in 2.5 s: it did not sleep");
    }

    #[test]
    fn a_busy_polling_loop_never_sleeps_and_still_ticks_once_a_second() {
        let (ticks, rounds) = idle_for_two_ticks(true);
        assert!((1..=3).contains(&ticks), "{ticks} ticks in 2.5 s");
        // A sleeping loop makes a round a tick; one poll and one yield take microseconds.
        assert!(rounds > 1000, "{rounds} rounds in 2.5 s: it slept");
    }
}
