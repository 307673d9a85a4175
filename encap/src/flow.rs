//! Looking into an inner frame: its IP TOS/TTL (for DSCP, ECN and TTL inheritance) and a flow hash
//! (for the VXLAN UDP source port, so that underlay ECMP spreads flows; RFC 7348 §5).
//!
//! The hash covers the L2 addresses, the VLAN id and the ethertype, then, when the frame carries
//! a readable IPv4 or IPv6 header, the addresses and protocol, and for an unfragmented TCP, UDP or
//! SCTP packet the two ports. It is deterministic (no per-process seed) so that a flow keeps its
//! source port across restarts and between workers. It is a small multiply-xorshift mix, not a
//! cryptographic hash: an attacker who chooses inner headers can choose the outer source port anyway.
//!
//! Inspection is best-effort and never fails: a frame whose IP header is short or has the wrong
//! version is treated as non-IP (hashed on its L2 fields, DSCP 0, Not-ECT).

use crate::error::{Error, Invalid, Layer, Result};
use crate::ethernet::{self, ethertype};
use crate::ipv4::protocol;

/// Multiplier of the mix (2^64 / golden ratio, odd).
const K: u64 = 0x9e37_79b9_7f4a_7c15;

/// A tiny deterministic hasher over 64-bit words.
#[derive(Debug, Clone, Copy)]
struct FlowHasher(u64);

impl FlowHasher {
    #[inline]
    fn word(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(K).rotate_left(31);
    }
    /// The murmur3 64-bit finaliser, folded to 32 bits.
    #[inline]
    fn finish(self) -> u32 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        h as u32
    }
}

/// Reads 8 bytes at `i` as a big-endian word (the caller has checked the length).
#[inline]
fn be64(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_be_bytes(w)
}

/// Reads 4 bytes at `i` as a big-endian word (the caller has checked the length).
#[inline]
fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// What an inner IP header says about the outer header it should get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpInfo {
    /// The TOS (IPv4) or traffic class (IPv6) byte.
    pub tos: u8,
    /// TTL or hop limit.
    pub ttl: u8,
    /// Offset of the IP header in the frame.
    pub offset: usize,
    /// True for IPv4, false for IPv6.
    pub is_ipv4: bool,
    /// The packet may not be fragmented on its way: IPv4 with DF set, and every IPv6 packet
    /// (routers never fragment IPv6). What an inherited outer DF copies.
    pub dont_frag: bool,
}

/// The result of looking into an inner Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// Flow hash (see the module docs).
    pub hash: u32,
    /// The inner IP header's fields, when there is a readable one.
    pub ip: Option<IpInfo>,
}

/// Finds a readable IPv4/IPv6 header in an Ethernet frame (VLAN-aware) without hashing.
#[inline]
pub fn frame_ip(frame: &[u8]) -> Option<IpInfo> {
    let (l3, etype) = l3_offset(frame)?;
    ip_at(frame, l3, etype)
}

/// The L3 offset and ethertype of a frame, after at most one 802.1Q tag.
#[inline]
fn l3_offset(frame: &[u8]) -> Option<(usize, u16)> {
    if frame.len() < ethernet::HEADER_LEN {
        return None;
    }
    let t = u16::from_be_bytes([frame[12], frame[13]]);
    if t != ethertype::VLAN {
        return Some((ethernet::HEADER_LEN, t));
    }
    if frame.len() < ethernet::TAGGED_HEADER_LEN {
        return None;
    }
    Some((
        ethernet::TAGGED_HEADER_LEN,
        u16::from_be_bytes([frame[16], frame[17]]),
    ))
}

#[inline]
fn ip_at(frame: &[u8], l3: usize, etype: u16) -> Option<IpInfo> {
    let ip = frame.get(l3..)?;
    match etype {
        ethertype::IPV4 if ip.len() >= 20 && ip[0] >> 4 == 4 => Some(IpInfo {
            tos: ip[1],
            ttl: ip[8],
            offset: l3,
            is_ipv4: true,
            dont_frag: ip[6] & 0x40 != 0,
        }),
        ethertype::IPV6 if ip.len() >= 40 && ip[0] >> 4 == 6 => Some(IpInfo {
            tos: (ip[0] << 4) | (ip[1] >> 4),
            ttl: ip[7],
            offset: l3,
            is_ipv4: false,
            dont_frag: true,
        }),
        _ => None,
    }
}

/// Looks into an inner Ethernet frame: flow hash and IP header fields. Never fails (see module docs).
#[inline]
pub fn inspect_frame(frame: &[u8]) -> FrameInfo {
    let mut h = FlowHasher(K);
    if frame.len() < ethernet::HEADER_LEN {
        // Too short to be a frame; the callers reject it before asking. Hash what is there.
        for &b in frame {
            h.word(u64::from(b));
        }
        return FrameInfo {
            hash: h.finish(),
            ip: None,
        };
    }
    // dst (6) + src (6) as one 64-bit and one 32-bit word.
    h.word(be64(frame, 0));
    let Some((l3, etype)) = l3_offset(frame) else {
        h.word(u64::from(be32(frame, 8)));
        return FrameInfo {
            hash: h.finish(),
            ip: None,
        };
    };
    // src tail, TPID/ethertype, and the TCI's VLAN id when tagged.
    let vid = if l3 == ethernet::TAGGED_HEADER_LEN {
        u64::from(u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff)
    } else {
        0
    };
    h.word((u64::from(be32(frame, 8)) << 32) | (vid << 16) | u64::from(etype));
    let ip = ip_at(frame, l3, etype);
    if let Some(info) = ip {
        hash_ip(&mut h, &frame[l3..], info.is_ipv4);
    }
    FrameInfo {
        hash: h.finish(),
        ip,
    }
}

/// Hashes the L3/L4 flow of a readable IP header (length already checked for the fixed header).
#[inline]
fn hash_ip(h: &mut FlowHasher, ip: &[u8], is_ipv4: bool) {
    let (proto, l4) = if is_ipv4 {
        // Addresses (8 bytes at 12) and protocol.
        h.word(be64(ip, 12));
        let proto = ip[9];
        h.word(u64::from(proto));
        let unfragmented = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff == 0;
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        (
            proto,
            if unfragmented && ihl >= 20 {
                Some(ihl)
            } else {
                None
            },
        )
    } else {
        // Addresses (32 bytes at 8), next header and the flow label.
        for i in (8..40).step_by(8) {
            h.word(be64(ip, i));
        }
        let proto = ip[6];
        h.word((u64::from(proto) << 32) | u64::from(be32(ip, 0) & 0x000f_ffff));
        (proto, Some(40))
    };
    if let Some(off) = l4 {
        if matches!(proto, protocol::TCP | protocol::UDP | protocol::SCTP) && ip.len() >= off + 4 {
            h.word(u64::from(be32(ip, off)));
        }
    }
}

/// An inclusive range of UDP source ports to map flow hashes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    lo: u16,
    hi: u16,
}

impl PortRange {
    /// The default range, 49152-65535 (the IANA dynamic ports, as RFC 7348 §5 recommends).
    pub const DEFAULT: PortRange = PortRange {
        lo: 49152,
        hi: 65535,
    };

    /// A range `lo..=hi`; an error when it is empty or starts at port 0.
    pub const fn new(lo: u16, hi: u16) -> Result<PortRange> {
        if lo == 0 || lo > hi {
            Err(Error::invalid(Layer::Udp, Invalid::PortRange))
        } else {
            Ok(PortRange { lo, hi })
        }
    }
    /// Lowest port.
    pub const fn lo(&self) -> u16 {
        self.lo
    }
    /// Highest port.
    pub const fn hi(&self) -> u16 {
        self.hi
    }
    /// Maps a hash uniformly into the range (multiply-shift, as Linux's `udp_flow_src_port`).
    #[inline]
    pub const fn pick(&self, hash: u32) -> u16 {
        let span = (self.hi - self.lo) as u64 + 1;
        self.lo + ((hash as u64 * span) >> 32) as u16
    }
}

impl Default for PortRange {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(vlan: Option<u16>, sport: u16) -> [u8; 64] {
        let mut f = [0u8; 64];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        let l3 = match vlan {
            Some(v) => {
                f[12..14].copy_from_slice(&[0x81, 0]);
                f[14..16].copy_from_slice(&v.to_be_bytes());
                f[16..18].copy_from_slice(&[8, 0]);
                18
            }
            None => {
                f[12..14].copy_from_slice(&[8, 0]);
                14
            }
        };
        f[l3] = 0x45;
        f[l3 + 1] = 0xb9;
        f[l3 + 8] = 33;
        f[l3 + 9] = protocol::UDP;
        f[l3 + 12..l3 + 20].copy_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        f[l3 + 20..l3 + 22].copy_from_slice(&sport.to_be_bytes());
        f[l3 + 22..l3 + 24].copy_from_slice(&53u16.to_be_bytes());
        f
    }

    #[test]
    fn reads_ip_fields_through_a_vlan_tag() {
        for (vlan, off) in [(None, 14), (Some(7), 18)] {
            let info = inspect_frame(&frame(vlan, 1000));
            assert_eq!(
                info.ip,
                Some(IpInfo {
                    tos: 0xb9,
                    ttl: 33,
                    offset: off,
                    is_ipv4: true,
                    dont_frag: false,
                })
            );
            assert_eq!(frame_ip(&frame(vlan, 1000)), info.ip);
        }
    }

    #[test]
    fn hash_depends_on_ports_vlan_and_is_deterministic() {
        let a = inspect_frame(&frame(None, 1000)).hash;
        assert_eq!(a, inspect_frame(&frame(None, 1000)).hash);
        assert_ne!(a, inspect_frame(&frame(None, 1001)).hash);
        assert_ne!(
            inspect_frame(&frame(Some(7), 1000)).hash,
            inspect_frame(&frame(Some(8), 1000)).hash
        );
    }

    #[test]
    fn fragments_are_hashed_without_ports() {
        let mut f1 = frame(None, 1000);
        let mut f2 = frame(None, 2000);
        for f in [&mut f1, &mut f2] {
            f[14 + 6] = 0x20; // MF
        }
        assert_eq!(inspect_frame(&f1).hash, inspect_frame(&f2).hash);
    }

    #[test]
    fn port_range_edges() {
        let r = PortRange::DEFAULT;
        assert_eq!(r.pick(0), 49152);
        assert_eq!(r.pick(u32::MAX), 65535);
        let one = PortRange::new(5000, 5000).unwrap();
        assert_eq!(one.pick(u32::MAX), 5000);
        assert!(PortRange::new(2, 1).is_err());
        assert!(PortRange::new(0, 1).is_err());
        let all = PortRange::new(1, 65535).unwrap();
        assert_eq!(all.pick(u32::MAX), 65535);
    }
}
