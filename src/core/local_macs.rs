//! MACs seen on the local devices of the networks that announce them (`announce = true` with a
//! store): the source MACs of frames read from the device, with when each was last seen. The
//! daemon publishes them so that remote VTEPs install them before any traffic (what EVPN route
//! type 2 does), and withdraws each when it ages out like a learned entry.
//!
//! On the packet path a known MAC costs one lock-free lookup (and a relaxed store at most once a
//! second); a new one one insert, up to a cap. The control plane lists and ages them.

use super::fdb::FdbKey;
use encap::{MacAddr, Vni};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// How much older than `now` a last-seen time must be before a frame stores it again (so that a
/// busy MAC does not write its cache line on every frame).
const REFRESH_MS: u64 = 1000;

/// What [`LocalMacs::seen`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Already known (refreshed if due).
    Known,
    /// A new MAC, now recorded.
    New,
    /// A new MAC not recorded: the table is full.
    Full,
}

/// The local MACs of every announcing network: (VNI, MAC) -> last seen (ms).
#[derive(Debug)]
pub struct LocalMacs {
    map: papaya::HashMap<FdbKey, AtomicU64, ahash::RandomState>,
    len: AtomicUsize,
    cap: usize,
}

impl LocalMacs {
    /// An empty table holding at most `cap` MACs.
    pub fn new(cap: usize) -> LocalMacs {
        LocalMacs {
            map: papaya::HashMap::builder()
                .hasher(ahash::RandomState::new())
                .build(),
            len: AtomicUsize::new(0),
            cap,
        }
    }

    /// `mac` was the source of a frame from network `vni`'s device at `now_ms`.
    #[inline]
    pub fn seen(&self, vni: Vni, mac: MacAddr, now_ms: u64) -> Seen {
        let key = FdbKey::new(vni, mac);
        let guard = self.map.guard();
        if let Some(t) = self.map.get(&key, &guard) {
            if now_ms.saturating_sub(t.load(Relaxed)) >= REFRESH_MS {
                t.store(now_ms, Relaxed);
            }
            return Seen::Known;
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

    /// Every MAC not idle for longer than its network's ageing time (`ageing_ms`: `None` for a
    /// network that is gone), sorted.
    pub fn live(&self, now_ms: u64, ageing_ms: impl Fn(Vni) -> Option<u64>) -> Vec<(Vni, MacAddr)> {
        let guard = self.map.guard();
        let mut out: Vec<(Vni, MacAddr)> = self
            .map
            .iter(&guard)
            .filter(|(k, t)| {
                ageing_ms(k.vni()).is_some_and(|a| now_ms.saturating_sub(t.load(Relaxed)) <= a)
            })
            .map(|(k, _)| (k.vni(), k.mac()))
            .collect();
        out.sort_unstable();
        out
    }

    /// Removes the MACs idle for longer than their network's ageing time (all of a network that
    /// is gone); returns how many.
    pub fn expire(&self, now_ms: u64, ageing_ms: impl Fn(Vni) -> Option<u64>) -> usize {
        let guard = self.map.guard();
        let stale = |k: &FdbKey, t: &AtomicU64| {
            ageing_ms(k.vni()).is_none_or(|a| now_ms.saturating_sub(t.load(Relaxed)) > a)
        };
        let keys: Vec<FdbKey> = self
            .map
            .iter(&guard)
            .filter(|(k, t)| stale(k, t))
            .map(|(k, _)| *k)
            .collect();
        let mut removed = 0;
        for k in keys {
            // Re-checked: a frame since the scan keeps it.
            if let Ok(Some(_)) = self.map.remove_if(&k, |k, t| stale(k, t), &guard) {
                self.len.fetch_sub(1, Relaxed);
                removed += 1;
            }
        }
        removed
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
        assert_eq!(t.seen(v, a, 1000), Seen::New);
        assert_eq!(t.seen(v, a, 1500), Seen::Known);
        assert_eq!(t.seen(v, b, 1000), Seen::New);
        assert_eq!(t.seen(v, c, 1000), Seen::Full, "the cap");
        let ageing = |_| Some(10_000);
        // a refreshed at 12000 (more than a second after 1000); b not seen again.
        assert_eq!(t.seen(v, a, 12_000), Seen::Known);
        assert_eq!(t.live(12_000, ageing), [(v, a)]);
        assert_eq!(t.expire(12_000, ageing), 1);
        assert_eq!(t.seen(v, c, 12_000), Seen::New, "room again");
        assert_eq!(t.live(12_000, ageing), [(v, a), (v, c)]);
        assert_eq!(t.expire(12_000, |_| None), 2, "a network gone: all of it");
        assert!(t.live(12_000, ageing).is_empty());
    }
}
