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

impl DropReason {
    /// Drops of what the host sends into a device by itself, expected on every healthy daemon:
    /// counted, but left out of the periodic drop log.
    pub const fn is_quiet(self) -> bool {
        matches!(self, DropReason::Ipv6Multicast)
    }
}

drop_reasons! {
    /// Underlay datagram shorter than a VXLAN header.
    Truncated = "truncated",
    /// VXLAN I flag clear.
    VxlanFlags = "vxlan_flags",
    /// VNI not configured here.
    UnknownVni = "unknown_vni",
    /// VXLAN: the datagram arrived on a UDP port other than its VNI's network's (`port` of
    /// the network): the kernel's vxlan device with that `dstport` would not have taken it.
    WrongPort = "wrong_port",
    /// VXLAN: a datagram with remote checksum offload on a network that does not accept it
    /// (`remcsum_rx` off, as Linux's vxlan device without `remcsumrx`), or whose checksum
    /// start or field is outside its inner frame.
    RemoteCsum = "remote_csum",
    /// Source address is not a known remote (and `--allow-any-peer` is off).
    UnknownPeer = "unknown_peer",
    /// Inner frame shorter than an Ethernet header.
    InnerRunt = "inner_runt",
    /// Inner source MAC is multicast or zero.
    BadSourceMac = "bad_source_mac",
    /// Inner source MAC is our own device's: a loop.
    OwnSourceMac = "own_source_mac",
    /// A frame from the tunnel whose source contradicts a static entry: its source MAC is
    /// pinned to another VTEP (FDB), or (L3 VXLAN) its source IP to another MAC (neighbour).
    /// A spoof, or a misconfiguration: never delivered.
    StaticConflict = "static_conflict",
    /// Local frame shorter than an Ethernet header.
    LocalRunt = "local_runt",
    /// Broadcast frame from the device over its network's storm-control limit.
    StormBroadcast = "storm_broadcast",
    /// Unknown-unicast frame from the device over its network's storm-control limit.
    StormUnknownUnicast = "storm_unknown_unicast",
    /// Multicast frame from the device over its network's storm-control limit.
    StormMulticast = "storm_multicast",
    /// BUM or unknown-unicast frame with an empty flood list.
    NoPeers = "no_peers",
    /// Known-unicast destination that is ourselves (would loop back).
    ToSelf = "to_self",
    /// Local frame or packet too large for the tunnel: its encapsulation would not fit in one
    /// underlay packet (the underlay MTU), or (IPIP) it is longer than the tunnel MTU.
    TooBig = "too_big",
    /// The outer headers could not be written (no room in front of the packet, settings that
    /// make no header): an internal error, never expected.
    EncapError = "encap_error",
    /// Sending to a remote VTEP failed (unreachable, no route, a path MTU below the underlay
    /// interface's, ...).
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
    /// L3: a packet (or a frame's payload) that is neither IPv4 nor, on a network with an
    /// IPv6 address, IPv6.
    NotIpv4 = "not_ipv4",
    /// L3: an IPv6 packet (from the device, from the tunnel, or inside protocol 41) on a
    /// network without an IPv6 address (`address6`).
    NoIpv6 = "no_ipv6",
    /// L3: an IPv6 multicast packet from the device the overlay does not carry (the host's
    /// own MLD reports to link-scoped groups; IPIP carries no multicast at all). Quiet: not in
    /// the periodic drop log.
    Ipv6Multicast = "ipv6_multicast",
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
    /// L3 VXLAN: Neighbor Discovery from the tunnel that fails RFC 4861's checks, or a
    /// router's (solicitation, advertisement, redirect), which must not configure the host.
    BadNd = "bad_nd",
    /// L3: a packet waiting for neighbour resolution did not fit the bounded queue.
    NeighQueueFull = "neigh_queue_full",
    /// L3: a queued packet whose next hop never answered ARP (or ND).
    NeighUnresolved = "neigh_unresolved",
}

impl DropReason {
    /// Reasons a datagram is dropped for before any network took it (no network to count it
    /// in, whatever the mode).
    pub const BEFORE_NETWORK: &'static [DropReason] = &[
        DropReason::Truncated,
        DropReason::VxlanFlags,
        DropReason::UnknownVni,
        DropReason::RxQueueFull,
        DropReason::UnknownNetwork,
    ];
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The tunnel modes a counter applies to, as bits (`Counters::MODES`).
pub mod modes {
    /// L2 VXLAN.
    pub const L2: u8 = 1;
    /// L3 VXLAN.
    pub const L3VX: u8 = 2;
    /// L3 IPIP.
    pub const IPIP: u8 = 4;
    /// Both VXLAN modes.
    pub const VXLAN: u8 = L2 | L3VX;
    /// Every mode.
    pub const ALL: u8 = L2 | L3VX | IPIP;
}

fn no_drops() -> [u64; DropReason::COUNT] {
    [0; DropReason::COUNT]
}

/// Declares the per-worker counters once: the [`Counters`] struct and everything that lists
/// them (their names and docs, the flat array the stats board publishes, summing, the
/// `stats --json` field names through serde, the metric families) come from this one list, so a
/// counter is added in one line.
macro_rules! counters {
    ($($(#[doc = $doc:literal])* $f:ident = $modes:expr,)*) => {
        /// Counters of one worker. Plain data; the I/O layer publishes and sums them. The
        /// serde form is a flat object of `name: value` (the drops are reported apart).
        #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(default)]
        pub struct Counters {
            $($(#[doc = $doc])* pub $f: u64,)*
            /// Drops by reason, indexed by `DropReason as usize`.
            #[serde(skip, default = "no_drops")]
            pub drops: [u64; DropReason::COUNT],
        }

        // By hand: `Default` is not derived for arrays longer than 32.
        impl Default for Counters {
            fn default() -> Self {
                Counters {
                    $($f: 0,)*
                    drops: no_drops(),
                }
            }
        }

        impl Counters {
            /// The counters' names (their `stats --json` keys), in declaration order.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($f),)*];
            /// Each counter's documentation (its doc comment, lines joined), in declaration
            /// order: the metrics' HELP text.
            pub const DOCS: &'static [&'static str] = &[$(concat!($($doc),*),)*];
            /// The modes each counter applies to ([`modes`] bits), in declaration order: the
            /// `stats` text shows a counter only in these.
            pub const MODES: &'static [u8] = &[$($modes,)*];
            /// Number of named counters.
            pub const SCALARS: usize = Self::NAMES.len();
            /// Length of [`Counters::to_array`]: the named counters, then the drops.
            pub const LEN: usize = Self::SCALARS + DropReason::COUNT;

            /// The named counters with their values, in declaration order.
            pub fn scalars(&self) -> [(&'static str, u64); Self::SCALARS] {
                [$((stringify!($f), self.$f),)*]
            }

            /// Every value as one flat array: the named counters, then the drops by reason.
            pub fn to_array(&self) -> [u64; Self::LEN] {
                let mut a = [0u64; Self::LEN];
                let mut i = 0;
                $(a[i] = self.$f; i += 1;)*
                a[i..].copy_from_slice(&self.drops);
                a
            }

            /// The counters [`Counters::to_array`] flattened.
            pub fn from_array(a: &[u64; Self::LEN]) -> Counters {
                let mut c = Counters::default();
                let mut i = 0;
                $(c.$f = a[i]; i += 1;)*
                c.drops.copy_from_slice(&a[i..]);
                c
            }

            /// Adds `other` into `self` (summing per-worker counters).
            pub fn add(&mut self, other: &Counters) {
                $(self.$f += other.$f;)*
                for (a, b) in self.drops.iter_mut().zip(other.drops.iter()) {
                    *a += b;
                }
            }
        }
    };
}

counters! {
    /// Datagrams received from the underlay.
    rx_tunnel = modes::ALL,
    /// Datagrams sent to the underlay (counted by the I/O layer on success).
    tx_tunnel = modes::ALL,
    /// Frames read from local devices.
    rx_device = modes::ALL,
    /// Frames written to local devices (counted by the I/O layer on success).
    tx_device = modes::ALL,
    /// Bytes of the frames or packets read from local devices (a TSO super-packet as the
    /// segments it stands for, headers included; virtio-net headers not counted).
    rx_device_bytes = modes::ALL,
    /// Bytes of the frames or packets written to local devices (a coalesced run as its
    /// segments, headers included; virtio-net headers not counted).
    tx_device_bytes = modes::ALL,
    /// Inner bytes of the datagrams received from the underlay: what the tunnel carried, the
    /// outer IP, UDP and VXLAN headers not counted (the Ethernet frame in VXLAN, the IP packet
    /// in IPIP), like `ip -s link` on a kernel tunnel device.
    rx_tunnel_bytes = modes::ALL,
    /// Inner bytes of the datagrams sent to the underlay (counted with `tx_tunnel`, on success;
    /// a UDP GSO send as the segments it stands for).
    tx_tunnel_bytes = modes::ALL,
    /// Copies made by head-end replication (BUM and unknown unicast).
    flood_copies = modes::VXLAN,
    /// New FDB entries learned.
    learned = modes::VXLAN,
    /// MACs seen for the first time on the device of a network that announces them
    /// (`announce`).
    local_macs = modes::L2,
    /// Addresses seen for the first time behind a local MAC of an announcing network (its ARP
    /// or ND, or its IPv4 or IPv6 source).
    local_ips = modes::L2,
    /// New local MACs or addresses not recorded for announcement: the table of them is full.
    local_macs_refused = modes::L2,
    /// Learned entries that moved to a different remote.
    mac_moves = modes::VXLAN,
    /// MACs frozen by dampening: they moved more often than their network allows.
    mac_frozen = modes::VXLAN,
    /// Moves of frozen MACs not made (their frames were still delivered).
    mac_moves_held = modes::VXLAN,
    /// New MACs not learned because the per-VNI cap was reached.
    learn_refused = modes::VXLAN,
    /// Learning attempts refused because a static entry holds the MAC.
    learn_static_conflict = modes::VXLAN,
    /// Neighbour bindings (IP -> MAC) created by ARP (or, in L2, by ND).
    neigh_learned = modes::VXLAN,
    /// Learned neighbour bindings whose MAC changed.
    neigh_mac_changes = modes::VXLAN,
    /// New neighbour bindings refused because the per-network cap was reached.
    neigh_refused = modes::VXLAN,
    /// Local ARP requests answered on behalf of a remote host instead of flooded (L2).
    arp_suppressed = modes::L2,
    /// Local IPv6 neighbour solicitations answered on behalf of a remote host with a neighbour
    /// advertisement instead of flooded (L2 ND suppression).
    nd_suppressed = modes::L2,
    /// ARP requests sent to resolve a next hop (L3; each one head-end replicated).
    arp_requests = modes::L3VX,
    /// ARP replies sent for our own overlay address (L3).
    arp_replies = modes::L3VX,
    /// IPv6 neighbour solicitations sent to resolve a next hop (L3; each one head-end
    /// replicated).
    nd_solicits = modes::L3VX,
    /// IPv6 neighbour advertisements sent for our own IPv6 overlay address (L3).
    nd_adverts = modes::L3VX,
    /// ICMP echo replies sent for our own overlay address (L3).
    icmp_echo_replies = modes::L3VX,
    /// Next hops given up on after the last ARP or ND retry (L3).
    neigh_failed = modes::L3VX,
    /// Errors the kernel reported after the fact about packets sent to remotes (ICMP errors
    /// coming back, read from the sockets' error queues once a second).
    tunnel_icmp_errors = modes::ALL,
    /// Packets from the tunnel that arrived already merged by the underlay's GRO (IPIP
    /// super-packets; each is one `rx_tunnel`), handed to the device as GSO.
    rx_merged = modes::IPIP,
    /// ICMP "fragmentation needed" / ICMPv6 "packet too big" errors written into a device for
    /// packets that did not fit the path toward their remote (each also a `too_big` drop).
    icmp_too_big = modes::ALL,
    /// Such errors not sent because the worker's ICMP budget was spent.
    icmp_rate_limited = modes::ALL,
    /// IPv4 packets without DF cut into fragments because they did not fit the path.
    fragmented = modes::VXLAN,
    /// Lower path MTUs learned toward a remote (from ICMP errors, EMSGSIZE and route MTUs).
    pmtu_learned = modes::ALL,
    /// TCP segments handed to the underlay with VXLAN remote checksum offload (`remcsum_tx`:
    /// their checksum left to the receiver; those of a UDP GSO send once it is sent).
    tx_remote_csum = modes::VXLAN,
    /// Datagrams taken with VXLAN remote checksum offload (`remcsum_rx`): written to the
    /// device with their inner checksum partial, or completed for a device without offloads.
    rx_remote_csum = modes::VXLAN,
}

/// Declares a set of traffic counters once (per network, per peer): a plain struct with
/// serde keys equal to the field names, its names in order, and the flat array form the
/// per-worker cells publish.
macro_rules! traffic {
    ($(#[$sm:meta])* $name:ident { $($(#[$m:meta])* $f:ident,)* }) => {
        $(#[$sm])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(default)]
        pub struct $name {
            $($(#[$m])* pub $f: u64,)*
        }

        impl $name {
            /// The counters' names (their `stats --json` keys), in declaration order.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($f),)*];
            /// Number of counters.
            pub const LEN: usize = Self::NAMES.len();

            /// The counters with their values, in declaration order.
            pub fn scalars(&self) -> [(&'static str, u64); Self::LEN] {
                [$((stringify!($f), self.$f),)*]
            }

            /// The counters as a flat array, in declaration order.
            pub fn from_array(a: &[u64; Self::LEN]) -> $name {
                let mut i = 0;
                let mut c = $name::default();
                $(c.$f = a[i]; i += 1;)*
                let _ = i;
                c
            }

            /// Adds `other` into `self`.
            pub fn add(&mut self, other: &$name) {
                $(self.$f += other.$f;)*
            }

            /// True when every counter is zero.
            pub fn is_zero(&self) -> bool {
                true $(&& self.$f == 0)*
            }
        }
    };
}

traffic! {
    /// Traffic of one network (VNI or L3 device), summed over the workers. The same names as
    /// the daemon's totals; `rx_tunnel` here counts only what was accepted into the network
    /// (delivered to its device, or answered by vtepd), the totals count every datagram read.
    NetTraffic {
        /// Packets the tunnel delivered into this network.
        rx_tunnel,
        /// Their inner bytes.
        rx_tunnel_bytes,
        /// Packets of this network sent into the tunnel (each copy of a flood counts).
        tx_tunnel,
        /// Their inner bytes.
        tx_tunnel_bytes,
        /// Frames or packets read from this network's device.
        rx_device,
        /// Their bytes.
        rx_device_bytes,
        /// Frames or packets written to this network's device.
        tx_device,
        /// Their bytes.
        tx_device_bytes,
    }
}

traffic! {
    /// Tunnel traffic between this daemon and one remote (a VTEP or IPIP node) in one network.
    PeerTraffic {
        /// Packets received from the remote and accepted into the network.
        rx_tunnel,
        /// Their inner bytes.
        rx_tunnel_bytes,
        /// Packets sent to the remote (a flooded copy counts for the remote it went to).
        tx_tunnel,
        /// Their inner bytes.
        tx_tunnel_bytes,
    }
}

impl Counters {
    /// The totals' packets and bytes in and out, in the shape of a network's.
    pub fn traffic(&self) -> NetTraffic {
        NetTraffic {
            rx_tunnel: self.rx_tunnel,
            rx_tunnel_bytes: self.rx_tunnel_bytes,
            tx_tunnel: self.tx_tunnel,
            tx_tunnel_bytes: self.tx_tunnel_bytes,
            rx_device: self.rx_device,
            rx_device_bytes: self.rx_device_bytes,
            tx_device: self.tx_device,
            tx_device_bytes: self.tx_device_bytes,
        }
    }

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
    /// Drops by reason name, every reason listed (the `drops` object of `stats --json`).
    pub fn drops_by_name(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (r.name(), self.drops_of(*r)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flat_array_keeps_every_counter_and_drop() {
        let a: [u64; Counters::LEN] = std::array::from_fn(|i| 1000 + i as u64);
        let c = Counters::from_array(&a);
        assert_eq!(c.to_array(), a);
        assert_eq!(c.rx_tunnel, 1000);
        assert_eq!(c.rx_remote_csum, 1000 + Counters::SCALARS as u64 - 1);
        assert_eq!(
            c.drops_of(DropReason::ALL[0]),
            1000 + Counters::SCALARS as u64
        );
        let names: Vec<_> = c.scalars().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, Counters::NAMES);
        assert_eq!(c.scalars()[2], ("rx_device", 1002));
        assert_eq!(c.scalars()[4], ("rx_device_bytes", 1004));
        assert_eq!(Counters::DOCS.len(), Counters::SCALARS);
        assert_eq!(
            Counters::DOCS[0].trim(),
            "Datagrams received from the underlay."
        );
        assert!(Counters::DOCS.iter().all(|d| !d.trim().is_empty()));
    }

    #[test]
    fn json_names_are_the_declared_names() {
        let mut c = Counters {
            flood_copies: 7,
            ..Counters::default()
        };
        c.drop(DropReason::NoPeers);
        let v = serde_json::to_value(&c).unwrap();
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), Counters::SCALARS, "{v}");
        for n in Counters::NAMES {
            assert!(obj.contains_key(*n), "{n} missing from {v}");
        }
        assert_eq!(v["flood_copies"], 7);
        let back: Counters = serde_json::from_value(v).unwrap();
        assert_eq!(back.flood_copies, 7);
        assert_eq!(back.total_drops(), 0, "drops are reported apart");
        let mut sum = c.clone();
        sum.add(&c);
        assert_eq!(
            (sum.flood_copies, sum.drops_of(DropReason::NoPeers)),
            (14, 2)
        );
    }
}
