//! Datagrams from the underlay: validate, check the source, learn, deliver to the device.
//! Never forwarded to another tunnel (split horizon).

use super::forward::{ETH_HEADER_LEN, reject};
use super::{Action, Actions, Core, Counters, DropReason, Timestamp};
use encap::MacAddr;
use encap::vxlan::{HEADER_LEN, VxlanPacket, VxlanRepr};
use std::net::Ipv4Addr;

impl Core {
    /// A UDP payload (VXLAN header + inner frame) received from underlay address `src`.
    /// Pushes at most one `ToDevice` (never a `ToTunnel`: split horizon), or a `Drop`; learns.
    ///
    /// A source that can never be a VTEP (our own address, multicast, broadcast, unspecified)
    /// is dropped as `UnknownPeer` even with `allow_any_peer`.
    pub fn on_remote(
        &self,
        now: Timestamp,
        src: Ipv4Addr,
        datagram: &[u8],
        out: &mut Actions,
        ctr: &mut Counters,
    ) {
        out.clear();
        ctr.rx_tunnel += 1;
        let Ok(pkt) = VxlanPacket::new_checked(datagram) else {
            return reject(out, ctr, DropReason::Truncated);
        };
        let Ok(hdr) = VxlanRepr::parse(&pkt) else {
            return reject(out, ctr, DropReason::VxlanFlags);
        };
        let Some((id, net)) = self
            .net_by_vni(hdr.vni)
            .and_then(|id| Some((id, self.net(id)?)))
        else {
            return reject(out, ctr, DropReason::UnknownVni);
        };
        if !self.usable_remote(src) || (!self.allow_any_peer() && !net.peers.load().is_known(src)) {
            return reject(out, ctr, DropReason::UnknownPeer);
        }
        let inner = pkt.payload();
        if inner.len() < ETH_HEADER_LEN {
            return reject(out, ctr, DropReason::InnerRunt);
        }
        let src_mac = MacAddr::from_bytes(&inner[6..]).unwrap_or(MacAddr::ZERO);
        if !src_mac.is_unicast() {
            return reject(out, ctr, DropReason::BadSourceMac);
        }
        if src_mac == net.own_mac {
            return reject(out, ctr, DropReason::OwnSourceMac);
        }
        if net.learning {
            self.learn(net, src_mac, src, now.millis(), ctr);
        }
        out.push(Action::ToDevice {
            net: id,
            offset: HEADER_LEN,
        });
    }
}
