//! The underlay receive side every mode's dataplane shares: its socket with the batch it
//! receives into ([`Receiver`]) and the one loop that drains it ([`drain_socket`]). A dataplane
//! supplies only what it does with each datagram and after each batch ([`OnDatagrams`]).

use super::batch::{RecvBatch, count_overflow};
use super::io::DatagramSocket;
use super::ratelimit::RateLimit;
use super::stats::RxRun;
use crate::core::{Counters, Timestamp};
use crate::sys::{MAX_BATCH, QueuedError};
use std::io::ErrorKind;
use tracing::warn;

/// A worker's underlay socket and the batch it receives into.
#[derive(Debug)]
pub struct Receiver<S> {
    /// The socket (non-blocking).
    pub sock: S,
    /// The datagrams of the last receive.
    pub batch: RecvBatch,
    /// The batch's datagrams accepted into a network, counted per run (flushed by the
    /// dataplane's [`OnDatagrams::end_batch`]).
    pub accepted: RxRun,
    /// The socket's receive-queue overflow count when last seen.
    overflow: u32,
    err_log: RateLimit,
}

/// What one receive gave.
enum Next {
    /// This many datagrams are in the batch.
    Batch(usize),
    /// Nothing was waiting.
    Empty,
    /// A pending socket error (reported once by the kernel, then cleared): logged.
    Error,
}

impl<S: DatagramSocket> Receiver<S> {
    /// A receiver on `sock`.
    pub fn new(sock: S) -> Receiver<S> {
        Receiver {
            sock,
            batch: RecvBatch::new(),
            accepted: RxRun::default(),
            overflow: 0,
            err_log: RateLimit::default(),
        }
    }

    /// Housekeeping on the tick: counts what the socket's full receive queue dropped since the
    /// last datagram reported it (the count otherwise arrives only with the next datagram), and
    /// empties its error queue, counting the errors (`tunnel_icmp_errors`) and handing each to
    /// `on` (path MTU reports).
    pub fn tick(&mut self, ctr: &mut Counters, on: &mut dyn FnMut(QueuedError)) {
        if let Ok(Some(d)) = self.sock.queue_drops() {
            count_overflow(d, &mut self.overflow, ctr);
        }
        if let Ok(n) = self.sock.drain_errors(on) {
            ctr.tunnel_icmp_errors += n as u64;
        }
    }

    fn next(&mut self, now: Timestamp, ctr: &mut Counters) -> Next {
        loop {
            match self.batch.recv_counted(&self.sock, &mut self.overflow, ctr) {
                Ok(n) => return Next::Batch(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Empty,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // An ICMP error about an earlier send, for instance: keep reading.
                    if let Some(held) = self.err_log.check(now) {
                        warn!(error = %e, suppressed = held, "underlay socket receive error");
                    }
                    return Next::Error;
                }
            }
        }
    }
}

/// What a dataplane does with what its socket received.
pub trait OnDatagrams {
    /// Its socket type.
    type Sock: DatagramSocket;
    /// Its receiver and its counters, borrowed together.
    fn receiver(&mut self) -> (&mut Receiver<Self::Sock>, &mut Counters);
    /// Datagram `i` of the batch just received.
    fn on_datagram(&mut self, now: Timestamp, i: usize);
    /// After each batch: write and send what waits on it (the next receive reuses its arena).
    fn end_batch(&mut self, now: Timestamp);
}

/// Reads datagrams in batches until the socket would block (false) or `budget` datagrams were
/// taken (true), handing each to the dataplane.
pub fn drain_socket(dp: &mut impl OnDatagrams, now: Timestamp, budget: usize) -> bool {
    let mut taken = 0;
    while taken < budget {
        let (rx, ctr) = dp.receiver();
        match rx.next(now, ctr) {
            Next::Empty => return false,
            Next::Error => taken += 1,
            Next::Batch(n) => {
                // Fewer reads than asked for: the queue was emptied, and a later arrival
                // raises a new readiness event.
                let emptied = rx.batch.reads() < MAX_BATCH;
                for i in 0..n {
                    dp.on_datagram(now, i);
                }
                dp.end_batch(now);
                taken += n;
                if emptied {
                    return false;
                }
            }
        }
    }
    true
}
