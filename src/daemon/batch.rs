//! Preallocated buffer arenas for batched I/O: a receive batch filled by one `recvmmsg`, and a
//! send batch of encapsulated frames emptied by one `sendmmsg`.
//!
//! Both are allocated once per worker and reused for its whole life, so moving packets never
//! allocates. The send batch keeps each frame where it was read (in a slot of its arena) and the
//! outer headers of every copy in a small array of their own, so head-end replication sends all
//! copies of a frame, each with its own outer header, in the same `sendmmsg` without copying the
//! frame.

use super::batch_gro::{MAX_HEADER, Part};
use super::capture::WorkerCapture;
use super::io::DatagramSocket;
use crate::core::{Counters, DropReason, Remote};
use crate::sys::{MAX_BATCH, RecvMeta, SendMsg};
use encap::tunnel::vxlan::OVERHEAD;
use std::io;
use std::net::{IpAddr, Ipv4Addr};

/// Room in front of each frame slot for the outer headers (encap writes them there first): the
/// longest, VXLAN's over IPv6 (56 bytes; 36 over IPv4).
pub const HEADROOM: usize = encap::tunnel::vxlan6::OVERHEAD;
/// Largest datagram or frame a slot holds.
pub const MAX_PACKET: usize = 65_536;

/// Most datagrams one read may hold when the kernel coalesced them (UDP_GRO); the kernel's own
/// limit per coalesced packet is 64 (GRO) or 128 (a local sender's UDP_SEGMENT).
const MAX_SEGMENTS: usize = 128;

/// Where one datagram of a receive batch is.
#[derive(Debug, Clone, Copy, Default)]
struct Datagram {
    /// Which read (arena slot and its [`RecvMeta`]).
    read: u16,
    /// Start in the arena.
    start: u32,
    /// Bytes.
    len: u32,
}

/// Datagrams received by one `recvmmsg`, each read in its own slot of an arena. With UDP_GRO on
/// the socket a read may hold a run of equal-size datagrams; they are indexed one by one, so
/// a caller sees datagrams either way.
pub struct RecvBatch {
    arena: Box<[u8]>,
    meta: [RecvMeta; MAX_BATCH],
    /// Reads in the batch.
    reads: usize,
    /// The datagrams of the reads, in order; `dgrams[..len]` are valid.
    dgrams: Box<[Datagram]>,
    len: usize,
    /// Datagrams of the last receive beyond the index's room (only if the kernel coalesced
    /// more than [`MAX_SEGMENTS`] into one read): lost.
    unindexed: usize,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("reads", &self.reads)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch::new()
    }
}

impl RecvBatch {
    /// An empty batch with room for [`MAX_BATCH`] reads of up to [`MAX_PACKET`] bytes.
    pub fn new() -> RecvBatch {
        RecvBatch {
            arena: vec![0u8; MAX_BATCH * MAX_PACKET].into_boxed_slice(),
            meta: [RecvMeta::default(); MAX_BATCH],
            reads: 0,
            dgrams: vec![Datagram::default(); MAX_BATCH * MAX_SEGMENTS].into_boxed_slice(),
            len: 0,
            unindexed: 0,
        }
    }

    /// Replaces the batch with what is waiting on `sock` (at most [`MAX_BATCH`] reads); returns
    /// how many datagrams arrived and the socket's overflow drop count if it reported one.
    /// WouldBlock when none were waiting.
    pub fn recv(&mut self, sock: &impl DatagramSocket) -> io::Result<(usize, Option<u32>)> {
        self.len = 0;
        self.reads = 0;
        self.unindexed = 0;
        let (n, ovfl) = sock.recv_batch(&mut self.arena, MAX_PACKET, &mut self.meta)?;
        self.reads = n;
        for (r, m) in self.meta[..n].iter().enumerate() {
            let base = r * MAX_PACKET;
            let step = match usize::from(m.gso_size) {
                0 => m.len.max(1),
                g => g,
            };
            let mut off = 0;
            // An empty datagram is still one datagram.
            while off < m.len || (off == 0 && m.len == 0) {
                let Some(d) = self.dgrams.get_mut(self.len) else {
                    // At least one: an empty read is one datagram too.
                    self.unindexed += (m.len - off).div_ceil(step).max(1);
                    break;
                };
                let len = step.min(m.len - off);
                // Both fit: the arena is MAX_BATCH * MAX_PACKET bytes (below 2^32).
                *d = Datagram {
                    read: r as u16,
                    start: (base + off) as u32,
                    len: len as u32,
                };
                self.len += 1;
                off += step;
                if m.len == 0 {
                    break;
                }
            }
        }
        Ok((self.len, ovfl))
    }

    /// [`RecvBatch::recv`], with the losses counted in `ctr`: what the socket's queue dropped
    /// since `overflow` (its last seen drop count, updated) as `RxQueueFull`, and datagrams
    /// past the index's room as received and `Truncated`.
    pub fn recv_counted(
        &mut self,
        sock: &impl DatagramSocket,
        overflow: &mut u32,
        ctr: &mut Counters,
    ) -> io::Result<usize> {
        let (n, ovfl) = self.recv(sock)?;
        if let Some(o) = ovfl {
            count_overflow(o, overflow, ctr);
        }
        let lost = self.unindexed as u64;
        ctr.rx_tunnel += lost;
        ctr.drops[DropReason::Truncated as usize] += lost;
        Ok(n)
    }

    /// Reads (kernel receives) in the batch: fewer than [`MAX_BATCH`] means the socket was
    /// drained.
    pub fn reads(&self) -> usize {
        self.reads
    }

    /// Number of datagrams in the batch.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Datagrams the last receive lost because one read held more than the index has room
    /// for (count them as drops).
    pub fn unindexed(&self) -> usize {
        self.unindexed
    }

    /// True when the batch holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where datagram `i` is in the arena, and which read it came in (`None` past the end).
    fn locate(&self, i: usize) -> Option<(std::ops::Range<usize>, usize)> {
        let d = self.dgrams.get(i).filter(|_| i < self.len)?;
        let start = d.start as usize;
        Some((start..start + d.len as usize, usize::from(d.read)))
    }

    /// Datagram `i`: its bytes and how the read it came in arrived (`None` past the end).
    pub fn get(&self, i: usize) -> Option<(&[u8], &RecvMeta)> {
        let (bytes, read) = self.locate(i)?;
        Some((self.arena.get(bytes)?, self.meta.get(read)?))
    }

    /// The bytes of datagram `i` from offset `off` on (`None` past the end): where a
    /// [`Part`] of a run points.
    pub fn at(&self, (i, off): Part) -> Option<&[u8]> {
        self.get(i).and_then(|(d, _)| d.get(off..))
    }

    /// Datagram `i` to rewrite in place, with how its read arrived (`None` past the end).
    pub fn get_mut(&mut self, i: usize) -> Option<(&mut [u8], &RecvMeta)> {
        let (bytes, read) = self.locate(i)?;
        Some((self.arena.get_mut(bytes)?, self.meta.get(read)?))
    }
}

/// Counts the datagrams a socket's full receive queue dropped since `seen` (its drop count
/// when last read, updated), given its drop count `now`. A count older than `seen` (a datagram
/// queued before the last read carries the count of its time) adds nothing.
pub fn count_overflow(now: u32, seen: &mut u32, ctr: &mut Counters) {
    let lost = now.wrapping_sub(*seen);
    // The count only grows: a "negative" difference is an older reading, not 4 billion drops.
    if lost > 0 && lost < 1 << 31 {
        *seen = now;
        ctr.drops[DropReason::RxQueueFull as usize] += u64::from(lost);
    }
}

/// Sends every message of `msgs` on `sock` with as few `sendmmsg` calls as the kernel allows
/// (at most [`MAX_BATCH`] a call); a datagram the kernel refuses is reported to `on_error` (with
/// its index in `msgs`) and skipped, so one bad destination never holds up the others. The
/// index of each message the kernel took is told to `on_sent`. While a capture is armed,
/// each message is offered to it as sent (or as dropped, with the reason its error is counted
/// under), noted as vtepd's own when `own` says so of its index.
///
/// A refusal other than a full queue (ENOBUFS, EAGAIN) is tried once more: the kernel also
/// fails a send with an error left pending by an earlier ICMP error about another packet (and
/// clears it), which must not cost this one.
pub fn send_all(
    sock: &impl DatagramSocket,
    capture: &WorkerCapture,
    msgs: &[SendMsg<'_>],
    own: impl Fn(usize) -> bool,
    on_error: &mut impl FnMut(usize, &io::Error),
    on_sent: &mut impl FnMut(usize),
) -> Flushed {
    let mut out = Flushed::default();
    let mut i = 0;
    let mut retried = usize::MAX;
    while i < msgs.len() {
        match sock.send_batch(&msgs[i..]) {
            Ok(0) => {
                // Not expected from sendmmsg; never spin on it.
                let e = io::Error::from(io::ErrorKind::WriteZero);
                capture.sent(&msgs[i], Some(send_drop_reason(&e)), own(i));
                on_error(i, &e);
                out.failed += 1;
                i += 1;
            }
            Ok(k) => {
                out.sent += k as u64;
                if capture.active() {
                    (i..i + k).for_each(|j| capture.sent(&msgs[j], None, own(j)));
                }
                (i..i + k).for_each(&mut *on_sent);
                i += k;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if retried != i && !queue_full(&e) => retried = i,
            Err(e) => {
                capture.sent(&msgs[i], Some(send_drop_reason(&e)), own(i));
                on_error(i, &e);
                out.failed += 1;
                i += 1;
            }
        }
    }
    out
}

/// Whether a send failed because a queue on the way out was full (nothing pending to clear).
fn queue_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOBUFS) | Some(libc::EAGAIN))
}

/// The reason a datagram the kernel refused on send is counted under.
pub fn send_drop_reason(e: &io::Error) -> DropReason {
    match e.raw_os_error() {
        Some(libc::ENOBUFS) => DropReason::TunnelTxNoBufs,
        Some(libc::EAGAIN) => DropReason::TunnelTxFull,
        // Unreachable, EMSGSIZE, ...
        _ => DropReason::TunnelTxError,
    }
}

/// Longest head of a queued datagram: outer headers, then (for a segment cut from a device
/// super-frame) the segment's own inner headers.
pub const MAX_HEAD: usize = HEADROOM + MAX_HEADER;

/// Where one queued datagram's parts are.
#[derive(Debug, Clone, Copy, Default)]
struct Queued {
    /// Frame slot of the body.
    slot: u16,
    /// Start of the body in the slot.
    start: u32,
    /// Body bytes.
    len: u32,
    /// Head bytes.
    head_len: u8,
    dst: Option<Remote>,
    /// The network the datagram carries a frame of (its `NetId`), for the traffic counters.
    net: u16,
    /// It carries a frame vtepd made itself (its ARP, an echo reply), for captures.
    own: bool,
}

/// Frames read from a device, and the encapsulated copies queued for one `sendmmsg`.
pub struct SendBatch {
    /// `MAX_BATCH` slots of `HEADROOM + MAX_PACKET` bytes; frames are read at `HEADROOM`.
    frames: Box<[u8]>,
    /// Slots holding frames that queued copies may still refer to.
    used: usize,
    /// Heads of the queued copies (outer headers, and inner ones for segments).
    heads: [[u8; MAX_HEAD]; MAX_BATCH],
    /// Bytes of outer headers in front of each inner frame (36, or 56 over IPv6).
    outer: usize,
    queued: [Queued; MAX_BATCH],
    count: usize,
    /// What the copies queued from now on carry is vtepd's own ([`SendBatch::set_own`]).
    own: bool,
}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("used", &self.used)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch::new()
    }
}

/// Bytes of one frame slot: headroom, then the largest frame a device may hand over (a 64 KiB
/// IP packet behind an Ethernet header and a VLAN tag, rounded up).
const SLOT: usize = HEADROOM + MAX_PACKET + 64;

/// What one flush did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Datagrams the kernel took.
    pub sent: u64,
    /// Datagrams refused (each reported to the error callback).
    pub failed: u64,
}

impl SendBatch {
    /// An empty batch.
    pub fn new() -> SendBatch {
        SendBatch {
            frames: vec![0u8; MAX_BATCH * SLOT].into_boxed_slice(),
            used: 0,
            heads: [[0u8; MAX_HEAD]; MAX_BATCH],
            outer: OVERHEAD,
            queued: [Queued::default(); MAX_BATCH],
            count: 0,
            own: false,
        }
    }

    /// Its datagrams carry `outer` bytes of outer headers in front of each inner frame (for the
    /// inner bytes it reports sent; 36 unless told).
    pub fn set_outer_len(&mut self, outer: usize) {
        self.outer = outer;
    }

    /// Datagrams queued.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// True when another frame slot is free (else flush first).
    pub fn has_free_slot(&self) -> bool {
        self.used < MAX_BATCH || self.count == 0
    }

    /// True when another datagram can be queued (else flush first).
    pub fn has_room(&self) -> bool {
        self.count < MAX_BATCH
    }

    /// The next free frame slot, whole (`HEADROOM` bytes, then room for the frame), and its
    /// index. Call [`SendBatch::has_free_slot`] first; a slot is reused only once every copy
    /// that referred to it was flushed.
    pub fn next_slot(&mut self) -> (usize, &mut [u8]) {
        if self.count == 0 {
            self.used = 0;
        }
        let i = self.used.min(MAX_BATCH - 1);
        (i, &mut self.frames[i * SLOT..(i + 1) * SLOT])
    }

    /// Marks the slot returned by the last `next_slot` as holding a frame.
    pub fn commit_slot(&mut self) {
        self.used = (self.used + 1).min(MAX_BATCH);
    }

    /// Frame slot `i`, whole (for writing outer headers at its headroom).
    pub fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.frames[i * SLOT..(i + 1) * SLOT]
    }

    /// Marks the copies queued from now on as carrying frames vtepd made itself (`own`), or
    /// not; captures note them.
    pub fn set_own(&mut self, own: bool) {
        self.own = own;
    }

    /// Queues a datagram of network `net` to `dst`: the outer headers `head`, then the frame
    /// `slot[HEADROOM..HEADROOM + len]`. Returns false (nothing queued) when the batch is full.
    pub fn push(&mut self, head: &[u8], slot: usize, len: usize, dst: Remote, net: u16) -> bool {
        self.push_part(head, slot, HEADROOM, len, dst, net)
    }

    /// Queues a datagram of network `net` to `dst`: `head` (at most [`MAX_HEAD`] bytes), then
    /// `slot[start..start + len]`. Returns false (nothing queued) when the batch is full or the
    /// parts are out of range.
    pub fn push_part(
        &mut self,
        head: &[u8],
        slot: usize,
        start: usize,
        len: usize,
        dst: Remote,
        net: u16,
    ) -> bool {
        let (Ok(slot16), Ok(start32), Ok(len32), Ok(head8)) = (
            u16::try_from(slot),
            u32::try_from(start),
            u32::try_from(len),
            u8::try_from(head.len()),
        ) else {
            return false;
        };
        if self.count >= MAX_BATCH
            || slot >= MAX_BATCH
            || head.len() > MAX_HEAD
            || start.checked_add(len).is_none_or(|e| e > SLOT)
        {
            return false;
        }
        self.heads[self.count][..head.len()].copy_from_slice(head);
        self.queued[self.count] = Queued {
            slot: slot16,
            start: start32,
            len: len32,
            head_len: head8,
            dst: Some(dst),
            net,
            own: self.own,
        };
        self.count += 1;
        true
    }

    /// Sends everything queued on `sock` with as few `sendmmsg` calls as the kernel allows; a
    /// datagram the kernel refuses is reported to `on_error` (with its network and destination)
    /// and skipped;
    /// each one sent is told to `on_sent` (its network, destination and inner bytes: the
    /// datagram without its outer IP, UDP and VXLAN headers). The batch is empty afterwards.
    pub fn flush(
        &mut self,
        sock: &impl DatagramSocket,
        capture: &WorkerCapture,
        mut on_error: impl FnMut(u16, Remote, &io::Error),
        mut on_sent: impl FnMut(u16, Remote, u64),
    ) -> Flushed {
        let mut msgs = [SendMsg {
            head: &[],
            body: &[],
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        }; MAX_BATCH];
        for (i, q) in self.queued[..self.count].iter().enumerate() {
            let start = usize::from(q.slot) * SLOT + q.start as usize;
            msgs[i] = SendMsg {
                head: &self.heads[i][..usize::from(q.head_len)],
                body: &self.frames[start..start + q.len as usize],
                dst: q.dst.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), Remote::ip),
            };
        }
        let (queued, outer) = (&self.queued, self.outer);
        let mut on_error = |i: usize, e: &io::Error| {
            if let Some((q, dst)) = queued.get(i).and_then(|q| Some((q, q.dst?))) {
                on_error(q.net, dst, e);
            }
        };
        let out = send_all(
            sock,
            capture,
            &msgs[..self.count],
            |i| queued.get(i).is_some_and(|q| q.own),
            &mut on_error,
            &mut |i| {
                if let Some((q, dst)) = queued.get(i).and_then(|q| Some((q, q.dst?))) {
                    let inner = (usize::from(q.head_len) + q.len as usize).saturating_sub(outer);
                    on_sent(q.net, dst, inner as u64);
                }
            },
        );
        // `used` stays: the frame being worked on when a full batch forced this flush may
        // still queue more copies from its slot. The slots are recycled by `next_slot` once
        // nothing is queued.
        self.count = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys;

    #[test]
    fn slots_are_reused_only_after_a_flush() {
        let mut b = SendBatch::new();
        let head = [7u8; OVERHEAD];
        for k in 0..MAX_BATCH {
            assert!(b.has_free_slot());
            let (i, s) = b.next_slot();
            assert_eq!(i, k);
            s[HEADROOM] = k as u8;
            b.commit_slot();
            assert!(b.push(&head, i, 1, Remote::v4(Ipv4Addr::new(192, 0, 2, 1)), 0));
        }
        assert!(!b.has_free_slot());
        assert!(!b.has_room());
        assert!(!b.push(&head, 0, 1, Remote::v4(Ipv4Addr::new(192, 0, 2, 1)), 0));
        assert_eq!(b.len(), MAX_BATCH);
        // A flush in the middle of a frame's copies must not hand its slot out again.
        let raw = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let _ = b.flush(&raw, &WorkerCapture::default(), |_, _, _| {}, |_, _, _| {});
        assert!(b.push(
            &head,
            MAX_BATCH - 1,
            1,
            Remote::v4(Ipv4Addr::new(192, 0, 2, 1)),
            0
        ));
        assert!(!b.has_free_slot(), "the last slot is still referenced");
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn push_refuses_out_of_range() {
        let mut b = SendBatch::new();
        let head = [0u8; OVERHEAD];
        assert!(!b.push(&head, MAX_BATCH, 1, Remote::v4(Ipv4Addr::LOCALHOST), 0));
        assert!(!b.push(&head, 0, SLOT, Remote::v4(Ipv4Addr::LOCALHOST), 0));
        assert!(!b.push_part(
            &[0u8; MAX_HEAD + 1],
            0,
            0,
            1,
            Remote::v4(Ipv4Addr::LOCALHOST),
            0
        ));
        assert!(b.is_empty());
        assert!(b.push_part(
            &[0u8; MAX_HEAD],
            0,
            SLOT - 1,
            1,
            Remote::v4(Ipv4Addr::LOCALHOST),
            0
        ));
    }

    /// Hands out the reads given once (lengths and GSO sizes), then WouldBlock.
    struct Reads(std::sync::Mutex<Vec<(usize, u16)>>);

    impl DatagramSocket for Reads {
        fn recv_batch(
            &self,
            _arena: &mut [u8],
            _slot: usize,
            meta: &mut [RecvMeta],
        ) -> io::Result<(usize, Option<u32>)> {
            let reads = std::mem::take(&mut *self.0.lock().unwrap());
            if reads.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            for (m, &(len, gso_size)) in meta.iter_mut().zip(&reads) {
                *m = RecvMeta {
                    len,
                    gso_size,
                    ..RecvMeta::default()
                };
            }
            Ok((reads.len(), None))
        }
        fn send_batch(&self, _: &[SendMsg<'_>]) -> io::Result<usize> {
            Err(io::ErrorKind::Unsupported.into())
        }
        fn fd(&self) -> std::os::fd::RawFd {
            -1
        }
    }

    #[test]
    fn every_datagram_past_a_full_index_is_counted_even_an_empty_one() {
        let index = MAX_BATCH * MAX_SEGMENTS;
        // One read coalescing more one-byte datagrams than the index holds, then an empty one.
        let sock = Reads(vec![(MAX_PACKET, 1), (0, 0)].into());
        let mut b = RecvBatch::new();
        let mut ctr = Counters::default();
        let n = b.recv_counted(&sock, &mut 0, &mut ctr).unwrap();
        assert_eq!(n, index);
        assert_eq!(b.unindexed(), MAX_PACKET - index + 1);
        assert_eq!(ctr.rx_tunnel, (MAX_PACKET - index + 1) as u64);
        assert_eq!(
            ctr.drops[DropReason::Truncated as usize],
            ctr.rx_tunnel,
            "the lost ones are drops"
        );

        // Exactly the index, then an empty read: only that one is lost.
        let sock = Reads(vec![(index, 1), (0, 0)].into());
        assert_eq!(b.recv(&sock).unwrap().0, index);
        assert_eq!(b.unindexed(), 1);
    }

    #[test]
    fn coalesced_reads_are_split_into_the_datagrams_sent() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sys::enable_udp_gro(&rx).unwrap();
        rx.set_nonblocking(true).unwrap();
        socket2::SockRef::from(&rx).set_recv_tos_v4(true).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // DSCP EF with CE: every datagram of the coalesced read reports it.
        socket2::SockRef::from(&tx).set_tos_v4(0xbb).unwrap();
        let dst = rx.local_addr().unwrap();
        // 10 datagrams of 1000 bytes and a short one, each byte saying where it is.
        let payload: Vec<u8> = (0..10_300u32).map(|i| (i * 7 % 251) as u8).collect();
        let (head, body) = payload.split_at(123);
        let parts = [std::io::IoSlice::new(head), std::io::IoSlice::new(body)];
        assert_eq!(
            sys::send_segmented(&tx, &parts, dst, 0, 1000).unwrap(),
            payload.len()
        );
        // And one plain datagram after it.
        tx.send_to(&[9u8; 77], dst).unwrap();
        let mut b = RecvBatch::new();
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut coalesced = false;
        while got.len() < 12 {
            let (n, _) = b.recv(&rx).unwrap();
            coalesced |= n > b.reads();
            for i in 0..n {
                let (d, m) = b.get(i).unwrap();
                assert_eq!(m.src, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
                assert!(!m.truncated);
                assert_eq!(m.tos, 0xbb, "the outer TOS of datagram {}", got.len());
                got.push(d.to_vec());
            }
            assert_eq!(b.unindexed(), 0);
        }
        assert!(
            coalesced,
            "loopback hands a UDP_SEGMENT send to a UDP_GRO socket whole"
        );
        let want: Vec<&[u8]> = payload.chunks(1000).collect();
        assert_eq!(got.len(), 12);
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.as_slice(), *w);
        }
        assert_eq!(got[11], vec![9u8; 77]);
    }

    #[test]
    fn recv_batch_reads_loopback_datagrams() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..3u8 {
            tx.send_to(&[i; 9], rx.local_addr().unwrap()).unwrap();
        }
        let mut b = RecvBatch::new();
        let (n, _) = b.recv(&rx).unwrap();
        assert_eq!(n, 3);
        for i in 0..3 {
            let (d, m) = b.get(i).unwrap();
            assert_eq!(d, &[i as u8; 9]);
            assert_eq!(m.src, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        }
        assert!(b.get(3).is_none());
        assert_eq!(b.recv(&rx).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert!(b.is_empty());
    }
}
