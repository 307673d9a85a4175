//! Receive offload for an L2 (TAP) device: consecutive decapsulated TCP/IPv4 segments of one
//! flow are handed to the kernel as one super-frame with a virtio-net header (IFF_VNET_HDR,
//! GSO TCPv4, checksum partial), so the TAP write, the stack's receive path and the socket
//! wake-up happen once per run instead of once per segment.
//!
//! tun-rs's GRO helpers expect IP packets (TUN) and refuse Ethernet frames, hence this
//! Ethernet-aware variant. It is deliberately strict - it only merges what Linux's own TCP GRO
//! would: IPv4 without options, not fragmented; TCP with only ACK (and PSH on the last segment);
//! identical Ethernet, IP (but length, ID and checksum) and TCP (but sequence and checksum)
//! headers, options included; contiguous sequence numbers; equal segment sizes but the last.
//! Each merged segment's TCP checksum is verified first (the kernel does not check a partial
//! checksum, and with a zero outer UDP checksum the inner one is the only end-to-end check);
//! a segment that fails is written on its own for the kernel to count and drop.

use encap::checksum;
use std::net::Ipv4Addr;

/// Bytes of the virtio-net header in front of every frame on an IFF_VNET_HDR device.
pub const VNET_HDR_LEN: usize = 10;
/// A header that says "no offload": a complete frame.
pub const VNET_HDR_NONE: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];
/// Longest header a super-frame carries (Ethernet, IPv4 without options, TCP with options).
pub const MAX_HEADER: usize = 14 + 20 + 60;

const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
const ETH_LEN: usize = 14;
const IP_LEN: usize = 20;
const TCP_AT: usize = ETH_LEN + IP_LEN;
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;
/// Largest IPv4 total length.
const MAX_IP_LEN: usize = 65_535;

/// A TCP/IPv4 segment that may be merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment {
    /// Bytes of Ethernet + IPv4 + TCP headers.
    pub hdr_len: usize,
    /// Sequence number of the first payload byte.
    pub seq: u32,
    /// Payload bytes.
    pub payload: usize,
    /// PSH set.
    pub psh: bool,
}

fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

fn ip_addr(b: &[u8], i: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[i], b[i + 1], b[i + 2], b[i + 3])
}

/// The segment `frame` carries, if it is one that may be merged (see the module docs) and its
/// TCP checksum verifies.
pub fn tcp_segment(frame: &[u8]) -> Option<TcpSegment> {
    if frame.len() < TCP_AT + 20 || be16(frame, 12) != 0x0800 {
        return None;
    }
    let ip = &frame[ETH_LEN..];
    // Version 4, no options; DF or not, but neither MF nor an offset; TCP.
    if ip[0] != 0x45 || be16(ip, 6) & 0x3fff != 0 || ip[9] != 6 {
        return None;
    }
    let ip_total = usize::from(be16(ip, 2));
    if ip_total < IP_LEN + 20 || ETH_LEN + ip_total > frame.len() {
        return None;
    }
    let tcp = &frame[TCP_AT..ETH_LEN + ip_total];
    let doff = usize::from(tcp[12] >> 4) * 4;
    let flags = tcp[13];
    if doff < 20 || doff > tcp.len() || tcp[12] & 0x0f != 0 {
        return None;
    }
    if flags & !(TCP_ACK | TCP_PSH) != 0 || flags & TCP_ACK == 0 {
        return None;
    }
    let payload = tcp.len() - doff;
    if payload == 0 {
        return None;
    }
    let pseudo = checksum::pseudo_header(
        ip_addr(ip, 12),
        ip_addr(ip, 16),
        6,
        u16::try_from(tcp.len()).ok()?,
    );
    if checksum::fold(checksum::add(pseudo, checksum::sum(tcp))) != 0xffff {
        return None;
    }
    Some(TcpSegment {
        hdr_len: TCP_AT + doff,
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        payload,
        psh: flags & TCP_PSH != 0,
    })
}

/// Whether `next` (in `next_frame`) continues the run that starts with `first` (in
/// `first_frame`), whose last segment so far is `last` and whose payload totals `total`.
pub fn continues(
    first_frame: &[u8],
    first: &TcpSegment,
    last: &TcpSegment,
    total: usize,
    next_frame: &[u8],
    next: &TcpSegment,
) -> bool {
    let h = first.hdr_len;
    if next.hdr_len != h
        || last.psh
        || last.payload != first.payload
        || next.payload > first.payload
        || next.seq != last.seq.wrapping_add(last.payload as u32)
        || h - ETH_LEN + total + next.payload > MAX_IP_LEN
        || first_frame.len() < h
        || next_frame.len() < h
    {
        return false;
    }
    let (a, b) = (first_frame, next_frame);
    let same = |r: std::ops::Range<usize>| a[r.clone()] == b[r];
    // Ethernet; IP version/IHL/TOS; flags/offset, TTL, protocol; addresses; TCP ports; ACK
    // number; data offset; window; urgent pointer and options. Flags but PSH must match too.
    same(0..ETH_LEN + 2)
        && same(ETH_LEN + 6..ETH_LEN + 10)
        && same(ETH_LEN + 12..TCP_AT)
        && same(TCP_AT..TCP_AT + 4)
        && same(TCP_AT + 8..TCP_AT + 13)
        && (a[TCP_AT + 13] | TCP_PSH) == (b[TCP_AT + 13] | TCP_PSH)
        && same(TCP_AT + 14..TCP_AT + 16)
        && same(TCP_AT + 18..h)
}

/// Writes the headers of the super-frame of a run into `out` (returns their length) and its
/// virtio-net header: the first segment's headers with the IP total length for `total` payload
/// bytes, a fresh IP checksum, PSH if the last segment had it, and the TCP checksum field
/// holding the pseudo-header sum (checksum partial: the kernel completes it per segment).
pub fn super_header(
    first_frame: &[u8],
    first: &TcpSegment,
    total: usize,
    psh: bool,
    out: &mut [u8; MAX_HEADER],
) -> (usize, [u8; VNET_HDR_LEN]) {
    let h = first.hdr_len.min(MAX_HEADER).min(first_frame.len());
    out[..h].copy_from_slice(&first_frame[..h]);
    let ip_len = h - ETH_LEN + total;
    let ip_len16 = u16::try_from(ip_len).unwrap_or(u16::MAX);
    out[ETH_LEN + 2..ETH_LEN + 4].copy_from_slice(&ip_len16.to_be_bytes());
    out[ETH_LEN + 10..ETH_LEN + 12].copy_from_slice(&[0, 0]);
    let ip_sum = checksum::checksum(&out[ETH_LEN..TCP_AT]);
    out[ETH_LEN + 10..ETH_LEN + 12].copy_from_slice(&ip_sum.to_be_bytes());
    if psh {
        out[TCP_AT + 13] |= TCP_PSH;
    }
    let tcp_len = u16::try_from(ip_len - IP_LEN).unwrap_or(u16::MAX);
    let pseudo = checksum::pseudo_header(
        ip_addr(out, ETH_LEN + 12),
        ip_addr(out, ETH_LEN + 16),
        6,
        tcp_len,
    );
    out[TCP_AT + 16..TCP_AT + 18].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
    let mut v = [0u8; VNET_HDR_LEN];
    v[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    v[1] = VIRTIO_NET_HDR_GSO_TCPV4;
    v[2..4].copy_from_slice(&(h as u16).to_le_bytes());
    v[4..6].copy_from_slice(&(first.payload as u16).to_le_bytes());
    v[6..8].copy_from_slice(&(TCP_AT as u16).to_le_bytes());
    v[8..10].copy_from_slice(&16u16.to_le_bytes());
    (h, v)
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
        let s = tcp_segment(&seg(100, 50, 1, TCP_ACK, &TS)).unwrap();
        assert_eq!((s.hdr_len, s.seq, s.payload, s.psh), (66, 100, 50, false));
        // SYN, FIN, no payload, a broken checksum, a fragment, IP options: not mergeable.
        assert!(tcp_segment(&seg(1, 50, 1, 0x02, &[])).is_none());
        assert!(tcp_segment(&seg(1, 50, 1, TCP_ACK | 0x01, &[])).is_none());
        assert!(tcp_segment(&seg(1, 0, 1, TCP_ACK, &[])).is_none());
        let mut bad = seg(1, 50, 1, TCP_ACK, &[]);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(tcp_segment(&bad).is_none());
        let mut frag = seg(1, 50, 1, TCP_ACK, &[]);
        frag[ETH_LEN + 6] |= 0x20;
        assert!(tcp_segment(&frag).is_none());
        let mut opt = seg(1, 50, 1, TCP_ACK, &[]);
        opt[ETH_LEN] = 0x46;
        assert!(tcp_segment(&opt).is_none());
        // Every truncation is refused without a panic.
        let f = seg(1, 10, 1, TCP_ACK, &TS);
        for n in 0..f.len() {
            assert!(tcp_segment(&f[..n]).is_none() || n == f.len());
        }
    }

    #[test]
    fn runs_follow_the_linux_gro_rules() {
        let a = seg(1000, 100, 1, TCP_ACK, &TS);
        let sa = tcp_segment(&a).unwrap();
        let b = seg(1100, 100, 2, TCP_ACK, &TS);
        let sb = tcp_segment(&b).unwrap();
        assert!(continues(&a, &sa, &sa, 100, &b, &sb));
        // A gap, a different option (timestamp), a bigger segment, after a short one: no.
        let gap = seg(1101, 100, 2, TCP_ACK, &TS);
        assert!(!continues(
            &a,
            &sa,
            &sa,
            100,
            &gap,
            &tcp_segment(&gap).unwrap()
        ));
        let mut ts2 = TS;
        ts2[7] = 10;
        let other = seg(1100, 100, 2, TCP_ACK, &ts2);
        assert!(!continues(
            &a,
            &sa,
            &sa,
            100,
            &other,
            &tcp_segment(&other).unwrap()
        ));
        let big = seg(1100, 101, 2, TCP_ACK, &TS);
        assert!(!continues(
            &a,
            &sa,
            &sa,
            100,
            &big,
            &tcp_segment(&big).unwrap()
        ));
        let short = seg(1100, 60, 2, TCP_ACK, &TS);
        let ss = tcp_segment(&short).unwrap();
        assert!(continues(&a, &sa, &sa, 100, &short, &ss));
        let c = seg(1160, 60, 3, TCP_ACK, &TS);
        assert!(!continues(&a, &sa, &ss, 160, &c, &tcp_segment(&c).unwrap()));
        // Nothing follows a PSH.
        let p = seg(1000, 100, 1, TCP_ACK | TCP_PSH, &TS);
        let sp = tcp_segment(&p).unwrap();
        assert!(!continues(&p, &sp, &sp, 100, &b, &sb));
        // PSH may end a run.
        let bp = seg(1100, 100, 2, TCP_ACK | TCP_PSH, &TS);
        assert!(continues(
            &a,
            &sa,
            &sa,
            100,
            &bp,
            &tcp_segment(&bp).unwrap()
        ));
    }

    #[test]
    fn the_super_frame_segments_back_into_the_originals() {
        // Software segmentation of the super-frame the way the kernel's TSO does it must give
        // back segments whose checksums verify.
        let segs: Vec<Vec<u8>> = (0..3u32)
            .map(|i| seg(5000 + i * 100, 100, i as u8, TCP_ACK, &TS))
            .collect();
        let first = tcp_segment(&segs[0]).unwrap();
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
}
