//! ARP suppression for L2 networks (`--arp-suppress`): ARP crossing the tunnel teaches
//! IP -> MAC bindings of remote hosts (per VNI, in the network's neighbour table); a local
//! broadcast ARP request for a known remote address is then answered straight into the local
//! device ("ARP reply on behalf") instead of being flooded to every peer.
//!
//! Only ARP that arrived from the tunnel (from a known remote VTEP, after the core's checks) and
//! whose sender MAC is the frame's source MAC teaches a binding; local ARP never does (local hosts
//! answer for themselves on the bridge). Bindings age with the network's ageing time and share
//! its learned-entry cap; a binding whose MAC changes is counted (`neigh_mac_changes`); static
//! bindings come from `neigh add`. Requests that are not safe to answer are left to flood:
//! probes (sender 0.0.0.0), gratuitous ARP, unicast requests (NUD re-probes), tagged frames, and a
//! question about the asker's own address.
//!
//! One [`ArpSuppress`] per worker: it owns the 42-byte buffer its replies are written into.

use super::arp::{ARP_FRAME_LEN, arp_reply, write_arp_frame};
use super::neigh::{Evidence, Learned, usable_ip};
use super::{Core, Counters, NetId, Timestamp};
use encap::arp::{ArpOperation, ArpPacket, ArpRepr};
use encap::ethernet::{EthernetFrame, ethertype};
use std::sync::Arc;

/// A worker's ARP suppressor over the shared core.
#[derive(Debug)]
pub struct ArpSuppress {
    core: Arc<Core>,
    /// Whether suppression is on, by [`NetId`].
    enabled: Box<[bool]>,
    reply: [u8; ARP_FRAME_LEN],
}

/// The ARP packet of an untagged Ethernet frame, if it is one.
fn arp_of(frame: &[u8]) -> Option<(EthernetFrame<&[u8]>, ArpRepr)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.is_tagged() || eth.ethertype() != ethertype::ARP {
        return None;
    }
    let a = ArpPacket::new_checked(eth.payload())
        .and_then(|p| ArpRepr::parse(&p))
        .ok()?;
    Some((eth, a))
}

impl ArpSuppress {
    /// A suppressor for `core`'s networks; `enabled[i]` turns it on for `NetId(i)`.
    pub fn new(core: Arc<Core>, enabled: Vec<bool>) -> ArpSuppress {
        ArpSuppress {
            core,
            enabled: enabled.into(),
            reply: [0; ARP_FRAME_LEN],
        }
    }

    /// Whether suppression is on for `net`.
    #[inline]
    pub fn enabled(&self, net: NetId) -> bool {
        self.enabled
            .get(usize::from(net.0))
            .copied()
            .unwrap_or(false)
    }

    /// Snoops a frame decapsulated from the tunnel for `net` (call it for every frame the core
    /// delivers): learns the sender's binding from ARP.
    pub fn snoop_remote(&self, now: Timestamp, net: NetId, frame: &[u8], ctr: &mut Counters) {
        if !self.enabled(net) {
            return;
        }
        let Some((eth, a)) = arp_of(frame) else {
            return;
        };
        if a.sender_mac != eth.src() || !usable_ip(a.sender_ip) {
            return;
        }
        let Some(table) = self.core.neigh(net) else {
            return;
        };
        match table.learn(
            a.sender_ip,
            a.sender_mac,
            now.millis(),
            Evidence::Authoritative,
        ) {
            Learned::New => ctr.neigh_learned += 1,
            Learned::MacChanged(_) => ctr.neigh_mac_changes += 1,
            Learned::Refused => ctr.neigh_refused += 1,
            Learned::Refreshed | Learned::StaticKept | Learned::Ignored => {}
        }
    }

    /// A frame read from `net`'s local device. When it is a broadcast ARP request for a known
    /// remote address, returns the reply to write back into the device (counted as
    /// `arp_suppressed`); the frame must then not be forwarded. `None`: forward as usual.
    pub fn answer_local(
        &mut self,
        now: Timestamp,
        net: NetId,
        frame: &[u8],
        ctr: &mut Counters,
    ) -> Option<&[u8]> {
        if !self.enabled(net) {
            return None;
        }
        let (eth, a) = arp_of(frame)?;
        if a.operation != ArpOperation::Request
            || !eth.dst().is_broadcast()
            || !usable_ip(a.sender_ip)
            || a.sender_ip == a.target_ip
            || !a.sender_mac.is_unicast()
        {
            return None;
        }
        let mac = self.core.neigh(net)?.lookup(a.target_ip, now.millis())?;
        if mac == a.sender_mac {
            return None;
        }
        let reply = arp_reply(&a, mac);
        if !write_arp_frame(&mut self.reply, eth.src(), mac, &reply) {
            return None;
        }
        ctr.arp_suppressed += 1;
        Some(&self.reply)
    }
}
