//! Learning (RFC 7348 §4.1): inner source MAC -> outer source address, per VNI.
//!
//! Called only for frames that arrived from a tunnel and passed every check (unicast,
//! non-zero, not our own MAC, known source). Never touches a static entry, and says when one
//! pins the MAC to another remote (the caller then drops the frame); a new MAC is learned only
//! while the network is under its cap, and a MAC that moves too often is frozen (`dampening`).
//! A simulation (`apply` false) changes nothing and says what learning would do.

use super::dampening::{Frozen, Move};
use super::fdb::{FdbEntry, FdbKey};
use super::network::Network;
use super::trace::LearnResult;
use super::{Core, Counters, EntryKind, Remote};
use encap::MacAddr;

impl Core {
    /// Learns (or refreshes, or moves) `mac` as behind `remote` in `net`, and says what it did
    /// ([`LearnResult::StaticConflict`]: a static entry pins `mac` to another remote, nothing
    /// learned). With `apply` false nothing changes: the result is what it would do.
    ///
    /// The common case, a learned MAC seen again behind the same remote, is one call that
    /// answers in a register ([`Core::refresh`]; the result is then a constant to the caller);
    /// everything else goes out of line. A [`LearnResult`] returned from a call goes through
    /// memory and is read back whole, which measured a store-forwarding stall on every datagram.
    #[inline(always)]
    pub(super) fn learn(
        &self,
        net: &Network,
        mac: MacAddr,
        remote: Remote,
        now_ms: u64,
        apply: bool,
        ctr: &mut Counters,
    ) -> LearnResult {
        let seen_again = if apply {
            self.refresh::<true>(net, mac, remote, now_ms)
        } else {
            self.refresh::<false>(net, mac, remote, now_ms)
        };
        if seen_again {
            return LearnResult::Refreshed;
        }
        self.learn_other(net, mac, remote, now_ms, apply, ctr)
    }

    /// Whether `mac` is a learned, unexpired entry behind `remote` (touched when `APPLY`): the
    /// refresh every datagram from a known host makes. A function of its own with the FDB visit
    /// in it, its arguments and answer in registers: called as `Fdb::with_entry` with a closure,
    /// the caller stored what the closure reads and the callee loaded it back (9 instructions
    /// and 8 data reads more per datagram, 2-7% of the receive path's time).
    #[inline(never)]
    fn refresh<const APPLY: bool>(
        &self,
        net: &Network,
        mac: MacAddr,
        remote: Remote,
        now_ms: u64,
    ) -> bool {
        let ageing = net.ageing_ms();
        self.fdb.with_entry(FdbKey::new(net.vni, mac), |e| {
            let again =
                e.kind() == EntryKind::Learned && !e.is_expired(now_ms, ageing) && e.is_at(remote);
            if again && APPLY {
                e.touch(now_ms);
            }
            again
        }) == Some(true)
    }

    /// [`Core::learn`] of a new MAC, a moved one, one pinned by a static entry, or an expired one.
    #[inline(never)]
    fn learn_other(
        &self,
        net: &Network,
        mac: MacAddr,
        remote: Remote,
        now_ms: u64,
        apply: bool,
        ctr: &mut Counters,
    ) -> LearnResult {
        let key = FdbKey::new(net.vni, mac);
        let existing = self.fdb.with_entry(key, |e| match e.kind() {
            EntryKind::Static if !e.is_at(remote) => {
                ctr.learn_static_conflict += 1;
                LearnResult::StaticConflict { pinned: e.remote() }
            }
            EntryKind::Static => LearnResult::StaticKept,
            EntryKind::Learned if e.is_expired(now_ms, net.ageing_ms()) => {
                // Treated as absent by lookups: this is a fresh learn, not a move.
                if apply {
                    e.moves().reset();
                    e.relearn(remote, now_ms);
                }
                ctr.learned += 1;
                LearnResult::Learned
            }
            EntryKind::Learned if !e.is_at(remote) => {
                let from = e.remote();
                if !apply {
                    return match e.moves().frozen_for(now_ms) {
                        Some(_) => LearnResult::Frozen { at: from },
                        None => LearnResult::Moved { from },
                    };
                }
                match e.moves().record(now_ms, &net.mac_move()) {
                    Move::Allowed => {
                        e.relearn(remote, now_ms);
                        ctr.mac_moves += 1;
                        LearnResult::Moved { from }
                    }
                    Move::Froze => {
                        ctr.mac_frozen += 1;
                        ctr.mac_moves_held += 1;
                        // A full queue loses the report, never the count.
                        let _ = self.frozen.push(Frozen {
                            vni: net.vni,
                            mac,
                            remote: from.ip(),
                            moving_to: remote.ip(),
                        });
                        LearnResult::Froze { at: from }
                    }
                    Move::Frozen => {
                        ctr.mac_moves_held += 1;
                        LearnResult::Frozen { at: from }
                    }
                }
            }
            EntryKind::Learned => {
                if apply {
                    e.touch(now_ms);
                }
                LearnResult::Refreshed
            }
        });
        if let Some(r) = existing {
            return r;
        }
        if !apply {
            return if net.learned_count() < net.max_learned() {
                LearnResult::Learned
            } else {
                LearnResult::RefusedCap
            };
        }
        if !net.reserve_learned() {
            ctr.learn_refused += 1;
            return LearnResult::RefusedCap;
        }
        let entry = FdbEntry::new(EntryKind::Learned, remote, now_ms);
        if self.fdb.insert_new(key, entry, |_| ()).is_ok() {
            ctr.learned += 1;
            LearnResult::Learned
        } else {
            // Another worker learned it first; its insert holds the reservation.
            net.release_learned();
            LearnResult::Refreshed
        }
    }

    /// Whether a static entry of `net` pins `mac` to a remote other than `remote` (for networks
    /// that do not learn: [`Core::learn`] says it otherwise).
    pub(super) fn pinned_elsewhere(
        &self,
        net: &Network,
        mac: MacAddr,
        remote: Remote,
    ) -> Option<Remote> {
        self.fdb
            .with_entry(FdbKey::new(net.vni, mac), |e| {
                (e.kind() == EntryKind::Static && !e.is_at(remote)).then(|| e.remote())
            })
            .flatten()
    }
}
