//! Frames from a local device: known unicast to one VTEP, everything else flooded to the
//! network's flood list (head-end replication).

use super::fdb::FdbKey;
use super::local_macs::Seen;
use super::storm::FloodKind;
use super::trace::{Mac, NoTrace, Step, Trace};
use super::{Core, Counters, DropReason, FromDevice, NetId, Remotes, Timestamp};
use encap::MacAddr;

/// Length of an Ethernet II header (dst, src, ethertype).
pub(super) const ETH_HEADER_LEN: usize = 14;

impl Core {
    /// A frame read from network `net`'s local device: sent to one remote (known unicast) or
    /// to every flood-list peer (BUM or unknown unicast), listed in `to`; or dropped.
    pub fn on_local(
        &self,
        now: Timestamp,
        net: NetId,
        frame: &[u8],
        to: &mut Remotes,
        ctr: &mut Counters,
    ) -> FromDevice {
        self.on_local_traced(now, net, frame, to, ctr, &mut NoTrace)
    }

    /// [`Core::on_local`], its steps recorded into `t` (a simulation takes no storm tokens).
    pub fn on_local_traced<T: Trace>(
        &self,
        now: Timestamp,
        net: NetId,
        frame: &[u8],
        to: &mut Remotes,
        ctr: &mut Counters,
        t: &mut T,
    ) -> FromDevice {
        ctr.rx_device += 1;
        self.forward(now, net, frame, to, ctr, true, t)
    }

    /// The forwarding decision of [`Core::on_local`] without counting the frame as read from
    /// the device and without storm control: for frames vtepd generated itself (ARP requests and
    /// replies, L3 frames).
    pub fn forward_frame(
        &self,
        now: Timestamp,
        net: NetId,
        frame: &[u8],
        to: &mut Remotes,
        ctr: &mut Counters,
    ) -> FromDevice {
        self.forward(now, net, frame, to, ctr, false, &mut NoTrace)
    }

    /// [`Core::forward_frame`], its steps recorded into `t`.
    pub fn forward_frame_traced<T: Trace>(
        &self,
        now: Timestamp,
        net: NetId,
        frame: &[u8],
        to: &mut Remotes,
        ctr: &mut Counters,
        t: &mut T,
    ) -> FromDevice {
        self.forward(now, net, frame, to, ctr, false, t)
    }

    /// The forwarding decision; `police`: frames to be flooded pass storm control first (a
    /// simulation takes no token).
    #[allow(clippy::too_many_arguments)]
    fn forward<T: Trace>(
        &self,
        now: Timestamp,
        net: NetId,
        frame: &[u8],
        to: &mut Remotes,
        ctr: &mut Counters,
        police: bool,
        t: &mut T,
    ) -> FromDevice {
        let drop = |ctr: &mut Counters, r: DropReason| {
            ctr.drop(r);
            FromDevice::Drop(r)
        };
        let Some(n) = self.net(net) else {
            to.reset(encap::Vni::ZERO);
            return drop(ctr, DropReason::UnknownNetwork);
        };
        to.reset(n.vni);
        if frame.len() < ETH_HEADER_LEN {
            return drop(ctr, DropReason::LocalRunt);
        }
        if police && n.announce {
            // The device's own MAC too: it is the host's own endpoint on the overlay.
            let seen = self.local_macs.seen_frame(n.vni, frame, now.millis());
            for (s, new) in [
                (seen.mac, &mut ctr.local_macs),
                (seen.ip, &mut ctr.local_ips),
            ] {
                match s {
                    Some(Seen::New) => *new += 1,
                    Some(Seen::Full) => ctr.local_macs_refused += 1,
                    _ => {}
                }
            }
        }
        let dst = MacAddr::from_bytes(frame).unwrap_or(MacAddr::BROADCAST);
        let known = (!dst.is_multicast())
            .then(|| {
                self.fdb
                    .lookup(FdbKey::new(n.vni, dst), now.millis(), n.ageing_ms())
            })
            .flatten();
        if !dst.is_multicast() {
            t.step(Step::Fdb {
                vni: n.vni.get(),
                mac: Mac(dst),
                remote: known,
            });
        }
        if let Some(remote) = known {
            if remote == self.local {
                return drop(ctr, DropReason::ToSelf);
            }
            to.push(remote);
            return FromDevice::Tunnel;
        }
        let peers = n.peers();
        let kind = if dst == MacAddr::BROADCAST {
            FloodKind::Broadcast
        } else if dst.is_multicast() {
            FloodKind::Multicast
        } else {
            FloodKind::UnknownUnicast
        };
        let flood = Step::Flood {
            kind: kind.into(),
            peers: peers.flood.len() as u32,
        };
        if peers.flood.is_empty() {
            t.step(flood);
            return drop(ctr, DropReason::NoPeers);
        }
        if police {
            let allowed = T::SIMULATE || n.storm.allow(kind, now.millis());
            t.step(Step::Storm {
                kind: kind.into(),
                allowed,
            });
            if !allowed {
                return drop(ctr, storm_drop(kind));
            }
        }
        t.step(flood);
        to.extend_from_slice(&peers.flood);
        ctr.flood_copies += peers.flood.len() as u64;
        FromDevice::Tunnel
    }
}

/// The drop reason of a frame of `kind` over its storm-control limit.
fn storm_drop(kind: FloodKind) -> DropReason {
    match kind {
        FloodKind::Broadcast => DropReason::StormBroadcast,
        FloodKind::UnknownUnicast => DropReason::StormUnknownUnicast,
        FloodKind::Multicast => DropReason::StormMulticast,
    }
}
