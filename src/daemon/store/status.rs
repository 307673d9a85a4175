//! What the store client reports: its connection state and its counters, declared once here
//! (`store_counters!`): `stats --json` (`store`), the `stats` text and the metrics
//! (`vtepd_store_<name>_total`) list them from [`StoreCounters::NAMES`] with no other change.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

/// The store client's connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum StoreState {
    /// Connecting (at start, and again after the store was unreachable).
    Connecting = 0,
    /// Registered and watching: the installed state follows the store.
    Connected = 1,
    /// The store cannot be reached: forwarding goes on with the last state, retried with
    /// backoff.
    Unreachable = 2,
}

impl StoreState {
    /// Every state.
    pub const ALL: [StoreState; 3] = [
        StoreState::Connecting,
        StoreState::Connected,
        StoreState::Unreachable,
    ];

    /// The state's name (`stats`, metrics, logs).
    pub fn name(self) -> &'static str {
        match self {
            StoreState::Connecting => "connecting",
            StoreState::Connected => "connected",
            StoreState::Unreachable => "unreachable",
        }
    }
}

macro_rules! store_counters {
    ($($(#[doc = $doc:literal])+ $name:ident,)*) => {
        /// The store client's counters (see the module documentation).
        #[derive(Debug, Default)]
        pub struct StoreCounters { $($(#[doc = $doc])+ pub $name: AtomicU64,)* }

        impl StoreCounters {
            /// Every counter's name, in order.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($name),)*];
            /// Every counter's description (the first doc line), in order.
            pub const HELP: &'static [&'static str] = &[$(store_counters!(@first $($doc)+),)*];

            /// Every counter's value, in [`StoreCounters::NAMES`] order.
            pub fn values(&self) -> Vec<u64> {
                vec![$(self.$name.load(Ordering::Relaxed),)*]
            }
        }
    };
    (@first $first:literal $($rest:literal)*) => { $first.trim_ascii_start() };
}

store_counters! {
    /// Connections to the store made (the first one and every reconnect).
    connects,
    /// Complete re-reads of the store's registrations (at every connect, and when a watch
    /// fell behind a compaction).
    resyncs,
    /// Watches that fell behind a compaction of the store (their revision was gone) and read
    /// everything again (each also counted in `resyncs`).
    compactions,
    /// Registration changes received from the watch.
    events,
    /// Values skipped as bad: not JSON, an unknown version, a key they do not match.
    bad_values,
    /// Registrations (or their prefixes) or announcements left out: another port or family,
    /// or a conflict lost (each logged once).
    skipped,
    /// Times the store became unreachable (each is also one log line).
    unreachable,
    /// Times our lease was found expired and this host registered again.
    lease_lost,
    /// Changes to the daemon's state that failed (tried again at the next change).
    apply_failed,
}

/// The store client's state and counters, shared with the control plane.
#[derive(Debug, Default)]
pub struct StoreStatus {
    state: AtomicU8,
    members: AtomicUsize,
    /// The counters.
    pub counters: StoreCounters,
}

impl StoreStatus {
    /// The state now.
    pub fn state(&self) -> StoreState {
        match self.state.load(Ordering::Relaxed) {
            1 => StoreState::Connected,
            2 => StoreState::Unreachable,
            _ => StoreState::Connecting,
        }
    }

    /// Sets the state; returns the one it replaced.
    pub fn set_state(&self, s: StoreState) -> StoreState {
        let was = self.state.swap(s as u8, Ordering::Relaxed);
        match was {
            1 => StoreState::Connected,
            2 => StoreState::Unreachable,
            _ => StoreState::Connecting,
        }
    }

    /// Registrations the store holds now (ours included).
    pub fn members(&self) -> usize {
        self.members.load(Ordering::Relaxed)
    }

    /// Records how many registrations the store holds.
    pub fn set_members(&self, n: usize) {
        self.members.store(n, Ordering::Relaxed);
    }

    /// Adds one to a counter.
    pub fn count(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_listed_once_with_their_help() {
        let s = StoreStatus::default();
        StoreStatus::count(&s.counters.bad_values);
        let names = StoreCounters::NAMES;
        assert_eq!(names.len(), StoreCounters::HELP.len());
        let at = names.iter().position(|n| *n == "bad_values").unwrap();
        assert_eq!(s.counters.values()[at], 1);
        assert!(StoreCounters::HELP[at].starts_with("Values skipped"));
        assert_eq!(s.set_state(StoreState::Unreachable), StoreState::Connecting);
        assert_eq!(s.state(), StoreState::Unreachable);
    }
}
