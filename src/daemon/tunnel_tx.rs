//! The device -> tunnel half of a VXLAN worker, shared by the L2 worker ([`super::l2_vxlan`])
//! and the L3 VXLAN worker ([`super::l3_vxlan`]): frames read into the slots of a
//! [`SendBatch`], encapsulated by the worker's [`Encapsulator`] (per-remote header templates),
//! and sent in one `sendmmsg` on the raw socket (each inner flow keeps its own UDP source
//! port). Payloads are never copied in user space; only headers are.
//!
//! A TCP/IPv4 super-frame (device TSO, cut by [`batch_tso`]) going to one remote leaves as one
//! UDP GSO `sendmsg` (UDP_SEGMENT: the kernel cuts it into equal-size datagrams, at most
//! 64 KiB a send) from a UDP socket bound to `--local` and to the flow's own source port (the
//! one the raw path would write; a small pool, [`MAX_GSO_SOCKETS`], opened on first use without
//! SO_REUSEPORT; a port that cannot be bound falls back to the raw path). DF (IP_MTU_DISCOVER:
//! IP_PMTUDISC_DO or _DONT), TTL and TOS (DSCP + ECN) are set on those sockets per super-frame
//! from the outer header encap computed for its first segment, so the network's outer-header
//! policy holds there too; the kernel writes the IP ID and always a UDP checksum (a UDP GSO send
//! on a socket told SO_NO_CHECK fails with EINVAL), also with `udp_checksum` off. Whatever a GSO
//! send refuses goes the raw way, segment by segment.
//!
//! Path MTU: every copy is checked against the path MTU toward its remote (the encapsulator's
//! per-remote limit, see `core::pmtu`). A unicast frame that does not fit is handed back to the
//! worker ([`TunnelTx::send_copies`] returns the limit), which lets the core decide
//! (`core::too_big`): an ICMP error into the device, or IPv4 fragments sent here
//! ([`TunnelTx::send_fragments`], payloads sent from the slot as segments are). A super-frame
//! is cut into segments of an MSS that fits the path, whatever the device's MSS was. The send
//! sockets' error queues and EMSGSIZE refusals feed the path MTU table on the tick
//! ([`PmtuLearner`]).
//!
//! Everything is allocated once; the template cache and the socket pool only allocate when a
//! new remote or port is first seen, and are cleared (not freed) at their caps.

use super::batch::{HEADROOM, MAX_HEAD, MAX_PACKET, SendBatch, send_drop_reason};
use super::batch_gro::{MAX_HEADER, be16};
use super::batch_tso::{self, TsoFrame};
use super::capture::WorkerCapture;
use super::io::DatagramSocket;
use super::pmtu::{IcmpListener, PmtuLearner};
use super::ratelimit::RateLimit;
use super::stats::Traffic;
use crate::core::encapsulator::{Encapsulator, TunnelConfig};
use crate::core::pmtu::PathMtus;
use crate::core::too_big::Fragments;
use crate::core::{Core, Counters, DropReason, NetId, Remote, Remotes, Timestamp};
use encap::checksum;
use encap::vxlan::{self, HEADER_LEN};
use encap::{Vni, VxlanConfig};
use socket2::Socket;
use std::collections::HashMap;
use std::io::IoSlice;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;
use tracing::warn;

/// The outer TOS, TTL and DF (over IPv6: traffic class and hop limit, DF always) a UDP GSO
/// socket is set to send with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GsoOuter {
    tos: u8,
    ttl: u8,
    df: bool,
}

impl GsoOuter {
    /// Not known to be set (a new socket, or a change that failed): TTL 0 is in no outer
    /// header, so the next send sets every field.
    const NOT_SET: GsoOuter = GsoOuter {
        tos: 0,
        ttl: 0,
        df: true,
    };

    /// The fields of the outer header `outer` (IPv4 or IPv6, told by its version), its flow
    /// label (IPv6; 0 over IPv4) and its UDP source port.
    fn of(outer: &[u8]) -> Option<(GsoOuter, u32, u16)> {
        match outer.first()? >> 4 {
            4 => {
                let o = GsoOuter {
                    tos: outer[1],
                    ttl: outer[8],
                    df: outer[6] & 0x40 != 0,
                };
                Some((o, 0, u16::from_be_bytes([*outer.get(20)?, outer[21]])))
            }
            6 => {
                let w = u32::from_be_bytes([outer[0], outer[1], outer[2], outer[3]]);
                let o = GsoOuter {
                    tos: (w >> 20) as u8,
                    ttl: outer[7],
                    df: true,
                };
                Some((
                    o,
                    w & 0xf_ffff,
                    u16::from_be_bytes([*outer.get(40)?, outer[41]]),
                ))
            }
            _ => None,
        }
    }

    /// Sets `sock` (of the family `v6` says) to send with these fields.
    fn apply(&self, sock: &Socket, v6: bool) -> std::io::Result<()> {
        if v6 {
            sock.set_tclass_v6(u32::from(self.tos))?;
            return sock.set_unicast_hops_v6(u32::from(self.ttl));
        }
        sock.set_tos_v4(u32::from(self.tos))?;
        sock.set_ttl_v4(u32::from(self.ttl))?;
        crate::sys::set_dont_fragment(sock, self.df)
    }
}

/// The outer IPv6 and UDP headers (the longest outer IP + UDP header).
const OUTER6_IP_UDP: usize = 48;

/// UDP GSO send sockets kept open (one per flow source port in use); the pool is closed and
/// refilled on demand when full.
pub const MAX_GSO_SOCKETS: usize = 64;

/// Frames read from a device, and their encapsulated copies on their way to remote VTEPs
/// (sent on `S`, the raw socket; an in-memory one in tests).
#[derive(Debug)]
pub struct TunnelTx<S = Socket> {
    raw: S,
    /// Our underlay address (the UDP GSO sockets bind to it).
    local: IpAddr,
    /// Writes the outer headers (per-remote templates).
    enc: Encapsulator,
    /// Frames from the device and the encapsulated copies waiting for `sendmmsg`.
    pub txb: SendBatch,
    /// Where a segment's outer headers are computed (headroom, inner headers, room for the
    /// payload, which stays in its frame slot).
    scratch: Box<[u8]>,
    /// UDP GSO send sockets by source port (with the outer TOS, TTL and DF they are set to;
    /// `None`: the port could not be bound).
    gso_socks: HashMap<u16, Option<(Socket, GsoOuter)>, ahash::RandomState>,
    /// The VXLAN and inner headers of each segment of a UDP GSO send.
    gso_heads: Box<[[u8; HEADER_LEN + MAX_HEADER]; crate::sys::MAX_BATCH]>,
    err_log: RateLimit,
    /// What the underlay says about the path MTUs, for the shared table.
    learner: PmtuLearner,
    /// The worker's traffic cells (per network and per remote).
    traffic: Arc<Traffic>,
    /// `vtepd capture`: the worker's side (its dataplane offers the device's packets and
    /// received datagrams through it too).
    pub capture: WorkerCapture,
    /// The network of the frame at hand (set by [`TunnelTx::send_copies`] and
    /// [`TunnelTx::send_fragments`]).
    net: NetId,
    /// The forwarding core, asked toward which remotes segments leave with remote checksum
    /// offload (none without it).
    core: Option<Arc<Core>>,
}

impl<S: DatagramSocket> TunnelTx<S> {
    /// Sends on the non-blocking raw socket `raw` with the outer header settings `vxlan` (of
    /// every network not given its own by [`TunnelTx::with_network`]), over an underlay of MTU
    /// `underlay_mtu`: a copy that would not fit is counted `too_big` and never sent.
    pub fn new(raw: S, vxlan: VxlanConfig, underlay_mtu: u32) -> TunnelTx<S> {
        TunnelTx::with_path_mtus(raw, vxlan, Arc::new(PathMtus::new(underlay_mtu)), None)
    }

    /// Like [`TunnelTx::new`], following and feeding the shared path MTUs `pmtu` (their
    /// configured MTU is the underlay's), and reading the ICMP listener `icmp` on the tick.
    pub fn with_path_mtus(
        raw: S,
        vxlan: VxlanConfig,
        pmtu: Arc<PathMtus>,
        icmp: Option<IcmpListener>,
    ) -> TunnelTx<S> {
        TunnelTx {
            raw,
            learner: PmtuLearner::new(Arc::clone(&pmtu), vxlan.local.into()).with_listener(icmp),
            local: vxlan.local.into(),
            enc: Encapsulator::with_path_mtus(TunnelConfig::Vxlan(vxlan), 0, pmtu),
            txb: SendBatch::new(),
            scratch: vec![0u8; HEADROOM + MAX_PACKET + 64].into_boxed_slice(),
            gso_socks: HashMap::with_capacity_and_hasher(
                MAX_GSO_SOCKETS,
                ahash::RandomState::new(),
            ),
            gso_heads: Box::new([[0u8; HEADER_LEN + MAX_HEADER]; crate::sys::MAX_BATCH]),
            err_log: RateLimit::default(),
            traffic: Traffic::detached(),
            capture: WorkerCapture::default(),
            net: NetId(0),
            core: None,
        }
    }

    /// Our underlay address.
    pub fn local(&self) -> IpAddr {
        self.local
    }

    /// Sends VXLAN over an IPv6 underlay from `local` (on `raw`, an IPv6 raw socket): outer
    /// IPv6 headers of our own, to IPv6 remotes. Super-frames leave as UDP GSO sends from IPv6
    /// pool sockets, with the flow label the raw path writes for the same flow (given with
    /// each send: IPV6_FLOWINFO_SEND).
    pub fn over_ipv6(mut self, local: std::net::Ipv6Addr) -> TunnelTx<S> {
        self.local = IpAddr::V6(local);
        self.enc = self.enc.over_ipv6(local);
        self.txb.set_outer_len(self.enc.overhead());
        self.learner = self.learner.with_local(self.local);
        self
    }

    /// Sends TCP segments with remote checksum offload where `core` says so
    /// ([`Core::sends_remote_csum`]).
    pub fn with_core(mut self, core: Arc<Core>) -> TunnelTx<S> {
        self.core = Some(core);
        self
    }

    /// Counts drop `r` of the frame at hand, in the totals and in its network.
    fn drop(&self, ctr: &mut Counters, r: DropReason) {
        ctr.drop(r);
        self.traffic.dropped(self.net, r);
    }

    /// Counts what is sent per network and per remote into `traffic` (the worker's cells).
    pub fn attach(&mut self, traffic: Arc<Traffic>) {
        self.traffic = traffic;
    }

    /// Gives network `vni` its own outer header settings (the same `local`).
    pub fn with_network(mut self, vni: Vni, vxlan: VxlanConfig) -> TunnelTx<S> {
        self.enc = self.enc.with_network(vni, TunnelConfig::Vxlan(vxlan));
        self
    }

    /// Gives a network added at run time its settings.
    pub fn set_network(&mut self, vni: Vni, vxlan: VxlanConfig) {
        self.enc.set_network(vni, TunnelConfig::Vxlan(vxlan));
    }

    /// The VXLAN settings of network `vni`.
    fn settings(&self, vni: Vni) -> Option<&VxlanConfig> {
        match self.enc.config(vni) {
            TunnelConfig::Vxlan(c) => Some(c),
            TunnelConfig::Ipip(_) => None,
        }
    }

    /// Where the segments of `t` say their TCP checksum starts when the network at hand sends
    /// them to `dst` with remote checksum offload (`remcsum_tx`) and the option can say it;
    /// `None` otherwise (the segments carry complete checksums).
    fn remote_csum(&self, t: &TsoFrame, dst: Remote) -> Option<u16> {
        let start = u16::try_from(t.l4).ok()?;
        let fits = start % 2 == 0 && start <= vxlan::MAX_RCO_START;
        let core = self.core.as_ref()?;
        (fits && core.sends_remote_csum(self.net, dst)).then_some(start)
    }

    /// Sends a copy of the frame in send slot `slot` (`len` bytes at `HEADROOM`; a TCP
    /// super-frame when `tso`) to every remote in `to` (the engine's decision for it: one
    /// remote, or one per peer for head-end replication). A frame for one remote that does
    /// not fit the path toward it is not sent and not counted: it comes back as that remote
    /// and the longest frame that fits, for the caller to answer or cut (a flooded copy that
    /// does not fit is dropped as `too_big`). `net` is the frame's network, for the counters.
    #[must_use]
    #[allow(clippy::too_many_arguments)]
    pub fn send_copies(
        &mut self,
        now: Timestamp,
        net: NetId,
        to: &Remotes,
        slot: usize,
        len: usize,
        tso: Option<&TsoFrame>,
        ctr: &mut Counters,
    ) -> Option<(IpAddr, usize)> {
        let vni = to.vni();
        self.net = net;
        let mut too_big = None;
        for &dst in to.as_slice() {
            match tso {
                None => {
                    if let Some(fit) = self.queue(now, vni, dst, slot, len, ctr) {
                        if to.len() == 1 {
                            too_big = Some((dst.ip(), fit));
                        } else {
                            self.drop(ctr, DropReason::TooBig);
                        }
                    }
                }
                Some(t) => self.queue_super(now, vni, dst, slot, len, t, ctr),
            }
        }
        too_big
    }

    /// Encapsulates the frame in send slot `slot` (`len` bytes at `HEADROOM`) for `dst` and
    /// queues the copy. When it does not fit the path: the longest frame that does (nothing
    /// counted).
    #[allow(clippy::too_many_arguments)]
    fn queue(
        &mut self,
        now: Timestamp,
        vni: Vni,
        dst: Remote,
        slot: usize,
        len: usize,
        ctr: &mut Counters,
    ) -> Option<usize> {
        if !self.txb.has_room() {
            self.flush(now, ctr);
        }
        let buf = self.txb.slot_mut(slot);
        let range = match self.enc.encapsulate(buf, HEADROOM, len, vni, dst) {
            Ok(r) => r,
            Err(DropReason::TooBig) => return Some(self.enc.max_inner(vni, dst)),
            Err(r) => {
                self.drop(ctr, r);
                return None;
            }
        };
        let mut head = [0u8; HEADROOM];
        let outer = HEADROOM - range.start;
        head[..outer].copy_from_slice(&buf[range.start..HEADROOM]);
        if !self.txb.push(&head[..outer], slot, len, dst, self.net.0) {
            self.drop(ctr, DropReason::TunnelTxError);
        }
        None
    }

    /// Sends the fragments `f` of the IPv4 packet in the frame in send slot `slot` to `dst`
    /// (the core cut it because it did not fit the path); `net` is the packet's network.
    #[allow(clippy::too_many_arguments)]
    pub fn send_fragments(
        &mut self,
        now: Timestamp,
        net: NetId,
        vni: Vni,
        dst: Remote,
        slot: usize,
        len: usize,
        f: &Fragments,
        ctr: &mut Counters,
    ) {
        self.net = net;
        for k in 0..f.count() {
            let frame = &self.txb.slot_mut(slot)[HEADROOM..HEADROOM + len];
            let mut inner = [0u8; MAX_HEADER];
            let Some((h, payload)) = f.header(frame, k, &mut inner) else {
                return self.drop(ctr, DropReason::EncapError);
            };
            self.queue_cut(now, vni, dst, slot, len, &inner[..h], payload, None, ctr);
        }
    }

    /// Sends every segment of the TCP super-frame `t` in send slot `slot` (`len` bytes at
    /// `HEADROOM`) to `dst`: as UDP GSO sends where it can, the rest queued one by one; with
    /// remote checksum offload (decided once for all of them), their checksums left partial.
    #[allow(clippy::too_many_arguments)]
    fn queue_super(
        &mut self,
        now: Timestamp,
        vni: Vni,
        dst: Remote,
        slot: usize,
        len: usize,
        t: &TsoFrame,
        ctr: &mut Counters,
    ) {
        // Segments that fit the path toward `dst`, whatever MSS the device cut for.
        let fit = self.enc.max_inner(vni, dst);
        let mut t = *t;
        if t.hdr_len + t.mss > fit {
            match fit.checked_sub(t.hdr_len).filter(|m| *m >= 8) {
                Some(mss) => t.mss = mss,
                None => {
                    for _ in 0..t.segments() {
                        self.drop(ctr, DropReason::TooBig);
                    }
                    return;
                }
            }
        }
        let rco = self.remote_csum(&t, dst);
        let from = self.send_gso(now, vni, dst, slot, len, &t, rco, ctr);
        for k in from..t.segments() {
            self.queue_segment(now, vni, dst, slot, len, &t, k, rco, ctr);
        }
    }

    /// Cuts segment `k` out of the TCP super-frame in send slot `slot` (`len` bytes at
    /// `HEADROOM`), encapsulates it for `dst` and queues it: its outer and inner headers as the
    /// head, its payload from the slot. `rco`: [`TunnelTx::remote_csum`].
    #[allow(clippy::too_many_arguments)]
    fn queue_segment(
        &mut self,
        now: Timestamp,
        vni: Vni,
        dst: Remote,
        slot: usize,
        len: usize,
        t: &TsoFrame,
        k: usize,
        rco: Option<u16>,
        ctr: &mut Counters,
    ) {
        let frame = &self.txb.slot_mut(slot)[HEADROOM..HEADROOM + len];
        let mut inner = [0u8; MAX_HEADER];
        let Some(payload) = batch_tso::segment_of(frame, t, k, &mut inner, rco.is_some()) else {
            return self.drop(ctr, DropReason::DeviceOffload);
        };
        let inner = &inner[..t.hdr_len];
        self.queue_cut(now, vni, dst, slot, len, inner, payload, rco, ctr);
    }

    /// Encapsulates and queues a packet cut out of the frame in send slot `slot` (`len` bytes
    /// at `HEADROOM`): its own headers `inner`, then `payload` (a range of the frame), which
    /// is sent from the slot. `rco`: its TCP checksum was left partial, starting there (the
    /// VXLAN header says so).
    #[allow(clippy::too_many_arguments)]
    fn queue_cut(
        &mut self,
        now: Timestamp,
        vni: Vni,
        dst: Remote,
        slot: usize,
        len: usize,
        inner: &[u8],
        payload: Range<usize>,
        rco: Option<u16>,
        ctr: &mut Counters,
    ) {
        if !self.txb.has_room() {
            self.flush(now, ctr);
        }
        let udp_checksum = self.settings(vni).is_none_or(|c| c.udp_checksum);
        let frame = &self.txb.slot_mut(slot)[HEADROOM..HEADROOM + len];
        let (h, plen) = (inner.len(), payload.len());
        if h > MAX_HEADER || payload.end > frame.len() {
            return self.drop(ctr, DropReason::EncapError);
        }
        let at = HEADROOM;
        self.scratch[at..at + h].copy_from_slice(inner);
        if udp_checksum {
            // Only a UDP checksum reads the payload; it is sent from the slot either way.
            self.scratch[at + h..at + h + plen].copy_from_slice(&frame[payload.clone()]);
        }
        let range = match self
            .enc
            .encapsulate(&mut self.scratch, at, h + plen, vni, dst)
        {
            Ok(r) => r,
            Err(r) => return self.drop(ctr, r),
        };
        let outer = at - range.start;
        let mut head = [0u8; MAX_HEAD];
        head[..outer].copy_from_slice(&self.scratch[range.start..at]);
        if let Some(start) = rco {
            // The VXLAN header closes the outer headers; the UDP checksum (if any) is computed
            // over the header as sent, so it is fixed up for the two bytes the option changes.
            set_remote_csum(&mut head[..outer], start);
            ctr.tx_remote_csum += 1;
        }
        head[outer..outer + h].copy_from_slice(inner);
        if !self.txb.push_part(
            &head[..outer + h],
            slot,
            HEADROOM + payload.start,
            plen,
            dst,
            self.net.0,
        ) {
            self.drop(ctr, DropReason::TunnelTxError);
        }
    }

    /// Sends all segments of the TCP super-frame in send slot `slot` (`len` bytes at
    /// `HEADROOM`) to `dst` with one UDP GSO `sendmsg` from the pool socket bound to the flow's
    /// source port. Returns how many segments (from the first) were sent: the caller queues
    /// the rest one by one (0 when GSO does not fit). `rco`: [`TunnelTx::remote_csum`].
    #[allow(clippy::too_many_arguments)]
    fn send_gso(
        &mut self,
        now: Timestamp,
        vni: Vni,
        dst: Remote,
        slot: usize,
        len: usize,
        t: &TsoFrame,
        rco: Option<u16>,
        ctr: &mut Counters,
    ) -> usize {
        let segs = t.segments();
        let h = t.hdr_len;
        if !(2..=crate::sys::MAX_BATCH).contains(&segs) {
            return 0;
        }
        // The outer IP, UDP and VXLAN headers: 36 bytes over IPv4, 56 over IPv6.
        let oh = self.enc.overhead();
        // The outer header of the first segment gives the flow's source port, TTL and TOS.
        // Encapsulating it is also the underlay MTU check of the whole send: it carries a full
        // MSS (a shorter first segment of several is refused below), so every datagram the
        // kernel cuts is at most its size; one too big for the underlay is never attempted
        // (the caller then counts each segment `too_big`).
        let frame = &self.txb.slot_mut(slot)[HEADROOM..HEADROOM + len];
        let mut inner = [0u8; MAX_HEADER];
        let Some(p0) = batch_tso::segment_of(frame, t, 0, &mut inner, rco.is_some()) else {
            return 0;
        };
        self.scratch[oh..oh + h].copy_from_slice(&inner[..h]);
        let Ok(range) = self
            .enc
            .encapsulate(&mut self.scratch, oh, h + p0.len(), vni, dst)
        else {
            return 0;
        };
        let outer = &self.scratch[range.start..range.start + oh];
        let Some((want, flow_label, port)) = GsoOuter::of(outer) else {
            return 0;
        };
        // The outer IP and UDP headers (for the capture of each segment), then VXLAN's.
        let ip_udp = oh - HEADER_LEN;
        let mut outer_ip = [0u8; OUTER6_IP_UDP];
        outer_ip[..ip_udp].copy_from_slice(&outer[..ip_udp]);
        let mut vx = [0u8; HEADER_LEN];
        vx.copy_from_slice(&outer[ip_udp..oh]);
        if let Some(start) = rco {
            // The kernel computes this send's UDP checksums (a GSO send always has them).
            vxlan::VxlanPacket::new_unchecked(&mut vx[..])
                .set_remote_csum(start, vxlan::TCP_CSUM_OFFSET);
        }
        let gso_size = HEADER_LEN + h + t.mss;
        let Ok(gso16) = u16::try_from(gso_size) else {
            return 0;
        };
        if self.gso_socks.len() >= MAX_GSO_SOCKETS && !self.gso_socks.contains_key(&port) {
            self.gso_socks.clear();
        }
        let Some(dst_port) = self.settings(vni).map(|c| c.dst_port) else {
            return 0;
        };
        let local = self.local;
        let entry = self.gso_socks.entry(port).or_insert_with(|| {
            super::socket::open_gso_sender(local, port).map(|s| (s, GsoOuter::NOT_SET))
        });
        let Some((sock, cur)) = entry else {
            return 0;
        };
        if *cur != want {
            if want.apply(sock, local.is_ipv6()).is_err() {
                *cur = GsoOuter::NOT_SET;
                return 0;
            }
            *cur = want;
        }
        // Whatever was queued before goes first: a flow is never reordered.
        self.flush(now, ctr);
        let frame = &self.txb.slot_mut(slot)[HEADROOM..HEADROOM + len];
        let mut iov = [IoSlice::new(&[]); 2 * crate::sys::MAX_BATCH];
        // Segment 0's headers are in `inner` already (made above, its checksum read once).
        let mut p = p0;
        for k in 0..segs {
            let head = &mut self.gso_heads[k];
            if k > 0 {
                let Some(next) = batch_tso::segment_of(frame, t, k, &mut inner, rco.is_some())
                else {
                    return 0;
                };
                p = next;
            }
            if k + 1 < segs && p.len() != t.mss {
                return 0;
            }
            head[..HEADER_LEN].copy_from_slice(&vx);
            head[HEADER_LEN..HEADER_LEN + h].copy_from_slice(&inner[..h]);
            iov[2 * k + 1] = IoSlice::new(&frame[p.clone()]);
        }
        for k in 0..segs {
            iov[2 * k] = IoSlice::new(&self.gso_heads[k][..HEADER_LEN + h]);
        }
        let Some((sock, _)) = self.gso_socks.get(&port).and_then(|e| e.as_ref()) else {
            return 0;
        };
        let to = std::net::SocketAddr::new(dst.ip(), dst_port);
        // One send carries at most 64 KiB of UDP payload.
        let per_send = (usize::from(u16::MAX) - 8) / gso_size;
        let mut sent = 0;
        while sent < segs {
            let k = per_send.min(segs - sent);
            let part = &iov[2 * sent..2 * (sent + k)];
            if crate::sys::send_segmented(sock, part, to, flow_label, gso16).is_err() {
                break;
            }
            for j in sent..sent + k {
                let (head, payload) = (&iov[2 * j], &iov[2 * j + 1]);
                self.capture
                    .gso_segment(&outer_ip[..ip_udp], head, payload, dst.ip());
            }
            // Inner bytes: each segment's inner headers and payload, not its VXLAN header.
            let bytes = (part.iter().map(|s| s.len()).sum::<usize>() - k * HEADER_LEN) as u64;
            ctr.tx_tunnel_bytes += bytes;
            self.traffic.tunnel_tx(self.net, dst, k as u64, bytes);
            sent += k;
        }
        ctr.tx_tunnel += sent as u64;
        if rco.is_some() {
            ctr.tx_remote_csum += sent as u64;
        }
        sent
    }

    /// Housekeeping on the tick: empties the send sockets' error queues (ICMP errors that came
    /// back about what they sent), counting the errors (`tunnel_icmp_errors`), and takes what
    /// they and the refused sends said about path MTUs into the shared table (`leader`: also
    /// ages it).
    pub fn tick(&mut self, now: Timestamp, leader: bool, ctr: &mut Counters) {
        let learner = &mut self.learner;
        let mut on = |e| learner.on_queued(e);
        let mut queued = self.raw.drain_errors(&mut on).unwrap_or(0);
        for (sock, _) in self.gso_socks.values().flatten() {
            queued += crate::sys::drain_error_queue(sock, &mut on).unwrap_or(0);
        }
        ctr.tunnel_icmp_errors += queued as u64;
        self.learner.tick(now, leader, ctr);
    }

    /// Sends the queued copies; counts each refused one under its reason.
    pub fn flush(&mut self, now: Timestamp, ctr: &mut Counters) {
        if self.txb.is_empty() {
            return;
        }
        let (log, learner, traffic) = (&mut self.err_log, &mut self.learner, &self.traffic);
        let mut bytes = 0;
        let done = self.txb.flush(
            &self.raw,
            &self.capture,
            |net, dst, e| {
                // Unreachable, EMSGSIZE, ...: this copy is lost, the loop goes on.
                let r = send_drop_reason(e);
                ctr.drop(r);
                traffic.dropped(NetId(net), r);
                learner.on_send_error(dst.ip(), e);
                if let Some(held) = log.check(now) {
                    warn!(remote = %dst, error = %e, suppressed = held, "send to remote VTEP failed");
                }
            },
            |net, dst, inner| {
                bytes += inner;
                traffic.tunnel_tx(NetId(net), dst, 1, inner);
            },
        );
        ctr.tx_tunnel += done.sent;
        ctr.tx_tunnel_bytes += bytes;
    }
}

/// Adds the remote checksum offload option (the inner TCP checksum starts at `start`) to the
/// VXLAN header that ends `outer` (outer IP, UDP and VXLAN headers), and updates the UDP
/// checksum, if there is one, for the two 16-bit words that changed (RFC 1624).
fn set_remote_csum(outer: &mut [u8], start: u16) {
    let Some(at) = outer.len().checked_sub(8 + HEADER_LEN) else {
        return;
    };
    let (udp, vx) = outer[at..].split_at_mut(8);
    let words = |v: &[u8]| [be16(v, 0), be16(v, 6)];
    let before = words(vx);
    if !vxlan::VxlanPacket::new_unchecked(&mut *vx).set_remote_csum(start, vxlan::TCP_CSUM_OFFSET) {
        return;
    }
    let after = words(vx);
    let c = be16(udp, 6);
    if c != 0 {
        let c = checksum::update(
            checksum::update(c, before[0], after[0]),
            before[1],
            after[1],
        );
        udp[6..8].copy_from_slice(&checksum::udp_field(c).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// The UDP checksum of outer headers `h` (IPv4 20, UDP 8, VXLAN 8) and `payload`.
    fn udp_sum(h: &[u8], payload: &[u8]) -> u16 {
        let len = (16 + payload.len()) as u16;
        let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
        let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
        let mut udp = h[20..].to_vec();
        udp[6..8].fill(0);
        let acc = checksum::add(
            checksum::pseudo_header(src, dst, 17, len),
            checksum::add(checksum::sum(&udp), checksum::sum(payload)),
        );
        checksum::udp_field(checksum::finish(acc))
    }

    /// The option set in the header that ends the outer headers keeps their UDP checksum
    /// right (as computed again over the changed header), and a zero one zero.
    #[test]
    fn the_option_keeps_the_udp_checksum_right() {
        let payload: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        for vni in [42u8, 0xff] {
            let mut h = vec![0u8; 36];
            h[0] = 0x45;
            h[12..20].copy_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
            h[20..24].copy_from_slice(&[0xc0, 0x01, 0x12, 0xb5]);
            h[24..26].copy_from_slice(&(1016u16).to_be_bytes());
            h[28..36].copy_from_slice(&[0x08, 0, 0, 0, 0, 0, vni, 0]);
            let c = udp_sum(&h, &payload);
            h[26..28].copy_from_slice(&c.to_be_bytes());
            set_remote_csum(&mut h, 34);
            assert_eq!(&h[28..36], &[0x08, 0x20, 0, 0, 0, 0, vni, 17]);
            assert_eq!(be16(&h, 26), udp_sum(&h, &payload), "VNI {vni}");
            // Without a UDP checksum there is nothing to update.
            h[26..28].fill(0);
            h[29] = 0;
            set_remote_csum(&mut h, 38);
            assert_eq!((be16(&h, 26), h[35]), (0, 19));
        }
    }
}
