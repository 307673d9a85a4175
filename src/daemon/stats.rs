//! Per-worker counters published for the control plane, and the daemon's clock.
//!
//! Each worker owns a plain [`Counters`] on its hot path and copies it into its own cache-padded
//! slot of atomics after every batch (relaxed stores: the reader only needs a recent value, not
//! a consistent cut). The control plane sums the slots without ever blocking a worker.

use crate::core::{Counters, Timestamp};
use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Values in one slot: [`Counters::to_array`].
const SLOT_LEN: usize = Counters::LEN;

#[derive(Debug)]
struct Slot([AtomicU64; SLOT_LEN]);

/// The published counters of every worker.
#[derive(Debug)]
pub struct StatsBoard {
    slots: Box<[CachePadded<Slot>]>,
}

impl StatsBoard {
    /// A board for `workers` workers, all zero.
    pub fn new(workers: usize) -> StatsBoard {
        let slots = (0..workers)
            .map(|_| CachePadded::new(Slot(std::array::from_fn(|_| AtomicU64::new(0)))))
            .collect();
        StatsBoard { slots }
    }

    /// Publishes worker `w`'s counters (ignored if `w` is out of range).
    pub fn publish(&self, w: usize, c: &Counters) {
        if let Some(slot) = self.slots.get(w) {
            for (dst, v) in slot.0.iter().zip(c.to_array()) {
                dst.store(v, Ordering::Relaxed);
            }
        }
    }

    /// Each worker's counters, in worker order.
    pub fn per_worker(&self) -> Vec<Counters> {
        self.slots
            .iter()
            .map(|slot| {
                Counters::from_array(&std::array::from_fn(|i| slot.0[i].load(Ordering::Relaxed)))
            })
            .collect()
    }

    /// The sum over all workers.
    pub fn sum(&self) -> Counters {
        let mut total = Counters::default();
        for slot in self.slots.iter() {
            let a: [u64; SLOT_LEN] = std::array::from_fn(|i| slot.0[i].load(Ordering::Relaxed));
            total.add(&Counters::from_array(&a));
        }
        total
    }
}

/// Monotonic time since the daemon started, as the core's [`Timestamp`].
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    /// A clock whose epoch is now.
    pub fn new() -> Clock {
        Clock {
            start: Instant::now(),
        }
    }
    /// The current timestamp.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_duration(self.start.elapsed())
    }
    /// Time since the epoch.
    pub fn uptime(&self) -> Duration {
        self.start.elapsed()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counters whose every value (drops included) is distinct and depends on `k`.
    fn sample(k: u64) -> Counters {
        Counters::from_array(&std::array::from_fn(|i| k * 100 + i as u64))
    }

    #[test]
    fn board_sums_workers() {
        let b = StatsBoard::new(2);
        b.publish(0, &sample(1));
        b.publish(1, &sample(10));
        b.publish(5, &sample(1000)); // out of range: ignored
        let mut want = sample(1);
        want.add(&sample(10));
        assert_eq!(b.sum(), want);
        assert_eq!(b.per_worker(), vec![sample(1), sample(10)]);
        // A later publish replaces, not adds.
        b.publish(1, &Counters::default());
        assert_eq!(b.sum(), sample(1));
    }
}
