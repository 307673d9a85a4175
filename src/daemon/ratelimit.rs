//! Log hygiene shared by the dataplane workers: error lines at most once per period, and a
//! periodic one-line summary of what was dropped.

use crate::core::{Counters, DropReason, Timestamp};
use std::time::Duration;
use tracing::info;

/// Period of the drop summary and of rate-limited error logs.
pub const REPORT: Duration = Duration::from_secs(10);

/// Allows one log line per [`REPORT`] period and counts the ones it held back.
#[derive(Debug, Default)]
pub struct RateLimit {
    next: Timestamp,
    suppressed: u64,
}

impl RateLimit {
    /// `Some(suppressed since the last line)` when a line may be logged now.
    pub fn check(&mut self, now: Timestamp) -> Option<u64> {
        if now >= self.next {
            self.next = now.add(REPORT);
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

/// Logs, at most once per [`REPORT`] period, how many packets a worker dropped since its
/// last summary, by reason.
#[derive(Debug)]
pub struct DropReport {
    next: Timestamp,
    reported: [u64; DropReason::COUNT],
}

impl DropReport {
    /// A report whose first summary is due one period after `now`.
    pub fn new(now: Timestamp) -> DropReport {
        DropReport {
            next: now.add(REPORT),
            reported: [0; DropReason::COUNT],
        }
    }

    /// Logs the drops of `ctr` since the last summary, if one is due (worker `id`).
    pub fn tick(&mut self, now: Timestamp, id: usize, ctr: &Counters) {
        if now < self.next {
            return;
        }
        self.next = now.add(REPORT);
        let mut parts = Vec::new();
        for r in DropReason::ALL {
            let (count, before) = (ctr.drops_of(*r), self.reported[*r as usize]);
            if count > before && !r.is_quiet() {
                parts.push(format!("{}={}", r.name(), count - before));
            }
            self.reported[*r as usize] = count;
        }
        if !parts.is_empty() {
            info!(
                worker = id,
                "dropped in the last {}s: {}",
                REPORT.as_secs(),
                parts.join(" ")
            );
        }
    }
}
