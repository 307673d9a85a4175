//! One overlay network as the data path sees it: immutable settings, the learned-entry count,
//! and a snapshot of its peers (flood list and known remotes) swapped on every change.

use super::dampening::MoveLimit;
use super::storm::StormControl;
use super::{NetworkConfig, Timestamp};
use arc_swap::ArcSwap;
use encap::{MacAddr, Vni};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// An immutable view of a network's peers, replaced as a whole (never edited in place), so
/// the per-packet path reads it without a lock.
#[derive(Debug, Default)]
pub struct PeerSnapshot {
    /// Head-end replication list, in the order peers were added.
    pub flood: Box<[Ipv4Addr]>,
    /// Sorted, deduplicated: flood-list peers and the remotes of static FDB entries.
    known: Box<[Ipv4Addr]>,
}

impl PeerSnapshot {
    /// A snapshot from a flood list and the remotes of static entries.
    pub fn new(flood: &[Ipv4Addr], static_remotes: impl Iterator<Item = Ipv4Addr>) -> Self {
        let mut known: Vec<Ipv4Addr> = flood.iter().copied().chain(static_remotes).collect();
        known.sort_unstable();
        known.dedup();
        PeerSnapshot {
            flood: flood.into(),
            known: known.into(),
        }
    }
    /// Whether `ip` may send us tunnel traffic for this network.
    #[inline]
    pub fn is_known(&self, ip: Ipv4Addr) -> bool {
        // Small lists (the common case) are faster to scan than to bisect.
        if self.known.len() <= 16 {
            self.known.contains(&ip)
        } else {
            self.known.binary_search(&ip).is_ok()
        }
    }
}

/// A network inside a `Core`.
#[derive(Debug)]
pub struct Network {
    /// Its VNI.
    pub vni: Vni,
    /// The local device's MAC.
    pub own_mac: MacAddr,
    /// Whether to learn from decapsulated frames.
    pub learning: bool,
    /// Ageing time in ms.
    pub ageing_ms: u64,
    /// Cap on learned entries.
    pub max_learned: usize,
    /// MAC-move dampening policy.
    pub mac_move: MoveLimit,
    /// Storm-control buckets of the frames from the device that are flooded.
    pub storm: StormControl,
    /// Learned entries currently in the FDB for this network (expired ones until removed).
    learned: AtomicUsize,
    /// Current peers.
    pub peers: ArcSwap<PeerSnapshot>,
}

impl Network {
    /// A network from its configuration, with an initial peer snapshot.
    pub fn new(cfg: &NetworkConfig, flood: &[Ipv4Addr]) -> Network {
        Network {
            vni: cfg.vni,
            own_mac: cfg.own_mac,
            learning: cfg.learning,
            ageing_ms: Timestamp::from_duration(cfg.ageing).millis(),
            max_learned: cfg.max_learned,
            mac_move: cfg.mac_move,
            storm: StormControl::new(&cfg.storm),
            learned: AtomicUsize::new(0),
            peers: ArcSwap::from_pointee(PeerSnapshot::new(flood, std::iter::empty())),
        }
    }

    /// Reserves room for one more learned entry; false when the cap is reached.
    #[inline]
    pub fn reserve_learned(&self) -> bool {
        self.learned
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_learned).then_some(n + 1)
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

    /// Publishes a new peer snapshot.
    pub fn publish_peers(&self, snap: PeerSnapshot) {
        self.peers.store(Arc::new(snap));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(192, 0, 2, n)
    }

    #[test]
    fn known_is_flood_list_plus_static_remotes() {
        let s = PeerSnapshot::new(&[ip(3), ip(1)], [ip(9), ip(3)].into_iter());
        assert_eq!(&*s.flood, &[ip(3), ip(1)]);
        for n in [1, 3, 9] {
            assert!(s.is_known(ip(n)));
        }
        assert!(!s.is_known(ip(2)));
    }

    #[test]
    fn known_large_list_bisects() {
        let flood: Vec<_> = (1..=100).map(ip).collect();
        let s = PeerSnapshot::new(&flood, std::iter::empty());
        assert!(s.is_known(ip(57)));
        assert!(!s.is_known(ip(200)));
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
    }
}
