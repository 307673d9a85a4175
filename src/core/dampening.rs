//! MAC-move dampening, like EVPN's duplicate-MAC detection (RFC 7432 §15.1): a learned MAC
//! that moves between remote VTEPs more than `moves` times within `window` seconds is frozen
//! on the remote it has for `hold` seconds. While frozen, frames from the other remotes are
//! still delivered, but they no longer move the entry; the freeze is counted
//! (`mac_frozen`), reported once (an event the daemon logs) and shown in `fdb show`.
//! `fdb del` (or `fdb flush`) of the MAC ends a freeze early.
//!
//! The history lives in one atomic word inside the FDB entry, so the data path stays lock-free
//! and a freeze is decided by exactly one worker (the one whose compare-and-swap wins).

use encap::{MacAddr, Vni};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A network's dampening policy. `moves = 0` turns dampening off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MoveLimit {
    /// Moves tolerated within `window`; one more freezes the MAC.
    pub moves: u32,
    /// The window moves are counted in, in seconds.
    pub window: u32,
    /// How long a MAC stays frozen, in seconds.
    pub hold: u32,
}

impl Default for MoveLimit {
    /// EVPN's customary duplicate-MAC detection: 5 moves in 180 s, frozen for 180 s.
    fn default() -> Self {
        MoveLimit {
            moves: 5,
            window: 180,
            hold: 180,
        }
    }
}

impl MoveLimit {
    /// No dampening.
    pub const OFF: MoveLimit = MoveLimit {
        moves: 0,
        window: 0,
        hold: 0,
    };

    /// Checks the ranges: a window and a hold of 1 s to 1 day when dampening is on, and fewer
    /// moves than the history can count.
    pub fn validate(&self) -> Result<(), String> {
        const DAY: u32 = 86_400;
        if self.moves == 0 {
            return Ok(());
        }
        if self.moves > u32::from(u16::MAX) {
            return Err(format!("mac_move moves {} is not in 0..=65535", self.moves));
        }
        for (name, v) in [("window", self.window), ("hold", self.hold)] {
            if !(1..=DAY).contains(&v) {
                return Err(format!("mac_move {name} {v}s is not in 1..={DAY}"));
            }
        }
        Ok(())
    }
}

/// A [`MoveLimit`] in one atomic word, so a reload can change a network's policy while the
/// workers read it without a lock: moves in 16 bits, window and hold in 24 bits each (a
/// validated limit fits; larger values are clamped).
#[derive(Debug)]
pub struct AtomicMoveLimit(AtomicU64);

impl AtomicMoveLimit {
    const MOVES: u32 = 16;
    const SECS: u32 = 24;

    /// Holds `limit`.
    pub fn new(limit: MoveLimit) -> AtomicMoveLimit {
        AtomicMoveLimit(AtomicU64::new(Self::pack(limit)))
    }

    fn pack(l: MoveLimit) -> u64 {
        let secs_max = (1u64 << Self::SECS) - 1;
        let moves = u64::from(l.moves).min(u64::from(u16::MAX));
        let window = u64::from(l.window).min(secs_max);
        let hold = u64::from(l.hold).min(secs_max);
        moves | (window << Self::MOVES) | (hold << (Self::MOVES + Self::SECS))
    }

    /// The limit now.
    #[inline]
    pub fn load(&self) -> MoveLimit {
        let w = self.0.load(Relaxed);
        let secs = |shift: u32| ((w >> shift) & ((1 << Self::SECS) - 1)) as u32;
        MoveLimit {
            moves: (w & u64::from(u16::MAX)) as u32,
            window: secs(Self::MOVES),
            hold: secs(Self::MOVES + Self::SECS),
        }
    }

    /// Replaces the limit (histories already recorded are kept).
    pub fn store(&self, limit: MoveLimit) {
        self.0.store(Self::pack(limit), Relaxed);
    }
}

/// What a move of a learned entry may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// Apply it.
    Allowed,
    /// This move froze the entry where it is (the caller reports the freeze once).
    Froze,
    /// The entry is frozen: leave it.
    Frozen,
}

/// Bit set when the entry is frozen; the other bits are then the end of the hold, in ms.
const FROZEN: u64 = 1 << 63;
/// Bits of the window start (ms) when not frozen; the count of moves sits above them.
const START_BITS: u32 = 47;
const START_MASK: u64 = (1 << START_BITS) - 1;

/// The move history of one learned entry: either (moves counted, window start) or "frozen
/// until". Zero means no move yet.
#[derive(Debug, Default)]
pub struct MoveHistory(AtomicU64);

impl MoveHistory {
    /// Records a move at `now_ms` under `limit` and says what it may do.
    pub fn record(&self, now_ms: u64, limit: &MoveLimit) -> Move {
        if limit.moves == 0 {
            return Move::Allowed;
        }
        let window_ms = u64::from(limit.window) * 1000;
        let now = now_ms & START_MASK;
        let mut cur = self.0.load(Relaxed);
        loop {
            let (next, verdict) = if cur & FROZEN != 0 && now < cur & !FROZEN {
                return Move::Frozen;
            } else if cur & FROZEN != 0 || cur == 0 {
                // First move, or the first after a hold ended: a new window.
                (pack(1, now), Move::Allowed)
            } else {
                let (count, start) = (cur >> START_BITS, cur & START_MASK);
                if now.saturating_sub(start) > window_ms {
                    (pack(1, now), Move::Allowed)
                } else if count >= u64::from(limit.moves) {
                    let until = now.saturating_add(u64::from(limit.hold) * 1000);
                    (FROZEN | (until & !FROZEN), Move::Froze)
                } else {
                    (pack(count + 1, now.min(start)), Move::Allowed)
                }
            };
            match self.0.compare_exchange_weak(cur, next, Relaxed, Relaxed) {
                Ok(_) => return verdict,
                Err(seen) => cur = seen,
            }
        }
    }

    /// Forgets the history (the entry was learned afresh).
    pub fn reset(&self) {
        self.0.store(0, Relaxed);
    }

    /// Time left frozen at `now_ms`, in ms (`None` when not frozen).
    pub fn frozen_for(&self, now_ms: u64) -> Option<u64> {
        let cur = self.0.load(Relaxed);
        let until = cur & !FROZEN;
        (cur & FROZEN != 0 && now_ms < until).then(|| until - now_ms)
    }
}

fn pack(count: u64, start: u64) -> u64 {
    (count.min(u64::from(u16::MAX)) << START_BITS) | (start & START_MASK)
}

/// A MAC frozen by dampening, reported once to the daemon (which logs it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frozen {
    /// Its network.
    pub vni: Vni,
    /// The MAC.
    pub mac: MacAddr,
    /// The remote it is frozen on.
    pub remote: IpAddr,
    /// The remote it tried to move to.
    pub moving_to: IpAddr,
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: MoveLimit = MoveLimit {
        moves: 3,
        window: 10,
        hold: 5,
    };

    #[test]
    fn more_moves_than_the_limit_in_the_window_freeze() {
        let h = MoveHistory::default();
        for t in [1000, 2000, 3000] {
            assert_eq!(h.record(t, &LIMIT), Move::Allowed);
        }
        assert_eq!(h.record(4000, &LIMIT), Move::Froze);
        assert_eq!(h.frozen_for(4000), Some(5000));
        assert_eq!(h.record(8999, &LIMIT), Move::Frozen);
        // The hold ends: a new window starts.
        assert_eq!(h.frozen_for(9000), None);
        assert_eq!(h.record(9000, &LIMIT), Move::Allowed);
    }

    #[test]
    fn moves_spread_wider_than_the_window_never_freeze() {
        let h = MoveHistory::default();
        for i in 0..20u64 {
            assert_eq!(h.record(i * 4000, &LIMIT), Move::Allowed, "move {i}");
        }
        assert_eq!(h.frozen_for(80_000), None);
    }

    #[test]
    fn off_allows_everything_and_reset_forgets() {
        let h = MoveHistory::default();
        for t in 0..100 {
            assert_eq!(h.record(t, &MoveLimit::OFF), Move::Allowed);
        }
        for t in [1, 2, 3] {
            h.record(t, &LIMIT);
        }
        h.reset();
        assert_eq!(h.record(4, &LIMIT), Move::Allowed);
    }

    #[test]
    fn an_atomic_limit_gives_back_what_it_holds() {
        let a = AtomicMoveLimit::new(LIMIT);
        assert_eq!(a.load(), LIMIT);
        let day = MoveLimit {
            moves: 65_535,
            window: 86_400,
            hold: 86_400,
        };
        a.store(day);
        assert_eq!(a.load(), day);
        a.store(MoveLimit::OFF);
        assert_eq!(a.load(), MoveLimit::OFF);
    }

    #[test]
    fn validation_bounds_the_window_and_hold() {
        assert!(MoveLimit::default().validate().is_ok());
        assert!(MoveLimit::OFF.validate().is_ok());
        let bad = MoveLimit {
            window: 0,
            ..MoveLimit::default()
        };
        assert!(bad.validate().unwrap_err().contains("window"));
        let bad = MoveLimit {
            hold: 100_000,
            ..MoveLimit::default()
        };
        assert!(bad.validate().unwrap_err().contains("hold"));
    }
}
