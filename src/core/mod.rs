//! The sans-IO forwarding core: FDB, flood-and-learn, head-end replication, split horizon.
//!
//! Pure logic: time is passed in, decisions are written into a caller-owned [`Actions`] buffer,
//! counters into a caller-owned [`Counters`]. No clock, no sockets, no per-packet allocation.
//! A [`Core`] is `Send + Sync` and shared (`Arc<Core>`) by every dataplane worker and the
//! control plane; forwarding reads never take a lock.
//!
//! PUBLIC API CONTRACT: the daemon (src/daemon, src/control) is written against the items
//! below. Add freely; change a signature only together with its callers.

pub mod actions;
pub mod counters;
pub mod time;

pub use actions::{Action, Actions};
pub use counters::{Counters, DropReason};
pub use time::Timestamp;

use encap::{MacAddr, Vni};
use std::net::Ipv4Addr;
use std::time::Duration;

/// Default FDB ageing time (like Linux).
pub const DEFAULT_AGEING: Duration = Duration::from_secs(300);
/// Default cap on learned FDB entries per VNI.
pub const DEFAULT_MAX_LEARNED: usize = 65536;

/// Index of a network inside a [`Core`], in configuration order (0..n).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetId(pub u16);

/// Configuration of one overlay network (one VNI, one local device).
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// The network's VNI.
    pub vni: Vni,
    /// Head-end replication list: remote VTEPs that get a copy of every BUM frame.
    pub peers: Vec<Ipv4Addr>,
    /// The local device's own MAC (never learned from the tunnel; frames from it are loops).
    pub own_mac: MacAddr,
    /// Learn source MAC -> remote VTEP from decapsulated frames.
    pub learning: bool,
    /// How long a learned entry lives without being seen as a source.
    pub ageing: Duration,
    /// Cap on learned entries in this network.
    pub max_learned: usize,
}

/// Configuration of a [`Core`].
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Our own underlay address.
    pub local: Ipv4Addr,
    /// Accept decapsulation from any source, not only known remotes.
    pub allow_any_peer: bool,
    /// The networks, indexed by [`NetId`] in this order.
    pub networks: Vec<NetworkConfig>,
}

/// Kind of an FDB entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// Learned from the data path; ages out.
    Learned,
    /// Added by the operator; never aged, never overwritten by learning.
    Static,
}

/// A snapshot of one FDB entry, for the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbEntryInfo {
    /// Network.
    pub vni: Vni,
    /// MAC address.
    pub mac: MacAddr,
    /// Remote VTEP.
    pub remote: Ipv4Addr,
    /// Learned or static.
    pub kind: EntryKind,
    /// Time since last seen as a source (since added, for static entries).
    pub age: Duration,
}

/// A control-plane request the core refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// No network has this VNI.
    #[error("no network with VNI {0}")]
    UnknownVni(Vni),
    /// The same VNI was configured twice.
    #[error("VNI {0} configured twice")]
    DuplicateVni(Vni),
    /// A MAC that cannot be an FDB key (multicast or zero).
    #[error("{0} is not a unicast MAC address")]
    BadMac(MacAddr),
    /// A remote that cannot be a VTEP (unspecified, multicast, broadcast or our own address).
    #[error("{0} is not a usable remote VTEP address")]
    BadRemote(Ipv4Addr),
    /// More networks than a NetId can index.
    #[error("too many networks")]
    TooManyNetworks,
}

/// The forwarding core shared by all workers and the control plane.
#[derive(Debug)]
pub struct Core {
    // IMPLEMENTATION: filled in by the core work (FDB on a lock-free map, snapshots of
    // flood lists and known remotes).
    cfg: CoreConfig,
}

impl Core {
    /// Builds a core; fails on a duplicate VNI or an unusable peer address.
    pub fn new(cfg: CoreConfig) -> Result<Core, CoreError> {
        Ok(Core { cfg })
    }

    /// The networks in [`NetId`] order.
    pub fn networks(&self) -> impl Iterator<Item = (NetId, Vni)> + '_ {
        self.cfg
            .networks
            .iter()
            .enumerate()
            .map(|(i, n)| (NetId(i as u16), n.vni))
    }

    /// The network with this VNI.
    pub fn net_by_vni(&self, vni: Vni) -> Option<NetId> {
        self.networks().find(|(_, v)| *v == vni).map(|(id, _)| id)
    }

    /// A frame read from network `net`'s local device. Pushes one `ToTunnel` per destination
    /// (known unicast: one; BUM or unknown unicast: one per flood-list peer), or a `Drop`.
    pub fn on_local(
        &self,
        now: Timestamp,
        net: NetId,
        frame: &[u8],
        out: &mut Actions,
        ctr: &mut Counters,
    ) {
        let _ = (now, net, frame, out, ctr);
    }

    /// A UDP payload (VXLAN header + inner frame) received from underlay address `src`.
    /// Pushes at most one `ToDevice` (never a `ToTunnel`: split horizon), or a `Drop`; learns.
    pub fn on_remote(
        &self,
        now: Timestamp,
        src: Ipv4Addr,
        datagram: &[u8],
        out: &mut Actions,
        ctr: &mut Counters,
    ) {
        let _ = (now, src, datagram, out, ctr);
    }

    /// Removes learned entries idle for longer than their network's ageing time; returns how many.
    pub fn expire(&self, now: Timestamp) -> usize {
        let _ = now;
        0
    }

    /// Adds or replaces a static entry (a static entry replaces a learned one).
    pub fn fdb_add(
        &self,
        now: Timestamp,
        vni: Vni,
        mac: MacAddr,
        remote: Ipv4Addr,
    ) -> Result<(), CoreError> {
        let _ = (now, vni, mac, remote);
        Ok(())
    }

    /// Deletes an entry of either kind; `Ok(false)` if there was none.
    pub fn fdb_del(&self, vni: Vni, mac: MacAddr) -> Result<bool, CoreError> {
        let _ = (vni, mac);
        Ok(false)
    }

    /// Deletes all entries (of one VNI, or learned only); returns how many.
    pub fn fdb_flush(&self, vni: Option<Vni>, learned_only: bool) -> Result<usize, CoreError> {
        let _ = (vni, learned_only);
        Ok(0)
    }

    /// A snapshot of the FDB (of one VNI or all), sorted by VNI then MAC; expired entries omitted.
    pub fn fdb_entries(&self, now: Timestamp, vni: Option<Vni>) -> Vec<FdbEntryInfo> {
        let _ = (now, vni);
        Vec::new()
    }

    /// Number of FDB entries (all networks, both kinds).
    pub fn fdb_len(&self) -> usize {
        0
    }

    /// Adds a flood-list peer; `Ok(false)` if it was already there.
    pub fn peer_add(&self, vni: Vni, ip: Ipv4Addr) -> Result<bool, CoreError> {
        let _ = (vni, ip);
        Ok(false)
    }

    /// Removes a flood-list peer; `Ok(false)` if it was not there.
    pub fn peer_del(&self, vni: Vni, ip: Ipv4Addr) -> Result<bool, CoreError> {
        let _ = (vni, ip);
        Ok(false)
    }

    /// Every network's flood list, in [`NetId`] order.
    pub fn peers(&self) -> Vec<(Vni, Vec<Ipv4Addr>)> {
        self.cfg
            .networks
            .iter()
            .map(|n| (n.vni, n.peers.clone()))
            .collect()
    }
}
