//! Learning (RFC 7348 §4.1): inner source MAC -> outer source address, per VNI.
//!
//! Called only for frames that arrived from a tunnel and passed every check (unicast,
//! non-zero, not our own MAC, known source). Never touches a static entry; a new MAC is
//! learned only while the network is under its cap.

use super::fdb::{FdbEntry, FdbKey};
use super::network::Network;
use super::{Core, Counters, EntryKind};
use encap::MacAddr;
use std::net::Ipv4Addr;

impl Core {
    /// Learns (or refreshes, or moves) `mac` as behind `remote` in `net`.
    pub(super) fn learn(
        &self,
        net: &Network,
        mac: MacAddr,
        remote: Ipv4Addr,
        now_ms: u64,
        ctr: &mut Counters,
    ) {
        let key = FdbKey::new(net.vni, mac);
        let existing = self.fdb.with_entry(key, |e| match e.kind() {
            EntryKind::Static => {
                if e.remote() != remote {
                    ctr.learn_static_conflict += 1;
                }
            }
            EntryKind::Learned if e.is_expired(now_ms, net.ageing_ms) => {
                // Treated as absent by lookups: this is a fresh learn, not a move.
                e.relearn(remote, now_ms);
                ctr.learned += 1;
            }
            EntryKind::Learned if e.remote() != remote => {
                e.relearn(remote, now_ms);
                ctr.mac_moves += 1;
            }
            EntryKind::Learned => e.touch(now_ms),
        });
        if existing.is_some() {
            return;
        }
        if !net.reserve_learned() {
            ctr.learn_refused += 1;
            return;
        }
        let entry = FdbEntry::new(EntryKind::Learned, remote, now_ms);
        if self.fdb.insert_new(key, entry, |_| ()).is_ok() {
            ctr.learned += 1;
        } else {
            // Another worker learned it first; its insert holds the reservation.
            net.release_learned();
        }
    }
}
