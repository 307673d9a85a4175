//! `gro`: the receive coalescing of `daemon::batch_gro`: a sequence of packets (raw, or TCP/IPv4
//! or TCP/IPv6 segments built from fields of the input with valid checksums, then maybe
//! corrupted) goes through [`tcp_segment`], [`TcpRun::offer`], [`TcpRun::start`] and
//! [`TcpRun::flush`] into devices that record (or refuse) what is written, the way a worker
//! drains a receive batch; each packet also goes through [`kernel_merged`] and
//! [`complete_merged`], and arbitrary virtio-net headers through [`complete_read`].
//!
//! The input: a configuration byte (bit 0: Ethernet framing, else IP; bits 1-2: the MTU;
//! bit 3: dual-stack), the flow's first sequence number, then packets, each behind a key byte
//! (its device and how that device behaves when the run flushes; 0xff: a `complete_read` case
//! instead). In a dual-stack input, bit 7 of the key byte makes the packet TCP/IPv6 and bit 6
//! puts the pseudo-header sum in its TCP checksum field (what the underlay's GRO hands over),
//! and the device comes from the other bits; inputs without bit 3 decode as they did before
//! the target knew IPv6 (TCP/IPv4 only).
//!
//! Checked, against etherparse's reading of the packets (a decoder independent of
//! `batch_gro`), for both families alike:
//! - [`tcp_segment`] takes exactly the segments that may be merged (TCP right behind the
//!   fixed IP header, an IPv4 header checksum that verifies, reserved bits clear, ACK and
//!   maybe PSH but no other flag, some payload, a TCP checksum that verifies), and reads the
//!   family, header length, sequence number, payload and PSH etherparse reads;
//! - every packet ends up exactly once: merged into one super-packet, or left to the caller
//!   (not a segment, a run of one, a refused run), in order;
//! - the segments of a run have the first's headers but for the IP length (and IPv4's ID and
//!   header checksum), contiguous sequence numbers, the TCP checksum, and PSH on the last
//!   only; every segment but the last carries gso_size, the last no more;
//! - a merged super-packet's payload is the concatenation of its segments' payloads; its
//!   headers are the first segment's but for the IP length (and IPv4's header checksum), the
//!   TCP checksum, and PSH when the last segment had it; they parse (Ethernet; IPv4 without
//!   options with the total length and a valid header checksum, or IPv6 with TCP right behind
//!   the fixed header and the payload length of the whole; TCP with the first segment's
//!   sequence number), and its TCP checksum, completed as the kernel does from csum_start,
//!   verifies (etherparse computes it from the IPv4 pseudo-header or the IPv6 one, RFC 8200
//!   §8.1); its virtio-net header says checksum partial at the TCP checksum, GSO TCPv4 or
//!   TCPv6 by family, the header length, and gso_size = the first segment's payload;
//! - [`kernel_merged`] takes exactly the plain TCP packets with ACK, the pseudo-header sum in
//!   the checksum field (and a checksum that does not verify) and room for payload under the
//!   MTU; its gso_size fits the MTU behind a 20-byte (IPv4) or 40-byte (IPv6) header (or no
//!   GSO when one segment's worth fits), and [`complete_merged`] then makes the checksum
//!   verify, changing nothing else.

use crate::input::{Input, Writer};
use encap::checksum;
use etherparse::{NetSlice, SlicedPacket, TcpSlice, TransportSlice};
use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use vtepd::core::Counters;
use vtepd::daemon::batch_gro::{
    Flushed, Framing, PacketWrite, Part, TcpRun, TcpSegment, VNET_HDR_LEN, complete_merged,
    complete_read, kernel_merged, tcp_segment,
};

const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const SRC6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const DST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
/// TCP options a segment picks from (a timestamp, another timestamp, none, a MSS option).
const OPTIONS: [&[u8]; 4] = [
    &[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 3],
    &[1, 1, 8, 10, 0, 0, 0, 10, 0, 0, 0, 3],
    &[],
    &[2, 4, 5, 0xb4],
];
/// TCP flags a segment picks from: ACK, ACK|PSH, SYN, ACK|FIN, ACK|URG.
const FLAGS: [u8; 5] = [0x10, 0x18, 0x02, 0x11, 0x30];
/// EINVAL: a device that will not take the packet as GSO.
const EINVAL: i32 = 22;
/// EBADFD: a device that is gone.
const EBADFD: i32 = 77;
/// Device MTUs `kernel_merged` is asked about.
const MTUS: [usize; 4] = [1500, 1480, 100, 0];
/// Configuration bit: the key bits [`KEY_V6`] and [`KEY_PARTIAL`] mean something.
pub const CFG_DUAL: u8 = 8;
/// Key bit of a dual-stack input: the packet is TCP/IPv6.
pub const KEY_V6: u8 = 0x80;
/// Key bit of a dual-stack input: the TCP checksum field holds the pseudo-header sum.
pub const KEY_PARTIAL: u8 = 0x40;
/// virtio-net GSO types (`VIRTIO_NET_HDR_GSO_TCPV4`, `..._TCPV6`).
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;

/// A device that records each packet written, or refuses it.
#[derive(Default)]
struct Sink {
    written: RefCell<Vec<Vec<u8>>>,
    /// 0: accept; else the errno to refuse with.
    refuse: RefCell<i32>,
}

impl PacketWrite for Sink {
    fn write_packet(&self, iov: &[IoSlice<'_>]) -> io::Result<usize> {
        let e = *self.refuse.borrow();
        if e != 0 {
            return Err(io::Error::from_raw_os_error(e));
        }
        let p: Vec<u8> = iov.iter().flat_map(|s| s.iter().copied()).collect();
        let n = p.len();
        self.written.borrow_mut().push(p);
        Ok(n)
    }
}

/// Fields of a segment, as decoded.
struct SegSpec<'a> {
    /// TCP/IPv6, else TCP/IPv4.
    v6: bool,
    /// The pseudo-header sum in the TCP checksum field instead of the checksum.
    partial: bool,
    seq: u32,
    flags: u8,
    opts: &'a [u8],
    sport: u16,
    /// IPv4: the ID; IPv6: the flow label.
    id: u16,
    /// IPv4: the TOS; IPv6: the traffic class.
    tos: u8,
    /// IPv4: DF; IPv6: hop limit 64 (else 63).
    df: bool,
    payload: &'a [u8],
    pad: usize,
    flip: Option<u16>,
    ecn_window: u16,
}

/// The sum of the TCP pseudo-header of `src` to `dst` over `tcp_len` bytes: the IPv4 one
/// (addresses, zero, protocol, 16-bit length) or the IPv6 one (RFC 8200 §8.1: addresses,
/// 32-bit length, three zeros, next header). Laid out here rather than taken from `batch_gro`,
/// whose own helpers are what is checked.
fn pseudo_sum(addrs: Addrs, tcp_len: usize) -> u64 {
    let mut b = [0u8; 40];
    let n = match addrs {
        Addrs::V4(s, d) => {
            b[..4].copy_from_slice(&s);
            b[4..8].copy_from_slice(&d);
            b[9] = 6;
            b[10..12].copy_from_slice(&(tcp_len as u16).to_be_bytes());
            12
        }
        Addrs::V6(s, d) => {
            b[..16].copy_from_slice(&s);
            b[16..32].copy_from_slice(&d);
            b[32..36].copy_from_slice(&(tcp_len as u32).to_be_bytes());
            b[39] = 6;
            40
        }
    };
    checksum::sum(&b[..n])
}

/// The source and destination addresses of a packet.
#[derive(Debug, Clone, Copy)]
enum Addrs {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

/// A TCP/IPv4 or TCP/IPv6 packet (in an Ethernet frame for [`Framing::Ethernet`]) with valid
/// checksums (or, `partial`, the pseudo-header sum in the TCP checksum field).
fn build(framing: Framing, s: &SegSpec<'_>) -> Vec<u8> {
    let l3 = framing.l3();
    let ip_hdr = if s.v6 { 40 } else { 20 };
    let doff = 20 + s.opts.len();
    let tcp_len = doff + s.payload.len();
    let mut f = vec![0u8; l3 + ip_hdr + tcp_len];
    if framing == Framing::Ethernet {
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        let ethertype: u16 = if s.v6 { 0x86dd } else { 0x0800 };
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
    }
    let addrs = if s.v6 {
        let ip = &mut f[l3..l3 + 40];
        // Version, traffic class, flow label.
        let vtf = 6 << 28 | u32::from(s.tos) << 20 | u32::from(s.id);
        ip[..4].copy_from_slice(&vtf.to_be_bytes());
        ip[4..6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
        ip[6] = 6;
        ip[7] = if s.df { 64 } else { 63 };
        ip[8..24].copy_from_slice(&SRC6.octets());
        ip[24..40].copy_from_slice(&DST6.octets());
        Addrs::V6(SRC6.octets(), DST6.octets())
    } else {
        let ip = &mut f[l3..l3 + 20];
        ip[0] = 0x45;
        ip[1] = s.tos;
        ip[2..4].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&s.id.to_be_bytes());
        ip[6] = if s.df { 0x40 } else { 0 };
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&SRC.octets());
        ip[16..20].copy_from_slice(&DST.octets());
        let c = checksum::checksum(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        Addrs::V4(SRC.octets(), DST.octets())
    };
    let t = l3 + ip_hdr;
    {
        let tcp = &mut f[t..];
        tcp[0..2].copy_from_slice(&s.sport.to_be_bytes());
        tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&s.seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&7u32.to_be_bytes());
        tcp[12] = ((doff / 4) as u8) << 4;
        tcp[13] = s.flags;
        tcp[14..16].copy_from_slice(&s.ecn_window.to_be_bytes());
        tcp[20..doff].copy_from_slice(s.opts);
        tcp[doff..].copy_from_slice(s.payload);
    }
    let p = pseudo_sum(addrs, tcp_len);
    let c = if s.partial {
        checksum::fold(p)
    } else {
        checksum::finish(checksum::add(p, checksum::sum(&f[t..])))
    };
    f[t + 16..t + 18].copy_from_slice(&c.to_be_bytes());
    f.extend(std::iter::repeat_n(0xee, s.pad));
    if let Some(at) = s.flip {
        let n = f.len();
        if n > 0 {
            f[usize::from(at) % n] ^= 0x01;
        }
    }
    f
}

/// A packet: raw bytes, or a segment (of the family `key` says in a dual-stack input)
/// continuing the flow (`next_seq`) or not.
fn packet(
    inp: &mut Input<'_>,
    framing: Framing,
    dual: bool,
    key: u8,
    next_seq: &mut u32,
) -> Vec<u8> {
    let kind = inp.u8();
    if kind & 3 == 0 {
        return inp.bytes().to_vec();
    }
    let seq = if kind & 4 == 0 { *next_seq } else { inp.u32() };
    let flags = FLAGS[usize::from(kind >> 3) % FLAGS.len()];
    let opts = OPTIONS[usize::from(kind >> 6) % OPTIONS.len()];
    let n = usize::from(inp.u8());
    let payload = inp.take(n);
    let x = inp.u8();
    let s = SegSpec {
        v6: dual && key & KEY_V6 != 0,
        partial: dual && key & KEY_PARTIAL != 0,
        seq,
        flags,
        opts,
        sport: if x & 1 == 0 { 1234 } else { 1235 },
        id: inp.u16(),
        tos: if x & 2 == 0 { 0 } else { 0xb8 },
        df: x & 4 == 0,
        payload,
        pad: usize::from(x >> 3 & 7),
        flip: (x & 0x40 != 0).then(|| inp.u16()),
        ecn_window: if x & 0x80 == 0 { 512 } else { 1024 },
    };
    *next_seq = seq.wrapping_add(payload.len() as u32);
    build(framing, &s)
}

/// Encodes a segment continuing the flow with `payload` (ACK, timestamps), for [`packet`].
pub fn write_segment(w: &mut Writer, payload: &[u8], psh: bool) {
    let kind = 1 | if psh { 1 << 3 } else { 0 };
    w.u8(kind).u8(payload.len() as u8).raw(payload).u8(0).u16(7);
}

/// The target's body.
pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let cfg = inp.u8();
    let framing = if cfg & 1 == 0 {
        Framing::Ip
    } else {
        Framing::Ethernet
    };
    let mtu = MTUS[usize::from(cfg >> 1) % MTUS.len()];
    let dual = cfg & CFG_DUAL != 0;
    let mut next_seq = inp.u32();
    let mut pkts: Vec<Vec<u8>> = Vec::new();
    let mut keys: Vec<u16> = Vec::new();
    let mut refuse: Vec<i32> = Vec::new();
    while !inp.is_empty() && pkts.len() < 160 {
        let k = inp.u8();
        if k == 0xff {
            // A virtio-net header and a frame through complete_read.
            let vnet = inp.take(VNET_HDR_LEN).to_vec();
            let mut f = inp.bytes().to_vec();
            read(&vnet, &mut f);
            continue;
        }
        // The device: 0, 1, or 2 (none); in a dual-stack input, of the bits below the family's.
        let dev = if dual { k & !(KEY_V6 | KEY_PARTIAL) } else { k };
        keys.push(u16::from(dev % 3));
        refuse.push(match k >> 2 & 7 {
            1 => EINVAL,
            2 => EBADFD,
            _ => 0,
        });
        pkts.push(packet(&mut inp, framing, dual, k, &mut next_seq));
    }
    for p in &pkts {
        merged(p, framing, mtu);
    }
    coalesce(&pkts, &keys, &refuse, framing);
}

/// `complete_read` on an arbitrary header: no panic; changes only the checksum field.
fn read(vnet: &[u8], f: &mut [u8]) {
    let before = f.to_vec();
    if complete_read(vnet, f) && vnet.len() == VNET_HDR_LEN && vnet[0] & 1 != 0 {
        let start = usize::from(u16::from_le_bytes([vnet[6], vnet[7]]));
        let field = start + usize::from(u16::from_le_bytes([vnet[8], vnet[9]]));
        for (i, (a, b)) in before.iter().zip(f.iter()).enumerate() {
            assert!(a == b || i == field || i == field + 1, "byte {i} changed");
        }
    } else {
        assert_eq!(&before[..], &f[..], "refused or nothing to do: unchanged");
    }
}

/// A TCP packet as etherparse reads it.
struct Tcp<'a> {
    /// Offset of the TCP header (behind IPv4 options or IPv6 extension headers, if any).
    l4: usize,
    addrs: Addrs,
    /// The IP header's checksum verifies (IPv6 has none).
    ip_ok: bool,
    /// The TCP header and payload, as long as the IP length says.
    tcp: TcpSlice<'a>,
}

impl Tcp<'_> {
    /// IPv6, else IPv4.
    fn v6(&self) -> bool {
        matches!(self.addrs, Addrs::V6(..))
    }

    /// The IP header's fixed length for the family (batch_gro merges nothing longer).
    fn ip_hdr(&self) -> usize {
        if self.v6() { 40 } else { 20 }
    }

    /// The virtio-net GSO type for the family.
    fn gso_type(&self) -> u8 {
        if self.v6() { GSO_TCPV6 } else { GSO_TCPV4 }
    }

    /// Bytes of the TCP header.
    fn doff(&self) -> usize {
        usize::from(self.tcp.data_offset()) * 4
    }

    /// The sum of the pseudo-header over the TCP bytes.
    fn pseudo(&self) -> u64 {
        pseudo_sum(self.addrs, self.tcp.slice().len())
    }

    /// Whether the TCP checksum verifies, as a receiver checks it: the segment and the
    /// pseudo-header sum to all ones. (The fast check, for every packet.)
    fn verifies(&self) -> bool {
        checksum::fold(checksum::add(
            self.pseudo(),
            checksum::sum(self.tcp.slice()),
        )) == 0xffff
    }

    /// Whether the TCP checksum field holds the checksum etherparse computes (or the other zero
    /// of one's complement arithmetic, 0xffff for 0, which [`Tcp::verifies`] accepts too).
    fn checksum_ok(&self) -> bool {
        let want = match self.addrs {
            Addrs::V4(s, d) => self.tcp.calc_checksum_ipv4(s, d),
            Addrs::V6(s, d) => self.tcp.calc_checksum_ipv6(s, d),
        };
        let field = self.tcp.checksum();
        want.is_ok_and(|c| c == field || (c, field) == (0, 0xffff))
    }

    /// Whether batch_gro looks at it at all: TCP right behind the fixed IP header (no IPv4
    /// options, no IPv6 extension headers) whose checksum (IPv4) verifies, the TCP header's
    /// reserved bits clear, with payload.
    fn plain(&self, framing: Framing) -> bool {
        self.ip_ok
            && self.l4 == framing.l3() + self.ip_hdr()
            && self.tcp.slice()[12] & 0x0f == 0
            && !self.tcp.payload().is_empty()
    }

    /// A segment [`tcp_segment`] must take (see `batch_gro`'s module docs): plain, ACK and
    /// maybe PSH but no other flag, its checksum verifying.
    fn mergeable(&self, framing: Framing) -> bool {
        self.plain(framing) && self.tcp.slice()[13] & !0x08 == 0x10 && self.verifies()
    }

    /// A packet [`kernel_merged`] must take for a device MTU of `mtu`: plain, ACK, the
    /// pseudo-header sum in its checksum field and a checksum that does not verify, room for
    /// some payload behind the headers.
    fn is_kernel_merged(&self, framing: Framing, mtu: usize) -> bool {
        self.plain(framing)
            && self.tcp.ack()
            && mtu > self.ip_hdr() + self.doff()
            && self.tcp.checksum() == checksum::fold(self.pseudo())
            && !self.verifies()
    }
}

/// `p` as etherparse reads it, if it is TCP over IPv4 or IPv6.
fn parse(p: &[u8], framing: Framing) -> Option<Tcp<'_>> {
    let s = match framing {
        Framing::Ethernet => SlicedPacket::from_ethernet(p),
        Framing::Ip => SlicedPacket::from_ip(p),
    }
    .ok()?;
    let Some(TransportSlice::Tcp(tcp)) = s.transport else {
        return None;
    };
    let mut ip_ok = true;
    let addrs = match s.net? {
        NetSlice::Ipv4(ip) => {
            let h = ip.header().to_header();
            ip_ok = h.calc_header_checksum() == h.header_checksum;
            Addrs::V4(h.source, h.destination)
        }
        // A zero payload length (a jumbogram's) etherparse reads as the rest of the buffer;
        // batch_gro takes no jumbograms.
        NetSlice::Ipv6(ip) if ip.header().payload_length() == 0 => return None,
        NetSlice::Ipv6(ip) => Addrs::V6(ip.header().source(), ip.header().destination()),
        NetSlice::Arp(_) => return None,
    };
    // The TCP header's offset: where etherparse's slice of it starts within `p`.
    let l4 = tcp.slice().as_ptr() as usize - p.as_ptr() as usize;
    Some(Tcp {
        l4,
        addrs,
        ip_ok,
        tcp,
    })
}

/// `kernel_merged` and `complete_merged` on one packet.
fn merged(p: &[u8], framing: Framing, mtu: usize) {
    let v = kernel_merged(p, framing, mtu);
    let mut c = p.to_vec();
    let done = complete_merged(&mut c, framing);
    let parsed = parse(p, framing);
    assert_eq!(
        v.is_some(),
        parsed
            .as_ref()
            .is_some_and(|m| m.is_kernel_merged(framing, mtu)),
        "kernel_merged takes exactly the TCP packets with the pseudo-header sum in the field"
    );
    let (Some(v), Some(m)) = (v, parsed) else {
        return;
    };
    crate::trace!("kernel_merged: {v:?}");
    assert!(done, "a merged packet can be completed");
    let t = m.l4;
    assert_eq!(
        t,
        framing.l3() + m.ip_hdr(),
        "TCP behind the fixed IP header"
    );
    let doff = m.doff();
    let payload = m.tcp.payload().len();
    let ip_hdr = m.ip_hdr();
    assert_eq!(
        m.tcp.checksum(),
        checksum::fold(m.pseudo()),
        "the field holds the pseudo-header sum"
    );
    assert_eq!(v[0], 1, "checksum partial");
    assert_eq!(u16::from_le_bytes([v[6], v[7]]) as usize, t, "csum_start");
    assert_eq!(u16::from_le_bytes([v[8], v[9]]), 16, "csum_offset");
    match v[1] {
        0 => {
            assert_eq!(&v[2..6], &[0, 0, 0, 0], "no GSO: no sizes");
            assert!(
                payload + ip_hdr + doff <= mtu,
                "one segment's worth fits MTU {mtu}"
            );
        }
        g => {
            assert_eq!(g, m.gso_type(), "GSO TCPv4 or TCPv6 by family");
            let gso = usize::from(u16::from_le_bytes([v[4], v[5]]));
            assert_eq!(
                usize::from(u16::from_le_bytes([v[2], v[3]])),
                t + doff,
                "hdr_len"
            );
            assert!(
                gso > 0 && gso + ip_hdr + doff <= mtu,
                "gso_size {gso} fits MTU {mtu}"
            );
            assert!(payload > gso, "GSO only for more than one segment");
        }
    }
    // Completed: the checksum verifies; nothing else changed.
    let completed = parse(&c, framing).expect("a completed packet parses");
    assert!(completed.checksum_ok(), "the completed checksum verifies");
    assert_eq!(p.len(), c.len());
    let field = t + 16..t + 18;
    let changed = differs_but(p, &c, p.len(), std::slice::from_ref(&field));
    assert!(changed.is_none(), "byte {changed:?} changed");
}

/// The first byte below `end` where `a` and `b` differ outside `skip` (ranges in order). Slices
/// compared whole, not byte by byte: the fuzzer's comparison tracing would slow a byte loop.
fn differs_but(a: &[u8], b: &[u8], end: usize, skip: &[Range<usize>]) -> Option<usize> {
    let mut from = 0;
    for r in skip.iter().cloned().chain(std::iter::once(end..end)) {
        let to = r.start.min(end);
        if from < to && a[from..to] != b[from..to] {
            return (from..to).find(|&i| a[i] != b[i]);
        }
        from = from.max(r.end);
    }
    None
}

/// The receive coalescing over `pkts`, as a worker runs it.
fn coalesce(pkts: &[Vec<u8>], keys: &[u16], refuse: &[i32], framing: Framing) {
    let sinks = [Sink::default(), Sink::default()];
    let bytes = |(i, off): Part| pkts.get(i).and_then(|p| p.get(off..));
    let dev = |k: u16| sinks.get(usize::from(k));
    let mut run = TcpRun::new(framing);
    let mut ctr = Counters::default();
    // Where each packet went: left to the caller, or merged (in which write of which device).
    let mut singles: Vec<usize> = Vec::new();
    let mut merged_runs: Vec<Vec<usize>> = Vec::new();
    let mut segs: Vec<Option<TcpSegment>> = Vec::new();
    let mut flush = |run: &mut TcpRun,
                     singles: &mut Vec<usize>,
                     merged_runs: &mut Vec<Vec<usize>>,
                     segs: &[Option<TcpSegment>],
                     i: usize| {
        // The device's behaviour for this flush: the next packet's draw.
        for s in &sinks {
            *s.refuse.borrow_mut() = refuse.get(i).copied().unwrap_or(0);
        }
        let f = run.flush(dev, bytes);
        crate::trace!("flush before packet {i}: {f:?}");
        match f {
            Flushed::Empty => {}
            Flushed::One { part, .. } => {
                assert_eq!(part.1, 0);
                singles.push(part.0);
                assert_eq!(run.settle(f, &mut ctr).1, 1);
            }
            Flushed::Merged { count, bytes: n } => {
                let parts: Vec<usize> = run.flushed(count).iter().map(|p| p.0).collect();
                assert_eq!(parts.len(), count);
                let key = keys[parts[0]];
                let w = sinks[usize::from(key)].written.borrow();
                let written = w.last().expect("a merged run was written");
                check_super(pkts, segs, &parts, written, framing, n);
                merged_runs.push(parts);
                let tx = ctr.tx_device;
                assert_eq!(run.settle(f, &mut ctr), (0, 0));
                assert_eq!(ctr.tx_device, tx + count as u64);
            }
            Flushed::Refused { key, count, .. } => {
                let parts: Vec<usize> = run.flushed(count).iter().map(|p| p.0).collect();
                assert!(parts.iter().all(|i| keys[*i] == key));
                let (k, left) = run.settle(f, &mut ctr);
                if left > 0 {
                    assert_eq!((k, left), (key, count));
                }
                singles.extend(parts);
            }
        }
    };
    for (i, p) in pkts.iter().enumerate() {
        let seg = tcp_segment(p, framing);
        segs.push(seg);
        let m = parse(p, framing);
        assert_eq!(
            seg.is_some(),
            m.as_ref().is_some_and(|m| m.mergeable(framing)),
            "tcp_segment takes exactly the segments that may be merged"
        );
        match seg {
            None => {
                flush(&mut run, &mut singles, &mut merged_runs, &segs, i);
                singles.push(i);
            }
            Some(s) => {
                assert_eq!(s.l3, framing.l3());
                assert!(s.payload > 0 && s.hdr_len + s.payload <= p.len());
                let m = m.expect("a segment parses as TCP");
                assert_eq!(
                    (s.v6, s.hdr_len, s.seq, s.payload, s.psh),
                    (
                        m.v6(),
                        m.l4 + m.doff(),
                        m.tcp.sequence_number(),
                        m.tcp.payload().len(),
                        m.tcp.psh()
                    ),
                    "the segment is what etherparse reads"
                );
                if !run.offer(keys[i], (i, 0), &s, bytes) {
                    flush(&mut run, &mut singles, &mut merged_runs, &segs, i);
                    run.start(keys[i], (i, 0), &s);
                }
            }
        }
    }
    flush(&mut run, &mut singles, &mut merged_runs, &segs, pkts.len());
    // Every packet exactly once, runs of consecutive packets.
    let mut all: Vec<usize> = singles.clone();
    for r in &merged_runs {
        assert!(r.len() >= 2);
        assert!(
            r.windows(2).all(|w| w[1] == w[0] + 1),
            "a run is consecutive: {r:?}"
        );
        all.extend(r);
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (0..pkts.len()).collect::<Vec<_>>(),
        "every packet exactly once"
    );
    let written: usize = sinks.iter().map(|s| s.written.borrow().len()).sum();
    assert_eq!(written, merged_runs.len(), "one write per merged run");
}

/// A super-packet written for the segments `parts`.
fn check_super(
    pkts: &[Vec<u8>],
    segs: &[Option<TcpSegment>],
    parts: &[usize],
    w: &[u8],
    framing: Framing,
    bytes: usize,
) {
    let l3 = framing.l3();
    let first = segs[parts[0]].expect("merged segments are segments");
    let h = first.hdr_len;
    let head = &pkts[parts[0]];
    let one = parse(head, framing).expect("a merged segment parses");
    let t = l3 + one.ip_hdr();
    let (vnet, p) = w.split_at(VNET_HDR_LEN);
    assert_eq!(
        (vnet[0], vnet[1]),
        (1, one.gso_type()),
        "checksum partial, GSO TCPv4 or TCPv6 by family"
    );
    let le16 = |i: usize| usize::from(u16::from_le_bytes([vnet[i], vnet[i + 1]]));
    assert_eq!(le16(2), h, "hdr_len");
    assert_eq!(le16(4), first.payload, "gso_size");
    assert_eq!(le16(6), t, "csum_start");
    assert_eq!(le16(8), 16, "csum_offset");
    // What may differ from the first segment's headers: in a segment, the IP length (and
    // IPv4's ID and header checksum), the TCP sequence number (contiguous), flags (PSH on the
    // last only) and checksum; in the super-packet, the same but for the ID and sequence number.
    let (seg_skip, super_skip) = if one.v6() {
        (
            vec![l3 + 4..l3 + 6, t + 4..t + 8, t + 13..t + 14, t + 16..t + 18],
            vec![l3 + 4..l3 + 6, t + 13..t + 14, t + 16..t + 18],
        )
    } else {
        (
            vec![
                l3 + 2..l3 + 6,
                l3 + 10..l3 + 12,
                t + 4..t + 8,
                t + 13..t + 14,
                t + 16..t + 18,
            ],
            vec![
                l3 + 2..l3 + 4,
                l3 + 10..l3 + 12,
                t + 13..t + 14,
                t + 16..t + 18,
            ],
        )
    };
    // The payload: each segment's, in order; the segments' headers: the first's but for the
    // ranges above.
    let mut want = Vec::new();
    let mut total = 0;
    for (k, i) in parts.iter().enumerate() {
        let s = segs[*i].expect("a segment");
        assert_eq!(s.hdr_len, h);
        let q = &pkts[*i];
        let differs = differs_but(q, head, h, &seg_skip);
        assert!(differs.is_none(), "segment {k}: header byte {differs:?}");
        let seq = first.seq.wrapping_add((k * first.payload) as u32);
        assert_eq!(
            &q[t + 4..t + 8],
            &seq.to_be_bytes(),
            "segment {k}: contiguous"
        );
        let last = k + 1 == parts.len();
        assert!(
            q[t + 13] == 0x10 || (last && q[t + 13] == 0x18),
            "segment {k}: ACK, PSH on the last only"
        );
        if !last {
            assert_eq!(s.payload, first.payload, "all but the last carry gso_size");
        } else {
            assert!(s.payload <= first.payload, "the last carries no more");
        }
        want.extend_from_slice(&pkts[*i][h..h + s.payload]);
        total += s.payload;
    }
    assert_eq!(
        &p[h..],
        &want[..],
        "the payload is the segments' payloads, in order"
    );
    assert_eq!(bytes, parts.len() * h + total);
    // The headers: the first segment's, but for the IP length (and IPv4's header checksum),
    // the TCP checksum, and PSH from the last segment.
    let differs = differs_but(p, head, h, &super_skip);
    assert!(differs.is_none(), "header byte {differs:?} is the first's");
    let tail = &pkts[parts[parts.len() - 1]];
    assert_eq!(p[t + 13], head[t + 13] | (tail[t + 13] & 0x08), "TCP flags");
    // Completed the way the kernel does (the sum from csum_start into the field), the
    // super-packet parses and its TCP checksum verifies.
    let mut whole = p.to_vec();
    let c = checksum::finish(checksum::sum(&whole[t..]));
    whole[t + 16..t + 18].copy_from_slice(&c.to_be_bytes());
    let sup = parse(&whole, framing).expect("the super-packet parses as TCP");
    assert_eq!(sup.v6(), one.v6(), "the family");
    assert_eq!(sup.l4, t, "no IPv4 options, no IPv6 extension headers");
    assert_eq!(
        t + sup.tcp.slice().len(),
        p.len(),
        "the IP length is the whole's"
    );
    if !sup.v6() {
        assert!(checksum::verify(&whole[l3..t]), "IPv4 header checksum");
    }
    assert_eq!(
        sup.tcp.sequence_number(),
        first.seq,
        "the first sequence number"
    );
    assert!(sup.checksum_ok(), "the completed TCP checksum verifies");
}
