//! VXLAN remote checksum offload (RCO: draft-herbert-vxlan-rco; Linux's `remcsumtx` and
//! `remcsumrx`). A sender that cuts TCP segments out of a device super-frame need not sum each
//! segment's bytes: it leaves the TCP checksum field holding the pseudo-header sum (the field of
//! a checksum-partial packet) and says in the VXLAN header where the checksum starts and where
//! its field is. The receiver hands the inner frame to its device marked checksum partial at
//! that place, as Linux's vxlan device does by default: the local stack trusts it, and the
//! kernel completes the checksum if the frame leaves the host. The outer UDP checksum, verified
//! by the receiving kernel, covers the inner bytes instead.
//!
//! The core decides whether a datagram's option is taken ([`check`]) and toward which remotes
//! segments leave with it ([`TxMode`], [`super::Core::sends_remote_csum`]); the daemon finds
//! where the checksum is in what it writes to the device ([`Partial::of_datagram`]).

use encap::vxlan::{HEADER_LEN, TCP_CSUM_OFFSET, UDP_CSUM_OFFSET, VxlanPacket};

use super::DropReason;
use super::forward::ETH_HEADER_LEN;

/// Toward which remotes a network's TCP segments leave with the option (`--remcsum-tx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TxMode {
    /// Toward none: every segment carries its complete checksum.
    #[default]
    Off,
    /// Toward every remote, as Linux's `remcsumtx` does: every peer must take the option.
    On,
    /// Toward the remotes known to take it: the store's members that registered with
    /// `remcsum_rx` (negotiated per peer; the others get complete checksums).
    Auto,
}

impl TxMode {
    /// The mode's name, as `--remcsum-tx` takes it.
    pub fn name(self) -> &'static str {
        match self {
            TxMode::Off => "off",
            TxMode::On => "on",
            TxMode::Auto => "auto",
        }
    }
}

/// A checksum left partial: it covers the bytes from `start` to the end, and its field is at
/// `start + offset` (each from the first byte of the packet it is in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partial {
    /// Where the checksummed bytes begin.
    pub start: usize,
    /// The field's offset from `start` (TCP's 16 or UDP's 6).
    pub offset: usize,
}

impl Partial {
    /// The option of the VXLAN datagram `datagram` (the header first), for the bytes from
    /// `from` on (the inner frame at [`HEADER_LEN`], or the IP packet in it): `None` without
    /// one, or when its checksum does not lie in those bytes.
    pub fn of_datagram(datagram: &[u8], from: usize) -> Option<Partial> {
        let (start, offset) = VxlanPacket::new_checked(datagram).ok()?.remote_csum()?;
        let start = (HEADER_LEN + usize::from(start)).checked_sub(from)?;
        let offset = usize::from(offset);
        (start + offset + 2 <= datagram.len().checked_sub(from)?)
            .then_some(Partial { start, offset })
    }

    /// Completes the checksum of `packet` (its field holds the pseudo-header sum): the value
    /// to write into the field.
    pub fn complete(&self, packet: &[u8]) -> u16 {
        let c = encap::checksum::finish(encap::checksum::sum(
            &packet[self.start.min(packet.len())..],
        ));
        if self.offset == usize::from(UDP_CSUM_OFFSET) {
            encap::checksum::udp_field(c)
        } else {
            c
        }
    }
}

/// Whether the datagram `pkt` may be delivered as far as remote checksum offload goes: without
/// the option always; with it only on a network that takes it (`accept`) and when its checksum
/// lies past the inner Ethernet header and inside the inner frame.
pub fn check<T: AsRef<[u8]>>(pkt: &VxlanPacket<T>, accept: bool) -> Result<(), DropReason> {
    let Some((start, offset)) = pkt.remote_csum() else {
        return Ok(());
    };
    let inner = pkt.payload().len();
    let (start, field) = (usize::from(start), usize::from(start + offset));
    if !accept || start < ETH_HEADER_LEN || field + 2 > inner {
        return Err(DropReason::RemoteCsum);
    }
    debug_assert!(offset == TCP_CSUM_OFFSET || offset == UDP_CSUM_OFFSET);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VXLAN datagram whose inner frame is `inner` bytes, with the RCO bits (`flag` in byte
    /// 1, `last` in byte 7) written as the kernel writes them (include/net/vxlan.h: the C bit is
    /// bit 21 of the first word; the last byte of the VNI word holds start / 2 and, in its top
    /// bit, "UDP").
    fn datagram(inner: usize, flag: u8, last: u8) -> Vec<u8> {
        let mut d = vec![0x08, flag, 0, 0, 0, 0, 42, last];
        d.resize(HEADER_LEN + inner, 0);
        d
    }

    #[test]
    fn the_option_is_read_as_the_kernel_writes_it() {
        // TCP over IPv4 behind Ethernet: start 34 (17 units), the TCP field.
        let d = datagram(100, 0x20, 17);
        let p = VxlanPacket::new_checked(&d[..]).unwrap();
        assert_eq!(p.remote_csum(), Some((34, 16)));
        assert_eq!(p.vni().get(), 42);
        assert_eq!(check(&p, true), Ok(()));
        assert_eq!(check(&p, false), Err(DropReason::RemoteCsum));
        // In the frame, and in the IP packet behind its Ethernet header.
        let at = |from| Partial::of_datagram(&d, from);
        assert_eq!(
            at(HEADER_LEN),
            Some(Partial {
                start: 34,
                offset: 16
            })
        );
        assert_eq!(
            at(HEADER_LEN + 14),
            Some(Partial {
                start: 20,
                offset: 16
            })
        );
        assert_eq!(at(HEADER_LEN + 36), None);
        // UDP over IPv6: start 54, the UDP field.
        let d = datagram(100, 0x20, 0x80 | 27);
        let p = VxlanPacket::new_checked(&d[..]).unwrap();
        assert_eq!(p.remote_csum(), Some((54, 6)));
        // No option: nothing to check, nothing partial (the last byte alone is reserved).
        let d = datagram(100, 0, 17);
        let p = VxlanPacket::new_checked(&d[..]).unwrap();
        assert_eq!(p.remote_csum(), None);
        assert_eq!(check(&p, false), Ok(()));
        assert_eq!(Partial::of_datagram(&d, HEADER_LEN), None);
    }

    #[test]
    fn an_option_outside_the_frame_is_refused() {
        // Inside the Ethernet header.
        let d = datagram(100, 0x20, 3);
        assert_eq!(
            check(&VxlanPacket::new_checked(&d[..]).unwrap(), true),
            Err(DropReason::RemoteCsum)
        );
        // Its field past the end: start 34 + 16 + 2 bytes are needed.
        for (inner, ok) in [(51, false), (52, true)] {
            let d = datagram(inner, 0x20, 17);
            let p = VxlanPacket::new_checked(&d[..]).unwrap();
            assert_eq!(check(&p, true).is_ok(), ok, "{inner}");
            assert_eq!(
                Partial::of_datagram(&d, HEADER_LEN).is_some(),
                ok,
                "{inner}"
            );
        }
    }

    #[test]
    fn writing_the_option_reads_back() {
        let mut d = datagram(100, 0, 0);
        let mut p = VxlanPacket::new_unchecked(&mut d[..]);
        p.set_header(encap::vxlan::Vni::new(7).unwrap());
        assert!(p.set_remote_csum(38, 16));
        assert!(!p.set_remote_csum(33, 16), "odd start");
        assert!(!p.set_remote_csum(256, 16), "past 254");
        assert!(!p.set_remote_csum(34, 4), "neither TCP's nor UDP's field");
        assert_eq!(p.remote_csum(), Some((38, 16)));
        assert_eq!(&d[..8], &[0x08, 0x20, 0, 0, 0, 0, 7, 19]);
    }

    #[test]
    fn completing_a_partial_checksum() {
        // An IPv4 UDP datagram 10.0.0.1 -> 10.0.0.2, ports 1 -> 2, payload "hi": its field
        // holds the pseudo-header sum, as a checksum-partial packet's does.
        let mut pkt = vec![0u8; 20];
        pkt.extend_from_slice(&[0, 1, 0, 2, 0, 10, 0, 0, b'h', b'i']);
        let pseudo =
            encap::checksum::pseudo_header([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 17, 10);
        let f = encap::checksum::fold(pseudo).to_be_bytes();
        pkt[26..28].copy_from_slice(&f);
        let c = Partial {
            start: 20,
            offset: 6,
        }
        .complete(&pkt);
        // The whole sum (pseudo-header, header with the checksum, payload) verifies.
        pkt[26..28].copy_from_slice(&c.to_be_bytes());
        let all = encap::checksum::add(pseudo, encap::checksum::sum(&pkt[20..]));
        assert_eq!(encap::checksum::fold(all), 0xffff);
    }
}
