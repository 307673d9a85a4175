//! `gro`: the receive coalescing of `daemon::batch_gro`: a sequence of packets (raw, or TCP
//! segments built from fields of the input with valid checksums, then maybe corrupted) goes
//! through [`tcp_segment`], [`TcpRun::offer`], [`TcpRun::start`] and [`TcpRun::flush`] into
//! devices that record (or refuse) what is written, the way a worker drains a receive batch;
//! each packet also goes through [`kernel_merged`] and [`complete_merged`], and arbitrary
//! virtio-net headers through [`complete_read`].
//!
//! Checked:
//! - every packet ends up exactly once: merged into one super-packet, or left to the caller
//!   (not a segment, a run of one, a refused run), in order;
//! - a merged super-packet's payload is the concatenation of its segments' payloads; its
//!   headers parse (Ethernet, IPv4 with the total length and a valid checksum, TCP with the
//!   first segment's sequence number) and its TCP checksum, completed as the kernel does,
//!   verifies; its virtio-net header says GSO TCPv4, checksum partial at the TCP checksum,
//!   the header length, and gso_size = the first segment's payload; every segment but the
//!   last carries that much, the last no more;
//! - what `kernel_merged` accepts has the pseudo-header sum in its checksum field, a gso_size
//!   that fits the MTU (or no GSO for one segment's worth), and `complete_merged` then makes
//!   its checksum verify, changing nothing else.

use crate::input::{Input, Writer};
use encap::checksum;
use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::net::Ipv4Addr;
use vtepd::core::Counters;
use vtepd::daemon::batch_gro::{
    Flushed, Framing, PacketWrite, Part, TcpRun, TcpSegment, VNET_HDR_LEN, complete_merged,
    complete_read, kernel_merged, tcp_segment,
};

const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
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
    seq: u32,
    flags: u8,
    opts: &'a [u8],
    sport: u16,
    id: u16,
    tos: u8,
    df: bool,
    payload: &'a [u8],
    pad: usize,
    flip: Option<u16>,
    ecn_window: u16,
}

/// A TCP/IPv4 packet (in an Ethernet frame for [`Framing::Ethernet`]) with valid checksums.
fn build(framing: Framing, s: &SegSpec<'_>) -> Vec<u8> {
    let l3 = framing.l3();
    let doff = 20 + s.opts.len();
    let mut f = vec![0u8; l3 + 20 + doff + s.payload.len()];
    if framing == Framing::Ethernet {
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[8, 0]);
    }
    let ip_len = (20 + doff + s.payload.len()) as u16;
    {
        let ip = &mut f[l3..l3 + 20];
        ip[0] = 0x45;
        ip[1] = s.tos;
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        ip[4..6].copy_from_slice(&s.id.to_be_bytes());
        ip[6] = if s.df { 0x40 } else { 0 };
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&SRC.octets());
        ip[16..20].copy_from_slice(&DST.octets());
        let c = checksum::checksum(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let t = l3 + 20;
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
    let p = checksum::pseudo_header(SRC, DST, 6, ip_len - 20);
    let c = checksum::finish(checksum::add(p, checksum::sum(&f[t..])));
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

/// A packet: raw bytes, or a segment continuing the flow (`next_seq`) or not.
fn packet(inp: &mut Input<'_>, framing: Framing, next_seq: &mut u32) -> Vec<u8> {
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
        keys.push(u16::from(k % 3));
        refuse.push(match k >> 2 & 7 {
            1 => EINVAL,
            2 => EBADFD,
            _ => 0,
        });
        pkts.push(packet(&mut inp, framing, &mut next_seq));
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

/// `kernel_merged` and `complete_merged` on one packet.
fn merged(p: &[u8], framing: Framing, mtu: usize) {
    let l3 = framing.l3();
    let v = kernel_merged(p, framing, mtu);
    let mut c = p.to_vec();
    let done = complete_merged(&mut c, framing);
    let Some(v) = v else { return };
    assert!(done, "a merged packet can be completed");
    let ip_total = usize::from(u16::from_be_bytes([p[l3 + 2], p[l3 + 3]]));
    let t = l3 + 20;
    let tcp_len = ip_total - 20;
    let doff = usize::from(p[t + 12] >> 4) * 4;
    let payload = tcp_len - doff;
    let pseudo = checksum::pseudo_header(src_of(p, l3), dst_of(p, l3), 6, tcp_len as u16);
    assert_eq!(
        u16::from_be_bytes([p[t + 16], p[t + 17]]),
        checksum::fold(pseudo),
        "the field holds the pseudo-header sum"
    );
    assert_eq!(v[0], 1, "checksum partial");
    assert_eq!(u16::from_le_bytes([v[6], v[7]]) as usize, t, "csum_start");
    assert_eq!(u16::from_le_bytes([v[8], v[9]]), 16, "csum_offset");
    match v[1] {
        0 => assert_eq!(&v[2..6], &[0, 0, 0, 0], "no GSO: no sizes"),
        1 => {
            let gso = usize::from(u16::from_le_bytes([v[4], v[5]]));
            assert_eq!(
                usize::from(u16::from_le_bytes([v[2], v[3]])),
                t + doff,
                "hdr_len"
            );
            assert!(
                gso > 0 && gso + 20 + doff <= mtu,
                "gso_size {gso} fits MTU {mtu}"
            );
            assert!(payload > gso, "GSO only for more than one segment");
        }
        g => panic!("gso_type {g}"),
    }
    // Completed: the checksum verifies; nothing else changed.
    let sum = checksum::add(pseudo, checksum::sum(&c[t..l3 + ip_total]));
    assert_eq!(
        checksum::fold(sum),
        0xffff,
        "the completed checksum verifies"
    );
    for (i, (a, b)) in p.iter().zip(c.iter()).enumerate() {
        assert!(a == b || i == t + 16 || i == t + 17, "byte {i} changed");
    }
}

fn src_of(p: &[u8], l3: usize) -> Ipv4Addr {
    Ipv4Addr::new(p[l3 + 12], p[l3 + 13], p[l3 + 14], p[l3 + 15])
}

fn dst_of(p: &[u8], l3: usize) -> Ipv4Addr {
    Ipv4Addr::new(p[l3 + 16], p[l3 + 17], p[l3 + 18], p[l3 + 19])
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
        match seg {
            None => {
                flush(&mut run, &mut singles, &mut merged_runs, &segs, i);
                singles.push(i);
            }
            Some(s) => {
                assert_eq!(s.l3, framing.l3());
                assert!(s.payload > 0 && s.hdr_len + s.payload <= p.len());
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
    let (vnet, p) = w.split_at(VNET_HDR_LEN);
    if pkts[parts[0]].get(l3).is_some_and(|b| b >> 4 == 6) {
        // An IPv6 run (raw input can form one): its checks are the unit tests' for now; here
        // only its GSO type.
        assert_eq!((vnet[0], vnet[1]), (1, 4), "checksum partial, GSO TCPv6");
        return;
    }
    assert_eq!((vnet[0], vnet[1]), (1, 1), "checksum partial, GSO TCPv4");
    assert_eq!(
        usize::from(u16::from_le_bytes([vnet[2], vnet[3]])),
        h,
        "hdr_len"
    );
    assert_eq!(
        usize::from(u16::from_le_bytes([vnet[4], vnet[5]])),
        first.payload,
        "gso_size"
    );
    assert_eq!(
        usize::from(u16::from_le_bytes([vnet[6], vnet[7]])),
        l3 + 20,
        "csum_start"
    );
    assert_eq!(u16::from_le_bytes([vnet[8], vnet[9]]), 16, "csum_offset");
    // The payload: each segment's, in order.
    let mut want = Vec::new();
    let mut total = 0;
    for (k, i) in parts.iter().enumerate() {
        let s = segs[*i].expect("a segment");
        assert_eq!(s.hdr_len, h);
        if k + 1 < parts.len() {
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
    // The headers parse.
    if framing == Framing::Ethernet {
        assert_eq!(
            &p[..l3],
            &pkts[parts[0]][..l3],
            "the first segment's Ethernet header"
        );
    }
    let ip = &p[l3..l3 + 20];
    assert_eq!(ip[0], 0x45);
    assert_eq!(
        usize::from(u16::from_be_bytes([ip[2], ip[3]])),
        p.len() - l3,
        "IP length"
    );
    assert!(checksum::verify(ip), "IP header checksum");
    assert_eq!(ip[9], 6);
    let t = l3 + 20;
    assert_eq!(
        &p[t + 4..t + 8],
        &first.seq.to_be_bytes(),
        "the first sequence number"
    );
    // The TCP checksum, completed the way the kernel does, verifies.
    let mut whole = p.to_vec();
    let c = checksum::finish(checksum::sum(&whole[t..]));
    whole[t + 16..t + 18].copy_from_slice(&c.to_be_bytes());
    let pseudo = checksum::pseudo_header(src_of(p, l3), dst_of(p, l3), 6, (p.len() - t) as u16);
    let sum = checksum::add(pseudo, checksum::sum(&whole[t..]));
    assert_eq!(
        checksum::fold(sum),
        0xffff,
        "the completed TCP checksum verifies"
    );
}
