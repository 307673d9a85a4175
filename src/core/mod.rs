//! The sans-IO forwarding core: FDB, flood-and-learn, head-end replication, split horizon.
//!
//! Pure logic: time is passed in; every engine ([`Core`] with [`l2::L2`], [`l3vx::L3Vx`],
//! [`ipip::Ipip`]) takes bytes plus what the socket said about them and returns one decision
//! ([`FromTunnel`], [`FromDevice`], see [`engine`]), writing what else it decided (remotes,
//! generated frames) into a caller-owned [`Out`] and counters into a caller-owned
//! [`Counters`]. No clock, no sockets, no per-packet allocation. The engines are `Send + Sync`
//! and shared (`Arc`) by every dataplane worker and the control plane; forwarding reads never
//! take a lock. Encapsulation for both tunnels is [`encapsulator`]'s.
//!
//! PUBLIC API CONTRACT: the daemon (src/daemon, src/control) is written against the items
//! below. Add freely; change a signature only together with its callers.

pub mod arp;
pub mod arp_suppress;
pub mod capture;
mod control;
pub mod counters;
pub mod dampening;
mod decap;
pub mod encapsulator;
pub mod engine;
pub mod fdb;
mod forward;
pub mod ipip;
mod known_v4;
pub mod l2;
pub mod l3vx;
mod learn;
pub mod local_macs;
pub mod nd_suppress;
pub mod ndisc;
pub mod neigh;
mod neigh_control;
pub mod network;
pub mod pmtu;
pub mod remote;
pub mod remote_csum;
pub mod route;
pub mod storm;
pub mod synth;
pub mod time;
pub mod too_big;
pub mod trace;
mod vni_index;

pub use counters::{Counters, DropReason, NetTraffic, PeerTraffic};
pub use engine::{FromDevice, FromTunnel, Out, Outer, Remotes};
pub use remote::Remote;
pub use time::Timestamp;

use encap::{MacAddr, Vni};
use fdb::Fdb;
use network::Network;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

/// Default FDB ageing time (like Linux).
pub const DEFAULT_AGEING: Duration = Duration::from_secs(300);
/// Default cap on learned FDB entries per VNI.
pub const DEFAULT_MAX_LEARNED: usize = 65536;

/// MAC freezes kept for the daemon to report between two reads; more are counted
/// (`mac_frozen`) but not reported one by one.
const FROZEN_REPORTS: usize = 64;

/// Index of a network inside a [`Core`]: in configuration order (0..n), then networks added at
/// run time (a reload) in the order they were added. Never reused within one core's life: a
/// removed network's id stays unused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetId(pub u16);

/// Configuration of one overlay network (one VNI, one local device).
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// The network's VNI.
    pub vni: Vni,
    /// Head-end replication list: remote VTEPs that get a copy of every BUM frame.
    pub peers: Vec<IpAddr>,
    /// The local device's own MAC (never learned from the tunnel; frames from it are loops).
    pub own_mac: MacAddr,
    /// Learn source MAC -> remote VTEP from decapsulated frames.
    pub learning: bool,
    /// How long a learned entry lives without being seen as a source.
    pub ageing: Duration,
    /// Cap on learned entries in this network.
    pub max_learned: usize,
    /// MAC-move dampening.
    pub mac_move: dampening::MoveLimit,
    /// Storm control of the frames from the device that are flooded.
    pub storm: storm::StormLimits,
    /// VXLAN: the UDP port of the network (`ip link ... dstport`): datagrams for its VNI are
    /// taken only from this port.
    pub port: u16,
    /// Record the source MACs of frames from the device, for the daemon to announce
    /// ([`Core::local_macs`]).
    pub announce: bool,
    /// VXLAN: accept datagrams with remote checksum offload ([`remote_csum`]); without it
    /// they are dropped (`remote_csum`).
    pub remote_csum_rx: bool,
    /// VXLAN: toward which remotes TCP segments leave with remote checksum offload.
    pub remote_csum_tx: remote_csum::TxMode,
}

impl Default for NetworkConfig {
    /// VNI 0 (not a usable network; set `vni`), no peers, learning on, port 4789, defaults
    /// elsewhere.
    fn default() -> Self {
        NetworkConfig {
            vni: Vni::ZERO,
            peers: Vec::new(),
            own_mac: MacAddr([0; 6]),
            learning: true,
            ageing: DEFAULT_AGEING,
            max_learned: DEFAULT_MAX_LEARNED,
            mac_move: dampening::MoveLimit::default(),
            storm: storm::StormLimits::default(),
            port: encap::vxlan::DEFAULT_PORT,
            announce: false,
            remote_csum_rx: false,
            remote_csum_tx: remote_csum::TxMode::Off,
        }
    }
}

/// Configuration of a [`Core`].
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Our own underlay address.
    pub local: IpAddr,
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
    pub remote: IpAddr,
    /// Learned or static.
    pub kind: EntryKind,
    /// Time since last seen as a source (since added, for static entries).
    pub age: Duration,
    /// Time left frozen by MAC-move dampening (`None`: not frozen).
    pub frozen: Option<Duration>,
}

/// One network's FDB entries by kind (see [`Core::fdb_counts_by_kind`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FdbCount {
    /// Static entries.
    pub statics: usize,
    /// Learned entries not past their ageing time.
    pub learned: usize,
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
    /// A remote that cannot be a VTEP (unspecified, loopback, multicast, broadcast or our own
    /// address), and why.
    #[error("{0}")]
    BadRemote(#[from] UnusableRemote),
    /// An address that cannot be a neighbour (unspecified, multicast or broadcast).
    #[error("{0} is not a usable neighbour address")]
    BadNeighbour(IpAddr),
    /// More networks than a NetId can index.
    #[error("too many networks")]
    TooManyNetworks,
    /// The networks added at run time used up the room made for them at start.
    #[error(
        "no room for another network: {0} networks were added or configured since vtepd \
         started (restart vtepd to add more)"
    )]
    NoRoom(usize),
}

/// The forwarding core shared by all workers and the control plane.
///
/// Data path ([`Core::on_local`], [`Core::on_remote`]): lock-free FDB reads, atomic refreshes,
/// peer lists read from immutable snapshots. Control plane (`fdb_*`, `peer_*`): serialised
/// by one mutex the data path never touches, publishing new snapshots on change.
#[derive(Debug)]
pub struct Core {
    /// Our own underlay address.
    local: Remote,
    /// The same, when it is an IPv4 address: decoded once, for the per-datagram source check.
    local_v4: Option<Ipv4Addr>,
    allow_any_peer: AtomicBool,
    /// Network slots by [`NetId`], filled in order (at start, then by [`Core::add_network`]) and
    /// never emptied or reused: a removed network stays in its slot, retired.
    nets: Box<[OnceLock<Network>]>,
    /// VNI -> NetId of the live networks, for the per-datagram lookup.
    by_vni: vni_index::VniIndex,
    fdb: Fdb,
    /// IP -> MAC bindings per network, by [`NetId`] (ARP suppression, L3 VXLAN).
    neigh: Box<[OnceLock<neigh::NeighTable>]>,
    /// MACs frozen by dampening, not yet reported (see [`Core::take_frozen`]).
    frozen: crossbeam_queue::ArrayQueue<dampening::Frozen>,
    /// Source MACs seen on the devices of announcing networks.
    local_macs: local_macs::LocalMacs,
    control: Mutex<control::ControlState>,
}

impl Core {
    /// Builds a core; fails on a duplicate VNI or an unusable peer address.
    pub fn new(cfg: CoreConfig) -> Result<Core, CoreError> {
        Core::with_room(cfg, 0)
    }

    /// Builds a core with room for `room` more networks added at run time
    /// ([`Core::add_network`]; a removed network's room is not given back).
    pub fn with_room(cfg: CoreConfig, room: usize) -> Result<Core, CoreError> {
        if cfg.networks.len() > usize::from(u16::MAX) + 1 {
            return Err(CoreError::TooManyNetworks);
        }
        let slots = cfg
            .networks
            .len()
            .saturating_add(room)
            .min(usize::from(u16::MAX) + 1);
        let core = Core {
            local: cfg.local.into(),
            local_v4: match cfg.local {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            },
            allow_any_peer: AtomicBool::new(cfg.allow_any_peer),
            nets: (0..slots).map(|_| OnceLock::new()).collect(),
            by_vni: vni_index::VniIndex::new(slots),
            fdb: Fdb::with_capacity(1024),
            neigh: (0..slots).map(|_| OnceLock::new()).collect(),
            frozen: crossbeam_queue::ArrayQueue::new(FROZEN_REPORTS),
            local_macs: local_macs::LocalMacs::new(DEFAULT_MAX_LEARNED),
            control: Mutex::new(control::ControlState::default()),
        };
        for n in &cfg.networks {
            core.add_network(n)?;
        }
        Ok(core)
    }

    /// Our own underlay address.
    pub fn local(&self) -> IpAddr {
        self.local.ip()
    }

    /// Hands each MAC frozen by dampening since the last call to `report` (once per freeze).
    pub fn take_frozen(&self, mut report: impl FnMut(dampening::Frozen)) {
        while let Some(f) = self.frozen.pop() {
            report(f);
        }
    }

    /// The networks in [`NetId`] order (removed ones left out).
    pub fn networks(&self) -> impl Iterator<Item = (NetId, Vni)> + '_ {
        self.live_nets().map(|(id, n)| (id, n.vni))
    }

    /// The live networks with their ids.
    fn live_nets(&self) -> impl Iterator<Item = (NetId, &Network)> + '_ {
        self.nets
            .iter()
            .map_while(OnceLock::get)
            .enumerate()
            .filter(|(_, n)| n.is_live())
            .map(|(i, n)| (NetId(i as u16), n))
    }

    /// The network with this VNI.
    #[inline]
    pub fn net_by_vni(&self, vni: Vni) -> Option<NetId> {
        self.by_vni.get(vni)
    }

    /// The VNI of network `id` (`None`: no such network, or removed).
    pub fn vni_of(&self, id: NetId) -> Option<Vni> {
        self.net(id).map(|n| n.vni)
    }

    /// The UDP port of network `id` (`None`: no such network, or removed).
    pub fn port_of(&self, id: NetId) -> Option<u16> {
        self.net(id).map(|n| n.port)
    }

    /// Whether decapsulation is accepted from any source.
    pub fn allow_any_peer(&self) -> bool {
        self.allow_any_peer.load(Ordering::Relaxed)
    }

    /// Accepts (or stops accepting) decapsulation from sources that are not known remotes.
    pub fn set_allow_any_peer(&self, on: bool) {
        self.allow_any_peer.store(on, Ordering::Relaxed);
    }

    /// Whether `ip` is a known remote of network `vni` (a flood-list peer or the remote of a
    /// static FDB entry).
    pub fn known_remote(&self, vni: Vni, ip: IpAddr) -> bool {
        self.net_by_vni(vni)
            .and_then(|id| self.net(id))
            .is_some_and(|n| n.peers().is_known(ip.into()))
    }

    /// The remote VTEP a frame to `mac` in `vni` would go to (`None`: it would be flooded).
    pub fn fdb_lookup(&self, now: Timestamp, vni: Vni, mac: MacAddr) -> Option<IpAddr> {
        let net = self.net(self.net_by_vni(vni)?)?;
        self.fdb
            .lookup(fdb::FdbKey::new(vni, mac), now.millis(), net.ageing_ms())
            .map(Remote::ip)
    }

    /// Learned entries of network `vni` counted against its cap (expired ones until removed).
    pub fn learned_count(&self, vni: Vni) -> Option<usize> {
        Some(self.net(self.net_by_vni(vni)?)?.learned_count())
    }

    /// Whether TCP segments of network `id` toward `dst` leave with remote checksum offload
    /// (its `remcsum_tx`: toward every remote, or toward those known to take it).
    pub fn sends_remote_csum(&self, id: NetId, dst: Remote) -> bool {
        self.net(id).is_some_and(|n| match n.remote_csum_tx {
            remote_csum::TxMode::Off => false,
            remote_csum::TxMode::On => true,
            remote_csum::TxMode::Auto => n.peers().takes_remote_csum(dst),
        })
    }

    #[inline]
    fn net(&self, id: NetId) -> Option<&Network> {
        self.nets
            .get(usize::from(id.0))?
            .get()
            .filter(|n| n.is_live())
    }

    /// The MACs seen on the devices of announcing networks and not aged out, with the IPv4 and
    /// IPv6 addresses seen behind each, sorted.
    pub fn local_macs(&self, now: Timestamp) -> Vec<local_macs::LocalMac> {
        self.local_macs.live(now.millis(), |v| self.ageing_of(v))
    }

    /// The ageing time (ms) of live network `vni`.
    fn ageing_of(&self, vni: Vni) -> Option<u64> {
        Some(self.net(self.net_by_vni(vni)?)?.ageing_ms())
    }

    /// Flood-list length of network `id` (0 for a removed one).
    pub fn flood_len(&self, id: NetId) -> usize {
        self.net(id).map_or(0, |n| n.peers().flood.len())
    }

    fn control(&self) -> MutexGuard<'_, control::ControlState> {
        // The state is only edited in small steps that keep it consistent: a panic elsewhere
        // while holding the lock leaves nothing half-done worth refusing service over.
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn usable_remote(&self, ip: IpAddr) -> Result<(), UnusableRemote> {
        UnusableRemote::check(self.local.ip(), ip)
    }

    /// Whether a datagram from `src` is taken for network `net`: `src` may be a remote VTEP
    /// (what [`UnusableRemote::check`] accepts) and is one of the network's known remotes, or
    /// any source is allowed (`any_peer`). An IPv4 source at an IPv4 VTEP is decoded once and
    /// judged on its 4 bytes, without building an error.
    #[inline(always)]
    fn accepts_source(&self, net: &network::Network, src: Remote, any_peer: bool) -> bool {
        match (self.local_v4, src.as_v4()) {
            (Some(l), Some(a)) => UnusableRemote::usable_v4(l, a) && (any_peer || net.knows_v4(a)),
            _ => self.accepts_source_v6(net, src, any_peer),
        }
    }

    /// [`Core::accepts_source`] of an IPv6 source or at an IPv6 VTEP, out of line, so that the
    /// IPv4 check stays small. Marked cold although every datagram over an IPv6 underlay takes
    /// it: without the mark (on the usability check, before the peer check joined it) the IPv4
    /// receive path measured 1-7% slower over random code layouts (`scripts/bench-layouts.sh`).
    #[cold]
    #[inline(never)]
    fn accepts_source_v6(&self, net: &network::Network, src: Remote, any_peer: bool) -> bool {
        self.usable_remote(src.ip()).is_ok() && (any_peer || net.peers().is_known(src))
    }
}

/// Why an address cannot be a remote VTEP: the one rule for every place a remote is given
/// (`--peer`, static FDB remotes, `fdb add`, `peers add`, IPIP route next hops) and for the
/// sources decapsulation accepts. A remote VTEP is another host's unicast address, reached
/// over the underlay. Link-local addresses (169.254.0.0/16) are accepted: they are reachable
/// on the underlay link itself, and some fabrics number their point-to-point links with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnusableRemote {
    /// 0.0.0.0.
    #[error(
        "{0} is the unspecified address: a remote VTEP must be a unicast address of another host"
    )]
    Unspecified(IpAddr),
    /// 127.0.0.0/8.
    #[error("{0} is a loopback address: a remote VTEP must be reachable over the underlay")]
    Loopback(IpAddr),
    /// 224.0.0.0/4.
    #[error(
        "{0} is a multicast address: a remote VTEP must be a unicast address (list each VTEP as a peer)"
    )]
    Multicast(IpAddr),
    /// 255.255.255.255.
    #[error(
        "{0} is the broadcast address: a remote VTEP must be a unicast address of another host"
    )]
    Broadcast(IpAddr),
    /// An IPv4-mapped IPv6 address (`::ffff:0:0/96`): an IPv4 host's address in an IPv6
    /// socket's form, never on the wire.
    #[error("{0} is an IPv4-mapped IPv6 address: give the IPv4 address itself")]
    Ipv4Mapped(IpAddr),
    /// Our own underlay address.
    #[error("{0} is our own --local address: a remote VTEP must be another host")]
    Own(IpAddr),
    /// Not of our own address's family: a network's underlay is IPv4 or IPv6, not both.
    #[error(
        "{ip} is an {} address but --local {local} is {}: one address family per network \
         (every peer, FDB remote and next hop of the family of --local)",
        family(*ip), family(*local)
    )]
    OtherFamily {
        /// The refused address.
        ip: IpAddr,
        /// Our own.
        local: IpAddr,
    },
}

/// "IPv4" or "IPv6".
pub fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

impl UnusableRemote {
    /// Why `ip` can never be a remote VTEP, whatever our own address (`None`: it can be one).
    pub fn of(ip: IpAddr) -> Option<UnusableRemote> {
        if ip.is_unspecified() {
            Some(UnusableRemote::Unspecified(ip))
        } else if ip.is_loopback() {
            Some(UnusableRemote::Loopback(ip))
        } else if ip.is_multicast() {
            Some(UnusableRemote::Multicast(ip))
        } else if ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
            Some(UnusableRemote::Broadcast(ip))
        } else if matches!(ip, IpAddr::V6(a) if a.to_ipv4_mapped().is_some()) {
            Some(UnusableRemote::Ipv4Mapped(ip))
        } else {
            None
        }
    }

    /// Whether `ip` can be a remote VTEP of a VTEP whose own address is `local`.
    pub fn check(local: IpAddr, ip: IpAddr) -> Result<(), UnusableRemote> {
        match UnusableRemote::of(ip) {
            Some(e) => Err(e),
            None if ip == local => Err(UnusableRemote::Own(ip)),
            None => UnusableRemote::other_family(local, ip).map_or(Ok(()), Err),
        }
    }

    /// `ip` refused for not being of the family of `local` (one family per network).
    pub fn other_family(local: IpAddr, ip: IpAddr) -> Option<UnusableRemote> {
        (ip.is_ipv4() != local.is_ipv4()).then_some(UnusableRemote::OtherFamily { ip, local })
    }

    /// [`UnusableRemote::check`] of an IPv4 address by an IPv4 VTEP, as a bool: the per-packet
    /// form, which builds no error. Written on the address's bits (the two ends of the space in
    /// one compare), where `is_unspecified() || is_loopback() || ...` took more instructions.
    #[inline]
    pub fn usable_v4(local: Ipv4Addr, ip: Ipv4Addr) -> bool {
        let (a, first) = (ip.to_bits(), ip.octets()[0]);
        // 0.0.0.0 and 255.255.255.255 in one compare: `a - 1` wraps 0 round to the top.
        a.wrapping_sub(1) < u32::MAX - 1
            && first != 127
            && first & 0xf0 != 0xe0
            && a != local.to_bits()
    }

    /// The refused address.
    pub fn ip(&self) -> IpAddr {
        match *self {
            UnusableRemote::Unspecified(ip)
            | UnusableRemote::Loopback(ip)
            | UnusableRemote::Multicast(ip)
            | UnusableRemote::Broadcast(ip)
            | UnusableRemote::Ipv4Mapped(ip)
            | UnusableRemote::Own(ip)
            | UnusableRemote::OtherFamily { ip, .. } => ip,
        }
    }

    /// What kind of address it is ("a loopback address", ...).
    pub fn kind(&self) -> &'static str {
        match self {
            UnusableRemote::Unspecified(_) => "the unspecified address",
            UnusableRemote::Loopback(_) => "a loopback address",
            UnusableRemote::Multicast(_) => "a multicast address",
            UnusableRemote::Broadcast(_) => "the broadcast address",
            UnusableRemote::Ipv4Mapped(_) => "an IPv4-mapped IPv6 address",
            UnusableRemote::Own(_) => "our own --local address",
            UnusableRemote::OtherFamily { ip, .. } if ip.is_ipv4() => "an IPv4 address",
            UnusableRemote::OtherFamily { .. } => "an IPv6 address",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::UnusableRemote;
    use std::net::{IpAddr, Ipv4Addr};

    /// The per-packet IPv4 check accepts exactly what the full check accepts: at the edges of
    /// every refused range and over a sweep of the whole space.
    #[test]
    fn the_ipv4_fast_check_is_the_full_check() {
        let local = Ipv4Addr::new(192, 0, 2, 1);
        let edges = [
            [0, 0, 0, 0],
            [0, 0, 0, 1],
            [126, 255, 255, 255],
            [127, 0, 0, 0],
            [127, 0, 0, 1],
            [127, 255, 255, 255],
            [128, 0, 0, 0],
            [223, 255, 255, 255],
            [224, 0, 0, 0],
            [224, 0, 0, 5],
            [239, 1, 2, 3],
            [239, 255, 255, 255],
            [240, 0, 0, 0],
            [255, 255, 255, 254],
            [255, 255, 255, 255],
            [192, 0, 2, 0],
            [192, 0, 2, 1],
            [192, 0, 2, 2],
            [169, 254, 1, 1],
            [10, 1, 2, 3],
        ]
        .map(Ipv4Addr::from);
        let sweep = (0..=u32::MAX).step_by(65_521).map(Ipv4Addr::from_bits);
        for ip in edges.into_iter().chain(sweep) {
            assert_eq!(
                UnusableRemote::usable_v4(local, ip),
                UnusableRemote::check(IpAddr::V4(local), IpAddr::V4(ip)).is_ok(),
                "{ip}"
            );
        }
    }

    /// An IPv4-mapped IPv6 address would be taken for its IPv4 address by [`super::Remote`]:
    /// it is refused with the address to give instead.
    #[test]
    fn an_ipv4_mapped_address_is_not_a_remote() {
        let local: IpAddr = "2001:db8::1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.2".parse().unwrap();
        let e = UnusableRemote::check(local, mapped).unwrap_err();
        assert_eq!(e, UnusableRemote::Ipv4Mapped(mapped));
        assert!(e.to_string().contains("give the IPv4 address"), "{e}");
        assert!(UnusableRemote::check(local, "2001:db8::2".parse().unwrap()).is_ok());
    }
}
