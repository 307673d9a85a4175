//! Transmit offload for an L2 (TAP) device: with TSO on, the kernel hands over TCP/IPv4
//! super-frames (up to 64 KiB, one read) with a virtio-net header; the worker cuts them into
//! MSS-sized segments here, each an ordinary Ethernet frame, before encapsulation.
//!
//! tun-rs's segmentation helpers work on IP packets (TUN) and fail on Ethernet frames, hence
//! this Ethernet-aware variant. A segment keeps the super-frame's payload where it is (it is
//! sent from there); only its headers are built, in a small buffer: Ethernet as read, IPv4 with
//! its total length, an ID counting up from the super-frame's and a fresh checksum, TCP with its
//! sequence number, FIN/PSH only on the last segment, CWR only on the first, and a full checksum
//! (the kernel left it partial).

use super::batch_gro::{MAX_HEADER, VNET_HDR_LEN};
use encap::checksum;
use std::net::Ipv4Addr;
use std::ops::Range;

const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// A TCP/IPv4 super-frame to segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsoFrame {
    /// Offset of the IPv4 header (14, or 18 behind one 802.1Q tag).
    pub l3: usize,
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

fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

/// Whether `vnet` asks for TCPv4 segmentation.
pub fn is_tso(vnet: &[u8]) -> bool {
    vnet.len() >= VNET_HDR_LEN && vnet[1] & 0x7f == VIRTIO_NET_HDR_GSO_TCPV4
}

/// The super-frame `frame` described by `vnet`, if it is a TCP/IPv4 one we can segment:
/// Ethernet (at most one VLAN tag), IPv4, TCP, a non-zero segment size that leaves every
/// segment's headers within [`MAX_HEADER`].
pub fn tso_frame(vnet: &[u8], frame: &[u8]) -> Option<TsoFrame> {
    if !is_tso(vnet) || vnet[1] & 0x80 != 0 {
        return None; // not TCPv4, or the ECN variant (never asked for)
    }
    let mss = usize::from(u16::from_le_bytes([vnet[4], vnet[5]]));
    let l3 = match be16(frame.get(..14)?, 12) {
        0x0800 => 14,
        0x8100 if frame.len() >= 18 && be16(frame, 16) == 0x0800 => 18,
        _ => return None,
    };
    let ip = frame.get(l3..l3 + 20)?;
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != 6 {
        return None;
    }
    let l4 = l3 + ihl;
    let doff = usize::from(frame.get(l4 + 12)? >> 4) * 4;
    let hdr_len = l4 + doff;
    if doff < 20 || hdr_len > MAX_HEADER || hdr_len > frame.len() || mss == 0 {
        return None;
    }
    // The IP length covers the whole super-frame (trailing bytes past it are padding).
    let ip_end = l3 + usize::from(be16(ip, 2));
    if ip_end <= hdr_len || ip_end > frame.len() {
        return None;
    }
    let payload = ip_end - hdr_len;
    Some(TsoFrame {
        l3,
        l4,
        hdr_len,
        mss,
        payload,
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
    let n = t.segments();
    if k >= n || frame.len() < t.hdr_len + t.payload {
        return None;
    }
    let start = t.hdr_len + k * t.mss;
    let end = (start + t.mss).min(t.hdr_len + t.payload);
    let h = t.hdr_len;
    out[..h].copy_from_slice(&frame[..h]);
    let (l3, l4) = (t.l3, t.l4);
    // IPv4: total length, ID + k, checksum.
    let ip_len = u16::try_from(h - l3 + (end - start)).ok()?;
    out[l3 + 2..l3 + 4].copy_from_slice(&ip_len.to_be_bytes());
    let id = be16(frame, l3 + 4).wrapping_add(k as u16);
    out[l3 + 4..l3 + 6].copy_from_slice(&id.to_be_bytes());
    out[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
    let ip_sum = checksum::checksum(&out[l3..l4]);
    out[l3 + 10..l3 + 12].copy_from_slice(&ip_sum.to_be_bytes());
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
    let src = Ipv4Addr::new(out[l3 + 12], out[l3 + 13], out[l3 + 14], out[l3 + 15]);
    let dst = Ipv4Addr::new(out[l3 + 16], out[l3 + 17], out[l3 + 18], out[l3 + 19]);
    let tcp_len = u16::try_from(h - l4 + (end - start)).ok()?;
    let acc = checksum::add(
        checksum::add(
            checksum::pseudo_header(src, dst, 6, tcp_len),
            checksum::sum(&out[l4..h]),
        ),
        checksum::sum(&frame[start..end]),
    );
    out[l4 + 16..l4 + 18].copy_from_slice(&checksum::finish(acc).to_be_bytes());
    Some(start..end)
}

#[cfg(test)]
mod tests {
    use super::super::batch_gro::{Framing, tcp_segment};
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

    #[test]
    fn refuses_what_it_cannot_segment() {
        let f = super_frame(3000, 0x10, false);
        let mut v = vnet(1398);
        assert!(tso_frame(&v, &f).is_some());
        v[1] = 4; // TCPv6
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
