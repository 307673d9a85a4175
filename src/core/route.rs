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
use ipnet::Ipv4Net;
use prefix_trie::PrefixMap;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError};

/// One route: packets to `prefix` go to next hop `via`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    /// Overlay destination prefix (host bits zero).
    pub prefix: Ipv4Net,
    /// Next hop.
    pub via: Ipv4Addr,
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
    HostBits(String, Ipv4Net),
    /// A /0 route would take over every destination, the underlay included.
    #[error("{0}: a default route through the tunnel is not supported")]
    Default(Ipv4Net),
    /// The next hop is unspecified, loopback, multicast or broadcast (the kind of address it
    /// is, from [`UnusableRemote::kind`]).
    #[error("next hop {0} is {1}: it must be a unicast address of another host")]
    BadNextHop(Ipv4Addr, &'static str),
    /// The next hop is our own underlay address.
    #[error("next hop {0} is our own --local address")]
    NextHopIsLocal(Ipv4Addr),
    /// A route would capture the underlay traffic to a next hop or from us (a tunnel loop).
    #[error("{prefix} covers {addr}, which must stay reachable outside the tunnel")]
    Loop {
        /// The offending prefix.
        prefix: Ipv4Net,
        /// The underlay address it covers.
        addr: Ipv4Addr,
    },
    /// The table is full.
    #[error("route table is full ({0} routes)")]
    Full(usize),
}

/// Largest number of routes a table holds.
pub const MAX_ROUTES: usize = 65_536;

/// Parses `CIDR` into a prefix whose host bits are zero (as `ip route` insists), refusing /0.
pub fn parse_prefix(s: &str) -> Result<Ipv4Net, String> {
    let s = s.trim();
    let net: Ipv4Net = s
        .parse()
        .map_err(|_| format!("'{s}' is not an IPv4 prefix (expected like 10.0.1.0/26)"))?;
    check_prefix(s, net).map_err(|e| e.to_string())
}

fn check_prefix(shown: &str, net: Ipv4Net) -> Result<Ipv4Net, RouteError> {
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
pub fn check_next_hop(ip: Ipv4Addr) -> Result<(), RouteError> {
    match UnusableRemote::of(ip.into()) {
        Some(e) => Err(RouteError::BadNextHop(ip, e.kind())),
        None => Ok(()),
    }
}

/// Parses `CIDR=IP` (the `--route` flag and the TOML `routes` strings).
pub fn parse_route(s: &str) -> Result<Route, String> {
    let (p, v) = s.split_once('=').ok_or_else(|| {
        format!("'{s}' is not a route (expected CIDR=IP, like 10.0.1.0/26=192.0.2.2)")
    })?;
    let prefix = parse_prefix(p)?;
    let via: Ipv4Addr = v
        .trim()
        .parse()
        .map_err(|_| format!("route '{s}': '{}' is not an IPv4 address", v.trim()))?;
    check_next_hop(via).map_err(|e| format!("route '{s}': {e}"))?;
    Ok(Route { prefix, via })
}

/// An immutable route table: what the data path reads.
#[derive(Debug, Default)]
pub struct RouteTable {
    map: PrefixMap<Ipv4Net, Ipv4Addr>,
    /// Sorted, deduplicated next hops (the sources decapsulation accepts).
    next_hops: Box<[Ipv4Addr]>,
}

impl RouteTable {
    /// The next hop for `dst` by longest-prefix match.
    #[inline]
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        self.lookup_route(dst).map(|r| r.via)
    }

    /// The route `dst` matches by longest-prefix match.
    #[inline]
    pub fn lookup_route(&self, dst: Ipv4Addr) -> Option<Route> {
        self.map
            .get_lpm(&Ipv4Net::from(dst))
            .map(|(prefix, via)| Route { prefix, via: *via })
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
        self.map.len()
    }

    /// True when there are no routes.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every route, sorted by prefix.
    pub fn routes(&self) -> Vec<Route> {
        sorted(&self.map)
    }
}

fn sorted(map: &PrefixMap<Ipv4Net, Ipv4Addr>) -> Vec<Route> {
    let mut v: Vec<Route> = map
        .iter()
        .map(|(prefix, via)| Route { prefix, via: *via })
        .collect();
    v.sort_unstable();
    v
}

/// The control plane's copy of the table: the routes and how many use each next hop.
#[derive(Debug, Default)]
struct Editable {
    map: PrefixMap<Ipv4Net, Ipv4Addr>,
    hops: BTreeMap<Ipv4Addr, usize>,
}

impl Editable {
    /// The checks of [`Routes::add`]; every one is a lookup, not a scan of the routes.
    /// With `overlay` (L3 VXLAN) next hops are overlay addresses: only our own underlay
    /// address must stay outside every prefix.
    fn check(&self, local: Ipv4Addr, route: Route, overlay: bool) -> Result<(), RouteError> {
        let Route { prefix, via } = route;
        check_prefix(&prefix.to_string(), prefix)?;
        check_next_hop(via)?;
        if via == local {
            return Err(RouteError::NextHopIsLocal(via));
        }
        if self.map.get(&prefix).is_none() && self.map.len() >= MAX_ROUTES {
            return Err(RouteError::Full(self.map.len()));
        }
        if prefix.contains(&local) {
            return Err(RouteError::Loop {
                prefix,
                addr: local,
            });
        }
        if overlay {
            return Ok(());
        }
        if prefix.contains(&via) {
            return Err(RouteError::Loop { prefix, addr: via });
        }
        // The next hop inside another route's prefix.
        if let Some((p, _)) = self.map.get_lpm(&Ipv4Net::from(via)) {
            return Err(RouteError::Loop {
                prefix: p,
                addr: via,
            });
        }
        // The new prefix covering another route's next hop (next hops are few: one per node).
        if let Some(hop) = self.hops.keys().find(|h| prefix.contains(*h)) {
            return Err(RouteError::Loop { prefix, addr: *hop });
        }
        Ok(())
    }

    fn insert(&mut self, route: Route) -> Option<Ipv4Addr> {
        let old = self.map.insert(route.prefix, route.via);
        if let Some(o) = old {
            self.release(o);
        }
        *self.hops.entry(route.via).or_insert(0) += 1;
        old
    }

    fn remove(&mut self, prefix: Ipv4Net) -> Option<Ipv4Addr> {
        let old = self.map.remove(&prefix)?;
        self.release(old);
        Some(old)
    }

    fn release(&mut self, hop: Ipv4Addr) {
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
            next_hops: self.hops.keys().copied().collect(),
        }
    }
}

/// The shared, editable route table: lock-free snapshots for the data path, serialised edits
/// for the control plane.
#[derive(Debug)]
pub struct Routes {
    /// Our own underlay address (never a next hop, never covered by a route).
    local: Ipv4Addr,
    /// Next hops are overlay addresses (L3 VXLAN: flannel's `10.244.1.0/24 via 10.244.1.0
    /// onlink`), resolved by ARP inside the overlay: a prefix may cover its own next hop.
    overlay_next_hops: bool,
    current: ArcSwap<RouteTable>,
    edit: Mutex<Editable>,
}

impl Routes {
    /// An empty table for a daemon whose underlay address is `local`.
    pub fn new(local: Ipv4Addr) -> Routes {
        Routes {
            local,
            overlay_next_hops: false,
            current: ArcSwap::from_pointee(RouteTable::default()),
            edit: Mutex::new(Editable::default()),
        }
    }

    /// A table holding `routes`, each checked as [`Routes::add`] checks it (a later route for
    /// the same prefix replaces an earlier one), published once.
    pub fn with_routes(local: Ipv4Addr, routes: &[Route]) -> Result<Routes, RouteError> {
        let r = Routes::new(local);
        {
            let mut e = r.locked();
            for route in routes {
                e.check(local, *route, false)?;
                e.insert(*route);
            }
            r.current.store(Arc::new(e.snapshot()));
        }
        Ok(r)
    }

    /// A table whose next hops are overlay addresses (L3 VXLAN), holding `routes`: checked as
    /// [`Routes::add`] checks them, except that a prefix may cover a next hop (the packet to it
    /// is framed for the next hop's MAC, never routed by its address on the underlay).
    pub fn with_overlay_routes(local: Ipv4Addr, routes: &[Route]) -> Result<Routes, RouteError> {
        let mut r = Routes::new(local);
        r.overlay_next_hops = true;
        for route in routes {
            r.add(*route)?;
        }
        Ok(r)
    }

    /// Our underlay address.
    pub fn local(&self) -> Ipv4Addr {
        self.local
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
    /// Refused: host bits set, /0, a next hop that is not unicast or is our own address, and
    /// any route whose prefix covers our own address or a next hop, or whose next hop lies in
    /// another route's prefix (the encapsulated packet would be routed back into the tunnel).
    pub fn add(&self, route: Route) -> Result<Option<Ipv4Addr>, RouteError> {
        let mut e = self.locked();
        e.check(self.local, route, self.overlay_next_hops)?;
        let old = e.insert(route);
        self.current.store(Arc::new(e.snapshot()));
        Ok(old)
    }

    /// Removes the route for exactly `prefix`; returns its next hop (`None`: there was none).
    pub fn del(&self, prefix: Ipv4Net) -> Option<Ipv4Addr> {
        let mut e = self.locked();
        let old = e.remove(prefix)?;
        self.current.store(Arc::new(e.snapshot()));
        Some(old)
    }

    /// Every route, sorted by prefix.
    pub fn list(&self) -> Vec<Route> {
        sorted(&self.locked().map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }
    fn route(p: &str, v: &str) -> Route {
        Route {
            prefix: net(p),
            via: ip(v),
        }
    }

    #[test]
    fn overlay_next_hops_may_sit_inside_their_prefix() {
        let flannel = route("10.244.1.0/24", "10.244.1.0");
        assert!(matches!(
            Routes::with_routes(LOCAL, &[flannel]),
            Err(RouteError::Loop { .. })
        ));
        let r =
            Routes::with_overlay_routes(LOCAL, &[flannel, route("10.244.2.0/24", "10.244.2.0")])
                .unwrap();
        assert_eq!(r.load().lookup(ip("10.244.1.7")), Some(ip("10.244.1.0")));
        // Our own underlay address still may not be covered.
        assert!(r.add(route("192.0.2.0/24", "10.244.3.0")).is_err());
    }

    #[test]
    fn longest_prefix_wins() {
        let r = Routes::with_routes(
            LOCAL,
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
            t.lookup_route(ip("10.1.2.1")).unwrap().prefix,
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
            Ok(Some(ip("192.0.2.2")))
        );
        assert!(before.is_empty(), "an old snapshot never changes");
        assert_eq!(r.load().lookup(ip("10.0.1.1")), Some(ip("192.0.2.3")));
        assert!(!r.load().is_next_hop(ip("192.0.2.2")));
        assert_eq!(r.del(net("10.0.1.0/26")), Some(ip("192.0.2.3")));
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
                    prefix: Ipv4Net::new(ip("10.0.0.1"), 24).unwrap(),
                    via: ip("192.0.2.2"),
                },
                "host bits",
            ),
            (
                Route {
                    prefix: Ipv4Net::new(ip("0.0.0.0"), 0).unwrap(),
                    via: ip("192.0.2.2"),
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
            ("10.0.1.0/26=x", "IPv4 address"),
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
                prefix: Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 | (i << 6)), 26).unwrap(),
                via: Ipv4Addr::new(100, 64, (i % 256) as u8, 1),
            })
            .collect();
        let r = Routes::with_routes(LOCAL, &routes).unwrap();
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
                r.add(Route { prefix: p, via }).unwrap();
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
