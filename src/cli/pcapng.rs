//! Captured packets as a pcapng file (written with the `pcap-file` crate): one interface per
//! side and link type, made as the first packet of each comes; timestamps in nanoseconds; each
//! packet's direction in its flags word and its drop reason and notes in its comment.

use crate::core::capture::{Captured, Dir, Link, Side};
use pcap_file::DataLink;
use pcap_file::PcapError;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use std::borrow::Cow;
use std::io::{self, Write};
use std::time::Duration;

/// epb_flags: inbound / outbound (pcapng's direction bits).
const INBOUND: u32 = 1;
const OUTBOUND: u32 = 2;

/// The I/O error inside a writer's error (a closed pipe stays one).
fn io_error(e: PcapError) -> io::Error {
    match e {
        PcapError::IoError(e) => e,
        e => io::Error::other(e.to_string()),
    }
}

/// A pcapng file being written.
pub struct PcapNg<W: Write> {
    w: PcapNgWriter<W>,
    /// The interfaces described so far, in their id order.
    ifaces: Vec<(Side, Link)>,
    snaplen: u32,
}

impl<W: Write> PcapNg<W> {
    /// Starts the file (its section header) on `out`; packets are cut at `snaplen`.
    pub fn new(out: W, snaplen: u32) -> io::Result<PcapNg<W>> {
        let w = PcapNgWriter::new(out).map_err(io_error)?;
        Ok(PcapNg {
            w,
            ifaces: Vec::new(),
            snaplen,
        })
    }

    fn iface(&mut self, side: Side, link: Link) -> io::Result<u32> {
        if let Some(i) = self.ifaces.iter().position(|&k| k == (side, link)) {
            return Ok(i as u32);
        }
        let name = match side {
            Side::Overlay => "overlay",
            Side::Underlay => "underlay",
        };
        let what = match (side, link) {
            (Side::Overlay, Link::Ethernet) => "the TAP device's Ethernet frames",
            (Side::Overlay, Link::Ip) => "the TUN device's IP packets (IPv4, and IPv6 in IPIP)",
            (Side::Underlay, _) => "the outer IP packets (IPv4 or IPv6), as sent and as received",
        };
        // The outer packets have no link-layer header on a raw or UDP socket: they are written
        // as raw IP (IPv4 or IPv6) rather than behind a made-up Ethernet header.
        let linktype = match link {
            Link::Ethernet => DataLink::ETHERNET,
            Link::Ip => DataLink::RAW,
        };
        let idb = InterfaceDescriptionBlock {
            linktype,
            snaplen: self.snaplen,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Borrowed(name)),
                InterfaceDescriptionOption::IfDescription(Cow::Borrowed(what)),
                InterfaceDescriptionOption::IfTsResol(9),
            ],
        };
        self.w.write_pcapng_block(idb).map_err(io_error)?;
        self.ifaces.push((side, link));
        Ok(self.ifaces.len() as u32 - 1)
    }

    /// Writes one packet.
    pub fn packet(&mut self, c: &Captured) -> io::Result<()> {
        let interface_id = self.iface(c.side, c.link)?;
        let flags = match c.dir {
            Dir::In => INBOUND,
            Dir::Out => OUTBOUND,
        };
        let epb = EnhancedPacketBlock {
            interface_id,
            timestamp: Duration::from_nanos(c.at_ns),
            original_len: c.len,
            data: Cow::Borrowed(&c.data),
            options: vec![
                EnhancedPacketOption::Comment(Cow::Owned(c.comment())),
                EnhancedPacketOption::Flags(flags),
            ],
        };
        self.w.write_pcapng_block(epb).map_err(io_error)?;
        Ok(())
    }

    /// Writes what is buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        self.w.get_mut().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::DropReason;
    use pcap_file::pcapng::{Block, PcapNgReader};

    #[test]
    fn packets_read_back_with_their_interface_time_direction_and_comment() {
        let frame = |n: u8| Captured {
            worker: 0,
            at_ns: 1_700_000_000_000_000_001 + u64::from(n),
            side: Side::Overlay,
            dir: Dir::In,
            link: Link::Ethernet,
            len: 60,
            drop: None,
            note: None,
            data: vec![n; 60],
        };
        let outer = Captured {
            side: Side::Underlay,
            dir: Dir::Out,
            link: Link::Ip,
            len: 110,
            drop: Some(DropReason::TunnelTxError),
            data: vec![0x45; 100],
            ..frame(9)
        };
        let mut buf = Vec::new();
        let mut w = PcapNg::new(&mut buf, 100).unwrap();
        for c in [frame(1), outer.clone(), frame(2)] {
            w.packet(&c).unwrap();
        }
        drop(w);
        let mut r = PcapNgReader::new(&buf[..]).unwrap();
        let mut blocks = Vec::new();
        while let Some(b) = r.next_block() {
            blocks.push(b.unwrap().into_owned());
        }
        let idbs: Vec<_> = blocks
            .iter()
            .filter_map(|b| match b {
                Block::InterfaceDescription(i) => Some(i.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(idbs.len(), 2, "one interface per side and link");
        assert_eq!(idbs[0].linktype, DataLink::ETHERNET);
        assert_eq!(idbs[1].linktype, DataLink::RAW);
        assert!(
            idbs[1]
                .options
                .contains(&InterfaceDescriptionOption::IfTsResol(9))
        );
        let epbs: Vec<_> = blocks
            .iter()
            .filter_map(|b| match b {
                Block::EnhancedPacket(e) => Some(e.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            epbs.iter().map(|e| e.interface_id).collect::<Vec<_>>(),
            [0, 1, 0]
        );
        let e = &epbs[1];
        assert_eq!(e.timestamp, Duration::from_nanos(1_700_000_000_000_000_010));
        assert_eq!((e.original_len, e.data.len()), (110, 100));
        assert!(e.options.contains(&EnhancedPacketOption::Flags(OUTBOUND)));
        assert!(
            e.options
                .contains(&EnhancedPacketOption::Comment(Cow::Borrowed(
                    "out, worker 0, dropped: tunnel_tx_error"
                )))
        );
    }
}
