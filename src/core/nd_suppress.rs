//! ND suppression for L2 networks, IPv6's counterpart of ARP suppression and under the same
//! setting (`--arp-suppress` covers both): Neighbor Discovery crossing the tunnel teaches IPv6
//! -> MAC bindings of remote hosts (per VNI, in the network's neighbour table beside the IPv4
//! ones); a local neighbour solicitation for a known remote address is then answered straight
//! into the local device with a neighbour advertisement instead of being flooded to every peer.
//!
//! Taught only by valid ND (RFC 4861 §7.1: hop limit 255, a correct checksum, code 0) that
//! arrived from the tunnel after the core's checks, and only where the link-layer address the
//! message states is the frame's source MAC: an advertisement's target link-layer address binds
//! its target, a solicitation's source link-layer address binds its source. An advertisement
//! without the override flag (a proxy's, an anycast address's) never moves a live binding to
//! another MAC (RFC 4861 §7.2.5). Unspecified, multicast, loopback and IPv4-mapped addresses
//! never bind.
//!
//! Answered: a multicast solicitation (to the target's solicited-node group, at its Ethernet
//! address) from a unicast source address whose source link-layer option is the frame's source
//! MAC. Left to flood, as ARP suppression leaves its probes: duplicate address detection (the
//! unspecified source), unicast solicitations (reachability probes, which the target must
//! answer itself), tagged frames, a question about the asker's own address or MAC, unknown
//! targets, and anything malformed.
//!
//! The Linux vxlan device (`proxy`) differs: it answers from the device's neighbour table
//! whatever the solicitation's source (a duplicate address probe gets an advertisement sent to
//! the unspecified address), unicast solicitations too, without checking the hop limit or the
//! checksum, sets the router flag from the FDB entry, and drops every solicitation it cannot
//! answer rather than flooding it; its bindings come from the control plane, never from the
//! data path. vtepd floods what it does not answer, so hosts fall back to ordinary ND.

use super::arp::{FrameTo, Generated};
use super::arp_suppress::learn_snooped;
use super::ndisc::{self, Advert, NdMessage};
use super::neigh::usable_ip6;
use super::trace::{Mac, NoTrace, Step, Trace};
use super::{Core, Counters, NetId, Timestamp};
use std::net::IpAddr;
use std::sync::Arc;

/// ND suppression over the shared core (on where the network's ARP suppression is on).
#[derive(Debug)]
pub struct NdSuppress {
    core: Arc<Core>,
}

impl NdSuppress {
    /// A suppressor for `core`'s networks.
    pub fn new(core: Arc<Core>) -> NdSuppress {
        NdSuppress { core }
    }

    #[inline]
    fn enabled(&self, net: NetId) -> bool {
        self.core.net(net).is_some_and(|n| n.arp_suppress())
    }

    /// Snoops a frame decapsulated from the tunnel for `net` (call it for every frame the core
    /// delivers): learns the binding a neighbour advertisement or solicitation states.
    pub fn snoop_remote(&self, now: Timestamp, net: NetId, frame: &[u8], ctr: &mut Counters) {
        self.snoop_remote_traced(now, net, frame, ctr, &mut NoTrace);
    }

    /// [`NdSuppress::snoop_remote`], its step recorded into `t` (a simulation binds nothing).
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
        let Some(nd) = ndisc::parse(frame) else {
            return;
        };
        let (ip, mac) = match nd.msg {
            NdMessage::Advert {
                target,
                target_mac: Some(mac),
                overrides,
                ..
            } => {
                let bound = || self.core.neigh(net)?.lookup(target, now.millis());
                if !overrides && bound().is_some_and(|m| m != mac) {
                    return;
                }
                (target, mac)
            }
            NdMessage::Solicit {
                source_mac: Some(mac),
                ..
            } => (nd.src, mac),
            _ => return,
        };
        if mac != nd.eth_src || !mac.is_unicast() || !usable_ip6(ip) {
            return;
        }
        learn_snooped(&self.core, now, net, IpAddr::V6(ip), mac, ctr, t);
    }

    /// A frame read from `net`'s local device. When it is a multicast neighbour solicitation
    /// for a known remote address, pushes the advertisement to write back into the device onto
    /// `out` (as [`FrameTo::Device`], counted as `nd_suppressed`) and returns true: the frame
    /// must then not be forwarded. False: forward as usual.
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

    /// [`NdSuppress::answer_local`], its step recorded into `t`.
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
        let Some(nd) = ndisc::parse(frame) else {
            return false;
        };
        let NdMessage::Solicit {
            target,
            source_mac: Some(asker_mac),
        } = nd.msg
        else {
            return false;
        };
        let group = ndisc::solicited_node(target);
        if nd.dst != group
            || nd.eth_dst != ndisc::multicast_mac(group)
            || asker_mac != nd.eth_src
            || !asker_mac.is_unicast()
            || !usable_ip6(nd.src)
            || !usable_ip6(target)
            || nd.src == target
        {
            return false;
        }
        let known = self
            .core
            .neigh(net)
            .and_then(|t| t.lookup(target, now.millis()))
            .filter(|m| *m != asker_mac);
        t.step(Step::NdSuppress {
            target,
            answer: known.map(Mac),
        });
        let Some(mac) = known else {
            return false;
        };
        let na = Advert {
            asker_mac,
            asker_ip: nd.src,
            target,
            mac,
        };
        let before = out.len();
        out.push(FrameTo::Device, na.frame_len(), |b| na.write(b));
        if out.len() == before {
            return false;
        }
        ctr.nd_suppressed += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::trace::Recorder;
    use crate::core::{CoreConfig, NetworkConfig};
    use encap::{MacAddr, Vni};
    use etherparse::icmpv6::{Icmpv6PayloadSlice, NdpOptionSlice, NeighborAdvertisementHeader};
    use etherparse::{Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    const NET: NetId = NetId(0);
    /// The local asker (A) and the remote host (B).
    const MAC_A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
    const MAC_B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);
    const IP_A: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0xa);
    const IP_B: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0x1234, 0x5678);
    const SLLA: u8 = 1;
    const TLLA: u8 = 2;

    fn suppressor(on: bool) -> (Arc<Core>, NdSuppress) {
        let core = Arc::new(
            Core::new(CoreConfig {
                local: Ipv4Addr::new(192, 0, 2, 1).into(),
                allow_any_peer: false,
                networks: vec![NetworkConfig {
                    vni: Vni::new(1).unwrap(),
                    own_mac: MacAddr([2, 0, 0, 0, 0, 1]),
                    ageing: Duration::from_secs(300),
                    max_learned: 100,
                    ..NetworkConfig::default()
                }],
            })
            .unwrap(),
        );
        core.net(NET).unwrap().set_arp_suppress(on);
        (Arc::clone(&core), NdSuppress::new(core))
    }

    /// An ND message built by etherparse (its checksum too), not by the code under test.
    struct Nd {
        eth: (MacAddr, MacAddr),
        ip: (Ipv6Addr, Ipv6Addr),
        hop_limit: u8,
        advert: Option<NeighborAdvertisementHeader>,
        target: Ipv6Addr,
        option: Option<(u8, MacAddr)>,
    }

    impl Nd {
        /// A's multicast solicitation for `target`.
        fn solicit(target: Ipv6Addr) -> Nd {
            let group = ndisc::solicited_node(target);
            Nd {
                eth: (MAC_A, ndisc::multicast_mac(group)),
                ip: (IP_A, group),
                hop_limit: 255,
                advert: None,
                target,
                option: Some((SLLA, MAC_A)),
            }
        }

        /// B's solicited advertisement of itself to A.
        fn advert() -> Nd {
            Nd {
                eth: (MAC_B, MAC_A),
                ip: (IP_B, IP_A),
                hop_limit: 255,
                advert: Some(NeighborAdvertisementHeader {
                    router: false,
                    solicited: true,
                    r#override: true,
                }),
                target: IP_B,
                option: Some((TLLA, MAC_B)),
            }
        }

        fn frame(&self) -> Vec<u8> {
            let ty = match self.advert {
                Some(h) => Icmpv6Type::NeighborAdvertisement(h),
                None => Icmpv6Type::NeighborSolicitation,
            };
            let mut payload = self.target.octets().to_vec();
            if let Some((kind, mac)) = self.option {
                payload.extend_from_slice(&[kind, 1]);
                payload.extend_from_slice(&mac.0);
            }
            let b = PacketBuilder::ethernet2(self.eth.0.0, self.eth.1.0)
                .ipv6(self.ip.0.octets(), self.ip.1.octets(), self.hop_limit)
                .icmpv6(ty);
            let mut f = vec![0; b.size(payload.len())];
            b.write_to_slice(&mut f, &payload).unwrap();
            f
        }
    }

    fn answer(s: &NdSuppress, at: u64, f: &[u8], ctr: &mut Counters) -> Option<Vec<u8>> {
        let mut g = Generated::new();
        let answered = s.answer_local(Timestamp(at * 1000), NET, f, &mut g, ctr);
        assert_eq!(answered, g.len() == 1);
        g.iter().next().map(|(to, b)| {
            assert_eq!(to, FrameTo::Device);
            b.to_vec()
        })
    }

    fn bound(c: &Core, ip: Ipv6Addr) -> Option<MacAddr> {
        c.neigh(NET).unwrap().lookup(ip, 1_000)
    }

    #[test]
    fn a_snooped_advertisement_answers_a_local_solicitation() {
        let (c, s) = suppressor(true);
        let mut ctr = Counters::default();
        let ns = Nd::solicit(IP_B).frame();
        assert!(answer(&s, 0, &ns, &mut ctr).is_none(), "unknown: flooded");
        s.snoop_remote(Timestamp::ZERO, NET, &Nd::advert().frame(), &mut ctr);
        assert_eq!((ctr.neigh_learned, bound(&c, IP_B)), (1, Some(MAC_B)));

        let mut t = Recorder::<false>::default();
        let mut g = Generated::new();
        let at = Timestamp(1000);
        assert!(s.answer_local_traced(at, NET, &ns, &mut g, &mut ctr, &mut t));
        assert_eq!(ctr.nd_suppressed, 1);
        assert_eq!(
            t.steps(),
            [Step::NdSuppress {
                target: IP_B,
                answer: Some(Mac(MAC_B))
            }]
        );
        // The advertisement, read back by etherparse.
        let (_, na) = g.iter().next().unwrap();
        let p = SlicedPacket::from_ethernet(na).unwrap();
        let eth = p.link.as_ref().unwrap().to_header().unwrap();
        let eth = eth.ethernet2().unwrap();
        assert_eq!((eth.destination, eth.source), (MAC_A.0, MAC_B.0));
        let Some(NetSlice::Ipv6(ip)) = &p.net else {
            panic!("not IPv6")
        };
        let h = ip.header();
        assert_eq!((h.source_addr(), h.destination_addr()), (IP_B, IP_A));
        assert_eq!(h.hop_limit(), 255);
        let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
            panic!("not ICMPv6")
        };
        assert!(icmp.is_checksum_valid(h.source(), h.destination()));
        assert_eq!(
            icmp.icmp_type(),
            Icmpv6Type::NeighborAdvertisement(NeighborAdvertisementHeader {
                router: false,
                solicited: true,
                r#override: true,
            })
        );
        let Ok(Icmpv6PayloadSlice::NeighborAdvertisement(body)) = icmp.payload_slice() else {
            panic!("no advertisement body")
        };
        assert_eq!(body.target_address(), IP_B);
        let opts: Vec<_> = body.options_iterator().collect();
        let [Ok(NdpOptionSlice::TargetLinkLayerAddress(o))] = opts.as_slice() else {
            panic!("{opts:?}")
        };
        assert_eq!(o.link_layer_address(), MAC_B.0);
    }

    /// scapy's advertisement of fd00::2 and solicitation for it from fd00::1 (golden vectors,
    /// written by scapy 2.5: `Ether()/IPv6(hlim=255)/ICMPv6ND_NA(S=1, O=1)/
    /// ICMPv6NDOptDstLLAddr()` and `.../ICMPv6ND_NS()/ICMPv6NDOptSrcLLAddr()`).
    const SCAPY_NA: &str = "02000000000102000000000286dd6000000000203afffd000000000000000000000000000002\
         fd00000000000000000000000000000188001c9a60000000fd0000000000000000000000000000020201020000000002";
    const SCAPY_NS: &str = "3333ff00000202000000000186dd6000000000203afffd000000000000000000000000000001\
         ff0200000000000000000001ff00000287007d9700000000fd0000000000000000000000000000020101020000000001";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn scapys_advertisement_teaches_and_its_solicitation_is_answered() {
        let (c, s) = suppressor(true);
        let mut ctr = Counters::default();
        let b: Ipv6Addr = "fd00::2".parse().unwrap();
        s.snoop_remote(Timestamp::ZERO, NET, &unhex(SCAPY_NA), &mut ctr);
        assert_eq!(bound(&c, b), Some(MacAddr([2, 0, 0, 0, 0, 2])));
        let na = answer(&s, 0, &unhex(SCAPY_NS), &mut ctr).expect("answered");
        // The answer is scapy's advertisement, byte for byte.
        assert_eq!(na, unhex(SCAPY_NA));
    }

    #[test]
    fn a_snooped_solicitation_binds_its_source() {
        let (c, s) = suppressor(true);
        let mut ctr = Counters::default();
        // B asks about A from across the tunnel, stating its own MAC.
        let mut ns = Nd::solicit(IP_A);
        ns.eth.0 = MAC_B;
        ns.ip.0 = IP_B;
        ns.option = Some((SLLA, MAC_B));
        s.snoop_remote(Timestamp::ZERO, NET, &ns.frame(), &mut ctr);
        assert_eq!(bound(&c, IP_B), Some(MAC_B));
        assert_eq!(bound(&c, IP_A), None, "the target is not bound");
    }

    /// What a snooper must not learn from: each variant binds nothing.
    #[test]
    fn snooping_refuses_what_is_not_safe() {
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut add = |what, change: fn(&mut Nd)| {
            let mut nd = Nd::advert();
            change(&mut nd);
            cases.push((what, nd.frame()));
        };
        add("option MAC is not the frame's source", |n| {
            n.option = Some((TLLA, MacAddr([2, 0, 0, 0, 0, 0xc])))
        });
        add("no target link-layer option", |n| n.option = None);
        add("hop limit below 255", |n| n.hop_limit = 254);
        add("multicast target", |n| {
            n.target = "ff02::1".parse().unwrap()
        });
        add("unspecified target", |n| n.target = Ipv6Addr::UNSPECIFIED);
        add("loopback target", |n| n.target = Ipv6Addr::LOCALHOST);
        add("IPv4-mapped target", |n| {
            n.target = Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped()
        });
        add("solicited advertisement to a group", |n| {
            n.ip.1 = "ff02::1".parse().unwrap()
        });
        add("multicast source MAC", |n| {
            n.eth.0 = MacAddr([3, 0, 0, 0, 0, 0xb]);
            n.option = Some((TLLA, MacAddr([3, 0, 0, 0, 0, 0xb])));
        });
        let good = Nd::advert().frame();
        let mut bad_sum = good.clone();
        bad_sum[14 + 40 + 2] ^= 1;
        cases.push(("bad checksum", bad_sum));
        let mut tagged = good.clone();
        tagged.splice(12..12, [0x81, 0x00, 0, 5]);
        cases.push(("tagged", tagged));
        let mut code = good.clone();
        code[14 + 40 + 1] = 1;
        cases.push(("code 1", code));
        cases.push(("truncated", good[..good.len() - 1].to_vec()));
        for (what, f) in &cases {
            let (c, s) = suppressor(true);
            let mut ctr = Counters::default();
            s.snoop_remote(Timestamp::ZERO, NET, f, &mut ctr);
            assert!(c.neigh(NET).unwrap().is_empty(), "{what}");
            assert_eq!(ctr.neigh_learned, 0, "{what}");
        }
        let (c, s) = suppressor(false);
        s.snoop_remote(Timestamp::ZERO, NET, &good, &mut Counters::default());
        assert!(c.neigh(NET).unwrap().is_empty(), "suppression off");
    }

    /// What is left to flood: each variant is not answered though the target is known.
    #[test]
    fn answering_leaves_to_flood_what_is_not_safe() {
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut add = |what, change: fn(&mut Nd)| {
            let mut nd = Nd::solicit(IP_B);
            change(&mut nd);
            cases.push((what, nd.frame()));
        };
        add("duplicate address detection", |n| {
            n.ip.0 = Ipv6Addr::UNSPECIFIED;
            n.option = None;
        });
        add("unicast (reachability probe)", |n| {
            n.ip.1 = IP_B;
            n.eth.1 = MAC_B;
        });
        add("to the group at another MAC", |n| n.eth.1 = MAC_B);
        add("to all nodes", |n| n.ip.1 = "ff02::1".parse().unwrap());
        add("no source link-layer option", |n| n.option = None);
        add("option MAC is not the frame's source", |n| {
            n.option = Some((SLLA, MacAddr([2, 0, 0, 0, 0, 0xc])))
        });
        add("hop limit below 255", |n| n.hop_limit = 64);
        add("the asker's own address", |n| n.ip.0 = IP_B);
        add("the asker is the bound MAC", |n| {
            n.eth.0 = MAC_B;
            n.option = Some((SLLA, MAC_B));
        });
        add("unknown target", |n| {
            *n = Nd::solicit("fd00::99".parse().unwrap());
        });
        add("multicast source address", |n| {
            n.ip.0 = "ff02::2".parse().unwrap()
        });
        add("an advertisement, not a solicitation", |n| {
            *n = Nd::advert()
        });
        let good = Nd::solicit(IP_B).frame();
        let mut bad_sum = good.clone();
        bad_sum[14 + 40 + 2] ^= 1;
        cases.push(("bad checksum", bad_sum));
        let mut tagged = good.clone();
        tagged.splice(12..12, [0x81, 0x00, 0, 5]);
        cases.push(("tagged", tagged));
        cases.push(("truncated", good[..good.len() - 2].to_vec()));
        let (c, s) = suppressor(true);
        c.neigh_add(Timestamp::ZERO, Vni::new(1).unwrap(), IP_B, MAC_B)
            .unwrap();
        let mut ctr = Counters::default();
        assert!(answer(&s, 0, &good, &mut ctr).is_some(), "the good one");
        for (what, f) in &cases {
            assert!(answer(&s, 0, f, &mut ctr).is_none(), "{what}");
        }
        assert_eq!(ctr.nd_suppressed, 1);
        let (c, s) = suppressor(false);
        c.neigh_add(Timestamp::ZERO, Vni::new(1).unwrap(), IP_B, MAC_B)
            .unwrap();
        assert!(answer(&s, 0, &good, &mut ctr).is_none(), "suppression off");
    }

    #[test]
    fn bindings_age_and_static_ones_win() {
        let (c, s) = suppressor(true);
        let mut ctr = Counters::default();
        let ns = Nd::solicit(IP_B).frame();
        s.snoop_remote(Timestamp::ZERO, NET, &Nd::advert().frame(), &mut ctr);
        assert!(answer(&s, 300, &ns, &mut ctr).is_some());
        assert!(answer(&s, 301, &ns, &mut ctr).is_none(), "aged out");
        // A static binding is answered with its MAC whatever is snooped.
        let other = MacAddr([2, 0, 0, 0, 0, 0xc]);
        c.neigh_add(Timestamp::ZERO, Vni::new(1).unwrap(), IP_B, other)
            .unwrap();
        s.snoop_remote(Timestamp::ZERO, NET, &Nd::advert().frame(), &mut ctr);
        let na = answer(&s, 400, &ns, &mut ctr).unwrap();
        assert_eq!(&na[6..12], &other.0);
    }

    /// An advertisement without the override flag binds a new address but never moves a live
    /// binding to another MAC; one with it does (counted as a MAC change).
    #[test]
    fn only_an_overriding_advertisement_moves_a_binding() {
        let (c, s) = suppressor(true);
        let mut ctr = Counters::default();
        let other = MacAddr([2, 0, 0, 0, 0, 0xc]);
        let advert = |mac: MacAddr, overrides: bool| {
            let mut n = Nd::advert();
            n.eth.0 = mac;
            n.option = Some((TLLA, mac));
            n.advert = Some(NeighborAdvertisementHeader {
                router: false,
                solicited: true,
                r#override: overrides,
            });
            n.frame()
        };
        s.snoop_remote(Timestamp::ZERO, NET, &advert(MAC_B, false), &mut ctr);
        assert_eq!(bound(&c, IP_B), Some(MAC_B), "a new binding");
        s.snoop_remote(Timestamp::ZERO, NET, &advert(other, false), &mut ctr);
        assert_eq!(bound(&c, IP_B), Some(MAC_B), "not moved");
        s.snoop_remote(Timestamp::ZERO, NET, &advert(other, true), &mut ctr);
        assert_eq!(bound(&c, IP_B), Some(other), "moved");
        assert_eq!((ctr.neigh_learned, ctr.neigh_mac_changes), (1, 1));
    }

    proptest! {
        /// Any bytes, and any change to a valid solicitation or advertisement: no panic, and
        /// an answer only for a valid solicitation (checked by etherparse's checksum).
        #[test]
        fn never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..160),
            at in 0usize..100,
            byte in any::<u8>(),
            cut in 0usize..100,
        ) {
            let (c, s) = suppressor(true);
            c.neigh_add(Timestamp::ZERO, Vni::new(1).unwrap(), IP_B, MAC_B).unwrap();
            let mut ctr = Counters::default();
            let mut frames = vec![bytes];
            for mut f in [Nd::solicit(IP_B).frame(), Nd::advert().frame()] {
                if let Some(b) = f.get_mut(at) {
                    *b = byte;
                }
                f.truncate(f.len().saturating_sub(cut));
                frames.push(f);
            }
            for f in &frames {
                s.snoop_remote(Timestamp::ZERO, NET, f, &mut ctr);
                if answer(&s, 0, f, &mut ctr).is_some() {
                    let p = SlicedPacket::from_ethernet(f).unwrap();
                    let (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Icmpv6(icmp))) =
                        (&p.net, &p.transport)
                    else {
                        panic!("answered a frame that is not ICMPv6")
                    };
                    let h = ip.header();
                    prop_assert!(icmp.is_checksum_valid(h.source(), h.destination()));
                    prop_assert_eq!(icmp.icmp_type(), Icmpv6Type::NeighborSolicitation);
                }
            }
        }
    }
}
