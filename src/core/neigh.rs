//! The neighbour table of one network: IP address -> MAC bindings, shared by the L3 VXLAN ARP
//! engine (next-hop resolution) and L2 ARP/ND suppression (reply on behalf of remote hosts).
//! IPv4 and IPv6 bindings live side by side under the same ageing time and learned-entry cap.
//!
//! Same shape as the FDB (`fdb.rs`): a papaya map whose values never move, with the binding's
//! MAC and last-seen time in atomics, so the per-packet lookup is lock-free and a refresh or a
//! MAC change is one relaxed store. Static bindings never age and are never overwritten by
//! learning; learned ones age after the network's ageing time and are capped per network.

use super::EntryKind;
use encap::MacAddr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

fn mac_to_u64(m: MacAddr) -> u64 {
    let b = m.0;
    u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
}

fn mac_from_u64(v: u64) -> MacAddr {
    let b = v.to_be_bytes();
    MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// One binding. Shared by readers; mutable parts are atomics.
#[derive(Debug)]
struct NeighEntry {
    mac: AtomicU64,
    last_seen: AtomicU64,
    kind: EntryKind,
}

impl NeighEntry {
    fn new(kind: EntryKind, mac: MacAddr, now_ms: u64) -> NeighEntry {
        NeighEntry {
            mac: AtomicU64::new(mac_to_u64(mac)),
            last_seen: AtomicU64::new(now_ms),
            kind,
        }
    }
    fn mac(&self) -> MacAddr {
        mac_from_u64(self.mac.load(Relaxed))
    }
    fn last_seen(&self) -> u64 {
        self.last_seen.load(Relaxed)
    }
    fn is_expired(&self, now_ms: u64, ageing_ms: u64) -> bool {
        self.kind == EntryKind::Learned && now_ms.saturating_sub(self.last_seen()) > ageing_ms
    }
    fn touch(&self, now_ms: u64) {
        if now_ms > self.last_seen.load(Relaxed) {
            self.last_seen.store(now_ms, Relaxed);
        }
    }
    fn rebind(&self, mac: MacAddr, now_ms: u64) {
        self.mac.store(mac_to_u64(mac), Relaxed);
        self.last_seen.store(now_ms, Relaxed);
    }
}

/// How much a piece of evidence is trusted (see [`NeighTable::learn`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// An ARP packet addressed to us (a reply to our request, or a request for our own
    /// address) or ARP seen crossing the tunnel by the L2 snooper: may create a binding or
    /// change its MAC.
    Authoritative,
    /// Unsolicited ARP (gratuitous, or a request for someone else): may update a binding that
    /// already exists (and change its MAC) but never creates one, like Linux with arp_accept=0.
    UpdateOnly,
    /// An IPv4 packet from an on-link source: only refreshes an existing binding whose MAC
    /// matches; a forged source address can never create or redirect a binding.
    Confirm,
}

/// What [`NeighTable::learn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// A new binding was created.
    New,
    /// An existing binding was refreshed (same MAC).
    Refreshed,
    /// An existing learned binding now points at a different MAC (the old one is given).
    MacChanged(MacAddr),
    /// A static binding holds this address with the same MAC; it was left alone.
    StaticKept,
    /// A static binding holds this address with another MAC: the evidence contradicts it (a
    /// spoof, or a misconfiguration); the binding was left alone.
    StaticConflict,
    /// Nothing changed (the evidence did not allow it).
    Ignored,
    /// A new binding was refused: the network's cap is reached.
    Refused,
}

/// A snapshot of one binding, for the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighInfo {
    /// Address.
    pub ip: IpAddr,
    /// Bound MAC.
    pub mac: MacAddr,
    /// Learned or static.
    pub kind: EntryKind,
    /// Time since last confirmed (since added, for static bindings).
    pub age: Duration,
}

type Map = papaya::HashMap<IpAddr, NeighEntry, ahash::RandomState>;

/// The IP -> MAC bindings of one network.
#[derive(Debug)]
pub struct NeighTable {
    map: Map,
    /// Ageing time and cap: atomics, so a reload changes them under running lookups.
    ageing_ms: AtomicU64,
    max_learned: AtomicUsize,
    learned: AtomicUsize,
}

impl NeighTable {
    /// An empty table whose learned bindings live `ageing` without confirmation, at most
    /// `max_learned` of them.
    pub fn new(ageing: Duration, max_learned: usize) -> NeighTable {
        NeighTable {
            map: papaya::HashMap::builder()
                .hasher(ahash::RandomState::new())
                .build(),
            ageing_ms: AtomicU64::new(Self::millis(ageing)),
            max_learned: AtomicUsize::new(max_learned),
            learned: AtomicUsize::new(0),
        }
    }

    fn millis(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }

    /// Removes every binding (its network was removed).
    pub fn clear(&self) {
        self.map.pin().clear();
        self.learned.store(0, Relaxed);
    }

    /// Changes the ageing time and the cap on learned bindings (those already learned stay).
    pub fn set_limits(&self, ageing: Duration, max_learned: usize) {
        self.ageing_ms.store(Self::millis(ageing), Relaxed);
        self.max_learned.store(max_learned, Relaxed);
    }

    #[inline]
    fn ageing(&self) -> u64 {
        self.ageing_ms.load(Relaxed)
    }

    /// The MAC bound to `ip`, unless absent or expired. Lock-free.
    #[inline]
    pub fn lookup(&self, ip: impl Into<IpAddr>, now_ms: u64) -> Option<MacAddr> {
        let guard = self.map.guard();
        let e = self.map.get(&ip.into(), &guard)?;
        (!e.is_expired(now_ms, self.ageing())).then(|| e.mac())
    }

    /// Records that `ip` is at `mac`, as far as `evidence` allows. `mac` must be unicast (the
    /// callers check it); a multicast or zero MAC is ignored.
    pub fn learn(
        &self,
        ip: impl Into<IpAddr>,
        mac: MacAddr,
        now_ms: u64,
        evidence: Evidence,
    ) -> Learned {
        self.learn_as(ip.into(), mac, now_ms, evidence, true)
    }

    /// What [`NeighTable::learn`] would do, changing nothing (a simulation).
    pub fn judge(
        &self,
        ip: impl Into<IpAddr>,
        mac: MacAddr,
        now_ms: u64,
        evidence: Evidence,
    ) -> Learned {
        self.learn_as(ip.into(), mac, now_ms, evidence, false)
    }

    fn learn_as(
        &self,
        key: IpAddr,
        mac: MacAddr,
        now_ms: u64,
        evidence: Evidence,
        apply: bool,
    ) -> Learned {
        if !mac.is_unicast() || !usable_neigh(key) {
            return Learned::Ignored;
        }
        let guard = self.map.guard();
        if let Some(e) = self.map.get(&key, &guard) {
            let expired = e.is_expired(now_ms, self.ageing());
            return match (e.kind, evidence) {
                (EntryKind::Static, _) if e.mac() == mac => Learned::StaticKept,
                (EntryKind::Static, _) => Learned::StaticConflict,
                (_, Evidence::Confirm) if !expired && e.mac() == mac => {
                    if apply {
                        e.touch(now_ms);
                    }
                    Learned::Refreshed
                }
                (_, Evidence::Confirm) => Learned::Ignored,
                // An expired binding is gone as far as lookups go: only authoritative
                // evidence brings it back.
                (_, Evidence::UpdateOnly) if expired => Learned::Ignored,
                (_, _) if expired => {
                    if apply {
                        e.rebind(mac, now_ms);
                    }
                    Learned::New
                }
                (_, _) if e.mac() == mac => {
                    if apply {
                        e.touch(now_ms);
                    }
                    Learned::Refreshed
                }
                (_, _) => {
                    let old = e.mac();
                    if apply {
                        e.rebind(mac, now_ms);
                    }
                    Learned::MacChanged(old)
                }
            };
        }
        if evidence != Evidence::Authoritative {
            return Learned::Ignored;
        }
        if !apply {
            return if self.learned.load(Relaxed) < self.max_learned.load(Relaxed) {
                Learned::New
            } else {
                Learned::Refused
            };
        }
        if !self.reserve() {
            return Learned::Refused;
        }
        let entry = NeighEntry::new(EntryKind::Learned, mac, now_ms);
        match self.map.try_insert(key, entry, &guard) {
            Ok(_) => Learned::New,
            Err(_) => {
                // Another thread created it first; its insert holds the reservation.
                self.release();
                Learned::Refreshed
            }
        }
    }

    /// Adds or replaces a static binding; returns the previous binding's kind and MAC.
    pub fn add_static(
        &self,
        ip: impl Into<IpAddr>,
        mac: MacAddr,
        now_ms: u64,
    ) -> Option<(EntryKind, MacAddr)> {
        let guard = self.map.guard();
        let old = self
            .map
            .insert(
                ip.into(),
                NeighEntry::new(EntryKind::Static, mac, now_ms),
                &guard,
            )
            .map(|o| (o.kind, o.mac()));
        if let Some((EntryKind::Learned, _)) = old {
            self.release();
        }
        old
    }

    /// Removes the binding of `ip` (either kind); returns its kind and MAC.
    pub fn remove(&self, ip: impl Into<IpAddr>) -> Option<(EntryKind, MacAddr)> {
        let guard = self.map.guard();
        let old = self
            .map
            .remove(&ip.into(), &guard)
            .map(|o| (o.kind, o.mac()));
        if let Some((EntryKind::Learned, _)) = old {
            self.release();
        }
        old
    }

    /// Removes learned bindings unconfirmed for longer than the ageing time; returns how many.
    pub fn expire(&self, now_ms: u64) -> usize {
        let guard = self.map.guard();
        let keys: Vec<IpAddr> = self
            .map
            .iter(&guard)
            .filter(|(_, e)| e.is_expired(now_ms, self.ageing()))
            .map(|(k, _)| *k)
            .collect();
        let mut removed = 0;
        for k in keys {
            // Re-checked atomically: a refresh since the scan keeps the binding.
            if let Ok(Some(_)) =
                self.map
                    .remove_if(&k, |_, e| e.is_expired(now_ms, self.ageing()), &guard)
            {
                self.release();
                removed += 1;
            }
        }
        removed
    }

    /// Every live binding, sorted by address.
    pub fn entries(&self, now_ms: u64) -> Vec<NeighInfo> {
        let guard = self.map.guard();
        let mut out: Vec<NeighInfo> = self
            .map
            .iter(&guard)
            .filter(|(_, e)| !e.is_expired(now_ms, self.ageing()))
            .map(|(k, e)| NeighInfo {
                ip: *k,
                mac: e.mac(),
                kind: e.kind,
                age: Duration::from_millis(now_ms.saturating_sub(e.last_seen())),
            })
            .collect();
        out.sort_unstable_by_key(|i| i.ip);
        out
    }

    /// How many live bindings there are (what [`NeighTable::entries`] would list), counted
    /// without listing: the table's size when no binding is learned, else one pass over it.
    pub fn live_len(&self, now_ms: u64) -> usize {
        if self.learned_count() == 0 {
            return self.len();
        }
        let guard = self.map.guard();
        self.map
            .iter(&guard)
            .filter(|(_, e)| !e.is_expired(now_ms, self.ageing()))
            .count()
    }

    /// Learned bindings counted against the cap (expired ones until removed).
    pub fn learned_count(&self) -> usize {
        self.learned.load(Relaxed)
    }

    /// Bindings of both kinds (expired ones until removed).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn reserve(&self) -> bool {
        self.learned
            .fetch_update(Relaxed, Relaxed, |n| {
                (n < self.max_learned.load(Relaxed)).then_some(n + 1)
            })
            .is_ok()
    }

    fn release(&self) {
        // Never underflows: every release pairs with a successful reservation.
        let _ = self
            .learned
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
    }
}

/// An address that can be a neighbour: not unspecified, multicast or the limited broadcast.
pub fn usable_ip(ip: Ipv4Addr) -> bool {
    !ip.is_unspecified() && !ip.is_multicast() && !ip.is_broadcast()
}

/// An IPv6 address that can be a neighbour: not unspecified, loopback, multicast or
/// IPv4-mapped (a mapped address names an IPv4 host, whose binding is ARP's).
pub fn usable_ip6(ip: Ipv6Addr) -> bool {
    !ip.is_unspecified() && !ip.is_loopback() && !ip.is_multicast() && ip.to_ipv4_mapped().is_none()
}

/// [`usable_ip`] or [`usable_ip6`], by family.
pub fn usable_neigh(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => usable_ip(a),
        IpAddr::V6(a) => usable_ip6(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const M1: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const M2: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    fn table() -> NeighTable {
        NeighTable::new(Duration::from_secs(10), 2)
    }

    #[test]
    fn learn_lookup_and_age() {
        let t = table();
        assert_eq!(t.learn(A, M1, 1000, Evidence::Authoritative), Learned::New);
        assert_eq!(t.lookup(A, 11_000), Some(M1));
        assert_eq!(t.lookup(A, 11_001), None, "aged out after 10 s");
        assert_eq!(t.expire(11_001), 1);
        assert!(t.is_empty());
        assert_eq!(t.learned_count(), 0);
    }

    #[test]
    fn refresh_keeps_a_binding_alive() {
        let t = table();
        t.learn(A, M1, 0, Evidence::Authoritative);
        assert_eq!(t.learn(A, M1, 9_000, Evidence::Confirm), Learned::Refreshed);
        assert_eq!(t.lookup(A, 15_000), Some(M1));
        assert_eq!(t.expire(15_000), 0);
    }

    #[test]
    fn cap_refuses_new_bindings_until_one_leaves() {
        let t = table();
        t.learn(A, M1, 0, Evidence::Authoritative);
        t.learn(B, M2, 0, Evidence::Authoritative);
        let c = Ipv4Addr::new(10, 0, 0, 3);
        assert_eq!(t.learn(c, M1, 0, Evidence::Authoritative), Learned::Refused);
        assert_eq!(t.lookup(c, 0), None);
        // Static bindings do not count against the cap.
        assert_eq!(t.add_static(c, M1, 0), None);
        assert_eq!(t.learned_count(), 2);
        assert!(t.remove(A).is_some());
        let d = Ipv4Addr::new(10, 0, 0, 4);
        assert_eq!(t.learn(d, M1, 0, Evidence::Authoritative), Learned::New);
    }

    #[test]
    fn static_is_never_overwritten_or_aged() {
        let t = table();
        t.add_static(A, M1, 0);
        for ev in [
            Evidence::Authoritative,
            Evidence::UpdateOnly,
            Evidence::Confirm,
        ] {
            // Another MAC contradicts the static binding; the same MAC only agrees with it.
            assert_eq!(t.learn(A, M2, 5, ev), Learned::StaticConflict);
            assert_eq!(t.learn(A, M1, 5, ev), Learned::StaticKept);
        }
        assert_eq!(t.lookup(A, u64::MAX), Some(M1));
        assert_eq!(t.expire(u64::MAX), 0);
        // A static binding replaces a learned one and releases its cap slot.
        t.learn(B, M1, 0, Evidence::Authoritative);
        assert_eq!(t.learned_count(), 1);
        assert_eq!(t.add_static(B, M2, 0), Some((EntryKind::Learned, M1)));
        assert_eq!(t.learned_count(), 0);
    }

    #[test]
    fn mac_change_is_reported_with_the_old_mac() {
        let t = table();
        t.learn(A, M1, 0, Evidence::Authoritative);
        assert_eq!(
            t.learn(A, M2, 1, Evidence::UpdateOnly),
            Learned::MacChanged(M1)
        );
        assert_eq!(t.lookup(A, 1), Some(M2));
        assert_eq!(
            t.learn(A, M1, 2, Evidence::Authoritative),
            Learned::MacChanged(M2)
        );
    }

    #[test]
    fn weak_evidence_never_creates_or_redirects() {
        let t = table();
        assert_eq!(t.learn(A, M1, 0, Evidence::UpdateOnly), Learned::Ignored);
        assert_eq!(t.learn(A, M1, 0, Evidence::Confirm), Learned::Ignored);
        assert!(t.is_empty());
        t.learn(A, M1, 0, Evidence::Authoritative);
        assert_eq!(t.learn(A, M2, 1, Evidence::Confirm), Learned::Ignored);
        assert_eq!(t.lookup(A, 1), Some(M1));
        // An expired binding is not revived by unsolicited ARP.
        assert_eq!(
            t.learn(A, M2, 20_000, Evidence::UpdateOnly),
            Learned::Ignored
        );
        assert_eq!(t.lookup(A, 20_000), None);
        assert_eq!(
            t.learn(A, M2, 20_000, Evidence::Authoritative),
            Learned::New
        );
        assert_eq!(t.lookup(A, 20_000), Some(M2));
        assert_eq!(t.learned_count(), 1);
    }

    #[test]
    fn unusable_addresses_are_ignored() {
        let t = table();
        for ip in [
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            Ipv4Addr::new(224, 0, 0, 1),
        ] {
            assert_eq!(
                t.learn(ip, M1, 0, Evidence::Authoritative),
                Learned::Ignored
            );
        }
        assert_eq!(
            t.learn(A, MacAddr::BROADCAST, 0, Evidence::Authoritative),
            Learned::Ignored
        );
        assert_eq!(
            t.learn(A, MacAddr::ZERO, 0, Evidence::Authoritative),
            Learned::Ignored
        );
        assert!(t.is_empty());
    }

    #[test]
    fn ipv6_bindings_share_the_table_and_its_cap() {
        let t = table();
        let v6: Ipv6Addr = "fd00::1".parse().unwrap();
        assert_eq!(t.learn(A, M1, 0, Evidence::Authoritative), Learned::New);
        assert_eq!(t.learn(v6, M2, 0, Evidence::Authoritative), Learned::New);
        assert_eq!(t.lookup(v6, 0), Some(M2));
        assert_eq!(t.lookup(A, 0), Some(M1));
        // The mapped form of A is another address, and no neighbour at all.
        assert_eq!(t.lookup(A.to_ipv6_mapped(), 0), None);
        assert_eq!(
            t.learn(A.to_ipv6_mapped(), M1, 0, Evidence::Authoritative),
            Learned::Ignored
        );
        let c: Ipv6Addr = "fd00::2".parse().unwrap();
        assert_eq!(t.learn(c, M1, 0, Evidence::Authoritative), Learned::Refused);
        for bad in ["::", "::1", "ff02::1"] {
            let ip: Ipv6Addr = bad.parse().unwrap();
            assert!(!usable_ip6(ip), "{bad}");
        }
        let ips: Vec<IpAddr> = t.entries(0).iter().map(|e| e.ip).collect();
        assert_eq!(ips, [IpAddr::V4(A), IpAddr::V6(v6)], "IPv4 first");
        assert_eq!(t.remove(v6), Some((EntryKind::Learned, M2)));
        assert_eq!(t.learned_count(), 1);
    }

    #[test]
    fn entries_are_sorted_and_skip_expired() {
        let t = table();
        t.learn(B, M2, 0, Evidence::Authoritative);
        t.learn(A, M1, 5_000, Evidence::Authoritative);
        t.add_static(Ipv4Addr::new(10, 0, 0, 9), M1, 0);
        let e = t.entries(12_000);
        assert_eq!(t.live_len(12_000), 2);
        assert_eq!(t.live_len(0), 3);
        let ips: Vec<_> = e.iter().map(|i| i.ip).collect();
        assert_eq!(ips, vec![A, Ipv4Addr::new(10, 0, 0, 9)]);
        assert_eq!(e[0].age, Duration::from_secs(7));
        assert_eq!(e[1].kind, EntryKind::Static);
    }
}
