//! Frames and packets decoded from a fuzz input: either raw bytes, or built from fields picked
//! out of small pools (so that addresses match the engines' configuration often enough for the
//! fuzzer to get past the first checks), with the variable parts still raw.

use crate::input::{Input, Writer};
use encap::MacAddr;
use encap::ipv4::Ipv4Packet;
use std::net::Ipv4Addr;

/// Ethertypes a structured frame picks from.
pub const ETHERTYPES: [u16; 4] = [0x0800, 0x0806, 0x86dd, 0x8100];

/// How [`frame`] builds a frame (the first byte of its encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Raw bytes.
    Raw = 0,
    /// An Ethernet header from the pools, then a raw payload.
    Eth = 1,
    /// An Ethernet/IPv4 ARP packet, every field from the pools.
    Arp = 2,
    /// An Ethernet header from the pools, then an IPv4 header (addresses from the pool, length
    /// and checksum right), then a raw payload.
    Ipv4 = 3,
}

/// A frame: raw, or Ethernet (+ ARP or IPv4) from the pools.
pub fn frame(inp: &mut Input<'_>, macs: &[MacAddr], ips: &[Ipv4Addr]) -> Vec<u8> {
    match inp.u8() % 4 {
        0 => inp.bytes().to_vec(),
        1 => {
            let mut f = eth(inp, macs);
            let t = inp.u8();
            let et = ETHERTYPES
                .get(usize::from(t))
                .copied()
                .unwrap_or_else(|| inp.u16());
            f.extend_from_slice(&et.to_be_bytes());
            f.extend_from_slice(inp.bytes());
            f
        }
        2 => {
            let mut f = eth(inp, macs);
            f.extend_from_slice(&0x0806u16.to_be_bytes());
            f.extend_from_slice(&arp(inp, macs, ips));
            f
        }
        _ => {
            let mut f = eth(inp, macs);
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            f.extend_from_slice(&ipv4(inp, ips));
            f
        }
    }
}

fn eth(inp: &mut Input<'_>, macs: &[MacAddr]) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&inp.mac(macs).0);
    f.extend_from_slice(&inp.mac(macs).0);
    f
}

/// A 28-byte ARP packet: operation (1, 2 or raw), addresses from the pools.
pub fn arp(inp: &mut Input<'_>, macs: &[MacAddr], ips: &[Ipv4Addr]) -> Vec<u8> {
    let op = match inp.u8() % 4 {
        0 | 1 => 1,
        2 => 2,
        _ => inp.u16(),
    };
    let mut a = vec![0, 1, 8, 0, 6, 4];
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&inp.mac(macs).0);
    a.extend_from_slice(&inp.ip(ips).octets());
    a.extend_from_slice(&inp.mac(macs).0);
    a.extend_from_slice(&inp.ip(ips).octets());
    a
}

/// An IPv4 packet: flags byte (bit 0: leave the checksum as decoded; bit 1: leave the total
/// length as decoded), TOS, TTL, protocol, source and destination from the pool, then the raw
/// payload (bytes behind a length), everything else of the header zero (DF set by bit 2).
pub fn ipv4(inp: &mut Input<'_>, ips: &[Ipv4Addr]) -> Vec<u8> {
    let flags = inp.u8();
    let tos = inp.u8();
    let ttl = inp.u8();
    let proto = inp.u8();
    let src = inp.ip(ips);
    let dst = inp.ip(ips);
    let payload = inp.bytes();
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[1] = tos;
    let len = (20 + payload.len()).min(usize::from(u16::MAX)) as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    if flags & 4 != 0 {
        p[6] = 0x40;
    }
    p[8] = ttl;
    p[9] = proto;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    if flags & 2 != 0 {
        // A wrong total length, as decoded from the payload's first two bytes.
        let l = [
            p.get(20).copied().unwrap_or(0),
            p.get(21).copied().unwrap_or(0),
        ];
        p[2..4].copy_from_slice(&l);
    }
    if flags & 1 == 0 {
        let c = encap::checksum::checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// Encodes a raw frame for [`frame`].
pub fn write_raw(w: &mut Writer, f: &[u8]) {
    w.u8(FrameKind::Raw as u8).bytes(f);
}

/// Encodes an ARP frame for [`frame`] (all addresses raw).
#[allow(clippy::too_many_arguments)]
pub fn write_arp(
    w: &mut Writer,
    dst: MacAddr,
    src: MacAddr,
    op: u16,
    sha: MacAddr,
    spa: Ipv4Addr,
    tha: MacAddr,
    tpa: Ipv4Addr,
) {
    w.u8(FrameKind::Arp as u8).mac(dst).mac(src);
    match op {
        1 => w.u8(0),
        2 => w.u8(2),
        o => w.u8(3).u16(o),
    };
    w.mac(sha).ip(spa).mac(tha).ip(tpa);
}

/// Encodes an IPv4 frame for [`frame`] (valid length and checksum, DF set, raw addresses).
#[allow(clippy::too_many_arguments)]
pub fn write_ipv4(
    w: &mut Writer,
    dst: MacAddr,
    src: MacAddr,
    tos: u8,
    ttl: u8,
    proto: u8,
    ip_src: Ipv4Addr,
    ip_dst: Ipv4Addr,
    payload: &[u8],
) {
    w.u8(FrameKind::Ipv4 as u8).mac(dst).mac(src);
    write_ipv4_packet(w, tos, ttl, proto, ip_src, ip_dst, payload);
}

/// Encodes an IPv4 packet for [`ipv4`] (valid length and checksum, DF set, raw addresses).
pub fn write_ipv4_packet(
    w: &mut Writer,
    tos: u8,
    ttl: u8,
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    payload: &[u8],
) {
    w.u8(4)
        .u8(tos)
        .u8(ttl)
        .u8(proto)
        .ip(src)
        .ip(dst)
        .bytes(payload);
}

/// Recomputes the IPv4 header checksum at `at` (when the header is all there), so that mutated
/// inputs get past the checksum gate; returns the header length.
pub fn fix_ipv4_checksum(buf: &mut [u8], at: usize) -> Option<usize> {
    let ip = buf.get_mut(at..)?;
    let hl = usize::from(*ip.first()? & 0x0f) * 4;
    if hl < 20 || hl > ip.len() {
        return None;
    }
    Ipv4Packet::new_unchecked(ip).fill_checksum();
    Some(hl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_frames_decode_as_encoded() {
        let m1 = MacAddr([2, 0, 0, 0, 0, 1]);
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        let mut w = Writer::new();
        write_arp(&mut w, MacAddr::BROADCAST, m1, 1, m1, ip, MacAddr::ZERO, ip);
        let f = frame(&mut Input::new(&w.finish()), &[], &[]);
        assert_eq!(f.len(), 42);
        assert_eq!(&f[12..14], &[8, 6]);
        let mut w = Writer::new();
        write_ipv4(&mut w, m1, m1, 3, 64, 17, ip, ip, &[1, 2, 3]);
        let f = frame(&mut Input::new(&w.finish()), &[], &[]);
        assert_eq!(f.len(), 14 + 23);
        assert!(encap::checksum::verify(&f[14..34]));
        assert_eq!(f[14 + 6], 0x40);
    }
}
