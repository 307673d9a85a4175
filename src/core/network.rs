//! One overlay network as the data path sees it: its settings (atomics, so a reload can change
//! them while the workers read them without a lock), the learned-entry count, and a snapshot of
//! its peers (flood list and known remotes) swapped on every change, its IPv4 list copied into
//! a table each datagram's source check reads without loading the snapshot (`known_v4`).

use super::Remote;
use super::dampening::{AtomicMoveLimit, MoveLimit};
use super::known_v4::KnownV4;
use super::storm::StormControl;
use super::{NetworkConfig, Timestamp};
use arc_swap::ArcSwap;
use encap::{MacAddr, Vni};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// An immutable view of a network's peers, replaced as a whole (never edited in place), so
/// the per-packet path reads it without a lock.
#[derive(Debug, Default)]
pub struct PeerSnapshot {
    /// Head-end replication list, in the order peers were added.
    pub flood: Box<[Remote]>,
    /// Sorted, deduplicated: the IPv4 ones of the flood-list peers and the remotes of static
    /// FDB entries, as 4-byte addresses (the IPv4 check compares 4 bytes, not 16)...
    known_v4: Box<[u32]>,
    /// ...and the IPv6 ones.
    known_v6: Box<[Remote]>,
    /// Sorted, deduplicated: the peers known to take remote checksum offload (the store's
    /// members registered with `remcsum_rx`).
    remote_csum: Box<[Remote]>,
}

impl PeerSnapshot {
    /// A snapshot from a flood list and the remotes of static entries.
    pub fn new(flood: &[IpAddr], static_remotes: impl Iterator<Item = IpAddr>) -> Self {
        let flood: Box<[Remote]> = flood.iter().map(|&ip| Remote::from(ip)).collect();
        let (mut known_v4, mut known_v6) = (Vec::new(), Vec::new());
        for r in flood
            .iter()
            .copied()
            .chain(static_remotes.map(Remote::from))
        {
            match r.as_v4() {
                Some(a) => known_v4.push(a.to_bits()),
                None => known_v6.push(r),
            }
        }
        PeerSnapshot {
            flood,
            known_v4: sorted(known_v4),
            known_v6: sorted(known_v6),
            remote_csum: Box::default(),
        }
    }

    /// This snapshot, with `peers` as those that take remote checksum offload.
    pub fn with_remote_csum(mut self, peers: impl Iterator<Item = IpAddr>) -> Self {
        self.remote_csum = sorted(peers.map(Remote::from).collect());
        self
    }

    /// Whether `ip` is known to take remote checksum offload.
    #[inline]
    pub fn takes_remote_csum(&self, ip: Remote) -> bool {
        contains(&self.remote_csum, &ip)
    }
    /// Whether `ip` may send us tunnel traffic for this network.
    #[inline]
    pub fn is_known(&self, ip: Remote) -> bool {
        match ip.as_v4() {
            Some(a) => self.is_known_v4(a),
            None => self.is_known_v6(ip),
        }
    }

    /// [`PeerSnapshot::is_known`] of an IPv4 address.
    #[inline]
    pub fn is_known_v4(&self, a: Ipv4Addr) -> bool {
        contains(&self.known_v4, &a.to_bits())
    }

    /// [`PeerSnapshot::is_known`] of an IPv6 address, out of line: the IPv4 check stays small.
    #[inline(never)]
    fn is_known_v6(&self, ip: Remote) -> bool {
        contains(&self.known_v6, &ip)
    }
}

/// `v` sorted and deduplicated.
fn sorted<T: Ord>(mut v: Vec<T>) -> Box<[T]> {
    v.sort_unstable();
    v.dedup();
    v.into()
}

/// Whether the sorted `list` holds `x`.
#[inline]
fn contains<T: Ord + Copy>(list: &[T], x: &T) -> bool {
    contains_by_key(list, |&k| k, x)
}

/// Whether `list`, sorted by `key`, holds an element whose key is `x` (the peer lists here,
/// and the sequence-locked copy of the IPv4 one, whose elements are atomics).
#[inline]
pub(super) fn contains_by_key<T, K: Ord>(list: &[T], key: impl Fn(&T) -> K, x: &K) -> bool {
    // Small lists (the common case) are faster to scan than to bisect. Scanned by hand:
    // `<[u32]>::contains` compares in chunks of 16 with vector instructions, whose set-up
    // costs more than the few compares a network's handful of IPv4 peers takes.
    if list.len() <= 16 {
        list.iter().any(|k| key(k) == *x)
    } else {
        list.binary_search_by(|k| key(k).cmp(x)).is_ok()
    }
}

/// The settings of a network a reload may change while it runs (see [`Network::apply`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetSettings {
    /// Learn remote MACs from decapsulated frames.
    pub learning: bool,
    /// How long a learned entry (and a learned neighbour) lives without being seen.
    pub ageing: std::time::Duration,
    /// Cap on learned entries (and on learned neighbours).
    pub max_learned: usize,
    /// MAC-move dampening.
    pub mac_move: MoveLimit,
    /// Storm control of the frames from the device that are flooded.
    pub storm: super::storm::StormLimits,
    /// ARP suppression (L2).
    pub arp_suppress: bool,
}

/// A network inside a `Core`.
#[derive(Debug)]
pub struct Network {
    /// Its VNI.
    pub vni: Vni,
    /// The local device's MAC.
    pub own_mac: MacAddr,
    /// VXLAN: the UDP port its datagrams must arrive on (fixed for the network's life).
    pub port: u16,
    /// Whether to learn from decapsulated frames.
    learning: AtomicBool,
    /// Ageing time in ms.
    ageing_ms: AtomicU64,
    /// Cap on learned entries.
    max_learned: AtomicUsize,
    /// MAC-move dampening policy.
    mac_move: AtomicMoveLimit,
    /// Storm-control buckets of the frames from the device that are flooded.
    pub storm: StormControl,
    /// Whether ARP suppression answers for this network (set by the L2 engine).
    arp_suppress: AtomicBool,
    /// False once the network was removed (a reload): the data path no longer finds it.
    live: AtomicBool,
    /// Learned entries currently in the FDB for this network (expired ones until removed).
    learned: AtomicUsize,
    /// Current peers (published with [`Network::publish_peers`], read with [`Network::peers`]).
    peers: ArcSwap<PeerSnapshot>,
    /// Their IPv4 list, for the check of every datagram ([`Network::knows_v4`]).
    known_v4: KnownV4,
    /// Whether the source MACs of frames from the device are recorded (`announce`).
    pub announce: bool,
    /// VXLAN: whether datagrams with remote checksum offload are accepted (part of the
    /// outer-header policy: fixed for the network's life).
    pub remote_csum_rx: bool,
    /// VXLAN: toward which remotes TCP segments leave with remote checksum offload (part of
    /// the outer-header policy: fixed for the network's life).
    pub remote_csum_tx: super::remote_csum::TxMode,
}

impl Network {
    /// A network from its configuration, with an initial peer snapshot.
    pub fn new(cfg: &NetworkConfig, flood: &[IpAddr]) -> Network {
        let snap = PeerSnapshot::new(flood, std::iter::empty());
        Network {
            vni: cfg.vni,
            own_mac: cfg.own_mac,
            port: cfg.port,
            learning: AtomicBool::new(cfg.learning),
            ageing_ms: AtomicU64::new(Timestamp::from_duration(cfg.ageing).millis()),
            max_learned: AtomicUsize::new(cfg.max_learned),
            mac_move: AtomicMoveLimit::new(cfg.mac_move),
            storm: StormControl::new(&cfg.storm),
            arp_suppress: AtomicBool::new(false),
            live: AtomicBool::new(true),
            learned: AtomicUsize::new(0),
            known_v4: KnownV4::new(&snap.known_v4),
            peers: ArcSwap::from_pointee(snap),
            announce: cfg.announce,
            remote_csum_rx: cfg.remote_csum_rx,
            remote_csum_tx: cfg.remote_csum_tx,
        }
    }

    /// Whether the network is in use (not removed).
    #[inline]
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// Takes the network out of use, for good.
    pub fn retire(&self) {
        self.live.store(false, Ordering::Release);
    }

    /// Whether to learn from decapsulated frames.
    #[inline]
    pub fn learning(&self) -> bool {
        self.learning.load(Ordering::Relaxed)
    }

    /// Ageing time of learned entries, in ms.
    #[inline]
    pub fn ageing_ms(&self) -> u64 {
        self.ageing_ms.load(Ordering::Relaxed)
    }

    /// Cap on learned entries.
    #[inline]
    pub fn max_learned(&self) -> usize {
        self.max_learned.load(Ordering::Relaxed)
    }

    /// The MAC-move dampening policy.
    #[inline]
    pub fn mac_move(&self) -> MoveLimit {
        self.mac_move.load()
    }

    /// Whether ARP suppression is on.
    #[inline]
    pub fn arp_suppress(&self) -> bool {
        self.arp_suppress.load(Ordering::Relaxed)
    }

    /// Turns ARP suppression on or off.
    pub fn set_arp_suppress(&self, on: bool) {
        self.arp_suppress.store(on, Ordering::Relaxed);
    }

    /// Takes new settings at once, for the packets that follow: entries, counts and buckets
    /// are kept (a lower cap refuses new learning until enough entries age out).
    pub fn apply(&self, s: &NetSettings) {
        self.learning.store(s.learning, Ordering::Relaxed);
        self.ageing_ms.store(
            Timestamp::from_duration(s.ageing).millis(),
            Ordering::Relaxed,
        );
        self.max_learned.store(s.max_learned, Ordering::Relaxed);
        self.mac_move.store(s.mac_move);
        self.storm.set(&s.storm);
        self.set_arp_suppress(s.arp_suppress);
    }

    /// Reserves room for one more learned entry; false when the cap is reached.
    #[inline]
    pub fn reserve_learned(&self) -> bool {
        self.learned
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_learned()).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives back a reservation, or accounts for one learned entry removed.
    #[inline]
    pub fn release_learned(&self) {
        // Never underflows: every release pairs with a successful reservation.
        let _ = self
            .learned
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Learned entries counted against the cap.
    pub fn learned_count(&self) -> usize {
        self.learned.load(Ordering::Relaxed)
    }

    /// The current peer snapshot.
    #[inline]
    pub fn peers(&self) -> arc_swap::Guard<Arc<PeerSnapshot>> {
        self.peers.load()
    }

    /// Publishes a new peer snapshot.
    pub fn publish_peers(&self, snap: PeerSnapshot) {
        let snap = Arc::new(snap);
        self.known_v4
            .publish(&snap.known_v4, || self.peers.store(Arc::clone(&snap)));
    }

    /// Whether the IPv4 address `a` may send us tunnel traffic for this network: a published
    /// snapshot's [`PeerSnapshot::is_known_v4`] (the current one's, or while a publication is
    /// under way the next one's), without loading it when the list is short.
    #[inline]
    pub fn knows_v4(&self, a: Ipv4Addr) -> bool {
        match self.known_v4.get(a.to_bits()) {
            Some(known) => known,
            None => self.knows_v4_from_snapshot(a),
        }
    }

    /// [`Network::knows_v4`] of a network with more IPv4 peers than the table holds, or while
    /// publications keep the table busy.
    #[cold]
    #[inline(never)]
    fn knows_v4_from_snapshot(&self, a: Ipv4Addr) -> bool {
        self.peers.load().is_known_v4(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))
    }

    #[test]
    fn known_is_flood_list_plus_static_remotes() {
        let s = PeerSnapshot::new(&[ip(3), ip(1)], [ip(9), ip(3)].into_iter());
        assert_eq!(&*s.flood, &[ip(3), ip(1)]);
        for n in [1, 3, 9] {
            assert!(s.is_known(ip(n).into()));
        }
        assert!(!s.is_known(ip(2).into()));
    }

    /// IPv6 remotes are known as IPv4 ones are; an IPv4 address and the IPv6 address whose
    /// low 32 bits it is are told apart.
    #[test]
    fn known_ipv6_remotes_are_kept_apart_from_ipv4() {
        let v6 = |s: &str| IpAddr::V6(s.parse().unwrap());
        let s = PeerSnapshot::new(&[v6("2001:db8::2"), ip(1)], [v6("2001:db8::9")].into_iter());
        for r in [v6("2001:db8::2"), v6("2001:db8::9"), ip(1)] {
            assert!(s.is_known(r.into()), "{r}");
        }
        for r in [v6("2001:db8::3"), v6("::c000:201"), ip(2)] {
            assert!(!s.is_known(r.into()), "{r}");
        }
    }

    #[test]
    fn known_large_list_bisects() {
        let flood: Vec<_> = (1..=100).map(ip).collect();
        let s = PeerSnapshot::new(&flood, std::iter::empty());
        assert!(s.is_known(ip(57).into()));
        assert!(!s.is_known(ip(200).into()));
    }

    /// The per-datagram IPv4 check answers as the published snapshot does, from the table for
    /// a short list and from the snapshot for one too long for it, and follows publications.
    #[test]
    fn knows_v4_follows_each_published_snapshot() {
        let cfg = NetworkConfig {
            vni: Vni::new(1).unwrap(),
            ..NetworkConfig::default()
        };
        let v4 = |n: u8| Ipv4Addr::new(192, 0, 2, n);
        let n = Network::new(&cfg, &[ip(1), ip(2)]);
        assert!(n.knows_v4(v4(1)) && n.knows_v4(v4(2)) && !n.knows_v4(v4(3)));
        let v6 = IpAddr::V6("2001:db8::5".parse().unwrap());
        for (flood, statics) in [
            ((10..=200).map(ip).collect::<Vec<_>>(), vec![ip(5)]),
            (vec![ip(7), v6], vec![ip(3)]),
            ((100..=163).map(ip).collect(), vec![]),
            ((100..=164).map(ip).collect(), vec![]),
            (vec![], vec![]),
        ] {
            n.publish_peers(PeerSnapshot::new(&flood, statics.iter().copied()));
            let snap = n.peers();
            let want = flood.iter().chain(&statics).filter(|r| r.is_ipv4()).count();
            // The table answers for up to 64 addresses, the snapshot for more.
            assert_eq!(
                n.known_v4.get(1).is_some(),
                want <= KnownV4::CAP,
                "{want} addresses"
            );
            for a in 0..=255 {
                assert_eq!(n.knows_v4(v4(a)), snap.is_known_v4(v4(a)), "{}", v4(a));
            }
            assert_eq!((0..=255).filter(|&a| n.knows_v4(v4(a))).count(), want);
        }
    }

    #[test]
    fn learned_cap_reserve_and_release() {
        let cfg = NetworkConfig {
            vni: Vni::new(1).unwrap(),
            own_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            ageing: std::time::Duration::from_secs(1),
            max_learned: 2,
            ..NetworkConfig::default()
        };
        let n = Network::new(&cfg, &[]);
        assert!(n.reserve_learned());
        assert!(n.reserve_learned());
        assert!(!n.reserve_learned());
        n.release_learned();
        assert!(n.reserve_learned());
        assert_eq!(n.learned_count(), 2);
        // A lower cap refuses until entries go; a higher one takes more at once.
        let mut s = NetSettings {
            learning: false,
            ageing: std::time::Duration::from_secs(9),
            max_learned: 1,
            mac_move: MoveLimit::OFF,
            storm: super::super::storm::StormLimits::default(),
            arp_suppress: true,
        };
        n.apply(&s);
        assert!(!n.reserve_learned());
        assert_eq!(n.learned_count(), 2);
        s.max_learned = 3;
        n.apply(&s);
        assert!(n.reserve_learned());
        assert!(!n.learning() && n.arp_suppress());
        assert_eq!((n.ageing_ms(), n.mac_move()), (9000, MoveLimit::OFF));
    }
}
