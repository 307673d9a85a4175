//! Control-plane operations on the neighbour tables: static bindings, listing, ageing.
//! The tables are concurrent maps; these calls never block the data path.

use super::neigh::{NeighInfo, NeighTable, usable_neigh};
use super::{Core, CoreError, NetId, Timestamp};
use encap::{MacAddr, Vni};
use std::net::IpAddr;

impl Core {
    /// The neighbour table of network `id`.
    #[inline]
    pub fn neigh(&self, id: NetId) -> Option<&NeighTable> {
        self.net(id)?;
        self.neigh.get(usize::from(id.0))?.get()
    }

    fn neigh_of(&self, vni: Vni) -> Result<&NeighTable, CoreError> {
        self.net_by_vni(vni)
            .and_then(|id| self.neigh(id))
            .ok_or(CoreError::UnknownVni(vni))
    }

    /// Adds or replaces a static binding `ip` (IPv4 or IPv6) -> `mac` in network `vni`.
    pub fn neigh_add(
        &self,
        now: Timestamp,
        vni: Vni,
        ip: impl Into<IpAddr>,
        mac: MacAddr,
    ) -> Result<(), CoreError> {
        let ip = ip.into();
        let t = self.neigh_of(vni)?;
        if !mac.is_unicast() {
            return Err(CoreError::BadMac(mac));
        }
        if !usable_neigh(ip) {
            return Err(CoreError::BadNeighbour(ip));
        }
        t.add_static(ip, mac, now.millis());
        Ok(())
    }

    /// Deletes the binding of `ip` (either kind); `Ok(false)` if there was none.
    pub fn neigh_del(&self, vni: Vni, ip: impl Into<IpAddr>) -> Result<bool, CoreError> {
        Ok(self.neigh_of(vni)?.remove(ip).is_some())
    }

    /// Live bindings of one network or all, as (VNI, binding), sorted by VNI then address.
    pub fn neigh_entries(&self, now: Timestamp, vni: Option<Vni>) -> Vec<(Vni, NeighInfo)> {
        let nets: Vec<(Vni, NetId)> = match vni {
            Some(v) => self.net_by_vni(v).map(|id| (v, id)).into_iter().collect(),
            None => {
                let mut all: Vec<(Vni, NetId)> = self.networks().map(|(id, v)| (v, id)).collect();
                all.sort_unstable();
                all
            }
        };
        let mut out = Vec::new();
        for (v, id) in nets {
            if let Some(t) = self.neigh(id) {
                out.extend(t.entries(now.millis()).into_iter().map(|e| (v, e)));
            }
        }
        out
    }

    /// How many live bindings each network has, in [`NetId`] order (what
    /// [`Core::neigh_entries`] would list for it, counted without listing).
    pub fn neigh_counts(&self, now: Timestamp) -> Vec<usize> {
        (0..self.neigh.len())
            .map_while(|i| {
                self.nets.get(i)?.get()?;
                let id = NetId(i as u16);
                Some(self.neigh(id).map_or(0, |t| t.live_len(now.millis())))
            })
            .collect()
    }

    /// Removes expired learned bindings in every network; returns how many.
    pub fn neigh_expire(&self, now: Timestamp) -> usize {
        self.networks()
            .filter_map(|(id, _)| self.neigh(id))
            .map(|t| t.expire(now.millis()))
            .sum()
    }
}
