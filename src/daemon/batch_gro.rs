//! Receive offload for a TAP or TUN device: consecutive decapsulated TCP/IPv4 or TCP/IPv6
//! segments of one flow are handed to the kernel as one super-packet with a virtio-net header
//! (IFF_VNET_HDR, GSO TCPv4 or TCPv6, checksum partial), so the device write, the stack's receive path and the socket
//! wake-up happen once per run instead of once per segment. The segments stay where they were
//! received: a run is a list of places, written with one `writev` (headers, then each
//! segment's payload).
//!
//! tun-rs's GRO helpers expect IP packets and refuse Ethernet frames, and copy every packet
//! they look at, hence this variant for both framings ([`Framing`]). It is deliberately strict -
//! it only merges what Linux's own TCP GRO would: IPv4 without options, not fragmented, or IPv6
//! with TCP right behind its fixed header (no extension headers); TCP with only ACK (and PSH on
//! the last segment); identical Ethernet, IP (but length, and IPv4's ID and checksum: so the
//! same IPv4 TOS and TTL, the same IPv6 traffic class, flow label and hop limit) and TCP (but
//! sequence and checksum) headers, options included; contiguous sequence numbers;
//! equal segment sizes but the last. Each merged segment's TCP checksum is verified first (the
//! kernel does not check a partial checksum, and with a zero outer UDP checksum the inner one is
//! the only end-to-end check); a segment that fails is written on its own for the kernel to
//! count and drop.
//!
//! [`kernel_merged`] recognises the other kind of super-packet: one the underlay's own GRO
//! already merged (a raw IPIP socket behind a NIC with GRO receives those whole: TCP/IPv4 in
//! protocol 4, TCP/IPv6 in protocol 41).

pub use crate::core::remote_csum::Partial;
use crate::core::{Counters, DropReason};
use crate::sys::MAX_BATCH;
use encap::checksum;
use encap::vxlan::TCP_CSUM_OFFSET;
use std::io::{self, IoSlice};
use std::net::Ipv4Addr;

/// A device that takes one packet (with its virtio-net header) per vectored write.
pub trait PacketWrite {
    /// Writes the packet made of `iov`.
    fn write_packet(&self, iov: &[IoSlice<'_>]) -> io::Result<usize>;
}

/// Bytes of the virtio-net header in front of every frame on an IFF_VNET_HDR device.
pub const VNET_HDR_LEN: usize = 10;
/// A header that says "no offload": a complete frame.
pub const VNET_HDR_NONE: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];
/// Longest header a super-frame carries (Ethernet, IPv6 without extension headers, TCP with
/// options; IPv4 without options is shorter).
pub const MAX_HEADER: usize = 14 + IP6_LEN + 60;

const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
const ETH_LEN: usize = 14;
const IP_LEN: usize = 20;
const IP6_LEN: usize = 40;
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;
/// Largest IPv4 total length.
const MAX_IP_LEN: usize = 65_535;

pub use crate::core::too_big::Framing;

/// A TCP/IPv4 or TCP/IPv6 segment that may be merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment {
    /// Offset of the IP header ([`Framing::l3`]).
    pub l3: usize,
    /// The IP header is IPv6 (else IPv4).
    pub v6: bool,
    /// Bytes of all headers (Ethernet if any, IP, TCP); the payload follows.
    pub hdr_len: usize,
    /// Sequence number of the first payload byte.
    pub seq: u32,
    /// Payload bytes.
    pub payload: usize,
    /// PSH set.
    pub psh: bool,
    /// Its checksum was left partial by the sender (VXLAN remote checksum offload), not
    /// verified: written on its own, it goes to the device as checksum partial.
    pub partial: bool,
}

impl TcpSegment {
    /// Offset of the TCP header.
    fn l4(&self) -> usize {
        self.l3 + if self.v6 { IP6_LEN } else { IP_LEN }
    }
}

/// The big-endian 16-bit word at `i` of `b`.
pub(super) fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

fn ip_addr(b: &[u8], i: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[i], b[i + 1], b[i + 2], b[i + 3])
}

/// The TCP header of `pkt` as [`tcp_segment`] and [`kernel_merged`] want it: IPv4 without
/// options, not a fragment, a header checksum that verifies (Linux's GRO refuses one that
/// does not: a merge would write over it with a fresh one), TCP with a sane data offset.
/// Returns (l3, IP total length, data offset, flags).
fn tcp_header(pkt: &[u8], framing: Framing) -> Option<(usize, usize, usize, u8)> {
    let l3 = framing.l3();
    if framing == Framing::Ethernet && (pkt.len() < ETH_LEN || be16(pkt, 12) != 0x0800) {
        return None;
    }
    let ip = pkt.get(l3..l3 + IP_LEN + 20)?;
    // Version 4, no options; DF or not, but neither MF nor an offset; TCP.
    if ip[0] != 0x45 || be16(ip, 6) & 0x3fff != 0 || ip[9] != 6 {
        return None;
    }
    if checksum::fold(checksum::sum(&ip[..IP_LEN])) != 0xffff {
        return None;
    }
    let ip_total = usize::from(be16(ip, 2));
    if ip_total < IP_LEN + 20 || l3 + ip_total > pkt.len() {
        return None;
    }
    let tcp = &pkt[l3 + IP_LEN..l3 + ip_total];
    let doff = usize::from(tcp[12] >> 4) * 4;
    if doff < 20 || doff > tcp.len() || tcp[12] & 0x0f != 0 {
        return None;
    }
    Some((l3, ip_total, doff, tcp[13]))
}

/// The TCPv6 header of `pkt` as [`tcp_segment`] wants it: IPv6 with TCP as its next header,
/// TCP with a sane data offset. Returns (l3, IPv6 header and payload length, data offset,
/// flags).
fn tcp6_header(pkt: &[u8], framing: Framing) -> Option<(usize, usize, usize, u8)> {
    let l3 = framing.l3();
    if framing == Framing::Ethernet && (pkt.len() < ETH_LEN || be16(pkt, 12) != 0x86dd) {
        return None;
    }
    let ip = pkt.get(l3..l3 + IP6_LEN + 20)?;
    if ip[0] >> 4 != 6 || ip[6] != 6 {
        return None;
    }
    let ip_total = IP6_LEN + usize::from(be16(ip, 4));
    if ip_total < IP6_LEN + 20 || l3 + ip_total > pkt.len() {
        return None;
    }
    let tcp = &pkt[l3 + IP6_LEN..l3 + ip_total];
    let doff = usize::from(tcp[12] >> 4) * 4;
    if doff < 20 || doff > tcp.len() || tcp[12] & 0x0f != 0 {
        return None;
    }
    Some((l3, ip_total, doff, tcp[13]))
}

/// [`tcp_header`], or [`tcp6_header`] for what is not TCP/IPv4 (IPv4 first: only what is not
/// TCP/IPv4 pays for the IPv6 parse); true for IPv6.
#[inline]
fn any_tcp_header(pkt: &[u8], framing: Framing) -> Option<(bool, (usize, usize, usize, u8))> {
    match tcp_header(pkt, framing) {
        Some(h) => Some((false, h)),
        None => Some((true, tcp6_header(pkt, framing)?)),
    }
}

/// The sum of the TCP pseudo-header (RFC 8200 §8.1) of the IPv6 packet at `l3` in `pkt` with
/// `tcp_len` TCP bytes (its addresses must be there: callers checked the header's length).
pub(super) fn pseudo6(pkt: &[u8], l3: usize, tcp_len: usize) -> u64 {
    checksum::add(
        checksum::sum(&pkt[l3 + 8..l3 + IP6_LEN]),
        6 + tcp_len as u64,
    )
}

/// The sum of the TCP pseudo-header of the IPv4 packet at `l3` with `tcp_len` TCP bytes.
fn pseudo(pkt: &[u8], l3: usize, tcp_len: usize) -> Option<u64> {
    Some(checksum::pseudo_header(
        ip_addr(pkt, l3 + 12),
        ip_addr(pkt, l3 + 16),
        6,
        u16::try_from(tcp_len).ok()?,
    ))
}

/// The segment `pkt` carries, if it is one that may be merged (see the module docs) and its
/// TCP checksum verifies.
pub fn tcp_segment(pkt: &[u8], framing: Framing) -> Option<TcpSegment> {
    tcp_segment_of(pkt, framing, None)
}

/// [`tcp_segment`] for a packet whose checksum may have been left partial by its sender
/// (`partial`, [`Partial::of_datagram`]): one left partial at its TCP checksum is not verified
/// (the outer UDP checksum covered its bytes); one partial elsewhere is not merged.
pub fn tcp_segment_of(
    pkt: &[u8],
    framing: Framing,
    partial: Option<Partial>,
) -> Option<TcpSegment> {
    let (v6, (l3, ip_total, doff, flags)) = any_tcp_header(pkt, framing)?;
    if flags & !(TCP_ACK | TCP_PSH) != 0 || flags & TCP_ACK == 0 {
        return None;
    }
    let l4 = l3 + if v6 { IP6_LEN } else { IP_LEN };
    let tcp = &pkt[l4..l3 + ip_total];
    let payload = tcp.len() - doff;
    if payload == 0 {
        return None;
    }
    match partial {
        Some(p) if p.start != l4 || p.offset != usize::from(TCP_CSUM_OFFSET) => return None,
        Some(_) => {}
        None => {
            let pseudo = if v6 {
                pseudo6(pkt, l3, tcp.len())
            } else {
                pseudo(pkt, l3, tcp.len())?
            };
            if checksum::fold(checksum::add(pseudo, checksum::sum(tcp))) != 0xffff {
                return None;
            }
        }
    }
    Some(TcpSegment {
        l3,
        v6,
        hdr_len: l4 + doff,
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        payload,
        psh: flags & TCP_PSH != 0,
        partial: partial.is_some(),
    })
}

/// Whether `next` (in `next_pkt`) continues the run that starts with `first` (in `first_pkt`),
/// whose last segment so far is `last` and whose payload totals `total`.
pub fn continues(
    first_pkt: &[u8],
    first: &TcpSegment,
    last: &TcpSegment,
    total: usize,
    next_pkt: &[u8],
    next: &TcpSegment,
) -> bool {
    let (h, l3) = (first.hdr_len, first.l3);
    let tcp = first.l4();
    if next.hdr_len != h
        || next.l3 != l3
        || next.v6 != first.v6
        || last.psh
        || last.payload != first.payload
        || next.payload > first.payload
        || next.seq != last.seq.wrapping_add(last.payload as u32)
        || h - l3 + total + next.payload > MAX_IP_LEN
        || first_pkt.len() < h
        || next_pkt.len() < h
    {
        return false;
    }
    let (a, b) = (first_pkt, next_pkt);
    let same = |r: std::ops::Range<usize>| a[r.clone()] == b[r];
    // Ethernet (if any); IPv4: version/IHL/TOS; flags/offset, TTL, protocol; addresses; IPv6:
    // version, traffic class, flow label; next header, hop limit, addresses. TCP ports; ACK
    // number; data offset; window; urgent pointer and options. Flags but PSH must match too.
    let ip_same = if first.v6 {
        same(0..l3 + 4) && same(l3 + 6..tcp)
    } else {
        same(0..l3 + 2) && same(l3 + 6..l3 + 10) && same(l3 + 12..tcp)
    };
    ip_same
        && same(tcp..tcp + 4)
        && same(tcp + 8..tcp + 13)
        && (a[tcp + 13] | TCP_PSH) == (b[tcp + 13] | TCP_PSH)
        && same(tcp + 14..tcp + 16)
        && same(tcp + 18..h)
}

/// The virtio-net header of a TCP/IPv4 super-packet whose headers (`hdr_len` bytes, the IPv4
/// header at `l3`) are followed by segments of `gso_size` payload bytes; the TCP checksum field
/// must hold the pseudo-header sum (the kernel completes it per segment).
fn gso_header(l3: usize, hdr_len: usize, gso_size: usize) -> [u8; VNET_HDR_LEN] {
    gso_header_of(VIRTIO_NET_HDR_GSO_TCPV4, l3 + IP_LEN, hdr_len, gso_size)
}

/// [`gso_header`] of GSO type `gso` with the TCP header at `l4`.
fn gso_header_of(gso: u8, l4: usize, hdr_len: usize, gso_size: usize) -> [u8; VNET_HDR_LEN] {
    let mut v = [0u8; VNET_HDR_LEN];
    v[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    v[1] = gso;
    v[2..4].copy_from_slice(&(hdr_len as u16).to_le_bytes());
    v[4..6].copy_from_slice(&(gso_size as u16).to_le_bytes());
    v[6..8].copy_from_slice(&(l4 as u16).to_le_bytes());
    v[8..10].copy_from_slice(&16u16.to_le_bytes());
    v
}

/// Writes the headers of the super-packet of a run into `out` (returns their length) and its
/// virtio-net header: the first segment's headers with the IP length for `total` payload bytes
/// (IPv4: total length and a fresh checksum; IPv6: payload length), PSH if the last segment had
/// it, and the TCP checksum field holding the pseudo-header sum (checksum partial: the kernel
/// completes it per segment).
pub fn super_header(
    first_pkt: &[u8],
    first: &TcpSegment,
    total: usize,
    psh: bool,
    out: &mut [u8; MAX_HEADER],
) -> (usize, [u8; VNET_HDR_LEN]) {
    let l3 = first.l3;
    let tcp = first.l4();
    let h = first.hdr_len.min(MAX_HEADER).min(first_pkt.len());
    out[..h].copy_from_slice(&first_pkt[..h]);
    if first.v6 {
        let tcp_len = h - tcp + total;
        let len16 = u16::try_from(tcp_len).unwrap_or(u16::MAX);
        out[l3 + 4..l3 + 6].copy_from_slice(&len16.to_be_bytes());
        if psh {
            out[tcp + 13] |= TCP_PSH;
        }
        let pseudo = pseudo6(&out[..], l3, tcp_len);
        out[tcp + 16..tcp + 18].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
        let gso = VIRTIO_NET_HDR_GSO_TCPV6;
        return (h, gso_header_of(gso, tcp, h, first.payload));
    }
    let ip_len = h - l3 + total;
    let ip_len16 = u16::try_from(ip_len).unwrap_or(u16::MAX);
    out[l3 + 2..l3 + 4].copy_from_slice(&ip_len16.to_be_bytes());
    out[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
    let ip_sum = checksum::checksum(&out[l3..tcp]);
    out[l3 + 10..l3 + 12].copy_from_slice(&ip_sum.to_be_bytes());
    if psh {
        out[tcp + 13] |= TCP_PSH;
    }
    let pseudo = pseudo(out, l3, ip_len - IP_LEN).unwrap_or(0);
    out[tcp + 16..tcp + 18].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
    (h, gso_header(l3, h, first.payload))
}

/// The virtio-net header to write `pkt` (a TCP/IPv4 packet, `framing`) with, when it is a
/// super-packet the kernel already merged on receive (GRO below a raw socket): its TCP checksum
/// field holds the pseudo-header sum instead of a checksum, so it must be written as checksum
/// partial, and as GSO TCPv4 when longer than one segment. `None` for anything else (a
/// complete checksum, right or wrong; not TCP/IPv4; truncated).
///
/// The segments' own sizes are gone once merged: the kernel is told the largest that fits a
/// device MTU of `mtu` bytes, so every segment it may cut from the packet fits the device.
pub fn kernel_merged(pkt: &[u8], framing: Framing, mtu: usize) -> Option<[u8; VNET_HDR_LEN]> {
    let (v6, (l3, ip_total, doff, flags)) = any_tcp_header(pkt, framing)?;
    let (ip_len, gso) = match v6 {
        true => (IP6_LEN, VIRTIO_NET_HDR_GSO_TCPV6),
        false => (IP_LEN, VIRTIO_NET_HDR_GSO_TCPV4),
    };
    let tcp = &pkt[l3 + ip_len..l3 + ip_total];
    let payload = tcp.len() - doff;
    let max_seg = mtu.saturating_sub(ip_len + doff);
    if payload == 0 || flags & TCP_ACK == 0 || max_seg == 0 {
        return None;
    }
    let pseudo = match v6 {
        true => pseudo6(pkt, l3, tcp.len()),
        false => pseudo(pkt, l3, tcp.len())?,
    };
    // The field first (no pass over the payload for an ordinary packet), then the sum: a
    // complete checksum may happen to equal the pseudo-header sum.
    if be16(tcp, 16) != checksum::fold(pseudo)
        || checksum::fold(checksum::add(pseudo, checksum::sum(tcp))) == 0xffff
    {
        return None;
    }
    let (l4, hdr_len) = (l3 + ip_len, l3 + ip_len + doff);
    if payload <= max_seg {
        // One segment's worth: checksum partial, nothing to segment.
        let mut v = gso_header_of(gso, l4, hdr_len, 0);
        v[1] = 0;
        v[2..6].fill(0);
        return Some(v);
    }
    Some(gso_header_of(gso, l4, hdr_len, max_seg))
}

/// The virtio-net header of a packet whose checksum is left partial at `p`: the kernel
/// completes it if the packet leaves the host, and the local stack trusts it.
pub fn partial_header(p: Partial) -> [u8; VNET_HDR_LEN] {
    let mut v = VNET_HDR_NONE;
    v[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    // Both fit: the core took the option only with its checksum inside the frame.
    v[6..8].copy_from_slice(&(p.start as u16).to_le_bytes());
    v[8..10].copy_from_slice(&(p.offset as u16).to_le_bytes());
    v
}

/// Completes the TCP checksum of a packet [`kernel_merged`] recognised (for a device without
/// virtio-net headers, which takes only whole packets).
pub fn complete_merged(pkt: &mut [u8], framing: Framing) -> bool {
    let Some((v6, (l3, ip_total, _, _))) = any_tcp_header(pkt, framing) else {
        return false;
    };
    let l4 = l3 + if v6 { IP6_LEN } else { IP_LEN };
    let tcp = &mut pkt[l4..l3 + ip_total];
    // The field holds the pseudo-header sum: the sum of the segment completes it.
    let c = checksum::finish(checksum::sum(tcp));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    true
}

/// Where a segment of a receive batch is in the caller's buffers: (buffer index, offset of its
/// frame or packet). [`TcpRun`] keeps places only; the caller resolves them.
pub type Part = (usize, usize);

/// TCP segments of one receive batch that continue each other, waiting for one device write.
#[derive(Debug)]
pub struct TcpRun {
    /// The device the run goes to (the caller's index).
    key: u16,
    /// Segments in the run; `parts[..count]` are where they are.
    count: usize,
    /// Bit k: segment k's checksum was left partial ([`TcpSegment::partial`]).
    partial: u64,
    parts: [Part; MAX_BATCH],
    first: TcpSegment,
    last: TcpSegment,
    /// Payload bytes in the run.
    total: usize,
}

/// What [`TcpRun::flush`] did.
#[derive(Debug)]
pub enum Flushed {
    /// Nothing was waiting.
    Empty,
    /// One segment: the caller writes it as it is.
    One {
        /// Its device.
        key: u16,
        /// Where it is.
        part: Part,
    },
    /// `count` segments went out as one super-packet.
    Merged {
        /// Segments written.
        count: usize,
        /// Their bytes, each segment's headers counted (as they were received).
        bytes: usize,
    },
    /// The device refused the super-packet (`error`); the caller writes the segments one by
    /// one ([`TcpRun::flushed`]) unless the device is gone.
    Refused {
        /// Their device.
        key: u16,
        /// Segments in the run.
        count: usize,
        /// What the write said.
        error: io::Error,
    },
}

impl TcpRun {
    /// An empty run of packets with `framing`.
    pub fn new(framing: Framing) -> TcpRun {
        let none = TcpSegment {
            l3: framing.l3(),
            v6: false,
            hdr_len: 0,
            seq: 0,
            payload: 0,
            psh: false,
            partial: false,
        };
        TcpRun {
            key: 0,
            count: 0,
            partial: 0,
            parts: [(0, 0); MAX_BATCH],
            first: none,
            last: none,
            total: 0,
        }
    }

    /// The device of the pending run (the caller's index; meaningless when it is empty).
    pub fn key(&self) -> u16 {
        self.key
    }

    /// Appends segment `seg` (at `part`, for device `key`) when it continues the run, and says
    /// whether it did; if not, the caller flushes the run and [`start`](TcpRun::start)s a new
    /// one with it. `bytes` resolves a place to the packet there.
    pub fn offer<'a>(
        &mut self,
        key: u16,
        part: Part,
        seg: &TcpSegment,
        bytes: impl Fn(Part) -> Option<&'a [u8]>,
    ) -> bool {
        if self.count == 0 || self.key != key || self.count >= MAX_BATCH {
            return false;
        }
        let (Some(first), Some(next)) = (bytes(self.parts[0]), bytes(part)) else {
            return false;
        };
        if !continues(first, &self.first, &self.last, self.total, next, seg) {
            return false;
        }
        self.parts[self.count] = part;
        self.partial |= u64::from(seg.partial) << self.count;
        self.count += 1;
        self.last = *seg;
        self.total += seg.payload;
        true
    }

    /// Starts a new run with `seg` (at `part`, for device `key`); what was waiting is dropped,
    /// so flush first.
    pub fn start(&mut self, key: u16, part: Part, seg: &TcpSegment) {
        self.key = key;
        self.count = 1;
        self.partial = u64::from(seg.partial);
        self.parts[0] = part;
        self.first = *seg;
        self.last = *seg;
        self.total = seg.payload;
    }

    /// Counts what a flush did into `ctr` and returns what the caller still writes one by one:
    /// the device key and how many of [`flushed`](TcpRun::flushed)'s parts (a single segment,
    /// or a refused run's segments; none for a merged run, or when the device is gone: EBADFD,
    /// whose next read stops the worker).
    pub fn settle(&self, flushed: Flushed, ctr: &mut Counters) -> (u16, usize) {
        match flushed {
            Flushed::Empty => (0, 0),
            Flushed::One { key, .. } => (key, 1),
            Flushed::Merged { count, bytes } => {
                ctr.tx_device += count as u64;
                ctr.tx_device_bytes += bytes as u64;
                (0, 0)
            }
            Flushed::Refused { error, count, .. } if error.raw_os_error() == Some(libc::EBADFD) => {
                ctr.drops[DropReason::DeviceTxError as usize] += count as u64;
                (0, 0)
            }
            // EINVAL for a packet the kernel will not take as GSO, EIO while down...: the
            // segments themselves go, and count their own errors.
            Flushed::Refused { key, count, .. } => (key, count),
        }
    }

    /// Where the segments of the last flushed run were (`count` from [`Flushed::Refused`], or
    /// [`settle`](TcpRun::settle)); valid until the next [`start`](TcpRun::start).
    pub fn flushed(&self, count: usize) -> &[Part] {
        &self.parts[..count.min(MAX_BATCH)]
    }

    /// Where the checksum of the `k`th of [`flushed`](TcpRun::flushed)'s segments was left
    /// partial, if it was (all of a run's segments have the same headers).
    pub fn flushed_partial(&self, k: usize) -> Option<Partial> {
        (k < MAX_BATCH && self.partial & (1 << k) != 0).then(|| Partial {
            start: self.first.l4(),
            offset: usize::from(TCP_CSUM_OFFSET),
        })
    }

    /// Ends the run: several segments are written to the run's device (`dev` finds it by key)
    /// as one super-packet (its headers, then each segment's payload, straight from where
    /// `bytes` finds it); a single one is left to the caller, who writes whole packets its own
    /// way.
    pub fn flush<'a, 'd, D: PacketWrite + 'd>(
        &mut self,
        dev: impl FnOnce(u16) -> Option<&'d D>,
        bytes: impl Fn(Part) -> Option<&'a [u8]>,
    ) -> Flushed {
        let count = std::mem::take(&mut self.count);
        let key = self.key;
        match count {
            0 => Flushed::Empty,
            1 => Flushed::One {
                key,
                part: self.parts[0],
            },
            _ => match self.write(count, dev(key), bytes) {
                Ok(()) => Flushed::Merged {
                    count,
                    bytes: count * self.first.hdr_len + self.total,
                },
                Err(error) => Flushed::Refused { key, count, error },
            },
        }
    }

    fn write<'a>(
        &self,
        count: usize,
        dev: Option<&impl PacketWrite>,
        bytes: impl Fn(Part) -> Option<&'a [u8]>,
    ) -> io::Result<()> {
        let dev = dev.ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let bad = || io::Error::from(io::ErrorKind::InvalidData);
        let first = bytes(self.parts[0]).ok_or_else(bad)?;
        let mut hdr = [0u8; MAX_HEADER];
        let (h, vnet) = super_header(first, &self.first, self.total, self.last.psh, &mut hdr);
        let mut iov = [IoSlice::new(&[]); MAX_BATCH + 2];
        iov[0] = IoSlice::new(&vnet);
        iov[1] = IoSlice::new(&hdr[..h]);
        for (k, &part) in self.parts[..count].iter().enumerate() {
            // Every segment but the last carries the first one's size; exactly that much is
            // taken (a short frame may be padded behind its IP packet).
            let len = if k + 1 == count {
                self.last.payload
            } else {
                self.first.payload
            };
            let payload = bytes(part)
                .and_then(|p| p.get(h..h + len))
                .ok_or_else(bad)?;
            iov[2 + k] = IoSlice::new(payload);
        }
        dev.write_packet(&iov[..2 + count])?;
        Ok(())
    }
}

/// Makes a frame read from an IFF_VNET_HDR device ready to send: completes its checksum if the
/// header says `NEEDS_CSUM`. False when it cannot be handled (a GSO super-frame - the device's
/// offloads are off, so the kernel should never send one - or offsets outside the frame).
pub fn complete_read(vnet: &[u8], frame: &mut [u8]) -> bool {
    if vnet.len() < VNET_HDR_LEN || vnet[1] != 0 {
        return false;
    }
    if vnet[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
        let start = usize::from(u16::from_le_bytes([vnet[6], vnet[7]]));
        let field = start + usize::from(u16::from_le_bytes([vnet[8], vnet[9]]));
        if field + 2 > frame.len() || start > frame.len() {
            return false;
        }
        // The field holds the pseudo-header sum; the sum from `start` on completes it.
        let c = checksum::finish(checksum::sum(&frame[start..]));
        frame[field..field + 2].copy_from_slice(&c.to_be_bytes());
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    const TCP_AT: usize = ETH_LEN + IP_LEN;

    fn eth(f: &[u8]) -> Option<TcpSegment> {
        tcp_segment(f, Framing::Ethernet)
    }

    /// A TCP/IPv4 frame with `payload` bytes of `fill`, sequence `seq`, TCP options `opts`.
    fn seg(seq: u32, payload: usize, fill: u8, flags: u8, opts: &[u8]) -> Vec<u8> {
        let doff = 20 + opts.len();
        let mut f = vec![0u8; TCP_AT + doff + payload];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip_len = (20 + doff + payload) as u16;
        {
            let ip = &mut f[ETH_LEN..TCP_AT];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
            ip[4..6].copy_from_slice(&(seq as u16).to_be_bytes()); // any ID
            ip[6] = 0x40;
            ip[8] = 64;
            ip[9] = 6;
            ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
            ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
            let c = checksum::checksum(ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
        }
        {
            let tcp = &mut f[TCP_AT..];
            tcp[0..2].copy_from_slice(&1234u16.to_be_bytes());
            tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
            tcp[4..8].copy_from_slice(&seq.to_be_bytes());
            tcp[8..12].copy_from_slice(&7u32.to_be_bytes());
            tcp[12] = ((doff / 4) as u8) << 4;
            tcp[13] = flags;
            tcp[14..16].copy_from_slice(&512u16.to_be_bytes());
            tcp[20..doff].copy_from_slice(opts);
            for b in &mut tcp[doff..] {
                *b = fill;
            }
        }
        let tcp_len = (doff + payload) as u16;
        let p = checksum::pseudo_header(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            6,
            tcp_len,
        );
        let c = checksum::finish(checksum::add(p, checksum::sum(&f[TCP_AT..])));
        f[TCP_AT + 16..TCP_AT + 18].copy_from_slice(&c.to_be_bytes());
        f
    }

    const TS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 3];

    #[test]
    fn recognises_mergeable_segments_only() {
        let s = eth(&seg(100, 50, 1, TCP_ACK, &TS)).unwrap();
        assert_eq!((s.hdr_len, s.seq, s.payload, s.psh), (66, 100, 50, false));
        // SYN, FIN, no payload, a broken TCP checksum, a fragment, IP options: not mergeable.
        assert!(eth(&seg(1, 50, 1, 0x02, &[])).is_none());
        assert!(eth(&seg(1, 50, 1, TCP_ACK | 0x01, &[])).is_none());
        assert!(eth(&seg(1, 0, 1, TCP_ACK, &[])).is_none());
        let mut bad = seg(1, 50, 1, TCP_ACK, &[]);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(eth(&bad).is_none());
        let mut frag = seg(1, 50, 1, TCP_ACK, &[]);
        frag[ETH_LEN + 6] |= 0x20;
        assert!(eth(&frag).is_none());
        let mut opt = seg(1, 50, 1, TCP_ACK, &[]);
        opt[ETH_LEN] = 0x46;
        assert!(eth(&opt).is_none());
        // A broken IPv4 header checksum (the ID changed, as Linux's GRO refuses it too).
        let mut id = seg(1, 50, 1, TCP_ACK, &[]);
        id[ETH_LEN + 5] ^= 1;
        assert!(eth(&id).is_none());
        // Every truncation is refused without a panic.
        let f = seg(1, 10, 1, TCP_ACK, &TS);
        for n in 0..f.len() {
            assert!(eth(&f[..n]).is_none() || n == f.len());
        }
    }

    #[test]
    fn runs_follow_the_linux_gro_rules() {
        let a = seg(1000, 100, 1, TCP_ACK, &TS);
        let sa = eth(&a).unwrap();
        let b = seg(1100, 100, 2, TCP_ACK, &TS);
        let sb = eth(&b).unwrap();
        assert!(continues(&a, &sa, &sa, 100, &b, &sb));
        // A gap, a different option (timestamp), a bigger segment, after a short one: no.
        let gap = seg(1101, 100, 2, TCP_ACK, &TS);
        assert!(!continues(&a, &sa, &sa, 100, &gap, &eth(&gap).unwrap()));
        let mut ts2 = TS;
        ts2[7] = 10;
        let other = seg(1100, 100, 2, TCP_ACK, &ts2);
        assert!(!continues(&a, &sa, &sa, 100, &other, &eth(&other).unwrap()));
        let big = seg(1100, 101, 2, TCP_ACK, &TS);
        assert!(!continues(&a, &sa, &sa, 100, &big, &eth(&big).unwrap()));
        let short = seg(1100, 60, 2, TCP_ACK, &TS);
        let ss = eth(&short).unwrap();
        assert!(continues(&a, &sa, &sa, 100, &short, &ss));
        let c = seg(1160, 60, 3, TCP_ACK, &TS);
        assert!(!continues(&a, &sa, &ss, 160, &c, &eth(&c).unwrap()));
        // Nothing follows a PSH.
        let p = seg(1000, 100, 1, TCP_ACK | TCP_PSH, &TS);
        let sp = eth(&p).unwrap();
        assert!(!continues(&p, &sp, &sp, 100, &b, &sb));
        // PSH may end a run.
        let bp = seg(1100, 100, 2, TCP_ACK | TCP_PSH, &TS);
        assert!(continues(&a, &sa, &sa, 100, &bp, &eth(&bp).unwrap()));
    }

    #[test]
    fn the_super_frame_segments_back_into_the_originals() {
        // Software segmentation of the super-frame the way the kernel's TSO does it must give
        // back segments whose checksums verify.
        let segs: Vec<Vec<u8>> = (0..3u32)
            .map(|i| seg(5000 + i * 100, 100, i as u8, TCP_ACK, &TS))
            .collect();
        let first = eth(&segs[0]).unwrap();
        let mut out = [0u8; MAX_HEADER];
        let (h, v) = super_header(&segs[0], &first, 300, false, &mut out);
        assert_eq!(h, 66);
        assert_eq!(v[0], VIRTIO_NET_HDR_F_NEEDS_CSUM);
        assert_eq!(v[1], VIRTIO_NET_HDR_GSO_TCPV4);
        assert_eq!(u16::from_le_bytes([v[4], v[5]]), 100);
        assert_eq!(be16(&out, ETH_LEN + 2), (20 + 32 + 300) as u16);
        assert!(checksum::verify(&out[ETH_LEN..TCP_AT]));
        // Completing the partial checksum over the whole super-frame verifies.
        let mut whole = out[..h].to_vec();
        for s in &segs {
            whole.extend_from_slice(&s[66..]);
        }
        let c = checksum::finish(checksum::sum(&whole[TCP_AT..]));
        whole[TCP_AT + 16..TCP_AT + 18].copy_from_slice(&c.to_be_bytes());
        let tcp_len = (whole.len() - TCP_AT) as u16;
        let p = checksum::pseudo_header(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            6,
            tcp_len,
        );
        assert_eq!(
            checksum::fold(checksum::add(p, checksum::sum(&whole[TCP_AT..]))),
            0xffff
        );
    }

    #[test]
    fn reads_with_a_partial_checksum_are_completed() {
        let mut f = seg(1, 40, 9, TCP_ACK, &[]);
        let good = f.clone();
        // What the kernel hands over with NEEDS_CSUM: the pseudo-header sum in the field.
        let p = checksum::pseudo_header(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            6,
            (20 + 40) as u16,
        );
        f[TCP_AT + 16..TCP_AT + 18].copy_from_slice(&checksum::fold(p).to_be_bytes());
        let mut v = [0u8; VNET_HDR_LEN];
        v[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        v[6..8].copy_from_slice(&(TCP_AT as u16).to_le_bytes());
        v[8..10].copy_from_slice(&16u16.to_le_bytes());
        assert!(complete_read(&v, &mut f));
        assert_eq!(f, good);
        assert!(complete_read(&VNET_HDR_NONE, &mut f));
        let mut gso = VNET_HDR_NONE;
        gso[1] = VIRTIO_NET_HDR_GSO_TCPV4;
        assert!(!complete_read(&gso, &mut f));
        v[6..8].copy_from_slice(&5000u16.to_le_bytes());
        assert!(!complete_read(&v, &mut f));
    }

    /// Collects what a run writes.
    #[derive(Default)]
    struct Sink(RefCell<Vec<Vec<u8>>>);

    impl PacketWrite for Sink {
        fn write_packet(&self, iov: &[IoSlice<'_>]) -> io::Result<usize> {
            let p: Vec<u8> = iov.iter().flat_map(|s| s.iter().copied()).collect();
            let n = p.len();
            self.0.borrow_mut().push(p);
            Ok(n)
        }
    }

    /// The IP packet of an Ethernet frame from `seg`, padded like a short frame on the wire.
    fn ip_of(frame: &[u8], pad: usize) -> Vec<u8> {
        let mut p = frame[ETH_LEN..].to_vec();
        p.extend(std::iter::repeat_n(0xee, pad));
        p
    }

    #[test]
    fn ip_packets_merge_like_frames() {
        let a = ip_of(&seg(1000, 100, 1, TCP_ACK, &TS), 0);
        let b = ip_of(&seg(1100, 100, 2, TCP_ACK, &TS), 0);
        let sa = tcp_segment(&a, Framing::Ip).unwrap();
        let sb = tcp_segment(&b, Framing::Ip).unwrap();
        assert_eq!((sa.l3, sa.hdr_len, sa.payload), (0, 52, 100));
        assert!(continues(&a, &sa, &sa, 100, &b, &sb));
        // An Ethernet frame is not an IP packet, nor the other way round.
        assert!(tcp_segment(&seg(1, 10, 1, TCP_ACK, &TS), Framing::Ip).is_none());
        assert!(tcp_segment(&a, Framing::Ethernet).is_none());
        for n in 0..a.len() {
            assert!(tcp_segment(&a[..n], Framing::Ip).is_none());
        }
    }

    /// Runs `pkts` (IP packets) through a [`TcpRun`]: returns what reached the device and the
    /// indices of the packets left to write one by one.
    fn run_through(pkts: &[Vec<u8>]) -> (Vec<Vec<u8>>, Vec<usize>) {
        let sink = Sink::default();
        let mut singles = Vec::new();
        let mut run = TcpRun::new(Framing::Ip);
        let bytes = |(i, off): Part| pkts.get(i).and_then(|p| p.get(off..));
        let flush =
            |run: &mut TcpRun, singles: &mut Vec<usize>| match run.flush(|_| Some(&sink), bytes) {
                Flushed::One { part, .. } => singles.push(part.0),
                Flushed::Refused { error, .. } => panic!("refused: {error}"),
                Flushed::Empty | Flushed::Merged { .. } => {}
            };
        for (i, p) in pkts.iter().enumerate() {
            match tcp_segment(p, Framing::Ip) {
                None => {
                    flush(&mut run, &mut singles);
                    singles.push(i);
                }
                Some(seg) => {
                    if !run.offer(0, (i, 0), &seg, bytes) {
                        flush(&mut run, &mut singles);
                        run.start(0, (i, 0), &seg);
                    }
                }
            }
        }
        flush(&mut run, &mut singles);
        (sink.0.into_inner(), singles)
    }

    #[test]
    fn a_run_is_written_as_one_gso_packet_of_exactly_its_payload() {
        // Tiny segments in padded frames: only the payload may reach the super-packet.
        let pkts: Vec<Vec<u8>> = (0..4u32)
            .map(|k| ip_of(&seg(77 + k * 3, 3, k as u8 + 1, TCP_ACK, &TS), 5))
            .collect();
        let (written, singles) = run_through(&pkts);
        assert!(singles.is_empty());
        assert_eq!(written.len(), 1);
        let w = &written[0];
        let (vnet, p) = w.split_at(VNET_HDR_LEN);
        assert_eq!(vnet[0], VIRTIO_NET_HDR_F_NEEDS_CSUM);
        assert_eq!(vnet[1], VIRTIO_NET_HDR_GSO_TCPV4);
        assert_eq!(u16::from_le_bytes([vnet[4], vnet[5]]), 3, "gso_size");
        assert_eq!(u16::from_le_bytes([vnet[6], vnet[7]]), 20, "csum_start");
        assert_eq!(p.len(), 52 + 12);
        assert_eq!(usize::from(be16(p, 2)), p.len());
        assert_eq!(&p[52..], &[1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]);
        assert!(checksum::verify(&p[..20]));
        assert_eq!(u32::from_be_bytes([p[24], p[25], p[26], p[27]]), 77);
    }

    #[test]
    fn what_does_not_continue_is_left_to_the_caller() {
        let mut pkts = vec![
            ip_of(&seg(0, 100, 1, TCP_ACK, &TS), 0),
            ip_of(&seg(100, 100, 2, TCP_ACK, &TS), 0),
            // A gap: starts a run of its own, which stays a single.
            ip_of(&seg(5000, 100, 3, TCP_ACK, &TS), 0),
            // A SYN is not mergeable at all.
            ip_of(&seg(1, 0, 0, 0x02, &[]), 0),
            ip_of(&seg(200, 100, 4, TCP_ACK, &TS), 0),
        ];
        // A corrupted segment is never merged.
        pkts.push(ip_of(&seg(300, 100, 5, TCP_ACK, &TS), 0));
        let last = pkts.len() - 1;
        pkts[last][60] ^= 1;
        let (written, singles) = run_through(&pkts);
        assert_eq!(written.len(), 1);
        assert_eq!(written[0].len(), VNET_HDR_LEN + 52 + 200);
        assert_eq!(singles, vec![2, 3, 4, 5]);
    }

    #[test]
    fn runs_stop_at_the_batch_limit_and_at_64_kib() {
        let pkts: Vec<Vec<u8>> = (0..(MAX_BATCH as u32 + 3))
            .map(|k| ip_of(&seg(k * 100, 100, 1, TCP_ACK, &TS), 0))
            .collect();
        let (written, singles) = run_through(&pkts);
        // The three after the limit: a run of their own, merged too.
        assert_eq!(written.len(), 2);
        assert_eq!(written[0].len(), VNET_HDR_LEN + 52 + MAX_BATCH * 100);
        assert_eq!(written[1].len(), VNET_HDR_LEN + 52 + 300);
        assert!(singles.is_empty());
        let big: Vec<Vec<u8>> = (0..50u32)
            .map(|k| ip_of(&seg(k * 1400, 1400, 1, TCP_ACK, &TS), 0))
            .collect();
        let (written, _) = run_through(&big);
        assert!(written.iter().all(|w| w.len() - VNET_HDR_LEN <= MAX_IP_LEN));
        let total: usize = written.iter().map(|w| w.len() - VNET_HDR_LEN - 52).sum();
        assert_eq!(total, 50 * 1400);
    }

    /// What GRO below a raw socket hands over: segments merged, IP length of the whole, the
    /// pseudo-header sum in the TCP checksum field.
    fn gro_merged(payload: usize) -> Vec<u8> {
        let mut p = ip_of(&seg(9, payload, 7, TCP_ACK | TCP_PSH, &TS), 0);
        let tcp_len = (p.len() - 20) as u16;
        let ps = checksum::pseudo_header(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            6,
            tcp_len,
        );
        p[36..38].copy_from_slice(&checksum::fold(ps).to_be_bytes());
        p
    }

    #[test]
    fn kernel_merged_packets_are_recognised_and_written_as_gso() {
        // A 1480-byte MTU leaves 1428 payload bytes behind 20 + 32 bytes of headers.
        let p = gro_merged(5000);
        let v = kernel_merged(&p, Framing::Ip, 1480).unwrap();
        assert_eq!(v[0], VIRTIO_NET_HDR_F_NEEDS_CSUM);
        assert_eq!(v[1], VIRTIO_NET_HDR_GSO_TCPV4);
        assert_eq!(u16::from_le_bytes([v[2], v[3]]), 52, "hdr_len");
        assert_eq!(u16::from_le_bytes([v[4], v[5]]), 1428, "gso_size");
        assert_eq!(u16::from_le_bytes([v[6], v[7]]), 20, "csum_start");
        assert_eq!(u16::from_le_bytes([v[8], v[9]]), 16, "csum_offset");
        // A merge of two small segments: checksum partial, nothing to segment.
        let small = kernel_merged(&gro_merged(800), Framing::Ip, 1480).unwrap();
        assert_eq!((small[0], small[1]), (VIRTIO_NET_HDR_F_NEEDS_CSUM, 0));
        // A complete checksum (valid or not) is not a merged packet; nor is a truncated one.
        let whole = ip_of(&seg(9, 5000, 7, TCP_ACK, &TS), 0);
        assert!(kernel_merged(&whole, Framing::Ip, 1480).is_none());
        let mut broken = whole.clone();
        broken[100] ^= 1;
        assert!(kernel_merged(&broken, Framing::Ip, 1480).is_none());
        for n in 0..p.len() {
            assert!(kernel_merged(&p[..n], Framing::Ip, 1480).is_none());
        }
        // Completed in place, it is an ordinary valid packet.
        let mut c = p.clone();
        assert!(complete_merged(&mut c, Framing::Ip));
        assert!(tcp_segment(&c, Framing::Ip).is_some());
        assert_eq!(c[52..], p[52..]);
    }

    /// The same for TCP/IPv6 (protocol 41): GSO TCPv6 behind 40 + 32 bytes of headers.
    #[test]
    fn kernel_merged_ipv6_packets_are_written_as_gso_tcpv6() {
        let mut p = ip_of(&seg6(9, 5000, 7, true), 0);
        let whole = p.clone();
        let tcp_len = p.len() - IP6_LEN;
        let ps = checksum::fold(pseudo6(&p, 0, tcp_len));
        p[IP6_LEN + 16..IP6_LEN + 18].copy_from_slice(&ps.to_be_bytes());
        let v = kernel_merged(&p, Framing::Ip, 1480).unwrap();
        assert_eq!(v[0], VIRTIO_NET_HDR_F_NEEDS_CSUM);
        assert_eq!(v[1], VIRTIO_NET_HDR_GSO_TCPV6);
        assert_eq!(u16::from_le_bytes([v[2], v[3]]), 72, "hdr_len");
        assert_eq!(u16::from_le_bytes([v[4], v[5]]), 1408, "gso_size");
        assert_eq!(u16::from_le_bytes([v[6], v[7]]), 40, "csum_start");
        assert_eq!(u16::from_le_bytes([v[8], v[9]]), 16, "csum_offset");
        assert!(kernel_merged(&whole, Framing::Ip, 1480).is_none());
        for n in 0..p.len() {
            assert!(kernel_merged(&p[..n], Framing::Ip, 1480).is_none());
        }
        // Completed in place: etherparse's packet again, byte for byte.
        assert!(complete_merged(&mut p, Framing::Ip));
        assert_eq!(p, whole);
    }

    /// A TCP/IPv6 frame built by etherparse (an independent encoder): sequence `seq`,
    /// `payload` bytes of `fill`, `flags` (ACK always, PSH when given), a timestamp option.
    fn seg6(seq: u32, payload: usize, fill: u8, psh: bool) -> Vec<u8> {
        let src = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let ts = etherparse::TcpOptionElement::Timestamp(9, 3);
        use etherparse::TcpOptionElement::Noop;
        let mut b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6(src, dst, 64)
            .tcp(1234, 80, seq, 512)
            .ack(7)
            .options(&[Noop, Noop, ts])
            .unwrap();
        if psh {
            b = b.psh();
        }
        let data = vec![fill; payload];
        let mut f = vec![0u8; b.size(payload)];
        b.write_to_slice(&mut f, &data).unwrap();
        f
    }

    const TCP6_AT: usize = ETH_LEN + IP6_LEN;

    #[test]
    fn ipv6_runs_follow_the_linux_gro_rules() {
        let a = seg6(1000, 100, 1, false);
        let sa = eth(&a).unwrap();
        assert_eq!(
            (sa.v6, sa.hdr_len, sa.seq, sa.payload),
            (true, 86, 1000, 100)
        );
        let b = seg6(1100, 100, 2, false);
        let sb = eth(&b).unwrap();
        assert!(continues(&a, &sa, &sa, 100, &b, &sb));
        // The same as IP packets.
        let (ia, ib) = (ip_of(&a, 0), ip_of(&b, 3));
        let (sia, sib) = (tcp_segment(&ia, Framing::Ip), tcp_segment(&ib, Framing::Ip));
        assert!(continues(
            &ia,
            &sia.unwrap(),
            &sia.unwrap(),
            100,
            &ib,
            &sib.unwrap()
        ));
        // A gap; another traffic class, flow label or hop limit: no.
        let gap = seg6(1101, 100, 2, false);
        assert!(!continues(&a, &sa, &sa, 100, &gap, &eth(&gap).unwrap()));
        for (at, bit) in [(0, 0x01), (1, 0x10), (3, 0x01), (7, 0x01)] {
            let mut other = b.clone();
            other[ETH_LEN + at] ^= bit;
            let so = eth(&other).unwrap();
            assert!(!continues(&a, &sa, &sa, 100, &other, &so), "byte {at}");
        }
        // An IPv4 segment never continues an IPv6 run.
        let v4 = seg(1100, 100, 2, TCP_ACK, &TS);
        assert!(!continues(&a, &sa, &sa, 100, &v4, &eth(&v4).unwrap()));
        // A broken checksum, an extension header, no payload, truncation: not mergeable.
        let mut bad = a.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(eth(&bad).is_none());
        let mut ext = a.clone();
        ext[ETH_LEN + 6] = 0;
        assert!(eth(&ext).is_none());
        assert!(eth(&seg6(1, 0, 0, false)).is_none());
        for n in 0..a.len() {
            assert!(eth(&a[..n]).is_none());
        }
    }

    #[test]
    fn an_ipv6_run_is_one_gso_tcpv6_frame_that_decodes() {
        let segs: Vec<Vec<u8>> = (0..3u32)
            .map(|i| seg6(5000 + i * 100, 100, i as u8 + 1, i == 2))
            .collect();
        let sink = Sink::default();
        let mut run = TcpRun::new(Framing::Ethernet);
        let bytes = |(i, off): Part| segs.get(i).and_then(|p| p.get(off..));
        for (i, f) in segs.iter().enumerate() {
            let s = eth(f).unwrap();
            if i == 0 {
                run.start(0, (0, 0), &s);
            } else {
                assert!(run.offer(0, (i, 0), &s, bytes), "segment {i}");
            }
        }
        assert!(matches!(
            run.flush(|_| Some(&sink), bytes),
            Flushed::Merged { count: 3, .. }
        ));
        let written = sink.0.into_inner();
        let (v, frame) = written[0].split_at(VNET_HDR_LEN);
        assert_eq!(v[0], VIRTIO_NET_HDR_F_NEEDS_CSUM);
        assert_eq!(v[1], VIRTIO_NET_HDR_GSO_TCPV6);
        assert_eq!(u16::from_le_bytes([v[2], v[3]]), 86, "hdr_len");
        assert_eq!(u16::from_le_bytes([v[4], v[5]]), 100, "gso_size");
        assert_eq!(usize::from(u16::from_le_bytes([v[6], v[7]])), TCP6_AT);
        assert_eq!(u16::from_le_bytes([v[8], v[9]]), 16, "csum_offset");
        // Completing the partial checksum as the kernel does gives a frame etherparse decodes
        // and whose TCP checksum it agrees with.
        let mut whole = frame.to_vec();
        let c = checksum::finish(checksum::sum(&whole[TCP6_AT..]));
        whole[TCP6_AT + 16..TCP6_AT + 18].copy_from_slice(&c.to_be_bytes());
        let p = etherparse::SlicedPacket::from_ethernet(&whole).unwrap();
        let Some(etherparse::NetSlice::Ipv6(ip)) = p.net else {
            panic!("not IPv6");
        };
        let Some(etherparse::TransportSlice::Tcp(tcp)) = p.transport else {
            panic!("not TCP");
        };
        assert_eq!(usize::from(ip.header().payload_length()), 32 + 300);
        assert_eq!(tcp.sequence_number(), 5000);
        assert!(tcp.psh() && tcp.ack() && !tcp.fin());
        let (s, d) = (ip.header().source(), ip.header().destination());
        assert_eq!(tcp.checksum(), tcp.calc_checksum_ipv6(s, d).unwrap());
        let want: Vec<u8> = [1u8, 2, 3].iter().flat_map(|&b| [b; 100]).collect();
        assert_eq!(tcp.payload(), &want[..]);
    }

    #[test]
    fn settling_counts_what_a_flush_did_and_leaves_the_rest_to_write() {
        let run = TcpRun::new(Framing::Ip);
        let mut ctr = Counters::default();
        assert_eq!(run.settle(Flushed::Empty, &mut ctr), (0, 0));
        assert_eq!(
            run.settle(
                Flushed::One {
                    key: 3,
                    part: (1, 2)
                },
                &mut ctr
            ),
            (3, 1)
        );
        let merged = Flushed::Merged {
            count: 5,
            bytes: 5000,
        };
        assert_eq!(run.settle(merged, &mut ctr), (0, 0));
        assert_eq!((ctr.tx_device, ctr.tx_device_bytes), (5, 5000));
        let refused = |code| Flushed::Refused {
            key: 2,
            count: 4,
            error: io::Error::from_raw_os_error(code),
        };
        // A refused super-packet: its segments one by one; the device gone: counted lost.
        assert_eq!(run.settle(refused(libc::EINVAL), &mut ctr), (2, 4));
        assert_eq!(ctr.total_drops(), 0);
        assert_eq!(run.settle(refused(libc::EBADFD), &mut ctr), (0, 0));
        assert_eq!(ctr.drops_of(DropReason::DeviceTxError), 4);
    }
}
