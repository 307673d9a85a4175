//! Counters: plain data, one set per worker, summed when read. Every drop has a reason.

use std::fmt;

macro_rules! drop_reasons {
    ($($(#[$m:meta])* $v:ident = $name:literal,)*) => {
        /// Why a frame or datagram was not forwarded. One enum for the whole daemon.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason { $($(#[$m])* $v,)* }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$v,)*];
            /// Number of reasons.
            pub const COUNT: usize = Self::ALL.len();
            /// Stable snake_case name used in `stats --json` and logs.
            pub const fn name(self) -> &'static str {
                match self { $(DropReason::$v => $name,)* }
            }
        }
    };
}

drop_reasons! {
    /// Underlay datagram shorter than a VXLAN header.
    Truncated = "truncated",
    /// VXLAN I flag clear.
    VxlanFlags = "vxlan_flags",
    /// VNI not configured here.
    UnknownVni = "unknown_vni",
    /// Source address is not a known remote (and `--allow-any-peer` is off).
    UnknownPeer = "unknown_peer",
    /// Inner frame shorter than an Ethernet header.
    InnerRunt = "inner_runt",
    /// Inner source MAC is multicast or zero.
    BadSourceMac = "bad_source_mac",
    /// Inner source MAC is our own device's: a loop.
    OwnSourceMac = "own_source_mac",
    /// Local frame shorter than an Ethernet header.
    LocalRunt = "local_runt",
    /// BUM or unknown-unicast frame with an empty flood list.
    NoPeers = "no_peers",
    /// Known-unicast destination that is ourselves (would loop back).
    ToSelf = "to_self",
    /// Local frame too large for the tunnel MTU.
    TooBig = "too_big",
    /// Sending to a remote VTEP failed (unreachable, no route, too big, ...).
    TunnelTxError = "tunnel_tx_error",
    /// Sending to a remote VTEP found no buffer memory (ENOBUFS: a full device queue).
    TunnelTxNoBufs = "tunnel_tx_nobufs",
    /// Sending to a remote VTEP would have blocked (EAGAIN: the socket's send buffer is full).
    TunnelTxFull = "tunnel_tx_full",
    /// The underlay socket's receive queue was full: datagrams the kernel dropped before we
    /// could read them (its SO_RXQ_OVFL count).
    RxQueueFull = "rx_queue_full",
    /// Writing to the local device failed.
    DeviceTxError = "device_tx_error",
    /// A frame from the device asked for an offload vtepd does not do (GSO with offloads off).
    DeviceOffload = "device_offload",
    /// Network index out of range (internal error).
    UnknownNetwork = "unknown_network",
    /// L3: a packet from the device that is not IPv4 (IPv6, ...).
    NotIpv4 = "not_ipv4",
    /// L3: a packet from the device with a malformed IPv4 header.
    BadIpHeader = "bad_ip_header",
    /// L3: no route for the packet's destination.
    NoRoute = "no_route",
    /// IPIP: TTL 0 (never tunnelled, never delivered; RFC 2003 §3.1).
    TtlZero = "ttl_zero",
    /// IPIP: inner source is our own underlay address (a loop or a spoof; RFC 2003 §3.1).
    OwnSource = "own_source",
    /// IPIP: a received packet whose outer or inner header is malformed (bad checksum,
    /// version, length, fragment).
    BadIpip = "bad_ipip",
    /// Outer CE over an inner Not-ECT packet (RFC 6040 §4.2).
    EcnDrop = "ecn_drop",
    /// L3: a frame whose destination MAC is neither ours nor broadcast.
    NotForUs = "not_for_us",
    /// An ARP packet that is not Ethernet/IPv4 ARP, or is truncated.
    BadArp = "bad_arp",
    /// L3: a packet waiting for neighbour resolution did not fit the bounded queue.
    NeighQueueFull = "neigh_queue_full",
    /// L3: a queued packet whose next hop never answered ARP.
    NeighUnresolved = "neigh_unresolved",
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Counters of one worker. Plain data; the I/O layer publishes and sums them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams received from the underlay.
    pub rx_tunnel: u64,
    /// Datagrams sent to the underlay (counted by the I/O layer on success).
    pub tx_tunnel: u64,
    /// Frames read from local devices.
    pub rx_device: u64,
    /// Frames written to local devices (counted by the I/O layer on success).
    pub tx_device: u64,
    /// Copies made by head-end replication (BUM and unknown unicast).
    pub flood_copies: u64,
    /// New FDB entries learned.
    pub learned: u64,
    /// Learned entries that moved to a different remote.
    pub mac_moves: u64,
    /// New MACs not learned because the per-VNI cap was reached.
    pub learn_refused: u64,
    /// Learning attempts refused because a static entry holds the MAC.
    pub learn_static_conflict: u64,
    /// Neighbour bindings (IP -> MAC) created by ARP.
    pub neigh_learned: u64,
    /// Learned neighbour bindings whose MAC changed.
    pub neigh_mac_changes: u64,
    /// New neighbour bindings refused because the per-network cap was reached.
    pub neigh_refused: u64,
    /// Local ARP requests answered on behalf of a remote host instead of flooded (L2).
    pub arp_suppressed: u64,
    /// ARP requests sent to resolve a next hop (L3; each one head-end replicated).
    pub arp_requests: u64,
    /// ARP replies sent for our own overlay address (L3).
    pub arp_replies: u64,
    /// ICMP echo replies sent for our own overlay address (L3).
    pub icmp_echo_replies: u64,
    /// Next hops given up on after the last ARP retry (L3).
    pub neigh_failed: u64,
    /// Packets from the tunnel that arrived already merged by the underlay's GRO (IPIP
    /// super-packets; each is one `rx_tunnel`), handed to the device as GSO.
    pub rx_merged: u64,
    /// Drops by reason, indexed by `DropReason as usize`.
    pub drops: [u64; DropReason::COUNT],
}

impl Counters {
    /// Counts one drop.
    #[inline]
    pub fn drop(&mut self, r: DropReason) {
        self.drops[r as usize] += 1;
    }
    /// Drops under one reason.
    pub fn drops_of(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }
    /// Total drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
    /// Adds `other` into `self` (summing per-worker counters).
    pub fn add(&mut self, other: &Counters) {
        self.rx_tunnel += other.rx_tunnel;
        self.tx_tunnel += other.tx_tunnel;
        self.rx_device += other.rx_device;
        self.tx_device += other.tx_device;
        self.flood_copies += other.flood_copies;
        self.learned += other.learned;
        self.mac_moves += other.mac_moves;
        self.learn_refused += other.learn_refused;
        self.learn_static_conflict += other.learn_static_conflict;
        self.neigh_learned += other.neigh_learned;
        self.neigh_mac_changes += other.neigh_mac_changes;
        self.neigh_refused += other.neigh_refused;
        self.arp_suppressed += other.arp_suppressed;
        self.arp_requests += other.arp_requests;
        self.arp_replies += other.arp_replies;
        self.icmp_echo_replies += other.icmp_echo_replies;
        self.neigh_failed += other.neigh_failed;
        self.rx_merged += other.rx_merged;
        for (a, b) in self.drops.iter_mut().zip(other.drops.iter()) {
            *a += b;
        }
    }
}
