//! L3 over VXLAN (flannel-style): vtepd is the Ethernet endpoint of a TUN device. IP packets
//! from the TUN get an Ethernet header toward their next hop's MAC (resolved by ARP, or a
//! static binding); frames from the tunnel addressed to our MAC (or broadcast) lose theirs and
//! go into the TUN. ARP requests for our own overlay address and ICMP echo requests to it are
//! answered here.
//!
//! With an IPv6 address (`address6`) the network carries IPv6 too, resolved by Neighbor
//! Discovery the way IPv4 is by ARP: a next hop is asked for with a neighbour solicitation to
//! its solicited-node group (head-end replicated like ARP's broadcast), a solicitation for our
//! own IPv6 address is answered with a solicited advertisement, and both queue, retry and age
//! alike. IPv6 packets to our own address go into the TUN, where the kernel, which holds the
//! address, answers them. Without `address6`, IPv6 is dropped as `no_ipv6`; router messages
//! (solicitations, advertisements, redirects) and malformed ND from the tunnel are dropped as
//! `bad_nd`: they must not configure the host.
//!
//! Sans-IO like the rest of the core: time is passed in, frames vtepd makes go into a
//! caller-owned [`Generated`] buffer, counters into a caller-owned [`Counters`]. A packet whose
//! next hop is resolved costs one lock-free neighbour lookup; only a miss takes the pending
//! queue's mutex.
//!
//! What is learned, and from what (the safety rules):
//! - an ARP request for our own address: the sender's binding (it is talking to us; Linux
//!   does the same), created or updated;
//! - an ARP reply to us for an address we are resolving: created or updated;
//! - any other ARP (gratuitous, unsolicited replies, requests for other addresses): may only
//!   update an existing binding, never create one (Linux's arp_accept=0);
//! - an IPv4 packet from an on-link source (inside our `--address` subnet): only refreshes an
//!   existing binding with the same MAC (a forged source never creates or redirects one).
//!   Sources behind a router (the common flannel case) carry the router's MAC and teach nothing.
//! - ND follows the same rules: a solicitation for our address teaches its sender (with its
//!   source link-layer option), an advertisement for a next hop we are resolving creates the
//!   binding, any other advertisement only updates one (and one without the override flag only
//!   refreshes a binding with the same MAC, RFC 4861 §7.2.5); on-link IPv6 sources only refresh.

use super::arp::{
    self, ARP_FRAME_LEN, FrameTo, Generated, arp_reply, arp_request, write_arp_frame,
    write_ip_header,
};
use super::ndisc::{self, Advert, NdFrame, NdMessage, Solicit};
use super::neigh::{Evidence, Learned, NeighTable};
use super::route::Routes;
use super::trace::{Mac, NoTrace, ReplyKind, Step, Trace};
use super::{Core, Counters, DropReason, FromDevice, FromTunnel, NetId, Out, Outer, Timestamp};
use encap::MacAddr;
use encap::arp::{ArpOperation, ArpPacket, ArpRepr};
use encap::ethernet::{self, EthernetFrame, ethertype};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Packets held per unresolved next hop (further ones are dropped and counted).
pub const DEFAULT_QUEUE_PER_NEIGH: usize = 16;
/// Bytes held for all unresolved next hops together.
pub const DEFAULT_QUEUE_BYTES: usize = 1 << 20;
/// ARP requests sent for one next hop before giving up.
pub const DEFAULT_ARP_TRIES: u32 = 3;
/// Time between ARP requests for one next hop.
pub const DEFAULT_ARP_INTERVAL: Duration = Duration::from_secs(1);

/// Settings of one L3 VXLAN network.
#[derive(Debug, Clone)]
pub struct L3VxConfig {
    /// Our MAC on the overlay (the configuration-derived stable MAC).
    pub own_mac: MacAddr,
    /// Our overlay address.
    pub address: Ipv4Addr,
    /// Its prefix length: destinations inside are on-link (their own next hop).
    pub prefix: u8,
    /// Our IPv6 overlay address and its prefix length (none: IPv6 is dropped as `no_ipv6`).
    pub address6: Option<(Ipv6Addr, u8)>,
    /// Packets held per unresolved next hop.
    pub queue_per_neigh: usize,
    /// Bytes held for all unresolved next hops.
    pub queue_bytes: usize,
    /// ARP requests per resolution before giving up.
    pub arp_tries: u32,
    /// Time between them.
    pub arp_interval: Duration,
}

impl L3VxConfig {
    /// Defaults for everything but the addresses.
    pub fn new(own_mac: MacAddr, address: Ipv4Addr, prefix: u8) -> L3VxConfig {
        L3VxConfig {
            own_mac,
            address,
            prefix: prefix.min(32),
            address6: None,
            queue_per_neigh: DEFAULT_QUEUE_PER_NEIGH,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            arp_tries: DEFAULT_ARP_TRIES,
            arp_interval: DEFAULT_ARP_INTERVAL,
        }
    }

    /// The same with our IPv6 address `address`/`prefix` too.
    pub fn with_address6(mut self, address: Ipv6Addr, prefix: u8) -> L3VxConfig {
        self.address6 = Some((address, prefix.min(128)));
        self
    }
}

/// What to do with a packet read from the TUN device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunVerdict {
    /// Put an Ethernet header (this destination, our MAC, IPv4) in front of it and forward
    /// the frame ([`Core::forward_frame`]).
    Send(MacAddr),
    /// Copied into the pending queue until its next hop resolves.
    Held,
    /// Dropped (already counted under this reason).
    Drop(DropReason),
}

/// Packets waiting for one next hop.
#[derive(Debug)]
struct Waiting {
    packets: VecDeque<Vec<u8>>,
    tries: u32,
    next_try: Timestamp,
}

#[derive(Debug, Default)]
struct Pending {
    by_hop: HashMap<IpAddr, Waiting>,
    bytes: usize,
}

/// The L3 VXLAN engine of one network; shared by the workers (`Arc`).
#[derive(Debug)]
pub struct L3Vx {
    core: Arc<Core>,
    /// The route table (shared with the control plane, which edits it).
    routes: Arc<Routes>,
    net: NetId,
    cfg: L3VxConfig,
    mask: u32,
    /// The IPv6 prefix mask (0 without `address6`).
    mask6: u128,
    /// Where a solicitation for our IPv6 address is sent (its solicited-node group's MAC).
    solicited_mac: Option<MacAddr>,
    pending: Mutex<Pending>,
}

fn account(ctr: &mut Counters, r: Learned) {
    match r {
        Learned::New => ctr.neigh_learned += 1,
        Learned::MacChanged(_) => ctr.neigh_mac_changes += 1,
        Learned::Refused => ctr.neigh_refused += 1,
        Learned::Refreshed | Learned::StaticKept | Learned::StaticConflict | Learned::Ignored => {}
    }
}

/// Whether `packet` is IPv6 (by its version).
#[inline]
fn is_ipv6(packet: &[u8]) -> bool {
    packet.first().is_some_and(|b| b >> 4 == 6)
}

/// The multicast MAC of an IPv4 multicast group (RFC 1112 §6.4).
fn multicast_mac(ip: Ipv4Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
}

impl L3Vx {
    /// The engine of network `net` of `core`, routing by `routes`.
    pub fn new(core: Arc<Core>, net: NetId, cfg: L3VxConfig, routes: Arc<Routes>) -> L3Vx {
        let mask = if cfg.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(cfg.prefix))
        };
        let mask6 = match cfg.address6 {
            Some((_, p)) if p > 0 => u128::MAX << (128 - u32::from(p)),
            _ => 0,
        };
        let solicited_mac = cfg
            .address6
            .map(|(a, _)| ndisc::multicast_mac(ndisc::solicited_node(a)));
        L3Vx {
            core,
            routes,
            net,
            cfg,
            mask,
            mask6,
            solicited_mac,
            pending: Mutex::new(Pending::default()),
        }
    }

    /// The core it forwards through.
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Our MAC.
    pub fn own_mac(&self) -> MacAddr {
        self.cfg.own_mac
    }

    /// Our overlay address.
    pub fn address(&self) -> Ipv4Addr {
        self.cfg.address
    }

    /// Our IPv6 overlay address, if the network has one.
    pub fn address6(&self) -> Option<Ipv6Addr> {
        self.cfg.address6.map(|(a, _)| a)
    }

    /// The network.
    pub fn net(&self) -> NetId {
        self.net
    }

    fn table(&self) -> Option<&NeighTable> {
        self.core.neigh(self.net)
    }

    /// Whether `ip` is inside our subnet (on-link).
    pub fn on_link(&self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) ^ u32::from(self.cfg.address)) & self.mask == 0
    }

    fn subnet_broadcast(&self, ip: Ipv4Addr) -> bool {
        self.cfg.prefix < 31 && self.on_link(ip) && u32::from(ip) | self.mask == u32::MAX
    }

    /// The next hop for `dst`: itself when on-link, else the route's (`route`, an overlay
    /// address from the route table, flannel's `via 10.244.1.0 onlink`).
    pub fn next_hop(&self, dst: Ipv4Addr, route: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        if self.on_link(dst) { Some(dst) } else { route }
    }

    /// Whether `ip` is inside our IPv6 prefix (false without `address6`).
    pub fn on_link6(&self, ip: Ipv6Addr) -> bool {
        self.cfg
            .address6
            .is_some_and(|(a, _)| (u128::from(ip) ^ u128::from(a)) & self.mask6 == 0)
    }

    /// Packets held for unresolved next hops (all of them), and their bytes.
    pub fn pending(&self) -> (usize, usize) {
        let p = self.lock();
        (p.by_hop.values().map(|w| w.packets.len()).sum(), p.bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // Every change to the queue is completed before the lock is released.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A VXLAN datagram (UDP payload) from the underlay: the core's checks, learning and ECN
    /// ([`Core::on_remote`]), then [`L3Vx::on_frame`] on the inner frame.
    pub fn on_remote(
        &self,
        now: Timestamp,
        outer: Outer,
        datagram: &mut [u8],
        out: &mut Out,
        ctr: &mut Counters,
    ) -> FromTunnel {
        self.on_remote_traced(now, outer, datagram, out, ctr, &mut NoTrace)
    }

    /// [`L3Vx::on_remote`], its steps recorded into `t` (a simulation changes no state).
    pub fn on_remote_traced<T: Trace>(
        &self,
        now: Timestamp,
        outer: Outer,
        datagram: &mut [u8],
        out: &mut Out,
        ctr: &mut Counters,
        t: &mut T,
    ) -> FromTunnel {
        let range = match self.core.on_remote_traced(now, outer, datagram, ctr, t) {
            FromTunnel::Deliver { range, .. } => range,
            v => return v,
        };
        let at = range.start;
        match self.on_frame_traced(now, &datagram[range], &mut out.generated, ctr, t) {
            FromTunnel::Deliver { net, range } => FromTunnel::Deliver {
                net,
                range: at + range.start..at + range.end,
            },
            v => v,
        }
    }

    /// A packet read from the TUN device, in a frame: `frame[..14]` is room for its Ethernet
    /// header, the IP packet follows. Resolved, the header toward its next hop is written and
    /// the core forwards the frame ([`FromDevice::Tunnel`], the remotes in `out.remotes`);
    /// unresolved, a copy is held and an ARP request made ([`FromDevice::Held`]); or dropped.
    pub fn on_local(
        &self,
        now: Timestamp,
        frame: &mut [u8],
        out: &mut Out,
        ctr: &mut Counters,
    ) -> FromDevice {
        self.on_local_traced(now, frame, out, ctr, &mut NoTrace)
    }

    /// [`L3Vx::on_local`], its steps recorded into `t` (a simulation holds nothing and asks
    /// for no resolution).
    pub fn on_local_traced<T: Trace>(
        &self,
        now: Timestamp,
        frame: &mut [u8],
        out: &mut Out,
        ctr: &mut Counters,
        t: &mut T,
    ) -> FromDevice {
        ctr.rx_device += 1;
        let Some(packet) = frame.get(ethernet::HEADER_LEN..) else {
            ctr.drop(DropReason::NotIpv4);
            return FromDevice::Drop(DropReason::NotIpv4);
        };
        // Each family's decision keeps its own result type: IPv4's unresolved hop stays an
        // Ipv4Addr, whose small result the fast path takes in registers.
        let v = if is_ipv6(packet) {
            match self.decide6(now, packet, ctr, t) {
                Ok(v) => v,
                Err((hop, table)) => self.unresolved(now, hop, packet, table, out, ctr, t),
            }
        } else {
            match self.decide(now, packet, self.route_of(packet), ctr, t) {
                Ok(v) => v,
                Err((hop, table)) => self.unresolved(now, hop.into(), packet, table, out, ctr, t),
            }
        };
        self.send(now, frame, v, out, ctr, t)
    }

    /// `packet`'s next hop `hop` is not resolved: hold it (or, simulating, say so).
    #[cold]
    #[allow(clippy::too_many_arguments)]
    fn unresolved<T: Trace>(
        &self,
        now: Timestamp,
        hop: IpAddr,
        packet: &[u8],
        table: &NeighTable,
        out: &mut Out,
        ctr: &mut Counters,
        t: &mut T,
    ) -> TunVerdict {
        if T::SIMULATE {
            t.step(Step::Hold {
                hop,
                arp_request: !self.resolving(hop),
            });
            return TunVerdict::Held;
        }
        let asked = ctr.arp_requests + ctr.nd_solicits;
        let v = self.hold(now, hop, packet, table, &mut out.generated, ctr);
        if v == TunVerdict::Held {
            t.step(Step::Hold {
                hop,
                arp_request: ctr.arp_requests + ctr.nd_solicits != asked,
            });
        }
        v
    }

    /// [`L3Vx::on_local`] for a packet that must not be held whole (a TSO super-packet),
    /// without counting it as read: `None` (nothing counted) when its next hop is unresolved;
    /// the caller then hands its segments one by one to [`L3Vx::on_local`].
    pub fn on_local_resolved(
        &self,
        now: Timestamp,
        frame: &mut [u8],
        out: &mut Out,
        ctr: &mut Counters,
    ) -> Option<FromDevice> {
        self.on_local_resolved_traced(now, frame, out, ctr, &mut NoTrace)
    }

    /// [`L3Vx::on_local_resolved`], its steps recorded into `t` (`None`: the steps up to the
    /// unresolved next hop).
    pub fn on_local_resolved_traced<T: Trace>(
        &self,
        now: Timestamp,
        frame: &mut [u8],
        out: &mut Out,
        ctr: &mut Counters,
        t: &mut T,
    ) -> Option<FromDevice> {
        let packet = frame.get(ethernet::HEADER_LEN..)?;
        let v = if is_ipv6(packet) {
            self.decide6(now, packet, ctr, t).ok()?
        } else {
            self.decide(now, packet, self.route_of(packet), ctr, t)
                .ok()?
        };
        Some(self.send(now, frame, v, out, ctr, t))
    }

    /// The route next hop for an IPv4 packet's destination.
    fn route_of(&self, packet: &[u8]) -> Option<Ipv4Addr> {
        let d = packet.get(16..20)?;
        self.routes
            .load()
            .lookup(Ipv4Addr::new(d[0], d[1], d[2], d[3]))
    }

    /// Carries out a TUN verdict for the packet in `frame` (behind its Ethernet header's room).
    fn send<T: Trace>(
        &self,
        now: Timestamp,
        frame: &mut [u8],
        v: TunVerdict,
        out: &mut Out,
        ctr: &mut Counters,
        t: &mut T,
    ) -> FromDevice {
        match v {
            TunVerdict::Send(mac) => {
                write_ip_header(frame, mac, self.cfg.own_mac);
                self.core
                    .forward_frame_traced(now, self.net, frame, &mut out.remotes, ctr, t)
            }
            TunVerdict::Held => FromDevice::Held,
            TunVerdict::Drop(r) => FromDevice::Drop(r),
        }
    }

    /// An IP packet read from the TUN device, for destination `dst`'s route next hop `route`
    /// (the caller's route-table lookup; ignored for on-link destinations). May push an ARP
    /// request into `out`.
    pub fn on_tun(
        &self,
        now: Timestamp,
        packet: &[u8],
        route: Option<Ipv4Addr>,
        out: &mut Generated,
        ctr: &mut Counters,
    ) -> TunVerdict {
        match self.decide_with(now, packet, route, ctr, &mut NoTrace) {
            Ok(v) => v,
            Err((hop, table)) => self.hold(now, hop, packet, table, out, ctr),
        }
    }

    /// [`L3Vx::on_tun`] without the slow path: `None` (nothing counted) when the next hop is
    /// unresolved. For packets that must not be queued whole (a TSO super-packet): the caller
    /// then hands over its segments one by one to [`L3Vx::on_tun`].
    pub fn on_tun_resolved(
        &self,
        now: Timestamp,
        packet: &[u8],
        route: Option<Ipv4Addr>,
        ctr: &mut Counters,
    ) -> Option<TunVerdict> {
        self.decide_with(now, packet, route, ctr, &mut NoTrace).ok()
    }

    /// [`L3Vx::decide`] with the caller's IPv4 next hop `route`; IPv6 to [`L3Vx::decide6`].
    fn decide_with<T: Trace>(
        &self,
        now: Timestamp,
        packet: &[u8],
        route: Option<Ipv4Addr>,
        ctr: &mut Counters,
        t: &mut T,
    ) -> Result<TunVerdict, (IpAddr, &NeighTable)> {
        if is_ipv6(packet) {
            return self.decide6(now, packet, ctr, t);
        }
        self.decide(now, packet, route, ctr, t)
            .map_err(|(hop, table)| (IpAddr::V4(hop), table))
    }

    /// What to do with IPv6 packet `packet` from the TUN: the IPv6 counterpart of
    /// [`L3Vx::decide`]. Link-scoped multicast is the host's own MLD chatter (dropped quietly);
    /// other multicast goes to its group's MAC.
    // Out of line: the IPv4 path that calls it stays small enough to inline.
    #[inline(never)]
    fn decide6<T: Trace>(
        &self,
        now: Timestamp,
        packet: &[u8],
        ctr: &mut Counters,
        t: &mut T,
    ) -> Result<TunVerdict, (IpAddr, &NeighTable)> {
        let drop = |ctr: &mut Counters, r: DropReason| {
            ctr.drop(r);
            Ok(TunVerdict::Drop(r))
        };
        let Some(own) = self.address6() else {
            return drop(ctr, DropReason::NoIpv6);
        };
        let Some(d) = packet.get(24..40) else {
            return drop(ctr, DropReason::NotIpv4);
        };
        let mut o = [0u8; 16];
        o.copy_from_slice(d);
        let dst = Ipv6Addr::from(o);
        if dst == own {
            return drop(ctr, DropReason::ToSelf);
        }
        if dst.is_multicast() {
            // Interface- and link-scoped groups (ff01::/16, ff02::/16): the host's MLD
            // reports, which no peer wants.
            if o[1] & 0x0f <= 2 {
                return drop(ctr, DropReason::Ipv6Multicast);
            }
            return Ok(TunVerdict::Send(ndisc::multicast_mac(dst)));
        }
        let hop = if self.on_link6(dst) {
            Some(IpAddr::V6(dst))
        } else {
            self.routes.load().lookup6(dst)
        };
        t.step(Step::Route {
            dst: dst.into(),
            via: hop,
        });
        let Some(hop) = hop else {
            return drop(ctr, DropReason::NoRoute);
        };
        let Some(table) = self.table() else {
            return drop(ctr, DropReason::UnknownNetwork);
        };
        let mac = table.lookup(hop, now.millis());
        t.step(Step::Neigh {
            hop,
            mac: mac.map(Mac),
        });
        match mac {
            Some(mac) => Ok(TunVerdict::Send(mac)),
            None => Err((hop, table)),
        }
    }

    /// The verdict for a TUN packet, or its unresolved next hop (and the table to hold it in).
    fn decide<T: Trace>(
        &self,
        now: Timestamp,
        packet: &[u8],
        route: Option<Ipv4Addr>,
        ctr: &mut Counters,
        t: &mut T,
    ) -> Result<TunVerdict, (Ipv4Addr, &NeighTable)> {
        let drop = |ctr: &mut Counters, r: DropReason| {
            ctr.drop(r);
            Ok(TunVerdict::Drop(r))
        };
        if packet.len() < 20 || packet[0] >> 4 != 4 {
            return drop(ctr, DropReason::NotIpv4);
        }
        let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
        if dst == self.cfg.address {
            return drop(ctr, DropReason::ToSelf);
        }
        if dst.is_broadcast() || self.subnet_broadcast(dst) {
            return Ok(TunVerdict::Send(MacAddr::BROADCAST));
        }
        if dst.is_multicast() {
            return Ok(TunVerdict::Send(multicast_mac(dst)));
        }
        let hop = self.next_hop(dst, route);
        t.step(Step::Route {
            dst: dst.into(),
            via: hop.map(Into::into),
        });
        let Some(hop) = hop else {
            return drop(ctr, DropReason::NoRoute);
        };
        let Some(table) = self.table() else {
            return drop(ctr, DropReason::UnknownNetwork);
        };
        let mac = table.lookup(hop, now.millis());
        t.step(Step::Neigh {
            hop: hop.into(),
            mac: mac.map(Mac),
        });
        match mac {
            Some(mac) => Ok(TunVerdict::Send(mac)),
            None => Err((hop, table)),
        }
    }

    /// The slow path of [`L3Vx::on_tun`]: queue the packet and ask who has `hop`.
    fn hold(
        &self,
        now: Timestamp,
        hop: IpAddr,
        packet: &[u8],
        table: &NeighTable,
        out: &mut Generated,
        ctr: &mut Counters,
    ) -> TunVerdict {
        let mut p = self.lock();
        // Resolved while we waited for the lock: the resolver flushed before we queued.
        if let Some(mac) = table.lookup(hop, now.millis()) {
            return TunVerdict::Send(mac);
        }
        if p.bytes + packet.len() > self.cfg.queue_bytes {
            ctr.drop(DropReason::NeighQueueFull);
            return TunVerdict::Drop(DropReason::NeighQueueFull);
        }
        let first = !p.by_hop.contains_key(&hop);
        let w = p.by_hop.entry(hop).or_insert_with(|| Waiting {
            packets: VecDeque::new(),
            tries: 0,
            next_try: now,
        });
        if w.packets.len() >= self.cfg.queue_per_neigh {
            ctr.drop(DropReason::NeighQueueFull);
            return TunVerdict::Drop(DropReason::NeighQueueFull);
        }
        w.packets.push_back(packet.to_vec());
        if first {
            w.tries = 1;
            w.next_try = now.add(self.cfg.arp_interval);
        }
        p.bytes += packet.len();
        drop(p);
        if first {
            self.push_request(hop, out, ctr);
        }
        TunVerdict::Held
    }

    /// Asks for `hop`: an ARP request, or a neighbour solicitation (an IPv6 hop is only ever
    /// held on a network with an IPv6 address).
    fn push_request(&self, hop: IpAddr, out: &mut Generated, ctr: &mut Counters) {
        let own_mac = self.cfg.own_mac;
        match (hop, self.address6()) {
            (IpAddr::V4(hop), _) => {
                let req = arp_request(own_mac, self.cfg.address, hop);
                out.push(FrameTo::Tunnel, ARP_FRAME_LEN, |b| {
                    write_arp_frame(b, MacAddr::BROADCAST, own_mac, &req)
                });
                ctr.arp_requests += 1;
            }
            (IpAddr::V6(target), Some(src)) => {
                let ns = Solicit {
                    mac: own_mac,
                    src,
                    target,
                };
                out.push(FrameTo::Tunnel, ns.frame_len(), |b| ns.write(b));
                ctr.nd_solicits += 1;
            }
            (IpAddr::V6(_), None) => {}
        }
    }

    /// Moves the packets waiting for `hop` (now at `mac`) into `out` as frames to the tunnel.
    fn release(&self, hop: IpAddr, mac: MacAddr, out: &mut Generated) {
        let Some(w) = ({
            let mut p = self.lock();
            let w = p.by_hop.remove(&hop);
            if let Some(w) = &w {
                p.bytes -= w.packets.iter().map(Vec::len).sum::<usize>();
            }
            w
        }) else {
            return;
        };
        for pkt in w.packets {
            out.push(FrameTo::Tunnel, ethernet::HEADER_LEN + pkt.len(), |b| {
                b[ethernet::HEADER_LEN..].copy_from_slice(&pkt);
                write_ip_header(b, mac, self.cfg.own_mac)
            });
        }
    }

    fn resolving(&self, hop: IpAddr) -> bool {
        self.lock().by_hop.contains_key(&hop)
    }

    /// A frame decapsulated for this network (`frame`: from its Ethernet header on): its IP
    /// packet to deliver into the TUN, ARP and echo requests to us answered (into `out`), or
    /// dropped.
    pub fn on_frame(
        &self,
        now: Timestamp,
        frame: &[u8],
        out: &mut Generated,
        ctr: &mut Counters,
    ) -> FromTunnel {
        self.on_frame_traced(now, frame, out, ctr, &mut NoTrace)
    }

    /// [`L3Vx::on_frame`], its steps recorded into `t` (a simulation binds and releases
    /// nothing).
    pub fn on_frame_traced<T: Trace>(
        &self,
        now: Timestamp,
        frame: &[u8],
        out: &mut Generated,
        ctr: &mut Counters,
        t: &mut T,
    ) -> FromTunnel {
        let drop = |ctr: &mut Counters, r: DropReason| {
            ctr.drop(r);
            FromTunnel::Drop(r)
        };
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return drop(ctr, DropReason::InnerRunt);
        };
        let dst = eth.dst();
        if dst != self.cfg.own_mac && !dst.is_broadcast() && Some(dst) != self.solicited_mac {
            return drop(ctr, DropReason::NotForUs);
        }
        match eth.ethertype() {
            ethertype::ARP => self.on_arp(now, eth.payload(), out, ctr, t),
            ethertype::IPV4 => self.on_ipv4(now, eth.src(), eth.header_len(), frame, out, ctr, t),
            ethertype::IPV6 => self.on_ipv6(now, eth.src(), eth.header_len(), frame, out, ctr, t),
            _ => drop(ctr, DropReason::NotIpv4),
        }
    }

    /// Learns (or, tracing a simulation, judges) that `ip` is at `mac` on `evidence`, and
    /// traces it.
    fn learn<T: Trace>(
        &self,
        table: &NeighTable,
        now: Timestamp,
        ip: IpAddr,
        mac: MacAddr,
        evidence: Evidence,
        t: &mut T,
    ) -> Learned {
        let learned = if T::SIMULATE {
            table.judge(ip, mac, now.millis(), evidence)
        } else {
            table.learn(ip, mac, now.millis(), evidence)
        };
        t.step(Step::NeighLearn {
            ip,
            mac: Mac(mac),
            result: learned.into(),
        });
        learned
    }

    /// A packet from on-link source `src` at `mac` refreshes `src`'s binding if it has that MAC
    /// (never creates or redirects one); `Err` (counted) when a static neighbour binds `src` to
    /// another MAC: a spoof.
    fn confirm_source<T: Trace>(
        &self,
        now: Timestamp,
        src: IpAddr,
        mac: MacAddr,
        ctr: &mut Counters,
        t: &mut T,
    ) -> Result<(), DropReason> {
        let Some(table) = self.table() else {
            return Ok(());
        };
        let learned = self.learn(table, now, src, mac, Evidence::Confirm, t);
        if learned == Learned::StaticConflict {
            ctr.drop(DropReason::StaticConflict);
            return Err(DropReason::StaticConflict);
        }
        account(ctr, learned);
        Ok(())
    }

    /// An IPv6 packet from the tunnel at `offset` of `frame`: Neighbor Discovery is ours;
    /// anything else refreshes an on-link source's binding and goes into the TUN.
    #[allow(clippy::too_many_arguments)]
    fn on_ipv6<T: Trace>(
        &self,
        now: Timestamp,
        src_mac: MacAddr,
        offset: usize,
        frame: &[u8],
        out: &mut Generated,
        ctr: &mut Counters,
        t: &mut T,
    ) -> FromTunnel {
        let drop = |ctr: &mut Counters, r: DropReason| {
            ctr.drop(r);
            FromTunnel::Drop(r)
        };
        if self.cfg.address6.is_none() {
            return drop(ctr, DropReason::NoIpv6);
        }
        let packet = &frame[offset..];
        if packet.len() < 40 || packet[0] >> 4 != 6 {
            return drop(ctr, DropReason::NotIpv4);
        }
        // ICMPv6 right after the header with an ND type (133-137): never for the host.
        if packet[6] == 58 && (133..=137).contains(&packet[40..].first().copied().unwrap_or(0)) {
            return match ndisc::parse(frame) {
                Some(nd) => self.on_nd(now, nd, out, ctr, t),
                None => drop(ctr, DropReason::BadNd),
            };
        }
        let mut o = [0u8; 16];
        o.copy_from_slice(&packet[8..24]);
        let src = Ipv6Addr::from(o);
        if self.on_link6(src)
            && let Err(r) = self.confirm_source(now, src.into(), src_mac, ctr, t)
        {
            return FromTunnel::Drop(r);
        }
        FromTunnel::Deliver {
            net: self.net,
            range: offset..frame.len(),
        }
    }

    /// A valid neighbour solicitation or advertisement from the tunnel (see the module docs
    /// for what it may teach); a solicitation for our IPv6 address is answered.
    fn on_nd<T: Trace>(
        &self,
        now: Timestamp,
        nd: NdFrame,
        out: &mut Generated,
        ctr: &mut Counters,
        t: &mut T,
    ) -> FromTunnel {
        let Some(table) = self.table() else {
            ctr.drop(DropReason::UnknownNetwork);
            return FromTunnel::Drop(DropReason::UnknownNetwork);
        };
        let own = self.address6();
        // (who, at which MAC, on what evidence); a duplicate-address probe (from ::) teaches
        // nothing and is not answered: vtepd's address is configured, not autoconfigured.
        let (ip, mac, evidence, answer) = match nd.msg {
            NdMessage::Solicit { .. } if nd.src.is_unspecified() => return FromTunnel::Consumed,
            NdMessage::Solicit { target, source_mac } => {
                let to_us = Some(target) == own;
                let evidence = if to_us {
                    Evidence::Authoritative
                } else {
                    Evidence::UpdateOnly
                };
                let asker = source_mac.unwrap_or(nd.eth_src);
                (nd.src, source_mac, evidence, to_us.then_some(asker))
            }
            NdMessage::Advert {
                target,
                target_mac,
                overrides,
                ..
            } => {
                let evidence = if Some(nd.dst) == own && self.resolving(target.into()) {
                    Evidence::Authoritative
                } else if overrides {
                    Evidence::UpdateOnly
                } else {
                    Evidence::Confirm
                };
                (target, target_mac, evidence, None)
            }
        };
        let learned = match mac {
            // Someone claims our address: never bind it.
            Some(_) if Some(ip) == own => Learned::Ignored,
            Some(mac) => self.learn(table, now, ip.into(), mac, evidence, t),
            None => Learned::Ignored,
        };
        if learned == Learned::StaticConflict {
            ctr.drop(DropReason::StaticConflict);
            return FromTunnel::Drop(DropReason::StaticConflict);
        }
        account(ctr, learned);
        if let (Some(asker_mac), Some(target)) = (answer, own) {
            let na = Advert {
                asker_mac,
                asker_ip: nd.src,
                target,
                mac: self.cfg.own_mac,
            };
            out.push(FrameTo::Tunnel, na.frame_len(), |b| na.write(b));
            ctr.nd_adverts += 1;
            t.step(Step::Reply {
                kind: ReplyKind::Nd,
            });
        }
        if !T::SIMULATE
            && matches!(
                learned,
                Learned::New | Learned::Refreshed | Learned::MacChanged(_)
            )
            && let Some(mac) = table.lookup(ip, now.millis())
        {
            self.release(ip.into(), mac, out);
        }
        FromTunnel::Consumed
    }

    #[allow(clippy::too_many_arguments)]
    fn on_ipv4<T: Trace>(
        &self,
        now: Timestamp,
        src_mac: MacAddr,
        offset: usize,
        frame: &[u8],
        out: &mut Generated,
        ctr: &mut Counters,
        t: &mut T,
    ) -> FromTunnel {
        let packet = &frame[offset..];
        if packet.len() < 20 || packet[0] >> 4 != 4 {
            ctr.drop(DropReason::NotIpv4);
            return FromTunnel::Drop(DropReason::NotIpv4);
        }
        let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
        let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
        if self.on_link(src)
            && let Err(r) = self.confirm_source(now, src.into(), src_mac, ctr, t)
        {
            return FromTunnel::Drop(r);
        }
        if dst == self.cfg.address
            && let Some(len) = arp::echo_reply_len(packet, self.cfg.address)
        {
            let (own_ip, own_mac) = (self.cfg.address, self.cfg.own_mac);
            let before = out.len();
            out.push(FrameTo::Tunnel, len, |b| {
                arp::write_echo_reply(b, packet, own_ip, own_mac, src_mac)
            });
            if out.len() > before {
                ctr.icmp_echo_replies += 1;
                t.step(Step::Reply {
                    kind: ReplyKind::Echo,
                });
                return FromTunnel::Consumed;
            }
        }
        FromTunnel::Deliver {
            net: self.net,
            range: offset..frame.len(),
        }
    }

    fn on_arp<T: Trace>(
        &self,
        now: Timestamp,
        payload: &[u8],
        out: &mut Generated,
        ctr: &mut Counters,
        t: &mut T,
    ) -> FromTunnel {
        let Ok(a) = ArpPacket::new_checked(payload).and_then(|p| ArpRepr::parse(&p)) else {
            ctr.drop(DropReason::BadArp);
            return FromTunnel::Drop(DropReason::BadArp);
        };
        let Some(table) = self.table() else {
            ctr.drop(DropReason::UnknownNetwork);
            return FromTunnel::Drop(DropReason::UnknownNetwork);
        };
        let to_us = a.target_ip == self.cfg.address;
        let evidence = match a.operation {
            ArpOperation::Request if to_us => Evidence::Authoritative,
            ArpOperation::Reply if to_us && self.resolving(a.sender_ip.into()) => {
                Evidence::Authoritative
            }
            _ => Evidence::UpdateOnly,
        };
        let learned = if a.sender_ip == self.cfg.address {
            // Someone claims our address: never bind it.
            Learned::Ignored
        } else {
            self.learn(table, now, a.sender_ip.into(), a.sender_mac, evidence, t)
        };
        if learned == Learned::StaticConflict {
            // A sender address a static neighbour binds to another MAC: neither believed nor
            // answered.
            ctr.drop(DropReason::StaticConflict);
            return FromTunnel::Drop(DropReason::StaticConflict);
        }
        account(ctr, learned);
        if a.operation == ArpOperation::Request && to_us {
            let reply = arp_reply(&a, self.cfg.own_mac);
            out.push(FrameTo::Tunnel, ARP_FRAME_LEN, |b| {
                write_arp_frame(b, a.sender_mac, self.cfg.own_mac, &reply)
            });
            ctr.arp_replies += 1;
            t.step(Step::Reply {
                kind: ReplyKind::Arp,
            });
        }
        if !T::SIMULATE
            && matches!(
                learned,
                Learned::New | Learned::Refreshed | Learned::MacChanged(_)
            )
            && let Some(mac) = table.lookup(a.sender_ip, now.millis())
        {
            self.release(a.sender_ip.into(), mac, out);
        }
        FromTunnel::Consumed
    }

    /// Timer work: re-asks for next hops still unresolved after the interval, gives up (and
    /// drops their packets, counted) after the last try, and releases packets whose next hop
    /// got a binding some other way (a static `neigh add`). Call about once a second.
    pub fn poll(&self, now: Timestamp, out: &mut Generated, ctr: &mut Counters) {
        let Some(table) = self.table() else { return };
        let due: Vec<IpAddr> = {
            let p = self.lock();
            p.by_hop
                .iter()
                .filter(|(_, w)| w.next_try <= now)
                .map(|(h, _)| *h)
                .collect()
        };
        for hop in due {
            if let Some(mac) = table.lookup(hop, now.millis()) {
                self.release(hop, mac, out);
                continue;
            }
            let mut p = self.lock();
            let Some(w) = p.by_hop.get_mut(&hop) else {
                continue;
            };
            if w.tries >= self.cfg.arp_tries {
                let w = p.by_hop.remove(&hop);
                if let Some(w) = w {
                    p.bytes -= w.packets.iter().map(Vec::len).sum::<usize>();
                    for _ in &w.packets {
                        ctr.drop(DropReason::NeighUnresolved);
                    }
                }
                ctr.neigh_failed += 1;
                continue;
            }
            w.tries += 1;
            w.next_try = now.add(self.cfg.arp_interval);
            drop(p);
            self.push_request(hop, out, ctr);
        }
    }
}
