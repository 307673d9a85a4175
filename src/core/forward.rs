//! Frames from a local device: known unicast to one VTEP, everything else flooded to the
//! network's flood list (head-end replication).

use super::fdb::FdbKey;
use super::{Action, Actions, Core, Counters, DropReason, NetId, Timestamp};
use encap::MacAddr;

/// Length of an Ethernet II header (dst, src, ethertype).
pub(super) const ETH_HEADER_LEN: usize = 14;

impl Core {
    /// A frame read from network `net`'s local device. Pushes one `ToTunnel` per destination
    /// (known unicast: one; BUM or unknown unicast: one per flood-list peer), or a `Drop`.
    pub fn on_local(
        &self,
        now: Timestamp,
        net: NetId,
        frame: &[u8],
        out: &mut Actions,
        ctr: &mut Counters,
    ) {
        ctr.rx_device += 1;
        self.forward_frame(now, net, frame, out, ctr);
    }

    /// The forwarding decision of [`Core::on_local`] without counting the frame as read from
    /// the device: for frames vtepd generated itself (ARP requests and replies, L3 frames).
    pub fn forward_frame(
        &self,
        now: Timestamp,
        net: NetId,
        frame: &[u8],
        out: &mut Actions,
        ctr: &mut Counters,
    ) {
        out.clear();
        let Some(n) = self.net(net) else {
            return reject(out, ctr, DropReason::UnknownNetwork);
        };
        if frame.len() < ETH_HEADER_LEN {
            return reject(out, ctr, DropReason::LocalRunt);
        }
        let dst = MacAddr::from_bytes(frame).unwrap_or(MacAddr::BROADCAST);
        if !dst.is_multicast()
            && let Some(remote) =
                self.fdb
                    .lookup(FdbKey::new(n.vni, dst), now.millis(), n.ageing_ms)
        {
            if remote == self.local {
                return reject(out, ctr, DropReason::ToSelf);
            }
            out.push(Action::ToTunnel {
                vni: n.vni,
                dst: remote,
            });
            return;
        }
        let peers = n.peers.load();
        if peers.flood.is_empty() {
            return reject(out, ctr, DropReason::NoPeers);
        }
        for &dst in peers.flood.iter() {
            out.push(Action::ToTunnel { vni: n.vni, dst });
        }
        ctr.flood_copies += peers.flood.len() as u64;
    }
}

/// Counts a drop and records it as the call's only action.
#[inline]
pub(super) fn reject(out: &mut Actions, ctr: &mut Counters, r: DropReason) {
    ctr.drop(r);
    out.push(Action::Drop(r));
}
