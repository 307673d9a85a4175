//! `recv_split`: the UDP-GRO split of a receive batch ([`RecvBatch::recv`] and
//! [`RecvBatch::recv_counted`]): a socket of this target's (through the public
//! [`DatagramSocket`] trait, no kernel) hands over reads of arbitrary lengths, each with an
//! arbitrary `gso_size` (the size of the equal-size datagrams the kernel coalesced into it),
//! and the batch indexes them datagram by datagram.
//!
//! Checked: every byte of each read belongs to exactly one datagram, in order (datagram
//! by datagram, the bytes are the read's from where the previous one ended); each datagram has
//! the announced size but the last of its read, which is no longer (an empty read is one empty
//! datagram; a read without `gso_size` is one datagram); each datagram carries its read's
//! metadata; what does not fit the index is reported (`unindexed`) and counted as received and
//! dropped (`truncated`), never silently lost; the socket's overflow count becomes
//! `rx_queue_full` drops by difference.

use crate::input::{Input, Writer};
use std::cell::RefCell;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;
use vtepd::core::{Counters, DropReason};
use vtepd::daemon::batch::{MAX_PACKET, RecvBatch};
use vtepd::daemon::io::DatagramSocket;
use vtepd::sys::{MAX_BATCH, RecvMeta, SendMsg};

/// One read the socket hands over.
#[derive(Debug, Clone, Copy)]
struct Read {
    len: usize,
    gso_size: u16,
    tos: u8,
    seed: u8,
}

/// A socket that hands over `reads` once, and an overflow count.
struct FuzzSocket {
    reads: RefCell<Vec<Read>>,
    ovfl: Option<u32>,
}

/// Period of the byte pattern (a prime, so reads and offsets do not line up with it).
const PERIOD: usize = 251;

/// The pattern a read is filled with: byte `i` is `i % PERIOD`; read `read` made with `seed`
/// starts `shift(seed, read)` into it, so every (read, offset) tells itself apart locally.
fn table() -> &'static [u8] {
    static T: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        (0..MAX_PACKET + PERIOD)
            .map(|i| (i % PERIOD) as u8)
            .collect()
    })
}

fn shift(seed: u8, read: usize) -> usize {
    (usize::from(seed) + read * 17) % PERIOD
}

/// The byte at `off` of read `read` made with `seed`.
fn pattern(seed: u8, read: usize, off: usize) -> u8 {
    ((shift(seed, read) + off) % PERIOD) as u8
}

impl DatagramSocket for FuzzSocket {
    fn recv_batch(
        &self,
        arena: &mut [u8],
        slot: usize,
        meta: &mut [RecvMeta],
    ) -> io::Result<(usize, Option<u32>)> {
        let reads = std::mem::take(&mut *self.reads.borrow_mut());
        if reads.is_empty() {
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        let n = reads.len().min(meta.len()).min(arena.len() / slot);
        for (i, r) in reads[..n].iter().enumerate() {
            // The kernel never reports more than the slot holds.
            let len = r.len.min(slot);
            let k = shift(r.seed, i);
            arena[i * slot..i * slot + len].copy_from_slice(&table()[k..k + len]);
            meta[i] = RecvMeta {
                len,
                truncated: false,
                src: Some(Ipv4Addr::new(192, 0, 2, i as u8).into()),
                src_port: 0,
                gso_size: r.gso_size,
                tos: r.tos,
            };
        }
        Ok((n, self.ovfl))
    }
    fn send_batch(&self, _msgs: &[SendMsg<'_>]) -> io::Result<usize> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
    fn fd(&self) -> RawFd {
        -1
    }
}

thread_local! {
    /// One batch for every input: it is 4 MiB, made once as a worker makes it.
    static BATCH: RefCell<RecvBatch> = RefCell::new(RecvBatch::new());
}

fn reads(inp: &mut Input<'_>) -> Vec<Read> {
    let n = usize::from(inp.u8()) % (MAX_BATCH + 1);
    (0..n)
        .map(|_| {
            let l = inp.u16();
            let g = inp.u16();
            let x = inp.u8();
            Read {
                // Mostly short reads (cheap to fill), sometimes up to the slot.
                len: if x & 1 == 0 {
                    usize::from(l % 4096)
                } else {
                    usize::from(l)
                },
                gso_size: if x & 2 == 0 { g % 2048 } else { g },
                tos: x,
                seed: x.wrapping_mul(7),
            }
        })
        .collect()
}

/// Encodes a batch of reads: (length, gso_size) each.
pub fn write_reads(w: &mut Writer, reads: &[(u16, u16)]) {
    w.u8(reads.len() as u8);
    for (l, g) in reads {
        let big = *l >= 4096 || *g >= 2048;
        w.u16(*l).u16(*g).u8(if big { 3 } else { 0 });
    }
}

/// The target's body: up to four receives on one batch (the index is reused between them).
pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let mut last_ovfl = 0u32;
    BATCH.with(|b| {
        let mut batch = b.borrow_mut();
        for _ in 0..4 {
            let counted = inp.bool();
            let ovfl = inp.bool().then(|| inp.u32());
            let rs = reads(&mut inp);
            let sock = FuzzSocket {
                reads: RefCell::new(rs.clone()),
                ovfl,
            };
            let mut ctr = Counters::default();
            let before = last_ovfl;
            let got = if counted {
                batch.recv_counted(&sock, &mut last_ovfl, &mut ctr)
            } else {
                batch.recv(&sock).map(|(n, _)| n)
            };
            if rs.is_empty() {
                assert!(got.is_err(), "nothing waiting: WouldBlock");
                continue;
            }
            let n = got.expect("reads waiting");
            crate::trace!(
                "{} reads: {n} datagrams, {} unindexed",
                rs.len(),
                batch.unindexed()
            );
            check(&batch, &rs, n);
            if counted {
                let lost = batch.unindexed() as u64;
                assert_eq!(
                    ctr.rx_tunnel, lost,
                    "unindexed datagrams counted as received"
                );
                assert_eq!(ctr.drops_of(DropReason::Truncated), lost);
                // The kernel's count only grows: a reading "behind" the last one (a difference
                // of 2^31 or more) is an older datagram's and adds nothing.
                let newer = ovfl.filter(|o| o.wrapping_sub(before) < 1 << 31);
                let q = newer.map_or(0, |o| u64::from(o.wrapping_sub(before)));
                assert_eq!(ctr.drops_of(DropReason::RxQueueFull), q);
                assert_eq!(last_ovfl, newer.unwrap_or(before));
            }
            if inp.is_empty() {
                break;
            }
        }
    });
}

fn check(batch: &RecvBatch, rs: &[Read], n: usize) {
    assert_eq!(batch.len(), n);
    assert_eq!(batch.reads(), rs.len());
    assert!(batch.get(n).is_none(), "nothing past the end");
    // Walk the datagrams: each continues its read where the previous ended.
    let base = batch.get(0).map_or(0, |(d, _)| d.as_ptr() as usize);
    let mut i = 0;
    let mut want_total = 0;
    for (r, read) in rs.iter().enumerate() {
        let len = read.len.min(MAX_PACKET);
        let step = match usize::from(read.gso_size) {
            0 => len.max(1),
            g => g,
        };
        let expected = if len == 0 { 1 } else { len.div_ceil(step) };
        want_total += expected;
        let mut off = 0;
        for k in 0..expected {
            let Some((d, m)) = batch.get(i) else {
                // Out of index room: the rest is reported as unindexed (an empty read too:
                // `corpus/recv_split/regress-empty-read-*`).
                assert!(batch.unindexed() > 0, "datagrams lost without a count");
                break;
            };
            assert_eq!(m.len, len, "datagram {i} carries read {r}'s metadata");
            assert_eq!((m.gso_size, m.tos), (read.gso_size, read.tos));
            assert_eq!(m.src, Some(Ipv4Addr::new(192, 0, 2, r as u8).into()));
            let size = if k + 1 < expected { step } else { len - off };
            assert_eq!(
                d.len(),
                size,
                "datagram {k} of read {r}: the announced size"
            );
            if k + 1 < expected {
                assert_eq!(d.len(), step);
            } else {
                assert!(d.len() <= step || len == 0);
            }
            // Where it is: `off` bytes into its read's slot (first and last byte checked
            // against the pattern; the place itself by address, relative to datagram 0).
            if let (Some(first), Some(last)) = (d.first(), d.last()) {
                assert_eq!(*first, pattern(read.seed, r, off), "first byte of {i}");
                assert_eq!(
                    *last,
                    pattern(read.seed, r, off + d.len() - 1),
                    "last of {i}"
                );
            }
            let at = d.as_ptr() as usize - base;
            assert_eq!(at, r * MAX_PACKET + off, "datagram {i}: read {r} at {off}");
            assert_eq!(batch.at((i, 0)), Some(d));
            off += d.len();
            i += 1;
        }
        if batch.unindexed() == 0 {
            assert_eq!(off, len, "every byte of read {r} in exactly one datagram");
        }
    }
    assert_eq!(i, n, "no datagram beyond the reads");
    let counted = n + batch.unindexed();
    assert!(
        counted == want_total,
        "indexed {n} + unindexed {} != every datagram {want_total}",
        batch.unindexed()
    );
}
