//! Control-plane operations: static FDB entries, flushes, listing, ageing, flood lists.
//!
//! Serialised by the core's control mutex (never taken by the data path). Every change to a
//! flood list or to the set of static remotes publishes a fresh [`PeerSnapshot`].

use super::fdb::{FdbEntry, FdbKey};
use super::network::{NetSettings, PeerSnapshot};
use super::{Core, CoreError, EntryKind, FdbCount, FdbEntryInfo, NetId, Timestamp};
use encap::{MacAddr, Vni};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// Control-plane bookkeeping of all networks, in [`NetId`] order.
#[derive(Debug, Default)]
pub(super) struct ControlState {
    pub(super) nets: Vec<NetControl>,
}

/// Control-plane bookkeeping of one network.
#[derive(Debug)]
pub(super) struct NetControl {
    /// The operator's flood list (flags, file, `peers add`, reload), in insertion order.
    flood: Vec<IpAddr>,
    /// The store's flood list (`--store`: the other members of the network), kept apart so
    /// that a reload or `peers del` never touches it and the store never removes the
    /// operator's peers. The data path floods to both (each peer once).
    store: Vec<IpAddr>,
    /// The peers the store says take remote checksum offload (members registered with
    /// `remcsum_rx`): with `remcsum_tx auto`, TCP segments toward them leave with the option.
    remote_csum: Vec<IpAddr>,
    /// Remote -> number of static entries pointing at it.
    static_remotes: BTreeMap<IpAddr, usize>,
    /// Static entries in the FDB (the sum of `static_remotes`' counts).
    statics: usize,
}

impl NetControl {
    pub(super) fn new(flood: Vec<IpAddr>) -> NetControl {
        NetControl {
            flood,
            store: Vec::new(),
            remote_csum: Vec::new(),
            static_remotes: BTreeMap::new(),
            statics: 0,
        }
    }

    fn snapshot(&self) -> PeerSnapshot {
        let extra = self.store.iter().filter(|p| !self.flood.contains(p));
        let flood: Vec<IpAddr> = self.flood.iter().chain(extra).copied().collect();
        PeerSnapshot::new(&flood, self.static_remotes.keys().copied())
            .with_remote_csum(self.remote_csum.iter().copied())
    }

    fn static_added(&mut self, remote: IpAddr) {
        *self.static_remotes.entry(remote).or_insert(0) += 1;
        self.statics += 1;
    }

    fn static_removed(&mut self, remote: IpAddr) {
        if let Some(n) = self.static_remotes.get_mut(&remote) {
            *n -= 1;
            self.statics -= 1;
            if *n == 0 {
                self.static_remotes.remove(&remote);
            }
        }
    }
}

impl Core {
    fn net_id(&self, vni: Vni) -> Result<NetId, CoreError> {
        self.net_by_vni(vni).ok_or(CoreError::UnknownVni(vni))
    }

    /// Republishes network `id`'s peer snapshot from the control state.
    fn publish(&self, state: &ControlState, id: NetId) {
        if let (Some(net), Some(c)) = (self.net(id), state.nets.get(usize::from(id.0))) {
            net.publish_peers(c.snapshot());
        }
    }

    /// Accounts for an entry of network `id` that left the FDB.
    fn removed(&self, state: &mut ControlState, id: NetId, kind: EntryKind, remote: IpAddr) {
        match kind {
            EntryKind::Learned => {
                if let Some(net) = self.net(id) {
                    net.release_learned();
                }
            }
            EntryKind::Static => {
                if let Some(c) = state.nets.get_mut(usize::from(id.0)) {
                    c.static_removed(remote);
                }
            }
        }
    }

    /// Adds or replaces a static entry (a static entry replaces a learned one).
    pub fn fdb_add(
        &self,
        now: Timestamp,
        vni: Vni,
        mac: MacAddr,
        remote: impl Into<IpAddr>,
    ) -> Result<(), CoreError> {
        let remote = remote.into();
        let id = self.net_id(vni)?;
        if !mac.is_unicast() {
            return Err(CoreError::BadMac(mac));
        }
        self.usable_remote(remote)?;
        let mut state = self.control();
        // Make the remote known before the entry can send traffic toward it.
        if let Some(c) = state.nets.get_mut(usize::from(id.0)) {
            c.static_added(remote);
        }
        let entry = FdbEntry::new(EntryKind::Static, remote.into(), now.millis());
        if let Some((kind, old)) = self.fdb.replace(FdbKey::new(vni, mac), entry) {
            self.removed(&mut state, id, kind, old.ip());
        }
        self.publish(&state, id);
        Ok(())
    }

    /// Deletes an entry of either kind; `Ok(false)` if there was none.
    pub fn fdb_del(&self, vni: Vni, mac: MacAddr) -> Result<bool, CoreError> {
        let id = self.net_id(vni)?;
        let mut state = self.control();
        let Some((kind, remote)) = self.fdb.remove_if(FdbKey::new(vni, mac), |_| true) else {
            return Ok(false);
        };
        self.removed(&mut state, id, kind, remote.ip());
        if kind == EntryKind::Static {
            self.publish(&state, id);
        }
        Ok(true)
    }

    /// Deletes all entries (of one VNI, or learned only); returns how many.
    pub fn fdb_flush(&self, vni: Option<Vni>, learned_only: bool) -> Result<usize, CoreError> {
        if let Some(v) = vni {
            self.net_id(v)?;
        }
        let mut state = self.control();
        let wanted = |e: &FdbEntry| !learned_only || e.kind() == EntryKind::Learned;
        let keys = self
            .fdb
            .keys_where(|k, e| vni.is_none_or(|v| k.vni() == v) && wanted(e));
        let mut removed = 0;
        let mut touched_static = vec![false; self.nets.len()];
        for key in keys {
            let Some(id) = self.net_by_vni(key.vni()) else {
                continue;
            };
            if let Some((kind, remote)) = self.fdb.remove_if(key, wanted) {
                removed += 1;
                self.removed(&mut state, id, kind, remote.ip());
                if kind == EntryKind::Static {
                    touched_static[usize::from(id.0)] = true;
                }
            }
        }
        for (i, touched) in touched_static.into_iter().enumerate() {
            if touched {
                self.publish(&state, NetId(i as u16));
            }
        }
        Ok(removed)
    }

    /// A snapshot of the FDB (of one VNI or all), sorted by VNI then MAC; expired entries omitted.
    /// An unknown VNI yields an empty list.
    pub fn fdb_entries(&self, now: Timestamp, vni: Option<Vni>) -> Vec<FdbEntryInfo> {
        let now_ms = now.millis();
        let mut out = Vec::new();
        self.fdb.for_each(|k, e| {
            if vni.is_some_and(|v| v != k.vni()) {
                return;
            }
            let Some(net) = self.net_by_vni(k.vni()).and_then(|id| self.net(id)) else {
                return;
            };
            if e.is_expired(now_ms, net.ageing_ms()) {
                return;
            }
            out.push(FdbEntryInfo {
                vni: k.vni(),
                mac: k.mac(),
                remote: e.remote().ip(),
                kind: e.kind(),
                age: now.since(Timestamp(e.last_seen())),
                frozen: e.moves().frozen_for(now_ms).map(Duration::from_millis),
            });
        });
        out.sort_unstable_by_key(|i| (i.vni, i.mac));
        out
    }

    /// How many entries each network has, in [`NetId`] order: what [`Core::fdb_entries`]
    /// would list for it, counted without listing. Static entries are counted by the control
    /// state and learned ones by the networks' cap accounting, as they come and go; learned
    /// entries past their ageing time but not yet removed by [`Core::expire`] are not counted,
    /// which takes one pass over the FDB, and only when some network has learned entries.
    /// Like a listing, weakly consistent with concurrent learning and ageing.
    pub fn fdb_counts(&self, now: Timestamp) -> Vec<usize> {
        self.fdb_counts_by_kind(now)
            .into_iter()
            .map(|c| c.statics + c.learned)
            .collect()
    }

    /// [`Core::fdb_counts`] split by kind: each network's static and live learned entries, in
    /// [`NetId`] order (the same pass, the same consistency).
    pub fn fdb_counts_by_kind(&self, now: Timestamp) -> Vec<FdbCount> {
        let statics: Vec<usize> = self.control().nets.iter().map(|c| c.statics).collect();
        let mut learned: Vec<usize> = self
            .nets
            .iter()
            .map_while(std::sync::OnceLock::get)
            .map(|n| if n.is_live() { n.learned_count() } else { 0 })
            .collect();
        if learned.iter().any(|&n| n > 0) {
            let now_ms = now.millis();
            self.fdb.for_each(|k, e| {
                if e.kind() != EntryKind::Learned {
                    return;
                }
                if let Some(id) = self.net_by_vni(k.vni())
                    && let Some(net) = self.net(id)
                    && e.is_expired(now_ms, net.ageing_ms())
                    && let Some(n) = learned.get_mut(usize::from(id.0))
                {
                    *n = n.saturating_sub(1);
                }
            });
        }
        statics
            .into_iter()
            .zip(learned)
            .map(|(statics, learned)| FdbCount { statics, learned })
            .collect()
    }

    /// Number of FDB entries (all networks, both kinds; expired entries count until
    /// [`Core::expire`] removes them).
    pub fn fdb_len(&self) -> usize {
        self.fdb.len()
    }

    /// Removes learned entries idle for longer than their network's ageing time; returns how many.
    /// Also ages out learned neighbour bindings (not counted in the result).
    pub fn expire(&self, now: Timestamp) -> usize {
        self.neigh_expire(now);
        self.local_macs.expire(now.millis(), |v| self.ageing_of(v));
        let now_ms = now.millis();
        let ageing = |k: FdbKey| {
            self.net_by_vni(k.vni())
                .and_then(|id| Some((id, self.net(id)?)))
        };
        let keys = self
            .fdb
            .keys_where(|k, e| ageing(k).is_some_and(|(_, n)| e.is_expired(now_ms, n.ageing_ms())));
        let mut removed = 0;
        for key in keys {
            let Some((_, net)) = ageing(key) else {
                continue;
            };
            // Re-checked atomically: a refresh since the scan keeps the entry.
            if self
                .fdb
                .remove_if(key, |e| e.is_expired(now_ms, net.ageing_ms()))
                .is_some()
            {
                net.release_learned();
                removed += 1;
            }
        }
        removed
    }

    /// Adds a flood-list peer; `Ok(false)` if it was already there.
    pub fn peer_add(&self, vni: Vni, ip: impl Into<IpAddr>) -> Result<bool, CoreError> {
        let ip = ip.into();
        let id = self.net_id(vni)?;
        self.usable_remote(ip)?;
        let mut state = self.control();
        let Some(c) = state.nets.get_mut(usize::from(id.0)) else {
            return Err(CoreError::UnknownVni(vni));
        };
        if c.flood.contains(&ip) {
            return Ok(false);
        }
        c.flood.push(ip);
        self.publish(&state, id);
        Ok(true)
    }

    /// Removes a flood-list peer; `Ok(false)` if it was not there.
    pub fn peer_del(&self, vni: Vni, ip: impl Into<IpAddr>) -> Result<bool, CoreError> {
        let ip = ip.into();
        let id = self.net_id(vni)?;
        let mut state = self.control();
        let Some(c) = state.nets.get_mut(usize::from(id.0)) else {
            return Err(CoreError::UnknownVni(vni));
        };
        let Some(pos) = c.flood.iter().position(|p| *p == ip) else {
            return Ok(false);
        };
        c.flood.remove(pos);
        self.publish(&state, id);
        Ok(true)
    }

    /// Replaces network `vni`'s flood list (a reload), keeping the order given; `Ok(false)` if
    /// it was already that list. Checked whole before anything changes.
    pub fn peers_set(&self, vni: Vni, peers: &[IpAddr]) -> Result<bool, CoreError> {
        self.replace_list(vni, peers, |c| &mut c.flood)
    }

    /// `peers` without duplicates, in the order given; every one must be a usable remote.
    fn checked_list(&self, peers: &[IpAddr]) -> Result<Vec<IpAddr>, CoreError> {
        // A store may list a thousand members: duplicates are found with a set, not a scan.
        let mut seen = std::collections::HashSet::with_capacity(peers.len());
        let mut list: Vec<IpAddr> = Vec::with_capacity(peers.len());
        for &p in peers {
            self.usable_remote(p)?;
            if seen.insert(p) {
                list.push(p);
            }
        }
        Ok(list)
    }

    /// Replaces one of network `vni`'s peer lists (`which`: a flood list, or the peers taking
    /// remote checksum offload) with `peers`, checked whole first; `Ok(false)` if it was
    /// already that list.
    fn replace_list(
        &self,
        vni: Vni,
        peers: &[IpAddr],
        which: fn(&mut NetControl) -> &mut Vec<IpAddr>,
    ) -> Result<bool, CoreError> {
        let id = self.net_id(vni)?;
        let list = self.checked_list(peers)?;
        let mut state = self.control();
        let Some(c) = state.nets.get_mut(usize::from(id.0)) else {
            return Err(CoreError::UnknownVni(vni));
        };
        let slot = which(c);
        if *slot == list {
            return Ok(false);
        }
        *slot = list;
        self.publish(&state, id);
        Ok(true)
    }

    /// Gives network `vni` new settings (a reload): they apply to the next packet of every
    /// worker; learned entries, neighbours and counts are kept.
    pub fn set_net_settings(&self, vni: Vni, s: &NetSettings) -> Result<(), CoreError> {
        let id = self.net_id(vni)?;
        if let Some(n) = self.net(id) {
            n.apply(s);
        }
        if let Some(t) = self.neigh(id) {
            t.set_limits(s.ageing, s.max_learned);
        }
        Ok(())
    }

    /// Every network's flood list as the operator set it (flags, file, `peers add`, reload;
    /// not the store's), in [`NetId`] order (removed networks left out).
    pub fn peers(&self) -> Vec<(Vni, Vec<IpAddr>)> {
        self.flood_lists(|c| &c.flood)
    }

    /// Every network's flood list as the store set it ([`Core::store_peers_set`]), in
    /// [`NetId`] order.
    pub fn store_peers(&self) -> Vec<(Vni, Vec<IpAddr>)> {
        self.flood_lists(|c| &c.store)
    }

    /// Every network's flood list as the data path uses it: the operator's, then the store's
    /// peers not already in it.
    pub fn flood_peers(&self) -> Vec<(Vni, Vec<IpAddr>)> {
        self.live_nets()
            .map(|(_, n)| (n.vni, n.peers().flood.iter().map(|r| r.ip()).collect()))
            .collect()
    }

    fn flood_lists(&self, list: impl Fn(&NetControl) -> &Vec<IpAddr>) -> Vec<(Vni, Vec<IpAddr>)> {
        let state = self.control();
        self.live_nets()
            .filter_map(|(id, n)| Some((n.vni, list(state.nets.get(usize::from(id.0))?).clone())))
            .collect()
    }

    /// Replaces network `vni`'s store flood list (the store's members of the network, see
    /// `daemon::store`); `Ok(false)` if it was already that list. The operator's list is not
    /// touched; a peer in both is flooded to once. Checked whole before anything changes.
    pub fn store_peers_set(&self, vni: Vni, peers: &[IpAddr]) -> Result<bool, CoreError> {
        self.replace_list(vni, peers, |c| &mut c.store)
    }

    /// Replaces the peers of network `vni` that the store says take remote checksum offload;
    /// `Ok(false)` if it was already that list. Checked whole before anything changes.
    pub fn store_remote_csum_set(&self, vni: Vni, peers: &[IpAddr]) -> Result<bool, CoreError> {
        self.replace_list(vni, peers, |c| &mut c.remote_csum)
    }

    /// Every network's peers known to take remote checksum offload
    /// ([`Core::store_remote_csum_set`]), in [`NetId`] order.
    pub fn remote_csum_peers(&self) -> Vec<(Vni, Vec<IpAddr>)> {
        self.flood_lists(|c| &c.remote_csum)
    }

    /// Adds a network (at start, or at run time by a reload) in the next free slot; its
    /// [`NetId`] is new. Fails on a VNI in use, an unusable peer, or no room left.
    pub fn add_network(&self, cfg: &super::NetworkConfig) -> Result<NetId, CoreError> {
        let mut state = self.control();
        if self.by_vni.get(cfg.vni).is_some() {
            return Err(CoreError::DuplicateVni(cfg.vni));
        }
        let flood = self.checked_list(&cfg.peers)?;
        let i = state.nets.len();
        let id = NetId(u16::try_from(i).map_err(|_| CoreError::TooManyNetworks)?);
        let (Some(slot), Some(neigh)) = (self.nets.get(i), self.neigh.get(i)) else {
            return Err(CoreError::NoRoom(i));
        };
        // Both slots are empty: only this function fills them, under the mutex, in order.
        let _ = neigh.set(super::neigh::NeighTable::new(cfg.ageing, cfg.max_learned));
        let _ = slot.set(super::network::Network::new(cfg, &flood));
        state.nets.push(NetControl::new(flood));
        if !self.by_vni.insert(cfg.vni, id) {
            return Err(CoreError::NoRoom(i));
        }
        Ok(id)
    }

    /// Removes network `vni` for good: the data path stops finding it at once, and its FDB
    /// entries and neighbours go. Its [`NetId`] is never used again.
    pub fn remove_network(&self, vni: Vni) -> Result<NetId, CoreError> {
        let mut state = self.control();
        let id = self.net_id(vni)?;
        let Some(net) = self.net(id) else {
            return Err(CoreError::UnknownVni(vni));
        };
        if let Some(t) = self.neigh(id) {
            t.clear();
        }
        net.retire();
        self.by_vni.remove(vni);
        if let Some(c) = state.nets.get_mut(usize::from(id.0)) {
            *c = NetControl::new(Vec::new());
        }
        net.publish_peers(PeerSnapshot::default());
        drop(state);
        self.forget_vni(vni);
        Ok(id)
    }

    /// Removes the FDB entries of `vni` if no live network has it (after a removal, again once
    /// the workers are known to be past their last packet of it: one may have learned late).
    pub fn forget_vni(&self, vni: Vni) -> usize {
        let _state = self.control();
        if self.by_vni.get(vni).is_some() {
            return 0;
        }
        let keys = self.fdb.keys_where(|k, _| k.vni() == vni);
        keys.into_iter()
            .filter(|k| self.fdb.remove_if(*k, |_| true).is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))
    }

    fn net(v: u32) -> super::super::NetworkConfig {
        super::super::NetworkConfig {
            vni: Vni::new(v).unwrap(),
            peers: vec![ip(2)],
            own_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            ..Default::default()
        }
    }

    /// Networks added and removed at run time: new ids in order, never reused; a removed
    /// network's entries go and the data path no longer finds it; no room is an error.
    #[test]
    fn networks_come_and_go_with_ids_never_reused() {
        let c = Core::with_room(
            super::super::CoreConfig {
                local: ip(1),
                allow_any_peer: false,
                networks: vec![net(10), net(11)],
            },
            2,
        )
        .unwrap();
        let (v, now) = (|n| Vni::new(n).unwrap(), Timestamp(0));
        let mac = MacAddr([2, 0, 0, 0, 0, 9]);
        c.fdb_add(now, v(10), mac, ip(3)).unwrap();
        assert_eq!(c.add_network(&net(11)), Err(CoreError::DuplicateVni(v(11))));
        assert_eq!(c.add_network(&net(12)), Ok(NetId(2)));
        assert_eq!(c.remove_network(v(10)), Ok(NetId(0)));
        assert_eq!(c.remove_network(v(10)), Err(CoreError::UnknownVni(v(10))));
        assert_eq!(c.net_by_vni(v(10)), None);
        assert!(c.fdb_entries(now, None).is_empty(), "its entries go");
        assert_eq!(c.fdb_lookup(now, v(10), mac), None);
        let ids: Vec<_> = c.networks().collect();
        assert_eq!(ids, [(NetId(1), v(11)), (NetId(2), v(12))]);
        assert_eq!(c.peers().len(), 2);
        assert_eq!(c.fdb_counts(now), [0, 0, 0], "by NetId, the removed one 0");
        // The VNI comes back as a new network; then the room is used up.
        assert_eq!(c.add_network(&net(10)), Ok(NetId(3)));
        assert_eq!(c.net_by_vni(v(10)), Some(NetId(3)));
        assert_eq!(c.add_network(&net(13)), Err(CoreError::NoRoom(4)));
        // A datagram for a removed network's id is not delivered there.
        assert_eq!(c.flood_len(NetId(0)), 0);
        assert_eq!(c.flood_len(NetId(3)), 1);
    }

    /// The store's flood list is kept apart from the operator's: the data path floods to
    /// both, a peer in both once; replacing one list never touches the other.
    #[test]
    fn store_peers_are_kept_apart_from_the_operators() {
        let c = Core::new(super::super::CoreConfig {
            local: ip(1),
            allow_any_peer: false,
            networks: vec![net(10)],
        })
        .unwrap();
        let v = Vni::new(10).unwrap();
        assert_eq!(c.store_peers_set(v, &[ip(3), ip(2), ip(3)]), Ok(true));
        assert_eq!(c.store_peers_set(v, &[ip(3), ip(2)]), Ok(false));
        assert_eq!(c.peers(), [(v, vec![ip(2)])]);
        assert_eq!(c.store_peers(), [(v, vec![ip(3), ip(2)])]);
        assert_eq!(c.flood_peers(), [(v, vec![ip(2), ip(3)])]);
        assert!(c.known_remote(v, ip(3)));
        // The operator's list replaced (a reload): the store's peers stay.
        assert_eq!(c.peers_set(v, &[]), Ok(true));
        assert_eq!(c.flood_peers(), [(v, vec![ip(3), ip(2)])]);
        assert_eq!(
            c.peer_del(v, ip(3)),
            Ok(false),
            "not the operator's to remove"
        );
        // The store's list emptied: the operator's stays.
        assert_eq!(c.peer_add(v, ip(4)), Ok(true));
        assert_eq!(c.store_peers_set(v, &[]), Ok(true));
        assert_eq!(c.flood_peers(), [(v, vec![ip(4)])]);
        assert!(!c.known_remote(v, ip(3)));
        assert!(c.store_peers_set(v, &[ip(1)]).is_err(), "our own address");
    }

    /// `remcsum_tx`: off sends to nobody with the option, on to everybody, auto to the
    /// peers the store says take it; the list survives changes of the flood lists.
    #[test]
    fn remote_checksum_offload_goes_to_the_peers_the_mode_names() {
        use super::super::remote_csum::TxMode;
        let with = |vni: u32, mode: TxMode| super::super::NetworkConfig {
            remote_csum_tx: mode,
            ..net(vni)
        };
        let c = Core::new(super::super::CoreConfig {
            local: ip(1),
            allow_any_peer: false,
            networks: vec![
                with(10, TxMode::Off),
                with(11, TxMode::On),
                with(12, TxMode::Auto),
            ],
        })
        .unwrap();
        let v = |n| Vni::new(n).unwrap();
        let sends = |vni, to: u8| c.sends_remote_csum(c.net_by_vni(v(vni)).unwrap(), ip(to).into());
        for vni in [10, 11, 12] {
            assert_eq!(c.store_remote_csum_set(v(vni), &[ip(3)]), Ok(true));
        }
        assert_eq!(c.store_remote_csum_set(v(12), &[ip(3)]), Ok(false));
        assert!(!sends(10, 3) && !sends(10, 2));
        assert!(sends(11, 3) && sends(11, 2));
        assert!(sends(12, 3) && !sends(12, 2));
        assert_eq!(c.store_peers_set(v(12), &[ip(3), ip(4)]), Ok(true));
        assert_eq!(c.peers_set(v(12), &[]), Ok(true));
        assert!(sends(12, 3), "kept across flood-list changes");
        assert_eq!(c.remote_csum_peers()[2], (v(12), vec![ip(3)]));
        assert_eq!(c.store_remote_csum_set(v(12), &[]), Ok(true));
        assert!(!sends(12, 3));
        assert!(
            c.store_remote_csum_set(v(12), &[ip(1)]).is_err(),
            "our own address"
        );
        assert!(
            !c.sends_remote_csum(NetId(9), ip(3).into()),
            "no such network"
        );
    }

    #[test]
    fn static_remotes_are_reference_counted() {
        let mut c = NetControl::new(vec![ip(1)]);
        c.static_added(ip(2));
        c.static_added(ip(2));
        c.static_removed(ip(2));
        assert!(
            c.snapshot().is_known(ip(2).into()),
            "one static entry still points at it"
        );
        assert_eq!(c.statics, 1);
        c.static_removed(ip(2));
        assert!(!c.snapshot().is_known(ip(2).into()));
        c.static_removed(ip(2)); // unbalanced removal is harmless
        assert_eq!(c.statics, 0);
        assert!(
            c.snapshot().is_known(ip(1).into()),
            "flood-list peers stay known"
        );
        assert_eq!(&*c.snapshot().flood, &[ip(1)]);
    }
}
