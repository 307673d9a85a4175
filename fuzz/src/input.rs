//! Decoding a fuzz input into values: a cursor over the bytes that never fails (past the end
//! every read is zero or empty), so every input decodes to something and small mutations of
//! the input make small changes to what is decoded. [`Writer`] is its inverse, for the seeds.

use encap::MacAddr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A cursor over a fuzz input.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    /// True when every byte was read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// One byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    /// A big-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// A big-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// A flag (the low bit of one byte).
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// Up to `n` bytes (fewer at the end).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (a, rest) = self.data.split_at(n);
        self.data = rest;
        a
    }

    /// Bytes behind a big-endian u16 length.
    pub fn bytes(&mut self) -> &'a [u8] {
        let n = usize::from(self.u16());
        self.take(n)
    }

    /// Exactly `N` bytes (zero-padded at the end).
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        let got = self.take(N);
        a[..got.len()].copy_from_slice(got);
        a
    }

    /// One of `pool` by a selector byte, or (selector 0xff) a raw address.
    /// An underlay address from `pool` (or raw after a 0xff (IPv4) or 0xfe (IPv6) selector).
    pub fn underlay(&mut self, pool: &[IpAddr]) -> IpAddr {
        match self.u8() {
            0xff => IpAddr::V4(Ipv4Addr::from(self.array::<4>())),
            0xfe => IpAddr::V6(Ipv6Addr::from(self.array::<16>())),
            _ if pool.is_empty() => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            s => pool[usize::from(s) % pool.len()],
        }
    }
    /// An IPv4 address from `pool` (or raw after a 0xff selector).
    pub fn ip(&mut self, pool: &[Ipv4Addr]) -> Ipv4Addr {
        let s = self.u8();
        if s == 0xff || pool.is_empty() {
            Ipv4Addr::from(self.array::<4>())
        } else {
            pool[usize::from(s) % pool.len()]
        }
    }

    /// One of `pool` by a selector byte, or (selector 0xff) a raw MAC.
    pub fn mac(&mut self, pool: &[MacAddr]) -> MacAddr {
        let s = self.u8();
        if s == 0xff || pool.is_empty() {
            MacAddr(self.array::<6>())
        } else {
            pool[usize::from(s) % pool.len()]
        }
    }
}

/// Writes what [`Input`] reads (for the seed corpus).
#[derive(Debug, Default, Clone)]
pub struct Writer {
    /// The bytes so far.
    pub buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Writer {
        Writer::default()
    }
    /// One byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    /// A big-endian u16.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// A big-endian u32.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Raw bytes.
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }
    /// Bytes behind a u16 length.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        let n = u16::try_from(b.len()).expect("a seed part fits 64 KiB");
        self.u16(n).raw(b)
    }
    /// An address as a raw selector (0xff then an IPv4 address, 0xfe then an IPv6 one).
    pub fn ip(&mut self, ip: impl Into<IpAddr>) -> &mut Self {
        match ip.into() {
            IpAddr::V4(a) => self.u8(0xff).raw(&a.octets()),
            IpAddr::V6(a) => self.u8(0xfe).raw(&a.octets()),
        }
    }
    /// A MAC as a raw selector (0xff, then the MAC).
    pub fn mac(&mut self, mac: MacAddr) -> &mut Self {
        self.u8(0xff).raw(&mac.0)
    }
    /// The bytes.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// Parses a hex string (whitespace ignored).
pub fn hex(s: &str) -> Vec<u8> {
    let s: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    s.chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap_or("00"), 16).unwrap_or(0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_are_zero_and_writer_is_the_inverse() {
        let mut w = Writer::new();
        w.u8(7)
            .u16(0x1234)
            .u32(9)
            .bytes(b"abc")
            .ip(Ipv4Addr::new(1, 2, 3, 4));
        let data = w.finish();
        let mut i = Input::new(&data);
        assert_eq!(i.u8(), 7);
        assert_eq!(i.u16(), 0x1234);
        assert_eq!(i.u32(), 9);
        assert_eq!(i.bytes(), b"abc");
        assert_eq!(i.ip(&[]), Ipv4Addr::new(1, 2, 3, 4));
        assert!(i.is_empty());
        assert_eq!((i.u8(), i.u32(), i.bytes()), (0, 0, &[][..]));
    }
}
