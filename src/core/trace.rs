//! Per-packet tracing: the steps an engine takes for one packet, recorded as it decides.
//!
//! Every engine's entry point has a `*_traced` variant generic over a [`Trace`] sink; the
//! ordinary entry point passes [`NoTrace`], whose `step` is empty and inlined, so the untraced
//! path compiles to what it was. A [`Recorder`] appends fixed-size [`Step`]s into a small
//! reusable buffer (no allocation per packet). A `Recorder<true>` is a simulation
//! ([`Trace::SIMULATE`]): the engine changes no state (no learning, no neighbour bindings, no
//! held packets, no storm tokens) and records what it would have done instead.
//!
//! Also here, because they are pure functions of the bytes: the headers a trace shows
//! ([`Headers`]), the filter that picks the packets to trace ([`Filter`]), and the record of one
//! traced packet ([`Record`]). Sessions, queues and workers are the daemon's.

use super::storm::FloodKind;
use super::{DropReason, FromDevice, FromTunnel, Remote, Remotes};
use arrayvec::ArrayVec;
use encap::MacAddr;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Steps kept per packet (more are counted in [`Record::steps_lost`]).
pub const MAX_STEPS: usize = 16;
/// Remotes of a flooded packet named in its record (all are counted).
pub const MAX_REMOTES: usize = 16;

/// Where the engine's steps go.
pub trait Trace {
    /// True for a simulation: the engine must change no state and records what it would do.
    const SIMULATE: bool = false;
    /// Records one step.
    fn step(&mut self, s: Step);
}

/// The untraced path: records nothing, costs nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTrace;

impl Trace for NoTrace {
    #[inline(always)]
    fn step(&mut self, _: Step) {}
}

/// Records the steps of one packet into a reusable buffer; `SIM`: a simulation (see
/// [`Trace::SIMULATE`]).
#[derive(Debug, Default, Clone)]
pub struct Recorder<const SIM: bool = false> {
    steps: ArrayVec<Step, MAX_STEPS>,
    lost: u16,
}

impl<const SIM: bool> Recorder<SIM> {
    /// Forgets the steps of the last packet.
    pub fn clear(&mut self) {
        self.steps.clear();
        self.lost = 0;
    }
    /// The steps recorded so far.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }
}

impl<const SIM: bool> Trace for Recorder<SIM> {
    const SIMULATE: bool = SIM;
    fn step(&mut self, s: Step) {
        if self.steps.try_push(s).is_err() {
            self.lost = self.lost.saturating_add(1);
        }
    }
}

/// A MAC address as text in JSON (`02:00:00:00:00:01`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub MacAddr);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}
impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(Mac).map_err(serde::de::Error::custom)
    }
}

/// Drop reasons by their `stats` name in JSON.
pub(crate) mod reason_name {
    use super::DropReason;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(r: &DropReason, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(r.name())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DropReason, D::Error> {
        let s = String::deserialize(d)?;
        DropReason::ALL
            .iter()
            .copied()
            .find(|r| r.name() == s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown drop reason {s}")))
    }
}

/// What learning did (or, in a simulation, would do) with a frame's source MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum LearnResult {
    /// A new entry.
    Learned,
    /// The entry was already there, same remote: its age reset.
    Refreshed,
    /// The entry moved to this remote.
    Moved {
        /// The remote it was behind.
        from: Remote,
    },
    /// This move froze the MAC where it is (dampening).
    Froze {
        /// Where it stays.
        at: Remote,
    },
    /// The MAC is frozen: not moved.
    Frozen {
        /// Where it stays.
        at: Remote,
    },
    /// Not learned: the network's cap of learned entries is reached.
    RefusedCap,
    /// Refused: a static entry pins the MAC to another remote (the frame is dropped).
    StaticConflict {
        /// The static entry's remote.
        pinned: Remote,
    },
    /// A static entry holds the MAC behind this remote: left alone.
    StaticKept,
    /// Learning is off in this network (static entries are still checked).
    Off,
}

/// What a neighbour (IP -> MAC) binding did with the evidence of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NeighResult {
    /// A new binding.
    New,
    /// Refreshed.
    Refreshed,
    /// Its MAC changed.
    MacChanged,
    /// A static binding with this MAC: left alone.
    StaticKept,
    /// A static binding with another MAC: refused (the packet is dropped).
    StaticConflict,
    /// Nothing changed (the evidence did not allow it).
    Ignored,
    /// Refused at the network's cap.
    Refused,
}

impl From<super::neigh::Learned> for NeighResult {
    fn from(l: super::neigh::Learned) -> NeighResult {
        use super::neigh::Learned as L;
        match l {
            L::New => NeighResult::New,
            L::Refreshed => NeighResult::Refreshed,
            L::MacChanged(_) => NeighResult::MacChanged,
            L::StaticKept => NeighResult::StaticKept,
            L::StaticConflict => NeighResult::StaticConflict,
            L::Ignored => NeighResult::Ignored,
            L::Refused => NeighResult::Refused,
        }
    }
}

/// Why a frame is flooded, as traced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flood {
    /// Broadcast destination.
    Broadcast,
    /// Unicast destination not in the FDB.
    UnknownUnicast,
    /// Multicast destination.
    Multicast,
}

impl From<FloodKind> for Flood {
    fn from(k: FloodKind) -> Flood {
        match k {
            FloodKind::Broadcast => Flood::Broadcast,
            FloodKind::UnknownUnicast => Flood::UnknownUnicast,
            FloodKind::Multicast => Flood::Multicast,
        }
    }
}

/// One decision step an engine took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// The VXLAN header's VNI, and whether a network has it.
    Vni {
        /// The VNI.
        vni: u32,
        /// A network has it.
        found: bool,
    },
    /// The outer source checked against the known remotes.
    Peer {
        /// The outer source.
        src: Remote,
        /// Accepted.
        accepted: bool,
        /// `--allow-any-peer` is on.
        any_peer: bool,
    },
    /// Learning of the inner source MAC behind the outer source.
    Learn {
        /// The MAC.
        mac: Mac,
        /// The outer source.
        remote: Remote,
        /// What learning did.
        #[serde(flatten)]
        result: LearnResult,
        /// A simulation: nothing was changed, this is what would happen.
        simulated: bool,
    },
    /// RFC 6040 decapsulation of the ECN field.
    Ecn {
        /// The outer ECN bits.
        outer: u8,
        /// Kept (false: outer CE over inner Not-ECT, dropped).
        kept: bool,
    },
    /// FDB lookup of a destination MAC.
    Fdb {
        /// The VNI.
        vni: u32,
        /// The MAC.
        mac: Mac,
        /// The remote VTEP (none: not in the FDB).
        remote: Option<Remote>,
    },
    /// Storm control of a frame to be flooded.
    Storm {
        /// The kind of traffic.
        kind: Flood,
        /// Within the limit (a simulation never takes a token and says true).
        allowed: bool,
    },
    /// Head-end replication to the flood list.
    Flood {
        /// Why it is flooded.
        kind: Flood,
        /// Copies, one per peer.
        peers: u32,
    },
    /// ARP suppression of a request from the device.
    ArpSuppress {
        /// The address asked for.
        target: Ipv4Addr,
        /// Answered with this MAC (none: not known, flooded).
        answer: Option<Mac>,
    },
    /// ND suppression of a neighbour solicitation from the device (L2).
    NdSuppress {
        /// The address asked for.
        target: Ipv6Addr,
        /// Answered with this MAC (none: not known, flooded).
        answer: Option<Mac>,
    },
    /// A neighbour binding taught by a packet (ARP or ND from the tunnel, an on-link source).
    NeighLearn {
        /// The address.
        ip: IpAddr,
        /// Its MAC.
        mac: Mac,
        /// What the binding did.
        result: NeighResult,
    },
    /// Route lookup of a destination.
    Route {
        /// The destination.
        dst: IpAddr,
        /// The next hop (none: no route).
        via: Option<IpAddr>,
    },
    /// Neighbour lookup of a next hop.
    Neigh {
        /// The next hop.
        hop: IpAddr,
        /// Its MAC (none: unresolved).
        mac: Option<Mac>,
    },
    /// Held until the next hop resolves (a simulation holds nothing).
    Hold {
        /// The next hop.
        hop: IpAddr,
        /// A request for it (ARP, or an IPv6 neighbour solicitation) was made.
        arp_request: bool,
    },
    /// An answer made here: an ARP reply or ICMP echo reply to our own address.
    Reply {
        /// `arp` or `echo`.
        kind: ReplyKind,
    },
    /// The packet is longer than the tunnel carries.
    TooBig {
        /// Its length.
        len: u32,
        /// The most that fits.
        mtu: u32,
    },
    /// The worker lost it around the engine's decision (the outcome says why).
    Worker {
        /// Where.
        stage: WorkerStage,
        /// The remote a failed send was for.
        remote: Option<IpAddr>,
    },
}

/// Where a worker lost a packet outside the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerStage {
    /// Taking it from the underlay socket (cut short, no source).
    Receive,
    /// Taking it from the device (an offload request it cannot carry out).
    DeviceRead,
    /// Handing it to the underlay socket (the kernel refused the send).
    Send,
}

/// What kind of answer vtepd made itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    /// An ARP reply.
    Arp,
    /// An ICMP echo reply.
    Echo,
    /// An IPv6 neighbour advertisement (for our own address, L3).
    Nd,
}

/// Where a traced packet came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum Origin {
    /// Read from a network's device.
    Device {
        /// The network's VNI (0 in IPIP mode).
        vni: u32,
    },
    /// Received from the underlay.
    Tunnel {
        /// The outer source.
        src: IpAddr,
        /// Its UDP source port (VXLAN; none when unknown, or IPIP).
        src_port: Option<u16>,
        /// The UDP port it arrived on (VXLAN; none for IPIP).
        dst_port: Option<u16>,
        /// The outer TOS byte.
        tos: u8,
    },
}

/// The headers of a traced packet, as far as they parse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Headers {
    /// Bytes (the frame, packet or datagram as read).
    pub len: u32,
    /// The VXLAN header's VNI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// Ethernet source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_mac: Option<Mac>,
    /// Ethernet destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_mac: Option<Mac>,
    /// Ethernet type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ethertype: Option<u16>,
    /// IP source, or the ARP sender's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_ip: Option<IpAddr>,
    /// IP destination, or the ARP target address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_ip: Option<IpAddr>,
    /// IP protocol (IPv6: the next header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<u8>,
    /// The ARP operation (1 request, 2 reply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arp_op: Option<u16>,
    /// The ICMP or ICMPv6 type, when that header follows the IP header (ICMPv6 135 and 136:
    /// a neighbour solicitation and advertisement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
/// ICMP's and ICMPv6's protocol numbers.
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;
/// The ICMPv6 types of Neighbor Discovery (RFC 4861: router solicitation to redirect).
const ND_TYPES: std::ops::RangeInclusive<u8> = 133..=137;

fn ip_at(b: &[u8], at: usize) -> Option<IpAddr> {
    let o = b.get(at..at + 4)?;
    Some(Ipv4Addr::new(o[0], o[1], o[2], o[3]).into())
}

fn ip6_at(b: &[u8], at: usize) -> Option<IpAddr> {
    let o: [u8; 16] = b.get(at..at + 16)?.try_into().ok()?;
    Some(IpAddr::from(o))
}

impl Headers {
    /// The headers of an Ethernet frame (L2 devices, VXLAN's inner frames).
    pub fn of_frame(frame: &[u8]) -> Headers {
        let mut h = Headers {
            len: frame.len() as u32,
            ..Headers::default()
        };
        let Ok(eth) = encap::ethernet::EthernetFrame::new_checked(frame) else {
            return h;
        };
        h.dst_mac = Some(Mac(eth.dst()));
        h.src_mac = Some(Mac(eth.src()));
        h.ethertype = Some(eth.ethertype());
        match eth.ethertype() {
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => h.ip(eth.payload()),
            ETHERTYPE_ARP => {
                let a = eth.payload();
                h.arp_op = a.get(6..8).map(|o| u16::from_be_bytes([o[0], o[1]]));
                h.src_ip = ip_at(a, 14);
                h.dst_ip = ip_at(a, 24);
            }
            _ => {}
        }
        h
    }

    /// The headers of an IP packet, IPv4 or IPv6 (L3 devices, IPIP's inner packets).
    pub fn of_ip(packet: &[u8]) -> Headers {
        let mut h = Headers {
            len: packet.len() as u32,
            ..Headers::default()
        };
        h.ip(packet);
        h
    }

    /// The headers of a VXLAN datagram (the UDP payload): its VNI and inner frame.
    pub fn of_vxlan(datagram: &[u8]) -> Headers {
        let inner = datagram.get(encap::vxlan::HEADER_LEN..).unwrap_or(&[]);
        Headers {
            len: datagram.len() as u32,
            vni: datagram
                .get(4..7)
                .map(|v| u32::from_be_bytes([0, v[0], v[1], v[2]])),
            ..Headers::of_frame(inner)
        }
    }

    /// The headers of an IPIP packet (from its outer header on): its inner packet's.
    pub fn of_ipip(packet: &[u8]) -> Headers {
        let ihl = packet.first().map_or(20, |b| usize::from(b & 0x0f) * 4);
        Headers {
            len: packet.len() as u32,
            ..Headers::of_ip(packet.get(ihl..).unwrap_or(&[]))
        }
    }

    fn ip(&mut self, p: &[u8]) {
        match p.first().map(|b| b >> 4) {
            Some(4) if p.len() >= 20 => {
                self.proto = Some(p[9]);
                self.src_ip = ip_at(p, 12);
                self.dst_ip = ip_at(p, 16);
                // Not a later fragment: its ICMP header is there.
                let first = p[6] & 0x1f == 0 && p[7] == 0;
                let ihl = usize::from(p[0] & 0x0f) * 4;
                if p[9] == ICMP && first {
                    self.icmp_type = p.get(ihl).copied();
                }
            }
            Some(6) if p.len() >= 40 => {
                self.proto = Some(p[6]);
                self.src_ip = ip6_at(p, 8);
                self.dst_ip = ip6_at(p, 24);
                if p[6] == ICMPV6 {
                    self.icmp_type = p.get(40).copied();
                }
            }
            _ => {}
        }
    }
}

/// What became of a traced packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
// The remotes are a fixed-size list (a traced packet allocates nothing); with IPv6 remotes
// that list is the largest variant by far, and boxing it would allocate per record.
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    /// Encapsulated for these remotes.
    Tunnel {
        /// The VNI the copies carry (0 for IPIP).
        vni: u32,
        /// The remotes (the first [`MAX_REMOTES`]).
        remotes: ArrayVec<IpAddr, MAX_REMOTES>,
        /// How many copies in all.
        copies: u32,
    },
    /// Answered here (an ARP reply on behalf of a remote host, an ICMP error), into the device.
    Answered,
    /// Held until its next hop resolves.
    Held,
    /// Delivered to the network's device.
    Deliver {
        /// The network's VNI (0 in IPIP mode).
        vni: u32,
    },
    /// Taken by vtepd (ARP or echo to its own address); the answers go back into the tunnel.
    Consumed,
    /// Dropped.
    Drop {
        /// Why.
        #[serde(with = "reason_name")]
        reason: DropReason,
    },
}

impl Outcome {
    /// The outcome of a decision about a packet from a device (its remotes in `to`).
    pub fn from_device(v: FromDevice, to: &Remotes) -> Outcome {
        match v {
            FromDevice::Tunnel => Outcome::Tunnel {
                vni: to.vni().get(),
                remotes: to
                    .as_slice()
                    .iter()
                    .map(|r| r.ip())
                    .take(MAX_REMOTES)
                    .collect(),
                copies: to.len() as u32,
            },
            FromDevice::Answered => Outcome::Answered,
            FromDevice::Held => Outcome::Held,
            FromDevice::Drop(reason) => Outcome::Drop { reason },
        }
    }

    /// The outcome of a decision about a packet from the tunnel (`vni`: its network's).
    pub fn from_tunnel(v: &FromTunnel, vni: u32) -> Outcome {
        match v {
            FromTunnel::Deliver { .. } => Outcome::Deliver { vni },
            FromTunnel::Consumed => Outcome::Consumed,
            FromTunnel::Drop(reason) => Outcome::Drop { reason: *reason },
        }
    }

    /// The drop reason, if dropped.
    pub fn dropped(&self) -> Option<DropReason> {
        match self {
            Outcome::Drop { reason } => Some(*reason),
            _ => None,
        }
    }
}

/// One traced packet: where it came from, its headers, the steps, the outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The worker that handled it (none: simulated on the control thread).
    pub worker: Option<u16>,
    /// Daemon time, in milliseconds since it started.
    pub at_ms: u64,
    /// Where it came from.
    pub origin: Origin,
    /// Its headers.
    pub headers: Headers,
    /// The steps, in order.
    pub steps: ArrayVec<Step, MAX_STEPS>,
    /// Steps past [`MAX_STEPS`], not kept.
    #[serde(default)]
    pub steps_lost: u16,
    /// What became of it.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// A simulation (`trace --inject`): nothing was changed or sent.
    #[serde(default)]
    pub simulated: bool,
}

impl Record {
    /// The record of a packet with the steps `rec` holds.
    pub fn new<const SIM: bool>(
        origin: Origin,
        headers: Headers,
        rec: &Recorder<SIM>,
        outcome: Outcome,
    ) -> Record {
        Record {
            worker: None,
            at_ms: 0,
            origin,
            headers,
            steps: rec.steps.clone(),
            steps_lost: rec.lost,
            outcome,
            simulated: SIM,
        }
    }
}

/// A protocol to filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proto {
    /// ARP.
    Arp,
    /// IPv6 Neighbor Discovery (ICMPv6 types 133-137).
    Nd,
    /// An IP protocol number, IPv6's next header (icmp 1, tcp 6, udp 17, icmp6 58).
    Ip(u8),
}

impl FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Proto, String> {
        match s {
            "arp" => Ok(Proto::Arp),
            "nd" => Ok(Proto::Nd),
            "icmp" => Ok(Proto::Ip(1)),
            "tcp" => Ok(Proto::Ip(6)),
            "udp" => Ok(Proto::Ip(17)),
            "icmp6" => Ok(Proto::Ip(58)),
            n => n.parse().map(Proto::Ip).map_err(|_| {
                format!(
                    "'{s}' is not a protocol (expected icmp, icmp6, tcp, udp, arp, nd or a \
                     number 0-255)"
                )
            }),
        }
    }
}

/// Which packets a trace takes: every term given must hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// The Ethernet source or destination.
    #[serde(default)]
    pub mac: Option<Mac>,
    /// The inner IPv4 or IPv6 (or ARP) source or destination.
    #[serde(default)]
    pub ip: Option<IpAddr>,
    /// The outer address: the source of a packet from the tunnel, a remote a packet from the
    /// device is sent to.
    #[serde(default)]
    pub outer_ip: Option<IpAddr>,
    /// The network.
    #[serde(default)]
    pub vni: Option<u32>,
    /// The protocol.
    #[serde(default)]
    pub proto: Option<Proto>,
    /// Only packets that were dropped.
    #[serde(default)]
    pub drops: bool,
}

impl Filter {
    /// Whether the packet may match, before its decision (the outcome terms are checked by
    /// [`Filter::takes`]).
    pub fn may_take(&self, origin: &Origin, h: &Headers) -> bool {
        let vni = match origin {
            Origin::Device { vni } => Some(*vni),
            Origin::Tunnel { .. } => h.vni,
        };
        let outer_ok = match (self.outer_ip, origin) {
            (Some(ip), Origin::Tunnel { src, .. }) => *src == ip,
            _ => true,
        };
        self.mac
            .is_none_or(|m| h.src_mac == Some(m) || h.dst_mac == Some(m))
            && self
                .ip
                .is_none_or(|ip| h.src_ip == Some(ip) || h.dst_ip == Some(ip))
            && self.vni.is_none_or(|v| vni == Some(v))
            && self.proto.is_none_or(|p| match p {
                Proto::Arp => h.ethertype == Some(ETHERTYPE_ARP),
                Proto::Nd => {
                    h.proto == Some(ICMPV6) && h.icmp_type.is_some_and(|t| ND_TYPES.contains(&t))
                }
                Proto::Ip(n) => h.proto == Some(n),
            })
            && outer_ok
    }

    /// Whether a packet [`Filter::may_take`] accepted is taken, given its outcome.
    pub fn takes(&self, origin: &Origin, outcome: &Outcome) -> bool {
        let outer_ok = match (self.outer_ip, origin, outcome) {
            (Some(ip), Origin::Device { .. }, Outcome::Tunnel { remotes, .. }) => {
                remotes.contains(&ip)
            }
            (Some(_), Origin::Device { .. }, _) => false,
            _ => true,
        };
        outer_ok && (!self.drops || outcome.dropped().is_some())
    }
}

impl FromStr for Filter {
    type Err = String;
    /// `mac=02:00:00:00:00:01,ip=10.0.0.1,outer-ip=192.0.2.2,vni=42,proto=icmp,drops`: a
    /// conjunction of terms (any of them, each at most once).
    fn from_str(s: &str) -> Result<Filter, String> {
        let mut f = Filter::default();
        for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (k, v) = term.split_once('=').unwrap_or((term, ""));
            let bad = |what: &str| format!("filter term '{term}': '{v}' is not {what}");
            let dup = |set: bool| {
                if set {
                    Err(format!("filter term '{k}' given twice"))
                } else {
                    Ok(())
                }
            };
            match k.trim() {
                "mac" => {
                    dup(f.mac.is_some())?;
                    f.mac = Some(Mac(v.parse().map_err(|_| bad("a MAC address"))?));
                }
                "ip" => {
                    dup(f.ip.is_some())?;
                    f.ip = Some(v.parse().map_err(|_| bad("an IP address"))?);
                }
                "outer-ip" | "outer_ip" => {
                    dup(f.outer_ip.is_some())?;
                    f.outer_ip = Some(v.parse().map_err(|_| bad("an IP address"))?);
                }
                "vni" => {
                    dup(f.vni.is_some())?;
                    let n: u32 = v.parse().map_err(|_| bad("a VNI"))?;
                    encap::Vni::new(n).map_err(|_| bad("a VNI (0-16777215)"))?;
                    f.vni = Some(n);
                }
                "proto" => {
                    dup(f.proto.is_some())?;
                    f.proto = Some(v.parse()?);
                }
                "drops" if v.is_empty() => f.drops = true,
                _ => {
                    return Err(format!(
                        "filter term '{term}' is not one of mac=, ip=, outer-ip=, vni=, proto=, \
                         drops"
                    ));
                }
            }
        }
        Ok(f)
    }
}

impl Filter {
    /// Adds the terms of `other` (the flags) to these (the expression); a term given both
    /// ways is refused.
    pub fn and(mut self, other: Filter) -> Result<Filter, String> {
        fn one<T>(a: &mut Option<T>, b: Option<T>, name: &str) -> Result<(), String> {
            match (a.is_some(), b) {
                (true, Some(_)) => Err(format!("'{name}' is given both in --filter and as a flag")),
                (_, Some(v)) => {
                    *a = Some(v);
                    Ok(())
                }
                _ => Ok(()),
            }
        }
        one(&mut self.mac, other.mac, "mac")?;
        one(&mut self.ip, other.ip, "ip")?;
        one(&mut self.outer_ip, other.outer_ip, "outer-ip")?;
        one(&mut self.vni, other.vni, "vni")?;
        one(&mut self.proto, other.proto, "proto")?;
        self.drops |= other.drops;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_expressions_parse_and_bad_terms_say_why() {
        let f: Filter = "mac=02:00:00:00:00:01, proto=icmp,vni=42,drops"
            .parse()
            .unwrap();
        assert_eq!(f.mac, Some(Mac(MacAddr([2, 0, 0, 0, 0, 1]))));
        assert_eq!(
            (f.proto, f.vni, f.drops),
            (Some(Proto::Ip(1)), Some(42), true)
        );
        assert_eq!(
            "outer-ip=192.0.2.2,ip=10.0.0.1".parse::<Filter>().unwrap(),
            Filter {
                outer_ip: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2))),
                ip: Some(Ipv4Addr::new(10, 0, 0, 1).into()),
                ..Filter::default()
            }
        );
        for (bad, says) in [
            ("mac=zz", "not a MAC"),
            ("proto=gre", "not a protocol"),
            ("vni=99999999", "0-16777215"),
            ("color=red", "not one of"),
            ("ip=1.2.3.4,ip=1.2.3.5", "twice"),
        ] {
            let e = bad.parse::<Filter>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let both = Filter::default().and(f).unwrap().and(f);
        assert!(both.unwrap_err().contains("both"));
    }

    /// A protocol-41 packet's headers are its inner IPv6 packet's, which `ip=` and `proto=`
    /// filter on.
    #[test]
    fn protocol_41_shows_its_ipv6_packet() {
        let mut p = vec![0u8; 20 + 40 + 8];
        p[0] = 0x45;
        p[9] = 41;
        p[20] = 0x60;
        p[26] = 58;
        p[28..44].copy_from_slice(&"fd00:1::5".parse::<std::net::Ipv6Addr>().unwrap().octets());
        p[44..60].copy_from_slice(&"fd00:2::7".parse::<std::net::Ipv6Addr>().unwrap().octets());
        let h = Headers::of_ipip(&p);
        assert_eq!(
            (h.src_ip, h.dst_ip, h.proto, h.len),
            (
                Some("fd00:1::5".parse().unwrap()),
                Some("fd00:2::7".parse().unwrap()),
                Some(58),
                68
            )
        );
        let from = Origin::Tunnel {
            src: Ipv4Addr::new(192, 0, 2, 2).into(),
            src_port: None,
            dst_port: None,
            tos: 0,
        };
        let f = |s: &str| s.parse::<Filter>().unwrap();
        assert!(f("ip=fd00:2::7,proto=icmp6").may_take(&from, &h));
        assert!(!f("proto=icmp").may_take(&from, &h));
    }

    /// An IPv6 frame (L2, or L3 VXLAN's inner frame) shows its addresses, protocol and ICMPv6
    /// type, which `ip=` and `proto=` (`nd`: Neighbor Discovery) filter on.
    #[test]
    fn an_ipv6_frame_shows_its_addresses_and_nd_is_a_protocol() {
        use super::super::synth::Synth;
        let (a, b): (IpAddr, IpAddr) = ("fd00::5".parse().unwrap(), "fd00::7".parse().unwrap());
        let synth = |proto: &str| Synth {
            src_ip: Some(a),
            dst_ip: Some(b),
            proto: Some(proto.parse().unwrap()),
            ..Synth::default()
        };
        let echo = Headers::of_frame(&synth("icmp6").frame(MacAddr::BROADCAST).unwrap());
        assert_eq!(
            (
                echo.ethertype,
                echo.src_ip,
                echo.dst_ip,
                echo.proto,
                echo.icmp_type
            ),
            (Some(0x86dd), Some(a), Some(b), Some(58), Some(128))
        );
        let ns = synth("nd").frame(MacAddr::BROADCAST).unwrap();
        let nd = Headers::of_vxlan(&super::super::synth::vxlan(42, &ns));
        assert_eq!(
            (nd.vni, nd.src_ip, nd.icmp_type),
            (Some(42), Some(a), Some(135))
        );
        let dev = Origin::Device { vni: 42 };
        let f = |s: &str| s.parse::<Filter>().unwrap();
        assert!(f("ip=fd00::7,proto=icmp6").may_take(&dev, &echo));
        assert!(f("proto=nd").may_take(&dev, &nd) && !f("proto=nd").may_take(&dev, &echo));
        let ping = Headers::of_frame(&Synth::default().frame(MacAddr::BROADCAST).unwrap());
        assert_eq!(ping.icmp_type, Some(8), "IPv4's echo request");
    }

    #[test]
    fn the_filter_picks_by_headers_then_outcome() {
        let mut frame = vec![0u8; 14 + 20];
        frame[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        frame[12..14].copy_from_slice(&[8, 0]);
        frame[14] = 0x45;
        frame[23] = 1;
        frame[26..30].copy_from_slice(&[10, 0, 0, 1]);
        frame[30..34].copy_from_slice(&[10, 0, 0, 2]);
        let h = Headers::of_frame(&frame);
        assert_eq!(h.proto, Some(1));
        let dev = Origin::Device { vni: 42 };
        let f = |s: &str| s.parse::<Filter>().unwrap();
        assert!(f("mac=02:00:00:00:00:02,ip=10.0.0.1,proto=icmp,vni=42").may_take(&dev, &h));
        assert!(!f("proto=tcp").may_take(&dev, &h));
        assert!(!f("vni=43").may_take(&dev, &h));
        assert!(!f("ip=10.0.0.3").may_take(&dev, &h));
        let drop = Outcome::Drop {
            reason: DropReason::NoPeers,
        };
        let sent = Outcome::Tunnel {
            vni: 42,
            remotes: [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2))]
                .into_iter()
                .collect(),
            copies: 1,
        };
        assert!(f("drops").takes(&dev, &drop) && !f("drops").takes(&dev, &sent));
        assert!(f("outer-ip=192.0.2.2").takes(&dev, &sent));
        assert!(!f("outer-ip=192.0.2.3").takes(&dev, &sent));
    }

    #[test]
    fn a_record_survives_json_and_extra_steps_are_counted() {
        let mut r = Recorder::<false>::default();
        for _ in 0..MAX_STEPS + 2 {
            r.step(Step::Vni {
                vni: 1,
                found: true,
            });
        }
        let rec = Record::new(
            Origin::Tunnel {
                src: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
                src_port: Some(50000),
                dst_port: Some(4789),
                tos: 0,
            },
            Headers::default(),
            &r,
            Outcome::Drop {
                reason: DropReason::UnknownPeer,
            },
        );
        assert_eq!((rec.steps.len(), rec.steps_lost), (MAX_STEPS, 2));
        let json = serde_json::to_string(&rec).unwrap();
        assert!(json.contains(r#""reason":"unknown_peer""#), "{json}");
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), rec);
    }
}
