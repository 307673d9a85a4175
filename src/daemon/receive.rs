//! The underlay receive side every mode's dataplane shares: its sockets with the batch they
//! receive into ([`Receiver`]) and the one loop that drains one of them ([`drain_socket`]). A
//! dataplane supplies only what it does with each datagram and after each batch
//! ([`OnDatagrams`]).
//!
//! VXLAN listens on one socket per UDP port its networks use (L2: networks may have ports of
//! their own); they share one receive batch, since each batch is finished before the next
//! receive, and the batch knows the port it came in on ([`Receiver::port`]).

use super::batch::{RecvBatch, count_overflow};
use super::io::DatagramSocket;
use super::ratelimit::RateLimit;
use super::stats::RxRun;
use crate::core::{Counters, Timestamp};
use crate::sys::{MAX_BATCH, QueuedError};
use std::io::ErrorKind;
use tracing::warn;

/// One socket of a [`Receiver`].
#[derive(Debug)]
struct Listening<S> {
    sock: S,
    /// The UDP port it is bound to (VXLAN; 0 for IPIP's raw socket).
    port: u16,
    /// Its receive-queue overflow count when last seen.
    overflow: u32,
}

/// A worker's underlay sockets and the batch they receive into.
#[derive(Debug)]
pub struct Receiver<S> {
    /// The sockets (non-blocking), each with its port: the first one given, then those added.
    socks: Vec<Listening<S>>,
    /// The datagrams of the last receive.
    pub batch: RecvBatch,
    /// The batch's datagrams accepted into a network, counted per run (flushed by the
    /// dataplane's [`OnDatagrams::end_batch`]).
    pub accepted: RxRun,
    /// The port of the socket the batch came from.
    port: u16,
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
    /// A receiver on `sock`, a socket without a UDP port (IPIP's raw socket).
    pub fn new(sock: S) -> Receiver<S> {
        Receiver::on_port(0, sock)
    }

    /// A receiver on the VXLAN socket `sock`, bound to UDP port `port`.
    pub fn on_port(port: u16, sock: S) -> Receiver<S> {
        Receiver {
            socks: vec![Listening {
                sock,
                port,
                overflow: 0,
            }],
            batch: RecvBatch::new(),
            accepted: RxRun::default(),
            port,
            err_log: RateLimit::default(),
        }
    }

    /// Also receives from `sock`, bound to UDP port `port` (another port's socket).
    pub fn with_socket(mut self, port: u16, sock: S) -> Receiver<S> {
        self.socks.push(Listening {
            sock,
            port,
            overflow: 0,
        });
        self
    }

    /// The first socket (the only one but in L2 VXLAN with several ports).
    pub fn sock(&self) -> &S {
        // Never empty: made with one, only added to.
        &self.socks[0].sock
    }

    /// How many sockets: sources `0..sockets()` of a dataplane that polls them all.
    pub fn sockets(&self) -> usize {
        self.socks.len()
    }

    /// The descriptors to poll, in socket order.
    pub fn fds(&self) -> impl Iterator<Item = std::os::fd::RawFd> + '_ {
        self.socks.iter().map(|l| l.sock.fd())
    }

    /// The UDP port the datagrams of the batch arrived on.
    #[inline]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Housekeeping on the tick: counts what the socket's full receive queue dropped since the
    /// last datagram reported it (the count otherwise arrives only with the next datagram), and
    /// empties its error queue, counting the errors (`tunnel_icmp_errors`) and handing each to
    /// `on` (path MTU reports).
    pub fn tick(&mut self, ctr: &mut Counters, on: &mut dyn FnMut(QueuedError)) {
        for l in &mut self.socks {
            if let Ok(Some(d)) = l.sock.queue_drops() {
                count_overflow(d, &mut l.overflow, ctr);
            }
            if let Ok(n) = l.sock.drain_errors(on) {
                ctr.tunnel_icmp_errors += n as u64;
            }
        }
    }

    /// Receives a batch from socket `k`.
    fn next(&mut self, k: usize, now: Timestamp, ctr: &mut Counters) -> Next {
        let Some(l) = self.socks.get_mut(k) else {
            return Next::Empty;
        };
        loop {
            match self.batch.recv_counted(&l.sock, &mut l.overflow, ctr) {
                Ok(n) => {
                    self.port = l.port;
                    return Next::Batch(n);
                }
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

/// Reads datagrams from socket `k` of the dataplane's receiver in batches until it would block
/// (false) or `budget` datagrams were taken (true), handing each to the dataplane.
pub fn drain_socket(dp: &mut impl OnDatagrams, k: usize, now: Timestamp, budget: usize) -> bool {
    let mut taken = 0;
    while taken < budget {
        let (rx, ctr) = dp.receiver();
        match rx.next(k, now, ctr) {
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
