//! Control-plane operations on the neighbour tables: static bindings, listing, ageing.
//! The tables are concurrent maps; these calls never block the data path.

use super::neigh::{NeighInfo, NeighTable, usable_ip};
use super::{Core, CoreError, NetId, Timestamp};
use encap::{MacAddr, Vni};
use std::net::Ipv4Addr;

impl Core {
    /// The neighbour table of network `id`.
    #[inline]
    pub fn neigh(&self, id: NetId) -> Option<&NeighTable> {
        self.neigh.get(usize::from(id.0))
    }

    fn neigh_of(&self, vni: Vni) -> Result<&NeighTable, CoreError> {
        self.net_by_vni(vni)
            .and_then(|id| self.neigh(id))
            .ok_or(CoreError::UnknownVni(vni))
    }

    /// Adds or replaces a static binding `ip` -> `mac` in network `vni`.
    pub fn neigh_add(
        &self,
        now: Timestamp,
        vni: Vni,
        ip: Ipv4Addr,
        mac: MacAddr,
    ) -> Result<(), CoreError> {
        let t = self.neigh_of(vni)?;
        if !mac.is_unicast() {
            return Err(CoreError::BadMac(mac));
        }
        if !usable_ip(ip) {
            return Err(CoreError::BadNeighbour(ip));
        }
        t.add_static(ip, mac, now.millis());
        Ok(())
    }

    /// Deletes the binding of `ip` (either kind); `Ok(false)` if there was none.
    pub fn neigh_del(&self, vni: Vni, ip: Ipv4Addr) -> Result<bool, CoreError> {
        Ok(self.neigh_of(vni)?.remove(ip).is_some())
    }

    /// Live bindings of one network or all, as (VNI, binding), sorted by VNI then address.
    pub fn neigh_entries(&self, now: Timestamp, vni: Option<Vni>) -> Vec<(Vni, NeighInfo)> {
        let mut out = Vec::new();
        let mut nets: Vec<(Vni, NetId)> = self.networks().map(|(id, v)| (v, id)).collect();
        nets.sort_unstable();
        for (v, id) in nets {
            if vni.is_some_and(|want| want != v) {
                continue;
            }
            if let Some(t) = self.neigh(id) {
                out.extend(t.entries(now.millis()).into_iter().map(|e| (v, e)));
            }
        }
        out
    }

    /// Removes expired learned bindings in every network; returns how many.
    pub fn neigh_expire(&self, now: Timestamp) -> usize {
        self.neigh.iter().map(|t| t.expire(now.millis())).sum()
    }
}
