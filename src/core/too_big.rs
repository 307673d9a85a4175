//! What happens to a packet from a device that does not fit the path toward its remote: the
//! one decision for every mode ([`on_too_big`]), the ICMP errors it answers with, and the
//! fragments of an IPv4 packet that may be cut ([`Fragments`]).
//!
//! - IPv4 with DF: an ICMP "fragmentation needed" (type 3 code 4) carrying the MTU that fits,
//!   for the device, so the sender's path MTU discovery works. Its source is the unreachable
//!   packet's destination: in L3 modes that address routes back through the tunnel device (the
//!   host's reverse-path filter accepts it) and is not one of the host's own (which the kernel
//!   drops as martians); in L2 the frame also swaps the MACs, so the reply appears to come from
//!   the original destination and crosses a bridge or reaches a VM, as Linux's vxlan does on
//!   bridged links (`iptunnel_pmtud_build_icmp`).
//! - IPv4 without DF: cut into fragments that fit (RFC 791), as the kernel does before
//!   encapsulating; the outer packets then fit the path.
//! - IPv6 (L2 carries it): an ICMPv6 "packet too big" (RFC 4443 §3.2) when the MTU that fits
//!   is at least 1280 (IPv6's minimum); otherwise dropped.
//! - Never an error about an ICMP error, a non-first fragment, or a source that is not unicast
//!   (RFC 1122 §3.2.2, RFC 4443 §2.4), and never more than the worker's ICMP budget allows
//!   (a token bucket, [`IcmpBudget`](super::engine::IcmpBudget)). Whatever is not answered or
//!   cut is dropped as `too_big`.

use super::arp::FrameTo;
use super::{Counters, DropReason, Out, Timestamp};
use encap::checksum;
use encap::ipv4::{self, Ipv4Packet, Ipv4Repr, protocol};
use std::net::Ipv6Addr;
use std::ops::Range;

/// Longest ICMPv4 error written (RFC 1812 §4.3.2.3: at most 576 bytes).
pub const ICMP_MAX: usize = 576;
/// IPv6's minimum link MTU, and the longest ICMPv6 error (RFC 4443 §2.4 (c)).
pub const IPV6_MIN_MTU: usize = 1280;
/// The smallest IPv4 MTU (RFC 791): below it nothing is cut.
pub const IPV4_MIN_MTU: usize = 68;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const IPV6_HEADER_LEN: usize = 40;
const ICMPV6: u8 = 58;
/// TTL / hop limit of the errors vtepd sends.
const ERROR_TTL: u8 = 64;

/// What a device packet starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// An Ethernet header (TAP): the IP header at byte 14 (18 behind an 802.1Q tag).
    Ethernet,
    /// The IP header itself (TUN).
    Ip,
}

impl Framing {
    /// Offset of the IP header of an untagged packet.
    pub const fn l3(self) -> usize {
        match self {
            Framing::Ethernet => 14,
            Framing::Ip => 0,
        }
    }
}

/// The decision for a packet that does not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TooBig {
    /// An ICMP error for the sender is in [`Out::generated`] (to the device); the packet is
    /// dropped (counted `too_big`).
    Answered,
    /// Send these fragments instead (IPv4 without DF).
    Fragment(Fragments),
    /// Dropped (counted `too_big`): no answer may be sent.
    Drop,
}

/// The ICMP error a packet gets, with the MTU it carries.
#[derive(Debug, Clone, Copy)]
enum Answer {
    FragNeeded(u16),
    PacketTooBig(u32),
}

/// The network layer of a frame: where it starts and which protocol it is.
fn network_layer(framing: Framing, frame: &[u8]) -> Option<(usize, u16)> {
    match framing {
        Framing::Ip => match frame.first()? >> 4 {
            4 => Some((0, ETHERTYPE_IPV4)),
            6 => Some((0, ETHERTYPE_IPV6)),
            _ => None,
        },
        Framing::Ethernet => {
            let ty = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
            if ty == ETHERTYPE_VLAN {
                Some((18, u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?])))
            } else {
                Some((14, ty))
            }
        }
    }
}

/// `frame` (framed as `framing`) came from the device and at most `max_len` bytes of it (same
/// framing) fit the path toward its remote: answer, cut (when the caller `can_cut`: it sends
/// [`Fragments`]) or drop it (see the module docs). Counts the drop, the ICMP error sent
/// (`icmp_too_big`) or the packet cut (`fragmented`).
pub fn on_too_big(
    now: Timestamp,
    framing: Framing,
    frame: &[u8],
    max_len: usize,
    can_cut: bool,
    out: &mut Out,
    ctr: &mut Counters,
) -> TooBig {
    let d = match decide(now, framing, frame, max_len, out, ctr) {
        TooBig::Fragment(_) if !can_cut => TooBig::Drop,
        d => d,
    };
    match d {
        TooBig::Answered => {
            ctr.icmp_too_big += 1;
            ctr.drop(DropReason::TooBig);
        }
        TooBig::Fragment(_) => ctr.fragmented += 1,
        TooBig::Drop => ctr.drop(DropReason::TooBig),
    }
    d
}

fn decide(
    now: Timestamp,
    framing: Framing,
    frame: &[u8],
    max_len: usize,
    out: &mut Out,
    ctr: &mut Counters,
) -> TooBig {
    let Some((l3, ty)) = network_layer(framing, frame) else {
        return TooBig::Drop;
    };
    let Some(mtu) = max_len.checked_sub(l3) else {
        return TooBig::Drop;
    };
    let Some(ip) = frame.get(l3..) else {
        return TooBig::Drop;
    };
    let answer = match ty {
        ETHERTYPE_IPV4 => {
            let Ok(p) = Ipv4Packet::new_checked(ip) else {
                return TooBig::Drop;
            };
            if !p.dont_frag() {
                return Fragments::new(frame, l3, mtu).map_or(TooBig::Drop, TooBig::Fragment);
            }
            match u16::try_from(mtu) {
                Ok(mtu) if may_answer_v4(ip) => Answer::FragNeeded(mtu),
                _ => return TooBig::Drop,
            }
        }
        ETHERTYPE_IPV6 if mtu >= IPV6_MIN_MTU => match u32::try_from(mtu) {
            Ok(mtu) if may_answer_v6(ip) => Answer::PacketTooBig(mtu),
            _ => return TooBig::Drop,
        },
        _ => return TooBig::Drop,
    };
    if !out.icmp.take(now) {
        ctr.icmp_rate_limited += 1;
        return TooBig::Drop;
    }
    let answered = push_answer(out, framing, frame, l3, |b| match answer {
        Answer::FragNeeded(mtu) => frag_needed(ip, mtu, b),
        Answer::PacketTooBig(mtu) => packet_too_big(ip, mtu, b),
    });
    if answered {
        TooBig::Answered
    } else {
        TooBig::Drop
    }
}

/// Pushes an answer to `frame` into `out.generated` for the device: in Ethernet framing behind
/// the frame's own link header with the MACs swapped (its VLAN tag kept); `write` writes the
/// IP packet into the buffer it is given and returns its length (0: none).
fn push_answer(
    out: &mut Out,
    framing: Framing,
    frame: &[u8],
    l3: usize,
    write: impl FnOnce(&mut [u8]) -> usize,
) -> bool {
    let mut buf = [0u8; 18 + IPV6_MIN_MTU];
    let Some(link) = frame.get(..l3) else {
        return false;
    };
    let n = write(&mut buf[l3..]);
    if n == 0 {
        return false;
    }
    if framing == Framing::Ethernet {
        buf[..l3].copy_from_slice(link);
        buf[..6].copy_from_slice(&link[6..12]);
        buf[6..12].copy_from_slice(&link[..6]);
    }
    let Some(answer) = buf.get(..l3 + n) else {
        return false;
    };
    let before = out.generated.len();
    out.generated.push(FrameTo::Device, answer.len(), |b| {
        b.copy_from_slice(answer);
        true
    });
    out.generated.len() > before
}

/// Whether an ICMPv4 error may be sent about `ip` (checked already): a first fragment from a
/// unicast source to a unicast destination, not itself an ICMP error.
pub fn may_answer_v4(ip: &[u8]) -> bool {
    let p = Ipv4Packet::new_unchecked(ip);
    let (src, dst) = (p.src(), p.dst());
    if src.is_unspecified()
        || src.is_multicast()
        || src.is_broadcast()
        || src.is_loopback()
        || dst.is_multicast()
        || dst.is_broadcast()
        || p.frag_offset() != 0
    {
        return false;
    }
    // Never an error about an error (RFC 1122 §3.2.2): only echo, timestamp, ... pass.
    p.protocol() != protocol::ICMP || !matches!(ip.get(p.header_len()), Some(3 | 4 | 5 | 11 | 12))
}

/// Writes an ICMP "fragmentation needed" (type 3 code 4, next-hop MTU `mtu`) about `ip`
/// (checked already) into `buf`, from its destination to its source, quoting as much of it as
/// fits in 576 bytes; returns its length (0 when `buf` is too short).
pub fn frag_needed(ip: &[u8], mtu: u16, buf: &mut [u8]) -> usize {
    let p = Ipv4Packet::new_unchecked(ip);
    let quoted = ip.len().min(ICMP_MAX - ipv4::HEADER_LEN - 8);
    let icmp_len = 8 + quoted;
    let len = ipv4::HEADER_LEN + icmp_len;
    let Some(b) = buf.get_mut(..len) else {
        return 0;
    };
    let repr = Ipv4Repr {
        src: p.dst(),
        dst: p.src(),
        protocol: protocol::ICMP,
        // Internetwork control, as Linux sends its ICMP errors.
        tos: 0xc0,
        ident: 0,
        dont_frag: false,
        ttl: ERROR_TTL,
        payload_len: icmp_len,
    };
    if repr.emit(&mut *b).is_err() {
        return 0;
    }
    let icmp = &mut b[ipv4::HEADER_LEN..];
    icmp[0] = 3; // destination unreachable
    icmp[1] = 4; // fragmentation needed and DF set
    icmp[2..6].fill(0);
    icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[8..].copy_from_slice(&ip[..quoted]);
    let c = checksum::checksum(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    len
}

fn v6_addr(b: &[u8], at: usize) -> Option<Ipv6Addr> {
    let a: [u8; 16] = b.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(a))
}

/// Whether an ICMPv6 error may be sent about the IPv6 packet `ip`: a unicast source, and not
/// an ICMPv6 error itself (one right behind the header: the kernel sends no others through a
/// tunnel either).
fn may_answer_v6(ip: &[u8]) -> bool {
    let Some(src) = v6_addr(ip, 8) else {
        return false;
    };
    if ip.first().is_none_or(|b| b >> 4 != 6)
        || src.is_unspecified()
        || src.is_multicast()
        || src.is_loopback()
    {
        return false;
    }
    !(ip.get(6) == Some(&ICMPV6) && ip.get(IPV6_HEADER_LEN).is_some_and(|t| *t < 128))
}

/// Writes an ICMPv6 "packet too big" (type 2 code 0, MTU `mtu`) about the IPv6 packet `ip`
/// into `buf`, from its destination to its source, quoting as much of it as fits in 1280 bytes;
/// returns its length (0 when `ip` is not IPv6 or `buf` is too short).
pub fn packet_too_big(ip: &[u8], mtu: u32, buf: &mut [u8]) -> usize {
    let (Some(src), Some(dst)) = (v6_addr(ip, 8), v6_addr(ip, 24)) else {
        return 0;
    };
    let quoted = ip.len().min(IPV6_MIN_MTU - IPV6_HEADER_LEN - 8);
    let icmp_len = 8 + quoted;
    let len = IPV6_HEADER_LEN + icmp_len;
    let Some(b) = buf.get_mut(..len) else {
        return 0;
    };
    b[..4].copy_from_slice(&[0x60, 0, 0, 0]);
    b[4..6].copy_from_slice(&(icmp_len as u16).to_be_bytes());
    b[6] = ICMPV6;
    b[7] = ERROR_TTL;
    b[8..24].copy_from_slice(&dst.octets());
    b[24..40].copy_from_slice(&src.octets());
    let icmp = &mut b[IPV6_HEADER_LEN..];
    icmp[0] = 2; // packet too big
    icmp[1] = 0;
    icmp[2..4].fill(0);
    icmp[4..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[8..].copy_from_slice(&ip[..quoted]);
    // The pseudo-header: addresses, upper-layer length, next header.
    let pseudo = checksum::add(
        checksum::add(checksum::sum(&dst.octets()), checksum::sum(&src.octets())),
        u64::from(icmp_len as u32) + u64::from(ICMPV6),
    );
    let c = checksum::finish(checksum::add(pseudo, checksum::sum(icmp)));
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    len
}

/// The fragments an IPv4 packet without DF is cut into so that each fits `mtu` bytes of IP
/// (RFC 791 §3.2): every fragment but the last carries a multiple of 8 payload bytes and MF;
/// the first keeps every option, the others only those with the copy flag. No copy of the
/// payload is made: [`Fragments::header`] writes one fragment's headers and says where its
/// payload is in the original frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragments {
    /// Where the IPv4 header starts in the frame (the link header is in front).
    l3: usize,
    /// Header length of the original packet.
    ihl: usize,
    /// Header length of every fragment but the first (its options filtered).
    later_ihl: usize,
    /// Payload bytes of the original packet.
    payload: usize,
    /// Payload bytes per fragment (a multiple of 8) for the first and for the others.
    first_chunk: usize,
    later_chunk: usize,
}

impl Fragments {
    /// The fragments of the IPv4 packet at `frame[l3..]` (checked already, DF clear) that fit
    /// `mtu` bytes of IP each; `None` when it cannot be cut that small.
    pub fn new(frame: &[u8], l3: usize, mtu: usize) -> Option<Fragments> {
        let ip = frame.get(l3..)?;
        let p = Ipv4Packet::new_checked(ip).ok()?;
        if p.dont_frag() || mtu < IPV4_MIN_MTU {
            return None;
        }
        let ihl = p.header_len();
        let total = usize::from(p.total_len());
        let later_ihl = copied_options(&ip[ipv4::HEADER_LEN..ihl], &mut [0u8; 40])? + 20;
        let first_chunk = mtu.checked_sub(ihl)? & !7;
        let later_chunk = mtu.checked_sub(later_ihl)? & !7;
        if first_chunk == 0 || later_chunk == 0 {
            return None;
        }
        Some(Fragments {
            l3,
            ihl,
            later_ihl,
            payload: total - ihl,
            first_chunk,
            later_chunk,
        })
    }

    /// The same fragments for the packet behind a link header of `link` bytes (computed on
    /// the bare IP packet, sent as a frame).
    pub fn behind_link(mut self, link: usize) -> Fragments {
        self.l3 += link;
        self
    }

    /// Number of fragments.
    pub fn count(&self) -> usize {
        if self.payload <= self.first_chunk {
            1
        } else {
            1 + (self.payload - self.first_chunk).div_ceil(self.later_chunk)
        }
    }

    /// Writes fragment `k`'s link and IPv4 headers into `out` (from the original `frame`) and
    /// returns their length and the range of its payload in `frame`; `None` past the last
    /// fragment or when `out` is too short.
    pub fn header(&self, frame: &[u8], k: usize, out: &mut [u8]) -> Option<(usize, Range<usize>)> {
        if k >= self.count() {
            return None;
        }
        let (l3, ihl) = (self.l3, self.ihl);
        let ip = frame.get(l3..l3 + ihl)?;
        let (start, chunk, hl) = if k == 0 {
            (0, self.first_chunk, ihl)
        } else {
            let start = self.first_chunk + (k - 1) * self.later_chunk;
            (start, self.later_chunk, self.later_ihl)
        };
        let end = (start + chunk).min(self.payload);
        let head = out.get_mut(..l3 + hl)?;
        head[..l3].copy_from_slice(frame.get(..l3)?);
        let h = &mut head[l3..];
        h[..ipv4::HEADER_LEN].copy_from_slice(&ip[..ipv4::HEADER_LEN]);
        if k == 0 {
            h[ipv4::HEADER_LEN..].copy_from_slice(&ip[ipv4::HEADER_LEN..]);
        } else {
            copied_options(&ip[ipv4::HEADER_LEN..], &mut h[ipv4::HEADER_LEN..])?;
        }
        let orig = Ipv4Packet::new_unchecked(ip);
        let last = end == self.payload;
        // Offsets in 8-byte units from the original's own (a fragment may be cut again).
        let offset = orig.frag_offset() + u16::try_from(start / 8).ok()?;
        let mf = !last || orig.more_frags();
        let flags_off = offset | if mf { 0x2000 } else { 0 };
        let mut p = Ipv4Packet::new_unchecked(&mut h[..]);
        p.set_version_and_header_len(hl);
        p.set_total_len(u16::try_from(hl + end - start).ok()?);
        h[6..8].copy_from_slice(&flags_off.to_be_bytes());
        let mut p = Ipv4Packet::new_unchecked(&mut h[..]);
        p.fill_checksum();
        let at = l3 + ihl;
        Some((l3 + hl, at + start..at + end))
    }
}

/// Copies the options of `opts` that are copied into every fragment (copy flag set) into
/// `out`, padded to a multiple of 4 with end-of-list; returns the length written, `None` for
/// options that do not parse.
fn copied_options(opts: &[u8], out: &mut [u8]) -> Option<usize> {
    let mut i = 0;
    let mut n = 0;
    while i < opts.len() {
        let ty = opts[i];
        let len = match ty {
            0 => break, // end of list
            1 => 1,     // no-op
            _ => usize::from(*opts.get(i + 1)?),
        };
        if len == 0 || i + len > opts.len() || (ty > 1 && len < 2) {
            return None;
        }
        if ty & 0x80 != 0 {
            out.get_mut(n..n + len)?.copy_from_slice(&opts[i..i + len]);
            n += len;
        }
        i += len;
    }
    let padded = n.next_multiple_of(4);
    out.get_mut(n..padded)?.fill(0);
    Some(padded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{Icmpv4Type, Icmpv6Type, NetSlice, SlicedPacket, TransportSlice};

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

    /// [`on_too_big`] at time 1 for an Ethernet frame, cutting allowed.
    fn eth(frame: &[u8], max_len: usize, out: &mut Out, ctr: &mut Counters) -> TooBig {
        on_too_big(
            Timestamp(1),
            Framing::Ethernet,
            frame,
            max_len,
            true,
            out,
            ctr,
        )
    }

    /// [`on_too_big`] at time 1 for an IP packet (TUN framing), cutting allowed.
    fn ip(packet: &[u8], max_len: usize, out: &mut Out, ctr: &mut Counters) -> TooBig {
        on_too_big(Timestamp(1), Framing::Ip, packet, max_len, true, out, ctr)
    }

    /// [`ip`] for a caller that cannot send fragments.
    fn ip_uncut(packet: &[u8], max_len: usize, out: &mut Out, ctr: &mut Counters) -> TooBig {
        on_too_big(Timestamp(1), Framing::Ip, packet, max_len, false, out, ctr)
    }

    /// An Ethernet frame from A to B holding an IPv4/UDP packet of `len` bytes.
    fn v4_frame(len: usize, df: bool, options: &[u8]) -> Vec<u8> {
        let mut f = B.to_vec();
        f.extend_from_slice(&A);
        f.extend_from_slice(&[0x08, 0x00]);
        let ihl = 20 + options.len();
        let mut ip = vec![0u8; len];
        ip[0] = 0x40 | (ihl / 4) as u8;
        ip[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        ip[6] = if df { 0x40 } else { 0 };
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
        ip[20..ihl].copy_from_slice(options);
        for (i, b) in ip[ihl..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let c = checksum::checksum(&ip[..ihl]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f
    }

    fn v6_frame(len: usize) -> Vec<u8> {
        let mut f = B.to_vec();
        f.extend_from_slice(&A);
        f.extend_from_slice(&[0x86, 0xdd]);
        let mut ip = vec![0u8; len];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        ip[6] = 17;
        ip[7] = 64;
        ip[8..24].copy_from_slice(&"fd00::1".parse::<Ipv6Addr>().unwrap().octets());
        ip[24..40].copy_from_slice(&"fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        f.extend_from_slice(&ip);
        f
    }

    fn answer(out: &Out) -> Vec<u8> {
        let (to, f) = out.generated.iter().next().expect("an answer");
        assert_eq!(to, FrameTo::Device);
        f.to_vec()
    }

    #[test]
    fn ipv4_with_df_gets_frag_needed_from_the_destination() {
        let f = v4_frame(1500, true, &[]);
        let (mut out, mut ctr) = (Out::default(), Counters::default());
        let d = eth(&f, 1464, &mut out, &mut ctr);
        assert_eq!(d, TooBig::Answered);
        assert_eq!((ctr.icmp_too_big, ctr.drops_of(DropReason::TooBig)), (1, 1));
        let a = answer(&out);
        let p = SlicedPacket::from_ethernet(&a).unwrap();
        let eth = p.link.unwrap().to_header().unwrap().ethernet2().unwrap();
        assert_eq!((eth.source, eth.destination), (B, A), "MACs swapped");
        let Some(NetSlice::Ipv4(ip)) = p.net else {
            panic!("not IPv4")
        };
        let h = ip.header();
        assert_eq!(h.source(), [10, 0, 0, 2], "from the original destination");
        assert_eq!(h.destination(), [10, 0, 0, 1]);
        assert_eq!(h.total_len(), 576, "at most 576 bytes");
        assert!(checksum::verify(&a[14..34]));
        let Some(TransportSlice::Icmpv4(icmp)) = p.transport else {
            panic!("not ICMP")
        };
        assert_eq!(
            icmp.icmp_type(),
            Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: 1450
                }
            ),
            "the IP MTU that fits: 1464 - 14"
        );
        assert!(checksum::verify(&a[34..]), "ICMP checksum");
        assert_eq!(&a[34 + 8..], &f[14..14 + 548], "quotes the packet");
    }

    #[test]
    fn ip_framing_answers_without_a_link_header() {
        let f = v4_frame(1400, true, &[]);
        let (mut out, mut ctr) = (Out::default(), Counters::default());
        let d = ip_uncut(&f[14..], 1380, &mut out, &mut ctr);
        assert_eq!(d, TooBig::Answered);
        let a = answer(&out);
        let p = SlicedPacket::from_ip(&a).unwrap();
        let Some(TransportSlice::Icmpv4(icmp)) = p.transport else {
            panic!("not ICMP")
        };
        assert_eq!(&icmp.bytes5to8()[2..], &1380u16.to_be_bytes());
    }

    #[test]
    fn ipv6_gets_packet_too_big_above_1280_only() {
        let f = v6_frame(1500);
        let (mut out, mut ctr) = (Out::default(), Counters::default());
        let d = eth(&f, 1464, &mut out, &mut ctr);
        assert_eq!(d, TooBig::Answered);
        let a = answer(&out);
        assert_eq!(a.len(), 14 + 1280, "at most 1280 bytes");
        let p = SlicedPacket::from_ethernet(&a).unwrap();
        let Some(NetSlice::Ipv6(ip)) = &p.net else {
            panic!("not IPv6")
        };
        assert_eq!(
            ip.header().source_addr(),
            "fd00::2".parse::<Ipv6Addr>().unwrap()
        );
        let Some(TransportSlice::Icmpv6(icmp)) = p.transport else {
            panic!("not ICMPv6")
        };
        assert_eq!(icmp.icmp_type(), Icmpv6Type::PacketTooBig { mtu: 1450 });
        // etherparse recomputes the checksum over the pseudo-header.
        let sum = icmp
            .header()
            .icmp_type
            .calc_checksum(
                ip.header().source(),
                ip.header().destination(),
                icmp.payload(),
            )
            .unwrap();
        assert_eq!(sum, icmp.checksum());
        let (mut out, mut ctr) = (Out::default(), Counters::default());
        let d = eth(&f, 1200, &mut out, &mut ctr);
        assert_eq!(
            (d, out.generated.len()),
            (TooBig::Drop, 0),
            "below IPv6's minimum MTU"
        );
    }

    #[test]
    fn never_about_errors_or_from_non_unicast_and_rate_limited() {
        let (mut out, mut ctr) = (Out::default(), Counters::default());
        let mut err = v4_frame(1500, true, &[]);
        err[14 + 9] = 1; // ICMP
        err[34] = 3; // destination unreachable
        assert_eq!(eth(&err, 1464, &mut out, &mut ctr), TooBig::Drop);
        let mut bcast = v4_frame(1500, true, &[]);
        bcast[14 + 16..14 + 20].copy_from_slice(&[255; 4]);
        assert_eq!(eth(&bcast, 1464, &mut out, &mut ctr), TooBig::Drop);
        let f = v4_frame(1500, true, &[]);
        let answered = (0..100)
            .filter(|_| eth(&f, 1464, &mut out, &mut ctr) == TooBig::Answered)
            .count();
        assert_eq!(answered, super::super::engine::IcmpBudget::BURST as usize);
        assert_eq!(ctr.icmp_rate_limited, 100 - answered as u64);
        assert_eq!(ctr.drops_of(DropReason::TooBig), 102);
        for n in 0..60 {
            let _ = eth(&f[..n], 10, &mut out, &mut ctr);
            let _ = ip(&f[14..14 + n], 10, &mut out, &mut ctr);
        }
    }

    /// Reassembles the fragments like a receiver and checks each with etherparse.
    #[test]
    fn fragments_fit_and_reassemble() {
        // A copied option (type 0x94: router alert) and a not-copied one (0x07, record route).
        let opts = [0x94, 4, 0, 0, 0x07, 3, 4, 0];
        for (len, mtu, options) in [
            (1500, 1450, &[][..]),
            (4000, 1000, &opts[..]),
            (100, 68, &opts[..]),
        ] {
            let f = v4_frame(len, false, options);
            let (mut out, mut ctr) = (Out::default(), Counters::default());
            let TooBig::Fragment(fr) = eth(&f, 14 + mtu, &mut out, &mut ctr) else {
                panic!("not cut")
            };
            assert_eq!((ctr.fragmented, ctr.total_drops()), (1, 0));
            let ihl = 20 + options.len();
            let mut payload = vec![0u8; len - ihl];
            let mut covered = 0;
            for k in 0..fr.count() {
                let mut head = [0u8; 94];
                let (h, r) = fr.header(&f, k, &mut head).unwrap();
                let mut frag = head[..h].to_vec();
                frag.extend_from_slice(&f[r.clone()]);
                assert!(frag.len() - 14 <= mtu, "fragment {k} fits");
                let p = SlicedPacket::from_ethernet(&frag).unwrap();
                let Some(NetSlice::Ipv4(ip)) = p.net else {
                    panic!("not IPv4")
                };
                let hd = ip.header();
                assert!(checksum::verify(&frag[14..14 + hd.ihl() as usize * 4]));
                assert_eq!(hd.identification(), 0x1234);
                let last = k + 1 == fr.count();
                assert_eq!(hd.more_fragments(), !last);
                if k > 0 && !options.is_empty() {
                    assert_eq!(&frag[34..38], &opts[..4], "only the copied option");
                    assert_eq!(hd.ihl(), 6);
                }
                let off = usize::from(hd.fragments_offset().value()) * 8;
                let body = &frag[14 + hd.ihl() as usize * 4..];
                payload[off..off + body.len()].copy_from_slice(body);
                covered += body.len();
            }
            assert_eq!(covered, len - ihl);
            assert_eq!(payload, f[14 + ihl..]);
            assert!(fr.header(&f, fr.count(), &mut [0u8; 94]).is_none());
        }
        let f = v4_frame(100, false, &[]);
        assert!(Fragments::new(&f, 14, 60).is_none(), "below IPv4's minimum");
    }
}
