//! A worker's side of path MTU learning: what the underlay says about our sends goes into the
//! shared [`PathMtus`] on the housekeeping tick (never on the packet path).
//!
//! Three sources, because no single one sees everything:
//! - the error queues of the send sockets (IP_RECVERR): ICMP "fragmentation needed" about what
//!   the IPIP raw sockets and the UDP GSO sockets sent, and local EMSGSIZE errors;
//! - a send refused with EMSGSIZE (the route toward the remote has a lower MTU): the route's
//!   MTU is read (IP_MTU of a UDP socket connected toward the remote);
//! - the ICMP listener ([`IcmpListener`], worker 0 only): a raw ICMP socket that receives only
//!   "destination unreachable". The kernel hands an ICMP error to a socket by the packet it
//!   quotes, and the VXLAN raw sender (IPPROTO_RAW) is never one, so errors from routers about
//!   VXLAN packets (and the kernel's own about a route's MTU) are read here.

use super::ratelimit::RateLimit;
use crate::core::pmtu::{Learn, OurSends, PathMtus, frag_needed_about, packet_too_big_about};
use crate::core::{Counters, Timestamp};
use crate::sys::{self, QueuedError};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::IpAddr;
use std::sync::Arc;
use tracing::{info, warn};

/// Reports kept between two ticks; more in one second are left to the next ones (the kernel
/// repeats its errors as long as the packets keep coming).
const MAX_REPORTS: usize = 64;

/// ICMP errors read from the listener per tick at most.
const MAX_ICMP_READS: usize = 256;

/// A worker's collector of path MTU reports.
#[derive(Debug)]
pub struct PmtuLearner {
    pmtu: Arc<PathMtus>,
    local: IpAddr,
    /// (remote, MTU) reports not yet taken into the table.
    reports: Vec<(IpAddr, u32)>,
    /// Remotes a send to failed with EMSGSIZE since the last tick.
    too_long: Vec<IpAddr>,
    icmp: Option<IcmpListener>,
    err_log: RateLimit,
}

impl PmtuLearner {
    /// A learner feeding `pmtu` about sends from `local`.
    pub fn new(pmtu: Arc<PathMtus>, local: IpAddr) -> PmtuLearner {
        PmtuLearner {
            pmtu,
            local,
            reports: Vec::with_capacity(MAX_REPORTS),
            too_long: Vec::with_capacity(MAX_REPORTS),
            icmp: None,
            err_log: RateLimit::default(),
        }
    }

    /// About sends from `local` instead.
    pub fn with_local(mut self, local: IpAddr) -> PmtuLearner {
        self.local = local;
        self
    }

    /// Also reads the ICMP listener `icmp` on every tick (give it to one worker).
    pub fn with_listener(mut self, icmp: Option<IcmpListener>) -> PmtuLearner {
        self.icmp = icmp;
        self
    }

    /// The shared table.
    pub fn path_mtus(&self) -> &Arc<PathMtus> {
        &self.pmtu
    }

    /// An error read from a send socket's error queue.
    pub fn on_queued(&mut self, e: QueuedError) {
        if let (Some(dst), Some(mtu)) = (e.dst, e.mtu)
            && self.reports.len() < MAX_REPORTS
        {
            self.reports.push((dst, mtu));
        }
    }

    /// A send to `dst` that failed: EMSGSIZE means the route toward it carries less.
    pub fn on_send_error(&mut self, dst: IpAddr, e: &std::io::Error) {
        if e.raw_os_error() == Some(libc::EMSGSIZE)
            && self.too_long.len() < MAX_REPORTS
            && !self.too_long.contains(&dst)
        {
            self.too_long.push(dst);
        }
    }

    /// Housekeeping: reads the listener, asks the routes of the remotes whose sends were too
    /// long, and takes every report into the table; `leader` also ages the table.
    pub fn tick(&mut self, now: Timestamp, leader: bool, ctr: &mut Counters) {
        if let Some(icmp) = &self.icmp
            && let Err(e) = icmp.read(self.local, &mut self.reports)
            && let Some(held) = self.err_log.check(now)
        {
            warn!(error = %e, suppressed = held, "cannot read the ICMP listener");
        }
        for dst in self.too_long.drain(..) {
            match sys::route_mtu(self.local, dst) {
                Ok(mtu) if self.reports.len() < MAX_REPORTS => self.reports.push((dst, mtu)),
                Ok(_) => {}
                Err(e) => {
                    if let Some(held) = self.err_log.check(now) {
                        warn!(remote = %dst, error = %e, suppressed = held, "cannot read the route MTU");
                    }
                }
            }
        }
        for (remote, mtu) in self.reports.drain(..) {
            if let Learn::Lowered(mtu) = self.pmtu.learn(now, remote, mtu) {
                ctr.pmtu_learned += 1;
                info!(%remote, mtu, "path MTU lowered");
            }
        }
        if leader {
            for _ in 0..self.pmtu.expire(now) {
                info!(
                    configured = self.pmtu.configured(),
                    "a learned path MTU expired"
                );
            }
        }
    }
}

/// A raw ICMP socket that receives only "destination unreachable" errors (over IPv6: an
/// ICMPv6 socket that receives only "packet too big"), for the reports about tunnel packets no
/// send socket is given.
#[derive(Debug)]
pub struct IcmpListener {
    sock: Socket,
    ours: OurSends,
    v6: bool,
}

impl IcmpListener {
    /// Opens the listener for errors about `ours`; `None` (logged) when the socket cannot be
    /// made: the other sources still work.
    pub fn open(ours: OurSends) -> Option<IcmpListener> {
        IcmpListener::open_for(ours, false)
    }

    /// [`IcmpListener::open`] for an underlay of IPv6 (`v6`) or IPv4.
    pub fn open_for(ours: OurSends, v6: bool) -> Option<IcmpListener> {
        let open = || -> std::io::Result<Socket> {
            let sock = if v6 {
                let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
                sys::icmp6_filter(&s, &[2])?;
                s
            } else {
                let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
                sys::icmp_filter(&s, &[3])?;
                s
            };
            sock.set_nonblocking(true)?;
            Ok(sock)
        };
        match open() {
            Ok(sock) => Some(IcmpListener { sock, ours, v6 }),
            Err(e) => {
                warn!(error = %e, "no ICMP listener: path MTU errors about VXLAN sends are not read");
                None
            }
        }
    }

    /// Reads what is waiting (without blocking), keeping the reports about our sends.
    fn read(&self, local: IpAddr, reports: &mut Vec<(IpAddr, u32)>) -> std::io::Result<()> {
        let mut buf = [0u8; 1024];
        for _ in 0..MAX_ICMP_READS {
            let n = match std::io::Read::read(&mut &self.sock, &mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            let about = if self.v6 {
                packet_too_big_about(&buf[..n], local, &self.ours)
            } else {
                frag_needed_about(&buf[..n], local, &self.ours)
            };
            if let Some(r) = about
                && reports.len() < MAX_REPORTS
            {
                reports.push(r);
            }
        }
        Ok(())
    }
}
