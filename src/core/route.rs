//! The L3 route table: overlay prefix -> next hop, with longest-prefix match.
//!
//! For `--encap ipip` the next hop is the remote node's underlay address (the outer destination);
//! for `--encap vxlan` in L3 mode it is an overlay next hop whose MAC the neighbour table resolves.
//!
//! The data path reads an immutable [`RouteTable`] snapshot through [`Routes::load`] (an
//! `arc-swap` load: no lock, no reference-count contention); the control plane edits a private
//! copy under a mutex the data path never takes and publishes a new snapshot on every change.
//!
//! The prefix map is `prefix-trie`'s tree-bitmap `PrefixMap` (well kept, widely used, fast
//! longest-prefix match over `ipnet` prefixes) rather than a hand-written trie.

use super::UnusableRemote;
use arc_swap::{ArcSwap, Guard};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

/// One route: packets to `prefix` go to next hop `via`.
///
/// An IPv4 prefix has an IPv4 next hop. An IPv6 prefix's next hop is of the underlay's family
/// when next hops are underlay addresses (IPIP: IPv6 in IPv4, protocol 41), of its own when they
/// are overlay addresses (L3 VXLAN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    /// Overlay destination prefix (host bits zero).
    pub prefix: IpNet,
    /// Next hop.
    pub via: IpAddr,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} via {}", self.prefix, self.via)
    }
}

/// A route the table refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The prefix has bits set past its length (like `10.0.0.1/24`).
    #[error("{0}: host bits are set (did you mean {1}?)")]
    HostBits(String, IpNet),
    /// A /0 route would take over every destination, the underlay included.
    #[error("{0}: a default route through the tunnel is not supported")]
    Default(IpNet),
    /// The next hop is unspecified, loopback, multicast or broadcast (the kind of address it
    /// is, from [`UnusableRemote::kind`]).
    #[error("next hop {0} is {1}: it must be a unicast address of another host")]
    BadNextHop(IpAddr, &'static str),
    /// The next hop is our own underlay address.
    #[error("next hop {0} is our own --local address")]
    NextHopIsLocal(IpAddr),
    /// A route would capture the underlay traffic to a next hop or from us (a tunnel loop).
    #[error("{prefix} covers {addr}, which must stay reachable outside the tunnel")]
    Loop {
        /// The offending prefix.
        prefix: IpNet,
        /// The underlay address it covers.
        addr: IpAddr,
    },
    /// The next hop is not of the family the prefix needs.
    #[error("{0}: {1}")]
    Family(Route, &'static str),
    /// An IPv6 prefix on a device without IPv6.
    #[error("{0}: the device has no IPv6 address (give it one with --address6)")]
    NoIpv6(IpNet),
    /// The table is full.
    #[error("route table is full ({0} routes)")]
    Full(usize),
}

/// Largest number of routes a table holds.
pub const MAX_ROUTES: usize = 65_536;

/// Parses `CIDR` into a prefix whose host bits are zero (as `ip route` insists), refusing /0.
pub fn parse_prefix(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    let net: IpNet = s.parse().map_err(|_| {
        format!("'{s}' is not an IP prefix (expected like 10.0.1.0/26 or fd00:1::/64)")
    })?;
    check_prefix(s, net).map_err(|e| e.to_string())
}

/// Whether `net` can be a route's prefix: no host bits set, not /0 (`shown`: how it was
/// written, for the message).
pub fn check_prefix(shown: &str, net: IpNet) -> Result<IpNet, RouteError> {
    if net.addr() != net.network() {
        return Err(RouteError::HostBits(shown.to_owned(), net.trunc()));
    }
    if net.prefix_len() == 0 {
        return Err(RouteError::Default(net));
    }
    Ok(net)
}

/// Whether `ip` can be a next hop: a unicast address of another host (the rule of remote VTEPs,
/// [`UnusableRemote::of`]; our own underlay address is refused where it is known).
pub fn check_next_hop(ip: IpAddr) -> Result<(), RouteError> {
    match UnusableRemote::of(ip) {
        Some(e) => Err(RouteError::BadNextHop(ip, e.kind())),
        None => Ok(()),
    }
}

/// Whether `route`'s next hop is of the family its prefix needs: an IPv4 prefix an IPv4 next
/// hop; an IPv6 prefix an IPv6 one where next hops are overlay addresses (`overlay`: L3
/// VXLAN), a node's IPv4 underlay address where they are underlay addresses (IPIP: IPv6 in
/// IPv4, protocol 41).
pub fn check_family(route: Route, overlay: bool) -> Result<(), RouteError> {
    let why = match (route.prefix, route.via) {
        (IpNet::V4(_), IpAddr::V6(_)) => "an IPv4 prefix needs an IPv4 next hop",
        (IpNet::V6(_), IpAddr::V4(_)) if overlay => {
            "an IPv6 prefix needs an IPv6 next hop in the overlay"
        }
        (IpNet::V6(_), IpAddr::V6(_)) if !overlay => {
            "the next hop is a node's IPv4 underlay address (IPv6 travels in IPv4, protocol 41)"
        }
        _ => return Ok(()),
    };
    Err(RouteError::Family(route, why))
}

/// Parses `CIDR=IP` (the `--route` flag and the TOML `routes` strings).
pub fn parse_route(s: &str) -> Result<Route, String> {
    let (p, v) = s.split_once('=').ok_or_else(|| {
        format!("'{s}' is not a route (expected CIDR=IP, like 10.0.1.0/26=192.0.2.2)")
    })?;
    let prefix = parse_prefix(p)?;
    let via: IpAddr = v
        .trim()
        .parse()
        .map_err(|_| format!("route '{s}': '{}' is not an IP address", v.trim()))?;
    check_next_hop(via).map_err(|e| format!("route '{s}': {e}"))?;
    Ok(Route { prefix, via })
}

/// An immutable route table: what the data path reads. One prefix map per family, so the
/// IPv4 lookup is the one it always was.
#[derive(Debug, Default)]
pub struct RouteTable {
    map: PrefixMap<Ipv4Net, Ipv4Addr>,
    map6: PrefixMap<Ipv6Net, IpAddr>,
    /// Sorted, deduplicated IPv4 next hops (the sources IPIP decapsulation accepts).
    next_hops: Box<[Ipv4Addr]>,
}

impl RouteTable {
    /// The next hop for `dst` by longest-prefix match.
    #[inline]
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        self.map.get_lpm(&Ipv4Net::from(dst)).map(|(_, via)| *via)
    }

    /// The next hop for the IPv6 destination `dst` by longest-prefix match.
    #[inline]
    pub fn lookup6(&self, dst: Ipv6Addr) -> Option<IpAddr> {
        self.map6.get_lpm(&Ipv6Net::from(dst)).map(|(_, via)| *via)
    }

    /// The route `dst` matches by longest-prefix match.
    #[inline]
    pub fn lookup_route(&self, dst: IpAddr) -> Option<Route> {
        match dst {
            IpAddr::V4(d) => self.map.get_lpm(&Ipv4Net::from(d)).map(|(p, v)| Route {
                prefix: p.into(),
                via: (*v).into(),
            }),
            IpAddr::V6(d) => self.map6.get_lpm(&Ipv6Net::from(d)).map(|(p, v)| Route {
                prefix: p.into(),
                via: *v,
            }),
        }
    }

    /// Whether `ip` is the next hop of some route.
    #[inline]
    pub fn is_next_hop(&self, ip: Ipv4Addr) -> bool {
        if self.next_hops.len() <= 16 {
            self.next_hops.contains(&ip)
        } else {
            self.next_hops.binary_search(&ip).is_ok()
        }
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.map.len() + self.map6.len()
    }

    /// True when there are no routes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every route, sorted by prefix (IPv4 first).
    pub fn routes(&self) -> Vec<Route> {
        sorted(&self.map, &self.map6)
    }
}

fn sorted(map: &PrefixMap<Ipv4Net, Ipv4Addr>, map6: &PrefixMap<Ipv6Net, IpAddr>) -> Vec<Route> {
    let v4 = map.iter().map(|(p, via)| Route {
        prefix: p.into(),
        via: (*via).into(),
    });
    let v6 = map6.iter().map(|(p, via)| Route {
        prefix: p.into(),
        via: *via,
    });
    let mut v: Vec<Route> = v4.chain(v6).collect();
    v.sort_unstable();
    v
}

/// The control plane's copy of the table: the routes and how many use each next hop.
#[derive(Debug, Default)]
struct Editable {
    map: PrefixMap<Ipv4Net, Ipv4Addr>,
    map6: PrefixMap<Ipv6Net, IpAddr>,
    hops: BTreeMap<IpAddr, usize>,
}

/// What a table takes, besides the rules every route keeps.
#[derive(Debug, Clone, Copy)]
struct Rules {
    /// Our own underlay address (never a next hop, never covered by a route).
    local: Ipv4Addr,
    /// Next hops are overlay addresses (see [`Routes::with_overlay_routes`]).
    overlay: bool,
    /// IPv6 prefixes are taken (the device has an IPv6 address).
    ipv6: bool,
}

impl Editable {
    fn len(&self) -> usize {
        self.map.len() + self.map6.len()
    }

    fn has(&self, prefix: IpNet) -> bool {
        match prefix {
            IpNet::V4(p) => self.map.get(&p).is_some(),
            IpNet::V6(p) => self.map6.get(&p).is_some(),
        }
    }

    /// The checks of [`Routes::add`]; every one is a lookup, not a scan of the routes.
    /// With `overlay` (L3 VXLAN) next hops are overlay addresses: only our own underlay
    /// address must stay outside every prefix.
    fn check(&self, rules: Rules, route: Route) -> Result<(), RouteError> {
        let Route { prefix, via } = route;
        check_prefix(&prefix.to_string(), prefix)?;
        check_next_hop(via)?;
        if via == IpAddr::V4(rules.local) {
            return Err(RouteError::NextHopIsLocal(via));
        }
        if !self.has(prefix) && self.len() >= MAX_ROUTES {
            return Err(RouteError::Full(self.len()));
        }
        if matches!(prefix, IpNet::V6(_)) && !rules.ipv6 {
            return Err(RouteError::NoIpv6(prefix));
        }
        check_family(route, rules.overlay)?;
        // An IPv6 prefix covers no IPv4 underlay address.
        let (IpNet::V4(prefix), IpAddr::V4(via)) = (prefix, via) else {
            return Ok(());
        };
        if prefix.contains(&rules.local) {
            return Err(RouteError::Loop {
                prefix: prefix.into(),
                addr: rules.local.into(),
            });
        }
        if rules.overlay {
            return Ok(());
        }
        if prefix.contains(&via) {
            return Err(RouteError::Loop {
                prefix: prefix.into(),
                addr: via.into(),
            });
        }
        // The next hop inside another route's prefix.
        if let Some((p, _)) = self.map.get_lpm(&Ipv4Net::from(via)) {
            return Err(RouteError::Loop {
                prefix: p.into(),
                addr: via.into(),
            });
        }
        // The new prefix covering another route's next hop (next hops are few: one per node).
        if let Some(hop) = self
            .hops
            .keys()
            .find(|h| matches!(h, IpAddr::V4(h) if prefix.contains(h)))
        {
            return Err(RouteError::Loop {
                prefix: prefix.into(),
                addr: *hop,
            });
        }
        Ok(())
    }

    /// Inserts a checked route (of matching families).
    fn insert(&mut self, route: Route) -> Option<IpAddr> {
        let old = match (route.prefix, route.via) {
            (IpNet::V4(p), IpAddr::V4(v)) => self.map.insert(p, v).map(IpAddr::V4),
            (IpNet::V6(p), v) => self.map6.insert(p, v),
            // Refused by `check`.
            (IpNet::V4(_), IpAddr::V6(_)) => return None,
        };
        if let Some(o) = old {
            self.release(o);
        }
        *self.hops.entry(route.via).or_insert(0) += 1;
        old
    }

    fn remove(&mut self, prefix: IpNet) -> Option<IpAddr> {
        let old = match prefix {
            IpNet::V4(p) => IpAddr::V4(self.map.remove(&p)?),
            IpNet::V6(p) => self.map6.remove(&p)?,
        };
        self.release(old);
        Some(old)
    }

    fn release(&mut self, hop: IpAddr) {
        if let Some(n) = self.hops.get_mut(&hop) {
            *n -= 1;
            if *n == 0 {
                self.hops.remove(&hop);
            }
        }
    }

    fn snapshot(&self) -> RouteTable {
        RouteTable {
            map: self.map.clone(),
            map6: self.map6.clone(),
            next_hops: self
                .hops
                .keys()
                .filter_map(|h| match h {
                    IpAddr::V4(a) => Some(*a),
                    IpAddr::V6(_) => None,
                })
                .collect(),
        }
    }
}

/// The shared, editable route table: lock-free snapshots for the data path, serialised edits
/// for the control plane.
#[derive(Debug)]
pub struct Routes {
    rules: Rules,
    current: ArcSwap<RouteTable>,
    edit: Mutex<Editable>,
}

impl Routes {
    /// An empty table for a daemon whose underlay address is `local`, taking IPv4 prefixes.
    pub fn new(local: Ipv4Addr) -> Routes {
        Routes {
            rules: Rules {
                local,
                overlay: false,
                ipv6: false,
            },
            current: ArcSwap::from_pointee(RouteTable::default()),
            edit: Mutex::new(Editable::default()),
        }
    }

    /// The same empty table, taking IPv6 prefixes too (`ipv6`: the device has an IPv6
    /// address).
    pub fn with_ipv6(mut self, ipv6: bool) -> Routes {
        self.rules.ipv6 = ipv6;
        self
    }

    /// A table holding `routes`, each checked as [`Routes::add`] checks it (a later route for
    /// the same prefix replaces an earlier one), published once; IPv6 prefixes only with
    /// `ipv6`.
    pub fn with_routes(
        local: Ipv4Addr,
        ipv6: bool,
        routes: &[Route],
    ) -> Result<Routes, RouteError> {
        let r = Routes::new(local).with_ipv6(ipv6);
        {
            let mut e = r.locked();
            for route in routes {
                e.check(r.rules, *route)?;
                e.insert(*route);
            }
            r.current.store(Arc::new(e.snapshot()));
        }
        Ok(r)
    }

    /// A table whose next hops are overlay addresses (L3 VXLAN), holding `routes`: checked as
    /// [`Routes::add`] checks them, except that a prefix may cover a next hop (the packet to it
    /// is framed for the next hop's MAC, never routed by its address on the underlay).
    /// IPv6 prefixes only with `ipv6`.
    pub fn with_overlay_routes(
        local: Ipv4Addr,
        ipv6: bool,
        routes: &[Route],
    ) -> Result<Routes, RouteError> {
        let mut r = Routes::new(local).with_ipv6(ipv6);
        r.rules.overlay = true;
        for route in routes {
            r.add(*route)?;
        }
        Ok(r)
    }

    /// Whether the table takes IPv6 prefixes (the device has an IPv6 address).
    pub fn takes_ipv6(&self) -> bool {
        self.rules.ipv6
    }

    /// Our underlay address.
    pub fn local(&self) -> Ipv4Addr {
        self.rules.local
    }

    /// The current snapshot (cheap; hold it for a batch of packets, not forever).
    #[inline]
    pub fn load(&self) -> Guard<Arc<RouteTable>> {
        self.current.load()
    }

    /// The current snapshot as an owned `Arc`.
    pub fn snapshot(&self) -> Arc<RouteTable> {
        self.current.load_full()
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, Editable> {
        // Edits are checked before they change anything: a panic elsewhere cannot leave the
        // state half-changed.
        self.edit.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds or replaces the route for `route.prefix`; returns the next hop it replaced.
    ///
    /// Refused: host bits set, /0, a next hop that is not unicast or is our own address, a next
    /// hop of the wrong family, an IPv6 prefix on a table without IPv6, and any route whose
    /// prefix covers our own address or a next hop, or whose next hop lies in another route's
    /// prefix (the encapsulated packet would be routed back into the tunnel).
    pub fn add(&self, route: Route) -> Result<Option<IpAddr>, RouteError> {
        let mut e = self.locked();
        e.check(self.rules, route)?;
        let old = e.insert(route);
        self.current.store(Arc::new(e.snapshot()));
        Ok(old)
    }

    /// Removes the route for exactly `prefix`; returns its next hop (`None`: there was none).
    pub fn del(&self, prefix: IpNet) -> Option<IpAddr> {
        let mut e = self.locked();
        let old = e.remove(prefix)?;
        self.current.store(Arc::new(e.snapshot()));
        Some(old)
    }

    /// Every route, sorted by prefix.
    pub fn list(&self) -> Vec<Route> {
        let e = self.locked();
        sorted(&e.map, &e.map6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }
    fn route(p: &str, v: &str) -> Route {
        Route {
            prefix: net(p),
            via: v.parse().unwrap(),
        }
    }

    #[test]
    fn overlay_next_hops_may_sit_inside_their_prefix() {
        let flannel = route("10.244.1.0/24", "10.244.1.0");
        assert!(matches!(
            Routes::with_routes(LOCAL, false, &[flannel]),
            Err(RouteError::Loop { .. })
        ));
        let r = Routes::with_overlay_routes(
            LOCAL,
            false,
            &[flannel, route("10.244.2.0/24", "10.244.2.0")],
        )
        .unwrap();
        assert_eq!(r.load().lookup(ip("10.244.1.7")), Some(ip("10.244.1.0")));
        // Our own underlay address still may not be covered.
        assert!(r.add(route("192.0.2.0/24", "10.244.3.0")).is_err());
    }

    #[test]
    fn longest_prefix_wins() {
        let r = Routes::with_routes(
            LOCAL,
            false,
            &[
                route("10.0.0.0/8", "192.0.2.2"),
                route("10.1.0.0/16", "192.0.2.3"),
                route("10.1.2.0/26", "192.0.2.4"),
                route("10.1.2.7/32", "192.0.2.5"),
            ],
        )
        .unwrap();
        let t = r.load();
        assert_eq!(t.lookup(ip("10.9.9.9")), Some(ip("192.0.2.2")));
        assert_eq!(t.lookup(ip("10.1.9.9")), Some(ip("192.0.2.3")));
        assert_eq!(t.lookup(ip("10.1.2.63")), Some(ip("192.0.2.4")));
        assert_eq!(t.lookup(ip("10.1.2.64")), Some(ip("192.0.2.3")));
        assert_eq!(t.lookup(ip("10.1.2.7")), Some(ip("192.0.2.5")));
        assert_eq!(t.lookup(ip("11.0.0.1")), None);
        assert_eq!(
            t.lookup_route(ip("10.1.2.1").into()).unwrap().prefix,
            net("10.1.2.0/26")
        );
        assert!(t.is_next_hop(ip("192.0.2.4")));
        assert!(!t.is_next_hop(ip("192.0.2.9")));
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn edits_publish_new_snapshots() {
        let r = Routes::new(LOCAL);
        let before = r.snapshot();
        assert_eq!(r.add(route("10.0.1.0/26", "192.0.2.2")), Ok(None));
        assert_eq!(
            r.add(route("10.0.1.0/26", "192.0.2.3")),
            Ok(Some(ip("192.0.2.2").into()))
        );
        assert!(before.is_empty(), "an old snapshot never changes");
        assert_eq!(r.load().lookup(ip("10.0.1.1")), Some(ip("192.0.2.3")));
        assert!(!r.load().is_next_hop(ip("192.0.2.2")));
        assert_eq!(r.del(net("10.0.1.0/26")), Some(ip("192.0.2.3").into()));
        assert_eq!(r.del(net("10.0.1.0/26")), None);
        assert_eq!(r.load().lookup(ip("10.0.1.1")), None);
        assert!(r.list().is_empty());
    }

    #[test]
    fn refuses_bad_routes() {
        let r = Routes::new(LOCAL);
        let bad = [
            (route("10.0.0.0/8", "0.0.0.0"), "is the unspecified address"),
            (route("10.0.0.0/8", "224.0.0.1"), "is a multicast address"),
            (
                route("10.0.0.0/8", "255.255.255.255"),
                "is the broadcast address",
            ),
            (route("10.0.0.0/8", "127.0.0.1"), "is a loopback address"),
            (route("10.0.0.0/8", "192.0.2.1"), "own --local"),
            (route("192.0.2.0/24", "198.51.100.2"), "covers 192.0.2.1"),
            (
                route("198.51.100.0/24", "198.51.100.2"),
                "covers 198.51.100.2",
            ),
            (
                Route {
                    prefix: Ipv4Net::new(ip("10.0.0.1"), 24).unwrap().into(),
                    via: ip("192.0.2.2").into(),
                },
                "host bits",
            ),
            (
                Route {
                    prefix: Ipv4Net::new(ip("0.0.0.0"), 0).unwrap().into(),
                    via: ip("192.0.2.2").into(),
                },
                "default route",
            ),
        ];
        for (rt, want) in bad {
            let e = r.add(rt).unwrap_err().to_string();
            assert!(e.contains(want), "{rt}: {e}");
        }
        // A route whose prefix covers an existing next hop, or a next hop inside an existing route.
        r.add(route("10.0.0.0/8", "198.51.100.2")).unwrap();
        assert!(r.add(route("198.51.0.0/16", "203.0.113.9")).is_err());
        assert!(r.add(route("172.16.0.0/12", "10.1.1.1")).is_err());
        assert_eq!(r.list().len(), 1);
    }

    #[test]
    fn ipv6_prefixes_go_to_ipv4_next_hops() {
        let r = Routes::with_routes(
            LOCAL,
            true,
            &[
                route("10.0.1.0/26", "192.0.2.2"),
                route("fd00:1::/64", "192.0.2.2"),
                route("fd00::/16", "192.0.2.3"),
            ],
        )
        .unwrap();
        let t = r.load();
        let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        assert_eq!(t.lookup6(v6("fd00:1::9")), Some(ip("192.0.2.2").into()));
        assert_eq!(t.lookup6(v6("fd00:7::9")), Some(ip("192.0.2.3").into()));
        assert_eq!(t.lookup6(v6("2001:db8::1")), None);
        assert_eq!(t.lookup(ip("10.0.1.1")), Some(ip("192.0.2.2")));
        assert!(
            t.is_next_hop(ip("192.0.2.3")),
            "a next hop of IPv6 routes only"
        );
        assert_eq!(t.len(), 3);
        assert_eq!(r.list()[1], route("fd00::/16", "192.0.2.3"));
        assert_eq!(r.del(net("fd00::/16")), Some(ip("192.0.2.3").into()));
        assert!(!r.load().is_next_hop(ip("192.0.2.3")));
        for (rt, want) in [
            (route("fd00:2::/64", "2001:db8::2"), "IPv4 underlay address"),
            (
                route("10.0.2.0/24", "2001:db8::2"),
                "needs an IPv4 next hop",
            ),
            (route("fd00:2::1/64", "192.0.2.2"), "host bits"),
            (route("::/0", "192.0.2.2"), "default route"),
            (route("fd00:2::/64", "192.0.2.1"), "own --local"),
            (route("fd00:2::/64", "127.0.0.1"), "loopback"),
        ] {
            let e = r.add(rt).unwrap_err().to_string();
            assert!(e.contains(want), "{rt}: {e}");
        }
        // Without IPv6 on the device.
        let e = Routes::new(LOCAL)
            .add(route("fd00:2::/64", "192.0.2.2"))
            .unwrap_err();
        assert!(e.to_string().contains("--address6"), "{e}");
        let v6 = [route("fd00:2::/64", "fd00:2::1")];
        assert!(Routes::with_overlay_routes(LOCAL, false, &v6).is_err());
        // In the overlay (L3 VXLAN) with IPv6: an IPv6 next hop, not an IPv4 one.
        let r = Routes::with_overlay_routes(LOCAL, true, &v6).unwrap();
        assert_eq!(
            r.load().lookup6("fd00:2::9".parse().unwrap()),
            Some(v6[0].via)
        );
        let e = Routes::with_overlay_routes(LOCAL, true, &[route("fd00:3::/64", "10.0.0.1")]);
        assert!(e.unwrap_err().to_string().contains("IPv6 next hop"));
    }

    #[test]
    fn parsing() {
        assert_eq!(
            parse_route("10.0.1.0/26=192.0.2.2"),
            Ok(route("10.0.1.0/26", "192.0.2.2"))
        );
        assert_eq!(
            parse_route(" 10.0.1.0/26 = 192.0.2.2 "),
            Ok(route("10.0.1.0/26", "192.0.2.2"))
        );
        for (bad, want) in [
            ("10.0.1.0/26", "CIDR=IP"),
            ("10.0.1.0=192.0.2.2", "prefix"),
            ("10.0.1.0/33=192.0.2.2", "prefix"),
            ("10.0.1.1/26=192.0.2.2", "host bits"),
            ("0.0.0.0/0=192.0.2.2", "default"),
            ("10.0.1.0/26=x", "IP address"),
            ("10.0.1.0/26=239.0.0.1", "unicast"),
            ("10.0.1.0/26=0.0.0.0", "unicast"),
        ] {
            let e = parse_route(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
            assert!(!e.contains('\n'));
        }
        assert!(parse_prefix("10.0.0.0/8").is_ok());
    }

    #[test]
    fn a_large_table_builds_in_one_pass() {
        // 16384 pod blocks behind 256 nodes: every check is a lookup, the snapshot is built once.
        let routes: Vec<Route> = (0..16384u32)
            .map(|i| Route {
                prefix: Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 | (i << 6)), 26)
                    .unwrap()
                    .into(),
                via: Ipv4Addr::new(100, 64, (i % 256) as u8, 1).into(),
            })
            .collect();
        let r = Routes::with_routes(LOCAL, false, &routes).unwrap();
        let t = r.load();
        assert_eq!(t.len(), 16384);
        assert_eq!(t.lookup(ip("10.0.0.65")), Some(ip("100.64.1.1")));
        assert!(t.is_next_hop(ip("100.64.255.1")));
        assert_eq!(r.list().len(), 16384);
    }

    /// The naive model: scan every route, keep the longest one containing the address.
    fn naive(routes: &BTreeMap<Ipv4Net, Ipv4Addr>, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        routes
            .iter()
            .filter(|(p, _)| p.contains(&dst))
            .max_by_key(|(p, _)| p.prefix_len())
            .map(|(_, v)| *v)
    }

    proptest! {
        #[test]
        fn lpm_matches_a_naive_scan(
            entries in proptest::collection::vec((any::<u32>(), 1u8..=32, 1u8..=200), 0..40),
            probes in proptest::collection::vec(any::<u32>(), 1..40),
        ) {
            // Next hops live in 100.64.0.0/10 and prefixes avoid it: no loop refusals here.
            let mut model = BTreeMap::new();
            let r = Routes::new(LOCAL);
            for (addr, len, hop) in entries {
                let Ok(p) = Ipv4Net::new(Ipv4Addr::from(addr & 0x7fff_ffff), len) else { continue };
                let p = p.trunc();
                if p.contains(&LOCAL) || p.contains(&Ipv4Addr::new(100, 64, 0, 0))
                    || Ipv4Net::new(Ipv4Addr::new(100, 64, 0, 0), 10).unwrap().contains(&p.network())
                    || p.contains(&Ipv4Addr::new(100, 127, 255, 255)) {
                    continue;
                }
                let via = Ipv4Addr::new(100, 64, 0, hop);
                r.add(Route { prefix: p.into(), via: via.into() }).unwrap();
                model.insert(p, via);
            }
            let t = r.load();
            for p in model.keys() {
                // Probe each prefix's first and last address too.
                for a in [p.network(), p.broadcast()] {
                    prop_assert_eq!(t.lookup(a), naive(&model, a));
                }
            }
            for a in probes {
                let a = Ipv4Addr::from(a);
                prop_assert_eq!(t.lookup(a), naive(&model, a));
            }
            prop_assert_eq!(t.len(), model.len());
        }
    }
}
