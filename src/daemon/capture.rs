//! A worker's side of `vtepd capture`: the capture sessions ([`CaptureSessions`], the same
//! [`super::session`] machinery as trace's, with [`Captured`] records) and what a worker does
//! with a packet a session may want ([`WorkerCapture`]). Bytes are copied only for a packet
//! some armed capture takes (its filter, side and snap length), once, into the record that
//! crosses the session's bounded queue; a full queue loses the record, never the packet.

use super::batch_gro::MAX_HEADER;
use super::batch_tso::{self, TsoFrame};
use super::session::{LiveList, Sessions};
use super::trace::{DropTap, WorkerTrace};
use crate::core::arp::{FrameTo, Generated};
use crate::core::capture::{Captured, Dir, Link, Side, Spec};
use crate::core::trace::{Headers, Origin, Outcome};
use crate::core::{DropReason, Timestamp};
use crate::sys::SendMsg;
use encap::ipv4::Ipv4Packet;
use encap::ipv4::Ipv4Repr;
use encap::udp::UdpPacket;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The capture sessions of a daemon.
pub type CaptureSessions = Sessions<Captured, Spec>;

type Live = LiveList<Captured, Spec>;

/// One packet offered to the captures: where it is, what it is, what became of it.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    /// Its side.
    pub side: Side,
    /// Its direction.
    pub dir: Dir,
    /// What its bytes start with.
    pub link: Link,
    /// Where it came from (for the filter).
    pub origin: Origin,
    /// Its outcome (for the filter and the drop reason).
    pub outcome: &'a Outcome,
    /// A note for the reader.
    pub note: Option<&'static str>,
}

/// An outer IP + UDP header made up for a VXLAN datagram the UDP socket handed over
/// without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The sender.
    pub src: IpAddr,
    /// The sender's UDP port.
    pub src_port: u16,
    /// Our address (of the sender's family).
    pub dst: IpAddr,
    /// The port it arrived on.
    pub dst_port: u16,
    /// The outer TOS (IPv4) or traffic class (IPv6) the socket reported.
    pub tos: u8,
}

/// The note on an outer IPv4 header made up from what the socket reported.
pub const MADE_UP_OUTER: &str =
    "outer IPv4/UDP header rebuilt from the socket's report (TTL, ID and checksums not seen)";

/// The note on an outer IPv6 header made up from what the socket reported.
pub const MADE_UP_OUTER6: &str = "outer IPv6/UDP header rebuilt from the socket's report \
     (hop limit, flow label and UDP checksum not seen)";

/// The longest outer IP + UDP header [`Received::header`] makes (IPv6's).
pub const MADE_UP_MAX: usize = 48;

impl Received {
    /// What the socket reported of a datagram from `src` to `dst` (`None` when their
    /// families differ, which no socket reports).
    pub fn of(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16, tos: u8) -> Option<Received> {
        (src.is_ipv4() == dst.is_ipv4()).then_some(Received {
            src,
            src_port,
            dst,
            dst_port,
            tos,
        })
    }

    /// The outer IP and UDP headers in front of a datagram of `len` bytes (the first 28 bytes
    /// of the buffer over IPv4, 48 over IPv6), and the note that says they were made up: TTL
    /// or hop limit 64, ID 0, flow label 0 and no UDP checksum (the socket reports none of
    /// them).
    pub fn header(&self, len: usize) -> ([u8; MADE_UP_MAX], usize, &'static str) {
        let mut h = [0u8; MADE_UP_MAX];
        let udp_len = (8 + len).min(usize::from(u16::MAX)) as u16;
        let ip_len = match (self.src, self.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let ip = Ipv4Repr {
                    src,
                    dst,
                    protocol: 17,
                    tos: self.tos,
                    ident: 0,
                    dont_frag: false,
                    ttl: 64,
                    payload_len: 8 + len,
                };
                // Too long for IPv4 cannot come from a UDP socket; the header stays zero then.
                let _ = ip.emit(&mut h);
                20
            }
            (src, dst) => {
                let ip = etherparse::Ipv6Header {
                    traffic_class: self.tos,
                    flow_label: Default::default(),
                    payload_length: udp_len,
                    next_header: etherparse::IpNumber::UDP,
                    hop_limit: 64,
                    source: v6_octets(src),
                    destination: v6_octets(dst),
                };
                h[..40].copy_from_slice(&ip.to_bytes());
                40
            }
        };
        let mut udp = UdpPacket::new_unchecked(&mut h[ip_len..]);
        udp.set_src_port(self.src_port);
        udp.set_dst_port(self.dst_port);
        udp.set_len(udp_len);
        udp.set_checksum(0);
        let note = if ip_len == 20 {
            MADE_UP_OUTER
        } else {
            MADE_UP_OUTER6
        };
        (h, ip_len + 8, note)
    }
}

/// `ip` as 16 bytes (an IPv4 address mapped, which [`Received::of`] never lets through).
fn v6_octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// One worker's side of the captures.
#[derive(Debug)]
pub struct WorkerCapture {
    sessions: Arc<CaptureSessions>,
    worker: u16,
    /// The live sessions, taken once per batch while a capture is armed (`None`: none).
    live: Option<Live>,
    /// The packet at hand as received, while a capture wants it ([`WorkerCapture::keep`]).
    kept: Vec<u8>,
    /// The trace sessions for the sends the kernel refuses (the send path's one handle is
    /// this one), while a trace is armed.
    drops: Option<DropTap>,
}

impl Default for WorkerCapture {
    /// Captures of their own, never armed (a worker nobody captures on).
    fn default() -> WorkerCapture {
        WorkerCapture::new(Arc::default(), 0)
    }
}

impl WorkerCapture {
    /// Worker `worker`'s side of `sessions`.
    pub fn new(sessions: Arc<CaptureSessions>, worker: usize) -> WorkerCapture {
        WorkerCapture {
            sessions,
            worker: worker as u16,
            live: None,
            kept: Vec::new(),
            drops: None,
        }
    }

    /// Takes the live sessions for the batch that starts at `now` when a session of some
    /// kind is armed (`trace`, refreshed: the one flag a worker reads per batch) and a capture
    /// is among them, and the trace's sessions for refused sends when a trace is.
    #[inline]
    pub fn refresh(&mut self, trace: &WorkerTrace, now: Timestamp) {
        let any = trace.armed();
        if any && self.sessions.armed() {
            self.live = Some(self.sessions.live_list());
        } else if self.live.is_some() {
            self.live = None;
        }
        if any {
            self.drops = trace.tap(now);
        } else if self.drops.is_some() {
            self.drops = None;
        }
    }

    /// Whether a capture was armed at the last refresh.
    #[inline]
    pub fn active(&self) -> bool {
        self.live.is_some()
    }

    /// Whether some capture may take a packet of `side` from `origin` (headers parsed only
    /// if so): the caller then keeps a copy to offer with [`WorkerCapture::offer`] once its
    /// outcome is known.
    pub fn wants(&self, side: Side, origin: &Origin, headers: impl FnOnce() -> Headers) -> bool {
        let Some(live) = &self.live else {
            return false;
        };
        if !live.iter().any(|s| s.wants() && s.spec().sides.has(side)) {
            return false;
        }
        let h = headers();
        live.iter()
            .any(|s| s.wants() && s.spec().sides.has(side) && s.filter().may_take(origin, &h))
    }

    /// Keeps a copy of `bytes` (a datagram or packet from the tunnel, its headers parsed by
    /// `headers`) when some capture may take it, before the engine may rewrite it (the inner
    /// ECN): true if kept, then [`WorkerCapture::kept`] holds it until the next one.
    pub fn keep(&mut self, origin: &Origin, bytes: &[u8], headers: fn(&[u8]) -> Headers) -> bool {
        let wanted = self.wants(Side::Underlay, origin, || headers(bytes));
        if wanted {
            self.kept.clear();
            self.kept.extend_from_slice(bytes);
        }
        wanted
    }

    /// The bytes the last [`WorkerCapture::keep`] that returned true kept.
    pub fn kept(&self) -> &[u8] {
        &self.kept
    }

    /// Offers the packet `seen` whose bytes are the concatenation of `parts` (its headers
    /// parsed by `headers`, only if a capture is armed for its side) to every capture that
    /// takes it.
    pub fn offer(&self, seen: Seen<'_>, parts: &[&[u8]], headers: impl FnOnce() -> Headers) {
        let Some(live) = &self.live else {
            return;
        };
        if !live
            .iter()
            .any(|s| s.wants() && s.spec().sides.has(seen.side))
        {
            return;
        }
        let h = headers();
        let len: usize = parts.iter().map(|p| p.len()).sum();
        // The clock is read once, for the first capture that takes the packet.
        let mut at_ns = None;
        for s in live.iter() {
            let (f, spec) = (s.filter(), s.spec());
            if !(spec.sides.has(seen.side)
                && f.may_take(&seen.origin, &h)
                && f.takes(&seen.origin, seen.outcome))
            {
                continue;
            }
            let keep = len.min(spec.snaplen as usize);
            if !s.claim_sized(keep as u64) {
                continue;
            }
            let mut data = Vec::with_capacity(keep);
            for p in parts {
                let room = keep - data.len();
                data.extend_from_slice(&p[..p.len().min(room)]);
            }
            let at_ns = *at_ns.get_or_insert_with(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64)
            });
            s.push(Captured {
                worker: self.worker,
                at_ns,
                side: seen.side,
                dir: seen.dir,
                link: seen.link,
                len: len as u32,
                drop: seen.outcome.dropped(),
                note: seen.note.map(str::to_owned),
                data,
            });
        }
    }
}

impl Seen<'_> {
    /// A packet read from the device of network `vni`.
    pub fn device_in<'a>(
        link: Link,
        vni: u32,
        outcome: &'a Outcome,
        note: Option<&'static str>,
    ) -> Seen<'a> {
        Seen {
            side: Side::Overlay,
            dir: Dir::In,
            link,
            origin: Origin::Device { vni },
            outcome,
            note,
        }
    }
}

/// The headers of a device-side packet that starts with `link`.
fn headers_of(link: Link, bytes: &[u8]) -> Headers {
    match link {
        Link::Ethernet => Headers::of_frame(bytes),
        Link::Ip => Headers::of_ip(bytes),
    }
}

/// The note on a packet vtepd made itself and wrote into the device.
pub const ANSWER: &str = "an answer vtepd made itself (an ARP reply or a neighbour advertisement \
     of ARP/ND suppression, an ICMP error such as fragmentation needed) and wrote into the device";

impl WorkerCapture {
    /// Offers the answers for the device (`FrameTo::Device`) in `out` from the `from`-th on,
    /// before they are written into the device of network `vni` (`link`: what they start
    /// with), each noted [`ANSWER`].
    pub fn answers(&self, out: &Generated, from: usize, link: Link, vni: u32) {
        if !self.active() {
            return;
        }
        let outcome = Outcome::Answered;
        let seen = Seen {
            side: Side::Overlay,
            dir: Dir::Out,
            link,
            origin: Origin::Device { vni },
            outcome: &outcome,
            note: Some(ANSWER),
        };
        for (to, p) in out.iter().skip(from) {
            if to == FrameTo::Device {
                self.offer(seen, &[p], || headers_of(link, p));
            }
        }
    }
}

/// The note on an outer packet whose inner frame vtepd made itself and sent through the
/// tunnel (L3 VXLAN: its ARP requests and replies, its echo replies).
pub const OWN_FRAME: &str = "carries a frame vtepd made itself (its ARP, an echo reply)";

/// The note on a segment vtepd cut from a TSO super-packet the device handed over (what
/// crosses the wire; the device gave it as one read).
pub const TSO_SEGMENT: &str = "a segment vtepd cut from a TSO super-packet the device handed \
     over in one read";

impl WorkerCapture {
    /// Offers a packet read from the device (`seen`, its bytes `packet[skip..]`: `skip` is
    /// the room in front of a TUN's IP packet), or with `tso` the segments vtepd cuts from
    /// the super-packet for the wire, each as a packet of its own (noted [`TSO_SEGMENT`]).
    pub fn device_read(&self, seen: Seen<'_>, packet: &[u8], skip: usize, tso: Option<&TsoFrame>) {
        if !self.active() {
            return;
        }
        let shown = packet.get(skip..).unwrap_or_default();
        let headers = || headers_of(seen.link, shown);
        let Some(t) = tso else {
            return self.offer(seen, &[shown], headers);
        };
        let seen = Seen {
            note: Some(TSO_SEGMENT),
            ..seen
        };
        let h = headers();
        let mut head = [0u8; MAX_HEADER];
        for k in 0..t.segments() {
            let Some(payload) = batch_tso::segment(packet, t, k, &mut head) else {
                break;
            };
            let (Some(hdr), Some(payload)) = (head.get(skip..t.hdr_len), packet.get(payload))
            else {
                break;
            };
            self.offer(seen, &[hdr, payload], || h);
        }
    }
}

/// The note on an IPIP packet the underlay's GRO merged.
pub const GRO_MERGED: &str = "a super-packet the underlay's GRO merged from several that \
     crossed the wire";

/// Offers a packet from the tunnel, with the engine's decision `v`: its outer packet when
/// [`WorkerCapture::wants`] said so (`kept`: the bytes as received, with the outer header made
/// up from the socket's report for a VXLAN datagram, `None` for IPIP's whole packet), and
/// when delivered, the inner packet (`link`) the device gets (in `now`: the datagram or
/// packet after the decision, which may have rewritten it). `merged`: an IPIP packet the
/// underlay's GRO made of several (both records say so).
#[allow(clippy::too_many_arguments)]
pub fn capture_tunnel(
    c: &WorkerCapture,
    origin: Origin,
    v: &crate::core::FromTunnel,
    kept: Option<(Option<Received>, &[u8])>,
    now: &[u8],
    link: Link,
    merged: bool,
) {
    let merged = merged.then_some(GRO_MERGED);
    if !c.active() {
        return;
    }
    let outcome = Outcome::from_tunnel(v, 0);
    if let Some((vxlan, bytes)) = kept {
        let under = |note| Seen {
            side: Side::Underlay,
            dir: Dir::In,
            link: Link::Ip,
            origin,
            outcome: &outcome,
            note,
        };
        match vxlan {
            Some(r) => {
                let (h, n, note) = r.header(bytes.len());
                c.offer(under(Some(note)), &[&h[..n], bytes], || {
                    Headers::of_vxlan(bytes)
                });
            }
            None => c.offer(under(merged), &[bytes], || Headers::of_ipip(bytes)),
        }
    }
    if let crate::core::FromTunnel::Deliver { range, .. } = v
        && let Some(inner) = now.get(range.clone())
    {
        let seen = Seen {
            side: Side::Overlay,
            dir: Dir::Out,
            link,
            origin,
            outcome: &outcome,
            note: merged,
        };
        let h = || headers_of(link, inner);
        c.offer(seen, &[inner], h);
    }
}

impl WorkerCapture {
    /// Offers an outer packet handed to the kernel (`drop`: refused, counted under that
    /// reason, and then traced too): a VXLAN packet (its outer headers, then the inner frame
    /// or the rest of it) or an IPIP packet; `own`: it carries a frame vtepd made itself
    /// (noted [`OWN_FRAME`]).
    pub fn sent(&self, m: &SendMsg<'_>, drop: Option<DropReason>, own: bool) {
        let tap = self.drops.as_ref().filter(|_| drop.is_some());
        if !self.active() && tap.is_none() {
            return;
        }
        let outer = if m.head.is_empty() { m.body } else { m.head };
        // The VXLAN header's offset when the packet is VXLAN (over IPv4 or IPv6).
        let vxlan_at = match (outer.first().map(|b| b >> 4), outer.get(9), outer.get(6)) {
            (Some(4), Some(&IPPROTO_UDP), _) => Some(28),
            (Some(6), _, Some(&IPPROTO_UDP)) => Some(48),
            _ => None,
        };
        let vni = vxlan_at
            .and_then(|at| outer.get(at + 4..at + 7))
            .map_or(0, |v| u32::from_be_bytes([0, v[0], v[1], v[2]]));
        let origin = Origin::Device { vni };
        let headers = || match vxlan_at {
            // The inner headers were cut out with the outer ones: they are in the head.
            Some(at) if m.head.len() > at + encap::vxlan::HEADER_LEN => {
                Headers::of_vxlan(&m.head[at..])
            }
            Some(_) => Headers {
                vni: Some(vni),
                ..Headers::of_frame(m.body)
            },
            None => Headers::of_ipip(outer),
        };
        if let (Some(tap), Some(reason)) = (tap, drop) {
            tap.send_refused(origin, headers, m.dst, reason);
        }
        let outcome = match drop {
            Some(reason) => dropped(reason),
            None => sent_to(vni, m.dst),
        };
        let seen = Seen {
            side: Side::Underlay,
            dir: Dir::Out,
            link: Link::Ip,
            origin,
            outcome: &outcome,
            note: own.then_some(OWN_FRAME),
        };
        self.offer(seen, &[m.head, m.body], headers);
    }
}

impl WorkerCapture {
    /// Offers one segment of a UDP GSO send (the kernel cuts the datagrams and writes their
    /// outer IP and UDP headers): `outer` is the first segment's outer IPv4 or IPv6 and UDP
    /// header as vtepd made it (28 or 48 bytes), given this segment's lengths here; `head` its VXLAN and inner headers,
    /// `payload` the rest.
    pub fn gso_segment(&self, outer: &[u8], head: &[u8], payload: &[u8], dst: IpAddr) {
        if !self.active() {
            return;
        }
        let mut h = [0u8; MADE_UP_MAX];
        let Some(h) = h.get_mut(..outer.len()) else {
            return;
        };
        h.copy_from_slice(outer);
        let len = outer.len() + head.len() + payload.len();
        let ip_len = outer.len() - 8;
        let clamp = |n: usize| n.min(usize::from(u16::MAX)) as u16;
        if ip_len == 20 {
            let mut ip = Ipv4Packet::new_unchecked(&mut h[..20]);
            ip.set_total_len(clamp(len));
            ip.fill_checksum();
        } else {
            // IPv6: the payload length (the UDP datagram), bytes 4-5.
            h[4..6].copy_from_slice(&clamp(len - ip_len).to_be_bytes());
        }
        let mut udp = UdpPacket::new_unchecked(&mut h[ip_len..]);
        udp.set_len(clamp(len - ip_len));
        let m = SendMsg {
            head: h,
            body: &[],
            dst,
        };
        let vni = head
            .get(4..7)
            .map_or(0, |v| u32::from_be_bytes([0, v[0], v[1], v[2]]));
        let outcome = sent_to(vni, dst);
        let seen = Seen {
            side: Side::Underlay,
            dir: Dir::Out,
            link: Link::Ip,
            origin: Origin::Device { vni },
            outcome: &outcome,
            note: Some(GSO_SEGMENT),
        };
        let headers = || Headers {
            vni: Some(vni),
            ..Headers::of_frame(head.get(8..).unwrap_or(&[]))
        };
        self.offer(seen, &[m.head, head, payload], headers);
    }
}

/// The note on a segment of a UDP GSO send.
pub const GSO_SEGMENT: &str = "a segment of a UDP GSO send: the kernel writes its outer \
     IP/UDP header (its IPv4 ID and checksums are not shown)";

const IPPROTO_UDP: u8 = 17;

/// The outcome of a packet that was sent to `dst` in network `vni`.
pub fn sent_to(vni: u32, dst: IpAddr) -> Outcome {
    Outcome::Tunnel {
        vni,
        remotes: [dst].into_iter().collect(),
        copies: 1,
    }
}

/// The outcome of a packet dropped for `reason`.
pub fn dropped(reason: DropReason) -> Outcome {
    Outcome::Drop { reason }
}

/// The bounds of a daemon's captures: two at once, 1024 records waiting each (at most 64 KiB
/// apiece: 128 MiB at the very worst, with super-frames at the full snap length), up to a
/// million packets each.
pub const CAPTURE_LIMITS: super::session::Limits = super::session::Limits {
    sessions: 2,
    queue: 1024,
    idle: std::time::Duration::from_secs(5),
    max_count: 1_000_000,
};
