//! Storm control: per-network rate limits on the frames from the local device that are
//! replicated to every peer (broadcast, unknown unicast, multicast), so one VM's broadcast
//! storm cannot become N copies at line rate on the underlay. Frames over the limit are dropped
//! under `storm_broadcast`, `storm_unknown_unicast` or `storm_multicast`.
//!
//! Each limit is a token bucket written as GCRA (the "virtual scheduling" form of a token
//! bucket): one atomic "theoretical arrival time" per kind, advanced by compare-and-swap, so
//! every worker polices the same bucket without a lock, and a frame over the limit costs one
//! load. A bucket holds a tenth of a second of frames (at least one), so short bursts pass.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A network's storm-control limits in frames per second (`None`: unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StormLimits {
    /// Broadcast frames (destination ff:ff:ff:ff:ff:ff).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broadcast: Option<u32>,
    /// Unicast frames to a MAC the FDB does not know.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown_unicast: Option<u32>,
    /// Multicast frames (group bit set, not broadcast).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multicast: Option<u32>,
}

impl StormLimits {
    /// Checks that every limit given is at least one frame per second.
    pub fn validate(&self) -> Result<(), String> {
        for (kind, v) in self.by_kind() {
            if v == Some(0) {
                return Err(format!(
                    "storm {} must be at least 1 frame/s (leave it out for no limit)",
                    kind.name()
                ));
            }
        }
        Ok(())
    }

    fn by_kind(&self) -> [(FloodKind, Option<u32>); 3] {
        [
            (FloodKind::Broadcast, self.broadcast),
            (FloodKind::UnknownUnicast, self.unknown_unicast),
            (FloodKind::Multicast, self.multicast),
        ]
    }
}

/// What makes a frame from the device go to every peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodKind {
    /// Broadcast destination.
    Broadcast,
    /// Unicast destination not in the FDB.
    UnknownUnicast,
    /// Multicast destination.
    Multicast,
}

impl FloodKind {
    /// The name used in configuration and counters.
    pub fn name(self) -> &'static str {
        match self {
            FloodKind::Broadcast => "broadcast",
            FloodKind::UnknownUnicast => "unknown_unicast",
            FloodKind::Multicast => "multicast",
        }
    }
}

/// One lock-free token bucket (GCRA). Times are in microseconds. The rate can be changed
/// while workers police (a reload): interval and tolerance are atomics of their own, and a
/// frame that reads one old and one new value is judged by a mix of the two limits, once.
#[derive(Debug, Default)]
struct Bucket {
    /// Time between two frames at the limit; 0: no limit.
    interval_us: AtomicU64,
    /// How far ahead of now the theoretical arrival time may run (the bucket's depth).
    tolerance_us: AtomicU64,
    /// Theoretical arrival time of the next frame.
    tat_us: AtomicU64,
}

impl Bucket {
    /// Sets the limit (`None`: unlimited).
    fn set(&self, per_sec: Option<u32>) {
        let (interval_us, tolerance_us) = match per_sec {
            None => (0, 0),
            Some(per_sec) => {
                let per_sec = u64::from(per_sec.max(1));
                let interval_us = (1_000_000 / per_sec).max(1);
                let depth = (per_sec / 10).max(1);
                (interval_us, (depth - 1) * interval_us)
            }
        };
        self.tolerance_us.store(tolerance_us, Relaxed);
        self.interval_us.store(interval_us, Relaxed);
    }

    /// Takes a token at `now_us`; false when the bucket is empty.
    #[inline]
    fn take(&self, now_us: u64) -> bool {
        let interval_us = self.interval_us.load(Relaxed);
        if interval_us == 0 {
            return true;
        }
        let tolerance_us = self.tolerance_us.load(Relaxed);
        let mut tat = self.tat_us.load(Relaxed);
        loop {
            if tat.saturating_sub(now_us) > tolerance_us {
                return false;
            }
            let next = tat.max(now_us) + interval_us;
            match self
                .tat_us
                .compare_exchange_weak(tat, next, Relaxed, Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => tat = seen,
            }
        }
    }
}

/// A network's buckets, one per kind (an unlimited kind costs one load).
#[derive(Debug, Default)]
pub struct StormControl {
    buckets: [Bucket; 3],
}

impl StormControl {
    /// The buckets of `limits`.
    pub fn new(limits: &StormLimits) -> StormControl {
        let c = StormControl::default();
        c.set(limits);
        c
    }

    /// Replaces the limits (a reload); buckets keep their state.
    pub fn set(&self, limits: &StormLimits) {
        for (b, (_, v)) in self.buckets.iter().zip(limits.by_kind()) {
            b.set(v);
        }
    }

    /// Whether a frame of `kind` may be flooded at `now_ms`.
    #[inline]
    pub fn allow(&self, kind: FloodKind, now_ms: u64) -> bool {
        self.buckets[kind as usize].take(now_ms.saturating_mul(1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passed(c: &StormControl, kind: FloodKind, frames_per_ms: u32, ms: u64) -> u32 {
        let mut n = 0;
        for t in 0..ms {
            for _ in 0..frames_per_ms {
                n += u32::from(c.allow(kind, t));
            }
        }
        n
    }

    #[test]
    fn a_flood_passes_at_the_limit_plus_one_burst() {
        let c = StormControl::new(&StormLimits {
            broadcast: Some(1000),
            ..StormLimits::default()
        });
        // 10 frames per ms for 2 s against 1000/s: 2000 at the rate, plus the 100-frame burst.
        let n = passed(&c, FloodKind::Broadcast, 10, 2000);
        assert!((2000..=2101).contains(&n), "{n}");
        // Other kinds are unlimited.
        assert_eq!(passed(&c, FloodKind::Multicast, 10, 100), 1000);
    }

    #[test]
    fn traffic_under_the_limit_all_passes() {
        let c = StormControl::new(&StormLimits {
            unknown_unicast: Some(500),
            ..StormLimits::default()
        });
        let mut n = 0;
        for t in (0..10_000).step_by(4) {
            n += u32::from(c.allow(FloodKind::UnknownUnicast, t));
        }
        assert_eq!(n, 2500);
    }

    #[test]
    fn slow_limits_still_pass_one_frame_at_a_time() {
        let c = StormControl::new(&StormLimits {
            multicast: Some(2),
            ..StormLimits::default()
        });
        assert!(c.allow(FloodKind::Multicast, 0));
        assert!(!c.allow(FloodKind::Multicast, 100));
        assert!(c.allow(FloodKind::Multicast, 500));
    }

    #[test]
    fn limits_change_in_place() {
        let c = StormControl::new(&StormLimits::default());
        assert_eq!(passed(&c, FloodKind::Broadcast, 10, 100), 1000);
        c.set(&StormLimits {
            broadcast: Some(1000),
            ..StormLimits::default()
        });
        let n = passed(&c, FloodKind::Broadcast, 10, 2000);
        assert!((2000..=2101).contains(&n), "{n}");
        c.set(&StormLimits::default());
        assert_eq!(passed(&c, FloodKind::Broadcast, 10, 100), 1000);
    }

    #[test]
    fn zero_is_refused() {
        let l = StormLimits {
            multicast: Some(0),
            ..StormLimits::default()
        };
        assert!(l.validate().unwrap_err().contains("multicast"));
    }
}
