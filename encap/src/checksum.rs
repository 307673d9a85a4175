//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Sums are carried in a `u64` accumulator with end-around carry and folded to 16 bits only at the
//! end, so callers can add precomputed partial sums (a header template, a pseudo-header) to the sum
//! of a payload. Because 2^16 ≡ 1 (mod 2^16 − 1), adding wider big-endian words gives the same
//! folded result as adding 16-bit words: that is what makes [`sum`] fast.
//!
//! Hand-written rather than borrowed: the crates that have it (smoltcp, etherparse) either expose only
//! a whole-buffer checksum or tie it to their own packet types, and the encapsulation hot path needs
//! to combine a precomputed template sum with per-packet fields.

use core::net::{Ipv4Addr, Ipv6Addr};

/// Adds `b` to `a` with end-around carry (one's complement addition on 64 bits).
#[inline]
pub const fn add(a: u64, b: u64) -> u64 {
    let (s, carry) = a.overflowing_add(b);
    s + carry as u64
}

/// The one's complement sum of `data` (16-bit big-endian words; an odd last byte is padded with
/// zero), not yet folded or complemented.
#[inline]
pub fn sum(data: &[u8]) -> u64 {
    // Headers (20-36 bytes) are fastest with a short carry chain; payloads with the wide loop.
    if data.len() <= 40 {
        sum_short(data)
    } else {
        sum_long(data)
    }
}

/// Big-endian 64-bit words added with end-around carry.
#[inline]
fn sum_short(data: &[u8]) -> u64 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        acc = add(
            acc,
            u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
        );
    }
    add(acc, sum_tail(chunks.remainder()))
}

/// 32-bit words loaded in native byte order and added into two plain `u64` accumulators
/// (independent additions the compiler vectorises; no carry or byte swap inside the loop), block
/// by block so they cannot overflow. The one's complement sum is byte-order independent (RFC 1071
/// §2(B)): the folded native sum, byte-swapped to big-endian, is the big-endian sum.
fn sum_long(data: &[u8]) -> u64 {
    // 2^18 words of at most 2^32 - 1 per accumulator stay far below 2^64.
    const BLOCK: usize = 1 << 20;
    let mut acc: u64 = 0;
    for block in data.chunks(BLOCK) {
        let (mut a, mut b) = (0u64, 0u64);
        let mut chunks = block.chunks_exact(8);
        for c in &mut chunks {
            a += u64::from(u32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
            b += u64::from(u32::from_ne_bytes([c[4], c[5], c[6], c[7]]));
        }
        acc = add(acc, u64::from(u16::from_be(fold(add(a, b)))));
        acc = add(acc, sum_tail(chunks.remainder()));
    }
    acc
}

/// The sum of the last 0-7 bytes. They keep their 16-bit alignment and only the byte parity matters
/// to the folded sum (2^16 ≡ 1), so the 4- and 2-byte pieces need no shift and a last odd byte is a
/// high byte.
#[inline]
fn sum_tail(mut rest: &[u8]) -> u64 {
    let mut acc = 0u64;
    if rest.len() >= 4 {
        acc += u64::from(u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]));
        rest = &rest[4..];
    }
    if rest.len() >= 2 {
        acc += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let [last] = rest {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a 64-bit one's complement sum to 16 bits (not complemented).
#[inline]
pub const fn fold(mut acc: u64) -> u16 {
    acc = (acc >> 32) + (acc & 0xffff_ffff);
    acc = (acc >> 32) + (acc & 0xffff_ffff);
    acc = (acc >> 16) + (acc & 0xffff);
    acc = (acc >> 16) + (acc & 0xffff);
    acc as u16
}

/// The checksum field value for a sum: the complement of the folded sum.
#[inline]
pub const fn finish(acc: u64) -> u16 {
    !fold(acc)
}

/// A computed UDP checksum as it is sent: zero, which would mean "no checksum", goes as all ones
/// (RFC 768; RFC 8200 §8.1).
#[inline]
pub const fn udp_field(c: u16) -> u16 {
    if c == 0 { 0xffff } else { c }
}

/// The RFC 1071 checksum of `data`: the value to store in a zeroed checksum field.
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data))
}

/// True when `data` (which includes its checksum field) sums to all ones, i.e. verifies.
pub fn verify(data: &[u8]) -> bool {
    fold(sum(data)) == 0xffff
}

/// The sum of the IPv4 pseudo-header used by UDP and TCP (RFC 768): addresses, protocol, length.
#[inline]
pub const fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u16) -> u64 {
    u32::from_be_bytes(src.octets()) as u64
        + u32::from_be_bytes(dst.octets()) as u64
        + protocol as u64
        + len as u64
}

/// The sum of the IPv6 pseudo-header used by ICMPv6, UDP and TCP (RFC 8200 §8.1): addresses,
/// upper-layer length, next header.
#[inline]
pub fn pseudo_header6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: u32) -> u64 {
    add(
        add(sum(&src.octets()), sum(&dst.octets())),
        u64::from(len) + u64::from(next_header),
    )
}

/// Updates checksum field `hc` after a 16-bit word changed from `old` to `new` (RFC 1624 eqn. 3:
/// `HC' = ~(~HC + ~m + m')`), without touching the rest of the data.
#[inline]
pub const fn update(hc: u16, old: u16, new: u16) -> u16 {
    let acc = (!hc) as u64 + (!old) as u64 + new as u64;
    !fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain 16-bit reference sum of RFC 1071 §4.1, to check the wide version against.
    fn reference(data: &[u8]) -> u16 {
        let mut acc: u64 = 0;
        let mut i = 0;
        while i + 1 < data.len() {
            acc += u64::from(u16::from_be_bytes([data[i], data[i + 1]]));
            i += 2;
        }
        if i < data.len() {
            acc += u64::from(data[i]) << 8;
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&d)), 0xddf2);
        assert_eq!(checksum(&d), !0xddf2);
    }

    #[test]
    fn several_blocks_and_odd_tails() {
        // Past the 1 MiB block size, with every tail length, from odd and even starts.
        let data: std::vec::Vec<u8> = (0..(3 << 20) + 7)
            .map(|i: usize| (i * 7 + i / 251) as u8)
            .collect();
        for cut in 0..8 {
            assert_eq!(
                checksum(&data[cut..]),
                reference(&data[cut..]),
                "start {cut}"
            );
            let end = data.len() - cut;
            assert_eq!(checksum(&data[..end]), reference(&data[..end]), "end {end}");
        }
    }

    #[test]
    fn known_ipv4_header() {
        // A header from the Wikipedia IPv4 checksum example; its checksum is b861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert!(verify(&h));
    }

    proptest::proptest! {
        #[test]
        fn wide_sum_matches_reference(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            proptest::prop_assert_eq!(checksum(&data), reference(&data));
            // Both loops, whatever the length.
            proptest::prop_assert_eq!(finish(sum_short(&data)), reference(&data));
            proptest::prop_assert_eq!(finish(sum_long(&data)), reference(&data));
        }

        #[test]
        fn incremental_matches_recompute(
            mut data in proptest::collection::vec(proptest::num::u8::ANY, 4..64),
            word in 0usize..30, new in proptest::num::u16::ANY,
        ) {
            let len = data.len() & !1;
            data.truncate(len);
            let idx = (word % (len / 2)) * 2;
            let hc = checksum(&data);
            let old = u16::from_be_bytes([data[idx], data[idx + 1]]);
            data[idx..idx + 2].copy_from_slice(&new.to_be_bytes());
            let want = checksum(&data);
            let got = update(hc, old, new);
            // One's complement has two zeros (0x0000 and 0xffff); they are the same checksum.
            let zero = |c: u16| c == 0 || c == 0xffff;
            proptest::prop_assert!(got == want || (zero(got) && zero(want)));
        }
    }
}
