//! The IPv4 remotes a network takes datagrams from, readable without a guard: the check every
//! datagram of an IPv4 underlay makes before it is learned from or delivered.
//!
//! The peer snapshot ([`PeerSnapshot`](super::network::PeerSnapshot)) is the truth, behind an
//! `arc_swap` pointer; loading it costs two locked instructions and a call per datagram. This
//! table is a copy of its IPv4 list (up to [`KnownV4::CAP`] addresses) under a sequence lock
//! (written by hand: the `seqlock` crate reads the data with volatile reads, not atomics): a
//! reader loads the sequence number, the length and the addresses with plain loads, and reads
//! again when a writer was at work meanwhile. A list too long for it, or a writer that keeps it
//! busy, sends the reader to the snapshot instead, so the answer is always the snapshot's (the
//! one before or after a publication that is under way).

use super::network::contains_by_key;
use std::sync::atomic::{AtomicU32, Ordering, fence};
use std::sync::{Mutex, PoisonError};

/// The sequence-locked copy of a network's known IPv4 remotes.
#[derive(Debug)]
pub struct KnownV4 {
    /// Odd while a writer is changing the table; advances by 2 with each publication.
    seq: AtomicU32,
    /// How many of `addrs` are in use, or [`KnownV4::TOO_MANY`].
    len: AtomicU32,
    /// The addresses (bits), sorted: the first `len`.
    addrs: [AtomicU32; KnownV4::CAP],
    /// Serialises publications (and what the caller publishes with them).
    write: Mutex<()>,
}

impl KnownV4 {
    /// How many addresses the table holds; a network with more is checked against its snapshot.
    pub const CAP: usize = 64;
    /// `len` of a list longer than [`KnownV4::CAP`].
    const TOO_MANY: u32 = u32::MAX;
    /// Reads to try while writers keep changing the table before asking the snapshot.
    const TRIES: usize = 16;

    /// A table holding the sorted addresses `list`.
    pub fn new(list: &[u32]) -> KnownV4 {
        let t = KnownV4 {
            seq: AtomicU32::new(0),
            len: AtomicU32::new(0),
            addrs: std::array::from_fn(|_| AtomicU32::new(0)),
            write: Mutex::new(()),
        };
        t.publish(list, || {});
        t
    }

    /// Whether `a` (an IPv4 address's bits) is in the table: `None` when the list did not fit,
    /// or writers kept the table busy; the caller then asks the snapshot.
    #[inline]
    pub fn get(&self, a: u32) -> Option<bool> {
        for _ in 0..KnownV4::TRIES {
            let seq = self.seq.load(Ordering::Acquire);
            let len = self.len.load(Ordering::Relaxed);
            if len == KnownV4::TOO_MANY {
                return None;
            }
            let list = &self.addrs[..(len as usize).min(KnownV4::CAP)];
            let found = contains_by_key(list, |s| s.load(Ordering::Relaxed), &a);
            // What was read above is whole if no writer began or ended meanwhile.
            fence(Ordering::Acquire);
            if seq & 1 == 0 && self.seq.load(Ordering::Relaxed) == seq {
                return Some(found);
            }
            std::hint::spin_loop();
        }
        None
    }

    /// Replaces the table with the sorted addresses `list`, then runs `then` before another
    /// publication may begin (what must change in the same order as the table: the snapshot).
    pub fn publish(&self, list: &[u32], then: impl FnOnce()) {
        let _only = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        // Orders the odd number before the table's changes: a reader that sees any of them
        // sees the number changed when it checks again.
        fence(Ordering::Release);
        if list.len() <= KnownV4::CAP {
            for (slot, &a) in self.addrs.iter().zip(list) {
                slot.store(a, Ordering::Relaxed);
            }
            self.len.store(list.len() as u32, Ordering::Relaxed);
        } else {
            self.len.store(KnownV4::TOO_MANY, Ordering::Relaxed);
        }
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
        then();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn holds_what_was_published_and_sends_a_long_list_to_the_snapshot() {
        let t = KnownV4::new(&[]);
        assert_eq!(t.get(1), Some(false));
        for n in [1u32, 5, 16, 17, 40, 64] {
            let list: Vec<u32> = (0..n).map(|i| 10 + 3 * i).collect();
            t.publish(&list, || {});
            for i in 0..n {
                assert_eq!(t.get(10 + 3 * i), Some(true), "{n} addresses, #{i}");
                assert_eq!(t.get(11 + 3 * i), Some(false), "{n} addresses, past #{i}");
            }
            assert_eq!(t.get(9), Some(false));
            assert_eq!(
                t.get(0),
                Some(false),
                "an unused slot's zero is not an address"
            );
        }
        let long: Vec<u32> = (0..KnownV4::CAP as u32 + 1).collect();
        t.publish(&long, || {});
        assert_eq!(t.get(3), None);
        t.publish(&[7], || {});
        // 13 is still in the second slot from the list of 64: slots past the length are not read.
        assert_eq!((t.get(7), t.get(13)), (Some(true), Some(false)));
    }

    #[test]
    fn runs_what_is_published_with_it_in_the_same_order() {
        let t = KnownV4::new(&[]);
        let mut ran = false;
        t.publish(&[4], || ran = true);
        assert!(ran);
        assert_eq!(t.get(4), Some(true));
    }

    /// Readers racing a writer that swaps between two lists never miss an address both hold.
    /// The shared addresses lead one list and end the other: while the table is half written
    /// they are in neither half, which a read without the sequence check would see.
    #[test]
    fn a_reader_racing_publications_sees_one_list_or_the_other() {
        for len in [16u32, 40] {
            let shared = 1000..1004;
            let a: Vec<u32> = shared.clone().chain(2000..2000 + len - 4).collect();
            let b: Vec<u32> = (10..10 + len - 4).chain(shared.clone()).collect();
            race(&a, &b, shared.collect());
        }
    }

    /// Two readers check `shared` while the table swaps between `a` and `b`, until they had
    /// 200 000 answers (or 10 s passed).
    fn race(a: &[u32], b: &[u32], shared: Vec<u32>) {
        let t = Arc::new(KnownV4::new(a));
        let stop = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let readers: Vec<_> = (0..2)
            .map(|r| {
                let (t, stop, reads) = (Arc::clone(&t), Arc::clone(&stop), Arc::clone(&reads));
                let shared = shared.clone();
                std::thread::spawn(move || {
                    // Until the writer is done, and at least 100 answers from the table (after
                    // the writer, every read answers).
                    let (mut i, mut answered) = (r, 0);
                    while !stop.load(Ordering::Relaxed) || answered < 100 {
                        i = (i + 1) % shared.len();
                        match t.get(shared[i]) {
                            Some(found) => assert!(found, "{} missed", shared[i]),
                            None => continue,
                        }
                        answered += 1;
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut k = 0u64;
        while reads.load(Ordering::Relaxed) < 200_000 && std::time::Instant::now() < deadline {
            t.publish(if k % 2 == 0 { b } else { a }, || {});
            k += 1;
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
    }
}
