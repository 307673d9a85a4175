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
//! Shared by the workers (it keeps no state of its own); a reply is written into the caller's
//! [`Generated`] buffer, to be written back into the device.

use super::arp::{ARP_FRAME_LEN, FrameTo, Generated, arp_reply, write_arp_frame};
use super::neigh::{Evidence, Learned, usable_ip};
use super::trace::{Mac, NoTrace, Step, Trace};
use super::{Core, Counters, NetId, Timestamp};
use encap::MacAddr;
use encap::arp::{ArpOperation, ArpPacket, ArpRepr};
use encap::ethernet::{EthernetFrame, ethertype};
use std::net::IpAddr;
use std::sync::Arc;

/// ARP suppression over the shared core (whether it is on is each network's setting, which a
/// reload may change: [`Core::set_net_settings`]).
#[derive(Debug)]
pub struct ArpSuppress {
    core: Arc<Core>,
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
        for (i, on) in enabled.into_iter().enumerate() {
            if let Some(n) = u16::try_from(i).ok().and_then(|i| core.net(NetId(i))) {
                n.set_arp_suppress(on);
            }
        }
        ArpSuppress { core }
    }

    /// Whether suppression is on for `net`.
    #[inline]
    pub fn enabled(&self, net: NetId) -> bool {
        self.core.net(net).is_some_and(|n| n.arp_suppress())
    }

    /// Snoops a frame decapsulated from the tunnel for `net` (call it for every frame the core
    /// delivers): learns the sender's binding from ARP.
    pub fn snoop_remote(&self, now: Timestamp, net: NetId, frame: &[u8], ctr: &mut Counters) {
        self.snoop_remote_traced(now, net, frame, ctr, &mut NoTrace);
    }

    /// [`ArpSuppress::snoop_remote`], its step recorded into `t` (a simulation binds nothing).
    pub fn snoop_remote_traced<T: Trace>(
        &self,
        now: Timestamp,
        net: NetId,
        frame: &[u8],
        ctr: &mut Counters,
        t: &mut T,
    ) {
        if !self.enabled(net) {
            return;
        }
        let Some((eth, a)) = arp_of(frame) else {
            return;
        };
        if a.sender_mac != eth.src() || !usable_ip(a.sender_ip) {
            return;
        }
        learn_snooped(
            &self.core,
            now,
            net,
            a.sender_ip.into(),
            a.sender_mac,
            ctr,
            t,
        );
    }

    /// A frame read from `net`'s local device. When it is a broadcast ARP request for a known
    /// remote address, pushes the reply to write back into the device onto `out` (as
    /// [`FrameTo::Device`], counted as `arp_suppressed`) and returns true: the frame must then
    /// not be forwarded. False: forward as usual.
    pub fn answer_local(
        &self,
        now: Timestamp,
        net: NetId,
        frame: &[u8],
        out: &mut Generated,
        ctr: &mut Counters,
    ) -> bool {
        self.answer_local_traced(now, net, frame, out, ctr, &mut NoTrace)
    }

    /// [`ArpSuppress::answer_local`], its step recorded into `t`.
    pub fn answer_local_traced<T: Trace>(
        &self,
        now: Timestamp,
        net: NetId,
        frame: &[u8],
        out: &mut Generated,
        ctr: &mut Counters,
        t: &mut T,
    ) -> bool {
        if !self.enabled(net) {
            return false;
        }
        let Some((eth, a)) = arp_of(frame) else {
            return false;
        };
        if a.operation != ArpOperation::Request
            || !eth.dst().is_broadcast()
            || !usable_ip(a.sender_ip)
            || a.sender_ip == a.target_ip
            || !a.sender_mac.is_unicast()
        {
            return false;
        }
        let known = self
            .core
            .neigh(net)
            .and_then(|t| t.lookup(a.target_ip, now.millis()));
        t.step(Step::ArpSuppress {
            target: a.target_ip,
            answer: known.filter(|m| *m != a.sender_mac).map(Mac),
        });
        let Some(mac) = known else {
            return false;
        };
        if mac == a.sender_mac {
            return false;
        }
        let reply = arp_reply(&a, mac);
        let before = out.len();
        out.push(FrameTo::Device, ARP_FRAME_LEN, |b| {
            write_arp_frame(b, eth.src(), mac, &reply)
        });
        if out.len() == before {
            return false;
        }
        ctr.arp_suppressed += 1;
        true
    }
}

/// Teaches network `net`'s neighbour table that `ip` is at `mac`, from ARP or ND seen crossing
/// the tunnel (authoritative evidence), counted and traced; a simulation binds nothing.
pub(super) fn learn_snooped<T: Trace>(
    core: &Core,
    now: Timestamp,
    net: NetId,
    ip: IpAddr,
    mac: MacAddr,
    ctr: &mut Counters,
    t: &mut T,
) {
    let Some(table) = core.neigh(net) else {
        return;
    };
    let at = now.millis();
    let learned = if T::SIMULATE {
        table.judge(ip, mac, at, Evidence::Authoritative)
    } else {
        table.learn(ip, mac, at, Evidence::Authoritative)
    };
    t.step(Step::NeighLearn {
        ip,
        mac: Mac(mac),
        result: learned.into(),
    });
    if T::SIMULATE {
        return;
    }
    match learned {
        Learned::New => ctr.neigh_learned += 1,
        Learned::MacChanged(_) => ctr.neigh_mac_changes += 1,
        Learned::Refused => ctr.neigh_refused += 1,
        Learned::Refreshed | Learned::StaticKept | Learned::StaticConflict | Learned::Ignored => {}
    }
}
