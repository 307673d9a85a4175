//! Transmit offload for an L2 (TAP) device: with TSO on, the kernel hands over TCP/IPv4 and
//! TCP/IPv6 super-frames (up to 64 KiB, one read) with a virtio-net header; the worker cuts
//! them into MSS-sized segments here, each an ordinary Ethernet frame, before encapsulation.
//!
//! tun-rs's segmentation helpers work on IP packets (TUN) and fail on Ethernet frames, hence
//! this Ethernet-aware variant. A segment keeps the super-frame's payload where it is (it is
//! sent from there); only its headers are built, in a small buffer: Ethernet as read; IPv4 with
//! its total length, an ID counting up from the super-frame's and a fresh checksum, or IPv6
//! (TCP right behind the fixed header, no extension headers) with its payload length; TCP with
//! its sequence number, FIN/PSH only on the last segment, CWR only on the first, and a full
//! checksum over the pseudo-header of its IP version (the kernel left it partial), or, for a
//! peer that takes VXLAN remote checksum offload, the pseudo-header sum alone.

use super::batch_gro::{MAX_HEADER, VNET_HDR_LEN, be16, pseudo6};
use encap::checksum;
use std::net::Ipv4Addr;
use std::ops::Range;

const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
const IP6_LEN: usize = 40;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// A TCP/IPv4 or TCP/IPv6 super-frame to segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsoFrame {
    /// Offset of the IP header (14, or 18 behind one 802.1Q tag).
    pub l3: usize,
    /// The IP header is IPv6 (else IPv4).
    pub v6: bool,
    /// Offset of the TCP header.
    pub l4: usize,
    /// Bytes of all headers; the payload follows.
    pub hdr_len: usize,
    /// Payload bytes per segment (the last may be shorter).
    pub mss: usize,
    /// Payload bytes in all.
    pub payload: usize,
}

impl TsoFrame {
    /// Number of segments.
    pub fn segments(&self) -> usize {
        self.payload.div_ceil(self.mss)
    }
}

/// Whether `vnet` asks for TCP segmentation (over IPv4 or IPv6).
pub fn is_tso(vnet: &[u8]) -> bool {
    vnet.len() >= VNET_HDR_LEN
        && matches!(
            vnet[1] & 0x7f,
            VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_TCPV6
        )
}

/// The super-frame `frame` described by `vnet`, if it is a TCP one we can segment: Ethernet
/// (at most one VLAN tag), IPv4 (GSO TCPv4) or IPv6 with TCP as its next header (GSO TCPv6),
/// TCP, a non-zero segment size that leaves every segment's headers within [`MAX_HEADER`].
pub fn tso_frame(vnet: &[u8], frame: &[u8]) -> Option<TsoFrame> {
    if !is_tso(vnet) || vnet[1] & 0x80 != 0 {
        return None; // not TCP, or the ECN variant (never asked for)
    }
    let mss = usize::from(u16::from_le_bytes([vnet[4], vnet[5]]));
    let ethertype = if vnet[1] == VIRTIO_NET_HDR_GSO_TCPV4 {
        0x0800
    } else {
        0x86dd
    };
    let l3 = match be16(frame.get(..14)?, 12) {
        t if t == ethertype => 14,
        0x8100 if frame.len() >= 18 && be16(frame, 16) == ethertype => 18,
        _ => return None,
    };
    if ethertype == 0x86dd {
        return tso6_frame(frame, l3, mss);
    }
    let ip = frame.get(l3..l3 + 20)?;
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != 6 {
        return None;
    }
    // The IP length covers the whole super-frame (trailing bytes past it are padding).
    let ip_end = l3 + usize::from(be16(ip, 2));
    tcp_frame(frame, (l3, false), l3 + ihl, ip_end, mss)
}

/// [`tso_frame`] for the IPv6 header at `l3`: TCP right behind it (an extension header is
/// refused), the payload length covering the whole super-frame (0, a jumbogram, is refused).
fn tso6_frame(frame: &[u8], l3: usize, mss: usize) -> Option<TsoFrame> {
    let ip = frame.get(l3..l3 + IP6_LEN)?;
    if ip[0] >> 4 != 6 || ip[6] != 6 {
        return None;
    }
    let l4 = l3 + IP6_LEN;
    tcp_frame(frame, (l3, true), l4, l4 + usize::from(be16(ip, 4)), mss)
}

/// The super-frame whose IP header (at `l3.0`, IPv6 if `l3.1`) carries TCP at `l4` and ends at
/// `ip_end`: the TCP header and the IP length must fit the frame, a segment must carry payload.
fn tcp_frame(
    frame: &[u8],
    (l3, v6): (usize, bool),
    l4: usize,
    ip_end: usize,
    mss: usize,
) -> Option<TsoFrame> {
    let doff = usize::from(frame.get(l4 + 12)? >> 4) * 4;
    let hdr_len = l4 + doff;
    if doff < 20 || hdr_len > MAX_HEADER || hdr_len > frame.len() || mss == 0 {
        return None;
    }
    if ip_end <= hdr_len || ip_end > frame.len() {
        return None;
    }
    Some(TsoFrame {
        l3,
        v6,
        l4,
        hdr_len,
        mss,
        payload: ip_end - hdr_len,
    })
}

/// Writes segment `k`'s headers into `out` (the first `t.hdr_len` bytes) and returns the range
/// of its payload in `frame`. `None` when `k` is past the last segment.
pub fn segment(
    frame: &[u8],
    t: &TsoFrame,
    k: usize,
    out: &mut [u8; MAX_HEADER],
) -> Option<Range<usize>> {
    segment_of(frame, t, k, out, false)
}

/// [`segment`], with the TCP checksum left partial when `partial` (the field holds the
/// pseudo-header sum, for a receiver told by VXLAN remote checksum offload to complete it):
/// the payload is not read.
pub fn segment_of(
    frame: &[u8],
    t: &TsoFrame,
    k: usize,
    out: &mut [u8; MAX_HEADER],
    partial: bool,
) -> Option<Range<usize>> {
    let n = t.segments();
    if k >= n || frame.len() < t.hdr_len + t.payload {
        return None;
    }
    let start = t.hdr_len + k * t.mss;
    let end = (start + t.mss).min(t.hdr_len + t.payload);
    let h = t.hdr_len;
    out[..h].copy_from_slice(&frame[..h]);
    let (l3, l4) = (t.l3, t.l4);
    let tcp_len = u16::try_from(h - l4 + (end - start)).ok()?;
    if t.v6 {
        // IPv6: payload length (the TCP segment).
        out[l3 + 4..l3 + 6].copy_from_slice(&tcp_len.to_be_bytes());
    } else {
        // IPv4: total length, ID + k, checksum.
        let ip_len = u16::try_from(h - l3 + (end - start)).ok()?;
        out[l3 + 2..l3 + 4].copy_from_slice(&ip_len.to_be_bytes());
        let id = be16(frame, l3 + 4).wrapping_add(k as u16);
        out[l3 + 4..l3 + 6].copy_from_slice(&id.to_be_bytes());
        out[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
        let ip_sum = checksum::checksum(&out[l3..l4]);
        out[l3 + 10..l3 + 12].copy_from_slice(&ip_sum.to_be_bytes());
    }
    // TCP: sequence, flags, checksum.
    let seq0 = u32::from_be_bytes([frame[l4 + 4], frame[l4 + 5], frame[l4 + 6], frame[l4 + 7]]);
    let seq = seq0.wrapping_add((k * t.mss) as u32);
    out[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
    if k + 1 < n {
        out[l4 + 13] &= !(TCP_FIN | TCP_PSH);
    }
    if k > 0 {
        out[l4 + 13] &= !TCP_CWR;
    }
    out[l4 + 16..l4 + 18].copy_from_slice(&[0, 0]);
    let pseudo = if t.v6 {
        pseudo6(&out[..], l3, usize::from(tcp_len))
    } else {
        let src = Ipv4Addr::new(out[l3 + 12], out[l3 + 13], out[l3 + 14], out[l3 + 15]);
        let dst = Ipv4Addr::new(out[l3 + 16], out[l3 + 17], out[l3 + 18], out[l3 + 19]);
        checksum::pseudo_header(src, dst, 6, tcp_len)
    };
    let field = if partial {
        checksum::fold(pseudo)
    } else {
        let acc = checksum::add(
            checksum::add(pseudo, checksum::sum(&out[l4..h])),
            checksum::sum(&frame[start..end]),
        );
        checksum::finish(acc)
    };
    out[l4 + 16..l4 + 18].copy_from_slice(&field.to_be_bytes());
    Some(start..end)
}

#[cfg(test)]
mod tests {
    use super::super::batch_gro::{Framing, Partial, TcpRun, tcp_segment, tcp_segment_of};
    use super::*;

    /// A super-frame: headers (with TCP options) then `payload` bytes, as the kernel hands it
    /// over (IP length of the whole, partial TCP checksum - ignored by `segment`).
    fn super_frame(payload: usize, flags: u8, vlan: bool) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        }
        f.extend_from_slice(&[0x08, 0x00]);
        let ip_len = (20 + 32 + payload) as u16;
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&ip_len.to_be_bytes());
        ip.extend_from_slice(&[0xff, 0xfe, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&ip);
        let mut tcp = vec![0x04, 0xd2, 0x00, 0x50];
        tcp.extend_from_slice(&0xffff_fff0u32.to_be_bytes()); // wraps during the frame
        tcp.extend_from_slice(&[0, 0, 0, 7, 0x80, flags, 2, 0, 0xaa, 0xbb, 0, 0]);
        tcp.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 3]);
        f.extend_from_slice(&tcp);
        f.extend((0..payload).map(|i| (i * 7 % 251) as u8));
        f
    }

    fn vnet(mss: u16) -> [u8; VNET_HDR_LEN] {
        let mut v = [0u8; VNET_HDR_LEN];
        v[0] = 1;
        v[1] = VIRTIO_NET_HDR_GSO_TCPV4;
        v[4..6].copy_from_slice(&mss.to_le_bytes());
        v
    }

    #[test]
    fn segments_are_valid_tcp_and_rebuild_the_stream() {
        for (payload, mss, vlan) in [
            (3000, 1398, false),
            (1398 * 3, 1398, true),
            (10, 1398, false),
        ] {
            let f = super_frame(payload, 0x18 | TCP_FIN | TCP_CWR, vlan);
            let t = tso_frame(&vnet(mss as u16), &f).unwrap();
            assert_eq!(t.segments(), payload.div_ceil(mss));
            let mut stream = Vec::new();
            let mut out = [0u8; MAX_HEADER];
            for k in 0..t.segments() {
                let r = segment(&f, &t, k, &mut out).unwrap();
                let mut seg = out[..t.hdr_len].to_vec();
                seg.extend_from_slice(&f[r.clone()]);
                stream.extend_from_slice(&f[r]);
                // Strip the VLAN tag for the checker, which wants plain Ethernet.
                if vlan {
                    seg.drain(12..16);
                }
                let last = k + 1 == t.segments();
                let flags = seg[14 + 20 + 13];
                assert_eq!(flags & TCP_FIN != 0, last, "FIN only on the last");
                assert_eq!(flags & TCP_CWR != 0, k == 0, "CWR only on the first");
                assert!(checksum::verify(&seg[14..34]), "IP checksum of segment {k}");
                // The GRO checker verifies the TCP checksum (it refuses FIN, so clear it and
                // fix the checksum up for that check alone).
                if flags & (TCP_FIN | TCP_CWR) == 0 {
                    let s = tcp_segment(&seg, Framing::Ethernet)
                        .unwrap_or_else(|| panic!("segment {k} invalid"));
                    assert_eq!(s.seq, 0xffff_fff0u32.wrapping_add((k * mss) as u32));
                }
                let id = u16::from_be_bytes([seg[18], seg[19]]);
                assert_eq!(id, 0xfffeu16.wrapping_add(k as u16));
            }
            assert_eq!(stream, f[f.len() - payload..]);
            assert!(segment(&f, &t, t.segments(), &mut out).is_none());
        }
    }

    /// Left partial (remote checksum offload), a segment is the same but for its TCP checksum
    /// field, which holds the pseudo-header sum: completing it gives the full checksum, the
    /// GRO side takes the segment only as partial at its TCP header, and the run it starts
    /// hands it back as partial.
    #[test]
    fn a_segment_left_partial_completes_to_the_full_checksum() {
        for (payload, mss, vlan) in [(3001, 1398, false), (2797, 1398, true)] {
            let f = super_frame(payload, 0x18, vlan);
            let t = tso_frame(&vnet(mss as u16), &f).unwrap();
            let (mut full, mut partial) = ([0u8; MAX_HEADER], [0u8; MAX_HEADER]);
            let field = t.l4 + 16;
            for k in 0..t.segments() {
                let r = segment(&f, &t, k, &mut full).unwrap();
                assert_eq!(segment_of(&f, &t, k, &mut partial, true), Some(r.clone()));
                assert_eq!(full[..field], partial[..field], "segment {k}");
                assert_eq!(full[field + 2..t.hdr_len], partial[field + 2..t.hdr_len]);
                let mut seg = partial[..t.hdr_len].to_vec();
                seg.extend_from_slice(&f[r]);
                let p = Partial {
                    start: t.l4,
                    offset: 16,
                };
                assert_eq!(p.complete(&seg).to_be_bytes(), full[field..field + 2]);
                let framing = Framing::Ethernet;
                if !vlan {
                    assert!(tcp_segment(&seg, framing).is_none(), "not a checksum");
                    let s = tcp_segment_of(&seg, framing, Some(p)).unwrap();
                    assert!(s.partial);
                    let udp = Partial { offset: 6, ..p };
                    assert!(tcp_segment_of(&seg, framing, Some(udp)).is_none());
                    let mut run = TcpRun::new(framing);
                    run.start(0, (0, 0), &s);
                    assert_eq!(run.flushed_partial(0), Some(p));
                    assert_eq!(run.flushed_partial(1), None);
                }
            }
        }
    }

    #[test]
    fn every_segment_checksum_verifies() {
        for (payload, mss) in [(3001, 1398), (65_000, 1448), (2797, 1398), (1, 536)] {
            let f = super_frame(payload, 0x18 | TCP_FIN | TCP_CWR, false);
            let t = tso_frame(&vnet(mss as u16), &f).unwrap();
            let mut out = [0u8; MAX_HEADER];
            for k in 0..t.segments() {
                let r = segment(&f, &t, k, &mut out).unwrap();
                let mut seg = out[..t.hdr_len].to_vec();
                seg.extend_from_slice(&f[r]);
                let tcp_len = (seg.len() - 34) as u16;
                let p = checksum::pseudo_header(
                    Ipv4Addr::new(10, 0, 0, 1),
                    Ipv4Addr::new(10, 0, 0, 2),
                    6,
                    tcp_len,
                );
                assert_eq!(
                    checksum::fold(checksum::add(p, checksum::sum(&seg[34..]))),
                    0xffff,
                    "payload {payload} mss {mss} segment {k}"
                );
                assert_eq!(usize::from(be16(&seg, 16)), seg.len() - 14);
            }
        }
    }

    /// A TCP/IPv6 super-frame built by etherparse (an independent encoder; its TCP checksum,
    /// complete here, is ignored by `segment`), with a timestamp option, ACK, PSH, CWR (and
    /// FIN when `fin`) and `payload` bytes; behind one VLAN tag when `vlan`.
    fn super_frame6(payload: usize, fin: bool, vlan: bool) -> Vec<u8> {
        let data: Vec<u8> = (0..payload).map(|i| (i * 7 % 251) as u8).collect();
        let src = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let opts = [
            etherparse::TcpOptionElement::Noop,
            etherparse::TcpOptionElement::Noop,
            etherparse::TcpOptionElement::Timestamp(9, 3),
        ];
        let write = |b: etherparse::PacketBuilderStep<etherparse::IpHeaders>| {
            let mut t = b
                .tcp(1234, 80, 0xffff_fff0, 512)
                .ack(7)
                .psh()
                .cwr()
                .options(&opts)
                .unwrap();
            if fin {
                t = t.fin();
            }
            let mut f = vec![0u8; t.size(data.len())];
            t.write_to_slice(&mut f, &data).unwrap();
            f
        };
        let eth = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        if vlan {
            let tag = etherparse::VlanId::try_new(7).unwrap();
            write(eth.single_vlan(tag).ipv6(src, dst, 64))
        } else {
            write(eth.ipv6(src, dst, 64))
        }
    }

    fn vnet6(mss: u16) -> [u8; VNET_HDR_LEN] {
        let mut v = vnet(mss);
        v[1] = VIRTIO_NET_HDR_GSO_TCPV6;
        v
    }

    #[test]
    fn ipv6_segments_decode_and_rebuild_the_stream() {
        for (payload, mss, vlan) in [
            (3000, 1378, false),
            (1378 * 3, 1378, true),
            (10, 1378, false),
            (65_000, 1428, false),
        ] {
            let f = super_frame6(payload, true, vlan);
            let t = tso_frame(&vnet6(mss as u16), &f).unwrap();
            assert!(t.v6);
            assert_eq!(t.segments(), payload.div_ceil(mss));
            let mut stream = Vec::new();
            let mut out = [0u8; MAX_HEADER];
            for k in 0..t.segments() {
                let r = segment(&f, &t, k, &mut out).unwrap();
                let mut seg = out[..t.hdr_len].to_vec();
                seg.extend_from_slice(&f[r]);
                let p = etherparse::SlicedPacket::from_ethernet(&seg)
                    .unwrap_or_else(|e| panic!("segment {k}: {e}"));
                let Some(etherparse::NetSlice::Ipv6(ip)) = p.net else {
                    panic!("segment {k} is not IPv6");
                };
                let Some(etherparse::TransportSlice::Tcp(tcp)) = p.transport else {
                    panic!("segment {k} is not TCP");
                };
                let last = k + 1 == t.segments();
                assert_eq!(
                    usize::from(ip.header().payload_length()),
                    seg.len() - (t.l4),
                    "payload length of segment {k}"
                );
                assert_eq!(
                    tcp.sequence_number(),
                    0xffff_fff0u32.wrapping_add((k * mss) as u32)
                );
                assert_eq!(tcp.fin(), last, "FIN only on the last");
                assert_eq!(tcp.psh(), last, "PSH only on the last");
                assert_eq!(tcp.cwr(), k == 0, "CWR only on the first");
                let (s, d) = (ip.header().source(), ip.header().destination());
                assert_eq!(
                    tcp.checksum(),
                    tcp.calc_checksum_ipv6(s, d).unwrap(),
                    "TCP checksum of segment {k}"
                );
                stream.extend_from_slice(tcp.payload());
            }
            assert_eq!(stream, f[f.len() - payload..]);
            assert!(segment(&f, &t, t.segments(), &mut out).is_none());
        }
    }

    #[test]
    fn ipv6_it_cannot_segment_is_refused() {
        let f = super_frame6(3000, false, false);
        assert!(tso_frame(&vnet6(1378), &f).is_some());
        // The other GSO type for the frame's IP version, in both directions.
        assert!(tso_frame(&vnet(1378), &f).is_none());
        assert!(tso_frame(&vnet6(1378), &super_frame(3000, 0x10, false)).is_none());
        // An extension header (hop-by-hop) before TCP, a jumbogram's zero length, truncation.
        let mut ext = f.clone();
        ext[14 + 6] = 0;
        assert!(tso_frame(&vnet6(1378), &ext).is_none());
        let mut jumbo = f.clone();
        jumbo[14 + 4..14 + 6].fill(0);
        assert!(tso_frame(&vnet6(1378), &jumbo).is_none());
        for n in 0..100 {
            assert!(tso_frame(&vnet6(1378), &f[..n]).is_none());
        }
    }

    #[test]
    fn refuses_what_it_cannot_segment() {
        let f = super_frame(3000, 0x10, false);
        let mut v = vnet(1398);
        assert!(tso_frame(&v, &f).is_some());
        v[1] = VIRTIO_NET_HDR_GSO_TCPV6; // not an IPv6 frame
        assert!(tso_frame(&v, &f).is_none());
        assert!(tso_frame(&vnet(0), &f).is_none());
        let mut udp = f.clone();
        udp[14 + 9] = 17;
        assert!(tso_frame(&vnet(1398), &udp).is_none());
        for n in 0..80 {
            assert!(tso_frame(&vnet(1398), &f[..n]).is_none());
        }
    }
}
