//! UDP header view (RFC 768).

use crate::checksum;
use crate::error::{Error, Invalid, Layer, Result};
use core::net::Ipv4Addr;

/// Byte ranges of the header fields.
mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// UDP header length.
pub const HEADER_LEN: usize = 8;

/// A read/write view of a UDP datagram.
///
/// [`UdpPacket::new_checked`] validates the length field against the buffer, after which no accessor
/// panics. Bytes past the length field are ignored (as the Linux stack trims them).
#[derive(Debug, Clone, Copy)]
pub struct UdpPacket<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps `buffer` without checking it (accessors may then panic; use `new_checked`).
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }
    /// Wraps `buffer`, checking the header and the length field.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    /// Checks the buffer holds a header and the whole datagram its length field claims.
    pub fn check_len(&self) -> Result<()> {
        let got = self.buffer.as_ref().len();
        if got < HEADER_LEN {
            return Err(Error::truncated(Layer::Udp, HEADER_LEN, got));
        }
        let len = usize::from(self.len());
        if len < HEADER_LEN {
            return Err(Error::invalid(Layer::Udp, Invalid::UdpLength));
        }
        if got < len {
            return Err(Error::truncated(Layer::Udp, len, got));
        }
        Ok(())
    }
    fn u16_at(&self, r: core::ops::Range<usize>) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[r.start], b[r.start + 1]])
    }
    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }
    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }
    /// Length field (header + payload).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        self.u16_at(field::LENGTH)
    }
    /// Checksum field (0: none was computed).
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }
    /// The payload, up to the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }
    /// True when the checksum is zero (not computed) or verifies over the IPv4 pseudo-header.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let len = self.len();
        let data = &self.buffer.as_ref()[..usize::from(len)];
        let acc = checksum::add(
            checksum::pseudo_header(src, dst, crate::ipv4::protocol::UDP, len),
            checksum::sum(data),
        );
        checksum::fold(acc) == 0xffff
    }
    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    fn set_u16_at(&mut self, r: core::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the source port.
    pub fn set_src_port(&mut self, v: u16) {
        self.set_u16_at(field::SRC_PORT, v)
    }
    /// Sets the destination port.
    pub fn set_dst_port(&mut self, v: u16) {
        self.set_u16_at(field::DST_PORT, v)
    }
    /// Sets the length field.
    pub fn set_len(&mut self, v: u16) {
        self.set_u16_at(field::LENGTH, v)
    }
    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16_at(field::CHECKSUM, v)
    }
    /// Computes and stores the checksum over the pseudo-header, header and payload (up to the length
    /// field). A computed zero is sent as 0xffff (RFC 768).
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let len = self.len();
        let data = &self.buffer.as_ref()[..usize::from(len)];
        let acc = checksum::add(
            checksum::pseudo_header(src, dst, crate::ipv4::protocol::UDP, len),
            checksum::sum(data),
        );
        let c = checksum::finish(acc);
        self.set_checksum(checksum::udp_field(c));
    }
}

/// The owned content of a UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl UdpRepr {
    /// Parses a checked datagram, verifying a non-zero checksum against the pseudo-header.
    pub fn parse<T: AsRef<[u8]>>(
        p: &UdpPacket<T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> Result<UdpRepr> {
        p.check_len()?;
        if !p.verify_checksum(src, dst) {
            return Err(Error::invalid(Layer::Udp, Invalid::UdpChecksum));
        }
        Ok(UdpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
        })
    }
    /// Writes the header in front of the `payload_len` bytes already at `buf[8..]`, with the
    /// checksum computed when `checksum` is true (else zero).
    pub fn emit(
        &self,
        buf: &mut [u8],
        payload_len: usize,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        checksum: bool,
    ) -> Result<()> {
        let len = HEADER_LEN + payload_len;
        if len > usize::from(u16::MAX) {
            return Err(Error::invalid(Layer::Udp, Invalid::TooLong));
        }
        let got = buf.len();
        let b = buf
            .get_mut(..len)
            .ok_or(Error::truncated(Layer::Buffer, len, got))?;
        let mut p = UdpPacket::new_unchecked(b);
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_len(len as u16);
        if checksum {
            p.fill_checksum(src, dst);
        } else {
            p.set_checksum(0);
        }
        Ok(())
    }
}
