//! What the store's members mean for this daemon, and what must change to get there (pure).
//!
//! [`desired`] turns the members the store holds into the state this daemon should have
//! installed from the store: per network, the flood list (every other member of it); in IPIP
//! mode a route to each other member's prefixes (Calico's way; IPv6 ones too, protocol 41 to
//! the same underlay address); in L3 VXLAN a route to each other member's prefixes through its
//! overlay address of the prefix's family, that address bound to its MAC, and the MAC to its
//! underlay address (flannel's way). A daemon whose device has no IPv6 address leaves the IPv6
//! prefixes and routes out, as an L2 daemon leaves out every route. A network's underlay is one
//! address family: a member or an announcement whose underlay address is not of our own's
//! family can never be reached and is left out (a [`Skip`]). [`diff`] compares that with
//! what the store installed before and lists the changes; the caller applies them through the
//! control plane.

use super::keys::{Announcement, Member, Static};
use crate::config::Tunnel;
use encap::{MacAddr, Vni};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// This daemon, as far as the store's members concern it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me {
    /// Our underlay address (our own registrations are not peers; others of its family are).
    pub underlay: IpAddr,
    /// Our VXLAN port: members with another one cannot be reached and are skipped.
    pub port: u16,
    /// The mode.
    pub tunnel: Tunnel,
    /// Our networks (IPIP: VNI 0).
    pub vnis: Vec<Vni>,
    /// The prefixes we route ourselves (our own and the operator's): the store does not
    /// override them.
    pub own_prefixes: Vec<IpNet>,
    /// Whether our device has an IPv6 address (`address6`): without one, IPv6 routes and
    /// next hops are left out.
    pub ipv6: bool,
}

impl Me {
    /// Whether `p` overlaps a prefix we route ourselves.
    fn owns(&self, p: &IpNet) -> bool {
        self.own_prefixes
            .iter()
            .any(|o| o.contains(p) || p.contains(o))
    }

    /// Whether we take routes to `p` (IPv6 ones need our IPv6 address).
    fn takes(&self, p: &IpNet) -> bool {
        self.ipv6 || matches!(p, IpNet::V4(_))
    }

    /// Why `underlay` can never be reached from us: it is not of our underlay's family (one
    /// family per network, as on the command line).
    fn unreachable(&self, underlay: IpAddr) -> Option<String> {
        crate::core::UnusableRemote::other_family(self.underlay, underlay).map(|e| e.to_string())
    }
}

/// What the store says this daemon should have installed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// The store's flood list of each of our networks (every network listed, maybe empty).
    pub peers: BTreeMap<Vni, Vec<IpAddr>>,
    /// VXLAN: the members of each of our networks that take remote checksum offload (a part
    /// of its flood list; every network listed, maybe empty).
    pub remote_csum: BTreeMap<Vni, Vec<IpAddr>>,
    /// Routes: overlay prefix -> next hop (IPIP: the node's underlay address; L3 VXLAN: its
    /// overlay address of the prefix's family).
    pub routes: BTreeMap<IpNet, IpAddr>,
    /// Neighbours (L3 VXLAN: next hops; L2: announced addresses, for ARP suppression):
    /// (network, overlay address) -> MAC.
    pub neigh: BTreeMap<(Vni, IpAddr), MacAddr>,
    /// Static FDB entries (L3 VXLAN): (network, MAC) -> underlay address.
    pub fdb: BTreeMap<(Vni, MacAddr), IpAddr>,
}

impl Desired {
    /// Leaves out everything of network `vni` (a reload removed it, and it took along what the
    /// store had installed in it).
    pub fn forget(&mut self, vni: Vni) {
        self.peers.remove(&vni);
        self.remote_csum.remove(&vni);
        self.neigh.retain(|(v, _), _| *v != vni);
        self.fdb.retain(|(v, _), _| *v != vni);
    }
}

/// A member (or part of one) left out, and why: logged and counted by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    /// The member.
    pub underlay: IpAddr,
    /// Its network.
    pub vni: u32,
    /// Why (one line).
    pub why: String,
    /// Whether it lost a conflict with another member (else it could not be used).
    pub conflict: bool,
}

/// The state `members` (every registration in the store) asks of `me`, and what was left out.
/// Deterministic: where two members claim the same prefix, address or MAC, the one with the
/// lower underlay address wins.
pub fn desired<'a>(
    me: &Me,
    members: impl IntoIterator<Item = &'a Member>,
    macs: impl IntoIterator<Item = &'a Announcement>,
    statics: impl IntoIterator<Item = &'a Static>,
) -> (Desired, Vec<Skip>) {
    // IPIP has no flood lists (its core has no networks): none wanted, none set.
    let vxlan: &[Vni] = if me.tunnel.is_vxlan() { &me.vnis } else { &[] };
    let mut d = Desired {
        peers: vxlan.iter().map(|v| (*v, Vec::new())).collect(),
        remote_csum: vxlan.iter().map(|v| (*v, Vec::new())).collect(),
        ..Desired::default()
    };
    let mut skips = Vec::new();
    // The operator's keys first: they win over what members register or announce.
    for s in statics {
        match *s {
            Static::Fdb(vni, mac, remote)
                if me.tunnel.is_vxlan() && d.peers.contains_key(&vni) && remote != me.underlay =>
            {
                d.fdb.insert((vni, mac), remote);
            }
            Static::Route(p, via)
                if me.tunnel != Tunnel::L2Vxlan && me.takes(&p) && !me.owns(&p) =>
            {
                d.routes.insert(p, via);
            }
            _ => {}
        }
    }
    // By network then underlay address: the lower address is seen first and wins.
    let mut sorted: Vec<&Member> = members.into_iter().collect();
    sorted.sort_by_key(|m| (m.vni, m.underlay));
    for m in sorted {
        if m.underlay == me.underlay {
            continue;
        }
        let Ok(vni) = Vni::new(m.vni) else { continue };
        if !me.vnis.contains(&vni) {
            continue; // another network's member
        }
        let mut skip = |why: String, conflict: bool| {
            skips.push(Skip {
                underlay: m.underlay,
                vni: m.vni,
                why,
                conflict,
            })
        };
        if let Some(why) = me.unreachable(m.underlay) {
            skip(why, false);
            continue;
        }
        if me.tunnel.is_vxlan() && m.port != me.port {
            skip(
                format!("its port {} is not ours ({})", m.port, me.port),
                false,
            );
            continue;
        }
        if let Some(peers) = d.peers.get_mut(&vni) {
            peers.push(m.underlay);
        }
        if m.remcsum_rx
            && let Some(rco) = d.remote_csum.get_mut(&vni)
        {
            rco.push(m.underlay);
        }
        // The next hops of its IPv4 and its IPv6 prefixes.
        let (hop4, hop6): (IpAddr, Option<IpAddr>) = match me.tunnel {
            Tunnel::L2Vxlan => continue,
            Tunnel::L3Ipip => (m.underlay, Some(m.underlay)),
            Tunnel::L3Vxlan => {
                let (Some(address), Some(mac)) = (m.address, m.mac) else {
                    if !m.prefixes.is_empty() || !m.prefixes6.is_empty() {
                        skip("its prefixes need its address and mac".into(), false);
                    }
                    continue;
                };
                let address6 = m.address6.filter(|_| me.ipv6).map(IpAddr::V6);
                let addresses = std::iter::once(IpAddr::V4(address)).chain(address6);
                if let Some(a) = addresses.clone().find(|a| d.neigh.contains_key(&(vni, *a))) {
                    skip(format!("address {a} is another member's"), true);
                    continue;
                }
                if d.fdb.contains_key(&(vni, mac)) {
                    skip(format!("MAC {mac} is another member's"), true);
                    continue;
                }
                d.neigh.extend(addresses.map(|a| ((vni, a), mac)));
                d.fdb.insert((vni, mac), m.underlay);
                (address.into(), address6)
            }
        };
        let v4 = m.prefixes.iter().map(|p| (IpNet::V4(*p), Some(hop4)));
        let v6 = m.prefixes6.iter().map(|p| (IpNet::V6(*p), hop6));
        for (p, hop) in v4.chain(v6).filter(|(p, _)| me.takes(p)) {
            let Some(hop) = hop else {
                skip(format!("prefix {p} needs its address6"), false);
                continue;
            };
            if me.owns(&p) {
                skip(format!("prefix {p} overlaps one of ours"), true);
                continue;
            }
            match d.routes.entry(p) {
                std::collections::btree_map::Entry::Occupied(_) => skip(
                    format!("prefix {p} is taken (another member's, or a route key)"),
                    true,
                ),
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(hop);
                }
            }
        }
    }
    announced(me, macs, &mut d, &mut skips);
    (d, skips)
}

/// L2: the MACs other daemons announced in our networks, as FDB entries toward them, and the
/// addresses behind them as neighbours; where two announce the same MAC (or address), the lower
/// underlay address wins (ours included: then none is installed) and the others are conflicts.
fn announced<'a>(
    me: &Me,
    macs: impl IntoIterator<Item = &'a Announcement>,
    d: &mut Desired,
    skips: &mut Vec<Skip>,
) {
    if me.tunnel != Tunnel::L2Vxlan {
        return;
    }
    // Those of our networks; one from an underlay of the other family is left out before the
    // conflicts are settled (it can win nothing: it cannot be reached).
    let mut sorted: Vec<&Announcement> = Vec::new();
    for a in macs {
        if !Vni::new(a.vni).is_ok_and(|v| d.peers.contains_key(&v)) {
            continue; // another network's
        }
        match me.unreachable(a.underlay) {
            Some(why) => skips.push(Skip {
                underlay: a.underlay,
                vni: a.vni,
                why: format!("MAC {}: {why}", a.mac),
                conflict: false,
            }),
            None => sorted.push(a),
        }
    }
    sorted.sort_by_key(|a| (a.vni, a.mac, a.underlay));
    let mut winner: Option<(u32, MacAddr)> = None;
    for a in sorted.iter().copied() {
        let Ok(vni) = Vni::new(a.vni) else { continue };
        if winner == Some((a.vni, a.mac)) {
            skips.push(Skip {
                underlay: a.underlay,
                vni: a.vni,
                why: format!("MAC {} is announced by a lower address too", a.mac),
                conflict: true,
            });
            continue;
        }
        winner = Some((a.vni, a.mac));
        match d.fdb.entry((vni, a.mac)) {
            std::collections::btree_map::Entry::Occupied(_) => skips.push(Skip {
                underlay: a.underlay,
                vni: a.vni,
                why: format!("MAC {} has a static entry in the store", a.mac),
                conflict: true,
            }),
            std::collections::btree_map::Entry::Vacant(v) => {
                if a.underlay != me.underlay {
                    v.insert(a.underlay);
                }
            }
        }
    }
    // The addresses behind the MACs, for ARP and ND suppression: each to the MAC of the lowest
    // underlay address announcing it (ours included: then none), where that MAC's entry goes
    // to that address.
    let mut bound: BTreeMap<(Vni, IpAddr), (IpAddr, MacAddr)> = BTreeMap::new();
    let mut ordered: Vec<&Announcement> = sorted;
    ordered.sort_by_key(|a| (a.underlay, a.mac));
    for a in ordered {
        let Ok(vni) = Vni::new(a.vni) else { continue };
        for ip in &a.ips {
            if let Some((u, m)) = bound.get(&(vni, *ip)) {
                skips.push(Skip {
                    underlay: a.underlay,
                    vni: a.vni,
                    why: format!("{ip} is announced behind {m} of {u} too"),
                    conflict: true,
                });
                continue;
            }
            bound.insert((vni, *ip), (a.underlay, a.mac));
        }
    }
    for ((vni, ip), (underlay, mac)) in bound {
        if underlay != me.underlay && d.fdb.get(&(vni, mac)) == Some(&underlay) {
            d.neigh.insert((vni, ip), mac);
        }
    }
}

/// The changes that turn what the store installed (`have`) into `want`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Networks whose store flood list is replaced, with the new list.
    pub peers: Vec<(Vni, Vec<IpAddr>)>,
    /// Networks whose list of peers taking remote checksum offload is replaced, with the new
    /// list.
    pub remote_csum: Vec<(Vni, Vec<IpAddr>)>,
    /// Routes removed.
    pub route_del: Vec<IpNet>,
    /// Routes added or changed.
    pub route_set: Vec<(IpNet, IpAddr)>,
    /// Neighbours removed.
    pub neigh_del: Vec<(Vni, IpAddr)>,
    /// Neighbours added or changed.
    pub neigh_set: Vec<((Vni, IpAddr), MacAddr)>,
    /// FDB entries removed.
    pub fdb_del: Vec<(Vni, MacAddr)>,
    /// FDB entries added or changed.
    pub fdb_set: Vec<((Vni, MacAddr), IpAddr)>,
}

impl Changes {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }
}

/// The lists of `want` that differ from `have`'s, and an empty one for each network only
/// `have` lists (a reload removed it).
fn lists(
    have: &BTreeMap<Vni, Vec<IpAddr>>,
    want: &BTreeMap<Vni, Vec<IpAddr>>,
) -> Vec<(Vni, Vec<IpAddr>)> {
    let gone = have
        .keys()
        .filter(|v| !want.contains_key(v))
        .map(|v| (*v, Vec::new()));
    want.iter()
        .filter(|(v, list)| have.get(v) != Some(list))
        .map(|(v, list)| (*v, list.clone()))
        .chain(gone)
        .collect()
}

/// What differs between `have` and `want`, map by map.
pub fn diff(have: &Desired, want: &Desired) -> Changes {
    fn split<K: Ord + Copy, V: PartialEq + Copy>(
        have: &BTreeMap<K, V>,
        want: &BTreeMap<K, V>,
    ) -> (Vec<K>, Vec<(K, V)>) {
        let del = have
            .keys()
            .filter(|k| !want.contains_key(k))
            .copied()
            .collect();
        let set = want
            .iter()
            .filter(|(k, v)| have.get(k) != Some(v))
            .map(|(k, v)| (*k, *v))
            .collect();
        (del, set)
    }
    let peers = lists(&have.peers, &want.peers);
    let remote_csum = lists(&have.remote_csum, &want.remote_csum);
    let (route_del, route_set) = split(&have.routes, &want.routes);
    let (neigh_del, neigh_set) = split(&have.neigh, &want.neigh);
    let (fdb_del, fdb_set) = split(&have.fdb, &want.fdb);
    Changes {
        peers,
        remote_csum,
        route_del,
        route_set,
        neigh_del,
        neigh_set,
        fdb_del,
        fdb_set,
    }
}

#[cfg(test)]
mod tests {
    use super::super::keys::{Announcement, Static, VERSION};
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))
    }
    fn vni(v: u32) -> Vni {
        Vni::new(v).unwrap()
    }
    /// A prefix (`Ipv4Net`, `Ipv6Net` or `IpNet`, as the use needs).
    fn net<N: std::str::FromStr>(s: &str) -> N
    where
        N::Err: std::fmt::Debug,
    {
        s.parse().unwrap()
    }
    fn member(n: u8, vni: u32) -> Member {
        Member {
            version: VERSION,
            underlay: ip(n),
            vni,
            port: 4789,
            mac: None,
            address: None,
            address6: None,
            prefixes: Vec::new(),
            prefixes6: Vec::new(),
            remcsum_rx: false,
        }
    }
    fn me(tunnel: Tunnel, vnis: &[u32]) -> Me {
        Me {
            underlay: ip(1),
            port: 4789,
            tunnel,
            vnis: vnis.iter().map(|v| vni(*v)).collect(),
            own_prefixes: vec![net("10.244.1.0/24"), net("fd00:244:1::/64")],
            ipv6: true,
        }
    }

    /// L2: each of our networks floods to the other members of it, sorted; ourselves, other
    /// networks and members on another port are left out (the last reported).
    #[test]
    fn l2_flood_lists_are_the_other_members() {
        let mut other_port = member(5, 42);
        other_port.port = 8472;
        let ms = [
            member(3, 42),
            member(1, 42),
            member(2, 42),
            member(4, 7),
            other_port,
        ];
        let (d, skips) = desired(&me(Tunnel::L2Vxlan, &[42, 43]), &ms, &[], &[]);
        assert_eq!(d.peers[&vni(42)], [ip(2), ip(3)]);
        assert!(
            d.peers[&vni(43)].is_empty(),
            "a network nobody else has: empty"
        );
        assert!(d.routes.is_empty() && d.neigh.is_empty() && d.fdb.is_empty());
        assert_eq!(skips.len(), 1);
        assert!(skips[0].why.contains("port 8472") && !skips[0].conflict);
    }

    /// Remote checksum offload is negotiated per peer: the members of a network that take it
    /// are listed apart (a part of its flood list); other networks' members, members left out
    /// of the flood list, and IPIP (no VXLAN) list none; a change is a change of its own.
    #[test]
    fn members_taking_remote_checksum_offload_are_listed() {
        let takes = |n: u8, vni: u32| Member {
            remcsum_rx: true,
            ..member(n, vni)
        };
        let mut other_port = takes(5, 42);
        other_port.port = 8472;
        let ms = [
            takes(3, 42),
            member(2, 42),
            takes(4, 43),
            takes(6, 7),
            other_port,
        ];
        let (d, _) = desired(&me(Tunnel::L2Vxlan, &[42, 43]), &ms, &[], &[]);
        assert_eq!(d.peers[&vni(42)], [ip(2), ip(3)]);
        assert_eq!(d.remote_csum[&vni(42)], [ip(3)]);
        assert_eq!(d.remote_csum[&vni(43)], [ip(4)]);
        let (ipip, _) = desired(&me(Tunnel::L3Ipip, &[0]), &[takes(3, 0)], &[], &[]);
        assert!(ipip.peers.is_empty() && ipip.remote_csum.is_empty());
        let mut want = d.clone();
        want.remote_csum.insert(vni(42), vec![]);
        want.remote_csum.remove(&vni(43));
        let c = diff(&d, &want);
        assert!(c.peers.is_empty(), "{c:?}");
        assert_eq!(c.remote_csum, [(vni(42), vec![]), (vni(43), vec![])]);
    }

    /// IPIP: a route to each other node's prefixes; a prefix two nodes claim goes to the lower
    /// address, one overlapping ours is refused; no flood lists.
    #[test]
    fn ipip_routes_go_to_the_nodes() {
        let mut a = member(3, 0);
        a.prefixes = vec![net("10.244.3.0/26"), net("10.244.9.0/24")];
        let mut b = member(2, 0);
        b.prefixes = vec![net("10.244.9.0/24"), net("10.244.1.64/26")];
        let (d, skips) = desired(&me(Tunnel::L3Ipip, &[0]), &[a, b], &[], &[]);
        assert_eq!(
            d.routes.into_iter().collect::<Vec<_>>(),
            [(net("10.244.3.0/26"), ip(3)), (net("10.244.9.0/24"), ip(2))]
        );
        assert!(d.peers.is_empty(), "IPIP has no flood lists");
        let why: Vec<_> = skips.iter().map(|s| (s.underlay, s.conflict)).collect();
        assert_eq!(why, [(ip(2), true), (ip(3), true)], "{skips:?}");
    }

    /// L3 VXLAN: prefix via the member's overlay address, that address bound to its MAC, the
    /// MAC to its underlay address; the member floods too (ARP).
    #[test]
    fn l3_vxlan_installs_route_neighbour_and_fdb() {
        let mut a = member(2, 1);
        a.mac = Some(MacAddr([2, 0, 0, 0, 0, 2]));
        a.address = Some(Ipv4Addr::new(10, 244, 2, 0));
        a.prefixes = vec![net("10.244.2.0/24")];
        let mut dup = member(3, 1);
        dup.mac = Some(MacAddr([2, 0, 0, 0, 0, 2]));
        dup.address = Some(Ipv4Addr::new(10, 244, 3, 0));
        let (d, skips) = desired(&me(Tunnel::L3Vxlan, &[1]), &[dup, a], &[], &[]);
        assert_eq!(d.peers[&vni(1)], [ip(2), ip(3)]);
        assert_eq!(
            d.routes[&net("10.244.2.0/24")],
            Ipv4Addr::new(10, 244, 2, 0)
        );
        assert_eq!(
            d.neigh[&(vni(1), Ipv4Addr::new(10, 244, 2, 0).into())],
            MacAddr([2, 0, 0, 0, 0, 2])
        );
        assert_eq!(d.fdb[&(vni(1), MacAddr([2, 0, 0, 0, 0, 2]))], ip(2));
        assert_eq!(skips.len(), 1, "the second member with the same MAC");
        assert!(skips[0].conflict && skips[0].underlay == ip(3));
    }

    /// L2 announcements: another host's MAC in our network becomes an FDB entry toward it; the
    /// same MAC announced twice goes to the lower address (none when that is us), the other
    /// counted as a conflict; other networks' MACs are left out.
    #[test]
    fn announced_macs_become_fdb_entries() {
        let ann = |n: u8, vni: u32, m: u8| Announcement {
            version: VERSION,
            vni,
            mac: MacAddr([2, 0, 0, 0, 0, m]),
            underlay: ip(n),
            ips: Vec::new(),
        };
        let macs = [
            ann(3, 42, 7),
            ann(2, 42, 7),
            ann(2, 42, 8),
            ann(1, 42, 9),
            ann(4, 42, 9),
            ann(2, 5, 1),
        ];
        let (d, skips) = desired(&me(Tunnel::L2Vxlan, &[42]), &[], &macs, &[]);
        let fdb: Vec<_> = d.fdb.into_iter().collect();
        let key = |m: u8| (vni(42), MacAddr([2, 0, 0, 0, 0, m]));
        assert_eq!(
            fdb,
            [(key(7), ip(2)), (key(8), ip(2))],
            "9 is ours (1 is lower than 4)"
        );
        let lost: Vec<_> = skips.iter().map(|s| (s.underlay, s.conflict)).collect();
        assert_eq!(lost, [(ip(3), true), (ip(4), true)]);
        // IPIP and L3 VXLAN take no announcements.
        let (d, _) = desired(&me(Tunnel::L3Vxlan, &[42]), &[], &macs, &[]);
        assert!(d.fdb.is_empty());
    }

    /// The operator's keys win: a static FDB entry over an announcement of the same MAC, a
    /// route over a member's prefix; a route key is for the L3 modes only.
    #[test]
    fn the_operators_keys_win() {
        let mac = MacAddr([2, 0, 0, 0, 0, 7]);
        let ann = Announcement {
            version: VERSION,
            vni: 42,
            mac,
            underlay: ip(3),
            ips: vec![Ipv4Addr::new(10, 9, 0, 3).into()],
        };
        let statics = [
            Static::Fdb(vni(42), mac, ip(9)),
            Static::Route(net("10.244.9.0/24"), ip(9)),
        ];
        let (d, skips) = desired(&me(Tunnel::L2Vxlan, &[42]), &[], &[ann], &statics);
        assert_eq!(d.fdb[&(vni(42), mac)], ip(9));
        assert!(
            d.neigh.is_empty(),
            "the MAC goes elsewhere: not its address either"
        );
        assert!(d.routes.is_empty(), "no routes in L2");
        assert_eq!(skips.len(), 1);
        let mut m = member(2, 0);
        m.prefixes = vec![net("10.244.9.0/24")];
        let (d, skips) = desired(&me(Tunnel::L3Ipip, &[0]), &[m], &[], &statics);
        assert_eq!(d.routes[&net("10.244.9.0/24")], ip(9));
        assert!(d.fdb.is_empty(), "no FDB in IPIP");
        assert!(skips[0].why.contains("taken"), "{skips:?}");
    }

    /// L2: the addresses announced behind a MAC become its neighbours (ARP suppression); one
    /// announced by two hosts goes to the lower address (none when that is us), counted.
    #[test]
    fn announced_addresses_become_neighbours() {
        let a = |n: u8, m: u8, ips: &[u8]| Announcement {
            version: VERSION,
            vni: 42,
            mac: MacAddr([2, 0, 0, 0, 0, m]),
            underlay: ip(n),
            ips: ips
                .iter()
                .map(|i| Ipv4Addr::new(10, 9, 0, *i).into())
                .collect(),
        };
        let macs = [
            a(3, 3, &[3, 7]),
            a(2, 2, &[2, 7]),
            a(1, 1, &[1, 8]),
            a(4, 4, &[8]),
        ];
        let (d, skips) = desired(&me(Tunnel::L2Vxlan, &[42]), &[], &macs, &[]);
        let neigh: Vec<_> = d
            .neigh
            .iter()
            .map(|((_, i), m)| match i {
                IpAddr::V4(i) => (i.octets()[3], m.0[5]),
                IpAddr::V6(i) => (i.octets()[15], m.0[5]),
            })
            .collect();
        assert_eq!(neigh, [(2, 2), (3, 3), (7, 2)], "8 is ours, 1 is us");
        let lost: Vec<_> = skips.iter().map(|s| (s.underlay, s.conflict)).collect();
        assert_eq!(lost, [(ip(3), true), (ip(4), true)], "{skips:?}");
    }

    /// A dual-stack member: its IPv4 and IPv6 prefixes both routed, IPIP to its underlay
    /// address (IPv6 as protocol 41), L3 VXLAN via its overlay address of the prefix's family,
    /// both addresses bound to its MAC. A daemon without an IPv6 address takes only the IPv4
    /// ones (nothing skipped: it has no use for them).
    #[test]
    fn ipv6_prefixes_are_routed_by_the_mode() {
        let six = |s: &str| IpAddr::V6(s.parse().unwrap());
        let mut a = member(2, 0);
        a.prefixes = vec![net("10.244.2.0/24")];
        a.prefixes6 = vec![net("fd00:244:2::/64")];
        let (d, skips) = desired(&me(Tunnel::L3Ipip, &[0]), &[a.clone()], &[], &[]);
        let want: Vec<(IpNet, IpAddr)> = vec![
            (net("10.244.2.0/24"), ip(2)),
            (net("fd00:244:2::/64"), ip(2)),
        ];
        assert_eq!(d.routes.into_iter().collect::<Vec<_>>(), want);
        assert!(skips.is_empty(), "{skips:?}");
        let v4_only = Me {
            ipv6: false,
            ..me(Tunnel::L3Ipip, &[0])
        };
        let (d, skips) = desired(&v4_only, &[a], &[], &[]);
        assert_eq!(d.routes.into_keys().collect::<Vec<_>>(), [want[0].0]);
        assert!(skips.is_empty(), "{skips:?}");

        let mac = MacAddr([2, 0, 0, 0, 0, 2]);
        let mut b = member(2, 1);
        b.mac = Some(mac);
        b.address = Some(Ipv4Addr::new(10, 244, 2, 0));
        b.address6 = Some("fd00:244:2::".parse().unwrap());
        b.prefixes = vec![net("10.244.2.0/24")];
        b.prefixes6 = vec![net("fd00:244:2::/64")];
        let (d, skips) = desired(&me(Tunnel::L3Vxlan, &[1]), &[b.clone()], &[], &[]);
        assert!(skips.is_empty(), "{skips:?}");
        assert_eq!(d.routes[&net("fd00:244:2::/64")], six("fd00:244:2::"));
        assert_eq!(
            d.routes[&net("10.244.2.0/24")],
            IpAddr::from(Ipv4Addr::new(10, 244, 2, 0))
        );
        assert_eq!(
            d.neigh.keys().map(|(_, a)| *a).collect::<Vec<_>>(),
            [Ipv4Addr::new(10, 244, 2, 0).into(), six("fd00:244:2::")]
        );
        assert!(d.neigh.values().all(|m| *m == mac));
        assert_eq!(d.fdb[&(vni(1), mac)], ip(2));
        let v4_only = Me {
            ipv6: false,
            ..me(Tunnel::L3Vxlan, &[1])
        };
        let (d, _) = desired(&v4_only, &[b], &[], &[]);
        assert_eq!(d.routes.len(), 1);
        assert_eq!(d.neigh.len(), 1, "no IPv6 next hop without IPv6 of ours");
    }

    /// IPv6 conflicts are settled as IPv4 ones: an IPv6 overlay address two members claim goes
    /// to the lower underlay address, an IPv6 prefix overlapping ours is refused, the
    /// operator's IPv6 route wins over a member's prefix.
    #[test]
    fn ipv6_conflicts_go_to_the_lower_address() {
        let l3 = |n: u8, a6: &str, p6: &str| {
            let mut m = member(n, 1);
            m.mac = Some(MacAddr([2, 0, 0, 0, 0, n]));
            m.address = Some(Ipv4Addr::new(10, 244, n, 0));
            m.address6 = Some(a6.parse().unwrap());
            m.prefixes6 = vec![net(p6)];
            m
        };
        let ms = [
            l3(3, "fd00::2", "fd00:244:3::/64"),
            l3(2, "fd00::2", "fd00:244:2::/64"),
            l3(4, "fd00::4", "fd00:244:1:0:8::/80"),
            l3(5, "fd00::5", "fd00:9::/64"),
        ];
        let statics = [Static::Route(
            net("fd00:9::/64"),
            "fd00::9".parse().unwrap(),
        )];
        let (d, skips) = desired(&me(Tunnel::L3Vxlan, &[1]), &ms, &[], &statics);
        let routes: Vec<(IpNet, IpAddr)> = d.routes.into_iter().collect();
        let hop = |s: &str| IpAddr::V6(s.parse().unwrap());
        assert_eq!(
            routes,
            [
                (net("fd00:9::/64"), hop("fd00::9")),
                (net("fd00:244:2::/64"), hop("fd00::2")),
            ]
        );
        let lost: Vec<_> = skips.iter().map(|s| (s.underlay, s.conflict)).collect();
        assert_eq!(
            lost,
            [(ip(3), true), (ip(4), true), (ip(5), true)],
            "{skips:?}"
        );
        assert!(skips[0].why.contains("fd00::2"), "{skips:?}");
        // The operator's IPv6 route needs our IPv6 address too.
        let v4_only = Me {
            ipv6: false,
            ..me(Tunnel::L3Vxlan, &[1])
        };
        let (d, _) = desired(&v4_only, &[], &[], &statics);
        assert!(d.routes.is_empty());
    }

    /// Over an IPv6 underlay (one family per network): the other IPv6 members are the flood
    /// list and, in L3 VXLAN, their MACs' remotes; a member or an announcement from an IPv4
    /// underlay is left out (reported, not a conflict) before conflicts are settled, so that
    /// it wins nothing (an IPv4 address sorts before every IPv6 one); and the other way round.
    #[test]
    fn members_of_the_other_family_are_left_out() {
        let six = |n: u8| IpAddr::V6(format!("2001:db8::{n}").parse().unwrap());
        let at = |u: IpAddr, vni: u32| Member {
            underlay: u,
            ..member(0, vni)
        };
        let me6 = |t: Tunnel, vnis: &[u32]| Me {
            underlay: six(1),
            ..me(t, vnis)
        };
        let ms = [
            at(six(3), 42),
            at(six(1), 42),
            at(ip(4), 42),
            at(six(2), 42),
        ];
        let (d, skips) = desired(&me6(Tunnel::L2Vxlan, &[42]), &ms, &[], &[]);
        assert_eq!(d.peers[&vni(42)], [six(2), six(3)]);
        assert_eq!(skips.len(), 1, "{skips:?}");
        assert_eq!((skips[0].underlay, skips[0].conflict), (ip(4), false));
        assert!(
            skips[0]
                .why
                .contains("192.0.2.4 is an IPv4 address but --local 2001:db8::1 is IPv6"),
            "{skips:?}"
        );
        let (d, skips) = desired(&me(Tunnel::L2Vxlan, &[42]), &ms, &[], &[]);
        assert_eq!(d.peers[&vni(42)], [ip(4)]);
        assert_eq!(skips.len(), 3, "{skips:?}");

        let mac = MacAddr([2, 0, 0, 0, 0, 7]);
        let ann = |u: IpAddr| Announcement {
            version: VERSION,
            vni: 42,
            mac,
            underlay: u,
            ips: vec![Ipv4Addr::new(10, 9, 0, 7).into()],
        };
        let (d, skips) = desired(
            &me6(Tunnel::L2Vxlan, &[42]),
            &[],
            &[ann(ip(2)), ann(six(3))],
            &[],
        );
        assert_eq!(d.fdb[&(vni(42), mac)], six(3));
        assert_eq!(d.neigh[&(vni(42), Ipv4Addr::new(10, 9, 0, 7).into())], mac);
        assert_eq!(skips.len(), 1, "{skips:?}");
        assert_eq!((skips[0].underlay, skips[0].conflict), (ip(2), false));
        assert!(skips[0].why.contains("MAC 02:00:00:00:00:07"), "{skips:?}");

        let mut m = at(six(2), 1);
        m.mac = Some(mac);
        m.address = Some(Ipv4Addr::new(10, 244, 2, 0));
        m.prefixes = vec![net("10.244.2.0/24")];
        let mut m4 = m.clone();
        (m4.underlay, m4.address) = (ip(3), Some(Ipv4Addr::new(10, 244, 3, 0)));
        let (d, skips) = desired(&me6(Tunnel::L3Vxlan, &[1]), &[m4, m], &[], &[]);
        assert_eq!(d.peers[&vni(1)], [six(2)]);
        assert_eq!(
            d.fdb[&(vni(1), mac)],
            six(2),
            "the MAC goes to the IPv6 member"
        );
        assert_eq!(
            d.routes[&net("10.244.2.0/24")],
            Ipv4Addr::new(10, 244, 2, 0)
        );
        assert_eq!(skips.len(), 1, "{skips:?}");
        assert!(
            !skips[0].conflict && skips[0].underlay == ip(3),
            "{skips:?}"
        );
    }

    /// A change of an IPv6 route's next hop is one set; a gone one one del.
    #[test]
    fn diff_takes_ipv6_routes() {
        let mut have = Desired::default();
        have.routes.insert(net("fd00:1::/64"), ip(2));
        have.routes.insert(net("fd00:2::/64"), ip(2));
        let mut want = have.clone();
        want.routes.insert(net("fd00:1::/64"), ip(3));
        want.routes.remove(&net("fd00:2::/64"));
        let c = diff(&have, &want);
        assert_eq!(c.route_set, [(net("fd00:1::/64"), ip(3))]);
        assert_eq!(c.route_del, [net::<IpNet>("fd00:2::/64")]);
    }

    /// A network a reload removed took the store's state in it along; the record forgets it
    /// (so a network added again under its VNI gets it all again).
    #[test]
    fn a_removed_network_is_forgotten_whole() {
        let mac = MacAddr([2, 0, 0, 0, 0, 9]);
        let mut d = Desired::default();
        for v in [1, 2] {
            d.peers.insert(vni(v), vec![ip(2)]);
            d.remote_csum.insert(vni(v), vec![ip(2)]);
            d.fdb.insert((vni(v), mac), ip(2));
            d.neigh.insert((vni(v), ip(9)), mac);
        }
        d.routes.insert(net("10.0.1.0/24"), ip(2));
        let mut kept = d.clone();
        d.forget(vni(1));
        for m in [&mut kept.peers, &mut kept.remote_csum] {
            m.remove(&vni(1));
        }
        kept.fdb.remove(&(vni(1), mac));
        kept.neigh.remove(&(vni(1), ip(9)));
        assert_eq!(d, kept);
        // Added again: the store's state is installed again, as for a new network.
        let want = Desired {
            peers: [(vni(1), vec![ip(2)]), (vni(2), vec![ip(2)])].into(),
            ..d.clone()
        };
        assert_eq!(diff(&d, &want).peers, [(vni(1), vec![ip(2)])]);
    }

    #[test]
    fn diff_lists_only_what_changed() {
        let mut have = Desired::default();
        have.peers.insert(vni(1), vec![ip(2), ip(3)]);
        have.peers.insert(vni(2), vec![ip(2)]);
        have.routes.insert(net("10.0.1.0/24"), ip(2));
        have.routes.insert(net("10.0.2.0/24"), ip(3));
        let mut want = have.clone();
        assert!(diff(&have, &want).is_empty());
        want.peers.insert(vni(1), vec![ip(3)]);
        want.routes.remove(&net("10.0.1.0/24"));
        want.routes.insert(net("10.0.2.0/24"), ip(4));
        want.routes.insert(net("10.0.3.0/24"), ip(4));
        want.peers.remove(&vni(2));
        let c = diff(&have, &want);
        assert_eq!(c.peers, [(vni(1), vec![ip(3)]), (vni(2), vec![])]);
        assert_eq!(c.route_del, [net::<IpNet>("10.0.1.0/24")]);
        assert_eq!(
            c.route_set,
            [(net("10.0.2.0/24"), ip(4)), (net("10.0.3.0/24"), ip(4))]
        );
        assert!(c.neigh_del.is_empty() && c.fdb_set.is_empty());
    }
}
