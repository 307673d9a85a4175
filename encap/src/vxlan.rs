//! VXLAN header (RFC 7348 §5): 8 bytes, flags (I bit 0x08), 24-bit VNI.
//!
//! ```text
//!  0                   1                   2                   3
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! ```

use crate::error::{Error, Invalid, Layer, Result};
use core::fmt;

/// VXLAN header length.
pub const HEADER_LEN: usize = 8;
/// The I flag: the VNI field is valid.
pub const FLAG_I: u8 = 0x08;
/// IANA-assigned VXLAN UDP port.
pub const DEFAULT_PORT: u16 = 4789;
/// Remote checksum offload (draft-herbert-vxlan-rco, Linux's `remcsumtx`/`remcsumrx`): the C
/// bit, bit 21 of the first word (0x20 of its second byte), says that the last byte of the VNI
/// word carries the inner checksum's start (bits 0-6, in units of 2 bytes from the inner frame's
/// first byte) and where its field is (bit 7: UDP's, at start + 6; clear: TCP's, at start + 16).
pub const FLAG_RCO: u8 = 0x20;
/// The RCO option's "UDP checksum" bit in the VNI word's last byte.
const RCO_UDP: u8 = 0x80;
/// Offset of the UDP checksum field in its header.
pub const UDP_CSUM_OFFSET: u16 = 6;
/// Offset of the TCP checksum field in its header.
pub const TCP_CSUM_OFFSET: u16 = 16;
/// Largest checksum start RCO can say (127 units of 2 bytes).
pub const MAX_RCO_START: u16 = 0x7f << 1;

/// A 24-bit VXLAN network identifier.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Vni(u32);

impl Vni {
    /// Largest valid VNI (2^24 - 1).
    pub const MAX: u32 = 0x00ff_ffff;
    /// VNI 0.
    pub const ZERO: Vni = Vni(0);

    /// A VNI, or an error when `v` does not fit in 24 bits.
    pub const fn new(v: u32) -> Result<Vni> {
        if v > Self::MAX {
            Err(Error::invalid(Layer::Vxlan, Invalid::VniOutOfRange))
        } else {
            Ok(Vni(v))
        }
    }
    /// The numeric value.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Vni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A read/write view of a VXLAN header followed by its payload (the inner Ethernet frame).
#[derive(Debug, Clone, Copy)]
pub struct VxlanPacket<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanPacket<T> {
    /// Wraps `buffer` without checking its length (accessors may then panic; use `new_checked`).
    pub const fn new_unchecked(buffer: T) -> Self {
        VxlanPacket { buffer }
    }
    /// Wraps `buffer`, checking that it holds a whole VXLAN header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    /// Checks the buffer holds at least a VXLAN header.
    pub fn check_len(&self) -> Result<()> {
        let got = self.buffer.as_ref().len();
        if got < HEADER_LEN {
            Err(Error::truncated(Layer::Vxlan, HEADER_LEN, got))
        } else {
            Ok(())
        }
    }
    /// The flags byte.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[0]
    }
    /// The 24-bit VNI field (whether or not the I flag is set).
    pub fn vni(&self) -> Vni {
        let b = self.buffer.as_ref();
        Vni(u32::from_be_bytes([0, b[4], b[5], b[6]]))
    }
    /// The remote checksum offload option (RCO, [`FLAG_RCO`]), if the header carries one: the
    /// inner checksum's start (from the inner frame's first byte) and its field's offset from
    /// there ([`TCP_CSUM_OFFSET`] or [`UDP_CSUM_OFFSET`]). Not checked against the inner frame.
    pub fn remote_csum(&self) -> Option<(u16, u16)> {
        let b = self.buffer.as_ref();
        if b[1] & FLAG_RCO == 0 {
            return None;
        }
        let start = u16::from(b[7] & !RCO_UDP) << 1;
        let offset = if b[7] & RCO_UDP != 0 {
            UDP_CSUM_OFFSET
        } else {
            TCP_CSUM_OFFSET
        };
        Some((start, offset))
    }
    /// The inner frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VxlanPacket<T> {
    /// Writes the I flag, `vni`, and zeroes every reserved bit.
    pub fn set_header(&mut self, vni: Vni) {
        let b = &mut self.buffer.as_mut()[..HEADER_LEN];
        let v = vni.0.to_be_bytes();
        b.copy_from_slice(&[FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0]);
    }
    /// Adds the remote checksum offload option to the header: the inner checksum starts at
    /// `start` (even, at most [`MAX_RCO_START`]) and its field is at `offset` from there (TCP's
    /// or UDP's). False, the header unchanged, when RCO cannot say that.
    pub fn set_remote_csum(&mut self, start: u16, offset: u16) -> bool {
        let udp = match offset {
            TCP_CSUM_OFFSET => 0,
            UDP_CSUM_OFFSET => RCO_UDP,
            _ => return false,
        };
        if start % 2 != 0 || start > MAX_RCO_START {
            return false;
        }
        let b = self.buffer.as_mut();
        b[1] |= FLAG_RCO;
        // `start >> 1` is at most 0x7f (checked above).
        b[7] = udp | (start >> 1) as u8;
        true
    }
}

/// The owned, validated content of a VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanRepr {
    /// Network identifier.
    pub vni: Vni,
}

impl VxlanRepr {
    /// Validates a received header: the I flag must be set; reserved bits are ignored (remote
    /// checksum offload's are read by [`VxlanPacket::remote_csum`]).
    pub fn parse<T: AsRef<[u8]>>(p: &VxlanPacket<T>) -> Result<VxlanRepr> {
        p.check_len()?;
        if p.flags() & FLAG_I == 0 {
            return Err(Error::invalid(Layer::Vxlan, Invalid::VxlanIFlagClear));
        }
        Ok(VxlanRepr { vni: p.vni() })
    }
    /// Writes this header (I flag set, reserved bits zero) into the first 8 bytes of `p`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut VxlanPacket<T>) {
        p.set_header(self.vni)
    }
}
