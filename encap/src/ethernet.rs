//! Ethernet II frames with an optional 802.1Q VLAN tag, and MAC addresses.
//!
//! ```text
//! | dst (6) | src (6) | ethertype (2) | payload ...                       untagged, 14-byte header
//! | dst (6) | src (6) | 0x8100 | TCI (2) | ethertype (2) | payload ...   tagged, 18-byte header
//! ```
//! Only one tag (TPID 0x8100) is understood; a frame with any other ethertype, including 802.1ad
//! (0x88a8), is seen as untagged with that ethertype.

use crate::error::{Error, Invalid, Layer, Result};
use core::fmt;
use core::str::FromStr;

/// Byte ranges of the header fields.
mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const TCI: Range<usize> = 14..16;
    pub const INNER_ETHERTYPE: Range<usize> = 16..18;
}

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = 14;
/// Length of a header with one 802.1Q tag.
pub const TAGGED_HEADER_LEN: usize = 18;

/// Well-known ethertypes.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// 802.1Q VLAN tag (TPID).
    pub const VLAN: u16 = 0x8100;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
}

/// A 48-bit Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// 00:00:00:00:00:00
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Reads a MAC from the first six bytes of `b`, if there are six.
    pub fn from_bytes(b: &[u8]) -> Option<MacAddr> {
        Some(MacAddr(b.get(..6)?.try_into().ok()?))
    }
    /// The group bit (includes broadcast).
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
    /// ff:ff:ff:ff:ff:ff
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }
    /// 00:00:00:00:00:00
    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }
    /// A unicast, non-zero address.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast() && !self.is_zero()
    }
    /// The raw bytes.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Error parsing a MAC address from text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseMacError;

impl fmt::Display for ParseMacError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid MAC address (expected six hex octets like 02:00:00:aa:bb:cc)")
    }
}

impl core::error::Error for ParseMacError {}

impl FromStr for MacAddr {
    type Err = ParseMacError;
    fn from_str(s: &str) -> core::result::Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for o in out.iter_mut() {
            let p = parts.next().ok_or(ParseMacError)?;
            if p.is_empty() || p.len() > 2 {
                return Err(ParseMacError);
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| ParseMacError)?;
        }
        if parts.next().is_some() {
            return Err(ParseMacError);
        }
        Ok(MacAddr(out))
    }
}

/// A 12-bit 802.1Q VLAN identifier.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct VlanId(u16);

impl VlanId {
    /// Largest value the 12-bit field holds (4095, reserved by 802.1Q but representable).
    pub const MAX: u16 = 0x0fff;

    /// A VLAN id, or an error when `v` does not fit in 12 bits.
    pub const fn new(v: u16) -> Result<VlanId> {
        if v > Self::MAX {
            Err(Error::invalid(Layer::Vlan, Invalid::VlanIdOutOfRange))
        } else {
            Ok(VlanId(v))
        }
    }
    /// The numeric value.
    pub const fn get(self) -> u16 {
        self.0
    }
}

/// The content of an 802.1Q tag control information (TCI) field.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct VlanTag {
    /// Priority code point (3 bits).
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN identifier.
    pub vid: VlanId,
}

impl VlanTag {
    /// Decodes a TCI word.
    pub const fn from_tci(tci: u16) -> VlanTag {
        VlanTag {
            pcp: (tci >> 13) as u8,
            dei: tci & 0x1000 != 0,
            vid: VlanId(tci & 0x0fff),
        }
    }
    /// Encodes the TCI word (the PCP is truncated to its 3 bits).
    pub const fn tci(&self) -> u16 {
        ((self.pcp as u16 & 7) << 13) | ((self.dei as u16) << 12) | self.vid.0
    }
}

/// A read/write view of an Ethernet II frame, possibly carrying one 802.1Q tag.
///
/// Once [`EthernetFrame::new_checked`] succeeded, no accessor panics.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` without checking its length (accessors may then panic; use `new_checked`).
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }
    /// Wraps `buffer`, checking it holds a whole header (18 bytes when tagged).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }
    /// Checks the buffer holds the whole header, including the VLAN tag when there is one.
    pub fn check_len(&self) -> Result<()> {
        let got = self.buffer.as_ref().len();
        if got < HEADER_LEN {
            return Err(Error::truncated(Layer::Ethernet, HEADER_LEN, got));
        }
        if self.is_tagged() && got < TAGGED_HEADER_LEN {
            return Err(Error::truncated(Layer::Vlan, TAGGED_HEADER_LEN, got));
        }
        Ok(())
    }
    /// Destination address.
    pub fn dst(&self) -> MacAddr {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        MacAddr(a)
    }
    /// Source address.
    pub fn src(&self) -> MacAddr {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        MacAddr(a)
    }
    /// The ethertype in bytes 12..14 (0x8100 for a tagged frame).
    pub fn outer_ethertype(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::ETHERTYPE.start], b[field::ETHERTYPE.start + 1]])
    }
    /// True when the frame carries an 802.1Q tag.
    pub fn is_tagged(&self) -> bool {
        self.outer_ethertype() == ethertype::VLAN
    }
    /// The 802.1Q tag, when there is one.
    pub fn vlan(&self) -> Option<VlanTag> {
        if !self.is_tagged() {
            return None;
        }
        let b = self.buffer.as_ref();
        Some(VlanTag::from_tci(u16::from_be_bytes([
            b[field::TCI.start],
            b[field::TCI.start + 1],
        ])))
    }
    /// The VLAN id, when tagged.
    pub fn vlan_id(&self) -> Option<VlanId> {
        self.vlan().map(|t| t.vid)
    }
    /// The ethertype of the payload (after the tag, when tagged).
    pub fn ethertype(&self) -> u16 {
        if self.is_tagged() {
            let b = self.buffer.as_ref();
            let i = field::INNER_ETHERTYPE.start;
            u16::from_be_bytes([b[i], b[i + 1]])
        } else {
            self.outer_ethertype()
        }
    }
    /// Header length: 14, or 18 when tagged. The payload starts at this offset.
    pub fn header_len(&self) -> usize {
        if self.is_tagged() {
            TAGGED_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }
    /// The payload after the header (and tag).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination address.
    pub fn set_dst(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.0);
    }
    /// Sets the source address.
    pub fn set_src(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.0);
    }
    /// Sets the payload ethertype (after the tag, when tagged).
    pub fn set_ethertype(&mut self, t: u16) {
        let r = if self.is_tagged() {
            field::INNER_ETHERTYPE
        } else {
            field::ETHERTYPE
        };
        self.buffer.as_mut()[r].copy_from_slice(&t.to_be_bytes());
    }
    /// The payload, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let h = self.header_len();
        &mut self.buffer.as_mut()[h..]
    }
}

/// The owned content of an Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    /// Destination address.
    pub dst: MacAddr,
    /// Source address.
    pub src: MacAddr,
    /// The 802.1Q tag, if any.
    pub vlan: Option<VlanTag>,
    /// Payload ethertype.
    pub ethertype: u16,
}

impl EthernetRepr {
    /// Reads the header of a frame.
    pub fn parse<T: AsRef<[u8]>>(f: &EthernetFrame<T>) -> Result<EthernetRepr> {
        f.check_len()?;
        Ok(EthernetRepr {
            dst: f.dst(),
            src: f.src(),
            vlan: f.vlan(),
            ethertype: f.ethertype(),
        })
    }
    /// Header length this repr emits.
    pub const fn header_len(&self) -> usize {
        if self.vlan.is_some() {
            TAGGED_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }
    /// Writes the header into the front of `buf`; returns the header length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let n = self.header_len();
        let got = buf.len();
        let b = buf
            .get_mut(..n)
            .ok_or(Error::truncated(Layer::Buffer, n, got))?;
        b[field::DST].copy_from_slice(&self.dst.0);
        b[field::SRC].copy_from_slice(&self.src.0);
        match self.vlan {
            Some(tag) => {
                b[field::ETHERTYPE].copy_from_slice(&ethertype::VLAN.to_be_bytes());
                b[field::TCI].copy_from_slice(&tag.tci().to_be_bytes());
                b[field::INNER_ETHERTYPE].copy_from_slice(&self.ethertype.to_be_bytes());
            }
            None => b[field::ETHERTYPE].copy_from_slice(&self.ethertype.to_be_bytes()),
        }
        Ok(n)
    }
}
