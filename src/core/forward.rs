//! Frames from a local device: known unicast to one VTEP, everything else flooded to the
//! network's flood list (head-end replication).

use super::fdb::FdbKey;
use super::local_macs::Seen;
use super::storm::FloodKind;
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
        ctr.rx_device += 1;
        self.forward(now, net, frame, to, ctr, true)
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
        self.forward(now, net, frame, to, ctr, false)
    }

    /// The forwarding decision; `police`: frames to be flooded pass storm control first.
    fn forward(
        &self,
        now: Timestamp,
        net: NetId,
        frame: &[u8],
        to: &mut Remotes,
        ctr: &mut Counters,
        police: bool,
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
            let src = frame
                .get(6..)
                .and_then(MacAddr::from_bytes)
                .unwrap_or(MacAddr::ZERO);
            // The device's own MAC too: it is the host's own endpoint on the overlay.
            if src.is_unicast() {
                match self.local_macs.seen(n.vni, src, now.millis()) {
                    Seen::New => ctr.local_macs += 1,
                    Seen::Full => ctr.local_macs_refused += 1,
                    Seen::Known => {}
                }
            }
        }
        let dst = MacAddr::from_bytes(frame).unwrap_or(MacAddr::BROADCAST);
        if !dst.is_multicast()
            && let Some(remote) =
                self.fdb
                    .lookup(FdbKey::new(n.vni, dst), now.millis(), n.ageing_ms())
        {
            if remote == self.local {
                return drop(ctr, DropReason::ToSelf);
            }
            to.push(remote);
            return FromDevice::Tunnel;
        }
        let peers = n.peers.load();
        if peers.flood.is_empty() {
            return drop(ctr, DropReason::NoPeers);
        }
        if police {
            let kind = if dst == MacAddr::BROADCAST {
                FloodKind::Broadcast
            } else if dst.is_multicast() {
                FloodKind::Multicast
            } else {
                FloodKind::UnknownUnicast
            };
            if !n.storm.allow(kind, now.millis()) {
                return drop(ctr, storm_drop(kind));
            }
        }
        for &dst in peers.flood.iter() {
            to.push(dst);
        }
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
