//! Packets the dataplane tests feed in: an IPv4/UDP packet and a TCP/IPv4 or TCP/IPv6 segment
//! with valid checksums. Include it with `mod packet_support;`.

#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};

/// An IPv4/UDP packet of `len` bytes from `src` to `dst` with TOS `tos` and DF, its header
/// checksum valid, tagged `tag` in its last byte.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, len: usize, tos: u8, tag: u8) -> Vec<u8> {
    let mut p = vec![0u8; len];
    encap::ipv4::Ipv4Repr {
        src,
        dst,
        protocol: 17,
        tos,
        ident: 7,
        dont_frag: true,
        ttl: 64,
        payload_len: len - 20,
    }
    .emit(&mut p)
    .unwrap();
    p[len - 1] = tag;
    p
}

/// A TCP/IPv4 segment (ACK only, no options) from `src`:1234 to `dst`:80 with `payload` bytes at
/// sequence `seq` (each byte `seq + its offset`, so a stream's bytes say where they belong),
/// both checksums valid.
pub fn tcp(src: Ipv4Addr, dst: Ipv4Addr, seq: u32, payload: usize) -> Vec<u8> {
    let mut p = vec![0u8; 40 + payload];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = encap::checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&1234u16.to_be_bytes());
    p[22..24].copy_from_slice(&80u16.to_be_bytes());
    p[24..28].copy_from_slice(&seq.to_be_bytes());
    p[32] = 5 << 4;
    p[33] = 0x10;
    p[34..36].copy_from_slice(&512u16.to_be_bytes());
    for (i, b) in p[40..].iter_mut().enumerate() {
        *b = (seq as usize + i) as u8;
    }
    let ps = encap::checksum::pseudo_header(src, dst, 6, (20 + payload) as u16);
    let c = encap::checksum::finish(encap::checksum::add(ps, encap::checksum::sum(&p[20..])));
    p[36..38].copy_from_slice(&c.to_be_bytes());
    p
}

/// [`tcp`] over IPv6 (hop limit 64, TCP right behind the IPv6 header), built by etherparse.
pub fn tcp6(src: Ipv6Addr, dst: Ipv6Addr, seq: u32, payload: usize) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv6(src.octets(), dst.octets(), 64)
        .tcp(1234, 80, seq, 512)
        .ack(0);
    let data: Vec<u8> = (0..payload).map(|i| (seq as usize + i) as u8).collect();
    let mut p = vec![0u8; b.size(payload)];
    b.write_to_slice(&mut p, &data).unwrap();
    p
}
