//! ARP for IPv4 over Ethernet (RFC 826): a 28-byte view and an owned repr.
//!
//! Hand-written rather than reusing smoltcp's `wire::ArpPacket`: the format is one fixed 28-byte
//! layout, and smoltcp's version would bring its own address and (unit) error types into the crate
//! plus five dependencies, where this one returns our `MacAddr`, `Ipv4Addr` and per-layer errors.

use crate::error::{Error, Invalid, Layer, Result};
use crate::ethernet::{MacAddr, ethertype};
use core::net::Ipv4Addr;

/// Byte ranges of the fields.
mod field {
    use core::ops::Range;
    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;
const HTYPE_ETHERNET: u16 = 1;

/// ARP operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    /// 1: who-has.
    Request,
    /// 2: is-at.
    Reply,
    /// Any other code.
    Other(u16),
}

impl ArpOperation {
    /// Decodes an operation code.
    pub const fn from_code(c: u16) -> Self {
        match c {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            c => ArpOperation::Other(c),
        }
    }
    /// The operation code.
    pub const fn code(self) -> u16 {
        match self {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
            ArpOperation::Other(c) => c,
        }
    }
}

/// A read/write view of an ARP packet (the Ethernet payload). No accessor panics once
/// [`ArpPacket::new_checked`] succeeded.
#[derive(Debug, Clone, Copy)]
pub struct ArpPacket<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps `buffer` without checking its length (accessors may then panic; use `new_checked`).
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }
    /// Wraps `buffer`, checking it holds 28 bytes.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    /// Checks the buffer holds a whole Ethernet/IPv4 ARP packet (trailing padding is allowed).
    pub fn check_len(&self) -> Result<()> {
        let got = self.buffer.as_ref().len();
        if got < PACKET_LEN {
            Err(Error::truncated(Layer::Arp, PACKET_LEN, got))
        } else {
            Ok(())
        }
    }
    fn u16_at(&self, r: core::ops::Range<usize>) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[r.start], b[r.start + 1]])
    }
    fn ip_at(&self, r: core::ops::Range<usize>) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[r];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }
    fn mac_at(&self, r: core::ops::Range<usize>) -> MacAddr {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[r]);
        MacAddr(a)
    }
    /// Hardware type (1 = Ethernet).
    pub fn hardware_type(&self) -> u16 {
        self.u16_at(field::HTYPE)
    }
    /// Protocol type (0x0800 = IPv4).
    pub fn protocol_type(&self) -> u16 {
        self.u16_at(field::PTYPE)
    }
    /// Hardware address length.
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }
    /// Protocol address length.
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }
    /// Operation.
    pub fn operation(&self) -> ArpOperation {
        ArpOperation::from_code(self.u16_at(field::OPER))
    }
    /// Sender hardware address.
    pub fn sender_mac(&self) -> MacAddr {
        self.mac_at(field::SHA)
    }
    /// Sender protocol address.
    pub fn sender_ip(&self) -> Ipv4Addr {
        self.ip_at(field::SPA)
    }
    /// Target hardware address.
    pub fn target_mac(&self) -> MacAddr {
        self.mac_at(field::THA)
    }
    /// Target protocol address.
    pub fn target_ip(&self) -> Ipv4Addr {
        self.ip_at(field::TPA)
    }
}

/// The owned content of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// Operation.
    pub operation: ArpOperation,
    /// Sender hardware address.
    pub sender_mac: MacAddr,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address.
    pub target_mac: MacAddr,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Parses a packet, requiring Ethernet/IPv4 types and lengths.
    pub fn parse<T: AsRef<[u8]>>(p: &ArpPacket<T>) -> Result<ArpRepr> {
        p.check_len()?;
        if p.hardware_type() != HTYPE_ETHERNET
            || p.protocol_type() != ethertype::IPV4
            || p.hardware_len() != 6
            || p.protocol_len() != 4
        {
            return Err(Error::invalid(Layer::Arp, Invalid::ArpFormat));
        }
        Ok(ArpRepr {
            operation: p.operation(),
            sender_mac: p.sender_mac(),
            sender_ip: p.sender_ip(),
            target_mac: p.target_mac(),
            target_ip: p.target_ip(),
        })
    }
    /// Writes the 28-byte packet into the front of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let got = buf.len();
        let b =
            buf.get_mut(..PACKET_LEN)
                .ok_or(Error::truncated(Layer::Buffer, PACKET_LEN, got))?;
        b[field::HTYPE].copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
        b[field::PTYPE].copy_from_slice(&ethertype::IPV4.to_be_bytes());
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
        b[field::OPER].copy_from_slice(&self.operation.code().to_be_bytes());
        b[field::SHA].copy_from_slice(&self.sender_mac.0);
        b[field::SPA].copy_from_slice(&self.sender_ip.octets());
        b[field::THA].copy_from_slice(&self.target_mac.0);
        b[field::TPA].copy_from_slice(&self.target_ip.octets());
        Ok(())
    }
}
