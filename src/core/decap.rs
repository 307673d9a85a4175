//! Datagrams from the underlay: validate, check the source, learn, deliver to the device.
//! Never forwarded to another tunnel (split horizon).

use super::forward::ETH_HEADER_LEN;
use super::trace::{LearnResult, Mac, NoTrace, Step, Trace};
use super::{Core, Counters, DropReason, FromTunnel, Outer, Timestamp};
use encap::MacAddr;
use encap::vxlan::{HEADER_LEN, VxlanPacket, VxlanRepr};

impl Core {
    /// A UDP payload (VXLAN header + inner frame) received from the underlay (`outer`: its
    /// source, outer TOS and the port it arrived on, which must be its network's). Delivers the inner frame to its network's device at most (never
    /// to another tunnel: split horizon), after learning its source MAC and combining its ECN
    /// field with the outer one in place (RFC 6040), or drops it.
    ///
    /// A source that can never be a VTEP (our own address, multicast, broadcast, unspecified)
    /// is dropped as `UnknownPeer` even with `allow_any_peer`.
    pub fn on_remote(
        &self,
        now: Timestamp,
        outer: Outer,
        datagram: &mut [u8],
        ctr: &mut Counters,
    ) -> FromTunnel {
        self.on_remote_traced(now, outer, datagram, ctr, &mut NoTrace)
    }

    /// [`Core::on_remote`], its steps recorded into `t` (a simulation changes no state).
    pub fn on_remote_traced<T: Trace>(
        &self,
        now: Timestamp,
        outer: Outer,
        datagram: &mut [u8],
        ctr: &mut Counters,
        t: &mut T,
    ) -> FromTunnel {
        ctr.rx_tunnel += 1;
        ctr.rx_tunnel_bytes += datagram.len().saturating_sub(HEADER_LEN) as u64;
        let drop = |ctr: &mut Counters, r: DropReason| {
            ctr.drop(r);
            FromTunnel::Drop(r)
        };
        let Ok(pkt) = VxlanPacket::new_checked(&*datagram) else {
            return drop(ctr, DropReason::Truncated);
        };
        let Ok(hdr) = VxlanRepr::parse(&pkt) else {
            return drop(ctr, DropReason::VxlanFlags);
        };
        let found = self
            .net_by_vni(hdr.vni)
            .and_then(|id| Some((id, self.net(id)?)));
        t.step(Step::Vni {
            vni: hdr.vni.get(),
            found: found.is_some(),
        });
        let Some((id, net)) = found else {
            return drop(ctr, DropReason::UnknownVni);
        };
        if net.port != outer.port {
            return drop(ctr, DropReason::WrongPort);
        }
        if let Err(r) = super::remote_csum::check(&pkt, net.remote_csum_rx) {
            return drop(ctr, r);
        }
        let src = outer.src;
        let any_peer = self.allow_any_peer();
        let accepted = self.accepts_source(net, src, any_peer);
        t.step(Step::Peer {
            src,
            accepted,
            any_peer,
        });
        if !accepted {
            return drop(ctr, DropReason::UnknownPeer);
        }
        let inner = pkt.payload();
        if inner.len() < ETH_HEADER_LEN {
            return drop(ctr, DropReason::InnerRunt);
        }
        let src_mac = MacAddr::from_bytes(&inner[6..]).unwrap_or(MacAddr::ZERO);
        if !src_mac.is_unicast() {
            return drop(ctr, DropReason::BadSourceMac);
        }
        if src_mac == net.own_mac {
            return drop(ctr, DropReason::OwnSourceMac);
        }
        // A MAC pinned by a static entry to another VTEP is a spoof (or a misconfiguration):
        // the entry stays and the frame is dropped, as Linux's vxlan does.
        let result = if net.learning() {
            self.learn(net, src_mac, src, now.millis(), !T::SIMULATE, ctr)
        } else {
            match self.pinned_elsewhere(net, src_mac, src) {
                Some(pinned) => LearnResult::StaticConflict { pinned },
                None => LearnResult::Off,
            }
        };
        t.step(Step::Learn {
            mac: Mac(src_mac),
            remote: src,
            result,
            simulated: T::SIMULATE,
        });
        if matches!(result, LearnResult::StaticConflict { .. }) {
            return drop(ctr, DropReason::StaticConflict);
        }
        // RFC 6040: the outer ECN bits onto the inner packet, or the frame is dropped. Outer
        // Not-ECT and ECT(0) (ECN bit 0 clear) leave every inner field as it is.
        if outer.tos & 1 != 0 {
            let kept = Core::decapsulate_ecn(&mut datagram[HEADER_LEN..], outer.tos, ctr);
            t.step(Step::Ecn {
                outer: outer.tos & 3,
                kept,
            });
            if !kept {
                return FromTunnel::Drop(DropReason::EcnDrop);
            }
        }
        FromTunnel::Deliver {
            net: id,
            range: HEADER_LEN..datagram.len(),
        }
    }
}

impl Core {
    /// RFC 6040 decapsulation of the ECN field (normal mode): combines `outer_tos`, the TOS
    /// byte of the datagram that carried `frame` (an inner Ethernet frame), with the inner IP
    /// header's ECN bits, rewriting them in place (the IPv4 checksum updated). Returns false,
    /// having counted an `EcnDrop`, when the frame must be dropped: outer CE over an inner
    /// Not-ECT packet. Frames without an IP header pass as they are.
    fn decapsulate_ecn(frame: &mut [u8], outer_tos: u8, ctr: &mut Counters) -> bool {
        // Outer Not-ECT and ECT(0) (ECN bit 0 clear) leave every inner field as it is.
        if outer_tos & 1 == 0 {
            return true;
        }
        if encap::ecn::decapsulate_frame(frame, outer_tos).is_err() {
            ctr.drop(DropReason::EcnDrop);
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{CoreConfig, NetId, NetworkConfig};
    use encap::Vni;
    use std::net::Ipv4Addr;

    /// The one peer of [`core_of`]'s networks.
    const PEER: std::net::IpAddr = std::net::IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    /// A core at 192.0.2.1 with networks made by `f` from (VNI, own MAC's last byte), each
    /// with [`PEER`] as its peer.
    fn core_of(nets: &[(u32, u8)], f: impl Fn(NetworkConfig) -> NetworkConfig) -> Core {
        let networks = nets
            .iter()
            .map(|&(vni, mac)| {
                f(NetworkConfig {
                    vni: Vni::new(vni).unwrap(),
                    peers: vec![PEER],
                    own_mac: MacAddr([2, 0, 0, 0, 0, mac]),
                    ..NetworkConfig::default()
                })
            })
            .collect();
        Core::new(CoreConfig {
            local: Ipv4Addr::new(192, 0, 2, 1).into(),
            allow_any_peer: false,
            networks,
        })
        .unwrap()
    }

    /// A datagram: VXLAN header `vxlan`, then a 60-byte frame of EtherType `ethertype` from a
    /// MAC of its own (its last byte `mac`).
    fn datagram(vxlan: [u8; 8], mac: u8, ethertype: u16) -> Vec<u8> {
        let mut d = vxlan.to_vec();
        d.extend_from_slice(&[0x02, 0, 0, 0, 0, 0xff, 0x02, 0x42, 0, 0, 0, mac]);
        d.extend_from_slice(&ethertype.to_be_bytes());
        d.extend_from_slice(&[0u8; 46]);
        d
    }

    /// Each network takes the datagrams of its own UDP port only (ip-link's `dstport` per
    /// device): one for its VNI on another port is dropped as `wrong_port`, not learned from.
    #[test]
    fn a_datagram_is_taken_only_on_its_networks_port() {
        let peer = PEER;
        let core = core_of(&[(42, 1), (43, 2)], |n| NetworkConfig {
            port: if n.vni.get() == 42 { 4789 } else { 8472 },
            ..n
        });
        let mut ctr = Counters::default();
        for (i, (vni, port, want)) in [
            (42u8, 4789, Some(NetId(0))),
            (43, 8472, Some(NetId(1))),
            (43, 4789, None),
            (42, 8472, None),
            (42, 4790, None),
        ]
        .into_iter()
        .enumerate()
        {
            let mut d = datagram([0x08, 0, 0, 0, 0, 0, vni, 0], i as u8, 0x88b5);
            let outer = Outer {
                src: peer.into(),
                tos: 0,
                port,
            };
            let v = core.on_remote(Timestamp(0), outer, &mut d, &mut ctr);
            match want {
                Some(net) => assert_eq!(
                    v,
                    FromTunnel::Deliver {
                        net,
                        range: HEADER_LEN..d.len()
                    },
                    "VNI {vni} on {port}"
                ),
                None => assert_eq!(
                    v,
                    FromTunnel::Drop(DropReason::WrongPort),
                    "VNI {vni} on {port}"
                ),
            }
        }
        assert_eq!(ctr.drops_of(DropReason::WrongPort), 3);
        assert_eq!(ctr.total_drops(), 3);
        assert_eq!(core.fdb_len(), 2, "learned from the right ports only");
    }

    /// A datagram with remote checksum offload is taken only by a network that accepts it,
    /// and only with its checksum inside the inner frame (the kernel without `remcsumrx` drops
    /// it as malformed); counted `remote_csum` otherwise, never learned from.
    #[test]
    fn remote_checksum_offload_is_taken_only_where_accepted() {
        let peer = PEER;
        let core = core_of(&[(42, 1), (43, 2)], |n| NetworkConfig {
            remote_csum_rx: n.vni.get() == 42,
            ..n
        });
        let mut ctr = Counters::default();
        // (VNI, the VXLAN header's second byte and last byte, taken): TCP's checksum at 34
        // (17 units), past the frame's end (start 254), inside the Ethernet header (start 2).
        for (i, (vni, flag, last, want)) in [
            (42u8, 0x20, 17, true),
            (42, 0, 0, true),
            (43, 0, 0, true),
            (43, 0x20, 17, false),
            (42, 0x20, 127, false),
            (42, 0x20, 1, false),
        ]
        .into_iter()
        .enumerate()
        {
            let mut d = datagram([0x08, flag, 0, 0, 0, 0, vni, last], i as u8, 0x0800);
            let outer = Outer {
                src: peer.into(),
                tos: 0,
                port: encap::vxlan::DEFAULT_PORT,
            };
            let v = core.on_remote(Timestamp(0), outer, &mut d, &mut ctr);
            let ctx = format!("VNI {vni}, flags {flag:#x}, {last}");
            match want {
                true => assert!(matches!(v, FromTunnel::Deliver { .. }), "{ctx}: {v:?}"),
                false => assert_eq!(v, FromTunnel::Drop(DropReason::RemoteCsum), "{ctx}"),
            }
        }
        assert_eq!(ctr.drops_of(DropReason::RemoteCsum), 3);
        assert_eq!(core.fdb_len(), 3, "learned from the taken datagrams only");
    }

    /// An Ethernet frame holding an IPv4 header with ECN bits `ecn` and a valid checksum.
    fn frame(ecn: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14..24].copy_from_slice(&[0x45, 0xb8 | ecn, 0, 20, 0, 1, 0x40, 0, 64, 17]);
        f[26..34].copy_from_slice(&[10, 9, 0, 2, 10, 9, 0, 1]);
        let sum = encap::checksum::checksum(&f[14..]);
        f[24..26].copy_from_slice(&sum.to_be_bytes());
        f
    }

    #[test]
    fn outer_ecn_is_combined_with_the_inner_and_ce_over_not_ect_dropped() {
        // (outer, inner, inner after or None: dropped); 0 Not-ECT, 1 ECT(1), 2 ECT(0), 3 CE.
        let cases = [
            (3, 0, None),
            (3, 2, Some(3)),
            (3, 1, Some(3)),
            (1, 2, Some(1)),
            (1, 0, Some(0)),
            (2, 1, Some(1)),
            (0, 3, Some(3)),
            (2, 0, Some(0)),
        ];
        for (outer, inner, want) in cases {
            let mut ctr = Counters::default();
            let mut f = frame(inner);
            let kept = Core::decapsulate_ecn(&mut f, 0x28 | outer, &mut ctr);
            assert_eq!(kept, want.is_some(), "outer {outer} inner {inner}");
            assert_eq!(ctr.drops_of(DropReason::EcnDrop), u64::from(!kept));
            if let Some(w) = want {
                assert_eq!(
                    f[15],
                    0xb8 | w,
                    "outer {outer} inner {inner}: DSCP kept, ECN set"
                );
                assert!(encap::checksum::verify(&f[14..]), "IPv4 checksum");
            }
        }
        // Not IP: passes untouched.
        let mut arp = vec![0u8; 60];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        let before = arp.clone();
        assert!(Core::decapsulate_ecn(&mut arp, 3, &mut Counters::default()));
        assert_eq!(arp, before);
    }
}
