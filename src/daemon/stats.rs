//! Per-worker counters published for the control plane, and the daemon's clock.
//!
//! Each worker owns a plain [`Counters`] on its hot path and copies it into its own cache-padded
//! slot of atomics after every batch (relaxed stores: the reader only needs a recent value, not
//! a consistent cut). The control plane sums the slots without ever blocking a worker.

use crate::core::{Counters, DropReason, Timestamp};
use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Scalar counters before the drop array.
const SCALARS: usize = 18;
/// Values in one slot.
const SLOT_LEN: usize = SCALARS + DropReason::COUNT;

fn to_array(c: &Counters) -> [u64; SLOT_LEN] {
    // Destructured without `..`: a counter added to `Counters` but not published here is a
    // compile error, not a value silently missing from `stats`.
    let Counters {
        rx_tunnel,
        tx_tunnel,
        rx_device,
        tx_device,
        flood_copies,
        learned,
        mac_moves,
        learn_refused,
        learn_static_conflict,
        neigh_learned,
        neigh_mac_changes,
        neigh_refused,
        arp_suppressed,
        arp_requests,
        arp_replies,
        icmp_echo_replies,
        neigh_failed,
        rx_merged,
        drops,
    } = *c;
    let mut a = [0u64; SLOT_LEN];
    a[..SCALARS].copy_from_slice(&[
        rx_tunnel,
        tx_tunnel,
        rx_device,
        tx_device,
        flood_copies,
        learned,
        mac_moves,
        learn_refused,
        learn_static_conflict,
        neigh_learned,
        neigh_mac_changes,
        neigh_refused,
        arp_suppressed,
        arp_requests,
        arp_replies,
        icmp_echo_replies,
        neigh_failed,
        rx_merged,
    ]);
    a[SCALARS..].copy_from_slice(&drops);
    a
}

fn from_array(a: &[u64; SLOT_LEN]) -> Counters {
    let mut c = Counters {
        rx_tunnel: a[0],
        tx_tunnel: a[1],
        rx_device: a[2],
        tx_device: a[3],
        flood_copies: a[4],
        learned: a[5],
        mac_moves: a[6],
        learn_refused: a[7],
        learn_static_conflict: a[8],
        neigh_learned: a[9],
        neigh_mac_changes: a[10],
        neigh_refused: a[11],
        arp_suppressed: a[12],
        arp_requests: a[13],
        arp_replies: a[14],
        icmp_echo_replies: a[15],
        neigh_failed: a[16],
        rx_merged: a[17],
        ..Counters::default()
    };
    c.drops.copy_from_slice(&a[SCALARS..]);
    c
}

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
            for (dst, v) in slot.0.iter().zip(to_array(c)) {
                dst.store(v, Ordering::Relaxed);
            }
        }
    }

    /// Each worker's counters, in worker order.
    pub fn per_worker(&self) -> Vec<Counters> {
        self.slots
            .iter()
            .map(|slot| from_array(&std::array::from_fn(|i| slot.0[i].load(Ordering::Relaxed))))
            .collect()
    }

    /// The sum over all workers.
    pub fn sum(&self) -> Counters {
        let mut total = Counters::default();
        for slot in self.slots.iter() {
            let a: [u64; SLOT_LEN] = std::array::from_fn(|i| slot.0[i].load(Ordering::Relaxed));
            total.add(&from_array(&a));
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

    fn sample(k: u64) -> Counters {
        let mut c = Counters {
            rx_tunnel: k,
            tx_tunnel: k + 1,
            rx_device: k + 2,
            tx_device: k + 3,
            flood_copies: k + 4,
            learned: k + 5,
            mac_moves: k + 6,
            learn_refused: k + 7,
            learn_static_conflict: k + 8,
            neigh_learned: k + 9,
            neigh_mac_changes: k + 10,
            neigh_refused: k + 11,
            arp_suppressed: k + 12,
            arp_requests: k + 13,
            arp_replies: k + 14,
            icmp_echo_replies: k + 15,
            neigh_failed: k + 16,
            rx_merged: k + 17,
            ..Counters::default()
        };
        for (i, d) in c.drops.iter_mut().enumerate() {
            *d = k * 100 + i as u64;
        }
        c
    }

    #[test]
    fn array_round_trip_keeps_every_field() {
        let c = sample(7);
        assert_eq!(from_array(&to_array(&c)), c);
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
