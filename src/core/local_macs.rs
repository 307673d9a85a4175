//! MACs seen on the local devices of the networks that announce them (`announce = true` with a
//! store), and the IPv4 and IPv6 addresses seen behind each: the source MACs of frames read from
//! the device, the sender of their ARP (requests, replies, gratuitous), the address their
//! Neighbor Discovery states (a solicitation's source, an advertisement's target, when its
//! link-layer option is the frame's source) and the IP source of their packets, with when each
//! was last seen. The daemon publishes them so that remote VTEPs install the MACs as FDB entries
//! and the addresses as ARP/ND suppression bindings before any traffic (what EVPN route type 2
//! does), and withdraws each when it ages out like a learned entry.
//!
//! On the packet path a frame of a known MAC costs one lock-free lookup (and a relaxed store at
//! most once a second); ARP and ND, and an IP packet when its MAC is new or refreshed (so at most
//! once a second per MAC), one more for the binding; a new MAC or binding one insert, up to a cap
//! each. The control plane lists and ages them.

use super::fdb::FdbKey;
use super::ndisc::{self, NdMessage};
use super::neigh::usable_neigh;
use encap::arp::{ArpPacket, ArpRepr};
use encap::ethernet::{EthernetFrame, ethertype};
use encap::{MacAddr, Vni};
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// How much older than `now` a last-seen time must be before a frame stores it again (so that a
/// busy MAC does not write its cache line on every frame).
const REFRESH_MS: u64 = 1000;

/// What [`LocalMacs::seen`] did with a MAC (or a binding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Already known, its last-seen time recent enough.
    Known,
    /// Already known, its last-seen time stored again.
    Refreshed,
    /// New, now recorded.
    New,
    /// New, not recorded: the table is full.
    Full,
}

/// An address seen behind a local MAC: (network and MAC, address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct BindKey(FdbKey, IpAddr);

/// Keys with the time each was last seen (ms), at most `cap` of them.
#[derive(Debug)]
struct Recent<K: Hash + Eq> {
    map: papaya::HashMap<K, AtomicU64, ahash::RandomState>,
    len: AtomicUsize,
    cap: usize,
}

impl<K: Hash + Eq + Copy> Recent<K> {
    fn new(cap: usize) -> Recent<K> {
        Recent {
            map: papaya::HashMap::builder()
                .hasher(ahash::RandomState::new())
                .build(),
            len: AtomicUsize::new(0),
            cap,
        }
    }

    #[inline]
    fn seen(&self, key: K, now_ms: u64) -> Seen {
        let guard = self.map.guard();
        if let Some(t) = self.map.get(&key, &guard) {
            if now_ms.saturating_sub(t.load(Relaxed)) < REFRESH_MS {
                return Seen::Known;
            }
            t.store(now_ms, Relaxed);
            return Seen::Refreshed;
        }
        let reserved = self
            .len
            .fetch_update(Relaxed, Relaxed, |n| (n < self.cap).then_some(n + 1))
            .is_ok();
        if !reserved {
            return Seen::Full;
        }
        if self
            .map
            .try_insert(key, AtomicU64::new(now_ms), &guard)
            .is_err()
        {
            // Another worker recorded it first.
            self.len.fetch_sub(1, Relaxed);
            return Seen::Known;
        }
        Seen::New
    }

    /// Every key with its last-seen time for which `live(key, last seen)` holds.
    fn live(&self, live: impl Fn(&K, u64) -> bool) -> Vec<(K, u64)> {
        let guard = self.map.guard();
        self.map
            .iter(&guard)
            .map(|(k, t)| (*k, t.load(Relaxed)))
            .filter(|(k, t)| live(k, *t))
            .collect()
    }

    /// Removes the keys for which `stale(key, last seen)` holds; returns how many.
    fn expire(&self, stale: impl Fn(&K, u64) -> bool) -> usize {
        let guard = self.map.guard();
        let keys: Vec<K> = self.live(&stale).into_iter().map(|(k, _)| k).collect();
        let mut removed = 0;
        for k in keys {
            // Re-checked: a frame since the scan keeps it.
            if let Ok(Some(_)) = self
                .map
                .remove_if(&k, |k, t| stale(k, t.load(Relaxed)), &guard)
            {
                self.len.fetch_sub(1, Relaxed);
                removed += 1;
            }
        }
        removed
    }
}

/// What one frame from an announcing network's device taught.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSeen {
    /// Its source MAC (`None`: not a unicast one, nothing recorded).
    pub mac: Option<Seen>,
    /// An address behind that MAC (`None`: none looked at).
    pub ip: Option<Seen>,
}

/// A local MAC that is live, with the addresses live behind it (sorted, IPv4 first).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalMac {
    /// Its network.
    pub vni: Vni,
    /// The MAC.
    pub mac: MacAddr,
    /// The addresses seen behind it (each address behind the MAC that sent it last).
    pub ips: Vec<IpAddr>,
}

/// The local MACs of every announcing network: (VNI, MAC) -> last seen (ms), and the address
/// bindings behind them: (VNI, MAC, address) -> last seen.
#[derive(Debug)]
pub struct LocalMacs {
    macs: Recent<FdbKey>,
    ips: Recent<BindKey>,
}

/// The address a frame from `src` says is behind it: the ARP sender (when the frame's source is
/// the sender), the address ND states with the frame's source as its link-layer address, or,
/// when `ip_source`, an IPv4 or IPv6 packet's source. Never a loopback or link-local one.
fn address_of(frame: &[u8], src: MacAddr, ip_source: bool) -> Option<IpAddr> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.is_tagged() {
        return None;
    }
    let ip = match eth.ethertype() {
        ethertype::ARP => {
            let a = ArpPacket::new_checked(eth.payload())
                .and_then(|p| ArpRepr::parse(&p))
                .ok()?;
            (a.sender_mac == src).then_some(IpAddr::V4(a.sender_ip))?
        }
        ethertype::IPV4 if ip_source => {
            let b: [u8; 4] = eth.payload().get(12..16)?.try_into().ok()?;
            IpAddr::V4(Ipv4Addr::from(b))
        }
        ethertype::IPV6 => match ndisc::parse(frame).map(|nd| (nd.src, nd.msg)) {
            Some((ip, NdMessage::Solicit { source_mac, .. })) if source_mac == Some(src) => {
                IpAddr::V6(ip)
            }
            Some((
                _,
                NdMessage::Advert {
                    target, target_mac, ..
                },
            )) if target_mac == Some(src) => IpAddr::V6(target),
            Some(_) => return None,
            None if ip_source && eth.payload().first()? >> 4 == 6 => {
                let b: [u8; 16] = eth.payload().get(8..24)?.try_into().ok()?;
                IpAddr::V6(Ipv6Addr::from(b))
            }
            None => return None,
        },
        _ => return None,
    };
    let link_local = match ip {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.is_unicast_link_local(),
    };
    (usable_neigh(ip) && !ip.is_loopback() && !link_local).then_some(ip)
}

impl LocalMacs {
    /// An empty table holding at most `cap` MACs and `cap` bindings.
    pub fn new(cap: usize) -> LocalMacs {
        LocalMacs {
            macs: Recent::new(cap),
            ips: Recent::new(cap),
        }
    }

    /// `mac` was the source of a frame from network `vni`'s device at `now_ms`.
    #[inline]
    pub fn seen(&self, vni: Vni, mac: MacAddr, now_ms: u64) -> Seen {
        self.macs.seen(FdbKey::new(vni, mac), now_ms)
    }

    /// `frame` came from network `vni`'s device at `now_ms`: records its source MAC (a unicast
    /// one) and the IPv4 address it shows behind that MAC (see the module documentation).
    #[inline]
    pub fn seen_frame(&self, vni: Vni, frame: &[u8], now_ms: u64) -> FrameSeen {
        let src = frame
            .get(6..)
            .and_then(MacAddr::from_bytes)
            .unwrap_or(MacAddr::ZERO);
        if !src.is_unicast() {
            return FrameSeen {
                mac: None,
                ip: None,
            };
        }
        let mac = self.seen(vni, src, now_ms);
        let ip = address_of(frame, src, mac != Seen::Known)
            .map(|ip| self.ips.seen(BindKey(FdbKey::new(vni, src), ip), now_ms));
        FrameSeen { mac: Some(mac), ip }
    }

    /// Every MAC not idle for longer than its network's ageing time (`ageing_ms`: `None` for a
    /// network that is gone), with the live addresses behind it, sorted. An address seen behind
    /// several MACs is listed behind the one that showed it last.
    pub fn live(&self, now_ms: u64, ageing_ms: impl Fn(Vni) -> Option<u64>) -> Vec<LocalMac> {
        let fresh =
            |k: &FdbKey, t: u64| ageing_ms(k.vni()).is_some_and(|a| now_ms.saturating_sub(t) <= a);
        let mut out: Vec<LocalMac> = self
            .macs
            .live(fresh)
            .into_iter()
            .map(|(k, _)| LocalMac {
                vni: k.vni(),
                mac: k.mac(),
                ips: Vec::new(),
            })
            .collect();
        out.sort_unstable();
        // (network, address) -> (last seen, MAC): the latest wins.
        let mut latest: std::collections::BTreeMap<(Vni, IpAddr), (u64, MacAddr)> =
            std::collections::BTreeMap::new();
        for (BindKey(k, ip), t) in self.ips.live(|BindKey(k, _), t| fresh(k, t)) {
            let e = latest.entry((k.vni(), ip)).or_insert((t, k.mac()));
            if (t, k.mac()) > *e {
                *e = (t, k.mac());
            }
        }
        for ((vni, ip), (_, mac)) in latest {
            if let Ok(i) = out.binary_search_by(|m| (m.vni, m.mac).cmp(&(vni, mac))) {
                out[i].ips.push(ip);
            }
        }
        out
    }

    /// Removes the MACs and bindings idle for longer than their network's ageing time (all of a
    /// network that is gone); returns how many MACs.
    pub fn expire(&self, now_ms: u64, ageing_ms: impl Fn(Vni) -> Option<u64>) -> usize {
        let stale =
            |k: &FdbKey, t: u64| ageing_ms(k.vni()).is_none_or(|a| now_ms.saturating_sub(t) > a);
        self.ips.expire(|BindKey(k, _), t| stale(k, t));
        self.macs.expire(stale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_recorded_refreshed_capped_and_aged() {
        let t = LocalMacs::new(2);
        let v = Vni::new(42).unwrap();
        let (a, b, c) = (
            MacAddr([2, 0, 0, 0, 0, 1]),
            MacAddr([2, 0, 0, 0, 0, 2]),
            MacAddr([2, 0, 0, 0, 0, 3]),
        );
        let macs = |l: Vec<LocalMac>| l.into_iter().map(|m| (m.vni, m.mac)).collect::<Vec<_>>();
        assert_eq!(t.seen(v, a, 1000), Seen::New);
        assert_eq!(t.seen(v, a, 1500), Seen::Known);
        assert_eq!(t.seen(v, b, 1000), Seen::New);
        assert_eq!(t.seen(v, c, 1000), Seen::Full, "the cap");
        let ageing = |_| Some(10_000);
        // a refreshed at 12000 (more than a second after 1000); b not seen again.
        assert_eq!(t.seen(v, a, 12_000), Seen::Refreshed);
        assert_eq!(macs(t.live(12_000, ageing)), [(v, a)]);
        assert_eq!(t.expire(12_000, ageing), 1);
        assert_eq!(t.seen(v, c, 12_000), Seen::New, "room again");
        assert_eq!(macs(t.live(12_000, ageing)), [(v, a), (v, c)]);
        assert_eq!(t.expire(12_000, |_| None), 2, "a network gone: all of it");
        assert!(t.live(12_000, ageing).is_empty());
    }

    /// An Ethernet frame from `src` of `ethertype` carrying `payload`.
    fn frame(src: MacAddr, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&src.0);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// An ARP packet (request or reply) from `mac`/`ip` asking about 10.9.0.99.
    fn arp(op: u16, mac: MacAddr, ip: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0, 1, 8, 0, 6, 4];
        p.extend_from_slice(&op.to_be_bytes());
        p.extend_from_slice(&mac.0);
        p.extend_from_slice(&ip);
        p.extend_from_slice(&[0; 6]);
        p.extend_from_slice(&[10, 9, 0, 99]);
        p
    }

    /// An IPv4 header (enough of one) from `src`.
    fn ipv4(src: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&[10, 9, 0, 99]);
        p
    }

    /// Bindings come from ARP whose sender is the frame's source (requests, replies, gratuitous)
    /// and from the IPv4 source of a frame whose MAC is new or due a refresh; an address that
    /// moves to another MAC is listed behind the newer one; bindings age with their MAC.
    #[test]
    fn addresses_behind_the_macs_come_from_arp_and_ipv4() {
        let t = LocalMacs::new(8);
        let v = Vni::new(42).unwrap();
        let (a, b) = (MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
        let ip = |n: u8| IpAddr::V4(Ipv4Addr::new(10, 9, 0, n));
        let seen = |f: &[u8], now| t.seen_frame(v, f, now);
        // A's gratuitous ARP, then an IPv4 packet while A is known: the ARP taught 10.9.0.1.
        let r = seen(&frame(a, 0x0806, &arp(1, a, [10, 9, 0, 1])), 1000);
        assert_eq!((r.mac, r.ip), (Some(Seen::New), Some(Seen::New)));
        assert_eq!(seen(&frame(a, 0x0800, &ipv4([10, 9, 0, 5])), 1100).ip, None);
        // B: a new MAC's IPv4 source is taken; an ARP reply naming another sender MAC is not.
        assert_eq!(
            seen(&frame(b, 0x0800, &ipv4([10, 9, 0, 2])), 1200).ip,
            Some(Seen::New)
        );
        assert_eq!(
            seen(&frame(b, 0x0806, &arp(2, a, [10, 9, 0, 7])), 1300).ip,
            None
        );
        // Nothing from a probe (sender 0.0.0.0), a broadcast source, or multicast.
        assert_eq!(
            seen(&frame(b, 0x0806, &arp(1, b, [0, 0, 0, 0])), 1300).ip,
            None
        );
        let live = t.live(1300, |_| Some(10_000));
        let ips: Vec<_> = live.iter().map(|m| (m.mac, m.ips.clone())).collect();
        assert_eq!(ips, [(a, vec![ip(1)]), (b, vec![ip(2)])]);
        // 10.9.0.1 moves to B (its ARP reply): listed behind B now, not A.
        seen(&frame(b, 0x0806, &arp(2, b, [10, 9, 0, 1])), 2000);
        let live = t.live(2000, |_| Some(10_000));
        let ips: Vec<_> = live.iter().map(|m| (m.mac, m.ips.clone())).collect();
        assert_eq!(ips, [(a, vec![]), (b, vec![ip(1), ip(2)])]);
        // B refreshed at 11500 (its IPv4 source again); A and A's binding age out.
        seen(&frame(b, 0x0800, &ipv4([10, 9, 0, 2])), 11_500);
        assert_eq!(t.expire(11_500, |_| Some(10_000)), 1);
        let live = t.live(11_500, |_| Some(10_000));
        assert_eq!(live.len(), 1);
        assert_eq!((live[0].mac, live[0].ips.clone()), (b, vec![ip(1), ip(2)]));
    }

    /// IPv6 bindings come from ND whose link-layer option is the frame's source (a
    /// solicitation's source, an advertisement's target) and from the IPv6 source of a frame
    /// whose MAC is new or due a refresh; never link-local ones, nor DAD probes.
    #[test]
    fn ipv6_addresses_come_from_nd_and_ipv6_sources() {
        use etherparse::icmpv6::NeighborAdvertisementHeader;
        use etherparse::{Icmpv6Type, PacketBuilder};
        let t = LocalMacs::new(8);
        let v = Vni::new(42).unwrap();
        let (a, b, c) = (
            MacAddr([2, 0, 0, 0, 0, 1]),
            MacAddr([2, 0, 0, 0, 0, 2]),
            MacAddr([2, 0, 0, 0, 0, 3]),
        );
        let ip = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let far = ip("fd00::99");
        // An ND message from `src` (IPv6 source `from`) about `target`, its option `opt`.
        let nd = |src: MacAddr, from: Ipv6Addr, advert: bool, target: Ipv6Addr, opt: MacAddr| {
            let ty = if advert {
                Icmpv6Type::NeighborAdvertisement(NeighborAdvertisementHeader {
                    router: false,
                    solicited: false,
                    r#override: true,
                })
            } else {
                Icmpv6Type::NeighborSolicitation
            };
            let mut body = target.octets().to_vec();
            body.extend_from_slice(&[if advert { 2 } else { 1 }, 1]);
            body.extend_from_slice(&opt.0);
            let p = PacketBuilder::ethernet2(src.0, [0x33, 0x33, 0, 0, 0, 1])
                .ipv6(from.octets(), ip("ff02::1").octets(), 255)
                .icmpv6(ty);
            let mut f = vec![0; p.size(body.len())];
            p.write_to_slice(&mut f, &body).unwrap();
            f
        };
        let udp = |src: MacAddr, from: Ipv6Addr| {
            let p = PacketBuilder::ethernet2(src.0, c.0)
                .ipv6(from.octets(), far.octets(), 64)
                .udp(1, 2);
            let mut f = vec![0; p.size(0)];
            p.write_to_slice(&mut f, &[]).unwrap();
            f
        };
        let seen = |f: &[u8], now| t.seen_frame(v, f, now).ip;
        // A solicits (its source), B advertises itself (its target).
        assert_eq!(
            seen(&nd(a, ip("fd00::a"), false, far, a), 1000),
            Some(Seen::New)
        );
        assert_eq!(
            seen(&nd(b, far, true, ip("fd00::b"), b), 1000),
            Some(Seen::New)
        );
        // Not taught: an option naming another MAC, a DAD probe, link-local addresses.
        assert_eq!(seen(&nd(a, ip("fd00::1"), false, far, b), 1100), None);
        assert_eq!(
            seen(&nd(a, Ipv6Addr::UNSPECIFIED, false, far, a), 1100),
            None
        );
        assert_eq!(seen(&nd(b, far, true, ip("fe80::b"), b), 1100), None);
        // A new MAC's IPv6 source is taken; a known one's is not looked at.
        assert_eq!(seen(&udp(c, ip("fd00::c")), 1200), Some(Seen::New));
        assert_eq!(seen(&udp(c, ip("fd00::d")), 1300), None);
        assert_eq!(seen(&udp(c, ip("fe80::c")), 2300), None, "link-local");
        let live = t.live(2300, |_| Some(10_000));
        let ips: Vec<_> = live.iter().map(|m| (m.mac, m.ips.clone())).collect();
        let v6 = |s| IpAddr::V6(ip(s));
        assert_eq!(
            ips,
            [
                (a, vec![v6("fd00::a")]),
                (b, vec![v6("fd00::b")]),
                (c, vec![v6("fd00::c")])
            ]
        );
    }
}
