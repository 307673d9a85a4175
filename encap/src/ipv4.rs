//! IPv4 header view (RFC 791) and the DSCP/ECN parts of its TOS byte (RFC 2474, RFC 3168).
//!
//! Hand-written rather than taken from smoltcp: the tunnel code needs exact per-layer errors with
//! the missing length, the raw TOS byte, and in-place checksum updates; smoltcp's view has a unit
//! error type and a different address type, and etherparse's slices are read-only.

use crate::checksum;
use crate::error::{Error, Invalid, Layer, Result};
use core::net::Ipv4Addr;

/// Byte ranges of the header fields.
mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;
/// Largest IPv4 total length.
pub const MAX_TOTAL_LEN: usize = 0xffff;

/// The "don't fragment" flag in the flags/fragment-offset word.
const FLAG_DF: u16 = 0x4000;
/// The "more fragments" flag.
const FLAG_MF: u16 = 0x2000;
/// The fragment offset bits.
const OFFSET_MASK: u16 = 0x1fff;

/// IP protocol numbers used here.
pub mod protocol {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// IPv4-in-IPv4 (RFC 2003).
    pub const IPIP: u8 = 4;
    /// IPv6-in-IPv4 (RFC 4213).
    pub const IPV6: u8 = 41;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// SCTP.
    pub const SCTP: u8 = 132;
}

/// The two-bit ECN field (RFC 3168 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ecn {
    /// 00: not ECN-capable transport.
    NotEct = 0,
    /// 01: ECN-capable, codepoint 1.
    Ect1 = 1,
    /// 10: ECN-capable, codepoint 0.
    Ect0 = 2,
    /// 11: congestion experienced.
    Ce = 3,
}

impl Ecn {
    /// The ECN field of a TOS / traffic-class byte.
    pub const fn from_tos(tos: u8) -> Ecn {
        match tos & 3 {
            0 => Ecn::NotEct,
            1 => Ecn::Ect1,
            2 => Ecn::Ect0,
            _ => Ecn::Ce,
        }
    }
    /// The two-bit value.
    pub const fn bits(self) -> u8 {
        self as u8
    }
}

/// A read/write view of an IPv4 packet.
///
/// [`Ipv4Packet::new_checked`] validates the version, header length and total length against the
/// buffer, after which no accessor panics. The checksum is checked separately
/// ([`Ipv4Packet::verify_checksum`]). Bytes past the total length (link-layer padding) are ignored.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` without checking it (accessors may then panic; use `new_checked`).
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }
    /// Wraps `buffer`, checking version, header length and total length.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    /// Checks that the buffer holds a version-4 header and the whole packet its total length claims.
    pub fn check_len(&self) -> Result<()> {
        let got = self.buffer.as_ref().len();
        if got < HEADER_LEN {
            return Err(Error::truncated(Layer::Ipv4, HEADER_LEN, got));
        }
        if self.version() != 4 {
            return Err(Error::invalid(Layer::Ipv4, Invalid::IpVersion));
        }
        let hl = self.header_len();
        if hl < HEADER_LEN {
            return Err(Error::invalid(Layer::Ipv4, Invalid::IpHeaderLen));
        }
        if got < hl {
            return Err(Error::truncated(Layer::Ipv4, hl, got));
        }
        let tl = usize::from(self.total_len());
        if tl < hl {
            return Err(Error::invalid(Layer::Ipv4, Invalid::IpTotalLen));
        }
        if got < tl {
            return Err(Error::truncated(Layer::Ipv4, tl, got));
        }
        Ok(())
    }
    fn u16_at(&self, i: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[i], b[i + 1]])
    }
    /// Version field (4 once checked).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }
    /// Header length in bytes (IHL × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }
    /// The whole TOS byte (DSCP and ECN).
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }
    /// DSCP (upper six bits of TOS).
    pub fn dscp(&self) -> u8 {
        self.tos() >> 2
    }
    /// ECN field.
    pub fn ecn(&self) -> Ecn {
        Ecn::from_tos(self.tos())
    }
    /// Total length field.
    pub fn total_len(&self) -> u16 {
        self.u16_at(field::LENGTH.start)
    }
    /// Identification field.
    pub fn ident(&self) -> u16 {
        self.u16_at(field::IDENT.start)
    }
    /// The DF flag.
    pub fn dont_frag(&self) -> bool {
        self.u16_at(field::FLG_OFF.start) & FLAG_DF != 0
    }
    /// The MF flag.
    pub fn more_frags(&self) -> bool {
        self.u16_at(field::FLG_OFF.start) & FLAG_MF != 0
    }
    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (self.u16_at(field::FLG_OFF.start) & OFFSET_MASK) << 3
    }
    /// True for any fragment (MF set or a non-zero offset).
    pub fn is_fragment(&self) -> bool {
        self.u16_at(field::FLG_OFF.start) & (FLAG_MF | OFFSET_MASK) != 0
    }
    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }
    /// Protocol number.
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }
    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM.start)
    }
    /// Source address.
    pub fn src(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }
    /// Destination address.
    pub fn dst(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[16], b[17], b[18], b[19])
    }
    /// True when the header (with options) checksums to zero.
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(&self.buffer.as_ref()[..self.header_len()])
    }
    /// The payload: from the end of the header to the total length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    fn set_u16_at(&mut self, i: usize, v: u16) {
        self.buffer.as_mut()[i..i + 2].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets version 4 and the header length in bytes (a multiple of 4, 20..=60).
    pub fn set_version_and_header_len(&mut self, len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((len / 4) as u8 & 0x0f);
    }
    /// Sets the whole TOS byte.
    pub fn set_tos(&mut self, tos: u8) {
        self.buffer.as_mut()[field::TOS] = tos;
    }
    /// Sets the total length.
    pub fn set_total_len(&mut self, v: u16) {
        self.set_u16_at(field::LENGTH.start, v)
    }
    /// Sets the identification.
    pub fn set_ident(&mut self, v: u16) {
        self.set_u16_at(field::IDENT.start, v)
    }
    /// Sets the flags/fragment word to "not a fragment", with DF as given.
    pub fn set_unfragmented(&mut self, dont_frag: bool) {
        self.set_u16_at(field::FLG_OFF.start, if dont_frag { FLAG_DF } else { 0 })
    }
    /// Sets the TTL.
    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }
    /// Sets the protocol.
    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = v;
    }
    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16_at(field::CHECKSUM.start, v)
    }
    /// Sets the source address.
    pub fn set_src(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }
    /// Sets the destination address.
    pub fn set_dst(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets());
    }
    /// Recomputes the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(&self.buffer.as_ref()[..self.header_len()]);
        self.set_checksum(c);
    }
    /// Rewrites the ECN field and updates the checksum incrementally (RFC 1624).
    pub fn set_ecn_incremental(&mut self, ecn: Ecn) {
        let old_word = self.u16_at(0);
        let tos = (self.tos() & !3) | ecn.bits();
        self.set_tos(tos);
        let new_word = self.u16_at(0);
        let c = checksum::update(self.checksum(), old_word, new_word);
        self.set_checksum(c);
    }
}

/// The owned content of an IPv4 header without options, as used for tunnel outer headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol number.
    pub protocol: u8,
    /// The whole TOS byte (DSCP << 2 | ECN).
    pub tos: u8,
    /// Identification.
    pub ident: u16,
    /// DF flag.
    pub dont_frag: bool,
    /// Time to live.
    pub ttl: u8,
    /// Payload length (total length minus the header).
    pub payload_len: usize,
}

impl Ipv4Repr {
    /// Parses a checked, unfragmented packet whose header checksum verifies. Options are skipped.
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) -> Result<Ipv4Repr> {
        p.check_len()?;
        if !p.verify_checksum() {
            return Err(Error::invalid(Layer::Ipv4, Invalid::IpChecksum));
        }
        if p.is_fragment() {
            return Err(Error::invalid(Layer::Ipv4, Invalid::Fragment));
        }
        Ok(Ipv4Repr {
            src: p.src(),
            dst: p.dst(),
            protocol: p.protocol(),
            tos: p.tos(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
            ttl: p.ttl(),
            payload_len: usize::from(p.total_len()) - p.header_len(),
        })
    }
    /// Writes a 20-byte header with its checksum into the front of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let total = HEADER_LEN + self.payload_len;
        if total > MAX_TOTAL_LEN {
            return Err(Error::invalid(Layer::Ipv4, Invalid::TooLong));
        }
        let got = buf.len();
        let b =
            buf.get_mut(..HEADER_LEN)
                .ok_or(Error::truncated(Layer::Buffer, HEADER_LEN, got))?;
        let mut p = Ipv4Packet::new_unchecked(b);
        p.set_version_and_header_len(HEADER_LEN);
        p.set_tos(self.tos);
        p.set_total_len(total as u16);
        p.set_ident(self.ident);
        p.set_unfragmented(self.dont_frag);
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src(self.src);
        p.set_dst(self.dst);
        p.fill_checksum();
        Ok(())
    }
}
