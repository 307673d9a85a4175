//! VNI -> [`NetId`] for the per-datagram lookup, changed at run time (networks added and
//! removed by a reload) while the workers read it without a lock.
//!
//! Written by hand rather than taken from a concurrent map crate: the keys are at most as many
//! as the core has network slots, fixed at start, so an open-addressing table of atomic words
//! twice that size never grows, never allocates, and answers a lookup with one or two atomic
//! loads (a concurrent map would take a guard per datagram). Writers are serialised by the
//! core's control mutex; a removed key leaves a tombstone that keeps later keys reachable.
//! Each key is inserted at most once per NetId and NetIds are never reused, so tombstones
//! plus live keys never exceed the slots and the table stays at most half full.

use super::NetId;
use encap::Vni;
use std::sync::atomic::{AtomicU64, Ordering};

/// A word: `USED | TOMB? | id << 24 | vni` (0: empty).
const USED: u64 = 1 << 63;
const TOMB: u64 = 1 << 62;
const VNI_MASK: u64 = (1 << 24) - 1;

/// The index.
#[derive(Debug)]
pub struct VniIndex {
    words: Box<[AtomicU64]>,
    mask: usize,
}

impl VniIndex {
    /// An empty index for up to `keys` networks over the core's life.
    pub fn new(keys: usize) -> VniIndex {
        let len = (keys.max(1) * 2).next_power_of_two();
        VniIndex {
            words: (0..len).map(|_| AtomicU64::new(0)).collect(),
            mask: len - 1,
        }
    }

    fn home(&self, vni: Vni) -> usize {
        // Fibonacci hashing: consecutive VNIs (the common numbering) spread out.
        (u64::from(vni.get()).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as usize & self.mask
    }

    /// The network with `vni`. Lock-free.
    #[inline]
    pub fn get(&self, vni: Vni) -> Option<NetId> {
        let want = USED | u64::from(vni.get());
        let mut at = self.home(vni);
        for _ in 0..self.words.len() {
            let w = self.words.get(at)?.load(Ordering::Acquire);
            // Used, not a tombstone, this VNI: one comparison.
            if w & (USED | TOMB | VNI_MASK) == want {
                return Some(NetId((w >> 24) as u16));
            }
            if w == 0 {
                return None;
            }
            at = (at + 1) & self.mask;
        }
        None
    }

    /// Adds `vni` -> `id` (the caller holds the control mutex and has checked `vni` is absent);
    /// false if the table is full (never, within its sizing).
    pub fn insert(&self, vni: Vni, id: NetId) -> bool {
        let word = USED | (u64::from(id.0) << 24) | u64::from(vni.get());
        let mut at = self.home(vni);
        for _ in 0..self.words.len() {
            if self.words[at].load(Ordering::Relaxed) == 0 {
                self.words[at].store(word, Ordering::Release);
                return true;
            }
            at = (at + 1) & self.mask;
        }
        false
    }

    /// Removes `vni` (the caller holds the control mutex).
    pub fn remove(&self, vni: Vni) {
        let key = u64::from(vni.get());
        let mut at = self.home(vni);
        for _ in 0..self.words.len() {
            let w = self.words[at].load(Ordering::Relaxed);
            if w == 0 {
                return;
            }
            if w & TOMB == 0 && w & VNI_MASK == key {
                self.words[at].store(w | TOMB, Ordering::Release);
                return;
            }
            at = (at + 1) & self.mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(n: u32) -> Vni {
        Vni::new(n).unwrap()
    }

    #[test]
    fn keys_come_and_go_and_later_keys_stay_reachable() {
        let ix = VniIndex::new(64);
        for i in 0..32u16 {
            assert!(ix.insert(v(u32::from(i) * 7), NetId(i)));
        }
        for i in 0..32u16 {
            assert_eq!(ix.get(v(u32::from(i) * 7)), Some(NetId(i)));
        }
        assert_eq!(ix.get(v(1)), None);
        for i in (0..32u16).step_by(2) {
            ix.remove(v(u32::from(i) * 7));
        }
        for i in 0..32u16 {
            let want = (i % 2 == 1).then_some(NetId(i));
            assert_eq!(ix.get(v(u32::from(i) * 7)), want, "{i}");
        }
        // A removed VNI comes back as another network.
        assert!(ix.insert(v(0), NetId(40)));
        assert_eq!(ix.get(v(0)), Some(NetId(40)));
        assert_eq!(ix.get(v(Vni::MAX)), None);
    }

    #[test]
    fn a_full_table_answers_and_refuses() {
        let ix = VniIndex::new(1);
        assert!(ix.insert(v(1), NetId(0)) && ix.insert(v(2), NetId(1)));
        assert!(!ix.insert(v(3), NetId(2)));
        assert_eq!(ix.get(v(3)), None);
        assert_eq!(ix.get(v(2)), Some(NetId(1)));
    }
}
