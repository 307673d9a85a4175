//! The one calling convention of the core's engines ([`Core`](super::Core) and
//! [`L2`](super::l2::L2) for L2 VXLAN, [`L3Vx`](super::l3vx::L3Vx), [`Ipip`](super::ipip::Ipip)),
//! in the style of quinn-proto's `handle(now, ...)` or boringtun's `TunnResult`: the bytes and
//! what the socket said about them (time, [`Outer`]) go in, one decision comes out
//! ([`FromTunnel`] for a packet from the underlay, [`FromDevice`] for one from the device), with
//! the drop reason inside it. What a decision needs besides itself goes into the caller's
//! reusable [`Out`]: the remotes a packet is sent to, and the frames the engine made (ARP,
//! ICMP). Counters go into the caller's [`Counters`](super::Counters).
//!
//! Every engine validates, decides and rewrites in place (RFC 6040 ECN decapsulation happens
//! inside the decision); the I/O layer only carries the decision out. Encapsulation for both
//! tunnels is [`Encapsulator`](super::encapsulator::Encapsulator)'s.

use super::arp::Generated;
use super::{DropReason, NetId, Remote, Timestamp};
use encap::Vni;
use std::net::IpAddr;
use std::ops::Range;

/// What the underlay socket said about a received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer {
    /// The outer source address (the remote VTEP or node).
    pub src: Remote,
    /// The outer TOS byte (DSCP and ECN; 0 when the socket did not report it).
    pub tos: u8,
    /// VXLAN: the UDP port it arrived on (our listening port; a network takes only the
    /// datagrams of its own port). IPIP: unused.
    pub port: u16,
}

impl From<IpAddr> for Outer {
    /// A packet from `src` with an outer TOS of 0 (Not-ECT), to the default VXLAN port.
    fn from(src: IpAddr) -> Outer {
        Outer {
            src: src.into(),
            tos: 0,
            port: encap::vxlan::DEFAULT_PORT,
        }
    }
}

impl From<std::net::Ipv4Addr> for Outer {
    /// [`Outer::from`] an IPv4 source.
    fn from(src: std::net::Ipv4Addr) -> Outer {
        Outer::from(IpAddr::V4(src))
    }
}

/// The decision for a packet received from the underlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromTunnel {
    /// Write `packet[range]` into network `net`'s device: the inner Ethernet frame (L2) or IP
    /// packet (L3), its ECN field already combined with the outer one (RFC 6040).
    Deliver {
        /// The network whose device gets it.
        net: NetId,
        /// Where the inner frame or packet is in the caller's buffer.
        range: Range<usize>,
    },
    /// Taken by the engine (an ARP or echo request to us): its answers are in
    /// [`Out::generated`], nothing is delivered.
    Consumed,
    /// Dropped; counted under this reason.
    Drop(DropReason),
}

/// The decision for a packet read from a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromDevice {
    /// Encapsulate it for every remote in [`Out::remotes`] (one for known unicast or a route,
    /// each flood-list peer for BUM traffic) and send the copies.
    Tunnel,
    /// Answered here: the answer (an ARP reply on behalf of a remote host, an ICMP error for
    /// the sender) is in [`Out::generated`], to be written back into the device; the packet
    /// itself goes nowhere (an ICMP error's packet is also counted as a drop).
    Answered,
    /// Held until its next hop resolves (L3 VXLAN): the engine kept a copy.
    Held,
    /// Dropped; counted under this reason.
    Drop(DropReason),
}

/// The remotes one packet from a device is sent to, and the VNI its copies carry (unused by
/// IPIP). Cleared by the engine at the start of every decision; its capacity is kept.
#[derive(Debug, Clone)]
pub struct Remotes {
    vni: Vni,
    dsts: Vec<Remote>,
}

impl Default for Remotes {
    fn default() -> Self {
        Remotes::with_capacity(0)
    }
}

impl Remotes {
    /// An empty list with room for `cap` remotes.
    pub fn with_capacity(cap: usize) -> Remotes {
        Remotes {
            vni: Vni::ZERO,
            dsts: Vec::with_capacity(cap),
        }
    }
    /// Forgets every remote; the next copies carry `vni`.
    pub fn reset(&mut self, vni: Vni) {
        self.vni = vni;
        self.dsts.clear();
    }
    /// Adds a remote.
    pub fn push(&mut self, dst: Remote) {
        self.dsts.push(dst);
    }
    /// Adds remotes (a flood list).
    pub fn extend_from_slice(&mut self, dsts: &[Remote]) {
        self.dsts.extend_from_slice(dsts);
    }
    /// The VNI the copies carry.
    pub fn vni(&self) -> Vni {
        self.vni
    }
    /// The remotes, in order.
    pub fn as_slice(&self) -> &[Remote] {
        &self.dsts
    }
    /// Number of remotes.
    pub fn len(&self) -> usize {
        self.dsts.len()
    }
    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.dsts.is_empty()
    }
}

/// ICMP errors a worker may send in a burst.
const ICMP_BURST: u32 = 20;
/// One more ICMP error allowed every this many milliseconds.
const ICMP_INTERVAL_MS: u64 = 10;

/// A worker's token bucket for the ICMP errors its engine sends (a burst of 20, then one
/// every 10 ms), so a flood of oversize packets cannot turn into a flood of errors.
#[derive(Debug, Clone)]
pub struct IcmpBudget {
    tokens: u32,
    refilled: Timestamp,
}

impl Default for IcmpBudget {
    fn default() -> Self {
        IcmpBudget {
            tokens: ICMP_BURST,
            refilled: Timestamp::ZERO,
        }
    }
}

impl IcmpBudget {
    /// Takes a token if one is left at `now`.
    pub fn take(&mut self, now: Timestamp) -> bool {
        let earned = now.millis().saturating_sub(self.refilled.millis()) / ICMP_INTERVAL_MS;
        if earned > 0 {
            self.tokens = (u64::from(self.tokens) + earned).min(u64::from(ICMP_BURST)) as u32;
            self.refilled = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// Errors allowed in a burst.
    pub const BURST: u32 = ICMP_BURST;
}

/// A worker's side of the engines: what a decision writes besides itself, and the per-worker
/// state the engines keep. Owned by the worker and reused for every packet, so steady state
/// does not allocate.
#[derive(Debug, Default)]
pub struct Out {
    /// Where a [`FromDevice::Tunnel`] packet goes.
    pub remotes: Remotes,
    /// Frames the engine made (ARP, ICMP, packets released after resolution), each to the
    /// tunnel or to the device. The caller sends them and clears the buffer.
    pub generated: Generated,
    /// The rate limit of the ICMP errors this worker sends.
    pub icmp: IcmpBudget,
}

impl Out {
    /// Room for `remotes` remotes per packet.
    pub fn with_capacity(remotes: usize) -> Out {
        Out {
            remotes: Remotes::with_capacity(remotes),
            ..Out::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn icmp_budget_allows_a_burst_then_refills_with_time() {
        let mut b = IcmpBudget::default();
        let taken = (0..100).filter(|_| b.take(Timestamp(1000))).count();
        assert_eq!(taken, IcmpBudget::BURST as usize);
        assert!(!b.take(Timestamp(1005)), "less than an interval later");
        assert!(b.take(Timestamp(1010)));
        assert!(!b.take(Timestamp(1010)));
        let later = (0..100).filter(|_| b.take(Timestamp(10_000))).count();
        assert_eq!(later, IcmpBudget::BURST as usize, "never more than a burst");
    }

    #[test]
    fn remotes_keep_their_vni_and_order() {
        let mut r = Remotes::with_capacity(4);
        let vni = Vni::new(42).unwrap();
        r.reset(vni);
        r.push(Ipv4Addr::new(192, 0, 2, 2).into());
        r.push(Ipv4Addr::new(192, 0, 2, 3).into());
        assert_eq!((r.vni(), r.len()), (vni, 2));
        assert_eq!(r.as_slice()[1], IpAddr::from(Ipv4Addr::new(192, 0, 2, 3)));
        r.reset(Vni::ZERO);
        assert!(r.is_empty());
    }
}
