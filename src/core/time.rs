//! Time as the core sees it: a monotonic timestamp passed in by the caller.

use std::time::Duration;

/// Milliseconds since an arbitrary, fixed epoch chosen by the caller (monotonic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The epoch.
    pub const ZERO: Timestamp = Timestamp(0);

    /// A timestamp `d` after the epoch.
    pub fn from_duration(d: Duration) -> Timestamp {
        Timestamp(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
    /// Milliseconds since the epoch.
    pub const fn millis(self) -> u64 {
        self.0
    }
    /// `self + d`, saturating (also available as `+`).
    #[allow(clippy::should_implement_trait)]
    pub fn add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(Timestamp::from_duration(d).0))
    }
    /// Time from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    /// `self + d`, saturating.
    fn add(self, d: Duration) -> Timestamp {
        Timestamp::add(self, d)
    }
}
